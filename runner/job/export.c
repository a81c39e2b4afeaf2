// Hugging Face model directories out of a trained model; see modes.h.
#include "runner/error.h"
#include "runner/fault.h"
#include "runner/job/files.h"
#include "runner/job/modes.h"
#include "runner/signals.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *architecture_name(bert_arch arch, bert_head head) {
    static const char *const names[4][3] = {
        {"BertForTokenClassification", "BertForSequenceClassification", "BertForMaskedLM"},
        {"DistilBertForTokenClassification", "DistilBertForSequenceClassification",
         "DistilBertForMaskedLM"},
        {"ElectraForTokenClassification", "ElectraForSequenceClassification",
         "ElectraForMaskedLM"},
        {"RobertaForTokenClassification", "RobertaForSequenceClassification",
         "RobertaForMaskedLM"},
    };
    int a = arch == ARCH_DISTILBERT ? 1 : arch == ARCH_ELECTRA ? 2 : arch == ARCH_ROBERTA ? 3 : 0;
    int h = head == HEAD_SEQUENCE_CLASSIFICATION ? 1 : head == HEAD_MASKED_LM ? 2 : 0;
    if (head == HEAD_EMBEDDING) return arch == ARCH_DISTILBERT ? "DistilBertModel"
                                       : arch == ARCH_ELECTRA  ? "ElectraModel"
                                       : arch == ARCH_ROBERTA  ? "RobertaModel"
                                                               : "BertModel";
    return names[a][h];
}

static cJSON *config_json(const job_context *ctx, const bert_config *c, bert_head head,
                          const char *const *labels, int num_labels) {
    cJSON *o = cJSON_CreateObject();
    cJSON *archs = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(architecture_name(c->arch, head)));
    if (c->arch == ARCH_DISTILBERT) {
        cJSON_AddStringToObject(o, "model_type", "distilbert");
        cJSON_AddNumberToObject(o, "dim", c->hidden_size);
        cJSON_AddNumberToObject(o, "n_layers", c->num_layers);
        cJSON_AddNumberToObject(o, "n_heads", c->num_heads);
        cJSON_AddNumberToObject(o, "hidden_dim", c->intermediate_size);
        cJSON_AddStringToObject(o, "activation", "gelu");
        cJSON_AddNumberToObject(o, "dropout", c->hidden_dropout);
        cJSON_AddNumberToObject(o, "attention_dropout", c->attention_dropout);
        cJSON_AddBoolToObject(o, "sinusoidal_pos_embds", false);
    } else {
        cJSON_AddStringToObject(o, "model_type", c->arch == ARCH_ELECTRA   ? "electra"
                                                 : c->arch == ARCH_ROBERTA ? "roberta"
                                                                           : "bert");
        cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
        cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_layers);
        cJSON_AddNumberToObject(o, "num_attention_heads", c->num_heads);
        cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
        cJSON_AddStringToObject(o, "hidden_act", "gelu");
        cJSON_AddNumberToObject(o, "hidden_dropout_prob", c->hidden_dropout);
        cJSON_AddNumberToObject(o, "attention_probs_dropout_prob", c->attention_dropout);
        cJSON_AddNumberToObject(o, "type_vocab_size", c->type_vocab_size);
        cJSON_AddNumberToObject(o, "layer_norm_eps", c->layer_norm_eps);
        cJSON_AddStringToObject(o, "position_embedding_type", "absolute");
        if (c->arch == ARCH_ELECTRA) cJSON_AddNumberToObject(o, "embedding_size", c->embedding_size);
    }
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_position);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "pad_token_id", ctx->tok ? tokenizer_pad_id(ctx->tok) : 0);
    if (c->arch == ARCH_ROBERTA && ctx->tok) { // <s>, </s>: what generation code looks for
        cJSON_AddNumberToObject(o, "bos_token_id", tokenizer_cls_id(ctx->tok));
        cJSON_AddNumberToObject(o, "eos_token_id", tokenizer_sep_id(ctx->tok));
    }
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    if (labels) {
        cJSON *id2label = cJSON_AddObjectToObject(o, "id2label");
        cJSON *label2id = cJSON_AddObjectToObject(o, "label2id");
        for (int i = 0; i < num_labels; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            cJSON_AddStringToObject(id2label, key, labels[i]);
            cJSON_AddNumberToObject(label2id, labels[i], i);
        }
    }
    return o;
}

// Before each file of the export and once after the last: a stop request ends the export
// with EXIT_INTERRUPTED. The run's checkpoints are complete, so the next attempt only
// exports again; a stop that arrives before the job is done always exits 80, however
// long an export of a large model takes (Batch kills 30 s after its SIGTERM).
static int export_step(const char *dir, const char *what) {
    char where[PATH_MAX + 64];
    snprintf(where, sizeof where, "%s/%s", dir, what);
    fault_point("export_file", where);
    if (!signals_stop_requested()) return 0;
    return error_set(EXIT_INTERRUPTED, "stopped (%s) while exporting %s; the run's checkpoints "
                     "are complete: the next attempt exports again",
                     signals_stop_reason() ? signals_stop_reason() : "stop", where);
}

int export_model_dir(const job_context *ctx, const bert_model *m, bert_head head,
                     const char *const *labels, int num_labels, const char *dir) {
    int rc = files_mkdirs(dir);
    if (rc) return rc;
    char path[PATH_MAX];
    cJSON *config = config_json(ctx, bert_get_config(m), head, labels, num_labels);
    char *text = cJSON_Print(config);
    cJSON_Delete(config);
    rc = text ? export_step(dir, "config.json") : error_set(EXIT_RESOURCES, "out of memory");
    if (rc == 0) rc = files_join(path, sizeof path, "%s/config.json", dir);
    if (rc == 0) rc = files_write_text(path, text);
    free(text);
    if (rc == 0) rc = export_step(dir, "model.safetensors");
    if (rc == 0) rc = files_join(path, sizeof path, "%s/model.safetensors", dir);
    if (rc == 0) rc = bert_save_safetensors(m, path);
    bool distil = bert_get_config(m)->arch == ARCH_DISTILBERT;
    if (rc == 0) rc = export_step(dir, "tokenizer files");
    if (rc == 0)
        rc = tokenizer_save_dir(ctx->tok, dir, bert_get_config(m)->max_position,
                                distil ? "DistilBertTokenizer" : NULL);
    if (rc == 0) rc = export_step(dir, "(done)");
    return rc;
}

int export_read_labels(const char *model_dir, char ***labels, int *num_labels) {
    char path[PATH_MAX], *text;
    *labels = NULL;
    *num_labels = 0;
    int rc = files_join(path, sizeof path, "%s/config.json", model_dir);
    if (rc == 0) rc = files_read_all(path, &text, NULL);
    if (rc) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    int n = cJSON_GetArraySize(id2label);
    if (!cJSON_IsObject(id2label) || n < 1) {
        cJSON_Delete(root);
        return error_set(EXIT_BAD_INPUT, "%s: no id2label (not a token-classification model)", path);
    }
    char **out = calloc((size_t)n, sizeof *out);
    for (int i = 0; out && i < n; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(id2label, key);
        if (!cJSON_IsString(label)) {
            rc = error_set(EXIT_BAD_INPUT, "%s: id2label lacks id %d", path, i);
            break;
        }
        out[i] = strdup(label->valuestring);
    }
    cJSON_Delete(root);
    if (!out) return error_set(EXIT_RESOURCES, "out of memory");
    if (rc) {
        for (int i = 0; i < n; i++) free(out[i]);
        free(out);
        return rc;
    }
    *labels = out;
    *num_labels = n;
    return 0;
}
