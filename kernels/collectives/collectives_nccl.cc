// Collectives over NCCL (GPU ranks): the ncclUniqueId travels through the store (rank 0
// creates it), communicators are created non-blocking so a missing peer ends in a
// timeout instead of a hang, and every wait polls ncclCommGetAsyncError: a dead peer or
// a network failure aborts the communicator and returns EXIT_PEER_LOST.
#ifdef RUNNER_HAVE_NCCL
#include "kernels/collectives/collectives_impl.h"

#define _Noreturn [[noreturn]]
extern "C" {
#include "runner/error.h"
}
#undef _Noreturn

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>
#include <nccl.h>
#include <new>
#include <string>
#include <thread>

namespace {

using clock_type = std::chrono::steady_clock;

ncclComm_t comm_of(collective *c) { return static_cast<ncclComm_t>(c->nccl_comm); }
cudaStream_t stream_of(collective *c) { return static_cast<cudaStream_t>(c->nccl_stream); }

int abort_with(collective *c, int code, const char *what, const char *detail) {
    if (c->nccl_comm) {
        ncclCommAbort(comm_of(c));
        c->nccl_comm = nullptr;
    }
    return error_set(code, "collective %s: %s", what, detail);
}

// Wait until `done()` or an NCCL async error or the group's timeout.
template <typename Done> int wait_for(collective *c, const char *what, Done done) {
    auto deadline = clock_type::now() + std::chrono::milliseconds(c->timeout_ms);
    for (;;) {
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(comm_of(c), &async) != ncclSuccess || (async != ncclSuccess && async != ncclInProgress))
            return abort_with(c, EXIT_PEER_LOST, what, ncclGetErrorString(async));
        int state = done();
        if (state < 0)
            return abort_with(c, EXIT_GPU_FAULT, what, "CUDA error while waiting");
        if (state > 0 && async == ncclSuccess)
            return 0;
        if (clock_type::now() > deadline)
            return abort_with(c, EXIT_PEER_LOST, what, "timed out (a peer is gone or stuck)");
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

int wait_stream(collective *c, const char *what, cudaStream_t s) {
    return wait_for(c, what, [s] {
        cudaError_t e = cudaStreamQuery(s);
        return e == cudaSuccess ? 1 : e == cudaErrorNotReady ? 0 : -1;
    });
}

} // namespace

extern "C" int collective_init_gpu(const collective_store_ops *store, const char *prefix,
                                   int rank, int world, int device, int timeout_ms,
                                   collective **out) {
    *out = nullptr;
    if (world < 1 || rank < 0 || rank >= world)
        return error_set(EXIT_INTERNAL, "collective_init_gpu: rank %d of world %d", rank, world);
    if (cudaSetDevice(device) != cudaSuccess)
        return error_set(EXIT_GPU_FAULT, "collective_init_gpu: cudaSetDevice(%d) failed", device);
    std::string key = std::string(prefix) + "nccl_id";
    ncclUniqueId id;
    if (rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess)
            return error_set(EXIT_GPU_FAULT, "ncclGetUniqueId: %s", ncclGetErrorString(r));
        int code = store->set(store->ctx, key.c_str(), &id, sizeof id);
        if (code)
            return code;
    } else {
        void *data = nullptr;
        size_t len = 0;
        int code = collective_store_fetch(store, key.c_str(), timeout_ms, &data, &len);
        if (code)
            return code;
        if (len != sizeof id) {
            std::free(data);
            return error_set(EXIT_COORDINATION, "%s: %zu bytes, not an ncclUniqueId", key.c_str(), len);
        }
        std::memcpy(&id, data, sizeof id);
        std::free(data);
    }
    auto *c = new (std::nothrow) collective();
    if (!c)
        return error_set(EXIT_RESOURCES, "collective_init_gpu: out of memory");
    c->kind = COLLECTIVE_NCCL;
    c->rank = rank;
    c->world = world;
    c->timeout_ms = timeout_ms;
    cudaStream_t stream;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        delete c;
        return error_set(EXIT_GPU_FAULT, "collective_init_gpu: cudaStreamCreate failed");
    }
    c->nccl_stream = stream;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; // a peer that never comes must end in our timeout, not a hang
    ncclComm_t comm = nullptr;
    ncclResult_t r = ncclCommInitRankConfig(&comm, world, id, rank, &config);
    c->nccl_comm = comm;
    if (r != ncclSuccess && r != ncclInProgress) {
        cudaStreamDestroy(stream);
        delete c;
        return error_set(EXIT_GPU_FAULT, "ncclCommInitRank: %s", ncclGetErrorString(r));
    }
    int code = wait_for(c, "init", [] { return 1; });
    if (code) {
        cudaStreamDestroy(stream);
        delete c;
        return code;
    }
    *out = c;
    return 0;
}

int collective_nccl_allreduce_async(collective *c, float *buf, size_t n, void *stream) {
    if (!c->nccl_comm)
        return error_set(EXIT_PEER_LOST, "collective: the NCCL communicator was aborted");
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : stream_of(c);
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, comm_of(c), s);
    if (r != ncclSuccess && r != ncclInProgress)
        return abort_with(c, EXIT_PEER_LOST, "allreduce", ncclGetErrorString(r));
    return 0;
}

int collective_nccl_check(collective *c) {
    if (!c->nccl_comm)
        return error_set(EXIT_PEER_LOST, "collective: the NCCL communicator was aborted");
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm_of(c), &async) != ncclSuccess ||
        (async != ncclSuccess && async != ncclInProgress))
        return abort_with(c, EXIT_PEER_LOST, "check", ncclGetErrorString(async));
    return 0;
}

int collective_nccl_allreduce_sum_f32(collective *c, float *buf, size_t n) {
    int code = collective_nccl_allreduce_async(c, buf, n, nullptr);
    return code ? code : wait_stream(c, "allreduce", stream_of(c));
}

int collective_nccl_broadcast_f32(collective *c, float *buf, size_t n, int root) {
    if (!c->nccl_comm)
        return error_set(EXIT_PEER_LOST, "collective: the NCCL communicator was aborted");
    ncclResult_t r = ncclBroadcast(buf, buf, n, ncclFloat, root, comm_of(c), stream_of(c));
    if (r != ncclSuccess && r != ncclInProgress)
        return abort_with(c, EXIT_PEER_LOST, "broadcast", ncclGetErrorString(r));
    return wait_stream(c, "broadcast", stream_of(c));
}

int collective_nccl_barrier(collective *c) {
    float *one = nullptr;
    if (cudaMalloc(&one, sizeof *one) != cudaSuccess)
        return error_set(EXIT_GPU_OOM, "collective barrier: cudaMalloc failed");
    cudaMemsetAsync(one, 0, sizeof *one, stream_of(c));
    int code = collective_nccl_allreduce_sum_f32(c, one, 1);
    cudaFree(one);
    return code;
}

void collective_nccl_destroy(collective *c) {
    if (c->nccl_comm)
        ncclCommDestroy(comm_of(c));
    if (c->nccl_stream)
        cudaStreamDestroy(stream_of(c));
    c->nccl_comm = nullptr;
    c->nccl_stream = nullptr;
}
#endif // RUNNER_HAVE_NCCL
