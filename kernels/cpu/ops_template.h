// The body of every CPU op, written once for a generic floating type. Not a normal header:
// kernels/cpu/ops_f32.c and ops_f64.c include it with
//   REAL   the element type (float or double)
//   OPS(x) the function name for op x (cpu_f32_x or cpu_f64_x)
//   GEMM   cblas_sgemm or cblas_dgemm
//   EXP, ERF  the exponential and error function: kernels/cpu/fast_math.h's vectorisable
//          fp32 versions in the float build, libm in the double build (so the gradient
//          checks differentiate exact functions; the float build is compared with it)
//   GELU_GRAD  optional: GELU's derivative in one function (fast_math.h's, one exp for
//          both Gaussians, in the float build); else it is built from EXP and ERF
//   OPS_CLONES  attributes of the ops' loops: in the float build on x86-64, one clone per
//          ISA level picked at load time (see ops_f32.c); empty otherwise
// <tgmath.h> picks expf/exp, erff/erf ... from the argument type, so the float build does
// float math and the double build (used by the finite-difference gradient checks) double.
// Sums over many elements (LayerNorm statistics, softmax denominators, reductions) are
// accumulated in double in both builds.
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "kernels/cpu/gemm_split.h"
#include "kernels/cpu/ops.h"
#include "kernels/rng.h"

// Channels per block for column reductions (parameter gradients): one cache line of fp32.
#define OPS_COL_BLOCK 16

#define OPS_MIN(a, b) ((a) < (b) ? (a) : (b))

// Threads for an op over `work` elements: one below OPS_PARALLEL_MIN. The runner's OpenMP
// threads wait passively (runner/main.c), so waking a second one costs tens of
// microseconds, more than a LayerNorm over a single sentence takes alone (1x32 MiniLM:
// 13 LayerNorms 1.2 ms at 2 threads, 0.1 ms at 1). Every op's result is independent of
// its thread count, so this changes timings only.
#define OPS_PARALLEL_MIN ((size_t)1 << 18)
#define OPS_THREADS_FOR(work) ((size_t)(work) < OPS_PARALLEL_MIN ? 1 : cpu_ops_threads())

static inline REAL OPS(gelu_value)(REAL x) {
    return (REAL)0.5 * x * ((REAL)1 + ERF(x * (REAL)0.70710678118654752440));
}

// d/dx of 0.5 x (1 + erf(x/sqrt2)) = Phi(x) + x phi(x)
static inline REAL OPS(gelu_grad)(REAL x) {
#ifdef GELU_GRAD
    return GELU_GRAD(x);
#else
    REAL cdf = (REAL)0.5 * ((REAL)1 + ERF(x * (REAL)0.70710678118654752440));
    REAL pdf = EXP((REAL)-0.5 * x * x) * (REAL)0.39894228040143267794;
    return cdf + x * pdf;
#endif
}

// ---- row reductions -----------------------------------------------------------------------
// Sums along a row in double with OPS_LANES interleaved accumulators combined in a fixed
// order: no serial dependency chain (a single accumulator costs an add latency per
// element), the same result for any thread count.
#define OPS_LANES 8

static inline double OPS(lanes_total)(const double acc[OPS_LANES]) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// sum x[i]
static inline double OPS(row_sum)(const REAL *x, int n) {
    double acc[OPS_LANES] = {0};
    int i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) acc[j] += x[i + j];
    for (; i < n; i++) acc[i % OPS_LANES] += x[i];
    return OPS(lanes_total)(acc);
}

// sum (x[i] - m)^2
static inline double OPS(row_sum_sq_dev)(const REAL *x, REAL m, int n) {
    double acc[OPS_LANES] = {0};
    int i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) {
            REAL d = x[i + j] - m;
            acc[j] += (double)d * d;
        }
    for (; i < n; i++) {
        REAL d = x[i] - m;
        acc[i % OPS_LANES] += (double)d * d;
    }
    return OPS(lanes_total)(acc);
}

// sum x[i] * y[i]
static inline double OPS(row_dot)(const REAL *x, const REAL *y, int n) {
    double acc[OPS_LANES] = {0};
    int i = 0;
    for (; i + OPS_LANES <= n; i += OPS_LANES)
        for (int j = 0; j < OPS_LANES; j++) acc[j] += (double)x[i + j] * y[i + j];
    for (; i < n; i++) acc[i % OPS_LANES] += (double)x[i] * y[i];
    return OPS(lanes_total)(acc);
}

// max (x[i] + bias[i]) (bias may be NULL); branch-free so that it vectorises
static inline REAL OPS(row_max)(const REAL *x, const REAL *bias, int n) {
    REAL acc[OPS_LANES];
    for (int j = 0; j < OPS_LANES; j++) acc[j] = -INFINITY;
    int i = 0;
    if (bias) {
        for (; i + OPS_LANES <= n; i += OPS_LANES)
            for (int j = 0; j < OPS_LANES; j++) {
                REAL v = x[i + j] + bias[i + j];
                acc[j] = v > acc[j] ? v : acc[j];
            }
    } else {
        for (; i + OPS_LANES <= n; i += OPS_LANES)
            for (int j = 0; j < OPS_LANES; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    }
    for (; i < n; i++) {
        REAL v = bias ? x[i] + bias[i] : x[i];
        acc[i % OPS_LANES] = v > acc[i % OPS_LANES] ? v : acc[i % OPS_LANES];
    }
    REAL mx = acc[0];
    for (int j = 1; j < OPS_LANES; j++) mx = acc[j] > mx ? acc[j] : mx;
    return mx;
}

// ---- embeddings ------------------------------------------------------------------------

OPS_CLONES void OPS(embeddings_forward)(REAL *out, const int32_t *ids, const int32_t *token_types,
                             const REAL *wte, const REAL *wpe, const REAL *wtt, int B, int T,
                             int C, int position_offset) {
    long rows = (long)B * T;
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)rows * C))
    for (long bt = 0; bt < rows; bt++) {
        int t = (int)(bt % T);
        const REAL *we = wte + (size_t)ids[bt] * C;
        const REAL *pe = wpe + (size_t)(position_offset + t) * C;
        REAL *o = out + (size_t)bt * C;
        if (wtt) {
            // HF order: (word + token type) + position
            const REAL *te = wtt + (size_t)(token_types ? token_types[bt] : 0) * C;
            for (int c = 0; c < C; c++) o[c] = (we[c] + te[c]) + pe[c];
        } else {
            for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
        }
    }
}

// Parallel over channel blocks, rows in order inside each: deterministic without atomics
// even when the same token id repeats.
OPS_CLONES void OPS(embeddings_backward)(REAL *dwte, REAL *dwpe, REAL *dwtt, const REAL *dout,
                              const int32_t *ids, const int32_t *token_types, int B, int T,
                              int C, int V, int position_offset) {
    (void)V;
    long rows = (long)B * T;
    int blocks = (C + OPS_COL_BLOCK - 1) / OPS_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)rows * C))
    for (int cb = 0; cb < blocks; cb++) {
        int c0 = cb * OPS_COL_BLOCK, c1 = OPS_MIN(C, c0 + OPS_COL_BLOCK);
        for (long bt = 0; bt < rows; bt++) {
            const REAL *d = dout + (size_t)bt * C;
            int t = (int)(bt % T);
            REAL *gw = dwte ? dwte + (size_t)ids[bt] * C : NULL;
            REAL *gp = dwpe ? dwpe + (size_t)(position_offset + t) * C : NULL;
            REAL *gt = dwtt ? dwtt + (size_t)(token_types ? token_types[bt] : 0) * C : NULL;
            for (int c = c0; c < c1; c++) {
                if (gw) gw[c] += d[c];
                if (gp) gp[c] += d[c];
                if (gt) gt[c] += d[c];
            }
        }
    }
}

// ---- LayerNorm -------------------------------------------------------------------------

OPS_CLONES void OPS(layernorm_forward)(REAL *out, REAL *sum, REAL *mean, REAL *rstd, const REAL *inp,
                            const REAL *residual, const REAL *weight, const REAL *bias, int N,
                            int C, REAL eps) {
#pragma omp parallel num_threads(OPS_THREADS_FOR((size_t)N * C))
    {
        // the residual sum goes to `sum`, or to a row of scratch when it is not kept
        REAL *scratch = residual && !sum ? malloc(sizeof(REAL) * C) : NULL;
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const REAL *x = inp + (size_t)i * C;
            REAL *o = out + (size_t)i * C;
            if (residual) {
                const REAL *r = residual + (size_t)i * C;
                REAL *xs = sum ? sum + (size_t)i * C : scratch;
                for (int c = 0; c < C; c++) xs[c] = x[c] + r[c];
                x = xs;
            }
            REAL m = (REAL)(OPS(row_sum)(x, C) / C);
            double var = OPS(row_sum_sq_dev)(x, m, C);
            REAL rs = (REAL)1 / sqrt((REAL)(var / C) + eps);
            for (int c = 0; c < C; c++) o[c] = (x[c] - m) * rs * weight[c] + bias[c];
            if (mean) mean[i] = m;
            if (rstd) rstd[i] = rs;
        }
        free(scratch);
    }
}

OPS_CLONES void OPS(layernorm_backward)(REAL *dinp, REAL *dweight, REAL *dbias, const REAL *dout,
                             const REAL *inp, const REAL *weight, const REAL *mean,
                             const REAL *rstd, int N, int C) {
    if (dinp) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)N * C))
        for (int i = 0; i < N; i++) {
            const REAL *dy = dout + (size_t)i * C, *x = inp + (size_t)i * C;
            REAL *dx = dinp + (size_t)i * C;
            REAL m = mean[i], rs = rstd[i];
            double acc1[OPS_LANES] = {0}, acc2[OPS_LANES] = {0};
            for (int c = 0; c < C; c++) {
                REAL norm = (x[c] - m) * rs;
                REAL dnorm = weight[c] * dy[c];
                acc1[c % OPS_LANES] += dnorm;
                acc2[c % OPS_LANES] += (double)dnorm * norm;
            }
            REAL a = (REAL)(OPS(lanes_total)(acc1) / C), b = (REAL)(OPS(lanes_total)(acc2) / C);
            for (int c = 0; c < C; c++) {
                REAL norm = (x[c] - m) * rs;
                REAL dnorm = weight[c] * dy[c];
                dx[c] += (dnorm - a - norm * b) * rs;
            }
        }
    }
    if (!dweight && !dbias) return;
    int blocks = (C + OPS_COL_BLOCK - 1) / OPS_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)N * C))
    for (int cb = 0; cb < blocks; cb++) {
        int c0 = cb * OPS_COL_BLOCK, c1 = OPS_MIN(C, c0 + OPS_COL_BLOCK);
        double gw[OPS_COL_BLOCK] = {0}, gb[OPS_COL_BLOCK] = {0};
        for (int i = 0; i < N; i++) {
            const REAL *dy = dout + (size_t)i * C, *x = inp + (size_t)i * C;
            REAL m = mean[i], rs = rstd[i];
            for (int c = c0; c < c1; c++) {
                gw[c - c0] += (double)((x[c] - m) * rs) * dy[c];
                gb[c - c0] += dy[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            if (dweight) dweight[c] += (REAL)gw[c - c0];
            if (dbias) dbias[c] += (REAL)gb[c - c0];
        }
    }
}

// ---- linear ----------------------------------------------------------------------------

// The GEMMs of the linear layers are cut into tiles of the output, each computed by one
// single-threaded BLAS call, the tiles dealt to the op threads. The tiling is a function
// of the matrix shape alone, never of the thread count: every output element is then
// computed by the same BLAS call (same shape, same kernel, same order over the summed
// dimension) with 1, 2 or 96 threads, so results are bitwise independent of the thread
// count. A multi-threaded BLAS call does not give that: OpenBLAS splits rows and columns
// by the thread count, and its Haswell and Zen kernels round an element differently
// depending on where the split falls (docs/kernels.md "Determinism").
//
// The plan itself (kernels/cpu/gemm_split.h) is shared with the bf16 GEMMs of inference
// (kernels/cpu/gemm_bf16.c).

// What a linear layer's forward does to each tile around its GEMM: bias preloaded into
// the tile (then beta = 1), GELU applied from the pre-activation tile into `gelu_out`.
typedef struct {
    const REAL *bias;   // (N) broadcast over rows, or NULL
    REAL *gelu_out;     // same layout as C, or NULL
} OPS(gemm_epilogue);

// C (M,N) = alpha op(A) op(B) + beta C, row-major, op = transpose when trans_a / trans_b:
// op(A) is (M,K) (A stored (K,M) when transposed), op(B) is (K,N) (B stored (N,K) when
// transposed). Tiled as above; `ep` may be NULL.
OPS_CLONES static void OPS(gemm_tiled)(int trans_a, int trans_b, int M, int N, int K, REAL alpha,
                            const REAL *A, int lda, const REAL *B, int ldb, REAL beta, REAL *C,
                            int ldc, const OPS(gemm_epilogue) *ep) {
    if (M <= 0 || N <= 0) return;
    cpu_gemm_plan plan = cpu_gemm_plan_for(M, N, K);
    cpu_gemm_split rows = plan.rows, cols = plan.cols;
    long tiles = (long)rows.pieces * cols.pieces;
    int threads = cpu_ops_threads();
    if (tiles < threads) threads = (int)tiles;
    cpu_blas_single();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (long tile = 0; tile < tiles; tile++) {
        int i0 = (int)(tile / cols.pieces) * rows.size, j0 = (int)(tile % cols.pieces) * cols.size;
        int m = OPS_MIN(rows.size, M - i0), n = OPS_MIN(cols.size, N - j0);
        const REAL *a = trans_a ? A + i0 : A + (size_t)i0 * lda;
        const REAL *b = trans_b ? B + (size_t)j0 * ldb : B + j0;
        REAL *c = C + (size_t)i0 * ldc + j0;
        REAL tile_beta = beta;
        if (ep && ep->bias) {
            for (int r = 0; r < m; r++) memcpy(c + (size_t)r * ldc, ep->bias + j0, sizeof(REAL) * n);
            tile_beta = 1;
        }
        if (K > 0)
            GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                 trans_b ? CblasTrans : CblasNoTrans, m, n, K, alpha, a, lda, b, ldb, tile_beta,
                 c, ldc);
        else if (tile_beta == 0)
            for (int r = 0; r < m; r++) memset(c + (size_t)r * ldc, 0, sizeof(REAL) * n);
        if (ep && ep->gelu_out) {
            REAL *g = ep->gelu_out + (size_t)i0 * ldc + j0;
            for (int r = 0; r < m; r++)
                for (int col = 0; col < n; col++)
                    g[(size_t)r * ldc + col] = OPS(gelu_value)(c[(size_t)r * ldc + col]);
        }
    }
}

void OPS(gemm)(int trans_a, int trans_b, int M, int N, int K, REAL alpha, const REAL *A,
               int lda, const REAL *B, int ldb, REAL beta, REAL *C, int ldc) {
    OPS(gemm_tiled)(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

// out (N,OC) = inp (N,IC) W^T + b, then GELU: bias and GELU run on each tile while it is
// in cache. With GELU and no `pre`, the pre-activation is computed in `out` and
// overwritten element by element.
void OPS(matmul_forward)(REAL *out, REAL *pre, const REAL *inp, const REAL *weight,
                         const REAL *bias, int N, int IC, int OC, int gelu) {
    REAL *dst = gelu && pre ? pre : out;
    OPS(gemm_epilogue) ep = {bias, gelu ? out : NULL};
    OPS(gemm_tiled)(0, 1, N, OC, IC, 1, inp, IC, weight, IC, 0, dst, OC, &ep);
}

void OPS(matmul_backward)(REAL *dinp, REAL *dweight, REAL *dbias, const REAL *dout,
                          const REAL *inp, const REAL *weight, int N, int IC, int OC) {
    // dinp (N,IC) += dout (N,OC) W (OC,IC)
    if (dinp) OPS(gemm_tiled)(0, 0, N, IC, OC, 1, dout, OC, weight, IC, 1, dinp, IC, NULL);
    // dweight (OC,IC) += dout^T (OC,N) inp (N,IC)
    if (dweight) OPS(gemm_tiled)(1, 0, OC, IC, N, 1, dout, OC, inp, IC, 1, dweight, IC, NULL);
    if (!dbias) return;
    // dbias: columns in blocks, rows in order inside each (no dependence on threads)
    int blocks = (OC + OPS_COL_BLOCK - 1) / OPS_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)N * OC))
    for (int blk = 0; blk < blocks; blk++) {
        int o0 = blk * OPS_COL_BLOCK, o1 = OPS_MIN(OC, o0 + OPS_COL_BLOCK);
        double acc[OPS_COL_BLOCK] = {0};
        for (int i = 0; i < N; i++) {
            const REAL *d = dout + (size_t)i * OC;
            for (int o = o0; o < o1; o++) acc[o - o0] += d[o];
        }
        for (int o = o0; o < o1; o++) dbias[o] += (REAL)acc[o - o0];
    }
}

// ---- GELU ------------------------------------------------------------------------------

OPS_CLONES void OPS(gelu_forward)(REAL *out, const REAL *inp, size_t n) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t i = 0; i < n; i++) out[i] = OPS(gelu_value)(inp[i]);
}

OPS_CLONES void OPS(gelu_backward)(REAL *dinp, const REAL *inp, const REAL *dout, size_t n) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * OPS(gelu_grad)(inp[i]);
}

// ---- self-attention --------------------------------------------------------------------

// Softmax of each row of P (T,T) in place over the keys the mask lets through; masked
// keys get probability exactly 0 (the -inf of the scores). A head whose keys are all
// masked gets all-zero rows. `scratch` is 2 T elements (the mask as an additive bias and
// as a 0/1 factor, built once per head rather than per row). Scores are finite.
OPS_CLONES static void OPS(masked_softmax_rows)(REAL *P, const int32_t *mk, int T, REAL *scratch) {
    REAL *bias = scratch, *keep = scratch + T;
    if (mk) {
        // -3e38 (finite in float) added before the max keeps masked keys out of it
        int visible = 0;
        for (int t2 = 0; t2 < T; t2++) {
            visible += mk[t2] != 0;
            bias[t2] = mk[t2] ? (REAL)0 : (REAL)-3.0e38;
            keep[t2] = (REAL)(mk[t2] != 0);
        }
        if (!visible) {
            memset(P, 0, sizeof(REAL) * T * T);
            return;
        }
    }
    for (int t1 = 0; t1 < T; t1++) {
        REAL *row = P + (size_t)t1 * T;
        REAL mx = OPS(row_max)(row, mk ? bias : NULL, T);
        if (mk) {
            // the mask as a 0/1 factor rather than a branch, so the loop vectorises:
            // a masked key becomes exp(0) * 0 = 0 exactly
            for (int t2 = 0; t2 < T; t2++) row[t2] = EXP((row[t2] - mx) * keep[t2]) * keep[t2];
        } else {
            for (int t2 = 0; t2 < T; t2++) row[t2] = EXP(row[t2] - mx);
        }
        REAL inv = (REAL)(1.0 / OPS(row_sum)(row, T));
        for (int t2 = 0; t2 < T; t2++) row[t2] *= inv;
    }
}

// A (T,T) = dropout(P) for head bh: the counter of element (t1,t2) is
// offset + (bh*T + t1)*T + t2, i.e. its flat index in (B,NH,T,T).
OPS_CLONES static void OPS(attention_dropout)(REAL *A, const REAL *P, int T, long bh, float p,
                                   uint64_t seed, uint64_t offset) {
    REAL keep_scale = (REAL)1 / ((REAL)1 - (REAL)p);
    uint64_t base = offset + (uint64_t)bh * T * T;
    size_t n = (size_t)T * T;
    for (size_t i = 0; i < n; i++)
        A[i] = dropout_keep(seed, base + i, p) ? P[i] * keep_scale : (REAL)0;
}

// att keeps the softmax probabilities BEFORE dropout (softmax backward needs them); the
// dropout mask is drawn again from (seed, offset) in backward.
OPS_CLONES void OPS(attention_forward)(REAL *out, REAL *att, const REAL *qkv, const int32_t *mask, int B,
                            int T, int C, int NH, float dropout_p, uint64_t seed,
                            uint64_t offset) {
    int HS = C / NH, C3 = 3 * C;
    REAL scale = (REAL)1 / sqrt((REAL)HS);
    long heads = (long)B * NH;
    int dropout = dropout_p > 0;
    cpu_blas_single(); // the GEMMs below run inside an OpenMP region, one head each
#pragma omp parallel num_threads(OPS_THREADS_FOR((size_t)heads * T * T))
    {
        // per thread: probabilities when att is NULL, dropped probabilities, mask scratch
        REAL *tmp = malloc(sizeof(REAL) * (2 * (size_t)T * T + 2 * (size_t)T));
#pragma omp for schedule(dynamic, 1)
        for (long bh = 0; bh < heads; bh++) {
            int b = (int)(bh / NH), h = (int)(bh % NH);
            const REAL *q = qkv + (size_t)b * T * C3 + (size_t)h * HS;
            const REAL *k = q + C, *v = q + 2 * C;
            REAL *P = att ? att + (size_t)bh * T * T : tmp;
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, q, C3, k, C3, 0, P,
                 T);
            OPS(masked_softmax_rows)(P, mask ? mask + (size_t)b * T : NULL, T,
                                     tmp + 2 * (size_t)T * T);
            const REAL *A = P;
            if (dropout) {
                REAL *Ad = tmp + (size_t)T * T;
                OPS(attention_dropout)(Ad, P, T, bh, dropout_p, seed, offset);
                A = Ad;
            }
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1, A, T, v, C3, 0,
                 out + (size_t)b * T * C + (size_t)h * HS, C);
        }
        free(tmp);
    }
}

OPS_CLONES void OPS(attention_backward)(REAL *dqkv, REAL *scratch, const REAL *dout, const REAL *qkv,
                             const REAL *att, const int32_t *mask, int B, int T, int C, int NH,
                             float dropout_p, uint64_t seed, uint64_t offset) {
    (void)mask; // masked keys have P = 0, so their score gradients vanish on their own
    int HS = C / NH, C3 = 3 * C;
    REAL scale = (REAL)1 / sqrt((REAL)HS);
    long heads = (long)B * NH;
    int dropout = dropout_p > 0;
    REAL keep_scale = (REAL)1 / ((REAL)1 - (REAL)dropout_p);
    cpu_blas_single(); // the GEMMs below run inside an OpenMP region, one head each
#pragma omp parallel num_threads(OPS_THREADS_FOR((size_t)heads * T * T))
    {
        REAL *tmp = malloc(sizeof(REAL) * 2 * (size_t)T * T);
#pragma omp for schedule(dynamic, 1)
        for (long bh = 0; bh < heads; bh++) {
            int b = (int)(bh / NH), h = (int)(bh % NH);
            size_t head_off = (size_t)b * T * C3 + (size_t)h * HS;
            const REAL *q = qkv + head_off, *k = q + C, *v = q + 2 * C;
            REAL *dq = dqkv + head_off, *dk = dq + C, *dv = dq + 2 * C;
            const REAL *P = att + (size_t)bh * T * T;
            REAL *dP = scratch ? scratch + (size_t)bh * T * T : tmp + (size_t)T * T;
            const REAL *dO = dout + (size_t)b * T * C + (size_t)h * HS;
            // dA (T,T) = dO (T,HS) v^T
            GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1, dO, C, v, C3, 0, dP, T);
            const REAL *A = P;
            if (dropout) {
                OPS(attention_dropout)(tmp, P, T, bh, dropout_p, seed, offset);
                A = tmp;
            }
            // dv (T,HS) += A^T dO
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1, A, T, dO, C, 1, dv, C3);
            if (dropout) {
                uint64_t base = offset + (uint64_t)bh * T * T;
                size_t n = (size_t)T * T;
                for (size_t i = 0; i < n; i++)
                    dP[i] = dropout_keep(seed, base + i, dropout_p) ? dP[i] * keep_scale
                                                                    : (REAL)0;
            }
            // softmax backward, then the 1/sqrt(HS) of the scores
            for (int t1 = 0; t1 < T; t1++) {
                const REAL *p = P + (size_t)t1 * T;
                REAL *d = dP + (size_t)t1 * T;
                REAL sr = (REAL)OPS(row_dot)(p, d, T);
                for (int t2 = 0; t2 < T; t2++) d[t2] = p[t2] * (d[t2] - sr) * scale;
            }
            // dq += dS k ; dk += dS^T q
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1, dP, T, k, C3, 1, dq,
                 C3);
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1, dP, T, q, C3, 1, dk, C3);
        }
        free(tmp);
    }
}

// ---- dropout ---------------------------------------------------------------------------

OPS_CLONES void OPS(dropout_forward)(REAL *out, const REAL *inp, size_t n, float p, uint64_t seed,
                          uint64_t offset) {
    if (p <= 0) {
        if (out != inp) memmove(out, inp, sizeof(REAL) * n);
        return;
    }
    REAL keep_scale = p >= 1 ? (REAL)0 : (REAL)1 / ((REAL)1 - (REAL)p);
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t i = 0; i < n; i++)
        out[i] = dropout_keep(seed, offset + i, p) ? inp[i] * keep_scale : (REAL)0;
}

OPS_CLONES void OPS(dropout_backward)(REAL *dinp, const REAL *dout, size_t n, float p, uint64_t seed,
                           uint64_t offset) {
    if (p <= 0) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    REAL keep_scale = p >= 1 ? (REAL)0 : (REAL)1 / ((REAL)1 - (REAL)p);
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t i = 0; i < n; i++)
        if (dropout_keep(seed, offset + i, p)) dinp[i] += dout[i] * keep_scale;
}

// ---- softmax cross-entropy -------------------------------------------------------------

OPS_CLONES void OPS(softmax_xent_forward)(REAL *losses, REAL *probs, const REAL *logits,
                               const int32_t *targets, int N, int V) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)N * V))
    for (int i = 0; i < N; i++) {
        const REAL *l = logits + (size_t)i * V;
        REAL *p = probs + (size_t)i * V;
        REAL mx = OPS(row_max)(l, NULL, V);
        for (int j = 0; j < V; j++) p[j] = EXP(l[j] - mx);
        double s = OPS(row_sum)(p, V);
        REAL inv = (REAL)(1.0 / s);
        for (int j = 0; j < V; j++) p[j] *= inv;
        int target = targets[i];
        if (losses)
            losses[i] = target == -100 ? (REAL)0 : (REAL)((double)mx + log(s) - l[target]);
    }
}

OPS_CLONES void OPS(softmax_xent_backward)(REAL *dlogits, const REAL *probs, const int32_t *targets, int N,
                                int V, REAL dloss_scale) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)N * V))
    for (int i = 0; i < N; i++) {
        REAL *d = dlogits + (size_t)i * V;
        const REAL *p = probs + (size_t)i * V;
        int target = targets[i];
        if (target == -100) {
            memset(d, 0, sizeof(REAL) * V);
            continue;
        }
        for (int j = 0; j < V; j++) d[j] = (p[j] - (j == target ? (REAL)1 : (REAL)0)) * dloss_scale;
    }
}

// ---- mean pooling ----------------------------------------------------------------------

// As sentence-transformers: sum of unmasked rows / max(count, 1e-9), then
// x / max(||x||, 1e-12) when normalising.
OPS_CLONES void OPS(mean_pool_forward)(REAL *out, const REAL *inp, const int32_t *mask, int B, int T,
                            int C, int normalize) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR((size_t)B * T * C))
    for (int b = 0; b < B; b++) {
        const int32_t *mk = mask ? mask + (size_t)b * T : NULL;
        double count = 0;
        for (int t = 0; t < T; t++) count += mk ? (mk[t] != 0) : 1;
        if (count < 1e-9) count = 1e-9;
        REAL *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int t = 0; t < T; t++)
                if (!mk || mk[t]) s += inp[((size_t)b * T + t) * C + c];
            o[c] = (REAL)(s / count);
        }
        if (normalize) {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += (double)o[c] * o[c];
            double norm = sqrt(ss);
            if (norm < 1e-12) norm = 1e-12;
            for (int c = 0; c < C; c++) o[c] = (REAL)(o[c] / norm);
        }
    }
}

// ---- optimiser -------------------------------------------------------------------------

// Fixed chunks summed in order: the same double for any thread count. Each chunk is a
// row_dot with itself (interleaved accumulators: a single serial chain of double adds
// was latency-bound, 134 ms a step for bert-base's gradients).
enum { OPS_SUM_CHUNK = 1 << 14 };

OPS_CLONES static double OPS(chunk_sum_squares)(const REAL *x, size_t n, size_t chunk) {
    size_t i0 = chunk * OPS_SUM_CHUNK;
    return OPS(row_dot)(x + i0, x + i0, (int)OPS_MIN((size_t)OPS_SUM_CHUNK, n - i0));
}

double OPS(sum_squares)(const REAL *x, size_t n) {
    size_t chunks = (n + OPS_SUM_CHUNK - 1) / OPS_SUM_CHUNK;
    double total = 0;
    double *part = chunks ? malloc(sizeof(double) * chunks) : NULL;
    if (!part) { // none, or no memory for partial sums: the same chunks in order, one thread
        for (size_t ch = 0; ch < chunks; ch++) total += OPS(chunk_sum_squares)(x, n, ch);
        return total;
    }
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t ch = 0; ch < chunks; ch++) part[ch] = OPS(chunk_sum_squares)(x, n, ch);
    for (size_t ch = 0; ch < chunks; ch++) total += part[ch];
    free(part);
    return total;
}

OPS_CLONES void OPS(scale)(REAL *x, size_t n, REAL s) {
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

// The operation order of torch.optim.AdamW (single-tensor path): decay, moments, then
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
OPS_CLONES void OPS(adamw_update)(REAL *params, const REAL *grads, REAL *m, REAL *v, size_t n, REAL lr,
                       REAL beta1, REAL beta2, REAL eps, REAL weight_decay, int t) {
    double bc1 = 1.0 - pow((double)beta1, t), bc2 = 1.0 - pow((double)beta2, t);
    REAL step_size = (REAL)((double)lr / bc1);
    REAL bc2_sqrt = (REAL)sqrt(bc2);
    REAL decay = (REAL)1 - lr * weight_decay;
#pragma omp parallel for schedule(static) num_threads(OPS_THREADS_FOR(n))
    for (size_t i = 0; i < n; i++) {
        REAL g = grads[i];
        REAL p = params[i] * decay;
        REAL mi = m[i] * beta1 + g * ((REAL)1 - beta1);
        REAL vi = v[i] * beta2 + g * g * ((REAL)1 - beta2);
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * (mi / (sqrt(vi) / bc2_sqrt + eps));
    }
}
