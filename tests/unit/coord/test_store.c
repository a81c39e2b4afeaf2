// The collective store over a real redis-server: Gloo's wait with timeout 0 (its
// kNoTimeout) waits without limit until a stop is requested, and get waits as long as
// the caller's last wait, not a fixed 30 s.
#include "check.h"

#include "coord/redis_keeper.h"
#include "runner/coord/coord_store.h"
#include "runner/coord/redis_client.h"
#include "runner/error.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static redis_endpoint endpoint;

typedef struct {
    const char *key;
    int after_ms;
} late_set;

// Another rank, late: sets `key` after `after_ms` through its own connection.
static void *set_later(void *arg) {
    const late_set *l = arg;
    timing_sleep_ms(l->after_ms);
    redis_client *rc = redis_client_new(&endpoint, 2000);
    if (rc) {
        redis_client_ok(rc, "SET %s v", l->key);
        redis_client_free(rc);
    }
    return NULL;
}

// Timeout 0 is "no limit": the key set 1.5 s later is waited for (it failed at once).
static void test_wait_without_limit(collective_store_ops *store) {
    late_set l = {"store:late", 1500};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, set_later, &l), 0);
    const char *keys[] = {l.key};
    double t0 = timing_now_s();
    CHECK_INT(store->wait(store->ctx, keys, 1, 0), 0);
    CHECK(timing_now_s() - t0 >= 1.4);
    pthread_join(t, NULL);
    // get after an unlimited wait does not give up either.
    late_set l2 = {"store:later", 1200};
    CHECK_INT(pthread_create(&t, NULL, set_later, &l2), 0);
    void *data = NULL;
    size_t len = 0;
    CHECK_INT(store->get(store->ctx, l2.key, &data, &len), 0);
    CHECK(len == 1 && data && memcmp(data, "v", 1) == 0);
    free(data);
    pthread_join(t, NULL);
}

// get waits as long as the last wait allowed (the group's timeout), not 30 s.
static void test_get_follows_the_callers_timeout(collective_store_ops *store) {
    const char *keys[] = {"store:late"};
    CHECK_INT(store->wait(store->ctx, keys, 1, 300), 0);
    void *data = NULL;
    size_t len = 0;
    double t0 = timing_now_s();
    CHECK_INT(store->get(store->ctx, "store:never", &data, &len), EXIT_COORDINATION);
    double took = timing_now_s() - t0;
    CHECK(took >= 0.25 && took < 3.0);
    CHECK(data == NULL);
    CHECK(strstr(error_message(), "300 ms") != NULL);
    error_clear();
}

// A wait without limit still ends when the job is asked to stop.
static void test_unlimited_wait_honours_stop(collective_store_ops *store) {
    signals_request_stop("test");
    const char *keys[] = {"store:never"};
    CHECK_INT(store->wait(store->ctx, keys, 1, 0), EXIT_INTERRUPTED);
    error_clear();
}

int main(void) {
    int port = test_free_port();
    CHECK_INT(redis_keeper_start(port, "store-pw"), 0);
    snprintf(endpoint.host, sizeof endpoint.host, "127.0.0.1");
    endpoint.port = port;
    snprintf(endpoint.password, sizeof endpoint.password, "store-pw");
    collective_store_ops store;
    CHECK_INT(coord_store_open_endpoint(&endpoint, &store), 0);
    test_wait_without_limit(&store);
    test_get_follows_the_callers_timeout(&store);
    test_unlimited_wait_honours_stop(&store); // last: the stop flag stays set
    coord_store_close(&store);
    redis_keeper_stop();
    return check_summary();
}
