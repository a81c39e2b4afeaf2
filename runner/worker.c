// Worker processes: spawned by the supervisor, run by `runner --worker` (see worker.h).
#include "runner/worker.h"

#include "runner/coord/coord.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/fault.h"
#include "runner/job/job.h"
#include "runner/log.h"
#include "runner/signals.h"
#include "runner/supervisor.h"
#include "runner/telemetry.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

enum {
    HANDOFF_MAGIC = 0x52574b31, // "RWK1"
    HANDOFF_EXTRA_MAX = 1 << 20,
    FIRST_FREE_FD = 5, // above the two descriptors a worker is given
};

// The fixed part of the handoff; a JSON text of `extra_len` bytes follows it:
// {"labels": {...}, "redact": ["...", ...]}. Both ends are the same binary
// (/proc/self/exe names the running file even when it was replaced on disk), so the
// structures travel as bytes; magic and size catch a handoff from anything else.
typedef struct {
    uint32_t magic;
    uint32_t header_size;
    pid_t supervisor;
    worker_place place;
    runner_config cfg;
    coord_worker_view coord;
    int log_format; // resolved: LOG_FORMAT_JSON or LOG_FORMAT_TEXT
    int log_level;
    uint32_t extra_len;
} worker_handoff;

// ---------------------------------------------------------------------------------
// Supervisor side

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

// A sealed memfd holding the handoff for `place`; -1 with error_set().
static int handoff_create(const runner_config *cfg, const worker_place *place) {
    worker_handoff h;
    memset(&h, 0, sizeof h);
    h.magic = HANDOFF_MAGIC;
    h.header_size = sizeof h;
    h.supervisor = getpid();
    h.place = *place;
    h.cfg = *cfg;
    coord_worker_view_export(&h.coord);
    h.log_format = (int)log_current_format();
    h.log_level = cfg->verbose ? LOG_DEBUG : LOG_INFO;
    cJSON *extra = cJSON_CreateObject();
    // The labels are the supervisor's (ECS task metadata is asked once, here) plus the rank.
    cJSON_AddItemToObject(extra, "labels", supervisor_log_labels(place->rank));
    cJSON_AddItemToObject(extra, "redact", log_redactions_json());
    char *text = cJSON_PrintUnformatted(extra);
    cJSON_Delete(extra);
    if (!text) {
        error_set(EXIT_INTERNAL, "worker %d: out of memory for its handoff", place->rank);
        return -1;
    }
    size_t len = strlen(text);
    h.extra_len = (uint32_t)len;
    int fd = memfd_create("runner-worker-handoff", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        error_set(EXIT_RESOURCES, "worker %d: memfd_create: %s", place->rank, strerror(errno));
        free(text);
        return -1;
    }
    int rc = len > HANDOFF_EXTRA_MAX || write_all(fd, &h, sizeof h) != 0 ||
                     write_all(fd, text, len) != 0
                 ? -1
                 : 0;
    if (rc == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK |
                                              F_SEAL_SEAL) != 0)
        rc = -1;
    int saved = errno;
    // The secrets it names are no longer needed in this copy of the text.
    explicit_bzero(text, len);
    free(text);
    if (rc != 0) {
        close(fd);
        error_set(EXIT_RESOURCES, "worker %d: cannot write its handoff: %s", place->rank,
                  strerror(saved));
        return -1;
    }
    return fd;
}

// Move `fd` to a number >= FIRST_FREE_FD (close-on-exec), so that the spawn's dup2 onto
// 3 and 4 never overwrites the other source. Returns the new fd or -1.
static int move_above_targets(int fd) {
    if (fd >= FIRST_FREE_FD) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, FIRST_FREE_FD);
    close(fd);
    return moved;
}

static bool is_place_variable(const char *entry) {
    static const char *const NAMES[] = {"LOCAL_RANK=", "RANK=", "LOCAL_WORLD_SIZE=",
                                        "WORLD_SIZE="};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strncmp(entry, NAMES[i], strlen(NAMES[i])) == 0) return true;
    return false;
}

static bool has_variable(const char *name) {
    size_t len = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return true;
    return false;
}

// The worker's environment: the supervisor's, with torchrun's variables for `place`.
// Built as a new array (setenv in a process whose threads read the environment is
// unsafe). `storage` holds the added entries; the caller frees the array only.
static char **worker_environment(const worker_place *place, char storage[6][96]) {
    size_t count = 0;
    for (char **e = environ; e && *e; e++)
        count++;
    char **envp = calloc(count + 7, sizeof *envp);
    if (!envp) return NULL;
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        if (!is_place_variable(*e)) envp[n++] = *e;
    snprintf(storage[0], 96, "LOCAL_RANK=%d", place->local_rank);
    snprintf(storage[1], 96, "RANK=%d", place->rank);
    snprintf(storage[2], 96, "LOCAL_WORLD_SIZE=%d", place->local_world);
    snprintf(storage[3], 96, "WORLD_SIZE=%d", place->world);
    for (int i = 0; i < 4; i++)
        envp[n++] = storage[i];
    // torchrun's names: the main node's address (Batch gives it to child nodes only).
    if (!has_variable("MASTER_ADDR")) {
        const char *main_address = getenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS");
        snprintf(storage[4], 96, "MASTER_ADDR=%s", main_address ? main_address : "127.0.0.1");
        envp[n++] = storage[4];
    }
    if (!has_variable("MASTER_PORT")) {
        snprintf(storage[5], 96, "MASTER_PORT=29500");
        envp[n++] = storage[5];
    }
    envp[n] = NULL;
    return envp;
}

pid_t worker_spawn(const runner_config *cfg, const worker_place *place, int *reason_fd) {
    int handoff = handoff_create(cfg, place);
    if (handoff < 0) return -1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        close(handoff);
        error_set(EXIT_RESOURCES, "pipe for worker %d: %s", place->rank, strerror(errno));
        return -1;
    }
    handoff = move_above_targets(handoff);
    fds[1] = move_above_targets(fds[1]);
    char storage[6][96];
    char **envp = handoff >= 0 && fds[1] >= 0 ? worker_environment(place, storage) : NULL;

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = envp ? 0 : ENOMEM;
    bool actions_made = false, attr_made = false;
    if (rc == 0 && (rc = posix_spawn_file_actions_init(&actions)) == 0) actions_made = true;
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, handoff, WORKER_HANDOFF_FD);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, fds[1], WORKER_REASON_FD);
    // Nothing else of the supervisor's reaches the worker, not even a descriptor a
    // library opened without close-on-exec (hiredis's sockets).
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, FIRST_FREE_FD);
    if (rc == 0 && (rc = posix_spawnattr_init(&attr)) == 0) attr_made = true;
    // Its own process group: a terminal's ^C reaches only the supervisor, which forwards
    // one stop. The stop signals start blocked: one sent before the worker's handlers
    // are in stays pending instead of killing it with the default action.
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGUSR1);
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    if (rc == 0) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &held);
    pid_t pid = -1;
    char *argv[] = {"runner", WORKER_FLAG, NULL};
    if (rc == 0) rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv, envp);
    if (actions_made) posix_spawn_file_actions_destroy(&actions);
    if (attr_made) posix_spawnattr_destroy(&attr);
    free(envp);
    if (handoff >= 0) close(handoff);
    if (fds[1] >= 0) close(fds[1]);
    if (rc != 0 || handoff < 0 || fds[1] < 0) {
        close(fds[0]);
        error_set(EXIT_RESOURCES, "start worker %d: %s", place->rank,
                  strerror(rc ? rc : errno));
        return -1;
    }
    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        // The supervisor reads the reason only after the worker ended: a blocking read
        // of a closed pipe still returns, so this is logged, not fatal.
        log_warn("worker_reason_pipe", "worker %d: O_NONBLOCK: %s", place->rank, strerror(errno));
    }
    *reason_fd = fds[0];
    return pid;
}

// ---------------------------------------------------------------------------------
// Worker side

// Read and check the handoff on WORKER_HANDOFF_FD into *h and *extra (owned). 0 or
// EXIT_USAGE: a handoff only the supervisor writes, so its absence means `--worker` was
// typed by hand.
static int handoff_read(worker_handoff *h, cJSON **extra) {
    struct stat st;
    if (fstat(WORKER_HANDOFF_FD, &st) != 0)
        return error_set(EXIT_USAGE, "%s is started by the supervisor only (no handoff on fd %d)",
                         WORKER_FLAG, WORKER_HANDOFF_FD);
    if (st.st_size < (off_t)sizeof *h ||
        pread(WORKER_HANDOFF_FD, h, sizeof *h, 0) != (ssize_t)sizeof *h ||
        h->magic != HANDOFF_MAGIC || h->header_size != sizeof *h ||
        h->extra_len > HANDOFF_EXTRA_MAX || st.st_size != (off_t)(sizeof *h + h->extra_len))
        return error_set(EXIT_USAGE, "%s: fd %d is not a worker handoff of this runner",
                         WORKER_FLAG, WORKER_HANDOFF_FD);
    char *text = malloc(h->extra_len + 1);
    if (!text) return error_set(EXIT_INTERNAL, "worker handoff: out of memory");
    ssize_t n = pread(WORKER_HANDOFF_FD, text, h->extra_len, (off_t)sizeof *h);
    text[n > 0 ? n : 0] = '\0';
    *extra = n == (ssize_t)h->extra_len ? cJSON_Parse(text) : NULL;
    explicit_bzero(text, h->extra_len);
    free(text);
    close(WORKER_HANDOFF_FD);
    if (!*extra || !cJSON_IsObject(*extra))
        return error_set(EXIT_USAGE, "%s: the handoff's labels and secrets are unreadable",
                         WORKER_FLAG);
    return 0;
}

static int run_job(const worker_handoff *h) {
    const worker_place *p = &h->place;
    fault_set_rank(p->rank);
    int rc = telemetry_worker_attach(p->local_rank);
    if (rc) return rc;
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "local_rank", p->local_rank);
    cJSON_AddNumberToObject(fields, "world_size", p->world);
    cJSON_AddNumberToObject(fields, "pid", getpid());
    cJSON *env = cJSON_AddObjectToObject(fields, "env");
    static const char *const NAMES[] = {"LOCAL_RANK",       "RANK",        "WORLD_SIZE",
                                        "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        cJSON_AddStringToObject(env, NAMES[i], getenv(NAMES[i]) ? getenv(NAMES[i]) : "");
    log_fields(LOG_INFO, "worker_start", fields);
    fault_maybe_inject("worker_start", 0);
    return job_run(&h->cfg, p->rank, p->world);
}

int worker_process_main(void) {
    signals_install();
    signals_mark_worker();
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGTERM);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &held, NULL); // a stop sent meanwhile is delivered now
    // It dies with the supervisor, never orphaned.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return error_set(EXIT_INTERNAL, "worker: PR_SET_PDEATHSIG: %s", strerror(errno));

    static worker_handoff h; // large (the configuration): not on the stack
    cJSON *extra = NULL;
    int rc = handoff_read(&h, &extra);
    if (rc) {
        fprintf(stderr, "runner: %s\n", error_message());
        cJSON_Delete(extra);
        return rc;
    }
    // The supervisor died between the spawn and the death signal's setting.
    if (getppid() != h.supervisor) {
        cJSON_Delete(extra);
        return EXIT_PEER_LOST;
    }
    const cJSON *secrets = cJSON_GetObjectItem(extra, "redact");
    for (const cJSON *s = cJSON_IsArray(secrets) ? secrets->child : NULL; s; s = s->next)
        if (cJSON_IsString(s)) log_redact(s->valuestring);
    log_init((log_format)h.log_format, (log_level)h.log_level);
    cJSON *labels = cJSON_DetachItemFromObject(extra, "labels");
    log_set_labels(cJSON_IsObject(labels) ? labels : NULL);
    if (!cJSON_IsObject(labels)) cJSON_Delete(labels);
    cJSON_Delete(extra);
    coord_worker_view_adopt(&h.coord);

    error_clear();
    rc = run_job(&h);
    const char *reason = rc != EXIT_OK ? error_message() : "";
    if (*reason && write_all(WORKER_REASON_FD, reason, strlen(reason)) != 0)
        log_warn("worker_reason_pipe", "cannot hand the reason to the supervisor: %s",
                 strerror(errno));
    close(WORKER_REASON_FD);
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "code", rc);
    cJSON_AddStringToObject(fields, "name", exitcode_name(rc));
    if (*reason) cJSON_AddStringToObject(fields, "reason", reason);
    log_fields(rc == EXIT_OK || rc == EXIT_INTERRUPTED ? LOG_INFO : LOG_ERROR, "worker_exit",
               fields);
    telemetry_flush();
    return rc;
}
