// Redis lost under a running coordination (coord_start() as the supervisor calls it,
// with an external Redis): a single node keeps going and reconnects when Redis is back;
// a node of a multi-node job asks for the stop with 82 once Redis stayed away for 3
// heartbeats, not later (each call's retry is bounded by what is left of that budget).
#include "check.h"

#include "coord/redis_keeper.h"
#include "runner/config.h"
#include "runner/coord/coord.h"
#include "runner/coord/redis_client.h"
#include "runner/error.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// The single node's beat is short; the multi-node job's long enough that Redis surely
// dies between two beats (the keeper takes up to 300 ms to stop it), so the first call
// to fail is the peer scan, as it is most of the time in production.
enum { HEARTBEAT_MS = 300, BUDGET_MS = 3 * HEARTBEAT_MS, MULTI_HEARTBEAT_MS = 1500,
       MULTI_BUDGET_MS = 3 * MULTI_HEARTBEAT_MS };

static void heartbeat_env(int ms) {
    char hb[16];
    snprintf(hb, sizeof hb, "%d", ms);
    setenv("RUNNER_HEARTBEAT_MS", hb, 1);
}

static void batch_env(const char *nodes, const char *index) {
    setenv("AWS_BATCH_JOB_ID", "outage#1", 1);
    setenv("AWS_BATCH_JOB_NUM_NODES", nodes, 1);
    setenv("AWS_BATCH_JOB_NODE_INDEX", index, 1);
    setenv("AWS_BATCH_JOB_MAIN_NODE_INDEX", "0", 1);
    setenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", "127.0.0.1", 1);
    setenv("RUNNER_NODE_ADDRESS", "127.0.0.1", 1);
}

static int start_with_timeout(int port, const char *password, int outage_timeout_s) {
    runner_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.redis, sizeof cfg.redis, "redis://:%s@127.0.0.1:%d", password, port);
    cfg.rendezvous_timeout_s = 10;
    if (outage_timeout_s > 0)
        cfg.redis_outage_timeout_s = outage_timeout_s;
    return coord_start(&cfg);
}

static int start(int port, const char *password) { return start_with_timeout(port, password, 0); }

// Redis as coordination's snapshot shows it (what /metrics renders).
static coord_redis_health health(void) {
    static coord_snapshot snap;
    coord_snapshot_get(&snap);
    return snap.redis;
}

static redis_client *client(int port, const char *password) {
    redis_endpoint ep = {.port = port};
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "%s", password);
    return redis_client_new(&ep, 500);
}

// Whether this node's heartbeat key exists in the Redis on `port`.
static bool beat_seen(int port, const char *password) {
    redis_client *rc = client(port, password);
    redisReply *r = redis_client_command(rc, "EXISTS %shb:0", coord_prefix());
    bool seen = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r)
        freeReplyObject(r);
    redis_client_free(rc);
    error_clear();
    return seen;
}

// Wait until node `node` wrote a new beat (so the next calls are the chores).
static void wait_for_beat(redis_client *rc, int node) {
    char first[32] = "", now[32] = "";
    for (int i = 0; i < 400 && strcmp(first, now) == 0; i++) {
        redisReply *r = redis_client_command(rc, "GET runner:outage:1:hb:%d", node);
        snprintf(i == 0 ? first : now, sizeof now, "%s",
                 r && r->type == REDIS_REPLY_STRING ? r->str : "");
        if (r)
            freeReplyObject(r);
        if (i == 0)
            snprintf(now, sizeof now, "%s", first);
        timing_sleep_ms(10);
    }
}

// One node: Redis gone for 4 multi-node budgets is no reason to stop (the default
// outage timeout is 300 s); the beat is back after it. The health view counts one
// outage, down while it lasts, up again after it, with its duration.
static void test_single_node_keeps_trying(void) {
    heartbeat_env(HEARTBEAT_MS);
    int port = test_free_port();
    CHECK_INT(redis_keeper_start(port, "outage-pw"), 0);
    batch_env("1", "0");
    CHECK_INT(start(port, "outage-pw"), 0);
    coord_redis_health h = health();
    CHECK(h.enabled && h.up);
    CHECK_INT(h.outages, 0);
    timing_sleep_ms(2 * HEARTBEAT_MS);
    redis_keeper_stop(); // the server is stopped with it
    double lost = timing_now_s();
    timing_sleep_ms(4 * BUDGET_MS);
    CHECK(!signals_stop_requested());
    CHECK_INT(coord_exit_code_hint(), 0);
    h = health();
    CHECK(!h.up);
    CHECK_INT(h.outages, 1);
    CHECK(h.outage_seconds > 0.5 * 4 * BUDGET_MS / 1000.0 &&
          h.outage_seconds <= timing_now_s() - lost + 0.1);
    CHECK_INT(redis_keeper_start(port, "outage-pw"), 0); // back, empty
    double back = timing_now_s();
    bool seen = false;
    for (int i = 0; i < 30 && !seen; i++) {
        timing_sleep_ms(HEARTBEAT_MS);
        seen = beat_seen(port, "outage-pw");
    }
    CHECK(seen);
    timing_sleep_ms(2 * HEARTBEAT_MS);
    h = health();
    CHECK(h.up);
    CHECK_INT(h.outages, 1);
    double total = h.outage_seconds;
    CHECK(total >= back - lost - 2 * HEARTBEAT_MS / 1000.0 && total <= timing_now_s() - lost);
    timing_sleep_ms(HEARTBEAT_MS);
    h = health();
    CHECK(h.outage_seconds == total); // no longer growing
    coord_stop();
    h = health();
    CHECK(!h.enabled);
    redis_keeper_stop();
}

// One node whose Redis stays away longer than --redis-outage-timeout (2 s here): the
// stop is requested with 82 about then, not at the multi-node budget and not never. In
// a child process: a stop request cannot be taken back. The parent owns the server.
static void test_single_node_gives_up_after_the_outage_timeout(void) {
    enum { TIMEOUT_S = 2 };
    heartbeat_env(HEARTBEAT_MS);
    int port = test_free_port();
    CHECK_INT(redis_keeper_start(port, "outage-pw"), 0);
    int ready[2], lost[2];
    CHECK(pipe(ready) == 0 && pipe(lost) == 0);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        close(redis_keeper_fd); // the keeper stops when the parent closes its end
        batch_env("1", "0");
        char byte = start_with_timeout(port, "outage-pw", TIMEOUT_S) == 0 ? 'r' : 'x';
        if (write(ready[1], &byte, 1) != 1 || byte != 'r' || read(lost[0], &byte, 1) != 1)
            _exit(10);
        double t0 = timing_now_s();
        while (!signals_stop_requested() && timing_now_s() - t0 < 10)
            timing_sleep_ms(10);
        double took = timing_now_s() - t0;
        fprintf(stderr, "single node: stop requested %.2f s after Redis went away (timeout %d s)\n",
                took, TIMEOUT_S);
        CHECK(signals_stop_requested());
        CHECK_INT(coord_exit_code_hint(), EXIT_COORDINATION);
        CHECK(took >= TIMEOUT_S - 0.1 && took < TIMEOUT_S + 4.0 * HEARTBEAT_MS / 1000.0);
        coord_stop();
        _exit(check_failed ? 1 : 0);
    }
    char byte = 0;
    CHECK(read(ready[0], &byte, 1) == 1 && byte == 'r');
    redis_keeper_stop(); // the server with it
    CHECK(write(lost[1], &byte, 1) == 1);
    int status = -1;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    close(ready[1]);
    close(lost[0]);
    close(lost[1]);
}

// A multi-node job: the stop (82) comes about 3 heartbeats after Redis went away, even
// though the thread has more to do than its beat: the peer scan and the metrics queue
// (each used to retry a whole budget, with a connect window nested inside, before the
// beat's failure started the clock).
static void test_multi_node_stops_within_the_budget(void) {
    heartbeat_env(MULTI_HEARTBEAT_MS);
    int port = test_free_port();
    CHECK_INT(redis_keeper_start(port, "outage-pw"), 0);
    // The main node joined and has left (not dead): the rendezvous closes with this
    // node, and every tick still scans node 0's beat.
    redis_client *rc = client(port, "outage-pw");
    CHECK_INT(redis_client_ok(rc, "HSET runner:outage:1:rdzv:members 0 127.0.0.1"), 0);
    CHECK_INT(redis_client_ok(rc, "SET runner:outage:1:hb:0 left"), 0);
    batch_env("2", "1"); // a non-main node: it exports metrics too
    CHECK_INT(start(port, "outage-pw"), 0);
    wait_for_beat(rc, 1);
    wait_for_beat(rc, 1);
    redis_client_free(rc);
    CHECK(!signals_stop_requested());
    // The cluster view as the HTTP servers read it: node 0 left, node 1 is this one.
    static coord_snapshot snap;
    coord_snapshot_get(&snap);
    CHECK_INT(snap.n_nodes, 2);
    CHECK(snap.enabled && snap.self.node_index == 1 && snap.self.num_nodes == 2);
    CHECK(snap.nodes[0].node_index == 0 && snap.nodes[0].main && !snap.nodes[0].self);
    CHECK_INT(snap.nodes[0].state, COORD_PEER_LEFT);
    CHECK(snap.nodes[1].node_index == 1 && snap.nodes[1].self && !snap.nodes[1].main);
    CHECK_INT(snap.nodes[1].state, COORD_PEER_ALIVE);
    CHECK_INT(snap.nodes[1].last_heartbeat_ms_ago, 0);
    redis_keeper_stop();
    double lost = timing_now_s();
    while (!signals_stop_requested() && timing_now_s() - lost < 10) {
        coord_publish_metric("prime", "loss", 1, 0.5); // the queue is never empty
        timing_sleep_ms(10);
    }
    double took = timing_now_s() - lost;
    fprintf(stderr, "stop requested %.2f s after Redis went away (budget %.2f s)\n", took,
            MULTI_BUDGET_MS / 1000.0);
    CHECK(signals_stop_requested());
    CHECK_INT(coord_exit_code_hint(), EXIT_COORDINATION);
    // Not before the budget (less a beat's scheduling), and not much after it.
    CHECK(took >= (MULTI_BUDGET_MS - MULTI_HEARTBEAT_MS) / 1000.0);
    CHECK(took < (MULTI_BUDGET_MS + MULTI_HEARTBEAT_MS) / 1000.0);
    coord_stop();
}

int main(void) {
    test_single_node_keeps_trying();
    test_single_node_gives_up_after_the_outage_timeout();
    test_multi_node_stops_within_the_budget(); // last: the stop flag stays set
    return check_summary();
}
