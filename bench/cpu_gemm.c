// The linear layers' GEMMs two ways, same threads, same run (docs/BENCHMARKS.md
// "Thread-independent GEMM"): one multi-threaded OpenBLAS sgemm (what the core did
// before, results tied to the thread count) against the core's tiled GEMM (cpu_f32_gemm:
// shape-fixed tiles, one single-threaded sgemm each, bitwise the same for any thread
// count), on bert-base's shapes at 8 x 128 tokens and MiniLM's at 32 x 128, plus sgemm
// 2048^3 (the floor bench/cpu.sh measures the model against).
//
//   bench_cpu_gemm [--threads N] [--reps N]
// Prints one JSON line per shape: GFLOP/s of both and tiled / threaded.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/ops.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    int trans_a, trans_b, M, N, K;
} shape;

// Forward: out (N,OC) = inp W^T; backward: dinp = dout W, dW = dout^T inp.
static const shape SHAPES[] = {
    {"bert-base qkv forward", 0, 1, 1024, 2304, 768},
    {"bert-base ffn-in forward", 0, 1, 1024, 3072, 768},
    {"bert-base ffn-out forward", 0, 1, 1024, 768, 3072},
    {"bert-base ffn-out dinp", 0, 0, 1024, 3072, 768},
    {"bert-base ffn-in dweight", 1, 0, 3072, 768, 1024},
    {"bert-base attn-out dweight", 1, 0, 768, 768, 1024},
    {"minilm ffn-in forward", 0, 1, 4096, 1536, 384},
    {"minilm ffn-out forward", 0, 1, 4096, 384, 1536},
    {"bert-tiny qkv forward", 0, 1, 1024, 384, 128},
    {"bert-tiny ffn-out forward", 0, 1, 1024, 128, 512},
    {"bert-tiny ffn-in dweight", 1, 0, 512, 128, 1024},
    {"bert-tiny ffn-out dinp", 0, 0, 1024, 512, 128},
    {"sgemm 2048^3", 0, 0, 2048, 2048, 2048},
};

static void threaded(const shape *s, const float *A, const float *B, float *C) {
    openblas_set_num_threads(cpu_ops_threads());
    cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans,
                s->trans_b ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1, A,
                s->trans_a ? s->M : s->K, B, s->trans_b ? s->K : s->N, 1, C, s->N);
    // back to what the ops last set (one thread): they skip the call when they think it
    // is already so, and the tiled runs would otherwise nest OpenBLAS threads in OpenMP's
    openblas_set_num_threads(1);
}

static void tiled(const shape *s, const float *A, const float *B, float *C) {
    cpu_f32_gemm(s->trans_a, s->trans_b, s->M, s->N, s->K, 1, A, s->trans_a ? s->M : s->K, B,
                 s->trans_b ? s->K : s->N, 1, C, s->N);
}

static double seconds_per_call(void (*f)(const shape *, const float *, const float *, float *),
                               const shape *s, const float *A, const float *B, float *C,
                               int reps) {
    f(s, A, B, C); // warm-up: page faults, OpenBLAS buffers
    double t0 = now();
    for (int r = 0; r < reps; r++) f(s, A, B, C);
    return (now() - t0) / reps;
}

int main(int argc, char **argv) {
    int threads = 0, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cpu_gemm [--threads N] [--reps N]\n");
            return 2;
        }
    }
    cpu_ops_set_threads(threads);
    for (size_t i = 0; i < sizeof SHAPES / sizeof *SHAPES; i++) {
        const shape *s = &SHAPES[i];
        size_t a = (size_t)s->M * s->K, b = (size_t)s->K * s->N, c = (size_t)s->M * s->N;
        float *A = malloc(a * sizeof *A), *B = malloc(b * sizeof *B), *C = calloc(c, sizeof *C);
        if (!A || !B || !C) {
            fprintf(stderr, "bench_cpu_gemm: out of memory\n");
            return 1;
        }
        for (size_t j = 0; j < a; j++) A[j] = (float)((j * 7919) % 1000) * 1e-3f - 0.5f;
        for (size_t j = 0; j < b; j++) B[j] = (float)((j * 104729) % 1000) * 1e-3f - 0.5f;
        double flop = 2.0 * s->M * s->N * s->K;
        // interleaved, so a change in machine load hits both sides alike
        double t_threaded = 0, t_tiled = 0;
        for (int round = 0; round < 2; round++) {
            t_threaded += seconds_per_call(threaded, s, A, B, C, reps);
            t_tiled += seconds_per_call(tiled, s, A, B, C, reps);
        }
        printf("{\"shape\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"threads\":%d,\"blas_core\":\"%s\","
               "\"threaded_gflops\":%.1f,\"tiled_gflops\":%.1f,\"tiled_over_threaded\":%.3f}\n",
               s->name, s->M, s->N, s->K, cpu_ops_threads(), cpu_blas_core(),
               flop * 2 / t_threaded / 1e9, flop * 2 / t_tiled / 1e9, t_threaded / t_tiled);
        free(A), free(B), free(C);
    }
    return 0;
}
