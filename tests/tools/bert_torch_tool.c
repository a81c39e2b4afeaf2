// Runs the BERT model on a case written by tests/integration/test_model_torch.py so the
// test can compare it with transformers:
//   bert_torch_tool DIR
// DIR holds config.json (HF), model.safetensors (HF names) and case.json:
//   {"head": "token"|"sequence"|"mlm", "num_labels": n, "B": b, "T": t,
//    "ids": [...], "token_types": [...], "mask": [...], "labels": [...],
//    "steps": s, "lr": x, "weight_decay": x, "max_grad_norm": x, "threads": n}
// and receives out.safetensors ("logits" and "grad.<HF name>" for every parameter of the
// first forward/backward), after.safetensors (the weights after `steps` AdamW steps) and
// losses.json ({"loss": first loss, "losses": [one per step], "grad_norms": [...]}).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/model/bert.h"
#include "runner/model/safetensors.h"

static int fail(void) {
    fprintf(stderr, "bert_torch_tool: %s\n", error_message());
    return error_code() ? error_code() : 1;
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!buf) return NULL;
    buf[got] = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    return j;
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

static double num(const cJSON *root, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(root, key)->valuedouble;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bert_torch_tool DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/case.json", argv[1]);
    cJSON *spec = read_json(path);
    if (!spec) {
        fprintf(stderr, "bert_torch_tool: cannot read %s\n", path);
        return 3;
    }
    const char *head_name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "head"));
    bert_head head = strcmp(head_name, "sequence") == 0 ? HEAD_SEQUENCE_CLASSIFICATION
                     : strcmp(head_name, "mlm") == 0    ? HEAD_MASKED_LM
                                                        : HEAD_TOKEN_CLASSIFICATION;
    int B = (int)num(spec, "B"), T = (int)num(spec, "T"), steps = (int)num(spec, "steps");
    size_t N = (size_t)B * T, label_n = head == HEAD_SEQUENCE_CLASSIFICATION ? (size_t)B : N;
    int32_t *ids = int_array(spec, "ids", N), *types = int_array(spec, "token_types", N);
    int32_t *mask = int_array(spec, "mask", N), *labels = int_array(spec, "labels", label_n);
    if (!ids || !types || !mask || !labels) {
        fprintf(stderr, "bert_torch_tool: case.json arrays missing or of the wrong size\n");
        return 3;
    }

    bert_config cfg;
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    if (bert_config_load(path, &cfg)) return fail();
    backend *be = backend_cpu_create((int)num(spec, "threads"));
    bert_model *m = NULL;
    if (!be || bert_create(&m, be, &cfg, head, (int)num(spec, "num_labels"), B, T)) return fail();
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (bert_load_safetensors(m, path)) return fail();

    bert_batch batch = {B, T, ids, types, mask, labels};
    float loss = 0;
    if (bert_forward(m, &batch, true, 1234, 0, &loss) || bert_backward(m)) return fail();

    // logits and every gradient under its HF name
    int rows = head == HEAD_SEQUENCE_CLASSIFICATION ? B : (int)N;
    int classes = head == HEAD_MASKED_LM ? cfg.vocab_size : (int)num(spec, "num_labels");
    size_t P = bert_num_parameters(m);
    float *logits = malloc(sizeof(float) * rows * classes), *grads = malloc(sizeof(float) * P);
    if (bert_logits(m, logits) || bert_get_grads(m, grads)) return fail();
    int nt = bert_num_tensors(m);
    st_write_tensor *list = calloc(nt + 1, sizeof *list);
    char (*names)[128] = calloc(nt, sizeof *names);
    list[0] = (st_write_tensor){"logits", logits, 2, {rows, classes}};
    for (int i = 0; i < nt; i++) {
        size_t off;
        int shape[2];
        const char *name = bert_tensor_info(m, i, &off, shape);
        snprintf(names[i], sizeof names[i], "grad.%s", name);
        list[i + 1] = (st_write_tensor){names[i], grads + off, shape[1] ? 2 : 1,
                                        {shape[0], shape[1]}};
    }
    snprintf(path, sizeof path, "%s/out.safetensors", argv[1]);
    if (safetensors_write_f32(path, list, nt + 1, NULL)) return fail();

    // training steps: the loss of each forward before its update
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "loss", loss);
    cJSON *losses = cJSON_AddArrayToObject(out, "losses");
    cJSON *norms = cJSON_AddArrayToObject(out, "grad_norms");
    for (int t = 1; t <= steps; t++) {
        float norm = 0;
        bert_zero_grad(m);
        if (bert_forward(m, &batch, true, 1234, (uint64_t)t, &loss) || bert_backward(m) ||
            bert_step(m, (float)num(spec, "lr"), (float)num(spec, "weight_decay"),
                      (float)num(spec, "max_grad_norm"), t, &norm))
            return fail();
        cJSON_AddItemToArray(losses, cJSON_CreateNumber(loss));
        cJSON_AddItemToArray(norms, cJSON_CreateNumber(norm));
    }
    snprintf(path, sizeof path, "%s/after.safetensors", argv[1]);
    if (bert_save_safetensors(m, path)) return fail();
    snprintf(path, sizeof path, "%s/losses.json", argv[1]);
    char *text = cJSON_Print(out);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "bert_torch_tool: cannot write %s\n", path);
        return 4;
    }
    free(text);
    cJSON_Delete(out);
    cJSON_Delete(spec);
    free(list);
    free(names);
    free(logits);
    free(grads);
    free(ids), free(types), free(mask), free(labels);
    bert_destroy(m);
    be->destroy(be);
    return 0;
}
