// The GPU check of preflight: the CUDA runtime asked in a short-lived process of its own
// (`runner --gpu-probe`, posix_spawn, answering on fd 3), so the supervisor never holds a
// CUDA context; then the count against what the job wants. See preflight.h.
#include "runner/preflight.h"
#include "runner/preflight_internal.h"

#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/units.h"

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

#ifdef RUNNER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

enum { GPU_MAX = 64 };

extern char **environ;

static int last_gpu_count;

// ---- GPUs -----------------------------------------------------------------------------

typedef struct {
    int count, driver, runtime;
    int status; // 0 ok, 1 no device/driver (count 0), 2 CUDA error
    char error[200];
    struct {
        char name[96];
        uint64_t memory;
        int major, minor;
        char pci[16];
    } device[GPU_MAX];
} gpu_probe;

#ifdef RUNNER_HAVE_CUDA
static void probe_cuda_runtime(gpu_probe *probe) {
    cudaDriverGetVersion(&probe->driver);
    cudaRuntimeGetVersion(&probe->runtime);
    cudaError_t err = cudaGetDeviceCount(&probe->count);
    if (err != cudaSuccess) {
        probe->count = 0;
        probe->status = err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ? 1 : 2;
        snprintf(probe->error, sizeof probe->error, "%s: %s", cudaGetErrorName(err),
                 cudaGetErrorString(err));
        return;
    }
    if (probe->count > GPU_MAX) probe->count = GPU_MAX;
    for (int i = 0; i < probe->count; i++) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        // prop.name is 256 bytes; a longer name than ours is cut, never overrun.
        if (snprintf(probe->device[i].name, sizeof probe->device[i].name, "%s", prop.name) < 0)
            probe->device[i].name[0] = '\0';
        probe->device[i].memory = prop.totalGlobalMem;
        probe->device[i].major = prop.major;
        probe->device[i].minor = prop.minor;
        snprintf(probe->device[i].pci, sizeof probe->device[i].pci, "%04x:%02x:%02x.0",
                 prop.pciDomainID, prop.pciBusID, prop.pciDeviceID);
    }
}
#endif

// The CUDA runtime is asked in a short-lived process of its own, `runner --gpu-probe`:
// a supervisor that initialised CUDA would hold a context (and its memory) on GPU 0 for
// the whole job. Started with posix_spawn of our own binary, not fork(): the supervisor
// may already run threads (the Step Functions heartbeat), and a fork()ed child could
// inherit one of their locks held. It writes its gpu_probe to fd PROBE_RESULT_FD.
enum { PROBE_RESULT_FD = 3 };

// The runner binary that answers --gpu-probe; NULL in programs that only link the
// library (unit tests), whose own binary would not know the flag.
static const char *probe_program;

void preflight_set_probe_program(const char *path) {
    probe_program = path;
}

int preflight_gpu_probe_main(void) {
    gpu_probe probe;
    memset(&probe, 0, sizeof probe);
#ifdef RUNNER_HAVE_CUDA
    probe_cuda_runtime(&probe);
#else
    probe.status = 1;
    snprintf(probe.error, sizeof probe.error, "built without CUDA");
#endif
    const char *p = (const char *)&probe;
    size_t left = sizeof probe;
    while (left > 0) {
        ssize_t n = write(PROBE_RESULT_FD, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "runner: %s writes to fd %d of the preflight only: %s\n",
                    PREFLIGHT_GPU_PROBE_FLAG, PROBE_RESULT_FD, strerror(errno));
            return EXIT_USAGE;
        }
        p += n, left -= (size_t)n;
    }
    return EXIT_OK;
}

#ifdef RUNNER_HAVE_CUDA
static void probe_failed(gpu_probe *probe, const char *what, int err) {
    memset(probe, 0, sizeof *probe);
    probe->status = 2;
    snprintf(probe->error, sizeof probe->error, "%s: %s", what, strerror(err));
}

// posix_spawn `runner --gpu-probe` with the write end of `fds` as its fd 3. 0 or errno.
static int spawn_probe(int fds[2], pid_t *pid) {
    // The write end must not sit on fd 3 already, or the dup2 below would be a no-op
    // that leaves it close-on-exec.
    if (fds[1] == PROBE_RESULT_FD) {
        int moved = fcntl(fds[1], F_DUPFD_CLOEXEC, PROBE_RESULT_FD + 1);
        if (moved < 0) return errno;
        close(fds[1]);
        fds[1] = moved;
    }
    posix_spawn_file_actions_t actions;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc) return rc;
    rc = posix_spawn_file_actions_adddup2(&actions, fds[1], PROBE_RESULT_FD);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, PROBE_RESULT_FD + 1);
    char *argv[] = {"runner", PREFLIGHT_GPU_PROBE_FLAG, NULL};
    if (rc == 0) rc = posix_spawn(pid, probe_program, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}
#endif

static void probe_gpus(gpu_probe *probe) {
    memset(probe, 0, sizeof *probe);
#ifdef RUNNER_HAVE_CUDA
    if (!probe_program) {
        probe->status = 1;
        snprintf(probe->error, sizeof probe->error, "no CUDA probe program in this process");
        return;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        probe_failed(probe, "pipe", errno);
        return;
    }
    pid_t pid = -1;
    int rc = spawn_probe(fds, &pid);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        probe_failed(probe, "start the CUDA probe", rc);
        return;
    }
    size_t got = 0;
    char *p = (char *)probe;
    struct pollfd pfd = {fds[0], POLLIN, 0};
    while (got < sizeof *probe) {
        int ready = poll(&pfd, 1, 60000); // CUDA init on 8 GPUs takes seconds, not minutes
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        ssize_t n = read(fds[0], p + got, sizeof *probe - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fds[0]);
    if (got < sizeof *probe) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got < sizeof *probe) {
        memset(probe, 0, sizeof *probe);
        probe->status = 2;
        snprintf(probe->error, sizeof probe->error, "the CUDA probe process %s",
                 WIFSIGNALED(status) ? "crashed" : "did not answer");
    }
#else
    probe->status = 1;
    snprintf(probe->error, sizeof probe->error, "built without CUDA");
#endif
}

int preflight_check_gpu_count(int wanted, int visible) {
    if (wanted <= 0) return 0;
    if (visible == 0) return EXIT_GPU_FAULT;
    if (visible < wanted) return EXIT_RESOURCES;
    return 0;
}

int preflight_gpu_count(void) {
    return last_gpu_count;
}

int preflight_worker_count(const runner_config *cfg, int visible) {
    if (cfg->workers > 0) return cfg->workers;
    if (cfg->backend == BACKEND_CPU || visible == 0) return 1;
    if (cfg->gpus > 0 && cfg->gpus < visible) return cfg->gpus;
    return visible;
}

void preflight_check_gpus(preflight_checks *c, const runner_config *cfg, int *visible_out) {
    cJSON *s = preflight_section(c->report, "gpus");
    gpu_probe probe;
    probe_gpus(&probe);
    int visible = probe.count;
    *visible_out = visible;
    last_gpu_count = visible;
#ifdef RUNNER_HAVE_CUDA
    cJSON_AddBoolToObject(s, "cuda_built", true);
#else
    cJSON_AddBoolToObject(s, "cuda_built", false);
#endif
    cJSON_AddNumberToObject(s, "visible", visible);
    // --backend cuda means at least one GPU, whatever --gpus says.
    int wanted = cfg->gpus;
    if (wanted < 0 && cfg->backend == BACKEND_CUDA) wanted = 1;
    if (wanted < 0)
        cJSON_AddStringToObject(s, "wanted", "auto");
    else
        cJSON_AddNumberToObject(s, "wanted", wanted);
    char version[32];
    if (probe.driver) {
        snprintf(version, sizeof version, "%d.%d", probe.driver / 1000, probe.driver % 1000 / 10);
        cJSON_AddStringToObject(s, "driver", version);
    }
    if (probe.runtime) {
        snprintf(version, sizeof version, "%d.%d", probe.runtime / 1000, probe.runtime % 1000 / 10);
        cJSON_AddStringToObject(s, "runtime", version);
    }
    const char *nvidia = getenv("NVIDIA_VISIBLE_DEVICES"), *cuda = getenv("CUDA_VISIBLE_DEVICES");
    if (nvidia) cJSON_AddStringToObject(s, "nvidia_visible_devices", nvidia);
    if (cuda) cJSON_AddStringToObject(s, "cuda_visible_devices", cuda);
    if (probe.error[0]) cJSON_AddStringToObject(s, "error", probe.error);
    cJSON *devices = cJSON_AddArrayToObject(s, "devices");
    for (int i = 0; i < visible; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "index", i);
        cJSON_AddStringToObject(d, "name", probe.device[i].name);
        cJSON_AddNumberToObject(d, "memory_bytes", (double)probe.device[i].memory);
        snprintf(version, sizeof version, "%d.%d", probe.device[i].major, probe.device[i].minor);
        cJSON_AddStringToObject(d, "compute_capability", version);
        cJSON_AddStringToObject(d, "pci_bus_id", probe.device[i].pci);
        cJSON_AddItemToArray(devices, d);
    }

    char message[700];
    int code = preflight_check_gpu_count(wanted, visible);
    if (code == 0 && probe.status == 2 && wanted > 0) code = EXIT_GPU_FAULT;
    if (code == EXIT_GPU_FAULT) {
        snprintf(message, sizeof message,
                 "GPUs required (--gpus %d%s) but none is usable: %s (NVIDIA_VISIBLE_DEVICES=%s): "
                 "give the job definition resourceRequirements GPU and a GPU host",
                 wanted, cfg->backend == BACKEND_CUDA ? ", --backend cuda" : "",
                 probe.error[0] ? probe.error : "no device", nvidia ? nvidia : "unset");
        preflight_set_status(s, "fail", "none usable, %d required", wanted);
        preflight_fail(c, s, code, message);
    } else if (code == EXIT_RESOURCES) {
        snprintf(message, sizeof message,
                 "--gpus %d but only %d GPU%s visible: raise resourceRequirements GPU to %d in the "
                 "job definition, or ask for fewer",
                 wanted, visible, visible == 1 ? " is" : "s are", wanted);
        preflight_set_status(s, "fail", "%d visible, %d required", visible, wanted);
        preflight_fail(c, s, code, message);
    } else if (visible == 0) {
        preflight_set_status(s, "ok", "none visible (%s): CPU backend", probe.error[0] ? probe.error : "-");
        if (probe.status == 2) preflight_warn(c, s, probe.error);
    } else {
        char mem[32];
        preflight_set_status(s, "ok", "%d x %s (%s, sm_%d%d), driver %d.%d", visible, probe.device[0].name,
                   units_format_size(probe.device[0].memory, mem, sizeof mem),
                   probe.device[0].major, probe.device[0].minor, probe.driver / 1000,
                   probe.driver % 1000 / 10);
    }
}

