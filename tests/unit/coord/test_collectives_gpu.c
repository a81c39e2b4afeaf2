// NCCL collectives bootstrapped through Redis (the ncclUniqueId travels through the
// store): one rank per visible GPU (at most 4), all-reduce, broadcast, barrier and the
// asynchronous all-reduce. Passes with a note when built without NCCL or without a GPU.
#include "check.h"
#include "coord/redis_keeper.h"

#ifdef RUNNER_HAVE_NCCL
#include "kernels/collectives/collectives.h"
#include "runner/coord/coord_store.h"
#include "runner/error.h"

#include <cuda_runtime.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

enum { N = 4099 };

static redis_endpoint endpoint;

// CUDA must not start in the parent (children fork after): ask a child.
static int gpu_count(void) {
    pid_t pid = fork();
    if (pid == 0) {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess)
            n = 0;
        _exit(n > 4 ? 4 : n);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 0;
}

static int rank_main(int rank, int world) {
    collective_store_ops store;
    if (coord_store_open_endpoint(&endpoint, &store) != 0)
        return 10;
    collective *c = NULL;
    if (collective_init_gpu(&store, "runner:gputest:1:collective:g:", rank, world, rank, 30000,
                            &c) != 0) {
        fprintf(stderr, "rank %d: %s\n", rank, error_message());
        return 11;
    }
    float *host = malloc(N * sizeof *host), *dev = NULL; // (N,)
    if (cudaMalloc((void **)&dev, N * sizeof *dev) != cudaSuccess)
        return 12;
    for (int i = 0; i < N; i++)
        host[i] = (float)(rank + 1) + (float)i;
    cudaMemcpy(dev, host, N * sizeof *dev, cudaMemcpyHostToDevice);
    if (collective_allreduce_sum_f32(c, dev, N) != 0)
        return 13;
    cudaMemcpy(host, dev, N * sizeof *dev, cudaMemcpyDeviceToHost);
    float ranks_sum = (float)(world * (world + 1) / 2);
    for (int i = 0; i < N; i++)
        if (host[i] != ranks_sum + (float)world * (float)i)
            return 14;
    // Asynchronous on the default stream, then checked.
    if (collective_allreduce_sum_f32_async(c, dev, N, NULL) != 0)
        return 15;
    if (collective_barrier(c) != 0 || collective_check(c) != 0)
        return 16;
    for (int i = 0; i < N; i++)
        host[i] = rank == 0 ? 7.0f : 0.0f;
    cudaMemcpy(dev, host, N * sizeof *dev, cudaMemcpyHostToDevice);
    if (collective_broadcast_f32(c, dev, N, 0) != 0)
        return 17;
    cudaMemcpy(host, dev, N * sizeof *dev, cudaMemcpyDeviceToHost);
    if (host[N - 1] != 7.0f)
        return 18;
    cudaFree(dev);
    free(host);
    collective_destroy(c);
    coord_store_close(&store);
    return 0;
}

int main(void) {
    int world = gpu_count();
    if (world == 0) {
        printf("skipped: no GPU visible\n");
        return check_summary();
    }
    int port = test_free_port();
    CHECK_INT(redis_keeper_start(port, "gpu-pw"), 0);
    snprintf(endpoint.host, sizeof endpoint.host, "127.0.0.1");
    endpoint.port = port;
    snprintf(endpoint.password, sizeof endpoint.password, "gpu-pw");
    pid_t pids[4];
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm(60);
            _exit(rank_main(r, world));
        }
    }
    for (int r = 0; r < world; r++) {
        int st;
        waitpid(pids[r], &st, 0);
        CHECK_INT(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), 0);
    }
    redis_keeper_stop();
    return check_summary();
}
#else
int main(void) {
    printf("skipped: built without NCCL\n");
    return check_summary();
}
#endif
