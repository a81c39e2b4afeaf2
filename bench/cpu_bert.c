// CPU benchmark of the BERT core (docs/BENCHMARKS.md "CPU core"; bench/cpu.sh runs it
// beside bench/pytorch_bert.py):
//   train: bert-base token classification (9 labels), forward + backward + AdamW, 8 x 128
//   infer: MiniLM-L6 shape (L6 C384 NH12 F1536), forward + mean pooling, 32 x 128; with
//          --precision bf16 its linear layers in bf16 (docs/kernels.md "bf16 inference on
//          the CPU"; the case is named "... bf16")
// Every backend op is timed through a wrapper around the CPU backend's vtable (the CPU
// backend is synchronous, so a call's wall time is its cost) and printed as a profile.
//
//   bench_cpu_bert [--threads N] [--iters N] [--only train|infer] [--precision fp32|bf16]
//                  [--infer-shape BxT]   (default 32x128; 1x128 and 1x32: one sentence)
//                  [--profile]
// Prints one JSON line per case: {"case":..., "seconds_per_iter":..., "tokens_per_s":...}.
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/rng.h"
#include "runner/error.h"
#include "runner/model/bert.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---- per-op profile: each vtable entry wrapped by a timer --------------------------------

enum {
    OP_EMB_F, OP_EMB_B, OP_LN_F, OP_LN_B, OP_MM_F, OP_MM_B, OP_GELU_F, OP_GELU_B, OP_ATT_F,
    OP_ATT_B, OP_DROP_F, OP_DROP_B, OP_XENT_F, OP_XENT_B, OP_POOL, OP_NORM, OP_SCALE, OP_ADAMW,
    OP_MEMSET, OP_COPY, OP_COUNT
};
static const char *op_names[OP_COUNT] = {
    "embeddings_forward", "embeddings_backward", "layernorm_forward", "layernorm_backward",
    "matmul_forward", "matmul_backward", "gelu_forward", "gelu_backward", "attention_forward",
    "attention_backward", "dropout_forward", "dropout_backward", "softmax_xent_forward",
    "softmax_xent_backward", "mean_pool_forward", "grad_norm_squared", "scale", "adamw_update",
    "memset_zero", "copy"};
static double op_time[OP_COUNT];
static long op_calls[OP_COUNT];
static backend inner; // the real CPU backend's vtable

#define TIMED(op, call)                                                                    \
    do {                                                                                   \
        double t0_ = now();                                                                \
        call;                                                                              \
        op_time[op] += now() - t0_;                                                        \
        op_calls[op]++;                                                                    \
    } while (0)

static void p_emb_f(backend *be, void *out, const int32_t *ids, const int32_t *tt,
                    const float *wte, const float *wpe, const float *wtt, int B, int T, int C,
                    int po) {
    TIMED(OP_EMB_F, inner.embeddings_forward(be, out, ids, tt, wte, wpe, wtt, B, T, C, po));
}
static void p_emb_b(backend *be, float *a, float *b, float *c, const void *d, const int32_t *ids,
                    const int32_t *tt, int B, int T, int C, int V, int po) {
    TIMED(OP_EMB_B, inner.embeddings_backward(be, a, b, c, d, ids, tt, B, T, C, V, po));
}
static void p_ln_f(backend *be, void *out, void *sum, float *mean, float *rstd, const void *inp,
                   const void *res, const float *w, const float *b, int N, int C, float eps) {
    TIMED(OP_LN_F, inner.layernorm_forward(be, out, sum, mean, rstd, inp, res, w, b, N, C, eps));
}
static void p_ln_b(backend *be, void *dinp, float *dw, float *db, const void *dout,
                   const void *inp, const float *w, const float *mean, const float *rstd, int N,
                   int C) {
    TIMED(OP_LN_B, inner.layernorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C));
}
static void p_mm_f(backend *be, void *out, void *pre, const void *inp, const void *w,
                   const void *b, int N, int IC, int OC, matmul_epilogue e) {
    TIMED(OP_MM_F, inner.matmul_forward(be, out, pre, inp, w, b, N, IC, OC, e));
}
static void p_mm_if(backend *be, void *out, void *pre, const void *inp, const void *w,
                    const void *b, int N, int IC, int OC, matmul_epilogue e) {
    TIMED(OP_MM_F, inner.infer_matmul_forward(be, out, pre, inp, w, b, N, IC, OC, e));
}
static void p_mm_b(backend *be, void *dinp, float *dw, float *db, const void *dout,
                   const void *inp, const void *w, int N, int IC, int OC) {
    TIMED(OP_MM_B, inner.matmul_backward(be, dinp, dw, db, dout, inp, w, N, IC, OC));
}
static void p_gelu_f(backend *be, void *out, const void *inp, size_t n) {
    TIMED(OP_GELU_F, inner.gelu_forward(be, out, inp, n));
}
static void p_gelu_b(backend *be, void *dinp, const void *inp, const void *dout, size_t n) {
    TIMED(OP_GELU_B, inner.gelu_backward(be, dinp, inp, dout, n));
}
static void p_att_f(backend *be, void *out, void *att, const void *qkv, const int32_t *mask,
                    int B, int T, int C, int NH, float p, uint64_t seed, uint64_t off) {
    TIMED(OP_ATT_F, inner.attention_forward(be, out, att, qkv, mask, B, T, C, NH, p, seed, off));
}
static void p_att_b(backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv,
                    const void *att, const int32_t *mask, int B, int T, int C, int NH, float p,
                    uint64_t seed, uint64_t off) {
    TIMED(OP_ATT_B, inner.attention_backward(be, dqkv, scratch, dout, qkv, att, mask, B, T, C,
                                             NH, p, seed, off));
}
static void p_drop_f(backend *be, void *out, const void *inp, size_t n, float p, uint64_t seed,
                     uint64_t off) {
    TIMED(OP_DROP_F, inner.dropout_forward(be, out, inp, n, p, seed, off));
}
static void p_drop_b(backend *be, void *dinp, const void *dout, size_t n, float p,
                     uint64_t seed, uint64_t off) {
    TIMED(OP_DROP_B, inner.dropout_backward(be, dinp, dout, n, p, seed, off));
}
static void p_xent_f(backend *be, float *losses, float *probs, const void *logits,
                     const int32_t *t, int N, int V) {
    TIMED(OP_XENT_F, inner.softmax_xent_forward(be, losses, probs, logits, t, N, V));
}
static void p_xent_b(backend *be, void *dl, const float *probs, const int32_t *t, int N, int V,
                     float s) {
    TIMED(OP_XENT_B, inner.softmax_xent_backward(be, dl, probs, t, N, V, s));
}
static void p_pool(backend *be, float *out, const void *inp, const int32_t *mask, int B, int T,
                   int C, int norm) {
    TIMED(OP_POOL, inner.mean_pool_forward(be, out, inp, mask, B, T, C, norm));
}
static int p_norm(backend *be, const float *g, size_t n, double *acc) {
    int rc;
    TIMED(OP_NORM, rc = inner.grad_norm_squared(be, g, n, acc));
    return rc;
}
static void p_scale(backend *be, float *g, size_t n, float s) {
    TIMED(OP_SCALE, inner.scale(be, g, n, s));
}
static void p_adamw(backend *be, float *p, void *pa, const float *g, float *m, float *v,
                    size_t n, float lr, float b1, float b2, float eps, float wd, int t) {
    TIMED(OP_ADAMW, inner.adamw_update(be, p, pa, g, m, v, n, lr, b1, b2, eps, wd, t));
}
static int p_memset(backend *be, void *p, size_t n) {
    int rc;
    TIMED(OP_MEMSET, rc = inner.memset_zero(be, p, n));
    return rc;
}
static int p_copy(backend *be, void *d, const void *s, size_t n) {
    int rc;
    TIMED(OP_COPY, rc = inner.copy_device(be, d, s, n));
    return rc;
}

static void profile_install(backend *be) {
    inner = *be;
    be->embeddings_forward = p_emb_f;
    be->embeddings_backward = p_emb_b;
    be->layernorm_forward = p_ln_f;
    be->layernorm_backward = p_ln_b;
    be->matmul_forward = p_mm_f;
    be->infer_matmul_forward = p_mm_if;
    be->matmul_backward = p_mm_b;
    be->gelu_forward = p_gelu_f;
    be->gelu_backward = p_gelu_b;
    be->attention_forward = p_att_f;
    be->attention_backward = p_att_b;
    be->dropout_forward = p_drop_f;
    be->dropout_backward = p_drop_b;
    be->softmax_xent_forward = p_xent_f;
    be->softmax_xent_backward = p_xent_b;
    be->mean_pool_forward = p_pool;
    be->grad_norm_squared = p_norm;
    be->scale = p_scale;
    be->adamw_update = p_adamw;
    be->memset_zero = p_memset;
    be->copy_device = p_copy;
}

static void profile_reset(void) {
    memset(op_time, 0, sizeof op_time);
    memset(op_calls, 0, sizeof op_calls);
}

static void profile_print(const char *name, double total, int iters) {
    double ops = 0;
    for (int i = 0; i < OP_COUNT; i++) ops += op_time[i];
    printf("# profile %s: per iteration, %d iterations\n", name, iters);
    printf("#   %-22s %10s %7s %8s\n", "op", "ms", "share", "calls");
    for (int i = 0; i < OP_COUNT; i++) {
        if (!op_calls[i]) continue;
        printf("#   %-22s %10.1f %6.1f%% %8ld\n", op_names[i], 1e3 * op_time[i] / iters,
               100 * op_time[i] / total, op_calls[i] / iters);
    }
    printf("#   %-22s %10.1f %6.1f%%\n", "(outside ops)", 1e3 * (total - ops) / iters,
           100 * (total - ops) / total);
}

// ---- cases ---------------------------------------------------------------------------------

static void random_batch(int32_t *ids, int32_t *labels, int32_t *mask, int n, int V, int L) {
    for (int i = 0; i < n; i++) {
        ids[i] = 1 + (int32_t)(rng_uniform(1, (uint64_t)i) * (V - 1));
        labels[i] = (int32_t)(rng_uniform(2, (uint64_t)i) * L);
        mask[i] = 1;
    }
}

// The matmul work of one iteration, GFLOP: the linear layers (2 x tokens x each layer's
// 4C^2 + 2CF weights, the head's C x labels) and attention's QK^T and AV (2 x B T^2 C
// each per layer); training does it three times (forward, dinp, dweight). bench/cpu.sh
// divides it by the sgemm 2048^3 rate of the same run: the case's fraction of the floor.
static double gflop_per_iter(const bert_config *c, bool train, int B, int T, int labels) {
    double n = (double)B * T, C = c->hidden_size, F = c->intermediate_size;
    double linear = 2 * n * (c->num_layers * (4 * C * C + 2 * C * F) + (train ? C * labels : 0));
    double attention = c->num_layers * 4.0 * B * (double)T * T * C;
    return (train ? 3 : 1) * (linear + attention) * 1e-9;
}

static int run_case(backend *be, const char *preset, bool train, int B, int T, int iters,
                    bool profile) {
    bert_config cfg;
    if (bert_config_preset(preset, &cfg)) return 1;
    bert_model *m = NULL;
    int labels_n = 9;
    if (bert_create(&m, be, &cfg, train ? HEAD_TOKEN_CLASSIFICATION : HEAD_EMBEDDING, labels_n,
                    B, T) ||
        bert_init_random(m, 42))
        return 1;
    int n = B * T;
    int32_t *ids = malloc(sizeof(int32_t) * n), *labels = malloc(sizeof(int32_t) * n),
            *mask = malloc(sizeof(int32_t) * n);
    float *emb = malloc(sizeof(float) * B * cfg.hidden_size);
    random_batch(ids, labels, mask, n, cfg.vocab_size, labels_n);
    bert_batch batch = {B, T, ids, NULL, mask, train ? labels : NULL};
    double total = 0, cpu = 0;
    float loss = 0, norm = 0;
    for (int it = -1; it < iters; it++) { // iteration -1 warms up (first-touch of buffers)
        if (it == 0) profile_reset();
        double t0 = now();
        clock_t c0 = clock(); // process CPU time, all threads: robust to a busy machine
        int rc;
        if (train) {
            bert_zero_grad(m);
            rc = bert_forward(m, &batch, true, 7, (uint64_t)it + 1, &loss);
            if (!rc) rc = bert_backward(m);
            if (!rc) rc = bert_step(m, 1e-5f, 0.01f, 1.0f, it + 2, &norm);
        } else {
            rc = bert_forward(m, &batch, false, 0, 0, NULL);
            if (!rc) rc = bert_embeddings(m, emb, true);
        }
        if (rc) return 1;
        if (it >= 0) {
            total += now() - t0;
            cpu += (double)(clock() - c0) / CLOCKS_PER_SEC;
        }
    }
    char name[96];
    bool bf16 = !train && be->infer_dtype == DTYPE_BF16;
    snprintf(name, sizeof name, "%s %s %dx%d%s", preset, train ? "train" : "infer", B, T,
             bf16 ? " bf16" : "");
    printf("{\"case\":\"%s\",\"impl\":\"c\",\"precision\":\"%s\",\"threads\":%d,\"iters\":%d,"
           "\"seconds_per_iter\":%.4f,\"cpu_seconds_per_iter\":%.4f,\"tokens_per_s\":%.1f,"
           "\"gflop_per_iter\":%.1f,\"last_loss\":%.5f}\n",
           name, bf16 ? "bf16" : "fp32", omp_get_max_threads(), iters, total / iters, cpu / iters, n * iters / total,
           gflop_per_iter(&cfg, train, B, T, labels_n), loss);
    if (profile) profile_print(name, total, iters);
    fflush(stdout);
    free(ids), free(labels), free(mask), free(emb);
    bert_destroy(m);
    return 0;
}

int main(int argc, char **argv) {
    int threads = 0, iters = 3;
    const char *only = NULL, *precision = "fp32";
    int infer_b = 32, infer_t = 128;
    bool profile = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--profile")) profile = true;
        else if (!strcmp(argv[i], "--infer-shape") && i + 1 < argc &&
                 sscanf(argv[i + 1], "%dx%d", &infer_b, &infer_t) == 2 && infer_b > 0 &&
                 infer_t > 1 && infer_t <= 512)
            i++;
        else {
            fprintf(stderr,
                    "usage: bench_cpu_bert [--threads N] [--iters N] [--only train|infer] "
                    "[--precision fp32|bf16] [--infer-shape BxT] [--profile]\n");
            return 2;
        }
    }
    if (threads > 0) omp_set_num_threads(threads);
    backend *be = backend_cpu_create(threads);
    if (!be) {
        fprintf(stderr, "bench_cpu_bert: %s\n", error_message());
        return 1;
    }
    // bf16 applies to the infer case only (the training forward stays fp32 in the runner);
    // a benchmark that cannot run what it was asked for says so instead of timing fp32
    if (strcmp(precision, "fp32") != 0) {
        if (strcmp(precision, "bf16") != 0 || be->set_infer_dtype(be, DTYPE_BF16) != 0) {
            fprintf(stderr, "bench_cpu_bert: --precision %s: %s\n", precision,
                    strcmp(precision, "bf16") ? "fp32 or bf16" : error_message());
            be->destroy(be);
            return 2;
        }
    }
    if (profile) profile_install(be);
    int rc = 0;
    if (!only || !strcmp(only, "train")) rc |= run_case(be, "bert-base", true, 8, 128, iters, profile);
    if (!only || !strcmp(only, "infer"))
        rc |= run_case(be, "minilm-l6", false, infer_b, infer_t, iters, profile);
    if (rc) fprintf(stderr, "bench_cpu_bert: %s\n", error_message());
    be->destroy(be);
    return rc;
}
