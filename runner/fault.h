#pragma once
// Test-only fault injection. RUNNER_FAULT_INJECT="KIND:RANK:STEP[:POINT]" makes the
// worker of rank RANK fail when fault_maybe_inject() is called with step >= STEP (and,
// when POINT is given, that point name). KIND is
//   worker_crash   the worker kills itself with SIGKILL (as a crash or the OOM killer)
//   worker_exit=N  the worker exits with code N
// Never set in production; it is read once, on the first call.
// The supervisor calls fault_maybe_inject("worker_start", 0) before job_run(), and the
// job calls fault_maybe_inject("step", step) at every optimizer step.

// This process's rank (the worker sets it after fork; -1 = not a worker).
void fault_set_rank(int rank);
void fault_maybe_inject(const char *point, long step);
