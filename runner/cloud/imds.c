// EC2 instance metadata (IMDSv2: a session token from PUT /latest/api/token, then
// GETs that carry it) and the spot-interruption watcher built on it. A spot notice
// gives two minutes; polling every 5 s leaves the job well over 100 s to checkpoint.
#include "runner/cloud/aws.h"
#include "runner/cloud/cloud.h"

#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { IMDS_TOKEN_TTL_S = 21600, SPOT_POLL_MS = 5000 };

bool imds_disabled(void) {
    const char *v = getenv("AWS_EC2_METADATA_DISABLED");
    return v && strcasecmp(v, "true") == 0;
}

static void imds_base(char *out, size_t n) {
    const char *v = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    snprintf(out, n, "%s", (v && *v) ? v : "http://169.254.169.254");
    size_t len = strlen(out);
    while (len && out[len - 1] == '/') out[--len] = '\0';
}

int imds_token(char *out, size_t n) {
    char url[512];
    imds_base(url, sizeof url);
    strncat(url, "/latest/api/token", sizeof url - strlen(url) - 1);
    char ttl[80];
    snprintf(ttl, sizeof ttl, "X-aws-ec2-metadata-token-ttl-seconds: %d", IMDS_TOKEN_TTL_S);
    struct curl_slist *headers = curl_slist_append(NULL, ttl);
    // Off EC2 nothing answers at 169.254.169.254: give up fast rather than stall start-up.
    aws_request req = {.method = "PUT", .url = url, .headers = headers, .body_fd = -1,
                       .connect_timeout_ms = 1000, .timeout_ms = 2000, .max_attempts = 2};
    aws_response resp = {0};
    int rc = aws_send(&req, &resp, "PUT IMDS token");
    curl_slist_free_all(headers);
    if (rc == 0 && (resp.status != 200 || !resp.body.data))
        rc = error_set(EXIT_REMOTE_IO, "IMDS token request answered HTTP %ld", resp.status);
    if (rc == 0) {
        snprintf(out, n, "%s", resp.body.data);
        log_redact(out);
    }
    aws_response_free(&resp);
    return rc;
}

int imds_get(const char *token, const char *path, aws_buffer *out, long *status) {
    char url[1024];
    imds_base(url, sizeof url);
    strncat(url, path, sizeof url - strlen(url) - 1);
    char line[512];
    snprintf(line, sizeof line, "X-aws-ec2-metadata-token: %s", token);
    struct curl_slist *headers = curl_slist_append(NULL, line);
    aws_request req = {.method = "GET", .url = url, .headers = headers, .body_fd = -1,
                       .connect_timeout_ms = 1000, .timeout_ms = 3000, .max_attempts = 2};
    aws_response resp = {0};
    int rc = aws_send(&req, &resp, "GET IMDS");
    curl_slist_free_all(headers);
    *status = resp.status;
    if (rc == 0) {
        *out = resp.body; // hand the buffer over
        resp.body = (aws_buffer){0};
    }
    aws_response_free(&resp);
    return rc;
}

// ---- spot watcher ----

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop;
    void (*on_notice)(const char *action, const char *time);
} spot = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

// Wait up to ms; true when asked to stop.
static bool spot_wait(long ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&spot.lock);
    while (!spot.stop && pthread_cond_timedwait(&spot.wake, &spot.lock, &until) != ETIMEDOUT) {
    }
    bool stop = spot.stop;
    pthread_mutex_unlock(&spot.lock);
    return stop;
}

typedef struct {
    long poll_ms;
    char token[256];
    time_t token_at;
} spot_state;

typedef enum { POLL_WAIT, POLL_DONE } poll_next;

// One poll: a token when needed, then spot/instance-action.
static poll_next spot_poll(spot_state *st) {
    time_t now = time(NULL);
    if (!st->token[0] || now - st->token_at > IMDS_TOKEN_TTL_S / 2) {
        if (imds_token(st->token, sizeof st->token) != 0) {
            if (!st->token_at) { // never reached IMDS: not on EC2
                log_info("spot_watcher", "off: no instance metadata service (%s)",
                         error_message());
                error_clear();
                return POLL_DONE;
            }
            log_warn("spot_watcher", "token refresh failed: %s", error_message());
            error_clear();
            st->token[0] = '\0';
            return POLL_WAIT;
        }
        if (!st->token_at) log_info("spot_watcher", "on: polling every %ld ms", st->poll_ms);
        st->token_at = now;
    }
    aws_buffer body = {0};
    long status = 0;
    bool announced = false;
    int rc = imds_get(st->token, "/latest/meta-data/spot/instance-action", &body, &status);
    if (rc) {
        error_clear();
    } else if (status == 401) {
        st->token[0] = '\0'; // expired token: take a new one next time
    } else if (status == 200 && body.data) {
        cJSON *json = cJSON_Parse(body.data);
        const cJSON *action = cJSON_GetObjectItemCaseSensitive(json, "action");
        const cJSON *when = cJSON_GetObjectItemCaseSensitive(json, "time");
        if (cJSON_IsString(action)) {
            announced = true;
            const char *t = cJSON_IsString(when) ? when->valuestring : "";
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "action", action->valuestring);
            cJSON_AddStringToObject(f, "time", t);
            log_fields(LOG_WARN, "spot_notice", f);
            if (spot.on_notice) spot.on_notice(action->valuestring, t);
        }
        cJSON_Delete(json);
    }
    aws_buffer_free(&body);
    return announced ? POLL_DONE : POLL_WAIT; // one notice is all a job needs
}

static void *spot_main(void *arg) {
    (void)arg;
    spot_state st = {.poll_ms = SPOT_POLL_MS};
    const char *v = getenv("RUNNER_SPOT_POLL_MS"); // tests only
    if (v && atol(v) > 0) st.poll_ms = atol(v);
    for (;;) {
        poll_next next = spot_poll(&st);
        if (next == POLL_DONE || spot_wait(st.poll_ms)) return NULL;
    }
}

int cloud_spot_watcher_start(void (*on_notice)(const char *action, const char *time)) {
    if (imds_disabled()) return 0;
    pthread_mutex_lock(&spot.lock);
    if (spot.running) {
        pthread_mutex_unlock(&spot.lock);
        return 0;
    }
    spot.on_notice = on_notice;
    spot.stop = false;
    spot.running = pthread_create(&spot.thread, NULL, spot_main, NULL) == 0;
    pthread_mutex_unlock(&spot.lock);
    if (!spot.running) log_warn("spot_watcher", "cannot start its thread");
    return 0;
}

void cloud_spot_watcher_stop(void) {
    pthread_mutex_lock(&spot.lock);
    bool running = spot.running;
    spot.stop = true;
    spot.running = false;
    pthread_cond_broadcast(&spot.wake);
    pthread_mutex_unlock(&spot.lock);
    if (running) pthread_join(spot.thread, NULL);
}
