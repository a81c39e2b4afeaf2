// Checkpoints of a real (small) model: save with save_total_limit keeping the best,
// resume restoring weights, optimizer moments and trainer state bit for bit, a corrupt
// or incomplete newest checkpoint skipped for the previous one, and deletion refused
// outside the run's directory.
#include "check.h"
#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/job/checkpoint.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static bert_config small_config(void) {
    return (bert_config){.arch = ARCH_BERT, .vocab_size = 40, .hidden_size = 16, .num_layers = 1,
                         .num_heads = 2, .intermediate_size = 32, .max_position = 16,
                         .type_vocab_size = 2, .layer_norm_eps = 1e-12f, .hidden_dropout = 0.1f,
                         .attention_dropout = 0.1f, .embedding_size = 16};
}

static void save_at(const char *dir, bert_model *m, long step, long best, uint64_t init_seed,
                    float *snapshot) {
    size_t P = bert_num_parameters(m);
    CHECK_INT(bert_init_random(m, init_seed), 0);
    // Non-zero moments, so their restoration is visible.
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
    CHECK_INT(checkpoint_save(dir, m, &st, 2), 0);
    train_state_free(&st);
}

static bool exists(const char *dir, long step) {
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint-%ld", dir, step);
    return files_exists(path);
}

// Whether checkpoint-<step>/manifest.json is still the file `held` has open (held open,
// its inode cannot be reused by a rewritten manifest).
static bool same_manifest(const char *dir, long step, int held) {
    char path[512];
    struct stat now, before;
    snprintf(path, sizeof path, "%s/checkpoint-%ld/manifest.json", dir, step);
    return stat(path, &now) == 0 && fstat(held, &before) == 0 && now.st_ino == before.st_ino;
}

static int open_manifest(const char *dir, long step) {
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint-%ld/manifest.json", dir, step);
    return open(path, O_RDONLY);
}

// A second save of the same step (the end-of-epoch save, then a stop at the next epoch's
// first batch) keeps the verified checkpoint as it is: rewriting it in place would leave
// none if the process were killed half way. A different state, or a broken checkpoint
// of that step, is written again.
static void test_same_step_is_not_rewritten(bert_model *m) {
    char dir[] = "/tmp/test_checkpoint_again.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_INT(bert_init_random(m, 5), 0);
    train_state st;
    train_state_init(&st, 7);
    st.step = 20;
    st.epoch = 2;
    CHECK_INT(checkpoint_save(dir, m, &st, 2), 0);
    int held = open_manifest(dir, 20);
    CHECK(held >= 0);
    CHECK_INT(checkpoint_save(dir, m, &st, 2), 0);
    CHECK(same_manifest(dir, 20, held)); // a rewrite renames a new file over it
    st.loss_sum = 1.5; // another run's state at this step: not ours, written again
    CHECK_INT(checkpoint_save(dir, m, &st, 2), 0);
    CHECK(!same_manifest(dir, 20, held));
    close(held);

    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-20/manifest.json", dir);
    CHECK_INT(remove(path), 0); // incomplete: written again
    CHECK_INT(checkpoint_save(dir, m, &st, 2), 0);
    snprintf(path, sizeof path, "%s/checkpoint-20", dir);
    CHECK_INT(checkpoint_verify(path), 0);
    train_state_free(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

// save_total_limit counts complete checkpoints only. Two folders a killed save left
// (one without its manifest, one whose state.bin is shorter than its manifest says)
// must neither push complete ones out — counted, they left a single checkpoint a
// resume could use — nor be deleted (a folder without a manifest may be being written).
static void test_limit_counts_complete_checkpoints_only(bert_model *m) {
    char dir[] = "/tmp/test_checkpoint_limit.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    save_at(dir, m, 2, -1, 1, NULL);
    save_at(dir, m, 4, -1, 2, NULL);
    save_at(dir, m, 5, -1, 3, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-5/state.bin", dir);
    CHECK_INT(truncate(path, 64), 0); // its manifest says otherwise: incomplete
    snprintf(path, sizeof path, "%s/checkpoint-7", dir);
    CHECK_INT(files_mkdirs(path), 0); // a save killed before its manifest
    save_at(dir, m, 8, -1, 4, NULL); // keep 2
    CHECK(exists(dir, 8));  // the newest complete one
    CHECK(exists(dir, 4));  // the second complete one: incomplete ones did not count
    CHECK(exists(dir, 7) && exists(dir, 5)); // incomplete: left alone
    CHECK(!exists(dir, 2)); // beyond the limit
    snprintf(path, sizeof path, "%s/checkpoint-4", dir);
    CHECK_INT(checkpoint_verify(path), 0);
    // The best one outlives the limit however many complete ones follow.
    save_at(dir, m, 10, 4, 5, NULL);
    save_at(dir, m, 12, 4, 6, NULL);
    CHECK(exists(dir, 12) && exists(dir, 10) && exists(dir, 4) && !exists(dir, 8));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

static cJSON *fingerprint(double learning_rate, int world) {
    cJSON *f = cJSON_CreateObject();
    char lr[40];
    snprintf(lr, sizeof lr, "%a", learning_rate);
    cJSON_AddStringToObject(f, "learning_rate", lr);
    cJSON_AddNumberToObject(f, "world_size", world);
    cJSON_AddStringToObject(f, "train_data_hash", "00000000000000aa");
    return f;
}

static void save_fingerprinted(const char *dir, bert_model *m, long step, cJSON *f) {
    train_state st;
    train_state_init(&st, 7);
    st.step = step;
    st.fingerprint = f;
    CHECK_INT(checkpoint_save(dir, m, &st, 1), 0);
    train_state_free(&st);
}

// A run resumes only a checkpoint with its own fingerprint. Another run's (here: a
// changed learning rate and world size under the same directory) is skipped with the
// keys that differ logged, never deleted, and not counted by save_total_limit either.
static void test_fingerprint_decides_what_is_resumed(bert_model *m) {
    char dir[] = "/tmp/test_checkpoint_fingerprint.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_INT(bert_init_random(m, 11), 0);
    save_fingerprinted(dir, m, 3, fingerprint(1e-3, 1));
    save_fingerprinted(dir, m, 6, fingerprint(2e-3, 2)); // another run, keep 1

    train_state st;
    train_state_init(&st, 7);
    st.fingerprint = fingerprint(1e-3, 1);
    bool found = false;
    unsigned long before = log_last_seq();
    CHECK_INT(checkpoint_resume(dir, m, &st, &found), 0);
    CHECK(found);
    CHECK_INT(st.step, 3); // not 6, the newer one of the other run
    // The mismatch names exactly the keys that differ.
    char *lines[64];
    size_t n = log_recent(lines, NULL, 64, before + 1);
    bool named = false;
    for (size_t i = 0; i < n; i++) {
        cJSON *line = cJSON_Parse(lines[i]);
        const cJSON *event = cJSON_GetObjectItem(line, "event");
        if (cJSON_IsString(event) &&
            strcmp(event->valuestring, "checkpoint_fingerprint_mismatch") == 0) {
            char *keys = cJSON_PrintUnformatted(cJSON_GetObjectItem(line, "keys"));
            named = keys && strcmp(keys, "[\"learning_rate\",\"world_size\"]") == 0;
            free(keys);
        }
        cJSON_Delete(line);
        free(lines[i]);
    }
    CHECK(named);
    train_state_free(&st);
    CHECK(exists(dir, 6) && exists(dir, 3)); // each run's own: none deleted

    // Our run goes on (keep 1): the other run's checkpoint is neither counted nor deleted.
    save_fingerprinted(dir, m, 9, fingerprint(1e-3, 1));
    CHECK(exists(dir, 9) && exists(dir, 6) && !exists(dir, 3));
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-6", dir);
    CHECK_INT(checkpoint_verify(path), 0); // untouched

    // No checkpoint has the run's fingerprint: it starts afresh, deleting nothing.
    train_state_init(&st, 7);
    st.fingerprint = fingerprint(5e-3, 1);
    found = true;
    CHECK_INT(checkpoint_resume(dir, m, &st, &found), 0);
    CHECK(!found);
    CHECK(exists(dir, 9) && exists(dir, 6));
    train_state_free(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

int main(void) {
    char dir[] = "/tmp/test_checkpoint.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    backend *be = backend_cpu_create(1);
    bert_config cfg = small_config();
    bert_model *m, *r;
    CHECK_INT(bert_create(&m, be, &cfg, HEAD_TOKEN_CLASSIFICATION, 3, 2, 8), 0);
    CHECK_INT(bert_create(&r, be, &cfg, HEAD_TOKEN_CLASSIFICATION, 3, 2, 8), 0);
    size_t P = bert_num_parameters(m);
    float *at9 = malloc(3 * P * sizeof(float)), *at12 = malloc(3 * P * sizeof(float));
    float *got = malloc(3 * P * sizeof(float));

    save_at(dir, m, 3, 3, 1, NULL);
    save_at(dir, m, 6, 3, 2, NULL);
    save_at(dir, m, 9, 3, 3, at9);
    save_at(dir, m, 12, 3, 4, at12);
    // save_total_limit 2: the two newest, plus the best (3); 6 is gone.
    CHECK(exists(dir, 12) && exists(dir, 9) && exists(dir, 3));
    CHECK(!exists(dir, 6));

    train_state st;
    train_state_init(&st, 7);
    bool found;
    CHECK_INT(checkpoint_resume(dir, r, &st, &found), 0);
    CHECK(found);
    CHECK_INT(st.step, 12);
    CHECK_INT(st.epoch, 4);
    CHECK_INT(st.batch_in_epoch, 1);
    CHECK(st.loss_sum == 0.1 * 12.0 + 1e-17); // bit for bit
    CHECK_INT(st.best_step, 3);
    CHECK_INT(cJSON_GetArraySize(st.curve), 1);
    CHECK_INT(bert_get_state(r, got, got + P, got + 2 * P), 0);
    CHECK(memcmp(got, at12, 3 * P * sizeof(float)) == 0);

    // A flipped byte in the newest: skipped, the previous one restored.
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoint-12/state.bin", dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 100, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/checkpoint-12", dir);
    CHECK_INT(checkpoint_verify(path), EXIT_BAD_INPUT);
    CHECK(strstr(error_message(), "checksum mismatch") != NULL);
    CHECK_INT(checkpoint_resume(dir, r, &st, &found), 0);
    CHECK(found);
    CHECK_INT(st.step, 9);
    CHECK_INT(bert_get_state(r, got, got + P, got + 2 * P), 0);
    CHECK(memcmp(got, at9, 3 * P * sizeof(float)) == 0);

    // Without its manifest a checkpoint is incomplete: skipped too.
    snprintf(path, sizeof path, "%s/checkpoint-9/manifest.json", dir);
    CHECK_INT(remove(path), 0);
    CHECK_INT(checkpoint_resume(dir, r, &st, &found), 0);
    CHECK_INT(st.step, 3);
    // Another seed: the checkpoints are not this run's.
    train_state other;
    train_state_init(&other, 8);
    CHECK_INT(checkpoint_resume(dir, r, &other, &found), 0);
    CHECK(!found);
    train_state_free(&other);
    train_state_free(&st);

    // Weights only: the moments stay the model's own.
    CHECK_INT(checkpoint_load_weights(dir, 3, m), 0);
    CHECK_INT(bert_get_state(m, got, got + P, got + 2 * P), 0);
    CHECK(got[P] == at12[P]); // m's moments from its last save_at
    CHECK_INT(checkpoint_load_weights(dir, 6, m), EXIT_BAD_INPUT);

    // Deleting outside the prefix is refused; inside it works.
    snprintf(path, sizeof path, "%s/checkpoint-3", dir);
    CHECK_INT(files_remove_tree(path, "/tmp/test_checkpoint_elsewhere"), EXIT_INTERNAL);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/checkpoint-3", dir);
    CHECK_INT(files_remove_tree(dir, sub), EXIT_INTERNAL); // the parent of the prefix
    CHECK(files_exists(path));
    CHECK_INT(files_remove_tree(path, dir), 0);
    CHECK(!files_exists(path));

    test_same_step_is_not_rewritten(m);
    test_limit_counts_complete_checkpoints_only(m);
    test_fingerprint_decides_what_is_resumed(m);

    free(at9);
    free(at12);
    free(got);
    bert_destroy(m);
    bert_destroy(r);
    be->destroy(be);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
    return check_summary();
}
