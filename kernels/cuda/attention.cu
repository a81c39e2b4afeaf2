// Self-attention with a padding mask, two paths:
// - unfused (training, any head size): q, k, v gathered to (B,NH,T,HS), scores by one
//   strided-batched cuBLASLt GEMM in fp32, a masked softmax + dropout kernel, then
//   dropout(att) @ v by GEMM. `att` keeps the probabilities BEFORE dropout, as the CPU
//   backend does (softmax's backward needs the values of dropped entries too); backward
//   draws the same dropout mask again from (seed, offset).
// - fused flash-style forward for head size 64: tensor cores (WMMA), keys streamed
//   through shared memory; nothing of size T x T in memory except `att` itself when the
//   caller keeps it (training), and dropout applied on the fly.
// - fused backward for head size 64 and T <= 128 from the saved P (training).
// RUNNER_CUDA_ATTENTION=unfused forces the unfused path (to compare, or to bisect); tests/gpu
// checks both against the CPU.
#include "kernels/cuda/cuda_common.cuh"

#include <math.h>
#include <mma.h>
#include <stdlib.h>
#include <string.h>

// ---- layout changes ----------------------------------------------------------------------

// src (B,T,NH,HS) with rows `src_stride` apart -> dst (B,NH,T,HS) contiguous.
__global__ void gather_heads_kernel(bf16 *dst, const bf16 *src, int B, int T, int NH, int HS,
                                    int src_stride) {
    size_t total = (size_t)B * NH * T * HS;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % HS);
        size_t t = (i / HS) % T, bh = i / ((size_t)HS * T);
        size_t b = bh / NH, h = bh % NH;
        dst[i] = src[(b * T + t) * (size_t)src_stride + h * HS + d];
    }
}

// src (B,NH,T,HS) -> dst (B,T,NH,HS) with rows `dst_stride` apart; accumulate adds.
__global__ void unpermute_kernel(bf16 *dst, const bf16 *src, int B, int T, int NH, int HS,
                                 int dst_stride, int accumulate) {
    size_t total = (size_t)B * T * NH * HS;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(i % HS);
        size_t h = (i / HS) % NH, bt = i / ((size_t)HS * NH);
        size_t b = bt / T, t = bt % T;
        float v = bf2f(src[((b * NH + h) * T + t) * HS + d]);
        bf16 *out = dst + bt * (size_t)dst_stride + h * HS + d;
        *out = f2bf(accumulate ? bf2f(*out) + v : v);
    }
}

// ---- softmax ---------------------------------------------------------------------------------

// One warp per row of scores (B,NH,T,T) fp32 (already scaled): masked softmax into
// probs (may be NULL), and dropout(probs) into dropped (may be NULL) with counter
// offset + row * T + j. mask == NULL attends to every key; a row whose keys are all
// padding gets zeros (as on the CPU).
__global__ void attention_softmax_kernel(bf16 *probs, bf16 *dropped, const float *scores,
                                         const int32_t *mask, int rows, int T, int NH, float p,
                                         float keep_scale, uint64_t seed, uint64_t offset) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    int b = row / (NH * T);
    const float *s = scores + (size_t)row * T;
    const int32_t *m = mask ? mask + (size_t)b * T : NULL;
    float mx = -INFINITY;
    for (int j = lane; j < T; j += 32)
        if (!m || m[j]) mx = fmaxf(mx, s[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < T; j += 32)
        if (!m || m[j]) sum += __expf(s[j] - mx);
    sum = warp_sum(sum);
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int j = lane; j < T; j += 32) {
        float v = (!m || m[j]) ? __expf(s[j] - mx) * inv : 0.0f;
        bf16 vb = f2bf(v);
        if (probs) probs[(size_t)row * T + j] = vb;
        if (dropped) {
            // the dropped copy scales the stored (rounded) probability, as backward will
            int keep = p <= 0.0f || dropout_keep(seed, offset + (uint64_t)row * T + j, p);
            dropped[(size_t)row * T + j] = f2bf(keep ? bf2f(vb) * keep_scale : 0.0f);
        }
    }
}

// dst (n) = dropout(src) with counter offset + i over the flat (B,NH,T,T) index.
__global__ void attention_dropout_kernel(bf16 *dst, const bf16 *src, size_t n, float p,
                                         float keep_scale, uint64_t seed, uint64_t offset) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = f2bf(dropout_keep(seed, offset + i, p) ? bf2f(src[i]) * keep_scale : 0.0f);
}

// dscores (B,NH,T,T) bf16 from the saved P (before dropout) and datt = dout v^T (fp32):
// D = datt * keep / (1-p), dscores = P (D - sum_j P_j D_j). One warp per row. The
// 1/sqrt(HS) scale is applied by the GEMMs that consume dscores.
__global__ void attention_softmax_backward_kernel(bf16 *dscores, const bf16 *probs,
                                                  const float *datt, int rows, int T, float p,
                                                  float keep_scale, uint64_t seed,
                                                  uint64_t offset) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const bf16 *P = probs + (size_t)row * T;
    const float *dA = datt + (size_t)row * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += 32) {
        float d = dA[j];
        if (p > 0.0f) d = dropout_keep(seed, offset + (uint64_t)row * T + j, p) ? d * keep_scale : 0.0f;
        dot += bf2f(P[j]) * d;
    }
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) {
        float d = dA[j];
        if (p > 0.0f) d = dropout_keep(seed, offset + (uint64_t)row * T + j, p) ? d * keep_scale : 0.0f;
        dscores[(size_t)row * T + j] = f2bf(bf2f(P[j]) * (d - dot));
    }
}

// ---- fused forward, head size 64 -------------------------------------------------------------

// Tensor cores through WMMA (bf16 16x16x16, fp32 accumulation; sm_80 and sm_90). A block
// of 4 warps takes 64 queries of one (b, h), each warp 16 of them. Two passes over the
// keys, 32 at a time through shared memory: the first computes each row's max and sum
// of exponentials, the second P = exp(s - max) / sum exactly and accumulates P v in
// accumulator fragments. Two passes (the scores twice) instead of the online rescaling
// of FlashAttention, because a WMMA fragment's element-to-row mapping is opaque: its rows
// cannot be rescaled in place. At T = 128 the extra q k^T is cheap; nothing of size
// T x T goes to memory. Rows beyond T and padded keys are zero-filled and masked.
enum { FLASH_HS = 64, FLASH_ROWS = 64, FLASH_KEYS = 32, FLASH_WARPS = 4 };

static __device__ void flash_load_rows(bf16 *dst, const bf16 *src, size_t row_stride, int row0,
                                       int rows, int T) {
    // rows x 64 bf16 as 16-byte vectors: 8 per row
    for (int e = threadIdx.x; e < rows * (FLASH_HS / 8); e += blockDim.x) {
        int r = e / (FLASH_HS / 8), v = e % (FLASH_HS / 8);
        int row = row0 + r;
        uint4 val = make_uint4(0u, 0u, 0u, 0u);
        if (row < T) val = *(const uint4 *)(src + (size_t)row * row_stride + v * 8);
        *(uint4 *)(dst + r * FLASH_HS + v * 8) = val;
    }
}

// S (16 x 32) of this warp = q (16 x 64) k^T, into shared memory (fp32, unscaled).
static __device__ void flash_scores(
    float *sS, const bf16 *sK,
    const nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, bf16, nvcuda::wmma::row_major> *qa) {
    using namespace nvcuda;
#pragma unroll
    for (int nt = 0; nt < FLASH_KEYS / 16; nt++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
        wmma::fill_fragment(c, 0.0f);
#pragma unroll
        for (int kk = 0; kk < FLASH_HS / 16; kk++) {
            // B (d, j) = k[j][d]: k row-major with rows of 64 is B column-major
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kb;
            wmma::load_matrix_sync(kb, sK + nt * 16 * FLASH_HS + kk * 16, FLASH_HS);
            wmma::mma_sync(c, qa[kk], kb, c);
        }
        wmma::store_matrix_sync(sS + nt * 16, c, FLASH_KEYS, wmma::mem_row_major);
    }
}

// With att != NULL it also writes the probabilities (before dropout) for backward; with
// p > 0 it multiplies v by dropout(P), counters as in attention_softmax_kernel.
__global__ void __launch_bounds__(FLASH_WARPS * 32)
    flash_forward_hs64_kernel(bf16 *out, bf16 *att, const bf16 *qkv, const int32_t *mask, int T,
                              int NH, float scale, float p, float keep_scale, uint64_t seed,
                              uint64_t offset) {
    using namespace nvcuda;
    __shared__ __align__(128) bf16 sQ[FLASH_ROWS * FLASH_HS];
    __shared__ __align__(128) bf16 sK[FLASH_KEYS * FLASH_HS];
    __shared__ __align__(128) bf16 sV[FLASH_KEYS * FLASH_HS];
    __shared__ __align__(128) float sS[FLASH_WARPS][16 * FLASH_KEYS];
    __shared__ __align__(128) bf16 sP[FLASH_WARPS][16 * FLASH_KEYS];
    __shared__ __align__(128) float sO[FLASH_WARPS][16 * FLASH_HS];
    __shared__ int key_on[FLASH_KEYS];
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * FLASH_ROWS;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    size_t C = (size_t)NH * FLASH_HS, row_stride = 3 * C;
    const bf16 *base = qkv + (size_t)b * T * row_stride + (size_t)h * FLASH_HS;

    flash_load_rows(sQ, base, row_stride, q0, FLASH_ROWS, T);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa[FLASH_HS / 16];
#pragma unroll
    for (int kk = 0; kk < FLASH_HS / 16; kk++)
        wmma::load_matrix_sync(qa[kk], sQ + warp * 16 * FLASH_HS + kk * 16, FLASH_HS);

    // Each lane owns half of one of the warp's 16 rows: row r, keys half*16 .. +16.
    int r = lane >> 1, half = lane & 1;
    float mx = -INFINITY, sum = 0.0f;
    for (int j0 = 0; j0 < T; j0 += FLASH_KEYS) {
        flash_load_rows(sK, base + C, row_stride, j0, FLASH_KEYS, T);
        if (threadIdx.x < FLASH_KEYS) {
            int j = j0 + (int)threadIdx.x;
            key_on[threadIdx.x] = j < T && (!mask || mask[(size_t)b * T + j]);
        }
        __syncthreads();
        flash_scores(sS[warp], sK, qa);
        __syncwarp();
#pragma unroll
        for (int c = 0; c < 16; c++) {
            int jj = half * 16 + c;
            if (!key_on[jj]) continue;
            float s = sS[warp][r * FLASH_KEYS + jj] * scale;
            if (s > mx) {
                sum *= __expf(mx - s);
                mx = s;
            }
            sum += __expf(s - mx);
        }
        __syncthreads();  // sK and key_on are rewritten next
    }
    // combine the two halves of each row
    float mx2 = __shfl_xor_sync(0xffffffffu, mx, 1), sum2 = __shfl_xor_sync(0xffffffffu, sum, 1);
    float row_max = fmaxf(mx, mx2), row_sum = 0.0f;
    if (mx > -INFINITY) row_sum += sum * __expf(mx - row_max);
    if (mx2 > -INFINITY) row_sum += sum2 * __expf(mx2 - row_max);
    float inv = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;  // all keys padding: zeros

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FLASH_HS / 16];
#pragma unroll
    for (int nt = 0; nt < FLASH_HS / 16; nt++) wmma::fill_fragment(acc[nt], 0.0f);
    for (int j0 = 0; j0 < T; j0 += FLASH_KEYS) {
        flash_load_rows(sK, base + C, row_stride, j0, FLASH_KEYS, T);
        flash_load_rows(sV, base + 2 * C, row_stride, j0, FLASH_KEYS, T);
        if (threadIdx.x < FLASH_KEYS) {
            int j = j0 + (int)threadIdx.x;
            key_on[threadIdx.x] = j < T && (!mask || mask[(size_t)b * T + j]);
        }
        __syncthreads();
        flash_scores(sS[warp], sK, qa);
        __syncwarp();
        int i = q0 + warp * 16 + r;
        size_t att_row = ((size_t)(b * NH + h) * T + i) * T;  // flat (B,NH,T,T) index of (i, 0)
#pragma unroll
        for (int c = 0; c < 16; c++) {
            int jj = half * 16 + c, j = j0 + jj;
            float pr = key_on[jj] ? __expf(sS[warp][r * FLASH_KEYS + jj] * scale - row_max) * inv : 0.0f;
            bf16 prb = f2bf(pr);
            if (att && i < T && j < T) att[att_row + j] = prb;
            float a = bf2f(prb);  // as the unfused path: dropout scales the stored value
            if (p > 0.0f) a = dropout_keep(seed, offset + att_row + j, p) ? a * keep_scale : 0.0f;
            sP[warp][r * FLASH_KEYS + jj] = f2bf(a);
        }
        __syncwarp();
#pragma unroll
        for (int kk = 0; kk < FLASH_KEYS / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa;
            wmma::load_matrix_sync(pa, sP[warp] + kk * 16, FLASH_KEYS);
#pragma unroll
            for (int nt = 0; nt < FLASH_HS / 16; nt++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vb;
                wmma::load_matrix_sync(vb, sV + kk * 16 * FLASH_HS + nt * 16, FLASH_HS);
                wmma::mma_sync(acc[nt], pa, vb, acc[nt]);
            }
        }
        __syncthreads();  // sK, sV and key_on are rewritten next
    }
#pragma unroll
    for (int nt = 0; nt < FLASH_HS / 16; nt++)
        wmma::store_matrix_sync(sO[warp] + nt * 16, acc[nt], FLASH_HS, wmma::mem_row_major);
    __syncwarp();
    int i = q0 + warp * 16 + r;
    if (i >= T) return;
    bf16 *o = out + ((size_t)b * T + i) * C + (size_t)h * FLASH_HS + half * 32;
    const float *src = sO[warp] + r * FLASH_HS + half * 32;
#pragma unroll
    for (int d = 0; d < 32; d += 2)
        *(__nv_bfloat162 *)(o + d) = __floats2bfloat162_rn(src[d], src[d + 1]);
}

// ---- fused backward, head size 64, T <= 128 ----------------------------------------------------

// One block (8 warps) per (b, h): q, k, v and dout of the head in shared memory, the saved
// P read 16 query rows at a time. Per tile of 16 queries: dA = dout v^T (warp w: keys
// 16w..16w+15), dS = P (D - rowsum(P D)) with D = dropout(dA), dq += scale dS k (written
// at once), and each warp accumulates its keys' dv += dropout(P)^T dout and
// dk += dS^T q in WMMA fragments, written at the end. Replaces three gathers, five GEMMs,
// the softmax backward kernel, an fp32 T x T buffer and three scatters of the unfused
// path, which stays for other shapes and as this kernel's check.
enum { FB_T = 128, FB_WARPS = 8, FB_HS = 64 };
enum {
    FB_SMEM = 4 * FB_T * FB_HS * 2      // q, k, v, dout (bf16)
              + 3 * 16 * FB_T * 2       // P, dropout(P), dS tiles (bf16)
              + 16 * FB_T * 4           // dA tile (fp32), then the dq tile
};

__global__ void __launch_bounds__(FB_WARPS * 32)
    flash_backward_hs64_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const bf16 *att,
                               int T, int NH, float scale, float p, float keep_scale,
                               uint64_t seed, uint64_t offset) {
    using namespace nvcuda;
    extern __shared__ __align__(128) unsigned char fb_smem[];
    bf16 *sQ = (bf16 *)fb_smem, *sK = sQ + FB_T * FB_HS, *sV = sK + FB_T * FB_HS,
         *sdO = sV + FB_T * FB_HS;
    bf16 *sP = sdO + FB_T * FB_HS, *sA = sP + 16 * FB_T, *sdS = sA + 16 * FB_T;
    float *sdA = (float *)(sdS + 16 * FB_T);
    int h = blockIdx.x, b = blockIdx.y;
    int tid = threadIdx.x, warp = tid / 32;
    size_t C = (size_t)NH * FB_HS, row3 = 3 * C;
    int TP = (T + 15) & ~15;  // padded to whole 16-row tiles (zeros beyond T)
    const bf16 *qbase = qkv + (size_t)b * T * row3 + (size_t)h * FB_HS;
    flash_load_rows(sQ, qbase, row3, 0, TP, T);
    flash_load_rows(sK, qbase + C, row3, 0, TP, T);
    flash_load_rows(sV, qbase + 2 * C, row3, 0, TP, T);
    flash_load_rows(sdO, dout + (size_t)b * T * C + (size_t)h * FB_HS, C, 0, TP, T);
    __syncthreads();

    bool owns_keys = warp * 16 < TP;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> dk[FB_HS / 16], dv[FB_HS / 16];
#pragma unroll
    for (int nt = 0; nt < FB_HS / 16; nt++) {
        wmma::fill_fragment(dk[nt], 0.0f);
        wmma::fill_fragment(dv[nt], 0.0f);
    }
    size_t bh = (size_t)b * NH + h;
    const bf16 *P = att + bh * T * T;
    uint64_t counter0 = offset + (uint64_t)bh * T * T;  // the forward's dropout counters

    for (int q0 = 0; q0 < TP; q0 += 16) {
        // P and dropout(P) for queries q0..q0+15
        for (int e = tid; e < 16 * TP; e += blockDim.x) {
            int r = e / TP, j = e % TP, i = q0 + r;
            float pv = 0.0f, av = 0.0f;
            if (i < T && j < T) {
                pv = bf2f(P[(size_t)i * T + j]);
                av = p > 0.0f ? (dropout_keep(seed, counter0 + (uint64_t)i * T + j, p) ? pv * keep_scale : 0.0f)
                              : pv;
            }
            sP[r * FB_T + j] = f2bf(pv);
            sA[r * FB_T + j] = f2bf(av);
        }
        // dA (16 x keys of this warp) = dout_tile v^T
        if (owns_keys) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
#pragma unroll
            for (int kk = 0; kk < FB_HS / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> vb;
                wmma::load_matrix_sync(a, sdO + q0 * FB_HS + kk * 16, FB_HS);
                wmma::load_matrix_sync(vb, sV + warp * 16 * FB_HS + kk * 16, FB_HS);
                wmma::mma_sync(c, a, vb, c);
            }
            wmma::store_matrix_sync(sdA + warp * 16, c, FB_T, wmma::mem_row_major);
        }
        __syncthreads();
        // dS = P (D - sum_j P_j D_j): 16 threads per row (a half-warp), rows q0 + tid/16
        {
            int r = tid / 16, sub = tid % 16, i = q0 + r;
            float dot = 0.0f;
            for (int j = sub; j < TP; j += 16) {
                float d = sdA[r * FB_T + j];
                if (p > 0.0f && i < T && j < T)
                    d = dropout_keep(seed, counter0 + (uint64_t)i * T + j, p) ? d * keep_scale : 0.0f;
                dot += bf2f(sP[r * FB_T + j]) * d;
            }
            for (int o = 8; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            for (int j = sub; j < TP; j += 16) {
                float d = sdA[r * FB_T + j];
                if (p > 0.0f && i < T && j < T)
                    d = dropout_keep(seed, counter0 + (uint64_t)i * T + j, p) ? d * keep_scale : 0.0f;
                sdS[r * FB_T + j] = f2bf(bf2f(sP[r * FB_T + j]) * (d - dot));
            }
        }
        __syncthreads();
        // dq tile (16 x 64) = dS k: warps 0-3, 16 features each, staged in sdA (fp32)
        if (warp < FB_HS / 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
            wmma::fill_fragment(c, 0.0f);
            for (int kk = 0; kk < TP / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> kb;
                wmma::load_matrix_sync(a, sdS + kk * 16, FB_T);
                wmma::load_matrix_sync(kb, sK + kk * 16 * FB_HS + warp * 16, FB_HS);
                wmma::mma_sync(c, a, kb, c);
            }
            wmma::store_matrix_sync(sdA + warp * 16, c, FB_HS, wmma::mem_row_major);
        }
        // dv += dropout(P)^T dout, dk += dS^T q for this warp's keys
        if (owns_keys) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> at, st;
            wmma::load_matrix_sync(at, sA + warp * 16, FB_T);
            wmma::load_matrix_sync(st, sdS + warp * 16, FB_T);
#pragma unroll
            for (int nt = 0; nt < FB_HS / 16; nt++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> ob, qb;
                wmma::load_matrix_sync(ob, sdO + q0 * FB_HS + nt * 16, FB_HS);
                wmma::load_matrix_sync(qb, sQ + q0 * FB_HS + nt * 16, FB_HS);
                wmma::mma_sync(dv[nt], at, ob, dv[nt]);
                wmma::mma_sync(dk[nt], st, qb, dk[nt]);
            }
        }
        __syncthreads();
        for (int e = tid; e < 16 * FB_HS; e += blockDim.x) {
            int r = e / FB_HS, d = e % FB_HS, i = q0 + r;
            if (i >= T) continue;
            bf16 *g = dqkv + ((size_t)b * T + i) * row3 + (size_t)h * FB_HS + d;
            *g = f2bf(bf2f(*g) + scale * sdA[r * FB_HS + d]);
        }
        __syncthreads();  // the tiles and sdA are rewritten next
    }
    // q, k, v and dout are no longer needed: stage dk and dv there in fp32
    float *stage_k = (float *)sQ, *stage_v = (float *)sV;  // each FB_T x 64 fp32
    if (owns_keys) {
#pragma unroll
        for (int nt = 0; nt < FB_HS / 16; nt++) {
            wmma::store_matrix_sync(stage_k + warp * 16 * FB_HS + nt * 16, dk[nt], FB_HS,
                                    wmma::mem_row_major);
            wmma::store_matrix_sync(stage_v + warp * 16 * FB_HS + nt * 16, dv[nt], FB_HS,
                                    wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int e = tid; e < T * FB_HS; e += blockDim.x) {
        int j = e / FB_HS, d = e % FB_HS;
        bf16 *g = dqkv + ((size_t)b * T + j) * row3 + (size_t)h * FB_HS + d;
        g[C] = f2bf(bf2f(g[C]) + scale * stage_k[e]);
        g[2 * C] = f2bf(bf2f(g[2 * C]) + stage_v[e]);
    }
}

// ---- host side -------------------------------------------------------------------------------

static float keep_scale_for(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

// q, k, v of qkv (B,T,3C) -> dst (3,B,NH,T,HS). 0 or an exit code.
static int gather_qkv(cuda_impl *im, bf16 *dst, const bf16 *qkv, int B, int T, int NH, int HS) {
    int C = NH * HS;
    size_t per = (size_t)B * T * C;
    for (int which = 0; which < 3; which++) {
        gather_heads_kernel<<<grid_for(per, 256), 256, 0, im->stream>>>(
            dst + which * per, qkv + (size_t)which * C, B, T, NH, HS, 3 * C);
        CUDA_TRY(im, cudaGetLastError());
    }
    return 0;
}

// Strided-batched GEMM over the B*NH heads; matrices per head are contiguous.
static int heads_gemm(cuda_impl *im, int trans_a, int trans_b, int m, int n, int k,
                      const void *A, int lda, long long stride_a, const void *B, int ldb,
                      long long stride_b, void *D, int ldc, long long stride_c, int c_type,
                      int batch, float alpha, float beta) {
    gemm_key key = gemm_key_make(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    key.batch = batch;
    key.stride_a = stride_a;
    key.stride_b = stride_b;
    key.stride_c = stride_c;
    key.c_type = c_type;
    return cuda_gemm(im, &key, A, B, D, alpha, beta, NULL);
}

static void cuda_attention_forward(backend *be, void *out, void *att, const void *qkv,
                                   const int32_t *mask, int B, int T, int C, int NH,
                                   float dropout_p, uint64_t seed, uint64_t offset) {
    OP_BEGIN(be, im);
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    // The fused kernel reads q, k, v as 16-byte vectors and writes pairs of bf16.
    if (HS == FLASH_HS && !im->unfused_attention && (uintptr_t)qkv % 16 == 0 &&
        (uintptr_t)out % 4 == 0) {
        dim3 grid((unsigned)((T + FLASH_ROWS - 1) / FLASH_ROWS), (unsigned)NH, (unsigned)B);
        flash_forward_hs64_kernel<<<grid, FLASH_WARPS * 32, 0, im->stream>>>(
            (bf16 *)out, (bf16 *)att, (const bf16 *)qkv, mask, T, NH, scale, dropout_p,
            keep_scale_for(dropout_p), seed, offset);
        LAUNCHED(im);
        return;
    }
    size_t per = (size_t)B * T * C;  // elements of one of q, k, v
    size_t tt = (size_t)B * NH * T * T;
    int dropout = dropout_p > 0.0f;
    bf16 *qkvp = (bf16 *)cuda_scratch(im, 0, 3 * per * sizeof(bf16));
    float *scores = (float *)cuda_scratch(im, 1, tt * sizeof(float));
    bf16 *probs = att ? (bf16 *)att : (bf16 *)cuda_scratch(im, 2, tt * sizeof(bf16));
    bf16 *dropped = dropout ? (bf16 *)cuda_scratch(im, 3, tt * sizeof(bf16)) : probs;
    if (!qkvp || !scores || !probs || !dropped) return;
    bf16 *q = qkvp, *k = qkvp + per, *v = qkvp + 2 * per;
    int heads = B * NH;
    long long sq = (long long)T * HS, stt = (long long)T * T;

    if (gather_qkv(im, qkvp, (const bf16 *)qkv, B, T, NH, HS)) return;
    // scores (T,T) row-major = scale q k^T: column-major scores^T = k q^T.
    if (heads_gemm(im, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, k, HS, sq, q, HS, sq, scores, T, stt,
                   CUDA_R_32F, heads, scale, 0.0f))
        return;
    int rows = heads * T;
    attention_softmax_kernel<<<(rows + 7) / 8, 256, 0, im->stream>>>(
        probs, dropout ? dropped : NULL, scores, mask, rows, T, NH, dropout_p,
        keep_scale_for(dropout_p), seed, offset);
    LAUNCHED(im);
    // out_h (T,HS) = A v: column-major out^T = v^T A^T. Written over q (no longer needed).
    if (heads_gemm(im, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, v, HS, sq, dropped, T, stt, q, HS, sq,
                   CUDA_R_16BF, heads, 1.0f, 0.0f))
        return;
    unpermute_kernel<<<grid_for(per, 256), 256, 0, im->stream>>>((bf16 *)out, q, B, T, NH, HS, C, 0);
    LAUNCHED(im);
}

static void cuda_attention_backward(backend *be, void *dqkv, void *scratch, const void *dout,
                                    const void *qkv, const void *att, const int32_t *mask,
                                    int B, int T, int C, int NH, float dropout_p, uint64_t seed,
                                    uint64_t offset) {
    OP_BEGIN(be, im);
    (void)mask;  // masked keys have P = 0, so their score gradients vanish on their own
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    if (HS == FB_HS && T <= FB_T && !im->unfused_attention && (uintptr_t)qkv % 16 == 0 &&
        (uintptr_t)dout % 16 == 0) {
        dim3 grid((unsigned)NH, (unsigned)B);
        flash_backward_hs64_kernel<<<grid, FB_WARPS * 32, FB_SMEM, im->stream>>>(
            (bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)qkv, (const bf16 *)att, T, NH, scale,
            dropout_p, keep_scale_for(dropout_p), seed, offset);
        LAUNCHED(im);
        return;
    }
    size_t per = (size_t)B * T * C;
    size_t tt = (size_t)B * NH * T * T;
    int dropout = dropout_p > 0.0f;
    // slot 0: q, k, v, dout gathered, then dq, dk, dv: 7 blocks of (B,NH,T,HS)
    bf16 *buf = (bf16 *)cuda_scratch(im, 0, 7 * per * sizeof(bf16));
    float *datt = (float *)cuda_scratch(im, 1, tt * sizeof(float));
    bf16 *work = scratch ? (bf16 *)scratch : (bf16 *)cuda_scratch(im, 2, tt * sizeof(bf16));
    if (!buf || !datt || !work) return;
    bf16 *q = buf, *k = buf + per, *v = buf + 2 * per, *dop = buf + 3 * per;
    bf16 *dq = buf + 4 * per, *dk = buf + 5 * per, *dv = buf + 6 * per;
    const bf16 *P = (const bf16 *)att;
    int heads = B * NH, rows = heads * T;
    long long sq = (long long)T * HS, stt = (long long)T * T;

    if (gather_qkv(im, buf, (const bf16 *)qkv, B, T, NH, HS)) return;
    gather_heads_kernel<<<grid_for(per, 256), 256, 0, im->stream>>>(dop, (const bf16 *)dout, B, T,
                                                                    NH, HS, C);
    LAUNCHED(im);
    // A = dropout(P), the matrix forward multiplied v by (work holds it until dv is done).
    const bf16 *A = P;
    if (dropout) {
        attention_dropout_kernel<<<grid_for(tt, 256), 256, 0, im->stream>>>(
            work, P, tt, dropout_p, keep_scale_for(dropout_p), seed, offset);
        LAUNCHED(im);
        A = work;
    }
    // dv (T,HS) = A^T dout: column-major dv^T = dout^T A.
    if (heads_gemm(im, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, dop, HS, sq, A, T, stt, dv, HS, sq,
                   CUDA_R_16BF, heads, 1.0f, 0.0f))
        return;
    // datt (T,T) = dout v^T: column-major datt^T = v dout^T, fp32.
    if (heads_gemm(im, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, v, HS, sq, dop, HS, sq, datt, T, stt,
                   CUDA_R_32F, heads, 1.0f, 0.0f))
        return;
    bf16 *dS = work;  // A is no longer needed: the dv GEMM ran before this in stream order
    attention_softmax_backward_kernel<<<(rows + 7) / 8, 256, 0, im->stream>>>(
        dS, P, datt, rows, T, dropout_p, keep_scale_for(dropout_p), seed, offset);
    LAUNCHED(im);
    // dq (T,HS) = scale dS k: column-major dq^T = k^T dS^T.
    if (heads_gemm(im, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, k, HS, sq, dS, T, stt, dq, HS, sq,
                   CUDA_R_16BF, heads, scale, 0.0f))
        return;
    // dk (T,HS) = scale dS^T q: column-major dk^T = q^T dS.
    if (heads_gemm(im, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, q, HS, sq, dS, T, stt, dk, HS, sq,
                   CUDA_R_16BF, heads, scale, 0.0f))
        return;
    bf16 *d = (bf16 *)dqkv;
    unpermute_kernel<<<grid_for(per, 256), 256, 0, im->stream>>>(d, dq, B, T, NH, HS, 3 * C, 1);
    LAUNCHED(im);
    unpermute_kernel<<<grid_for(per, 256), 256, 0, im->stream>>>(d + C, dk, B, T, NH, HS, 3 * C, 1);
    LAUNCHED(im);
    unpermute_kernel<<<grid_for(per, 256), 256, 0, im->stream>>>(d + 2 * C, dv, B, T, NH, HS,
                                                                 3 * C, 1);
    LAUNCHED(im);
}

int cuda_attention_init(cuda_impl *im) {
    // more than the default 48 KB of shared memory for the fused backward
    CUDA_TRY(im, cudaFuncSetAttribute(flash_backward_hs64_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, FB_SMEM));
    const char *env = getenv("RUNNER_CUDA_ATTENTION");
    im->unfused_attention = env && strcmp(env, "unfused") == 0;
    return 0;
}

void cuda_install_attention(backend *be) {
    be->attention_forward = cuda_attention_forward;
    be->attention_backward = cuda_attention_backward;
}
