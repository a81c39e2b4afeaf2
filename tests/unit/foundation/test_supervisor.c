// Worker results -> the job's exit code, and the signal flags a PID-1 process relies on.
#include "check.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/signals.h"
#include "runner/supervisor.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int exited(int code) {
    return (code & 0xff) << 8; // as waitpid() reports exit(code)
}
static int killed(int sig) {
    return sig & 0x7f;
}

static void test_combine(void) {
    int culprit;
    worker_result all_ok[] = {{exited(0), false}, {exited(0), false}};
    CHECK_INT(supervisor_combine(all_ok, 2, &culprit), EXIT_OK);
    CHECK_INT(culprit, -1);
    worker_result stopped[] = {{exited(80), false}, {exited(80), false}};
    CHECK_INT(supervisor_combine(stopped, 2, &culprit), EXIT_INTERRUPTED);
    worker_result finished_and_stopped[] = {{exited(0), false}, {exited(80), false}};
    CHECK_INT(supervisor_combine(finished_and_stopped, 2, NULL), EXIT_INTERRUPTED);
    // a crash (SIGSEGV, the OOM killer's SIGKILL) is a lost peer, whatever followed
    worker_result crash[] = {{killed(SIGSEGV), false}, {exited(80), false}, {exited(83), false}};
    CHECK_INT(supervisor_combine(crash, 3, &culprit), EXIT_PEER_LOST);
    CHECK_INT(culprit, 0);
    worker_result oom[] = {{exited(80), false}, {killed(SIGKILL), false}};
    CHECK_INT(supervisor_combine(oom, 2, &culprit), EXIT_PEER_LOST);
    CHECK_INT(culprit, 1);
    // a worker's own code, when it was first: its peers' 83 is the consequence
    worker_result bad_input[] = {{exited(3), false}, {exited(83), false}};
    CHECK_INT(supervisor_combine(bad_input, 2, &culprit), EXIT_BAD_INPUT);
    CHECK_INT(culprit, 0);
    worker_result gpu_oom[] = {{exited(0), false}, {exited(6), false}, {killed(SIGABRT), false}};
    CHECK_INT(supervisor_combine(gpu_oom, 3, &culprit), EXIT_GPU_OOM);
    CHECK_INT(culprit, 1);
    // killed by the supervisor after the stop grace: still an interruption
    worker_result late[] = {{exited(80), false}, {killed(SIGKILL), true}};
    CHECK_INT(supervisor_combine(late, 2, &culprit), EXIT_INTERRUPTED);
    CHECK_INT(supervisor_combine(NULL, 0, &culprit), EXIT_OK);
}

static void test_signals(void) {
    signals_install();
    CHECK(!signals_stop_requested());
    CHECK(signals_stop_reason() == NULL);
    CHECK(!signals_take_checkpoint_request());
    raise(SIGUSR1);
    CHECK(signals_take_checkpoint_request());
    CHECK(!signals_take_checkpoint_request()); // taken once
    signals_request_checkpoint();
    CHECK(signals_take_checkpoint_request());
    raise(SIGPIPE); // ignored: a closed socket must not kill the server
    CHECK(!signals_stop_requested());

    // In a child: SIGTERM sets the flag; a second one exits at once with 80 and the line.
    int fds[2];
    CHECK_INT(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        raise(SIGTERM);
        if (!signals_stop_requested() || strcmp(signals_stop_reason(), "SIGTERM") != 0) _exit(10);
        signals_request_stop("later reason"); // the first reason wins
        if (strcmp(signals_stop_reason(), "SIGTERM") != 0) _exit(11);
        raise(SIGINT);
        _exit(12); // not reached
    }
    close(fds[1]);
    char out[1024] = {0};
    ssize_t n = read(fds[0], out, sizeof out - 1);
    (void)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), EXIT_INTERRUPTED);
    cJSON *line = cJSON_Parse(out);
    CHECK(line != NULL);
    if (line) {
        CHECK_STR(cJSON_GetObjectItem(line, "event")->valuestring, "exit");
        CHECK_INT(cJSON_GetObjectItem(line, "code")->valueint, 80);
        CHECK_STR(cJSON_GetObjectItem(line, "name")->valuestring, "INTERRUPTED");
        CHECK(strstr(cJSON_GetObjectItem(line, "reason")->valuestring, "second SIGINT") != NULL);
        CHECK_INT(strlen(cJSON_GetObjectItem(line, "ts")->valuestring), 24);
    }
    cJSON_Delete(line);

    // In a worker (signals_mark_worker) the immediate line is a worker_exit.
    CHECK_INT(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        signals_mark_worker();
        raise(SIGTERM);
        raise(SIGTERM);
        _exit(12);
    }
    close(fds[1]);
    memset(out, 0, sizeof out);
    n = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == EXIT_INTERRUPTED);
    CHECK(strstr(out, "\"event\":\"worker_exit\",\"code\":80") != NULL);

    // stop from code, e.g. a spot notice
    signals_request_stop("spot interruption notice");
    CHECK(signals_stop_requested());
    CHECK_STR(signals_stop_reason(), "spot interruption notice");
}

int main(void) {
    test_combine();
    test_signals();
    cJSON *labels = supervisor_log_labels(2);
    CHECK_INT(cJSON_GetObjectItem(labels, "rank")->valueint, 2);
    cJSON_Delete(labels);
    return check_summary();
}
