#pragma once
// Telemetry: how the training loop hands scalars and state to the servers (Prometheus,
// JSON API, dashboard), TensorBoard event files and the Redis metrics stream without
// stalling. A producer (a worker process or the job thread) calls these; consumers in
// the supervisor read a snapshot. Workers and supervisor share it through /dev/shm.
#include <stdint.h>

// One scalar at a step, under a run ("prime", "trial-3") and a tag ("train/loss").
void telemetry_scalar(const char *run, const char *tag, int64_t step, double value);
// The job's phase for /readyz, the dashboard header and job info:
// "preflight", "download" (a Hub model), "split", "search", "prime", "evaluate", "export",
// "done", "stopping".
void telemetry_phase(const char *phase);
// Progress for ETA: `done` of `total` steps in the current phase.
void telemetry_progress(int64_t done, int64_t total);
// Scalars of `run` also go to TensorBoard event files in `logdir` (one writer per run
// directory); call before the run's first scalar.
void telemetry_run_dir(const char *run, const char *logdir);

// Process wiring (called by the supervisor, runner/supervisor.c):
// before starting workers, create the shared segment in /dev/shm for `workers` workers
// (its name goes to them in RUNNER_TELEMETRY_SHM);
int telemetry_supervisor_init(int workers);
// in a worker (runner/worker.h), attach as `rank` (its scalars go to its own ring);
int telemetry_worker_attach(int rank);
// write out what is buffered (event files, log lines for the supervisor): also run at
// exit, and called by a worker before it leaves through _exit();
void telemetry_flush(void);
// at exit of the supervisor, unlink the segment.
void telemetry_shutdown(void);
