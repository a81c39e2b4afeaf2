#pragma once
// Test-only fault injection. RUNNER_FAULT_INJECT holds one or more comma-separated
// "KIND:RANK:STEP[:POINT]" specs: the worker of rank RANK fails when
// fault_maybe_inject() is called with step >= STEP (and, when POINT is given, with that
// point name). KIND is
//   worker_crash   the worker kills itself with SIGKILL (a crash, or the OOM killer)
//   worker_exit=N  the worker exits with code N
//   worker_hang    the worker waits there until a stop is requested, then exits 80 (a
//                  job that is busy, for signal tests that must not depend on the job)
//   worker_stuck   the worker waits there forever, stop or not (a job hung in a collective)
// Never set in production; it is read once, on the first call.
// The supervisor calls fault_maybe_inject("worker_start", 0) before job_run(), and the
// job calls fault_maybe_inject("step", step) at every optimizer step.

// This process's rank (the worker sets it after fork; -1 = not a worker).
void fault_set_rank(int rank);
void fault_maybe_inject(const char *point, long step);
