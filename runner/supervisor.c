#include "runner/supervisor.h"

#include "runner/cloud/cloud.h"
#include "runner/coord/coord.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/preflight.h"
#include "runner/serve/serve.h"
#include "runner/signals.h"
#include "runner/telemetry.h"
#include "runner/timing.h"
#include "runner/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WORKERS_MAX = 256, REASON_MAX = 512 };

typedef struct {
    pid_t pid;
    int rank, local_rank;
    int reason_fd; // read end: the worker's error message, written before it exits
    bool alive;
    worker_result result;
    char reason[REASON_MAX];
} worker;

static int env_int(const char *name, int fallback) {
    const char *value = getenv(name);
    if (!value || !*value) return fallback;
    char *end;
    long v = strtol(value, &end, 10);
    return *end || v < 0 || v > 1000000 ? fallback : (int)v;
}

cJSON *supervisor_log_labels(int rank) {
    cJSON *labels = cJSON_CreateObject();
    const char *job = getenv("AWS_BATCH_JOB_ID");
    const char *attempt = getenv("AWS_BATCH_JOB_ATTEMPT");
    const char *node = getenv("AWS_BATCH_JOB_NODE_INDEX");
    if (job) cJSON_AddStringToObject(labels, "job_id", job);
    if (attempt) cJSON_AddStringToObject(labels, "attempt", attempt);
    if (node) cJSON_AddStringToObject(labels, "node", node);
    if (rank >= 0) cJSON_AddNumberToObject(labels, "rank", rank);
    // [aws] ECS task metadata (task ARN, cluster, AZ, log group/stream): asked once per
    // process, inherited by the workers.
    cJSON *ecs = cloud_ecs_labels();
    for (const cJSON *item = ecs ? ecs->child : NULL; item; item = item->next)
        if (cJSON_IsString(item)) cJSON_AddStringToObject(labels, item->string, item->valuestring);
    cJSON_Delete(ecs);
    return labels;
}

// [aws] A spot interruption notice stops the job as SIGTERM does: workers checkpoint,
// the output is uploaded, exit 80; the next attempt resumes.
static void on_spot_notice(const char *action, const char *time) {
    char reason[160];
    snprintf(reason, sizeof reason, "spot notice: %s at %s", action, time);
    signals_request_stop(reason);
}

int supervisor_combine(const worker_result *results, int count, int *culprit) {
    bool interrupted = false;
    if (culprit) *culprit = -1;
    // The first abnormal end, in the order the workers ended, is the cause; what the
    // others did after being stopped is its consequence.
    for (int i = 0; i < count; i++) {
        int status = results[i].status;
        if (WIFSIGNALED(status)) {
            if (results[i].killed_by_supervisor) {
                interrupted = true;
                continue;
            }
            if (culprit) *culprit = i;
            return EXIT_PEER_LOST;
        }
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_INTERNAL;
        if (code == EXIT_INTERRUPTED)
            interrupted = true;
        else if (code != EXIT_OK) {
            if (culprit) *culprit = i;
            return code;
        }
    }
    return interrupted ? EXIT_INTERRUPTED : EXIT_OK;
}

static pid_t spawn_worker(const runner_config *cfg, worker *w, int local_world, int world) {
    worker_place place = {w->local_rank, w->rank, local_world, world};
    pid_t pid = worker_spawn(cfg, &place, &w->reason_fd);
    if (pid < 0) return -1;
    w->pid = pid;
    w->alive = true;
    signals_watch_child(pid);
    return pid;
}

static void read_reason(worker *w) {
    if (w->reason_fd < 0) return;
    ssize_t n = read(w->reason_fd, w->reason, sizeof w->reason - 1);
    w->reason[n > 0 ? n : 0] = '\0';
    close(w->reason_fd);
    w->reason_fd = -1;
}

static void signal_alive(worker *workers, int count, int sig) {
    for (int i = 0; i < count; i++)
        if (workers[i].alive) kill(workers[i].pid, sig);
}

// Reap every worker that ended; returns how many are still alive. Only our workers'
// pids are waited for: other children (the embedded redis-server, the CUDA probe) belong
// to the modules that started them and wait for them themselves.
static int reap(worker *workers, int count, worker_result *order, int *order_worker, int *ended) {
    for (int i = 0; i < count; i++) {
        worker *w = &workers[i];
        if (!w->alive) continue;
        int status;
        pid_t pid = waitpid(w->pid, &status, WNOHANG);
        if (pid != w->pid) continue;
        w->alive = false;
        w->result.status = status;
        order_worker[*ended] = i;
        order[(*ended)++] = w->result;
        signals_unwatch_child(pid);
        read_reason(w);
        cJSON *fields = cJSON_CreateObject();
        cJSON_AddNumberToObject(fields, "rank", w->rank);
        cJSON_AddNumberToObject(fields, "pid", pid);
        bool normal = false;
        if (WIFSIGNALED(status)) {
            cJSON_AddNumberToObject(fields, "signal", WTERMSIG(status));
            cJSON_AddStringToObject(fields, "signal_name", strsignal(WTERMSIG(status)));
        } else {
            int code = WEXITSTATUS(status);
            normal = code == EXIT_OK || code == EXIT_INTERRUPTED;
            cJSON_AddNumberToObject(fields, "code", code);
            cJSON_AddStringToObject(fields, "name", exitcode_name(code));
        }
        log_fields(normal ? LOG_INFO : LOG_ERROR, "worker_reaped", fields);
        // Any abnormal end stops the others: in a collective they would wait forever.
        if (!normal && !w->result.killed_by_supervisor) {
            char reason[REASON_MAX + 64];
            snprintf(reason, sizeof reason, "worker rank %d ended abnormally", w->rank);
            signals_request_stop(reason);
        }
    }
    int alive = 0;
    for (int i = 0; i < count; i++)
        alive += workers[i].alive;
    return alive;
}

static int run_workers(const runner_config *cfg, int local_world) {
    worker workers[WORKERS_MAX];
    worker_result order[WORKERS_MAX]; // results in the order the workers ended
    int order_worker[WORKERS_MAX];    // which worker each one is
    memset(workers, 0, sizeof workers);
    int node = env_int("AWS_BATCH_JOB_NODE_INDEX", 0);
    int nodes = env_int("AWS_BATCH_JOB_NUM_NODES", 1);
    if (nodes < 1) nodes = 1;
    int world = nodes * local_world, spawned = 0, ended = 0, code = EXIT_OK;
    for (int i = 0; i < local_world; i++) {
        workers[i].local_rank = i;
        workers[i].rank = node * local_world + i;
        workers[i].reason_fd = -1;
        if (spawn_worker(cfg, &workers[i], local_world, world) < 0) {
            code = error_code();
            signals_request_stop("a worker could not be started");
            break;
        }
        spawned++;
    }
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "workers", spawned);
    cJSON_AddNumberToObject(fields, "world_size", world);
    log_fields(LOG_INFO, "workers_started", fields);

    // Batch sends SIGKILL 30 s after SIGTERM: workers get most of it to checkpoint.
    double grace = env_int("RUNNER_STOP_GRACE_S", 25);
    double stop_deadline = 0;
    bool stop_sent = false, killed = false;
    while (reap(workers, spawned, order, order_worker, &ended) > 0) {
        if (signals_stop_requested() && !stop_sent) {
            stop_sent = true;
            stop_deadline = timing_now_s() + grace;
            const char *why = signals_stop_reason();
            log_info("stop", "stopping %d worker%s: %s", spawned - ended,
                     spawned - ended == 1 ? "" : "s", why ? why : "stop requested");
            signal_alive(workers, spawned, SIGTERM);
        }
        if (signals_take_checkpoint_request()) {
            log_info("checkpoint_request", "forwarding a checkpoint request to the workers");
            signal_alive(workers, spawned, SIGUSR1);
        }
        if (stop_sent && !killed && timing_now_s() > stop_deadline) {
            killed = true;
            log_error("stop_timeout", "workers did not stop within %.0f s: killing them", grace);
            for (int i = 0; i < spawned; i++)
                if (workers[i].alive) workers[i].result.killed_by_supervisor = true;
            signal_alive(workers, spawned, SIGKILL);
        }
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (code != EXIT_OK) return code;

    int culprit = -1;
    code = supervisor_combine(order, ended, &culprit);
    if (culprit >= 0) {
        const worker *w = &workers[order_worker[culprit]];
        int status = order[culprit].status;
        if (WIFSIGNALED(status))
            error_set(code, "worker rank %d died of signal %d (%s); the other workers were stopped",
                      w->rank, WTERMSIG(status), strsignal(WTERMSIG(status)));
        else if (w->reason[0])
            error_set(code, "worker rank %d: %s", w->rank, w->reason);
        else
            error_set(code, "worker rank %d exited with %d (%s)", w->rank, code,
                      exitcode_name(code));
    } else if (code == EXIT_INTERRUPTED) {
        const char *why = signals_stop_reason();
        if (killed)
            error_set(code,
                      "%s: workers killed after %.0f s without stopping; the last "
                      "checkpoint stands",
                      why ? why : "stopped", grace);
        else
            error_set(code, "%s: workers stopped after their checkpoint", why ? why : "stopped");
    } else {
        error_set(code, "job finished");
    }
    return code;
}

int supervisor_run(const runner_config *cfg) {
    cJSON *report = NULL;
    int code = preflight_run(cfg, &report);
    log_fields(code ? LOG_ERROR : LOG_INFO, "preflight", report);
    if (code) return code;
    int workers = preflight_worker_count(cfg, preflight_gpu_count());
    if (workers > WORKERS_MAX)
        return error_set(EXIT_USAGE, "--workers %d: at most %d per node", workers, WORKERS_MAX);

    // The shared segment first: the servers read it, the workers attach to it.
    if ((code = telemetry_supervisor_init(workers))) {
        if (!*error_message()) error_set(code, "telemetry: cannot create the shared segment");
        return code;
    }

    // Start steps set `code` when they fail (error_set() naming why); later steps run
    // only while it is 0; the stop steps always run, in reverse order.
    /* HOOK: serve start */
    if (code == EXIT_OK) code = serve_start(cfg);
    /* HOOK: coord start */
    if (code == EXIT_OK) code = coord_start(cfg);

    if (code == EXIT_OK) cloud_spot_watcher_start(on_spot_notice); // [aws] IMDSv2, every 5 s
    if (code == EXIT_OK) {
        if (!signals_stop_requested())
            code = run_workers(cfg, workers);
        else
            code = error_set(EXIT_INTERRUPTED, "%s before the workers started",
                             signals_stop_reason() ? signals_stop_reason() : "stop");
    }

    cloud_spot_watcher_stop(); // [aws]
    /* HOOK: coord stop */
    // A stop that coordination asked for (a dead node: 83, Redis lost: 82) is the code,
    // and its reason is the reason also when a worker ended with that very code (its
    // wait for Redis, or its collective, cut short by the stop).
    int hint = coord_exit_code_hint();
    if (hint > EXIT_INTERRUPTED && (code == EXIT_INTERRUPTED || code == hint))
        code = error_set(hint, "%s", signals_stop_reason() ? signals_stop_reason() : "coordination");
    coord_stop();
    /* HOOK: serve stop */
    serve_stop();
    telemetry_shutdown();
    return code;
}
