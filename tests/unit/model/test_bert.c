// The BERT model on the CPU backend: layout and parameter counts, config.json parsing,
// masks (padding must not change a sentence's embedding), dropout streams, thread-count
// independence of training, safetensors round trip and bad files, divergence detection.
// Numerical agreement with transformers is tests/integration/test_model_torch.py.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_core.h"
#include "check.h"
#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/model/bert.h"
#include "runner/model/safetensors.h"

static char tmpdir[] = "/tmp/test_bert_XXXXXX";

static bert_config tiny_config(void) {
    bert_config c;
    bert_config_preset("bert-tiny", &c);
    c.vocab_size = 50;
    c.hidden_size = 32;
    c.num_heads = 2;
    c.intermediate_size = 64;
    c.max_position = 16;
    c.embedding_size = 32;
    return c;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int find_tensor(const bert_model *m, const char *name, size_t *offset, int shape[2]) {
    for (int i = 0; i < bert_num_tensors(m); i++)
        if (strcmp(bert_tensor_info(m, i, offset, shape), name) == 0) return i;
    return -1;
}

static void test_presets_and_layout(backend *be) {
    bert_config c;
    CHECK_INT(bert_config_preset("bert-nope", &c), EXIT_USAGE);
    CHECK(strstr(error_message(), "bert-tiny") != NULL); // lists the valid names
    CHECK_INT(bert_config_preset("bert-base", &c), 0);
    CHECK_INT(c.num_layers, 12);
    CHECK_INT(c.hidden_size, 768);
    // BertForSequenceClassification.from_pretrained("bert-base-uncased", num_labels=2)
    // has 109,483,778 parameters.
    bert_model *m = NULL;
    CHECK_INT(bert_create(&m, be, &c, HEAD_SEQUENCE_CLASSIFICATION, 2, 1, 4), 0);
    if (!m) return;
    CHECK_INT(bert_num_parameters(m), 109483778);
    size_t q, k, v, qb, kb;
    int shape[2];
    CHECK(find_tensor(m, "bert.encoder.layer.3.attention.self.query.weight", &q, shape) >= 0);
    CHECK(shape[0] == 768 && shape[1] == 768);
    CHECK(find_tensor(m, "bert.encoder.layer.3.attention.self.key.weight", &k, shape) >= 0);
    CHECK(find_tensor(m, "bert.encoder.layer.3.attention.self.value.weight", &v, shape) >= 0);
    CHECK(find_tensor(m, "bert.encoder.layer.3.attention.self.query.bias", &qb, shape) >= 0);
    CHECK(shape[0] == 768 && shape[1] == 0);
    CHECK(find_tensor(m, "bert.encoder.layer.3.attention.self.key.bias", &kb, shape) >= 0);
    CHECK(k == q + 768 * 768 && v == k + 768 * 768 && kb == qb + 768); // one (3C,C) GEMM
    CHECK(find_tensor(m, "bert.pooler.dense.weight", NULL, NULL) >= 0);
    CHECK(find_tensor(m, "classifier.weight", NULL, shape) >= 0);
    CHECK(shape[0] == 2 && shape[1] == 768);
    bert_destroy(m);

    // a task model without the pooler: 109,482,240 - 590,592 + 768*9 + 9
    c = tiny_config();
    c.hidden_size = 768, c.num_heads = 12, c.intermediate_size = 3072, c.num_layers = 12;
    c.vocab_size = 30522, c.max_position = 512, c.embedding_size = 768;
    CHECK_INT(bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 9, 1, 4), 0);
    if (m) CHECK_INT(bert_num_parameters(m), 109482240 - 590592 + 768 * 9 + 9);
    bert_destroy(m);

    // DistilBERT names and no token types
    CHECK_INT(bert_config_preset("distilbert", &c), 0);
    c.num_layers = 1;
    CHECK_INT(bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, 1, 4), 0);
    if (m) {
        CHECK(find_tensor(m, "distilbert.transformer.layer.0.ffn.lin2.weight", NULL, shape) >= 0);
        CHECK(shape[0] == 768 && shape[1] == 3072);
        CHECK(find_tensor(m, "distilbert.transformer.layer.0.sa_layer_norm.bias", NULL, NULL) >= 0);
        CHECK(find_tensor(m, "distilbert.embeddings.token_type_embeddings.weight", NULL, NULL) < 0);
    }
    bert_destroy(m);
    // heads the architecture lacks are refused, not approximated
    CHECK_INT(bert_create(&m, be, &c, HEAD_MASKED_LM, 0, 1, 4), EXIT_USAGE);
    CHECK(m == NULL);
    c = tiny_config();
    c.num_heads = 5; // 32 % 5 != 0
    CHECK_INT(bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, 1, 4), EXIT_USAGE);
}

static void test_config_load(void) {
    char path[256];
    bert_config c;
    snprintf(path, sizeof path, "%s/bert.json", tmpdir);
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":28996,\"hidden_size\":384,"
                     "\"num_hidden_layers\":6,\"num_attention_heads\":12,"
                     "\"intermediate_size\":1536,\"max_position_embeddings\":512,"
                     "\"type_vocab_size\":2,\"layer_norm_eps\":1e-12,\"hidden_act\":\"gelu\","
                     "\"hidden_dropout_prob\":0.2,\"attention_probs_dropout_prob\":0.05}");
    CHECK_INT(bert_config_load(path, &c), 0);
    CHECK(c.arch == ARCH_BERT && c.vocab_size == 28996 && c.hidden_size == 384 &&
          c.num_layers == 6 && c.num_heads == 12 && c.intermediate_size == 1536 &&
          c.embedding_size == 384 && c.type_vocab_size == 2);
    CHECK_CLOSE(c.hidden_dropout, 0.2, 1e-7, 0);
    CHECK_CLOSE(c.attention_dropout, 0.05, 1e-7, 0);

    snprintf(path, sizeof path, "%s/distil.json", tmpdir);
    write_file(path, "{\"model_type\":\"distilbert\",\"vocab_size\":30522,\"dim\":768,"
                     "\"n_layers\":6,\"n_heads\":12,\"hidden_dim\":3072,\"dropout\":0.1,"
                     "\"attention_dropout\":0.1,\"activation\":\"gelu\"}");
    CHECK_INT(bert_config_load(path, &c), 0);
    CHECK(c.arch == ARCH_DISTILBERT && c.num_layers == 6 && c.intermediate_size == 3072 &&
          c.type_vocab_size == 0 && c.max_position == 512);

    snprintf(path, sizeof path, "%s/electra.json", tmpdir);
    write_file(path, "{\"model_type\":\"electra\",\"vocab_size\":30522,\"embedding_size\":128,"
                     "\"hidden_size\":256,\"num_hidden_layers\":12,\"num_attention_heads\":4,"
                     "\"intermediate_size\":1024,\"hidden_act\":\"gelu\"}");
    CHECK_INT(bert_config_load(path, &c), 0);
    CHECK(c.arch == ARCH_ELECTRA && c.embedding_size == 128 && c.hidden_size == 256);

    snprintf(path, sizeof path, "%s/bad.json", tmpdir);
    write_file(path, "{\"model_type\":\"gpt2\"}");
    CHECK_INT(bert_config_load(path, &c), EXIT_BAD_INPUT);
    write_file(path, "{\"model_type\":\"bert\",\"hidden_size\":384}");
    CHECK_INT(bert_config_load(path, &c), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "vocab_size") != NULL);
    write_file(path, "{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":2,"
                     "\"intermediate_size\":8,\"hidden_act\":\"relu\"}");
    CHECK_INT(bert_config_load(path, &c), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "hidden_act") != NULL);
    write_file(path, "{not json");
    CHECK_INT(bert_config_load(path, &c), EXIT_BAD_INPUT);
    snprintf(path, sizeof path, "%s/absent.json", tmpdir);
    CHECK_INT(bert_config_load(path, &c), EXIT_BAD_INPUT);
}

// A fixed batch of B=2, T=8: row 1 padded after 5 tokens.
enum { TB = 2, TT = 8 };
static const int32_t batch_ids[TB * TT] = {2, 7, 9, 11, 4, 8, 3, 5, 2, 13, 21, 6, 3, 0, 0, 0};
static const int32_t batch_types[TB * TT] = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int32_t batch_mask[TB * TT] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0};
static const int32_t batch_labels[TB * TT] = {-100, 1, 2, 0, 1, -100, 2, -100,
                                              -100, 2, 2, 1, -100, -100, -100, -100};

static bert_batch test_batch(void) {
    return (bert_batch){TB, TT, batch_ids, batch_types, batch_mask, batch_labels};
}

// Train `steps` AdamW steps with dropout; returns the losses and the final parameters.
static float *train_run(int threads, int steps, float *losses, size_t *n) {
    backend *be = backend_cpu_create(threads);
    bert_config c = tiny_config();
    bert_model *m = NULL;
    if (bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, TB, TT) || bert_init_random(m, 5))
        return NULL;
    bert_batch b = test_batch();
    for (int t = 1; t <= steps; t++) {
        float norm;
        bert_zero_grad(m);
        if (bert_forward(m, &b, true, 77, (uint64_t)t, &losses[t - 1]) || bert_backward(m) ||
            bert_step(m, 1e-2f, 0.01f, 1.0f, t, &norm))
            return NULL;
    }
    *n = bert_num_parameters(m);
    float *params = malloc(sizeof(float) * *n);
    bert_get_state(m, params, NULL, NULL);
    bert_destroy(m);
    be->destroy(be);
    return params;
}

static void test_training_threads_and_learning(void) {
    enum { STEPS = 25 };
    float l1[STEPS], l2[STEPS], l3[STEPS];
    size_t n1 = 0, n2 = 0, n3 = 0;
    // 3 threads on the 2-core build machine too: oversubscription must not matter
    float *p1 = train_run(1, STEPS, l1, &n1), *p2 = train_run(2, STEPS, l2, &n2),
          *p3 = train_run(3, STEPS, l3, &n3);
    CHECK(p1 && p2 && p3 && n1 == n2 && n1 == n3);
    if (!p1 || !p2 || !p3) return;
    // bitwise: no result depends on the thread count
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    CHECK(memcmp(p1, p2, n1 * sizeof(float)) == 0);
    CHECK(memcmp(l1, l3, sizeof l1) == 0);
    CHECK(memcmp(p1, p3, n1 * sizeof(float)) == 0);
    // it learns the batch (dropout on): loss falls well below log(3)
    printf("training losses: first %.4f last %.4f\n", l1[0], l1[STEPS - 1]);
    CHECK(l1[0] > 0.9f);
    CHECK(l1[STEPS - 1] < 0.3f);
    free(p1), free(p2), free(p3);
}

// A batch without token types trains exactly as one with explicit type 0, even when
// the previous batch left other types in the model's device buffer (regression: the
// backward pass once read that stale buffer).
static void test_missing_token_types_mean_type_zero(backend *be) {
    bert_config c = tiny_config();
    bert_model *m = NULL;
    CHECK(!bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, TB, TT) && !bert_init_random(m, 9));
    if (!m) return;
    static const int32_t zeros[TB * TT] = {0};
    size_t n = bert_num_parameters(m);
    float *without = calloc(n, sizeof(float)), *explicit_zero = calloc(n, sizeof(float));
    bert_batch typed = test_batch();
    bert_batch untyped = typed, zero_typed = typed;
    untyped.token_types = NULL;
    zero_typed.token_types = zeros;
    float loss_a, loss_b, loss_c;
    CHECK(!bert_forward(m, &typed, false, 1, 1, &loss_a)); // leaves types 1 on the device
    bert_zero_grad(m);
    CHECK(!bert_forward(m, &untyped, false, 1, 1, &loss_b) && !bert_backward(m));
    CHECK(!bert_get_grads(m, without));
    bert_zero_grad(m);
    CHECK(!bert_forward(m, &zero_typed, false, 1, 1, &loss_c) && !bert_backward(m));
    CHECK(!bert_get_grads(m, explicit_zero));
    CHECK(loss_b == loss_c);
    CHECK(memcmp(without, explicit_zero, n * sizeof(float)) == 0);
    free(without), free(explicit_zero);
    bert_destroy(m);
}

static void test_dropout_and_masks(backend *be) {
    bert_config c = tiny_config();
    bert_model *m = NULL;
    CHECK_INT(bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, TB, TT), 0);
    if (!m) return;
    CHECK_INT(bert_init_random(m, 9), 0);
    bert_batch b = test_batch();
    float a, a2, d, e, e2;
    CHECK_INT(bert_forward(m, &b, true, 1, 10, &a), 0);
    CHECK_INT(bert_forward(m, &b, true, 1, 10, &a2), 0);
    CHECK_INT(bert_forward(m, &b, true, 1, 11, &d), 0);
    CHECK_INT(bert_forward(m, &b, false, 1, 10, &e), 0);
    CHECK_INT(bert_forward(m, &b, false, 2, 99, &e2), 0);
    CHECK(a == a2); // same seed and step: same masks
    CHECK(a != d);  // another step: other masks
    CHECK(a != e);  // inference has no dropout...
    CHECK(e == e2); // ...so seed and step do not matter

    // Padding: the logits of row 1's real tokens do not depend on what follows them.
    float logits[TB * TT * 3], logits2[TB * TT * 3];
    CHECK_INT(bert_logits(m, logits), 0);
    int32_t ids2[TB * TT];
    memcpy(ids2, batch_ids, sizeof ids2);
    ids2[TT + 6] = 40; // a different padding id
    bert_batch b2 = {TB, TT, ids2, batch_types, batch_mask, NULL};
    CHECK_INT(bert_forward(m, &b2, false, 0, 0, NULL), 0);
    CHECK_INT(bert_logits(m, logits2), 0);
    CHECK(memcmp(logits + TT * 3, logits2 + TT * 3, 5 * 3 * sizeof(float)) == 0);

    // bad ids and labels are refused, naming the value
    int32_t bad[TB * TT];
    memcpy(bad, batch_ids, sizeof bad);
    bad[3] = 50;
    bert_batch b3 = {TB, TT, bad, NULL, batch_mask, NULL};
    CHECK_INT(bert_forward(m, &b3, false, 0, 0, NULL), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "50") != NULL);
    memcpy(bad, batch_labels, sizeof bad);
    bad[1] = 3;
    bert_batch b4 = {TB, TT, batch_ids, NULL, batch_mask, bad};
    CHECK_INT(bert_forward(m, &b4, false, 0, 0, NULL), EXIT_BAD_INPUT);
    bert_batch b5 = {TB + 1, TT, batch_ids, NULL, batch_mask, NULL};
    CHECK(bert_forward(m, &b5, false, 0, 0, NULL) != 0);

    // a NaN in the weights is reported as divergence by the step
    size_t n = bert_num_parameters(m);
    float *p = malloc(sizeof(float) * n);
    bert_get_state(m, p, NULL, NULL);
    p[n - 1] = NAN; // the classifier bias
    bert_set_state(m, p, NULL, NULL);
    float loss, norm;
    CHECK_INT(bert_forward(m, &b, true, 1, 1, &loss), 0);
    CHECK(isnan(loss));
    CHECK_INT(bert_backward(m), 0);
    CHECK_INT(bert_step(m, 1e-3f, 0, 1.0f, 1, &norm), EXIT_DIVERGED);
    free(p);
    bert_destroy(m);
}

static void test_embedding_head(backend *be) {
    bert_config c = tiny_config();
    bert_model *m = NULL;
    CHECK_INT(bert_create(&m, be, &c, HEAD_EMBEDDING, 0, TB, TT), 0);
    if (!m) return;
    CHECK_INT(bert_init_random(m, 3), 0);
    bert_batch b = {TB, TT, batch_ids, NULL, batch_mask, NULL};
    float emb[TB * 32], alone[32];
    CHECK_INT(bert_forward(m, &b, false, 0, 0, NULL), 0);
    CHECK_INT(bert_embeddings(m, emb, true), 0);
    double n0 = 0;
    for (int i = 0; i < 32; i++) n0 += (double)emb[i] * emb[i];
    CHECK_CLOSE(n0, 1.0, 1e-5, 0);
    // row 1 alone, without padding, has the same embedding as inside the padded batch
    bert_batch one = {1, 5, batch_ids + TT, NULL, NULL, NULL};
    CHECK_INT(bert_forward(m, &one, false, 0, 0, NULL), 0);
    CHECK_INT(bert_embeddings(m, alone, true), 0);
    double worst = 0;
    for (int i = 0; i < 32; i++) worst = fmax(worst, fabs(alone[i] - emb[32 + i]));
    CHECK(worst < 1e-6);
    float logits[1];
    CHECK_INT(bert_logits(m, logits), EXIT_INTERNAL); // no logits for this head
    CHECK_INT(bert_backward(m), EXIT_INTERNAL);
    bert_destroy(m);
}

static void test_safetensors_round_trip(backend *be) {
    bert_config c = tiny_config();
    bert_model *m = NULL, *m2 = NULL;
    CHECK_INT(bert_create(&m, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, TB, TT), 0);
    CHECK_INT(bert_create(&m2, be, &c, HEAD_TOKEN_CLASSIFICATION, 3, TB, TT), 0);
    if (!m || !m2) return;
    bert_init_random(m, 1);
    bert_init_random(m2, 2);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    CHECK_INT(bert_save_safetensors(m, path), 0);
    CHECK_INT(bert_load_safetensors(m2, path), 0);
    bert_batch b = test_batch();
    float l1[TB * TT * 3], l2[TB * TT * 3];
    bert_forward(m, &b, false, 0, 0, NULL);
    bert_logits(m, l1);
    bert_forward(m2, &b, false, 0, 0, NULL);
    bert_logits(m2, l2);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);

    // the same file into an embedding model (no prefix, no head) loads the base tensors
    bert_model *e = NULL;
    CHECK_INT(bert_create(&e, be, &c, HEAD_EMBEDDING, 0, TB, TT), 0);
    if (e) CHECK_INT(bert_load_safetensors(e, path), 0);
    bert_destroy(e);

    // a file with one tensor of the wrong shape, and one without a base tensor
    size_t n = bert_num_parameters(m);
    float *p = malloc(sizeof(float) * n);
    bert_get_state(m, p, NULL, NULL);
    int nt = bert_num_tensors(m);
    st_write_tensor *list = calloc(nt, sizeof *list);
    for (int i = 0; i < nt; i++) {
        size_t off;
        int shape[2];
        list[i].name = bert_tensor_info(m, i, &off, shape);
        list[i].data = p + off;
        list[i].ndim = shape[1] ? 2 : 1;
        list[i].shape[0] = shape[0];
        list[i].shape[1] = shape[1];
    }
    const char *victim = "bert.encoder.layer.1.intermediate.dense.weight";
    int vi = -1;
    for (int i = 0; i < nt; i++)
        if (strcmp(list[i].name, victim) == 0) vi = i;
    CHECK(vi >= 0);
    list[vi].shape[0] = 32, list[vi].shape[1] = 64; // transposed
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    CHECK_INT(safetensors_write_f32(path, list, nt, NULL), 0);
    CHECK_INT(bert_load_safetensors(m2, path), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), victim) != NULL);
    list[vi].shape[0] = 64, list[vi].shape[1] = 32;
    // without the victim: a base tensor is missing
    st_write_tensor *kept = calloc(nt, sizeof *kept);
    int nk = 0;
    for (int i = 0; i < nt; i++)
        if (i != vi) kept[nk++] = list[i];
    CHECK_INT(safetensors_write_f32(path, kept, nk, NULL), 0);
    CHECK_INT(bert_load_safetensors(m2, path), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), victim) != NULL);
    CHECK(strstr(error_message(), "missing") != NULL);
    // without the head (classifier.*): loads, the head keeps its weights
    nk = 0;
    for (int i = 0; i < nt; i++)
        if (strncmp(list[i].name, "classifier.", 11) != 0) kept[nk++] = list[i];
    CHECK_INT(nk, nt - 2);
    CHECK_INT(safetensors_write_f32(path, kept, nk, NULL), 0);
    CHECK_INT(bert_load_safetensors(m2, path), 0);
    free(kept);
    free(list);
    free(p);
    bert_destroy(m);
    bert_destroy(m2);
}

// RoBERTa's sequence head drops the <s> rows out before classifier.dense (BERT's pooler
// does not). With dropout on (fixed seed and step, so every forward draws the same
// masks), central differences of the loss must match the analytic gradient of
// classifier.dense and of the <s> token's word embedding, which only flows back through
// that first dropout: a mask applied in one direction and not the other shows here.
static void test_roberta_sequence_head_dropout_gradients(backend *be) {
    bert_config c = tiny_config();
    c.arch = ARCH_ROBERTA;
    c.type_vocab_size = 1;
    c.position_offset = 2;
    c.hidden_dropout = 0.3f;
    c.attention_dropout = 0.0f;
    enum { B = 3, T = 6 };
    bert_model *m = NULL;
    CHECK_INT(bert_create(&m, be, &c, HEAD_SEQUENCE_CLASSIFICATION, 3, B, T), 0);
    CHECK_INT(bert_init_random(m, 11), 0);
    if (!m) return;
    int32_t ids[B * T], mask[B * T], labels[B] = {2, 0, 1};
    for (int i = 0; i < B * T; i++) {
        ids[i] = i % T == 0 ? 0 : 5 + (i * 7) % 40; // <s> = 0 first in every row
        mask[i] = i % T < T - (i / T);               // rows of 6, 5 and 4 tokens
    }
    bert_batch b = {.B = B, .T = T, .ids = ids, .mask = mask, .labels = labels};
    size_t n = bert_num_parameters(m);
    float *params = malloc(n * sizeof *params), *grads = malloc(n * sizeof *grads);
    bert_get_state(m, params, NULL, NULL);
    float loss;
    bert_zero_grad(m);
    CHECK_INT(bert_forward(m, &b, true, 99, 4, &loss), 0);
    CHECK_INT(bert_backward(m), 0);
    CHECK_INT(bert_get_grads(m, grads), 0);

    size_t dense = 0, wte = 0;
    int shape[2];
    CHECK(find_tensor(m, "classifier.dense.weight", &dense, shape) >= 0);
    CHECK(find_tensor(m, "roberta.embeddings.word_embeddings.weight", &wte, shape) >= 0);
    size_t probes[16];
    int np = 0;
    for (int k = 0; k < 8; k++) probes[np++] = dense + (size_t)k * 97 % ((size_t)c.hidden_size * c.hidden_size);
    for (int k = 0; k < 8; k++) probes[np++] = wte + (size_t)k * 3; // row 0: <s>
    int bad = 0, zero_seen = 0;
    for (int k = 0; k < np; k++) {
        size_t i = probes[k];
        const float h = 1e-2f;
        float saved = params[i], up, down;
        params[i] = saved + h;
        bert_set_state(m, params, NULL, NULL);
        bert_forward(m, &b, true, 99, 4, &up);
        params[i] = saved - h;
        bert_set_state(m, params, NULL, NULL);
        bert_forward(m, &b, true, 99, 4, &down);
        params[i] = saved;
        float fd = (up - down) / (2 * h);
        zero_seen += fd == 0.0f && grads[i] == 0.0f;
        if (fabsf(fd - grads[i]) > 3e-3f + 5e-2f * fabsf(grads[i])) {
            bad++;
            fprintf(stderr, "param %zu: finite difference %g, analytic %g\n", i, fd, grads[i]);
        }
    }
    bert_set_state(m, params, NULL, NULL);
    CHECK_INT(bad, 0);
    printf("roberta sequence head, dropout 0.3: %d gradients checked, %d dropped to zero\n", np,
           zero_seen);
    free(params);
    free(grads);
    bert_destroy(m);
}

int main(void) {
    blas_core_require();
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    backend *be = backend_cpu_create(2);
    if (!be) return 1;
    test_presets_and_layout(be);
    test_config_load();
    test_dropout_and_masks(be);
    test_missing_token_types_mean_type_zero(be);
    test_embedding_head(be);
    test_safetensors_round_trip(be);
    test_training_threads_and_learning();
    test_roberta_sequence_head_dropout_gradients(be);
    be->destroy(be);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
