// BERT files: Hugging Face config.json (BERT, DistilBERT, ELECTRA) and safetensors
// weights in and out under HF names (runner/model/safetensors.h does the format).
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner/error.h"
#include "runner/log.h"
#include "runner/model/bert_internal.h"
#include "runner/model/safetensors.h"

// ---- config.json -------------------------------------------------------------------------

static char *read_text(const char *path, int *rc) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *rc = error_set(EXIT_BAD_INPUT, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (size_t)64 << 20) { // a config is a few hundred bytes
                *rc = error_set(EXIT_BAD_INPUT, "%s: larger than 64 MiB, not a config", path);
                break;
            }
            char *grown = realloc(buf, cap);
            if (!grown) {
                *rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
                break;
            }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (!*rc && ferror(f)) *rc = error_set(EXIT_BAD_INPUT, "%s: read error", path);
    fclose(f);
    if (*rc) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

// An integer field: `fallback` when absent and optional (fallback >= 0), else an error.
static int json_int(const cJSON *root, const char *path, const char *key, int fallback,
                    int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it) {
        if (fallback < 0) return error_set(EXIT_BAD_INPUT, "%s: missing \"%s\"", path, key);
        *out = fallback;
        return 0;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int)it->valuedouble ||
        it->valuedouble < 0)
        return error_set(EXIT_BAD_INPUT, "%s: \"%s\" must be a non-negative integer", path, key);
    *out = (int)it->valuedouble;
    return 0;
}

static int json_float(const cJSON *root, const char *path, const char *key, float fallback,
                      float *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) {
        *out = fallback;
        return 0;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble < 0)
        return error_set(EXIT_BAD_INPUT, "%s: \"%s\" must be a non-negative number", path, key);
    *out = (float)it->valuedouble;
    return 0;
}

static int json_require_string(const cJSON *root, const char *path, const char *key,
                               const char *fallback, const char *want) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    const char *got = it ? cJSON_GetStringValue(it) : fallback;
    if (!got) return error_set(EXIT_BAD_INPUT, "%s: \"%s\" must be a string", path, key);
    if (strcmp(got, want) != 0)
        return error_set(EXIT_BAD_INPUT, "%s: \"%s\" is \"%s\"; only \"%s\" is supported", path,
                         key, got, want);
    return 0;
}

int bert_config_load(const char *path, bert_config *out) {
    int rc = 0;
    char *text = read_text(path, &rc);
    if (!text) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return error_set(EXIT_BAD_INPUT, "%s: not a JSON object", path);
    }
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "model_type"));
    bert_config c = {.layer_norm_eps = 1e-12f};
    if (!type) {
        rc = error_set(EXIT_BAD_INPUT, "%s: missing \"model_type\"", path);
    } else if (strcmp(type, "bert") == 0 || strcmp(type, "electra") == 0 ||
               strcmp(type, "roberta") == 0) {
        // RoBERTa is BERT's encoder with one token type and positions counted from
        // pad_token_id + 1 (transformers' create_position_ids_from_input_ids).
        bool roberta = type[0] == 'r';
        c.arch = roberta ? ARCH_ROBERTA : type[0] == 'b' ? ARCH_BERT : ARCH_ELECTRA;
        rc = json_int(root, path, "vocab_size", -1, &c.vocab_size);
        if (!rc) rc = json_int(root, path, "hidden_size", -1, &c.hidden_size);
        if (!rc) rc = json_int(root, path, "num_hidden_layers", -1, &c.num_layers);
        if (!rc) rc = json_int(root, path, "num_attention_heads", -1, &c.num_heads);
        if (!rc) rc = json_int(root, path, "intermediate_size", -1, &c.intermediate_size);
        if (!rc) rc = json_int(root, path, "max_position_embeddings", 512, &c.max_position);
        if (!rc)
            rc = json_int(root, path, "type_vocab_size", roberta ? 1 : 2, &c.type_vocab_size);
        int pad_token_id = 1;
        if (!rc && roberta) rc = json_int(root, path, "pad_token_id", 1, &pad_token_id);
        c.position_offset = roberta ? pad_token_id + 1 : 0;
        if (!rc) rc = json_int(root, path, "embedding_size", c.hidden_size, &c.embedding_size);
        if (!rc) rc = json_float(root, path, "layer_norm_eps", 1e-12f, &c.layer_norm_eps);
        if (!rc) rc = json_float(root, path, "hidden_dropout_prob", 0.1f, &c.hidden_dropout);
        if (!rc)
            rc = json_float(root, path, "attention_probs_dropout_prob", 0.1f,
                            &c.attention_dropout);
        if (!rc) rc = json_require_string(root, path, "hidden_act", "gelu", "gelu");
        if (!rc)
            rc = json_require_string(root, path, "position_embedding_type", "absolute",
                                     "absolute");
    } else if (strcmp(type, "distilbert") == 0) {
        c.arch = ARCH_DISTILBERT;
        rc = json_int(root, path, "vocab_size", -1, &c.vocab_size);
        if (!rc) rc = json_int(root, path, "dim", -1, &c.hidden_size);
        if (!rc) rc = json_int(root, path, "n_layers", -1, &c.num_layers);
        if (!rc) rc = json_int(root, path, "n_heads", -1, &c.num_heads);
        if (!rc) rc = json_int(root, path, "hidden_dim", -1, &c.intermediate_size);
        if (!rc) rc = json_int(root, path, "max_position_embeddings", 512, &c.max_position);
        if (!rc) rc = json_float(root, path, "dropout", 0.1f, &c.hidden_dropout);
        if (!rc) rc = json_float(root, path, "attention_dropout", 0.1f, &c.attention_dropout);
        if (!rc) rc = json_require_string(root, path, "activation", "gelu", "gelu");
        c.type_vocab_size = 0;
        c.embedding_size = c.hidden_size;
    } else {
        rc = error_set(EXIT_BAD_INPUT,
                       "%s: model_type \"%s\" not supported (bert, distilbert, electra, roberta)", path,
                       type);
    }
    cJSON_Delete(root);
    if (rc) return rc;
    if (c.hidden_size == 0 || c.num_heads == 0 || c.hidden_size % c.num_heads != 0 ||
        c.vocab_size == 0 || c.intermediate_size == 0 || c.max_position == 0)
        return error_set(EXIT_BAD_INPUT, "%s: inconsistent sizes (hidden %d, heads %d)", path,
                         c.hidden_size, c.num_heads);
    *out = c;
    return 0;
}

// ---- safetensors in ----------------------------------------------------------------------

// The checkpoint's tensor for one of ours (and the file holding it): its own name, then without the task prefix, then
// under another model's prefix, and the TF-era LayerNorm names (gamma, beta).
static const st_tensor_info *find_tensor(const safetensors_set *f, const bert_tensor *t,
                                         const safetensors_file **file) {
    static const char *const prefixes[] = {"", "bert.", "distilbert.", "electra.", "roberta."};
    char name[BERT_NAME_MAX + 16];
    const st_tensor_info *ti = safetensors_set_find(f, t->name, file);
    if (ti) return ti;
    for (int alias = 0; alias < 2; alias++) {
        char base[BERT_NAME_MAX];
        snprintf(base, sizeof base, "%s", t->base_name);
        if (alias) {
            size_t len = strlen(base);
            const char *w = ".LayerNorm.weight", *b = ".LayerNorm.bias";
            if (len > strlen(w) && strcmp(base + len - strlen(w), w) == 0)
                strcpy(base + len - strlen("weight"), "gamma");
            else if (len > strlen(b) && strcmp(base + len - strlen(b), b) == 0)
                strcpy(base + len - strlen("bias"), "beta");
            else
                break;
        }
        for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
            snprintf(name, sizeof name, "%s%s", prefixes[p], base);
            if ((ti = safetensors_set_find(f, name, file))) return ti;
        }
    }
    if (strcmp(t->name, "cls.predictions.bias") == 0)
        return safetensors_set_find(f, "cls.predictions.decoder.bias", file);
    return NULL;
}

int bert_load_safetensors(bert_model *m, const char *path) {
    safetensors_set *f = NULL;
    int rc = safetensors_set_open(path, &f);
    if (rc) return rc;
    size_t bytes = m->num_params * sizeof(float);
    float *host = malloc(bytes);
    if (!host) {
        safetensors_set_close(f);
        return error_set(EXIT_RESOURCES, "%s: out of memory for %zu parameters", path,
                         m->num_params);
    }
    // start from the current weights: a head absent from the file keeps its init
    rc = m->be->copy_to_host(m->be, host, m->params, bytes);
    // What from_pretrained reports of a base checkpoint loaded into a task model: the
    // head it initialised and the file's tensors nothing took (MLM/NSP heads, pooler).
    int count = safetensors_set_count(f);
    bool *used = calloc(count > 0 ? (size_t)count : 1, sizeof *used);
    cJSON *initialised = cJSON_CreateArray(), *unused = cJSON_CreateArray();
    if (!used || !initialised || !unused) rc = error_set(EXIT_RESOURCES, "%s: out of memory", path);
    for (int i = 0; i < m->num_tensors && !rc; i++) {
        const bert_tensor *t = &m->tensors[i];
        const safetensors_file *file = NULL;
        const st_tensor_info *ti = find_tensor(f, t, &file);
        if (!ti) {
            if (!t->head) {
                rc = error_set(EXIT_BAD_INPUT, "%s: tensor \"%s\" missing", path, t->name);
                break;
            }
            cJSON_AddItemToArray(initialised, cJSON_CreateString(t->name));
            continue;
        }
        for (int k = 0; k < count; k++)
            if (safetensors_set_tensor(f, k, NULL) == ti) used[k] = true;
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        // a shard's shape error names the shard file and the tensor
        rc = safetensors_read_f32_shape(file, ti, t->shape[1] ? 2 : 1, shape, host + t->offset);
    }
    for (int k = 0; k < count && !rc; k++)
        if (!used[k])
            cJSON_AddItemToArray(unused, cJSON_CreateString(safetensors_set_tensor(f, k, NULL)->name));
    safetensors_set_close(f);
    free(used);
    if (!rc) rc = m->be->copy_to_device(m->be, m->params, host, bytes);
    free(host);
    if (!rc) rc = bert_sync_params_act(m);
    if (!rc && (cJSON_GetArraySize(initialised) || cJSON_GetArraySize(unused))) {
        cJSON *fields = cJSON_CreateObject();
        cJSON_AddStringToObject(fields, "file", path);
        cJSON_AddItemToObject(fields, "newly_initialised", initialised);
        cJSON_AddItemToObject(fields, "not_used", unused);
        initialised = unused = NULL;
        log_fields(LOG_WARN, "model_weights", fields);
    }
    cJSON_Delete(initialised);
    cJSON_Delete(unused);
    return rc;
}

// ---- safetensors out ---------------------------------------------------------------------

int bert_save_safetensors(const bert_model *m, const char *path) {
    size_t bytes = m->num_params * sizeof(float);
    float *host = malloc(bytes);
    st_write_tensor *list = calloc(m->num_tensors, sizeof *list);
    if (!host || !list) {
        free(host);
        free(list);
        return error_set(EXIT_RESOURCES, "%s: out of memory", path);
    }
    int rc = m->be->copy_to_host(m->be, host, m->params, bytes);
    for (int i = 0; i < m->num_tensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        list[i].name = t->name;
        list[i].data = host + t->offset;
        list[i].ndim = t->shape[1] ? 2 : 1;
        list[i].shape[0] = t->shape[0];
        list[i].shape[1] = t->shape[1];
    }
    if (!rc) rc = safetensors_write_f32(path, list, m->num_tensors, NULL);
    free(host);
    free(list);
    return rc;
}
