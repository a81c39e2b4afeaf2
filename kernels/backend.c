#include "kernels/backend.h"

#include <stdio.h>
#include <string.h>

// Kept free of runner/ headers: the factory reports through the return value only and
// leaves the one-line error to the backend constructor it calls.
backend *backend_create(const char *name, int device, int threads) {
    if (strcmp(name, "cpu") == 0) return backend_cpu_create(threads);
#ifdef RUNNER_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return backend_cuda_create(device);
#endif
    (void)device;
    return NULL;
}
