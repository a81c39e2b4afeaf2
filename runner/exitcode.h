#pragma once
// The exit-code table of DESIGN §3: the contract with AWS Batch retry strategies and
// Step Functions. This file and exitcode.c are its single source of truth;
// `runner --exit-codes --json` prints it and tools/exitcodes generates docker/ from it.
#include <stdbool.h>

typedef enum {
    EXIT_OK = 0,
    EXIT_INTERNAL = 1,
    EXIT_USAGE = 2,
    EXIT_BAD_INPUT = 3,
    EXIT_OUTPUT = 4,
    EXIT_RESOURCES = 5,
    EXIT_GPU_OOM = 6,
    EXIT_DIVERGED = 7,
    // 9, not 8: Batch's `onExitCode: "8*"` retry rule would match 8 and retry a run
    // that will learn nothing again.
    EXIT_LEARNED_NOTHING = 9,
    EXIT_INTERRUPTED = 80,
    EXIT_GPU_FAULT = 81,
    EXIT_COORDINATION = 82,
    EXIT_PEER_LOST = 83,
    EXIT_REMOTE_IO = 84,
} exit_code;

typedef struct {
    exit_code code;
    const char *name;    // "GPU_OOM"
    const char *meaning; // one sentence for --exit-codes and docs
    bool retry;          // Batch action: RETRY (true) or EXIT
} exit_code_info;

// The whole table, in code order; *count receives its length.
const exit_code_info *exitcode_table(int *count);
// The entry for a code, or NULL when the code is not ours.
const exit_code_info *exitcode_lookup(int code);
// The name for a code ("INTERNAL" for codes that are not ours).
const char *exitcode_name(int code);
// Print the table as aligned text or as a JSON array to stdout.
void exitcode_print(bool json);

// Every exit of the runner process goes through runner_exit(): it runs the hooks
// registered with runner_on_exit() (last registered first, each once), then logs the
// one final JSON line {"event":"exit","code":N,"name":"…","reason":"…"} (labels and
// redaction apply; JSON even on a TTY) and exits with `code`. `reason` may be NULL or
// "" (then error_message() is used when it is set, else the code's meaning).
_Noreturn void runner_exit(int code, const char *reason);
// Register a hook run by runner_exit() before the final line (flush, checkpoint,
// unlink shared memory, stop servers). Up to 64 hooks.
void runner_on_exit(void (*hook)(void));
