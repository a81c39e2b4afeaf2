// The CPU backend's bf16 GEMMs of inference (kernels/cpu/gemm_bf16.h, --precision bf16):
// accuracy against an exact reference, bitwise equality for 1, 2 and 3 threads, the GELU
// epilogue, and the weight cache following every write into the weights. Skipped (77)
// where oneDNN has no bf16 instructions on this CPU or the build has no oneDNN.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/backend.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/ops.h"
#include "kernels/rng.h"
#include "random_floats.h"

static uint64_t counter;

static float *random_floats(size_t n) { return random_floats_from(17, 18, &counter, n); }

// The error bound of one output element y = sum_k a_k w_k + b computed from bf16(a),
// bf16(w) with fp32 accumulation:
//   rounding a and w to bf16 (8 significand bits, nearest even): relative 2^-8 each, so
//   2^-7 + 2^-16 per product; summing K products and the bias in fp32: (K + 1) 2^-24 of
//   the sum of magnitudes (any summation order, fused or not).
// Taken with a 1 % margin: |y - exact| <= 1.01 (2^-7 + 2^-16 + (K+1) 2^-24) (sum_k |a_k
// w_k| + |b|). The error of fp32 inputs alone is ~K 2^-24: a result within 2^-16 of the
// exact one everywhere would mean that the inputs were not rounded to bf16.
static double bound_factor(int K) {
    return 1.01 * (ldexp(1, -7) + ldexp(1, -16) + (K + 1) * ldexp(1, -24));
}

typedef struct {
    double worst;     // max |y - exact| / bound
    double max_rel;   // max |y - exact| / (sum |a w| + |b|)
} accuracy;

static accuracy check_against_exact(const float *y, const float *a, const float *w,
                                    const float *b, int N, int K, int OC) {
    accuracy acc = {0, 0};
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double exact = b ? b[o] : 0, mag = b ? fabs(b[o]) : 0;
            for (int k = 0; k < K; k++) {
                double p = (double)a[(size_t)i * K + k] * w[(size_t)o * K + k];
                exact += p;
                mag += fabs(p);
            }
            double err = fabs(y[(size_t)i * OC + o] - exact);
            double ratio = err / (bound_factor(K) * mag);
            if (ratio > acc.worst) acc.worst = ratio;
            if (err / mag > acc.max_rel) acc.max_rel = err / mag;
        }
    return acc;
}

// N rows of 2 tiles (600 -> 304 + 296), OC of 3 (1100 -> 368 + 368 + 364), a head of 9
// labels (one narrow tile), and sizes that are no multiple of a vector width.
static const int SHAPES[][3] = {{600, 72, 1100}, {37, 128, 9}, {130, 384, 1536}, {5, 33, 17}};

static void test_accuracy_and_threads(void) {
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        int N = SHAPES[s][0], K = SHAPES[s][1], OC = SHAPES[s][2];
        float *a = random_floats((size_t)N * K), *w = random_floats((size_t)OC * K);
        float *b = random_floats(OC);
        size_t n_out = (size_t)N * OC;
        float *y[3], *pre[3], *g[3];
        for (int t = 0; t < 3; t++) {
            cpu_ops_set_threads(t + 1);
            y[t] = malloc(sizeof(float) * n_out);
            pre[t] = malloc(sizeof(float) * n_out);
            g[t] = malloc(sizeof(float) * n_out);
            cpu_bf16_matmul_forward(y[t], NULL, a, w, s % 2 ? NULL : b, N, K, OC, 0);
            cpu_bf16_matmul_forward(g[t], pre[t], a, w, s % 2 ? NULL : b, N, K, OC, 1);
            CHECK_INT(cpu_bf16_take_error(), 0);
        }
        accuracy acc = check_against_exact(y[0], a, w, s % 2 ? NULL : b, N, K, OC);
        printf("%dx%dx%d%s: max error %.3g of the bound, %.3g relative to sum |a w|\n", N, K,
               OC, s % 2 ? "" : " + bias", acc.worst, acc.max_rel);
        CHECK(acc.worst <= 1.0);
        CHECK(acc.max_rel > ldexp(1, -16)); // the operands were rounded to bf16
        for (int t = 1; t < 3; t++) {
            CHECK(memcmp(y[0], y[t], sizeof(float) * n_out) == 0);
            CHECK(memcmp(pre[0], pre[t], sizeof(float) * n_out) == 0);
            CHECK(memcmp(g[0], g[t], sizeof(float) * n_out) == 0);
        }
        // the GELU epilogue: pre-activation as without GELU, then the fp32 GELU op
        CHECK(memcmp(pre[0], y[0], sizeof(float) * n_out) == 0);
        float *expect = malloc(sizeof(float) * n_out);
        cpu_f32_gelu_forward(expect, y[0], n_out);
        CHECK(memcmp(g[0], expect, sizeof(float) * n_out) == 0);
        // GELU without `pre`: computed in place in `out`
        cpu_bf16_matmul_forward(expect, NULL, a, w, s % 2 ? NULL : b, N, K, OC, 1);
        CHECK(memcmp(g[0], expect, sizeof(float) * n_out) == 0);
        free(expect);
        for (int t = 0; t < 3; t++) free(y[t]), free(pre[t]), free(g[t]);
        cpu_bf16_freed(w); // memory from outside the backend: its bf16 copy goes by hand
        free(a), free(w), free(b);
    }
}

// Through the backend: weights in backend memory, changed by each op that writes
// parameters; every result must be that of the new values (a stale bf16 copy would give
// the old ones). The reference is the same values in a buffer never seen before.
static void test_cache_follows_writes(void) {
    enum { N = 48, K = 64, OC = 40 };
    backend *be = backend_create("cpu", 0, 2);
    CHECK(be != NULL);
    if (!be) return;
    CHECK_INT(be->set_infer_dtype(be, DTYPE_BF16), 0);
    CHECK_INT(be->infer_dtype, DTYPE_BF16);
    size_t wn = (size_t)OC * K;
    float *w = be->alloc(be, sizeof(float) * wn), *fresh = be->alloc(be, sizeof(float) * wn);
    float *a = random_floats((size_t)N * K), *host = random_floats(wn);
    float *y = malloc(sizeof(float) * N * OC), *expect = malloc(sizeof(float) * N * OC);

#define SAME_AS_FRESH(what)                                                                \
    do {                                                                                   \
        be->infer_matmul_forward(be, y, NULL, a, w, NULL, N, K, OC, EPILOGUE_NONE);        \
        memcpy(fresh, w, sizeof(float) * wn);                                              \
        be->infer_matmul_forward(be, expect, NULL, a, fresh, NULL, N, K, OC, EPILOGUE_NONE); \
        be->free(be, fresh);                                                               \
        fresh = be->alloc(be, sizeof(float) * wn);                                         \
        int same_ = memcmp(y, expect, sizeof(float) * N * OC) == 0;                        \
        if (!same_) printf("stale bf16 weights after %s\n", what);                        \
        CHECK(same_);                                                                      \
        CHECK_INT(be->synchronize(be), 0);                                                 \
    } while (0)

    CHECK_INT(be->copy_to_device(be, w, host, sizeof(float) * wn), 0);
    SAME_AS_FRESH("copy_to_device");
    for (size_t i = 0; i < wn; i++) host[i] = -host[i] * 0.5f;
    CHECK_INT(be->copy_to_device(be, w, host, sizeof(float) * wn), 0);
    SAME_AS_FRESH("a second copy_to_device");
    // a write into part of the matrix (one row) counts too
    CHECK_INT(be->copy_device(be, w + 3 * K, host + 7 * K, sizeof(float) * K), 0);
    SAME_AS_FRESH("copy_device of one row");
    float *grads = random_floats(wn), *m1 = calloc(wn, sizeof(float)), *v1 = calloc(wn, sizeof(float));
    be->adamw_update(be, w, NULL, grads, m1, v1, wn, 0.05f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    SAME_AS_FRESH("adamw_update");
    be->scale(be, w, wn, 3.0f);
    SAME_AS_FRESH("scale");
    CHECK_INT(be->memset_zero(be, w, sizeof(float) * wn), 0);
    SAME_AS_FRESH("memset_zero");
#undef SAME_AS_FRESH

    // freed and allocated again (likely at the same address), then filled by an op
    be->free(be, w);
    w = be->alloc(be, sizeof(float) * wn);
    CHECK_INT(be->copy_to_device(be, w, host, sizeof(float) * wn), 0);
    be->infer_matmul_forward(be, y, NULL, a, w, NULL, N, K, OC, EPILOGUE_NONE);
    cpu_bf16_matmul_forward(expect, NULL, a, host, NULL, N, K, OC, 0);
    CHECK(memcmp(y, expect, sizeof(float) * N * OC) == 0);

    // back to fp32: the fp32 op itself
    CHECK_INT(be->set_infer_dtype(be, DTYPE_F32), 0);
    be->infer_matmul_forward(be, y, NULL, a, w, NULL, N, K, OC, EPILOGUE_NONE);
    cpu_f32_matmul_forward(expect, NULL, a, w, NULL, N, K, OC, 0);
    CHECK(memcmp(y, expect, sizeof(float) * N * OC) == 0);

    be->free(be, w);
    be->free(be, fresh);
    be->destroy(be);
    free(a), free(host), free(y), free(expect), free(grads), free(m1), free(v1);
}

int main(void) {
    char why[256];
    printf("oneDNN ISA: %s\n", cpu_bf16_isa());
    if (!cpu_bf16_supported(why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;
    }
    test_accuracy_and_threads();
    test_cache_follows_writes();
    return check_summary();
}
