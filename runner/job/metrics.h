#pragma once
// Evaluation of a tagger, in the original job's four files (DESIGN §8):
// fine.txt        per-tag report exactly as scikit-learn's classification_report prints it
//                 (token level, one tag per word),
// coarse.txt      entity-level report exactly as seqeval's classification_report prints it
//                 (default mode, conlleval-compatible chunking),
// score.json      overall figures (seqeval_overall_accuracy_score, ..._f1_score, ...),
// fundamental.json {tag: {tn, fp, fn, tp}} one-vs-rest counts per tag.
#include <cjson/cJSON.h>

typedef struct {
    double precision, recall, f1;
    long support;
} metrics_prf;

typedef struct {
    int num_labels;
    char **labels;       // copies of the label names (id -> name)
    long *tp, *fp, *fn, *tn; // (num_labels) token level, one-vs-rest
    long n_tokens, n_correct;
    // Entity level (seqeval), types sorted by name, under their full names. Each label
    // names one type, so there are at most num_labels + 1 ("O" gives "_").
    int n_types;
    char **types;        // (n_types) malloc'd names
    long *entity_tp, *entity_pred, *entity_true; // (n_types)
} metrics_report;

// Count over n_sentences sentences of lengths[i] words; true_tags/pred_tags hold the
// label ids of all words, sentence after sentence. 0 or EXIT_RESOURCES/EXIT_INTERNAL.
int metrics_compute(const char *const *labels, int num_labels, const int *true_tags,
                    const int *pred_tags, const int *lengths, int n_sentences, metrics_report *out);
void metrics_free(metrics_report *r);

// Token accuracy (= seqeval's accuracy_score).
double metrics_accuracy(const metrics_report *r);
// seqeval's micro-averaged entity precision/recall/F1.
metrics_prf metrics_entity_micro(const metrics_report *r);
// The texts, malloc'd.
char *metrics_fine_text(const metrics_report *r, int digits);
char *metrics_coarse_text(const metrics_report *r, int digits);
cJSON *metrics_score_json(const metrics_report *r, double eval_loss);
cJSON *metrics_fundamental_json(const metrics_report *r);
// Write the four files into `dir` (created). 0 or EXIT_OUTPUT.
int metrics_write(const metrics_report *r, double eval_loss, const char *dir);
