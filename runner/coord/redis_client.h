#pragma once
// A Redis connection that survives the server: hiredis 0.14 context with connect and
// command timeouts and TCP keep-alive, AUTH on every (re)connect, and reconnection with
// exponential backoff (a hiredis context is dead after an I/O error). One client per
// thread: hiredis contexts are not thread-safe.
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum { REDIS_HOST_MAX = 256, REDIS_PASSWORD_MAX = 256 };

typedef struct {
    char host[REDIS_HOST_MAX];
    int port;
    char password[REDIS_PASSWORD_MAX]; // "" = no AUTH
} redis_endpoint;

typedef struct redis_client redis_client;

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
// returned as is (the server answered). On connection failure the client reconnects
// with backoff for up to retry_ms and sends the command again. Returns NULL with
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
// Convenience: run a command whose reply should be a status/integer/string and check
// it is not an error; 0 or EXIT_COORDINATION.
int redis_client_ok(redis_client *rc, const char *fmt, ...);
