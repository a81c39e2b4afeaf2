// Trial sampling from hyperspace.json, the ASHA rule, and the local source's restart:
// completed trials are skipped and rung records survive.
#include "check.h"
#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/job/trials.h"

#include <stdlib.h>
#include <unistd.h>

static void test_asha(void) {
    asha_config asha = {.min_epochs = 1, .eta = 2};
    double one[] = {1.0};
    CHECK(!asha_should_stop(&asha, 1, 5.0, one, 0)); // first at a rung continues
    CHECK(asha_should_stop(&asha, 1, 1.5, one, 1));  // worse than the median of [1.0]
    CHECK(!asha_should_stop(&asha, 1, 0.5, one, 1));
    CHECK(!asha_should_stop(&asha, 3, 9.0, one, 1)); // epoch 3 is no rung (1, 2, 4, ...)
    double four[] = {4.0, 1.0, 3.0, 2.0};           // median 2.5
    CHECK(asha_should_stop(&asha, 2, 2.6, four, 4));
    CHECK(!asha_should_stop(&asha, 2, 2.4, four, 4));
    asha_config three = {.min_epochs = 1, .eta = 3}; // 1/3 quantile of 1..4 = 2.0
    CHECK(asha_should_stop(&three, 3, 2.1, four, 4));
    CHECK(!asha_should_stop(&three, 3, 2.0, four, 4));
}

static void test_sample(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/hyperspace.json", dir);
    files_write_text(path, "{\"continuous\": {\"learning_rate\": [1e-4, 1e-2]},"
                           " \"choice\": {\"weight_decay\": [0.0, 0.01],"
                           " \"per_device_train_batch_size\": [8, 16, 32]}}");
    trial_spec base = {.learning_rate = 5e-5, .weight_decay = 0.5, .batch_size = 4};
    trial_spec a[64], b[64];
    CHECK_INT(trials_sample(path, 64, 7, 3, &base, a), 0);
    CHECK_INT(trials_sample(path, 64, 7, 3, &base, b), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    int seen_bs[3] = {0}, lr_ok = 1, wd_ok = 1;
    double lr_min = 1, lr_max = 0;
    for (int i = 0; i < 64; i++) {
        CHECK_INT(a[i].id, i);
        CHECK_INT(a[i].max_epochs, 3);
        lr_ok &= a[i].learning_rate >= 1e-4 && a[i].learning_rate <= 1e-2;
        wd_ok &= a[i].weight_decay == 0.0 || a[i].weight_decay == 0.01;
        seen_bs[a[i].batch_size == 8 ? 0 : a[i].batch_size == 16 ? 1 : 2]++;
        if (a[i].learning_rate < lr_min) lr_min = a[i].learning_rate;
        if (a[i].learning_rate > lr_max) lr_max = a[i].learning_rate;
    }
    CHECK(lr_ok);
    CHECK(wd_ok);
    CHECK(seen_bs[0] > 0 && seen_bs[1] > 0 && seen_bs[2] > 0);
    CHECK(lr_min < 3e-4 && lr_max > 3e-3); // spread over the log range
    CHECK(a[0].seed != a[1].seed);
    CHECK_INT(trials_sample(path, 64, 8, 3, &base, b), 0);
    CHECK(a[0].learning_rate != b[0].learning_rate);

    files_write_text(path, "{\"continuous\": {\"learning_rate\": [1e-2]}}");
    CHECK_INT(trials_sample(path, 2, 7, 3, &base, b), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "learning_rate") != NULL);

    // Found by fuzz_hyperspace: values the options refuse (and 1e999, which parses as
    // infinity and made the sampled rates inf or NaN) are bad input naming the key.
    const struct {
        const char *text, *key;
    } refused[] = {
        {"{\"choice\": {\"weight_decay\": [5.01]}}", "weight_decay"},
        {"{\"continuous\": {\"weight_decay\": [0, 1e999]}}", "weight_decay"},
        {"{\"continuous\": {\"learning_rate\": [1e-5, 1e999]}}", "learning_rate"},
        {"{\"continuous\": {\"learning_rate\": [1e-13, 1e-3]}}", "learning_rate"},
        {"{\"choice\": {\"per_device_train_batch_size\": [16, 8.5]}}", "batch_size"},
        {"{\"choice\": {\"per_device_train_batch_size\": [1e10]}}", "batch_size"},
        {"{\"choice\": {\"per_device_train_batch_size\": [0]}}", "batch_size"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        files_write_text(path, refused[i].text);
        error_clear();
        CHECK_INT(trials_sample(path, 2, 7, 3, &base, b), EXIT_BAD_INPUT);
        CHECK(strstr(error_message(), refused[i].key) != NULL);
    }
    files_write_text(path, "{\"continuous\": {\"learning_rate\": [1, 1], \"weight_decay\": [1, 1]},"
                           " \"choice\": {\"per_device_train_batch_size\": [65536]}}");
    CHECK_INT(trials_sample(path, 2, 7, 3, &base, b), 0); // the bounds themselves are fine
    CHECK(b[0].learning_rate == 1 && b[0].weight_decay == 1 && b[0].batch_size == 65536);
    // A learning rate too high to train is a trial that diverges, not a bad file.
    files_write_text(path, "{\"continuous\": {\"learning_rate\": [50, 100]}}");
    CHECK_INT(trials_sample(path, 2, 7, 3, &base, b), 0);
    CHECK(b[0].learning_rate >= 50 && b[0].learning_rate <= 100);
}

static void test_local_restart(const char *dir) {
    char state[256];
    snprintf(state, sizeof state, "%s/search.json", dir);
    trial_spec specs[3] = {{.id = 0}, {.id = 1}, {.id = 2}};
    asha_config asha = {.min_epochs = 1, .eta = 2};
    trial_source *s;
    CHECK_INT(trials_local_create(&s, specs, 3, &asha, state), 0);
    trial_spec t;
    bool have, stop;
    CHECK_INT(s->next(s, &t, &have), 0);
    CHECK(have);
    CHECK_INT(t.id, 0);
    CHECK_INT(s->report(s, 0, 1, 1.0, &stop), 0);
    CHECK(!stop);
    trial_result r0 = {.id = 0, .epochs_run = 1, .best_eval_loss = 1.0, .best_eval_f1 = 0.5};
    CHECK_INT(s->complete(s, &r0), 0);
    CHECK_INT(s->next(s, &t, &have), 0);
    CHECK_INT(t.id, 1);
    CHECK_INT(s->report(s, 1, 1, 2.0, &stop), 0);
    CHECK(stop); // worse than trial 0 at rung 1
    s->destroy(s);

    // Restart: trial 0 is done; trial 1 runs again and meets the same decision.
    CHECK_INT(trials_local_create(&s, specs, 3, &asha, state), 0);
    CHECK_INT(s->next(s, &t, &have), 0);
    CHECK_INT(t.id, 1);
    CHECK_INT(s->report(s, 1, 1, 2.0, &stop), 0);
    CHECK(stop);
    trial_result r1 = {.id = 1, .epochs_run = 1, .best_eval_loss = 2.0, .halted = true};
    CHECK_INT(s->complete(s, &r1), 0);
    CHECK_INT(s->next(s, &t, &have), 0);
    CHECK_INT(t.id, 2);
    trial_result r2 = {.id = 2, .epochs_run = 1, .best_eval_loss = 0.7};
    CHECK_INT(s->complete(s, &r2), 0);
    CHECK_INT(s->next(s, &t, &have), 0);
    CHECK(!have);
    trial_result all[3];
    CHECK_INT(s->results(s, all, 3), 3);
    CHECK_INT(all[trials_best(all, 3)].id, 2);
    s->destroy(s);
}

int main(void) {
    char dir[] = "/tmp/test_trials.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    test_asha();
    test_sample(dir);
    test_local_restart(dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
