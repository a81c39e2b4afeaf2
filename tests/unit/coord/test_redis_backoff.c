// The Redis client's retry policy: full-jitter exponential backoff (every pause within
// its ceiling, the ceilings doubling to the cap, pauses spread over the whole range,
// different clients on different sequences), the retry window against a closed port,
// and the replies that mean "not now": LOADING, READONLY (a replica, as the old primary
// is right after a failover) and MASTERDOWN (a replica cut off from its primary) are
// retried until a real redis-server replica is promoted during the command's window.
#include "check.h"
#include "coord/redis_keeper.h"
#include "runner/coord/redis_client.h"
#include "runner/error.h"
#include "runner/timing.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { BASE_MS = 50, CAP_MS = 2000, DRAWS = 9, RUNS = 4000 };

static void test_ceilings_double_to_the_cap(void) {
    redis_backoff b;
    redis_backoff_init(&b, BASE_MS, CAP_MS, 1);
    const int want[DRAWS] = {50, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
    for (int i = 0; i < DRAWS; i++) {
        CHECK_INT(redis_backoff_ceiling_ms(&b), want[i]);
        redis_backoff_next_ms(&b);
    }
    redis_backoff_reset(&b);
    CHECK_INT(redis_backoff_ceiling_ms(&b), BASE_MS);
    for (int i = 0; i < 200; i++) // no overflow however long the outage
        redis_backoff_next_ms(&b);
    CHECK_INT(redis_backoff_ceiling_ms(&b), CAP_MS);
}

// Every pause lies in [0, ceiling]; over many clients the pauses of retry n cover the
// range (their maximum near the ceiling, their mean near half of it, some near 0):
// full jitter, not "ceiling plus a little noise".
static void test_pauses_are_spread_over_the_whole_range(void) {
    const int ceiling[DRAWS] = {50, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
    double sum[DRAWS] = {0};
    int max[DRAWS] = {0}, min[DRAWS], out_of_range = 0;
    for (int i = 0; i < DRAWS; i++)
        min[i] = 1 << 30;
    for (int run = 0; run < RUNS; run++) {
        redis_backoff b;
        redis_backoff_init(&b, BASE_MS, CAP_MS, 1000u + (uint64_t)run);
        for (int i = 0; i < DRAWS; i++) {
            int p = redis_backoff_next_ms(&b);
            if (p < 0 || p > ceiling[i])
                out_of_range++;
            sum[i] += p;
            max[i] = p > max[i] ? p : max[i];
            min[i] = p < min[i] ? p : min[i];
        }
    }
    CHECK_INT(out_of_range, 0);
    for (int i = 0; i < DRAWS; i++) {
        double mean = sum[i] / RUNS;
        CHECK(mean > 0.45 * ceiling[i] && mean < 0.55 * ceiling[i]);
        CHECK(max[i] >= 0.97 * ceiling[i]);
        CHECK(min[i] <= 0.03 * ceiling[i]);
    }
}

// Clients seeded differently retry at different moments (no lock-step reconnection of
// every node when Redis comes back); one seed replays its sequence.
static void test_clients_do_not_retry_in_lock_step(void) {
    redis_backoff a, b, again;
    redis_backoff_init(&a, BASE_MS, CAP_MS, 42);
    redis_backoff_init(&b, BASE_MS, CAP_MS, 43);
    redis_backoff_init(&again, BASE_MS, CAP_MS, 42);
    int same_as_b = 0, same_as_again = 0;
    for (int i = 0; i < DRAWS; i++) {
        int pa = redis_backoff_next_ms(&a);
        same_as_b += pa == redis_backoff_next_ms(&b);
        same_as_again += pa == redis_backoff_next_ms(&again);
    }
    CHECK(same_as_b <= 2);
    CHECK_INT(same_as_again, DRAWS);
}

static void test_transient_replies(void) {
    struct {
        int type;
        const char *text;
        bool transient;
    } cases[] = {
        {REDIS_REPLY_ERROR, "LOADING Redis is loading the dataset in memory", true},
        {REDIS_REPLY_ERROR, "READONLY You can't write against a read only replica.", true},
        {REDIS_REPLY_ERROR, "MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
                            "is set to 'no'.", true},
        {REDIS_REPLY_ERROR, "LOADING", true},
        {REDIS_REPLY_ERROR, "WRONGTYPE Operation against a key holding the wrong kind of value",
         false},
        {REDIS_REPLY_ERROR, "NOGROUP No such key 'x' or consumer group 'workers'", false},
        {REDIS_REPLY_ERROR, "ERR unknown command", false},
        {REDIS_REPLY_ERROR, "READONLYISH not a code", false},
        {REDIS_REPLY_STATUS, "LOADING", false}, // a status, not an error
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "%s", cases[i].text);
        redisReply r = {.type = cases[i].type, .str = text, .len = strlen(text)};
        CHECK_INT(redis_reply_is_transient(&r), cases[i].transient);
    }
    CHECK(!redis_reply_is_transient(NULL));
}

// The test servers have a password: AUTH is answered by a replica cut off from its
// primary, which answers even PING with MASTERDOWN.
static redis_endpoint local(int port) {
    redis_endpoint ep = {.port = port};
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "backoff-pw");
    return ep;
}

// A closed port: the command gives up when its window closes, not before, not much
// after (a pause never runs past the window's end), and the failure is recorded.
static void test_window_against_a_closed_port(void) {
    redis_endpoint ep = local(test_free_port());
    redis_client *rc = redis_client_new(&ep, 1500);
    CHECK_INT(redis_client_last_failure_ms(rc), 0);
    long long t0 = timing_now_ms();
    redisReply *r = redis_client_command(rc, "PING");
    long long took = timing_now_ms() - t0;
    CHECK(r == NULL);
    CHECK_INT(error_code(), EXIT_COORDINATION);
    CHECK(took >= 1450 && took < 2500);
    CHECK(redis_client_last_failure_ms(rc) >= t0 && redis_client_last_failure_ms(rc) <= t0 + took);
    error_clear();
    redis_client_free(rc);
}

static char data_dir[] = "/tmp/redis-backoff-XXXXXX"; // a primary's sync writes an RDB

// A redis-server of its own (its files in data_dir), configured by `extra`.
// Started before any thread of this test exists, so fork() is safe.
static pid_t spawn_redis(int port, const char *extra) {
    int in[2];
    if (pipe(in) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        close(in[0]);
        close(in[1]);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "-", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    dprintf(in[1], "port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly no\n"
                   "requirepass backoff-pw\nmasterauth backoff-pw\n%s\n", port, data_dir, extra);
    close(in[1]);
    redis_endpoint ep = local(port);
    redis_client *rc = redis_client_new(&ep, 5000);
    redisReply *r = redis_client_command(rc, "INFO server"); // answered by a stale replica too
    bool up = r != NULL;
    if (r)
        freeReplyObject(r);
    redis_client_free(rc);
    error_clear();
    return up ? pid : -1;
}

static void stop_redis(pid_t pid) {
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

typedef struct {
    int port;
    int after_ms;
} promotion;

// What a failover does to the replica: REPLICAOF NO ONE, `after_ms` from now.
static void *promote_later(void *arg) {
    const promotion *p = arg;
    timing_sleep_ms(p->after_ms);
    redis_endpoint ep = local(p->port);
    redis_client *rc = redis_client_new(&ep, 2000);
    redisReply *r = redis_client_command(rc, "REPLICAOF NO ONE");
    if (r)
        freeReplyObject(r);
    redis_client_free(rc);
    return NULL;
}

// One replica answers READONLY to a write, the other MASTERDOWN to a read; a short
// window ends with the reason, a long one outlasts the promotion and gets the answer.
static void test_replica_replies_are_retried_until_promotion(const int *ports) {
    struct {
        int port;
        const char *command, *reason;
    } cases[] = {{ports[1], "SET failover-key 1", "READONLY"},
                 {ports[2], "GET failover-key", "MASTERDOWN"}};
    for (int i = 0; i < 2; i++) {
        redis_endpoint ep = local(cases[i].port);
        redis_client *rc = redis_client_new(&ep, 300);
        redisReply *r = redis_client_command(rc, cases[i].command);
        CHECK(r == NULL);
        CHECK_INT(error_code(), EXIT_COORDINATION);
        CHECK(strstr(error_message(), cases[i].reason) != NULL);
        if (!strstr(error_message(), cases[i].reason))
            fprintf(stderr, "got: %s\n", error_message());
        error_clear();
        if (r)
            freeReplyObject(r);

        promotion p = {.port = cases[i].port, .after_ms = 800};
        pthread_t thread;
        CHECK_INT(pthread_create(&thread, NULL, promote_later, &p), 0);
        redis_client_set_retry_ms(rc, 8000);
        long long t0 = timing_now_ms();
        r = redis_client_command(rc, cases[i].command);
        long long took = timing_now_ms() - t0;
        pthread_join(thread, NULL);
        CHECK(r != NULL && r->type != REDIS_REPLY_ERROR);
        CHECK(took >= 700 && took < 5000);
        CHECK(redis_client_last_failure_ms(rc) >= t0);
        if (r)
            freeReplyObject(r);
        redis_client_free(rc);
    }
}

int main(void) {
    test_ceilings_double_to_the_cap();
    test_pauses_are_spread_over_the_whole_range();
    test_clients_do_not_retry_in_lock_step();
    test_transient_replies();
    test_window_against_a_closed_port();

    // A primary, a replica of it (READONLY to writes), and a replica of a primary that
    // is gone, told not to serve stale data (MASTERDOWN).
    CHECK(mkdtemp(data_dir) != NULL);
    int ports[3] = {test_free_port(), test_free_port(), test_free_port()};
    int gone = test_free_port();
    char of_primary[96], of_gone[128];
    snprintf(of_primary, sizeof of_primary, "replicaof 127.0.0.1 %d", ports[0]);
    snprintf(of_gone, sizeof of_gone, "replicaof 127.0.0.1 %d\nreplica-serve-stale-data no", gone);
    pid_t primary = spawn_redis(ports[0], "");
    pid_t replicas[2] = {spawn_redis(ports[1], of_primary), spawn_redis(ports[2], of_gone)};
    CHECK(primary > 0 && replicas[0] > 0 && replicas[1] > 0);
    if (primary > 0 && replicas[0] > 0 && replicas[1] > 0)
        test_replica_replies_are_retried_until_promotion(ports);
    stop_redis(replicas[0]);
    stop_redis(replicas[1]);
    stop_redis(primary);
    char rdb[sizeof data_dir + 16];
    snprintf(rdb, sizeof rdb, "%s/dump.rdb", data_dir);
    unlink(rdb);
    rmdir(data_dir);
    return check_summary();
}
