// The connection guard (see guard.h).
//
// libmicrohttpd closes a connection only when it has been idle for its timeout, and every
// byte received restarts that timer: a client sending its request a byte every few
// seconds ("slowloris"), or a request body likewise, would keep a connection, and on the
// API and dashboard servers a thread, for as long as it likes; enough of them fill the
// connection limit. The library has no deadline for a whole request, so this file keeps
// one per connection: set when the connection is accepted (SERVE_REQUEST_TIMEOUT_S) and
// after each answer on a kept-alive connection (SERVE_CONNECTION_TIMEOUT_S, what the idle
// timeout gives an idle connection anyway), cleared once the request is complete. A
// watchdog thread shuts down (shutdown(2), not close) the socket of a connection past its
// deadline; libmicrohttpd then reads end-of-file and closes the connection itself.
//
// The socket belongs to libmicrohttpd: it closes it only after its "closed"
// notification, which takes this file's lock to unlink the connection, so a socket the
// watchdog shuts down under that lock is still that connection's, never a reused number.
#include "runner/serve/guard.h"

#include "runner/error.h"
#include "runner/log.h"
#include "runner/timing.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

enum {
    WATCH_PERIOD_MS = 250, // deadlines are kept to within this
    TIMEOUT_LOG_MS = 10000, // closed connections: one log line per this, counted
};

typedef struct guard_conn {
    struct guard_conn *prev, *next;
    int fd;
    serve_server which;
    long long deadline_ms; // timing_now_ms() by which the request must be complete; 0: none
    bool shut;             // shut down by the watchdog, waiting for libmicrohttpd to close it
} guard_conn;

static struct {
    pthread_mutex_t lock; // the list, the deadlines and the counts below
    guard_conn *head;
    unsigned connections[SERVE_COUNT];
    unsigned long long timed_out[SERVE_COUNT], streams_refused[SERVE_COUNT];
    atomic_uint streams[SERVE_COUNT];
    pthread_t thread;
    bool running;
    atomic_bool stopping;
} guard = {.lock = PTHREAD_MUTEX_INITIALIZER};

static guard_conn *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static void set_deadline(struct MHD_Connection *c, long long deadline_ms) {
    guard_conn *g = conn_of(c);
    if (!g) return;
    pthread_mutex_lock(&guard.lock);
    g->deadline_ms = deadline_ms;
    pthread_mutex_unlock(&guard.lock);
}

void serve_guard_request_received(struct MHD_Connection *c) { set_deadline(c, 0); }

void serve_guard_request_done(struct MHD_Connection *c) {
    set_deadline(c, timing_now_ms() + SERVE_CONNECTION_TIMEOUT_S * 1000LL);
}

void serve_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
    serve_server which = (serve_server)(intptr_t)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        guard_conn *g = info ? calloc(1, sizeof *g) : NULL;
        // Without memory the connection goes unguarded: the connection limits still hold.
        if (!g) return;
        g->fd = info->connect_fd;
        g->which = which;
        g->deadline_ms = timing_now_ms() + SERVE_REQUEST_TIMEOUT_S * 1000LL;
        pthread_mutex_lock(&guard.lock);
        g->next = guard.head;
        if (guard.head) guard.head->prev = g;
        guard.head = g;
        guard.connections[which]++;
        pthread_mutex_unlock(&guard.lock);
        *socket_context = g;
        return;
    }
    guard_conn *g = *socket_context;
    if (!g) return;
    pthread_mutex_lock(&guard.lock);
    if (g->prev) g->prev->next = g->next;
    else guard.head = g->next;
    if (g->next) g->next->prev = g->prev;
    guard.connections[g->which]--;
    pthread_mutex_unlock(&guard.lock);
    free(g);
    *socket_context = NULL;
}

bool serve_guard_stream_open(serve_server which) {
    if (atomic_fetch_add(&guard.streams[which], 1) < SERVE_STREAM_LIMIT) return true;
    atomic_fetch_sub(&guard.streams[which], 1);
    pthread_mutex_lock(&guard.lock);
    guard.streams_refused[which]++;
    pthread_mutex_unlock(&guard.lock);
    return false;
}

void serve_guard_stream_closed(serve_server which) { atomic_fetch_sub(&guard.streams[which], 1); }

void serve_guard_counts_get(serve_guard_counts *out) {
    pthread_mutex_lock(&guard.lock);
    for (int i = 0; i < SERVE_COUNT; i++) {
        out->connections[i] = guard.connections[i];
        out->timed_out[i] = guard.timed_out[i];
        out->streams_refused[i] = guard.streams_refused[i];
        out->streams[i] = atomic_load(&guard.streams[i]);
    }
    pthread_mutex_unlock(&guard.lock);
}

// Under an attack every closed connection would be a line: one line per TIMEOUT_LOG_MS
// with the count since the last, as control_refused does.
static void log_timeouts(unsigned long closed, long long now, long long *last_ms,
                         unsigned long *unlogged) {
    *unlogged += closed;
    if (*unlogged == 0 || now - *last_ms < TIMEOUT_LOG_MS) return;
    log_warn("http_request_timeout",
             "closed %lu connection(s) that sent no complete request within %d s (since the "
             "last such line)", *unlogged, SERVE_REQUEST_TIMEOUT_S);
    *last_ms = now;
    *unlogged = 0;
}

static void *watch(void *arg) {
    (void)arg;
    long long last_log_ms = LLONG_MIN / 2;
    unsigned long unlogged = 0;
    while (!atomic_load(&guard.stopping)) {
        timing_sleep_ms(WATCH_PERIOD_MS);
        long long now = timing_now_ms();
        unsigned long closed = 0;
        pthread_mutex_lock(&guard.lock);
        for (guard_conn *g = guard.head; g; g = g->next) {
            if (g->shut || g->deadline_ms == 0 || now < g->deadline_ms) continue;
            shutdown(g->fd, SHUT_RDWR);
            g->shut = true;
            guard.timed_out[g->which]++;
            closed++;
        }
        pthread_mutex_unlock(&guard.lock);
        log_timeouts(closed, now, &last_log_ms, &unlogged);
    }
    return NULL;
}

int serve_guard_start(void) {
    if (guard.running) return 0;
    atomic_store(&guard.stopping, false);
    if (pthread_create(&guard.thread, NULL, watch, NULL) != 0)
        return error_set(EXIT_INTERNAL, "HTTP servers: cannot start the connection watchdog");
    guard.running = true;
    return 0;
}

void serve_guard_stop(void) {
    if (!guard.running) return;
    atomic_store(&guard.stopping, true);
    pthread_join(guard.thread, NULL);
    guard.running = false;
}
