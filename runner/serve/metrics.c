// Prometheus text exposition format 0.0.4 for port 6006. Each metric family is written
// whole (HELP, TYPE, then its samples) so promtool and Prometheus accept it; a family
// with no samples is left out entirely.
#include "runner/coord/coord.h"
#include "runner/serve/guard.h"
#include "runner/serve/nvml.h"
#include "runner/serve/serve_internal.h"
#include "runner/serve/strbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SERIES_CAP = STORE_MAX_SERIES, RUNS_CAP = 256 };

static void put_value(strbuf *b, double v) {
    if (isnan(v))
        strbuf_puts(b, "NaN");
    else if (isinf(v))
        strbuf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else
        strbuf_printf(b, "%.17g", v);
}

// A label value with \\, \" and \n escaped, as the format requires.
static void put_label(strbuf *b, const char *name, const char *value, bool first) {
    strbuf_printf(b, "%s%s=\"", first ? "" : ",", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\')
            strbuf_add(b, "\\\\", 2);
        else if (*p == '"')
            strbuf_add(b, "\\\"", 2);
        else if (*p == '\n')
            strbuf_add(b, "\\n", 2);
        else
            strbuf_add(b, p, 1);
    }
    strbuf_add(b, "\"", 1);
}

static void family(strbuf *b, const char *name, const char *type, const char *help) {
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(strbuf *b, const char *name, double v) {
    strbuf_puts(b, name);
    strbuf_add(b, " ", 1);
    put_value(b, v);
    strbuf_add(b, "\n", 1);
}

// One gauge family over every run that has `tag`: name{run="..."} latest.
static void per_run_gauge(strbuf *b, const store_series_info *s, size_t n, const char *name,
                          const char *tag, const char *help) {
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].tag, tag) != 0) continue;
        if (!any) family(b, name, "gauge", help);
        any = true;
        strbuf_printf(b, "%s{", name);
        put_label(b, "run", s[i].run, true);
        strbuf_puts(b, "} ");
        put_value(b, s[i].latest.value);
        strbuf_add(b, "\n", 1);
    }
}

static void gpu_family(strbuf *b, const nvml_gpu *g, int n, const serve_identity *id,
                       const char *name, const char *help, size_t has_offset,
                       double (*get)(const nvml_gpu *)) {
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (!*(const bool *)((const char *)&g[i] + has_offset)) continue;
        if (!any) family(b, name, "gauge", help);
        any = true;
        char index[16], device[32];
        snprintf(index, sizeof index, "%d", g[i].index);
        snprintf(device, sizeof device, "nvidia%d", g[i].index);
        strbuf_printf(b, "%s{", name);
        put_label(b, "gpu", index, true);
        put_label(b, "UUID", g[i].uuid, false);
        put_label(b, "device", device, false);
        put_label(b, "modelName", g[i].name, false);
        put_label(b, "Hostname", id->hostname, false);
        strbuf_puts(b, "} ");
        put_value(b, get(&g[i]));
        strbuf_add(b, "\n", 1);
    }
}

static double gpu_util(const nvml_gpu *g) { return g->util_percent; }
static double gpu_mem_util(const nvml_gpu *g) { return g->mem_util_percent; }
static double gpu_fb_used(const nvml_gpu *g) { return g->fb_used_mib; }
static double gpu_fb_free(const nvml_gpu *g) { return g->fb_free_mib; }
static double gpu_temp(const nvml_gpu *g) { return g->temp_c; }
static double gpu_power(const nvml_gpu *g) { return g->power_w; }
static double gpu_sm_clock(const nvml_gpu *g) { return g->sm_clock_mhz; }

static void render_gpus(strbuf *b, const serve_identity *id) {
    nvml_gpu gpus[NVML_MAX_GPUS];
    int n = nvml_read(gpus, NVML_MAX_GPUS);
    if (n <= 0) return;
#define HAS(field) offsetof(nvml_gpu, field)
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", HAS(has_util),
               gpu_util);
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).",
               HAS(has_mem_util), gpu_mem_util);
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).",
               HAS(has_memory), gpu_fb_used);
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).",
               HAS(has_memory), gpu_fb_free);
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", HAS(has_temp),
               gpu_temp);
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", HAS(has_power),
               gpu_power);
    gpu_family(b, gpus, n, id, "DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).",
               HAS(has_sm_clock), gpu_sm_clock);
#undef HAS
}

// Redis as coordination sees it; no family at all when the job runs without Redis.
static void render_redis(strbuf *b) {
    coord_snapshot *snap = malloc(sizeof *snap);
    if (!snap) return;
    coord_snapshot_get(snap);
    coord_redis_health h = snap->redis;
    free(snap);
    if (!h.enabled) return;
    family(b, "runner_redis_up", "gauge", "1 while Redis answers coordination, 0 during an outage.");
    sample(b, "runner_redis_up", h.up ? 1 : 0);
    family(b, "runner_redis_outages_total", "counter", "Redis outages seen by coordination.");
    sample(b, "runner_redis_outages_total", (double)h.outages);
    family(b, "runner_redis_outage_seconds_total", "counter",
           "Seconds Redis was unreachable, the current outage included.");
    sample(b, "runner_redis_outage_seconds_total", h.outage_seconds);
}

// The servers' own state, so that an operator sees a client holding connections or
// streams (and the job's answer to it) in the same scrape as the job.
static void render_http(strbuf *b) {
    serve_guard_counts g;
    serve_guard_counts_get(&g);
    const struct {
        const char *name, *type, *help;
    } fams[4] = {
        {"runner_http_connections", "gauge", "Open connections of a server."},
        {"runner_http_event_streams", "gauge", "Open Server-Sent Events streams of a server."},
        {"runner_http_request_timeouts_total", "counter",
         "Connections closed because no complete request arrived in time."},
        {"runner_http_event_streams_refused_total", "counter",
         "Event streams refused (503) because the server had its limit open."},
    };
    for (int k = 0; k < 4; k++) {
        family(b, fams[k].name, fams[k].type, fams[k].help);
        for (int i = 0; i < SERVE_COUNT; i++) {
            double v = k == 0   ? g.connections[i]
                       : k == 1 ? g.streams[i]
                       : k == 2 ? (double)g.timed_out[i]
                                : (double)g.streams_refused[i];
            strbuf_printf(b, "%s{", fams[k].name);
            put_label(b, "server", serve_server_name((serve_server)i), true);
            strbuf_puts(b, "} ");
            put_value(b, v);
            strbuf_add(b, "\n", 1);
        }
    }
}

static void render_process(strbuf *b) {
    serve_process_stats ps;
    if (serve_process_stats_read(0, &ps)) {
        family(b, "process_resident_memory_bytes", "gauge", "Resident memory of the supervisor.");
        sample(b, "process_resident_memory_bytes", ps.rss_bytes);
        family(b, "process_cpu_seconds_total", "counter", "User and system CPU time of the supervisor.");
        sample(b, "process_cpu_seconds_total", ps.cpu_seconds);
        family(b, "process_start_time_seconds", "gauge", "Start time of the supervisor since the Unix epoch.");
        sample(b, "process_start_time_seconds", ps.start_time);
        family(b, "runner_uptime_seconds", "gauge", "Seconds since the supervisor started.");
        sample(b, "runner_uptime_seconds", ps.uptime_seconds);
    }
    int pids[256];
    int n = telemetry_worker_pids(pids, 256);
    serve_process_stats ws[256];
    bool have[256] = {false}, any = false;
    for (int r = 0; r < n && r < 256; r++)
        if (pids[r] > 0 && serve_process_stats_read(pids[r], &ws[r])) have[r] = any = true;
    if (!any) return;
    const char *names[2] = {"runner_worker_resident_memory_bytes", "runner_worker_cpu_seconds_total"};
    const char *types[2] = {"gauge", "counter"};
    const char *helps[2] = {"Resident memory of a worker process.", "CPU time of a worker process."};
    for (int k = 0; k < 2; k++) {
        family(b, names[k], types[k], helps[k]);
        for (int r = 0; r < n && r < 256; r++) {
            if (!have[r]) continue;
            char rank[16];
            snprintf(rank, sizeof rank, "%d", r);
            strbuf_printf(b, "%s{", names[k]);
            put_label(b, "rank", rank, true);
            strbuf_puts(b, "} ");
            put_value(b, k == 0 ? ws[r].rss_bytes : ws[r].cpu_seconds);
            strbuf_add(b, "\n", 1);
        }
    }
}

char *metrics_render(size_t *len) {
    serve_identity id;
    serve_identity_get(&id);
    store_state st;
    telemetry_store_state(&st);
    // Size the copies to what exists (a few dozen series, not the store's capacity):
    // large allocations would cost an mmap/munmap pair per scrape.
    size_t n = telemetry_store_series(NULL, 0) + 8; // room for series arriving meanwhile
    if (n > SERIES_CAP) n = SERIES_CAP;
    size_t n_hist = telemetry_store_histograms(NULL, 0) + 2;
    if (n_hist > 64) n_hist = 64;
    store_series_info *series = malloc(n * sizeof *series);
    store_histogram *hists = malloc(n_hist * sizeof *hists);
    if (!series || !hists) {
        free(series);
        free(hists);
        return NULL;
    }
    size_t have = telemetry_store_series(series, n);
    if (have < n) n = have;
    have = telemetry_store_histograms(hists, n_hist);
    if (have < n_hist) n_hist = have;

    strbuf b;
    strbuf_init(&b, 16384);
    family(&b, "runner_job_info", "gauge", "Job identity; the value is always 1.");
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", id.attempt);
    strbuf_puts(&b, "runner_job_info{");
    put_label(&b, "job_id", id.job_id, true);
    put_label(&b, "attempt", attempt, false);
    put_label(&b, "architecture", id.architecture, false);
    put_label(&b, "mode", id.mode, false);
    put_label(&b, "node", id.node, false);
    strbuf_puts(&b, "} 1\n");

    if (st.phase[0]) {
        family(&b, "runner_phase", "gauge", "The job's current phase (value 1).");
        strbuf_puts(&b, "runner_phase{");
        put_label(&b, "phase", st.phase, true);
        strbuf_puts(&b, "} 1\n");
    }
    char why[64];
    family(&b, "runner_ready", "gauge", "1 when the job is past preflight and running.");
    sample(&b, "runner_ready", serve_ready(&st, why, sizeof why) ? 1 : 0);
    if (st.total > 0) {
        family(&b, "runner_phase_steps_completed", "gauge", "Steps done in the current phase.");
        sample(&b, "runner_phase_steps_completed", (double)st.done);
        family(&b, "runner_phase_steps_planned", "gauge", "Steps planned in the current phase.");
        sample(&b, "runner_phase_steps_planned", (double)st.total);
    }
    double eta = serve_eta_seconds(&st);
    if (eta >= 0) {
        family(&b, "runner_phase_eta_seconds", "gauge", "Estimated seconds to the end of the phase.");
        sample(&b, "runner_phase_eta_seconds", eta);
    }

    // Step: the highest step any tag of the run reached.
    {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            bool first_of_run = true;
            int64_t step = series[i].latest.step;
            for (size_t k = 0; k < n; k++) {
                if (strcmp(series[k].run, series[i].run) != 0) continue;
                if (k < i) first_of_run = false;
                if (series[k].latest.step > step) step = series[k].latest.step;
            }
            if (!first_of_run) continue;
            if (!any) family(&b, "runner_step", "gauge", "Latest training step of a run.");
            any = true;
            strbuf_puts(&b, "runner_step{");
            put_label(&b, "run", series[i].run, true);
            strbuf_puts(&b, "} ");
            put_value(&b, (double)step);
            strbuf_add(&b, "\n", 1);
        }
    }
    per_run_gauge(&b, series, n, "runner_epoch", TAG_EPOCH, "Current epoch of a run.");
    per_run_gauge(&b, series, n, "runner_loss", TAG_LOSS, "Latest training loss of a run.");
    per_run_gauge(&b, series, n, "runner_eval_loss", TAG_EVAL_LOSS, "Latest evaluation loss of a run.");
    per_run_gauge(&b, series, n, "runner_eval_f1", TAG_EVAL_F1, "Latest evaluation entity F1 of a run.");
    per_run_gauge(&b, series, n, "runner_learning_rate", TAG_LR, "Current learning rate of a run.");
    per_run_gauge(&b, series, n, "runner_grad_norm", TAG_GRAD_NORM, "Gradient norm before clipping.");
    per_run_gauge(&b, series, n, "runner_tokens_per_second", TAG_TOKENS_PER_S, "Training throughput in tokens per second.");
    per_run_gauge(&b, series, n, "runner_samples_per_second", TAG_SAMPLES_PER_S, "Training throughput in sequences per second.");

    if (n_hist > 0) {
        family(&b, "runner_step_duration_seconds", "histogram", "Wall time of one training step.");
        for (size_t h = 0; h < n_hist; h++) {
            for (int k = 0; k <= STORE_STEP_BUCKETS; k++) {
                char le[32];
                if (k < STORE_STEP_BUCKETS)
                    snprintf(le, sizeof le, "%g", store_step_bounds[k]);
                else
                    snprintf(le, sizeof le, "+Inf");
                strbuf_puts(&b, "runner_step_duration_seconds_bucket{");
                put_label(&b, "run", hists[h].run, true);
                put_label(&b, "le", le, false);
                strbuf_puts(&b, "} ");
                put_value(&b, (double)(k < STORE_STEP_BUCKETS ? hists[h].buckets[k] : hists[h].count));
                strbuf_add(&b, "\n", 1);
            }
            strbuf_puts(&b, "runner_step_duration_seconds_sum{");
            put_label(&b, "run", hists[h].run, true);
            strbuf_puts(&b, "} ");
            put_value(&b, hists[h].sum);
            strbuf_puts(&b, "\nrunner_step_duration_seconds_count{");
            put_label(&b, "run", hists[h].run, true);
            strbuf_printf(&b, "} %llu\n", (unsigned long long)hists[h].count);
        }
    }

    // Trials: runs named trial-N.
    {
        size_t trials = 0;
        double best_f1 = NAN;
        for (size_t i = 0; i < n; i++) {
            if (strncmp(series[i].run, RUN_TRIAL_PREFIX, strlen(RUN_TRIAL_PREFIX)) != 0) continue;
            bool first_of_run = true;
            for (size_t k = 0; k < i; k++)
                if (strcmp(series[k].run, series[i].run) == 0) first_of_run = false;
            if (first_of_run) trials++;
            if (strcmp(series[i].tag, TAG_EVAL_F1) == 0 &&
                (isnan(best_f1) || series[i].latest.value > best_f1))
                best_f1 = series[i].latest.value;
        }
        family(&b, "runner_trials", "gauge", "Hyper-parameter trials that reported so far.");
        sample(&b, "runner_trials", (double)trials);
        if (!isnan(best_f1)) {
            family(&b, "runner_trial_best_eval_f1", "gauge", "Best evaluation F1 over the trials.");
            sample(&b, "runner_trial_best_eval_f1", best_f1);
        }
    }
    if (n > 0) {
        family(&b, "runner_scalar", "gauge", "Latest value of every logged scalar, by run and tag.");
        for (size_t i = 0; i < n; i++) {
            strbuf_puts(&b, "runner_scalar{");
            put_label(&b, "run", series[i].run, true);
            put_label(&b, "tag", series[i].tag, false);
            strbuf_puts(&b, "} ");
            put_value(&b, series[i].latest.value);
            strbuf_add(&b, "\n", 1);
        }
    }
    family(&b, "runner_telemetry_scalars_total", "counter", "Scalars received from the training loop.");
    sample(&b, "runner_telemetry_scalars_total", (double)st.scalars);
    family(&b, "runner_telemetry_dropped_total", "counter", "Scalars lost because a worker's ring was full.");
    sample(&b, "runner_telemetry_dropped_total", (double)st.dropped);
    render_redis(&b);
    render_process(&b);
    render_http(&b);
    render_gpus(&b, &id);

    free(series);
    free(hists);
    return strbuf_take(&b, len);
}
