#pragma once
// Shared by the checkpoint unit tests (test_checkpoint.c, test_checkpoint_replica.c): a
// small model's configuration and a checkpoint of it at a given step.
#include "check.h"
#include "runner/job/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static inline bert_config checkpoint_fixture_config(void) {
    return (bert_config){.arch = ARCH_BERT, .vocab_size = 40, .hidden_size = 16, .num_layers = 1,
                         .num_heads = 2, .intermediate_size = 32, .max_position = 16,
                         .type_vocab_size = 2, .layer_norm_eps = 1e-12f, .hidden_dropout = 0.1f,
                         .attention_dropout = 0.1f, .embedding_size = 16};
}

// checkpoint-<step> under dir (save_total_limit `keep`) from weights of init_seed and
// non-zero moments of the step, so that their restoration is visible; its state (3 P
// floats) into snapshot when not NULL.
static inline void checkpoint_fixture_save(const char *dir, bert_model *m, long step, long best,
                                           uint64_t init_seed, float *snapshot, int keep) {
    size_t P = bert_num_parameters(m);
    CHECK_INT(bert_init_random(m, init_seed), 0);
    float *buf = malloc(3 * P * sizeof(float));
    CHECK_INT(bert_get_state(m, buf, buf + P, buf + 2 * P), 0);
    for (size_t i = 0; i < P; i++) {
        buf[P + i] = 0.001f * (float)(i % 7) + (float)step;
        buf[2 * P + i] = 0.002f * (float)(i % 5) + (float)step;
    }
    CHECK_INT(bert_set_state(m, buf, buf + P, buf + 2 * P), 0);
    if (snapshot) memcpy(snapshot, buf, 3 * P * sizeof(float));
    free(buf);
    train_state st;
    train_state_init(&st, 7);
    st.step = step;
    st.epoch = (int)(step / 3);
    st.batch_in_epoch = 1;
    st.loss_sum = 0.1 * (double)step + 1e-17; // not representable in short decimal
    st.loss_count = step;
    st.best_eval_loss = 0.5;
    st.best_step = best;
    cJSON *point = cJSON_CreateObject();
    cJSON_AddNumberToObject(point, "step", (double)step);
    cJSON_AddItemToArray(st.curve, point);
    CHECK_INT(checkpoint_save(dir, m, &st, keep), 0);
    train_state_free(&st);
}
