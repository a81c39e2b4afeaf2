// Fuzz target: arbitrary bytes as a safetensors file. Opening must either succeed (and
// then every float tensor converts without reading outside the file) or fail with
// EXIT_BAD_INPUT; any crash, sanitizer report or other code is a bug.
#include "runner/error.h"
#include "runner/model/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEED(s) s
const char *const fuzz_seeds[] = {
    SEED("\x36\0\0\0\0\0\0\0{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
         "\0\0\x80\x3f\0\0\0\x40"),
    SEED("\x8e\0\0\0\0\0\0\0{\"__metadata__\":{\"format\":\"pt\"},\"h\":{\"dtype\":\"F16\","
         "\"shape\":[2,1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"BF16\",\"shape\":[],"
         "\"data_offsets\":[4,6]}}  \0\x3c\0\xc0\x80\x3f"),
    SEED("\x02\0\0\0\0\0\0\0{}"),
    NULL,
};
const size_t fuzz_seed_sizes[] = {8 + 0x36 + 8, 8 + 0x8e + 6, 10, 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_safetensors.%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    safetensors_file *st = NULL;
    int rc = safetensors_open(path, &st);
    if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    for (int i = 0; st && i < safetensors_count(st); i++) {
        const st_tensor_info *t = safetensors_tensor(st, i);
        if (safetensors_find(st, t->name) != t) abort();
        float *out = malloc(t->numel ? t->numel * sizeof *out : 1);
        int r = safetensors_read_f32(st, t, out);
        if (r != 0 && r != EXIT_BAD_INPUT) abort();
        free(out);
    }
    safetensors_close(st);
    unlink(path);
    return 0;
}
