#pragma once
// The embedded redis-server of the main node (DESIGN §6): `redis-server` from PATH,
// configured through its stdin (so the password never shows in `ps`), no persistence
// (`save ""`, `appendonly no`), supervised by a thread that starts it again when it
// dies, stopped at exit.

// Start redis-server bound to `bind` (space-separated addresses) on `port` with
// `password` (required), wait until it answers, start the supervising thread.
// Returns 0 or EXIT_COORDINATION (error_set) when it cannot start.
int redis_server_start(const char *bind, int port, const char *password);
// Stop the supervisor and the server (SIGTERM, then SIGKILL after 2 s). Idempotent,
// async-signal-unsafe; safe to call at exit.
void redis_server_stop(void);
// The server's current process id (0 when not running); tests kill it.
int redis_server_pid(void);
// How many times the supervisor started it again.
int redis_server_restarts(void);
