#pragma once
// The trial queue of the hyper-parameter search: where a worker gets its next trial,
// reports its evaluation loss at each epoch boundary (the ASHA rungs) and hands in the
// result. One interface, two implementations: trials_local_create() here (in-process,
// one worker) and a Redis-stream one in runner/coord/ (several workers share a search;
// a dead worker's trial is claimed again). The specs are sampled by trials_sample() from
// hyperspace.json with a seed, so every implementation runs the same trials.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int id;               // 0 .. n_trials-1; also the folder name "trial-<id>"
    uint64_t seed;        // initialisation, dropout and shuffling of this trial
    double learning_rate;
    double weight_decay;
    int batch_size;       // per_device_train_batch_size
    int max_epochs;       // the budget the trial may use if it is never halted
} trial_spec;

typedef struct {
    int id;
    int epochs_run;       // epochs trained before completion or the ASHA stop
    double best_eval_loss; // lowest evaluation loss over its epochs
    double best_eval_f1;   // entity F1 at that epoch
    bool halted;          // stopped early by successive halving
} trial_result;

// ASHA: a trial reaching rung r (epoch min_epochs * eta^r) continues only if its loss is
// in the best 1/eta of the losses recorded at that rung so far (asynchronous successive
// halving, Li et al. 2018); the first trials at a rung always continue.
typedef struct {
    int min_epochs; // first rung, >= 1
    int eta;        // reduction factor, >= 2
} asha_config;

// Decide at rung `epoch` for `loss`, given the `n` losses already recorded at that rung
// (not counting this one). True = stop this trial. Pure, shared by implementations.
bool asha_should_stop(const asha_config *asha, int epoch, double loss, const double *recorded,
                      int n);

typedef struct trial_source trial_source;
struct trial_source {
    void *impl;
    // The next trial to run into *out; *have = false when none is left. 0 or exit code.
    int (*next)(trial_source *s, trial_spec *out, bool *have);
    // Record the eval loss of trial `id` after `epoch` (1-based); *stop = true means ASHA
    // halts it here. 0 or an exit code.
    int (*report)(trial_source *s, int id, int epoch, double eval_loss, bool *stop);
    // The trial finished (ran out of epochs, early stopping, or halted). 0 or exit code.
    int (*complete)(trial_source *s, const trial_result *result);
    // All completed results so far into out[0..max); returns how many (-1 on error).
    int (*results)(trial_source *s, trial_result *out, int max);
    void (*destroy)(trial_source *s);
};

// Sample n trials from hyperspace.json (the original's shape:
// {"continuous": {"learning_rate": [lo, hi], "weight_decay": [lo, hi]},
//  "choice": {"weight_decay": [...], "per_device_train_batch_size": [...]}}):
// learning rate log-uniform, continuous weight decay uniform, choices uniform, all from
// `seed`. `base` supplies anything the file leaves out. 0 or EXIT_BAD_INPUT.
int trials_sample(const char *hyperspace_json, int n, uint64_t seed, int max_epochs,
                  const trial_spec *base, trial_spec *out);
// The same from a parsed space (NULL: none; `origin` names it in errors).
int trials_sample_space(const cJSON *space, const char *origin, int n, uint64_t seed,
                        int max_epochs, const trial_spec *base, trial_spec *out);

// The in-process source over `n` specs. `state_path` (may be NULL) is a JSON file where
// completed trials and rung records are kept atomically, so a restarted search skips
// what it already finished. 0 or an exit code.
int trials_local_create(trial_source **out, const trial_spec *specs, int n,
                        const asha_config *asha, const char *state_path);
// Another implementation (the Redis stream of runner/coord) registers itself here; the
// pipeline uses it when the job has several workers, else trials_local_create.
typedef int (*trials_factory)(trial_source **out, const trial_spec *specs, int n,
                              const asha_config *asha, const char *state_path, int rank,
                              int world_size);
void trials_set_factory(trials_factory factory);
trials_factory trials_get_factory(void); // NULL when none was registered

// The best completed trial (lowest best_eval_loss, ties to the lower id); -1 when none.
int trials_best(const trial_result *results, int n);
