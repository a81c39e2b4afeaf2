// RoBERTa's byte-level BPE, giving the ids of Hugging Face's RobertaTokenizerFast (the
// `tokenizers` ByteLevel pre-tokenizer + BPE + RoBERTa post-processor):
//   1. (prefix_space) a segment that does not start with a space gets one;
//   2. split with GPT-2's pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
//      ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+), matched by PCRE2 in UTF + UCP mode;
//   3. every byte of a piece becomes one printable character (GPT-2's bytes_to_unicode:
//      the space is "Ġ"), so nothing is ever unknown;
//   4. merges.txt's pairs, lowest rank first (leftmost on ties), until none applies;
//   5. each symbol's id from vocab.json.
// Invalid UTF-8 bytes are read as U+FFFD, as in the WordPiece half.
#define PCRE2_CODE_UNIT_WIDTH 8

#include "runner/error.h"
#include "runner/model/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static const char *const BPE_SPECIALS[SPECIAL_COUNT] = {"<pad>", "<unk>", "<s>", "</s>", "<mask>"};

static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+|"
                                   " ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct tokenizer_bpe {
    char *merges_text;   // merges.txt, each pair NUL-terminated in place: "left right"
    const char **merges; // (count) rank -> "left right"
    int count;
    int32_t *slots; // open addressing, "left right" -> rank (-1 empty)
    size_t slot_mask;
    pcre2_code *pattern;    // GPT2_PATTERN; immutable, shared by every thread
    char byte_char[256][3]; // bytes_to_unicode(): UTF-8 of the character for each byte
    unsigned char byte_char_len[256];
};

static int32_t merge_rank(const tokenizer_bpe *b, const char *key, size_t len) {
    for (size_t i = tokenizer_hash_bytes(key, len) & b->slot_mask;; i = (i + 1) & b->slot_mask) {
        int32_t r = b->slots[i];
        if (r < 0) return -1;
        if (strncmp(b->merges[r], key, len) == 0 && b->merges[r][len] == '\0') return r;
    }
}

// GPT-2's table: printable Latin-1 bytes stand for themselves, the other 68 bytes map
// in order to U+0100 onwards.
static void build_byte_chars(tokenizer_bpe *b) {
    int next = 256;
    for (int byte = 0; byte < 256; byte++) {
        bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
                         (byte >= 0xAE && byte <= 0xFF);
        int cp = printable ? byte : next++;
        b->byte_char_len[byte] =
            (unsigned char)utf8proc_encode_char(cp, (utf8proc_uint8_t *)b->byte_char[byte]);
    }
}

void tokenizer_bpe_free(tokenizer_bpe *b) {
    if (!b) return;
    pcre2_code_free(b->pattern);
    free(b->merges_text);
    free(b->merges);
    free(b->slots);
    free(b);
}

// ------------------------------------------------------------------ loading

static int load_vocab_json(tokenizer *t, const char *path) {
    cJSON *root = NULL;
    int rc = tokenizer_read_json_object(path, VOCAB_MAX_BYTES, &root);
    if (rc) return rc;
    rc = cJSON_GetArraySize(root) == 0
             ? error_set(EXIT_BAD_INPUT, "%s: an empty vocabulary", path)
             : tokenizer_vocab_from_json(t, root, path);
    cJSON_Delete(root);
    return rc;
}

// merges.txt: an optional "#version" first line, then "left right" per line by rank.
static int load_merges(tokenizer_bpe *b, const char *path) {
    size_t len = 0;
    int rc = tokenizer_read_file(path, VOCAB_MAX_BYTES, &b->merges_text, &len);
    if (rc) return rc;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += b->merges_text[i] == '\n';
    b->merges = calloc(lines, sizeof *b->merges);
    if (!b->merges) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    char *line = b->merges_text;
    for (size_t number = 1; line && *line; number++) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = '\0';
        bool skip = n == 0 || (number == 1 && strncmp(line, "#version", 8) == 0);
        if (!skip) {
            char *space = strchr(line, ' ');
            if (!space || space == line || !space[1] || strchr(space + 1, ' '))
                return error_set(EXIT_BAD_INPUT, "%s:%zu: not a \"left right\" pair", path, number);
            b->merges[b->count++] = line;
        }
        line = next;
    }
    size_t slots = 16;
    while (slots < 2 * (size_t)b->count)
        slots *= 2;
    b->slots = malloc(slots * sizeof *b->slots);
    if (!b->slots) return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    memset(b->slots, 0xff, slots * sizeof *b->slots);
    b->slot_mask = slots - 1;
    for (int32_t r = 0; r < b->count; r++) { // a repeated pair keeps its first (best) rank
        size_t n = strlen(b->merges[r]);
        size_t i = tokenizer_hash_bytes(b->merges[r], n) & b->slot_mask;
        while (b->slots[i] >= 0 && strcmp(b->merges[b->slots[i]], b->merges[r]) != 0)
            i = (i + 1) & b->slot_mask;
        if (b->slots[i] < 0) b->slots[i] = r;
    }
    return 0;
}

int tokenizer_bpe_load(const char *dir, bool add_prefix_space, tokenizer **out) {
    *out = NULL;
    char vocab_path[PATH_MAX], merges_path[PATH_MAX];
    if (snprintf(vocab_path, sizeof vocab_path, "%s/vocab.json", dir) >= (int)sizeof vocab_path ||
        snprintf(merges_path, sizeof merges_path, "%s/merges.txt", dir) >= (int)sizeof merges_path)
        return error_set(EXIT_BAD_INPUT, "%s: path too long", dir);
    tokenizer *t = calloc(1, sizeof *t);
    tokenizer_bpe *b = calloc(1, sizeof *b);
    if (!t || !b) {
        free(t);
        free(b);
        return error_set(EXIT_RESOURCES, "%s: out of memory", dir);
    }
    t->bpe = b;
    t->special_names = BPE_SPECIALS;
    t->add_prefix_space = add_prefix_space;
    build_byte_chars(b);
    int rc = load_vocab_json(t, vocab_path);
    if (!rc) rc = load_merges(b, merges_path);
    if (!rc) {
        int code;
        PCRE2_SIZE at;
        b->pattern = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
        if (!b->pattern)
            rc = error_set(EXIT_INTERNAL, "tokenizer: PCRE2 refused the GPT-2 pattern (%d)", code);
        else
            pcre2_jit_compile(b->pattern, PCRE2_JIT_COMPLETE); // optional: plain if it fails
    }
    if (!rc) rc = tokenizer_index_vocab(t, vocab_path);
    if (rc) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

// ------------------------------------------------------------------ encoding

typedef struct {
    size_t start, len; // bytes of the piece's mapped string
} symbol;

// BPE of one pre-tokenized piece (raw bytes), its mapped string built in `mapped`.
static bool bpe_piece(const tokenizer *t, const unsigned char *piece, size_t n, int32_t word,
                      token_list *out) {
    const tokenizer_bpe *b = t->bpe;
    char *mapped = malloc(2 * n + 1);
    symbol *sym = malloc(n * sizeof *sym);
    char *key = malloc(4 * n + 2);
    bool ok = mapped && sym && key;
    size_t used = 0, count = 0;
    for (size_t i = 0; ok && i < n; i++) {
        sym[count++] = (symbol){used, b->byte_char_len[piece[i]]};
        memcpy(mapped + used, b->byte_char[piece[i]], b->byte_char_len[piece[i]]);
        used += b->byte_char_len[piece[i]];
    }
    while (ok && count > 1) {
        int32_t best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < count; i++) {
            size_t l = sym[i].len, r = sym[i + 1].len;
            memcpy(key, mapped + sym[i].start, l);
            key[l] = ' ';
            memcpy(key + l + 1, mapped + sym[i + 1].start, r);
            int32_t rank = merge_rank(b, key, l + 1 + r);
            if (rank >= 0 && (best < 0 || rank < best)) {
                best = rank;
                at = i;
            }
        }
        if (best < 0) break;
        sym[at].len += sym[at + 1].len; // neighbours in `mapped`: a merge is a longer span
        memmove(sym + at + 1, sym + at + 2, (count - at - 2) * sizeof *sym);
        count--;
    }
    for (size_t i = 0; ok && i < count; i++) {
        int32_t id = tokenizer_vocab_lookup(t, mapped + sym[i].start, sym[i].len);
        ok = token_list_push(out, id >= 0 ? id : t->special[SPECIAL_UNK], word);
    }
    free(mapped);
    free(sym);
    free(key);
    return ok;
}

// `len` bytes as valid UTF-8 (each invalid byte becomes U+FFFD), behind an optional space.
static char *clean_utf8(const char *text, size_t len, bool space, size_t *out_len) {
    char *clean = malloc(3 * len + 2);
    if (!clean) return NULL;
    size_t used = 0;
    if (space) clean[used++] = ' ';
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)text;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t step = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        if (step <= 0) {
            memcpy(clean + used, "\xEF\xBF\xBD", 3);
            used += 3;
            i++;
        } else {
            memcpy(clean + used, text + i, (size_t)step);
            used += (size_t)step;
            i += (size_t)step;
        }
    }
    *out_len = used;
    return clean;
}

bool tokenizer_bpe_encode(const tokenizer *t, const char *text, size_t len, int32_t word,
                          bool prefix_space, token_list *out) {
    if (len == 0) return true;
    size_t n = 0;
    char *clean = clean_utf8(text, len, prefix_space && text[0] != ' ', &n);
    pcre2_match_data *md =
        clean ? pcre2_match_data_create_from_pattern(t->bpe->pattern, NULL) : NULL;
    bool ok = md != NULL;
    for (size_t at = 0; ok && at < n;) {
        int found = pcre2_match(t->bpe->pattern, (PCRE2_SPTR)clean, n, at, 0, md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        // Every character is matched by one alternative; a gap (never expected) is a
        // piece of its own, as `tokenizers`' Isolated split would keep it.
        size_t start = found > 0 ? ov[0] : n, end = found > 0 ? ov[1] : n;
        if (start > at) ok = bpe_piece(t, (const unsigned char *)clean + at, start - at, word, out);
        if (ok && end > start)
            ok = bpe_piece(t, (const unsigned char *)clean + start, end - start, word, out);
        at = end > at ? end : at + 1;
    }
    pcre2_match_data_free(md);
    free(clean);
    return ok;
}

// ------------------------------------------------------------------ saving

int tokenizer_bpe_save(const tokenizer *t, const char *dir) {
    char path[PATH_MAX];
    cJSON *vocab = cJSON_CreateObject();
    for (int id = 0; vocab && id < t->size; id++)
        if (!cJSON_AddNumberToObject(vocab, t->tokens[id], id)) break;
    char *json = vocab ? cJSON_PrintUnformatted(vocab) : NULL;
    cJSON_Delete(vocab);
    if (!json) return error_set(EXIT_RESOURCES, "%s: out of memory for vocab.json", dir);
    int rc = snprintf(path, sizeof path, "%s/vocab.json", dir) < (int)sizeof path
                 ? tokenizer_write_atomic(path, json, strlen(json))
                 : error_set(EXIT_OUTPUT, "%s: path too long", dir);
    free(json);
    if (rc) return rc;
    const tokenizer_bpe *b = t->bpe;
    size_t bytes = sizeof "#version: 0.2\n";
    for (int r = 0; r < b->count; r++)
        bytes += strlen(b->merges[r]) + 1;
    char *text = malloc(bytes);
    if (!text) return error_set(EXIT_RESOURCES, "%s: out of memory for merges.txt", dir);
    size_t used = (size_t)sprintf(text, "#version: 0.2\n");
    for (int r = 0; r < b->count; r++)
        used += (size_t)sprintf(text + used, "%s\n", b->merges[r]);
    rc = snprintf(path, sizeof path, "%s/merges.txt", dir) < (int)sizeof path
             ? tokenizer_write_atomic(path, text, used)
             : error_set(EXIT_OUTPUT, "%s: path too long", dir);
    free(text);
    return rc;
}
