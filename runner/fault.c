#include "runner/fault.h"

#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/signals.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum { FAULT_CRASH, FAULT_EXIT, FAULT_HANG, FAULT_STUCK } fault_kind;

enum { FAULT_SPECS_MAX = 8 };

typedef struct {
    fault_kind kind;
    int rank, exit_code;
    long step;
    char point[64];
} fault_spec;

static int fault_rank = -1;
static bool parsed;
static fault_spec specs[FAULT_SPECS_MAX];
static int spec_count;

void fault_set_rank(int rank) {
    fault_rank = rank;
}

static void parse_one(const char *text) {
    fault_spec spec = {0};
    char kind[32] = {0};
    int consumed = 0;
    if (sscanf(text, "%31[^:]:%d:%ld%n", kind, &spec.rank, &spec.step, &consumed) != 3) {
        log_warn("fault_inject",
                 "ignoring RUNNER_FAULT_INJECT spec '%s' (want KIND:RANK:STEP[:POINT])", text);
        return;
    }
    if (text[consumed] == ':') snprintf(spec.point, sizeof spec.point, "%s", text + consumed + 1);
    if (strcmp(kind, "worker_crash") == 0)
        spec.kind = FAULT_CRASH;
    else if (strcmp(kind, "worker_hang") == 0)
        spec.kind = FAULT_HANG;
    else if (strcmp(kind, "worker_stuck") == 0)
        spec.kind = FAULT_STUCK;
    else if (strncmp(kind, "worker_exit=", 12) == 0) {
        spec.kind = FAULT_EXIT;
        spec.exit_code = atoi(kind + 12);
    } else {
        log_warn("fault_inject", "ignoring unknown fault kind '%s'", kind);
        return;
    }
    if (spec_count < FAULT_SPECS_MAX) specs[spec_count++] = spec;
}

static void parse_specs(void) {
    parsed = true;
    const char *env = getenv("RUNNER_FAULT_INJECT");
    if (!env || !*env) return;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", env);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        parse_one(tok);
}

static void hang_until_stopped(void) {
    while (!signals_stop_requested()) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    log_info("fault_inject", "hung worker %d stopped: %s", fault_rank,
             signals_stop_reason() ? signals_stop_reason() : "stop");
    fflush(NULL);
    _exit(EXIT_INTERRUPTED);
}

void fault_maybe_inject(const char *point, long step) {
    if (!parsed) parse_specs();
    for (int i = 0; i < spec_count; i++) {
        const fault_spec *spec = &specs[i];
        if (fault_rank < 0 || spec->rank != fault_rank || step < spec->step) continue;
        if (spec->point[0] && (!point || strcmp(point, spec->point) != 0)) continue;
        static const char *const NAMES[] = {"worker_crash", "worker_exit", "worker_hang",
                                            "worker_stuck"};
        log_warn("fault_inject", "injected %s at %s step %ld on rank %d", NAMES[spec->kind],
                 point ? point : "?", step, fault_rank);
        if (spec->kind == FAULT_HANG) hang_until_stopped();
        while (spec->kind == FAULT_STUCK)
            pause(); // only a signal's default action ends it
        if (spec->kind == FAULT_CRASH) {
            kill(getpid(), SIGKILL);
            pause();
        }
        fflush(NULL);
        _exit(spec->exit_code);
    }
}
