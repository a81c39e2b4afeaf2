#pragma once
// Which hyper-parameter search space and schedule a run uses (docs/pipeline.md, "Search
// space"). Fine-tuning pretrained weights and training random ones need learning rates
// two orders of magnitude apart: the range that trains bert-tiny from scratch destroys a
// pretrained bert-base, and the fine-tuning range leaves a random model tagging every
// word "O". So the defaults follow the starting point: from pretrained weights the
// original job's and the BERT paper's fine-tuning ranges; from random weights ranges that
// shrink as the model grows wider and deeper. A hyperspace.json the user names always
// wins; one found beside the data that declares the run it was tuned for
// ("tuned_for": {"start": "random", "shape": "bert-tiny"}, as data/demo's does) applies
// only to that run, and the built-in defaults replace it otherwise.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    bool pretrained;   // weights from a checkpoint (--model) rather than random
    const char *shape; // "bert-tiny", "bert-mini", ... or "pretrained"
    int hidden_size, num_layers;
} space_start;

typedef struct {
    double lr_low, lr_high;                 // learning rate, sampled log-uniform
    double weight_decay_low, weight_decay_high; // sampled uniform (equal: fixed)
    double warmup_ratio;                    // linear warm-up fraction of the steps
} space_defaults;

// "bert-mini from random weights", "pretrained weights (L6 C384)".
void space_describe_start(const space_start *start, char *out, size_t cap);
// The built-in defaults for a starting point.
void space_defaults_for(const space_start *start, space_defaults *out);
// Without a search (--mode train, pretrain) one learning rate: the geometric middle of
// the default range.
double space_default_learning_rate(const space_defaults *d);
// The defaults in hyperspace.json's shape (batch sizes 16 and 32, as the original's).
cJSON *space_defaults_json(const space_defaults *d);

typedef struct {
    cJSON *space;   // the space to sample, in hyperspace.json's shape (owned)
    char origin[1100]; // the file, or "built-in defaults"
    char why[1400];    // one sentence for the log and hyperparameters/space.json
    bool builtin;
} space_choice;

// Choose the space: `path` is the hyperspace.json found for the run ("" or NULL: none),
// `given` says the user named it (--hyperspace / config / RUNNER_HYPERSPACE). 0, or
// EXIT_BAD_INPUT naming the file (unreadable, not a JSON object, a malformed tuned_for).
int space_choose(const space_start *start, const char *path, bool given, space_choice *out);
// The same for the file's text (`len` bytes, need not be NUL-terminated) already read from
// `path` (named in errors): what space_choose does once it has read the file.
int space_choose_text(const space_start *start, const char *path, const char *text, size_t len,
                      bool given, space_choice *out);
void space_choice_free(space_choice *c);
