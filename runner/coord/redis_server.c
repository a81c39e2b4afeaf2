// Embedded redis-server: spawn, supervise, stop (see redis_server.h).
#include "runner/coord/redis_server.h"

#include "runner/coord/redis_client.h"
#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { READY_TIMEOUT_MS = 5000, SUPERVISE_PERIOD_MS = 200, STOP_GRACE_MS = 2000 };

static struct {
    char bind[128];
    int port;
    char password[REDIS_PASSWORD_MAX];
    atomic_int pid;
    atomic_int restarts;
    atomic_bool stopping;
    bool thread_running;
    pthread_t thread;
} server;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// Spawn redis-server reading its configuration from a pipe on stdin ("redis-server -").
static int spawn_server(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return error_set(EXIT_COORDINATION, "redis-server: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);
    // Its own log lines are not JSON: keep them out of the job's stdout.
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Default signal dispositions and an empty mask, whatever the supervisor blocked.
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"redis-server", "-", NULL};
    pid_t pid;
    int err = posix_spawnp(&pid, "redis-server", &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(fds[0]);
    if (err != 0) {
        close(fds[1]);
        return error_set(EXIT_COORDINATION, "redis-server: cannot start (%s); is it on PATH?",
                         strerror(err));
    }
    char conf[1024];
    int len = snprintf(conf, sizeof conf,
                       "port %d\nbind %s\nrequirepass \"%s\"\nprotected-mode no\n"
                       "save \"\"\nappendonly no\ndaemonize no\nloglevel warning\n"
                       "dir /tmp\ntcp-keepalive 60\n",
                       server.port, server.bind, server.password);
    ssize_t written = write(fds[1], conf, (size_t)len);
    close(fds[1]);
    memset(conf, 0, sizeof conf);
    atomic_store(&server.pid, (int)pid);
    if (written != len)
        return error_set(EXIT_COORDINATION, "redis-server: cannot pass its configuration");
    return 0;
}

// Wait until the server answers AUTH + PING on loopback or exits.
static int wait_ready(void) {
    redis_endpoint ep = {.port = server.port};
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "%s", server.password);
    redis_client *rc = redis_client_new(&ep, READY_TIMEOUT_MS);
    if (!rc)
        return error_set(EXIT_INTERNAL, "redis-server: out of memory");
    int code = redis_client_ok(rc, "PING");
    redis_client_free(rc);
    if (code != 0) {
        int status;
        pid_t pid = atomic_load(&server.pid);
        if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
            atomic_store(&server.pid, 0);
            return error_set(EXIT_COORDINATION,
                             "redis-server exited at start (status %d): port %d in use?",
                             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                             server.port);
        }
        return error_set(EXIT_COORDINATION, "redis-server on port %d did not answer in %d ms",
                         server.port, READY_TIMEOUT_MS);
    }
    return 0;
}

// True when the server process is gone (reaped here, or by someone else's waitpid).
static bool server_died(pid_t pid, int *status) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
        return true;
    if (r < 0 && errno == ECHILD) {
        *status = 0;
        return kill(pid, 0) != 0;
    }
    return false;
}

static void *supervise(void *arg) {
    (void)arg;
    int backoff = 100;
    while (!atomic_load(&server.stopping)) {
        sleep_ms(SUPERVISE_PERIOD_MS);
        pid_t pid = atomic_load(&server.pid);
        int status = 0;
        if (atomic_load(&server.stopping) || pid <= 0 || !server_died(pid, &status))
            continue;
        atomic_store(&server.pid, 0);
        log_warn("redis_server_died", "pid %d, status %d; starting it again", (int)pid,
                 WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
        if (spawn_server() == 0 && wait_ready() == 0) {
            atomic_fetch_add(&server.restarts, 1);
            log_info("redis_server_restarted", "port %d, pid %d", server.port,
                     atomic_load(&server.pid));
            backoff = 100;
        } else {
            log_error("redis_server_restart_failed", "%s", error_message());
            error_clear();
            sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        }
    }
    return NULL;
}

int redis_server_start(const char *bind, int port, const char *password) {
    if (atomic_load(&server.pid) > 0)
        return 0;
    memset(&server, 0, sizeof server);
    snprintf(server.bind, sizeof server.bind, "%s", bind);
    server.port = port;
    snprintf(server.password, sizeof server.password, "%s", password);
    int code = spawn_server();
    if (code == 0)
        code = wait_ready();
    if (code != 0) {
        redis_server_stop();
        return code;
    }
    if (pthread_create(&server.thread, NULL, supervise, NULL) != 0) {
        redis_server_stop();
        return error_set(EXIT_INTERNAL, "redis-server: cannot start its supervisor thread");
    }
    server.thread_running = true;
    log_info("redis_server_started", "bind %s, port %d, pid %d", server.bind, server.port,
             atomic_load(&server.pid));
    return 0;
}

void redis_server_stop(void) {
    atomic_store(&server.stopping, true);
    if (server.thread_running) {
        pthread_join(server.thread, NULL);
        server.thread_running = false;
    }
    pid_t pid = atomic_exchange(&server.pid, 0);
    if (pid > 0) {
        kill(pid, SIGTERM);
        int status;
        for (int waited = 0; waited < STOP_GRACE_MS; waited += 20) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD && kill(pid, 0) != 0)) {
                pid = 0;
                break;
            }
            sleep_ms(20);
        }
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        log_info("redis_server_stopped", "port %d", server.port);
    }
    memset(server.password, 0, sizeof server.password);
}

int redis_server_pid(void) { return atomic_load(&server.pid); }

int redis_server_restarts(void) { return atomic_load(&server.restarts); }
