// Thread count shared by every CPU op (kernels/cpu/ops.h).
#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/ops.h"

static int ops_threads; // 0 until set: the OpenMP default

void cpu_ops_set_threads(int threads) {
    ops_threads = threads > 0 ? threads : omp_get_max_threads();
    // Every GEMM is issued from inside an OpenMP region on a block of fixed size, so
    // OpenBLAS itself must not spawn threads (its pthread pool would oversubscribe the
    // cores and make blocks race for it).
    openblas_set_num_threads(1);
}

int cpu_ops_threads(void) {
    if (ops_threads == 0) cpu_ops_set_threads(0);
    return ops_threads;
}
