// Every CUDA op against the CPU backend's op (the fp32 reference), forward and backward,
// on fresh random inputs, with written outputs poisoned (NaN) before each run; then,
// when the BERT model is built in (gpu_model.c), one training step and 20 steps of loss.
// Without a visible GPU: prints "skipped" and exits 77 (CTest SKIP_RETURN_CODE).
//
// Inputs are rounded to bf16 before they reach either backend, so both see the same
// numbers and the difference measures the GPU's arithmetic alone. Measure: relative norm
// ||gpu - cpu|| / ||cpu|| over the whole output; NaN anywhere fails.
// Tolerances (docs/cuda.md):
//   TOL_BF16 1e-2    outputs stored in bf16 (one rounding: 2^-9 ~ 2e-3 relative, plus
//                    fp32-vs-double accumulation inside the op)
//   TOL_CHAIN 2e-2   attention backward: several GEMMs with bf16 intermediates
//   TOL_F32 1e-4     fp32 outputs from bf16-exact inputs (GEMM and column sums in fp32)
//   TOL_EXACT 1e-6   fp32 elementwise (scale, AdamW, conversions)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/backend.h"
#include "runner/error.h"
#include "tests/gpu/gpu_test.h"

#define TOL_BF16 1e-2
#define TOL_CHAIN 2e-2
#define TOL_F32 1e-4
#define TOL_EXACT 1e-6

backend *gt_cpu, *gt_gpu;

// ---- random numbers (xorshift64*, fixed seed per run, different per draw) ---------------

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t next_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

float gt_uniform(void) { return (float)(next_u64() >> 40) / 16777216.0f; }

int gt_randint(int lo, int hi) { return lo + (int)(next_u64() % (uint64_t)(hi - lo)); }

// Round to the nearest bf16 (ties to even), returned as float.
float gt_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf, NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

// Values in [-scale, scale], never zero (zeros hide unwritten outputs), bf16-exact.
static void fill_random(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) {
        float v = (2.0f * gt_uniform() - 1.0f) * scale;
        if (fabsf(v) < 1e-3f * scale) v = v < 0 ? -1e-3f * scale : 1e-3f * scale;
        x[i] = gt_round_bf16(v);
    }
}

// ---- tensors on both backends -------------------------------------------------------------

enum { KIND_ACT, KIND_F32, KIND_I32 };

typedef struct {
    void *c, *g;  // the buffer on the CPU and on the GPU
    size_t n;
    int kind;
} pair;

static void die(const char *what) {
    fprintf(stderr, "gpu test: %s failed: %s (exit %d)\n", what, error_message(), error_code());
    exit(1);
}

static size_t elem_size(const backend *be, int kind) {
    return kind == KIND_ACT ? backend_act_size(be) : 4;
}

static pair pair_new(int kind, size_t n) {
    pair p = {NULL, NULL, n, kind};
    p.c = gt_cpu->alloc(gt_cpu, n * elem_size(gt_cpu, kind));
    p.g = gt_gpu->alloc(gt_gpu, n * elem_size(gt_gpu, kind));
    if (!p.c || !p.g) die("alloc");
    return p;
}

static void pair_free(pair *p) {
    gt_cpu->free(gt_cpu, p->c);
    gt_gpu->free(gt_gpu, p->g);
    p->c = p->g = NULL;
}

// Upload host values (fp32, or int32 for KIND_I32) to both backends.
void gt_upload(backend *be, void *dst, const void *host, size_t n, int is_act) {
    if (!is_act || be->act_dtype == DTYPE_F32) {
        if (be->copy_to_device(be, dst, host, n * 4)) die("copy_to_device");
        return;
    }
    float *staging = be->alloc(be, n * sizeof(float));
    if (!staging) die("alloc staging");
    if (be->copy_to_device(be, staging, host, n * sizeof(float))) die("copy_to_device");
    if (be->f32_to_act(be, dst, staging, n)) die("f32_to_act");
    if (be->synchronize(be)) die("synchronize");
    be->free(be, staging);
}

void gt_download(backend *be, float *host, const void *src, size_t n, int is_act) {
    if (!is_act || be->act_dtype == DTYPE_F32) {
        if (be->copy_to_host(be, host, src, n * 4)) die("copy_to_host");
        return;
    }
    float *staging = be->alloc(be, n * sizeof(float));
    if (!staging) die("alloc staging");
    if (be->act_to_f32(be, staging, src, n)) die("act_to_f32");
    if (be->copy_to_host(be, host, staging, n * sizeof(float))) die("copy_to_host");
    be->free(be, staging);
}

static void pair_set(pair *p, const void *host) {
    gt_upload(gt_cpu, p->c, host, p->n, p->kind == KIND_ACT);
    gt_upload(gt_gpu, p->g, host, p->n, p->kind == KIND_ACT);
}

// Fresh random values on both; returns them (malloc'd) for ops that need the host copy.
static float *pair_random(pair *p, float scale) {
    float *h = malloc(p->n * sizeof(float));
    fill_random(h, p->n, scale);
    pair_set(p, h);
    return h;
}

static void pair_poison(pair *p) {
    float *h = malloc(p->n * sizeof(float));
    for (size_t i = 0; i < p->n; i++) h[i] = NAN;
    pair_set(p, h);
    free(h);
}

static pair pair_ints(const int32_t *host, size_t n) {
    pair p = pair_new(KIND_I32, n);
    pair_set(&p, host);
    return p;
}

// ---- comparison ---------------------------------------------------------------------------

int gt_compare(const char *name, const float *ref, const float *got, size_t n, double tol) {
    double num = 0, den = 0;
    size_t nan_at = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(ref[i])) {
            if (nan_at == (size_t)-1) nan_at = i;
            continue;
        }
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int ok = nan_at == (size_t)-1 && rel <= tol;
    if (nan_at != (size_t)-1)
        printf("  %-44s NaN at %zu (ref %g, gpu %g)           FAIL\n", name, nan_at,
               (double)ref[nan_at], (double)got[nan_at]);
    else
        printf("  %-44s rel %.2e  tol %.0e  %s\n", name, rel, tol, ok ? "ok" : "FAIL");
    CHECK(ok);
    return ok;
}

static void pair_compare(const char *name, pair *p, double tol) {
    float *hc = malloc(p->n * sizeof(float)), *hg = malloc(p->n * sizeof(float));
    gt_download(gt_cpu, hc, p->c, p->n, p->kind == KIND_ACT);
    gt_download(gt_gpu, hg, p->g, p->n, p->kind == KIND_ACT);
    gt_compare(name, hc, hg, p->n, tol);
    free(hc);
    free(hg);
}

// Bitwise equality of two GPU results (determinism of a reduction).
static void gpu_same(const char *name, const void *a, const void *b, size_t bytes) {
    unsigned char *ha = malloc(bytes), *hb = malloc(bytes);
    if (gt_gpu->copy_to_host(gt_gpu, ha, a, bytes) || gt_gpu->copy_to_host(gt_gpu, hb, b, bytes))
        die("copy_to_host");
    int same = memcmp(ha, hb, bytes) == 0;
    printf("  %-44s %s\n", name, same ? "bitwise equal on rerun: ok" : "differs on rerun: FAIL");
    CHECK(same);
    free(ha);
    free(hb);
}

// Both backends ran: the GPU must report no failure.
static void gpu_sync(const char *op) {
    int rc = gt_gpu->synchronize(gt_gpu);
    if (rc) printf("  %s: GPU error %d: %s\n", op, rc, error_message());
    CHECK_INT(rc, 0);
}

// ---- the ops ------------------------------------------------------------------------------

static void test_conversions(void) {
    printf("conversions\n");
    size_t n = 1000;
    pair a = pair_new(KIND_ACT, n);
    float *h = pair_random(&a, 3.0f), *back = malloc(n * sizeof(float));
    gt_download(gt_gpu, back, a.g, n, 1);
    gt_compare("f32_to_act -> act_to_f32 (bf16-exact values)", h, back, n, 0.0);
    free(h);
    free(back);
    pair_free(&a);
}

static void test_embeddings(int with_types) {
    printf("embeddings (token types %s)\n", with_types ? "given" : "NULL");
    int B = 3, T = 37, C = 96, V = 50, P = 64, TT = 2, offset = 2;
    size_t N = (size_t)B * T;
    int32_t *ids = malloc(N * sizeof(int32_t)), *types = malloc(N * sizeof(int32_t));
    for (size_t i = 0; i < N; i++) {
        ids[i] = gt_randint(0, V / 3);  // few distinct ids: many repeats per row
        types[i] = gt_randint(0, TT);
    }
    pair pid = pair_ints(ids, N), ptt = pair_ints(types, N);
    pair wte = pair_new(KIND_F32, (size_t)V * C), wpe = pair_new(KIND_F32, (size_t)P * C),
         wtt = pair_new(KIND_F32, (size_t)TT * C), out = pair_new(KIND_ACT, N * C);
    free(pair_random(&wte, 0.5f));
    free(pair_random(&wpe, 0.5f));
    free(pair_random(&wtt, 0.5f));
    pair_poison(&out);
    const int32_t *tc = with_types ? ptt.c : NULL, *tg = with_types ? ptt.g : NULL;
    gt_cpu->embeddings_forward(gt_cpu, out.c, pid.c, tc, wte.c, wpe.c, wtt.c, B, T, C, offset);
    gt_gpu->embeddings_forward(gt_gpu, out.g, pid.g, tg, wte.g, wpe.g, wtt.g, B, T, C, offset);
    gpu_sync("embeddings_forward");
    pair_compare("embeddings_forward out", &out, TOL_BF16);

    pair dout = pair_new(KIND_ACT, N * C);
    free(pair_random(&dout, 1.0f));
    // the gradients accumulate: start from random values, not zeros
    free(pair_random(&wte, 0.5f));
    free(pair_random(&wpe, 0.5f));
    free(pair_random(&wtt, 0.5f));
    pair wte2 = pair_new(KIND_F32, (size_t)V * C);
    if (gt_gpu->copy_device(gt_gpu, wte2.g, wte.g, (size_t)V * C * 4)) die("copy_device");
    gt_cpu->embeddings_backward(gt_cpu, wte.c, wpe.c, wtt.c, dout.c, pid.c, tc, B, T, C, V, offset);
    gt_gpu->embeddings_backward(gt_gpu, wte.g, wpe.g, wtt.g, dout.g, pid.g, tg, B, T, C, V, offset);
    gt_gpu->embeddings_backward(gt_gpu, wte2.g, NULL, NULL, dout.g, pid.g, tg, B, T, C, V, offset);
    gpu_sync("embeddings_backward");
    pair_compare("embeddings_backward dwte", &wte, TOL_F32);
    pair_compare("embeddings_backward dwpe", &wpe, TOL_F32);
    pair_compare("embeddings_backward dwtt", &wtt, TOL_F32);
    gpu_same("embeddings_backward dwte", wte.g, wte2.g, (size_t)V * C * 4);
    pair *all[] = {&pid, &ptt, &wte, &wpe, &wtt, &out, &dout, &wte2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
    free(ids);
    free(types);
}

// C a multiple of 8 takes the 16-byte kernels on the GPU, other C the scalar ones.
static void test_layernorm(int with_residual, int C) {
    printf("layernorm C=%d (residual %s)\n", C, with_residual ? "fused" : "none");
    int N = 111;
    size_t n = (size_t)N * C;
    pair inp = pair_new(KIND_ACT, n), res = pair_new(KIND_ACT, n), out = pair_new(KIND_ACT, n),
         sum = pair_new(KIND_ACT, n), mean = pair_new(KIND_F32, N), rstd = pair_new(KIND_F32, N),
         w = pair_new(KIND_F32, C), b = pair_new(KIND_F32, C);
    free(pair_random(&inp, 2.0f));
    free(pair_random(&res, 2.0f));
    free(pair_random(&w, 1.5f));
    free(pair_random(&b, 0.5f));
    pair *poisoned[] = {&out, &sum, &mean, &rstd};
    for (int i = 0; i < 4; i++) pair_poison(poisoned[i]);
    gt_cpu->layernorm_forward(gt_cpu, out.c, with_residual ? sum.c : NULL, mean.c, rstd.c, inp.c,
                              with_residual ? res.c : NULL, w.c, b.c, N, C, 1e-12f);
    gt_gpu->layernorm_forward(gt_gpu, out.g, with_residual ? sum.g : NULL, mean.g, rstd.g, inp.g,
                              with_residual ? res.g : NULL, w.g, b.g, N, C, 1e-12f);
    gpu_sync("layernorm_forward");
    pair_compare("layernorm_forward out", &out, TOL_BF16);
    if (with_residual) pair_compare("layernorm_forward sum", &sum, TOL_BF16);
    pair_compare("layernorm_forward mean", &mean, TOL_BF16);
    pair_compare("layernorm_forward rstd", &rstd, TOL_BF16);

    // backward from the same normalised input and statistics on both sides
    const pair *x = with_residual ? &sum : &inp;
    float *hx = malloc(n * sizeof(float)), *hm = malloc(N * sizeof(float)),
          *hr = malloc(N * sizeof(float));
    gt_download(gt_cpu, hx, x->c, n, 1);
    gt_download(gt_cpu, hm, mean.c, N, 0);
    gt_download(gt_cpu, hr, rstd.c, N, 0);
    for (size_t i = 0; i < n; i++) hx[i] = gt_round_bf16(hx[i]);
    pair xin = pair_new(KIND_ACT, n);
    pair_set(&xin, hx);
    pair_set(&mean, hm);
    pair_set(&rstd, hr);
    pair dout = pair_new(KIND_ACT, n), dinp = pair_new(KIND_ACT, n), dw = pair_new(KIND_F32, C),
         db = pair_new(KIND_F32, C), dw2 = pair_new(KIND_F32, C);
    free(pair_random(&dout, 1.0f));
    free(pair_random(&dinp, 1.0f));
    free(pair_random(&dw, 1.0f));
    free(pair_random(&db, 1.0f));
    if (gt_gpu->copy_device(gt_gpu, dw2.g, dw.g, C * 4)) die("copy_device");
    gt_cpu->layernorm_backward(gt_cpu, dinp.c, dw.c, db.c, dout.c, xin.c, w.c, mean.c, rstd.c, N, C);
    gt_gpu->layernorm_backward(gt_gpu, dinp.g, dw.g, db.g, dout.g, xin.g, w.g, mean.g, rstd.g, N, C);
    gt_gpu->layernorm_backward(gt_gpu, NULL, dw2.g, NULL, dout.g, xin.g, w.g, mean.g, rstd.g, N, C);
    gpu_sync("layernorm_backward");
    pair_compare("layernorm_backward dinp (+=)", &dinp, TOL_BF16);
    pair_compare("layernorm_backward dweight (+=)", &dw, TOL_F32);
    pair_compare("layernorm_backward dbias (+=)", &db, TOL_F32);
    gpu_same("layernorm_backward dweight", dw.g, dw2.g, C * 4);
    free(hx);
    free(hm);
    free(hr);
    pair *all[] = {&inp, &res, &out, &sum, &mean, &rstd, &w, &b, &xin, &dout, &dinp, &dw, &db, &dw2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

// OC = 9 is the job's classifier: leading dimensions that are no multiple of 8.
static void test_matmul(int gelu, int odd_bias, int OC) {
    printf("matmul OC=%d (%s, bias %s)\n", OC, gelu ? "GELU epilogue" : "no epilogue",
           odd_bias ? "at an odd offset" : "aligned");
    int N = 111, IC = 96;
    pair inp = pair_new(KIND_ACT, (size_t)N * IC), w = pair_new(KIND_ACT, (size_t)OC * IC),
         bias_buf = pair_new(KIND_ACT, (size_t)OC + 1), out = pair_new(KIND_ACT, (size_t)N * OC),
         pre = pair_new(KIND_ACT, (size_t)N * OC);
    free(pair_random(&inp, 1.0f));
    free(pair_random(&w, 0.2f));
    free(pair_random(&bias_buf, 0.5f));
    pair_poison(&out);
    pair_poison(&pre);
    size_t shift = odd_bias ? 1 : 0;
    const char *bc = (const char *)bias_buf.c + shift * backend_act_size(gt_cpu);
    const char *bg = (const char *)bias_buf.g + shift * backend_act_size(gt_gpu);
    matmul_epilogue ep = gelu ? EPILOGUE_GELU : EPILOGUE_NONE;
    gt_cpu->matmul_forward(gt_cpu, out.c, gelu ? pre.c : NULL, inp.c, w.c, bc, N, IC, OC, ep);
    gt_gpu->matmul_forward(gt_gpu, out.g, gelu ? pre.g : NULL, inp.g, w.g, bg, N, IC, OC, ep);
    gpu_sync("matmul_forward");
    pair_compare("matmul_forward out", &out, TOL_BF16);
    if (gelu) pair_compare("matmul_forward pre", &pre, TOL_BF16);

    pair dout = pair_new(KIND_ACT, (size_t)N * OC), dinp = pair_new(KIND_ACT, (size_t)N * IC),
         dw = pair_new(KIND_F32, (size_t)OC * IC), db = pair_new(KIND_F32, OC);
    free(pair_random(&dout, 1.0f));
    free(pair_random(&dinp, 1.0f));
    free(pair_random(&dw, 1.0f));
    free(pair_random(&db, 1.0f));
    gt_cpu->matmul_backward(gt_cpu, dinp.c, dw.c, db.c, dout.c, inp.c, w.c, N, IC, OC);
    gt_gpu->matmul_backward(gt_gpu, dinp.g, dw.g, db.g, dout.g, inp.g, w.g, N, IC, OC);
    gpu_sync("matmul_backward");
    pair_compare("matmul_backward dinp (+=)", &dinp, TOL_BF16);
    pair_compare("matmul_backward dweight (+=, fp32)", &dw, TOL_F32);
    pair_compare("matmul_backward dbias (+=)", &db, TOL_F32);
    pair *all[] = {&inp, &w, &bias_buf, &out, &pre, &dout, &dinp, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

// n a multiple of 8 takes the 16-byte path on the GPU, other n the scalar one.
static void test_gelu(size_t n) {
    printf("gelu n=%zu\n", n);
    pair inp = pair_new(KIND_ACT, n), out = pair_new(KIND_ACT, n), dout = pair_new(KIND_ACT, n),
         dinp = pair_new(KIND_ACT, n);
    free(pair_random(&inp, 4.0f));
    free(pair_random(&dout, 1.0f));
    free(pair_random(&dinp, 1.0f));
    pair_poison(&out);
    gt_cpu->gelu_forward(gt_cpu, out.c, inp.c, n);
    gt_gpu->gelu_forward(gt_gpu, out.g, inp.g, n);
    gt_cpu->gelu_backward(gt_cpu, dinp.c, inp.c, dout.c, n);
    gt_gpu->gelu_backward(gt_gpu, dinp.g, inp.g, dout.g, n);
    gpu_sync("gelu");
    pair_compare("gelu_forward out", &out, TOL_BF16);
    pair_compare("gelu_backward dinp (+=)", &dinp, TOL_BF16);
    pair *all[] = {&inp, &out, &dout, &dinp};
    for (size_t i = 0; i < 4; i++) pair_free(all[i]);
}

static void test_dropout(float p, size_t n, int in_place) {
    printf("dropout p=%.2f n=%zu%s\n", (double)p, n, in_place ? " in place" : "");
    uint64_t seed = 42, offset = 123456;
    pair inp = pair_new(KIND_ACT, n), out = pair_new(KIND_ACT, n), dout = pair_new(KIND_ACT, n),
         dinp = pair_new(KIND_ACT, n);
    free(pair_random(&inp, 1.0f));
    free(pair_random(&dout, 1.0f));
    free(pair_random(&dinp, 1.0f));
    pair_poison(&out);
    pair *dst = in_place ? &inp : &out;  // the model drops out in place
    gt_cpu->dropout_forward(gt_cpu, dst->c, inp.c, n, p, seed, offset);
    gt_gpu->dropout_forward(gt_gpu, dst->g, inp.g, n, p, seed, offset);
    gt_cpu->dropout_backward(gt_cpu, dinp.c, dout.c, n, p, seed, offset);
    gt_gpu->dropout_backward(gt_gpu, dinp.g, dout.g, n, p, seed, offset);
    gpu_sync("dropout");
    pair_compare("dropout_forward out", dst, TOL_BF16);
    pair_compare("dropout_backward dinp (+=)", &dinp, TOL_BF16);
    // the same mask, element for element
    float *hc = malloc(n * sizeof(float)), *hg = malloc(n * sizeof(float));
    gt_download(gt_cpu, hc, dst->c, n, 1);
    gt_download(gt_gpu, hg, dst->g, n, 1);
    size_t mismatched = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        mismatched += (hc[i] == 0.0f) != (hg[i] == 0.0f);
        dropped += hg[i] == 0.0f;
    }
    printf("  %-44s %zu mismatches, %zu of %zu dropped\n", "dropout mask", mismatched, dropped, n);
    CHECK_INT(mismatched, 0);
    if (p > 0) CHECK(dropped > 0);
    free(hc);
    free(hg);
    pair *all[] = {&inp, &out, &dout, &dinp};
    for (size_t i = 0; i < 4; i++) pair_free(all[i]);
}

// The GPU's paths: head size 64 takes the fused forward (writing att when kept, dropout
// on the fly) and, for T <= 128, the fused backward; other head sizes the unfused ones.
static void test_attention(int T, int C, int NH, float p, int keep_att) {
    int hs64 = C / NH == 64;
    printf("attention T=%d C=%d NH=%d p=%.2f att %s (%s forward%s)\n", T, C, NH, (double)p,
           keep_att ? "kept" : "NULL", hs64 ? "fused" : "unfused",
           keep_att ? (hs64 && T <= 128 ? ", fused backward" : ", unfused backward") : "");
    int B = 3;
    size_t tok = (size_t)B * T, tt = (size_t)B * NH * T * T;
    int32_t *mask = malloc(tok * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? T : gt_randint(1, T);  // padding after len; at least one key
        for (int t = 0; t < T; t++) mask[b * T + t] = t < len;
    }
    pair pm = pair_ints(mask, tok);
    pair qkv = pair_new(KIND_ACT, tok * 3 * C), out = pair_new(KIND_ACT, tok * C),
         att = pair_new(KIND_ACT, tt);
    free(pair_random(&qkv, 2.0f));
    pair_poison(&out);
    pair_poison(&att);
    uint64_t seed = 7, offset = 99;
    gt_cpu->attention_forward(gt_cpu, out.c, keep_att ? att.c : NULL, qkv.c, pm.c, B, T, C, NH, p,
                              seed, offset);
    gt_gpu->attention_forward(gt_gpu, out.g, keep_att ? att.g : NULL, qkv.g, pm.g, B, T, C, NH, p,
                              seed, offset);
    gpu_sync("attention_forward");
    pair_compare("attention_forward out", &out, TOL_BF16);
    if (keep_att) {
        pair_compare("attention_forward att", &att, TOL_BF16);
        pair dout = pair_new(KIND_ACT, tok * C), dqkv = pair_new(KIND_ACT, tok * 3 * C),
             scratch = pair_new(KIND_ACT, tt);
        free(pair_random(&dout, 1.0f));
        free(pair_random(&dqkv, 1.0f));
        pair_poison(&scratch);
        gt_cpu->attention_backward(gt_cpu, dqkv.c, scratch.c, dout.c, qkv.c, att.c, pm.c, B, T, C,
                                   NH, p, seed, offset);
        gt_gpu->attention_backward(gt_gpu, dqkv.g, scratch.g, dout.g, qkv.g, att.g, pm.g, B, T, C,
                                   NH, p, seed, offset);
        gpu_sync("attention_backward");
        pair_compare("attention_backward dqkv (+=)", &dqkv, TOL_CHAIN);
        pair_free(&dout);
        pair_free(&dqkv);
        pair_free(&scratch);
    }
    pair_free(&pm);
    pair_free(&qkv);
    pair_free(&out);
    pair_free(&att);
    free(mask);
}

static void test_softmax_xent(int V) {
    printf("softmax cross-entropy V=%d\n", V);
    int N = 50;
    int32_t *targets = malloc(N * sizeof(int32_t));
    int counted = 0;
    for (int i = 0; i < N; i++) {
        targets[i] = i % 5 == 3 ? -100 : gt_randint(0, V);
        counted += targets[i] != -100;
    }
    pair pt = pair_ints(targets, N);
    pair logits = pair_new(KIND_ACT, (size_t)N * V), losses = pair_new(KIND_F32, N),
         probs = pair_new(KIND_F32, (size_t)N * V), dlogits = pair_new(KIND_ACT, (size_t)N * V);
    free(pair_random(&logits, 5.0f));
    pair_poison(&losses);
    pair_poison(&probs);
    pair_poison(&dlogits);
    gt_cpu->softmax_xent_forward(gt_cpu, losses.c, probs.c, logits.c, pt.c, N, V);
    gt_gpu->softmax_xent_forward(gt_gpu, losses.g, probs.g, logits.g, pt.g, N, V);
    gpu_sync("softmax_xent_forward");
    pair_compare("softmax_xent_forward losses", &losses, TOL_F32);
    pair_compare("softmax_xent_forward probs", &probs, TOL_F32);
    // backward from the same probabilities
    float *hp = malloc((size_t)N * V * sizeof(float));
    gt_download(gt_cpu, hp, probs.c, (size_t)N * V, 0);
    pair_set(&probs, hp);
    gt_cpu->softmax_xent_backward(gt_cpu, dlogits.c, probs.c, pt.c, N, V, 1.0f / (float)counted);
    gt_gpu->softmax_xent_backward(gt_gpu, dlogits.g, probs.g, pt.g, N, V, 1.0f / (float)counted);
    gpu_sync("softmax_xent_backward");
    pair_compare("softmax_xent_backward dlogits", &dlogits, TOL_BF16);
    free(hp);
    free(targets);
    pair *all[] = {&pt, &logits, &losses, &probs, &dlogits};
    for (size_t i = 0; i < 5; i++) pair_free(all[i]);
}

static void test_mean_pool(int normalize) {
    printf("mean pool (normalize %d)\n", normalize);
    int B = 4, T = 33, C = 96;
    int32_t *mask = malloc((size_t)B * T * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int len = gt_randint(1, T + 1);
        for (int t = 0; t < T; t++) mask[b * T + t] = t < len;
    }
    pair pm = pair_ints(mask, (size_t)B * T);
    pair inp = pair_new(KIND_ACT, (size_t)B * T * C), out = pair_new(KIND_F32, (size_t)B * C);
    free(pair_random(&inp, 1.0f));
    pair_poison(&out);
    gt_cpu->mean_pool_forward(gt_cpu, out.c, inp.c, pm.c, B, T, C, normalize);
    gt_gpu->mean_pool_forward(gt_gpu, out.g, inp.g, pm.g, B, T, C, normalize);
    gpu_sync("mean_pool_forward");
    pair_compare("mean_pool_forward out", &out, TOL_F32);
    free(mask);
    pair_free(&pm);
    pair_free(&inp);
    pair_free(&out);
}

static void test_optimiser(void) {
    printf("optimiser\n");
    size_t n = 300007;  // more than one grid's worth of elements per thread
    pair g = pair_new(KIND_F32, n), p = pair_new(KIND_F32, n), m = pair_new(KIND_F32, n),
         v = pair_new(KIND_F32, n), pact = pair_new(KIND_ACT, n);
    float *hg = pair_random(&g, 1e-2f);
    free(pair_random(&p, 0.1f));
    free(pair_random(&m, 1e-3f));
    float *hv = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) hv[i] = gt_round_bf16(1e-6f + 1e-5f * gt_uniform());
    pair_set(&v, hv);
    double nc = 0, ng = 0;
    CHECK_INT(gt_cpu->grad_norm_squared(gt_cpu, g.c, n, &nc), 0);
    CHECK_INT(gt_gpu->grad_norm_squared(gt_gpu, g.g, n, &ng), 0);
    float fnc = (float)nc, fng = (float)ng;
    gt_compare("grad_norm_squared", &fnc, &fng, 1, 1e-5);
    gt_cpu->scale(gt_cpu, g.c, n, 0.37f);
    gt_gpu->scale(gt_gpu, g.g, n, 0.37f);
    gpu_sync("scale");
    pair_compare("scale", &g, TOL_EXACT);
    pair_poison(&pact);
    for (int t = 1; t <= 3; t++) {
        gt_cpu->adamw_update(gt_cpu, p.c, NULL, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.999f, 1e-8f,
                             0.01f, t);
        gt_gpu->adamw_update(gt_gpu, p.g, pact.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.999f, 1e-8f,
                             0.01f, t);
    }
    gpu_sync("adamw_update");
    pair_compare("adamw_update params (3 steps)", &p, TOL_EXACT * 10);
    pair_compare("adamw_update m", &m, TOL_EXACT);
    pair_compare("adamw_update v", &v, TOL_EXACT);
    // the bf16 copy is the rounded master weight
    float *hp = malloc(n * sizeof(float)), *ha = malloc(n * sizeof(float));
    gt_download(gt_gpu, hp, p.g, n, 0);
    gt_download(gt_gpu, ha, pact.g, n, 1);
    for (size_t i = 0; i < n; i++) hp[i] = gt_round_bf16(hp[i]);
    gt_compare("adamw_update params_act == bf16(params)", hp, ha, n, 0.0);
    free(hp);
    free(ha);
    free(hg);
    free(hv);
    pair *all[] = {&g, &p, &m, &v, &pact};
    for (size_t i = 0; i < 5; i++) pair_free(all[i]);
}

int main(void) {
    // The CUDA backend is the module librunner_cuda.so (kernels/backend.c loads it).
    int devices = backend_cuda_module_device_count();
    if (devices < 0) die("backend_cuda_module_device_count");
    if (devices == 0) {
        // What CI can check without a GPU: creation fails cleanly, as GPU_FAULT (81),
        // with a reason (the runner then falls back to the CPU or exits 81).
        backend *none = backend_create("cuda", 0, 0);
        CHECK(none == NULL);
        CHECK_INT(error_code(), EXIT_GPU_FAULT);
        CHECK(strstr(error_message(), "cuda: ") != NULL);
        printf("gpu tests: backend_cuda_create without a GPU: exit %d, \"%s\"\n", error_code(),
               error_message());
        if (none) none->destroy(none);
        if (check_failed) return check_summary();
        printf("gpu tests: skipped: no CUDA device visible\n");
        return 77;
    }
    gt_cpu = backend_cpu_create(0);
    if (!gt_cpu) die("backend_cpu_create");
    gt_gpu = backend_create("cuda", 0, 0);
    if (!gt_gpu) die("backend_cuda_create");
    printf("gpu tests on %d device(s); measure ||gpu-cpu||/||cpu||\n", devices);

    test_conversions();
    test_embeddings(1);
    test_embeddings(0);
    test_layernorm(1, 96);
    test_layernorm(0, 96);
    test_layernorm(1, 100);
    test_layernorm(1, 768);
    test_matmul(0, 0, 80);
    test_matmul(1, 0, 80);
    test_matmul(0, 1, 80);
    test_matmul(0, 0, 9);
    test_gelu(5000);
    test_gelu(4999);
    test_dropout(0.1f, 10007, 0);
    test_dropout(0.1f, 10000, 1);
    test_dropout(0.0f, 10000, 0);
    test_attention(37, 96, 3, 0.1f, 1);   // head size 32: unfused both ways, dropout
    test_attention(37, 96, 3, 0.0f, 0);   // head size 32 without att: unfused, att in scratch
    test_attention(130, 128, 2, 0.1f, 1); // head size 64, T > 128: fused forward, unfused backward
    test_attention(37, 128, 2, 0.1f, 1);  // fused both ways, partial tiles, dropout
    test_attention(128, 128, 2, 0.1f, 1); // fused both ways, whole tiles, dropout
    test_attention(128, 128, 2, 0.0f, 1); // fused both ways, no dropout
    test_attention(5, 128, 2, 0.1f, 1);   // fused both ways, one short tile
    test_attention(130, 128, 2, 0.0f, 0); // fused forward without att (inference)
    test_attention(37, 128, 2, 0.0f, 0);  // the same, one partial tile
    test_softmax_xent(9);
    test_softmax_xent(1500);
    test_mean_pool(0);
    test_mean_pool(1);
    test_optimiser();

    // The check paths on their own: a second CUDA backend with every GEMM through the
    // cuBLAS fallback and the unfused attention, on the shapes the defaults take fused.
    setenv("RUNNER_CUDA_GEMM", "cublas", 1);
    setenv("RUNNER_CUDA_ATTENTION", "unfused", 1);
    backend *alt = backend_create("cuda", 0, 0);
    unsetenv("RUNNER_CUDA_GEMM");
    unsetenv("RUNNER_CUDA_ATTENTION");
    if (!alt) die("backend_cuda_create (RUNNER_CUDA_GEMM=cublas RUNNER_CUDA_ATTENTION=unfused)");
    backend *fast = gt_gpu;
    gt_gpu = alt;
    printf("-- again with RUNNER_CUDA_GEMM=cublas RUNNER_CUDA_ATTENTION=unfused --\n");
    test_matmul(0, 0, 80);
    test_matmul(1, 1, 80);
    test_matmul(0, 0, 9);
    test_attention(37, 128, 2, 0.1f, 1);
    test_attention(128, 128, 2, 0.0f, 0);
    gt_gpu = fast;
    alt->destroy(alt);

    gt_model_tests();

    gt_gpu->destroy(gt_gpu);
    gt_cpu->destroy(gt_cpu);
    return check_summary();
}
