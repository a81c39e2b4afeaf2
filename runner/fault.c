// Test-only fault injection; see fault.h.
#include "runner/fault.h"

#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/model/safetensors.h"
#include "runner/signals.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum {
    FAULT_CRASH,
    FAULT_EXIT,
    FAULT_HANG,
    FAULT_STUCK,
    FAULT_STOP_SIGNAL,
    FAULT_KILL_ALL,
    FAULT_PAUSE
} fault_kind;

static const char *const KIND_NAMES[] = {"worker_crash", "worker_exit", "worker_hang",
                                         "worker_stuck", "stop_signal", "kill_all",
                                         "worker_pause"};

enum { FAULT_SPECS_MAX = 8, FAULT_POINTS_MAX = 32 };

typedef struct {
    fault_kind kind;
    int rank, exit_code;
    long step;
    bool fired; // stop_signal and worker_pause go on after firing: once only
    char point[64];
    char detail[192]; // POINT@TEXT: only calls whose detail holds TEXT, counted apart
    long matched;     // calls that matched it so far
} fault_spec;

static int fault_rank = -1;
static bool parsed, tracing;
static fault_spec specs[FAULT_SPECS_MAX];
static int spec_count;
// How often this process reached each fault_point() name. A worker's writes come from
// its job thread, but a lock costs nothing next to a file write.
static pthread_mutex_t points_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const char *name; // the caller's string literal
    long count;
} points[FAULT_POINTS_MAX];

static void safetensors_half_written(const char *path) {
    fault_point("file_write", path);
}

void fault_set_rank(int rank) {
    fault_rank = rank;
    // The model's writer knows nothing of the runner: it is handed the point.
    if (rank >= 0) safetensors_set_write_hook(safetensors_half_written);
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
    if (text[consumed] == ':') {
        const char *point = text + consumed + 1, *at = strchr(point, '@');
        snprintf(spec.point, sizeof spec.point, "%.*s",
                 (int)(at ? (size_t)(at - point) : strlen(point)), point);
        if (at) snprintf(spec.detail, sizeof spec.detail, "%s", at + 1);
    }
    if (strcmp(kind, "worker_crash") == 0)
        spec.kind = FAULT_CRASH;
    else if (strcmp(kind, "worker_hang") == 0)
        spec.kind = FAULT_HANG;
    else if (strcmp(kind, "worker_stuck") == 0)
        spec.kind = FAULT_STUCK;
    else if (strcmp(kind, "stop_signal") == 0)
        spec.kind = FAULT_STOP_SIGNAL;
    else if (strcmp(kind, "kill_all") == 0)
        spec.kind = FAULT_KILL_ALL;
    else if (strcmp(kind, "worker_pause") == 0)
        spec.kind = FAULT_PAUSE;
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
    const char *trace = getenv("RUNNER_FAULT_TRACE");
    tracing = trace && strcmp(trace, "1") == 0;
    const char *env = getenv("RUNNER_FAULT_INJECT");
    if (!env || !*env) return;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", env);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        parse_one(tok);
}

static void sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&pause, NULL);
}

static void hang_until_stopped(void) {
    while (!signals_stop_requested())
        sleep_ms(10);
    log_info("fault_inject", "hung worker %d stopped: %s", fault_rank,
             signals_stop_reason() ? signals_stop_reason() : "stop");
    fflush(NULL);
    _exit(EXIT_INTERRUPTED);
}

// SIGTERM to PID 1 of the container (the supervisor, this worker's parent), then wait
// for the stop it forwards, so that the stop is pending from this point on whatever the
// scheduler does; the job honours it at its next stop check.
static void send_stop_signal(void) {
    kill(getppid(), SIGTERM);
    for (int waited = 0; waited < 10000 && !signals_stop_requested(); waited += 5)
        sleep_ms(5);
    if (!signals_stop_requested())
        log_warn("fault_inject", "the supervisor did not forward the stop within 10 s");
}

static void inject(const char *point, long step, const char *detail) {
    for (int i = 0; i < spec_count; i++) {
        fault_spec *spec = &specs[i];
        if (fault_rank < 0 || spec->rank != fault_rank || spec->fired) continue;
        if (spec->point[0] && (!point || strcmp(point, spec->point) != 0)) continue;
        if (spec->detail[0]) { // the n-th call whose detail holds the text
            if (!detail || !strstr(detail, spec->detail) || spec->matched++ < spec->step)
                continue;
        } else if (step < spec->step) {
            continue;
        }
        log_warn("fault_inject", "injected %s at %s step %ld on rank %d%s%s%s",
                 KIND_NAMES[spec->kind], point ? point : "?", step, fault_rank,
                 detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
        if (spec->kind == FAULT_STOP_SIGNAL) {
            spec->fired = true;
            send_stop_signal();
            continue;
        }
        if (spec->kind == FAULT_PAUSE) {
            // Stopped until a SIGCONT: the test changes the world meanwhile (fills the
            // disk), knowing exactly where the job is.
            spec->fired = true;
            raise(SIGSTOP);
            continue;
        }
        if (spec->kind == FAULT_HANG) hang_until_stopped();
        while (spec->kind == FAULT_STUCK)
            pause(); // only a signal's default action ends it
        if (spec->kind == FAULT_KILL_ALL) {
            // Both at once, as a container dies: nothing of either runs after this
            // (stdio buffers included; log lines were written whole already).
            kill(getppid(), SIGKILL);
            kill(getpid(), SIGKILL);
            pause();
        }
        if (spec->kind == FAULT_CRASH) {
            kill(getpid(), SIGKILL);
            pause();
        }
        fflush(NULL);
        _exit(spec->exit_code);
    }
}

void fault_maybe_inject(const char *point, long step) {
    if (!parsed) parse_specs();
    inject(point, step, NULL);
}

void fault_point(const char *point, const char *detail) {
    if (!parsed) parse_specs();
    // Outside a worker, or with nothing to inject or trace, a point costs one test.
    if (fault_rank < 0 || (spec_count == 0 && !tracing)) return;
    long n = -1;
    pthread_mutex_lock(&points_lock);
    for (int i = 0; i < FAULT_POINTS_MAX && n < 0; i++) {
        if (!points[i].name) points[i].name = point;
        if (strcmp(points[i].name, point) == 0) n = points[i].count++;
    }
    pthread_mutex_unlock(&points_lock);
    if (n < 0) return; // more names than slots: a test-only limit, raise it
    if (tracing) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "point", point);
        cJSON_AddNumberToObject(f, "n", (double)n);
        if (detail) cJSON_AddStringToObject(f, "detail", detail);
        log_fields(LOG_INFO, "fault_point", f);
    }
    inject(point, n, detail);
}
