// BERT WordPiece tokenizer; the steps and the rules they follow are in tokenizer.h.
// Reading and writing the tokenizer files is in tokenizer_files.c.
#include "runner/model/tokenizer.h"

#include "runner/error.h"
#include "runner/model/tokenizer_internal.h"
#include "runner/model/tokenizer_unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

// ------------------------------------------------------------------ growable arrays

bool token_list_push(token_list *l, int32_t id, int32_t word) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        int32_t *ids = realloc(l->ids, (size_t)cap * sizeof *ids);
        if (!ids) return false;
        l->ids = ids;
        int32_t *words = realloc(l->words, (size_t)cap * sizeof *words);
        if (!words) return false;
        l->words = words;
        l->cap = cap;
    }
    l->ids[l->n] = id;
    l->words[l->n] = word;
    l->n++;
    return true;
}

static void token_list_free(token_list *l) {
    free(l->ids);
    free(l->words);
}

typedef struct {
    int32_t *cps;
    size_t n, cap;
} codepoints;

static bool codepoints_push(codepoints *c, int32_t cp) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        int32_t *p = realloc(c->cps, cap * sizeof *p);
        if (!p) return false;
        c->cps = p;
        c->cap = cap;
    }
    c->cps[c->n++] = cp;
    return true;
}

// ------------------------------------------------------------------ vocabulary

uint64_t tokenizer_hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

int32_t tokenizer_vocab_lookup(const tokenizer *t, const char *s, size_t len) {
    for (size_t i = tokenizer_hash_bytes(s, len) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        const char *tok = t->tokens[id];
        if (strncmp(tok, s, len) == 0 && tok[len] == '\0') return id;
    }
}

// Insert or replace: a duplicated token maps to its last line, as `tokenizers` does.
void tokenizer_vocab_insert(tokenizer *t, int32_t id) {
    const char *tok = t->tokens[id];
    size_t len = strlen(tok);
    for (size_t i = tokenizer_hash_bytes(tok, len) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        if (t->slots[i] < 0 || strcmp(t->tokens[t->slots[i]], tok) == 0) {
            t->slots[i] = id;
            return;
        }
    }
}

// ------------------------------------------------------------------ character classes

static bool in_ranges(const uint32_t (*ranges)[2], size_t n, int32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uint32_t)cp < ranges[mid][0]) hi = mid;
        else if ((uint32_t)cp > ranges[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}
#define IN_TABLE(table, cp) in_ranges(table, sizeof table / sizeof table[0], cp)

// Unicode White_Space (Rust's char::is_whitespace, which `tokenizers` uses).
static bool is_whitespace(int32_t cp) {
    if ((cp >= 9 && cp <= 13) || cp == ' ' || cp == 0x85) return true;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

// Characters clean_text drops: C* categories except unassigned; tab, LF and CR are
// whitespace instead.
static bool is_control(int32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    utf8proc_category_t c = utf8proc_category(cp);
    bool other = c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF ||
                 c == UTF8PROC_CATEGORY_CS || c == UTF8PROC_CATEGORY_CO;
    return other != IN_TABLE(TOKENIZER_CONTROL_FLIP, cp);
}

// ASCII punctuation (which includes symbols such as $ + < = > ^ ` | ~) and Unicode P*.
static bool is_punctuation(int32_t cp) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126))
        return true;
    utf8proc_category_t c = utf8proc_category(cp);
    bool punct = c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
    return punct != IN_TABLE(TOKENIZER_PUNCT_FLIP, cp);
}

static bool is_nonspacing_mark(int32_t cp) {
    bool mark = utf8proc_category(cp) == UTF8PROC_CATEGORY_MN;
    return mark != IN_TABLE(TOKENIZER_MARK_FLIP, cp);
}

// The CJK blocks BertNormalizer pads with spaces (its ranges, not Python's: note
// 0x2B920 where the Python BasicTokenizer has 0x2B820).
static bool is_chinese_char(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// ------------------------------------------------------------------ normalisation

// Lower-case one character into out (Unicode full mapping: U+0130 is the only character
// whose lower case is two characters, where utf8proc's simple mapping gives one).
static bool push_lower(codepoints *out, int32_t cp) {
    if (cp == 0x130) return codepoints_push(out, 'i') && codepoints_push(out, 0x307);
    return codepoints_push(out, utf8proc_tolower(cp));
}

// Steps 2 and 3 of tokenizer.h for one character: clean, pad CJK ideographs.
static bool clean_char(const tokenizer *t, int32_t cp, codepoints *out) {
    if (cp == 0 || cp == 0xFFFD || is_control(cp)) return true;
    if (is_whitespace(cp)) return codepoints_push(out, ' ');
    if (t->chinese_chars && is_chinese_char(cp))
        return codepoints_push(out, ' ') && codepoints_push(out, cp) && codepoints_push(out, ' ');
    return codepoints_push(out, cp);
}

static int combining_class(int32_t cp) {
    if (IN_TABLE(TOKENIZER_COMBINING_CLASS_ZERO, cp)) return 0;
    return utf8proc_get_property(cp)->combining_class;
}

// NFD of a whole string: decompose each character, then put every run of combining
// marks in canonical order (a stable sort by combining class, as NFD requires).
static bool decompose(const codepoints *in, codepoints *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        int32_t cp = in->cps[i];
        utf8proc_int32_t parts[32];
        int last_boundclass = 0;
        utf8proc_ssize_t n = 1;
        if (IN_TABLE(TOKENIZER_NO_DECOMPOSE, cp))
            parts[0] = cp;
        else
            n = utf8proc_decompose_char(cp, parts, 32, UTF8PROC_DECOMPOSE, &last_boundclass);
        if (n < 0 || n > 32) { // cannot happen for a valid code point; keep it as is
            n = 1;
            parts[0] = cp;
        }
        for (utf8proc_ssize_t k = 0; k < n; k++)
            if (!codepoints_push(out, parts[k])) return false;
    }
    for (size_t i = 1; i < out->n; i++) { // insertion sort inside runs of non-starters
        int32_t cp = out->cps[i];
        int cc = combining_class(cp);
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0) {
            int prev = combining_class(out->cps[j - 1]);
            if (prev == 0 || prev <= cc) break;
            out->cps[j] = out->cps[j - 1];
            j--;
        }
        out->cps[j] = cp;
    }
    return true;
}

// Steps 2-5 of tokenizer.h over a whole segment; the result is in norm->cps.
static bool normalize(const tokenizer *t, const char *text, size_t len, codepoints *norm,
                      codepoints *work) {
    codepoints *cleaned = t->strip_accents ? work : norm;
    cleaned->n = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t step = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        if (step <= 0) { // invalid UTF-8: one replacement character, then dropped
            cp = 0xFFFD;
            step = 1;
        }
        i += (size_t)step;
        if (!clean_char(t, cp, cleaned)) return false;
    }
    if (t->strip_accents) {
        if (!decompose(work, norm)) return false;
        size_t kept = 0;
        for (size_t i = 0; i < norm->n; i++)
            if (!is_nonspacing_mark(norm->cps[i])) norm->cps[kept++] = norm->cps[i];
        norm->n = kept;
    }
    if (t->lowercase) { // into the work buffer (U+0130 grows), then swap the two
        work->n = 0;
        for (size_t i = 0; i < norm->n; i++)
            if (!push_lower(work, norm->cps[i])) return false;
        codepoints swap = *norm;
        *norm = *work;
        *work = swap;
    }
    return true;
}

// ------------------------------------------------------------------ WordPiece

static size_t utf8_put(char *dst, int32_t cp) {
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)dst);
}

// Greedy longest-match WordPiece of one pre-tokenized word (cps[0..n)).
static bool wordpiece(const tokenizer *t, const int32_t *cps, size_t n, int32_t word,
                      token_list *out) {
    if (n == 0) return true;
    if (n > TOKENIZER_MAX_CHARS_PER_WORD)
        return token_list_push(out, t->special[SPECIAL_UNK], word);
    // The word in UTF-8 behind a "##" prefix, and the byte offset of every character.
    char buf[2 + 4 * TOKENIZER_MAX_CHARS_PER_WORD + 1];
    size_t offset[TOKENIZER_MAX_CHARS_PER_WORD + 1];
    buf[0] = buf[1] = '#';
    size_t used = 2;
    for (size_t i = 0; i < n; i++) {
        offset[i] = used;
        used += utf8_put(buf + used, cps[i]);
    }
    offset[n] = used;

    int mark = out->n;
    for (size_t start = 0; start < n;) {
        // A continuation is looked up with "##" written over the bytes just before it
        // (they belong to pieces already matched).
        char *piece = buf + offset[start] - (start ? 2 : 0);
        if (start) memcpy(piece, "##", 2);
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--) {
            id = tokenizer_vocab_lookup(t, piece, (size_t)(buf + offset[end] - piece));
            if (id >= 0) break;
        }
        if (id < 0) { // some part matches nothing: the whole word is unknown
            out->n = mark;
            return token_list_push(out, t->special[SPECIAL_UNK], word);
        }
        if (!token_list_push(out, id, word)) return false;
        start = end;
    }
    return true;
}

// Normalise, pre-tokenize and WordPiece `len` bytes of text with no special tokens in it.
static bool encode_plain(const tokenizer *t, const char *text, size_t len, int32_t word,
                         codepoints scratch[2], token_list *out) {
    if (!normalize(t, text, len, &scratch[0], &scratch[1])) return false;
    const codepoints *norm = &scratch[0];
    // Pre-tokenize: whitespace separates words, each punctuation character is a word.
    size_t begin = 0;
    for (size_t k = 0; k <= norm->n; k++) {
        bool end = k == norm->n;
        int32_t cp = end ? 0 : norm->cps[k];
        if (end || is_whitespace(cp) || is_punctuation(cp)) {
            if (!wordpiece(t, norm->cps + begin, k - begin, word, out)) return false;
            if (!end && !is_whitespace(cp) && !wordpiece(t, &norm->cps[k], 1, word, out))
                return false;
            begin = k + 1;
        }
    }
    return true;
}

// The text between special tokens: WordPiece's normalise + split + WordPiece, or the
// byte-level BPE (tokenizer_bpe.c).
static bool encode_segment(const tokenizer *t, const char *text, size_t len, int32_t word,
                           bool prefix_space, codepoints scratch[2], token_list *out) {
    if (t->bpe) return tokenizer_bpe_encode(t, text, len, word, prefix_space, out);
    return encode_plain(t, text, len, word, scratch, out);
}

// Unicode's White_Space property (Rust's char::is_whitespace, what `tokenizers` strips).
static bool is_white_space(int32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// The end of text[begin..end) once the whitespace characters at its end are dropped.
static size_t lstrip_end(const char *text, size_t begin, size_t end) {
    while (end > begin) {
        size_t start = end - 1; // back to the first byte of the last character
        while (start > begin && ((unsigned char)text[start] & 0xC0) == 0x80) start--;
        utf8proc_int32_t cp;
        if (utf8proc_iterate((const utf8proc_uint8_t *)text + start,
                             (utf8proc_ssize_t)(end - start), &cp) != (utf8proc_ssize_t)(end - start) ||
            !is_white_space(cp))
            break;
        end = start;
    }
    return end;
}

// The whole text: special tokens written literally are matched first (leftmost, longest),
// the text between them is encoded normally. RoBERTa's <mask> strips the whitespace on
// its left, as its AddedToken(lstrip=True) does. `prefix_space` (byte-level BPE only):
// every segment is encoded as if it began with a space.
static int encode_into(const tokenizer *t, const char *text, int32_t word, bool prefix_space,
                       token_list *out) {
    codepoints scratch[2] = {{0}, {0}};
    size_t len = strlen(text), plain = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < len; i++) {
        if (text[i] != t->special_names[SPECIAL_PAD][0]) continue; // '[' or '<'
        int best = -1;
        size_t best_len = 0;
        for (int s = 0; s < SPECIAL_COUNT; s++) {
            size_t n = strlen(t->special_names[s]);
            if (t->special[s] >= 0 && n > best_len &&
                strncmp(text + i, t->special_names[s], n) == 0) {
                best = s;
                best_len = n;
            }
        }
        if (best < 0) continue;
        size_t end = i;
        if (t->bpe && best == SPECIAL_MASK) end = lstrip_end(text, plain, end);
        ok = encode_segment(t, text + plain, end - plain, word, prefix_space, scratch, out) &&
             token_list_push(out, t->special[best], word);
        i += best_len - 1;
        plain = i + 1;
    }
    ok = ok && encode_segment(t, text + plain, len - plain, word, prefix_space, scratch, out);
    free(scratch[0].cps);
    free(scratch[1].cps);
    return ok ? 0 : error_set(EXIT_RESOURCES, "tokenizer: out of memory");
}

int tokenizer_encode(const tokenizer *t, const char *text, int32_t **ids, int *n) {
    token_list list = {0};
    int rc = encode_into(t, text, -1, t->add_prefix_space, &list);
    if (!rc && list.n > 0) {
        int32_t *grown = realloc(*ids, (size_t)(*n + list.n) * sizeof *grown);
        if (!grown) {
            rc = error_set(EXIT_RESOURCES, "tokenizer: out of memory");
        } else {
            memcpy(grown + *n, list.ids, (size_t)list.n * sizeof *grown);
            *ids = grown;
            *n += list.n;
        }
    }
    token_list_free(&list);
    return rc;
}

// [CLS] tokens [SEP] [PAD]..., truncating the tokens to max_len - 2.
static void pack_sequence(const tokenizer *t, const token_list *list, int max_len, int32_t *ids,
                          int32_t *mask, int32_t *word_of_token, int *ntokens) {
    int keep = list->n < max_len - 2 ? list->n : max_len - 2;
    int k = 0;
    ids[k] = t->special[SPECIAL_CLS];
    if (word_of_token) word_of_token[k] = -1;
    k++;
    for (int i = 0; i < keep; i++, k++) {
        ids[k] = list->ids[i];
        if (word_of_token) word_of_token[k] = list->words[i];
    }
    ids[k] = t->special[SPECIAL_SEP];
    if (word_of_token) word_of_token[k] = -1;
    k++;
    if (ntokens) *ntokens = k;
    for (int i = 0; i < max_len; i++) {
        if (i >= k) {
            ids[i] = t->special[SPECIAL_PAD];
            if (word_of_token) word_of_token[i] = -1;
        }
        if (mask) mask[i] = i < k;
    }
}

int tokenizer_encode_words(const tokenizer *t, const char *const *words, int nwords,
                           int max_len, int32_t *ids, int32_t *mask, int32_t *word_of_token,
                           int *ntokens) {
    if (max_len < 2)
        return error_set(EXIT_USAGE, "tokenizer: max length %d leaves no room for [CLS] and "
                         "[SEP]", max_len);
    token_list list = {0};
    int rc = 0;
    // Words past the point where max_len is reached are not needed.
    for (int w = 0; !rc && w < nwords && list.n < max_len; w++)
        // Pre-split words each begin a word: RoBERTa sees " word" (HF needs
        // add_prefix_space=True for is_split_into_words); WordPiece is unaffected.
        rc = encode_into(t, words[w] ? words[w] : "", w, true, &list);
    if (!rc) pack_sequence(t, &list, max_len, ids, mask, word_of_token, ntokens);
    token_list_free(&list);
    return rc;
}

int tokenizer_encode_text(const tokenizer *t, const char *text, int max_len, int32_t *ids,
                          int32_t *mask, int *ntokens) {
    if (max_len < 2)
        return error_set(EXIT_USAGE, "tokenizer: max length %d leaves no room for [CLS] and "
                         "[SEP]", max_len);
    token_list list = {0};
    int rc = encode_into(t, text, 0, t->add_prefix_space, &list);
    if (!rc) pack_sequence(t, &list, max_len, ids, mask, NULL, ntokens);
    token_list_free(&list);
    return rc;
}

void tokenizer_align_labels(const int32_t *word_of_token, int max_len,
                            const int32_t *word_labels, int32_t *labels) {
    int32_t previous = -1;
    for (int i = 0; i < max_len; i++) {
        int32_t w = word_of_token[i];
        labels[i] = (w >= 0 && w != previous) ? word_labels[w] : -100;
        previous = w;
    }
}

// ------------------------------------------------------------------ accessors

int tokenizer_vocab_size(const tokenizer *t) { return t->size; }

int32_t tokenizer_token_id(const tokenizer *t, const char *token) {
    return tokenizer_vocab_lookup(t, token, strlen(token));
}

const char *tokenizer_token(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->size ? t->tokens[id] : NULL;
}

int32_t tokenizer_unk_id(const tokenizer *t) { return t->special[SPECIAL_UNK]; }
int32_t tokenizer_cls_id(const tokenizer *t) { return t->special[SPECIAL_CLS]; }
int32_t tokenizer_sep_id(const tokenizer *t) { return t->special[SPECIAL_SEP]; }
int32_t tokenizer_pad_id(const tokenizer *t) { return t->special[SPECIAL_PAD]; }
int32_t tokenizer_mask_id(const tokenizer *t) { return t->special[SPECIAL_MASK]; }
