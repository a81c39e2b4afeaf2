#pragma once
// Private to kernels/cuda: the backend's state, error checking and the helpers the op
// files share. Activations are bf16; parameters, gradients and moments fp32.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

// runner/ headers are C17: _Noreturn has no C++ spelling but the GNU attribute.
#define _Noreturn __attribute__((noreturn))
extern "C" {
#include "kernels/backend.h"
#include "runner/error.h"
}
#undef _Noreturn
#include "kernels/cuda/backend_cuda.h"
#include "kernels/rng.h"

typedef __nv_bfloat16 bf16;

enum { CUDA_SCRATCH_SLOTS = 4, GEMM_PLAN_CACHE = 128, GRAD_NORM_BLOCKS = 1024 };

// One cuBLASLt problem; the heuristic's answer is cached per distinct key.
typedef struct {
    int trans_a, trans_b;  // cublasOperation_t
    int m, n, k;           // column-major: D (m,n) = op(A) (m,k) op(B) (k,n)
    int lda, ldb, ldc;
    long long stride_a, stride_b, stride_c;
    int batch;
    int ab_type, c_type;   // cudaDataType_t
    int epilogue;          // cublasLtEpilogue_t
    int beta_nonzero;
    int align_a, align_b, align_c;
} gemm_key;

typedef struct {
    gemm_key key;
    cublasLtMatmulAlgo_t algo;
    int use_blas;  // cuBLASLt offered no algorithm: cublasGemmStridedBatchedEx instead
} gemm_plan;

typedef struct cuda_impl {
    int device;
    int sm_count;
    cudaStream_t stream;       // every op
    cudaStream_t comm_stream;  // gradient all-reduce (backend_cuda_comm_stream)
    cudaEvent_t grads_ready;   // compute -> comm
    cudaEvent_t comm_done;     // comm -> compute
    cublasLtHandle_t lt;
    void *workspace;           // cuBLASLt workspace
    size_t workspace_size;
    // Op-private scratch, grown on demand. Ops run in stream order, so one op's scratch
    // is free again when the next op starts; ops needing several buffers use slots.
    void *scratch[CUDA_SCRATCH_SLOTS];
    size_t scratch_size[CUDA_SCRATCH_SLOTS];
    float *norm_partials;      // (GRAD_NORM_BLOCKS) device
    // First failure of an op (ops return void): reported again by synchronize and by
    // every call that returns a code, so a fault is never lost.
    int status;
    char status_msg[256];
    gemm_plan plans[GEMM_PLAN_CACHE];
    int num_plans;
    int unfused_attention;     // RUNNER_CUDA_ATTENTION=unfused: never the fused kernels
    cublasHandle_t blas;       // fallback GEMMs (odd leading dimensions cuBLASLt refuses)
    int force_blas;            // RUNNER_CUDA_GEMM=cublas: every GEMM through the fallback
} cuda_impl;

// The CUDA device is per host thread: a backend used from a thread other than its
// creator's (a worker, a server thread) must make its device current first, or launches
// would go to device 0 with streams of another device. Cached per thread, so the common
// case costs one comparison.
static inline void cuda_bind_device(const cuda_impl *im) {
    static thread_local int bound_device = -1;
    if (im && bound_device != im->device && cudaSetDevice(im->device) == cudaSuccess)
        bound_device = im->device;
}

// Every entry point of the backend starts here.
static inline cuda_impl *impl_of(backend *be) {
    cuda_impl *im = (cuda_impl *)be->impl;
    cuda_bind_device(im);
    return im;
}

// Map a CUDA error to the exit table (out of memory 6, everything else a GPU fault 81),
// remember it as the backend's status, set the thread's error and return the code.
int cuda_fail(cuda_impl *im, cudaError_t err, const char *what, const char *file, int line);
int cublas_fail(cuda_impl *im, cublasStatus_t st, const char *what, const char *file,
                int line);
int cuda_fail_msg(cuda_impl *im, int code, const char *msg);

// For functions returning an exit code.
#define CUDA_TRY(im, call)                                                                 \
    do {                                                                                   \
        cudaError_t cuda_err_ = (call);                                                    \
        if (cuda_err_ != cudaSuccess) return cuda_fail((im), cuda_err_, #call, __FILE__, __LINE__); \
    } while (0)
#define CUBLAS_TRY(im, call)                                                               \
    do {                                                                                   \
        cublasStatus_t cublas_st_ = (call);                                                \
        if (cublas_st_ != CUBLAS_STATUS_SUCCESS)                                           \
            return cublas_fail((im), cublas_st_, #call, __FILE__, __LINE__);               \
    } while (0)
// For ops (void): record the failure and leave the op.
#define CUDA_OP(im, call)                                                                  \
    do {                                                                                   \
        cudaError_t cuda_err_ = (call);                                                    \
        if (cuda_err_ != cudaSuccess) {                                                    \
            cuda_fail((im), cuda_err_, #call, __FILE__, __LINE__);                         \
            return;                                                                        \
        }                                                                                  \
    } while (0)
// After every launch: configuration errors show at once, faults at the next sync.
#define LAUNCHED(im) CUDA_OP(im, cudaGetLastError())
// An op after a failure does nothing: its inputs may be garbage and the status says so.
#define OP_BEGIN(be, im)                                                                   \
    cuda_impl *im = impl_of(be);                                                           \
    if (im->status) return

// Scratch of at least `bytes` in `slot`; NULL (status set) when it cannot be had.
void *cuda_scratch(cuda_impl *im, int slot, size_t bytes);

// Grid size for n elements with `threads` per block, capped: kernels loop grid-stride.
static inline unsigned grid_for(size_t n, int threads) {
    size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
    if (blocks > 1048576) blocks = 1048576;
    return blocks ? (unsigned)blocks : 1u;
}

static __device__ __forceinline__ float bf2f(bf16 x) { return __bfloat162float(x); }
static __device__ __forceinline__ bf16 f2bf(float x) { return __float2bfloat16(x); }

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// cuBLASLt: D = alpha op(A) op(B) + beta D (column-major, fp32 compute), with an
// optional bias epilogue (bias of D's type, length m). 0 or an exit code.
int cuda_gemm(cuda_impl *im, const gemm_key *key, const void *A, const void *B, void *D,
              float alpha, float beta, const void *bias);
// A key with the common fields filled in (no batch, bf16 in and out, no epilogue).
gemm_key gemm_key_make(int trans_a, int trans_b, int m, int n, int k, int lda, int ldb,
                       int ldc);

// dst (C) += sum over rows n of dout (N,C); deterministic (fixed-order two-pass).
void cuda_column_sum_bf16(cuda_impl *im, float *dst, const bf16 *src, int N, int C);

// Ops defined in ops.cu and attention.cu, installed into the vtable by backend_cuda.cu.
void cuda_install_ops(backend *be);
void cuda_install_attention(backend *be);
// Once per backend: kernel attributes (shared memory above 48 KB) and the path choice.
int cuda_attention_init(cuda_impl *im);
