#pragma once
// Did the run learn anything? A tagger no better than the majority-class baseline
// (tagging every word "O") scores an entity F1 of 0; its loss is no lower than that of
// the best constant prediction, the training tags' frequencies. Such a run must not end
// as a success a Batch job or Step Functions records (exit 9 LEARNED_NOTHING).
#include "runner/job/encode.h"

#include <stdbool.h>
#include <stddef.h>

// Cross-entropy on the labelled tokens of `valid` of predicting, for every token, the
// tag frequencies of `train` (add-one smoothed, so no tag has probability 0): the loss a
// model that learned only the class balance reaches. NAN when `valid` has no label.
double learned_baseline_loss(const encoded_set *train, const encoded_set *valid, int num_labels);

typedef struct {
    double best_f1;         // validation entity F1 of the best checkpoint
    double best_eval_loss;  // its evaluation loss
    double baseline_loss;   // learned_baseline_loss(), NAN when unknown
    double learning_rate;   // the prime run's
    double lr_low, lr_high; // the range that suits the starting point
    const char *start;      // "bert-mini from random weights", for the reason
    int n_train;            // training sentences
} learned_evidence;

// True when the evidence shows learning: F1 above 0 and, when the baseline is known, a
// loss below it. Otherwise false, with one line in `reason` naming the likely cause (the
// learning rate when it lies outside the suitable range, else the data or its labels).
bool learned_something(const learned_evidence *e, char *reason, size_t cap);
