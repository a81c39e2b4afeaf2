// Rank 0's newest checkpoint copied to the ranks that hold none of it
// (checkpoint_resume_agreed with a broadcast, runner/job/checkpoint_replica.c). Three
// ranks are threads of a real (small) model, each with its own folder (nodes with
// node-local outputs, where only rank 0 wrote checkpoints) or sharing one (workers of a
// node); the exchange and the broadcast go through a barrier as the group's collective
// would. Checked: every rank resumes rank 0's step with its weights and moments bit for
// bit, the copies verify on their own, a damaged copy is replaced and a valid one (rank
// 0's own folder, or a folder another receiver just wrote) never rewritten, one byte
// flipped in transit is caught by the copy's checksums (all then keep the agreement),
// damaged copies alone keep the agreement's older step, and save_total_limit rotates
// what a receiving folder held before.
#include "check.h"
#include "checkpoint_fixture.h"
#include "kernels/backend.h"
#include "runner/error.h"
#include "runner/job/checkpoint.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { WORLD = 3 };

static void save_at(const char *dir, bert_model *m, long step, long best, uint64_t init_seed,
                    float *snapshot) {
    checkpoint_fixture_save(dir, m, step, best, init_seed, snapshot, 0);
}

typedef struct group group;

typedef struct {
    group *g;
    int rank;
    const char *dir;
    bool found;
    long step;
    int rc;
    float *state; // parameters and moments after the resume (3 P)
    bool flipped;
} rank_side;

struct group {
    pthread_barrier_t barrier;
    long slots[WORLD];
    const void *root_bytes;
    int corrupt_rank; // its copy gets one byte flipped in transit (-1: none)
    bool broadcasts;  // false: a group without a broadcast (nothing is copied)
    int keep;
    rank_side ranks[WORLD];
};

static int exchange(void *ctx, long mine, long *all) {
    rank_side *r = ctx;
    r->g->slots[r->rank] = mine;
    pthread_barrier_wait(&r->g->barrier);
    memcpy(all, r->g->slots, sizeof r->g->slots);
    pthread_barrier_wait(&r->g->barrier);
    return 0;
}

static int broadcast(void *ctx, void *bytes, size_t n, int root) {
    rank_side *r = ctx;
    if (r->rank == root) r->g->root_bytes = bytes;
    pthread_barrier_wait(&r->g->barrier);
    if (r->rank != root) {
        memcpy(bytes, r->g->root_bytes, n);
        if (r->rank == r->g->corrupt_rank && n > 1000 && !r->flipped) { // state.bin's bytes
            ((unsigned char *)bytes)[n / 2] ^= 0x10;
            r->flipped = true;
        }
    }
    pthread_barrier_wait(&r->g->barrier);
    return 0;
}

static void *rank_main(void *arg) {
    rank_side *r = arg;
    backend *be = backend_cpu_create(1);
    bert_config cfg = checkpoint_fixture_config();
    bert_model *m;
    r->rc = bert_create(&m, be, &cfg, HEAD_TOKEN_CLASSIFICATION, 3, 2, 8);
    if (r->rc == 0) r->rc = bert_init_random(m, 99); // not any checkpoint's weights
    train_state st;
    train_state_init(&st, 7);
    resume_ops ops = {.rank = r->rank, .world = WORLD, .ctx = r, .exchange = exchange,
                      .broadcast = r->g->broadcasts ? broadcast : NULL};
    if (r->rc == 0) r->rc = checkpoint_resume_agreed(r->dir, m, &st, &ops, r->g->keep, &r->found);
    r->step = st.step;
    size_t P = bert_num_parameters(m);
    r->state = malloc(3 * P * sizeof(float));
    if (r->rc == 0) r->rc = bert_get_state(m, r->state, r->state + P, r->state + 2 * P);
    train_state_free(&st);
    bert_destroy(m);
    be->destroy(be);
    return NULL;
}

static void run(group *g, const char *const dirs[WORLD], int keep, int corrupt_rank) {
    memset(g, 0, sizeof *g);
    g->corrupt_rank = corrupt_rank;
    g->broadcasts = true;
    g->keep = keep;
    pthread_barrier_init(&g->barrier, NULL, WORLD);
    pthread_t threads[WORLD];
    for (int r = 0; r < WORLD; r++) {
        g->ranks[r] = (rank_side){.g = g, .rank = r, .dir = dirs[r]};
        pthread_create(&threads[r], NULL, rank_main, &g->ranks[r]);
    }
    for (int r = 0; r < WORLD; r++) pthread_join(threads[r], NULL);
    pthread_barrier_destroy(&g->barrier);
}

// Every rank resumed `step` with the state `want` (NULL: none resumed, step 0).
static void check_resumed(group *g, long step, const float *want, size_t P) {
    for (int r = 0; r < WORLD; r++) {
        CHECK_INT(g->ranks[r].rc, 0);
        CHECK(g->ranks[r].found == (want != NULL));
        CHECK_INT(g->ranks[r].step, want ? step : 0);
        if (want) CHECK(memcmp(g->ranks[r].state, want, 3 * P * sizeof(float)) == 0);
        free(g->ranks[r].state);
    }
}

// The lines of `event` logged since `since` (owned, parsed), at most cap.
static int events(unsigned long since, const char *event, cJSON **out, int cap) {
    char *lines[256];
    size_t n = log_recent(lines, NULL, 256, since + 1);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *line = cJSON_Parse(lines[i]);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(line, "event"));
        if (name && strcmp(name, event) == 0 && found < cap) out[found++] = line;
        else cJSON_Delete(line);
        free(lines[i]);
    }
    return found;
}

static void free_events(cJSON **lines, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
}

static bool exists(const char *dir, long step) {
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-%ld", dir, step);
    return files_exists(path);
}

static int verify(const char *dir, long step) {
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-%ld", dir, step);
    int rc = checkpoint_verify(path);
    error_clear();
    return rc;
}

// Entries of dir whose name holds `part` (a staging folder left behind).
static int entries_with(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

static long bytes_of(const char *dir, long step) {
    const char *names[] = {"state.bin", "model.safetensors", "trainer_state.json", "manifest.json"};
    long total = 0;
    for (int i = 0; i < 4; i++) {
        char path[600];
        struct stat sb;
        snprintf(path, sizeof path, "%s/checkpoint-%ld/%s", dir, step, names[i]);
        if (stat(path, &sb) == 0) total += (long)sb.st_size;
    }
    return total;
}

static struct stat stat_of(const char *dir, long step, const char *name) {
    char path[600];
    struct stat sb = {0};
    snprintf(path, sizeof path, "%s/checkpoint-%ld/%s", dir, step, name);
    stat(path, &sb);
    return sb;
}

__attribute__((format(printf, 1, 2))) static void shell(const char *fmt, ...) {
    char cmd[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    CHECK_INT(system(cmd), 0);
}

static char *tmpdir(char *name) {
    char *d = mkdtemp(name);
    CHECK(d != NULL);
    return d;
}

// Node-local outputs: rank 0 holds 3, 6, 9; rank 1 nothing; rank 2 a damaged 9 and an
// older copy of 3. Without the copy the agreement is "from scratch"; with it all three
// resume 9, rank 2's damaged copy is replaced, its 3 rotated away (keep 1; best 6), and
// rank 0's files are read, never rewritten.
static void test_node_local_outputs_resume_rank_0s_newest(bert_model *m) {
    char n0[] = "/tmp/test_replica0.XXXXXX", n1[] = "/tmp/test_replica1.XXXXXX",
         n2[] = "/tmp/test_replica2.XXXXXX";
    const char *const dirs[WORLD] = {tmpdir(n0), tmpdir(n1), tmpdir(n2)};
    size_t P = bert_num_parameters(m);
    float *at9 = malloc(3 * P * sizeof(float));
    save_at(dirs[0], m, 3, 3, 1, NULL);
    save_at(dirs[0], m, 6, 6, 2, NULL);
    save_at(dirs[0], m, 9, 6, 3, at9);
    shell("cp -r %s/checkpoint-9 %s/", dirs[0], dirs[2]);
    shell("cp -r %s/checkpoint-3 %s/", dirs[0], dirs[2]);
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-9/state.bin", dirs[2]);
    CHECK_INT(truncate(path, 1000), 0);
    struct stat before0 = stat_of(dirs[0], 9, "state.bin");
    long sent = bytes_of(dirs[0], 9);

    unsigned long since = log_last_seq();
    group g;
    run(&g, dirs, 1, -1);
    check_resumed(&g, 9, at9, P);
    CHECK_INT(verify(dirs[1], 9), 0);
    CHECK_INT(verify(dirs[2], 9), 0);
    CHECK(!exists(dirs[2], 3)); // rotated: keep 1, and 3 is not the best (6)
    CHECK(exists(dirs[0], 3) && exists(dirs[0], 6)); // rank 0's folder: read only
    struct stat after0 = stat_of(dirs[0], 9, "state.bin");
    CHECK(before0.st_ino == after0.st_ino && before0.st_mtime == after0.st_mtime);
    for (int r = 0; r < WORLD; r++) CHECK_INT(entries_with(dirs[r], ".replica"), 0);

    cJSON *lines[8];
    int n = events(since, "checkpoint_replicated", lines, 8);
    CHECK_INT(n, 2); // ranks 1 and 2
    for (int i = 0; i < n; i++) {
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(lines[i], "step")), 9);
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(lines[i], "bytes")), sent);
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(lines[i], "seconds")));
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(lines[i], "written")));
    }
    free_events(lines, n);
    n = events(since, "resume_agreed", lines, 8);
    CHECK_INT(n, WORLD);
    for (int i = 0; i < n; i++) {
        CHECK_INT((long)cJSON_GetNumberValue(cJSON_GetObjectItem(lines[i], "step")), 9);
        char *to = cJSON_PrintUnformatted(cJSON_GetObjectItem(lines[i], "replicated_to"));
        CHECK_STR(to, "[1,2]");
        free(to);
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItem(lines[i], "msg"));
        CHECK(msg && strstr(msg, "copied from rank 0 to ranks 1, 2"));
    }
    free_events(lines, n);
    free(at9);
    shell("rm -rf %s %s %s", dirs[0], dirs[1], dirs[2]);
}

// Shared folders: rank 1 reads rank 0's (it holds the step valid: it takes no copy and
// writes nothing); then ranks 1 and 2 share one empty folder: one of them writes the
// copy, the other finds it in place and does not write it again.
static void test_shared_folders_are_written_once(bert_model *m) {
    char n0[] = "/tmp/test_replica0.XXXXXX", nb[] = "/tmp/test_replicab.XXXXXX";
    const char *d0 = tmpdir(n0), *db = tmpdir(nb);
    size_t P = bert_num_parameters(m);
    float *at5 = malloc(3 * P * sizeof(float));
    save_at(d0, m, 5, 5, 4, at5);
    struct stat before = stat_of(d0, 5, "model.safetensors");

    unsigned long since = log_last_seq();
    const char *const with_rank0[WORLD] = {d0, d0, db};
    group g;
    run(&g, with_rank0, 0, -1);
    check_resumed(&g, 5, at5, P);
    cJSON *lines[8];
    int n = events(since, "checkpoint_replicated", lines, 8);
    CHECK_INT(n, 1); // rank 2 alone
    free_events(lines, n);
    struct stat after = stat_of(d0, 5, "model.safetensors");
    CHECK(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime);
    CHECK_INT(entries_with(d0, ".replica"), 0);
    CHECK_INT(verify(db, 5), 0);

    shell("rm -rf %s/checkpoint-5", db);
    since = log_last_seq();
    const char *const one_node[WORLD] = {d0, db, db};
    run(&g, one_node, 0, -1);
    check_resumed(&g, 5, at5, P);
    n = events(since, "checkpoint_replicated", lines, 8);
    CHECK_INT(n, 2);
    int written = 0;
    for (int i = 0; i < n; i++) written += cJSON_IsTrue(cJSON_GetObjectItem(lines[i], "written"));
    CHECK_INT(written, 1);
    free_events(lines, n);
    CHECK_INT(verify(db, 5), 0);
    CHECK_INT(entries_with(db, ".replica"), 0);
    free(at5);
    shell("rm -rf %s %s", d0, db);
}

// One byte flipped on its way to rank 1: its copy fails the checksums, is not put in
// place, and all ranks keep the agreement (from scratch here); rank 2's good copy stays.
// The next start copies to rank 1 only (rank 2 holds the step valid now).
static void test_a_copy_damaged_in_transit_is_not_resumed(bert_model *m) {
    char n0[] = "/tmp/test_replica0.XXXXXX", n1[] = "/tmp/test_replica1.XXXXXX",
         n2[] = "/tmp/test_replica2.XXXXXX";
    const char *const dirs[WORLD] = {tmpdir(n0), tmpdir(n1), tmpdir(n2)};
    size_t P = bert_num_parameters(m);
    float *at8 = malloc(3 * P * sizeof(float));
    save_at(dirs[0], m, 4, 4, 5, NULL);
    save_at(dirs[0], m, 8, 8, 6, at8);

    unsigned long since = log_last_seq();
    group g;
    run(&g, dirs, 0, 1);
    check_resumed(&g, 0, NULL, P);
    CHECK(!exists(dirs[1], 8) && entries_with(dirs[1], ".replica") == 0);
    CHECK_INT(verify(dirs[2], 8), 0);
    cJSON *lines[8];
    int n = events(since, "checkpoint_replication_failed", lines, 8);
    CHECK_INT(n, 1);
    const char *msg = n ? cJSON_GetStringValue(cJSON_GetObjectItem(lines[0], "msg")) : NULL;
    CHECK(msg && strstr(msg, "checksum mismatch"));
    free_events(lines, n);
    n = events(since, "resume_agreed", lines, 8);
    CHECK_INT(n, WORLD);
    for (int i = 0; i < n; i++) {
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(lines[i], "step")));
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(lines[i], "replicated_to")), 0);
    }
    free_events(lines, n);

    since = log_last_seq();
    run(&g, dirs, 0, -1);
    check_resumed(&g, 8, at8, P);
    n = events(since, "checkpoint_replicated", lines, 8);
    CHECK_INT(n, 1);
    msg = n ? cJSON_GetStringValue(cJSON_GetObjectItem(lines[0], "msg")) : NULL;
    CHECK(msg && strstr(msg, dirs[1]) == msg);
    free_events(lines, n);
    free(at8);
    shell("rm -rf %s %s %s", dirs[0], dirs[1], dirs[2]);
}

// Every rank holds copies (a shared or fetched output) and one rank's newest is damaged:
// nothing is copied, all resume the step before, the damaged copy is left as it is.
// A group without a broadcast copies nothing either: node-local ranks start from scratch.
static void test_damaged_copies_alone_keep_the_agreement(bert_model *m) {
    char n0[] = "/tmp/test_replica0.XXXXXX", n1[] = "/tmp/test_replica1.XXXXXX",
         n2[] = "/tmp/test_replica2.XXXXXX";
    const char *const dirs[WORLD] = {tmpdir(n0), tmpdir(n1), tmpdir(n2)};
    size_t P = bert_num_parameters(m);
    float *at6 = malloc(3 * P * sizeof(float));
    save_at(dirs[0], m, 6, 6, 7, at6);
    save_at(dirs[0], m, 9, 6, 8, NULL);
    shell("cp -r %s/. %s/", dirs[0], dirs[1]);
    shell("cp -r %s/. %s/", dirs[0], dirs[2]);
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoint-9/model.safetensors", dirs[1]);
    CHECK_INT(truncate(path, 100), 0);

    unsigned long since = log_last_seq();
    group g;
    run(&g, dirs, 0, -1);
    check_resumed(&g, 6, at6, P);
    CHECK_INT(verify(dirs[1], 9), EXIT_BAD_INPUT);
    cJSON *lines[8];
    int n = events(since, "checkpoint_replicated", lines, 8);
    CHECK_INT(n, 0);
    free_events(lines, n);

    // Without a broadcast: node-local ranks 1 and 2 hold nothing, all start from scratch.
    shell("rm -rf %s/checkpoint-* %s/checkpoint-*", dirs[1], dirs[2]);
    memset(&g, 0, sizeof g);
    g.corrupt_rank = -1;
    pthread_barrier_init(&g.barrier, NULL, WORLD);
    pthread_t threads[WORLD];
    for (int r = 0; r < WORLD; r++) {
        g.ranks[r] = (rank_side){.g = &g, .rank = r, .dir = dirs[r]};
        pthread_create(&threads[r], NULL, rank_main, &g.ranks[r]);
    }
    for (int r = 0; r < WORLD; r++) pthread_join(threads[r], NULL);
    pthread_barrier_destroy(&g.barrier);
    check_resumed(&g, 0, NULL, P);
    CHECK(!exists(dirs[1], 9) && !exists(dirs[2], 9));
    free(at6);
    shell("rm -rf %s %s %s", dirs[0], dirs[1], dirs[2]);
}

int main(void) {
    backend *be = backend_cpu_create(1);
    bert_config cfg = checkpoint_fixture_config();
    bert_model *m;
    CHECK_INT(bert_create(&m, be, &cfg, HEAD_TOKEN_CLASSIFICATION, 3, 2, 8), 0);
    test_node_local_outputs_resume_rank_0s_newest(m);
    test_shared_folders_are_written_once(m);
    test_a_copy_damaged_in_transit_is_not_resumed(m);
    test_damaged_copies_alone_keep_the_agreement(m);
    bert_destroy(m);
    be->destroy(be);
    return check_summary();
}
