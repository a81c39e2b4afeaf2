// bert-base on the CUDA backend at sequence 128: training tokens/s and MFU, inference
// tokens/s at batch 32 x 128 and 1 x 128, then the time per op of one training step.
// Prints a Markdown table for docs/BENCHMARKS.md. Exits 77 ("skipped") without a GPU.
//
// FLOP per token (docs/BENCHMARKS.md, REFERENCE.md): training 6 P + 12 L C T, with P the
// parameters inside matmuls; inference a third of it. MFU divides by the dense bf16 peak
// of an H100 SXM, 989 TFLOP/s (RUNNER_PEAK_TFLOPS overrides it for other GPUs).
//
//   bench_gpu [--steps N] [--batch B]
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/model/bert.h"

enum { SEQ = 128, LABELS = 9, MAX_OPS = 32 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "bench_gpu: %s failed: %s (exit %d)\n", what, error_message(), error_code());
    exit(error_code() ? error_code() : 1);
}

// ---- time per op: a backend whose ops synchronise around the real CUDA op -------------

static backend *real;       // the CUDA backend
static int profiling;       // wrappers time only while set
typedef struct {
    const char *name;
    int calls;
    double seconds;
} op_time;
static op_time ops[MAX_OPS];
static int num_ops;

static double op_start(void) {
    if (!profiling) return 0;
    real->synchronize(real);
    return now_s();
}

static void op_end(const char *name, double t0) {
    if (!profiling) return;
    real->synchronize(real);
    double dt = now_s() - t0;
    int i = 0;
    while (i < num_ops && strcmp(ops[i].name, name) != 0) i++;
    if (i == num_ops) {
        if (num_ops == MAX_OPS) return;
        ops[num_ops++].name = name;
    }
    ops[i].calls++;
    ops[i].seconds += dt;
}

#define TIMED(name, call)                                                                  \
    do {                                                                                   \
        double t0_ = op_start();                                                           \
        call;                                                                              \
        op_end(name, t0_);                                                                 \
    } while (0)

static void p_embeddings_forward(backend *be, void *out, const int32_t *ids, const int32_t *tt,
                                 const float *wte, const float *wpe, const float *wtt, int B,
                                 int T, int C, int po) {
    (void)be;
    TIMED("embeddings_forward", real->embeddings_forward(real, out, ids, tt, wte, wpe, wtt, B, T, C, po));
}
static void p_embeddings_backward(backend *be, float *dwte, float *dwpe, float *dwtt,
                                  const void *dout, const int32_t *ids, const int32_t *tt,
                                  int B, int T, int C, int V, int po) {
    (void)be;
    TIMED("embeddings_backward",
          real->embeddings_backward(real, dwte, dwpe, dwtt, dout, ids, tt, B, T, C, V, po));
}
static void p_layernorm_forward(backend *be, void *out, void *sum, float *mean, float *rstd,
                                const void *inp, const void *res, const float *w,
                                const float *b, int N, int C, float eps) {
    (void)be;
    TIMED("layernorm_forward",
          real->layernorm_forward(real, out, sum, mean, rstd, inp, res, w, b, N, C, eps));
}
static void p_layernorm_backward(backend *be, void *dinp, float *dw, float *db, const void *dout,
                                 const void *inp, const float *w, const float *mean,
                                 const float *rstd, int N, int C) {
    (void)be;
    TIMED("layernorm_backward",
          real->layernorm_backward(real, dinp, dw, db, dout, inp, w, mean, rstd, N, C));
}
static void p_matmul_forward(backend *be, void *out, void *pre, const void *inp, const void *w,
                             const void *b, int N, int IC, int OC, matmul_epilogue ep) {
    (void)be;
    TIMED(ep == EPILOGUE_GELU ? "matmul_forward+gelu" : "matmul_forward",
          real->matmul_forward(real, out, pre, inp, w, b, N, IC, OC, ep));
}
static void p_matmul_backward(backend *be, void *dinp, float *dw, float *db, const void *dout,
                              const void *inp, const void *w, int N, int IC, int OC) {
    (void)be;
    TIMED("matmul_backward", real->matmul_backward(real, dinp, dw, db, dout, inp, w, N, IC, OC));
}
static void p_gelu_forward(backend *be, void *out, const void *inp, size_t n) {
    (void)be;
    TIMED("gelu_forward", real->gelu_forward(real, out, inp, n));
}
static void p_gelu_backward(backend *be, void *dinp, const void *inp, const void *dout, size_t n) {
    (void)be;
    TIMED("gelu_backward", real->gelu_backward(real, dinp, inp, dout, n));
}
static void p_attention_forward(backend *be, void *out, void *att, const void *qkv,
                                const int32_t *mask, int B, int T, int C, int NH, float p,
                                uint64_t seed, uint64_t off) {
    (void)be;
    TIMED(att ? "attention_forward" : "attention_forward (fused)",
          real->attention_forward(real, out, att, qkv, mask, B, T, C, NH, p, seed, off));
}
static void p_attention_backward(backend *be, void *dqkv, void *scratch, const void *dout,
                                 const void *qkv, const void *att, const int32_t *mask, int B,
                                 int T, int C, int NH, float p, uint64_t seed, uint64_t off) {
    (void)be;
    TIMED("attention_backward", real->attention_backward(real, dqkv, scratch, dout, qkv, att, mask,
                                                         B, T, C, NH, p, seed, off));
}
static void p_dropout_forward(backend *be, void *out, const void *inp, size_t n, float p,
                              uint64_t seed, uint64_t off) {
    (void)be;
    TIMED("dropout_forward", real->dropout_forward(real, out, inp, n, p, seed, off));
}
static void p_dropout_backward(backend *be, void *dinp, const void *dout, size_t n, float p,
                               uint64_t seed, uint64_t off) {
    (void)be;
    TIMED("dropout_backward", real->dropout_backward(real, dinp, dout, n, p, seed, off));
}
static void p_softmax_xent_forward(backend *be, float *losses, float *probs, const void *logits,
                                   const int32_t *targets, int N, int V) {
    (void)be;
    TIMED("softmax_xent_forward", real->softmax_xent_forward(real, losses, probs, logits, targets, N, V));
}
static void p_softmax_xent_backward(backend *be, void *dlogits, const float *probs,
                                    const int32_t *targets, int N, int V, float s) {
    (void)be;
    TIMED("softmax_xent_backward", real->softmax_xent_backward(real, dlogits, probs, targets, N, V, s));
}
static int p_grad_norm_squared(backend *be, const float *g, size_t n, double *acc) {
    (void)be;
    int rc;
    TIMED("grad_norm_squared", rc = real->grad_norm_squared(real, g, n, acc));
    return rc;
}
static void p_scale(backend *be, float *g, size_t n, float s) {
    (void)be;
    TIMED("scale", real->scale(real, g, n, s));
}
static void p_adamw_update(backend *be, float *p, void *pa, const float *g, float *m, float *v,
                           size_t n, float lr, float b1, float b2, float eps, float wd, int t) {
    (void)be;
    TIMED("adamw_update", real->adamw_update(real, p, pa, g, m, v, n, lr, b1, b2, eps, wd, t));
}

static backend profiled(backend *cuda) {
    backend p = *cuda;
    p.embeddings_forward = p_embeddings_forward;
    p.embeddings_backward = p_embeddings_backward;
    p.layernorm_forward = p_layernorm_forward;
    p.layernorm_backward = p_layernorm_backward;
    p.matmul_forward = p_matmul_forward;
    p.matmul_backward = p_matmul_backward;
    p.gelu_forward = p_gelu_forward;
    p.gelu_backward = p_gelu_backward;
    p.attention_forward = p_attention_forward;
    p.attention_backward = p_attention_backward;
    p.dropout_forward = p_dropout_forward;
    p.dropout_backward = p_dropout_backward;
    p.softmax_xent_forward = p_softmax_xent_forward;
    p.softmax_xent_backward = p_softmax_xent_backward;
    p.grad_norm_squared = p_grad_norm_squared;
    p.scale = p_scale;
    p.adamw_update = p_adamw_update;
    return p;
}

// ---- the benchmark -----------------------------------------------------------------------

static uint64_t lcg = 88172645463325252ULL;
static int rand_below(int n) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((lcg >> 33) % (uint64_t)n);
}

static void make_batch(bert_batch *b, int B, int V, int32_t *ids, int32_t *types, int32_t *mask,
                       int32_t *labels) {
    for (int i = 0; i < B * SEQ; i++) {
        ids[i] = 1000 + rand_below(V - 1000);  // real token ids, no padding: full sequences
        types[i] = 0;
        mask[i] = 1;
        labels[i] = rand_below(LABELS);
    }
    b->B = B;
    b->T = SEQ;
    b->ids = ids;
    b->token_types = types;
    b->mask = mask;
    b->labels = labels;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int main(int argc, char **argv) {
    int steps = 20, B = 32;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0) steps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0) B = atoi(argv[++i]);
    }
    if (steps < 3) steps = 3;
    int devices = backend_cuda_module_device_count(); // loads librunner_cuda.so
    if (devices < 0) die("backend_cuda_module_device_count");
    if (devices == 0) {
        printf("bench_gpu: skipped: no CUDA device visible\n");
        return 77;
    }
    real = backend_create("cuda", 0, 0);
    if (!real) die("backend_cuda_create");
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) memset(&prop, 0, sizeof prop);
    double peak = 989e12;
    const char *env_peak = getenv("RUNNER_PEAK_TFLOPS");
    if (env_peak && atof(env_peak) > 0) peak = atof(env_peak) * 1e12;

    backend prof = profiled(real);
    bert_config cfg;
    if (bert_config_preset("bert-base", &cfg)) die("bert_config_preset");
    bert_model *m = NULL;
    if (bert_create(&m, &prof, &cfg, HEAD_TOKEN_CLASSIFICATION, LABELS, B, SEQ)) die("bert_create");
    if (bert_init_random(m, 1)) die("bert_init_random");

    size_t N = (size_t)B * SEQ;
    int32_t *ids = malloc(N * 4), *types = malloc(N * 4), *mask = malloc(N * 4),
            *labels = malloc(N * 4);
    bert_batch batch;
    make_batch(&batch, B, cfg.vocab_size, ids, types, mask, labels);
    double L = cfg.num_layers, C = cfg.hidden_size, F = cfg.intermediate_size;
    double matmul_params = L * (4 * C * C + 2 * C * F) + C * LABELS;
    double train_flop_per_token = 6 * matmul_params + 12 * L * C * SEQ;
    double infer_flop_per_token = train_flop_per_token / 3;

    // training: forward + backward + AdamW (with clipping), full batches
    double *times = malloc(sizeof(double) * (size_t)steps);
    float loss = 0, gnorm = 0;
    for (int s = 0; s < 3 + steps; s++) {
        if (real->synchronize(real)) die("synchronize");
        double t0 = now_s();
        bert_zero_grad(m);
        if (bert_forward(m, &batch, true, 5, (uint64_t)s, &loss)) die("bert_forward");
        if (bert_backward(m)) die("bert_backward");
        if (bert_step(m, 5e-5f, 0.01f, 1.0f, s + 1, &gnorm)) die("bert_step");
        if (real->synchronize(real)) die("synchronize");
        if (s >= 3) times[s - 3] = now_s() - t0;  // 3 warm-up steps: plans, scratch, caches
    }
    double step_s = median(times, steps);
    double train_tps = (double)N / step_s;
    double mfu = train_tps * train_flop_per_token / peak;

    // inference: forward without labels or dropout at B x 128 and 1 x 128
    double infer_ms[2], infer_tps[2];
    int infer_batch[2] = {B, 1};
    for (int k = 0; k < 2; k++) {
        bert_batch ib = batch;
        ib.B = infer_batch[k];
        ib.labels = NULL;
        for (int s = 0; s < 3 + steps; s++) {
            if (real->synchronize(real)) die("synchronize");
            double t0 = now_s();
            if (bert_forward(m, &ib, false, 0, 0, NULL)) die("bert_forward (inference)");
            if (real->synchronize(real)) die("synchronize");
            if (s >= 3) times[s - 3] = now_s() - t0;
        }
        double t = median(times, steps);
        infer_ms[k] = t * 1e3;
        infer_tps[k] = (double)ib.B * SEQ / t;
    }

    // time per op over a few training steps, each op synchronised on both sides
    profiling = 1;
    int prof_steps = 3;
    for (int s = 0; s < prof_steps; s++) {
        bert_zero_grad(m);
        if (bert_forward(m, &batch, true, 5, 1000 + (uint64_t)s, &loss)) die("bert_forward");
        if (bert_backward(m)) die("bert_backward");
        if (bert_step(m, 5e-5f, 0.01f, 1.0f, 100 + s, &gnorm)) die("bert_step");
    }
    profiling = 0;

    const char *attention = getenv("RUNNER_CUDA_ATTENTION");
    printf("\n## bench_gpu: bert-base, sequence %d, %s (%d SMs), %d timed steps (median), "
           "attention %s\n\n",
           SEQ, prop.name[0] ? prop.name : "unknown GPU", prop.multiProcessorCount, steps,
           attention && strcmp(attention, "unfused") == 0 ? "unfused (forced)" : "fused where it applies");
    printf("| measure | value |\n|---|---|\n");
    printf("| training step, batch %d x %d | %.2f ms |\n", B, SEQ, step_s * 1e3);
    printf("| training tokens/s | %.0f |\n", train_tps);
    printf("| training FLOP per token | %.1f M |\n", train_flop_per_token / 1e6);
    printf("| training MFU (peak %.0f TFLOP/s) | %.1f %% |\n", peak / 1e12, 100 * mfu);
    printf("| inference batch %d x %d | %.3f ms, %.0f tokens/s, %.1f %% MFU |\n", B, SEQ,
           infer_ms[0], infer_tps[0], 100 * infer_tps[0] * infer_flop_per_token / peak);
    printf("| inference batch 1 x %d | %.3f ms, %.0f tokens/s |\n", SEQ, infer_ms[1], infer_tps[1]);
    printf("| loss after the timed steps (sanity) | %.4f |\n", (double)loss);

    double total = 0;
    for (int i = 0; i < num_ops; i++) total += ops[i].seconds;
    printf("\n| op (synchronised, per training step) | calls | ms | share |\n|---|---|---|---|\n");
    for (int i = 0; i < num_ops; i++)
        for (int j = i + 1; j < num_ops; j++)
            if (ops[j].seconds > ops[i].seconds) {
                op_time tmp = ops[i];
                ops[i] = ops[j];
                ops[j] = tmp;
            }
    for (int i = 0; i < num_ops; i++)
        printf("| %s | %d | %.3f | %.1f %% |\n", ops[i].name, ops[i].calls / prof_steps,
               ops[i].seconds * 1e3 / prof_steps, total > 0 ? 100 * ops[i].seconds / total : 0.0);

    free(times);
    free(ids);
    free(types);
    free(mask);
    free(labels);
    bert_destroy(m);
    real->destroy(real);
    return 0;
}
