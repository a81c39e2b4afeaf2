// Fuzz target for the hyper-parameter search space: arbitrary bytes as a hyperspace.json's
// text. Choosing the space (space_choose_text: the object, its "tuned_for") must give 0 or
// EXIT_BAD_INPUT; sampling trials from the chosen space (trials_sample_space, as the
// pipeline does) must give 0 or EXIT_BAD_INPUT, always 0 for the built-in defaults, and
// specs the trainer can run: a finite learning rate of at least 1e-12 (LEARNING_RATE's
// low bound), a weight decay in [0, 1] and a batch size in 1..65536 (the ranges of
// WEIGHT_DECAY and TRAIN_BATCH_SIZE). The starting point and whether the file was named
// come from the input's length. Anything else aborts.
#include "runner/error.h"
#include "runner/job/space.h"
#include "runner/job/trials.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEED_ONE                                                                                   \
    "{\"tuned_for\": {\"start\": \"random\", \"shape\": \"bert-tiny\"},"                           \
    " \"continuous\": {\"learning_rate\": [0.0005, 0.005], \"weight_decay\": [0.0, 0.1]},"         \
    " \"choice\": {\"weight_decay\": [0.0, 0.01, 0.1], \"per_device_train_batch_size\": [16, "     \
    "32]}}"
#define SEED_TWO "{\"choice\": {\"weight_decay\": [0.01], \"per_device_train_batch_size\": [8]}}\n"
#define SEED_THREE "{\"tuned_for\": {\"start\": \"pretrained\"}, \"continuous\": {}}"
const char *const fuzz_seeds[] = {SEED_ONE, SEED_TWO, SEED_THREE, NULL};
const size_t fuzz_seed_sizes[] = {sizeof SEED_ONE - 1, sizeof SEED_TWO - 1, sizeof SEED_THREE - 1,
                                  0};

enum { TRIALS = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const shapes[] = {"bert-tiny", "bert-mini", "bert-small", NULL};
    space_start start = {.pretrained = size & 1,
                         .shape = shapes[(size >> 1) % 4],
                         .hidden_size = (size & 2) ? 256 : 0,
                         .num_layers = (size & 2) ? 4 : 0};
    bool given = size & 8;
    space_choice choice;
    error_clear();
    int rc =
        space_choose_text(&start, "fuzz/hyperspace.json", (const char *)data, size, given, &choice);
    if (rc != 0 && rc != EXIT_BAD_INPUT) abort();
    if (rc != 0) return 0;
    if (!cJSON_IsObject(choice.space) || !choice.origin[0] || !choice.why[0]) abort();
    trial_spec base = {.learning_rate = 3e-5, .weight_decay = 0.01, .batch_size = 16};
    trial_spec specs[TRIALS];
    rc = trials_sample_space(choice.space, choice.origin, TRIALS, size, 3, &base, specs);
    if (rc != 0 && (rc != EXIT_BAD_INPUT || choice.builtin)) abort();
    for (int i = 0; rc == 0 && i < TRIALS; i++) {
        const trial_spec *t = &specs[i];
        if (t->id != i || t->max_epochs != 3) abort();
        // exp(log) of the bound may round a hair below it.
        if (!(isfinite(t->learning_rate) && t->learning_rate >= 1e-12 * (1 - 1e-9))) abort();
        if (!(isfinite(t->weight_decay) && t->weight_decay >= 0 && t->weight_decay <= 1)) abort();
        if (t->batch_size < 1 || t->batch_size > 65536) abort();
    }
    space_choice_free(&choice);
    return 0;
}
