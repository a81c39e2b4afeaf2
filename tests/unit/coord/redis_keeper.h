#pragma once
// Shared by the coordination tests that fork ranks: a free loopback port, and the
// embedded redis-server run by a separate "keeper" process.
//
// Why a keeper: redis_server_start() leaves a supervising thread in the calling process,
// and a test that then fork()s ranks forks a multi-threaded process. GCC 12's
// AddressSanitizer takes no allocator lock around fork(): in CI all three Gloo ranks of
// test_collectives once hung on an allocator lock inherited held (2 of 15 runs under
// load, here), forked just after the supervising thread had been started. The product
// forks nothing (its workers are programs of their own, runner/worker.h); tests that
// fork ranks keep their own process single-threaded when they fork, so a rank's fate
// depends on nothing but the code under test.
#include "runner/coord/redis_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// A port the kernel just handed out on loopback (closed again: a small race with other
// programs, acceptable in tests).
static inline int test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static pid_t redis_keeper_pid = -1;
static int redis_keeper_fd = -1;     // write end: closing it tells the keeper to stop
static int redis_keeper_server = -1; // the redis-server process it started first

// What the keeper reports once the server answers (or failed to start).
typedef struct {
    int code;   // redis_server_start()'s result
    int server; // redis_server_pid(): a test may kill it to see the keeper restart it
} redis_keeper_report;

// Fork the keeper, which starts redis-server on 127.0.0.1:port with `password` and
// reports its result; returns redis_server_start()'s code (0 when the server answers).
static inline int redis_keeper_start(int port, const char *password) {
    int ready[2], hold[2];
    if (pipe(ready) != 0) return -1;
    if (pipe(hold) != 0) {
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        redis_keeper_report report = {.code = redis_server_start("127.0.0.1", port, password)};
        report.server = redis_server_pid();
        ssize_t ignored = write(ready[1], &report, sizeof report);
        (void)ignored;
        close(ready[1]);
        char byte;
        while (read(hold[0], &byte, 1) > 0) {
        }
        redis_server_stop();
        fflush(NULL);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    redis_keeper_report report = {.code = -1};
    ssize_t got = read(ready[0], &report, sizeof report);
    close(ready[0]);
    redis_keeper_pid = pid;
    redis_keeper_fd = hold[1];
    redis_keeper_server = report.server;
    return got == (ssize_t)sizeof report ? report.code : -1;
}

// Stop the server and wait for the keeper.
static inline void redis_keeper_stop(void) {
    if (redis_keeper_pid <= 0) return;
    close(redis_keeper_fd);
    int status;
    waitpid(redis_keeper_pid, &status, 0);
    redis_keeper_pid = -1;
    redis_keeper_fd = -1;
}
