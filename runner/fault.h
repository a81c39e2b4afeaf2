#pragma once
// Test-only fault injection (docs/faults.md, docs/cli.md "Test-only fault injection").
// Never set in production; both variables are read once, on the first call.
//
// RUNNER_FAULT_INJECT holds one or more comma-separated "KIND:RANK:STEP[:POINT[@TEXT]]"
// specs: the worker of rank RANK fails when fault_maybe_inject() is called with step >=
// STEP (and, when POINT is given, with that point name). With @TEXT only the points whose
// detail contains TEXT count, and STEP counts those alone: "kill_all:0:2:s3_upload@/
// checkpoint-12/" fires before the third object of that checkpoint is uploaded. KIND is
//   worker_crash   the worker kills itself with SIGKILL (a crash, or the OOM killer)
//   worker_exit=N  the worker exits with code N
//   worker_hang    the worker waits there until a stop is requested, then exits 80 (a
//                  job that is busy, for signal tests that must not depend on the job)
//   worker_stuck   the worker waits there forever, stop or not (a job hung in a collective)
//   stop_signal    the worker sends SIGTERM to the supervisor (PID 1 in the container, as
//                  Batch does on a termination or a spot reclaim), waits until the
//                  forwarded stop has reached it (at most 10 s) and goes on: the stop then
//                  lands at the job's next stop check after that point. Fires once.
//   kill_all       SIGKILL to the supervisor and to the worker, at once: the container
//                  killed (Batch's SIGKILL after the grace, a lost instance)
//   worker_pause   the worker stops itself (SIGSTOP) and goes on at a SIGCONT: the test
//                  changes the world meanwhile (fills the disk) knowing where the job
//                  is. Fires once.
//
// The supervisor calls fault_maybe_inject("worker_start", 0) before job_run(), and the
// job calls fault_maybe_inject("step", step) at every optimizer step of a run (step
// counts from 0 in each run). Every other point goes through fault_point(), which counts
// how often this process reached it: its STEP is that count (0 = the first time).
// Points: train_step (before each optimizer step of any run), checkpoint_file (before
// each file of a checkpoint, the manifest last), file_write (half way through writing
// any file of the job, before its fsync and rename), evaluate_batch (before each batch
// of an evaluation), export_file (before each file of an exported model), s3_upload
// (before each object of an upload).
//
// RUNNER_FAULT_TRACE=1 logs every fault_point() a worker reaches as
// {"event":"fault_point","point":…,"n":…,"detail":…}, so a test can list the points of
// an uninterrupted run and aim at any of them.

// This process's rank (the worker sets it after fork; -1 = not a worker).
void fault_set_rank(int rank);
void fault_maybe_inject(const char *point, long step);
// Reach `point` once more; `detail` (a path, a run name; may be NULL) is only logged.
void fault_point(const char *point, const char *detail);
