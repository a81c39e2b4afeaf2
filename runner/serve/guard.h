#pragma once
// The connection guard of the HTTP servers (guard.c): the request deadline
// (SERVE_REQUEST_TIMEOUT_S), the cap on event streams (SERVE_STREAM_LIMIT) and the
// counts /metrics shows. libmicrohttpd calls serve_guard_notify on every connection's
// start and end (MHD_OPTION_NOTIFY_CONNECTION, cls = the serve_server); the request
// handler calls the others. Not for use outside runner/serve/.
#include "runner/serve/serve_internal.h"

#include <microhttpd.h>
#include <stdbool.h>

// Start and stop the watchdog thread that closes connections past their deadline.
// 0, or EXIT_INTERNAL with error_set().
int serve_guard_start(void);
void serve_guard_stop(void);
void serve_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe);
// The request is complete (or already answered): no deadline while it is served.
void serve_guard_request_received(struct MHD_Connection *c);
// The answer is sent: a kept-alive connection's next request has its own deadline.
void serve_guard_request_done(struct MHD_Connection *c);
// Whether an event stream may open (false: SERVE_STREAM_LIMIT streams are open; the
// refusal is counted). Each true is paired with one serve_guard_stream_closed.
bool serve_guard_stream_open(serve_server which);
void serve_guard_stream_closed(serve_server which);

typedef struct {
    unsigned connections[SERVE_COUNT], streams[SERVE_COUNT];
    unsigned long long timed_out[SERVE_COUNT], streams_refused[SERVE_COUNT];
} serve_guard_counts;
void serve_guard_counts_get(serve_guard_counts *out);
