#pragma once
// Pieces shared by the servers (serve.c), the Prometheus renderer (metrics.c) and the
// JSON API (api.c). Not for use outside runner/serve/.
#include "runner/config.h"
#include "runner/serve/serve.h"
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

// What the servers accept, chosen so that no client, whether it is slow, floods the port
// or never reads, can take a server from the others or cost the training loop more than
// a few threads' worth of sleeping. The table in docs/observability.md ("Limits") says
// what a client sees at each.
enum {
    // Requests carry no body except the control POSTs, which need none: more is 413.
    SERVE_MAX_BODY = 4096,
    // Open connections per server. The API and dashboard servers run a thread per
    // connection (512 KiB of stack reserved, little of it touched), so this bounds their
    // threads; legitimate use is a Prometheus or two, a few curl and a few browser tabs
    // (each holds an event stream and up to ~5 requests): well under 64.
    SERVE_CONNECTION_LIMIT = 64,
    // Per client address: half the server, so one address (one attacker, or a script run
    // amok) never takes a server from everyone else. A browser opens at most 6 per host;
    // several people behind one SSH tunnel or NAT share one address, hence not less.
    SERVE_PER_IP_LIMIT = 32,
    // libmicrohttpd closes a connection that has sent and received nothing for this long
    // (an idle keep-alive, a client that stopped reading an event stream). Event streams
    // write a heartbeat well inside it.
    SERVE_CONNECTION_TIMEOUT_S = 30,
    // libmicrohttpd's idle timeout restarts on every byte, so a client sending its headers
    // a byte at a time ("slowloris") would hold a connection for ever. The whole request
    // (line, headers, body) must arrive within this many seconds of the connection's
    // accept, and a later request on a kept-alive connection within
    // SERVE_CONNECTION_TIMEOUT_S of the previous answer; else the connection is closed
    // (guard.c). Every real client sends a request in one write, milliseconds.
    SERVE_REQUEST_TIMEOUT_S = 10,
    // Each connection's memory pool holds the request line, the headers and the
    // connection's buffers; a request that does not fit is answered 431 (414 for a long
    // URI). Real requests are well under 2 KiB; 32 KiB is libmicrohttpd's default.
    SERVE_CONNECTION_MEMORY = 32768,
    // Event streams per server: each holds a connection (and so a thread) for as long as
    // the client likes, so their number is capped well below SERVE_CONNECTION_LIMIT: plain
    // requests always find room. A dashboard tab holds one. More is 503 + Retry-After.
    SERVE_STREAM_LIMIT = 16,
    SERVE_STREAM_RETRY_S = 10,
    // The send buffer of an event stream's socket. Left to itself the kernel grows it up
    // to tcp_wmem's maximum (4 MiB by default) for a client that never reads, which then
    // takes many minutes of events to fill before the idle timeout can start counting;
    // with a fixed 64 KiB one, such a stream is full within seconds and closed
    // SERVE_CONNECTION_TIMEOUT_S later. It still carries 640 KiB/s at 100 ms round trip.
    SERVE_STREAM_SNDBUF = 65536,
};

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

// "metrics", "api", "dashboard": the name in flags (--NAME-port), logs and labels.
const char *serve_server_name(serve_server which);

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
