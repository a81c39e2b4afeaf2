// collective_store_ops over Redis (see coord_store.h).
#include "runner/coord/coord_store.h"

#include "runner/coord/coord_internal.h"
#include "runner/error.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    STORE_RETRY_MS = 10000,
    STORE_KEY_TTL_S = 24 * 3600,
    STORE_GET_WAIT_MS = 30000, // gloo::rendezvous::Store::kDefaultTimeout
    WAIT_POLL_MAX_MS = 100,
};

typedef struct {
    redis_client *rc;
    pthread_mutex_t lock; // a hiredis context is not thread-safe
    // How long get waits for a key: the timeout of the last wait. Gloo's get takes none,
    // but always follows a wait that carries the group's (connectFullMesh, and
    // collective_store_fetch); before any wait, Gloo's default.
    int get_timeout_ms;
} redis_store;

// When a wait of `timeout_ms` from now ends; 0 for no end (Gloo's kNoTimeout is 0).
static long long wait_deadline(int timeout_ms) {
    return timeout_ms > 0 ? timing_now_ms() + timeout_ms : 0;
}

// 0 while a wait may go on; else the exit code (with error_set) of why it ends: its
// deadline passed, or a stop was requested (the only end of a wait without a limit).
static int wait_ended(long long deadline, const char *what, const char *key, int timeout_ms) {
    if (deadline == 0)
        return signals_stop_requested()
                   ? error_set(EXIT_INTERRUPTED, "store %s %s: stop requested", what, key)
                   : 0;
    if (timing_now_ms() < deadline)
        return 0;
    return error_set(EXIT_COORDINATION, "store %s: %s not set within %d ms", what, key,
                     timeout_ms);
}

static void poll_sleep(int *poll_ms) {
    timing_sleep_ms(*poll_ms);
    *poll_ms = *poll_ms * 2 > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS : *poll_ms * 2;
}

static int store_set(void *ctx, const char *key, const void *data, size_t len) {
    redis_store *s = ctx;
    const char *argv[] = {"SET", key, data, "EX", "86400"};
    size_t lens[] = {3, strlen(key), len, 2, 5};
    _Static_assert(STORE_KEY_TTL_S == 86400, "the EX argument spells the TTL");
    pthread_mutex_lock(&s->lock);
    redisReply *r = redis_client_argv(s->rc, 5, argv, lens);
    pthread_mutex_unlock(&s->lock);
    if (!r)
        return EXIT_COORDINATION;
    int code = r->type == REDIS_REPLY_ERROR
                   ? error_set(EXIT_COORDINATION, "store set %s: %s", key, r->str)
                   : 0;
    freeReplyObject(r);
    return code;
}

// Copy a string reply into a malloc'd buffer.
static int copy_value(const redisReply *r, const char *key, void **data, size_t *len) {
    *data = malloc(r->len ? r->len : 1);
    if (!*data)
        return error_set(EXIT_RESOURCES, "store get %s: out of memory", key);
    memcpy(*data, r->str, r->len);
    *len = r->len;
    return 0;
}

static int store_get(void *ctx, const char *key, void **data, size_t *len) {
    redis_store *s = ctx;
    *data = NULL;
    *len = 0;
    // Gloo reads other ranks' keys without waiting first: get blocks until the key
    // exists, as Gloo's own stores do, for as long as the caller's last wait would.
    pthread_mutex_lock(&s->lock);
    int timeout_ms = s->get_timeout_ms;
    pthread_mutex_unlock(&s->lock);
    long long deadline = wait_deadline(timeout_ms);
    int poll_ms = 5, code = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        redisReply *r = redis_client_command(s->rc, "GET %s", key);
        pthread_mutex_unlock(&s->lock);
        if (!r)
            return EXIT_COORDINATION;
        if (r->type == REDIS_REPLY_STRING)
            code = copy_value(r, key, data, len);
        else if (r->type != REDIS_REPLY_NIL)
            code = error_set(EXIT_COORDINATION, "store get %s: bad reply", key);
        else
            code = wait_ended(deadline, "get", key, timeout_ms);
        bool done = r->type != REDIS_REPLY_NIL || code;
        freeReplyObject(r);
        if (done)
            return code;
        poll_sleep(&poll_ms);
    }
}

static int store_wait(void *ctx, const char *const *keys, size_t n, int timeout_ms) {
    redis_store *s = ctx;
    if (n == 0)
        return 0;
    const char **argv = malloc((n + 1) * sizeof *argv);
    size_t *lens = malloc((n + 1) * sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return error_set(EXIT_RESOURCES, "store wait: out of memory");
    }
    argv[0] = "EXISTS";
    lens[0] = 6;
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = keys[i];
        lens[i + 1] = strlen(keys[i]);
    }
    pthread_mutex_lock(&s->lock);
    s->get_timeout_ms = timeout_ms;
    pthread_mutex_unlock(&s->lock);
    long long deadline = wait_deadline(timeout_ms);
    int poll_ms = 5, code = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        redisReply *r = redis_client_argv(s->rc, (int)n + 1, argv, lens);
        pthread_mutex_unlock(&s->lock);
        if (!r) {
            code = EXIT_COORDINATION;
            break;
        }
        bool all = r->type == REDIS_REPLY_INTEGER && r->integer == (long long)n;
        // An error reply will not turn into the keys: do not poll it (without a limit,
        // for ever).
        if (r->type == REDIS_REPLY_ERROR)
            code = error_set(EXIT_COORDINATION, "store wait %s: %s", keys[0], r->str);
        freeReplyObject(r);
        if (all || code || (code = wait_ended(deadline, "wait", keys[0], timeout_ms)))
            break;
        poll_sleep(&poll_ms);
    }
    free(argv);
    free(lens);
    return code;
}

int coord_store_open_endpoint(const redis_endpoint *ep, collective_store_ops *out) {
    memset(out, 0, sizeof *out);
    redis_store *s = calloc(1, sizeof *s);
    if (!s)
        return error_set(EXIT_RESOURCES, "store: out of memory");
    s->rc = redis_client_new(ep, STORE_RETRY_MS);
    if (!s->rc) {
        free(s);
        return error_set(EXIT_RESOURCES, "store: out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    s->get_timeout_ms = STORE_GET_WAIT_MS;
    int code = redis_client_connect(s->rc);
    if (code) {
        redis_client_free(s->rc);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return code;
    }
    out->ctx = s;
    out->set = store_set;
    out->get = store_get;
    out->wait = store_wait;
    return 0;
}

int coord_store_open(collective_store_ops *out) {
    const redis_endpoint *ep = coord_endpoint();
    if (!ep)
        return error_set(EXIT_USAGE, "collectives across processes need Redis (--redis off)");
    return coord_store_open_endpoint(ep, out);
}

void coord_store_close(collective_store_ops *ops) {
    redis_store *s = ops->ctx;
    if (!s)
        return;
    redis_client_free(s->rc);
    pthread_mutex_destroy(&s->lock);
    free(s);
    memset(ops, 0, sizeof *ops);
}

void coord_store_prefix(const char *group, char *out, size_t out_len) {
    snprintf(out, out_len, "%scollective:%s:", coord_prefix(), group);
}
