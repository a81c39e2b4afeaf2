#pragma once
// Supervisor and workers, the torchrun model (DESIGN §4). The supervisor owns signals,
// preflight, the HTTP servers, Redis and the exit code; it forks one worker per GPU
// (one on CPU, or --workers N) with LOCAL_RANK, RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT set as torchrun sets them; each worker runs
// worker_main(): telemetry_worker_attach(rank), then job_run().
// Exit code: a worker killed by a signal (crash, OOM kill) -> the others are stopped ->
// 83 PEER_LOST; every worker stopped -> 80; else the first failing worker's own code.
#include "runner/config.h"

// Run the whole job; returns the exit code for runner_exit().
int supervisor_run(const runner_config *cfg);
// The body of one worker process; returns its exit code.
int worker_main(const runner_config *cfg, int local_rank, int rank, int world_size);
// The code for a set of worker results (exposed for unit tests): `status` as from
// waitpid(), `we_stopped` true where the supervisor had sent the stop.
int supervisor_combine(const int *status, int count);
