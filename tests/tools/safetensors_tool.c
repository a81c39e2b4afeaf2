// Drives runner/model/safetensors for tests/integration/test_safetensors*.py.
//
//   safetensors_tool info FILE       one line per tensor: name dtype shape offset nbytes
//   safetensors_tool convert IN OUT  every F32/F16/BF16/F64 tensor of IN, as fp32, into
//                                    OUT (other dtypes are skipped and named on stderr),
//                                    with IN's metadata
// Errors: the one-line reason on stderr, exit with its code (3 for a bad file).
#include "runner/error.h"
#include "runner/model/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int info(const safetensors_file *f) {
    for (int i = 0; i < safetensors_count(f); i++) {
        const st_tensor_info *t = safetensors_tensor(f, i);
        printf("%s %s [", t->name, safetensors_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf(d ? ",%lld" : "%lld", (long long)t->shape[d]);
        printf("] %zu %zu\n", t->offset, t->nbytes);
    }
    return 0;
}

static int convert(const safetensors_file *f, const char *out) {
    int n = safetensors_count(f), m = 0, rc = 0;
    st_write_tensor *list = calloc((size_t)n + 1, sizeof *list);
    for (int i = 0; i < n && !rc; i++) {
        const st_tensor_info *t = safetensors_tensor(f, i);
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
            fprintf(stderr, "skipped %s (%s)\n", t->name, safetensors_dtype_name(t->dtype));
            continue;
        }
        float *data = malloc(t->numel ? t->numel * sizeof *data : 1);
        rc = safetensors_read_f32(f, t, data);
        list[m] = (st_write_tensor){.name = t->name, .data = data, .ndim = t->ndim};
        memcpy(list[m].shape, t->shape, sizeof t->shape);
        m++;
    }
    cJSON *meta = NULL;
    const char *format = safetensors_metadata(f, "format");
    if (format) {
        meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "format", format);
    }
    if (!rc) rc = safetensors_write_f32(out, list, m, meta);
    cJSON_Delete(meta);
    for (int i = 0; i < m; i++) free((void *)list[i].data);
    free(list);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "convert") == 0 && argc < 4)) {
        fprintf(stderr, "usage: safetensors_tool info FILE | convert IN OUT\n");
        return 2;
    }
    safetensors_file *f = NULL;
    int rc = safetensors_open(argv[2], &f);
    if (!rc) rc = strcmp(argv[1], "info") == 0 ? info(f) : convert(f, argv[3]);
    if (rc) fprintf(stderr, "%s\n", error_message());
    safetensors_close(f);
    return rc;
}
