#include "runner/preflight.h"
#include "runner/preflight_internal.h"

#include "kernels/cpu/gemm_bf16.h"
#include "kernels/cpu/ops.h"

#include "runner/cloud/cloud.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/units.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

enum { MIB = 1 << 20 };
#define UNLIMITED UINT64_MAX

static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *last_report;

// ---- helpers --------------------------------------------------------------------------

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static char *size_text(uint64_t bytes, char *buf, size_t size) {
    if (bytes == UNLIMITED) {
        snprintf(buf, size, "unlimited");
        return buf;
    }
    return units_format_size(bytes, buf, size);
}

cJSON *preflight_section(cJSON *report, const char *name) {
    cJSON *s = cJSON_AddObjectToObject(report, name);
    cJSON_AddStringToObject(s, "status", "ok");
    return s;
}

void preflight_set_status(cJSON *s, const char *status, const char *fmt, ...) {
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cJSON_ReplaceItemInObjectCaseSensitive(s, "status", cJSON_CreateString(status));
    cJSON_DeleteItemFromObjectCaseSensitive(s, "summary");
    cJSON_AddStringToObject(s, "summary", text);
}

void preflight_fail(preflight_checks *c, cJSON *s, int code, const char *message) {
    cJSON_AddItemToArray(c->problems, cJSON_CreateString(message));
    cJSON_ReplaceItemInObjectCaseSensitive(s, "status", cJSON_CreateString("fail"));
    if (!c->code) {
        c->code = code;
        snprintf(c->message, sizeof c->message, "%s", message);
    }
}

void preflight_warn(preflight_checks *c, cJSON *s, const char *message) {
    cJSON_AddItemToArray(c->warnings, cJSON_CreateString(message));
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(s, "status");
    if (cJSON_IsString(status) && strcmp(status->valuestring, "ok") == 0)
        cJSON_ReplaceItemInObjectCaseSensitive(s, "status", cJSON_CreateString("warn"));
}

// First line of a small file into buf; false when it cannot be read.
static bool read_line(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    if (ok) buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Parameters of each architecture (millions), for memory and disk needs.
static double parameter_count(const char *architecture) {
    static const struct {
        const char *name;
        double millions;
    } SIZES[] = {{"bert", 110},  {"bert-base", 110}, {"electra", 110},    {"roberta", 125},
                 {"distil", 66}, {"bert-tiny", 4.4}, {"bert-mini", 11.2}, {"bert-small", 28.8}};
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++)
        if (strcmp(SIZES[i].name, architecture) == 0) return SIZES[i].millions * 1e6;
    return 110e6;
}

// ---- /dev/shm -------------------------------------------------------------------------

uint64_t preflight_shm_need(const runner_config *cfg, int workers) {
    if (workers < 1) workers = 1;
    int batch = cfg->train_batch_size;
    if (cfg->valid_batch_size > batch) batch = cfg->valid_batch_size;
    if (cfg->test_batch_size > batch) batch = cfg->test_batch_size;
    // A batch travels as four int32 (B,T) arrays (ids, token types, mask, labels); each
    // worker's ring holds 8 of them, beside its 8 MiB telemetry ring. Collectives between
    // local workers (NCCL's SHM transport, Gloo) take about 4 MiB per pair of workers.
    uint64_t batch_bytes = (uint64_t)batch * (uint64_t)cfg->max_length * 4 * sizeof(int32_t);
    uint64_t per_worker = 8ull * MIB + 8 * batch_bytes;
    uint64_t collectives = (uint64_t)workers * (uint64_t)(workers - 1) * 4 * MIB;
    return 16ull * MIB + (uint64_t)workers * per_worker + collectives;
}

static void check_shm(preflight_checks *c, const runner_config *cfg, int workers) {
    cJSON *s = preflight_section(c->report, "shm");
    const char *path = env_or("RUNNER_SHM_PATH", "/dev/shm");
    uint64_t need = cfg->min_shm_bytes ? cfg->min_shm_bytes : preflight_shm_need(cfg, workers);
    cJSON_AddStringToObject(s, "path", path);
    cJSON_AddNumberToObject(s, "need_bytes", (double)need);
    cJSON_AddStringToObject(s, "need_from", cfg->min_shm_bytes ? "--min-shm" : "workers and batch");
    char need_text[32], free_text[32], total_text[32], message[700];
    size_text(need, need_text, sizeof need_text);
    unsigned long long need_mib = (need + MIB - 1) / MIB;
    struct statvfs vfs;
    if (statvfs(path, &vfs) != 0) {
        snprintf(message, sizeof message,
                 "%s: %s: the job needs %s of shared memory: set linuxParameters.sharedMemorySize"
                 " to %llu (MiB) in the job definition (docker run --shm-size=%llum)",
                 path, strerror(errno), need_text, need_mib, need_mib);
        preflight_set_status(s, "fail", "%s: %s", path, strerror(errno));
        preflight_fail(c, s, EXIT_RESOURCES, message);
        return;
    }
    uint64_t total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    uint64_t available = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    cJSON_AddNumberToObject(s, "total_bytes", (double)total);
    cJSON_AddNumberToObject(s, "free_bytes", (double)available);
    size_text(available, free_text, sizeof free_text);
    size_text(total, total_text, sizeof total_text);
    if (available < need) {
        // What is already used stays used: the size to ask for covers it too.
        unsigned long long ask_mib = (need + (total - available) + MIB - 1) / MIB;
        snprintf(message, sizeof message,
                 "%s has %s free (of %s), the job needs %s (%d worker%s, batch %d x %d%s): set "
                 "linuxParameters.sharedMemorySize to at least %llu (MiB) in the job definition "
                 "(docker run --shm-size=%llum); --min-shm overrides the computed need",
                 path, free_text, total_text, need_text, workers, workers == 1 ? "" : "s",
                 cfg->train_batch_size, cfg->max_length, cfg->min_shm_bytes ? ", --min-shm" : "",
                 ask_mib, ask_mib);
        preflight_set_status(s, "fail", "%s free of %s, need %s", free_text, total_text, need_text);
        preflight_fail(c, s, EXIT_RESOURCES, message);
        return;
    }
    preflight_set_status(s, "ok", "%s: %s free of %s, need %s", path, free_text, total_text, need_text);
}

// ---- cgroup memory and CPU ------------------------------------------------------------

// The cgroup path of this process for a v1 controller ("memory") or v2 (NULL), from
// /proc/self/cgroup; "/" when not found.
static void own_cgroup_path(const char *controller, char *out, size_t size) {
    snprintf(out, size, "/");
    FILE *f = fopen(env_or("RUNNER_PROC_CGROUP", "/proc/self/cgroup"), "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *first = strchr(line, ':');
        char *second = first ? strchr(first + 1, ':') : NULL;
        if (!second) continue;
        *second = '\0';
        const char *controllers = first + 1;
        bool match = false;
        if (!controller) {
            match = strncmp(line, "0:", 2) == 0 && controllers[0] == '\0';
        } else {
            char list[256];
            snprintf(list, sizeof list, "%s", controllers);
            for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save))
                if (strcmp(tok, controller) == 0) match = true;
        }
        if (match) {
            snprintf(out, size, "%s", second + 1);
            break;
        }
    }
    fclose(f);
}

// Read `file` in `dir` and each parent up to `root`, keeping the smallest value that
// `parse` accepts: a parent's limit binds its children too. Returns UNLIMITED if none.
typedef bool (*limit_parser)(const char *dir, const char *text, uint64_t *value);

static uint64_t tightest_limit(const char *root, const char *relative, const char *file,
                               limit_parser parse, bool *found) {
    char dir[PATH_MAX];
    uint64_t best = UNLIMITED;
    if (snprintf(dir, sizeof dir, "%s%s", root, strcmp(relative, "/") == 0 ? "" : relative) >=
        (int)sizeof dir)
        return best; // a cgroup path longer than PATH_MAX: nothing we can read
    size_t root_len = strlen(root);
    for (;;) {
        char path[PATH_MAX + 64], text[256];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        uint64_t value;
        if (read_line(path, text, sizeof text)) {
            *found = true;
            if (parse(dir, text, &value) && value < best) best = value;
        }
        if (strlen(dir) <= root_len) break;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < root_len) break;
        *slash = '\0';
    }
    return best;
}

static bool parse_v2_memory(const char *dir, const char *text, uint64_t *value) {
    (void)dir;
    if (strcmp(text, "max") == 0) return false;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text) return false;
    *value = v;
    return true;
}

static bool parse_v1_memory(const char *dir, const char *text, uint64_t *value) {
    (void)dir;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || v >= (1ull << 62)) return false; // 9223372036854771712 = none
    *value = v;
    return true;
}

// CPU quotas are kept as milli-CPUs so the smallest wins like a memory limit.
static bool parse_v2_cpu(const char *dir, const char *text, uint64_t *value) {
    (void)dir;
    char quota[32];
    unsigned long long period = 0;
    if (sscanf(text, "%31s %llu", quota, &period) != 2 || strcmp(quota, "max") == 0 || !period)
        return false;
    *value = strtoull(quota, NULL, 10) * 1000 / period;
    return true;
}

static bool parse_v1_cpu(const char *dir, const char *text, uint64_t *value) {
    long long quota = strtoll(text, NULL, 10);
    if (quota <= 0) return false;
    char path[PATH_MAX + 64], period_text[64];
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    if (!read_line(path, period_text, sizeof period_text)) return false;
    long long period = strtoll(period_text, NULL, 10);
    if (period <= 0) return false;
    *value = (uint64_t)quota * 1000 / (uint64_t)period;
    return true;
}

// MemTotal and MemAvailable of /proc/meminfo (RUNNER_PROC_MEMINFO for tests), bytes.
static void read_meminfo(uint64_t *total, uint64_t *available) {
    FILE *f = fopen(env_or("RUNNER_PROC_MEMINFO", "/proc/meminfo"), "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
            *total = kib * 1024;
        else if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            *available = kib * 1024;
    }
    fclose(f);
}

// What the CPU backend's results depend on besides the thread count (docs/kernels.md
// "Determinism"): the CPU model, the vector extensions its kernels may use, and the
// OpenBLAS core picked for it (OPENBLAS_CORETYPE forces one). `isa` receives the
// extensions present, space-separated.
static void describe_cpu(cJSON *cpu, char *isa, size_t size) {
    static const char *const EXTENSIONS[] = {"avx2", "fma", "avx512f", "avx512_bf16",
                                             "amx_bf16", "asimd", "sve"};
    isa[0] = '\0';
    char model[256] = "", line[4096];
    cJSON *present = cJSON_AddArrayToObject(cpu, "isa");
    FILE *f = fopen(env_or("RUNNER_PROC_CPUINFO", "/proc/cpuinfo"), "r");
    bool flags_seen = false;
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        size_t key = strcspn(line, "\t:");
        if (!*model && (strncmp(line, "model name", key) == 0 && key == 10)) {
            snprintf(model, sizeof model, "%s", colon + 1 + strspn(colon + 1, " "));
            model[strcspn(model, "\n")] = '\0';
        }
        // x86 says "flags", arm64 "Features"; the first CPU's list stands for all
        bool is_flags = (key == 5 && strncmp(line, "flags", 5) == 0) ||
                        (key == 8 && strncmp(line, "Features", 8) == 0);
        if (!is_flags || flags_seen) continue;
        flags_seen = true;
        for (size_t i = 0; i < sizeof EXTENSIONS / sizeof *EXTENSIONS; i++) {
            const char *name = EXTENSIONS[i];
            size_t len = strlen(name);
            for (char *at = strstr(colon, name); at; at = strstr(at + 1, name)) {
                if ((at[-1] == ' ' || at[-1] == ':') && (at[len] == ' ' || at[len] == '\n' || !at[len])) {
                    cJSON_AddItemToArray(present, cJSON_CreateString(name));
                    size_t used = strlen(isa);
                    snprintf(isa + used, size - used, "%s%s", used ? " " : "", name);
                    break;
                }
            }
        }
    }
    if (f) fclose(f);
    if (*model) cJSON_AddStringToObject(cpu, "model", model);
    else cJSON_AddNullToObject(cpu, "model");
    cJSON_AddStringToObject(cpu, "blas_core", cpu_blas_core());
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && *forced) cJSON_AddStringToObject(cpu, "blas_core_forced", forced);
    else cJSON_AddNullToObject(cpu, "blas_core_forced");
}

static void check_cgroup(preflight_checks *c, const runner_config *cfg, int workers, int gpus) {
    cJSON *s = preflight_section(c->report, "memory");
    const char *root = env_or("RUNNER_CGROUP_ROOT", "/sys/fs/cgroup");
    char path[PATH_MAX + 32], relative[PATH_MAX];
    snprintf(path, sizeof path, "%s/cgroup.controllers", root);
    int version = file_exists(path) ? 2 : 0;
    uint64_t memory = UNLIMITED, millicpus = UNLIMITED;
    bool found_memory = false, found_cpu = false;
    if (version == 2) {
        own_cgroup_path(NULL, relative, sizeof relative);
        memory = tightest_limit(root, relative, "memory.max", parse_v2_memory, &found_memory);
        millicpus = tightest_limit(root, relative, "cpu.max", parse_v2_cpu, &found_cpu);
    } else {
        char controller_root[PATH_MAX];
        snprintf(controller_root, sizeof controller_root, "%s/memory", root);
        if (file_exists(controller_root)) {
            version = 1;
            own_cgroup_path("memory", relative, sizeof relative);
            memory = tightest_limit(controller_root, relative, "memory.limit_in_bytes",
                                    parse_v1_memory, &found_memory);
        }
        for (const char *name = "cpu"; name;
             name = strcmp(name, "cpu") == 0 ? "cpu,cpuacct" : NULL) {
            snprintf(controller_root, sizeof controller_root, "%s/%s", root, name);
            if (!file_exists(controller_root)) continue;
            version = 1;
            own_cgroup_path("cpu", relative, sizeof relative);
            millicpus = tightest_limit(controller_root, relative, "cpu.cfs_quota_us", parse_v1_cpu,
                                       &found_cpu);
            break;
        }
    }
    cJSON_AddNumberToObject(s, "cgroup_version", version);
    cJSON_AddStringToObject(s, "cgroup_root", root);
    if (memory == UNLIMITED)
        cJSON_AddNullToObject(s, "limit_bytes");
    else
        cJSON_AddNumberToObject(s, "limit_bytes", (double)memory);
    // The smallest host memory a run can live in: the weights loaded and saved (two
    // fp32 copies per worker; on the CPU backend also gradients and AdamW moments).
    double params = parameter_count(cfg->architecture);
    double copies = gpus > 0 ? 2 : 4;
    uint64_t need = 256ull * MIB + (uint64_t)(workers * copies * params * 4);
    cJSON_AddNumberToObject(s, "need_bytes", (double)need);
    char limit_text[32], need_text[32], message[600];
    size_text(memory, limit_text, sizeof limit_text);
    size_text(need, need_text, sizeof need_text);
    uint64_t host_total = 0, host_available = 0;
    read_meminfo(&host_total, &host_available);
    if (host_total) cJSON_AddNumberToObject(s, "host_total_bytes", (double)host_total);
    if (host_available) cJSON_AddNumberToObject(s, "host_available_bytes", (double)host_available);
    char host_text[32];
    size_text(host_total, host_text, sizeof host_text);
    if (memory != UNLIMITED && memory < need) {
        snprintf(message, sizeof message,
                 "memory limit %s (cgroup v%d) is below the %s that %d worker%s of %s need: raise "
                 "resourceRequirements MEMORY (MiB) in the job definition to at least %llu",
                 limit_text, version, need_text, workers, workers == 1 ? "" : "s",
                 cfg->architecture, (unsigned long long)((need + MIB - 1) / MIB));
        preflight_set_status(s, "fail", "limit %s, need %s", limit_text, need_text);
        preflight_fail(c, s, EXIT_RESOURCES, message);
    } else if (host_total && host_total < need) {
        snprintf(message, sizeof message,
                 "the host has %s of memory in all, below the %s that %d worker%s of %s need: "
                 "choose a larger instance type for the compute environment",
                 host_text, need_text, workers, workers == 1 ? "" : "s", cfg->architecture);
        preflight_set_status(s, "fail", "host %s, need %s", host_text, need_text);
        preflight_fail(c, s, EXIT_RESOURCES, message);
    } else {
        preflight_set_status(s, "ok", "limit %s (cgroup v%d), host %s, need %s", limit_text, version,
                   host_text, need_text);
        if (host_available && host_available < need) {
            char available_text[32];
            snprintf(message, sizeof message, "only %s of host memory available, the job needs %s",
                     size_text(host_available, available_text, sizeof available_text), need_text);
            preflight_warn(c, s, message);
        }
    }

    cJSON *cpu = preflight_section(c->report, "cpu");
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    int affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
    cJSON_AddNumberToObject(cpu, "online", (double)online);
    cJSON_AddNumberToObject(cpu, "affinity", affinity);
    if (millicpus == UNLIMITED)
        cJSON_AddNullToObject(cpu, "quota");
    else
        cJSON_AddNumberToObject(cpu, "quota", (double)millicpus / 1000.0);
    char quota[64] = "no quota", isa[128];
    if (millicpus != UNLIMITED)
        snprintf(quota, sizeof quota, "quota %.2f CPUs", (double)millicpus / 1000.0);
    describe_cpu(cpu, isa, sizeof isa);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(cpu, "model");
    preflight_set_status(cpu, "ok", "%d usable of %ld online, %s; %s, %s, OpenBLAS %s kernels", affinity,
               online, quota, cJSON_IsString(model) ? model->valuestring : "unknown model",
               *isa ? isa : "no AVX2", cpu_blas_core());
    if (millicpus != UNLIMITED && millicpus < (uint64_t)workers * 1000) {
        char text[200];
        snprintf(text, sizeof text, "CPU quota %.2f is below one CPU per worker (%d workers)",
                 (double)millicpus / 1000.0, workers);
        preflight_warn(c, cpu, text);
    }
}

// ---- precision -------------------------------------------------------------------------

// What --precision will give on the backend this machine runs (runner/job/context.c
// applies it): auto is the backend's own; bf16 needs oneDNN's bf16 instructions on a CPU
// (a warning and fp32 without them); fp32 on CUDA, whose GEMMs are bf16, exits 2.
static void check_precision(preflight_checks *c, const runner_config *cfg, int gpus) {
    cJSON *s = preflight_section(c->report, "precision");
    char why[256] = "";
    bool cpu_bf16 = cpu_bf16_supported(why, sizeof why);
    bool cuda = cfg->backend == BACKEND_CUDA;
#ifdef RUNNER_HAVE_CUDA
    cuda = cuda || (cfg->backend == BACKEND_AUTO && gpus > 0);
#else
    (void)gpus;
#endif
    const char *requested = config_precision_name(cfg->precision);
    cJSON_AddStringToObject(s, "requested", requested);
    cJSON_AddStringToObject(s, "backend", cuda ? "cuda" : "cpu");
    cJSON_AddBoolToObject(s, "cpu_bf16", cpu_bf16);
    cJSON_AddStringToObject(s, "onednn_isa", cpu_bf16_isa());
    const char *effective = cuda || (cfg->precision == PRECISION_BF16 && cpu_bf16) ? "bf16" : "fp32";
    char message[400];
    if (cuda && cfg->precision == PRECISION_FP32) {
        cJSON_AddNullToObject(s, "effective");
        preflight_set_status(s, "fail", "fp32 asked for, the CUDA backend computes in bf16");
        const char *why_not = "--precision fp32: the cuda backend computes in bf16 only "
                              "(--backend cpu runs fp32)";
        preflight_fail(c, s, EXIT_USAGE, why_not);
        // A command that can never run is the answer even where the machine failed too:
        // exit 2 is not retried, a GPU fault (81) would be, to the same end.
        c->code = EXIT_USAGE;
        snprintf(c->message, sizeof c->message, "%s", why_not);
        return;
    }
    cJSON_AddStringToObject(s, "effective", effective);
    preflight_set_status(s, "ok", "%s on %s (--precision %s%s%s)", effective,
                         cuda ? "cuda" : "cpu", requested, cuda ? "" : "; oneDNN ISA ",
                         cuda ? "" : cpu_bf16_isa());
    if (!cuda && cfg->precision == PRECISION_BF16 && !cpu_bf16) {
        snprintf(message, sizeof message, "--precision bf16: %s; running fp32", why);
        preflight_warn(c, s, message);
    }
}

// ---- disk at the output location ------------------------------------------------------

static void check_disk(preflight_checks *c, const runner_config *cfg) {
    cJSON *s = preflight_section(c->report, "disk");
    const char *output = cfg->output_path[0] ? cfg->output_path : "./out";
    cJSON_AddStringToObject(s, "output", output);
    if (cloud_is_remote(output)) {
        // Can the job write there? Asked of S3 without leaving an object behind.
        int rc = cloud_check_output(output);
        cJSON_AddBoolToObject(s, "remote_writable", rc == 0);
        if (rc) {
            char remote[1400];
            snprintf(remote, sizeof remote, "output %.256s: %s", output, error_message());
            preflight_set_status(s, "fail", "%.256s: not writable", output);
            preflight_fail(c, s, rc, remote);
            return;
        }
        const char *scratch = env_or("TMPDIR", "/tmp");
        output = scratch; // artefacts are staged locally before upload
        cJSON_AddStringToObject(s, "staging", scratch);
    }
    // The nearest existing directory: the output itself may not exist yet.
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", output);
    struct stat st;
    while (stat(dir, &st) != 0) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            snprintf(dir, sizeof dir, ".");
            break;
        }
        if (slash == dir) {
            dir[1] = '\0';
            break;
        }
        *slash = '\0';
    }
    cJSON_AddStringToObject(s, "checked", dir);
    char message[1400];
    struct statvfs vfs;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        snprintf(message, sizeof message, "output %.256s: %.256s is not a directory", output, dir);
        preflight_set_status(s, "fail", "%s is not a directory", dir);
        preflight_fail(c, s, EXIT_OUTPUT, message);
        return;
    }
    if (statvfs(dir, &vfs) != 0) {
        snprintf(message, sizeof message, "output %.256s: %.256s: %s", output, dir,
                 strerror(errno));
        preflight_set_status(s, "fail", "%s: %s", dir, strerror(errno));
        preflight_fail(c, s, EXIT_OUTPUT, message);
        return;
    }
    bool writable = access(dir, W_OK | X_OK) == 0;
    int not_writable = writable ? 0 : errno; // EACCES, or EROFS: not a matter of owners
    cJSON_AddBoolToObject(s, "writable", writable);
    uint64_t available = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    // A checkpoint holds weights and both AdamW moments; save_total_limit of them plus
    // the final model. Below the final model alone the run cannot finish at all.
    double weights = parameter_count(cfg->architecture) * 4;
    uint64_t need = (uint64_t)(weights * 3 * cfg->save_total_limit + weights) + 64ull * MIB;
    uint64_t floor_need = (uint64_t)(weights * 2) + 64ull * MIB;
    cJSON_AddNumberToObject(s, "free_bytes", (double)available);
    cJSON_AddNumberToObject(s, "need_bytes", (double)need);
    char free_text[32], need_text[32], floor_text[32];
    size_text(available, free_text, sizeof free_text);
    size_text(need, need_text, sizeof need_text);
    size_text(floor_need, floor_text, sizeof floor_text);
    if (!writable) {
        snprintf(message, sizeof message, "output %.256s: %.256s is not writable by uid %d: %s",
                 output, dir, (int)geteuid(), strerror(not_writable));
        preflight_set_status(s, "fail", "%s not writable: %s", dir, strerror(not_writable));
        preflight_fail(c, s, EXIT_OUTPUT, message);
    } else if (available < floor_need) {
        snprintf(message, sizeof message,
                 "output %.256s: %.256s free at %.256s, the model alone needs %s: give the job "
                 "more disk "
                 "(a larger volume in the launch template) or use an s3:// output",
                 output, free_text, dir, floor_text);
        preflight_set_status(s, "fail", "%s free, need at least %s", free_text, floor_text);
        preflight_fail(c, s, EXIT_RESOURCES, message);
    } else {
        preflight_set_status(s, "ok", "%s: %s free, need %s", dir, free_text, need_text);
        if (available < need) {
            snprintf(message, sizeof message,
                     "output %.256s: %.256s free, %d checkpoints of %s need %s", output, free_text,
                     cfg->save_total_limit, cfg->architecture, need_text);
            preflight_warn(c, s, message);
        }
    }
}

// ---- memlock and the Batch environment ------------------------------------------------

static void check_memlock(preflight_checks *c, int gpus) {
    cJSON *s = preflight_section(c->report, "memlock");
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
        preflight_set_status(s, "warn", "getrlimit: %s", strerror(errno));
        return;
    }
    uint64_t soft = limit.rlim_cur == RLIM_INFINITY ? UNLIMITED : (uint64_t)limit.rlim_cur;
    uint64_t hard = limit.rlim_max == RLIM_INFINITY ? UNLIMITED : (uint64_t)limit.rlim_max;
    if (soft == UNLIMITED)
        cJSON_AddNullToObject(s, "soft_bytes");
    else
        cJSON_AddNumberToObject(s, "soft_bytes", (double)soft);
    if (hard == UNLIMITED)
        cJSON_AddNullToObject(s, "hard_bytes");
    else
        cJSON_AddNumberToObject(s, "hard_bytes", (double)hard);
    char soft_text[32];
    size_text(soft, soft_text, sizeof soft_text);
    preflight_set_status(s, "ok", "%s", soft_text);
    // Pinned host buffers (cudaHostAlloc, NCCL) count against memlock.
    if (gpus > 0 && soft != UNLIMITED && soft < 64ull * MIB) {
        char text[300];
        snprintf(text, sizeof text,
                 "memlock limit %s is low for pinned GPU transfers: set ulimits memlock "
                 "(soft and hard -1) in the job definition",
                 soft_text);
        preflight_warn(c, s, text);
    }
}

static void check_batch(preflight_checks *c) {
    cJSON *s = preflight_section(c->report, "batch");
    static const struct {
        const char *env, *key;
    } VARS[] = {
        {"AWS_BATCH_JOB_ID", "job_id"},
        {"AWS_BATCH_JOB_ATTEMPT", "attempt"},
        {"AWS_BATCH_JOB_NODE_INDEX", "node_index"},
        {"AWS_BATCH_JOB_NUM_NODES", "num_nodes"},
        {"AWS_BATCH_JOB_MAIN_NODE_INDEX", "main_node_index"},
        {"AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", "main_node_address"},
        {"AWS_BATCH_JOB_ARRAY_INDEX", "array_index"},
        {"AWS_BATCH_JOB_ARRAY_SIZE", "array_size"},
        {"AWS_BATCH_JQ_NAME", "queue"},
        {"AWS_BATCH_CE_NAME", "compute_environment"},
    };
    for (size_t i = 0; i < sizeof VARS / sizeof VARS[0]; i++) {
        const char *value = getenv(VARS[i].env);
        if (value) cJSON_AddStringToObject(s, VARS[i].key, value);
    }
    const char *job = getenv("AWS_BATCH_JOB_ID");
    if (!job) {
        preflight_set_status(s, "skip", "not on AWS Batch (no AWS_BATCH_JOB_ID)");
        return;
    }
    const char *node = getenv("AWS_BATCH_JOB_NODE_INDEX"),
               *nodes = getenv("AWS_BATCH_JOB_NUM_NODES");
    preflight_set_status(s, "ok", "job %s attempt %s%s%s%s%s", job, env_or("AWS_BATCH_JOB_ATTEMPT", "?"),
               node ? ", node " : "", node ? node : "", nodes ? " of " : "", nodes ? nodes : "");
}

// ---- the whole run --------------------------------------------------------------------

int preflight_run(const runner_config *cfg, cJSON **report_out) {
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    preflight_checks c = {0};
    c.report = cJSON_CreateObject();
    cJSON_AddBoolToObject(c.report, "ok", true);
    cJSON_AddNumberToObject(c.report, "code", 0);
    c.problems = cJSON_AddArrayToObject(c.report, "problems");
    c.warnings = cJSON_AddArrayToObject(c.report, "warnings");

    int gpus = 0;
    preflight_check_gpus(&c, cfg, &gpus);
    int workers = preflight_worker_count(cfg, gpus);
    cJSON_AddNumberToObject(c.report, "workers", workers);
    check_shm(&c, cfg, workers);
    check_cgroup(&c, cfg, workers, gpus);
    check_disk(&c, cfg);
    check_memlock(&c, gpus);
    check_batch(&c);
    check_precision(&c, cfg, gpus);
    cJSON_AddItemToObject(c.report, "config", config_to_json(cfg));

    clock_gettime(CLOCK_MONOTONIC, &end);
    double ms =
        (double)(end.tv_sec - start.tv_sec) * 1e3 + (double)(end.tv_nsec - start.tv_nsec) / 1e6;
    cJSON_AddNumberToObject(c.report, "elapsed_ms", ms);
    cJSON_ReplaceItemInObjectCaseSensitive(c.report, "ok", cJSON_CreateBool(c.code == 0));
    cJSON_ReplaceItemInObjectCaseSensitive(c.report, "code", cJSON_CreateNumber(c.code));
    if (c.code) error_set(c.code, "%s", c.message);

    pthread_mutex_lock(&report_lock);
    cJSON_Delete(last_report);
    last_report = cJSON_Duplicate(c.report, true);
    pthread_mutex_unlock(&report_lock);
    if (report_out)
        *report_out = c.report;
    else
        cJSON_Delete(c.report);
    return c.code;
}

cJSON *preflight_last_report(void) {
    pthread_mutex_lock(&report_lock);
    cJSON *copy = last_report ? cJSON_Duplicate(last_report, true) : NULL;
    pthread_mutex_unlock(&report_lock);
    return copy;
}

void preflight_print(const cJSON *report, bool json) {
    if (json) {
        char *text = cJSON_PrintUnformatted(report);
        char *safe = text ? log_redacted(text) : NULL;
        if (safe) puts(safe);
        free(text);
        free(safe);
        fflush(stdout);
        return;
    }
    static const char *const SECTIONS[] = {"gpus", "shm",     "memory", "cpu",
                                           "disk", "memlock", "batch",  "precision"};
    printf("%-9s  %-6s  %s\n", "check", "status", "detail");
    for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(report, SECTIONS[i]);
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(s, "status");
        const cJSON *summary = cJSON_GetObjectItemCaseSensitive(s, "summary");
        printf("%-9s  %-6s  %s\n", SECTIONS[i], cJSON_IsString(status) ? status->valuestring : "?",
               cJSON_IsString(summary) ? summary->valuestring : "");
    }
    const cJSON *list[2] = {cJSON_GetObjectItemCaseSensitive(report, "problems"),
                            cJSON_GetObjectItemCaseSensitive(report, "warnings")};
    for (int k = 0; k < 2; k++)
        for (const cJSON *item = list[k] ? list[k]->child : NULL; item; item = item->next)
            printf("%s: %s\n", k == 0 ? "problem" : "warning", item->valuestring);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(report, "code");
    int value = cJSON_IsNumber(code) ? code->valueint : 1;
    printf("%-9s  %-6s  exit %d %s\n", "result", value ? "fail" : "ok", value,
           exitcode_name(value));
    fflush(stdout);
}
