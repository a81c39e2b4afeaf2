// The supervisor's HTTP servers on libmicrohttpd (DESIGN §6).
//
// Threading: the metrics server (6006) answers from an epoll thread pool: its handlers
// only copy the telemetry store and format text, they never block. The API (6007) and
// dashboard (8265) servers run one thread per connection, because /api/v1/events is a
// Server-Sent Events stream whose reader blocks on the store's condition variable until
// there is news or a heartbeat is due; in thread-per-connection mode libmicrohttpd lets
// a content reader block, and the connection limit bounds the threads. (Suspend/resume
// on an epoll daemon would save those threads but needs a timer thread resuming every
// stream; with at most a few dashboards open the threads are the simpler correct
// choice.) None of the handlers takes a lock the training loop waits on for longer than
// a memory copy, so the job never stalls on the servers.
#include "runner/serve/serve.h"

#include "runner/error.h"
#include "runner/log.h"
#include "runner/serve/assets.h"
#include "runner/serve/guard.h"
#include "runner/serve/nvml.h"
#include "runner/serve/route.h"
#include "runner/serve/serve_internal.h"
#include "runner/serve/strbuf.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

// The limits every server applies are in serve_internal.h (SERVE_*).
enum {
    SSE_HEARTBEAT_MS = 10000,
    SSE_HEARTBEAT_MAX_MS = (SERVE_CONNECTION_TIMEOUT_S - 5) * 1000, // beats inside MHD's timeout
    REFUSAL_LOG_MS = 10000,     // refused control requests: one log line per this, counted
    SSE_MIN_INTERVAL_MS = 250,  // at most four updates a second per stream
    HISTORY_MAX_POINTS = 4096,
    METRICS_CACHE_MS = 100,
};

static const char *const SERVER_NAMES[SERVE_COUNT] = {"metrics", "api", "dashboard"};

const char *serve_server_name(serve_server which) {
    return (unsigned)which < SERVE_COUNT ? SERVER_NAMES[which] : "?";
}

static struct {
    struct MHD_Daemon *daemon[SERVE_COUNT];
    int port[SERVE_COUNT];
    atomic_bool stopping;
    char token[512];
    bool token_set;
    pthread_mutex_t metrics_lock;
    struct MHD_Response *metrics_cached; // the last /metrics answer, shared by scrapes
    double metrics_time;
} srv = {.metrics_lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
    size_t body;
    bool too_big;
} request_state;

// ---- responses ---------------------------------------------------------------------

static void security_headers(struct MHD_Response *r, serve_server which, bool page) {
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (which == SERVE_DASHBOARD && page)
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; frame-ancestors 'none'; base-uri 'none'");
    else
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; frame-ancestors 'none'");
    MHD_add_response_header(r, "Cache-Control", page ? "no-cache" : "no-store");
}

// One response: body, Content-Type, the security headers and at most one more header
// (`extra_name` NULL for none: Allow on 405, WWW-Authenticate on 401).
static enum MHD_Result send_response(struct MHD_Connection *c, serve_server which,
                                     unsigned status, const char *type, char *body, size_t len,
                                     bool must_free, bool page, const char *extra_name,
                                     const char *extra_value) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (must_free) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (extra_name) MHD_add_response_header(r, extra_name, extra_value);
    security_headers(r, which, page);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_buffer(struct MHD_Connection *c, serve_server which, unsigned status,
                                   const char *type, char *body, size_t len, bool must_free,
                                   bool page) {
    return send_response(c, which, status, type, body, len, must_free, page, NULL, NULL);
}

// `json` (taken) as the body, with an optional extra header as send_response has.
static enum MHD_Result send_json_header(struct MHD_Connection *c, serve_server which,
                                        unsigned status, cJSON *json, const char *extra_name,
                                        const char *extra_value) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) {
        static char oom[] = "{\"error\":\"out of memory\"}";
        return send_buffer(c, which, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json", oom,
                           strlen(oom), false, false);
    }
    return send_response(c, which, status, "application/json", text, strlen(text), true, false,
                         extra_name, extra_value);
}

static enum MHD_Result send_json(struct MHD_Connection *c, serve_server which, unsigned status,
                                 cJSON *json) {
    return send_json_header(c, which, status, json, NULL, NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *c, serve_server which, unsigned status,
                                  const char *message) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "error", message);
    cJSON_AddNumberToObject(e, "status", status);
    return send_json(c, which, status, e);
}

static enum MHD_Result send_method_not_allowed(struct MHD_Connection *c, serve_server which,
                                               const char *allow) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "error", "method not allowed");
    cJSON_AddStringToObject(e, "allow", allow);
    return send_json_header(c, which, MHD_HTTP_METHOD_NOT_ALLOWED, e, "Allow", allow);
}

// ---- /metrics ---------------------------------------------------------------------------

// Scrapes within METRICS_CACHE_MS of a render share its response (MHD responses are
// reference-counted and may be queued on many connections): at hundreds of scrapes a
// second the exposition is built a few times a second, and a value is at most that
// much older than the store, which no scraper can tell at its own interval.
static enum MHD_Result send_metrics(struct MHD_Connection *c) {
    pthread_mutex_lock(&srv.metrics_lock);
    double now = serve_wall_now();
    if (!srv.metrics_cached || now - srv.metrics_time > METRICS_CACHE_MS / 1000.0 ||
        now < srv.metrics_time) {
        size_t len = 0;
        char *text = metrics_render(&len);
        struct MHD_Response *r =
            text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE) : NULL;
        if (!r) {
            free(text);
            pthread_mutex_unlock(&srv.metrics_lock);
            return send_error(c, SERVE_METRICS, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        }
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        security_headers(r, SERVE_METRICS, false);
        if (srv.metrics_cached) MHD_destroy_response(srv.metrics_cached); // drop the cache's reference
        srv.metrics_cached = r;
        srv.metrics_time = now;
    }
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, srv.metrics_cached);
    pthread_mutex_unlock(&srv.metrics_lock);
    return ok;
}

// ---- query arguments ----------------------------------------------------------------

static bool arg_int64(struct MHD_Connection *c, const char *name, int64_t *out) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v || !*v) return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end) return false;
    *out = (int64_t)x;
    return true;
}

// ---- Server-Sent Events ---------------------------------------------------------------

typedef struct {
    serve_server which;    // whose stream count it holds (serve_guard_stream_open)
    uint64_t version;      // store version last seen
    uint64_t cursor;       // history: points with seq > cursor are new
    unsigned long log_next;
    char *run;             // only this run's points (NULL: all)
    double last_emit, last_write;
    int heartbeat_ms;
    strbuf pending;        // formatted events not yet handed to MHD
    size_t pending_off;
} sse_stream;

static void sse_event(strbuf *b, const char *event, cJSON *data) {
    char *text = data ? cJSON_PrintUnformatted(data) : NULL;
    cJSON_Delete(data);
    if (!text) return;
    // cJSON's compact output has no newlines, so one data: line carries the event.
    strbuf_printf(b, "event: %s\ndata: %s\n\n", event, text);
    free(text);
}

static void sse_fill(sse_stream *s, double now) {
    sse_event(&s->pending, "status", api_status());
    uint64_t cursor = s->cursor;
    cJSON *h = api_history(s->run, INT64_MIN, s->cursor, HISTORY_MAX_POINTS, &cursor);
    cJSON *series = cJSON_GetObjectItemCaseSensitive(h, "series");
    if (series && series->child)
        sse_event(&s->pending, "history", h);
    else
        cJSON_Delete(h);
    s->cursor = cursor;
    cJSON *logs = api_logs(s->log_next, 64);
    cJSON *next = cJSON_GetObjectItemCaseSensitive(logs, "next");
    cJSON *lines = cJSON_GetObjectItemCaseSensitive(logs, "lines");
    if (cJSON_IsNumber(next)) s->log_next = (unsigned long)next->valuedouble;
    if (cJSON_GetArraySize(lines) > 0)
        sse_event(&s->pending, "logs", logs);
    else
        cJSON_Delete(logs);
    s->last_emit = now;
}

static bool sse_logs_pending(const sse_stream *s) {
    telemetry_store_pull_local_logs();
    uint64_t next = 0;
    telemetry_store_logs(NULL, NULL, 0, s->log_next, &next);
    return next > s->log_next;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    sse_stream *s = cls;
    for (;;) {
        if (s->pending.failed) return MHD_CONTENT_READER_END_WITH_ERROR;
        size_t left = s->pending.len - s->pending_off;
        if (left > 0) {
            size_t n = left < max ? left : max;
            memcpy(buf, s->pending.data + s->pending_off, n);
            s->pending_off += n;
            if (s->pending_off == s->pending.len) {
                s->pending.len = s->pending_off = 0;
                s->pending.data[0] = '\0';
            }
            s->last_write = serve_wall_now();
            return (ssize_t)n;
        }
        if (atomic_load(&srv.stopping)) return MHD_CONTENT_READER_END_OF_STREAM;
        double now = serve_wall_now();
        store_state st;
        telemetry_store_state(&st);
        bool news = st.version != s->version || sse_logs_pending(s);
        if (news && (now - s->last_emit) * 1000 >= SSE_MIN_INTERVAL_MS) {
            s->version = st.version;
            sse_fill(s, now);
            continue;
        }
        if ((now - s->last_write) * 1000 >= s->heartbeat_ms) {
            // A comment line keeps proxies from timing out; the event lets the page
            // show that the stream is alive.
            strbuf_printf(&s->pending, ": heartbeat\nevent: heartbeat\ndata: {\"time\":%.3f}\n\n",
                          now);
            continue;
        }
        // Sleep until the store changes, the throttle or heartbeat is due, or at most
        // half a second (to notice logs, serve_stop and a vanished client).
        int wait_ms = 500;
        if (news) {
            int throttle = SSE_MIN_INTERVAL_MS - (int)((now - s->last_emit) * 1000);
            if (throttle < wait_ms) wait_ms = throttle > 1 ? throttle : 1;
            struct timespec ts = {0, (long)wait_ms * 1000000L};
            nanosleep(&ts, NULL);
        } else {
            int beat = s->heartbeat_ms - (int)((now - s->last_write) * 1000);
            if (beat < wait_ms) wait_ms = beat > 1 ? beat : 1;
            telemetry_store_wait(st.version, wait_ms);
        }
    }
}

static void sse_free(void *cls) {
    sse_stream *s = cls;
    serve_guard_stream_closed(s->which);
    strbuf_free(&s->pending);
    free(s->run);
    free(s);
}

static enum MHD_Result send_events(struct MHD_Connection *c, serve_server which) {
    if (!serve_guard_stream_open(which)) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", "too many event streams are open; try again later");
        cJSON_AddNumberToObject(e, "limit", SERVE_STREAM_LIMIT);
        char retry[16];
        snprintf(retry, sizeof retry, "%d", SERVE_STREAM_RETRY_S);
        return send_json_header(c, which, MHD_HTTP_SERVICE_UNAVAILABLE, e, "Retry-After", retry);
    }
    sse_stream *s = calloc(1, sizeof *s);
    if (!s) {
        serve_guard_stream_closed(which);
        return send_error(c, which, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    }
    s->which = which;
    const union MHD_ConnectionInfo *fd_info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int sndbuf = SERVE_STREAM_SNDBUF;
    if (fd_info) // best effort: without it the stream works, with the kernel's buffer
        (void)setsockopt(fd_info->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    strbuf_init(&s->pending, 4096);
    s->heartbeat_ms = SSE_HEARTBEAT_MS;
    int64_t v;
    if (arg_int64(c, "heartbeat_ms", &v) && v >= 100)
        s->heartbeat_ms = v < SSE_HEARTBEAT_MAX_MS ? (int)v : SSE_HEARTBEAT_MAX_MS;
    // Start from the client's cursors (from /api/v1/history and /api/v1/logs), else now.
    s->cursor = arg_int64(c, "cursor", &v) && v >= 0 ? (uint64_t)v : telemetry_store_cursor();
    s->log_next = arg_int64(c, "logs", &v) && v >= 0 ? (unsigned long)v : 0;
    if (!arg_int64(c, "logs", &v)) {
        cJSON *logs = api_logs(0, 1);
        cJSON *next = cJSON_GetObjectItemCaseSensitive(logs, "next");
        if (cJSON_IsNumber(next)) s->log_next = (unsigned long)next->valuedouble;
        cJSON_Delete(logs);
    }
    const char *run = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "run");
    if (run && *run) s->run = strdup(run);
    double now = serve_wall_now();
    s->last_write = now;
    s->last_emit = 0;
    s->version = UINT64_MAX; // send a status event at once
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
    if (!r) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    security_headers(r, which, false);
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

// ---- control --------------------------------------------------------------------------

// Compare without an early exit, so the time taken says nothing about the token.
static bool token_equal(const char *given, const char *want) {
    size_t gl = strlen(given), wl = strlen(want);
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++) diff |= (unsigned char)(want[i] ^ given[i < gl ? i : 0]);
    return diff == 0 && gl > 0;
}

// A client hammering the control endpoints without the token must not push the job's
// own lines out of the log tail: one line per REFUSAL_LOG_MS, with how many it covers.
static void log_refusal(const char *action) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static long long last_logged_ms = LLONG_MIN / 2;
    static long unlogged;
    pthread_mutex_lock(&lock);
    long long now = timing_now_ms();
    long count = ++unlogged;
    bool log_now = now - last_logged_ms >= REFUSAL_LOG_MS;
    if (log_now) {
        last_logged_ms = now;
        unlogged = 0;
    }
    pthread_mutex_unlock(&lock);
    if (log_now)
        log_warn("control_refused",
                 "POST /api/v1/control/%s without a valid token (%ld refused since the last "
                 "such line)", action, count);
}

static enum MHD_Result handle_control(struct MHD_Connection *c, const char *action) {
    if (!srv.token_set)
        return send_error(c, SERVE_API, MHD_HTTP_FORBIDDEN,
                          "control is disabled: RUNNER_CONTROL_TOKEN is not set");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *given = "";
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) given = auth + 7;
    if (!token_equal(given, srv.token)) {
        log_refusal(action);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", "a valid bearer token is required");
        return send_json_header(c, SERVE_API, MHD_HTTP_UNAUTHORIZED, e, "WWW-Authenticate",
                                "Bearer realm=\"runner\"");
    }
    if (strcmp(action, "stop") == 0)
        signals_request_stop("api");
    else
        signals_request_checkpoint();
    log_info("control_request", "%s requested through the API", action);
    cJSON *ok = cJSON_CreateObject();
    cJSON_AddStringToObject(ok, "accepted", action);
    return send_json(c, SERVE_API, MHD_HTTP_ACCEPTED, ok);
}

// ---- routing (which handler: runner/serve/route.c) -------------------------------------

static enum MHD_Result route_api_get(struct MHD_Connection *c, serve_server which,
                                     const char *route) {
    int64_t v;
    if (strcmp(route, "status") == 0) return send_json(c, which, MHD_HTTP_OK, api_status());
    if (strcmp(route, "history") == 0) {
        int64_t since = INT64_MIN, max = HISTORY_MAX_POINTS, after = 0;
        if (arg_int64(c, "since", &v)) since = v;
        if (arg_int64(c, "cursor", &v) && v >= 0) after = v;
        if (arg_int64(c, "max", &v) && v > 0 && v < HISTORY_MAX_POINTS) max = v;
        const char *run = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "run");
        return send_json(c, which, MHD_HTTP_OK,
                         api_history(run, since, (uint64_t)after, (size_t)max, NULL));
    }
    if (strcmp(route, "nodes") == 0) return send_json(c, which, MHD_HTTP_OK, api_nodes());
    if (strcmp(route, "trials") == 0) return send_json(c, which, MHD_HTTP_OK, api_trials());
    if (strcmp(route, "preflight") == 0) return send_json(c, which, MHD_HTTP_OK, api_preflight());
    if (strcmp(route, "gpus") == 0) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddItemToObject(root, "gpus", api_gpus());
        return send_json(c, which, MHD_HTTP_OK, root);
    }
    if (strcmp(route, "logs") == 0) {
        int64_t since = 0, max = 200;
        if (arg_int64(c, "since", &v) && v >= 0) since = v;
        if (arg_int64(c, "max", &v) && v > 0) max = v;
        return send_json(c, which, MHD_HTTP_OK, api_logs((unsigned long)since, (size_t)max));
    }
    if (strcmp(route, "events") == 0) return send_events(c, which);
    return send_error(c, which, MHD_HTTP_NOT_FOUND, "not found");
}

static enum MHD_Result route(struct MHD_Connection *c, serve_server which, const char *url,
                             const char *method) {
    route_result r = route_resolve(which, method, url);
    switch (r.kind) {
    case ROUTE_NOT_FOUND:
        break;
    case ROUTE_METHOD_NOT_ALLOWED:
        return send_method_not_allowed(c, which, r.allow);
    case ROUTE_METRICS:
        return send_metrics(c);
    case ROUTE_HEALTHZ: {
        static char alive[] = "ok\n";
        return send_buffer(c, which, MHD_HTTP_OK, "text/plain; charset=utf-8", alive,
                           strlen(alive), false, false);
    }
    case ROUTE_READYZ: {
        store_state st;
        telemetry_store_state(&st);
        char why[64] = "";
        bool ready = serve_ready(&st, why, sizeof why);
        char *body = NULL;
        if (asprintf(&body, ready ? "ready: %s\n" : "not ready: %s\n", ready ? st.phase : why) < 0)
            return MHD_NO;
        return send_buffer(c, which, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                           "text/plain; charset=utf-8", body, strlen(body), true, false);
    }
    case ROUTE_CONTROL:
        return handle_control(c, r.name);
    case ROUTE_API:
        return route_api_get(c, which, r.name);
    case ROUTE_ASSET: {
        const serve_asset *a = &serve_assets[r.asset];
        return send_buffer(c, which, MHD_HTTP_OK, a->content_type, (char *)a->data, a->len, false,
                           true);
    }
    }
    return send_error(c, which, MHD_HTTP_NOT_FOUND, "not found");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    (void)upload_data;
    serve_server which = (serve_server)(intptr_t)cls;
    request_state *rs = *con_cls;
    if (!rs) {
        // First call: headers only. Refuse a declared oversized body before reading it.
        rs = calloc(1, sizeof *rs);
        if (!rs) return MHD_NO;
        *con_cls = rs;
        const char *length =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > SERVE_MAX_BODY) {
            rs->too_big = true;
            serve_guard_request_received(c); // answered: the deadline is over
            return send_error(c, which, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
        }
        return MHD_YES;
    }
    if (*upload_data_size) { // bodies are not used; count them to enforce the limit
        rs->body += *upload_data_size;
        *upload_data_size = 0;
        if (rs->body > SERVE_MAX_BODY) rs->too_big = true;
        return MHD_YES;
    }
    serve_guard_request_received(c);
    if (rs->too_big)
        return send_error(c, which, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    return route(c, which, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
    serve_guard_request_done(c);
}

// ---- life cycle -------------------------------------------------------------------------

int serve_bound_port(serve_server which) {
    if ((unsigned)which >= SERVE_COUNT || !srv.daemon[which]) return 0;
    return srv.port[which];
}

// libmicrohttpd's own messages (malformed requests, limits hit) go to our log at debug
// level, one JSON line each, instead of raw text on stderr.
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
    log_debug("http_server", "%s", text);
}

static size_t unescape(void *cls, struct MHD_Connection *c, char *text) {
    (void)cls;
    (void)c;
    return route_unescape(text);
}

static int start_one(serve_server which, const struct sockaddr *addr, bool ipv6,
                     const char *bind_address, int port) {
    unsigned flags = MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    if (which == SERVE_METRICS)
        flags |= MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO;
    else
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD;
    struct MHD_OptionItem pool[] = {
        {which == SERVE_METRICS ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_THREAD_STACK_SIZE,
         which == SERVE_METRICS ? 2 : 512 * 1024, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, (void *)(intptr_t)which,
        MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_CONNECTION_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)SERVE_PER_IP_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVE_CONNECTION_MEMORY,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, serve_guard_notify, (void *)(intptr_t)which,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        MHD_OPTION_ARRAY, pool, MHD_OPTION_END);
    if (!d)
        return error_set(EXIT_USAGE, "--%s-port %d: cannot listen on %s:%d (port in use?)",
                         SERVER_NAMES[which], port, bind_address, port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    srv.port[which] = info ? info->port : port;
    srv.daemon[which] = d;
    return 0;
}

int serve_start(const runner_config *cfg) {
    serve_identity_configure(cfg);
    if (!cfg->serve) return 0;
    if (srv.daemon[SERVE_METRICS] || srv.daemon[SERVE_API] || srv.daemon[SERVE_DASHBOARD]) return 0;
    // A client hanging up mid-response must not kill the process with SIGPIPE
    // (signals.c ignores it too; this keeps tools and tests that skip it safe).
    signal(SIGPIPE, SIG_IGN);
    const char *long_token = getenv("RUNNER_CONTROL_TOKEN");
    if (long_token && strlen(long_token) >= sizeof srv.token)
        return error_set(EXIT_USAGE, "RUNNER_CONTROL_TOKEN: longer than %zu bytes",
                         sizeof srv.token - 1);
    const char *bind_address = cfg->bind_address[0] ? cfg->bind_address : "0.0.0.0";
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(bind_address, NULL, &hints, &ai) != 0 || !ai)
        return error_set(EXIT_USAGE, "--bind %s: not a numeric IPv4 or IPv6 address", bind_address);
    const char *token = getenv("RUNNER_CONTROL_TOKEN");
    srv.token_set = token && *token;
    snprintf(srv.token, sizeof srv.token, "%s", srv.token_set ? token : "");
    if (srv.token_set) log_redact(token);
    atomic_store(&srv.stopping, false);
    if (serve_guard_start() != 0) {
        freeaddrinfo(ai);
        return error_code();
    }
    int ports[SERVE_COUNT] = {cfg->metrics_port, cfg->api_port, cfg->dashboard_port};
    int rc = 0;
    for (int i = 0; i < SERVE_COUNT && rc == 0; i++) {
        struct sockaddr_storage addr;
        memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
        if (ai->ai_family == AF_INET6)
            ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)ports[i]);
        else
            ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)ports[i]);
        rc = start_one((serve_server)i, (const struct sockaddr *)&addr, ai->ai_family == AF_INET6,
                       bind_address, ports[i]);
    }
    freeaddrinfo(ai);
    if (rc != 0) {
        serve_stop();
        return rc;
    }
    nvml_open(NULL);
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddStringToObject(fields, "bind", bind_address);
    cJSON_AddNumberToObject(fields, "metrics_port", srv.port[SERVE_METRICS]);
    cJSON_AddNumberToObject(fields, "api_port", srv.port[SERVE_API]);
    cJSON_AddNumberToObject(fields, "dashboard_port", srv.port[SERVE_DASHBOARD]);
    cJSON_AddBoolToObject(fields, "control", srv.token_set);
    cJSON_AddStringToObject(fields, "nvml", nvml_unavailable_reason()[0] ? nvml_unavailable_reason() : "loaded");
    log_fields(LOG_INFO, "serve_started", fields);
    return 0;
}

void serve_stop(void) {
    atomic_store(&srv.stopping, true);
    // Wake streams blocked on the store so their threads end before the daemons join them.
    telemetry_store_wake();
    for (int i = 0; i < SERVE_COUNT; i++) {
        if (!srv.daemon[i]) continue;
        MHD_stop_daemon(srv.daemon[i]);
        srv.daemon[i] = NULL;
        srv.port[i] = 0;
    }
    serve_guard_stop(); // after the daemons: their connections are closed and unlinked
    pthread_mutex_lock(&srv.metrics_lock);
    if (srv.metrics_cached) MHD_destroy_response(srv.metrics_cached);
    srv.metrics_cached = NULL;
    pthread_mutex_unlock(&srv.metrics_lock);
}
