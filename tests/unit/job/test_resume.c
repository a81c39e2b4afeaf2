// The resume agreement of runner/job/resume.h as pure logic: each rank's list of valid
// checkpoint steps in, the step every rank resumes from out. The ranks are threads that
// run resume_agree() together, exchanging through a barrier as the collective would: the
// agreed step is the newest step in every list (none: -1), the same on every rank; each
// rank's reason names which rank lacked which of its steps; only the candidates the
// protocol needs are asked for (a rank validates lazily, newest first).
#include "check.h"
#include "runner/error.h"
#include "runner/job/resume.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { WORLD_MAX = 5, STEPS_MAX = 12, ASKS_MAX = 32 };

typedef struct group group;

typedef struct {
    group *g;
    int rank;
    const long *steps; // this rank's valid steps, newest first
    int n;
    long asked[ASKS_MAX]; // the bounds newest_valid was called with
    int n_asked;
    int fail;             // an exit code newest_valid returns (world 1 only)
    resume_agreement out;
    int rc;
} rank_side;

struct group {
    int world;
    pthread_barrier_t barrier;
    long slots[WORLD_MAX];
    rank_side ranks[WORLD_MAX];
};

// The all-gather: write the own slot, wait for all, read all, wait again before anyone
// may write the next round's value.
static int exchange(void *ctx, long mine, long *all) {
    rank_side *side = ctx;
    group *g = side->g;
    g->slots[side->rank] = mine;
    pthread_barrier_wait(&g->barrier);
    memcpy(all, g->slots, (size_t)g->world * sizeof *all);
    pthread_barrier_wait(&g->barrier);
    return 0;
}

static int newest_valid(void *ctx, long bound, long *step) {
    rank_side *side = ctx;
    if (side->n_asked < ASKS_MAX) side->asked[side->n_asked++] = bound;
    if (side->fail) return error_set(side->fail, "rank %d: cannot read its checkpoints", side->rank);
    *step = -1;
    for (int i = 0; i < side->n; i++)
        if (side->steps[i] <= bound) {
            *step = side->steps[i];
            break;
        }
    return 0;
}

static void *rank_main(void *arg) {
    rank_side *side = arg;
    resume_ops ops = {.rank = side->rank, .world = side->g->world, .ctx = side,
                      .exchange = exchange, .newest_valid = newest_valid};
    side->rc = resume_agree(&ops, &side->out);
    return NULL;
}

// Run `world` ranks over lists[r][0..counts[r]) (newest first) into g.
static void run(group *g, int world, const long lists[][STEPS_MAX], const int *counts) {
    memset(g, 0, sizeof *g);
    g->world = world;
    pthread_barrier_init(&g->barrier, NULL, (unsigned)world);
    pthread_t threads[WORLD_MAX];
    for (int r = 0; r < world; r++) {
        g->ranks[r] = (rank_side){.g = g, .rank = r, .steps = lists[r], .n = counts[r]};
        pthread_create(&threads[r], NULL, rank_main, &g->ranks[r]);
    }
    for (int r = 0; r < world; r++) pthread_join(threads[r], NULL);
    pthread_barrier_destroy(&g->barrier);
}

static void check_agreed(const group *g, long step) {
    for (int r = 0; r < g->world; r++) {
        CHECK_INT(g->ranks[r].rc, 0);
        CHECK_INT(g->ranks[r].out.step, step);
    }
}

static void test_equal_lists_take_the_newest_in_one_round(void) {
    const long lists[3][STEPS_MAX] = {{30, 20, 10}, {30, 20, 10}, {30, 20, 10}};
    const int counts[3] = {3, 3, 3};
    group g;
    run(&g, 3, lists, counts);
    check_agreed(&g, 30);
    for (int r = 0; r < 3; r++) {
        CHECK_INT(g.ranks[r].out.rounds, 1);
        CHECK_INT(g.ranks[r].out.own_newest, 30);
        CHECK_INT(g.ranks[r].out.n_lacking, 0);
        CHECK_INT(g.ranks[r].n_asked, 1); // only the newest was needed
        CHECK(g.ranks[r].asked[0] == LONG_MAX);
        char why[256];
        resume_describe(&g.ranks[r].out, why, sizeof why);
        CHECK_STR(why, "");
    }
}

// The case of the integration test: one rank's newest is damaged (not in its list).
static void test_one_rank_lacking_the_newest_takes_the_previous(void) {
    const long lists[3][STEPS_MAX] = {{14, 10}, {10}, {14, 10}};
    const int counts[3] = {2, 1, 2};
    group g;
    run(&g, 3, lists, counts);
    check_agreed(&g, 10);
    const rank_side *r0 = &g.ranks[0], *r1 = &g.ranks[1];
    CHECK_INT(r0->out.own_newest, 14);
    CHECK_INT(r0->out.n_lacking, 1);
    CHECK_INT(r0->out.lacking[0].rank, 1);
    CHECK_INT(r0->out.lacking[0].lacks, 14);
    CHECK_INT(r0->out.lacking[0].holds, 10);
    char why[256];
    resume_describe(&r0->out, why, sizeof why);
    CHECK_STR(why, "rank 1 holds no valid checkpoint-14 (its newest below it: checkpoint-10)");
    // Rank 1 resumes its own newest: nothing to explain.
    CHECK_INT(r1->out.own_newest, 10);
    CHECK_INT(r1->out.n_lacking, 0);
    resume_describe(&r1->out, why, sizeof why);
    CHECK_STR(why, "");
    // Rank 0 asked twice: everything, then at or below 10.
    CHECK_INT(r0->n_asked, 2);
    CHECK_INT(r0->asked[1], 10);
}

// No rank holds every step: 30 is missing on rank 1, 20 on rank 2; only 10 is common.
static void test_a_chain_of_missing_steps_goes_down_to_the_common_one(void) {
    const long lists[3][STEPS_MAX] = {{30, 20, 10}, {20, 10}, {30, 10}};
    const int counts[3] = {3, 2, 2};
    group g;
    run(&g, 3, lists, counts);
    check_agreed(&g, 10);
    CHECK_INT(g.ranks[0].out.rounds, 3);
    char why[512];
    resume_describe(&g.ranks[0].out, why, sizeof why);
    CHECK_STR(why, "rank 1 holds no valid checkpoint-30 (its newest below it: checkpoint-20); "
                   "rank 2 holds no valid checkpoint-20 (its newest below it: checkpoint-10)");
    resume_describe(&g.ranks[2].out, why, sizeof why);
    CHECK_STR(why, "rank 1 holds no valid checkpoint-30 (its newest below it: checkpoint-20)");
    resume_describe(&g.ranks[1].out, why, sizeof why);
    CHECK_STR(why, "rank 2 holds no valid checkpoint-20 (its newest below it: checkpoint-10)");
}

static void test_a_rank_without_checkpoints_starts_everyone_from_scratch(void) {
    const long lists[3][STEPS_MAX] = {{30, 20}, {30}, {0}};
    const int counts[3] = {2, 1, 0};
    group g;
    run(&g, 3, lists, counts);
    check_agreed(&g, -1);
    CHECK_INT(g.ranks[0].out.rounds, 1);
    CHECK_INT(g.ranks[2].out.own_newest, -1);
    char why[256];
    resume_describe(&g.ranks[1].out, why, sizeof why);
    CHECK_STR(why, "rank 2 holds no valid checkpoint-30 (its newest below it: none)");

    const int none[3] = {0, 0, 0};
    run(&g, 3, lists, none);
    check_agreed(&g, -1);
    CHECK_INT(g.ranks[0].out.rounds, 1);
    resume_describe(&g.ranks[0].out, why, sizeof why);
    CHECK_STR(why, "");
}

static void test_one_rank_and_a_failing_callback(void) {
    const long lists[1][STEPS_MAX] = {{8, 4}};
    const int counts[1] = {2};
    group g;
    run(&g, 1, lists, counts);
    check_agreed(&g, 8);

    memset(&g, 0, sizeof g);
    g.world = 1;
    pthread_barrier_init(&g.barrier, NULL, 1);
    g.ranks[0] = (rank_side){.g = &g, .steps = lists[0], .n = 2, .fail = EXIT_RESOURCES};
    rank_main(&g.ranks[0]);
    CHECK_INT(g.ranks[0].rc, EXIT_RESOURCES);
    CHECK_INT(g.ranks[0].out.step, -1);
    pthread_barrier_destroy(&g.barrier);
    error_clear();

    resume_ops bad = {.rank = 2, .world = 2, .exchange = exchange, .newest_valid = newest_valid};
    resume_agreement a;
    CHECK_INT(resume_agree(&bad, &a), EXIT_INTERNAL);
    error_clear();
}

// Random lists: the agreed step is the newest step of every list, on every rank.
static void test_random_lists_agree_on_the_newest_common_step(void) {
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int mismatches = 0, common = 0;
    for (int trial = 0; trial < 400; trial++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int world = 1 + (int)((x >> 33) % WORLD_MAX);
        long lists[WORLD_MAX][STEPS_MAX];
        int counts[WORLD_MAX];
        for (int r = 0; r < world; r++) {
            counts[r] = 0;
            for (long step = STEPS_MAX * 5; step >= 0; step -= 5) { // newest first
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                if ((x >> 40) % 3 != 0 && counts[r] < STEPS_MAX) lists[r][counts[r]++] = step;
            }
        }
        long want = -1; // brute force: the largest step in every list
        for (int i = 0; i < counts[0] && want < 0; i++) {
            bool everywhere = true;
            for (int r = 1; r < world && everywhere; r++) {
                bool here = false;
                for (int j = 0; j < counts[r]; j++) here |= lists[r][j] == lists[0][i];
                everywhere = here;
            }
            if (everywhere) want = lists[0][i];
        }
        common += want >= 0;
        group g;
        run(&g, world, (const long(*)[STEPS_MAX])lists, counts);
        for (int r = 0; r < world; r++) {
            mismatches += g.ranks[r].rc != 0 || g.ranks[r].out.step != want;
            // A rank resuming older than its own newest says why; otherwise it says nothing.
            bool older = g.ranks[r].out.step != g.ranks[r].out.own_newest;
            mismatches += older != (g.ranks[r].out.n_lacking > 0);
        }
    }
    CHECK_INT(mismatches, 0);
    CHECK(common > 50 && common < 390); // both outcomes were exercised
}

int main(void) {
    test_equal_lists_take_the_newest_in_one_round();
    test_one_rank_lacking_the_newest_takes_the_previous();
    test_a_chain_of_missing_steps_goes_down_to_the_common_one();
    test_a_rank_without_checkpoints_starts_everyone_from_scratch();
    test_one_rank_and_a_failing_callback();
    test_random_lists_agree_on_the_newest_common_step();
    return check_summary();
}
