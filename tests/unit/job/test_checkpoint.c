// Checkpoints of a real (small) model: save with save_total_limit keeping the best,
// resume restoring weights, optimizer moments and trainer state bit for bit, a corrupt
// or incomplete newest checkpoint skipped for the previous one (also one whose manifest
// agrees with a state.bin of another model or a safetensors header that does not
// parse), ranks resuming the newest step all their copies hold with the newer ones left
// for save_total_limit, and deletion refused outside the run's directory.
#include "check.h"
#include "checkpoint_fixture.h"
#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/job/checkpoint.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static void save_at(const char *dir, bert_model *m, long step, long best, uint64_t init_seed,
                    float *snapshot) {
    checkpoint_fixture_save(dir, m, step, best, init_seed, snapshot, 2);
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

// Rewrite a checkpoint's manifest for the files as they are now: a damage the CRC-32
// cannot see (a file written wrong before its checksum was taken).
static void resign(const char *ck) {
    static const char *const names[] = {"state.bin", "model.safetensors", "trainer_state.json"};
    cJSON *manifest = cJSON_CreateObject();
    cJSON *files = cJSON_AddObjectToObject(manifest, "files");
    for (int i = 0; i < 3; i++) {
        char path[600], hex[16];
        uint32_t crc;
        uint64_t size;
        snprintf(path, sizeof path, "%s/%s", ck, names[i]);
        CHECK_INT(files_crc32(path, &crc, &size), 0);
        snprintf(hex, sizeof hex, "%08x", crc);
        cJSON *f = cJSON_AddObjectToObject(files, names[i]);
        cJSON_AddNumberToObject(f, "size", (double)size);
        cJSON_AddStringToObject(f, "crc32", hex);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.json", ck);
    CHECK_INT(files_write_json(path, manifest), 0);
}

// The message of the newest "checkpoint_skipped" line since `since` (malloc'd, or NULL).
static char *last_skipped(unsigned long since) {
    char *lines[64], *found = NULL;
    size_t n = log_recent(lines, NULL, 64, since + 1);
    for (size_t i = 0; i < n; i++) {
        cJSON *line = cJSON_Parse(lines[i]);
        const cJSON *event = cJSON_GetObjectItem(line, "event");
        if (cJSON_IsString(event) && strcmp(event->valuestring, "checkpoint_skipped") == 0) {
            free(found);
            found = strdup(cJSON_GetObjectItem(line, "msg")->valuestring);
        }
        cJSON_Delete(line);
        free(lines[i]);
    }
    return found;
}

// A resume checks what it loads beyond the manifest: a checkpoint whose manifest agrees
// with its files is still skipped when state.bin holds another model's parameter count
// or model.safetensors' header does not parse.
static void test_validation_beyond_the_manifest(bert_model *m) {
    char dir[] = "/tmp/test_checkpoint_valid.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    save_at(dir, m, 4, -1, 1, NULL);
    save_at(dir, m, 8, -1, 2, NULL);
    char ck[600], path[700];
    snprintf(ck, sizeof ck, "%s/checkpoint-8", dir);

    // state.bin of a model with one parameter fewer, signed as if it were right.
    snprintf(path, sizeof path, "%s/state.bin", ck);
    size_t P = bert_num_parameters(m);
    uint64_t fewer = P - 1;
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    fseek(f, 8, SEEK_SET);
    fwrite(&fewer, sizeof fewer, 1, f);
    fclose(f);
    CHECK_INT(truncate(path, (off_t)(16 + 3 * fewer * sizeof(float))), 0);
    resign(ck);
    CHECK_INT(checkpoint_verify(ck), 0);
    train_state st;
    train_state_init(&st, 7);
    bool found = false;
    unsigned long before = log_last_seq();
    CHECK_INT(checkpoint_resume(dir, m, &st, &found), 0);
    CHECK(found);
    CHECK_INT(st.step, 4);
    char *why = last_skipped(before);
    CHECK(why && strstr(why, "checkpoint-8/state.bin") && strstr(why, "parameters"));
    free(why);

    // A sound state.bin again (written afresh: the same trainer state would be kept as it
    // is), and a safetensors header length beyond the file.
    CHECK_INT(files_remove_tree(ck, dir), 0);
    save_at(dir, m, 8, -1, 3, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", ck);
    f = fopen(path, "r+b");
    CHECK(f != NULL);
    uint64_t huge = 1ULL << 40;
    fwrite(&huge, sizeof huge, 1, f);
    fclose(f);
    resign(ck);
    CHECK_INT(checkpoint_verify(ck), 0);
    before = log_last_seq();
    CHECK_INT(checkpoint_resume(dir, m, &st, &found), 0);
    CHECK_INT(st.step, 4);
    why = last_skipped(before);
    CHECK(why && strstr(why, "checkpoint-8/model.safetensors"));
    free(why);
    train_state_free(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

// Two ranks, each with its own copy of the run's checkpoints (as two nodes that fetched
// an s3:// output), resuming together through resume.h with a barrier as the exchange.
typedef struct {
    pthread_barrier_t *barrier;
    long *slots;
    int rank;
    const char *dir;
    long step;
    bool found;
    int rc;
    float *state; // the model's parameters and moments after the resume
} agree_rank;

static int barrier_exchange(void *ctx, long mine, long *all) {
    agree_rank *r = ctx;
    r->slots[r->rank] = mine;
    pthread_barrier_wait(r->barrier);
    memcpy(all, r->slots, 2 * sizeof *all);
    pthread_barrier_wait(r->barrier);
    return 0;
}

static void *agree_rank_main(void *arg) {
    agree_rank *r = arg;
    backend *be = backend_cpu_create(1);
    bert_config cfg = checkpoint_fixture_config();
    bert_model *m;
    r->rc = bert_create(&m, be, &cfg, HEAD_TOKEN_CLASSIFICATION, 3, 2, 8);
    if (r->rc == 0) r->rc = bert_init_random(m, 99); // not any checkpoint's weights
    train_state st;
    train_state_init(&st, 7);
    resume_ops group = {.rank = r->rank, .world = 2, .ctx = r, .exchange = barrier_exchange};
    if (r->rc == 0) r->rc = checkpoint_resume_agreed(r->dir, m, &st, &group, 0, &r->found);
    r->step = st.step;
    size_t P = bert_num_parameters(m);
    r->state = malloc(3 * P * sizeof(float));
    if (r->rc == 0) r->rc = bert_get_state(m, r->state, r->state + P, r->state + 2 * P);
    train_state_free(&st);
    bert_destroy(m);
    be->destroy(be);
    return NULL;
}

// The "resume_agreed" line whose "newest" is `newest` since `since` (owned), or NULL.
static cJSON *agreed_line(unsigned long since, long newest) {
    char *lines[64];
    cJSON *found = NULL;
    size_t n = log_recent(lines, NULL, 64, since + 1);
    for (size_t i = 0; i < n; i++) {
        cJSON *line = cJSON_Parse(lines[i]);
        const cJSON *event = cJSON_GetObjectItem(line, "event");
        const cJSON *own = cJSON_GetObjectItem(line, "newest");
        if (!found && cJSON_IsString(event) && strcmp(event->valuestring, "resume_agreed") == 0 &&
            cJSON_IsNumber(own) && (long)own->valuedouble == newest)
            found = cJSON_Duplicate(line, 1);
        cJSON_Delete(line);
        free(lines[i]);
    }
    return found;
}

static void run_two_ranks(const char *dir0, const char *dir1, agree_rank *ranks) {
    pthread_barrier_t barrier;
    long slots[2];
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_t threads[2];
    const char *dirs[2] = {dir0, dir1};
    for (int r = 0; r < 2; r++) {
        ranks[r] = (agree_rank){.barrier = &barrier, .slots = slots, .rank = r, .dir = dirs[r]};
        pthread_create(&threads[r], NULL, agree_rank_main, &ranks[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(threads[r], NULL);
    pthread_barrier_destroy(&barrier);
}

// Rank 1's copy of the newest checkpoint is damaged: both ranks resume the previous one
// (rank 0 although its own newest is sound, saying why), and nothing newer is deleted.
// Rank 0 (the one that writes) then goes on: save_total_limit counts complete
// checkpoints only, leaves the newer one alone until the run has passed it, and keeps
// the best.
static void test_ranks_resume_the_newest_step_every_copy_holds(bert_model *m) {
    char dir0[] = "/tmp/test_checkpoint_rank0.XXXXXX", dir1[] = "/tmp/test_checkpoint_rank1.XXXXXX";
    CHECK(mkdtemp(dir0) != NULL && mkdtemp(dir1) != NULL);
    size_t P = bert_num_parameters(m);
    float *at6 = malloc(3 * P * sizeof(float));
    save_at(dir0, m, 6, 6, 1, at6);
    save_at(dir0, m, 9, 6, 2, NULL);
    char cmd[256], path[600];
    snprintf(cmd, sizeof cmd, "cp -r %s/. %s/", dir0, dir1);
    CHECK_INT(system(cmd), 0);
    snprintf(path, sizeof path, "%s/checkpoint-9/state.bin", dir1);
    CHECK_INT(truncate(path, 1000), 0);

    unsigned long before = log_last_seq();
    agree_rank ranks[2];
    run_two_ranks(dir0, dir1, ranks);
    for (int r = 0; r < 2; r++) {
        CHECK_INT(ranks[r].rc, 0);
        CHECK(ranks[r].found);
        CHECK_INT(ranks[r].step, 6);
        CHECK(memcmp(ranks[r].state, at6, 3 * P * sizeof(float)) == 0);
        free(ranks[r].state);
    }
    cJSON *line = agreed_line(before, 9); // rank 0's: its newest is 9
    CHECK(line != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(line, "level")), "warn");
    CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(line, "step")), 6);
    char *lacking = cJSON_PrintUnformatted(cJSON_GetObjectItem(line, "lacking"));
    CHECK_STR(lacking, "[{\"rank\":1,\"lacks\":9,\"holds\":6}]");
    free(lacking);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(line, "msg"));
    CHECK(msg && strstr(msg, "rank 1 holds no valid checkpoint-9"));
    cJSON_Delete(line);
    line = agreed_line(before, 6); // rank 1's: 6 is its newest valid one
    CHECK(line != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(line, "level")), "info");
    cJSON_Delete(line);
    CHECK(exists(dir0, 9) && exists(dir1, 9)); // the newer ones are left as they are
    snprintf(path, sizeof path, "%s/checkpoint-9", dir0);
    CHECK_INT(checkpoint_verify(path), 0);

    // Rank 0 trains on from 6: a stop at 7 keeps 9 (newer than the run has come) and 6.
    snprintf(path, sizeof path, "%s/checkpoint-8", dir0);
    CHECK_INT(files_mkdirs(path), 0); // a save killed before its manifest: never counted
    save_at(dir0, m, 7, 6, 3, NULL);
    CHECK(exists(dir0, 9) && exists(dir0, 7) && exists(dir0, 6) && exists(dir0, 8));
    // Past 9 the limit rotates as always: the newest two complete ones and the best.
    save_at(dir0, m, 10, 6, 4, NULL);
    CHECK(exists(dir0, 10) && exists(dir0, 9) && !exists(dir0, 7));
    CHECK(exists(dir0, 6)); // the best
    CHECK(exists(dir0, 8)); // incomplete: neither counted nor deleted
    save_at(dir0, m, 12, 10, 5, NULL);
    CHECK(exists(dir0, 12) && exists(dir0, 10) && !exists(dir0, 9) && !exists(dir0, 6));

    // No step is common to both copies: both start from scratch, deleting nothing.
    snprintf(cmd, sizeof cmd, "rm -rf %s/checkpoint-*", dir1);
    CHECK_INT(system(cmd), 0);
    save_at(dir1, m, 11, -1, 6, NULL);
    run_two_ranks(dir0, dir1, ranks);
    for (int r = 0; r < 2; r++) {
        CHECK_INT(ranks[r].rc, 0);
        CHECK(!ranks[r].found);
        CHECK_INT(ranks[r].step, 0);
        free(ranks[r].state);
    }
    CHECK(exists(dir0, 12) && exists(dir1, 11));
    free(at6);
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir0, dir1);
    CHECK_INT(system(cmd), 0);
}

int main(void) {
    char dir[] = "/tmp/test_checkpoint.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    backend *be = backend_cpu_create(1);
    bert_config cfg = checkpoint_fixture_config();
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
    test_validation_beyond_the_manifest(m);
    test_ranks_resume_the_newest_step_every_copy_holds(m);

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
