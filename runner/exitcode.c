#include "runner/exitcode.h"

#include "runner/error.h"
#include "runner/log.h"

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
    {EXIT_LEARNED_NOTHING, "LEARNED_NOTHING",
     "the best evaluation is no better than the majority-class baseline: reports written, "
     "model unfit for use",
     false},
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
        printf("%-4s  %-15s  %-5s  %s\n", "code", "name", "batch", "meaning");
        for (int i = 0; i < n; i++)
            printf("%-4d  %-15s  %-5s  %s\n", table[i].code, table[i].name,
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

enum { EXIT_HOOKS_MAX = 64 };

static void (*exit_hooks[EXIT_HOOKS_MAX])(void);
static int exit_hook_count;

void runner_on_exit(void (*hook)(void)) {
    if (hook && exit_hook_count < EXIT_HOOKS_MAX) exit_hooks[exit_hook_count++] = hook;
}

_Noreturn void runner_exit(int code, const char *reason) {
    // Pop before calling, so a hook that itself ends in runner_exit() cannot loop.
    while (exit_hook_count > 0) {
        void (*hook)(void) = exit_hooks[--exit_hook_count];
        hook();
    }
    if (code < 0 || code > 255) code = EXIT_INTERNAL;
    if (!reason || !*reason) {
        const exit_code_info *info = exitcode_lookup(code);
        reason = error_code() == code && *error_message() ? error_message()
                 : info                                   ? info->meaning
                                                          : "unknown exit code";
    }
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "code", code);
    cJSON_AddStringToObject(fields, "name", exitcode_name(code));
    cJSON_AddStringToObject(fields, "reason", reason);
    // A stop is expected (spot, SIGTERM): a warning, not an error, in log queries.
    log_level level = code == EXIT_OK ? LOG_INFO : code == EXIT_INTERRUPTED ? LOG_WARN : LOG_ERROR;
    log_fields_json(level, "exit", fields);
    fflush(NULL);
    exit(code);
}
