#pragma once
// The CPU ops as plain C functions over raw buffers, in two precisions compiled from one
// source (kernels/cpu/ops_template.h): cpu_f32_* is what the CPU backend runs, cpu_f64_*
// exists so the unit tests can check every op's gradient by finite differences in double
// precision on exactly the code the backend runs (tests/unit/kernels).
//
// Shapes and semantics are those of kernels/backend.h; here activations are typed.
// Parallelism: every GEMM is single-threaded OpenBLAS calls inside OpenMP regions —
// linear layers over output tiles whose shape depends on the matrix shape only,
// attention over batch x heads — and the other ops are OpenMP over rows or channel
// blocks with a fixed per-element summation order, so every result is bitwise the same
// for any thread count (tested; docs/kernels.md "Determinism"). The OpenBLAS thread
// count is process-wide: ops must not be called from two threads at once.
#include <stddef.h>
#include <stdint.h>

// Threads used by every op, OpenMP regions and OpenBLAS calls (<= 0: the OpenMP default).
void cpu_ops_set_threads(int threads);
int cpu_ops_threads(void);
// OpenBLAS to one thread before GEMMs issued from inside an OpenMP region (the region
// already occupies the cores; a threaded call would also tie results to the count).
void cpu_blas_single(void);
// The OpenBLAS core the GEMMs run on ("SkylakeX", "Zen", ...): picked by OpenBLAS for this
// CPU, or forced by OPENBLAS_CORETYPE. Results are bitwise reproducible per core.
const char *cpu_blas_core(void);

#define CPU_OPS_DECLARE(R, P)                                                              \
    void P##embeddings_forward(R *out, const int32_t *ids, const int32_t *token_types,     \
                               const R *wte, const R *wpe, const R *wtt, int B, int T,     \
                               int C, int position_offset);                                \
    void P##embeddings_backward(R *dwte, R *dwpe, R *dwtt, const R *dout,                  \
                                const int32_t *ids, const int32_t *token_types, int B,     \
                                int T, int C, int V, int position_offset);                 \
    void P##layernorm_forward(R *out, R *sum, R *mean, R *rstd, const R *inp,              \
                              const R *residual, const R *weight, const R *bias, int N,    \
                              int C, R eps);                                               \
    void P##layernorm_backward(R *dinp, R *dweight, R *dbias, const R *dout, const R *inp, \
                               const R *weight, const R *mean, const R *rstd, int N,       \
                               int C);                                                     \
    /* C (M,N) = alpha op(A) op(B) + beta C, row-major, tiled as the linear layers are */ \
    void P##gemm(int trans_a, int trans_b, int M, int N, int K, R alpha, const R *A,       \
                 int lda, const R *B, int ldb, R beta, R *C, int ldc);                     \
    void P##matmul_forward(R *out, R *pre, const R *inp, const R *weight, const R *bias,   \
                           int N, int IC, int OC, int gelu);                               \
    void P##matmul_backward(R *dinp, R *dweight, R *dbias, const R *dout, const R *inp,    \
                            const R *weight, int N, int IC, int OC);                       \
    void P##gelu_forward(R *out, const R *inp, size_t n);                                  \
    void P##gelu_backward(R *dinp, const R *inp, const R *dout, size_t n);                 \
    void P##attention_forward(R *out, R *att, const R *qkv, const int32_t *mask, int B,    \
                              int T, int C, int NH, float dropout_p, uint64_t seed,        \
                              uint64_t offset);                                            \
    void P##attention_backward(R *dqkv, R *scratch, const R *dout, const R *qkv,           \
                               const R *att, const int32_t *mask, int B, int T, int C,     \
                               int NH, float dropout_p, uint64_t seed, uint64_t offset);   \
    void P##dropout_forward(R *out, const R *inp, size_t n, float p, uint64_t seed,        \
                            uint64_t offset);                                              \
    void P##dropout_backward(R *dinp, const R *dout, size_t n, float p, uint64_t seed,     \
                             uint64_t offset);                                             \
    void P##softmax_xent_forward(R *losses, R *probs, const R *logits,                     \
                                 const int32_t *targets, int N, int V);                    \
    void P##softmax_xent_backward(R *dlogits, const R *probs, const int32_t *targets,      \
                                  int N, int V, R dloss_scale);                            \
    void P##mean_pool_forward(R *out, const R *inp, const int32_t *mask, int B, int T,     \
                              int C, int normalize);                                       \
    double P##sum_squares(const R *x, size_t n);                                           \
    void P##scale(R *x, size_t n, R s);                                                    \
    void P##adamw_update(R *params, const R *grads, R *m, R *v, size_t n, R lr, R beta1,   \
                         R beta2, R eps, R weight_decay, int t);

CPU_OPS_DECLARE(float, cpu_f32_)
CPU_OPS_DECLARE(double, cpu_f64_)
