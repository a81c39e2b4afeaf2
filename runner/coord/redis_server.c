// Embedded redis-server: spawn, supervise, stop (see redis_server.h).
#include "runner/coord/redis_server.h"

#include "runner/coord/redis_client.h"
#include "runner/error.h"
#include "runner/log.h"
#include "runner/timing.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { READY_TIMEOUT_MS = 5000, SUPERVISE_PERIOD_MS = 200, STOP_GRACE_MS = 2000 };

extern char **environ;

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

// The server's environment: only what finding and loading the program needs. The job's
// own environment holds the AWS keys, the Hub token, the control token and the Redis
// password, none of which redis-server has any use for, and a process that holds no
// secret cannot give one away (a Lua sandbox escape, a crash report, a debugger).
static const char *const SERVER_ENV[] = {"PATH", "LD_LIBRARY_PATH", "HOME", "TZ", "LANG",
                                         "LC_ALL"};
enum { SERVER_ENV_COUNT = sizeof SERVER_ENV / sizeof SERVER_ENV[0] };

static void server_environment(char *envp[SERVER_ENV_COUNT + 1]) {
    size_t n = 0;
    for (size_t i = 0; i < SERVER_ENV_COUNT; i++) { // the first of each, as getenv finds
        size_t len = strlen(SERVER_ENV[i]);
        for (char **e = environ; e && *e; e++)
            if (strncmp(*e, SERVER_ENV[i], len) == 0 && (*e)[len] == '=') {
                envp[n++] = *e;
                break;
            }
    }
    envp[n] = NULL;
}

// posix_spawnp `argv` with stdin from `in_fd`, stdout to /dev/null, its own process
// group, default signal dispositions, an empty signal mask and the environment of
// server_environment(). 0 or an errno.
static int spawn_with(char *const argv[], int in_fd, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int err = posix_spawn_file_actions_init(&actions);
    if (err)
        return err;
    if ((err = posix_spawnattr_init(&attr))) {
        posix_spawn_file_actions_destroy(&actions);
        return err;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    short flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    bool ready =
        !(err = posix_spawn_file_actions_adddup2(&actions, in_fd, STDIN_FILENO)) &&
        // Its own log lines are not JSON: keep them out of the job's stdout.
        !(err = posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)) &&
        !(err = posix_spawnattr_setflags(&attr, flags)) &&
        !(err = posix_spawnattr_setpgroup(&attr, 0)) &&
        !(err = posix_spawnattr_setsigmask(&attr, &none)) &&
        !(err = posix_spawnattr_setsigdefault(&attr, &all));
    if (ready) {
        // posix_spawnp searches the caller's PATH; setpriv then finds redis-server on the
        // PATH passed here.
        char *envp[SERVER_ENV_COUNT + 1];
        server_environment(envp);
        err = posix_spawnp(pid, argv[0], &actions, &attr, argv, envp);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return err;
}

// Start redis-server reading its configuration from a pipe on stdin ("redis-server -"),
// so the password never shows in `ps`. posix_spawn, not fork: it execs at once, so the
// server inherits no lock another of our threads held. The server gets its own
// process group (a terminal's ^C or `timeout` hitting the job's group must not take it
// down: the supervisor stops it last) and, through util-linux's setpriv, dies with the
// thread that started it (PDEATHSIG), so a runner killed with SIGKILL leaves no server
// holding the port. Without setpriv on PATH it is started directly, without that.
static int spawn_server(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return error_set(EXIT_COORDINATION, "redis-server: pipe: %s", strerror(errno));
    static char *const with_pdeathsig[] = {"setpriv", "--pdeathsig", "TERM", "--",
                                           "redis-server", "-", NULL};
    static char *const plain[] = {"redis-server", "-", NULL};
    pid_t pid = 0;
    int err = spawn_with(with_pdeathsig, fds[0], &pid);
    if (err == ENOENT)
        err = spawn_with(plain, fds[0], &pid);
    close(fds[0]);
    if (err) {
        close(fds[1]);
        if (err == ENOENT)
            return error_set(EXIT_COORDINATION, "redis-server: not found on PATH");
        return error_set(EXIT_COORDINATION, "redis-server: cannot start: %s", strerror(err));
    }
    char conf[1024];
    int len = snprintf(conf, sizeof conf,
                       "port %d\nbind %s\nrequirepass \"%s\"\nprotected-mode no\n"
                       "save \"\"\nappendonly no\ndaemonize no\nloglevel warning\n"
                       "dir /tmp\ntcp-keepalive 60\n",
                       server.port, server.bind, server.password);
    // A server that failed to exec closed the pipe: EPIPE, not a SIGPIPE for us.
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    ssize_t written = write(fds[1], conf, (size_t)len);
    struct timespec no_wait = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &no_wait) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    close(fds[1]);
    memset(conf, 0, sizeof conf);
    atomic_store(&server.pid, (int)pid);
    if (written != len)
        return error_set(EXIT_COORDINATION, "redis-server: cannot pass its configuration "
                                            "(is redis-server on PATH?)");
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

// Wait until the server answers AUTH + PING on loopback, or fail when it exits.
static int wait_ready(void) {
    redis_endpoint ep = {.port = server.port};
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "%s", server.password);
    redis_client *rc = redis_client_new(&ep, 0);
    if (!rc)
        return error_set(EXIT_INTERNAL, "redis-server: out of memory");
    int code = EXIT_COORDINATION;
    for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 20) {
        if (redis_client_ok(rc, "PING") == 0) {
            code = 0;
            break;
        }
        int status = 0;
        pid_t pid = atomic_load(&server.pid);
        if (pid > 0 && server_died(pid, &status)) {
            atomic_store(&server.pid, 0);
            int exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            code = error_set(EXIT_COORDINATION, exit_status == 127
                                 ? "redis-server: not found on PATH"
                                 : "redis-server exited at start (status %d): port %d in use?",
                             exit_status, server.port);
            break;
        }
        timing_sleep_ms(20);
    }
    redis_client_free(rc);
    if (code == EXIT_COORDINATION && error_code() != EXIT_COORDINATION)
        code = error_set(EXIT_COORDINATION, "redis-server on port %d did not answer in %d ms",
                         server.port, READY_TIMEOUT_MS);
    else if (code == 0)
        error_clear();
    return code;
}

static void *supervise(void *arg) {
    (void)arg;
    int backoff = 100;
    while (!atomic_load(&server.stopping)) {
        timing_sleep_ms(SUPERVISE_PERIOD_MS);
        pid_t pid = atomic_load(&server.pid);
        int status = 0;
        if (atomic_load(&server.stopping) || pid <= 0 || !server_died(pid, &status))
            continue;
        atomic_store(&server.pid, 0);
        log_warn("redis_server_died", "pid %d, status %d; starting it again", (int)pid,
                 WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status));
        int code = spawn_server();
        if (code == 0)
            code = wait_ready();
        if (code == 0) {
            atomic_fetch_add(&server.restarts, 1);
            log_info("redis_server_restarted", "port %d, pid %d", server.port,
                     atomic_load(&server.pid));
        } else {
            log_error("redis_server_restart_failed", "%s", error_message());
            error_clear();
        }
        if (code == 0) {
            backoff = 100;
        } else {
            timing_sleep_ms(backoff);
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
            timing_sleep_ms(20);
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
