// The HTTP servers over real sockets (libcurl as the client): routes, status codes
// (404 unknown, 405 wrong method, 413 oversized body, 431 oversized headers), HEAD,
// security headers, the bearer-token control endpoints reaching signals.h, the SSE
// stream's events and heartbeats, the cap on streams, undecoded %00, the servers' own
// gauges, and a clean stop with streams still open.
#include "check.h"
#include "runner/serve/serve.h"
#include "runner/signals.h"
#include "runner/telemetry.h"

#include "runner/error.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    char body[65536];
    size_t len;
    char headers[8192];
    size_t hlen;
    const char *stop_after; // abort the transfer once the body contains this
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    reply *r = ud;
    size_t len = size * n, room = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = '\0';
    if (r->stop_after && strstr(r->body, r->stop_after)) return 0; // abort
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    reply *r = ud;
    size_t len = size * n, room = sizeof r->headers - 1 - r->hlen;
    memcpy(r->headers + r->hlen, p, len < room ? len : room);
    r->hlen += len < room ? len : room;
    r->headers[r->hlen] = '\0';
    return len;
}

static long request(const char *method, int port, const char *path, const char *auth,
                    const char *body, size_t body_len, reply *r) {
    memset(r, 0, offsetof(reply, stop_after));
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    struct curl_slist *h = NULL;
    if (auth) h = curl_slist_append(h, auth);
    if (r->stop_after == NULL && strcmp(method, "BIGHEADER") == 0) {
        static char big[40000];
        memset(big, 'a', sizeof big - 1);
        memcpy(big, "X-Big: ", 7);
        h = curl_slist_append(h, big);
        method = "GET";
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    } else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    long status = 0;
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static bool header_is(const reply *r, const char *line) {
    return strcasestr(r->headers, line) != NULL;
}

static void *stream_forever(void *arg) {
    int port = *(int *)arg;
    reply *r = calloc(1, sizeof *r);
    request("GET", port, "/api/v1/events?heartbeat_ms=100", NULL, NULL, 0, r);
    free(r);
    return NULL;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signals_install();
    setenv("RUNNER_CONTROL_TOKEN", "correct-horse-battery", 1);
    runner_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.bind_address, sizeof cfg.bind_address, "127.0.0.1");
    cfg.metrics_port = cfg.api_port = cfg.dashboard_port = 0; // kernel-chosen ports
    CHECK_INT(serve_start(&cfg), 0);
    int mp = serve_bound_port(SERVE_METRICS), ap = serve_bound_port(SERVE_API),
        dp = serve_bound_port(SERVE_DASHBOARD);
    CHECK(mp > 0 && ap > 0 && dp > 0 && mp != ap && ap != dp);
    reply *r = calloc(1, sizeof *r);

    // 6006
    CHECK_INT(request("GET", mp, "/metrics", NULL, NULL, 0, r), 200);
    CHECK(header_is(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK(header_is(r, "X-Content-Type-Options: nosniff"));
    CHECK(header_is(r, "X-Frame-Options: DENY"));
    CHECK(header_is(r, "Cache-Control: no-store"));
    CHECK(strstr(r->body, "runner_job_info{") != NULL);
    CHECK_INT(request("HEAD", mp, "/metrics", NULL, NULL, 0, r), 200);
    CHECK_INT(r->len, 0);
    CHECK_INT(request("GET", mp, "/healthz", NULL, NULL, 0, r), 200);
    CHECK_INT(request("GET", mp, "/readyz", NULL, NULL, 0, r), 503);
    telemetry_phase("prime");
    CHECK_INT(request("GET", mp, "/readyz", NULL, NULL, 0, r), 200);
    telemetry_phase("stopping");
    CHECK_INT(request("GET", mp, "/readyz", NULL, NULL, 0, r), 503);
    telemetry_phase("prime");
    CHECK_INT(request("GET", mp, "/nope", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", mp, "/api/v1/status", NULL, NULL, 0, r), 404); // not on 6006
    CHECK_INT(request("POST", mp, "/metrics", NULL, "", 0, r), 405);
    CHECK(header_is(r, "Allow: GET, HEAD"));
    CHECK_INT(request("DELETE", mp, "/metrics", NULL, NULL, 0, r), 405);
    CHECK_INT(request("BIGHEADER", mp, "/metrics", NULL, NULL, 0, r), 431);

    // 6007
    telemetry_scalar("prime", "train/loss", 7, 0.5);
    CHECK_INT(request("GET", ap, "/api/v1/status", NULL, NULL, 0, r), 200);
    CHECK(header_is(r, "Content-Type: application/json"));
    CHECK(header_is(r, "Cache-Control: no-store"));
    cJSON *status = cJSON_Parse(r->body);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(status, "phase")), "prime");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(status, "ready")));
    cJSON_Delete(status);
    CHECK_INT(request("GET", ap, "/api/v1/history?since=6&run=prime", NULL, NULL, 0, r), 200);
    CHECK(strstr(r->body, "\"train/loss\":[[7,0.5,") != NULL);
    CHECK_INT(request("GET", ap, "/api/v1/history?since=7", NULL, NULL, 0, r), 200);
    CHECK(strstr(r->body, "\"series\":{}") != NULL);
    const char *routes[] = {"/api/v1/nodes", "/api/v1/trials", "/api/v1/preflight",
                            "/api/v1/logs", "/api/v1/gpus"};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        CHECK_INT(request("GET", ap, routes[i], NULL, NULL, 0, r), 200);
        cJSON *j = cJSON_Parse(r->body);
        CHECK(cJSON_IsObject(j));
        cJSON_Delete(j);
    }
    CHECK_INT(request("GET", ap, "/api/v1/nope", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", ap, "/metrics", NULL, NULL, 0, r), 404);
    CHECK_INT(request("POST", ap, "/api/v1/status", NULL, "", 0, r), 405);

    // Control: no token 401, wrong token 401, GET 405, oversized 413, right token 202.
    CHECK(!signals_stop_requested());
    CHECK_INT(request("POST", ap, "/api/v1/control/stop", NULL, "", 0, r), 401);
    CHECK(header_is(r, "WWW-Authenticate: Bearer"));
    CHECK_INT(request("POST", ap, "/api/v1/control/stop", "Authorization: Bearer correct-horse",
                      "", 0, r), 401);
    CHECK_INT(request("POST", ap, "/api/v1/control/stop",
                      "Authorization: Bearer correct-horse-battery-staple", "", 0, r), 401);
    CHECK_INT(request("GET", ap, "/api/v1/control/stop", NULL, NULL, 0, r), 405);
    static char big[10000];
    memset(big, 'x', sizeof big);
    CHECK_INT(request("POST", ap, "/api/v1/control/stop", "Authorization: Bearer correct-horse-battery",
                      big, sizeof big, r), 413);
    CHECK(!signals_stop_requested());
    CHECK(!signals_take_checkpoint_request());
    CHECK_INT(request("POST", ap, "/api/v1/control/checkpoint",
                      "Authorization: Bearer correct-horse-battery", "", 0, r), 202);
    CHECK(signals_take_checkpoint_request());
    CHECK(!signals_stop_requested());
    CHECK_INT(request("POST", ap, "/api/v1/control/stop",
                      "Authorization: Bearer correct-horse-battery", "", 0, r), 202);
    CHECK(signals_stop_requested());
    CHECK_STR(signals_stop_reason(), "api");
    // From the stop on, not ready, though the workers still report their phase.
    CHECK_INT(request("GET", mp, "/readyz", NULL, NULL, 0, r), 503);
    CHECK(strstr(r->body, "stopping: api") != NULL);
    CHECK_INT(request("POST", ap, "/api/v1/control/reboot",
                      "Authorization: Bearer correct-horse-battery", "", 0, r), 404);

    // SSE: a status event at once, then heartbeats; new scalars arrive as history.
    r->stop_after = "event: heartbeat";
    CHECK_INT(request("GET", ap, "/api/v1/events?heartbeat_ms=200", NULL, NULL, 0, r), 200);
    CHECK(header_is(r, "Content-Type: text/event-stream"));
    CHECK(strstr(r->body, "event: status\ndata: {") == r->body);
    CHECK(strstr(r->body, "event: heartbeat\n") != NULL);
    r->stop_after = ",[8,0.25,";
    telemetry_scalar("prime", "train/loss", 8, 0.25);
    CHECK_INT(request("GET", ap, "/api/v1/events?cursor=0", NULL, NULL, 0, r), 200);
    CHECK(strstr(r->body, "event: history\ndata: {") != NULL);
    CHECK(strstr(r->body, "[[7,0.5,") != NULL); // from cursor 0: the earlier point too
    r->stop_after = NULL;

    // 8265: the page and assets with the dashboard's CSP; the API read-only.
    CHECK_INT(request("GET", dp, "/", NULL, NULL, 0, r), 200);
    CHECK(header_is(r, "Content-Type: text/html; charset=utf-8"));
    CHECK(header_is(r, "Content-Security-Policy: default-src 'self'"));
    CHECK(strstr(r->body, "/assets/chart.umd.min.js") != NULL);
    CHECK_INT(request("GET", dp, "/assets/chart.umd.min.js", NULL, NULL, 0, r), 200);
    CHECK(strstr(r->body, "Chart.js v") != NULL);
    CHECK_INT(request("GET", dp, "/assets/dashboard.js", NULL, NULL, 0, r), 200);
    CHECK_INT(request("GET", dp, "/api/v1/status", NULL, NULL, 0, r), 200);
    CHECK_INT(request("POST", dp, "/api/v1/control/stop", "Authorization: Bearer correct-horse-battery",
                      "", 0, r), 404);
    CHECK_INT(request("PUT", dp, "/", NULL, NULL, 0, r), 405);
    CHECK_INT(request("GET", dp, "/etc/passwd", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", dp, "/assets/../assets/dashboard.js", NULL, NULL, 0, r), 404);
    // libmicrohttpd decodes the path before routing (runner/serve/route.h): an escaped
    // spelling of an asset's own path names it, an escaped ".." or "/" names nothing, and
    // the query never takes part.
    CHECK_INT(request("GET", dp, "/assets/dashboard%2Ejs", NULL, NULL, 0, r), 200);
    CHECK_INT(request("GET", dp, "/index.html?x=/etc/passwd", NULL, NULL, 0, r), 200);
    CHECK_INT(request("GET", dp, "/assets/%2e%2e/assets/dashboard.js", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", dp, "/assets%2Fdashboard.js", NULL, NULL, 0, r), 200);
    CHECK_INT(request("GET", dp, "//assets/dashboard.js", NULL, NULL, 0, r), 404);
    // An escaped NUL stays escaped (it would cut the path short: route_unescape).
    CHECK_INT(request("GET", dp, "/assets/dashboard.js%00.png", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", dp, "/api/v1/history?run=a%00b", NULL, NULL, 0, r), 200);
    // %00 would cut the decoded path short: it is not decoded, so nothing matches.
    CHECK_INT(request("GET", dp, "/assets/dashboard.js%00.html", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", dp, "/assets/dashboard.js%2500", NULL, NULL, 0, r), 404);
    CHECK_INT(request("GET", dp, "/%61ssets/dashboard.js", NULL, NULL, 0, r), 200); // %HH still decoded
    // The servers' own gauges.
    CHECK_INT(request("GET", mp, "/metrics", NULL, NULL, 0, r), 200);
    // This request's own connection at least (an earlier one may not be reaped yet).
    const char *conns = strstr(r->body, "runner_http_connections{server=\"metrics\"} ");
    CHECK(conns != NULL && atoi(strchr(conns, '}') + 2) >= 1);
    CHECK(strstr(r->body, "# TYPE runner_http_event_streams gauge\n") != NULL);
    CHECK(strstr(r->body, "# TYPE runner_http_request_timeouts_total counter\n") != NULL);

    // Restart after stop on fresh ports; a second start while running changes nothing.
    serve_stop();
    CHECK_INT(serve_bound_port(SERVE_METRICS), 0);
    CHECK_INT(serve_start(&cfg), 0);
    int api_again = serve_bound_port(SERVE_API);
    CHECK(api_again > 0);
    CHECK_INT(serve_start(&cfg), 0);
    CHECK_INT(serve_bound_port(SERVE_API), api_again);

    // Event streams are capped per server: with 16 open on the API server the next one
    // is 503 with Retry-After, while the dashboard server still has room and plain
    // requests are answered.
    enum { STREAMS = 16 };
    pthread_t t[STREAMS];
    int stream_port = serve_bound_port(SERVE_API);
    for (int i = 0; i < STREAMS; i++) pthread_create(&t[i], NULL, stream_forever, &stream_port);
    bool all_open = false;
    for (int tries = 0; tries < 100 && !all_open; tries++) {
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
        request("GET", serve_bound_port(SERVE_METRICS), "/metrics", NULL, NULL, 0, r);
        all_open = strstr(r->body, "runner_http_event_streams{server=\"api\"} 16\n") != NULL;
    }
    CHECK(all_open);
    CHECK_INT(request("GET", stream_port, "/api/v1/events", NULL, NULL, 0, r), 503);
    CHECK(header_is(r, "Retry-After: 10\r\n"));
    CHECK(strstr(r->body, "\"limit\":16") != NULL);
    CHECK_INT(request("GET", stream_port, "/api/v1/status", NULL, NULL, 0, r), 200);
    r->stop_after = "event: status";
    CHECK_INT(request("GET", serve_bound_port(SERVE_DASHBOARD), "/api/v1/events", NULL, NULL, 0, r),
              200);
    r->stop_after = NULL;
    struct timespec past_cache = {0, 150 * 1000000L}; // /metrics answers are cached 100 ms
    nanosleep(&past_cache, NULL);
    request("GET", serve_bound_port(SERVE_METRICS), "/metrics", NULL, NULL, 0, r);
    CHECK(strstr(r->body, "runner_http_event_streams_refused_total{server=\"api\"} 1\n") != NULL);

    // Stop with the streams open: they end, serve_stop returns promptly.
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    serve_stop();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int i = 0; i < STREAMS; i++) pthread_join(t[i], NULL);
    double stop_s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    CHECK(stop_s < 2.0);
    CHECK_INT(serve_bound_port(SERVE_API), 0);
    serve_stop(); // idempotent

    // Unset token: control refused with 403.
    unsetenv("RUNNER_CONTROL_TOKEN");
    CHECK_INT(serve_start(&cfg), 0);
    CHECK_INT(request("POST", serve_bound_port(SERVE_API), "/api/v1/control/stop",
                      "Authorization: Bearer ", "", 0, r), 403);
    serve_stop();

    // A port in use: refused with the flag named, and nothing left half-started.
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_INT(bind(busy, (struct sockaddr *)&sa, sizeof sa), 0);
    CHECK_INT(listen(busy, 1), 0);
    socklen_t sl = sizeof sa;
    getsockname(busy, (struct sockaddr *)&sa, &sl);
    runner_config clash = cfg;
    clash.api_port = ntohs(sa.sin_port);
    CHECK_INT(serve_start(&clash), 2);
    CHECK(strstr(error_message(), "--api-port") != NULL);
    CHECK_INT(serve_bound_port(SERVE_METRICS), 0);
    close(busy);

    // --no-serve: nothing listens.
    cfg.serve = false;
    CHECK_INT(serve_start(&cfg), 0);
    CHECK_INT(serve_bound_port(SERVE_METRICS), 0);
    // A bad bind address is a usage error naming --bind.
    cfg.serve = true;
    snprintf(cfg.bind_address, sizeof cfg.bind_address, "not-an-ip");
    CHECK_INT(serve_start(&cfg), 2);

    free(r);
    telemetry_shutdown();
    curl_global_cleanup();
    return check_summary();
}
