#pragma once
// The training loop shared by the search trials, the prime run and pretraining:
// epochs of shuffled batches (order from (seed, epoch)), AdamW with the original's
// linear warm-up/decay schedule, gradient clipping, evaluation after each epoch, early
// stopping with patience, the best checkpoint by evaluation loss, save_total_limit,
// ASHA reports at epoch ends, progress lines (step, loss, tokens/s, ETA) and every scalar
// handed to telemetry. Stop requests are honoured at step boundaries: checkpoint, then
// EXIT_INTERRUPTED. A run that finds checkpoints in its directory resumes from the newest
// valid one (with a group: the newest one every rank holds valid, runner/job/resume.h)
// and ends with the same weights as an uninterrupted run.
#include "kernels/collectives/collectives.h"
#include "runner/job/encode.h"
#include "runner/job/trials.h"
#include "runner/model/bert.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *run;       // telemetry run name: "prime", "trial-3", "pretrain"
    const char *dir;       // checkpoint-*/ and logs/ go here
    int epochs;
    int batch_size, eval_batch_size;
    double learning_rate, weight_decay, max_grad_norm, warmup_ratio;
    int patience;          // evaluations without improvement before stopping (0 = off)
    int save_total_limit;  // checkpoints kept besides the best (0 = all)
    uint64_t seed;
    trial_source *trials;  // ASHA reports at epoch ends (NULL: none)
    int trial_id;
    // Token classification: labels for the evaluation's F1 (num_labels, o_label).
    const char *const *labels;
    int num_labels;
    int o_label;           // predicted for words truncated away
    // Masked-LM pretraining instead: mask_id >= 0 turns on 15 % masking (80/10/10).
    int32_t mask_id;
    int vocab_size;
    int32_t special_ids[4]; // never masked ([CLS], [SEP], [PAD], [UNK])
    // Data parallelism (runner/coord/data_parallel.h): with a group, a step takes
    // batch_size rows per rank (the global batch is batch_size x world), gradients are
    // summed across ranks, every rank evaluates, only rank 0 writes files, and a stop
    // request anywhere stops every rank at the same step. NULL: this worker alone.
    collective *group;
    int rank, world;
    backend *be;           // for the GPU group's device-side flags
    // The job's final evaluation of a split ("validating", "testing"): a stop request
    // ends it before its next batch with EXIT_INTERRUPTED, since the run's checkpoints
    // are complete and the next attempt evaluates again. NULL (the evaluation after each
    // epoch): it runs to its end, as the epoch's checkpoint that follows needs it.
    const char *final_split;
} train_options;

typedef struct {
    int epochs_run;
    long steps;
    double best_eval_loss, best_eval_f1;
    long best_step;        // checkpoint of the best weights
    bool halted;           // by ASHA
    bool early_stopped;
} train_outcome;

// Train m (initialised by the caller, or restored from opt->dir) on `train`, evaluating
// on `valid`. 0, EXIT_INTERRUPTED (checkpoint written), EXIT_DIVERGED (a NaN/Inf loss or
// gradient, or a training loss above ten times that of a uniform guess) or another code.
int train_run(bert_model *m, const encoded_set *train, const encoded_set *valid,
              const train_options *opt, train_outcome *out);

typedef struct {
    double loss;     // mean over labelled tokens; NAN when there were none (n_labelled 0)
    long n_labelled; // tokens the loss was measured on (masked ones for MLM)
    int n_sentences;
    long n_words;
    int *lengths;    // (n_sentences) words per sentence
    int *truth;      // (n_words) gold tag per word (NULL without sentences)
    int *pred;       // (n_words) predicted tag per word
    float *scores;   // (n_words) softmax probability of the predicted tag
    float *logits;   // (n_words, num_labels) the logits of each word's first sub-token
} eval_result;

// Evaluate a token-classification model on `set`: loss (when labelled), the tag and its
// probability per word (first sub-token). MLM models (opt->mask_id >= 0) get the loss only.
// Batches without a labelled token add nothing to the loss; a set with none at all (a tiny
// MLM evaluation set where nothing was masked) has no loss: n_labelled 0, loss NAN, which
// is no divergence. EXIT_INTERRUPTED when opt->final_split is set and a stop was requested.
int train_evaluate(bert_model *m, const encoded_set *set, const train_options *opt,
                   eval_result *out);
void eval_result_free(eval_result *r);
