#pragma once
// GPU readings through NVML, loaded with dlopen("libnvidia-ml.so.1") so the binary has
// no link-time dependency on the driver (the container runtime mounts the library when
// NVIDIA_DRIVER_CAPABILITIES includes "utility"). Without the library, or when a call
// fails, nothing is reported: a value a GPU does not give is absent, never a sentinel.
#include <stdbool.h>

enum { NVML_MAX_GPUS = 16 };

typedef struct {
    int index;
    char uuid[96];
    char name[96];
    bool has_util, has_mem_util, has_memory, has_temp, has_power, has_sm_clock;
    unsigned util_percent;     // DCGM_FI_DEV_GPU_UTIL
    unsigned mem_util_percent; // DCGM_FI_DEV_MEM_COPY_UTIL
    double fb_used_mib;        // DCGM_FI_DEV_FB_USED
    double fb_free_mib;        // DCGM_FI_DEV_FB_FREE
    unsigned temp_c;           // DCGM_FI_DEV_GPU_TEMP
    double power_w;            // DCGM_FI_DEV_POWER_USAGE
    unsigned sm_clock_mhz;     // DCGM_FI_DEV_SM_CLOCK
} nvml_gpu;

// Load and initialise NVML once (thread-safe). False when unavailable; the reason is
// kept for nvml_unavailable_reason(). `library` overrides the soname (tests); NULL
// means "libnvidia-ml.so.1".
bool nvml_open(const char *library);
const char *nvml_unavailable_reason(void);
// Read every GPU into out[0..max): returns how many (0 without NVML). Readings are
// cached for a second, so scrapes at any rate cost at most one NVML sweep a second.
int nvml_read(nvml_gpu *out, int max);
// nvmlShutdown and dlclose (idempotent).
void nvml_close(void);
