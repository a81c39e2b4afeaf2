#pragma once
// The kernel and model tests run a second time per OpenBLAS core that machines of this
// project's kind may pick (tests/CMakeLists.txt sets OPENBLAS_CORETYPE for those runs), so
// a result that depends on the CPU vendor shows on any one machine. blas_core_require()
// runs first in such a test: it skips (exit 77, CTest's SKIP_RETURN_CODE) when this CPU
// cannot execute the forced core's instructions, and fails when OpenBLAS did not take
// the forced core (it falls back to its own pick silently on an unknown name).
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static void blas_core_require(void) {
    const char *forced = getenv("OPENBLAS_CORETYPE");
    const char *running = openblas_get_corename();
    printf("openblas core: %s (OPENBLAS_CORETYPE=%s)\n", running ? running : "?",
           forced ? forced : "unset");
    if (!forced || !*forced) return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    // What each core's sgemm/dgemm kernels execute (OpenBLAS kernel/x86_64).
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512vl");
    int bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
    int runnable = strcasecmp(forced, "Haswell") == 0 || strcasecmp(forced, "Zen") == 0 ? avx2
                   : strcasecmp(forced, "SkylakeX") == 0                                ? avx512
                   : strcasecmp(forced, "Cooperlake") == 0                              ? bf16
                                                                                        : -1;
    if (runnable == 0) {
        printf("skipped: this CPU cannot run OpenBLAS's %s kernels\n", forced);
        exit(77);
    }
#endif
    if (!running || strcasecmp(running, forced) != 0) {
        fprintf(stderr, "OPENBLAS_CORETYPE=%s was not taken: OpenBLAS runs %s\n", forced,
                running ? running : "?");
        exit(1);
    }
}
