// The Redis client, the embedded server and the node identity: URL parsing, AUTH,
// reconnection after the server was killed and restarted by its supervisor, refusal of
// a wrong password, Batch variables.
#include "check.h"
#include "coord/redis_keeper.h"
#include "runner/coord/coord_internal.h"
#include "runner/coord/redis_client.h"
#include "runner/coord/redis_server.h"
#include "runner/error.h"

#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_parse(void) {
    redis_endpoint ep;
    CHECK_INT(redis_endpoint_parse("redis://:s3cret@10.0.0.1:6380", &ep), 0);
    CHECK_STR(ep.host, "10.0.0.1");
    CHECK_INT(ep.port, 6380);
    CHECK_STR(ep.password, "s3cret");
    CHECK_INT(redis_endpoint_parse("redis://default:p%40ss@redis.internal/0", &ep), 0);
    CHECK_STR(ep.host, "redis.internal");
    CHECK_INT(ep.port, 6379);
    CHECK_STR(ep.password, "p@ss");
    CHECK_INT(redis_endpoint_parse("redis://[::1]:7000", &ep), 0);
    CHECK_STR(ep.host, "::1");
    CHECK_STR(ep.password, "");
    CHECK_INT(redis_endpoint_parse("http://host:6379", &ep), EXIT_USAGE);
    CHECK_INT(redis_endpoint_parse("redis://host/3", &ep), EXIT_USAGE);
    CHECK_INT(redis_endpoint_parse("embeded", &ep), EXIT_USAGE);
}

static void test_identity(void) {
    coord_node n;
    unsetenv("AWS_BATCH_JOB_ID");
    unsetenv("AWS_BATCH_JOB_NUM_NODES");
    unsetenv("AWS_BATCH_JOB_NODE_INDEX");
    unsetenv("AWS_BATCH_JOB_MAIN_NODE_INDEX");
    unsetenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS");
    unsetenv("AWS_BATCH_JOB_ATTEMPT");
    unsetenv("RUNNER_NODE_ADDRESS");
    CHECK_INT(coord_identity_from_env(&n), 0);
    CHECK_INT(n.num_nodes, 1);
    CHECK_INT(n.attempt, 1);
    CHECK(n.is_main);
    CHECK(strncmp(n.job_id, "local-", 6) == 0);

    setenv("AWS_BATCH_JOB_ID", "6f1e-42#2", 1);
    setenv("AWS_BATCH_JOB_NUM_NODES", "3", 1);
    setenv("AWS_BATCH_JOB_NODE_INDEX", "2", 1);
    setenv("AWS_BATCH_JOB_MAIN_NODE_INDEX", "0", 1);
    setenv("AWS_BATCH_JOB_ATTEMPT", "4", 1);
    // Batch leaves the main node's address unset only on the main node.
    CHECK_INT(coord_identity_from_env(&n), EXIT_USAGE);
    setenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS", "127.0.0.1", 1);
    CHECK_INT(coord_identity_from_env(&n), 0);
    CHECK_STR(n.job_id, "6f1e-42");
    CHECK_INT(n.attempt, 4);
    CHECK_INT(n.node_index, 2);
    CHECK(!n.is_main);
    CHECK_STR(n.main_address, "127.0.0.1");
    CHECK_STR(n.node_address, "127.0.0.1"); // the route to the main node
    setenv("AWS_BATCH_JOB_NODE_INDEX", "3", 1);
    CHECK_INT(coord_identity_from_env(&n), EXIT_USAGE);
    setenv("AWS_BATCH_JOB_NODE_INDEX", "x", 1);
    CHECK_INT(coord_identity_from_env(&n), EXIT_USAGE);
    unsetenv("AWS_BATCH_JOB_ID");
    unsetenv("AWS_BATCH_JOB_NUM_NODES");
    unsetenv("AWS_BATCH_JOB_NODE_INDEX");
    unsetenv("AWS_BATCH_JOB_MAIN_NODE_INDEX");
    unsetenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS");
    unsetenv("AWS_BATCH_JOB_ATTEMPT");
}

static void test_server_restart(void) {
    int port = test_free_port();
    const char *password = "restart-test-pw";
    CHECK_INT(redis_server_start("127.0.0.1", port, password), 0);
    redis_endpoint ep = {.port = port};
    snprintf(ep.host, sizeof ep.host, "127.0.0.1");
    snprintf(ep.password, sizeof ep.password, "%s", password);

    redis_client *rc = redis_client_new(&ep, 5000);
    CHECK_INT(redis_client_ok(rc, "SET k %d", 1), 0);
    redisReply *r = redis_client_command(rc, "CONFIG GET save");
    CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->len == 0);
    if (r)
        freeReplyObject(r);

    // Without AUTH the server refuses commands.
    redis_endpoint anonymous = ep;
    anonymous.password[0] = '\0';
    redis_client *anon = redis_client_new(&anonymous, 0);
    r = redis_client_command(anon, "GET k");
    CHECK(r == NULL || r->type == REDIS_REPLY_ERROR);
    if (r)
        freeReplyObject(r);
    redis_client_free(anon);

    // Kill it: the supervisor starts it again and the same client carries on.
    int pid = redis_server_pid();
    CHECK(pid > 0);
    kill(pid, SIGKILL);
    double t0 = seconds();
    CHECK_INT(redis_client_ok(rc, "SET k %d", 2), 0);
    CHECK(seconds() - t0 < 4.0);
    for (int i = 0; i < 100 && redis_server_restarts() == 0; i++)
        usleep(20000); // the client may reconnect before the supervisor counts
    CHECK_INT(redis_server_restarts(), 1);
    CHECK(redis_server_pid() != pid);
    r = redis_client_command(rc, "GET k");
    CHECK(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "2") == 0);
    if (r)
        freeReplyObject(r);

    redis_server_stop();
    CHECK_INT(redis_server_pid(), 0);
    // Gone for good: the client gives up after its retry window with EXIT_COORDINATION.
    redis_client *short_rc = redis_client_new(&ep, 300);
    t0 = seconds();
    CHECK(redis_client_command(short_rc, "PING") == NULL);
    CHECK_INT(error_code(), EXIT_COORDINATION);
    CHECK(seconds() - t0 < 2.0);
    redis_client_free(short_rc);
    redis_client_free(rc);
}

static void test_server_failures(void) {
    // Not on PATH: a clear error at once, not a hang.
    const char *path = getenv("PATH");
    char saved[4096];
    snprintf(saved, sizeof saved, "%s", path ? path : "/usr/bin:/bin");
    setenv("PATH", "/nonexistent", 1);
    double t0 = seconds();
    CHECK_INT(redis_server_start("127.0.0.1", test_free_port(), "pw"), EXIT_COORDINATION);
    CHECK(strstr(error_message(), "PATH") != NULL);
    CHECK(seconds() - t0 < 2.0);
    setenv("PATH", saved, 1);
    // The port is taken: EXIT_COORDINATION naming the port.
    int port = test_free_port();
    CHECK_INT(redis_server_start("127.0.0.1", port, "pw1"), 0);
    int first = redis_server_pid();
    redis_server_stop();
    CHECK(first > 0);
}

int main(void) {
    test_server_failures();
    test_parse();
    test_identity();
    test_server_restart();
    return check_summary();
}
