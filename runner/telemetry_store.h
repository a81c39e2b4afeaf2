#pragma once
// The supervisor's in-memory view of telemetry: latest value and bounded history per
// (run, tag), the job's phase and progress, a step-time histogram per run. Fed by
// telemetry.c (directly in-process, or by its reader thread draining the workers'
// rings); read by the HTTP servers (runner/serve) and by coordination's metrics export
// and fan-in (runner/coord), which also adds the other nodes' points: it lives beside
// telemetry.c, in neither area, so neither depends on the other. One mutex, held only
// for memory copies.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    STORE_RUN_MAX = 48,     // "prime", "trial-12" (bytes with the terminator)
    STORE_TAG_MAX = 64,     // "train/loss"
    STORE_PHASE_MAX = 32,   // "search"
    STORE_MAX_SERIES = 1024,
    // Trials may fill the series and histogram tables only up to these, so that a long
    // search never leaves the prime run (which logs after it) without its metrics.
    STORE_TRIAL_SERIES = STORE_MAX_SERIES - 256,
    STORE_TRIAL_HISTOGRAMS = 48, // of 64
    STORE_HISTORY = 4096,   // points kept per series (oldest dropped first)
    STORE_STEP_BUCKETS = 14,
};

// Tag conventions the servers know by name (docs/observability.md lists them).
#define TAG_STEP_TIME "train/step_time_seconds"
// Without TAG_STEP_TIME, the step-time histogram observes the wall time between
// consecutive points of this tag (per step, when steps are logged every N).
#define TAG_STEP_CLOCK "train/loss"

typedef struct {
    int64_t step;
    double value;
    double wall_time;
    uint64_t seq; // store-wide arrival number (1, 2, ...): cursors for live streams
} store_point;

typedef struct {
    char run[STORE_RUN_MAX];
    char tag[STORE_TAG_MAX];
    store_point latest;
    uint64_t count; // scalars received
} store_series_info;

typedef struct {
    char phase[STORE_PHASE_MAX]; // "" before the first telemetry_phase()
    double phase_since;          // wall time of the last phase change
    double started;              // wall time the store was created (process start)
    int64_t done, total;         // progress in the current phase
    double progress_wall;        // wall time of the last progress update
    double progress_rate;        // steps per second (smoothed), 0 when unknown
    uint64_t scalars;            // scalars received
    uint64_t dropped;            // scalars lost to full worker rings
    uint64_t version;            // bumps on every change (SSE waits on it)
} store_state;

typedef struct {
    char run[STORE_RUN_MAX];
    uint64_t buckets[STORE_STEP_BUCKETS]; // cumulative counts per upper bound
    double sum;
    uint64_t count;
    bool explicit_times; // fed by TAG_STEP_TIME (else derived from TAG_STEP_CLOCK)
} store_histogram;

// Upper bounds (seconds) of the step-time histogram, without +Inf.
extern const double store_step_bounds[STORE_STEP_BUCKETS];

void telemetry_store_scalar(const char *run, const char *tag, int64_t step, double value,
                            double wall_time);
void telemetry_store_phase(const char *phase, double wall_time);
void telemetry_store_progress(int64_t done, int64_t total, double wall_time);
void telemetry_store_dropped(uint64_t n);

void telemetry_store_state(store_state *out);
// Latest value of run/tag; false when never written.
bool telemetry_store_latest(const char *run, const char *tag, store_point *out);
// Copy up to `max` series summaries (in insertion order); returns how many exist in all.
size_t telemetry_store_series(store_series_info *out, size_t max);
// Copy up to `max` step-time histograms (one per run); returns how many exist.
size_t telemetry_store_histograms(store_histogram *out, size_t max);
// {"run": {"tag": [[step, value, wall_time], ...]}} for the points with step > since_step
// and seq > after_seq, of one run (or all when run is NULL or ""), at most max_points
// per series (the newest). *last_seq (may be NULL) receives the highest seq in the store,
// the cursor for the next call. Series without matching points are left out.
cJSON *telemetry_store_history(const char *run, int64_t since_step, uint64_t after_seq,
                               size_t max_points, uint64_t *last_seq);
// Wait until the version differs from `seen`, `timeout_ms` passes or telemetry_store_wake()
// is called (or spuriously: callers loop); returns the version.
uint64_t telemetry_store_wait(uint64_t seen, int timeout_ms);
// Log tail for /api/v1/logs and the dashboard: the supervisor's own lines (pulled from
// log.h's ring) and the workers' lines (shipped through their /dev/shm rings), in
// arrival order, the newest STORE_LOG_LINES kept. Each line's "seq" is rewritten to the
// store's own sequence (the cursor for `since`); worker lines carry their "rank".
enum { STORE_LOG_LINES = 1024 };
void telemetry_store_log(const char *json_line, int rank);
// Pull this process's new log.h lines into the tail (called before reading it).
void telemetry_store_pull_local_logs(void);
// Up to `max` lines of the tail, oldest first: the JSON text (without "seq", malloc'd)
// into out, the seq into seqs; returns how many. since == 0: the newest `max` lines;
// since > 0: the oldest `max` with seq >= since, so that paging with *next loses none.
// *next (may be NULL) receives the `since` of the next call: the first line not handed
// out (with max == 0, the end of the tail: a probe for new lines).
size_t telemetry_store_logs(char **out, uint64_t *seqs, size_t max, uint64_t since,
                            uint64_t *next);

// The highest seq so far (the cursor of "now" for a new live stream).
uint64_t telemetry_store_cursor(void);
// Wake every telemetry_store_wait() without changing anything (server shutdown).
void telemetry_store_wake(void);
// Forget everything (tests).
void telemetry_store_reset(void);

// Pids of the attached workers by rank (implemented in runner/telemetry.c): fills
// pids[0..max) with 0 for a rank that has not attached; returns the number of ranks
// (0 without a supervisor segment).
int telemetry_worker_pids(int *pids, int max);
