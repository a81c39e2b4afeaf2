// BERT WordPiece tokenizer; the steps and the rules they follow are in tokenizer.h.
#include "runner/model/tokenizer.h"

#include "runner/error.h"
#include "runner/model/tokenizer_internal.h"
#include "runner/model/tokenizer_unicode.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

// The special tokens BertTokenizerFast registers, in the order HF lists them.
static const char *const WORDPIECE_SPECIALS[SPECIAL_COUNT] = {"[PAD]", "[UNK]", "[CLS]",
                                                              "[SEP]", "[MASK]"};

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
static void vocab_insert(tokenizer *t, int32_t id) {
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

// ------------------------------------------------------------------ loading

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    tokenizer_bpe_free(t->bpe);
    free(t->text);
    free(t->tokens);
    free(t->slots);
    free(t);
}

int tokenizer_read_file(const char *path, size_t limit, char **out, size_t *len) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_set(EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode))
        rc = error_set(EXIT_BAD_INPUT, "%s: not a regular file", path);
    else if ((size_t)st.st_size > limit)
        rc = error_set(EXIT_BAD_INPUT, "%s: %lld bytes, more than the %zu-byte limit", path,
                       (long long)st.st_size, limit);
    char *buf = rc ? NULL : malloc((size_t)st.st_size + 1);
    if (!rc && !buf) rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
    if (!rc && fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size)
        rc = error_set(EXIT_BAD_INPUT, "%s: read failed", path);
    fclose(fp);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[st.st_size] = '\0';
    *out = buf;
    *len = (size_t)st.st_size;
    return 0;
}

int tokenizer_read_json_object(const char *path, size_t limit, cJSON **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = tokenizer_read_file(path, limit, &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return error_set(EXIT_BAD_INPUT, "%s: not a JSON object", path);
    }
    *out = root;
    return 0;
}

// Hash t->tokens[0..size) (a repeated token maps to its last id) and find the specials.
int tokenizer_index_vocab(tokenizer *t, const char *path) {
    size_t slots = 16;
    while (slots < 2 * (size_t)t->size) slots *= 2;
    t->slots = malloc(slots * sizeof *t->slots);
    if (!t->slots)
        return error_set(EXIT_RESOURCES, "%s: out of memory for %d tokens", path, t->size);
    memset(t->slots, 0xff, slots * sizeof *t->slots);
    t->slot_mask = slots - 1;
    for (int32_t id = 0; id < t->size; id++) vocab_insert(t, id);
    for (int s = 0; s < SPECIAL_COUNT; s++) {
        const char *name = t->special_names[s];
        t->special[s] = tokenizer_vocab_lookup(t, name, strlen(name));
        if (t->special[s] < 0 && s != SPECIAL_MASK)
            return error_set(EXIT_BAD_INPUT, "%s: the vocabulary has no %s token (not a %s "
                             "vocabulary?)", path, name, t->bpe ? "RoBERTa" : "BERT");
    }
    return 0;
}

static int load(const char *path, bool lowercase, bool strip_accents, bool chinese_chars,
                tokenizer **out) {
    *out = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    t->lowercase = lowercase;
    t->strip_accents = strip_accents;
    t->chinese_chars = chinese_chars;
    t->special_names = WORDPIECE_SPECIALS;
    size_t len = 0;
    int rc = tokenizer_read_file(path, VOCAB_MAX_BYTES, &t->text, &len);
    if (rc) goto fail;
    if (len == 0) {
        rc = error_set(EXIT_BAD_INPUT, "%s: empty vocabulary", path);
        goto fail;
    }
    if (memchr(t->text, '\0', len)) {
        rc = error_set(EXIT_BAD_INPUT, "%s: NUL byte in the vocabulary (not a text file?)", path);
        goto fail;
    }
    if (utf8proc_decompose((const utf8proc_uint8_t *)t->text, (utf8proc_ssize_t)len, NULL, 0,
                           0) < 0) {
        rc = error_set(EXIT_BAD_INPUT, "%s: not valid UTF-8", path);
        goto fail;
    }
    // Lines as transformers' load_vocab() reads them (a text file with universal
    // newlines): "\n", "\r\n" and a lone "\r" end a line, the terminator is removed and
    // nothing else; no empty last line after a final terminator.
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += t->text[i] == '\n' || (t->text[i] == '\r' && t->text[i + 1] != '\n');
    if (t->text[len - 1] != '\n' && t->text[len - 1] != '\r') lines++;
    if (lines > INT32_MAX / 4) {
        rc = error_set(EXIT_BAD_INPUT, "%s: %zu lines is too many", path, lines);
        goto fail;
    }
    t->tokens = calloc(lines, sizeof *t->tokens);
    if (!t->tokens) {
        rc = error_set(EXIT_RESOURCES, "%s: out of memory for %zu tokens", path, lines);
        goto fail;
    }
    char *line = t->text;
    for (size_t id = 0; id < lines; id++) {
        char *end = line + strcspn(line, "\r\n");
        char *next = *end == '\r' && end[1] == '\n' ? end + 2 : *end ? end + 1 : end;
        if (end - line > VOCAB_MAX_TOKEN_BYTES) {
            rc = error_set(EXIT_BAD_INPUT, "%s:%zu: token of %td bytes (at most %d)", path,
                           id + 1, end - line, VOCAB_MAX_TOKEN_BYTES);
            goto fail;
        }
        *end = '\0';
        t->tokens[id] = line;
        line = next;
    }
    t->size = (int)lines;
    rc = tokenizer_index_vocab(t, path);
    if (rc) goto fail;
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    return rc;
}

int tokenizer_load(const char *vocab_txt_path, bool lowercase, bool strip_accents,
                   tokenizer **out) {
    return load(vocab_txt_path, lowercase, strip_accents, true, out);
}

static int config_bool(const cJSON *config, const char *key, bool fallback, bool *out,
                       const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    if (!v || cJSON_IsNull(v)) {
        *out = fallback;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return error_set(EXIT_BAD_INPUT, "%s: \"%s\" must be true, false or null", path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int tokenizer_vocab_from_json(tokenizer *t, const cJSON *vocab, const char *path) {
    t->size = cJSON_GetArraySize(vocab);
    size_t bytes = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, vocab) bytes += strlen(entry->string) + 1;
    t->tokens = calloc((size_t)t->size, sizeof *t->tokens);
    t->text = malloc(bytes ? bytes : 1);
    if (!t->tokens || !t->text) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    char *p = t->text;
    cJSON_ArrayForEach(entry, vocab) {
        double id = cJSON_IsNumber(entry) ? entry->valuedouble : -1;
        size_t n = strlen(entry->string);
        // Ids must number the tokens 0..size-1, each once, as HF writes them.
        if (!(id >= 0 && id < t->size && id == (double)(int32_t)id) || t->tokens[(int32_t)id])
            return error_set(EXIT_BAD_INPUT, "%s: token '%s' has a bad or repeated id (ids must "
                             "number the tokens 0..%d)", path, entry->string, t->size - 1);
        if (n > VOCAB_MAX_TOKEN_BYTES)
            return error_set(EXIT_BAD_INPUT, "%s: token of %zu bytes (at most %d)", path, n,
                             VOCAB_MAX_TOKEN_BYTES);
        memcpy(p, entry->string, n + 1);
        t->tokens[(int32_t)id] = p;
        p += n + 1;
    }
    return 0;
}

// The vocabulary of a `tokenizers` tokenizer.json (model.type "WordPiece", the BERT
// settings), for model directories that ship no vocab.txt.
static int load_tokenizer_json(const char *path, bool lowercase, bool strip_accents,
                               bool chinese_chars, tokenizer **out) {
    *out = NULL;
    cJSON *root = NULL;
    int rc = tokenizer_read_json_object(path, VOCAB_MAX_BYTES, &root);
    if (rc) return rc;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    const cJSON *max_chars = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    tokenizer *t = NULL;
    if (!cJSON_IsObject(model)) {
        rc = error_set(EXIT_BAD_INPUT, "%s: not a tokenizers JSON file (no \"model\" object)",
                       path);
    } else if (!cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece") != 0) {
        rc = error_set(EXIT_BAD_INPUT, "%s: model type %s is not WordPiece (BERT needs "
                       "WordPiece)", path, cJSON_IsString(type) ? type->valuestring : "(none)");
    } else if ((prefix && (!cJSON_IsString(prefix) || strcmp(prefix->valuestring, "##") != 0)) ||
               (unk && (!cJSON_IsString(unk) || strcmp(unk->valuestring, "[UNK]") != 0)) ||
               (max_chars && (!cJSON_IsNumber(max_chars) ||
                              max_chars->valuedouble != TOKENIZER_MAX_CHARS_PER_WORD))) {
        rc = error_set(EXIT_BAD_INPUT, "%s: WordPiece settings other than BERT's (\"##\", "
                       "[UNK], %d characters) are not supported", path,
                       TOKENIZER_MAX_CHARS_PER_WORD);
    } else if (!cJSON_IsObject(vocab) || cJSON_GetArraySize(vocab) == 0) {
        rc = error_set(EXIT_BAD_INPUT, "%s: model.vocab is missing or empty", path);
    } else if (!(t = calloc(1, sizeof *t))) {
        rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
    }
    if (!rc) {
        t->lowercase = lowercase;
        t->strip_accents = strip_accents;
        t->chinese_chars = chinese_chars;
        t->special_names = WORDPIECE_SPECIALS;
        rc = tokenizer_vocab_from_json(t, vocab, path);
    }
    if (!rc) rc = tokenizer_index_vocab(t, path);
    cJSON_Delete(root);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tokenizer_load_dir(const char *dir, tokenizer **out) {
    *out = NULL;
    char vocab[4096], config_path[4096];
    if (snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir) >= (int)sizeof vocab ||
        snprintf(config_path, sizeof config_path, "%s/tokenizer_config.json", dir) >=
            (int)sizeof config_path)
        return error_set(EXIT_BAD_INPUT, "%s: path too long", dir);
    bool lowercase = true, strip_accents = true, chinese = true, prefix_space = false;
    if (access(config_path, F_OK) == 0) {
        cJSON *config = NULL;
        int rc = tokenizer_read_json_object(config_path, 16 * 1024 * 1024, &config);
        if (rc) return rc;
        rc = config_bool(config, "do_lower_case", true, &lowercase, config_path);
        if (!rc) rc = config_bool(config, "strip_accents", lowercase, &strip_accents, config_path);
        if (!rc)
            rc = config_bool(config, "tokenize_chinese_chars", true, &chinese, config_path);
        if (!rc) rc = config_bool(config, "add_prefix_space", false, &prefix_space, config_path);
        cJSON_Delete(config);
        if (rc) return rc;
    }
    // Settings always come from tokenizer_config.json (BertTokenizerFast overrides the
    // normaliser of tokenizer.json with them); the vocabulary from vocab.txt, else from
    // tokenizer.json.
    // RoBERTa's files: vocab.json + merges.txt (byte-level BPE).
    char json_path[4096];
    if (access(vocab, F_OK) != 0 &&
        snprintf(json_path, sizeof json_path, "%s/merges.txt", dir) < (int)sizeof json_path &&
        access(json_path, F_OK) == 0)
        return tokenizer_bpe_load(dir, prefix_space, out);
    if (access(vocab, F_OK) != 0 &&
        snprintf(json_path, sizeof json_path, "%s/tokenizer.json", dir) < (int)sizeof json_path &&
        access(json_path, F_OK) == 0)
        return load_tokenizer_json(json_path, lowercase, strip_accents, chinese, out);
    return load(vocab, lowercase, strip_accents, chinese, out);
}

// ------------------------------------------------------------------ saving

int tokenizer_write_atomic(const char *path, const char *data, size_t len) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
        return error_set(EXIT_OUTPUT, "%s: path too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return error_set(EXIT_OUTPUT, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fchmod(fd, 0644) == 0;
    for (size_t done = 0; ok && done < len;) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) done += (size_t)n;
    }
    ok = ok && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        return error_set(EXIT_OUTPUT, "%s: cannot write: %s", path, strerror(saved));
    }
    return 0;
}

static int write_json(const char *dir, const char *name, cJSON *json) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        cJSON_Delete(json);
        return error_set(EXIT_OUTPUT, "%s: path too long", dir);
    }
    char *text = cJSON_Print(json);
    cJSON_Delete(json);
    if (!text) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    int rc = tokenizer_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

static void add_special_names(const tokenizer *t, cJSON *json) {
    static const char *const KEYS[SPECIAL_COUNT] = {"pad_token", "unk_token", "cls_token",
                                                    "sep_token", "mask_token"};
    for (int s = 0; s < SPECIAL_COUNT; s++)
        if (t->special[s] >= 0) cJSON_AddStringToObject(json, KEYS[s], t->special_names[s]);
}

int tokenizer_save_dir(const tokenizer *t, const char *dir, int model_max_length,
                       const char *wordpiece_class) {
    if (t->bpe) {
        int rc = tokenizer_bpe_save(t, dir);
        if (rc) return rc;
        // Saved for pre-split words, as the job tokenizes them: transformers accepts
        // is_split_into_words=True only with add_prefix_space=True.
        cJSON *config = cJSON_CreateObject();
        cJSON_AddBoolToObject(config, "add_prefix_space", true);
        cJSON_AddNumberToObject(config, "model_max_length", model_max_length);
        cJSON_AddStringToObject(config, "tokenizer_class", "RobertaTokenizer");
        add_special_names(t, config);
        cJSON_AddStringToObject(config, "bos_token", t->special_names[SPECIAL_CLS]);
        cJSON_AddStringToObject(config, "eos_token", t->special_names[SPECIAL_SEP]);
        rc = write_json(dir, "tokenizer_config.json", config);
        if (rc) return rc;
        cJSON *map = cJSON_CreateObject();
        add_special_names(t, map);
        return write_json(dir, "special_tokens_map.json", map);
    }
    size_t total = 0;
    for (int i = 0; i < t->size; i++) total += strlen(t->tokens[i]) + 1;
    char *vocab = malloc(total + 1), *p = vocab;
    if (!vocab) return error_set(EXIT_RESOURCES, "%s: out of memory", dir);
    for (int i = 0; i < t->size; i++) {
        size_t n = strlen(t->tokens[i]);
        memcpy(p, t->tokens[i], n);
        p[n] = '\n';
        p += n + 1;
    }
    char path[4096];
    int rc = snprintf(path, sizeof path, "%s/vocab.txt", dir) >= (int)sizeof path
                 ? error_set(EXIT_OUTPUT, "%s: path too long", dir)
                 : tokenizer_write_atomic(path, vocab, total);
    free(vocab);
    if (rc) return rc;

    cJSON *config = cJSON_CreateObject();
    cJSON_AddBoolToObject(config, "do_lower_case", t->lowercase);
    cJSON_AddBoolToObject(config, "strip_accents", t->strip_accents);
    cJSON_AddBoolToObject(config, "tokenize_chinese_chars", t->chinese_chars);
    cJSON_AddNumberToObject(config, "model_max_length", model_max_length);
    cJSON_AddStringToObject(config, "tokenizer_class",
                            wordpiece_class ? wordpiece_class : "BertTokenizer");
    add_special_names(t, config);
    rc = write_json(dir, "tokenizer_config.json", config);
    if (rc) return rc;
    cJSON *map = cJSON_CreateObject();
    add_special_names(t, map);
    return write_json(dir, "special_tokens_map.json", map);
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
