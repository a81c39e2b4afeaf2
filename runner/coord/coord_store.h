#pragma once
// The key-value store the collectives bootstrap through (kernels/collectives): Gloo's
// Store (set, get, wait) and the NCCL id, over the project's authenticated Redis client.
// Gloo's own RedisStore cannot send AUTH. Keys expire after a day. A wait with timeout 0
// (Gloo's kNoTimeout) has no limit and ends only when the key appears or a stop is
// requested (signals_stop_requested: EXIT_INTERRUPTED). get, which Gloo calls without a
// timeout, waits for its key as long as the last wait on the store allowed (the group's
// timeout; 30 s, Gloo's default, before any wait).
#include "kernels/collectives/collectives.h"
#include "runner/coord/redis_client.h"

// A store over a new connection to the job's Redis (coord_start() must have run in this
// process or before the fork). 0, EXIT_USAGE when Redis is off, or EXIT_COORDINATION.
int coord_store_open(collective_store_ops *out);
// The same for an explicit endpoint (tests, tools).
int coord_store_open_endpoint(const redis_endpoint *ep, collective_store_ops *out);
void coord_store_close(collective_store_ops *ops);
// The prefix for a collective group's keys: "runner:{job}:{attempt}:collective:{group}:".
void coord_store_prefix(const char *group, char *out, size_t out_len);
