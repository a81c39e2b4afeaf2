// The evaluation reports against texts printed by scikit-learn 1.5 and seqeval 1.2 for
// the same tags (seqeval's docstring example plus a sentence with stray I- tags).
#include "check.h"
#include "runner/job/metrics.h"

#include <stdlib.h>

static const char *LABELS[] = {"O", "B-MISC", "I-MISC", "B-PER", "I-PER"};
enum { O, BM, IM, BP, IP };

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
    return check_summary();
}
