// The Prometheus exposition: every family announced once (HELP, TYPE) before its
// samples and kept together, label values escaped, the step-time histogram cumulative
// and closed by +Inf/_sum/_count, values a job never reported left out, and without
// NVML (as on CI machines) no GPU series at all.
#include "check.h"
#include "runner/serve/nvml.h"
#include "runner/serve/serve.h"
#include "runner/serve/serve_internal.h"
#include "runner/telemetry.h"

#include <stdlib.h>
#include <time.h>

static bool has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) return true;
    return false;
}

// Each metric name's samples are contiguous and follow its # TYPE line.
static bool families_well_formed(const char *text) {
    char seen[256][96];
    int n_seen = 0;
    char current[96] = "";
    char *copy = strdup(text);
    bool ok = true;
    for (char *line = strtok(copy, "\n"); line && ok; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%95s", current);
            for (int i = 0; i < n_seen; i++)
                if (strcmp(seen[i], current) == 0) ok = false; // announced twice
            if (n_seen < 256) snprintf(seen[n_seen++], sizeof seen[0], "%s", current);
            continue;
        }
        if (line[0] == '#') continue;
        char name[96];
        sscanf(line, "%95[^{ ]", name);
        size_t cl = strlen(current);
        bool belongs = strcmp(name, current) == 0 ||
                       (strncmp(name, current, cl) == 0 &&
                        (strcmp(name + cl, "_bucket") == 0 || strcmp(name + cl, "_sum") == 0 ||
                         strcmp(name + cl, "_count") == 0));
        if (!belongs) {
            fprintf(stderr, "sample %s outside its family (%s)\n", name, current);
            ok = false;
        }
    }
    free(copy);
    return ok;
}

int main(void) {
    runner_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.architecture, sizeof cfg.architecture, "bert-tiny");
    cfg.serve = false; // identity only, no sockets
    CHECK_INT(serve_start(&cfg), 0);
    serve_set_job("job-\"1\"\\x\ny", 3, "2");

    size_t len = 0;
    char *text = metrics_render(&len);
    CHECK(text != NULL && len == strlen(text));
    // Before any scalar: job info, readiness, counters; no loss, no histogram.
    CHECK(has_line(text, "runner_job_info{job_id=\"job-\\\"1\\\"\\\\x\\ny\",attempt=\"3\","
                         "architecture=\"bert-tiny\",mode=\"pipeline\",node=\"2\"} 1"));
    CHECK(has_line(text, "runner_ready 0"));
    CHECK(strstr(text, "runner_loss") == NULL);
    CHECK(strstr(text, "runner_step_duration_seconds") == NULL);
    CHECK(strstr(text, "process_resident_memory_bytes ") != NULL);
    CHECK(strstr(text, "process_cpu_seconds_total ") != NULL);
    CHECK(strstr(text, "process_start_time_seconds ") != NULL);
    CHECK(families_well_formed(text));
    free(text);

    telemetry_phase("prime");
    const double times[] = {0.004, 0.02, 0.02, 0.3, 200};
    for (int i = 0; i < 5; i++) {
        telemetry_scalar("prime", "train/loss", i + 1, 2.0 - 0.1 * i);
        telemetry_scalar("prime", "train/step_time_seconds", i + 1, times[i]);
    }
    telemetry_scalar("prime", "eval/f1", 5, 0.8125);
    telemetry_scalar("trial-0", "eval/f1", 3, 0.5);
    telemetry_scalar("trial-1", "eval/f1", 3, 0.75);
    telemetry_scalar("trial-1", "eval/loss", 3, 0.0 / 0.0); // NaN stays NaN
    telemetry_scalar("odd\"run", "train/loss", 1, 1);
    telemetry_progress(5, 10);

    // A run without explicit step times: the time between its logged training steps.
    telemetry_scalar("derived", "train/loss", 10, 1.0);
    struct timespec pause = {0, 30 * 1000000L};
    nanosleep(&pause, NULL);
    telemetry_scalar("derived", "train/loss", 12, 0.9); // two steps in ~30 ms: ~15 ms each

    text = metrics_render(&len);
    CHECK(text != NULL);
    if (!text) return check_summary();
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"derived\",le=\"0.01\"} 0"));
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"derived\",le=\"0.025\"} 1"));
    CHECK(has_line(text, "runner_step_duration_seconds_count{run=\"derived\"} 1"));
    CHECK(has_line(text, "runner_ready 1"));
    CHECK(has_line(text, "runner_phase{phase=\"prime\"} 1"));
    CHECK(has_line(text, "runner_step{run=\"prime\"} 5"));
    CHECK(has_line(text, "runner_loss{run=\"prime\"} 1.6000000000000001"));
    CHECK(has_line(text, "runner_loss{run=\"odd\\\"run\"} 1"));
    CHECK(has_line(text, "runner_eval_f1{run=\"prime\"} 0.8125"));
    CHECK(has_line(text, "runner_eval_loss{run=\"trial-1\"} NaN"));
    CHECK(has_line(text, "runner_trials 2"));
    CHECK(has_line(text, "runner_trial_best_eval_f1 0.75"));
    CHECK(has_line(text, "runner_phase_steps_completed 5"));
    CHECK(has_line(text, "runner_phase_steps_planned 10"));
    CHECK(has_line(text, "# TYPE runner_step_duration_seconds histogram"));
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"prime\",le=\"0.005\"} 1"));
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"prime\",le=\"0.025\"} 3"));
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"prime\",le=\"0.5\"} 4"));
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"prime\",le=\"120\"} 4"));
    CHECK(has_line(text, "runner_step_duration_seconds_bucket{run=\"prime\",le=\"+Inf\"} 5"));
    CHECK(has_line(text, "runner_step_duration_seconds_count{run=\"prime\"} 5"));
    CHECK(strstr(text, "runner_step_duration_seconds_sum{run=\"prime\"} 200.34") != NULL);
    CHECK(has_line(text, "runner_scalar{run=\"prime\",tag=\"eval/f1\"} 0.8125"));
    CHECK(has_line(text, "runner_telemetry_scalars_total 17"));
    CHECK(has_line(text, "runner_telemetry_dropped_total 0"));
    // Nothing the job did not report: no learning rate, no throughput.
    CHECK(strstr(text, "runner_learning_rate") == NULL);
    CHECK(strstr(text, "runner_tokens_per_second") == NULL);
    // No NVML here: no GPU family, not even a HELP line, and no sentinel values.
    CHECK(strstr(text, "DCGM_") == NULL);
    CHECK(families_well_formed(text));
    free(text);

    // NVML: a missing library is reported, not fatal, and yields no readings.
    nvml_close();
    CHECK(!nvml_open("/nonexistent/libnvidia-ml.so.1"));
    CHECK(strstr(nvml_unavailable_reason(), "libnvidia-ml") != NULL);
    nvml_gpu gpus[4];
    CHECK_INT(nvml_read(gpus, 4), 0);
    // A library without NVML's symbols is refused by name.
    nvml_close();
    CHECK(!nvml_open("libm.so.6"));
    CHECK(strstr(nvml_unavailable_reason(), "nvmlInit_v2") != NULL);
    nvml_close();
    return check_summary();
}
