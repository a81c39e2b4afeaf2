#pragma once
// Preflight (DESIGN §3, §4): what the machine gives the job, checked before anything
// else at every start and alone with `runner --check [--json]`.
//   gpus     CUDA runtime (in a short-lived process of its own, `runner --gpu-probe`,
//            so the supervisor never holds a CUDA context): count, name, memory,
//            compute capability, driver/runtime versions, NVIDIA_/CUDA_VISIBLE_DEVICES
//   shm      /dev/shm by statvfs against the need (workers, batch) or --min-shm
//   cgroup   v2 (memory.max, cpu.max) or v1 (memory.limit_in_bytes, cpu.cfs_quota_us)
//   disk     free space at the output location (its nearest existing parent)
//   memlock  RLIMIT_MEMLOCK
//   batch    AWS_BATCH_JOB_ID, _ATTEMPT, _NODE_INDEX, _NUM_NODES, _MAIN_NODE_INDEX
// The paths it reads can be moved for tests: RUNNER_SHM_PATH (default /dev/shm),
// RUNNER_CGROUP_ROOT (default /sys/fs/cgroup), RUNNER_PROC_CGROUP (default
// /proc/self/cgroup), RUNNER_PROC_MEMINFO (default /proc/meminfo).
#include "runner/config.h"

#include <cjson/cJSON.h>
#include <stdint.h>

// Run every check. Returns 0 or the exit code of the first failing check (with
// error_set() naming what to change); *report_out (may be NULL) receives the report,
// owned by the caller. The report is also kept for preflight_last_report().
int preflight_run(const runner_config *cfg, cJSON **report_out);
// A copy of the last report (the caller frees it), or NULL before the first run.
cJSON *preflight_last_report(void);
// Print a report: an aligned table when `json` is false, else one JSON object.
void preflight_print(const cJSON *report, bool json);

// The pieces, exposed for unit tests.
// /dev/shm bytes the job needs: workers x (batch ring + telemetry) + NCCL/Gloo buffers.
uint64_t preflight_shm_need(const runner_config *cfg, int workers);
// GPU requirement: `wanted` from --gpus (-1 auto, 0 none, N), `visible` GPUs found.
// 0, EXIT_GPU_FAULT (required, none visible) or EXIT_RESOURCES (fewer than asked).
int preflight_check_gpu_count(int wanted, int visible);
// Workers for `visible` GPUs: --workers, else one per GPU used (one on CPU).
int preflight_worker_count(const runner_config *cfg, int visible);
// The number of GPUs found by the last preflight_run() (0 before it or without CUDA).
int preflight_gpu_count(void);
// The whole of `runner --gpu-probe` (called by main() before the command line is
// parsed; not in --help): ask the CUDA runtime, write the answer to fd 3, which the
// preflight gave it. Returns the exit code (2 when fd 3 is not the preflight's pipe).
#define PREFLIGHT_GPU_PROBE_FLAG "--gpu-probe"
int preflight_gpu_probe_main(void);
// The binary to start as `PATH --gpu-probe` (main() gives "/proc/self/exe"). Unset, as
// in unit tests whose own binary knows no such flag, no GPU is seen.
void preflight_set_probe_program(const char *path);
