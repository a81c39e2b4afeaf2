#include "kernels/backend.h"

#include <string.h>

#ifdef RUNNER_HAVE_CUDA
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "runner/error.h"

// The CUDA backend lives in librunner_cuda.so: it links cuBLAS and cuBLASLt, whose
// load-time constructors cost 70-160 ms and ~200 MB before main(), so only a process
// that creates the CUDA backend loads them. Loaded once per process, never unloaded.
#define CUDA_MODULE_NAME "librunner_cuda.so"

static pthread_once_t cuda_module_once = PTHREAD_ONCE_INIT;
static void *cuda_module;             // dlopen handle, NULL when loading failed
static char cuda_module_error[1024];  // why it failed (one line)

// Keep why loading failed (cut to the buffer: a long path still names itself).
__attribute__((format(printf, 1, 2))) static void cuda_module_failed(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cuda_module_error, sizeof cuda_module_error, fmt, ap);
    va_end(ap);
}

// dlopen `path` when it exists; 1 = loaded, 0 = no such file, -1 = exists but failed
// (cuda_module_error says why).
static int cuda_module_try(const char *path) {
    if (access(path, F_OK) != 0) return 0;
    cuda_module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (cuda_module) return 1;
    cuda_module_failed("cannot load the CUDA module %s: %s", path, dlerror());
    return -1;
}

static void cuda_module_open(void) {
    const char *chosen = getenv("RUNNER_CUDA_MODULE");
    if (chosen && *chosen) {
        if (cuda_module_try(chosen) == 0)
            cuda_module_failed("cannot load the CUDA module RUNNER_CUDA_MODULE=%s: no such file",
                               chosen);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char path[PATH_MAX + 64];
    const char *dir = "";
    if (n > 0) {
        exe[n] = '\0';
        dir = dirname(exe);
        snprintf(path, sizeof path, "%s/%s", dir, CUDA_MODULE_NAME);
        if (cuda_module_try(path) != 0) return;
        snprintf(path, sizeof path, "%s/../lib/runner/%s", dir, CUDA_MODULE_NAME);
        if (cuda_module_try(path) != 0) return;
    }
#ifdef RUNNER_CUDA_MODULE_BUILD_DIR
    // Tests, benchmarks and tools built in the tree live in subdirectories of it.
    snprintf(path, sizeof path, "%s/%s", RUNNER_CUDA_MODULE_BUILD_DIR, CUDA_MODULE_NAME);
    if (cuda_module_try(path) != 0) return;
#endif
    cuda_module_failed("cannot load the CUDA module: no %s in %s or %s/../lib/runner "
                       "(set RUNNER_CUDA_MODULE)", CUDA_MODULE_NAME, dir, dir);
}

int backend_cuda_module_load(void) {
    pthread_once(&cuda_module_once, cuda_module_open);
    if (!cuda_module) return error_set(EXIT_GPU_FAULT, "%s", cuda_module_error);
    return 0;
}

void *backend_cuda_module_symbol(const char *name) {
    if (backend_cuda_module_load() != 0) return NULL;
    dlerror();
    void *symbol = dlsym(cuda_module, name);
    if (!symbol) {
        const char *why = dlerror();
        error_set(EXIT_GPU_FAULT, "CUDA module %s lacks %s: %s", CUDA_MODULE_NAME, name,
                  why ? why : "NULL symbol");
    }
    return symbol;
}

int backend_cuda_module_device_count(void) {
    int (*device_count)(void) = (int (*)(void))backend_cuda_module_symbol("backend_cuda_device_count");
    return device_count ? device_count() : -1;
}

static backend *cuda_create(int device) {
    backend *(*create)(int) = (backend * (*)(int)) backend_cuda_module_symbol("backend_cuda_create");
    return create ? create(device) : NULL;
}
#endif

backend *backend_create(const char *name, int device, int threads) {
    if (strcmp(name, "cpu") == 0) return backend_cpu_create(threads);
#ifdef RUNNER_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) {
        backend *be = cuda_create(device);
        // The CUDA backend's inference GEMMs are its training ones (bf16 activations).
        if (be && !be->infer_matmul_forward) {
            be->infer_matmul_forward = be->matmul_forward;
            be->infer_dtype = be->act_dtype;
        }
        return be;
    }
#endif
    (void)device;
    return NULL;
}
