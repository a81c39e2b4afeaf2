#pragma once
// Data-parallel training across ranks (workers and nodes): every rank runs forward and
// backward on its own slice of the global batch; data_parallel_sync() then turns each
// rank's gradient of its slice's mean loss into the gradient of the global batch's mean
// loss, on every rank, so that bert_step() takes the same step everywhere as one rank
// would with the whole batch (up to the order of fp32 sums). Call it between
// bert_backward() and bert_step(); the grad-norm clipping inside bert_step then sees
// the global gradient.
#include "kernels/collectives/collectives.h"
#include "runner/model/bert.h"

#include <stdbool.h>

// Join the job's data-parallel group as `rank` of `world` (global ranks, as the
// supervisor numbers workers): Gloo over TCP on this node's address for CPU workers,
// NCCL on CUDA `device` when `gpu`; bootstrapped through the job's Redis (coord_start()
// ran in the supervisor before the fork). *out = NULL and 0 when world == 1. 0,
// EXIT_USAGE (Redis off), EXIT_COORDINATION or EXIT_PEER_LOST.
int data_parallel_open(int rank, int world, bool gpu, int device, collective **out);
// Leave the group (NULL is fine).
void data_parallel_close(collective *group);

// `labelled`: this rank's labelled positions in its slice (labels != -100; the loss's
// denominator); `*loss`: this rank's mean loss in, the global batch's mean loss out.
// 0 or EXIT_PEER_LOST (a peer died) with error_set().
int data_parallel_sync(collective *c, bert_model *m, long labelled, float *loss);

// In place: values[i] = the sum over ranks of values[i], for a small HOST buffer (flags,
// counts): staged through `be`'s memory when the group reduces there (NCCL on a GPU
// backend; `be` NULL or the CPU backend reduce in place). 0 or EXIT_PEER_LOST.
int data_parallel_allreduce_host(collective *c, backend *be, float *values, size_t n);
// Every rank's `mine` (a step, >= -1) into all[0..world) in rank order: an all-gather
// built from that all-reduce (each rank fills its own slot, the others add zeros).
// Exact for values below 2^48. 0 or EXIT_PEER_LOST.
int data_parallel_gather_long(collective *c, backend *be, long mine, long *all);

// Rows [*first, *first + *count) of a global batch of `global_batch` rows for `rank` of
// `world`: contiguous, sizes differing by at most one.
void data_parallel_slice(int global_batch, int rank, int world, int *first, int *count);
