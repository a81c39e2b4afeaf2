#pragma once
// The encoding checks both tokenizer fuzz targets run on a loaded tokenizer and the rest
// of the input (a text, TAB-separated words): plain encoding, a packed text and packed
// words to a length taken from the first byte, and label alignment. Every id must lie
// in the vocabulary, every mask be 0 or 1, every word index name a word; any failure
// aborts (the fuzzer's finding).
#include "runner/model/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_check_encodings(const tokenizer *t, const uint8_t *data, size_t size) {
    int vocab = tokenizer_vocab_size(t);
    int max_len = 2 + data[0] % 64;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';

    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(t, text, &ids, &n) != 0) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) abort();
    free(ids);

    int32_t *buf = malloc(4 * (size_t)max_len * sizeof *buf);
    int32_t *seq = buf, *mask = buf + max_len, *words = buf + 2 * max_len;
    int32_t *labels = buf + 3 * max_len;
    if (tokenizer_encode_text(t, text, max_len, seq, mask, &n) != 0 || n < 2 || n > max_len)
        abort();
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
        if (words[i] < -1 || words[i] >= nwords || (mask[i] != 0 && mask[i] != 1) ||
            seq[i] < 0 || seq[i] >= vocab)
            abort();
    free(list);
    free(tags);
    free(buf);
    free(text);
}
