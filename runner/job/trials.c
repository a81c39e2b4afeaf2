// Trial sampling, the ASHA rule and the in-process trial source; see trials.h.
#include "runner/job/trials.h"

#include "kernels/rng.h"
#include "runner/error.h"
#include "runner/job/files.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// numpy's default (linear) percentile of the n values at q in [0, 100].
static double percentile(const double *values, int n, double q) {
    double *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return values[0];
    memcpy(sorted, values, (size_t)n * sizeof *sorted);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    double pos = q / 100.0 * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : lo;
    double result = sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    free(sorted);
    return result;
}

bool asha_should_stop(const asha_config *asha, int epoch, double loss, const double *recorded,
                      int n) {
    // Is `epoch` a rung: min_epochs * eta^k?
    long rung = asha->min_epochs;
    while (rung < epoch) rung *= asha->eta;
    if (rung != epoch || n == 0) return false;
    // As Ray Tune's AsyncHyperBand does when minimising: stop when the loss is worse than
    // the 1/eta quantile of the losses already recorded at this rung.
    if (!isfinite(loss)) return true;
    return loss > percentile(recorded, n, 100.0 / asha->eta);
}

static const cJSON *range_of(const cJSON *root, const char *kind, const char *name) {
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(root, kind);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(group, name);
    return item;
}

// Values must be finite (1e999 parses as infinity, and the sampled rates would be inf or
// NaN). Weight decay and batch size keep to the ranges of WEIGHT_DECAY and
// TRAIN_BATCH_SIZE (runner/config.c), so a trial never runs what the flags refuse; the
// learning rate has only LEARNING_RATE's low bound: a rate too high for the model is a
// trial that diverges and is recorded as failed (docs/pipeline.md), not a bad file.
static int read_range(const char *path, const cJSON *item, const char *name, double max,
                      double *lo, double *hi) {
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(item, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(item, 1)))
        return error_set(EXIT_BAD_INPUT, "%s: continuous.%s must be [low, high]", path, name);
    *lo = cJSON_GetArrayItem(item, 0)->valuedouble;
    *hi = cJSON_GetArrayItem(item, 1)->valuedouble;
    if (!isfinite(*lo) || !isfinite(*hi))
        return error_set(EXIT_BAD_INPUT, "%s: continuous.%s must hold finite numbers", path, name);
    if (!(*lo <= *hi) || *lo < 0 || *hi > max)
        return error_set(EXIT_BAD_INPUT, "%s: continuous.%s needs 0 <= low <= high <= %g", path,
                         name, max);
    return 0;
}

static int check_choice(const char *path, const cJSON *item, const char *name, double min,
                        double max, bool integer) {
    int n = cJSON_GetArraySize(item);
    if (!cJSON_IsArray(item) || n == 0)
        return error_set(EXIT_BAD_INPUT, "%s: choice.%s must be a non-empty list", path, name);
    const cJSON *v;
    cJSON_ArrayForEach(v, item) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
            (integer && v->valuedouble != floor(v->valuedouble)))
            return error_set(EXIT_BAD_INPUT, "%s: choice.%s holds a value that is not %s in "
                             "%g..%g", path, name, integer ? "an integer" : "a number", min, max);
    }
    return 0;
}

int trials_sample(const char *path, int n, uint64_t seed, int max_epochs, const trial_spec *base,
                  trial_spec *out) {
    cJSON *root = NULL;
    if (path && path[0]) {
        char *text;
        int rc = files_read_all(path, &text, NULL);
        if (rc) return rc;
        root = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return error_set(EXIT_BAD_INPUT, "%s: not a JSON object", path);
        }
    }
    int rc = trials_sample_space(root, path, n, seed, max_epochs, base, out);
    cJSON_Delete(root);
    return rc;
}

int trials_sample_space(const cJSON *root, const char *path, int n, uint64_t seed, int max_epochs,
                        const trial_spec *base, trial_spec *out) {
    if (!path) path = "hyperspace";
    const cJSON *lr = range_of(root, "continuous", "learning_rate");
    const cJSON *wd = range_of(root, "continuous", "weight_decay");
    const cJSON *wd_choice = range_of(root, "choice", "weight_decay");
    const cJSON *bs_choice = range_of(root, "choice", "per_device_train_batch_size");
    double lr_lo = base->learning_rate, lr_hi = base->learning_rate;
    double wd_lo = base->weight_decay, wd_hi = base->weight_decay;
    int rc = 0;
    if (lr) {
        rc = read_range(path, lr, "learning_rate", DBL_MAX, &lr_lo, &lr_hi);
        if (rc == 0 && lr_lo < 1e-12)
            rc = error_set(EXIT_BAD_INPUT, "%s: continuous.learning_rate must be >= 1e-12",
                           path);
    }
    if (rc == 0 && wd) rc = read_range(path, wd, "weight_decay", 1, &wd_lo, &wd_hi);
    if (rc == 0 && wd_choice && !wd)
        rc = check_choice(path, wd_choice, "weight_decay", 0, 1, false);
    if (rc == 0 && bs_choice)
        rc = check_choice(path, bs_choice, "per_device_train_batch_size", 1, 65536, true);
    for (int i = 0; rc == 0 && i < n; i++) {
        trial_spec *t = &out[i];
        *t = *base;
        t->id = i;
        t->max_epochs = max_epochs;
        t->seed = rng_mix64(seed + 0x100000001ULL * (uint64_t)(i + 1));
        uint64_t draw = 4 * (uint64_t)i;
        // Learning rate log-uniform (as tune.loguniform), weight decay uniform (or a
        // choice when no range is given), batch size a choice.
        double u = rng_uniform(seed, draw + 0);
        t->learning_rate = exp(log(lr_lo) + u * (log(lr_hi) - log(lr_lo)));
        u = rng_uniform(seed, draw + 1);
        if (wd) {
            t->weight_decay = wd_lo + u * (wd_hi - wd_lo);
        } else if (wd_choice) {
            int k = (int)(u * cJSON_GetArraySize(wd_choice));
            t->weight_decay = cJSON_GetArrayItem(wd_choice, k)->valuedouble;
        }
        if (bs_choice) {
            int k = (int)(rng_uniform(seed, draw + 2) * cJSON_GetArraySize(bs_choice));
            t->batch_size = cJSON_GetArrayItem(bs_choice, k)->valueint;
        }
    }
    return rc;
}

static trials_factory registered_factory;

void trials_set_factory(trials_factory factory) { registered_factory = factory; }

trials_factory trials_get_factory(void) { return registered_factory; }

int trials_best(const trial_result *results, int n) {
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(results[i].best_eval_loss)) continue;
        if (best < 0 || results[i].best_eval_loss < results[best].best_eval_loss ||
            (results[i].best_eval_loss == results[best].best_eval_loss &&
             results[i].id < results[best].id))
            best = i;
    }
    return best;
}

// ---- the in-process source ------------------------------------------------------------

typedef struct {
    int id, epoch;
    double loss;
} rung_record;

typedef struct {
    trial_spec *specs;
    int n;
    asha_config asha;
    char *state_path;
    bool *done;
    trial_result *results;
    int n_results;
    rung_record *records;
    int n_records, cap_records;
    int cursor;
} local_source;

static int local_save(local_source *ls) {
    if (!ls->state_path) return 0;
    cJSON *root = cJSON_CreateObject();
    cJSON *completed = cJSON_AddArrayToObject(root, "completed");
    for (int i = 0; i < ls->n_results; i++) {
        const trial_result *r = &ls->results[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", r->id);
        cJSON_AddNumberToObject(o, "epochs_run", r->epochs_run);
        cJSON_AddNumberToObject(o, "best_eval_loss", r->best_eval_loss);
        cJSON_AddNumberToObject(o, "best_eval_f1", r->best_eval_f1);
        cJSON_AddBoolToObject(o, "halted", r->halted);
        cJSON_AddItemToArray(completed, o);
    }
    cJSON *rungs = cJSON_AddArrayToObject(root, "rungs");
    for (int i = 0; i < ls->n_records; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", ls->records[i].id);
        cJSON_AddNumberToObject(o, "epoch", ls->records[i].epoch);
        cJSON_AddNumberToObject(o, "eval_loss", ls->records[i].loss);
        cJSON_AddItemToArray(rungs, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    int rc = text ? files_write_text(ls->state_path, text)
                  : error_set(EXIT_RESOURCES, "out of memory");
    free(text);
    return rc;
}

static int local_load(local_source *ls) {
    char *text;
    if (!ls->state_path || !files_exists(ls->state_path)) return 0;
    int rc = files_read_all(ls->state_path, &text, NULL);
    if (rc) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return error_set(EXIT_BAD_INPUT, "%s: search state is not a JSON object", ls->state_path);
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItem(root, "completed")) {
        int id = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "id"));
        if (id < 0 || id >= ls->n || ls->done[id]) continue;
        trial_result *r = &ls->results[ls->n_results++];
        r->id = id;
        r->epochs_run = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "epochs_run"));
        r->best_eval_loss = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "best_eval_loss"));
        r->best_eval_f1 = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "best_eval_f1"));
        r->halted = cJSON_IsTrue(cJSON_GetObjectItem(o, "halted"));
        ls->done[id] = true;
    }
    cJSON_ArrayForEach(o, cJSON_GetObjectItem(root, "rungs")) {
        rung_record rec = {(int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "id")),
                           (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "epoch")),
                           cJSON_GetNumberValue(cJSON_GetObjectItem(o, "eval_loss"))};
        if (ls->n_records == ls->cap_records) {
            int cap = ls->cap_records ? ls->cap_records * 2 : 64;
            rung_record *grown = realloc(ls->records, (size_t)cap * sizeof *grown);
            if (!grown) {
                cJSON_Delete(root);
                return error_set(EXIT_RESOURCES, "out of memory");
            }
            ls->records = grown;
            ls->cap_records = cap;
        }
        ls->records[ls->n_records++] = rec;
    }
    cJSON_Delete(root);
    return 0;
}

static int local_next(trial_source *s, trial_spec *out, bool *have) {
    local_source *ls = s->impl;
    while (ls->cursor < ls->n && ls->done[ls->cursor]) ls->cursor++;
    *have = ls->cursor < ls->n;
    if (*have) *out = ls->specs[ls->cursor++];
    return 0;
}

static int local_report(trial_source *s, int id, int epoch, double eval_loss, bool *stop) {
    local_source *ls = s->impl;
    // The losses other trials recorded at this epoch; a re-run trial (after a restart)
    // replaces its own earlier record, so it meets the same decision again.
    double *others = calloc((size_t)ls->n_records + 1, sizeof *others);
    if (!others) return error_set(EXIT_RESOURCES, "out of memory");
    int n = 0, mine = -1;
    for (int i = 0; i < ls->n_records; i++) {
        if (ls->records[i].epoch != epoch) continue;
        if (ls->records[i].id == id) mine = i;
        else others[n++] = ls->records[i].loss;
    }
    *stop = asha_should_stop(&ls->asha, epoch, eval_loss, others, n);
    free(others);
    if (mine < 0) {
        if (ls->n_records == ls->cap_records) {
            int cap = ls->cap_records ? ls->cap_records * 2 : 64;
            rung_record *grown = realloc(ls->records, (size_t)cap * sizeof *grown);
            if (!grown) return error_set(EXIT_RESOURCES, "out of memory");
            ls->records = grown;
            ls->cap_records = cap;
        }
        mine = ls->n_records++;
    }
    ls->records[mine] = (rung_record){id, epoch, eval_loss};
    return local_save(ls);
}

static int local_complete(trial_source *s, const trial_result *result) {
    local_source *ls = s->impl;
    if (result->id < 0 || result->id >= ls->n)
        return error_set(EXIT_INTERNAL, "trial %d is not part of this search", result->id);
    if (ls->done[result->id]) return 0;
    ls->done[result->id] = true;
    ls->results[ls->n_results++] = *result;
    return local_save(ls);
}

static int local_results(trial_source *s, trial_result *out, int max) {
    local_source *ls = s->impl;
    int n = ls->n_results < max ? ls->n_results : max;
    memcpy(out, ls->results, (size_t)n * sizeof *out);
    return n;
}

static void local_destroy(trial_source *s) {
    if (!s) return;
    local_source *ls = s->impl;
    if (ls) {
        free(ls->specs);
        free(ls->state_path);
        free(ls->done);
        free(ls->results);
        free(ls->records);
        free(ls);
    }
    free(s);
}

int trials_local_create(trial_source **out, const trial_spec *specs, int n,
                        const asha_config *asha, const char *state_path) {
    *out = NULL;
    trial_source *s = calloc(1, sizeof *s);
    local_source *ls = calloc(1, sizeof *ls);
    if (s) s->impl = ls;
    if (!s || !ls) {
        free(s);
        free(ls);
        return error_set(EXIT_RESOURCES, "out of memory");
    }
    s->next = local_next;
    s->report = local_report;
    s->complete = local_complete;
    s->results = local_results;
    s->destroy = local_destroy;
    ls->n = n;
    ls->asha = *asha;
    if (ls->asha.min_epochs < 1) ls->asha.min_epochs = 1;
    if (ls->asha.eta < 2) ls->asha.eta = 2;
    ls->specs = malloc((size_t)(n ? n : 1) * sizeof *ls->specs);
    ls->done = calloc((size_t)(n ? n : 1), sizeof *ls->done);
    ls->results = calloc((size_t)(n ? n : 1), sizeof *ls->results);
    ls->state_path = state_path ? strdup(state_path) : NULL;
    if (!ls->specs || !ls->done || !ls->results || (state_path && !ls->state_path)) {
        local_destroy(s);
        return error_set(EXIT_RESOURCES, "out of memory");
    }
    memcpy(ls->specs, specs, (size_t)n * sizeof *specs);
    int rc = local_load(ls);
    if (rc) {
        local_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}
