// Thread count shared by every CPU op (kernels/cpu/ops.h).
#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/ops.h"

static int ops_threads;     // 0 until set: the OpenMP default
static int blas_threads;    // what OpenBLAS was last told (0: not yet)

void cpu_ops_set_threads(int threads) {
    ops_threads = threads > 0 ? threads : omp_get_max_threads();
    blas_threads = 0;
}

int cpu_ops_threads(void) {
    if (ops_threads == 0) cpu_ops_set_threads(0);
    return ops_threads;
}

static void blas_set(int n) {
    if (blas_threads == n) return;
    openblas_set_num_threads(n);
    blas_threads = n;
}

void cpu_blas_single(void) { blas_set(1); }

const char *cpu_blas_core(void) {
    const char *name = openblas_get_corename();
    return name && *name ? name : "unknown";
}
