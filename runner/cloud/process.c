// credential_process: a profile's command that prints credentials as JSON on stdout,
// the AWS CLI's contract ("Sourcing credentials with an external process"):
//   {"Version": 1, "AccessKeyId": "...", "SecretAccessKey": "...",
//    "SessionToken": "...", "Expiration": "2026-12-07T14:00:00Z"}   (last two optional)
// The command is not given to a shell: botocore splits it with Python's shlex.split on
// POSIX and runs the words (subprocess.Popen without shell=True), so $VAR, ~, globs,
// pipes and ; are not expanded or interpreted, and neither are they here.
// The program is started with posix_spawnp (the runner is multi-threaded: a fork here
// could copy another thread's held lock), in a process group of its own so that a
// timeout kills whatever it started too, with stdin from /dev/null and its stderr
// passed through to ours; its stdout is read here, parsed, and wiped: it is never logged.
#include "runner/cloud/aws.h"

#include "runner/error.h"
#include "runner/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum {
    PROCESS_OUTPUT_MAX = 256 * 1024, // credentials JSON is a few KB; more is not one
    PROCESS_TIMEOUT_DEFAULT_S = 60,
};

// Python's shlex.split in POSIX mode (what botocore uses), with no C library that does
// the same: wordexp(3) expands variables and globs, glib's g_shell_parse_argv treats
// `#` as a comment and `\$` inside double quotes otherwise. The rules, from shlex:
// whitespace separates words; '...' keeps everything literally; "..." keeps everything
// but a backslash escapes `"` and `\` there (before any other character it stays);
// outside quotes a backslash keeps the next character literally. `''` is an empty word.
int aws_command_split(const char *command, char ***out) {
    *out = NULL;
    size_t len = strlen(command);
    // At most len / 2 + 1 words; every word is shorter than the command.
    size_t max_words = len / 2 + 2;
    char **words = calloc(max_words, sizeof *words);
    char *buffer = malloc(len + 1);
    if (!words || !buffer) {
        free(words);
        free(buffer);
        return error_set(EXIT_RESOURCES, "credential_process: out of memory");
    }
    size_t count = 0, used = 0;
    bool in_word = false;
    char quote = 0;
    int rc = 0;
    for (size_t i = 0; i <= len && rc == 0; i++) {
        char c = command[i];
        if (quote == '\'') {
            if (c == '\0') rc = error_set(EXIT_USAGE, "credential_process: no closing quote");
            else if (c == '\'') quote = 0;
            else buffer[used++] = c;
        } else if (quote == '"') {
            if (c == '\0') rc = error_set(EXIT_USAGE, "credential_process: no closing quote");
            else if (c == '"') quote = 0;
            else if (c == '\\' && (command[i + 1] == '"' || command[i + 1] == '\\'))
                buffer[used++] = command[++i];
            else buffer[used++] = c;
        } else if (c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word) {
                buffer[used] = '\0';
                words[count] = strdup(buffer);
                if (!words[count++])
                    rc = error_set(EXIT_RESOURCES, "credential_process: out of memory");
                used = 0;
                in_word = false;
            }
        } else if (c == '\\') {
            if (command[i + 1] == '\0') {
                rc = error_set(EXIT_USAGE, "credential_process: no character after a backslash");
            } else {
                buffer[used++] = command[++i];
                in_word = true;
            }
        } else {
            if (c == '\'' || c == '"') quote = c;
            else buffer[used++] = c;
            in_word = true;
        }
    }
    memset(buffer, 0, len + 1); // arguments may hold what the profile keeps private
    free(buffer);
    if (rc == 0 && count == 0) rc = error_set(EXIT_USAGE, "credential_process is empty");
    if (rc) {
        aws_command_free(words);
        return rc;
    }
    *out = words;
    return 0;
}

void aws_command_free(char **words) {
    if (!words) return;
    for (char **w = words; *w; w++) free(*w);
    free(words);
}

int aws_credentials_from_process_output(const char *text, size_t len, const char *what,
                                        aws_credentials *out) {
    memset(out, 0, sizeof *out);
    cJSON *json = cJSON_ParseWithLength(text, len);
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(json, "Version");
    const cJSON *ak = cJSON_GetObjectItemCaseSensitive(json, "AccessKeyId");
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(json, "SecretAccessKey");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(json, "SessionToken");
    const cJSON *expiration = cJSON_GetObjectItemCaseSensitive(json, "Expiration");
    int rc = 0;
    // The messages name what is wrong, never a value: the output holds the secret.
    if (!cJSON_IsObject(json))
        rc = error_set(EXIT_USAGE, "%s: its output is not a JSON object", what);
    else if (!cJSON_IsNumber(version) || version->valuedouble != 1)
        rc = error_set(EXIT_USAGE, "%s: its output has no \"Version\": 1 (the only version of "
                                   "the AWS CLI's credential_process contract)", what);
    else if (!cJSON_IsString(ak) || !ak->valuestring[0])
        rc = error_set(EXIT_USAGE, "%s: its output has no AccessKeyId", what);
    else if (!cJSON_IsString(sk) || !sk->valuestring[0])
        rc = error_set(EXIT_USAGE, "%s: its output has no SecretAccessKey", what);
    else if (token && !cJSON_IsNull(token) && !cJSON_IsString(token))
        rc = error_set(EXIT_USAGE, "%s: its SessionToken is not a string", what);
    else if (expiration && !cJSON_IsNull(expiration) &&
             !(cJSON_IsString(expiration) && aws_parse_time(expiration->valuestring)))
        rc = error_set(EXIT_USAGE, "%s: its Expiration is not an ISO 8601 time", what);
    else if (strlen(ak->valuestring) >= sizeof out->access_key ||
             strlen(sk->valuestring) >= sizeof out->secret_key ||
             (cJSON_IsString(token) && strlen(token->valuestring) >= sizeof out->token))
        rc = error_set(EXIT_USAGE, "%s: a key or token in its output is too long", what);
    if (rc == 0) {
        aws_copy(out->access_key, sizeof out->access_key, ak->valuestring);
        aws_copy(out->secret_key, sizeof out->secret_key, sk->valuestring);
        if (cJSON_IsString(token)) aws_copy(out->token, sizeof out->token, token->valuestring);
        if (cJSON_IsString(expiration)) out->expiration = aws_parse_time(expiration->valuestring);
    }
    // cJSON's copies of the secrets go back to the allocator: wipe them first.
    if (cJSON_IsString(sk)) memset(sk->valuestring, 0, strlen(sk->valuestring));
    if (cJSON_IsString(token)) memset(token->valuestring, 0, strlen(token->valuestring));
    cJSON_Delete(json);
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long timeout_s(void) {
    const char *v = getenv("RUNNER_AWS_CREDENTIAL_PROCESS_TIMEOUT_S");
    long s = v && *v ? strtol(v, NULL, 10) : 0;
    return s > 0 ? s : PROCESS_TIMEOUT_DEFAULT_S;
}

// Start argv[0] with stdout to `out_fd`. 0 with *pid; errno-style code otherwise.
static int spawn(char **argv, int out_fd, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc) {
        posix_spawn_file_actions_destroy(&actions);
        return rc;
    }
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults); // the runner's handlers and blocked signals are its own
    rc = posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    // Sockets and files of the runner that were opened without O_CLOEXEC stay ours.
    if (!rc) rc = posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
#endif
    if (!rc) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                      POSIX_SPAWN_SETSIGDEF);
    if (!rc) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc) rc = posix_spawnattr_setsigdefault(&attr, &defaults);
    if (!rc) rc = posix_spawnp(pid, argv[0], &actions, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

// Read the child's stdout into out[PROCESS_OUTPUT_MAX + 1] until EOF or the deadline:
// one buffer, never grown, so no copy of the secret is left behind in freed memory.
// 0 at EOF, 1 past the deadline, 2 when the output is over the cap; -1 on a read error.
static int read_output(int fd, char *out, size_t *len, double deadline) {
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) return 1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)(left * 1000) + 1);
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return -1;
        if (ready == 0) continue;
        if (*len > PROCESS_OUTPUT_MAX) return 2;
        ssize_t got = read(fd, out + *len, PROCESS_OUTPUT_MAX + 1 - *len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) return 0;
        *len += (size_t)got;
    }
}

// Wait for the child until the deadline; true with *status when it ended.
static bool wait_until(pid_t pid, int *status, double deadline) {
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return true;
        if (r < 0 && errno != EINTR) return true; // reaped elsewhere: nothing to wait for
        if (now_s() >= deadline) return false;
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

int aws_credential_process(const char *profile, const char *command, aws_credentials *out) {
    memset(out, 0, sizeof *out);
    char **argv = NULL;
    int rc = aws_command_split(command, &argv);
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "%s", error_message());
        return error_set(rc, "AWS profile %s: %s", profile, why);
    }
    // Messages name the program, not its arguments (they may carry an account or a
    // vault path the profile keeps to itself).
    char what[600];
    snprintf(what, sizeof what, "AWS profile %s: credential_process %s", profile, argv[0]);
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        aws_command_free(argv);
        return error_set(EXIT_RESOURCES, "%s: pipe: %s", what, strerror(errno));
    }
    pid_t pid = 0;
    int spawn_rc = spawn(argv, pipe_fds[1], &pid);
    aws_command_free(argv);
    close(pipe_fds[1]);
    if (spawn_rc) {
        close(pipe_fds[0]);
        return error_set(EXIT_USAGE, "%s: cannot run it: %s", what, strerror(spawn_rc));
    }
    long limit = timeout_s();
    double deadline = now_s() + (double)limit;
    char *output = malloc(PROCESS_OUTPUT_MAX + 1);
    size_t output_len = 0;
    int read_rc = output ? read_output(pipe_fds[0], output, &output_len, deadline) : -1;
    close(pipe_fds[0]);
    int status = 0;
    bool ended = read_rc == 0 && wait_until(pid, &status, deadline);
    if (!ended) { // past the deadline, too much output or a read error: stop it all
        kill(-pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (!ended && read_rc == 2)
        rc = error_set(EXIT_USAGE, "%s: printed more than %d bytes", what, PROCESS_OUTPUT_MAX);
    else if (!ended && !output)
        rc = error_set(EXIT_RESOURCES, "%s: out of memory", what);
    else if (!ended && read_rc < 0)
        rc = error_set(EXIT_INTERNAL, "%s: cannot read its output", what);
    else if (!ended)
        // A hang is what a helper waiting on its network does: Batch may retry it.
        rc = error_set(EXIT_REMOTE_IO, "%s: no answer within %ld s "
                                       "(RUNNER_AWS_CREDENTIAL_PROCESS_TIMEOUT_S); stopped it",
                       what, limit);
    else if (WIFSIGNALED(status))
        rc = error_set(EXIT_USAGE, "%s: killed by signal %d (its stderr is above)", what,
                       WTERMSIG(status));
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        rc = error_set(EXIT_USAGE, "%s: exited with status %d (its stderr is above)", what,
                       WEXITSTATUS(status));
    else
        rc = aws_credentials_from_process_output(output, output_len, what, out);
    if (output) memset(output, 0, output_len);
    free(output);
    return rc;
}
