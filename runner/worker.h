#pragma once
// Worker processes (DESIGN §4), started as programs of their own.
//
// The supervisor is multi-threaded (telemetry reader, coordination, libmicrohttpd, the
// spot watcher, the Step Functions heartbeat). A fork()ed child would inherit every lock
// as one of those threads held it at that instant (in curl, OpenSSL, hiredis, the
// allocator of a sanitizer build) and could hang on it for ever. So each worker is
// started with posix_spawn of the runner's own binary (/proc/self/exe) in worker mode,
// `runner --worker`: exec replaces the whole image, and no lock survives it.
//
// What a worker used to inherit across fork it is now given explicitly:
//   fd 3 (WORKER_HANDOFF_FD)  a sealed memfd, the handoff: the effective configuration
//        (after --config, RUNNER_*, flags and --secret-id), the worker's place
//        (local rank, rank, local world, world), the supervisor's pid, coordination's
//        view (coord_worker_view: Redis endpoint and password, node, key prefix), the
//        log format and level, the log labels, and every secret the log must redact;
//   fd 4 (WORKER_REASON_FD)   a pipe to the supervisor: the worker's error message;
//   environment               LOCAL_RANK, RANK, LOCAL_WORLD_SIZE, WORLD_SIZE, MASTER_ADDR,
//        MASTER_PORT (as torchrun sets them) and RUNNER_TELEMETRY_SHM (the /dev/shm
//        segment the worker attaches to); everything else as the supervisor's;
//   signals                   SIGTERM, SIGINT and SIGUSR1 start blocked (pending, never
//        lost) until the worker's own handlers are installed.
// The handoff travels through a file descriptor, not argv or the environment, so the
// Redis password never shows in /proc/<pid>/cmdline or environ. `--worker` is not in
// --help: started by hand, without a handoff, it exits 2 with a one-line error.
#include "runner/config.h"

#include <sys/types.h>

#define WORKER_FLAG "--worker"

enum { WORKER_HANDOFF_FD = 3, WORKER_REASON_FD = 4 };

// Where a worker sits: torchrun's LOCAL_RANK, RANK, LOCAL_WORLD_SIZE and WORLD_SIZE.
typedef struct {
    int local_rank, rank, local_world, world;
} worker_place;

// Start one worker for `place`. Returns its pid and, in *reason_fd, the non-blocking
// read end of its reason pipe; or -1 with error_set() (EXIT_RESOURCES, EXIT_INTERNAL).
pid_t worker_spawn(const runner_config *cfg, const worker_place *place, int *reason_fd);

// The whole of `runner --worker` (called by main() before the command line is parsed):
// read the handoff, attach to telemetry, run the job, report. Returns the exit code.
int worker_process_main(void);
