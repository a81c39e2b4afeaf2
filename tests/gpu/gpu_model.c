// The whole model on both backends (runner/model/bert.h): the same weights, batch and
// dropout seed; one training step compared tensor by tensor, then 20 steps of loss.
// Tolerances: loss and gradient norm 2e-2 relative per step (bf16 activations through
// every layer), all gradients together 5e-2 relative norm, parameters after one AdamW
// step 1e-3 relative norm (the update is lr-sized next to the weights), the update
// itself 0.25 (sign flips of tiny gradients).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "tests/gpu/gpu_test.h"

#ifndef GPU_TEST_MODEL

void gt_model_tests(void) {
    printf("model: skipped: runner/model/bert.c is not part of this build\n");
}

#else

#include "runner/error.h"
#include "runner/model/bert.h"

enum { MODEL_B = 4, MODEL_T = 32, MODEL_LABELS = 9, MODEL_STEPS = 20 };

static int model_ok(int rc, const char *what) {
    if (rc) printf("  %s failed (%d): %s\n", what, rc, error_message());
    CHECK_INT(rc, 0);
    return rc == 0;
}

static double rel_diff(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-12); }

void gt_model_tests(void) {
    printf("model: bert-tiny, token classification, batch %dx%d, dropout on\n", MODEL_B, MODEL_T);
    bert_config cfg;
    if (!model_ok(bert_config_preset("bert-tiny", &cfg), "bert_config_preset")) return;
    bert_model *mc = NULL, *mg = NULL;
    if (!model_ok(bert_create(&mc, gt_cpu, &cfg, HEAD_TOKEN_CLASSIFICATION, MODEL_LABELS, MODEL_B,
                              MODEL_T),
                  "bert_create cpu"))
        return;
    if (!model_ok(bert_create(&mg, gt_gpu, &cfg, HEAD_TOKEN_CLASSIFICATION, MODEL_LABELS, MODEL_B,
                              MODEL_T),
                  "bert_create cuda")) {
        bert_destroy(mc);
        return;
    }
    size_t np = bert_num_parameters(mc);
    float *params = malloc(np * sizeof(float)), *m1 = calloc(np, sizeof(float)),
          *v1 = calloc(np, sizeof(float)), *pc = malloc(np * sizeof(float)),
          *pg = malloc(np * sizeof(float));
    model_ok(bert_init_random(mc, 1234), "bert_init_random");
    model_ok(bert_get_state(mc, params, m1, v1), "bert_get_state");
    model_ok(bert_set_state(mg, params, m1, v1), "bert_set_state");

    int32_t ids[MODEL_B * MODEL_T], types[MODEL_B * MODEL_T], mask[MODEL_B * MODEL_T],
        labels[MODEL_B * MODEL_T];
    for (int b = 0; b < MODEL_B; b++) {
        int len = b == 0 ? MODEL_T : gt_randint(MODEL_T / 2, MODEL_T);
        for (int t = 0; t < MODEL_T; t++) {
            int i = b * MODEL_T + t;
            ids[i] = t < len ? gt_randint(1, cfg.vocab_size) : 0;
            types[i] = t < len / 2 ? 0 : 1;
            mask[i] = t < len;
            labels[i] = (t < len && t > 0) ? gt_randint(0, MODEL_LABELS) : -100;
        }
    }
    bert_batch batch = {MODEL_B, MODEL_T, ids, types, mask, labels};

    // dropout changes every step, so "learnt" compares the mean of the first and last 3
    float loss_c = 0, loss_g = 0, gn_c = 0, gn_g = 0;
    double first_c = 0, first_g = 0, last_c = 0, last_g = 0;
    for (int step = 1; step <= MODEL_STEPS; step++) {
        bert_zero_grad(mc);
        bert_zero_grad(mg);
        if (!model_ok(bert_forward(mc, &batch, true, 77, (uint64_t)step, &loss_c), "forward cpu") ||
            !model_ok(bert_forward(mg, &batch, true, 77, (uint64_t)step, &loss_g), "forward cuda") ||
            !model_ok(bert_backward(mc), "backward cpu") ||
            !model_ok(bert_backward(mg), "backward cuda"))
            break;
        if (step <= 3) {
            first_c += loss_c / 3.0;
            first_g += loss_g / 3.0;
        }
        if (step > MODEL_STEPS - 3) {
            last_c += loss_c / 3.0;
            last_g += loss_g / 3.0;
        }
        if (step == 1) {
            model_ok(bert_get_grads(mc, pc), "bert_get_grads cpu");
            model_ok(bert_get_grads(mg, pg), "bert_get_grads cuda");
            gt_compare("step 1: all gradients", pc, pg, np, 5e-2);
            for (int i = 0; i < bert_num_tensors(mc); i++) {
                size_t offset;
                int shape[2];
                const char *name = bert_tensor_info(mc, i, &offset, shape);
                size_t n = (size_t)shape[0] * (shape[1] ? (size_t)shape[1] : 1);
                double num = 0, den = 0;
                for (size_t k = 0; k < n; k++) {
                    double d = (double)pg[offset + k] - pc[offset + k];
                    num += d * d;
                    den += (double)pc[offset + k] * pc[offset + k];
                }
                printf("    grad %-56s rel %.2e\n", name, den > 0 ? sqrt(num / den) : sqrt(num));
            }
        }
        if (!model_ok(bert_step(mc, 1e-4f, 0.01f, 1.0f, step, &gn_c), "step cpu") ||
            !model_ok(bert_step(mg, 1e-4f, 0.01f, 1.0f, step, &gn_g), "step cuda"))
            break;
        if (step == 1) {
            printf("  step 1: grad norm cpu %.6f cuda %.6f\n", (double)gn_c, (double)gn_g);
            CHECK(rel_diff(gn_g, gn_c) <= 2e-2);
            model_ok(bert_get_state(mc, pc, m1, v1), "bert_get_state cpu");
            model_ok(bert_get_state(mg, pg, m1, v1), "bert_get_state cuda");
            gt_compare("step 1: parameters after AdamW", pc, pg, np, 1e-3);
            // The update itself (AdamW's first step is about lr * sign(g)): where bf16
            // noise flips the sign of a tiny gradient the two differ by 2 lr, so allow
            // 0.25 (such flips in ~1.5 % of the elements); no update at all gives 1.
            for (size_t k = 0; k < np; k++) {
                pc[k] -= params[k];
                pg[k] -= params[k];
            }
            gt_compare("step 1: AdamW update (p1 - p0)", pc, pg, np, 0.25);
        }
        double rel = rel_diff(loss_g, loss_c);
        printf("  step %2d: loss cpu %.6f cuda %.6f rel %.2e %s\n", step, (double)loss_c,
               (double)loss_g, rel, rel <= 2e-2 ? "ok" : "FAIL");
        CHECK(rel <= 2e-2);
    }
    // the same batch 20 times: both must have learnt it a little
    printf("  mean loss of steps 1-3 -> %d-%d: cpu %.4f -> %.4f, cuda %.4f -> %.4f\n",
           MODEL_STEPS - 2, MODEL_STEPS, first_c, last_c, first_g, last_g);
    CHECK(last_c < first_c);
    CHECK(last_g < first_g);
    free(params);
    free(m1);
    free(v1);
    free(pc);
    free(pg);
    bert_destroy(mg);
    bert_destroy(mc);
}

#endif
