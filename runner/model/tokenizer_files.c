// The tokenizer's files: vocab.txt, tokenizer.json and tokenizer_config.json read into a
// tokenizer (WordPiece here, byte-level BPE through tokenizer_bpe.c), and a tokenizer
// written back as a Hugging Face tokenizer directory. See tokenizer.h.
#include "runner/model/tokenizer.h"

#include "runner/error.h"
#include "runner/model/tokenizer_internal.h"

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
    for (int32_t id = 0; id < t->size; id++) tokenizer_vocab_insert(t, id);
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

