// Elementwise, reduction, LayerNorm, embedding, loss, pooling and optimiser ops of the
// CUDA backend. Every reduction whose result is a parameter gradient runs in a fixed
// order (two passes, no float atomics), so a step is bit-reproducible on one GPU.
#include "kernels/cuda/cuda_common.cuh"

#include <math.h>
#include <stdlib.h>

// ---- dtype conversion -------------------------------------------------------------------

__global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = f2bf(src[i]);
}

__global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = bf2f(src[i]);
}

static int cuda_f32_to_act(backend *be, void *dst, const float *src, size_t n) {
    cuda_impl *im = impl_of(be);
    if (im->status) return error_set(im->status, "%s", im->status_msg);
    f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, im->stream>>>((bf16 *)dst, src, n);
    CUDA_TRY(im, cudaGetLastError());
    return 0;
}

static int cuda_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    cuda_impl *im = impl_of(be);
    if (im->status) return error_set(im->status, "%s", im->status_msg);
    bf16_to_f32_kernel<<<grid_for(n, 256), 256, 0, im->stream>>>(dst, (const bf16 *)src, n);
    CUDA_TRY(im, cudaGetLastError());
    return 0;
}

// ---- deterministic column sums -----------------------------------------------------------

// partial (chunks, C): partial[k][c] = sum of term(n, c) over the rows n of chunk k, in a
// fixed order (8 row lanes, then the lanes in order). Block (32, 8), grid (C/32, chunks).
template <typename Term>
__global__ void column_partials_kernel(float *partial, Term term, int N, int C,
                                       int rows_per_chunk) {
    __shared__ float acc[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int chunk = blockIdx.y;
    int r0 = chunk * rows_per_chunk;
    int r1 = min(N, r0 + rows_per_chunk);
    float s = 0.0f;
    if (c < C)
        for (int n = r0 + threadIdx.y; n < r1; n += 8) s += term(n, c);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float t = 0.0f;
        for (int i = 0; i < 8; i++) t += acc[i][threadIdx.x];
        partial[(size_t)chunk * C + c] = t;
    }
}

// dst (C) += sum over chunks of partial (chunks, C), chunk by chunk.
__global__ void column_finish_kernel(float *dst, const float *partial, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(size_t)k * C + c];
    dst[c] += s;
}

struct plain_term {
    const bf16 *src;
    int C;
    __device__ float operator()(int n, int c) const { return bf2f(src[(size_t)n * C + c]); }
};

// dout * xhat for LayerNorm's weight gradient.
struct ln_weight_term {
    const bf16 *dout, *inp;
    const float *mean, *rstd;
    int C;
    __device__ float operator()(int n, int c) const {
        size_t i = (size_t)n * C + c;
        return bf2f(dout[i]) * (bf2f(inp[i]) - mean[n]) * rstd[n];
    }
};

template <typename Term>
static void column_sum(cuda_impl *im, float *dst, Term term, int N, int C) {
    if (N <= 0 || C <= 0) return;
    int rows_per_chunk = 64;
    if (N / rows_per_chunk > 4096) rows_per_chunk = (N + 4095) / 4096;
    int chunks = (N + rows_per_chunk - 1) / rows_per_chunk;
    float *partial = (float *)cuda_scratch(im, 0, (size_t)chunks * C * sizeof(float));
    if (!partial) return;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks), block(32, 8);
    column_partials_kernel<Term><<<grid, block, 0, im->stream>>>(partial, term, N, C, rows_per_chunk);
    LAUNCHED(im);
    column_finish_kernel<<<(C + 255) / 256, 256, 0, im->stream>>>(dst, partial, chunks, C);
    LAUNCHED(im);
}

void cuda_column_sum_bf16(cuda_impl *im, float *dst, const bf16 *src, int N, int C) {
    plain_term term = {src, C};
    column_sum(im, dst, term, N, C);
}

// ---- embeddings -----------------------------------------------------------------------------

__global__ void embeddings_forward_kernel(bf16 *out, const int32_t *ids, const int32_t *types,
                                          const float *wte, const float *wpe, const float *wtt,
                                          int T, int C, int position_offset, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / (size_t)C;
        int c = (int)(i % (size_t)C);
        int t = (int)(n % (size_t)T);
        // Hugging Face's order, kept by the CPU too: (word + token type) + position.
        float v = wte[(size_t)ids[n] * C + c];
        if (wtt) v += wtt[(size_t)(types ? types[n] : 0) * C + c];
        if (wpe) v += wpe[(size_t)(position_offset + t) * C + c];
        out[i] = f2bf(v);
    }
}

static void cuda_embeddings_forward(backend *be, void *out, const int32_t *ids,
                                    const int32_t *token_types, const float *wte,
                                    const float *wpe, const float *wtt, int B, int T, int C,
                                    int position_offset) {
    OP_BEGIN(be, im);
    size_t total = (size_t)B * T * C;
    embeddings_forward_kernel<<<grid_for(total, 256), 256, 0, im->stream>>>(
        (bf16 *)out, ids, token_types, wte, wpe, wtt, T, C, position_offset, total);
    LAUNCHED(im);
}

// dtable[key] += sum of dout over the tokens with that key, one block per distinct key:
// the block of the key's first token owns the row (other blocks leave at once), so no
// atomics are needed and the sum runs in token order. Each tile of 256 tokens is
// compacted to the list of matches (ballot + prefix), then every thread adds its
// channels of the matching rows: loads of different rows are independent, so a key
// that repeats thousands of times ([PAD]) costs bandwidth, not latency.
enum { EMB_THREADS = 256, EMB_CHUNKS = 4 };  // channels per pass: EMB_THREADS * EMB_CHUNKS

__global__ void __launch_bounds__(EMB_THREADS)
    rows_accumulate_kernel(float *dtable, const bf16 *dout, const int32_t *keys, int N, int C) {
    __shared__ int matches[EMB_THREADS];
    __shared__ int warp_counts[EMB_THREADS / 32];
    int n = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    int key = keys[n];
    // leave unless n is the first token with this key (uniform across the block)
    for (int base = 0; base < n; base += EMB_THREADS) {
        int m = base + tid;
        if (__syncthreads_or(m < n && keys[m] == key)) return;
    }
    for (int c0 = 0; c0 < C; c0 += EMB_THREADS * EMB_CHUNKS) {
        float acc[EMB_CHUNKS];
#pragma unroll
        for (int k = 0; k < EMB_CHUNKS; k++) acc[k] = 0.0f;
        for (int base = n; base < N; base += EMB_THREADS) {
            int m = base + tid;
            int match = m < N && keys[m] == key;
            unsigned ballot = __ballot_sync(0xffffffffu, match);
            if (lane == 0) warp_counts[warp] = __popc(ballot);
            __syncthreads();
            int before = 0, total = 0;
            for (int w = 0; w < EMB_THREADS / 32; w++) {
                int count = warp_counts[w];
                if (w < warp) before += count;
                total += count;
            }
            if (match) matches[before + __popc(ballot & ((1u << lane) - 1u))] = m;
            __syncthreads();
            for (int i = 0; i < total; i++) {
                const bf16 *row = dout + (size_t)matches[i] * C;
#pragma unroll
                for (int k = 0; k < EMB_CHUNKS; k++) {
                    int c = c0 + k * EMB_THREADS + tid;
                    if (c < C) acc[k] += bf2f(row[c]);
                }
            }
            __syncthreads();  // matches and warp_counts are rewritten by the next tile
        }
#pragma unroll
        for (int k = 0; k < EMB_CHUNKS; k++) {
            int c = c0 + k * EMB_THREADS + tid;
            if (c < C) dtable[(size_t)key * C + c] += acc[k];
        }
    }
}

// dwpe[position_offset + t] += sum over the batch of dout[b, t].
__global__ void positions_backward_kernel(float *dwpe, const bf16 *dout, int B, int T, int C,
                                          int position_offset) {
    size_t total = (size_t)T * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / (size_t)C, c = i % (size_t)C;
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += bf2f(dout[((size_t)b * T + t) * C + c]);
        dwpe[((size_t)position_offset + t) * C + c] += s;
    }
}

static void rows_backward(cuda_impl *im, float *dtable, const bf16 *dout, const int32_t *keys,
                          int N, int C) {
    if (N <= 0) return;
    rows_accumulate_kernel<<<N, EMB_THREADS, 0, im->stream>>>(dtable, dout, keys, N, C);
    LAUNCHED(im);
}

static void cuda_embeddings_backward(backend *be, float *dwte, float *dwpe, float *dwtt,
                                     const void *dout, const int32_t *ids,
                                     const int32_t *token_types, int B, int T, int C, int V,
                                     int position_offset) {
    OP_BEGIN(be, im);
    (void)V;
    int N = B * T;
    const bf16 *d = (const bf16 *)dout;
    if (dwte) rows_backward(im, dwte, d, ids, N, C);
    if (dwpe) {
        positions_backward_kernel<<<grid_for((size_t)T * C, 256), 256, 0, im->stream>>>(
            dwpe, d, B, T, C, position_offset);
        LAUNCHED(im);
    }
    if (dwtt) {
        if (token_types) rows_backward(im, dwtt, d, token_types, N, C);
        else cuda_column_sum_bf16(im, dwtt, d, N, C);  // every token is type 0
    }
}

// ---- LayerNorm -------------------------------------------------------------------------------

// One warp per row, statistics in fp32 over the bf16 values actually stored: with a
// residual, x = bf16(inp + residual) is what `sum` holds and what backward reads.
__global__ void layernorm_forward_kernel(bf16 *out, bf16 *sum, float *mean_out,
                                         float *rstd_out, const bf16 *inp, const bf16 *res,
                                         const float *weight, const float *bias, int N, int C,
                                         float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16 *x = inp + (size_t)row * C;
    const bf16 *r = res ? res + (size_t)row * C : NULL;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) {
        bf16 vb = r ? f2bf(bf2f(x[c]) + bf2f(r[c])) : x[c];
        if (sum) sum[(size_t)row * C + c] = vb;  // without a residual: a copy, as on the CPU
        s += bf2f(vb);
    }
    float mean = warp_sum(s) / (float)C;
    float var = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float v = r ? bf2f(f2bf(bf2f(x[c]) + bf2f(r[c]))) : bf2f(x[c]);
        var += (v - mean) * (v - mean);
    }
    float rstd = rsqrtf(warp_sum(var) / (float)C + eps);
    for (int c = lane; c < C; c += 32) {
        float v = r ? bf2f(f2bf(bf2f(x[c]) + bf2f(r[c]))) : bf2f(x[c]);
        float y = (v - mean) * rstd * weight[c] + (bias ? bias[c] : 0.0f);
        out[(size_t)row * C + c] = f2bf(y);
    }
    if (lane == 0) {
        if (mean_out) mean_out[row] = mean;
        if (rstd_out) rstd_out[row] = rstd;
    }
}

// The same with 16-byte accesses and the row held in registers (one read of inputs, one
// write of outputs): C a multiple of 8 up to 32 * 8 * VPL, rows 16-byte aligned.
struct __align__(16) bf16x8 {
    __nv_bfloat162 h[4];
};

static __device__ __forceinline__ bf16x8 load_bf16x8(const bf16 *p) {
    return *(const bf16x8 *)p;
}

enum { LN_VEC_MAX = 4 };  // vectors of 8 per lane: rows up to 1024 channels

template <int VPL>
__global__ void layernorm_forward_vec_kernel(bf16 *out, bf16 *sum, float *mean_out,
                                             float *rstd_out, const bf16 *inp, const bf16 *res,
                                             const float *weight, const float *bias, int N,
                                             int C, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t base = (size_t)row * C;
    float x[VPL][8];
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        int c = (k * 32 + lane) * 8;
#pragma unroll
        for (int e = 0; e < 8; e++) x[k][e] = 0.0f;
        if (c >= C) continue;
        bf16x8 a = load_bf16x8(inp + base + c);
        if (res) {
            bf16x8 r = load_bf16x8(res + base + c);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float2 fa = __bfloat1622float2(a.h[e]), fr = __bfloat1622float2(r.h[e]);
                a.h[e] = __floats2bfloat162_rn(fa.x + fr.x, fa.y + fr.y);
            }
        }
        if (sum) *(bf16x8 *)(sum + base + c) = a;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float2 f = __bfloat1622float2(a.h[e]);
            x[k][2 * e] = f.x;
            x[k][2 * e + 1] = f.y;
            s += f.x + f.y;
        }
    }
    float mean = warp_sum(s) / (float)C;
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        if ((k * 32 + lane) * 8 >= C) continue;
#pragma unroll
        for (int e = 0; e < 8; e++) var += (x[k][e] - mean) * (x[k][e] - mean);
    }
    float rstd = rsqrtf(warp_sum(var) / (float)C + eps);
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        int c = (k * 32 + lane) * 8;
        if (c >= C) continue;
        bf16x8 o;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int c0 = c + 2 * e;
            float y0 = (x[k][2 * e] - mean) * rstd * weight[c0] + (bias ? bias[c0] : 0.0f);
            float y1 = (x[k][2 * e + 1] - mean) * rstd * weight[c0 + 1] + (bias ? bias[c0 + 1] : 0.0f);
            o.h[e] = __floats2bfloat162_rn(y0, y1);
        }
        *(bf16x8 *)(out + base + c) = o;
    }
    if (lane == 0) {
        if (mean_out) mean_out[row] = mean;
        if (rstd_out) rstd_out[row] = rstd;
    }
}

template <int VPL>
__global__ void layernorm_backward_vec_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp,
                                              const float *weight, const float *mean,
                                              const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t base = (size_t)row * C;
    float mu = mean[row], rs = rstd[row];
    float xhat[VPL][8], dn[VPL][8];
    float a = 0.0f, b = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        int c = (k * 32 + lane) * 8;
#pragma unroll
        for (int e = 0; e < 8; e++) xhat[k][e] = dn[k][e] = 0.0f;
        if (c >= C) continue;
        bf16x8 xv = load_bf16x8(inp + base + c), dv = load_bf16x8(dout + base + c);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float2 fx = __bfloat1622float2(xv.h[e]), fd = __bfloat1622float2(dv.h[e]);
            xhat[k][2 * e] = (fx.x - mu) * rs;
            xhat[k][2 * e + 1] = (fx.y - mu) * rs;
            dn[k][2 * e] = fd.x * weight[c + 2 * e];
            dn[k][2 * e + 1] = fd.y * weight[c + 2 * e + 1];
        }
#pragma unroll
        for (int e = 0; e < 8; e++) {
            a += dn[k][e];
            b += dn[k][e] * xhat[k][e];
        }
    }
    a = warp_sum(a) / (float)C;
    b = warp_sum(b) / (float)C;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        int c = (k * 32 + lane) * 8;
        if (c >= C) continue;
        bf16x8 d = load_bf16x8(dinp + base + c);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float2 f = __bfloat1622float2(d.h[e]);
            float d0 = (dn[k][2 * e] - a - xhat[k][2 * e] * b) * rs;
            float d1 = (dn[k][2 * e + 1] - a - xhat[k][2 * e + 1] * b) * rs;
            d.h[e] = __floats2bfloat162_rn(f.x + d0, f.y + d1);
        }
        *(bf16x8 *)(dinp + base + c) = d;
    }
}

// Vectors per lane for the vector kernels, or 0 when C or an address rules them out.
static int layernorm_vectors(int C, const void *a, const void *b, const void *c, const void *d) {
    if (C % 8 != 0 || C > 32 * 8 * LN_VEC_MAX) return 0;
    const void *ptrs[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        if (ptrs[i] && (uintptr_t)ptrs[i] % 16 != 0) return 0;
    return (C + 255) / 256;
}

static void cuda_layernorm_forward(backend *be, void *out, void *sum, float *mean, float *rstd,
                                   const void *inp, const void *residual, const float *weight,
                                   const float *bias, int N, int C, float eps) {
    OP_BEGIN(be, im);
    const int rows_per_block = 8;
    unsigned grid = (unsigned)((N + rows_per_block - 1) / rows_per_block);
    bf16 *o = (bf16 *)out, *sm = (bf16 *)sum;
    const bf16 *x = (const bf16 *)inp, *r = (const bf16 *)residual;
    switch (layernorm_vectors(C, out, sum, inp, residual)) {
    case 1:
        layernorm_forward_vec_kernel<1><<<grid, 32 * rows_per_block, 0, im->stream>>>(
            o, sm, mean, rstd, x, r, weight, bias, N, C, eps);
        break;
    case 2:
        layernorm_forward_vec_kernel<2><<<grid, 32 * rows_per_block, 0, im->stream>>>(
            o, sm, mean, rstd, x, r, weight, bias, N, C, eps);
        break;
    case 3:
        layernorm_forward_vec_kernel<3><<<grid, 32 * rows_per_block, 0, im->stream>>>(
            o, sm, mean, rstd, x, r, weight, bias, N, C, eps);
        break;
    case 4:
        layernorm_forward_vec_kernel<4><<<grid, 32 * rows_per_block, 0, im->stream>>>(
            o, sm, mean, rstd, x, r, weight, bias, N, C, eps);
        break;
    default:
        layernorm_forward_kernel<<<grid, 32 * rows_per_block, 0, im->stream>>>(
            o, sm, mean, rstd, x, r, weight, bias, N, C, eps);
    }
    LAUNCHED(im);
}

// dinp += (dnorm - mean(dnorm) - xhat mean(dnorm xhat)) rstd, dnorm = dout * weight.
__global__ void layernorm_backward_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp,
                                          const float *weight, const float *mean,
                                          const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t base = (size_t)row * C;
    float mu = mean[row], rs = rstd[row];
    float a = 0.0f, b = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float xhat = (bf2f(inp[base + c]) - mu) * rs;
        float dn = bf2f(dout[base + c]) * weight[c];
        a += dn;
        b += dn * xhat;
    }
    a = warp_sum(a) / (float)C;
    b = warp_sum(b) / (float)C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (bf2f(inp[base + c]) - mu) * rs;
        float dn = bf2f(dout[base + c]) * weight[c];
        float dx = (dn - a - xhat * b) * rs;
        dinp[base + c] = f2bf(bf2f(dinp[base + c]) + dx);
    }
}

static void cuda_layernorm_backward(backend *be, void *dinp, float *dweight, float *dbias,
                                    const void *dout, const void *inp, const float *weight,
                                    const float *mean, const float *rstd, int N, int C) {
    OP_BEGIN(be, im);
    const int rows_per_block = 8;
    if (dinp) {
        unsigned grid = (unsigned)((N + rows_per_block - 1) / rows_per_block);
        bf16 *dx = (bf16 *)dinp;
        const bf16 *dy = (const bf16 *)dout, *x = (const bf16 *)inp;
        switch (layernorm_vectors(C, dinp, dout, inp, NULL)) {
        case 1:
            layernorm_backward_vec_kernel<1><<<grid, 32 * rows_per_block, 0, im->stream>>>(
                dx, dy, x, weight, mean, rstd, N, C);
            break;
        case 2:
            layernorm_backward_vec_kernel<2><<<grid, 32 * rows_per_block, 0, im->stream>>>(
                dx, dy, x, weight, mean, rstd, N, C);
            break;
        case 3:
            layernorm_backward_vec_kernel<3><<<grid, 32 * rows_per_block, 0, im->stream>>>(
                dx, dy, x, weight, mean, rstd, N, C);
            break;
        case 4:
            layernorm_backward_vec_kernel<4><<<grid, 32 * rows_per_block, 0, im->stream>>>(
                dx, dy, x, weight, mean, rstd, N, C);
            break;
        default:
            layernorm_backward_kernel<<<grid, 32 * rows_per_block, 0, im->stream>>>(
                dx, dy, x, weight, mean, rstd, N, C);
        }
        LAUNCHED(im);
    }
    if (dweight) {
        ln_weight_term term = {(const bf16 *)dout, (const bf16 *)inp, mean, rstd, C};
        column_sum(im, dweight, term, N, C);
    }
    if (dbias) cuda_column_sum_bf16(im, dbias, (const bf16 *)dout, N, C);
}

// ---- elementwise ops -----------------------------------------------------------------------

// out[i] = op(i, out[i], a[i], b[i]) over n elements: 8 per step with 16-byte accesses
// when n and every pointer allow it, one per step otherwise; the same arithmetic per
// element either way. `out` may alias `a` (in-place dropout).
template <typename Op, bool VEC>
__global__ void map_kernel(bf16 *out, const bf16 *a, const bf16 *b, size_t n, Op op) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t start = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if constexpr (VEC) {
        for (size_t v = start; v < n / 8; v += stride) {
            size_t i0 = v * 8;
            bf16x8 va = load_bf16x8(a + i0), vb{}, vo{}, r;
            if constexpr (Op::uses_b) vb = load_bf16x8(b + i0);
            if constexpr (Op::reads_out) vo = load_bf16x8(out + i0);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float2 fa = __bfloat1622float2(va.h[e]);
                float2 fb = Op::uses_b ? __bfloat1622float2(vb.h[e]) : make_float2(0.0f, 0.0f);
                float2 fo = Op::reads_out ? __bfloat1622float2(vo.h[e]) : make_float2(0.0f, 0.0f);
                r.h[e] = __floats2bfloat162_rn(op(i0 + 2 * e, fo.x, fa.x, fb.x),
                                               op(i0 + 2 * e + 1, fo.y, fa.y, fb.y));
            }
            *(bf16x8 *)(out + i0) = r;
        }
    } else {
        for (size_t i = start; i < n; i += stride) {
            float fo = Op::reads_out ? bf2f(out[i]) : 0.0f;
            float fb = Op::uses_b ? bf2f(b[i]) : 0.0f;
            out[i] = f2bf(op(i, fo, bf2f(a[i]), fb));
        }
    }
}

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

template <typename Op>
static void map_launch(cuda_impl *im, bf16 *out, const bf16 *a, const bf16 *b, size_t n, Op op) {
    if (n % 8 == 0 && aligned16(out) && aligned16(a) && (!b || aligned16(b)))
        map_kernel<Op, true><<<grid_for(n / 8, 256), 256, 0, im->stream>>>(out, a, b, n, op);
    else
        map_kernel<Op, false><<<grid_for(n, 256), 256, 0, im->stream>>>(out, a, b, n, op);
    LAUNCHED(im);
}

// ---- GELU (erf form) ------------------------------------------------------------------------

struct gelu_forward_op {
    static constexpr bool uses_b = false, reads_out = false;
    __device__ float operator()(size_t, float, float x, float) const {
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
};

// dinp += dout * d/dx [x Phi(x)] = dout * (Phi(x) + x phi(x)); a = inp, b = dout
struct gelu_backward_op {
    static constexpr bool uses_b = true, reads_out = true;
    __device__ float operator()(size_t, float dinp, float x, float dout) const {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * __expf(-0.5f * x * x);
        return dinp + dout * (cdf + x * pdf);
    }
};

void cuda_gelu_forward_bf16(cuda_impl *im, bf16 *out, const bf16 *inp, size_t n) {
    map_launch(im, out, inp, NULL, n, gelu_forward_op{});
}

static void cuda_gelu_forward(backend *be, void *out, const void *inp, size_t n) {
    OP_BEGIN(be, im);
    cuda_gelu_forward_bf16(im, (bf16 *)out, (const bf16 *)inp, n);
}

static void cuda_gelu_backward(backend *be, void *dinp, const void *inp, const void *dout,
                               size_t n) {
    OP_BEGIN(be, im);
    map_launch(im, (bf16 *)dinp, (const bf16 *)inp, (const bf16 *)dout, n, gelu_backward_op{});
}

// ---- dropout (counter RNG of kernels/rng.h: element i draws offset + i) -----------------------

struct dropout_forward_op {
    static constexpr bool uses_b = false, reads_out = false;
    float p, keep_scale;
    uint64_t seed, offset;
    __device__ float operator()(size_t i, float, float x, float) const {
        return dropout_keep(seed, offset + i, p) ? x * keep_scale : 0.0f;
    }
};

// dinp += dout * mask / (1-p); a = dout
struct dropout_backward_op {
    static constexpr bool uses_b = false, reads_out = true;
    float p, keep_scale;
    uint64_t seed, offset;
    __device__ float operator()(size_t i, float dinp, float dout, float) const {
        return dropout_keep(seed, offset + i, p) ? dinp + dout * keep_scale : dinp;
    }
};

static float keep_scale_of(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

static void cuda_dropout_forward(backend *be, void *out, const void *inp, size_t n, float p,
                                 uint64_t seed, uint64_t offset) {
    OP_BEGIN(be, im);
    dropout_forward_op op = {p, keep_scale_of(p), seed, offset};
    map_launch(im, (bf16 *)out, (const bf16 *)inp, NULL, n, op);
}

static void cuda_dropout_backward(backend *be, void *dinp, const void *dout, size_t n, float p,
                                  uint64_t seed, uint64_t offset) {
    OP_BEGIN(be, im);
    dropout_backward_op op = {p, keep_scale_of(p), seed, offset};
    map_launch(im, (bf16 *)dinp, (const bf16 *)dout, NULL, n, op);
}

// ---- block reductions --------------------------------------------------------------------

// Sum or max over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `shared` holds 32 floats.
template <bool IS_MAX>
static __device__ float block_reduce(float v, float *shared) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = IS_MAX ? warp_max(v) : warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float identity = IS_MAX ? -INFINITY : 0.0f;
    v = lane < warps ? shared[lane] : identity;
    __syncthreads();
    if (warp == 0) {
        v = IS_MAX ? warp_max(v) : warp_sum(v);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    float r = shared[0];
    __syncthreads();
    return r;
}

// ---- softmax cross-entropy -------------------------------------------------------------------

// One block per row: probs = softmax(logits), loss = logsumexp - logit[target].
// Targets outside [0, V) (the ignore index -100 among them) count as ignored.
__global__ void softmax_xent_forward_kernel(float *losses, float *probs, const bf16 *logits,
                                            const int32_t *targets, int V) {
    __shared__ float shared[32];
    int row = blockIdx.x;
    const bf16 *x = logits + (size_t)row * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, bf2f(x[v]));
    mx = block_reduce<true>(mx, shared);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(bf2f(x[v]) - mx);
    s = block_reduce<false>(s, shared);
    float inv = 1.0f / s;
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        probs[(size_t)row * V + v] = expf(bf2f(x[v]) - mx) * inv;
    if (threadIdx.x == 0 && losses) {
        int t = targets[row];
        losses[row] = (t >= 0 && t < V) ? logf(s) + mx - bf2f(x[t]) : 0.0f;
    }
}

__global__ void softmax_xent_backward_kernel(bf16 *dlogits, const float *probs,
                                             const int32_t *targets, int N, int V,
                                             float scale) {
    size_t total = (size_t)N * V;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / (size_t)V;
        int v = (int)(i % (size_t)V);
        int t = targets[row];
        float g = 0.0f;
        if (t >= 0 && t < V) g = (probs[i] - (v == t ? 1.0f : 0.0f)) * scale;
        dlogits[i] = f2bf(g);
    }
}

static void cuda_softmax_xent_forward(backend *be, float *losses, float *probs,
                                      const void *logits, const int32_t *targets, int N, int V) {
    OP_BEGIN(be, im);
    if (N <= 0) return;
    int threads = V >= 1024 ? 512 : V >= 128 ? 128 : 32;
    softmax_xent_forward_kernel<<<N, threads, 0, im->stream>>>(losses, probs,
                                                              (const bf16 *)logits, targets, V);
    LAUNCHED(im);
}

static void cuda_softmax_xent_backward(backend *be, void *dlogits, const float *probs,
                                       const int32_t *targets, int N, int V,
                                       float dloss_scale) {
    OP_BEGIN(be, im);
    size_t total = (size_t)N * V;
    softmax_xent_backward_kernel<<<grid_for(total, 256), 256, 0, im->stream>>>(
        (bf16 *)dlogits, probs, targets, N, V, dloss_scale);
    LAUNCHED(im);
}

// ---- mean pooling ---------------------------------------------------------------------------

// One block per sequence: masked mean (count clamped at 1e-9 as sentence-transformers
// does), then optionally divided by max(||row||, 1e-12) as torch's normalize does.
__global__ void mean_pool_kernel(float *out, const bf16 *inp, const int32_t *mask, int T, int C,
                                 int normalize) {
    __shared__ float shared[32];
    int b = blockIdx.x;
    float count = 0.0f;
    for (int t = threadIdx.x; t < T; t += blockDim.x)
        count += mask ? (mask[(size_t)b * T + t] != 0 ? 1.0f : 0.0f) : 1.0f;
    count = fmaxf(block_reduce<false>(count, shared), 1e-9f);
    float sq = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int t = 0; t < T; t++)
            if (!mask || mask[(size_t)b * T + t]) s += bf2f(inp[((size_t)b * T + t) * C + c]);
        s /= count;
        out[(size_t)b * C + c] = s;
        sq += s * s;
    }
    if (!normalize) return;  // uniform across the block: no barrier is skipped by some
    float norm = fmaxf(sqrtf(block_reduce<false>(sq, shared)), 1e-12f);
    for (int c = threadIdx.x; c < C; c += blockDim.x) out[(size_t)b * C + c] /= norm;
}

static void cuda_mean_pool_forward(backend *be, float *out, const void *inp,
                                   const int32_t *mask, int B, int T, int C, int normalize) {
    OP_BEGIN(be, im);
    if (B <= 0) return;
    mean_pool_kernel<<<B, 256, 0, im->stream>>>(out, (const bf16 *)inp, mask, T, C, normalize);
    LAUNCHED(im);
}

// ---- optimiser ---------------------------------------------------------------------------

// A fixed grid (GRAD_NORM_BLOCKS x 256) so the summation order never depends on the GPU.
__global__ void squares_partial_kernel(float *partial, const float *g, size_t n) {
    __shared__ float shared[32];
    float s = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += g[i] * g[i];
    s = block_reduce<false>(s, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

static int cuda_grad_norm_squared(backend *be, const float *grads, size_t n, double *acc) {
    cuda_impl *im = impl_of(be);
    if (im->status) return error_set(im->status, "%s", im->status_msg);
    squares_partial_kernel<<<GRAD_NORM_BLOCKS, 256, 0, im->stream>>>(im->norm_partials, grads, n);
    CUDA_TRY(im, cudaGetLastError());
    float partial[GRAD_NORM_BLOCKS];
    CUDA_TRY(im, cudaMemcpyAsync(partial, im->norm_partials, sizeof partial,
                                 cudaMemcpyDeviceToHost, im->stream));
    CUDA_TRY(im, cudaStreamSynchronize(im->stream));
    double sum = 0.0;
    for (int i = 0; i < GRAD_NORM_BLOCKS; i++) sum += (double)partial[i];
    *acc += sum;
    return 0;
}

__global__ void scale_kernel(float *g, size_t n, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        g[i] *= scale;
}

static void cuda_scale(backend *be, float *grads, size_t n, float scale) {
    OP_BEGIN(be, im);
    scale_kernel<<<grid_for(n, 256), 256, 0, im->stream>>>(grads, n, scale);
    LAUNCHED(im);
}

// In torch.optim.AdamW's operation order (as the CPU backend): decay, moments, then
// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
__global__ void adamw_kernel(float *params, bf16 *params_act, const float *grads, float *m,
                             float *v, size_t n, float beta1, float beta2, float step_size,
                             float bc2_sqrt, float eps, float decay) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = m[i] * beta1 + g * (1.0f - beta1);
        float vi = v[i] * beta2 + g * g * (1.0f - beta2);
        m[i] = mi;
        v[i] = vi;
        p -= step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
        params[i] = p;
        if (params_act) params_act[i] = f2bf(p);
    }
}

static void cuda_adamw_update(backend *be, float *params, void *params_act, const float *grads,
                              float *m, float *v, size_t n, float lr, float beta1, float beta2,
                              float eps, float weight_decay, int t) {
    OP_BEGIN(be, im);
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float decay = 1.0f - lr * weight_decay;
    adamw_kernel<<<grid_for(n, 256), 256, 0, im->stream>>>(params, (bf16 *)params_act, grads, m,
                                                           v, n, beta1, beta2, step_size,
                                                           bc2_sqrt, eps, decay);
    LAUNCHED(im);
}

void cuda_install_ops(backend *be) {
    be->f32_to_act = cuda_f32_to_act;
    be->act_to_f32 = cuda_act_to_f32;
    be->embeddings_forward = cuda_embeddings_forward;
    be->embeddings_backward = cuda_embeddings_backward;
    be->layernorm_forward = cuda_layernorm_forward;
    be->layernorm_backward = cuda_layernorm_backward;
    be->gelu_forward = cuda_gelu_forward;
    be->gelu_backward = cuda_gelu_backward;
    be->dropout_forward = cuda_dropout_forward;
    be->dropout_backward = cuda_dropout_backward;
    be->softmax_xent_forward = cuda_softmax_xent_forward;
    be->softmax_xent_backward = cuda_softmax_xent_backward;
    be->mean_pool_forward = cuda_mean_pool_forward;
    be->grad_norm_squared = cuda_grad_norm_squared;
    be->scale = cuda_scale;
    be->adamw_update = cuda_adamw_update;
}
