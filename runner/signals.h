#pragma once
// Signals of a PID-1 process (DESIGN §4). SIGTERM and SIGINT set one stop flag that the
// job checks at step boundaries (checkpoint, flush, exit 80); a second SIGTERM/SIGINT
// exits at once with code 80 and the final exit line, after SIGKILLing and reaping the
// watched workers. SIGUSR1 asks for a checkpoint without stopping. SIGPIPE is ignored
// (a client that hangs up must not kill a server thread).
// The handlers only touch sig_atomic_t/atomic flags and call write()/kill()/_exit().
#include <stdbool.h>
#include <sys/types.h>

// Install the handlers (idempotent). Call first thing in main().
void signals_install(void);
// Has a stop been requested (signal, spot notice, control channel, dead peer)?
bool signals_stop_requested(void);
// Request a stop from code; `reason` is kept (the first one wins) for the exit line.
void signals_request_stop(const char *reason);
// The reason of the first stop request ("SIGTERM", "SIGINT", or the caller's), or NULL.
const char *signals_stop_reason(void);
// Take (read and clear) a pending checkpoint request (SIGUSR1 or signals_request_checkpoint).
bool signals_take_checkpoint_request(void);
void signals_request_checkpoint(void);

// Supervisor side: worker pids the handler forwards a second signal to before exiting.
void signals_watch_child(pid_t pid);
void signals_unwatch_child(pid_t pid);
// In a worker process (runner --worker): a second stop signal's immediate line is
// "worker_exit", not the supervisor's "exit".
void signals_mark_worker(void);
// The number of SIGTERM/SIGINT received so far (tests, logging).
int signals_received(void);
