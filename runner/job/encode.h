#pragma once
// Sentences turned into model inputs once, before training: WordPiece ids, attention
// mask, aligned labels (each word's tag on its first sub-token, -100 elsewhere) and the
// word each token came from, all (n, T) with T = max_length; batches are cut from them
// padded only to their longest sentence.
#include "runner/job/dataset.h"
#include "runner/model/tokenizer.h"

#include <stdint.h>

typedef struct {
    int n, T;
    int32_t *ids, *mask, *labels, *word_of_token; // (n, T)
    int *ntokens;                                  // (n) non-padding tokens
    const ner_sentence **sentences;                // (n) the source sentences (not owned)
} encoded_set;

// Encode ds->items[order[k]] for k < count (order NULL: 0..count-1). 0 or an exit code.
int encode_sentences(const tokenizer *t, const ner_dataset *ds, const int *order, int count,
                     int max_len, encoded_set *out);
// Encode plain texts (predict/embed/pretrain); labels all -100, sentences NULL.
int encode_texts(const tokenizer *t, char *const *texts, int count, int max_len, encoded_set *out);
void encoded_free(encoded_set *e);

// Gather rows[0..B) into (B, Tb) buffers with Tb = the longest of them; returns Tb and
// the number of non-padding tokens in *tokens. labels may be NULL.
int encoded_batch(const encoded_set *e, const int *rows, int B, int32_t *ids, int32_t *mask,
                  int32_t *labels, long *tokens);
