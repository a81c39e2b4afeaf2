// The training loop; see train.h.
#include "runner/job/train.h"

#include "kernels/rng.h"
#include "runner/coord/data_parallel.h"
#include "runner/error.h"
#include "runner/fault.h"
#include "runner/job/checkpoint.h"
#include "runner/job/dataset.h"
#include "runner/job/files.h"
#include "runner/job/fingerprint.h"
#include "runner/job/metrics.h"
#include "runner/log.h"
#include "runner/model/schedule.h"
#include "runner/signals.h"
#include "runner/telemetry.h"
#include "runner/timing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void eval_result_free(eval_result *r) {
    free(r->lengths);
    free(r->truth);
    free(r->pred);
    free(r->scores);
    free(r->logits);
    memset(r, 0, sizeof *r);
}

// Masked-LM labels for a gathered batch (B, T): 15 % of the real tokens are chosen; of
// those 80 % become [MASK], 10 % a random token, 10 % stay. Drawn from (seed, row) so a
// resumed run masks what an uninterrupted one did.
static void mlm_mask(const train_options *opt, uint64_t seed, const int *rows, int B, int T,
                     int32_t *ids, const int32_t *mask, int32_t *labels) {
    for (int b = 0; b < B; b++) {
        uint64_t stream = rng_mix64(seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(rows[b] + 1));
        for (int t = 0; t < T; t++) {
            int32_t *id = &ids[b * T + t];
            labels[b * T + t] = -100;
            if (!mask[b * T + t]) continue;
            bool special = false;
            for (int s = 0; s < 4; s++) special |= *id == opt->special_ids[s];
            if (special || rng_uniform(stream, 3 * (uint64_t)t) >= 0.15f) continue;
            labels[b * T + t] = *id;
            float r = rng_uniform(stream, 3 * (uint64_t)t + 1);
            if (r < 0.8f) *id = opt->mask_id;
            else if (r < 0.9f)
                *id = (int32_t)(rng_uniform(stream, 3 * (uint64_t)t + 2) * (float)opt->vocab_size);
        }
    }
}

typedef struct {
    int32_t *ids, *mask, *labels;
    int32_t *types; // all zeros: one segment, as HF's default token_type_ids
    float *logits;
    int *rows;
} batch_buffers;

static int buffers_alloc(batch_buffers *bb, int B, int T, int V) {
    bb->ids = malloc((size_t)B * T * sizeof(int32_t));
    bb->mask = malloc((size_t)B * T * sizeof(int32_t));
    bb->labels = malloc((size_t)B * T * sizeof(int32_t));
    bb->rows = malloc((size_t)B * sizeof(int));
    bb->types = calloc((size_t)B * T, sizeof(int32_t));
    bb->logits = V > 0 ? malloc((size_t)B * T * V * sizeof(float)) : NULL;
    if (!bb->ids || !bb->mask || !bb->labels || !bb->rows || !bb->types || (V > 0 && !bb->logits))
        return error_set(EXIT_RESOURCES, "out of memory for batches of %d x %d", B, T);
    return 0;
}

static void buffers_free(batch_buffers *bb) {
    free(bb->ids);
    free(bb->mask);
    free(bb->labels);
    free(bb->rows);
    free(bb->types);
    free(bb->logits);
}

int train_evaluate(bert_model *m, const encoded_set *set, const train_options *opt,
                   eval_result *out) {
    memset(out, 0, sizeof *out);
    bool mlm = opt->mask_id >= 0;
    int B = opt->eval_batch_size > 0 ? opt->eval_batch_size : 16;
    int V = mlm ? 0 : opt->num_labels;
    batch_buffers bb = {0};
    int rc = buffers_alloc(&bb, B, set->T, V);
    long n_words = 0;
    for (int i = 0; i < set->n && set->sentences; i++) n_words += set->sentences[i]->nwords;
    for (int i = 0; i < set->n && !set->sentences; i++) n_words += set->ntokens[i];
    out->n_sentences = set->n;
    out->lengths = calloc(set->n > 0 ? (size_t)set->n : 1, sizeof(int));
    out->pred = calloc((size_t)(n_words ? n_words : 1), sizeof(int));
    out->scores = calloc((size_t)(n_words ? n_words : 1), sizeof(float));
    out->logits = calloc((size_t)(n_words ? n_words : 1) * (size_t)(V > 0 ? V : 1), sizeof(float));
    out->truth = set->sentences ? calloc((size_t)(n_words ? n_words : 1), sizeof(int)) : NULL;
    if (rc == 0 && (!out->lengths || !out->pred || !out->scores || !out->logits || (set->sentences && !out->truth)))
        rc = error_set(EXIT_RESOURCES, "out of memory evaluating");
    double loss_sum = 0;
    long loss_count = 0, word = 0;
    for (int start = 0; rc == 0 && start < set->n; start += B) {
        fault_point("evaluate_batch", opt->final_split ? opt->final_split : opt->run);
        if (opt->final_split && signals_stop_requested()) {
            rc = error_set(EXIT_INTERRUPTED, "stopped (%s) while evaluating %s; the prime run's "
                           "checkpoints are complete: the next attempt evaluates again",
                           signals_stop_reason() ? signals_stop_reason() : "stop",
                           opt->final_split);
            break;
        }
        int nb = set->n - start < B ? set->n - start : B;
        for (int b = 0; b < nb; b++) bb.rows[b] = start + b;
        int T = encoded_batch(set, bb.rows, nb, bb.ids, bb.mask, bb.labels, NULL);
        if (mlm) mlm_mask(opt, rng_mix64(opt->seed ^ 0xe7a1ULL), bb.rows, nb, T, bb.ids, bb.mask,
                          bb.labels);
        long labelled = 0;
        for (int i = 0; i < nb * T; i++) labelled += bb.labels[i] != -100;
        bert_batch batch = {.B = nb, .T = T, .ids = bb.ids, .token_types = bb.types,
                            .mask = bb.mask, .labels = labelled ? bb.labels : NULL};
        float loss = 0;
        rc = bert_forward(m, &batch, false, 0, 0, labelled ? &loss : NULL);
        if (rc) break;
        if (labelled) { // a mean over no token is no number: such a batch adds nothing
            loss_sum += (double)loss * (double)labelled;
            loss_count += labelled;
        }
        if (mlm) continue;
        rc = bert_logits(m, bb.logits);
        if (rc) break;
        for (int b = 0; b < nb; b++) {
            int row = start + b;
            int nwords = set->sentences ? set->sentences[row]->nwords : 0;
            if (!set->sentences) { // plain text: one "word" per token between [CLS] and [SEP]
                nwords = set->ntokens[row] > 2 ? set->ntokens[row] - 2 : 0;
            }
            out->lengths[row] = nwords;
            for (int w = 0; w < nwords; w++) {
                out->pred[word + w] = opt->o_label;
                out->scores[word + w] = 0;
                if (out->truth) out->truth[word + w] = set->sentences[row]->tags[w];
            }
            const int32_t *wot = set->word_of_token + (size_t)row * set->T;
            int last_word = -1;
            for (int t = 0; t < T; t++) {
                int w = set->sentences ? wot[t] : (t >= 1 && t <= nwords ? t - 1 : -1);
                if (w < 0 || w == last_word || w >= nwords) continue; // first sub-token only
                last_word = w;
                const float *z = bb.logits + ((size_t)b * T + t) * V;
                int best = 0;
                double zmax = z[0], denom = 0;
                for (int c = 1; c < V; c++)
                    if (z[c] > z[best]) best = c;
                zmax = z[best];
                for (int c = 0; c < V; c++) denom += exp((double)z[c] - zmax);
                out->pred[word + w] = best;
                memcpy(out->logits + (size_t)(word + w) * V, z, (size_t)V * sizeof(float));
                out->scores[word + w] = (float)(1.0 / denom);
            }
            word += nwords;
        }
    }
    out->n_words = word;
    out->n_labelled = loss_count;
    out->loss = loss_count ? loss_sum / (double)loss_count : NAN;
    buffers_free(&bb);
    if (rc) eval_result_free(out);
    return rc;
}

static void log_step(const train_options *opt, const train_state *st, long total_steps,
                     double loss, double lr, double grad_norm, double tokens_per_s, double eta_s) {
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "run", opt->run);
    cJSON_AddNumberToObject(f, "epoch", st->epoch + 1);
    cJSON_AddNumberToObject(f, "step", (double)st->step);
    cJSON_AddNumberToObject(f, "total_steps", (double)total_steps);
    cJSON_AddNumberToObject(f, "loss", round(loss * 1e4) / 1e4);
    cJSON_AddNumberToObject(f, "learning_rate", lr);
    cJSON_AddNumberToObject(f, "grad_norm", round(grad_norm * 1e4) / 1e4);
    cJSON_AddNumberToObject(f, "tokens_per_second", round(tokens_per_s));
    cJSON_AddNumberToObject(f, "eta_seconds", round(eta_s));
    log_fields(LOG_INFO, "train_progress", f);
}

static bool writes_files(const train_options *opt) { return !opt->group || opt->rank == 0; }

static int save(const train_options *opt, bert_model *m, const train_state *st) {
    if (!writes_files(opt)) return 0;
    return checkpoint_save(opt->dir, m, st, opt->save_total_limit);
}

// Stop and checkpoint requests, agreed by every rank of the group (a sum over ranks), so
// that all of them stop or save at the same step and none waits in an all-reduce alone.
static int agree_on_requests(const train_options *opt, bool *stop, bool *checkpoint) {
    float flags[2] = {signals_stop_requested() ? 1.0f : 0.0f,
                      signals_take_checkpoint_request() ? 1.0f : 0.0f};
    if (opt->group) {
        int rc = data_parallel_allreduce_host(opt->group, opt->be, flags, 2);
        if (rc) return rc;
    }
    *stop = flags[0] > 0;
    *checkpoint = flags[1] > 0;
    return 0;
}

// resume.h's exchange over the training group: the same collective the steps use, so
// exactly the ranks that will train together agree, a dead peer fails it with 83 as it
// fails a step, and no key or timeout of its own is needed (rather than the Redis
// rendezvous, which knows nodes, not the group's ranks).
static int exchange_step(void *ctx, long mine, long *all) {
    const train_options *opt = ctx;
    return data_parallel_gather_long(opt->group, opt->be, mine, all);
}

// Rank 0's checkpoint to the ranks that hold none (checkpoint_resume_agreed): over the
// same group, for the same reasons; bit for bit.
static int broadcast_bytes(void *ctx, void *bytes, size_t n, int root) {
    const train_options *opt = ctx;
    return data_parallel_broadcast_bytes(opt->group, opt->be, bytes, n, root);
}

// Evaluate after an epoch: scalars, curve entry, best/early-stopping bookkeeping.
static int end_of_epoch(bert_model *m, const encoded_set *valid, const train_options *opt,
                        train_state *st, double *eval_loss_out) {
    eval_result ev;
    int rc = train_evaluate(m, valid, opt, &ev);
    if (rc) return rc;
    double f1 = 0, accuracy = 0, precision = 0, recall = 0;
    if (opt->mask_id < 0 && ev.truth) {
        metrics_report report;
        rc = metrics_compute(opt->labels, opt->num_labels, ev.truth, ev.pred, ev.lengths,
                             ev.n_sentences, &report);
        if (rc == 0) {
            metrics_prf micro = metrics_entity_micro(&report);
            f1 = micro.f1;
            precision = micro.precision;
            recall = micro.recall;
            accuracy = metrics_accuracy(&report);
            metrics_free(&report);
        }
    }
    double eval_loss = ev.loss;
    bool measured = ev.n_labelled > 0;
    eval_result_free(&ev);
    if (rc) return rc;
    double train_loss = st->loss_count ? st->loss_sum / (double)st->loss_count : NAN;
    st->loss_sum = 0;
    st->loss_count = 0;
    if (measured) telemetry_scalar(opt->run, "eval/loss", st->step, eval_loss);
    telemetry_scalar(opt->run, "train/epoch_loss", st->step, train_loss);
    if (opt->mask_id < 0) {
        telemetry_scalar(opt->run, "eval/f1", st->step, f1);
        telemetry_scalar(opt->run, "eval/precision", st->step, precision);
        telemetry_scalar(opt->run, "eval/recall", st->step, recall);
        telemetry_scalar(opt->run, "eval/accuracy", st->step, accuracy);
    }
    cJSON *point = cJSON_CreateObject();
    cJSON_AddNumberToObject(point, "epoch", st->epoch + 1);
    cJSON_AddNumberToObject(point, "step", (double)st->step);
    cJSON_AddNumberToObject(point, "train_loss", train_loss);
    if (measured) cJSON_AddNumberToObject(point, "eval_loss", eval_loss);
    else cJSON_AddNullToObject(point, "eval_loss");
    if (opt->mask_id < 0) {
        cJSON_AddNumberToObject(point, "eval_f1", f1);
        cJSON_AddNumberToObject(point, "eval_accuracy", accuracy);
    }
    cJSON_AddItemToArray(st->curve, point);
    if (opt->mask_id >= 0)
        log_info("evaluation", "run=%s epoch=%d step=%ld train_loss=%.4f eval_loss=%.4f (masked LM)",
                 opt->run, st->epoch + 1, st->step, train_loss, eval_loss);
    else
        log_info("evaluation", "run=%s epoch=%d step=%ld train_loss=%.4f eval_loss=%.4f "
                 "eval_f1=%.4f eval_accuracy=%.4f", opt->run, st->epoch + 1, st->step, train_loss,
                 eval_loss, f1, accuracy);
    *eval_loss_out = eval_loss;
    if (!measured) {
        // Nothing to compare: neither a divergence nor a better or worse epoch.
        log_warn("evaluation_empty", "%s: the evaluation set has no %s token after epoch %d; "
                 "eval_loss not measured, best checkpoint and early stopping unchanged",
                 opt->run, opt->mask_id >= 0 ? "masked" : "labelled", st->epoch + 1);
        return 0;
    }
    if (!isfinite(eval_loss))
        return error_set(EXIT_DIVERGED, "%s: evaluation loss is %g after epoch %d", opt->run,
                         eval_loss, st->epoch + 1);
    if (eval_loss < st->best_eval_loss) {
        st->best_eval_loss = eval_loss;
        st->best_eval_f1 = f1;
        st->best_step = st->step;
        st->bad_epochs = 0;
    } else {
        st->bad_epochs++;
    }
    return 0;
}

// A loss this many times that of a uniform guess over the classes (ln V, where a freshly
// initialised head starts) has exploded: weights that far off do not come back, and the
// next steps would only spend time on the way to NaN.
static const double EXPLOSION_FACTOR = 10.0;

static double explosion_limit(const train_options *opt) {
    int classes = opt->mask_id >= 0 ? opt->vocab_size : opt->num_labels;
    return EXPLOSION_FACTOR * log(classes > 2 ? (double)classes : 2.0);
}

int train_run(bert_model *m, const encoded_set *train, const encoded_set *valid,
              const train_options *opt, train_outcome *out) {
    memset(out, 0, sizeof *out);
    if (train->n == 0) return error_set(EXIT_BAD_INPUT, "%s: no training sentences", opt->run);
    int rc = files_mkdirs(opt->dir);
    if (rc) return rc;
    char logdir[1200];
    snprintf(logdir, sizeof logdir, "%s/logs", opt->dir);
    telemetry_run_dir(opt->run, logdir);

    train_state st;
    train_state_init(&st, opt->seed);
    // Before any resume: the model as the caller initialised it is part of the run.
    rc = fingerprint_of_training(m, train, valid, opt, &st.fingerprint);
    if (rc) {
        train_state_free(&st);
        return rc;
    }
    bool resumed;
    if (opt->group) {
        // Every rank from the same step: the newest one all of them hold valid.
        resume_ops group = {.rank = opt->rank, .world = opt->world, .ctx = (void *)opt,
                            .exchange = exchange_step, .broadcast = broadcast_bytes};
        rc = checkpoint_resume_agreed(opt->dir, m, &st, &group, opt->save_total_limit,
                                      &resumed);
    } else {
        rc = checkpoint_resume(opt->dir, m, &st, &resumed);
    }
    int B = opt->batch_size;
    int world = opt->group ? opt->world : 1;
    long global_batch = (long)B * world;
    long per_epoch = (train->n + global_batch - 1) / global_batch;
    // Ranks draw different dropout masks; one rank alone keeps the seed as it is.
    uint64_t dropout_seed = opt->group ? rng_mix64(opt->seed + (uint64_t)opt->rank) : opt->seed;
    long total_steps = per_epoch * opt->epochs;
    long warmup = (long)ceil(opt->warmup_ratio * (double)total_steps);
    double explode = explosion_limit(opt);
    batch_buffers bb = {0};
    int *order = malloc((size_t)train->n * sizeof *order);
    if (rc == 0) rc = buffers_alloc(&bb, B, train->T, 0);
    if (rc == 0 && !order) rc = error_set(EXIT_RESOURCES, "out of memory");
    double started = timing_now_s(), last_log = 0;
    long steps_here = 0, tokens_since = 0;
    double tokens_clock = started;
    while (rc == 0 && !st.finished && st.epoch < opt->epochs) {
        int a, b_, c;
        dataset_split(train->n, rng_mix64(opt->seed + 0x51ed27ULL * (uint64_t)(st.epoch + 1)), 1.0,
                      0.0, order, &a, &b_, &c);
        for (long b = st.batch_in_epoch; rc == 0 && b < per_epoch; b++) {
            st.batch_in_epoch = (int)b;
            bool stop = false, checkpoint = false;
            if ((rc = agree_on_requests(opt, &stop, &checkpoint))) break;
            if (stop) {
                rc = save(opt, m, &st);
                if (rc == 0)
                    rc = error_set(EXIT_INTERRUPTED, "stopped (%s) at step %ld of %s; checkpoint "
                                   "written", signals_stop_reason() ? signals_stop_reason() : "stop",
                                   st.step, opt->run);
                break;
            }
            if (checkpoint && (rc = save(opt, m, &st))) break;
            fault_maybe_inject("step", st.step);
            fault_point("train_step", opt->run);

            // This rank's rows of the global batch.
            long start = b * global_batch;
            int global = (int)(train->n - start < global_batch ? train->n - start : global_batch);
            int first = 0, nb = global;
            if (opt->group) data_parallel_slice(global, opt->rank, world, &first, &nb);
            memcpy(bb.rows, order + start + first, (size_t)nb * sizeof(int));
            long tokens = 0, labelled = 0;
            int T = nb > 0 ? encoded_batch(train, bb.rows, nb, bb.ids, bb.mask, bb.labels, &tokens) : 0;
            if (opt->mask_id >= 0 && nb > 0)
                mlm_mask(opt, rng_mix64(opt->seed + 0xa5a5ULL * (uint64_t)(st.epoch + 1)), bb.rows,
                         nb, T, bb.ids, bb.mask, bb.labels);
            for (int i = 0; i < nb * T; i++) labelled += bb.labels[i] != -100;
            bert_batch batch = {.B = nb, .T = T, .ids = bb.ids, .token_types = bb.types,
                                .mask = bb.mask, .labels = bb.labels};
            float loss = 0, grad_norm = 0;
            float lr = schedule_lr((float)opt->learning_rate, st.step, warmup, total_steps);
            bert_zero_grad(m);
            if (nb > 0 && labelled > 0) { // a rank may get no rows of a short last batch
                rc = bert_forward(m, &batch, true, dropout_seed, (uint64_t)st.step, &loss);
                if (rc == 0) rc = bert_backward(m);
            }
            if (rc == 0 && opt->group) rc = data_parallel_sync(opt->group, m, labelled, &loss);
            if (rc == 0 && !isfinite(loss))
                rc = error_set(EXIT_DIVERGED, "%s: training loss became %g at step %ld", opt->run,
                               loss, st.step);
            if (rc == 0 && loss > explode)
                rc = error_set(EXIT_DIVERGED, "%s: training loss exploded to %.4g at step %ld "
                               "(%.0f times the %.4g of guessing uniformly; learning rate %.3g)",
                               opt->run, loss, st.step, EXPLOSION_FACTOR,
                               explode / EXPLOSION_FACTOR, opt->learning_rate);
            if (rc == 0)
                rc = bert_step(m, lr, (float)opt->weight_decay, (float)opt->max_grad_norm,
                               (int)(st.step + 1), &grad_norm);
            if (rc) break;
            st.step++;
            steps_here++;
            st.loss_sum += loss;
            st.loss_count++;
            tokens_since += tokens;
            double now = timing_now_s();
            double tps = now > tokens_clock ? (double)tokens_since / (now - tokens_clock) : 0;
            telemetry_scalar(opt->run, "train/loss", st.step, loss);
            telemetry_scalar(opt->run, "train/learning_rate", st.step, lr);
            telemetry_scalar(opt->run, "train/grad_norm", st.step, grad_norm);
            telemetry_scalar(opt->run, "train/tokens_per_second", st.step, tps);
            telemetry_progress(st.step, total_steps);
            if (now - last_log >= 5.0 || st.step == total_steps || steps_here == 1) {
                double per_step = (now - started) / (double)steps_here;
                log_step(opt, &st, total_steps, loss, lr, grad_norm, tps,
                         per_step * (double)(total_steps - st.step));
                last_log = now;
                tokens_since = 0;
                tokens_clock = now;
            }
        }
        if (rc) break;
        st.batch_in_epoch = 0;
        double eval_loss = NAN;
        rc = end_of_epoch(m, valid, opt, &st, &eval_loss);
        if (rc) break;
        st.epoch++;
        if (opt->trials) {
            bool stop = false;
            rc = opt->trials->report(opt->trials, opt->trial_id, st.epoch, eval_loss, &stop);
            if (rc) break;
            if (stop && st.epoch < opt->epochs) {
                st.halted = st.finished = true;
                log_info("trial_halted", "%s halted by successive halving after epoch %d "
                         "(eval_loss %.4f)", opt->run, st.epoch, eval_loss);
            }
        }
        if (opt->patience > 0 && st.bad_epochs >= opt->patience && st.epoch < opt->epochs) {
            st.finished = true;
            out->early_stopped = true;
            log_info("early_stopping", "%s: no improvement in %d evaluations, stopping after "
                     "epoch %d", opt->run, st.bad_epochs, st.epoch);
        }
        if (st.epoch >= opt->epochs) st.finished = true;
        rc = save(opt, m, &st);
    }
    if (rc == 0) {
        out->epochs_run = st.epoch;
        out->steps = st.step;
        out->best_eval_loss = st.best_eval_loss;
        out->best_eval_f1 = st.best_eval_f1;
        out->best_step = st.best_step;
        out->halted = st.halted;
        if (!out->early_stopped)
            out->early_stopped = st.finished && !st.halted && st.epoch < opt->epochs;
        char path[1200];
        cJSON *curve = cJSON_Duplicate(st.curve, 1);
        char *text = cJSON_Print(curve);
        cJSON_Delete(curve);
        snprintf(path, sizeof path, "%s/curve.json", opt->dir);
        if (text && writes_files(opt)) rc = files_write_text(path, text);
        free(text);
    }
    free(order);
    buffers_free(&bb);
    train_state_free(&st);
    return rc;
}
