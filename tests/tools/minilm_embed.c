// Sentence embeddings of a pretrained BERT-family model, as sentence-transformers
// computes them for all-MiniLM-L6-v2: WordPiece (tokenizer_load_dir), the model from
// config.json + model.safetensors, mean pooling over the attention mask, L2 normalised.
// Driven by tests/integration/test_minilm.py.
//
//   minilm_embed MODEL_DIR SENTENCES OUT [MAX_LEN=128] [BATCH=32] [THREADS=0] [BACKEND=cpu]
// SENTENCES: one per line. OUT: raw float32, (number of sentences, hidden size).
// Also prints "tokens: N" (total non-padding tokens) and "hidden: C".
#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/log.h"
#include "runner/model/bert.h"
#include "runner/model/safetensors.h"
#include "runner/model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(void) {
    fprintf(stderr, "%s\n", error_message());
    return error_code() ? error_code() : 1;
}

int main(int argc, char **argv) {
    // stdout carries the "key: value" report the test reads; log lines (model_weights) go
    // to stderr
    log_set_fd(STDERR_FILENO);
    if (argc < 4) {
        fprintf(stderr, "usage: minilm_embed MODEL_DIR SENTENCES OUT [MAX_LEN] [BATCH] [THREADS] "
                        "[BACKEND]\n");
        return 2;
    }
    const char *dir = argv[1];
    int max_len = argc > 4 ? atoi(argv[4]) : 128, max_batch = argc > 5 ? atoi(argv[5]) : 32;
    int threads = argc > 6 ? atoi(argv[6]) : 0;
    const char *backend_name = argc > 7 ? argv[7] : "cpu"; // "cuda" on a GPU build
    char path[4096];

    tokenizer *tok = NULL;
    if (tokenizer_load_dir(dir, &tok)) return fail();
    bert_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (bert_config_load(path, &cfg)) return fail();
    backend *be = backend_create(backend_name, 0, threads);
    if (!be) {
        if (!error_message()[0]) fprintf(stderr, "backend %s is not in this build\n", backend_name);
        return error_message()[0] ? fail() : 2;
    }
    bert_model *model = NULL;
    if (bert_create(&model, be, &cfg, HEAD_EMBEDDING, 0, max_batch, max_len)) return fail();
    safetensors_checkpoint_path(dir, path, sizeof path);
    if (bert_load_safetensors(model, path)) return fail();

    FILE *in = fopen(argv[2], "r"), *out = fopen(argv[3], "wb");
    if (!in || !out) {
        fprintf(stderr, "cannot open %s or %s\n", argv[2], argv[3]);
        return 3;
    }
    int C = cfg.hidden_size;
    int32_t *ids = malloc((size_t)max_batch * max_len * sizeof *ids);   // (B, T)
    int32_t *mask = malloc((size_t)max_batch * max_len * sizeof *mask); // (B, T)
    int32_t *row_ids = malloc((size_t)max_len * sizeof *row_ids), *row_mask = malloc((size_t)max_len * sizeof *row_mask);
    int32_t *lens = malloc((size_t)max_batch * sizeof *lens);
    float *emb = malloc((size_t)max_batch * C * sizeof *emb); // (B, C)
    char **lines = calloc((size_t)max_batch, sizeof *lines);
    size_t *caps = calloc((size_t)max_batch, sizeof *caps);
    long total_tokens = 0;
    int rc = 0;
    for (bool done = false; !done && !rc;) {
        int B = 0;
        while (B < max_batch) {
            ssize_t n = getline(&lines[B], &caps[B], in);
            if (n < 0) {
                done = true;
                break;
            }
            if (n > 0 && lines[B][n - 1] == '\n') lines[B][n - 1] = '\0';
            B++;
        }
        if (B == 0) break;
        // Pad the batch to its longest sequence, as the Python reference does.
        int T = 2;
        for (int b = 0; b < B && !rc; b++) {
            rc = tokenizer_encode_text(tok, lines[b], max_len, row_ids, row_mask, &lens[b]);
            if (lens[b] > T) T = lens[b];
        }
        for (int b = 0; b < B && !rc; b++) {
            tokenizer_encode_text(tok, lines[b], T, ids + (size_t)b * T, mask + (size_t)b * T, NULL);
            total_tokens += lens[b];
        }
        bert_batch batch = {.B = B, .T = T, .ids = ids, .mask = mask};
        if (!rc) rc = bert_forward(model, &batch, false, 0, 0, NULL);
        if (!rc) rc = bert_embeddings(model, emb, true);
        if (!rc && fwrite(emb, sizeof *emb, (size_t)B * C, out) != (size_t)B * C) rc = 4;
    }
    if (rc) return fail();
    fclose(in);
    if (fclose(out) != 0) return 4;
    printf("tokens: %ld\nhidden: %d\n", total_tokens, C);
    for (int b = 0; b < max_batch; b++) free(lines[b]);
    free(lines);
    free(caps);
    free(ids);
    free(mask);
    free(row_ids);
    free(row_mask);
    free(lens);
    free(emb);
    bert_destroy(model);
    be->destroy(be);
    tokenizer_free(tok);
    return 0;
}
