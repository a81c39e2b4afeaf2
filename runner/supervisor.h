#pragma once
// Supervisor and workers, the torchrun model (DESIGN §4). The supervisor owns signals,
// preflight, the HTTP servers, Redis and the exit code; it starts one worker per GPU
// (one on CPU, or --workers N) as a program of its own, `runner --worker`, with
// LOCAL_RANK, RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set as
// torchrun sets them and the rest handed over explicitly (runner/worker.h); each
// worker attaches to telemetry, then runs job_run().
// Exit code: a worker killed by a signal (crash, OOM kill) -> the others are stopped ->
// 83 PEER_LOST; every worker stopped -> 80; else the first failing worker's own code.
#include "runner/config.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

// Run the whole job; returns the exit code for runner_exit().
int supervisor_run(const runner_config *cfg);
// How one worker ended: `status` as from waitpid(); killed_by_supervisor when the
// supervisor SIGKILLed it after the stop grace (RUNNER_STOP_GRACE_S, default 25 s).
typedef struct {
    int status;
    bool killed_by_supervisor;
} worker_result;
// The job's code from its workers' ends, in the order they ended (exposed for tests):
// the first abnormal end decides (a signal -> 83 PEER_LOST, a code other than 0/80 ->
// that code); else 80 when any worker was stopped; else 0. *culprit (may be NULL)
// receives the index of the deciding result, -1 when none.
int supervisor_combine(const worker_result *results, int count, int *culprit);
// Log labels of this node (job_id, attempt, node from the Batch environment) and, for
// rank >= 0, the worker's rank.
cJSON *supervisor_log_labels(int rank);
