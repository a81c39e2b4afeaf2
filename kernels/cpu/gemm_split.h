#pragma once
// How the CPU backend's linear-layer GEMMs are cut into output tiles (fp32 in
// ops_template.h's gemm_tiled, bf16 in gemm_bf16.c): a function of (M, N, K) alone, never
// of the thread count, so that every output element is computed by the same
// single-threaded GEMM call whatever the number of threads (docs/kernels.md
// "Determinism").
//
// Each single-threaded GEMM packs its own panels of A and B, so cutting the rows into pr
// pieces packs B pr times and cutting the columns into pc pieces packs A pc times: of the
// plans with enough tiles, the one that packs the fewest elements wins (docs/BENCHMARKS.md
// "GEMM tile plan"). "Enough" is CPU_GEMM_TILES tiles when the GEMM is big enough to keep
// that many threads busy, fewer (a power of two) for small GEMMs whose tiles would fall
// under CPU_GEMM_MIN_FLOP each; the tile count is then a multiple of that number (or at
// least four times it), so 1, 2, 4 or 8 threads share the tiles evenly. Tiles are at
// least 16 wide (whole AVX-512 vectors and micro-kernel panels), equal but for the last.
#define CPU_GEMM_TILES 8
#define CPU_GEMM_MIN_FLOP (4 << 20)

typedef struct {
    int pieces; // number of tiles along the dimension
    int size;   // elements per tile (the last one may be shorter)
} cpu_gemm_split;

typedef struct {
    cpu_gemm_split rows, cols;
} cpu_gemm_plan;

// n cut into about `pieces` equal pieces, rounded up to multiples of 16
static inline cpu_gemm_split cpu_gemm_split_dim(int n, int pieces) {
    int size = ((n + pieces - 1) / pieces + 15) / 16 * 16;
    if (size < 16) size = 16;
    pieces = (n + size - 1) / size;
    return (cpu_gemm_split){pieces > 0 ? pieces : 1, size};
}

// The tiles of C (M,N) = A (M,K) B (K,N).
static inline cpu_gemm_plan cpu_gemm_plan_for(int M, int N, int K) {
    double flop = 2.0 * M * N * (K > 0 ? K : 1);
    long want = (long)(flop / CPU_GEMM_MIN_FLOP);
    if (want > CPU_GEMM_TILES) want = CPU_GEMM_TILES;
    long fit = (long)((M + 15) / 16) * ((N + 15) / 16);
    if (want > fit) want = fit;
    if (want < 1) want = 1;
    while (want & (want - 1)) want &= want - 1; // a power of two: even shares
    cpu_gemm_plan best = {cpu_gemm_split_dim(M, 1), cpu_gemm_split_dim(N, 1)};
    double best_cost = -1;
    for (int pr = 1; pr <= want && pr <= (M + 15) / 16; pr++) {
        int pc = (int)((want + pr - 1) / pr);
        if (pc > (N + 15) / 16) continue;
        cpu_gemm_plan p = {cpu_gemm_split_dim(M, pr), cpu_gemm_split_dim(N, pc)};
        long tiles = (long)p.rows.pieces * p.cols.pieces;
        if (tiles < want || (tiles % want != 0 && tiles < 4 * want)) continue;
        // elements packed: A once per column piece, B once per row piece
        double cost = (double)M * K * p.cols.pieces + (double)K * N * p.rows.pieces;
        if (best_cost < 0 || cost < best_cost) best = p, best_cost = cost;
    }
    return best;
}
