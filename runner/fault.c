#include "runner/fault.h"

#include "runner/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { FAULT_NONE, FAULT_CRASH, FAULT_EXIT } fault_kind;

static int fault_rank = -1;
static int fault_parsed;
static fault_kind kind = FAULT_NONE;
static int target_rank, exit_code_wanted;
static long target_step;
static char target_point[64];

void fault_set_rank(int rank) {
    fault_rank = rank;
}

static void parse_spec(void) {
    fault_parsed = 1;
    const char *spec = getenv("RUNNER_FAULT_INJECT");
    if (!spec || !*spec) return;
    char what[32] = {0};
    int consumed = 0;
    if (sscanf(spec, "%31[^:]:%d:%ld%n", what, &target_rank, &target_step, &consumed) != 3) {
        log_warn("fault_inject", "ignoring RUNNER_FAULT_INJECT '%s' (want KIND:RANK:STEP[:POINT])",
                 spec);
        return;
    }
    if (spec[consumed] == ':') snprintf(target_point, sizeof target_point, "%s", spec + consumed + 1);
    if (strcmp(what, "worker_crash") == 0) {
        kind = FAULT_CRASH;
    } else if (strncmp(what, "worker_exit=", 12) == 0) {
        kind = FAULT_EXIT;
        exit_code_wanted = atoi(what + 12);
    } else {
        log_warn("fault_inject", "ignoring unknown fault kind '%s'", what);
    }
}

void fault_maybe_inject(const char *point, long step) {
    if (!fault_parsed) parse_spec();
    if (kind == FAULT_NONE || fault_rank < 0 || fault_rank != target_rank) return;
    if (step < target_step) return;
    if (target_point[0] && (!point || strcmp(point, target_point) != 0)) return;
    log_warn("fault_inject", "injected %s at %s step %ld on rank %d",
             kind == FAULT_CRASH ? "worker_crash" : "worker_exit", point ? point : "?", step,
             fault_rank);
    if (kind == FAULT_CRASH) {
        kill(getpid(), SIGKILL);
        pause();
    }
    fflush(NULL);
    _exit(exit_code_wanted);
}
