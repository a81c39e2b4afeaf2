// The CUDA backend: device state, memory, error mapping, cuBLASLt GEMMs and the linear
// layer. Elementwise, normalisation, embedding, loss and optimiser ops live in ops.cu,
// attention in attention.cu.
#include "kernels/cuda/cuda_common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- errors -------------------------------------------------------------------------

int cuda_fail_msg(cuda_impl *im, int code, const char *msg) {
    if (im && !im->status) {
        im->status = code;
        snprintf(im->status_msg, sizeof im->status_msg, "%s", msg);
    }
    return error_set(code, "%s", msg);
}

int cuda_fail(cuda_impl *im, cudaError_t err, const char *what, const char *file, int line) {
    int code = err == cudaErrorMemoryAllocation ? EXIT_GPU_OOM : EXIT_GPU_FAULT;
    char msg[256];
    snprintf(msg, sizeof msg, "cuda: %s failed at %s:%d: %s (%s)", what, file, line,
             cudaGetErrorName(err), cudaGetErrorString(err));
    return cuda_fail_msg(im, code, msg);
}

int cublas_fail(cuda_impl *im, cublasStatus_t st, const char *what, const char *file,
                int line) {
    // Allocation failures are memory; a rejected problem is our bug; the rest (execution
    // failed, internal error, arch mismatch) is the GPU's or the driver's.
    int code = st == CUBLAS_STATUS_ALLOC_FAILED ? EXIT_GPU_OOM
               : (st == CUBLAS_STATUS_INVALID_VALUE || st == CUBLAS_STATUS_NOT_SUPPORTED)
                   ? EXIT_INTERNAL
                   : EXIT_GPU_FAULT;
    char msg[256];
    snprintf(msg, sizeof msg, "cublas: %s failed at %s:%d: %s", what, file, line,
             cublasGetStatusString(st));
    return cuda_fail_msg(im, code, msg);
}

// A call that returns a code first reports an earlier op's failure, again.
static int status_again(cuda_impl *im) {
    return im->status ? error_set(im->status, "%s", im->status_msg) : 0;
}

// ---- scratch ------------------------------------------------------------------------

void *cuda_scratch(cuda_impl *im, int slot, size_t bytes) {
    if (bytes <= im->scratch_size[slot]) return im->scratch[slot];
    // Earlier ops may still read the old buffer: wait for them before freeing it.
    cudaError_t err = cudaStreamSynchronize(im->stream);
    if (err != cudaSuccess) {
        cuda_fail(im, err, "cudaStreamSynchronize (scratch)", __FILE__, __LINE__);
        return NULL;
    }
    err = im->scratch[slot] ? cudaFree(im->scratch[slot]) : cudaSuccess;
    im->scratch[slot] = NULL;
    im->scratch_size[slot] = 0;
    if (err != cudaSuccess) {
        cuda_fail(im, err, "cudaFree (op scratch)", __FILE__, __LINE__);
        return NULL;
    }
    size_t want = bytes + bytes / 4;  // some headroom: batches vary in length
    err = cudaMalloc(&im->scratch[slot], want);
    if (err != cudaSuccess) {
        im->scratch[slot] = NULL;
        cuda_fail(im, err, "cudaMalloc (op scratch)", __FILE__, __LINE__);
        return NULL;
    }
    im->scratch_size[slot] = want;
    return im->scratch[slot];
}

// ---- memory -------------------------------------------------------------------------

static void *cuda_alloc(backend *be, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return NULL;
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();  // an allocation failure is not sticky: clear it
        char msg[160];
        snprintf(msg, sizeof msg, "cuda: cudaMalloc of %zu bytes failed: %s", bytes,
                 cudaGetErrorString(err));
        error_set(err == cudaErrorMemoryAllocation ? EXIT_GPU_OOM : EXIT_GPU_FAULT, "%s", msg);
        if (err != cudaErrorMemoryAllocation) cuda_fail_msg(im, EXIT_GPU_FAULT, msg);
        return NULL;
    }
    return p;
}

static void cuda_free_ptr(backend *be, void *ptr) {
    if (!ptr) return;
    cuda_impl *im = impl_of(be);
    cudaError_t err = cudaFree(ptr);  // a failure here is a fault or our bug: keep it
    if (err != cudaSuccess) cuda_fail(im, err, "cudaFree", __FILE__, __LINE__);
}

static int cuda_memset_zero(backend *be, void *ptr, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    CUDA_TRY(im, cudaMemsetAsync(ptr, 0, bytes, im->stream));
    return 0;
}

static int cuda_copy_to_device(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    // From pageable memory this returns once the source is staged, so the caller may
    // reuse its buffer at once.
    CUDA_TRY(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, im->stream));
    return 0;
}

static int cuda_copy_to_host(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    CUDA_TRY(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, im->stream));
    CUDA_TRY(im, cudaStreamSynchronize(im->stream));
    return 0;
}

static int cuda_copy_device(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    CUDA_TRY(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream));
    return 0;
}

static int cuda_synchronize(backend *be) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    CUDA_TRY(im, cudaStreamSynchronize(im->stream));
    CUDA_TRY(im, cudaGetLastError());
    return 0;
}

// Teardown is best effort and unchecked: destroy cannot report, it runs on error paths
// too, and the run's exit code is decided before it.
static void cuda_destroy(backend *be) {
    if (!be) return;
    cuda_impl *im = impl_of(be);
    if (im) {
        if (im->stream) cudaStreamSynchronize(im->stream);
        if (im->comm_stream) cudaStreamSynchronize(im->comm_stream);
        for (int i = 0; i < CUDA_SCRATCH_SLOTS; i++)
            if (im->scratch[i]) cudaFree(im->scratch[i]);
        if (im->norm_partials) cudaFree(im->norm_partials);
        if (im->workspace) cudaFree(im->workspace);
        if (im->lt) cublasLtDestroy(im->lt);
        if (im->blas) cublasDestroy(im->blas);
        if (im->grads_ready) cudaEventDestroy(im->grads_ready);
        if (im->comm_done) cudaEventDestroy(im->comm_done);
        if (im->comm_stream) cudaStreamDestroy(im->comm_stream);
        if (im->stream) cudaStreamDestroy(im->stream);
        free(im);
    }
    free(be);
}

// ---- cuBLASLt -------------------------------------------------------------------------

static int pointer_alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int align = 256;
    while (align > 1 && (a % (uintptr_t)align) != 0) align >>= 1;
    return align;
}

gemm_key gemm_key_make(int trans_a, int trans_b, int m, int n, int k, int lda, int ldb,
                       int ldc) {
    gemm_key key;
    memset(&key, 0, sizeof key);  // keys are compared bytewise: padding must be zero
    key.trans_a = trans_a;
    key.trans_b = trans_b;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.batch = 1;
    key.ab_type = CUDA_R_16BF;
    key.c_type = CUDA_R_16BF;
    key.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    return key;
}

static int layout_create(cuda_impl *im, cublasLtMatrixLayout_t *out, int type, int rows,
                         int cols, int ld, int batch, long long stride) {
    CUBLAS_TRY(im, cublasLtMatrixLayoutCreate(out, (cudaDataType_t)type, (uint64_t)rows,
                                              (uint64_t)cols, (int64_t)ld));
    if (batch > 1) {
        int32_t count = batch;
        int64_t offset = stride;
        CUBLAS_TRY(im, cublasLtMatrixLayoutSetAttribute(*out, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                        &count, sizeof count));
        CUBLAS_TRY(im, cublasLtMatrixLayoutSetAttribute(
                           *out, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset,
                           sizeof offset));
    }
    return 0;
}

static void gemm_remember(cuda_impl *im, const gemm_key *key, const cublasLtMatmulAlgo_t *algo,
                          int use_blas) {
    if (im->num_plans == GEMM_PLAN_CACHE) return;
    gemm_plan *plan = &im->plans[im->num_plans++];
    memset(plan, 0, sizeof *plan);
    plan->key = *key;
    if (algo) plan->algo = *algo;
    plan->use_blas = use_blas;
}

// The cached or the heuristic's algorithm; *use_blas = 1 when cuBLASLt has none for this
// problem (or RUNNER_CUDA_GEMM=cublas), and the caller takes the cuBLAS fallback.
static int gemm_find_plan(cuda_impl *im, const gemm_key *key, cublasLtMatmulDesc_t op,
                          cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                          cublasLtMatrixLayout_t lc, cublasLtMatmulAlgo_t *algo, int *use_blas) {
    for (int i = 0; i < im->num_plans; i++) {
        if (memcmp(&im->plans[i].key, key, sizeof *key) == 0) {
            *algo = im->plans[i].algo;
            *use_blas = im->plans[i].use_blas;
            return 0;
        }
    }
    if (im->force_blas) {
        *use_blas = 1;
        gemm_remember(im, key, NULL, 1);
        return 0;
    }
    cublasLtMatmulPreference_t pref = NULL;
    CUBLAS_TRY(im, cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = im->workspace_size;
    uint32_t aa = (uint32_t)key->align_a, ab = (uint32_t)key->align_b,
             ac = (uint32_t)key->align_c;
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                  &aa, sizeof aa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                  &ab, sizeof ab);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                  &ac, sizeof ac);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                  &ac, sizeof ac);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(im->lt, op, la, lb, lc, lc, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0)) {
        // e.g. a leading dimension that is no multiple of 8 (a 9-label classifier)
        *use_blas = 1;
        gemm_remember(im, key, NULL, 1);
        return 0;
    }
    if (st != CUBLAS_STATUS_SUCCESS)
        return cublas_fail(im, st, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    *algo = result.algo;
    *use_blas = 0;
    gemm_remember(im, key, &result.algo, 0);
    return 0;
}

__global__ void add_bias_kernel(bf16 *out, const bf16 *bias, size_t n, int OC);

// The same problem through classic cuBLAS, which takes any leading dimension; a bias
// becomes a separate pass (D is then (m, n) column-major with ldc == m: row-major (n, m)).
static int blas_gemm(cuda_impl *im, const gemm_key *key, const void *A, const void *B, void *D,
                     float alpha, float beta, const void *bias) {
    CUBLAS_TRY(im, cublasGemmStridedBatchedEx(
                       im->blas, (cublasOperation_t)key->trans_a, (cublasOperation_t)key->trans_b,
                       key->m, key->n, key->k, &alpha, A, (cudaDataType_t)key->ab_type, key->lda,
                       key->stride_a, B, (cudaDataType_t)key->ab_type, key->ldb, key->stride_b,
                       &beta, D, (cudaDataType_t)key->c_type, key->ldc, key->stride_c, key->batch,
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) {
        size_t n = (size_t)key->m * key->n;
        add_bias_kernel<<<grid_for(n, 256), 256, 0, im->stream>>>((bf16 *)D, (const bf16 *)bias,
                                                                  n, key->m);
        CUDA_TRY(im, cudaGetLastError());
    }
    return 0;
}

int cuda_gemm(cuda_impl *im, const gemm_key *key_in, const void *A, const void *B, void *D,
              float alpha, float beta, const void *bias) {
    if (im->status) return im->status;
    gemm_key key = *key_in;
    key.beta_nonzero = beta != 0.0f;
    key.align_a = pointer_alignment(A);
    key.align_b = pointer_alignment(B);
    key.align_c = pointer_alignment(D);
    if (bias) key.epilogue = CUBLASLT_EPILOGUE_BIAS;

    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulAlgo_t algo;
    int use_blas = 0;
    cublasOperation_t ta = (cublasOperation_t)key.trans_a, tb = (cublasOperation_t)key.trans_b;
    cublasLtEpilogue_t epilogue = (cublasLtEpilogue_t)key.epilogue;
    int rc = 0;
    cublasStatus_t st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                            sizeof epilogue);
    if (st == CUBLAS_STATUS_SUCCESS && bias)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                            sizeof bias);
    if (st != CUBLAS_STATUS_SUCCESS) {
        rc = cublas_fail(im, st, "cublasLtMatmulDesc", __FILE__, __LINE__);
        goto done;
    }
    // op(A) is (m,k): A itself is (m,k) untransposed or (k,m) transposed; likewise B.
    rc = layout_create(im, &la, key.ab_type, ta == CUBLAS_OP_N ? key.m : key.k,
                       ta == CUBLAS_OP_N ? key.k : key.m, key.lda, key.batch, key.stride_a);
    if (!rc)
        rc = layout_create(im, &lb, key.ab_type, tb == CUBLAS_OP_N ? key.k : key.n,
                           tb == CUBLAS_OP_N ? key.n : key.k, key.ldb, key.batch, key.stride_b);
    if (!rc) rc = layout_create(im, &lc, key.c_type, key.m, key.n, key.ldc, key.batch, key.stride_c);
    if (!rc) rc = gemm_find_plan(im, &key, op, la, lb, lc, &algo, &use_blas);
    if (!rc && use_blas) {
        rc = blas_gemm(im, &key, A, B, D, alpha, beta, bias);
    } else if (!rc) {
        st = cublasLtMatmul(im->lt, op, &alpha, A, la, B, lb, &beta, D, lc, D, lc, &algo,
                            im->workspace, im->workspace_size, im->stream);
        if (st != CUBLAS_STATUS_SUCCESS) rc = cublas_fail(im, st, "cublasLtMatmul", __FILE__, __LINE__);
    }
done:
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}

// ---- linear -----------------------------------------------------------------------------

__global__ void add_bias_kernel(bf16 *out, const bf16 *bias, size_t n, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = f2bf(bf2f(out[i]) + bf2f(bias[i % (size_t)OC]));
}

// GELU after the GEMM is our kernel, not cuBLASLt's GELU epilogue. cublasLt.h names the
// epilogue only "GELU" with no formula, and it is the tanh approximation
// 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) (PyTorch fuses it only for
// gelu(approximate="tanh")); BERT, the CPU backend and every checkpoint we load use the
// erf form. The two differ by up to 4.7e-4 (at x = -2.70), under one bf16 step for most
// x, but with a sign fixed by x: a bias, not noise, that a fine-tune accumulates. It was
// not measured on a GPU here, so we keep the exact form: the GEMM writes the
// pre-activation (bias fused) and gelu_forward_kernel applies erf GELU, one extra pass
// over (N,F) bf16 that the GEMM dominates.
void cuda_gelu_forward_bf16(cuda_impl *im, bf16 *out, const bf16 *inp, size_t n);

static void cuda_matmul_forward(backend *be, void *out, void *pre, const void *inp,
                                const void *weight, const void *bias, int N, int IC, int OC,
                                matmul_epilogue epilogue) {
    OP_BEGIN(be, im);
    bf16 *target = (bf16 *)(epilogue == EPILOGUE_GELU && pre ? pre : out);
    // cuBLASLt reads the bias with the output's alignment rules; an odd-offset bias (a
    // small head after odd-sized tensors) gets a separate pass instead.
    int fused_bias = bias && pointer_alignment(bias) >= 16;
    // Row-major out (N,OC) = inp (N,IC) W^T is column-major out^T (OC,N) = W inp^T,
    // W seen column-major as (IC,OC) and transposed.
    gemm_key key = gemm_key_make(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, IC, IC, OC);
    if (cuda_gemm(im, &key, weight, inp, target, 1.0f, 0.0f, fused_bias ? bias : NULL)) return;
    if (bias && !fused_bias) {
        size_t n = (size_t)N * OC;
        add_bias_kernel<<<grid_for(n, 256), 256, 0, im->stream>>>(target, (const bf16 *)bias, n, OC);
        LAUNCHED(im);
    }
    if (epilogue == EPILOGUE_GELU) cuda_gelu_forward_bf16(im, (bf16 *)out, target, (size_t)N * OC);
}

static void cuda_matmul_backward(backend *be, void *dinp, float *dweight, float *dbias,
                                 const void *dout, const void *inp, const void *weight, int N,
                                 int IC, int OC) {
    OP_BEGIN(be, im);
    if (dinp) {
        // dinp (N,IC) += dout (N,OC) W (OC,IC): column-major dinp^T (IC,N) = W^T dout^T,
        // W seen column-major as (IC,OC) untransposed. beta = 1 accumulates in bf16.
        gemm_key key = gemm_key_make(CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, IC, OC, IC);
        if (cuda_gemm(im, &key, weight, dout, dinp, 1.0f, 1.0f, NULL)) return;
    }
    if (dweight) {
        // dweight (OC,IC) += dout^T inp: column-major dW^T (IC,OC) = inp^T dout, with
        // bf16 inputs, fp32 accumulation and an fp32 C/D = the fp32 gradient itself, so
        // beta = 1 adds into the master gradient without a bf16 round trip.
        gemm_key key = gemm_key_make(CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, IC, OC, IC);
        key.c_type = CUDA_R_32F;
        if (cuda_gemm(im, &key, inp, dout, dweight, 1.0f, 1.0f, NULL)) return;
    }
    if (dbias) cuda_column_sum_bf16(im, dbias, (const bf16 *)dout, N, OC);
}

// ---- streams for overlapped gradient all-reduce -------------------------------------------

extern "C" int backend_cuda_device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

extern "C" void *backend_cuda_stream(backend *be) { return (void *)impl_of(be)->stream; }

extern "C" void *backend_cuda_comm_stream(backend *be) {
    return (void *)impl_of(be)->comm_stream;
}

extern "C" int backend_cuda_grads_ready(backend *be) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    // cudaStreamWaitEvent waits for the record made just before it, so one event serves
    // every bucket: re-recording later does not disturb waits already queued.
    CUDA_TRY(im, cudaEventRecord(im->grads_ready, im->stream));
    CUDA_TRY(im, cudaStreamWaitEvent(im->comm_stream, im->grads_ready, 0));
    return 0;
}

extern "C" int backend_cuda_join_comm(backend *be) {
    cuda_impl *im = impl_of(be);
    if (status_again(im)) return im->status;
    CUDA_TRY(im, cudaEventRecord(im->comm_done, im->comm_stream));
    CUDA_TRY(im, cudaStreamWaitEvent(im->stream, im->comm_done, 0));
    return 0;
}

// ---- creation ---------------------------------------------------------------------------

static int cuda_start(cuda_impl *im, int device) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        // the usual case on a machine without a GPU: say that first
        char msg[200];
        snprintf(msg, sizeof msg, "cuda: no usable GPU: %s (%s)", cudaGetErrorString(err),
                 cudaGetErrorName(err));
        return cuda_fail_msg(im, EXIT_GPU_FAULT, msg);
    }
    if (device < 0 || device >= count) {
        char msg[120];
        snprintf(msg, sizeof msg, "cuda: device %d asked for, %d visible", device, count);
        return cuda_fail_msg(im, EXIT_GPU_FAULT, msg);
    }
    CUDA_TRY(im, cudaSetDevice(device));
    CUDA_TRY(im, cudaDeviceGetAttribute(&im->sm_count, cudaDevAttrMultiProcessorCount, device));
    int lowest = 0, highest = 0;
    CUDA_TRY(im, cudaDeviceGetStreamPriorityRange(&lowest, &highest));
    CUDA_TRY(im, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    // Communication gets the higher priority so its small kernels are not starved by
    // the backward GEMMs they overlap with.
    CUDA_TRY(im, cudaStreamCreateWithPriority(&im->comm_stream, cudaStreamNonBlocking, highest));
    CUDA_TRY(im, cudaEventCreateWithFlags(&im->grads_ready, cudaEventDisableTiming));
    CUDA_TRY(im, cudaEventCreateWithFlags(&im->comm_done, cudaEventDisableTiming));
    CUBLAS_TRY(im, cublasLtCreate(&im->lt));
    CUBLAS_TRY(im, cublasCreate(&im->blas));
    CUBLAS_TRY(im, cublasSetStream(im->blas, im->stream));
    const char *gemm_env = getenv("RUNNER_CUDA_GEMM");
    im->force_blas = gemm_env && strcmp(gemm_env, "cublas") == 0;
    im->workspace_size = (size_t)32 << 20;  // what NVIDIA recommends for Hopper
    CUDA_TRY(im, cudaMalloc(&im->workspace, im->workspace_size));
    CUDA_TRY(im, cudaMalloc((void **)&im->norm_partials, GRAD_NORM_BLOCKS * sizeof(float)));
    return cuda_attention_init(im);
}

extern "C" backend *backend_cuda_create(int device) {
    backend *be = (backend *)calloc(1, sizeof *be);
    cuda_impl *im = (cuda_impl *)calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        error_set(EXIT_RESOURCES, "cuda: out of host memory creating the backend");
        return NULL;
    }
    be->name = "cuda";
    be->act_dtype = DTYPE_BF16;
    be->impl = im;
    im->device = device;
    if (cuda_start(im, device)) {
        // Creation failures are "CUDA cannot start" (81) unless memory ran out.
        int code = im->status == EXIT_GPU_OOM ? EXIT_GPU_OOM : EXIT_GPU_FAULT;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", im->status_msg);
        cuda_destroy(be);
        error_set(code, "%s", msg);
        return NULL;
    }
    be->alloc = cuda_alloc;
    be->free = cuda_free_ptr;
    be->memset_zero = cuda_memset_zero;
    be->copy_to_device = cuda_copy_to_device;
    be->copy_to_host = cuda_copy_to_host;
    be->copy_device = cuda_copy_device;
    be->synchronize = cuda_synchronize;
    be->destroy = cuda_destroy;
    be->matmul_forward = cuda_matmul_forward;
    be->matmul_backward = cuda_matmul_backward;
    cuda_install_ops(be);
    cuda_install_attention(be);
    return be;
}
