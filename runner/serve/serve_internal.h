#pragma once
// Pieces shared by the servers (serve.c), the Prometheus renderer (metrics.c) and the
// JSON API (api.c). Not for use outside runner/serve/.
#include "runner/config.h"
#include "runner/telemetry_store.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Tags the servers give names to (docs/observability.md is the list the job follows).
#define TAG_LOSS "train/loss"
#define TAG_EPOCH "train/epoch"
#define TAG_LR "train/learning_rate"
#define TAG_GRAD_NORM "train/grad_norm"
#define TAG_TOKENS_PER_S "train/tokens_per_second"
#define TAG_SAMPLES_PER_S "train/samples_per_second"
#define TAG_EVAL_LOSS "eval/loss"
#define TAG_EVAL_F1 "eval/f1"
#define RUN_TRIAL_PREFIX "trial-"

typedef struct {
    char job_id[128];
    int attempt;
    char node[64];
    char architecture[64];
    char mode[16];
    char hostname[256];
    int workers;
} serve_identity;

// Identity for job info and headers: serve_set_job() values, else coordination's, else
// AWS_BATCH_JOB_ID / _ATTEMPT / _NODE_INDEX, else "local", 1, "0".
void serve_identity_get(serve_identity *out);
void serve_identity_configure(const runner_config *cfg);
// Ready = the job is past preflight and running (not done or stopping); `why` gets a
// short reason when not.
bool serve_ready(const store_state *st, char *why, size_t why_len);
// Seconds to the end of the current phase from the smoothed rate; < 0 when unknown.
double serve_eta_seconds(const store_state *st);
double serve_wall_now(void);

// Process facts for /metrics and /api/v1/status; false when /proc is unreadable.
typedef struct {
    double rss_bytes, cpu_seconds, start_time, uptime_seconds;
} serve_process_stats;
bool serve_process_stats_read(int pid, serve_process_stats *out);

// Prometheus text format 0.0.4; malloc'd, NULL on allocation failure.
char *metrics_render(size_t *len);

// JSON bodies of /api/v1/* (caller deletes).
cJSON *api_status(void);
cJSON *api_history(const char *run, int64_t since_step, uint64_t after_seq, size_t max_points,
                   uint64_t *last_seq);
cJSON *api_nodes(void);
cJSON *api_trials(void);
cJSON *api_preflight(void);
cJSON *api_logs(unsigned long since, size_t max);
cJSON *api_gpus(void);
