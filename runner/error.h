#pragma once
// Error propagation: a failing function records a one-line reason and returns an
// exit code from exitcode.h; callers pass the code up unchanged until main() hands it
// to runner_exit(). The reason lives in a thread-local buffer, so workers and server
// threads never overwrite each other's message.
#include "runner/exitcode.h"

// Record "reason" (printf format) for `code` and return `code`, so a failing path is
// one line: `return error_set(EXIT_BAD_INPUT, "%s:%d: bad tag '%s'", path, line, tag);`
int error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The reason of the last error_set() on this thread ("" when none).
const char *error_message(void);
// The code of the last error_set() on this thread (0 when none).
int error_code(void);
// Forget the last error (after it was handled, e.g. a retried operation).
void error_clear(void);
