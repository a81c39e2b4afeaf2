// Job identity, readiness, ETA and process statistics shared by the servers.
#include "runner/coord/coord.h"
#include "runner/serve/serve.h"
#include "runner/serve/serve_internal.h"
#include "runner/signals.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_mutex_t lock;
    serve_identity id;
    bool job_set, attempt_set, node_set;
} ident = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *mode_name(run_mode mode) {
    switch (mode) {
    case MODE_PIPELINE: return "pipeline";
    case MODE_TRAIN: return "train";
    case MODE_PREDICT: return "predict";
    case MODE_EMBED: return "embed";
    case MODE_PRETRAIN: return "pretrain";
    case MODE_CHECK: return "check";
    }
    return "unknown";
}

double serve_wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void serve_identity_configure(const runner_config *cfg) {
    pthread_mutex_lock(&ident.lock);
    snprintf(ident.id.architecture, sizeof ident.id.architecture, "%s", cfg->architecture);
    snprintf(ident.id.mode, sizeof ident.id.mode, "%s", mode_name(cfg->mode));
    ident.id.workers = cfg->workers;
    pthread_mutex_unlock(&ident.lock);
}

void serve_set_job(const char *job_id, int attempt, const char *node) {
    pthread_mutex_lock(&ident.lock);
    if (job_id) {
        snprintf(ident.id.job_id, sizeof ident.id.job_id, "%s", job_id);
        ident.job_set = true;
    }
    if (attempt > 0) {
        ident.id.attempt = attempt;
        ident.attempt_set = true;
    }
    if (node) {
        snprintf(ident.id.node, sizeof ident.id.node, "%s", node);
        ident.node_set = true;
    }
    pthread_mutex_unlock(&ident.lock);
}

void serve_identity_get(serve_identity *out) {
    pthread_mutex_lock(&ident.lock);
    *out = ident.id;
    bool job_set = ident.job_set, attempt_set = ident.attempt_set, node_set = ident.node_set;
    pthread_mutex_unlock(&ident.lock);
    coord_snapshot *snap = calloc(1, sizeof *snap); // a few KB: off the handler's stack
    if (snap) coord_snapshot_get(snap);
    const coord_node *self = snap ? &snap->self : NULL;
    const char *env;
    if (!job_set) {
        if (self && self->job_id[0])
            snprintf(out->job_id, sizeof out->job_id, "%s", self->job_id);
        else if ((env = getenv("AWS_BATCH_JOB_ID")) && *env)
            snprintf(out->job_id, sizeof out->job_id, "%.*s", (int)strcspn(env, "#"), env);
        else
            snprintf(out->job_id, sizeof out->job_id, "local");
    }
    if (!attempt_set) {
        if (self && self->job_id[0] && self->attempt > 0)
            out->attempt = self->attempt;
        else if ((env = getenv("AWS_BATCH_JOB_ATTEMPT")) && atoi(env) > 0)
            out->attempt = atoi(env);
        else
            out->attempt = 1;
    }
    if (!node_set) {
        if (self && self->job_id[0])
            snprintf(out->node, sizeof out->node, "%d", self->node_index);
        else if ((env = getenv("AWS_BATCH_JOB_NODE_INDEX")) && *env)
            snprintf(out->node, sizeof out->node, "%s", env);
        else
            snprintf(out->node, sizeof out->node, "0");
    }
    free(snap);
    if (gethostname(out->hostname, sizeof out->hostname - 1) != 0)
        snprintf(out->hostname, sizeof out->hostname, "localhost");
    out->hostname[sizeof out->hostname - 1] = '\0';
}

bool serve_ready(const store_state *st, char *why, size_t why_len) {
    static const char *running[] = {"split", "search", "prime", "train", "evaluate",
                                    "export", "predict", "embed", "pretrain"};
    // Once a stop is asked for (SIGTERM, the control API, a spot notice, a lost peer)
    // the workers still report their phase while they checkpoint; a load balancer or
    // orchestrator must see the job as going away from that moment.
    if (signals_stop_requested()) {
        const char *reason = signals_stop_reason();
        snprintf(why, why_len, "stopping%s%s", reason ? ": " : "", reason ? reason : "");
        return false;
    }
    for (size_t i = 0; i < sizeof running / sizeof running[0]; i++)
        if (strcmp(st->phase, running[i]) == 0) return true;
    snprintf(why, why_len, "%s", st->phase[0] ? st->phase : "starting");
    return false;
}

double serve_eta_seconds(const store_state *st) {
    if (st->total <= 0 || st->progress_rate <= 0 || st->done > st->total) return -1;
    return (double)(st->total - st->done) / st->progress_rate;
}

bool serve_process_stats_read(int pid, serve_process_stats *out) {
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[1024];
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok) return false;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    char *p = strrchr(line, ')');
    if (!p) return false;
    unsigned long utime, stime;
    unsigned long long starttime;
    long rss_pages;
    // Fields 3..24: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%llu %*u %ld",
               &utime, &stime, &starttime, &rss_pages) != 4)
        return false;
    double ticks = (double)sysconf(_SC_CLK_TCK);
    double uptime_sys = 0;
    f = fopen("/proc/uptime", "r");
    if (f) {
        if (fscanf(f, "%lf", &uptime_sys) != 1) uptime_sys = 0;
        fclose(f);
    }
    double now = serve_wall_now();
    double since_boot = (double)starttime / ticks;
    out->cpu_seconds = (double)(utime + stime) / ticks;
    out->rss_bytes = (double)rss_pages * (double)sysconf(_SC_PAGESIZE);
    out->uptime_seconds = uptime_sys > since_boot ? uptime_sys - since_boot : 0;
    out->start_time = now - out->uptime_seconds;
    return true;
}
