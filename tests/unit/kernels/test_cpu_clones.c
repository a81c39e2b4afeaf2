// The fp32 ops are compiled once per x86-64 ISA level and the loader picks the widest
// clone the CPU has (kernels/cpu/ops_f32.c). The determinism contract (docs/kernels.md)
// needs every clone to give the same bits: this test compiles the same op source a second
// time here, for baseline x86-64 only (SSE2, no clones), and compares each op of the
// backend — the clone this CPU runs (AVX-512 or AVX2) — with it bitwise, on random inputs.
// Where the build makes no clones (not x86-64 GCC) both sides are the same code.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/ops.h"
#include "kernels/rng.h"
#include "random_floats.h"

CPU_OPS_DECLARE(float, baseline_f32_)
#define REAL float
#define OPS(name) baseline_f32_##name
#define GEMM cblas_sgemm
#define EXP fast_expf
#define ERF fast_erff
#define GELU_GRAD fast_gelu_grad
#define OPS_CLONES
#include "kernels/cpu/ops_template.h"

static uint64_t counter;

static float *random_floats(size_t n) { return random_floats_from(99, 98, &counter, n); }

static float *copy_of(const float *x, size_t n) {
    float *y = malloc(sizeof(float) * n);
    memcpy(y, x, sizeof(float) * n);
    return y;
}

static void same(const char *what, const float *a, const float *b, size_t n) {
    int equal = memcmp(a, b, sizeof(float) * n) == 0;
    if (!equal) printf("clones differ: %s\n", what);
    CHECK(equal);
}

// B, T, C, NH chosen so that no loop length is a multiple of a vector width: the clones'
// remainder loops run too.
enum { B = 3, T = 37, C = 72, NH = 4, N = B * T, F = 4 * C, V = 11 };

static void test_elementwise_and_rows(void) {
    size_t n = (size_t)N * F;
    float *x = random_floats(n), *dy = random_floats(n);
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    cpu_f32_gelu_forward(a, x, n);
    baseline_f32_gelu_forward(b, x, n);
    same("gelu_forward", a, b, n);
    float *ga = random_floats(n), *gb = copy_of(ga, n);
    cpu_f32_gelu_backward(ga, x, dy, n);
    baseline_f32_gelu_backward(gb, x, dy, n);
    same("gelu_backward", ga, gb, n);
    cpu_f32_dropout_forward(a, x, n, 0.1f, 7, 3);
    baseline_f32_dropout_forward(b, x, n, 0.1f, 7, 3);
    same("dropout_forward", a, b, n);
    cpu_f32_dropout_backward(ga, dy, n, 0.1f, 7, 3);
    baseline_f32_dropout_backward(gb, dy, n, 0.1f, 7, 3);
    same("dropout_backward", ga, gb, n);
    CHECK(cpu_f32_sum_squares(x, n) == baseline_f32_sum_squares(x, n));
    cpu_f32_scale(ga, n, 0.37f);
    baseline_f32_scale(gb, n, 0.37f);
    same("scale", ga, gb, n);

    // AdamW, a few steps so that the moments are not trivial
    float *pa = random_floats(n), *pb = copy_of(pa, n);
    float *ma = calloc(n, sizeof(float)), *mb = calloc(n, sizeof(float));
    float *va = calloc(n, sizeof(float)), *vb = calloc(n, sizeof(float));
    for (int t = 1; t <= 3; t++) {
        cpu_f32_adamw_update(pa, dy, ma, va, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        baseline_f32_adamw_update(pb, dy, mb, vb, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
    }
    same("adamw params", pa, pb, n);
    same("adamw m", ma, mb, n);
    same("adamw v", va, vb, n);
    free(pa), free(pb), free(ma), free(mb), free(va), free(vb);

    // LayerNorm with the residual add, forward and backward
    float *res = random_floats((size_t)N * C), *w = random_floats(C), *bias = random_floats(C);
    float *oa = malloc(sizeof(float) * N * C), *ob = malloc(sizeof(float) * N * C);
    float *sa = malloc(sizeof(float) * N * C), *sb = malloc(sizeof(float) * N * C);
    float mean_a[N], mean_b[N], rstd_a[N], rstd_b[N];
    cpu_f32_layernorm_forward(oa, sa, mean_a, rstd_a, x, res, w, bias, N, C, 1e-12f);
    baseline_f32_layernorm_forward(ob, sb, mean_b, rstd_b, x, res, w, bias, N, C, 1e-12f);
    same("layernorm_forward", oa, ob, (size_t)N * C);
    same("layernorm mean", mean_a, mean_b, N);
    same("layernorm rstd", rstd_a, rstd_b, N);
    float *dxa = random_floats((size_t)N * C), *dxb = copy_of(dxa, (size_t)N * C);
    float *dwa = random_floats(C), *dwb = copy_of(dwa, C), *dba = random_floats(C),
          *dbb = copy_of(dba, C);
    cpu_f32_layernorm_backward(dxa, dwa, dba, dy, sa, w, mean_a, rstd_a, N, C);
    baseline_f32_layernorm_backward(dxb, dwb, dbb, dy, sb, w, mean_b, rstd_b, N, C);
    same("layernorm_backward dinp", dxa, dxb, (size_t)N * C);
    same("layernorm_backward dweight", dwa, dwb, C);
    same("layernorm_backward dbias", dba, dbb, C);

    // softmax cross-entropy with an ignored row
    int32_t targets[N];
    for (int i = 0; i < N; i++) targets[i] = i % 5 == 4 ? -100 : i % V;
    float la[N], lb[N];
    float *pra = malloc(sizeof(float) * N * V), *prb = malloc(sizeof(float) * N * V);
    cpu_f32_softmax_xent_forward(la, pra, x, targets, N, V);
    baseline_f32_softmax_xent_forward(lb, prb, x, targets, N, V);
    same("softmax_xent losses", la, lb, N);
    same("softmax_xent probs", pra, prb, (size_t)N * V);
    cpu_f32_softmax_xent_backward(oa, pra, targets, N, V, 0.25f);
    baseline_f32_softmax_xent_backward(ob, prb, targets, N, V, 0.25f);
    same("softmax_xent_backward", oa, ob, (size_t)N * V);

    free(x), free(dy), free(a), free(b), free(ga), free(gb), free(res), free(w), free(bias);
    free(oa), free(ob), free(sa), free(sb), free(dxa), free(dxb), free(dwa), free(dwb);
    free(dba), free(dbb), free(pra), free(prb);
}

static void test_linear_attention_embeddings_pooling(void) {
    // linear with bias + GELU epilogue, and its backward
    float *x = random_floats((size_t)N * C), *w = random_floats((size_t)F * C),
          *bias = random_floats(F), *dy = random_floats((size_t)N * F);
    float *pa = malloc(sizeof(float) * N * F), *pb = malloc(sizeof(float) * N * F);
    float *oa = malloc(sizeof(float) * N * F), *ob = malloc(sizeof(float) * N * F);
    cpu_f32_matmul_forward(oa, pa, x, w, bias, N, C, F, 1);
    baseline_f32_matmul_forward(ob, pb, x, w, bias, N, C, F, 1);
    same("matmul_forward pre", pa, pb, (size_t)N * F);
    same("matmul_forward gelu", oa, ob, (size_t)N * F);
    float *dxa = calloc((size_t)N * C, sizeof(float)), *dxb = calloc((size_t)N * C, sizeof(float));
    float *dwa = calloc((size_t)F * C, sizeof(float)), *dwb = calloc((size_t)F * C, sizeof(float));
    float *dba = calloc(F, sizeof(float)), *dbb = calloc(F, sizeof(float));
    cpu_f32_matmul_backward(dxa, dwa, dba, dy, x, w, N, C, F);
    baseline_f32_matmul_backward(dxb, dwb, dbb, dy, x, w, N, C, F);
    same("matmul_backward dinp", dxa, dxb, (size_t)N * C);
    same("matmul_backward dweight", dwa, dwb, (size_t)F * C);
    same("matmul_backward dbias", dba, dbb, F);

    // attention with a padding mask (one sequence fully visible, others cut) and dropout
    int32_t mask[N];
    for (int i = 0; i < N; i++) mask[i] = (i % T) < T - (i / T) * 9;
    float *qkv = random_floats((size_t)N * 3 * C), *datt = random_floats((size_t)N * C);
    float *aa = malloc(sizeof(float) * N * C), *ab = malloc(sizeof(float) * N * C);
    float *Pa = malloc(sizeof(float) * B * NH * T * T), *Pb = malloc(sizeof(float) * B * NH * T * T);
    cpu_f32_attention_forward(aa, Pa, qkv, mask, B, T, C, NH, 0.1f, 5, 11);
    baseline_f32_attention_forward(ab, Pb, qkv, mask, B, T, C, NH, 0.1f, 5, 11);
    same("attention_forward out", aa, ab, (size_t)N * C);
    same("attention_forward probabilities", Pa, Pb, (size_t)B * NH * T * T);
    float *dqa = calloc((size_t)N * 3 * C, sizeof(float)), *dqb = calloc((size_t)N * 3 * C, sizeof(float));
    cpu_f32_attention_backward(dqa, NULL, datt, qkv, Pa, mask, B, T, C, NH, 0.1f, 5, 11);
    baseline_f32_attention_backward(dqb, NULL, datt, qkv, Pb, mask, B, T, C, NH, 0.1f, 5, 11);
    same("attention_backward", dqa, dqb, (size_t)N * 3 * C);

    // embeddings with repeated ids, and mean pooling
    enum { VOCAB = 13, P = T + 2 };
    int32_t ids[N], types[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 5) % VOCAB, types[i] = i % 2;
    float *wte = random_floats((size_t)VOCAB * C), *wpe = random_floats((size_t)P * C),
          *wtt = random_floats(2 * C);
    cpu_f32_embeddings_forward(aa, ids, types, wte, wpe, wtt, B, T, C, 2);
    baseline_f32_embeddings_forward(ab, ids, types, wte, wpe, wtt, B, T, C, 2);
    same("embeddings_forward", aa, ab, (size_t)N * C);
    float *ea = calloc((size_t)VOCAB * C, sizeof(float)), *eb = calloc((size_t)VOCAB * C, sizeof(float));
    float *epa = calloc((size_t)P * C, sizeof(float)), *epb = calloc((size_t)P * C, sizeof(float));
    float *eta = calloc(2 * C, sizeof(float)), *etb = calloc(2 * C, sizeof(float));
    cpu_f32_embeddings_backward(ea, epa, eta, datt, ids, types, B, T, C, VOCAB, 2);
    baseline_f32_embeddings_backward(eb, epb, etb, datt, ids, types, B, T, C, VOCAB, 2);
    same("embeddings_backward word", ea, eb, (size_t)VOCAB * C);
    same("embeddings_backward position", epa, epb, (size_t)P * C);
    same("embeddings_backward type", eta, etb, 2 * C);
    float pool_a[B * C], pool_b[B * C];
    cpu_f32_mean_pool_forward(pool_a, datt, mask, B, T, C, 1);
    baseline_f32_mean_pool_forward(pool_b, datt, mask, B, T, C, 1);
    same("mean_pool_forward", pool_a, pool_b, (size_t)B * C);

    free(x), free(w), free(bias), free(dy), free(pa), free(pb), free(oa), free(ob);
    free(dxa), free(dxb), free(dwa), free(dwb), free(dba), free(dbb), free(qkv), free(datt);
    free(aa), free(ab), free(Pa), free(Pb), free(dqa), free(dqb), free(wte), free(wpe);
    free(wtt), free(ea), free(eb), free(epa), free(epb), free(eta), free(etb);
}

int main(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    printf("this CPU runs the %s clone of the ops\n",
           __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
               ? "x86-64-v4 (AVX-512)"
           : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "x86-64-v3 (AVX2)"
                                                                               : "baseline");
#endif
    cpu_ops_set_threads(2);
    test_elementwise_and_rows();
    test_linear_attention_embeddings_pooling();
    return check_summary();
}
