// The majority-class check at the end of a run; see learned.h.
#include "runner/job/learned.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

double learned_baseline_loss(const encoded_set *train, const encoded_set *valid, int num_labels) {
    if (num_labels <= 0) return NAN;
    double *count = calloc((size_t)num_labels, sizeof *count);
    if (!count) return NAN;
    double total = 0;
    for (size_t i = 0; i < (size_t)train->n * (size_t)train->T; i++) {
        int32_t y = train->labels[i];
        if (y < 0 || y >= num_labels) continue;
        count[y] += 1;
        total += 1;
    }
    double loss = 0;
    long labelled = 0;
    for (size_t i = 0; i < (size_t)valid->n * (size_t)valid->T; i++) {
        int32_t y = valid->labels[i];
        if (y < 0 || y >= num_labels) continue;
        loss -= log((count[y] + 1) / (total + num_labels));
        labelled++;
    }
    free(count);
    return labelled ? loss / (double)labelled : NAN;
}

bool learned_something(const learned_evidence *e, char *reason, size_t cap) {
    bool f1_zero = !(e->best_f1 > 0);
    bool loss_no_better = isfinite(e->baseline_loss) && !(e->best_eval_loss < e->baseline_loss);
    if (!f1_zero && !loss_no_better) {
        if (cap) reason[0] = '\0';
        return true;
    }
    char what[256];
    if (f1_zero && loss_no_better)
        snprintf(what, sizeof what, "entity F1 0 and loss %.4f not below the %.4f of predicting "
                 "the tag frequencies", e->best_eval_loss, e->baseline_loss);
    else if (f1_zero)
        snprintf(what, sizeof what, "entity F1 0 (no entity found: every word tagged O)");
    else
        snprintf(what, sizeof what, "loss %.4f not below the %.4f of predicting the tag "
                 "frequencies (entity F1 %.4f)", e->best_eval_loss, e->baseline_loss, e->best_f1);
    char cause[512];
    // Outside the suitable range by more than a factor 2 is the likeliest cause: too high
    // collapses a model onto the majority class, too low leaves it where it started.
    if (e->lr_high > 0 && e->learning_rate > 2 * e->lr_high)
        snprintf(cause, sizeof cause, "the learning rate %.3g is above the %.3g-%.3g that suits "
                 "%s: lower it (LEARNING_RATE or --hyperspace)", e->learning_rate, e->lr_low,
                 e->lr_high, e->start);
    else if (e->lr_low > 0 && e->learning_rate < e->lr_low / 2)
        snprintf(cause, sizeof cause, "the learning rate %.3g is below the %.3g-%.3g that suits "
                 "%s: raise it or train more epochs", e->learning_rate, e->lr_low, e->lr_high,
                 e->start);
    else
        snprintf(cause, sizeof cause, "the learning rate %.3g suits %s, so look at the data (%d "
                 "training sentences: too few?) and its labels (tags that do not follow from the "
                 "words cannot be learned)", e->learning_rate, e->start, e->n_train);
    snprintf(reason, cap, "the model learned nothing: best validation %s; likely cause: %s. "
             "Reports are written; --no-require-learning accepts such a model", what, cause);
    return false;
}
