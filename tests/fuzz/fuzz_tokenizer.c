// Fuzz target: arbitrary bytes split at the first "\n\n\n" into a vocabulary and a text.
// Loading must succeed or fail with EXIT_BAD_INPUT; encoding (plain, as words split at
// TAB, and packed to a length taken from the first byte) must never crash or overrun.
#include "runner/error.h"
#include "runner/model/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char VOCAB[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\nhello\n"
                            ",\n!\ncafe\n東\n##京\na\n##a\n";

const char *const fuzz_seeds[] = {
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhe\n##llo\n\n\n\x05Hello, wörld! 東京 [MASK]\tcafé",
    "\x10unaffable\xcc\x81 \xf0\x9f\x98\x80 x\x01y\t[SEP]\t\xff\xfe",
    "\x02\xe3\x80\x80\xc2\xa0\xe2\x80\x8b aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    NULL,
};
const size_t fuzz_seed_sizes[] = {
    sizeof "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhe\n##llo\n\n\n\x05Hello, wörld! 東京 [MASK]\tcafé" - 1,
    sizeof "\x10unaffable\xcc\x81 \xf0\x9f\x98\x80 x\x01y\t[SEP]\t\xff\xfe" - 1,
    sizeof "\x02\xe3\x80\x80\xc2\xa0\xe2\x80\x8b aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" - 1,
    0,
};

static tokenizer *load(const uint8_t *data, size_t size, bool lower, bool strip) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_tokenizer.%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(data, 1, size, f);
    fclose(f);
    tokenizer *t = NULL;
    int rc = tokenizer_load(path, lower, strip, &t);
    if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    unlink(path);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *split = NULL;
    for (size_t i = 0; i + 3 <= size && !split; i++)
        if (memcmp(data + i, "\n\n\n", 3) == 0) split = data + i;
    tokenizer *t = NULL;
    if (split) {
        t = load(data, (size_t)(split - data), size & 1, size & 2);
        size -= (size_t)(split + 3 - data);
        data = split + 3;
    }
    if (!t) t = load((const uint8_t *)VOCAB, sizeof VOCAB - 1, true, size & 1);
    if (!t || size == 0) {
        tokenizer_free(t);
        return 0;
    }
    int max_len = 2 + data[0] % 64;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';

    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(t, text, &ids, &n) != 0) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(t)) abort();
    free(ids);

    int32_t *buf = malloc(4 * (size_t)max_len * sizeof *buf);
    int32_t *seq = buf, *mask = buf + max_len, *words = buf + 2 * max_len, *labels = buf + 3 * max_len;
    if (tokenizer_encode_text(t, text, max_len, seq, mask, &n) != 0 || n < 2 || n > max_len) abort();
    int nwords = 1;
    for (char *p = text; *p; p++) nwords += *p == '\t';
    const char **list = malloc((size_t)nwords * sizeof *list);
    int32_t *tags = malloc((size_t)nwords * sizeof *tags);
    char *p = text;
    for (int w = 0; w < nwords; w++) {
        list[w] = p;
        tags[w] = w;
        char *tab = strchr(p, '\t');
        if (tab) {
            *tab = '\0';
            p = tab + 1;
        }
    }
    if (tokenizer_encode_words(t, list, nwords, max_len, seq, mask, words, &n) != 0) abort();
    tokenizer_align_labels(words, max_len, tags, labels);
    for (int i = 0; i < max_len; i++)
        if (words[i] < -1 || words[i] >= nwords || (mask[i] != 0 && mask[i] != 1)) abort();
    free(list);
    free(tags);
    free(buf);
    free(text);
    tokenizer_free(t);
    return 0;
}
