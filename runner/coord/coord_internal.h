#pragma once
// Shared between the coordination files (not for other areas).
#include "runner/coord/coord.h"
#include "runner/coord/redis_client.h"

// Fill `n` from the AWS_BATCH_JOB_* variables (and RUNNER_NODE_ADDRESS). 0 or EXIT_USAGE.
int coord_identity_from_env(coord_node *n);
// The Redis endpoint in use (NULL when off).
const redis_endpoint *coord_endpoint(void);
// True once coord_stop() began: threads leave their loops.
bool coord_stopping(void);
int coord_heartbeat_ms(void);
// --redis-outage-timeout in ms (the default before coord_start()).
int coord_outage_timeout_ms(void);
// How long a worker's command waits for a lost Redis: a little longer than the
// supervisor's heartbeat thread, which judges the outage (its outage may begin up to a
// heartbeat after the worker's first failure): its stop (82, with its reason) ends the
// worker's wait first.
int coord_worker_redis_wait_ms(void);
// Non-main nodes: send the telemetry store's new points to the metrics stream. 0, or
// EXIT_COORDINATION (error_set) when Redis did not answer: the points are dropped.
int coord_metrics_export(redis_client *rc);
// Main node thread: the other nodes' metrics stream entries into the telemetry store.
void *coord_fanin_main(void *arg);
