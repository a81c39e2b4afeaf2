// bf16 GEMMs of the CPU backend's inference passes through oneDNN (see gemm_bf16.h).
#include "kernels/cpu/gemm_bf16.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/ops.h"
#include "runner/error.h"

#ifndef RUNNER_HAVE_DNNL

// A build without oneDNN (CMake did not find libdnnl-dev 2.x): no bf16, fp32 instead.
const char *cpu_bf16_isa(void) { return "none (built without oneDNN)"; }

bool cpu_bf16_supported(char *why, size_t size) {
    if (why) snprintf(why, size, "this build has no oneDNN (libdnnl-dev 2.x)");
    return false;
}

void cpu_bf16_matmul_forward(float *out, float *pre, const float *inp, const float *weight,
                             const float *bias, int N, int IC, int OC, int gelu) {
    cpu_f32_matmul_forward(out, pre, inp, weight, bias, N, IC, OC, gelu);
}

int cpu_bf16_take_error(void) { return 0; }
void cpu_bf16_written(const void *p, size_t bytes) { (void)p, (void)bytes; }
void cpu_bf16_freed(void *p) { (void)p; }
void cpu_bf16_release(void) {}

#else

#include <malloc.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>

#include "kernels/cpu/gemm_split.h"

// ---- fp32 -> bf16 -------------------------------------------------------------------------

// Round to nearest even, as oneDNN's and PyTorch's conversions do; a NaN stays a (quiet)
// NaN instead of rounding up into the sign bit or an infinity. Integer operations only,
// so every clone gives the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BF16_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BF16_CLONES
#endif

BF16_CLONES static void bf16_round_row(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        uint32_t quiet_nan = (u >> 16) | 0x40u;
        dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
    }
}

// ---- state (module-wide: the ops are never called from two threads at once) --------------

// The bf16 copy of one weight matrix (OC,IC), row-major as the fp32 one.
typedef struct {
    const float *src;
    int rows, cols;
    uint16_t *bf16;
    bool valid; // false once src was written after the copy was made
} weight_copy;

// One matmul primitive per tile shape: src (m,K) dense, weights W^T (K,n) read from a
// row-major (n,K) block, dst (m,n) with row stride ldc, optional bias (n).
typedef struct {
    int m, n, K, ldc;
    bool bias;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md;
    size_t scratch_bytes;
} tile_primitive;

// Per OpenMP thread: its stream (not shared between threads) and scratchpad.
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_size;
} thread_state;

static struct {
    bool probed, supported;
    char why[200];
    dnnl_engine_t engine;
    weight_copy *weights;
    int num_weights, cap_weights;
    tile_primitive **prims; // each allocated alone: pointers stay valid as the list grows
    int num_prims, cap_prims;
    pthread_mutex_t prims_lock;
    thread_state *threads;
    int num_threads;
    uint16_t *inp;        // the bf16 input of the current call
    size_t inp_cap;       // elements
    int error;            // first failure since cpu_bf16_take_error
    char error_text[300];
} g = {.prims_lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

// Keep the first failure of a call (tiles fail on several threads at once).
__attribute__((format(printf, 2, 3))) static void fail(int code, const char *fmt, ...) {
    pthread_mutex_lock(&error_lock);
    if (!g.error) {
        g.error = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g.error_text, sizeof g.error_text, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&error_lock);
}

int cpu_bf16_take_error(void) {
    int code = g.error;
    if (code) error_set(code, "%s", g.error_text);
    g.error = 0;
    return code;
}

const char *cpu_bf16_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

// ISA values are sets of bits: avx512_core_amx contains avx512_core_bf16's, avx2_vnni
// (numerically larger) does not.
static bool isa_has_bf16(void) {
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned need = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & need) == need;
}

static bool probe(void) {
    if (g.probed) return g.supported;
    g.probed = true;
    if (!isa_has_bf16()) {
        snprintf(g.why, sizeof g.why,
                 "this CPU has no bf16 instructions for oneDNN (it dispatches to %s; "
                 "avx512_core_bf16 or AMX needed)",
                 cpu_bf16_isa());
        return false;
    }
    dnnl_status_t st = dnnl_engine_create(&g.engine, dnnl_cpu, 0);
    if (st != dnnl_success) {
        snprintf(g.why, sizeof g.why, "oneDNN cannot create a CPU engine (status %d)", (int)st);
        return false;
    }
    g.supported = true;
    return true;
}

bool cpu_bf16_supported(char *why, size_t size) {
    bool ok = probe();
    if (!ok && why) snprintf(why, size, "%s", g.why);
    return ok;
}

// ---- weight cache -------------------------------------------------------------------------

// The copy for `w` (rows x cols), made or reused; NULL when out of memory.
static weight_copy *weight_lookup(const float *w, int rows, int cols) {
    for (int i = 0; i < g.num_weights; i++) {
        weight_copy *c = &g.weights[i];
        if (c->src != w) continue;
        if (c->rows != rows || c->cols != cols) { // the same memory seen with another shape
            free(c->bf16);
            c->bf16 = NULL;
            c->rows = rows, c->cols = cols;
        }
        if (!c->bf16) {
            c->valid = false;
            c->bf16 = aligned_alloc(64, ((size_t)rows * cols * 2 + 63) / 64 * 64);
            if (!c->bf16) return NULL;
        }
        return c;
    }
    if (g.num_weights == g.cap_weights) {
        int cap = g.cap_weights ? 2 * g.cap_weights : 64;
        weight_copy *grown = realloc(g.weights, sizeof *grown * (size_t)cap);
        if (!grown) return NULL;
        g.weights = grown;
        g.cap_weights = cap;
    }
    uint16_t *bf16 = aligned_alloc(64, ((size_t)rows * cols * 2 + 63) / 64 * 64);
    if (!bf16) return NULL;
    weight_copy *c = &g.weights[g.num_weights++];
    *c = (weight_copy){w, rows, cols, bf16, false};
    return c;
}

static bool overlaps(const weight_copy *c, const char *start, const char *end) {
    const char *s = (const char *)c->src;
    const char *e = s + (size_t)c->rows * c->cols * sizeof(float);
    return s < end && start < e;
}

void cpu_bf16_written(const void *p, size_t bytes) {
    const char *start = p, *end = start + bytes;
    for (int i = 0; i < g.num_weights; i++)
        if (g.weights[i].valid && overlaps(&g.weights[i], start, end)) g.weights[i].valid = false;
}

void cpu_bf16_freed(void *p) {
    if (!p || !g.num_weights) return;
    const char *start = p, *end = start + malloc_usable_size(p);
    int kept = 0;
    for (int i = 0; i < g.num_weights; i++) {
        if (overlaps(&g.weights[i], start, end)) {
            free(g.weights[i].bf16);
            continue;
        }
        g.weights[kept++] = g.weights[i];
    }
    g.num_weights = kept;
}

// ---- primitives ---------------------------------------------------------------------------

static int md_2d(dnnl_memory_desc_t *md, dnnl_data_type_t type, int64_t d0, int64_t d1,
                 int64_t s0, int64_t s1) {
    dnnl_dims_t dims = {d0, d1}, strides = {s0, s1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides) == dnnl_success;
}

// Create the primitive of one tile shape. Called inside the OpenMP region by a thread
// that asked for one OpenMP thread, so oneDNN sizes it for one thread.
static bool tile_primitive_init(tile_primitive *p) {
    dnnl_status_t st;
    if (!md_2d(&p->src_md, dnnl_bf16, p->m, p->K, p->K, 1) ||
        !md_2d(&p->wei_md, dnnl_bf16, p->K, p->n, 1, p->K) ||
        !md_2d(&p->bias_md, dnnl_f32, 1, p->n, p->n, 1) ||
        !md_2d(&p->dst_md, dnnl_f32, p->m, p->n, p->ldc, 1)) {
        fail(EXIT_INTERNAL, "bf16 matmul: oneDNN rejects the memory descriptors of a %dx%dx%d tile",
             p->m, p->n, p->K);
        return false;
    }
    dnnl_matmul_desc_t desc;
    st = dnnl_matmul_desc_init(&desc, &p->src_md, &p->wei_md, p->bias ? &p->bias_md : NULL,
                               &p->dst_md);
    dnnl_primitive_attr_t attr = NULL;
    if (st == dnnl_success) st = dnnl_primitive_attr_create(&attr);
    // our own per-thread scratchpad: no buffer shared between concurrent executions
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&p->pd, &desc, attr, g.engine, NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_success) st = dnnl_primitive_create(&p->prim, p->pd);
    if (st != dnnl_success) {
        fail(EXIT_INTERNAL, "bf16 matmul: oneDNN cannot create a %dx%dx%d matmul (status %d)",
             p->m, p->n, p->K, (int)st);
        if (p->pd) dnnl_primitive_desc_destroy(p->pd);
        p->pd = NULL;
        return false;
    }
    const dnnl_memory_desc_t *scratch = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    p->scratch_bytes = scratch ? dnnl_memory_desc_get_size(scratch) : 0;
    return true;
}

static const tile_primitive *tile_primitive_get(int m, int n, int K, int ldc, bool bias) {
    pthread_mutex_lock(&g.prims_lock);
    const tile_primitive *found = NULL;
    for (int i = 0; i < g.num_prims && !found; i++) {
        const tile_primitive *p = g.prims[i];
        if (p->m == m && p->n == n && p->K == K && p->ldc == ldc && p->bias == bias) found = p;
    }
    if (!found) {
        if (g.num_prims == g.cap_prims) {
            int cap = g.cap_prims ? 2 * g.cap_prims : 32;
            tile_primitive **grown = realloc(g.prims, sizeof *grown * (size_t)cap);
            if (grown) {
                g.prims = grown;
                g.cap_prims = cap;
            }
        }
        tile_primitive *p = g.num_prims < g.cap_prims ? calloc(1, sizeof *p) : NULL;
        if (p) {
            *p = (tile_primitive){.m = m, .n = n, .K = K, .ldc = ldc, .bias = bias};
            if (tile_primitive_init(p)) found = g.prims[g.num_prims++] = p;
            else free(p);
        } else {
            fail(EXIT_RESOURCES, "bf16 matmul: out of memory for the primitive cache");
        }
    }
    pthread_mutex_unlock(&g.prims_lock);
    return found;
}

static bool memory(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, const void *handle) {
    // oneDNN takes a non-const handle for inputs too; it only reads them
    return dnnl_memory_create(mem, md, g.engine, (void *)(uintptr_t)handle) == dnnl_success;
}

// One tile: dst (m,n) = a (m,K) * w (n,K)^T + bias, one oneDNN call on this thread.
static void tile_run(thread_state *ts, const uint16_t *a, const uint16_t *w, const float *bias,
                     float *dst, int m, int n, int K, int ldc) {
    const tile_primitive *p = tile_primitive_get(m, n, K, ldc, bias != NULL);
    if (!p) return;
    dnnl_status_t st = dnnl_success;
    if (!ts->stream) st = dnnl_stream_create(&ts->stream, g.engine, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        fail(EXIT_INTERNAL, "bf16 matmul: oneDNN cannot create a stream (status %d)", (int)st);
        return;
    }
    if (p->scratch_bytes > ts->scratch_size) {
        free(ts->scratch);
        ts->scratch = aligned_alloc(64, (p->scratch_bytes + 63) / 64 * 64);
        ts->scratch_size = ts->scratch ? p->scratch_bytes : 0;
        if (!ts->scratch) {
            fail(EXIT_RESOURCES, "bf16 matmul: out of memory for a %zu-byte scratchpad",
                 p->scratch_bytes);
            return;
        }
    }
    dnnl_memory_t mem[5] = {0};
    dnnl_exec_arg_t args[5];
    int nargs = 0;
    bool ok = memory(&mem[0], &p->src_md, a) && memory(&mem[1], &p->wei_md, w) &&
              memory(&mem[2], &p->dst_md, dst);
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, mem[0]};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, mem[1]};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, mem[2]};
    if (ok && bias) {
        ok = memory(&mem[3], &p->bias_md, bias);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mem[3]};
    }
    if (ok && p->scratch_bytes) {
        ok = memory(&mem[4], dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0),
                    ts->scratch);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, mem[4]};
    }
    if (ok) st = dnnl_primitive_execute(p->prim, ts->stream, nargs, args);
    if (ok && st == dnnl_success) st = dnnl_stream_wait(ts->stream);
    if (!ok || st != dnnl_success)
        fail(EXIT_INTERNAL, "bf16 matmul: oneDNN %s failed (status %d)",
             ok ? "execution" : "memory object creation", ok ? (int)st : 0);
    for (int i = 0; i < 5; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
}

// ---- the op -------------------------------------------------------------------------------

static bool ensure_buffers(size_t inp_elems, int threads) {
    if (inp_elems > g.inp_cap) {
        free(g.inp);
        g.inp = aligned_alloc(64, (inp_elems * 2 + 63) / 64 * 64);
        g.inp_cap = g.inp ? inp_elems : 0;
        if (!g.inp) return false;
    }
    if (threads > g.num_threads) {
        thread_state *grown = realloc(g.threads, sizeof *grown * (size_t)threads);
        if (!grown) return false;
        memset(grown + g.num_threads, 0, sizeof *grown * (size_t)(threads - g.num_threads));
        g.threads = grown;
        g.num_threads = threads;
    }
    return true;
}

void cpu_bf16_matmul_forward(float *out, float *pre, const float *inp, const float *weight,
                             const float *bias, int N, int IC, int OC, int gelu) {
    if (N <= 0 || OC <= 0) return;
    if (IC <= 0 || !probe()) {
        cpu_f32_matmul_forward(out, pre, inp, weight, bias, N, IC, OC, gelu);
        return;
    }
    int threads = cpu_ops_threads();
    weight_copy *w = weight_lookup(weight, OC, IC);
    if (!w || !ensure_buffers((size_t)N * IC, threads)) {
        fail(EXIT_RESOURCES, "bf16 matmul: out of memory for the bf16 copies of a %dx%d input "
             "and %dx%d weights", N, IC, OC, IC);
        return;
    }
    float *dst = gelu && pre ? pre : out;
    bool convert_weights = !w->valid;
    const uint16_t *a = g.inp, *wb = w->bf16;
    cpu_gemm_plan plan = cpu_gemm_plan_for(N, OC, IC);
    cpu_gemm_split rows = plan.rows, cols = plan.cols;
    long tiles = (long)rows.pieces * cols.pieces;
#pragma omp parallel num_threads(threads)
    {
        // This implicit task's own thread count (the caller's is untouched): oneDNN,
        // created and run from here, then plans for and runs on this one thread.
        omp_set_num_threads(1);
        thread_state *ts = &g.threads[omp_get_thread_num()];
#pragma omp for schedule(static)
        for (int r = 0; r < N; r++)
            bf16_round_row(g.inp + (size_t)r * IC, inp + (size_t)r * IC, IC);
        if (convert_weights) {
#pragma omp for schedule(static)
            for (int r = 0; r < OC; r++)
                bf16_round_row(w->bf16 + (size_t)r * IC, weight + (size_t)r * IC, IC);
        }
#pragma omp for schedule(dynamic, 1)
        for (long tile = 0; tile < tiles; tile++) {
            int i0 = (int)(tile / cols.pieces) * rows.size;
            int j0 = (int)(tile % cols.pieces) * cols.size;
            int m = rows.size < N - i0 ? rows.size : N - i0;
            int n = cols.size < OC - j0 ? cols.size : OC - j0;
            tile_run(ts, a + (size_t)i0 * IC, wb + (size_t)j0 * IC, bias ? bias + j0 : NULL,
                     dst + (size_t)i0 * OC + j0, m, n, IC, OC);
        }
    }
    w->valid = true;
    // GELU stays the fp32 op, over the whole output at once (contiguous: the tiles cover it)
    if (gelu) cpu_f32_gelu_forward(out, dst, (size_t)N * OC);
}

void cpu_bf16_release(void) {
    for (int i = 0; i < g.num_weights; i++) free(g.weights[i].bf16);
    free(g.weights);
    for (int i = 0; i < g.num_prims; i++) {
        dnnl_primitive_destroy(g.prims[i]->prim);
        dnnl_primitive_desc_destroy(g.prims[i]->pd);
        free(g.prims[i]);
    }
    free(g.prims);
    for (int i = 0; i < g.num_threads; i++) {
        if (g.threads[i].stream) dnnl_stream_destroy(g.threads[i].stream);
        free(g.threads[i].scratch);
    }
    free(g.threads);
    free(g.inp);
    if (g.engine) dnnl_engine_destroy(g.engine);
    g.weights = NULL, g.num_weights = g.cap_weights = 0;
    g.prims = NULL, g.num_prims = g.cap_prims = 0;
    g.threads = NULL, g.num_threads = 0;
    g.inp = NULL, g.inp_cap = 0;
    g.engine = NULL;
    g.probed = g.supported = false;
}

#endif
