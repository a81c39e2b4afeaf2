// The evaluation reports against texts printed by scikit-learn 1.5 and seqeval 1.2 for
// the same tags (seqeval's docstring example plus a sentence with stray I- tags).
#include "check.h"
#include "runner/job/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *LABELS[] = {"O", "B-MISC", "I-MISC", "B-PER", "I-PER"};
enum { O, BM, IM, BP, IP };

// 100 entity types, with names that differ only after 60 bytes: each is counted and
// reported under its full name (no table limit, no merging of cut-off names).
static void test_many_long_types(void) {
    enum { TYPES = 100, WORDS = 2 * TYPES };
    char *labels[2 * TYPES + 1];
    const char *const prefix = "a-rather-long-entity-type-name-that-goes-well-beyond-48-bytes-";
    labels[0] = strdup("O");
    for (int t = 0; t < TYPES; t++) {
        char name[128];
        snprintf(name, sizeof name, "B-%s%03d", prefix, t);
        labels[1 + 2 * t] = strdup(name);
        snprintf(name, sizeof name, "I-%s%03d", prefix, t);
        labels[2 + 2 * t] = strdup(name);
    }
    int truth[WORDS], pred[WORDS], lengths[TYPES];
    for (int t = 0; t < TYPES; t++) { // one sentence per type: B-t I-t
        truth[2 * t] = pred[2 * t] = 1 + 2 * t;
        truth[2 * t + 1] = 2 + 2 * t;
        pred[2 * t + 1] = t % 2 ? 2 + 2 * t : 0; // odd types predicted whole
        lengths[t] = 2;
    }
    metrics_report r;
    CHECK_INT(metrics_compute((const char *const *)labels, 2 * TYPES + 1, truth, pred, lengths,
                              TYPES, &r), 0);
    CHECK_INT(r.n_types, TYPES);
    metrics_prf micro = metrics_entity_micro(&r);
    CHECK_INT(micro.support, TYPES);
    CHECK_CLOSE(micro.recall, 0.5, 1e-12, 0);
    cJSON *score = metrics_score_json(&r, 0.5);
    const cJSON *entities = cJSON_GetObjectItem(score, "entities");
    CHECK_INT(cJSON_GetArraySize(entities), TYPES);
    char name[128];
    snprintf(name, sizeof name, "%s%03d", prefix, 99);
    const cJSON *last = cJSON_GetObjectItem(entities, name);
    CHECK(last != NULL);
    CHECK_CLOSE(cJSON_GetObjectItem(last, "f1")->valuedouble, 1.0, 1e-12, 0);
    snprintf(name, sizeof name, "%s%03d", prefix, 98);
    CHECK_CLOSE(cJSON_GetObjectItem(cJSON_GetObjectItem(entities, name), "recall")->valuedouble,
                0.0, 1e-12, 0);
    cJSON_Delete(score);
    metrics_free(&r);
    for (int i = 0; i < 2 * TYPES + 1; i++) free(labels[i]);
}

int main(void) {
    const int truth[] = {O, O, O, BM, IM, IM, O, BP, IP, O, IP, BM, IP};
    const int pred[] = {O, O, BM, IM, IM, IM, O, BP, IP, O, IP, IM, IP};
    const int lengths[] = {7, 3, 3};
    metrics_report r;
    CHECK_INT(metrics_compute(LABELS, 5, truth, pred, lengths, 3, &r), 0);

    char *coarse = metrics_coarse_text(&r, 2);
    CHECK_STR(coarse, "              precision    recall  f1-score   support\n\n"
                      "        MISC       0.50      0.50      0.50         2\n"
                      "         PER       1.00      1.00      1.00         3\n\n"
                      "   micro avg       0.80      0.80      0.80         5\n"
                      "   macro avg       0.75      0.75      0.75         5\n"
                      "weighted avg       0.80      0.80      0.80         5\n");
    char *fine = metrics_fine_text(&r, 2);
    CHECK_STR(fine, "              precision    recall  f1-score   support\n\n"
                    "      B-MISC       0.00      0.00      0.00         2\n"
                    "       B-PER       1.00      1.00      1.00         1\n"
                    "      I-MISC       0.50      1.00      0.67         2\n"
                    "       I-PER       1.00      1.00      1.00         3\n"
                    "           O       1.00      0.80      0.89         5\n\n"
                    "    accuracy                           0.77        13\n"
                    "   macro avg       0.70      0.76      0.71        13\n"
                    "weighted avg       0.77      0.77      0.75        13\n");
    CHECK_CLOSE(metrics_accuracy(&r), 10.0 / 13.0, 1e-12, 0);
    metrics_prf micro = metrics_entity_micro(&r);
    CHECK_CLOSE(micro.f1, 0.8, 1e-12, 0);

    cJSON *fundamental = metrics_fundamental_json(&r);
    const cJSON *o = cJSON_GetObjectItem(fundamental, "O");
    CHECK_INT(cJSON_GetObjectItem(o, "tp")->valueint, 4);
    CHECK_INT(cJSON_GetObjectItem(o, "fn")->valueint, 1);
    CHECK_INT(cJSON_GetObjectItem(o, "fp")->valueint, 0);
    CHECK_INT(cJSON_GetObjectItem(o, "tn")->valueint, 8);
    cJSON_Delete(fundamental);
    cJSON *score = metrics_score_json(&r, 0.5);
    CHECK_CLOSE(cJSON_GetObjectItem(score, "seqeval_overall_accuracy_score")->valuedouble,
                10.0 / 13.0, 1e-12, 0);
    cJSON_Delete(score);
    free(coarse);
    free(fine);
    metrics_free(&r);
    test_many_long_types();
    return check_summary();
}
