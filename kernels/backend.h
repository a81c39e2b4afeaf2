#pragma once
// The compute backend interface (DESIGN §5), in the style of llm.c: device memory plus
// forward/backward ops over raw buffers with explicit dimensions. Two implementations
// are chosen at run time: "cpu" (kernels/cpu, the readable fp32 reference) and "cuda"
// (kernels/cuda, bf16 activations with fp32 master weights).
//
// Conventions, shared by every op:
// - Shapes are written beside each buffer: (B, T, C) means B*T*C contiguous elements,
//   last index fastest. B batch, T sequence, C hidden, NH heads, HS = C / NH,
//   F intermediate, V vocabulary or label count, N = B*T rows.
// - Parameters, gradients and AdamW moments are always fp32 (`float *`).
//   Activations are `void *` in the backend's activation dtype (`act_dtype`):
//   fp32 on the CPU, bf16 on CUDA. Statistics saved for backward (LayerNorm mean and
//   rstd, losses) are fp32.
// - Linear weights are stored as Hugging Face stores them, (OC, IC): out = inp W^T + b.
//   GEMMs read weights and biases in the activation dtype: the model keeps an
//   activation-dtype copy of the parameters (`params_act`, refreshed by adamw_update);
//   on the CPU that copy is the fp32 parameter buffer itself.
// - Backward ops ACCUMULATE into parameter gradients (+=) and into input gradients
//   (dinp +=), as llm.c does, so residual branches add up without extra copies. The
//   caller zeroes gradient buffers where a fresh value is wanted.
// - Every op is asynchronous on CUDA (one stream); `synchronize` waits. Errors are
//   reported through the return value of the calls that can fail (alloc, copy,
//   synchronize) as exit codes from runner/exitcode.h, with error_set() called.
#include <stddef.h>
#include <stdint.h>

typedef enum { DTYPE_F32 = 0, DTYPE_BF16 = 1 } act_dtype_t;

// Dropout masks come from a counter-based RNG: element i of a call keeps its value iff
// dropout_keep(seed, offset + i, p) — the same mask for the same seed, offset and
// position on every backend (see kernels/rng.h).

typedef enum {
    EPILOGUE_NONE = 0, // out = inp W^T + b
    EPILOGUE_GELU = 1, // pre = inp W^T + b, out = gelu_erf(pre)
} matmul_epilogue;

typedef struct backend backend;
struct backend {
    const char *name;       // "cpu" or "cuda"
    act_dtype_t act_dtype;  // activation dtype
    void *impl;             // backend-private state (cuBLASLt handle, stream, ...)

    // ---- memory --------------------------------------------------------------------
    // Returns NULL and sets an error (EXIT_GPU_OOM on CUDA, EXIT_RESOURCES on CPU).
    void *(*alloc)(backend *be, size_t bytes);
    void (*free)(backend *be, void *ptr);
    int (*memset_zero)(backend *be, void *ptr, size_t bytes);
    int (*copy_to_device)(backend *be, void *dst, const void *host_src, size_t bytes);
    int (*copy_to_host)(backend *be, void *host_dst, const void *src, size_t bytes);
    int (*copy_device)(backend *be, void *dst, const void *src, size_t bytes);
    // Convert between fp32 host-visible values and activation dtype, device side.
    int (*f32_to_act)(backend *be, void *dst, const float *src, size_t n);
    int (*act_to_f32)(backend *be, float *dst, const void *src, size_t n);
    int (*synchronize)(backend *be);
    void (*destroy)(backend *be);

    // ---- embeddings -----------------------------------------------------------------
    // out (B,T,C) = wte[ids] + wpe[position_offset + t] + wtt[token_types]
    // ids, token_types (B,T) int32 device buffers (token_types may be NULL: type 0).
    void (*embeddings_forward)(backend *be, void *out, const int32_t *ids,
                               const int32_t *token_types, const float *wte, const float *wpe,
                               const float *wtt, int B, int T, int C, int position_offset);
    // dwte (V,C) +=, dwpe (P,C) +=, dwtt (TT,C) += ; deterministic (no float atomics).
    void (*embeddings_backward)(backend *be, float *dwte, float *dwpe, float *dwtt,
                                const void *dout, const int32_t *ids,
                                const int32_t *token_types, int B, int T, int C, int V,
                                int position_offset);

    // ---- LayerNorm, optionally fused with the residual add of post-LN BERT ----------
    // sum (N,C) = inp + residual (when residual != NULL; sum may then be NULL to skip
    // storing it), out (N,C) = LN(sum) * weight + bias; mean, rstd (N) fp32 saved.
    void (*layernorm_forward)(backend *be, void *out, void *sum, float *mean, float *rstd,
                              const void *inp, const void *residual, const float *weight,
                              const float *bias, int N, int C, float eps);
    // Given dout (N,C) and the normalised input `inp` (the `sum` of forward when it was
    // fused): dinp (N,C) +=, dweight (C) +=, dbias (C) +=. With a residual, the caller
    // routes the same dinp into both branches.
    void (*layernorm_backward)(backend *be, void *dinp, float *dweight, float *dbias,
                               const void *dout, const void *inp, const float *weight,
                               const float *mean, const float *rstd, int N, int C);

    // ---- linear -----------------------------------------------------------------------
    // out (N,OC) = epilogue(inp (N,IC) W^T (OC,IC) + bias (OC)); bias may be NULL;
    // with EPILOGUE_GELU, `pre` (N,OC) receives the pre-activation.
    void (*matmul_forward)(backend *be, void *out, void *pre, const void *inp,
                           const void *weight, const void *bias, int N, int IC, int OC,
                           matmul_epilogue epilogue);
    // dinp (N,IC) += dout W; dweight (OC,IC) += dout^T inp; dbias (OC) += sum dout.
    // dinp, dbias may be NULL to skip them.
    void (*matmul_backward)(backend *be, void *dinp, float *dweight, float *dbias,
                            const void *dout, const void *inp, const void *weight, int N,
                            int IC, int OC);

    // ---- GELU (erf form: 0.5 x (1 + erf(x / sqrt 2))) ----------------------------------
    void (*gelu_forward)(backend *be, void *out, const void *inp, size_t n);
    // dinp (n) += dout * gelu'(inp)
    void (*gelu_backward)(backend *be, void *dinp, const void *inp, const void *dout,
                          size_t n);

    // ---- self-attention with a padding mask ---------------------------------------------
    // qkv (B,T,3C): per token [q (C) | k (C) | v (C)], heads split each as (NH, HS).
    // mask (B,T) int32: 1 = attend to this key, 0 = padding (its scores become -inf
    // before softmax). att (B,NH,T,T) receives the softmax probabilities BEFORE dropout
    // (saved for backward, whose softmax derivative needs them; may be NULL when no
    // backward follows). out (B,T,C) = dropout(att) @ v, heads concatenated. Scale
    // 1/sqrt(HS). Attention dropout uses (dropout_p, seed, offset) over the (B,NH,T,T)
    // positions: element (b,h,t1,t2) has counter offset + ((b*NH + h)*T + t1)*T + t2, and
    // backward draws the same mask again. A row whose keys are all masked yields zeros.
    void (*attention_forward)(backend *be, void *out, void *att, const void *qkv,
                              const int32_t *mask, int B, int T, int C, int NH,
                              float dropout_p, uint64_t seed, uint64_t offset);
    // dqkv (B,T,3C) +=, using the saved att; `scratch` (B,NH,T,T) activation dtype.
    void (*attention_backward)(backend *be, void *dqkv, void *scratch, const void *dout,
                               const void *qkv, const void *att, const int32_t *mask, int B,
                               int T, int C, int NH, float dropout_p, uint64_t seed,
                               uint64_t offset);

    // ---- dropout (inverted: kept values scaled by 1/(1-p)) ------------------------------
    void (*dropout_forward)(backend *be, void *out, const void *inp, size_t n, float p,
                            uint64_t seed, uint64_t offset);
    // dinp (n) += dout * mask / (1-p)
    void (*dropout_backward)(backend *be, void *dinp, const void *dout, size_t n, float p,
                             uint64_t seed, uint64_t offset);

    // ---- softmax cross-entropy with ignore index -100 -----------------------------------
    // logits (N,V) activation dtype, targets (N) int32 (-100 = ignored).
    // losses (N) fp32 receives each row's loss (0 for ignored rows); returns through
    // *mean_loss (host) the mean over counted rows when mean_loss != NULL (synchronises).
    // probs (N,V) fp32 saved for backward (may alias nothing else).
    void (*softmax_xent_forward)(backend *be, float *losses, float *probs, const void *logits,
                                 const int32_t *targets, int N, int V);
    // dlogits (N,V) = (probs - onehot(target)) * dloss_scale for counted rows, 0 for
    // ignored rows (written, not accumulated). dloss_scale is usually 1/count.
    void (*softmax_xent_backward)(backend *be, void *dlogits, const float *probs,
                                  const int32_t *targets, int N, int V, float dloss_scale);

    // ---- pooling head for sentence embeddings -------------------------------------------
    // out (B,C) fp32 = sum_t mask[b,t] inp[b,t,:] / sum_t mask[b,t]; L2-normalised rows
    // when normalize != 0 (as sentence-transformers' Normalize does).
    void (*mean_pool_forward)(backend *be, float *out, const void *inp, const int32_t *mask,
                              int B, int T, int C, int normalize);

    // ---- optimiser ----------------------------------------------------------------------
    // Sum of squares of grads (n) added into *acc (host double); synchronises.
    int (*grad_norm_squared)(backend *be, const float *grads, size_t n, double *acc);
    // grads (n) *= scale
    void (*scale)(backend *be, float *grads, size_t n, float scale);
    // AdamW, decoupled weight decay, bias correction with step t (1-based):
    // m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t)
    // p -= lr (mhat / (sqrt(vhat) + eps) + wd p). The caller passes wd = 0 for ranges
    // that take no decay (biases, LayerNorm). `params_act` (n) may be non-NULL to
    // receive an activation-dtype copy of the updated weights (bf16 on CUDA).
    void (*adamw_update)(backend *be, float *params, void *params_act, const float *grads,
                         float *m, float *v, size_t n, float lr, float beta1, float beta2,
                         float eps, float weight_decay, int t);

    // ---- precision of inference passes ---------------------------------------------------
    // The linear layers of a pass that no backward follows (bert_forward with training
    // false: evaluation, predict, embed) call infer_matmul_forward, matmul_forward's
    // contract, which may compute in a narrower type than act_dtype: infer_dtype names the
    // GEMM operands' type (activations in and out stay act_dtype, accumulation fp32).
    // backend_create fills in matmul_forward and act_dtype where a backend leaves them unset.
    act_dtype_t infer_dtype;
    void (*infer_matmul_forward)(backend *be, void *out, void *pre, const void *inp,
                                 const void *weight, const void *bias, int N, int IC, int OC,
                                 matmul_epilogue epilogue);
    // Ask for inference GEMMs in `dtype`: 0, or EXIT_USAGE + error saying why this backend
    // cannot (the CPU's bf16 needs avx512_bf16 or AMX). NULL: infer_dtype is all it has.
    int (*set_infer_dtype)(backend *be, act_dtype_t dtype);
};

// The CPU backend (always available). Returns NULL and sets an error on failure.
backend *backend_cpu_create(int threads);
#ifdef RUNNER_HAVE_CUDA
// The CUDA backend on `device`; NULL + error (EXIT_GPU_FAULT) when CUDA cannot start.
// Defined in the module librunner_cuda.so, not in the executable: call it through
// backend_create("cuda", ...), which loads the module first.
backend *backend_cuda_create(int device);
// Load librunner_cuda.so once (it links cuBLAS/cuBLASLt, too costly to load at every
// start). Tried in order: $RUNNER_CUDA_MODULE (a file path), the directory of the
// running executable, ../lib/runner beside it, then the build directory this program
// was built in. 0, or EXIT_GPU_FAULT + error naming the path and dlerror().
int backend_cuda_module_load(void);
// A function of the module by name (e.g. "backend_cuda_comm_stream"), loading the module
// first; NULL + error (EXIT_GPU_FAULT) when the module or the symbol is missing.
void *backend_cuda_module_symbol(const char *name);
// backend_cuda_device_count() of the module: CUDA devices visible to this process, 0 when
// there are none; -1 + error when the module cannot be loaded.
int backend_cuda_module_device_count(void);
#endif
// "cpu" or "cuda" (NULL for a name this build lacks; NULL + error when a backend cannot
// start, e.g. the CUDA module is missing); device and threads as above.
backend *backend_create(const char *name, int device, int threads);
// Size in bytes of one activation element.
static inline size_t backend_act_size(const backend *be) {
    return be->act_dtype == DTYPE_BF16 ? 2 : 4;
}
