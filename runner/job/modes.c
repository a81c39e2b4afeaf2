// The modes besides the pipeline: predict (tags for sentences), embed (sentence
// vectors) and pretrain (masked language modelling on plain text).
#include "runner/error.h"
#include "runner/cloud/cloud.h"
#include "runner/coord/data_parallel.h"
#include "runner/job/checkpoint.h"
#include "runner/job/encode.h"
#include "runner/job/files.h"
#include "runner/job/modes.h"
#include "runner/job/train.h"
#include "runner/log.h"
#include "runner/telemetry.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// The model a predict/embed run uses: --model, else this output's prime/model.
static int model_for_inference(job_context *ctx) {
    if (ctx->model_dir[0]) return 0;
    char dir[PATH_MAX];
    int rc = files_join(dir, sizeof dir, "%s/prime/model", ctx->artefacts);
    if (rc) return rc;
    if (!files_exists(dir))
        return error_set(EXIT_USAGE, "--mode %s needs --model DIR (or a finished pipeline under %s)",
                         ctx->cfg->mode == MODE_PREDICT ? "predict" : "embed", dir);
    snprintf(ctx->model_dir, sizeof ctx->model_dir, "%s", dir);
    char path[PATH_MAX];
    rc = files_join(path, sizeof path, "%s/config.json", dir);
    if (rc == 0) rc = bert_config_load(path, &ctx->bcfg);
    if (ctx->tok) tokenizer_free(ctx->tok);
    ctx->tok = NULL;
    if (rc == 0) rc = tokenizer_load_dir(dir, &ctx->tok);
    return rc;
}

// Where a mode's single output file goes: --output itself when it names a file with the
// right suffix, else {output}/<name>.
static int output_file(const job_context *ctx, const char *name, const char *suffix, char *out,
                       size_t cap) {
    const char *o = ctx->cfg->output_path;
    if (o[0] && !cloud_is_remote(o) && ends_with(o, suffix)) return files_join(out, cap, "%s", o);
    int rc = files_mkdirs(ctx->output);
    return rc ? rc : files_join(out, cap, "%s/%s", ctx->output, name);
}

static int require_input(const job_context *ctx) {
    if (!ctx->cfg->input_path[0])
        return error_set(EXIT_USAGE, "--mode %s needs --input FILE (JSONL with \"text\" or "
                         "\"tokens\", or plain text, one sentence a line)",
                         ctx->cfg->mode == MODE_PREDICT ? "predict"
                         : ctx->cfg->mode == MODE_EMBED ? "embed" : "pretrain");
    return 0;
}

// Inference writes one output file: with several workers, rank 0 does it.
static bool other_rank(const job_context *ctx) {
    if (ctx->rank == 0) return false;
    log_info("job_skip", "rank %d: %s runs on rank 0", ctx->rank,
             ctx->cfg->mode == MODE_PREDICT ? "predict" : "embed");
    return true;
}

// The id words cut off by MAX_LENGTH are tagged with: "O" wherever the model's label
// list has it (labels read from JSONL are sorted, so not necessarily 0), else 0 as the
// pipeline does.
static int outside_label(char *const *labels, int num_labels) {
    for (int i = 0; i < num_labels; i++)
        if (strcmp(labels[i], "O") == 0) return i;
    return 0;
}

// Sentences as words (whitespace-split, or the "tokens" given), tagged per word (the tags
// are placeholders: predict has no truth). 0 or EXIT_RESOURCES.
static int sentences_of_texts(char *const *texts, int n, ner_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->items = calloc(n > 0 ? (size_t)n : 1, sizeof *ds->items);
    if (!ds->items) return error_set(EXIT_RESOURCES, "out of memory for %d sentences", n);
    for (; ds->n < n; ds->n++) {
        ner_sentence *s = &ds->items[ds->n];
        s->nwords = text_split_words(texts[ds->n], &s->words);
        if (s->nwords < 0) // nothing of it allocated, and not counted in ds->n
            return error_set(EXIT_RESOURCES, "out of memory splitting sentence %d", ds->n + 1);
        s->tags = calloc((size_t)(s->nwords > 0 ? s->nwords : 1), sizeof *s->tags);
        s->identifier = strdup("");
        if (!s->tags || !s->identifier) {
            ds->n++; // its words are freed with the others
            return error_set(EXIT_RESOURCES, "out of memory for sentence %d", ds->n);
        }
    }
    return 0;
}

int job_predict(job_context *ctx) {
    if (other_rank(ctx)) return 0;
    int rc = require_input(ctx);
    if (rc == 0) rc = model_for_inference(ctx);
    char **labels = NULL, **texts = NULL;
    int num_labels = 0, n = 0;
    if (rc == 0) rc = export_read_labels(ctx->model_dir, &labels, &num_labels);
    if (rc == 0) rc = text_load(ctx->cfg->input_path, ctx->cfg->n_instances, &texts, &n);
    if (rc) {
        text_free(labels, num_labels);
        return rc;
    }
    telemetry_phase("predict");
    ner_dataset ds;
    rc = sentences_of_texts(texts, n, &ds);
    int T = ctx->cfg->max_length > 2 ? ctx->cfg->max_length : 128;
    if (T > ctx->bcfg.max_position) T = ctx->bcfg.max_position;
    int B = ctx->cfg->test_batch_size > 0 ? ctx->cfg->test_batch_size : 16;
    encoded_set set = {0};
    bert_model *m = NULL;
    if (rc == 0) rc = encode_sentences(ctx->tok, &ds, NULL, n, T, &set);
    if (rc == 0) rc = job_model_create(ctx, HEAD_TOKEN_CLASSIFICATION, num_labels, B, T, 0, &m);
    train_options opt = {.eval_batch_size = B, .labels = (const char *const *)labels,
                         .num_labels = num_labels, .o_label = outside_label(labels, num_labels),
                         .mask_id = -1};
    eval_result ev = {0};
    if (rc == 0) rc = train_evaluate(m, &set, &opt, &ev);
    char path[PATH_MAX];
    if (rc == 0) rc = output_file(ctx, "predictions.jsonl", ".jsonl", path, sizeof path);
    if (rc == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        if (!out) rc = error_set(EXIT_RESOURCES, "out of memory writing %s", path);
        long word = 0;
        for (int i = 0; out && i < n; i++) {
            const ner_sentence *s = &ds.items[i];
            cJSON *o = cJSON_CreateObject();
            cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
            cJSON *tags = cJSON_AddArrayToObject(o, "tags");
            cJSON *scores = cJSON_AddArrayToObject(o, "scores");
            cJSON *logits = cJSON_AddArrayToObject(o, "logits");
            for (int w = 0; w < s->nwords; w++, word++) {
                cJSON_AddItemToArray(tokens, cJSON_CreateString(s->words[w]));
                cJSON_AddItemToArray(tags, cJSON_CreateString(labels[ev.pred[word]]));
                cJSON_AddItemToArray(scores, cJSON_CreateNumber(ev.scores[word]));
                cJSON_AddItemToArray(logits, cJSON_CreateFloatArray(ev.logits + (size_t)word * num_labels,
                                                                    num_labels));
            }
            char *line = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (line) fprintf(out, "%s\n", line);
            free(line);
        }
        if (out) fclose(out);
        if (rc == 0) rc = files_write_atomic(path, text, len);
        free(text);
        if (rc == 0) log_info("predict_done", "%d sentences -> %s", n, path);
    }
    eval_result_free(&ev);
    if (rc == 0) telemetry_phase("done"); // /readyz: finished, no longer ready
    if (m) bert_destroy(m);
    encoded_free(&set);
    dataset_free(&ds);
    text_free(texts, n);
    text_free(labels, num_labels);
    return rc;
}

// NumPy .npy version 1.0: magic, header length, a dict padded to a 64-byte boundary.
static int write_npy(const char *path, const float *data, int rows, int cols) {
    char header[128];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    char preamble[256];
    memcpy(preamble, "\x93NUMPY\x01\x00", 8);
    uint16_t hlen = (uint16_t)(len + pad + 1);
    preamble[8] = (char)(hlen & 0xff);
    preamble[9] = (char)(hlen >> 8);
    memcpy(preamble + 10, header, (size_t)len);
    memset(preamble + 10 + len, ' ', (size_t)pad);
    preamble[10 + len + pad] = '\n';
    const void *parts[] = {preamble, data};
    size_t lens[] = {(size_t)(10 + hlen), (size_t)rows * (size_t)cols * sizeof(float)};
    return files_write_atomic_parts(path, parts, lens, 2);
}

int job_embed(job_context *ctx) {
    if (other_rank(ctx)) return 0;
    int rc = require_input(ctx);
    if (rc == 0) rc = model_for_inference(ctx);
    char **texts = NULL;
    int n = 0;
    if (rc == 0) rc = text_load(ctx->cfg->input_path, ctx->cfg->n_instances, &texts, &n);
    if (rc) return rc;
    telemetry_phase("embed");
    int T = ctx->cfg->max_length > 2 ? ctx->cfg->max_length : 128;
    if (T > ctx->bcfg.max_position) T = ctx->bcfg.max_position;
    int B = ctx->cfg->test_batch_size > 0 ? ctx->cfg->test_batch_size : 16;
    int C = ctx->bcfg.hidden_size;
    encoded_set set = {0};
    bert_model *m = NULL;
    float *vectors = malloc((size_t)n * (size_t)C * sizeof(float));
    int *rows = malloc((size_t)B * sizeof(int));
    int32_t *ids = malloc((size_t)B * T * sizeof(int32_t)), *mask = malloc((size_t)B * T * sizeof(int32_t));
    int32_t *types = calloc((size_t)B * T, sizeof(int32_t));
    if (!vectors || !rows || !ids || !mask || !types) rc = error_set(EXIT_RESOURCES, "out of memory");
    if (rc == 0) rc = encode_texts(ctx->tok, texts, n, T, &set);
    if (rc == 0) rc = job_model_create(ctx, HEAD_EMBEDDING, 0, B, T, 0, &m);
    for (int start = 0; rc == 0 && start < n; start += B) {
        int nb = n - start < B ? n - start : B;
        for (int b = 0; b < nb; b++) rows[b] = start + b;
        int Tb = encoded_batch(&set, rows, nb, ids, mask, NULL, NULL);
        bert_batch batch = {.B = nb, .T = Tb, .ids = ids, .token_types = types, .mask = mask};
        rc = bert_forward(m, &batch, false, 0, 0, NULL);
        // Mean pooling then L2 normalisation, as sentence-transformers models do.
        if (rc == 0) rc = bert_embeddings(m, vectors + (size_t)start * C, true);
    }
    char path[PATH_MAX];
    bool jsonl = ends_with(ctx->cfg->output_path, ".jsonl");
    if (rc == 0)
        rc = output_file(ctx, jsonl ? "embeddings.jsonl" : "embeddings.npy", jsonl ? ".jsonl" : ".npy",
                         path, sizeof path);
    if (rc == 0 && !jsonl) rc = write_npy(path, vectors, n, C);
    if (rc == 0 && jsonl) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        if (!out) rc = error_set(EXIT_RESOURCES, "out of memory writing %s", path);
        for (int i = 0; out && i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "text", texts[i]);
            cJSON *v = cJSON_AddArrayToObject(o, "embedding");
            for (int c = 0; c < C; c++)
                cJSON_AddItemToArray(v, cJSON_CreateNumber(vectors[(size_t)i * C + c]));
            char *line = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (line) fprintf(out, "%s\n", line);
            free(line);
        }
        if (out) fclose(out);
        if (rc == 0) rc = files_write_atomic(path, text, len);
        free(text);
    }
    if (rc == 0) log_info("embed_done", "%d sentences x %d floats -> %s", n, C, path);
    free(vectors);
    free(rows);
    free(ids);
    free(mask);
    free(types);
    if (rc == 0) telemetry_phase("done");
    if (m) bert_destroy(m);
    encoded_free(&set);
    text_free(texts, n);
    return rc;
}

// The sentences of NER data as plain text, words joined by spaces: *texts gets ds->n
// malloc'd strings. 0 or EXIT_RESOURCES (nothing left allocated).
static int texts_of_dataset(const ner_dataset *ds, char ***texts, int *n) {
    *texts = calloc(ds->n > 0 ? (size_t)ds->n : 1, sizeof **texts);
    *n = 0;
    if (!*texts) return error_set(EXIT_RESOURCES, "out of memory for %d sentences", ds->n);
    for (; *n < ds->n; (*n)++) {
        const ner_sentence *s = &ds->items[*n];
        size_t len = 0;
        for (int w = 0; w < s->nwords; w++) len += strlen(s->words[w]) + 1;
        char *text = calloc(len + 1, 1);
        if (!text) {
            text_free(*texts, *n);
            *texts = NULL;
            *n = 0;
            return error_set(EXIT_RESOURCES, "out of memory for sentence %s", s->identifier);
        }
        for (int w = 0; w < s->nwords; w++) {
            if (w) strcat(text, " ");
            strcat(text, s->words[w]);
        }
        (*texts)[*n] = text;
    }
    return 0;
}

int job_pretrain(job_context *ctx) {
    const runner_config *cfg = ctx->cfg;
    char **texts = NULL;
    int n = 0, rc = 0;
    if (cfg->input_path[0]) {
        rc = text_load(cfg->input_path, cfg->n_instances, &texts, &n);
    } else {
        // No --input: the sentences of the NER data, as plain text.
        ner_dataset ds;
        dataset_options opt = {.max_instances = cfg->n_instances, .max_bad_fraction = cfg->max_bad_rows};
        if (!ctx->data[0]) return require_input(ctx);
        rc = dataset_load(ctx->data, &opt, &ds);
        if (rc) return rc;
        rc = texts_of_dataset(&ds, &texts, &n);
        dataset_free(&ds);
    }
    if (rc) return rc;
    if (n < 2) {
        text_free(texts, n);
        return error_set(EXIT_BAD_INPUT, "pretraining needs at least 2 sentences");
    }
    if (tokenizer_mask_id(ctx->tok) < 0) {
        text_free(texts, n);
        return error_set(EXIT_BAD_INPUT, "the vocabulary has no [MASK] token");
    }
    telemetry_phase("pretrain");
    int T = cfg->max_length > 2 ? cfg->max_length : 128;
    if (T > ctx->bcfg.max_position) T = ctx->bcfg.max_position;
    // 95 % to train, 5 % (at least one sentence) to evaluate, in the seeded order.
    int *order = malloc((size_t)n * sizeof *order), a, b, c;
    char **shuffled = malloc((size_t)n * sizeof *shuffled);
    if (!order || !shuffled) rc = error_set(EXIT_RESOURCES, "out of memory");
    int n_eval = 0;
    if (rc == 0) {
        dataset_split(n, cfg->seed, 1.0, 0.0, order, &a, &b, &c);
        for (int i = 0; i < n; i++) shuffled[i] = texts[order[i]];
        n_eval = n / 20 > 0 ? n / 20 : 1;
    }
    encoded_set train = {0}, valid = {0};
    if (rc == 0) rc = encode_texts(ctx->tok, shuffled, n - n_eval, T, &train);
    if (rc == 0) rc = encode_texts(ctx->tok, shuffled + n - n_eval, n_eval, T, &valid);
    train_options opt = {0};
    char dir[PATH_MAX];
    bert_model *m = NULL;
    if (rc == 0) {
        opt.run = "pretrain";
        rc = files_join(dir, sizeof dir, "%s/pretrain", ctx->artefacts);
        opt.dir = dir;
        opt.epochs = cfg->epochs > 0 ? cfg->epochs : 1;
        opt.batch_size = cfg->train_batch_size > 0 ? cfg->train_batch_size : 16;
        opt.eval_batch_size = cfg->valid_batch_size > 0 ? cfg->valid_batch_size : 16;
        job_schedule(ctx, &opt.learning_rate, &opt.warmup_ratio);
        opt.weight_decay = cfg->weight_decay;
        opt.max_grad_norm = cfg->max_gradient_norm;
        opt.patience = cfg->early_stopping_patience;
        opt.save_total_limit = cfg->save_total_limit;
        opt.seed = cfg->seed;
        opt.mask_id = tokenizer_mask_id(ctx->tok);
        opt.vocab_size = tokenizer_vocab_size(ctx->tok);
        opt.special_ids[0] = tokenizer_cls_id(ctx->tok);
        opt.special_ids[1] = tokenizer_sep_id(ctx->tok);
        opt.special_ids[2] = tokenizer_pad_id(ctx->tok);
        opt.special_ids[3] = tokenizer_unk_id(ctx->tok);
    }
    int max_batch = opt.batch_size > opt.eval_batch_size ? opt.batch_size : opt.eval_batch_size;
    // Several workers pretrain data-parallel (as the prime run); rank 0 writes.
    collective *group = NULL;
    if (rc == 0 && ctx->world_size > 1) {
        const char *local_rank = getenv("LOCAL_RANK");
        rc = data_parallel_open(ctx->rank, ctx->world_size, ctx->on_gpu,
                                local_rank ? atoi(local_rank) : 0, &group);
        if (rc == EXIT_USAGE) { // coordination off: rank 0 alone
            log_warn("data_parallel", "%s: rank 0 pretrains alone", error_message());
            error_clear();
            rc = 0;
        }
        opt.group = group;
        opt.rank = ctx->rank;
        opt.world = ctx->world_size;
        opt.be = ctx->be;
    }
    bool takes_part = ctx->rank == 0 || group;
    if (rc == 0 && takes_part)
        rc = job_model_create(ctx, HEAD_MASKED_LM, 0, max_batch, T, cfg->seed, &m);
    train_outcome outcome = {.best_step = -1};
    if (rc == 0 && takes_part) rc = train_run(m, &train, &valid, &opt, &outcome);
    if (group) data_parallel_close(group);
    // Rank 0 alone reloads the best weights and exports them; every rank frees its own.
    bool exports = ctx->rank == 0;
    if (exports && rc == 0 && outcome.best_step >= 0)
        rc = checkpoint_load_weights(dir, outcome.best_step, m);
    if (exports && rc == 0) {
        char model_dir[PATH_MAX];
        rc = files_join(model_dir, sizeof model_dir, "%s/pretrain/model", ctx->artefacts);
        if (rc == 0) rc = export_model_dir(ctx, m, HEAD_MASKED_LM, NULL, 0, model_dir);
        if (rc == 0)
            log_info("pretrain_done", "%d epochs, best masked-LM eval_loss %.4f -> %s",
                     outcome.epochs_run, outcome.best_eval_loss, model_dir);
    }
    if (rc == 0) telemetry_phase("done");
    if (m) bert_destroy(m);
    encoded_free(&train);
    encoded_free(&valid);
    free(order);
    free(shuffled);
    text_free(texts, n);
    return rc;
}
