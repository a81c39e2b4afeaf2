// Preflight branches with fake /dev/shm and cgroup trees (RUNNER_SHM_PATH,
// RUNNER_CGROUP_ROOT, RUNNER_PROC_CGROUP), GPU count rules, disk at the output.
#include "check.h"
#include "runner/error.h"
#include "runner/log.h"
#include "runner/preflight.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/runner-preflight-XXXXXX";

static void put(const char *relative, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    // mkdir -p of the parent
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void use_tree(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    setenv("RUNNER_CGROUP_ROOT", path, 1);
}

static runner_config base(void) {
    runner_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.architecture, sizeof cfg.architecture, "bert-tiny");
    snprintf(cfg.output_path, sizeof cfg.output_path, "%s/out", root);
    return cfg;
}

static cJSON *run(const runner_config *cfg, int *code) {
    cJSON *report = NULL;
    error_clear();
    *code = preflight_run(cfg, &report);
    return report;
}

static const cJSON *field(const cJSON *report, const char *section, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(report, section),
                                            name);
}

static void test_gpu_rules(void) {
    CHECK_INT(preflight_check_gpu_count(-1, 0), 0); // auto: none required
    CHECK_INT(preflight_check_gpu_count(0, 0), 0);
    CHECK_INT(preflight_check_gpu_count(1, 0), EXIT_GPU_FAULT);
    CHECK_INT(preflight_check_gpu_count(8, 4), EXIT_RESOURCES);
    CHECK_INT(preflight_check_gpu_count(4, 8), 0);
    runner_config cfg = base();
    CHECK_INT(preflight_worker_count(&cfg, 0), 1);
    CHECK_INT(preflight_worker_count(&cfg, 8), 8);
    cfg.gpus = 2;
    CHECK_INT(preflight_worker_count(&cfg, 8), 2);
    cfg.workers = 3;
    CHECK_INT(preflight_worker_count(&cfg, 8), 3);
    cfg = base();
    cfg.backend = BACKEND_CPU;
    CHECK_INT(preflight_worker_count(&cfg, 8), 1);

    // Without a visible GPU, asking for one is a GPU fault (retryable: another host).
    cfg = base();
    int code;
    cJSON *report = run(&cfg, &code);
    int visible = cJSON_GetObjectItem(cJSON_GetObjectItem(report, "gpus"), "visible")->valueint;
    cJSON_Delete(report);
    if (visible == 0) {
        cfg.gpus = 1;
        report = run(&cfg, &code);
        CHECK_INT(code, EXIT_GPU_FAULT);
        CHECK(strstr(error_message(), "resourceRequirements GPU") != NULL);
        CHECK_STR(field(report, "gpus", "status")->valuestring, "fail");
        cJSON_Delete(report);
        cfg = base();
        cfg.backend = BACKEND_CUDA;
        report = run(&cfg, &code);
        CHECK_INT(code, EXIT_GPU_FAULT);
        cJSON_Delete(report);
    } else {
        cfg.gpus = visible + 1;
        report = run(&cfg, &code);
        CHECK_INT(code, EXIT_RESOURCES);
        cJSON_Delete(report);
    }
}

static void test_shm(void) {
    runner_config cfg = base();
    CHECK(preflight_shm_need(&cfg, 8) > preflight_shm_need(&cfg, 1));
    uint64_t small = preflight_shm_need(&cfg, 1);
    cfg.train_batch_size = 4096;
    CHECK(preflight_shm_need(&cfg, 1) > small);
    // 8 workers need more than docker's 64 MiB default; one worker fits in it.
    cfg = base();
    CHECK(preflight_shm_need(&cfg, 8) > (64ull << 20));
    CHECK(preflight_shm_need(&cfg, 1) < (64ull << 20));

    setenv("RUNNER_SHM_PATH", root, 1);
    int code;
    cJSON *report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_STR(field(report, "shm", "path")->valuestring, root);
    CHECK(field(report, "shm", "free_bytes")->valuedouble > 0);
    cJSON_Delete(report);

    cfg.min_shm_bytes = 1ull << 50; // 1 PiB: no machine has it
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_RESOURCES);
    CHECK(strstr(error_message(), "linuxParameters.sharedMemorySize") != NULL);
    CHECK(strstr(error_message(), "--shm-size") != NULL);
    CHECK(strstr(error_message(), "1.0 PiB") != NULL); // the size needed
    CHECK_STR(field(report, "shm", "need_from")->valuestring, "--min-shm");
    CHECK_INT(cJSON_GetObjectItem(report, "code")->valueint, EXIT_RESOURCES);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(report, "ok")));
    cJSON_Delete(report);
    cJSON *last = preflight_last_report();
    CHECK(last && cJSON_GetObjectItem(last, "code")->valueint == EXIT_RESOURCES);
    cJSON_Delete(last);

    setenv("RUNNER_SHM_PATH", "/nonexistent/shm", 1);
    cfg.min_shm_bytes = 0;
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_RESOURCES);
    CHECK(strstr(error_message(), "/nonexistent/shm") != NULL);
    cJSON_Delete(report);
    setenv("RUNNER_SHM_PATH", root, 1);
}

static void test_cgroup_v2(void) {
    put("v2/cgroup.controllers", "cpu memory\n");
    put("v2/memory.max", "max\n");
    put("v2/cpu.max", "max 100000\n");
    put("v2self", "0::/\n");
    char self[512];
    snprintf(self, sizeof self, "%s/v2self", root);
    setenv("RUNNER_PROC_CGROUP", self, 1);
    use_tree("v2");
    runner_config cfg = base();
    int code;
    cJSON *report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_INT(field(report, "memory", "cgroup_version")->valueint, 2);
    CHECK(cJSON_IsNull(field(report, "memory", "limit_bytes")));
    CHECK(cJSON_IsNull(field(report, "cpu", "quota")));
    cJSON_Delete(report);

    put("v2/memory.max", "104857600\n"); // 100 MiB: below what any job needs
    put("v2/cpu.max", "150000 100000\n");
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_RESOURCES);
    CHECK(strstr(error_message(), "resourceRequirements MEMORY") != NULL);
    CHECK(strstr(error_message(), "100.0 MiB") != NULL);
    CHECK_CLOSE(field(report, "memory", "limit_bytes")->valuedouble, 104857600, 0, 0);
    CHECK_CLOSE(field(report, "cpu", "quota")->valuedouble, 1.5, 1e-9, 0);
    cJSON_Delete(report);

    // A process in a nested cgroup: the parent's limit binds it too.
    put("v2/memory.max", "max\n");
    put("v2/job/memory.max", "209715200\n");
    put("v2/job/task/memory.max", "max\n");
    put("v2/job/task/cpu.max", "50000 100000\n");
    put("v2self", "0::/job/task\n");
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_RESOURCES);
    CHECK_CLOSE(field(report, "memory", "limit_bytes")->valuedouble, 209715200, 0, 0);
    CHECK_CLOSE(field(report, "cpu", "quota")->valuedouble, 0.5, 1e-9, 0);
    // a quota below one CPU per worker is a warning, not a failure
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(report, "warnings")) >= 1);
    cJSON_Delete(report);

    put("v2/job/memory.max", "17179869184\n"); // 16 GiB
    report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_STR(field(report, "memory", "status")->valuestring, "ok");
    cJSON_Delete(report);
    unsetenv("RUNNER_PROC_CGROUP");
}

static void test_cgroup_v1(void) {
    put("v1/memory/memory.limit_in_bytes", "9223372036854771712\n"); // no limit
    put("v1/cpu/cpu.cfs_quota_us", "-1\n");
    put("v1/cpu/cpu.cfs_period_us", "100000\n");
    put("v1self", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
    char self[512];
    snprintf(self, sizeof self, "%s/v1self", root);
    setenv("RUNNER_PROC_CGROUP", self, 1);
    use_tree("v1");
    runner_config cfg = base();
    int code;
    cJSON *report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_INT(field(report, "memory", "cgroup_version")->valueint, 1);
    CHECK(cJSON_IsNull(field(report, "memory", "limit_bytes")));
    CHECK(cJSON_IsNull(field(report, "cpu", "quota")));
    cJSON_Delete(report);

    put("v1/memory/docker/abc/memory.limit_in_bytes", "67108864\n"); // 64 MiB
    put("v1/cpu/docker/abc/cpu.cfs_quota_us", "200000\n");
    put("v1/cpu/docker/abc/cpu.cfs_period_us", "100000\n");
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_RESOURCES);
    CHECK(strstr(error_message(), "cgroup v1") != NULL);
    CHECK_CLOSE(field(report, "memory", "limit_bytes")->valuedouble, 67108864, 0, 0);
    CHECK_CLOSE(field(report, "cpu", "quota")->valuedouble, 2.0, 1e-9, 0);
    cJSON_Delete(report);
    unsetenv("RUNNER_PROC_CGROUP");

    // No cgroup file system at all: nothing to check, no failure.
    put("none/empty", "");
    use_tree("none");
    report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_INT(field(report, "memory", "cgroup_version")->valueint, 0);
    cJSON_Delete(report);
}

static void test_host_memory(void) {
    put("meminfo", "MemTotal:         262144 kB\nMemFree: 1000 kB\nMemAvailable:      131072 kB\n");
    char path[512];
    snprintf(path, sizeof path, "%s/meminfo", root);
    setenv("RUNNER_PROC_MEMINFO", path, 1);
    runner_config cfg = base(); // bert-tiny: needs a little over 256 MiB
    int code;
    cJSON *report = run(&cfg, &code);
    CHECK_INT(code, EXIT_RESOURCES); // a 256 MiB host cannot hold it, cgroup or not
    CHECK(strstr(error_message(), "larger instance type") != NULL);
    CHECK_CLOSE(field(report, "memory", "host_total_bytes")->valuedouble, 256.0 * 1048576, 0, 0);
    CHECK_CLOSE(field(report, "memory", "host_available_bytes")->valuedouble, 128.0 * 1048576, 0,
                0);
    cJSON_Delete(report);

    put("meminfo", "MemTotal: 67108864 kB\nMemAvailable: 102400 kB\n"); // 64 GiB, 100 MiB free
    report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_STR(field(report, "memory", "status")->valuestring, "warn");
    cJSON_Delete(report);
    unsetenv("RUNNER_PROC_MEMINFO");
}

static void test_disk_and_batch(void) {
    runner_config cfg = base();
    int code;
    // the output does not exist yet: its nearest existing parent is checked
    snprintf(cfg.output_path, sizeof cfg.output_path, "%s/a/b/c", root);
    cJSON *report = run(&cfg, &code);
    CHECK_INT(code, 0);
    CHECK_STR(field(report, "disk", "checked")->valuestring, root);
    CHECK(cJSON_IsTrue(field(report, "disk", "writable")));
    cJSON_Delete(report);

    // below a regular file: not a directory -> OUTPUT
    put("file", "x");
    snprintf(cfg.output_path, sizeof cfg.output_path, "%s/file/out", root);
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_OUTPUT);
    CHECK(strstr(error_message(), "not a directory") != NULL);
    cJSON_Delete(report);

    // An s3:// output is asked of S3 (here: nothing listens, one attempt): a remote
    // failure is retryable (84), and no local staging check runs.
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
    setenv("AWS_ACCESS_KEY_ID", "testing", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "testing-secret", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("RUNNER_AWS_MAX_ATTEMPTS", "1", 1);
    snprintf(cfg.output_path, sizeof cfg.output_path, "s3://bucket/prefix");
    report = run(&cfg, &code);
    CHECK_INT(code, EXIT_REMOTE_IO);
    CHECK(cJSON_IsFalse(field(report, "disk", "remote_writable")));
    CHECK(strstr(error_message(), "s3://bucket/prefix") != NULL);
    cJSON_Delete(report);

    cfg = base();
    setenv("AWS_BATCH_JOB_ID", "job-123", 1);
    setenv("AWS_BATCH_JOB_ATTEMPT", "2", 1);
    setenv("AWS_BATCH_JOB_NODE_INDEX", "1", 1);
    setenv("AWS_BATCH_JOB_NUM_NODES", "4", 1);
    report = run(&cfg, &code);
    CHECK_STR(field(report, "batch", "job_id")->valuestring, "job-123");
    CHECK_STR(field(report, "batch", "attempt")->valuestring, "2");
    CHECK_STR(field(report, "batch", "num_nodes")->valuestring, "4");
    CHECK(strstr(field(report, "batch", "summary")->valuestring, "node 1 of 4") != NULL);
    CHECK(field(report, "memlock", "status") != NULL);
    CHECK(cJSON_GetObjectItem(report, "config") != NULL);
    cJSON_Delete(report);
    unsetenv("AWS_BATCH_JOB_ID");
    unsetenv("AWS_BATCH_JOB_ATTEMPT");
    unsetenv("AWS_BATCH_JOB_NODE_INDEX");
    unsetenv("AWS_BATCH_JOB_NUM_NODES");
    report = run(&cfg, &code);
    CHECK_STR(field(report, "batch", "status")->valuestring, "skip");
    cJSON_Delete(report);
}

int main(void) {
    CHECK(mkdtemp(root) != NULL);
    setenv("RUNNER_SHM_PATH", root, 1);
    put("none/.keep", "");
    use_tree("none");
    test_gpu_rules();
    test_shm();
    test_cgroup_v2();
    test_cgroup_v1();
    test_host_memory();
    test_disk_and_batch();
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    CHECK_INT(system(command), 0);
    return check_summary();
}
