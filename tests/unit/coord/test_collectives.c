// Gloo collectives bootstrapped through a real redis-server (with a password): three
// processes run the ring all-reduce, a broadcast and a barrier on loopback; then a rank
// that dies makes the others' next collective fail with EXIT_PEER_LOST, not hang.
#include "check.h"
#include "coord/redis_keeper.h"
#include "kernels/collectives/collectives.h"
#include "runner/coord/coord_store.h"
#include "runner/error.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

enum { WORLD = 3, N = 10007 }; // odd length: ring chunks of unequal size

static redis_endpoint endpoint;

// One rank: returns its process exit status (0 = all checks held).
static int rank_main(int rank, const char *prefix, bool die_after_first) {
    collective_store_ops store;
    if (coord_store_open_endpoint(&endpoint, &store) != 0)
        return 10;
    collective *c = NULL;
    if (collective_init_cpu(&store, prefix, "127.0.0.1", rank, WORLD, 5000, &c) != 0) {
        fprintf(stderr, "rank %d: %s\n", rank, error_message());
        return 11;
    }
    if (collective_rank(c) != rank || collective_world(c) != WORLD)
        return 12;
    float *buf = malloc(N * sizeof *buf); // (N,)
    for (int i = 0; i < N; i++)
        buf[i] = (float)(rank + 1) * 0.5f + (float)i;
    if (collective_allreduce_sum_f32(c, buf, N) != 0)
        return 13;
    // sum over ranks r of ((r+1)/2 + i) = 3 + 3i for three ranks
    for (int i = 0; i < N; i++)
        if (buf[i] != 3.0f + 3.0f * (float)i) {
            fprintf(stderr, "rank %d: buf[%d] = %g\n", rank, i, buf[i]);
            return 14;
        }
    if (die_after_first && rank == 2)
        _exit(0); // gone without a word: the others' next call must fail
    for (int i = 0; i < N; i++)
        buf[i] = rank == 1 ? (float)i : -1.0f;
    if (collective_broadcast_f32(c, buf, N, 1) != 0)
        return die_after_first && error_code() == EXIT_PEER_LOST ? 42 : 15;
    for (int i = 0; i < N; i++)
        if (buf[i] != (float)i)
            return 16;
    if (collective_barrier(c) != 0)
        return die_after_first && error_code() == EXIT_PEER_LOST ? 42 : 17;
    if (die_after_first)
        return 18; // with a rank gone, the broadcast or the barrier must have failed
    free(buf);
    collective_destroy(c);
    coord_store_close(&store);
    return 0;
}

static void run_group(const char *prefix, bool die, int *statuses) {
    pid_t pids[WORLD];
    for (int r = 0; r < WORLD; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm(20); // never hang the suite
            _exit(rank_main(r, prefix, die));
        }
    }
    for (int r = 0; r < WORLD; r++) {
        int st;
        waitpid(pids[r], &st, 0);
        statuses[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
}

int main(void) {
    int port = test_free_port();
    const char *password = "collectives-test-pw";
    CHECK_INT(redis_keeper_start(port, password), 0);
    snprintf(endpoint.host, sizeof endpoint.host, "127.0.0.1");
    endpoint.port = port;
    snprintf(endpoint.password, sizeof endpoint.password, "%s", password);

    int st[WORLD];
    run_group("runner:test:1:collective:a", false, st);
    for (int r = 0; r < WORLD; r++)
        CHECK_INT(st[r], 0);

    // A second group with its own prefix works beside the first one's keys.
    run_group("runner:test:1:collective:b", true, st);
    CHECK_INT(st[0], 42);
    CHECK_INT(st[1], 42);
    CHECK_INT(st[2], 0);

    // A wrong password is refused at once (no reconnect loop).
    redis_endpoint wrong = endpoint;
    snprintf(wrong.password, sizeof wrong.password, "nope");
    collective_store_ops store;
    CHECK_INT(coord_store_open_endpoint(&wrong, &store), EXIT_COORDINATION);

    // A store wait times out with EXIT_COORDINATION.
    CHECK_INT(coord_store_open_endpoint(&endpoint, &store), 0);
    const char *keys[] = {"runner:test:1:never"};
    CHECK_INT(store.wait(store.ctx, keys, 1, 200), EXIT_COORDINATION);
    coord_store_close(&store);

    redis_keeper_stop();
    return check_summary();
}
