// Loads a pretrained base checkpoint into the token-classification model as a job does
// (bert_create, bert_init_random with the job's seed, bert_load_safetensors: encoder
// weights from the file, head newly initialised), for tests/integration/test_hub.py to
// compare with transformers' from_pretrained of the same cached files:
//   hub_logits MODEL_DIR CASE_DIR
// CASE_DIR/case.json: {"num_labels": n, "seed": s, "B": b, "T": t, "ids": [...],
// "token_types": [...], "mask": [...]}; writes CASE_DIR/out.safetensors with "logits"
// (B*T, n) of an inference forward and every head tensor under its HF name.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/model/bert.h"
#include "runner/model/safetensors.h"

static int fail(void) {
    fprintf(stderr, "hub_logits: %s\n", error_message());
    return error_code() ? error_code() : 1;
}

static int32_t *int_array(const cJSON *root, const char *key, size_t n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n) return NULL;
    int32_t *out = malloc(sizeof(int32_t) * n);
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) out[i++] = (int32_t)it->valuedouble;
    return out;
}

static int number(const cJSON *root, const char *key) {
    return (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, key));
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: hub_logits MODEL_DIR CASE_DIR\n");
        return 2;
    }
    char path[4096], *text = NULL;
    snprintf(path, sizeof path, "%s/case.json", argv[2]);
    if (files_read_all(path, &text, NULL)) return fail();
    cJSON *spec = cJSON_Parse(text);
    free(text);
    int B = number(spec, "B"), T = number(spec, "T"), labels = number(spec, "num_labels");
    size_t N = (size_t)B * T;
    int32_t *ids = int_array(spec, "ids", N), *types = int_array(spec, "token_types", N);
    int32_t *mask = int_array(spec, "mask", N);
    if (!ids || !types || !mask) {
        fprintf(stderr, "hub_logits: case.json arrays missing or of the wrong size\n");
        return 3;
    }
    bert_config cfg;
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (bert_config_load(path, &cfg)) return fail();
    backend *be = backend_cpu_create(1);
    bert_model *m = NULL;
    if (!be || bert_create(&m, be, &cfg, HEAD_TOKEN_CLASSIFICATION, labels, B, T)) return fail();
    safetensors_checkpoint_path(argv[1], path, sizeof path);
    if (bert_init_random(m, (uint64_t)number(spec, "seed")) || bert_load_safetensors(m, path))
        return fail();
    bert_batch batch = {B, T, ids, types, mask, NULL};
    if (bert_forward(m, &batch, false, 0, 0, NULL)) return fail();
    float *logits = malloc(sizeof(float) * N * (size_t)labels);
    float *params = malloc(sizeof(float) * bert_num_parameters(m));
    if (!logits || !params || bert_logits(m, logits) || bert_get_state(m, params, NULL, NULL))
        return fail();
    int nt = bert_num_tensors(m), n = 0;
    st_write_tensor *list = calloc((size_t)nt + 1, sizeof *list);
    list[n++] = (st_write_tensor){"logits", logits, 2, {(int64_t)N, labels}};
    for (int i = 0; i < nt; i++) {
        size_t off;
        int shape[2];
        const char *name = bert_tensor_info(m, i, &off, shape);
        if (strncmp(name, "classifier.", 11) != 0) continue;
        list[n++] = (st_write_tensor){name, params + off, shape[1] ? 2 : 1, {shape[0], shape[1]}};
    }
    snprintf(path, sizeof path, "%s/out.safetensors", argv[2]);
    if (safetensors_write_f32(path, list, n, NULL)) return fail();
    free(list);
    free(logits);
    free(params);
    free(ids), free(types), free(mask);
    cJSON_Delete(spec);
    bert_destroy(m);
    be->destroy(be);
    return 0;
}
