// The search space by starting point (runner/job/space.h) and the majority-class check
// (runner/job/learned.h): pretrained weights get the fine-tuning range, random ones a
// range that shrinks with the shape; a user's file wins, a file tuned for another run is
// replaced; a model no better than the tag frequencies is caught with a named cause.
#include "check.h"
#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/job/learned.h"
#include "runner/job/space.h"
#include "runner/job/trials.h"

#include <stdlib.h>
#include <unistd.h>

static const cJSON *lr_range(const cJSON *space) {
    return cJSON_GetObjectItem(cJSON_GetObjectItem(space, "continuous"), "learning_rate");
}

static double lr_at(const cJSON *space, int i) {
    return cJSON_GetArrayItem(lr_range(space), i)->valuedouble;
}

static void test_defaults(void) {
    space_defaults d;
    space_start tiny = {.pretrained = false, .shape = "bert-tiny", .hidden_size = 128, .num_layers = 2};
    space_defaults_for(&tiny, &d);
    // bert-tiny keeps the range data/demo/hyperspace.json was tuned with, and no warm-up.
    CHECK_CLOSE(d.lr_low, 5e-4, 1e-12, 0);
    CHECK_CLOSE(d.lr_high, 5e-3, 1e-12, 0);
    CHECK_CLOSE(d.warmup_ratio, 0, 0, 0);
    space_defaults mini, small, base;
    space_defaults_for(&(space_start){false, "bert-mini", 256, 4}, &mini);
    space_defaults_for(&(space_start){false, "bert-small", 512, 4}, &small);
    space_defaults_for(&(space_start){false, "bert", 768, 12}, &base);
    // Wider and deeper: a smaller peak rate, and a warm-up.
    CHECK(mini.lr_high < d.lr_high && small.lr_high < mini.lr_high && base.lr_high < small.lr_high);
    CHECK(mini.warmup_ratio > 0 && small.warmup_ratio > 0);
    // Measured on the demo data (2 epochs): bert-small learns at 2e-4 to 1e-3, and not at
    // the 2.9e-3 the demo space gave it.
    CHECK(small.lr_high <= 1e-3 && small.lr_low >= 5e-5);
    // Pretrained weights of bert-base's width or wider: the BERT paper's fine-tuning
    // range; narrower ones (MiniLM-L6, C384) a range 768 / width larger, at most 4 times.
    space_defaults pre, large, minilm, narrow;
    space_defaults_for(&(space_start){true, "pretrained", 768, 12}, &pre);
    CHECK_CLOSE(pre.lr_low, 2e-5, 1e-15, 0);
    CHECK_CLOSE(pre.lr_high, 5e-5, 1e-15, 0);
    space_defaults_for(&(space_start){true, "pretrained", 1024, 24}, &large);
    CHECK_CLOSE(large.lr_low, 2e-5, 1e-15, 0);
    CHECK_CLOSE(large.lr_high, 5e-5, 1e-15, 0);
    space_defaults_for(&(space_start){true, "pretrained", 384, 6}, &minilm);
    CHECK_CLOSE(minilm.lr_low, 4e-5, 1e-15, 0);
    CHECK_CLOSE(minilm.lr_high, 1e-4, 1e-15, 0);
    CHECK_CLOSE(minilm.warmup_ratio, 0.1, 1e-15, 0);
    space_defaults_for(&(space_start){true, "pretrained", 128, 2}, &narrow);
    CHECK_CLOSE(narrow.lr_low, 8e-5, 1e-15, 0);
    CHECK_CLOSE(narrow.lr_high, 2e-4, 1e-15, 0);
    CHECK_CLOSE(pre.weight_decay_low, 0.01, 1e-15, 0);
    CHECK_CLOSE(pre.weight_decay_high, 0.01, 1e-15, 0);
    CHECK_CLOSE(pre.warmup_ratio, 0.1, 1e-15, 0);
    CHECK_CLOSE(space_default_learning_rate(&pre), sqrt(2e-5 * 5e-5), 1e-15, 0);

    // The built-in space samples inside its range, weight decay fixed at 0.01.
    cJSON *json = space_defaults_json(&pre);
    trial_spec base_spec = {.learning_rate = 1, .weight_decay = 1, .batch_size = 4};
    trial_spec t[32];
    CHECK_INT(trials_sample_space(json, "built-in", 32, 5, 2, &base_spec, t), 0);
    for (int i = 0; i < 32; i++) {
        CHECK(t[i].learning_rate >= 2e-5 && t[i].learning_rate <= 5e-5);
        CHECK_CLOSE(t[i].weight_decay, 0.01, 1e-15, 0);
        CHECK(t[i].batch_size == 16 || t[i].batch_size == 32);
    }
    cJSON_Delete(json);
}

static void test_choose(const char *dir) {
    char demo[256], plain[256], bad[256];
    snprintf(demo, sizeof demo, "%s/demo.json", dir);
    snprintf(plain, sizeof plain, "%s/plain.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    files_write_text(demo, "{\"tuned_for\": {\"start\": \"random\", \"shape\": \"bert-tiny\"},"
                           " \"continuous\": {\"learning_rate\": [5e-4, 5e-3]}}");
    files_write_text(plain, "{\"continuous\": {\"learning_rate\": [1e-1, 2e-1]}}");
    files_write_text(bad, "{\"tuned_for\": {\"start\": \"warm\"}}");
    space_start tiny = {false, "bert-tiny", 128, 2}, small = {false, "bert-small", 512, 4};
    space_start pre = {true, "pretrained", 384, 6};
    space_choice c;

    // The file beside the data applies to the run it was tuned for...
    CHECK_INT(space_choose(&tiny, demo, false, &c), 0);
    CHECK(!c.builtin && strcmp(c.origin, demo) == 0);
    CHECK_CLOSE(lr_at(c.space, 1), 5e-3, 1e-12, 0);
    space_choice_free(&c);
    // ... and to no other: bert-small and pretrained weights get their defaults, and the
    // reason names the file and both runs.
    CHECK_INT(space_choose(&small, demo, false, &c), 0);
    CHECK(c.builtin && lr_at(c.space, 1) < 5e-3);
    CHECK(strstr(c.why, demo) && strstr(c.why, "bert-tiny") && strstr(c.why, "bert-small"));
    space_choice_free(&c);
    CHECK_INT(space_choose(&pre, demo, false, &c), 0);
    CHECK(c.builtin);
    CHECK_CLOSE(lr_at(c.space, 0), 4e-5, 1e-15, 0); // C384: twice the BERT paper's range
    CHECK(strstr(c.why, "pretrained weights") != NULL);
    space_choice_free(&c);
    // A file the user names wins, even tuned for another run.
    CHECK_INT(space_choose(&pre, demo, true, &c), 0);
    CHECK(!c.builtin);
    CHECK_CLOSE(lr_at(c.space, 1), 5e-3, 1e-12, 0);
    CHECK(strstr(c.why, "--hyperspace") != NULL);
    space_choice_free(&c);
    // A file without tuned_for beside the data is the user's: used as it is.
    CHECK_INT(space_choose(&pre, plain, false, &c), 0);
    CHECK(!c.builtin);
    CHECK_CLOSE(lr_at(c.space, 0), 0.1, 1e-12, 0);
    space_choice_free(&c);
    // None: the defaults.
    CHECK_INT(space_choose(&tiny, NULL, false, &c), 0);
    CHECK(c.builtin && strstr(c.why, "bert-tiny from random weights"));
    space_choice_free(&c);
    // A malformed tuned_for is bad input naming the file and the field.
    error_clear();
    CHECK_INT(space_choose(&tiny, bad, false, &c), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), bad) && strstr(error_message(), "tuned_for.start"));
    CHECK(c.space == NULL);
    // Text after the object is refused, as in a --config file; white space is not.
    const char trailing[] = "{\"continuous\": {}}\n{\"choice\": {}}";
    CHECK_INT(space_choose_text(&tiny, "t.json", trailing, sizeof trailing - 1, true, &c),
              EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "t.json") && c.space == NULL);
    const char spaced[] = "{\"continuous\": {}}\r\n\t ";
    CHECK_INT(space_choose_text(&tiny, "t.json", spaced, sizeof spaced - 1, true, &c), 0);
    CHECK(c.space != NULL);
    space_choice_free(&c);
}

// An encoded set of one sentence whose labelled tokens carry `tags`.
static encoded_set labelled(int32_t *labels, int n) {
    return (encoded_set){.n = 1, .T = n, .labels = labels};
}

static void test_learned(void) {
    // Training tags: 6 O (0), 2 B-x (1); validation: 3 O, 1 B-x, one ignored position.
    int32_t train_tags[] = {0, 0, 0, 0, 0, 0, 1, 1, -100};
    int32_t valid_tags[] = {0, 1, -100, 0, 0};
    encoded_set train = labelled(train_tags, 9), valid = labelled(valid_tags, 5);
    // Add-one smoothed frequencies over 3 labels: O 7/11, B 3/11, the third 1/11.
    double expected = -(3 * log(7.0 / 11) + log(3.0 / 11)) / 4;
    CHECK_CLOSE(learned_baseline_loss(&train, &valid, 3), expected, 1e-12, 0);
    int32_t none[] = {-100, -100};
    encoded_set empty = labelled(none, 2);
    CHECK(isnan(learned_baseline_loss(&train, &empty, 3)));

    char reason[1024];
    learned_evidence good = {.best_f1 = 0.9, .best_eval_loss = 0.05, .baseline_loss = 0.8,
                             .learning_rate = 1e-3, .lr_low = 5e-4, .lr_high = 5e-3,
                             .start = "bert-tiny from random weights", .n_train = 1600};
    CHECK(learned_something(&good, reason, sizeof reason));
    CHECK_STR(reason, "");
    // F1 0: learned nothing; the rate lies in range, so the data and labels are blamed.
    learned_evidence zero = good;
    zero.best_f1 = 0;
    CHECK(!learned_something(&zero, reason, sizeof reason));
    CHECK(strstr(reason, "F1 0") && strstr(reason, "data") && strstr(reason, "labels"));
    // A loss no better than the tag frequencies, F1 above 0: learned nothing either.
    learned_evidence flat = good;
    flat.best_eval_loss = 0.8;
    CHECK(!learned_something(&flat, reason, sizeof reason));
    CHECK(strstr(reason, "not below") != NULL);
    // A rate far above the range: the learning rate is named, with the range.
    learned_evidence high = zero;
    high.learning_rate = 3e-2;
    CHECK(!learned_something(&high, reason, sizeof reason));
    CHECK(strstr(reason, "learning rate 0.03 is above") && strstr(reason, "lower it"));
    learned_evidence low = zero;
    low.learning_rate = 1e-9;
    CHECK(!learned_something(&low, reason, sizeof reason));
    CHECK(strstr(reason, "is below") && strstr(reason, "raise it"));
    // No baseline (no labelled validation token): F1 alone decides.
    learned_evidence unknown = good;
    unknown.baseline_loss = NAN;
    CHECK(learned_something(&unknown, reason, sizeof reason));
}

int main(void) {
    char dir[] = "/tmp/test_space_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_defaults();
    test_choose(dir);
    test_learned();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
