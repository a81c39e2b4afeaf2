#pragma once
// What the CUDA backend offers beyond kernels/backend.h: device discovery for tests and
// preflight, and the two-stream hand-off that lets a gradient all-reduce (NCCL, in
// kernels/collectives) overlap the rest of the backward pass. See docs/cuda.md.
//
// Only meaningful in builds with RUNNER_HAVE_CUDA; plain C. These live in the module
// librunner_cuda.so: code outside kernels/cuda reaches them through
// backend_cuda_module_symbol() / backend_cuda_module_device_count() (kernels/backend.h).
#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Number of CUDA devices visible to this process; 0 when there is no driver, no GPU or
// CUDA cannot start (never sets an error: "no GPU" is a normal answer here).
int backend_cuda_device_count(void);

// The compute stream every op of `be` is queued on (a cudaStream_t, as void *).
void *backend_cuda_stream(backend *be);
// A second, non-blocking stream for communication (a cudaStream_t, as void *): NCCL
// all-reduces of gradient buckets go here so they run while backward continues.
void *backend_cuda_comm_stream(backend *be);
// Mark "every op queued so far on the compute stream is a dependency of the next
// communication": the comm stream waits (on the device, not the host) until the
// gradients written so far are final. Call after the backward ops that finish a
// bucket, then queue the bucket's all-reduce on backend_cuda_comm_stream(). 0 or an
// exit code (EXIT_GPU_FAULT) with error_set().
int backend_cuda_grads_ready(backend *be);
// Make the compute stream wait for everything queued so far on the comm stream (the
// optimiser must see reduced gradients). 0 or an exit code with error_set().
int backend_cuda_join_comm(backend *be);

#ifdef __cplusplus
}
#endif
