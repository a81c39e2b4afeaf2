#include "runner/exitcode.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static const exit_code_info EXIT_TABLE[] = {
    {EXIT_OK, "OK", "job finished", false},
    {EXIT_INTERNAL, "INTERNAL", "a bug: assertion, unexpected state", false},
    {EXIT_USAGE, "USAGE", "bad flag, bad or missing config value, unknown architecture", false},
    {EXIT_BAD_INPUT, "BAD_INPUT", "data, model, tokenizer or checkpoint file invalid or missing",
     false},
    {EXIT_OUTPUT, "OUTPUT", "output location not writable, permission denied", false},
    {EXIT_RESOURCES, "RESOURCES",
     "the job definition gives too little: /dev/shm, host memory, disk, fewer GPUs than asked",
     false},
    {EXIT_GPU_OOM, "GPU_OOM", "the model and batch do not fit in GPU memory", false},
    {EXIT_DIVERGED, "DIVERGED", "loss became NaN/Inf", false},
    {EXIT_INTERRUPTED, "INTERRUPTED",
     "SIGTERM, spot notice or a stop command: checkpoint written, resume next attempt", true},
    {EXIT_GPU_FAULT, "GPU_FAULT",
     "GPU expected but not visible, CUDA init failure, Xid/ECC, sticky CUDA error", true},
    {EXIT_COORDINATION, "COORDINATION", "Redis unreachable, rendezvous timed out", true},
    {EXIT_PEER_LOST, "PEER_LOST", "another node or worker died, collective failed", true},
    {EXIT_REMOTE_IO, "REMOTE_IO", "S3 or network failure after retries", true},
};

const exit_code_info *exitcode_table(int *count) {
    *count = (int)(sizeof EXIT_TABLE / sizeof EXIT_TABLE[0]);
    return EXIT_TABLE;
}

const exit_code_info *exitcode_lookup(int code) {
    int n;
    const exit_code_info *table = exitcode_table(&n);
    for (int i = 0; i < n; i++)
        if ((int)table[i].code == code) return &table[i];
    return NULL;
}

const char *exitcode_name(int code) {
    const exit_code_info *info = exitcode_lookup(code);
    return info ? info->name : "INTERNAL";
}

void exitcode_print(bool json) {
    int n;
    const exit_code_info *table = exitcode_table(&n);
    if (!json) {
        printf("%-4s  %-13s  %-5s  %s\n", "code", "name", "batch", "meaning");
        for (int i = 0; i < n; i++)
            printf("%-4d  %-13s  %-5s  %s\n", table[i].code, table[i].name,
                   table[i].retry ? "RETRY" : "EXIT", table[i].meaning);
        return;
    }
    cJSON *array = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "code", table[i].code);
        cJSON_AddStringToObject(row, "name", table[i].name);
        cJSON_AddStringToObject(row, "meaning", table[i].meaning);
        cJSON_AddStringToObject(row, "batch", table[i].retry ? "RETRY" : "EXIT");
        cJSON_AddItemToArray(array, row);
    }
    char *text = cJSON_PrintUnformatted(array);
    if (text) puts(text);
    free(text);
    cJSON_Delete(array);
}
