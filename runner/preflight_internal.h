#pragma once
// Shared by the machine checks: preflight.c (shm, cgroups, disk, memlock, Batch, the
// report) and preflight_gpu.c (the GPU probe). Not for use outside them.
#include "runner/config.h"

#include <cjson/cJSON.h>

typedef struct {
    cJSON *report, *problems, *warnings;
    int code;           // first failing check's code
    char message[1400]; // its message
} preflight_checks;

// A report section {"status": "ok"} named `name`.
cJSON *preflight_section(cJSON *report, const char *name);
// Set a section's status ("ok", "warn", "fail", "skipped") and its one-line summary.
void preflight_set_status(cJSON *s, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// A problem: the section fails, and the first problem's code and message are the run's.
void preflight_fail(preflight_checks *c, cJSON *s, int code, const char *message);
// A warning: the section is "warn" unless it already failed.
void preflight_warn(preflight_checks *c, cJSON *s, const char *message);

// The GPU section; *visible_out = the usable GPUs.
void preflight_check_gpus(preflight_checks *c, const runner_config *cfg, int *visible_out);
