// Finite-difference gradient checks of every CPU op, in double precision.
//
// The ops are written once (kernels/cpu/ops_template.h) and compiled twice, for float
// (the backend) and for double (cpu_f64_*). Each check here builds a scalar loss
// L = sum_i w_i out_i with random w, runs the double backward with dout = w, and compares
// every input and parameter gradient with central differences (L(x+h) - L(x-h)) / 2h of
// the double forward: the analytic backward of the same source the fp32 backend runs is
// checked against its own forward to ~1e-7 relative. The float build is then checked
// against the double one (forward and backward, ~1e-5; the float build uses the
// vectorisable exp/erf of kernels/cpu/fast_math.h where the double one uses libm) and for
// bitwise independence of the thread count. Inputs are random, bounded away from zero.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blas_core.h"
#include "check.h"
#include "kernels/backend.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/ops.h"
#include "kernels/rng.h"
#include "runner/error.h"
#include "runner/model/schedule.h"

static uint64_t rand_state = 42;

static double rand_uniform(void) { return rng_uniform(12345, rand_state++); }

// Uniform in +-[0.1, 1]: never zero, never tiny.
static double rand_value(void) {
    double u = rand_uniform();
    double mag = 0.1 + 0.9 * rand_uniform();
    return u < 0.5 ? -mag : mag;
}

static double *rand_array(size_t n) {
    double *x = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = rand_value();
    return x;
}

static double *zeros(size_t n) { return calloc(n, sizeof(double)); }

static float *to_float(const double *x, size_t n) {
    float *f = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

// Central differences of f with respect to every element of x against `analytic`.
static void check_gradient(const char *what, loss_fn f, void *ctx, double *x,
                           const double *analytic, size_t n) {
    const double h = 1e-5;
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + h;
        double lp = f(ctx);
        x[i] = saved - h;
        double lm = f(ctx);
        x[i] = saved;
        double numeric = (lp - lm) / (2 * h);
        double err = fabs(numeric - analytic[i]) / (1e-6 + fabs(numeric));
        if (err > worst) {
            worst = err;
            worst_i = i;
        }
    }
    printf("gradcheck %-28s n=%-5zu worst relative error %.2e (at %zu)\n", what, n, worst,
           worst_i);
    CHECK(worst < 1e-6);
}

// |a - b| <= atol + rtol |b| element-wise, reporting the worst one.
static void check_close_f32(const char *what, const float *a, const double *b, size_t n,
                            double atol, double rtol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double excess = fabs(a[i] - b[i]) - (atol + rtol * fabs(b[i]));
        if (excess > worst) worst = excess;
    }
    if (worst > 0) printf("f32 vs f64 %s: off by %.3g beyond tolerance\n", what, worst);
    CHECK(worst <= 0);
}

// ---- embeddings ------------------------------------------------------------------------

enum { EB = 2, ET = 5, EC = 6, EV = 7, EP = 9, ETT = 2, EPOS = 2 };

typedef struct {
    int32_t ids[EB * ET], types[EB * ET];
    double *wte, *wpe, *wtt, *w, *out;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    cpu_f64_embeddings_forward(c->out, c->ids, c->types, c->wte, c->wpe, c->wtt, EB, ET, EC,
                               EPOS);
    return dot(c->out, c->w, EB * ET * EC);
}

static void test_embeddings(void) {
    emb_ctx c;
    for (int i = 0; i < EB * ET; i++) {
        c.ids[i] = i % 3 == 0 ? 4 : (int32_t)(rand_uniform() * EV); // repeats on purpose
        c.types[i] = i % 2;
    }
    c.wte = rand_array(EV * EC);
    c.wpe = rand_array(EP * EC);
    c.wtt = rand_array(ETT * EC);
    c.w = rand_array(EB * ET * EC);
    c.out = zeros(EB * ET * EC);
    double *dwte = zeros(EV * EC), *dwpe = zeros(EP * EC), *dwtt = zeros(ETT * EC);
    cpu_f64_embeddings_backward(dwte, dwpe, dwtt, c.w, c.ids, c.types, EB, ET, EC, EV, EPOS);
    check_gradient("embeddings dwte", emb_loss, &c, c.wte, dwte, EV * EC);
    check_gradient("embeddings dwpe", emb_loss, &c, c.wpe, dwpe, EP * EC);
    check_gradient("embeddings dwtt", emb_loss, &c, c.wtt, dwtt, ETT * EC);

    float *o32 = malloc(sizeof(float) * EB * ET * EC);
    float *wte = to_float(c.wte, EV * EC), *wpe = to_float(c.wpe, EP * EC);
    float *wtt = to_float(c.wtt, ETT * EC);
    emb_loss(&c);
    cpu_f32_embeddings_forward(o32, c.ids, c.types, wte, wpe, wtt, EB, ET, EC, EPOS);
    check_close_f32("embeddings forward", o32, c.out, EB * ET * EC, 1e-6, 1e-6);
    free(o32), free(wte), free(wpe), free(wtt);
    free(c.wte), free(c.wpe), free(c.wtt), free(c.w), free(c.out);
    free(dwte), free(dwpe), free(dwtt);
}

// ---- LayerNorm with the fused residual -----------------------------------------------

enum { LN = 4, LC = 7 };

typedef struct {
    double *inp, *res, *weight, *bias, *w, *out, *sum, *mean, *rstd;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    cpu_f64_layernorm_forward(c->out, c->sum, c->mean, c->rstd, c->inp, c->res, c->weight,
                              c->bias, LN, LC, 1e-12);
    return dot(c->out, c->w, LN * LC);
}

static void test_layernorm(void) {
    ln_ctx c = {rand_array(LN * LC), rand_array(LN * LC), rand_array(LC), rand_array(LC),
                rand_array(LN * LC), zeros(LN * LC), zeros(LN * LC), zeros(LN), zeros(LN)};
    ln_loss(&c);
    double *dinp = zeros(LN * LC), *dw = zeros(LC), *db = zeros(LC);
    cpu_f64_layernorm_backward(dinp, dw, db, c.w, c.sum, c.weight, c.mean, c.rstd, LN, LC);
    check_gradient("layernorm dinp", ln_loss, &c, c.inp, dinp, LN * LC);
    check_gradient("layernorm dresidual", ln_loss, &c, c.res, dinp, LN * LC);
    check_gradient("layernorm dweight", ln_loss, &c, c.weight, dw, LC);
    check_gradient("layernorm dbias", ln_loss, &c, c.bias, db, LC);

    // fp32 against fp64, forward and backward
    float *inp = to_float(c.inp, LN * LC), *res = to_float(c.res, LN * LC);
    float *wt = to_float(c.weight, LC), *bs = to_float(c.bias, LC), *w = to_float(c.w, LN * LC);
    float out[LN * LC], sum[LN * LC], mean[LN], rstd[LN], dinp32[LN * LC] = {0}, dw32[LC] = {0},
          db32[LC] = {0};
    cpu_f32_layernorm_forward(out, sum, mean, rstd, inp, res, wt, bs, LN, LC, 1e-12f);
    check_close_f32("layernorm forward", out, c.out, LN * LC, 1e-5, 1e-5);
    cpu_f32_layernorm_backward(dinp32, dw32, db32, w, sum, wt, mean, rstd, LN, LC);
    check_close_f32("layernorm dinp", dinp32, dinp, LN * LC, 1e-5, 1e-4);
    check_close_f32("layernorm dweight", dw32, dw, LC, 1e-5, 1e-4);
    // Without a residual and without storing the sum.
    cpu_f32_layernorm_forward(out, NULL, mean, rstd, sum, NULL, wt, bs, LN, LC, 1e-12f);
    check_close_f32("layernorm forward (no residual)", out, c.out, LN * LC, 1e-5, 1e-5);
    free(inp), free(res), free(wt), free(bs), free(w);
    free(c.inp), free(c.res), free(c.weight), free(c.bias), free(c.w), free(c.out), free(c.sum),
        free(c.mean), free(c.rstd), free(dinp), free(dw), free(db);
}

// ---- linear, plain and with the GELU epilogue --------------------------------------------

typedef struct {
    int N, IC, OC, gelu;
    double *inp, *weight, *bias, *w, *out, *pre;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    cpu_f64_matmul_forward(c->out, c->pre, c->inp, c->weight, c->bias, c->N, c->IC, c->OC,
                           c->gelu);
    return dot(c->out, c->w, (size_t)c->N * c->OC);
}

static void test_matmul(int N, int IC, int OC, int gelu) {
    size_t no = (size_t)N * OC, ni = (size_t)N * IC, nw = (size_t)OC * IC;
    mm_ctx c = {N, IC, OC, gelu, rand_array(ni), rand_array(nw), rand_array(OC),
                rand_array(no), zeros(no), zeros(no)};
    mm_loss(&c);
    double *dinp = zeros(ni), *dw = zeros(nw), *db = zeros(OC), *dpre = zeros(no);
    const double *dout = c.w;
    if (gelu) {
        cpu_f64_gelu_backward(dpre, c.pre, c.w, no);
        dout = dpre;
    }
    cpu_f64_matmul_backward(dinp, dw, db, dout, c.inp, c.weight, N, IC, OC);
    char name[64];
    snprintf(name, sizeof name, "matmul%s %dx%dx%d dinp", gelu ? "+gelu" : "", N, IC, OC);
    check_gradient(name, mm_loss, &c, c.inp, dinp, ni);
    snprintf(name, sizeof name, "matmul%s dweight", gelu ? "+gelu" : "");
    check_gradient(name, mm_loss, &c, c.weight, dw, nw);
    snprintf(name, sizeof name, "matmul%s dbias", gelu ? "+gelu" : "");
    check_gradient(name, mm_loss, &c, c.bias, db, OC);

    float *inp = to_float(c.inp, ni), *wt = to_float(c.weight, nw), *bs = to_float(c.bias, OC);
    float *out = malloc(sizeof(float) * no), *pre = malloc(sizeof(float) * no);
    float *dout32 = to_float(dout, no);
    float *dinp32 = calloc(ni, sizeof(float)), *dw32 = calloc(nw, sizeof(float)),
          *db32 = calloc(OC, sizeof(float));
    cpu_f32_matmul_forward(out, pre, inp, wt, bs, N, IC, OC, gelu);
    check_close_f32("matmul forward", out, c.out, no, 1e-5, 1e-5);
    cpu_f32_matmul_backward(dinp32, dw32, db32, dout32, inp, wt, N, IC, OC);
    check_close_f32("matmul dinp", dinp32, dinp, ni, 1e-5, 1e-5);
    check_close_f32("matmul dweight", dw32, dw, nw, 1e-5, 1e-5);
    check_close_f32("matmul dbias", db32, db, OC, 1e-5, 1e-5);
    free(inp), free(wt), free(bs), free(out), free(pre), free(dout32), free(dinp32), free(dw32),
        free(db32);
    free(c.inp), free(c.weight), free(c.bias), free(c.w), free(c.out), free(c.pre);
    free(dinp), free(dw), free(db), free(dpre);
}

// ---- GELU and dropout --------------------------------------------------------------------

enum { EW = 50 };

typedef struct {
    int which; // 0 gelu, 1 dropout
    double *inp, *w, *out;
} ew_ctx;

static double ew_loss(void *p) {
    ew_ctx *c = p;
    if (c->which == 0)
        cpu_f64_gelu_forward(c->out, c->inp, EW);
    else
        cpu_f64_dropout_forward(c->out, c->inp, EW, 0.3f, 7, 100);
    return dot(c->out, c->w, EW);
}

static void test_elementwise(void) {
    ew_ctx c = {0, rand_array(EW), rand_array(EW), zeros(EW)};
    for (int i = 0; i < EW; i++) c.inp[i] *= 3; // cover the tails of the erf
    double *d = zeros(EW);
    cpu_f64_gelu_backward(d, c.inp, c.w, EW);
    check_gradient("gelu", ew_loss, &c, c.inp, d, EW);
    float *x = to_float(c.inp, EW), y[EW];
    ew_loss(&c);
    cpu_f32_gelu_forward(y, x, EW);
    check_close_f32("gelu forward", y, c.out, EW, 1e-6, 1e-6);

    c.which = 1;
    memset(d, 0, sizeof(double) * EW);
    cpu_f64_dropout_backward(d, c.w, EW, 0.3f, 7, 100);
    check_gradient("dropout", ew_loss, &c, c.inp, d, EW);
    // The mask is the rng.h one: element i kept iff dropout_keep(seed, offset + i, p).
    ew_loss(&c);
    int dropped = 0, wrong = 0;
    for (int i = 0; i < EW; i++) {
        int keep = dropout_keep(7, 100 + (uint64_t)i, 0.3f);
        dropped += !keep;
        double want = keep ? c.inp[i] / (1 - (double)0.3f) : 0;
        if (fabs(c.out[i] - want) > 1e-12) wrong++;
    }
    CHECK_INT(wrong, 0);
    CHECK(dropped > 5 && dropped < 30); // about 30% of 50
    free(x), free(c.inp), free(c.w), free(c.out), free(d);
}

// ---- attention with padding mask and dropout ---------------------------------------------

enum { AB = 2, AT = 5, AC = 8, ANH = 2 };

typedef struct {
    float p;
    int32_t mask[AB * AT];
    double *qkv, *w, *out, *att;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    cpu_f64_attention_forward(c->out, c->att, c->qkv, c->mask, AB, AT, AC, ANH, c->p, 99, 5);
    return dot(c->out, c->w, AB * AT * AC);
}

static void test_attention(float p) {
    att_ctx c = {p, {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, rand_array(AB * AT * 3 * AC),
                 rand_array(AB * AT * AC), zeros(AB * AT * AC), zeros(AB * ANH * AT * AT)};
    att_loss(&c);
    // masked keys get probability 0, rows sum to 1
    int bad = 0;
    for (int bh = 0; bh < AB * ANH; bh++)
        for (int t1 = 0; t1 < AT; t1++) {
            double s = 0;
            for (int t2 = 0; t2 < AT; t2++) {
                double a = c.att[((size_t)bh * AT + t1) * AT + t2];
                if (!c.mask[(bh / ANH) * AT + t2] && a != 0) bad++;
                s += a;
            }
            if (fabs(s - 1) > 1e-12) bad++;
        }
    CHECK_INT(bad, 0);
    double *dqkv = zeros(AB * AT * 3 * AC), *scratch = zeros(AB * ANH * AT * AT);
    cpu_f64_attention_backward(dqkv, scratch, c.w, c.qkv, c.att, c.mask, AB, AT, AC, ANH, p, 99,
                               5);
    check_gradient(p > 0 ? "attention (dropout) dqkv" : "attention dqkv", att_loss, &c, c.qkv,
                   dqkv, AB * AT * 3 * AC);

    float *qkv = to_float(c.qkv, AB * AT * 3 * AC), *w = to_float(c.w, AB * AT * AC);
    float out[AB * AT * AC], att[AB * ANH * AT * AT], sc[AB * ANH * AT * AT],
        dq[AB * AT * 3 * AC] = {0};
    cpu_f32_attention_forward(out, att, qkv, c.mask, AB, AT, AC, ANH, p, 99, 5);
    check_close_f32("attention forward", out, c.out, AB * AT * AC, 1e-5, 1e-5);
    cpu_f32_attention_backward(dq, sc, w, qkv, att, c.mask, AB, AT, AC, ANH, p, 99, 5);
    check_close_f32("attention dqkv", dq, dqkv, AB * AT * 3 * AC, 1e-5, 1e-4);
    // att may be NULL in inference: same output
    float out2[AB * AT * AC];
    cpu_f32_attention_forward(out2, NULL, qkv, c.mask, AB, AT, AC, ANH, p, 99, 5);
    CHECK(memcmp(out, out2, sizeof out) == 0);
    free(qkv), free(w), free(c.qkv), free(c.w), free(c.out), free(c.att), free(dqkv),
        free(scratch);
}

// A sequence whose keys are all masked attends to nothing: zeros, not NaN.
static void test_attention_all_masked(void) {
    double *qkv = rand_array(AB * AT * 3 * AC), out[AB * AT * AC], att[AB * ANH * AT * AT];
    int32_t mask[AB * AT] = {1, 1, 0, 1, 1, 0, 0, 0, 0, 0};
    cpu_f64_attention_forward(out, att, qkv, mask, AB, AT, AC, ANH, 0, 0, 0);
    int nonzero = 0, nonfinite = 0;
    for (int i = 0; i < AB * AT * AC; i++) {
        nonfinite += !isfinite(out[i]);
        if (i >= AT * AC) nonzero += out[i] != 0;
    }
    CHECK_INT(nonfinite, 0);
    CHECK_INT(nonzero, 0);
    CHECK(att[2] == 0 && att[0] > 0); // batch 0: key 2 masked, key 0 visible
    free(qkv);
}

// ---- softmax cross-entropy with ignored rows ---------------------------------------------

enum { XN = 6, XV = 5 };

typedef struct {
    int32_t targets[XN];
    double *logits, *probs, *losses;
} xent_ctx;

static double xent_loss(void *p) {
    xent_ctx *c = p;
    cpu_f64_softmax_xent_forward(c->losses, c->probs, c->logits, c->targets, XN, XV);
    double s = 0;
    for (int i = 0; i < XN; i++) s += c->losses[i];
    return s / 4; // 4 counted rows
}

static void test_softmax_xent(void) {
    xent_ctx c = {{0, -100, 3, 4, -100, 2}, rand_array(XN * XV), zeros(XN * XV), zeros(XN)};
    xent_loss(&c);
    CHECK(c.losses[1] == 0 && c.losses[4] == 0);
    // loss of row 0 = -log softmax(logits)[0]
    double z = 0;
    for (int j = 0; j < XV; j++) z += exp(c.logits[j]);
    CHECK_CLOSE(c.losses[0], log(z) - c.logits[0], 1e-12, 1e-12);
    double *d = zeros(XN * XV);
    cpu_f64_softmax_xent_backward(d, c.probs, c.targets, XN, XV, 0.25);
    check_gradient("softmax_xent dlogits", xent_loss, &c, c.logits, d, XN * XV);
    float *l32 = to_float(c.logits, XN * XV), p32[XN * XV], loss32[XN];
    cpu_f32_softmax_xent_forward(loss32, p32, l32, c.targets, XN, XV);
    check_close_f32("softmax_xent losses", loss32, c.losses, XN, 1e-6, 1e-6);
    free(l32), free(c.logits), free(c.probs), free(c.losses), free(d);
}

// ---- mean pooling, optimiser --------------------------------------------------------------

static void test_mean_pool(void) {
    enum { B = 2, T = 3, C = 4 };
    double *x = rand_array(B * T * C), out[B * C];
    int32_t mask[B * T] = {1, 1, 0, 1, 0, 0};
    cpu_f64_mean_pool_forward(out, x, mask, B, T, C, 0);
    for (int c = 0; c < C; c++) {
        CHECK_CLOSE(out[c], (x[c] + x[C + c]) / 2, 1e-15, 1e-15);
        CHECK_CLOSE(out[C + c], x[T * C + c], 1e-15, 1e-15);
    }
    cpu_f64_mean_pool_forward(out, x, mask, B, T, C, 1);
    double n0 = 0;
    for (int c = 0; c < C; c++) n0 += out[c] * out[c];
    CHECK_CLOSE(n0, 1, 1e-14, 0);
    free(x);
}

static void test_optimizer(void) {
    enum { N = 40000 }; // more than one sum_squares chunk
    double *g = rand_array(N);
    double ss = 0;
    for (int i = 0; i < N; i++) ss += g[i] * g[i];
    CHECK_CLOSE(cpu_f64_sum_squares(g, N), ss, 0, 1e-13);
    float *g32 = to_float(g, N);
    cpu_ops_set_threads(1);
    double s1 = cpu_f32_sum_squares(g32, N);
    cpu_ops_set_threads(2);
    double s2 = cpu_f32_sum_squares(g32, N);
    CHECK(s1 == s2);
    cpu_f64_scale(g, 3, 2.0);
    CHECK_CLOSE(g[0], 2 * (double)g32[0], 1e-7, 1e-6);

    // AdamW against the textbook formula over three steps, decay on.
    double p[3] = {0.5, -0.3, 0.2}, m[3] = {0}, v[3] = {0}, pr[3], mr[3] = {0}, vr[3] = {0};
    memcpy(pr, p, sizeof p);
    double grads[3][3] = {{0.1, -0.2, 0.3}, {0.05, 0.1, -0.4}, {-0.3, 0.2, 0.1}};
    double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    for (int t = 1; t <= 3; t++) {
        cpu_f64_adamw_update(p, grads[t - 1], m, v, 3, lr, b1, b2, eps, wd, t);
        for (int i = 0; i < 3; i++) {
            double gi = grads[t - 1][i];
            mr[i] = b1 * mr[i] + (1 - b1) * gi;
            vr[i] = b2 * vr[i] + (1 - b2) * gi * gi;
            double mhat = mr[i] / (1 - pow(b1, t)), vhat = vr[i] / (1 - pow(b2, t));
            pr[i] -= lr * (mhat / (sqrt(vhat) + eps) + wd * pr[i]);
        }
    }
    for (int i = 0; i < 3; i++) CHECK_CLOSE(p[i], pr[i], 1e-12, 1e-9);
    free(g), free(g32);
}

static void test_schedule(void) {
    CHECK_CLOSE(schedule_lr(1.0f, 0, 10, 110), 0.0, 0, 0);
    CHECK_CLOSE(schedule_lr(1.0f, 5, 10, 110), 0.5, 1e-7, 0);
    CHECK_CLOSE(schedule_lr(1.0f, 10, 10, 110), 1.0, 1e-7, 0);
    CHECK_CLOSE(schedule_lr(1.0f, 60, 10, 110), 0.5, 1e-7, 0);
    CHECK_CLOSE(schedule_lr(1.0f, 110, 10, 110), 0.0, 0, 0);
    CHECK_CLOSE(schedule_lr(1.0f, 200, 10, 110), 0.0, 0, 0);
    CHECK_CLOSE(schedule_lr(2.0f, 3, 0, 4), 0.5, 1e-7, 0);
}

// ---- the fp32 ops do not depend on the thread count -----------------------------------------

// Bitwise the same results with 1, 2 and 3 threads (3 > the cores of the build machine:
// threads are oversubscribed, which must not matter either). The linear shapes span
// several GEMM tiles in both dimensions (kernels/cpu/ops_template.h), with ragged last
// tiles, so a tiling that followed the thread count would show here.
static void test_thread_independence(void) {
    enum { N = 1100, IC = 40, OC = 600, B = 3, T = 17, C = 24, NH = 3, RUNS = 3 };
    enum { OUTPUTS = 7 };
    double *tmp;
    tmp = rand_array((size_t)N * IC);
    float *x = to_float(tmp, (size_t)N * IC);
    free(tmp);
    tmp = rand_array((size_t)OC * IC);
    float *wt = to_float(tmp, (size_t)OC * IC);
    free(tmp);
    tmp = rand_array(OC);
    float *bias = to_float(tmp, OC);
    free(tmp);
    tmp = rand_array((size_t)N * OC);
    float *dout = to_float(tmp, (size_t)N * OC);
    free(tmp);
    tmp = rand_array((size_t)B * T * 3 * C);
    float *qkv = to_float(tmp, (size_t)B * T * 3 * C);
    free(tmp);
    tmp = rand_array((size_t)B * T * C);
    float *datt = to_float(tmp, (size_t)B * T * C);
    free(tmp);
    int32_t mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = (i % T) < T - (i / T) * 3;

    float *res[RUNS][OUTPUTS];
    for (int run = 0; run < RUNS; run++) {
        cpu_ops_set_threads(run + 1);
        float *out = malloc(sizeof(float) * N * OC), *gelu = malloc(sizeof(float) * N * OC),
              *dinp = calloc((size_t)N * IC, 4), *dw = calloc((size_t)OC * IC, 4),
              *db = calloc(OC, 4);
        cpu_f32_matmul_forward(out, NULL, x, wt, NULL, N, IC, OC, 0);
        cpu_f32_matmul_forward(gelu, NULL, x, wt, bias, N, IC, OC, 1);
        cpu_f32_matmul_backward(dinp, dw, db, dout, x, wt, N, IC, OC);
        float *ao = malloc(sizeof(float) * B * T * C), *att = malloc(sizeof(float) * B * NH * T * T),
              *dq = calloc((size_t)B * T * 3 * C, 4);
        cpu_f32_attention_forward(ao, att, qkv, mask, B, T, C, NH, 0.1f, 3, 0);
        cpu_f32_attention_backward(dq, NULL, datt, qkv, att, mask, B, T, C, NH, 0.1f, 3, 0);
        free(att);
        res[run][0] = out, res[run][1] = gelu, res[run][2] = dinp, res[run][3] = dw;
        res[run][4] = db, res[run][5] = ao, res[run][6] = dq;
    }
    const char *names[OUTPUTS] = {"matmul", "matmul+bias+gelu", "dinp", "dweight",
                                  "dbias", "attention", "dqkv"};
    size_t sizes[OUTPUTS] = {N * OC, N * OC, N * IC, OC * IC, OC, B * T * C, B * T * 3 * C};
    for (int k = 0; k < OUTPUTS; k++) {
        for (int run = 1; run < RUNS; run++) {
            int same = memcmp(res[0][k], res[run][k], sizes[k] * sizeof(float)) == 0;
            if (!same) printf("thread independence: %s differs between 1 and %d threads\n",
                              names[k], run + 1);
            CHECK(same);
        }
        for (int run = 0; run < RUNS; run++) free(res[run][k]);
    }
    cpu_ops_set_threads(0);
    free(x), free(wt), free(bias), free(dout), free(qkv), free(datt);
}

// ---- the fp32 build's exp and erf against libm ---------------------------------------------

static void test_fast_math(void) {
    double worst_exp = 0, worst_erf = 0;
    for (float x = -87.0f; x <= 0.0f; x += 0.0137f) { // callers pass x <= 0
        double e = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(fast_expf(x) - e) / e);
    }
    for (float x = -6.0f; x <= 6.0f; x += 0.00071f)
        worst_erf = fmax(worst_erf, fabs(fast_erff(x) - erf((double)x)));
    printf("fast_expf worst relative error %.2e, fast_erff worst absolute error %.2e\n",
           worst_exp, worst_erf);
    CHECK(worst_exp < 1.2e-7); // one fp32 ulp
    CHECK(worst_erf < 6e-7);   // Abramowitz-Stegun 7.1.26 plus fp32 rounding
    CHECK(fast_expf(0.0f) == 1.0f);
    CHECK(fast_expf(-1000.0f) >= 0.0f && fast_expf(-1000.0f) < 1e-37f);
    CHECK(fast_expf(-INFINITY) < 1e-37f);
    CHECK(isnan(fast_expf(NAN)));                               // divergence stays visible
    CHECK(isfinite(fast_expf(INFINITY)) && fast_expf(1000.0f) > 1e38f); // clamped at e^88
    CHECK(fast_erff(0.0f) == 0.0f && fast_erff(9.0f) == 1.0f && fast_erff(-9.0f) == -1.0f);
}

// ---- the backend vtable reaches these ops ---------------------------------------------------

static void test_backend(void) {
    error_clear(); // a stale reason from an earlier check must not read as this one
    backend *be = backend_cpu_create(2);
    CHECK(be != NULL);
    if (!be) return;
    CHECK_STR(be->name, "cpu");
    CHECK_INT(backend_act_size(be), 4);
    float *buf = be->alloc(be, 10 * sizeof(float));
    CHECK(buf != NULL && ((uintptr_t)buf % 64) == 0);
    float host[10] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10}, back[10];
    be->copy_to_device(be, buf, host, sizeof host);
    be->gelu_forward(be, buf, buf, 10);
    be->copy_to_host(be, back, buf, sizeof back);
    CHECK_CLOSE(back[0], 0.8413447, 1e-6, 0);
    double acc = 1;
    be->grad_norm_squared(be, host, 10, &acc);
    CHECK_CLOSE(acc, 386, 1e-9, 0);
    be->free(be, buf);
    be->destroy(be);
}

int main(void) {
    blas_core_require();
    cpu_ops_set_threads(2);
    test_embeddings();
    test_layernorm();
    test_matmul(3, 5, 4, 0);
    test_matmul(3, 5, 4, 1);
    test_matmul(131, 3, 2, 0); // more rows than the tests above, bias columns one block
    test_matmul(2, 3, 130, 1); // several bias column blocks
    test_elementwise();
    test_attention(0);
    test_attention(0.2f);
    test_attention_all_masked();
    test_softmax_xent();
    test_mean_pool();
    test_optimizer();
    test_schedule();
    test_thread_independence();
    test_fast_math();
    test_backend();
    return check_summary();
}
