// runner: the container command of the training image (DESIGN §1-§4).
// Order matters: signals first (PID 1 must never ignore SIGTERM), then the command
// line, logging, and either an action (--check, --exit-codes, --help, --version) or
// the supervisor. Every path ends in runner_exit(), which logs the final exit line.
#include "runner/cli.h"
#include "runner/cloud/cloud.h"
#include "runner/cloud/hub.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/preflight.h"
#include "runner/signals.h"
#include "runner/supervisor.h"
#include "runner/worker.h"
#include "version.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

// Values of variables that hold secrets never reach a log line: *PASSWORD*, *TOKEN*,
// *SECRET*, *_KEY, *CREDENTIALS* (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
// REDIS_PASSWORD, ...). Identifiers (*_ID, e.g. AWS_ACCESS_KEY_ID) are not secret.
static void redact_environment(void) {
    static const char *const MARKERS[] = {"PASSWORD", "PASSWD",     "TOKEN", "SECRET",
                                          "_KEY",     "CREDENTIAL", "AUTH"};
    for (char **env = environ; env && *env; env++) {
        const char *eq = strchr(*env, '=');
        if (!eq) continue;
        size_t name_len = (size_t)(eq - *env);
        char name[256];
        if (name_len >= sizeof name) continue;
        memcpy(name, *env, name_len);
        name[name_len] = '\0';
        if (name_len > 3 && strcmp(name + name_len - 3, "_ID") == 0) continue;
        for (size_t i = 0; i < sizeof MARKERS / sizeof MARKERS[0]; i++)
            if (strstr(name, MARKERS[i])) {
                log_redact(eq + 1);
                break;
            }
    }
}

static void redact_config(const runner_config *cfg) {
    char password[512];
    config_redis_password(cfg->redis, password, sizeof password);
    log_redact(password);
}

// libgomp reads OMP_WAIT_POLICY once, in its load-time constructor, so setting it from
// main() is too late for this process and the workers it starts (they inherit the
// environment). Its default lets idle threads spin between the per-op parallel regions
// of the CPU backend, and on a shared or busy machine the spinning threads starve the
// working ones (measured: the default job took 60 s instead of 7 s). When the caller has not chosen a policy,
// choose "passive" and exec ourselves once so the runtime starts with it; PID 1 and
// open descriptors survive exec. If exec fails we carry on with the default.
static void omp_policy_reexec(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    // The binary's real path, not /proc/self/exe: exec names the process after the
    // file it ran, and `ps` should keep saying "runner".
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv(self, argv);
}

// --help and --version are answers, not job runs: their text alone on stdout and no exit
// line, as curl and torchrun do, so `runner --help 2>&1 | less` reads as a manual.
// A stdout that cannot take the text (`runner --help > /dev/full`) exits OUTPUT.
static _Noreturn void print_text_and_exit(void (*print)(FILE *out)) {
    print(stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "runner: cannot write to standard output: %s\n", strerror(errno));
        exit(EXIT_OUTPUT);
    }
    exit(EXIT_OK);
}

int main(int argc, char **argv) {
    omp_policy_reexec(argv);
    // A worker the supervisor started (runner/worker.h): its settings come from the
    // handoff, not from the command line, and it ends with its own "worker_exit" line.
    if (argc == 2 && strcmp(argv[1], WORKER_FLAG) == 0) {
        redact_environment();
        exit(worker_process_main());
    }
    if (argc == 2 && strcmp(argv[1], PREFLIGHT_GPU_PROBE_FLAG) == 0) exit(preflight_gpu_probe_main());
    preflight_set_probe_program("/proc/self/exe");
    signals_install();
    redact_environment();

    runner_config cfg;
    cli_action action;
    cJSON *warnings = cJSON_CreateArray();
    // Lines logged while parsing (fetching an s3:// --config) must not land in the
    // stdout of --check --json: stderr until the action is known.
    log_set_fd(STDERR_FILENO);
    int rc = cli_parse(argc, argv, &cfg, &action, warnings);
    if (rc) {
        log_set_fd(STDOUT_FILENO);
        // One line for the person at the terminal, then the exit line.
        char *line = log_redacted(error_message());
        fprintf(stderr, "runner: %s\n", line ? line : error_message());
        free(line);
        cJSON_Delete(warnings);
        cloud_sfn_finish(rc, error_message(), NULL); // [aws] a waiting Step Functions task learns it
        runner_exit(rc, error_message());
    }
    redact_config(&cfg);
    // Reports and tables own stdout; their log lines (and exit line) go to stderr.
    if (action == CLI_RUN || action == CLI_PREFETCH) log_set_fd(STDOUT_FILENO);
    log_init((log_format)cfg.log_format, cfg.verbose ? LOG_DEBUG : LOG_INFO);
    log_set_labels(supervisor_log_labels(-1));
    for (const cJSON *w = warnings->child; w; w = w->next)
        log_warn("config_warning", "%s", w->valuestring);
    cJSON_Delete(warnings);

    switch (action) {
    case CLI_HELP:
        print_text_and_exit(cli_print_help);
    case CLI_VERSION:
        print_text_and_exit(cli_print_version);
    case CLI_EXIT_CODES:
        exitcode_print(cfg.json);
        runner_exit(EXIT_OK, "exit codes printed");
    case CLI_CHECK: {
        cJSON *report = NULL;
        rc = preflight_run(&cfg, &report);
        preflight_print(report, cfg.json || !isatty(STDOUT_FILENO));
        cJSON_Delete(report);
        cloud_sfn_finish(rc, rc ? error_message() : "preflight passed", NULL); // [aws]
        runner_exit(rc, rc ? error_message() : "preflight passed");
    }
    case CLI_PREFETCH: { // fill the Hugging Face cache (image builds, air-gapped hosts)
        hub_ref ref;
        char dir[PATH_MAX];
        rc = hub_ref_parse(cfg.prefetch, cfg.revision, &ref);
        if (rc == 0) rc = hub_fetch_model(&ref, cfg.hf_token_secret, dir, sizeof dir);
        runner_exit(rc, rc ? error_message() : "model cached");
    }
    case CLI_RUN:
        break;
    }

    // [aws] Locations from --secret-id (explicit settings win), then Step Functions
    // heartbeats (SFN_TASK_TOKEN) for the life of the job.
    if ((rc = cloud_apply_secret(&cfg))) {
        cloud_sfn_finish(rc, error_message(), NULL);
        runner_exit(rc, error_message());
    }
    cloud_sfn_start();

    cJSON *fields = cJSON_CreateObject();
    cJSON_AddStringToObject(fields, "version", RUNNER_VERSION);
    cJSON_AddStringToObject(fields, "commit", RUNNER_GIT_COMMIT);
    cJSON_AddStringToObject(fields, "architecture", cfg.architecture);
    cJSON_AddStringToObject(fields, "mode", config_mode_name(cfg.mode));
    cJSON_AddNumberToObject(fields, "pid", getpid());
    cJSON_AddItemToObject(fields, "config", config_to_json(&cfg));
    log_fields(LOG_INFO, "start", fields);

    error_clear();
    rc = supervisor_run(&cfg);
    // [aws] SendTaskSuccess (artefact URIs, metrics) or SendTaskFailure (exit name, reason).
    const char *reason = error_code() == rc ? error_message() : NULL;
    cJSON *summary = rc == EXIT_OK && cloud_sfn_wanted() ? cloud_job_summary(&cfg) : NULL;
    cloud_sfn_finish(rc, reason && *reason ? reason : exitcode_name(rc), summary);
    cJSON_Delete(summary);
    runner_exit(rc, reason);
}
