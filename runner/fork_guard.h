#pragma once
// Fork safety for the supervisor's background threads.
//
// The supervisor forks its workers while
// threads of its own run: the telemetry reader, coordination's heartbeat, control and
// metrics fan-in, the spot watcher and the Step Functions heartbeat. A child inherits
// every lock as it was at fork(): a lock that one of those threads held (in curl, in
// OpenSSL, in hiredis's allocations, in an allocator that takes no lock around fork, as
// GCC 12's AddressSanitizer does not) stays held forever in the child.
//
// So each background thread brackets the stretches where it may allocate or take a
// library's lock with fork_guard_enter()/fork_guard_leave(), and fork() (through the
// pthread_atfork handler) waits until no thread is inside one. Rules that keep this
// free of deadlocks: a thread never forks inside a guarded stretch, and never waits in
// one for the thread that forks. Blocking waits (sleep, poll, a Redis BLOCK read) stay
// outside where they can, so a fork waits at most for one request.
//
// libmicrohttpd's own threads are outside this scheme (their allocations happen inside
// the library); a request that arrives in the instant of a worker's fork is the one
// remaining case, and only a sanitizer build is exposed to it.
#include <pthread.h>

// Install the pthread_atfork handlers (idempotent, thread-safe). `child` (may be NULL)
// runs in a forked child, to forget threads that do not exist there; up to 8 hooks.
void fork_guard_install(void (*child)(void));
// Bracket a stretch of a background thread that may allocate or take a library's lock.
// Not recursive: a guarded stretch never enters another.
void fork_guard_enter(void);
void fork_guard_leave(void);
// pthread_create that returns only once the new thread runs `main`: the thread's start-up
// inside the C library and the sanitizer runtime (which allocates and takes their locks)
// is over before the caller can fork. Installs the guard. Returns pthread_create's result.
int fork_guard_thread_start(pthread_t *thread, void *(*main)(void *), void *arg);
