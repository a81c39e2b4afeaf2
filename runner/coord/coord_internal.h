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
// Non-main nodes: send the telemetry store's new points to the metrics stream. 0, or
// EXIT_COORDINATION (error_set) when Redis did not answer: the points are dropped.
int coord_metrics_export(redis_client *rc);
// Main node thread: the other nodes' metrics stream entries into the telemetry store.
void *coord_fanin_main(void *arg);
