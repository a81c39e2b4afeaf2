// The original job end to end (DESIGN §2, §8): read the data, split 80/15/5, search the
// hyper-parameters (ASHA over N_TRIALS seeded trials), train the prime model with the
// best trial's settings, evaluate it on the validation and test splits, export it.
#include "runner/coord/data_parallel.h"
#include "runner/error.h"
#include "runner/job/checkpoint.h"
#include "runner/job/encode.h"
#include "runner/job/files.h"
#include "runner/job/modes.h"
#include "runner/job/learned.h"
#include "runner/job/metrics.h"
#include "runner/job/train.h"
#include "runner/job/trials.h"
#include "runner/log.h"
#include "runner/telemetry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    ner_dataset ds;
    int *order;
    int n_train, n_valid, n_test;
    encoded_set train, valid, test;
    int o_label;
} pipeline_data;

static void pipeline_data_free(pipeline_data *d) {
    encoded_free(&d->train);
    encoded_free(&d->valid);
    encoded_free(&d->test);
    free(d->order);
    dataset_free(&d->ds);
}

static int prepare_data(job_context *ctx, pipeline_data *d) {
    const runner_config *cfg = ctx->cfg;
    telemetry_phase("split");
    dataset_options opt = {.max_instances = cfg->n_instances, .max_bad_fraction = cfg->max_bad_rows};
    int rc = dataset_load(ctx->data, &opt, &d->ds);
    if (rc) return rc;
    if (d->ds.n < 3) return error_set(EXIT_BAD_INPUT, "%s: %d sentences; at least 3 are needed to "
                                      "split", ctx->data, d->ds.n);
    d->order = malloc((size_t)d->ds.n * sizeof *d->order);
    if (!d->order) return error_set(EXIT_RESOURCES, "out of memory");
    dataset_split(d->ds.n, cfg->seed, 0.80, 0.15, d->order, &d->n_train, &d->n_valid, &d->n_test);
    d->o_label = dataset_label_id(&d->ds, "O");
    if (d->o_label < 0) d->o_label = 0;

    char dir[PATH_MAX], path[PATH_MAX];
    rc = files_join(dir, sizeof dir, "%s/data", ctx->artefacts);
    if (rc == 0 && ctx->rank == 0) {
        rc = files_mkdirs(dir);
        const int *parts[] = {d->order, d->order + d->n_train, d->order + d->n_train + d->n_valid};
        const int counts[] = {d->n_train, d->n_valid, d->n_test};
        static const char *const names[] = {"training", "validating", "testing"};
        for (int i = 0; rc == 0 && i < 3; i++) {
            rc = files_join(path, sizeof path, "%s/%s.csv", dir, names[i]);
            if (rc == 0) rc = dataset_write_csv(&d->ds, parts[i], counts[i], path);
        }
        if (rc == 0) rc = dataset_write_labels(&d->ds, dir);
    }
    if (rc) return rc;
    log_info("split", "%d training, %d validating, %d testing sentences (seed %llu) -> %s",
             d->n_train, d->n_valid, d->n_test, (unsigned long long)cfg->seed, dir);
    int T = cfg->max_length > 2 ? cfg->max_length : 128;
    if (T > ctx->bcfg.max_position) T = ctx->bcfg.max_position;
    rc = encode_sentences(ctx->tok, &d->ds, d->order, d->n_train, T, &d->train);
    if (rc == 0)
        rc = encode_sentences(ctx->tok, &d->ds, d->order + d->n_train, d->n_valid, T, &d->valid);
    if (rc == 0)
        rc = encode_sentences(ctx->tok, &d->ds, d->order + d->n_train + d->n_valid, d->n_test, T,
                              &d->test);
    return rc;
}

static void base_options(const job_context *ctx, const pipeline_data *d, train_options *opt) {
    const runner_config *cfg = ctx->cfg;
    memset(opt, 0, sizeof *opt);
    opt->epochs = cfg->epochs > 0 ? cfg->epochs : 1;
    opt->batch_size = cfg->train_batch_size > 0 ? cfg->train_batch_size : 16;
    opt->eval_batch_size = cfg->valid_batch_size > 0 ? cfg->valid_batch_size : 16;
    job_schedule(ctx, &opt->learning_rate, &opt->warmup_ratio);
    opt->weight_decay = cfg->weight_decay;
    opt->max_grad_norm = cfg->max_gradient_norm;
    opt->patience = cfg->early_stopping_patience;
    opt->save_total_limit = cfg->save_total_limit;
    opt->seed = cfg->seed;
    opt->labels = (const char *const *)d->ds.labels;
    opt->num_labels = d->ds.num_labels;
    opt->o_label = d->o_label;
    opt->mask_id = -1;
}

static cJSON *spec_json(const trial_spec *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "trial", t->id);
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "learning_rate", t->learning_rate);
    cJSON_AddNumberToObject(o, "weight_decay", t->weight_decay);
    cJSON_AddNumberToObject(o, "per_device_train_batch_size", t->batch_size);
    cJSON_AddNumberToObject(o, "num_train_epochs", t->max_epochs);
    return o;
}

// A trial whose loss became NaN/Inf or exploded: a failed trial, as Ray Tune counts an
// errored one, never the end of the search. It is completed with no loss (trials_best
// passes it over; it records no rung), its result.json says why, and its checkpoints
// (weights on the way to NaN) are removed so that nothing resumes from them.
static int fail_trial(trial_source *source, const trial_spec *t, const char *dir) {
    char why[1024], path[PATH_MAX];
    snprintf(why, sizeof why, "%s", error_message());
    error_clear();
    log_warn("trial_failed", "trial-%d: %s; the trial counts as failed and the search goes on",
             t->id, why);
    cJSON *r = spec_json(t);
    cJSON_AddBoolToObject(r, "failed", true);
    cJSON_AddStringToObject(r, "reason", why);
    cJSON_AddNullToObject(r, "best_eval_loss");
    int rc = files_join(path, sizeof path, "%s/result.json", dir);
    if (rc == 0) rc = files_write_json(path, r);
    else cJSON_Delete(r);
    trial_result result = {.id = t->id, .best_eval_loss = NAN, .best_eval_f1 = 0};
    if (rc == 0) rc = source->complete(source, &result);
    if (rc == 0) rc = checkpoint_remove_all(dir);
    return rc;
}

// Run one trial to completion (or its ASHA halt) and report it.
static int run_trial(job_context *ctx, const pipeline_data *d, trial_source *source,
                     const trial_spec *t) {
    char dir[PATH_MAX], path[PATH_MAX], run[32];
    int rc = files_join(dir, sizeof dir, "%s/hyperparameters/trial-%d", ctx->artefacts, t->id);
    if (rc == 0) rc = files_mkdirs(dir);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/settings.json", dir);
    if (rc == 0) rc = files_write_json(path, spec_json(t));
    if (rc) return rc;
    snprintf(run, sizeof run, "trial-%d", t->id);
    log_info("trial_start", "%s: learning_rate %.3g, weight_decay %.3g, batch %d, seed %llu", run,
             t->learning_rate, t->weight_decay, t->batch_size, (unsigned long long)t->seed);
    train_options opt;
    base_options(ctx, d, &opt);
    opt.run = run;
    opt.dir = dir;
    opt.epochs = t->max_epochs;
    opt.batch_size = t->batch_size;
    opt.learning_rate = t->learning_rate;
    opt.weight_decay = t->weight_decay;
    opt.seed = t->seed;
    opt.trials = source;
    opt.trial_id = t->id;
    opt.save_total_limit = 1;
    int max_batch = opt.batch_size > opt.eval_batch_size ? opt.batch_size : opt.eval_batch_size;
    bert_model *m;
    rc = job_model_create(ctx, HEAD_TOKEN_CLASSIFICATION, d->ds.num_labels, max_batch, d->train.T,
                          t->seed, &m);
    if (rc) return rc;
    train_outcome outcome;
    rc = train_run(m, &d->train, &d->valid, &opt, &outcome);
    bert_destroy(m);
    if (rc == EXIT_DIVERGED) return fail_trial(source, t, dir);
    if (rc) return rc;
    trial_result result = {.id = t->id,
                           .epochs_run = outcome.epochs_run,
                           .best_eval_loss = outcome.best_eval_loss,
                           .best_eval_f1 = outcome.best_eval_f1,
                           .halted = outcome.halted};
    cJSON *r = spec_json(t);
    cJSON_AddNumberToObject(r, "epochs_run", outcome.epochs_run);
    cJSON_AddNumberToObject(r, "best_eval_loss", outcome.best_eval_loss);
    cJSON_AddNumberToObject(r, "best_eval_f1", outcome.best_eval_f1);
    cJSON_AddBoolToObject(r, "halted", outcome.halted);
    cJSON_AddBoolToObject(r, "early_stopped", outcome.early_stopped);
    rc = files_join(path, sizeof path, "%s/result.json", dir);
    if (rc == 0) rc = files_write_json(path, r);
    else cJSON_Delete(r);
    telemetry_scalar(run, "trial/best_eval_loss", outcome.steps, outcome.best_eval_loss);
    log_info("trial_done", "%s: %d epochs%s, best eval_loss %.4f, eval_f1 %.4f", run,
             outcome.epochs_run, outcome.halted ? " (halted by ASHA)" : "", outcome.best_eval_loss,
             outcome.best_eval_f1);
    if (rc == 0) rc = source->complete(source, &result);
    // The search state now records the trial: its checkpoints are no longer needed (and
    // would otherwise be uploaded with the artefacts).
    if (rc == 0) rc = checkpoint_remove_all(dir);
    return rc;
}

// One line says which space the search samples and why (a user's file, the file beside
// the data, or the built-in defaults of the starting point); hyperparameters/space.json
// keeps it with the run.
static int log_space(const job_context *ctx, const space_choice *space, const char *dir) {
    char *text = cJSON_PrintUnformatted(space->space);
    log_info("search_space", "%s: %s; space %s", space->origin, space->why, text ? text : "?");
    free(text);
    if (ctx->rank != 0) return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "origin", space->origin);
    cJSON_AddStringToObject(o, "why", space->why);
    cJSON_AddItemToObject(o, "space", cJSON_Duplicate(space->space, 1));
    char path[PATH_MAX];
    int rc = files_join(path, sizeof path, "%s/space.json", dir);
    if (rc == 0) rc = files_write_json(path, o);
    else cJSON_Delete(o);
    return rc;
}

// The search; *best receives the winning settings (unchanged when there are no trials).
static int search(job_context *ctx, const pipeline_data *d, trial_spec *best) {
    const runner_config *cfg = ctx->cfg;
    int n = cfg->n_trials;
    if (n <= 0) return 0;
    // Without a shared queue the other workers would repeat rank 0's trials.
    if (ctx->world_size > 1 && !trials_get_factory() && ctx->rank != 0) return 0;
    telemetry_phase("search");
    trial_spec *specs = calloc((size_t)n, sizeof *specs);
    trial_result *results = calloc((size_t)n, sizeof *results);
    if (!specs || !results) {
        free(specs);
        free(results);
        return error_set(EXIT_RESOURCES, "out of memory");
    }
    char dir[PATH_MAX], path[PATH_MAX];
    int rc = files_join(dir, sizeof dir, "%s/hyperparameters", ctx->artefacts);
    if (rc == 0) rc = files_mkdirs(dir);
    space_choice space = {0};
    space_start start = job_space_start(ctx);
    if (rc == 0) rc = space_choose(&start, ctx->hyperspace, cfg->hyperspace_path[0] != '\0', &space);
    if (rc == 0) rc = log_space(ctx, &space, dir);
    if (rc == 0)
        rc = trials_sample_space(space.space, space.origin, n, cfg->seed,
                                 cfg->epochs > 0 ? cfg->epochs : 1, best, specs);
    space_choice_free(&space);
    asha_config asha = {.min_epochs = 1, .eta = 2};
    trial_source *source = NULL;
    if (rc == 0) rc = files_join(path, sizeof path, "%s/search.json", dir);
    if (rc == 0) {
        trials_factory factory = trials_get_factory();
        if (factory && ctx->world_size > 1)
            rc = factory(&source, specs, n, &asha, path, ctx->rank, ctx->world_size);
        else
            rc = trials_local_create(&source, specs, n, &asha, path);
    }
    if (rc == 0)
        log_info("search", "%d trials, ASHA min 1 epoch, eta 2", n);
    bool have = true;
    while (rc == 0) {
        trial_spec t;
        rc = source->next(source, &t, &have);
        if (rc || !have) break;
        rc = run_trial(ctx, d, source, &t);
    }
    int got = rc == 0 ? source->results(source, results, n) : 0;
    int b = got > 0 ? trials_best(results, got) : -1;
    if (rc == 0 && b >= 0) {
        const trial_spec *w = &specs[results[b].id];
        best->learning_rate = w->learning_rate;
        best->weight_decay = w->weight_decay;
        best->batch_size = w->batch_size;
        cJSON *o = spec_json(w);
        cJSON_AddNumberToObject(o, "best_eval_loss", results[b].best_eval_loss);
        cJSON_AddNumberToObject(o, "best_eval_f1", results[b].best_eval_f1);
        rc = files_join(path, sizeof path, "%s/best.json", dir);
        if (rc == 0) rc = files_write_json(path, o);
        else cJSON_Delete(o);
        log_info("search_done", "best: trial-%d (eval_loss %.4f, eval_f1 %.4f): learning_rate "
                 "%.3g, weight_decay %.3g, batch %d", w->id, results[b].best_eval_loss,
                 results[b].best_eval_f1, w->learning_rate, w->weight_decay, w->batch_size);
    } else if (rc == 0) {
        log_warn("search_done", "no trial finished; the prime run uses the configured settings");
    }
    if (source) source->destroy(source);
    free(specs);
    free(results);
    return rc;
}

// Predictions of a split as JSON lines (words, gold tags, predicted tags, scores), so
// anyone can recompute the reports with scikit-learn and seqeval.
static int write_predictions(const pipeline_data *d, const encoded_set *set, const eval_result *ev,
                             const char *path) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) return error_set(EXIT_RESOURCES, "out of memory");
    long word = 0;
    for (int i = 0; i < set->n; i++) {
        const ner_sentence *s = set->sentences[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "sentence_identifier", s->identifier);
        cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
        cJSON *truth = cJSON_AddArrayToObject(o, "tags");
        cJSON *pred = cJSON_AddArrayToObject(o, "predicted");
        cJSON *scores = cJSON_AddArrayToObject(o, "scores");
        for (int w = 0; w < s->nwords; w++, word++) {
            cJSON_AddItemToArray(tokens, cJSON_CreateString(s->words[w]));
            cJSON_AddItemToArray(truth, cJSON_CreateString(d->ds.labels[s->tags[w]]));
            cJSON_AddItemToArray(pred, cJSON_CreateString(d->ds.labels[ev->pred[word]]));
            cJSON_AddItemToArray(scores, cJSON_CreateNumber(round(ev->scores[word] * 1e6) / 1e6));
        }
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (line) fprintf(out, "%s\n", line);
        free(line);
    }
    fclose(out);
    int rc = files_write_atomic(path, text, len);
    free(text);
    return rc;
}

static int evaluate_split(job_context *ctx, const pipeline_data *d, bert_model *m,
                          const train_options *opt, const encoded_set *set, const char *name,
                          double *f1) {
    eval_result ev;
    train_options final = *opt;
    final.final_split = name; // a stop ends it: the prime run's checkpoints are complete
    int rc = train_evaluate(m, set, &final, &ev);
    if (rc) return rc;
    metrics_report report;
    rc = metrics_compute((const char *const *)d->ds.labels, d->ds.num_labels, ev.truth, ev.pred,
                         ev.lengths, ev.n_sentences, &report);
    char dir[PATH_MAX], path[PATH_MAX];
    if (rc == 0) rc = files_join(dir, sizeof dir, "%s/prime/metrics/%s", ctx->artefacts, name);
    if (rc == 0) rc = metrics_write(&report, ev.loss, dir);
    if (rc == 0) rc = files_join(path, sizeof path, "%s/predictions.jsonl", dir);
    if (rc == 0) rc = write_predictions(d, set, &ev, path);
    if (rc == 0) {
        metrics_prf micro = metrics_entity_micro(&report);
        *f1 = micro.f1;
        char tag[64];
        snprintf(tag, sizeof tag, "%s/f1", name);
        telemetry_scalar("prime", tag, 0, micro.f1);
        snprintf(tag, sizeof tag, "%s/accuracy", name);
        telemetry_scalar("prime", tag, 0, metrics_accuracy(&report));
        snprintf(tag, sizeof tag, "%s/loss", name);
        telemetry_scalar("prime", tag, 0, ev.loss);
        log_info("evaluation_report", "%s: entity F1 %.4f, precision %.4f, recall %.4f, token "
                 "accuracy %.4f, loss %.4f -> %s", name, micro.f1, micro.precision, micro.recall,
                 metrics_accuracy(&report), ev.loss, dir);
        metrics_free(&report);
    }
    eval_result_free(&ev);
    return rc;
}

int job_pipeline(job_context *ctx, bool with_search) {
    const runner_config *cfg = ctx->cfg;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pipeline_data d = {0};
    int rc = prepare_data(ctx, &d);
    double learning_rate, warmup_ratio;
    job_schedule(ctx, &learning_rate, &warmup_ratio);
    trial_spec best = {.learning_rate = learning_rate,
                       .weight_decay = cfg->weight_decay,
                       .batch_size = cfg->train_batch_size > 0 ? cfg->train_batch_size : 16};
    if (rc == 0 && with_search && cfg->n_trials > 0) {
        rc = search(ctx, &d, &best);
    } else if (rc == 0) {
        space_start start = job_space_start(ctx);
        char described[256];
        space_describe_start(&start, described, sizeof described);
        log_info("schedule", "no search: learning_rate %.3g (%s), warmup_ratio %.3g (%s)",
                 learning_rate, cfg->learning_rate > 0 ? "LEARNING_RATE" : described,
                 warmup_ratio, cfg->warmup_ratio >= 0 ? "WARMUP_RATIO" : described);
    }
    // Several workers train the prime model data-parallel; without coordination (Redis
    // off) rank 0 trains alone.
    collective *group = NULL;
    if (rc == 0 && ctx->world_size > 1) {
        const char *local_rank = getenv("LOCAL_RANK");
        rc = data_parallel_open(ctx->rank, ctx->world_size, ctx->on_gpu,
                                local_rank ? atoi(local_rank) : 0, &group);
        if (rc == EXIT_USAGE) {
            log_warn("data_parallel", "%s: rank 0 trains the prime model alone", error_message());
            error_clear();
            rc = 0;
        }
    }
    if (rc == 0 && ctx->rank != 0 && !group) {
        pipeline_data_free(&d);
        return 0;
    }

    // The prime run with the best settings.
    train_options opt;
    char dir[PATH_MAX];
    bert_model *m = NULL;
    train_outcome outcome = {0};
    if (rc == 0) {
        telemetry_phase("prime");
        base_options(ctx, &d, &opt);
        opt.run = "prime";
        opt.learning_rate = best.learning_rate;
        opt.weight_decay = best.weight_decay;
        opt.batch_size = best.batch_size;
        rc = files_join(dir, sizeof dir, "%s/prime", ctx->artefacts);
        opt.dir = dir;
        opt.group = group;
        opt.rank = ctx->rank;
        opt.world = ctx->world_size;
        opt.be = ctx->be;
        log_info("prime_start", "learning_rate %.3g, weight_decay %.3g, batch %d x %d workers, %d "
                 "epochs", opt.learning_rate, opt.weight_decay, opt.batch_size,
                 group ? ctx->world_size : 1, opt.epochs);
    }
    int max_batch = 0;
    if (rc == 0) {
        max_batch = opt.batch_size > opt.eval_batch_size ? opt.batch_size : opt.eval_batch_size;
        if (cfg->test_batch_size > max_batch) max_batch = cfg->test_batch_size;
        rc = job_model_create(ctx, HEAD_TOKEN_CLASSIFICATION, d.ds.num_labels, max_batch, d.train.T,
                              cfg->seed, &m);
    }
    if (rc == 0) rc = train_run(m, &d.train, &d.valid, &opt, &outcome);
    if (group) {
        data_parallel_close(group);
        opt.group = NULL;
        if (ctx->rank != 0) { // rank 0 evaluates and exports
            if (m) bert_destroy(m);
            pipeline_data_free(&d);
            return rc;
        }
    }
    // The best model by evaluation loss, as load_best_model_at_end does.
    if (rc == 0 && outcome.best_step >= 0) rc = checkpoint_load_weights(dir, outcome.best_step, m);

    double f1_valid = 0, f1_test = 0;
    if (rc == 0) {
        telemetry_phase("evaluate");
        opt.eval_batch_size = cfg->valid_batch_size > 0 ? cfg->valid_batch_size : 16;
        rc = evaluate_split(ctx, &d, m, &opt, &d.valid, "validating", &f1_valid);
    }
    if (rc == 0) {
        opt.eval_batch_size = cfg->test_batch_size > 0 ? cfg->test_batch_size : 16;
        rc = evaluate_split(ctx, &d, m, &opt, &d.test, "testing", &f1_test);
    }
    if (rc == 0) {
        telemetry_phase("export");
        char model_dir[PATH_MAX];
        rc = files_join(model_dir, sizeof model_dir, "%s/prime/model", ctx->artefacts);
        if (rc == 0)
            rc = export_model_dir(ctx, m, HEAD_TOKEN_CLASSIFICATION,
                                  (const char *const *)d.ds.labels, d.ds.num_labels, model_dir);
        if (rc == 0) log_info("export", "%s (loads with transformers' AutoModelForTokenClassification)",
                              model_dir);
    }
    // No silent success: a model no better than tagging every word O exits 9 after its
    // reports and export are written (they show what it predicts).
    bool learned = true;
    char verdict[2048] = "";
    if (rc == 0) {
        space_start start = job_space_start(ctx);
        space_defaults defaults;
        space_defaults_for(&start, &defaults);
        char described[256];
        space_describe_start(&start, described, sizeof described);
        learned_evidence evidence = {
            .best_f1 = f1_valid,
            .best_eval_loss = outcome.best_eval_loss,
            .baseline_loss = learned_baseline_loss(&d.train, &d.valid, d.ds.num_labels),
            .learning_rate = opt.learning_rate,
            .lr_low = defaults.lr_low,
            .lr_high = defaults.lr_high,
            .start = described,
            .n_train = d.n_train,
        };
        learned = learned_something(&evidence, verdict, sizeof verdict);
    }
    if (rc == 0) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "architecture", cfg->architecture);
        cJSON_AddStringToObject(f, "shape", ctx->shape);
        cJSON_AddNumberToObject(f, "test_f1", round(f1_test * 1e4) / 1e4);
        cJSON_AddNumberToObject(f, "validation_f1", round(f1_valid * 1e4) / 1e4);
        cJSON_AddNumberToObject(f, "best_eval_loss", outcome.best_eval_loss);
        cJSON_AddNumberToObject(f, "epochs", outcome.epochs_run);
        cJSON_AddNumberToObject(f, "seconds", round(seconds * 10) / 10);
        cJSON_AddStringToObject(f, "artefacts", ctx->artefacts);
        cJSON_AddBoolToObject(f, "learned", learned);
        log_fields(learned ? LOG_INFO : LOG_WARN, "job_done", f);
        printf("test F1 (entity level, seqeval): %.4f\n", f1_test);
        fflush(stdout);
        telemetry_phase("done");
        if (!learned && cfg->require_learning)
            rc = error_set(EXIT_LEARNED_NOTHING, "%s", verdict);
        else if (!learned)
            log_warn("learned_nothing", "%s (require_learning is off: exit 0)", verdict);
    }
    if (m) bert_destroy(m);
    pipeline_data_free(&d);
    return rc;
}
