#pragma once
// A Redis connection that survives the server: hiredis 0.14 context with connect and
// command timeouts and TCP keep-alive, AUTH on every (re)connect, and reconnection with
// full-jitter exponential backoff (a hiredis context is dead after an I/O error). A
// server that answers LOADING, READONLY or MASTERDOWN (restarting, or a replica during
// a failover) is retried like a dropped connection. One client per thread: hiredis
// contexts are not thread-safe.
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { REDIS_HOST_MAX = 256, REDIS_PASSWORD_MAX = 256 };

typedef struct {
    char host[REDIS_HOST_MAX];
    int port;
    char password[REDIS_PASSWORD_MAX]; // "" = no AUTH
} redis_endpoint;

typedef struct redis_client redis_client;

// Full-jitter exponential backoff: the pause before retry n (from 0) is drawn uniformly
// from [0, min(cap_ms, base_ms * 2^n)]. Random pauses keep the clients of many nodes
// and workers from reconnecting in lock-step when a Redis comes back; the cap bounds
// how long a client sleeps past the server's return. Each client has its own state.
typedef struct {
    int base_ms, cap_ms;
    int attempt;    // retries since the last reset
    uint64_t state; // xorshift64* state, never 0
} redis_backoff;
void redis_backoff_init(redis_backoff *b, int base_ms, int cap_ms, uint64_t seed);
// The next pause in ms (and one more attempt counted).
int redis_backoff_next_ms(redis_backoff *b);
// The ceiling of the next pause: min(cap_ms, base_ms * 2^attempt).
int redis_backoff_ceiling_ms(const redis_backoff *b);
void redis_backoff_reset(redis_backoff *b);

// True for an error reply that says "not now" rather than "no": LOADING (the server is
// loading its data set), READONLY (a replica, e.g. the old primary right after a
// failover: the DNS name points to the new one), MASTERDOWN (a replica cut off from
// its primary). The command was not run; the client reconnects and sends it again.
bool redis_reply_is_transient(const redisReply *r);

// Parse "redis://[[user]:password@]host[:port][/db]" (db must be 0) into `out`; the
// password is registered with log_redact(). Returns 0 or EXIT_USAGE with error_set().
int redis_endpoint_parse(const char *url, redis_endpoint *out);

// A client for `ep` (copied). Connects lazily, on the first command.
// `retry_ms`: how long one command keeps reconnecting before it gives up (0 = one try).
// The window covers the whole command, its reconnections included: a connect attempt
// is cut short at the window's end (but given at least 200 ms).
redis_client *redis_client_new(const redis_endpoint *ep, int retry_ms);
// Change the retry window for the next commands (e.g. to what is left of a deadline).
void redis_client_set_retry_ms(redis_client *rc, int retry_ms);
void redis_client_free(redis_client *rc);
// Commands give up early (between retries) once *stop becomes true (may be NULL).
void redis_client_set_stop_flag(redis_client *rc, atomic_bool *stop);
// The same with a function (e.g. "a stop was requested"); may be NULL.
void redis_client_set_stop_check(redis_client *rc, bool (*should_stop)(void));
// Socket read/write timeout of one command (default 5000 ms); for blocking commands.
void redis_client_set_command_timeout(redis_client *rc, int timeout_ms);

// Run a command (printf-like, as redisCommand). A reply of type REDIS_REPLY_ERROR is
// returned as is (the server answered), except the transient ones above. On connection
// failure or a transient reply the client reconnects with backoff for up to retry_ms
// and sends the command again (a command whose reply was lost with the connection may
// thus run twice: callers make their writes idempotent). Returns NULL with
// error_set(EXIT_COORDINATION, ...) when Redis stayed unreachable. Free with
// freeReplyObject().
redisReply *redis_client_command(redis_client *rc, const char *fmt, ...);
// The same with an argument vector (binary-safe values).
redisReply *redis_client_argv(redis_client *rc, int argc, const char **argv,
                              const size_t *lens);
// Connect now (with the retry policy: one window of retry_ms); 0 or EXIT_COORDINATION.
int redis_client_connect(redis_client *rc);
// The live hiredis context for a subscriber loop (NULL when disconnected); after an
// I/O error on it call redis_client_drop().
redisContext *redis_client_context(redis_client *rc);
void redis_client_drop(redis_client *rc);
// How many times this client connected again after losing its connection (a server
// restart shows here even when the retried command succeeded).
long redis_client_reconnects(const redis_client *rc);
// timing_now_ms() of this client's latest failure (a connect that failed, a connection
// lost, a transient error reply); 0 when it never failed. A caller can tell from it
// how long Redis has answered without interruption.
long long redis_client_last_failure_ms(const redis_client *rc);
// Convenience: run a command whose reply should be a status/integer/string and check
// it is not an error; 0 or EXIT_COORDINATION.
int redis_client_ok(redis_client *rc, const char *fmt, ...);
