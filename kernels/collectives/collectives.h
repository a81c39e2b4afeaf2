#pragma once
// Collectives (DESIGN §5): one C interface over Gloo's TCP transport (CPU ranks) and
// NCCL (GPU ranks, compiled with CUDA). Both bootstrap through a key-value store given
// as a table of callbacks, so the shim knows nothing about Redis: runner/coord provides
// the store over its authenticated Redis client (coord_store_open()).
// All calls are collective: every rank of the group makes them in the same order.
// Failures (a peer died, a timeout) return EXIT_PEER_LOST with error_set() called;
// store failures EXIT_COORDINATION.
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// A blocking key-value store shared by all ranks. Every callback returns 0 on success
// or an exit code with error_set() called.
typedef struct collective_store_ops {
    void *ctx;
    // Store `len` bytes under `key` (overwrites).
    int (*set)(void *ctx, const char *key, const void *data, size_t len);
    // Read `key` into a malloc'd buffer (*data, *len; the caller frees). Waits for the
    // key to exist (up to the timeout of the last wait, 30 s before any), as Gloo's own
    // stores do.
    int (*get)(void *ctx, const char *key, void **data, size_t *len);
    // Wait until every key of keys[0..n) exists, for at most timeout_ms.
    int (*wait)(void *ctx, const char *const *keys, size_t n, int timeout_ms);
} collective_store_ops;

typedef struct collective collective;

// Join a CPU group of `world` ranks as `rank`: Gloo full mesh over TCP, listening on
// `hostname` (this node's address as the others reach it; "127.0.0.1" on one machine).
// Keys go under `prefix` in the store (Gloo's PrefixStore: use one prefix per job,
// attempt and group). `timeout_ms` bounds the connection set-up and every operation.
int collective_init_cpu(const collective_store_ops *store, const char *prefix,
                        const char *hostname, int rank, int world, int timeout_ms,
                        collective **out);
// Join a GPU group with NCCL on CUDA `device`: rank 0 creates the ncclUniqueId and
// publishes it through the store under `prefix`. EXIT_GPU_FAULT when built without CUDA
// or NCCL fails to start.
int collective_init_gpu(const collective_store_ops *store, const char *prefix, int rank,
                        int world, int device, int timeout_ms, collective **out);

int collective_rank(const collective *c);
int collective_world(const collective *c);

// In place: buf[i] = sum over ranks of buf[i]. `buf` is host memory for a CPU group and
// device memory for a GPU group (n floats).
int collective_allreduce_sum_f32(collective *c, float *buf, size_t n);
// GPU groups: queue the in-place sum of device buffer `buf` on `stream` (a cudaStream_t
// as void *, e.g. backend_cuda_comm_stream(); NULL = the group's own stream) and return
// without waiting, so it overlaps the rest of backward (docs/cuda.md). Order it with
// backend_cuda_grads_ready() / backend_cuda_join_comm(). CPU groups: the same as
// collective_allreduce_sum_f32().
int collective_allreduce_sum_f32_async(collective *c, float *buf, size_t n, void *stream);
// GPU groups: EXIT_PEER_LOST when NCCL reported an asynchronous error (a peer died, a
// network failure); the communicator is aborted then. 0 for CPU groups.
int collective_check(collective *c);
// In place: every rank gets root's buf.
int collective_broadcast_f32(collective *c, float *buf, size_t n, int root);
// Wait until every rank arrived.
int collective_barrier(collective *c);

void collective_destroy(collective *c);

#ifdef __cplusplus
}
#endif
