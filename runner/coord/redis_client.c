// Redis client with timeouts, keep-alive, AUTH and reconnection (see redis_client.h).
#include "runner/coord/redis_client.h"

#include "runner/error.h"
#include "runner/log.h"
#include "runner/timing.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum {
    CONNECT_TIMEOUT_MS = 2000,
    CONNECT_MIN_MS = 200, // a connect capped by the window's end still gets this long
    DEFAULT_COMMAND_TIMEOUT_MS = 5000,
    BACKOFF_FIRST_MS = 50,
    BACKOFF_MAX_MS = 2000,
};

struct redis_client {
    redis_endpoint ep;
    redisContext *ctx;
    int retry_ms;
    int command_timeout_ms;
    atomic_bool *stop;
    bool (*should_stop)(void);
    bool was_connected; // to count a reconnection once after an outage
    long reconnects;
    long long last_failure_ms;
    redis_backoff backoff;
};

static struct timeval timeval_ms(int ms) {
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

int redis_endpoint_parse(const char *url, redis_endpoint *out) {
    memset(out, 0, sizeof *out);
    out->port = 6379;
    CURLU *u = curl_url();
    if (!u)
        return error_set(EXIT_INTERNAL, "--redis: out of memory");
    int rc = 0;
    char *scheme = NULL, *host = NULL, *port = NULL, *password = NULL, *path = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        strcmp(scheme, "redis") != 0 || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = error_set(EXIT_USAGE, "--redis: expected embedded, off or redis://[:password@]host[:port]");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE) == CURLUE_OK &&
        password[0]) {
        log_redact(password);
        if (strlen(password) >= sizeof out->password) {
            rc = error_set(EXIT_USAGE, "--redis: password longer than %zu bytes",
                           sizeof out->password - 1);
            goto done;
        }
        snprintf(out->password, sizeof out->password, "%s", password);
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
        char *end;
        long p = strtol(port, &end, 10);
        if (*end || p < 1 || p > 65535) {
            rc = error_set(EXIT_USAGE, "--redis: bad port '%s'", port);
            goto done;
        }
        out->port = (int)p;
    }
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && strcmp(path, "/") != 0 &&
        strcmp(path, "/0") != 0) {
        rc = error_set(EXIT_USAGE, "--redis: only database 0 is supported, got '%s'", path);
        goto done;
    }
    // IPv6 literals come back in brackets; hiredis wants them bare.
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
        snprintf(out->host, sizeof out->host, "%.*s", (int)(hl - 2), host + 1);
    else
        snprintf(out->host, sizeof out->host, "%s", host);
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(password);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

// ---- full-jitter backoff ----------------------------------------------------------

void redis_backoff_init(redis_backoff *b, int base_ms, int cap_ms, uint64_t seed) {
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->cap_ms = cap_ms > b->base_ms ? cap_ms : b->base_ms;
    b->attempt = 0;
    // splitmix64 of the seed: neighbouring seeds (pids, clocks) give unrelated streams.
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    b->state = z ? z : 0x2545f4914f6cdd1dull;
}

void redis_backoff_reset(redis_backoff *b) { b->attempt = 0; }

int redis_backoff_ceiling_ms(const redis_backoff *b) {
    long long ceiling = b->base_ms;
    for (int i = 0; i < b->attempt && ceiling < b->cap_ms; i++)
        ceiling *= 2;
    return ceiling < b->cap_ms ? (int)ceiling : b->cap_ms;
}

int redis_backoff_next_ms(redis_backoff *b) {
    int ceiling = redis_backoff_ceiling_ms(b);
    if (b->attempt < 64)
        b->attempt++;
    // xorshift64*: a statistically fine, lock-free generator per client.
    b->state ^= b->state >> 12;
    b->state ^= b->state << 25;
    b->state ^= b->state >> 27;
    uint64_t r = b->state * 0x2545f4914f6cdd1dull;
    return (int)((r >> 11) % ((uint64_t)ceiling + 1));
}

bool redis_reply_is_transient(const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ERROR || !r->str)
        return false;
    static const char *const codes[] = {"LOADING", "READONLY", "MASTERDOWN"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        size_t n = strlen(codes[i]);
        if (strncmp(r->str, codes[i], n) == 0 && (r->str[n] == ' ' || r->str[n] == '\0'))
            return true;
    }
    return false;
}

static uint64_t backoff_seed(const redis_client *rc) {
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    // No entropy yet (early boot): the clock, the process and the client still differ.
    return (uint64_t)timing_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)rc;
}

redis_client *redis_client_new(const redis_endpoint *ep, int retry_ms) {
    redis_client *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->ep = *ep;
    rc->retry_ms = retry_ms;
    rc->command_timeout_ms = DEFAULT_COMMAND_TIMEOUT_MS;
    redis_backoff_init(&rc->backoff, BACKOFF_FIRST_MS, BACKOFF_MAX_MS, backoff_seed(rc));
    return rc;
}

void redis_client_drop(redis_client *rc) {
    if (rc && rc->ctx) {
        redisFree(rc->ctx);
        rc->ctx = NULL;
    }
}

void redis_client_free(redis_client *rc) {
    if (!rc)
        return;
    redis_client_drop(rc);
    memset(rc->ep.password, 0, sizeof rc->ep.password);
    free(rc);
}

void redis_client_set_stop_flag(redis_client *rc, atomic_bool *stop) { rc->stop = stop; }

void redis_client_set_stop_check(redis_client *rc, bool (*should_stop)(void)) {
    rc->should_stop = should_stop;
}

static bool stopping(const redis_client *rc) {
    return (rc->stop && atomic_load(rc->stop)) || (rc->should_stop && rc->should_stop());
}

void redis_client_set_retry_ms(redis_client *rc, int retry_ms) {
    rc->retry_ms = retry_ms > 0 ? retry_ms : 0;
}


void redis_client_set_command_timeout(redis_client *rc, int timeout_ms) {
    rc->command_timeout_ms = timeout_ms;
    if (rc->ctx)
        redisSetTimeout(rc->ctx, timeval_ms(timeout_ms));
}

redisContext *redis_client_context(redis_client *rc) { return rc->ctx; }

long redis_client_reconnects(const redis_client *rc) { return rc->reconnects; }

long long redis_client_last_failure_ms(const redis_client *rc) { return rc->last_failure_ms; }

// One connection attempt: connect, timeouts, keep-alive, AUTH, PING. Writes the reason
// of a failure into `why`.
static bool connect_once(redis_client *rc, int timeout_ms, char *why, size_t why_len) {
    redis_client_drop(rc);
    redisContext *c = redisConnectWithTimeout(rc->ep.host, rc->ep.port, timeval_ms(timeout_ms));
    if (!c || c->err) {
        snprintf(why, why_len, "%s", c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return false;
    }
    redisSetTimeout(c, timeval_ms(rc->command_timeout_ms));
    redisEnableKeepAlive(c);
    redisReply *r = rc->ep.password[0] ? redisCommand(c, "AUTH %s", rc->ep.password)
                                       : redisCommand(c, "PING");
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        snprintf(why, why_len, "%s", r ? r->str : c->errstr);
    if (r)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return false;
    }
    rc->ctx = c;
    return true;
}

// The connect timeout of one attempt: never past the window's end (a caller's budget,
// e.g. the heartbeat's, must hold even against an address that drops packets), but
// long enough to complete a handshake. A window of 0 (one try) gets the full timeout.
static int connect_timeout(const redis_client *rc, long long deadline) {
    long long left = deadline - timing_now_ms();
    if (rc->retry_ms == 0 || left >= CONNECT_TIMEOUT_MS)
        return CONNECT_TIMEOUT_MS;
    return left > CONNECT_MIN_MS ? (int)left : CONNECT_MIN_MS;
}

// Sleep between retries: a full-jitter pause, never past the window's end.
static void backoff_sleep(redis_client *rc, long long left) {
    int pause = redis_backoff_next_ms(&rc->backoff);
    timing_sleep_ms(pause < left ? pause : (int)left);
}

static bool wrong_password(const char *why) {
    return strstr(why, "WRONGPASS") || strstr(why, "invalid password") || strstr(why, "NOAUTH");
}

// Connect, retrying with backoff until `deadline` (the caller's window: a command's
// retry does not open a second one here). 0 or EXIT_COORDINATION.
static int connect_until(redis_client *rc, long long deadline) {
    if (rc->ctx)
        return 0;
    char why[256] = "";
    for (;;) {
        if (connect_once(rc, connect_timeout(rc, deadline), why, sizeof why)) {
            // One line per client and outage, at debug level: the heartbeat thread logs
            // the outage itself once (redis_lost / redis_back), whatever the clients.
            if (rc->was_connected) {
                rc->reconnects++;
                log_debug("redis_reconnected", "%s:%d", rc->ep.host, rc->ep.port);
            }
            rc->was_connected = true;
            return 0;
        }
        rc->last_failure_ms = timing_now_ms();
        if (wrong_password(why)) // will not fix itself
            break;
        long long left = deadline - timing_now_ms();
        if (left <= 0 || stopping(rc))
            break;
        backoff_sleep(rc, left);
    }
    return error_set(EXIT_COORDINATION, "redis %s:%d unreachable: %s", rc->ep.host,
                     rc->ep.port, why);
}

int redis_client_connect(redis_client *rc) {
    int code = connect_until(rc, timing_now_ms() + rc->retry_ms);
    if (code == 0)
        redis_backoff_reset(&rc->backoff);
    return code;
}

// Send through `send` until a reply arrives or the retry window closes.
// A transient reply drops the connection too: after a failover the primary's DNS name
// points to the promoted replica, and only a new connection resolves it again. The
// backoff grows across reconnections and is reset by an answer only, so a replica that
// keeps saying READONLY is not asked again every few milliseconds.
static redisReply *command_with_retry(redis_client *rc, redisReply *(*send)(redis_client *, void *),
                                      void *arg) {
    long long deadline = timing_now_ms() + rc->retry_ms;
    char transient[160] = "";
    for (;;) {
        if (connect_until(rc, deadline) != 0) {
            transient[0] = '\0'; // the reason is now the connect's (error_set by it)
        } else {
            redisReply *r = send(rc, arg);
            if (r && !redis_reply_is_transient(r)) {
                redis_backoff_reset(&rc->backoff);
                return r;
            }
            if (r) {
                snprintf(transient, sizeof transient, "%s", r->str);
                log_debug("redis_busy", "%s:%d: %s; retrying", rc->ep.host, rc->ep.port, r->str);
                freeReplyObject(r);
            } else {
                log_debug("redis_connection_lost", "%s:%d: %s", rc->ep.host, rc->ep.port,
                          rc->ctx->errstr);
            }
            rc->last_failure_ms = timing_now_ms();
            redis_client_drop(rc);
        }
        long long left = deadline - timing_now_ms();
        if (left <= 0 || stopping(rc))
            break;
        backoff_sleep(rc, left);
    }
    if (transient[0])
        error_set(EXIT_COORDINATION, "redis %s:%d: %s", rc->ep.host, rc->ep.port, transient);
    else if (error_code() != EXIT_COORDINATION)
        error_set(EXIT_COORDINATION, "redis %s:%d unreachable", rc->ep.host, rc->ep.port);
    return NULL;
}

typedef struct {
    const char *fmt;
    va_list *ap;
} fmt_args;

static redisReply *send_fmt(redis_client *rc, void *arg) {
    fmt_args *a = arg;
    va_list copy;
    va_copy(copy, *a->ap);
    redisReply *r = redisvCommand(rc->ctx, a->fmt, copy);
    va_end(copy);
    return r;
}

redisReply *redis_client_command(redis_client *rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fmt_args a = {fmt, &ap};
    redisReply *r = command_with_retry(rc, send_fmt, &a);
    va_end(ap);
    return r;
}

typedef struct {
    int argc;
    const char **argv;
    const size_t *lens;
} argv_args;

static redisReply *send_argv(redis_client *rc, void *arg) {
    argv_args *a = arg;
    return redisCommandArgv(rc->ctx, a->argc, a->argv, a->lens);
}

redisReply *redis_client_argv(redis_client *rc, int argc, const char **argv,
                              const size_t *lens) {
    argv_args a = {argc, argv, lens};
    return command_with_retry(rc, send_argv, &a);
}

int redis_client_ok(redis_client *rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fmt_args a = {fmt, &ap};
    redisReply *r = command_with_retry(rc, send_fmt, &a);
    va_end(ap);
    if (!r)
        return EXIT_COORDINATION;
    int rc_code = 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc_code = error_set(EXIT_COORDINATION, "redis: %s", r->str);
    freeReplyObject(r);
    return rc_code;
}
