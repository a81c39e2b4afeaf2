// JSON bodies of the /api/v1/ routes (port 6007, and the dashboard's own origin).
#include "runner/coord/coord.h"
#include "runner/preflight.h"
#include "runner/serve/nvml.h"
#include "runner/serve/serve.h"
#include "runner/serve/serve_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// cJSON numbers cannot hold NaN/Inf (they would print as null); say so explicitly.
static void add_number(cJSON *obj, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(obj, key, v);
    else
        cJSON_AddNullToObject(obj, key);
}

cJSON *api_gpus(void) {
    nvml_gpu gpus[NVML_MAX_GPUS];
    int n = nvml_read(gpus, NVML_MAX_GPUS);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "index", gpus[i].index);
        cJSON_AddStringToObject(g, "uuid", gpus[i].uuid);
        cJSON_AddStringToObject(g, "name", gpus[i].name);
        if (gpus[i].has_util) cJSON_AddNumberToObject(g, "util_percent", gpus[i].util_percent);
        if (gpus[i].has_mem_util)
            cJSON_AddNumberToObject(g, "mem_util_percent", gpus[i].mem_util_percent);
        if (gpus[i].has_memory) {
            cJSON_AddNumberToObject(g, "fb_used_mib", gpus[i].fb_used_mib);
            cJSON_AddNumberToObject(g, "fb_free_mib", gpus[i].fb_free_mib);
        }
        if (gpus[i].has_temp) cJSON_AddNumberToObject(g, "temp_c", gpus[i].temp_c);
        if (gpus[i].has_power) cJSON_AddNumberToObject(g, "power_w", gpus[i].power_w);
        if (gpus[i].has_sm_clock) cJSON_AddNumberToObject(g, "sm_clock_mhz", gpus[i].sm_clock_mhz);
        cJSON_AddItemToArray(arr, g);
    }
    return arr;
}

cJSON *api_status(void) {
    serve_identity id;
    serve_identity_get(&id);
    store_state st;
    telemetry_store_state(&st);
    double now = serve_wall_now();
    cJSON *root = cJSON_CreateObject();
    cJSON *job = cJSON_AddObjectToObject(root, "job");
    cJSON_AddStringToObject(job, "id", id.job_id);
    cJSON_AddNumberToObject(job, "attempt", id.attempt);
    cJSON_AddStringToObject(job, "architecture", id.architecture);
    cJSON_AddStringToObject(job, "mode", id.mode);
    cJSON_AddStringToObject(job, "node", id.node);
    cJSON_AddStringToObject(job, "hostname", id.hostname);
    cJSON_AddStringToObject(root, "phase", st.phase[0] ? st.phase : "starting");
    char why[64] = "";
    bool ready = serve_ready(&st, why, sizeof why);
    cJSON_AddBoolToObject(root, "ready", ready);
    // Elapsed from the process start (preflight included), as a person counts it.
    serve_process_stats ps;
    bool have_ps = serve_process_stats_read(0, &ps);
    double started = have_ps ? ps.start_time : st.started;
    cJSON_AddNumberToObject(root, "time", now);
    cJSON_AddNumberToObject(root, "started", started);
    cJSON_AddNumberToObject(root, "elapsed_seconds", now - started);
    if (st.phase_since > 0) cJSON_AddNumberToObject(root, "phase_since", st.phase_since);
    cJSON *progress = cJSON_AddObjectToObject(root, "progress");
    cJSON_AddNumberToObject(progress, "done", (double)st.done);
    cJSON_AddNumberToObject(progress, "total", (double)st.total);
    if (st.progress_rate > 0) cJSON_AddNumberToObject(progress, "steps_per_second", st.progress_rate);
    double eta = serve_eta_seconds(&st);
    if (eta >= 0) cJSON_AddNumberToObject(progress, "eta_seconds", eta);
    cJSON *tel = cJSON_AddObjectToObject(root, "telemetry");
    cJSON_AddNumberToObject(tel, "scalars", (double)st.scalars);
    cJSON_AddNumberToObject(tel, "dropped", (double)st.dropped);
    cJSON_AddNumberToObject(tel, "version", (double)st.version);

    // Latest value of every (run, tag).
    store_series_info *series = malloc(STORE_MAX_SERIES * sizeof *series);
    cJSON *latest = cJSON_AddObjectToObject(root, "latest");
    if (series) {
        size_t n = telemetry_store_series(series, STORE_MAX_SERIES);
        if (n > STORE_MAX_SERIES) n = STORE_MAX_SERIES;
        for (size_t i = 0; i < n; i++) {
            cJSON *run = cJSON_GetObjectItemCaseSensitive(latest, series[i].run);
            if (!run) run = cJSON_AddObjectToObject(latest, series[i].run);
            cJSON *p = cJSON_AddObjectToObject(run, series[i].tag);
            cJSON_AddNumberToObject(p, "step", (double)series[i].latest.step);
            add_number(p, "value", series[i].latest.value);
            cJSON_AddNumberToObject(p, "time", series[i].latest.wall_time);
        }
        free(series);
    }
    if (have_ps) {
        cJSON *proc = cJSON_AddObjectToObject(root, "process");
        cJSON_AddNumberToObject(proc, "rss_bytes", ps.rss_bytes);
        cJSON_AddNumberToObject(proc, "cpu_seconds", ps.cpu_seconds);
        cJSON_AddNumberToObject(proc, "uptime_seconds", ps.uptime_seconds);
    }
    cJSON_AddItemToObject(root, "gpus", api_gpus());
    return root;
}

cJSON *api_history(const char *run, int64_t since_step, uint64_t after_seq, size_t max_points,
                   uint64_t *last_seq) {
    uint64_t seq = 0;
    cJSON *series = telemetry_store_history(run, since_step, after_seq, max_points, &seq);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "since", (double)since_step);
    cJSON_AddNumberToObject(root, "cursor", (double)seq);
    cJSON_AddItemToObject(root, "series", series);
    if (last_seq) *last_seq = seq;
    return root;
}

// A multi-node job's cluster view, from coordination's snapshot: every node of the
// rendezvous with its state as this node sees it.
static cJSON *cluster_nodes(const coord_snapshot *snap) {
    static const char *const states[] = {"alive", "dead", "left"};
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < snap->n_nodes; i++) {
        const coord_peer_view *p = &snap->nodes[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "node", p->node_index);
        cJSON_AddNumberToObject(o, "node_index", p->node_index);
        cJSON_AddStringToObject(o, "state", states[p->state]);
        cJSON_AddStringToObject(o, "address", p->address);
        cJSON_AddBoolToObject(o, "main", p->main);
        cJSON_AddBoolToObject(o, "self", p->self);
        cJSON_AddBoolToObject(o, "alive", p->state == COORD_PEER_ALIVE);
        cJSON_AddBoolToObject(o, "left", p->state == COORD_PEER_LEFT);
        cJSON_AddNumberToObject(o, "last_heartbeat_ms_ago", (double)p->last_heartbeat_ms_ago);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

cJSON *api_nodes(void) {
    coord_snapshot *snap = malloc(sizeof *snap); // a few KB: off the handler's stack
    cJSON *root = cJSON_CreateObject();
    if (snap) coord_snapshot_get(snap);
    if (snap && snap->n_nodes > 0) {
        cJSON_AddItemToObject(root, "nodes", cluster_nodes(snap));
        free(snap);
        return root;
    }
    free(snap);
    // Without coordination's view, this node alone: its identity, workers and GPUs.
    serve_identity id;
    serve_identity_get(&id);
    cJSON *nodes = cJSON_AddArrayToObject(root, "nodes");
    cJSON *self = cJSON_CreateObject();
    cJSON_AddStringToObject(self, "node", id.node);
    cJSON_AddStringToObject(self, "hostname", id.hostname);
    cJSON_AddStringToObject(self, "state", "alive");
    cJSON_AddBoolToObject(self, "self", true);
    int pids[256];
    int n = telemetry_worker_pids(pids, 256);
    cJSON *workers = cJSON_AddArrayToObject(self, "workers");
    for (int r = 0; r < n && r < 256; r++) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddNumberToObject(w, "rank", r);
        if (pids[r] > 0) cJSON_AddNumberToObject(w, "pid", pids[r]);
        serve_process_stats ps;
        if (pids[r] > 0 && serve_process_stats_read(pids[r], &ps)) {
            cJSON_AddNumberToObject(w, "rss_bytes", ps.rss_bytes);
            cJSON_AddNumberToObject(w, "cpu_seconds", ps.cpu_seconds);
        }
        cJSON_AddItemToArray(workers, w);
    }
    cJSON_AddItemToObject(self, "gpus", api_gpus());
    cJSON_AddItemToArray(nodes, self);
    return root;
}

cJSON *api_trials(void) {
    store_series_info *series = malloc(STORE_MAX_SERIES * sizeof *series);
    cJSON *root = cJSON_CreateObject();
    cJSON *trials = cJSON_AddArrayToObject(root, "trials");
    if (!series) return root;
    size_t n = telemetry_store_series(series, STORE_MAX_SERIES);
    if (n > STORE_MAX_SERIES) n = STORE_MAX_SERIES;
    size_t prefix = strlen(RUN_TRIAL_PREFIX);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(series[i].run, RUN_TRIAL_PREFIX, prefix) != 0) continue;
        cJSON *trial = NULL;
        cJSON *t;
        cJSON_ArrayForEach(t, trials) {
            cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "run");
            if (cJSON_IsString(name) && strcmp(name->valuestring, series[i].run) == 0) trial = t;
        }
        if (!trial) {
            trial = cJSON_CreateObject();
            cJSON_AddStringToObject(trial, "run", series[i].run);
            char *end;
            long id = strtol(series[i].run + prefix, &end, 10);
            if (end != series[i].run + prefix && *end == '\0') cJSON_AddNumberToObject(trial, "id", (double)id);
            cJSON_AddNumberToObject(trial, "step", 0);
            cJSON_AddNumberToObject(trial, "updated", 0);
            cJSON_AddObjectToObject(trial, "latest");
            cJSON_AddItemToArray(trials, trial);
        }
        cJSON *step = cJSON_GetObjectItemCaseSensitive(trial, "step");
        if ((double)series[i].latest.step > step->valuedouble)
            cJSON_SetNumberValue(step, (double)series[i].latest.step);
        cJSON *updated = cJSON_GetObjectItemCaseSensitive(trial, "updated");
        if (series[i].latest.wall_time > updated->valuedouble)
            cJSON_SetNumberValue(updated, series[i].latest.wall_time);
        add_number(cJSON_GetObjectItemCaseSensitive(trial, "latest"), series[i].tag,
                   series[i].latest.value);
    }
    free(series);
    return root;
}

cJSON *api_preflight(void) {
    cJSON *report = preflight_last_report();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddBoolToObject(root, "available", report != NULL);
    if (report)
        cJSON_AddItemToObject(root, "report", report);
    else
        cJSON_AddNullToObject(root, "report");
    return root;
}

cJSON *api_logs(unsigned long since, size_t max) {
    if (max > STORE_LOG_LINES) max = STORE_LOG_LINES;
    if (max == 0) max = 1;
    telemetry_store_pull_local_logs();
    char **lines = calloc(max, sizeof *lines);
    uint64_t *seqs = calloc(max, sizeof *seqs);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "lines");
    uint64_t next = since;
    size_t n = lines && seqs ? telemetry_store_logs(lines, seqs, max, since, &next) : 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *line = cJSON_Parse(lines[i]);
        if (line) {
            cJSON_AddNumberToObject(line, "seq", (double)seqs[i]);
            cJSON_AddItemToArray(arr, line);
        }
        free(lines[i]);
    }
    free(lines);
    free(seqs);
    cJSON_AddNumberToObject(root, "next", (double)next);
    return root;
}
