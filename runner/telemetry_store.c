#include "runner/telemetry_store.h"

#include "runner/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double store_step_bounds[STORE_STEP_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1,     2.5,  5,     10,   30,   60,  120};

typedef struct {
    store_series_info info;
    store_point *history; // ring of STORE_HISTORY, allocated on first point
    size_t head, len;     // next write index, points held
} series;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool ready;
    store_state state;
    series series[STORE_MAX_SERIES];
    size_t n_series;
    store_histogram histograms[64];
    size_t n_histograms;
    uint64_t seq;
    // log tail: ring of STORE_LOG_LINES, log_seq = lines ever added
    char *log_lines[STORE_LOG_LINES]; // JSON objects without "seq"
    uint64_t log_line_seq[STORE_LOG_LINES];
    uint64_t log_seq;
    unsigned long local_next; // next log.h seq of this process to pull
    pthread_mutex_t pull_lock;
} store = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .changed = PTHREAD_COND_INITIALIZER,
           .pull_lock = PTHREAD_MUTEX_INITIALIZER};

static double store_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Called with the lock held.
static void store_touch(void) {
    if (!store.ready) {
        store.ready = true;
        store.state.started = store_now();
    }
}

static void store_changed(void) {
    store.state.version++;
    pthread_cond_broadcast(&store.changed);
}

static void copy_name(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

// Whether a table holding `used` of `cap` entries takes one more for `run`: trials stop
// at `trial_cap`, leaving the rest to the other runs. The first refusal is logged (the
// points of a refused series are dropped, and the dashboard would show a gap).
static bool room_for(const char *run, size_t used, size_t cap, size_t trial_cap) {
    static atomic_bool warned;
    bool trial = strncmp(run, "trial-", 6) == 0;
    if (used < (trial ? trial_cap : cap)) return true;
    if (!atomic_exchange(&warned, true))
        log_warn("telemetry_full",
                 "no room for more series of run %s (%zu of %zu used): its points are not "
                 "kept; trials may use %zu", run, used, cap, trial_cap);
    return false;
}

static series *series_find(const char *run, const char *tag, bool create) {
    for (size_t i = 0; i < store.n_series; i++) {
        series *s = &store.series[i];
        if (strncmp(s->info.run, run, STORE_RUN_MAX - 1) == 0 &&
            strncmp(s->info.tag, tag, STORE_TAG_MAX - 1) == 0)
            return s;
    }
    if (!create || !room_for(run, store.n_series, STORE_MAX_SERIES, STORE_TRIAL_SERIES))
        return NULL;
    series *s = &store.series[store.n_series++];
    memset(s, 0, sizeof *s);
    copy_name(s->info.run, sizeof s->info.run, run);
    copy_name(s->info.tag, sizeof s->info.tag, tag);
    return s;
}

static store_histogram *histogram_find(const char *run) {
    for (size_t i = 0; i < store.n_histograms; i++)
        if (strncmp(store.histograms[i].run, run, STORE_RUN_MAX - 1) == 0)
            return &store.histograms[i];
    size_t cap = sizeof store.histograms / sizeof store.histograms[0];
    if (!room_for(run, store.n_histograms, cap, STORE_TRIAL_HISTOGRAMS)) return NULL;
    store_histogram *h = &store.histograms[store.n_histograms++];
    memset(h, 0, sizeof *h);
    copy_name(h->run, sizeof h->run, run);
    return h;
}

static void histogram_observe(store_histogram *h, double value) {
    for (int b = 0; b < STORE_STEP_BUCKETS; b++)
        if (value <= store_step_bounds[b]) h->buckets[b]++;
    h->sum += value;
    h->count++;
}

void telemetry_store_scalar(const char *run, const char *tag, int64_t step, double value,
                            double wall_time) {
    // Allocate outside the lock so a producer never waits on malloc while holding it.
    store_point *fresh = NULL;
    pthread_mutex_lock(&store.lock);
    store_touch();
    store.state.scalars++;
    series *s = series_find(run, tag, true);
    if (s && !s->history) {
        pthread_mutex_unlock(&store.lock);
        fresh = malloc(STORE_HISTORY * sizeof *fresh);
        pthread_mutex_lock(&store.lock);
        if (!s->history) {
            s->history = fresh;
            fresh = NULL;
        }
    }
    if (s) {
        store_point previous = s->info.latest;
        bool had_previous = s->info.count > 0;
        store_point p = {step, value, wall_time, ++store.seq};
        s->info.latest = p;
        s->info.count++;
        if (s->history) {
            s->history[s->head] = p;
            s->head = (s->head + 1) % STORE_HISTORY;
            if (s->len < STORE_HISTORY) s->len++;
        }
        if (strcmp(tag, TAG_STEP_TIME) == 0) {
            store_histogram *h = histogram_find(run);
            if (h) {
                if (!h->explicit_times) memset(h->buckets, 0, sizeof h->buckets), h->sum = 0, h->count = 0;
                h->explicit_times = true;
                histogram_observe(h, value);
            }
        } else if (strcmp(tag, TAG_STEP_CLOCK) == 0 && had_previous && step > previous.step &&
                   wall_time > previous.wall_time) {
            // No explicit step times from this run: time between logged training steps.
            store_histogram *h = histogram_find(run);
            if (h && !h->explicit_times)
                histogram_observe(h, (wall_time - previous.wall_time) / (double)(step - previous.step));
        }
    }
    store_changed();
    pthread_mutex_unlock(&store.lock);
    free(fresh);
}

void telemetry_store_phase(const char *phase, double wall_time) {
    pthread_mutex_lock(&store.lock);
    store_touch();
    if (strncmp(store.state.phase, phase ? phase : "", STORE_PHASE_MAX - 1) != 0) {
        copy_name(store.state.phase, sizeof store.state.phase, phase);
        store.state.phase_since = wall_time;
        store.state.done = store.state.total = 0;
        store.state.progress_rate = 0;
        store.state.progress_wall = wall_time;
    }
    store_changed();
    pthread_mutex_unlock(&store.lock);
}

void telemetry_store_progress(int64_t done, int64_t total, double wall_time) {
    pthread_mutex_lock(&store.lock);
    store_touch();
    store_state *st = &store.state;
    double dt = wall_time - st->progress_wall;
    if (done > st->done && dt > 0 && st->progress_wall > 0) {
        double rate = (double)(done - st->done) / dt;
        // Exponential smoothing over recent steps keeps the ETA from jumping.
        st->progress_rate = st->progress_rate > 0 ? 0.8 * st->progress_rate + 0.2 * rate : rate;
    }
    if (done != st->done || st->progress_wall == 0) st->progress_wall = wall_time;
    st->done = done;
    st->total = total;
    store_changed();
    pthread_mutex_unlock(&store.lock);
}

void telemetry_store_dropped(uint64_t n) {
    if (!n) return;
    pthread_mutex_lock(&store.lock);
    store.state.dropped += n;
    store_changed();
    pthread_mutex_unlock(&store.lock);
}

void telemetry_store_state(store_state *out) {
    pthread_mutex_lock(&store.lock);
    store_touch();
    *out = store.state;
    pthread_mutex_unlock(&store.lock);
}

bool telemetry_store_latest(const char *run, const char *tag, store_point *out) {
    pthread_mutex_lock(&store.lock);
    series *s = series_find(run, tag, false);
    if (s && out) *out = s->info.latest;
    pthread_mutex_unlock(&store.lock);
    return s != NULL;
}

size_t telemetry_store_series(store_series_info *out, size_t max) {
    pthread_mutex_lock(&store.lock);
    size_t n = store.n_series;
    for (size_t i = 0; i < n && i < max; i++) out[i] = store.series[i].info;
    pthread_mutex_unlock(&store.lock);
    return n;
}

size_t telemetry_store_histograms(store_histogram *out, size_t max) {
    pthread_mutex_lock(&store.lock);
    size_t n = store.n_histograms;
    for (size_t i = 0; i < n && i < max; i++) out[i] = store.histograms[i];
    pthread_mutex_unlock(&store.lock);
    return n;
}

cJSON *telemetry_store_history(const char *run, int64_t since_step, uint64_t after_seq,
                               size_t max_points, uint64_t *last_seq) {
    // Copy the matching points out under the lock, build JSON after releasing it: JSON
    // allocation is the slow part and the producer must not wait for it.
    typedef struct {
        char run[STORE_RUN_MAX], tag[STORE_TAG_MAX];
        store_point *points;
        size_t n;
    } copy;
    copy *copies = NULL;
    size_t n_copies = 0;
    pthread_mutex_lock(&store.lock);
    size_t n_series = store.n_series;
    copies = calloc(n_series ? n_series : 1, sizeof *copies);
    for (size_t i = 0; copies && i < n_series; i++) {
        series *s = &store.series[i];
        if (run && *run && strcmp(s->info.run, run) != 0) continue;
        if (!s->history) continue;
        // Index (0 = oldest) of the first point to send: walk back from the newest, so a
        // live stream asking for the last few points costs a few comparisons.
        size_t first = s->len;
        while (first > 0) {
            size_t at = (s->head + STORE_HISTORY - s->len + first - 1) % STORE_HISTORY;
            if (s->history[at].step <= since_step || s->history[at].seq <= after_seq) break;
            first--;
        }
        size_t n = s->len - first;
        if (n == 0) continue;
        if (n > max_points) {
            first += n - max_points;
            n = max_points;
        }
        copy *c = &copies[n_copies++];
        memcpy(c->run, s->info.run, sizeof c->run);
        memcpy(c->tag, s->info.tag, sizeof c->tag);
        c->points = n ? malloc(n * sizeof *c->points) : NULL;
        if (!c->points) n = 0;
        for (size_t k = 0; k < n; k++)
            c->points[k] = s->history[(s->head + STORE_HISTORY - s->len + first + k) % STORE_HISTORY];
        c->n = n;
    }
    if (last_seq) *last_seq = store.seq;
    pthread_mutex_unlock(&store.lock);

    cJSON *root = cJSON_CreateObject();
    for (size_t i = 0; i < n_copies; i++) {
        copy *c = &copies[i];
        cJSON *by_run = cJSON_GetObjectItemCaseSensitive(root, c->run);
        if (!by_run) by_run = cJSON_AddObjectToObject(root, c->run);
        cJSON *points = cJSON_AddArrayToObject(by_run, c->tag);
        for (size_t k = 0; k < c->n; k++) {
            cJSON *p = cJSON_CreateArray();
            cJSON_AddItemToArray(p, cJSON_CreateNumber((double)c->points[k].step));
            cJSON_AddItemToArray(p, cJSON_CreateNumber(c->points[k].value));
            cJSON_AddItemToArray(p, cJSON_CreateNumber(c->points[k].wall_time));
            cJSON_AddItemToArray(points, p);
        }
        free(c->points);
    }
    free(copies);
    return root;
}

uint64_t telemetry_store_wait(uint64_t seen, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&store.lock);
    // One wait: callers loop, and telemetry_store_wake() must end it without a change.
    if (store.state.version == seen) pthread_cond_timedwait(&store.changed, &store.lock, &deadline);
    uint64_t v = store.state.version;
    pthread_mutex_unlock(&store.lock);
    return v;
}

void telemetry_store_log(const char *json_line, int rank) {
    // Parse and print outside the lock: that is the slow part.
    cJSON *line = cJSON_Parse(json_line);
    if (!line || !cJSON_IsObject(line)) {
        cJSON_Delete(line);
        line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "msg", json_line);
    }
    if (rank >= 0 && !cJSON_GetObjectItemCaseSensitive(line, "rank"))
        cJSON_AddNumberToObject(line, "rank", rank);
    cJSON_DeleteItemFromObjectCaseSensitive(line, "seq"); // each process counts its own
    char *text = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    if (!text) return;
    pthread_mutex_lock(&store.lock);
    uint64_t seq = ++store.log_seq;
    size_t slot = seq % STORE_LOG_LINES;
    char *old = store.log_lines[slot];
    store.log_lines[slot] = text;
    store.log_line_seq[slot] = seq;
    store_changed();
    pthread_mutex_unlock(&store.lock);
    free(old);
}

void telemetry_store_pull_local_logs(void) {
    pthread_mutex_lock(&store.pull_lock);
    char *lines[64];
    unsigned long seqs[64];
    // Page through everything new (cursor from 1: log.h numbers lines from 1).
    for (int round = 0; round < LOG_RECENT_LINES / 64; round++) {
        size_t n = log_recent(lines, seqs, 64, store.local_next ? store.local_next : 1);
        for (size_t i = 0; i < n; i++) {
            unsigned long seq = seqs[i];
            if (seq >= store.local_next) {
                telemetry_store_log(lines[i], -1);
                store.local_next = seq + 1;
            }
            free(lines[i]);
        }
        if (n < 64) break;
    }
    pthread_mutex_unlock(&store.pull_lock);
}

size_t telemetry_store_logs(char **out, uint64_t *seqs, size_t max, uint64_t since,
                            uint64_t *next) {
    pthread_mutex_lock(&store.lock);
    uint64_t last = store.log_seq;
    uint64_t first = last >= STORE_LOG_LINES ? last - STORE_LOG_LINES + 1 : 1;
    if (since > first)
        first = since; // a cursor: the oldest lines from there, so paging loses none
    else if (since == 0 && last >= first && last - first + 1 > max)
        first = last - max + 1; // a tail: the newest lines
    size_t n = 0;
    uint64_t seq = first;
    for (; seq <= last && n < max; seq++) {
        size_t slot = seq % STORE_LOG_LINES;
        if (store.log_line_seq[slot] != seq || !store.log_lines[slot]) continue;
        char *copy = strdup(store.log_lines[slot]);
        if (!copy) break; // the caller pages on from here later
        seqs[n] = seq;
        out[n++] = copy;
    }
    // The first line not handed out (max == 0 asks only where the tail ends).
    if (max == 0) seq = last + 1;
    if (next) *next = seq > since ? seq : since;
    pthread_mutex_unlock(&store.lock);
    return n;
}

uint64_t telemetry_store_cursor(void) {
    pthread_mutex_lock(&store.lock);
    uint64_t seq = store.seq;
    pthread_mutex_unlock(&store.lock);
    return seq;
}

void telemetry_store_wake(void) {
    pthread_mutex_lock(&store.lock);
    pthread_cond_broadcast(&store.changed);
    pthread_mutex_unlock(&store.lock);
}

void telemetry_store_reset(void) {
    pthread_mutex_lock(&store.lock);
    for (size_t i = 0; i < store.n_series; i++) free(store.series[i].history);
    store.n_series = 0;
    store.n_histograms = 0;
    store.seq = 0;
    for (size_t i = 0; i < STORE_LOG_LINES; i++) {
        free(store.log_lines[i]);
        store.log_lines[i] = NULL;
        store.log_line_seq[i] = 0;
    }
    store.log_seq = 0;
    uint64_t version = store.state.version;
    memset(&store.state, 0, sizeof store.state);
    store.state.version = version;
    store.ready = false;
    store_changed();
    pthread_mutex_unlock(&store.lock);
}
