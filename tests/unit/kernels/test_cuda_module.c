// The CUDA backend is the module librunner_cuda.so, loaded by backend_create("cuda")
// (kernels/backend.c): cuBLAS/cuBLASLt must not be mapped until then, a broken or missing
// module is GPU_FAULT naming the path, and the module's functions resolve once loaded.
// No GPU needed: without a driver the module loads and reports no device.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "kernels/backend.h"
#include "runner/error.h"

#ifdef RUNNER_HAVE_CUDA
// Whether a shared object whose path contains `name` is mapped into this process.
static int mapped(const char *name) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return -1;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, maps)) found = strstr(line, name) != NULL;
    fclose(maps);
    return found;
}

// In a child (the module loads once per process): RUNNER_CUDA_MODULE = `path`.
static int child_with_module(const char *path, const char *expect) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("RUNNER_CUDA_MODULE", path, 1);
        backend *be = backend_create("cuda", 0, 1);
        CHECK(be == NULL);
        CHECK_INT(error_code(), EXIT_GPU_FAULT);
        CHECK(strstr(error_message(), path) != NULL);
        CHECK(strstr(error_message(), expect) != NULL);
        fprintf(stderr, "RUNNER_CUDA_MODULE=%s: \"%s\"\n", path, error_message());
        error_clear();
        CHECK(backend_cuda_module_symbol("backend_cuda_create") == NULL);
        CHECK_INT(backend_cuda_module_device_count(), -1);
        CHECK_INT(mapped("libcublas"), 0);
        _exit(check_failed ? 1 : 0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static void test_broken_module(void) {
    char path[] = "/tmp/runner-cuda-module-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, "not an ELF object\n", 18) == 18);
    close(fd);
    CHECK_INT(child_with_module(path, "cannot load the CUDA module"), 0);
    unlink(path);
    CHECK_INT(child_with_module("/nonexistent/librunner_cuda.so", "no such file"), 0);
}

static void test_module_loads_on_demand(void) {
    unsetenv("RUNNER_CUDA_MODULE");
    // Linked into every executable before: now absent until the CUDA backend is asked for.
    CHECK_INT(mapped("libcublasLt"), 0);
    CHECK_INT(mapped("librunner_cuda.so"), 0);
    int devices = backend_cuda_module_device_count();
    CHECK(devices >= 0);
    if (devices < 0) fprintf(stderr, "module: %s\n", error_message());
    CHECK_INT(mapped("librunner_cuda.so"), 1);
    CHECK_INT(mapped("libcublasLt"), 1);
    CHECK(backend_cuda_module_symbol("backend_cuda_comm_stream") != NULL);
    error_clear();
    CHECK(backend_cuda_module_symbol("backend_cuda_no_such_function") == NULL);
    CHECK_INT(error_code(), EXIT_GPU_FAULT);
    CHECK(strstr(error_message(), "backend_cuda_no_such_function") != NULL);
    error_clear();
    if (devices == 0) {
        // The module's own error_set() reaches this process's error state.
        CHECK(backend_create("cuda", 0, 1) == NULL);
        CHECK_INT(error_code(), EXIT_GPU_FAULT);
        CHECK(strncmp(error_message(), "cuda: ", 6) == 0);
        error_clear();
    }
}
#endif

int main(void) {
#ifdef RUNNER_HAVE_CUDA
    test_broken_module();
    test_module_loads_on_demand();
#else
    // A build without CUDA knows no "cuda" backend and loads nothing.
    CHECK(backend_create("cuda", 0, 1) == NULL);
    CHECK_INT(error_code(), 0);
#endif
    backend *cpu = backend_create("cpu", 0, 1);
    CHECK(cpu != NULL);
    if (cpu) cpu->destroy(cpu);
    return check_summary();
}
