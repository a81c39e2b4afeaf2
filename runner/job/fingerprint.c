// The fingerprint of a training run (see fingerprint.h).
#include "runner/job/fingerprint.h"

#include "runner/error.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HEX_MAX = 40 };
static const uint64_t FNV1A_OFFSET = 14695981039346656037ULL, FNV1A_PRIME = 1099511628211ULL;

static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV1A_PRIME;
    }
    return h;
}

static void add_hex_u64(cJSON *o, const char *key, uint64_t v) {
    char text[24];
    snprintf(text, sizeof text, "%016llx", (unsigned long long)v);
    cJSON_AddStringToObject(o, key, text);
}

static void add_exact_double(cJSON *o, const char *key, double v) {
    char text[HEX_MAX];
    snprintf(text, sizeof text, "%a", v);
    cJSON_AddStringToObject(o, key, text);
}

static void add_set(cJSON *o, const char *hash_key, const char *rows_key, const encoded_set *set) {
    uint64_t h = FNV1A_OFFSET;
    size_t cells = set ? (size_t)set->n * (size_t)set->T : 0;
    if (cells) {
        h = fnv1a(h, &set->T, sizeof set->T);
        h = fnv1a(h, set->ids, cells * sizeof *set->ids);
        h = fnv1a(h, set->mask, cells * sizeof *set->mask);
        h = fnv1a(h, set->labels, cells * sizeof *set->labels);
    }
    add_hex_u64(o, hash_key, h);
    cJSON_AddNumberToObject(o, rows_key, set ? set->n : 0);
}

int fingerprint_of_training(const bert_model *m, const encoded_set *train,
                            const encoded_set *valid, const train_options *opt, cJSON **out) {
    *out = NULL;
    size_t P = bert_num_parameters(m);
    float *params = malloc((P ? P : 1) * sizeof *params);
    if (!params) return error_set(EXIT_RESOURCES, "out of memory for the run's fingerprint");
    int rc = bert_get_state(m, params, NULL, NULL);
    if (rc) {
        free(params);
        return rc;
    }
    uint64_t model_hash = fnv1a(FNV1A_OFFSET, params, P * sizeof *params);
    free(params);

    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "code", RUNNER_VERSION "+" RUNNER_GIT_COMMIT);
    const bert_config *c = bert_get_config(m);
    char model[256];
    snprintf(model, sizeof model,
             "arch %d V%d C%d L%d NH%d F%d P%d TT%d E%d offset %d eps %a dropout %a/%a, %zu "
             "parameters",
             (int)c->arch, c->vocab_size, c->hidden_size, c->num_layers, c->num_heads,
             c->intermediate_size, c->max_position, c->type_vocab_size, c->embedding_size,
             c->position_offset, (double)c->layer_norm_eps, (double)c->hidden_dropout,
             (double)c->attention_dropout, P);
    cJSON_AddStringToObject(f, "model", model);
    add_hex_u64(f, "model_hash", model_hash);
    add_set(f, "train_data_hash", "train_rows", train);
    add_set(f, "valid_data_hash", "valid_rows", valid);
    cJSON_AddStringToObject(f, "run", opt->run ? opt->run : "");
    cJSON_AddNumberToObject(f, "epochs", opt->epochs);
    cJSON_AddNumberToObject(f, "batch_size", opt->batch_size);
    cJSON_AddNumberToObject(f, "eval_batch_size", opt->eval_batch_size);
    add_exact_double(f, "learning_rate", opt->learning_rate);
    add_exact_double(f, "weight_decay", opt->weight_decay);
    add_exact_double(f, "max_grad_norm", opt->max_grad_norm);
    add_exact_double(f, "warmup_ratio", opt->warmup_ratio);
    cJSON_AddNumberToObject(f, "patience", opt->patience);
    add_hex_u64(f, "seed", opt->seed);
    cJSON_AddNumberToObject(f, "world_size", opt->group ? opt->world : 1);
    cJSON *labels = cJSON_AddArrayToObject(f, "labels");
    for (int i = 0; opt->labels && i < opt->num_labels; i++)
        cJSON_AddItemToArray(labels, cJSON_CreateString(opt->labels[i] ? opt->labels[i] : ""));
    cJSON_AddNumberToObject(f, "mask_id", opt->mask_id);
    *out = f;
    return 0;
}
