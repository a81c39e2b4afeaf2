#include "runner/serve/nvml.h"
#include "runner/timing.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

// The few NVML types we need, as nvml.h declares them (the header is not installed on
// build machines without the CUDA toolkit; the ABI of these calls is stable).
typedef int nvml_return; // nvmlReturn_t, NVML_SUCCESS == 0
typedef struct nvml_device_st *nvml_device;
typedef struct {
    unsigned gpu, memory;
} nvml_utilization;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory;
enum { NVML_TEMPERATURE_GPU = 0, NVML_CLOCK_SM = 1 };

static struct {
    pthread_mutex_t lock;
    bool tried, ok;
    char reason[256];
    void *lib;
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*count)(unsigned *);
    nvml_return (*handle)(unsigned, nvml_device *);
    nvml_return (*uuid)(nvml_device, char *, unsigned);
    nvml_return (*name)(nvml_device, char *, unsigned);
    nvml_return (*utilization)(nvml_device, nvml_utilization *);
    nvml_return (*memory)(nvml_device, nvml_memory *);
    nvml_return (*temperature)(nvml_device, int, unsigned *);
    nvml_return (*power)(nvml_device, unsigned *);
    nvml_return (*clock)(nvml_device, int, unsigned *);
    nvml_gpu cache[NVML_MAX_GPUS];
    int cached;
    double cache_time;
} nv = {.lock = PTHREAD_MUTEX_INITIALIZER};

// dlsym returns void*; converting it to a function pointer is what POSIX specifies.
#define NVML_SYM(field, symbol, required)                                                  \
    do {                                                                                   \
        *(void **)(&nv.field) = dlsym(nv.lib, symbol);                                     \
        if (!nv.field && (required)) {                                                     \
            snprintf(nv.reason, sizeof nv.reason, "%s: no symbol %s", library, symbol);    \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

bool nvml_open(const char *library) {
    if (!library) library = "libnvidia-ml.so.1";
    pthread_mutex_lock(&nv.lock);
    if (nv.tried) {
        bool ok = nv.ok;
        pthread_mutex_unlock(&nv.lock);
        return ok;
    }
    nv.tried = true;
    nv.lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!nv.lib) {
        const char *e = dlerror();
        snprintf(nv.reason, sizeof nv.reason, "%s", e ? e : "dlopen failed");
        pthread_mutex_unlock(&nv.lock);
        return false;
    }
    // Versioned entry points: the unversioned ones are the pre-2012 ABI.
    NVML_SYM(init, "nvmlInit_v2", true);
    NVML_SYM(shutdown, "nvmlShutdown", true);
    NVML_SYM(count, "nvmlDeviceGetCount_v2", true);
    NVML_SYM(handle, "nvmlDeviceGetHandleByIndex_v2", true);
    NVML_SYM(uuid, "nvmlDeviceGetUUID", false);
    NVML_SYM(name, "nvmlDeviceGetName", false);
    NVML_SYM(utilization, "nvmlDeviceGetUtilizationRates", false);
    NVML_SYM(memory, "nvmlDeviceGetMemoryInfo", false);
    NVML_SYM(temperature, "nvmlDeviceGetTemperature", false);
    NVML_SYM(power, "nvmlDeviceGetPowerUsage", false);
    NVML_SYM(clock, "nvmlDeviceGetClockInfo", false);
    nvml_return rc = nv.init();
    if (rc != 0) {
        snprintf(nv.reason, sizeof nv.reason, "nvmlInit_v2 returned %d", rc);
        goto fail;
    }
    nv.ok = true;
    pthread_mutex_unlock(&nv.lock);
    return true;
fail:
    dlclose(nv.lib);
    nv.lib = NULL;
    pthread_mutex_unlock(&nv.lock);
    return false;
}

const char *nvml_unavailable_reason(void) {
    return nv.ok ? "" : nv.reason;
}

static void read_gpu(unsigned i, nvml_gpu *g) {
    memset(g, 0, sizeof *g);
    g->index = (int)i;
    nvml_device dev;
    if (nv.handle(i, &dev) != 0) return;
    if (nv.uuid && nv.uuid(dev, g->uuid, sizeof g->uuid) != 0) g->uuid[0] = '\0';
    if (nv.name && nv.name(dev, g->name, sizeof g->name) != 0) g->name[0] = '\0';
    nvml_utilization u;
    if (nv.utilization && nv.utilization(dev, &u) == 0) {
        g->has_util = g->has_mem_util = true;
        g->util_percent = u.gpu;
        g->mem_util_percent = u.memory;
    }
    nvml_memory m;
    if (nv.memory && nv.memory(dev, &m) == 0) {
        g->has_memory = true;
        g->fb_used_mib = (double)m.used / (1024.0 * 1024.0);
        g->fb_free_mib = (double)m.free / (1024.0 * 1024.0);
    }
    unsigned v;
    if (nv.temperature && nv.temperature(dev, NVML_TEMPERATURE_GPU, &v) == 0) {
        g->has_temp = true;
        g->temp_c = v;
    }
    if (nv.power && nv.power(dev, &v) == 0) {
        g->has_power = true;
        g->power_w = v / 1000.0; // NVML reports milliwatts
    }
    if (nv.clock && nv.clock(dev, NVML_CLOCK_SM, &v) == 0) {
        g->has_sm_clock = true;
        g->sm_clock_mhz = v;
    }
}

int nvml_read(nvml_gpu *out, int max) {
    if (!nvml_open(NULL)) return 0;
    pthread_mutex_lock(&nv.lock);
    double now = timing_now_s();
    if (nv.ok && (nv.cache_time == 0 || now - nv.cache_time >= 1.0)) {
        unsigned count = 0;
        if (nv.count(&count) != 0) count = 0;
        if (count > NVML_MAX_GPUS) count = NVML_MAX_GPUS;
        for (unsigned i = 0; i < count; i++) read_gpu(i, &nv.cache[i]);
        nv.cached = (int)count;
        nv.cache_time = now;
    }
    int n = nv.ok ? nv.cached : 0;
    if (n > max) n = max;
    memcpy(out, nv.cache, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&nv.lock);
    return n;
}

void nvml_close(void) {
    pthread_mutex_lock(&nv.lock);
    if (nv.ok) nv.shutdown();
    if (nv.lib) dlclose(nv.lib);
    nv.lib = NULL;
    nv.ok = false;
    nv.tried = false;
    nv.cached = 0;
    nv.cache_time = 0;
    pthread_mutex_unlock(&nv.lock);
}
