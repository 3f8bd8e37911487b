/* A stand-in libnvidia-ml.so.1 for tests/resources.rs, on machines without
 * an NVIDIA driver: one "GPU" on which every process whose command name
 * is $FAKE_NVML_COMM (python3 by default) runs, each holding 256 MiB and
 * at 25% SM use. Only the calls trainbox's sampler makes through the
 * nvml-wrapper crate, with NVML's own signatures, structs and codes, so
 * the real binding code runs against it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
enum { NVML_SUCCESS = 0, NVML_ERROR_INVALID_ARGUMENT = 2, NVML_ERROR_INSUFFICIENT_SIZE = 7 };

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

static struct nvmlDevice_st { int unused; } the_device;
static const unsigned long long MEMORY = 256ULL << 20;
static const unsigned int SM_UTIL = 25;

/* The pids of processes named $FAKE_NVML_COMM, at most `max`. */
static unsigned int our_pids(unsigned int *pids, unsigned int max) {
    const char *want = getenv("FAKE_NVML_COMM");
    if (!want) want = "python3";
    unsigned int found = 0;
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) && found < max) {
        char *end;
        unsigned long pid = strtoul(entry->d_name, &end, 10);
        if (*end || pid == 0) continue;
        char path[64], comm[64] = {0};
        snprintf(path, sizeof path, "/proc/%lu/comm", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
        fclose(f);
        if (strcmp(comm, want) == 0) pids[found++] = (unsigned int)pid;
    }
    closedir(proc);
    return found;
}

nvmlReturn_t nvmlInit_v2(void) { return NVML_SUCCESS; }
nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    snprintf(version, length, "550.00.fake");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    *count = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (index != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &the_device;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    unsigned int pids[4096];
    unsigned int n = our_pids(pids, 4096);
    if (!infos || *count < n) {
        *count = n;
        return n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    for (unsigned int i = 0; i < n; i++) {
        infos[i] = (nvmlProcessInfo_t){pids[i], MEMORY, 0xFFFFFFFF, 0xFFFFFFFF};
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                             nvmlProcessUtilizationSample_t *samples,
                                             unsigned int *count,
                                             unsigned long long lastSeenTimeStamp) {
    unsigned int pids[4096];
    unsigned int n = our_pids(pids, 4096);
    if (!samples || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned int i = 0; i < n; i++) {
        samples[i] = (nvmlProcessUtilizationSample_t){pids[i], lastSeenTimeStamp + 1, SM_UTIL, 10, 0, 0};
    }
    *count = n;
    return NVML_SUCCESS;
}
