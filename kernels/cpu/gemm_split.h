#pragma once
// How the CPU backend's linear-layer GEMMs are cut into output tiles (fp32 in
// ops_template.h's gemm_tiled, bf16 in gemm_bf16.c): a function of the matrix shape
// alone, never of the thread count, so that every output element is computed by the same
// single-threaded GEMM call whatever the number of threads (docs/kernels.md
// "Determinism").
//
// A dimension is cut into the fewest pieces of at most CPU_GEMM_TILE elements, of equal
// size rounded up to a multiple of 16 (whole AVX-512 vectors and micro-kernel panels; the
// last piece takes the rest). Large tiles keep the cost of packing the operands once
// per tile small (docs/BENCHMARKS.md "Thread-independent GEMM").
#define CPU_GEMM_TILE 512

typedef struct {
    int pieces; // number of tiles along the dimension
    int size;   // elements per tile (the last one may be shorter)
} cpu_gemm_split;

static inline cpu_gemm_split cpu_gemm_split_dim(int n) {
    int pieces = (n + CPU_GEMM_TILE - 1) / CPU_GEMM_TILE;
    if (pieces < 1) pieces = 1;
    int size = ((n + pieces - 1) / pieces + 15) / 16 * 16;
    pieces = (n + size - 1) / size;
    return (cpu_gemm_split){pieces > 0 ? pieces : 1, size};
}
