// The CPU backend: kernels/backend.h over the fp32 ops of kernels/cpu/ops.h. "Device"
// memory is host memory, so copies are memcpy and synchronize only reports a failure of
// the bf16 GEMMs of inference (kernels/cpu/gemm_bf16.h), which run when
// set_infer_dtype(DTYPE_BF16) turned them on. Every op here that may write parameters
// (copies, memset, AdamW, scale) or frees memory tells gemm_bf16.c, which keeps bf16
// copies of weights.
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/ops.h"
#include "runner/error.h"

static void *cpu_alloc(backend *be, size_t bytes) {
    (void)be;
    // 64-byte alignment: whole cache lines for every buffer, good for AVX-512 loads.
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) error_set(EXIT_RESOURCES, "cpu backend: cannot allocate %zu bytes of host memory", bytes);
    return p;
}

static void cpu_free(backend *be, void *ptr) {
    (void)be;
    cpu_bf16_freed(ptr);
    free(ptr);
}

// Gradients are zeroed every step (bert-base: 436 MB): one thread's stores do not reach
// the memory bandwidth, so large buffers are split across the op threads.
static int cpu_memset_zero(backend *be, void *ptr, size_t bytes) {
    (void)be;
    cpu_bf16_written(ptr, bytes);
    enum { PARALLEL_FROM = 4 << 20, PIECE_ALIGN = 4096 };
    int threads = cpu_ops_threads();
    if (bytes < PARALLEL_FROM || threads < 2) {
        memset(ptr, 0, bytes);
        return 0;
    }
    size_t piece = (bytes / (size_t)threads + PIECE_ALIGN - 1) / PIECE_ALIGN * PIECE_ALIGN;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < threads; t++) {
        size_t start = (size_t)t * piece;
        if (start < bytes)
            memset((char *)ptr + start, 0, bytes - start < piece ? bytes - start : piece);
    }
    return 0;
}

static int cpu_copy(backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    cpu_bf16_written(dst, bytes);
    if (dst != src) memmove(dst, src, bytes);
    return 0;
}

static int cpu_f32_to_act(backend *be, void *dst, const float *src, size_t n) {
    return cpu_copy(be, dst, src, n * sizeof(float));
}

static int cpu_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    return cpu_copy(be, dst, src, n * sizeof(float));
}

static int cpu_synchronize(backend *be) {
    (void)be;
    return cpu_bf16_take_error();
}

// gemm_bf16.c's state is process-wide (weights are found by address): it is released
// with the last CPU backend.
static int live_backends;

static void cpu_destroy(backend *be) {
    free(be);
    if (--live_backends == 0) cpu_bf16_release();
}

static void cpu_embeddings_forward(backend *be, void *out, const int32_t *ids,
                                   const int32_t *token_types, const float *wte,
                                   const float *wpe, const float *wtt, int B, int T, int C,
                                   int position_offset) {
    (void)be;
    cpu_f32_embeddings_forward(out, ids, token_types, wte, wpe, wtt, B, T, C, position_offset);
}

static void cpu_embeddings_backward(backend *be, float *dwte, float *dwpe, float *dwtt,
                                    const void *dout, const int32_t *ids,
                                    const int32_t *token_types, int B, int T, int C, int V,
                                    int position_offset) {
    (void)be;
    cpu_f32_embeddings_backward(dwte, dwpe, dwtt, dout, ids, token_types, B, T, C, V,
                                position_offset);
}

static void cpu_layernorm_forward(backend *be, void *out, void *sum, float *mean, float *rstd,
                                  const void *inp, const void *residual, const float *weight,
                                  const float *bias, int N, int C, float eps) {
    (void)be;
    cpu_f32_layernorm_forward(out, sum, mean, rstd, inp, residual, weight, bias, N, C, eps);
}

static void cpu_layernorm_backward(backend *be, void *dinp, float *dweight, float *dbias,
                                   const void *dout, const void *inp, const float *weight,
                                   const float *mean, const float *rstd, int N, int C) {
    (void)be;
    cpu_f32_layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

static void cpu_matmul_forward(backend *be, void *out, void *pre, const void *inp,
                               const void *weight, const void *bias, int N, int IC, int OC,
                               matmul_epilogue epilogue) {
    (void)be;
    cpu_f32_matmul_forward(out, pre, inp, weight, bias, N, IC, OC, epilogue == EPILOGUE_GELU);
}

static void cpu_bf16_infer_matmul_forward(backend *be, void *out, void *pre, const void *inp,
                                          const void *weight, const void *bias, int N, int IC,
                                          int OC, matmul_epilogue epilogue) {
    (void)be;
    cpu_bf16_matmul_forward(out, pre, inp, weight, bias, N, IC, OC, epilogue == EPILOGUE_GELU);
}

static int cpu_set_infer_dtype(backend *be, act_dtype_t dtype) {
    char why[256];
    if (dtype == DTYPE_BF16 && !cpu_bf16_supported(why, sizeof why))
        return error_set(EXIT_USAGE, "bf16 on the CPU: %s", why);
    be->infer_dtype = dtype;
    be->infer_matmul_forward =
        dtype == DTYPE_BF16 ? cpu_bf16_infer_matmul_forward : cpu_matmul_forward;
    return 0;
}

static void cpu_matmul_backward(backend *be, void *dinp, float *dweight, float *dbias,
                                const void *dout, const void *inp, const void *weight, int N,
                                int IC, int OC) {
    (void)be;
    cpu_f32_matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, IC, OC);
}

static void cpu_gelu_forward(backend *be, void *out, const void *inp, size_t n) {
    (void)be;
    cpu_f32_gelu_forward(out, inp, n);
}

static void cpu_gelu_backward(backend *be, void *dinp, const void *inp, const void *dout,
                              size_t n) {
    (void)be;
    cpu_f32_gelu_backward(dinp, inp, dout, n);
}

static void cpu_attention_forward(backend *be, void *out, void *att, const void *qkv,
                                  const int32_t *mask, int B, int T, int C, int NH,
                                  float dropout_p, uint64_t seed, uint64_t offset) {
    (void)be;
    cpu_f32_attention_forward(out, att, qkv, mask, B, T, C, NH, dropout_p, seed, offset);
}

static void cpu_attention_backward(backend *be, void *dqkv, void *scratch, const void *dout,
                                   const void *qkv, const void *att, const int32_t *mask,
                                   int B, int T, int C, int NH, float dropout_p, uint64_t seed,
                                   uint64_t offset) {
    (void)be;
    cpu_f32_attention_backward(dqkv, scratch, dout, qkv, att, mask, B, T, C, NH, dropout_p,
                               seed, offset);
}

static void cpu_dropout_forward(backend *be, void *out, const void *inp, size_t n, float p,
                                uint64_t seed, uint64_t offset) {
    (void)be;
    cpu_f32_dropout_forward(out, inp, n, p, seed, offset);
}

static void cpu_dropout_backward(backend *be, void *dinp, const void *dout, size_t n, float p,
                                 uint64_t seed, uint64_t offset) {
    (void)be;
    cpu_f32_dropout_backward(dinp, dout, n, p, seed, offset);
}

static void cpu_softmax_xent_forward(backend *be, float *losses, float *probs,
                                     const void *logits, const int32_t *targets, int N, int V) {
    (void)be;
    cpu_f32_softmax_xent_forward(losses, probs, logits, targets, N, V);
}

static void cpu_softmax_xent_backward(backend *be, void *dlogits, const float *probs,
                                      const int32_t *targets, int N, int V, float dloss_scale) {
    (void)be;
    cpu_f32_softmax_xent_backward(dlogits, probs, targets, N, V, dloss_scale);
}

static void cpu_mean_pool_forward(backend *be, float *out, const void *inp, const int32_t *mask,
                                  int B, int T, int C, int normalize) {
    (void)be;
    cpu_f32_mean_pool_forward(out, inp, mask, B, T, C, normalize);
}

static int cpu_grad_norm_squared(backend *be, const float *grads, size_t n, double *acc) {
    (void)be;
    *acc += cpu_f32_sum_squares(grads, n);
    return 0;
}

static void cpu_scale(backend *be, float *grads, size_t n, float s) {
    (void)be;
    cpu_bf16_written(grads, n * sizeof(float));
    cpu_f32_scale(grads, n, s);
}

static void cpu_adamw_update(backend *be, float *params, void *params_act, const float *grads,
                             float *m, float *v, size_t n, float lr, float beta1, float beta2,
                             float eps, float weight_decay, int t) {
    (void)be;
    cpu_bf16_written(params, n * sizeof(float));
    cpu_f32_adamw_update(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, t);
    // On the CPU the activation-dtype copy is the fp32 buffer itself; copy only when the
    // caller keeps a distinct one.
    if (params_act && params_act != params) memcpy(params_act, params, n * sizeof(float));
}

backend *backend_cpu_create(int threads) {
    backend *be = calloc(1, sizeof *be);
    if (!be) {
        error_set(EXIT_RESOURCES, "cpu backend: out of memory");
        return NULL;
    }
    cpu_ops_set_threads(threads);
    *be = (backend){
        .name = "cpu",
        .act_dtype = DTYPE_F32,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .memset_zero = cpu_memset_zero,
        .copy_to_device = cpu_copy,
        .copy_to_host = cpu_copy,
        .copy_device = cpu_copy,
        .f32_to_act = cpu_f32_to_act,
        .act_to_f32 = cpu_act_to_f32,
        .synchronize = cpu_synchronize,
        .destroy = cpu_destroy,
        .embeddings_forward = cpu_embeddings_forward,
        .embeddings_backward = cpu_embeddings_backward,
        .layernorm_forward = cpu_layernorm_forward,
        .layernorm_backward = cpu_layernorm_backward,
        .matmul_forward = cpu_matmul_forward,
        .matmul_backward = cpu_matmul_backward,
        .gelu_forward = cpu_gelu_forward,
        .gelu_backward = cpu_gelu_backward,
        .attention_forward = cpu_attention_forward,
        .attention_backward = cpu_attention_backward,
        .dropout_forward = cpu_dropout_forward,
        .dropout_backward = cpu_dropout_backward,
        .softmax_xent_forward = cpu_softmax_xent_forward,
        .softmax_xent_backward = cpu_softmax_xent_backward,
        .mean_pool_forward = cpu_mean_pool_forward,
        .grad_norm_squared = cpu_grad_norm_squared,
        .scale = cpu_scale,
        .adamw_update = cpu_adamw_update,
        .infer_dtype = DTYPE_F32,
        .infer_matmul_forward = cpu_matmul_forward,
        .set_infer_dtype = cpu_set_infer_dtype,
    };
    live_backends++;
    return be;
}
