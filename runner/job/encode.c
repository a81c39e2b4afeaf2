// Encoding of sentences into fixed-width token rows; see encode.h.
#include "runner/job/encode.h"

#include "runner/error.h"

#include <stdlib.h>
#include <string.h>

void encoded_free(encoded_set *e) {
    free(e->ids);
    free(e->mask);
    free(e->labels);
    free(e->word_of_token);
    free(e->ntokens);
    free(e->sentences);
    memset(e, 0, sizeof *e);
}

static int encoded_alloc(encoded_set *e, int n, int T) {
    memset(e, 0, sizeof *e);
    e->n = n;
    e->T = T;
    size_t cells = (size_t)(n ? n : 1) * (size_t)T;
    e->ids = malloc(cells * sizeof(int32_t));
    e->mask = malloc(cells * sizeof(int32_t));
    e->labels = malloc(cells * sizeof(int32_t));
    e->word_of_token = malloc(cells * sizeof(int32_t));
    e->ntokens = calloc((size_t)(n ? n : 1), sizeof(int));
    e->sentences = calloc((size_t)(n ? n : 1), sizeof *e->sentences);
    if (!e->ids || !e->mask || !e->labels || !e->word_of_token || !e->ntokens || !e->sentences) {
        encoded_free(e);
        return error_set(EXIT_RESOURCES, "out of memory encoding %d sentences", n);
    }
    return 0;
}

int encode_sentences(const tokenizer *t, const ner_dataset *ds, const int *order, int count,
                     int max_len, encoded_set *out) {
    int rc = encoded_alloc(out, count, max_len);
    if (rc) return rc;
    for (int k = 0; k < count; k++) {
        const ner_sentence *s = &ds->items[order ? order[k] : k];
        size_t row = (size_t)k * (size_t)max_len;
        out->sentences[k] = s;
        rc = tokenizer_encode_words(t, (const char *const *)s->words, s->nwords, max_len,
                                    out->ids + row, out->mask + row, out->word_of_token + row,
                                    &out->ntokens[k]);
        if (rc) {
            encoded_free(out);
            return rc;
        }
        tokenizer_align_labels(out->word_of_token + row, max_len, s->tags, out->labels + row);
    }
    return 0;
}

int encode_texts(const tokenizer *t, char *const *texts, int count, int max_len, encoded_set *out) {
    int rc = encoded_alloc(out, count, max_len);
    if (rc) return rc;
    free(out->sentences);
    out->sentences = NULL;
    for (int k = 0; k < count; k++) {
        size_t row = (size_t)k * (size_t)max_len;
        rc = tokenizer_encode_text(t, texts[k], max_len, out->ids + row, out->mask + row,
                                   &out->ntokens[k]);
        if (rc) {
            encoded_free(out);
            return rc;
        }
        for (int i = 0; i < max_len; i++) {
            out->labels[row + i] = -100;
            out->word_of_token[row + i] = -1;
        }
    }
    return 0;
}

int encoded_batch(const encoded_set *e, const int *rows, int B, int32_t *ids, int32_t *mask,
                  int32_t *labels, long *tokens) {
    int Tb = 2;
    long count = 0;
    for (int b = 0; b < B; b++) {
        if (e->ntokens[rows[b]] > Tb) Tb = e->ntokens[rows[b]];
        count += e->ntokens[rows[b]];
    }
    for (int b = 0; b < B; b++) {
        size_t src = (size_t)rows[b] * (size_t)e->T, dst = (size_t)b * (size_t)Tb;
        memcpy(ids + dst, e->ids + src, (size_t)Tb * sizeof(int32_t));
        memcpy(mask + dst, e->mask + src, (size_t)Tb * sizeof(int32_t));
        if (labels) memcpy(labels + dst, e->labels + src, (size_t)Tb * sizeof(int32_t));
    }
    if (tokens) *tokens = count;
    return Tb;
}
