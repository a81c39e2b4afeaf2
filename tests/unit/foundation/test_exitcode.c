// The exit-code table (DESIGN §3) and runner_exit(): hooks LIFO, each once, final line.
#include "check.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int order[8], order_count;
static int pipe_fd;

static void hook_a(void) {
    order[order_count++] = 1;
    dprintf(pipe_fd, "hook a\n");
}
static void hook_b(void) {
    order[order_count++] = 2;
    dprintf(pipe_fd, "hook b\n");
}
static void hook_reenter(void) {
    dprintf(pipe_fd, "hook reenter\n");
    runner_exit(EXIT_BAD_INPUT, "from a hook"); // must not run hooks twice
}

// runner_exit() in a child; returns its exit status and what it wrote.
static int child_exit(int code, const char *reason, bool reenter, char *out, size_t size) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        pipe_fd = fds[1];
        log_set_fd(fds[1]);
        log_init(LOG_FORMAT_TEXT, LOG_INFO); // the exit line is JSON anyway
        runner_on_exit(hook_a);
        if (reenter) runner_on_exit(hook_reenter);
        runner_on_exit(hook_b);
        error_set(EXIT_OUTPUT, "cannot write /out/x");
        runner_exit(code, reason);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out + len, size - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(void) {
    int n;
    const exit_code_info *table = exitcode_table(&n);
    CHECK_INT(n, 14);
    static const struct {
        int code;
        const char *name;
        bool retry;
    } DESIGN[] = {{0, "OK", false},        {1, "INTERNAL", false},     {2, "USAGE", false},
                  {3, "BAD_INPUT", false}, {4, "OUTPUT", false},       {5, "RESOURCES", false},
                  {6, "GPU_OOM", false},   {7, "DIVERGED", false},     {9, "LEARNED_NOTHING", false},
                  {80, "INTERRUPTED", true},
                  {81, "GPU_FAULT", true}, {82, "COORDINATION", true}, {83, "PEER_LOST", true},
                  {84, "REMOTE_IO", true}};
    for (int i = 0; i < n && i < 14; i++) {
        CHECK_INT(table[i].code, DESIGN[i].code);
        CHECK_STR(table[i].name, DESIGN[i].name);
        CHECK_INT(table[i].retry, DESIGN[i].retry);
        // Retryable codes share the decade 80-89 (one evaluateOnExit "8*" entry).
        CHECK_INT(table[i].retry, table[i].code >= 80 && table[i].code <= 89);
        // And no code that ends the job may match that entry's pattern ("8" does).
        if (!table[i].retry) CHECK(table[i].code != 8 && table[i].code / 10 != 8);
    }
    CHECK_STR(exitcode_name(83), "PEER_LOST");
    CHECK_STR(exitcode_name(42), "INTERNAL");
    CHECK(exitcode_lookup(137) == NULL);

    char out[4096];
    CHECK_INT(child_exit(EXIT_INTERRUPTED, "SIGTERM: checkpoint written", false, out, sizeof out),
              80);
    // b registered last runs first; the exit line comes after the hooks, as JSON.
    const char *a = strstr(out, "hook a"), *b = strstr(out, "hook b"),
               *line = strstr(out, "{\"ts\"");
    CHECK(a && b && line && b < a && a < line);
    CHECK(strstr(out, "\"event\":\"exit\",\"code\":80,\"name\":\"INTERRUPTED\","
                      "\"reason\":\"SIGTERM: checkpoint written\"") != NULL);

    // no reason: the error message of the same code, else the code's meaning
    CHECK_INT(child_exit(EXIT_OUTPUT, NULL, false, out, sizeof out), 4);
    CHECK(strstr(out, "\"reason\":\"cannot write /out/x\"") != NULL);
    CHECK_INT(child_exit(EXIT_RESOURCES, "", false, out, sizeof out), 5);
    CHECK(strstr(out, "\"reason\":\"the job definition gives too little") != NULL);

    // a hook that exits itself: every hook still runs once, one exit line, its code
    CHECK_INT(child_exit(EXIT_OK, "done", true, out, sizeof out), 3);
    CHECK(strstr(out, "hook b") && strstr(out, "hook a") && strstr(out, "hook reenter"));
    CHECK(strstr(strstr(out, "hook a") + 1, "hook a") == NULL);
    CHECK(strstr(out, "\"event\":\"exit\"") &&
          !strstr(strstr(out, "\"event\":\"exit\"") + 1, "\"event\":\"exit\""));
    // codes outside 0..255 cannot be an exit status: INTERNAL
    CHECK_INT(child_exit(300, "odd", false, out, sizeof out), 1);
    return check_summary();
}
