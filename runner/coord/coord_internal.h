#pragma once
// Shared between the coordination files (not for other areas): the state of this
// process's coordination and the helpers of its threads.
//   coord.c            start/stop, endpoint, rendezvous, the public interface, snapshots
//   coord_identity.c   who this node is (AWS_BATCH_JOB_*)
//   coord_heartbeat.c  beats, dead peers, outages, the metrics queue
//   coord_control.c    the control channel
//   coord_metrics.c    metrics fan-in through the stream
#include "runner/coord/coord.h"
#include "runner/coord/redis_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum {
    COORD_MISSED_BEATS_DEAD = 3,      // a peer silent this many periods is dead
    COORD_METRICS_QUEUE = 1024,       // coord_publish_metric's queue (oldest dropped)
    COORD_METRICS_STREAM_MAXLEN = 100000,
};

typedef struct {
    char run[64];
    char tag[96];
    int64_t step;
    double value;
} coord_queued_metric;

typedef struct {
    int node_index;
    char address[COORD_ADDR_MAX];
    long long last_beat;    // the peer's own counter, last value seen
    long long last_seen_ms; // our monotonic clock when it changed
    bool dead;
    bool left; // stopped normally (its beat says "left")
} coord_peer;

typedef struct {
    bool started;
    bool enabled; // Redis in use
    // Written under `lock` (coord_snapshot_get() copies it from another thread); its
    // fields do not change after the rendezvous, so the coordination threads read it
    // without the lock.
    coord_node self;
    char prefix[COORD_PREFIX_MAX];
    redis_endpoint ep;
    bool embedded;
    int heartbeat_ms;
    int rendezvous_timeout_s;
    int outage_timeout_ms; // --redis-outage-timeout
    atomic_bool stop;
    atomic_int exit_hint;

    pthread_mutex_t lock; // guards self's writes, peers, the metrics queue and health
    // Redis as the heartbeat thread sees it (runner_redis_* on /metrics).
    struct {
        bool tracked; // between coord_start() with Redis and coord_stop()
        bool up;
        long long outages;
        long long outage_ms_done; // outages that ended
        long long down_since_ms;  // the current one's start, 0 when up
    } health;
    coord_peer peers[COORD_MAX_NODES];
    int n_peers;
    coord_queued_metric metrics[COORD_METRICS_QUEUE];
    int metrics_head, metrics_len;
    long long metrics_dropped;

    pthread_t heartbeat_thread, control_thread, fanin_thread;
    bool heartbeat_running, control_running, fanin_running;
} coord_state;

// The one state of this process (coord.c).
extern coord_state coord;

// Fill `n` from the AWS_BATCH_JOB_* variables (and RUNNER_NODE_ADDRESS). 0 or EXIT_USAGE.
int coord_identity_from_env(coord_node *n);
// An integer from the environment: `fallback` when unset, EXIT_USAGE (error_set) when
// it is not an integer in [min, 1000000].
int coord_env_int(const char *name, int fallback, int min, int *out);
// Sleep up to `ms`, waking early when coordination stops.
void coord_nap(int ms);
// Ask the job to stop with `code` as the exit code; the first request wins.
void coord_request_stop(int code, const char *reason);
// The Redis endpoint in use (NULL when off).
const redis_endpoint *coord_endpoint(void);
// True once coord_stop() began: threads leave their loops.
bool coord_stopping(void);
int coord_heartbeat_ms(void);
// --redis-outage-timeout in ms (the default before coord_start()).
int coord_outage_timeout_ms(void);
// How long a worker's command waits for a lost Redis: a little longer than the
// supervisor's heartbeat thread, which judges the outage (its outage may begin up to a
// heartbeat after the worker's first failure): its stop (82, with its reason) ends the
// worker's wait first.
int coord_worker_redis_wait_ms(void);
// Non-main nodes: send the telemetry store's new points to the metrics stream. 0, or
// EXIT_COORDINATION (error_set) when Redis did not answer: the points are dropped.
int coord_metrics_export(redis_client *rc);
// The threads (arg unused).
void *coord_heartbeat_main(void *arg);
void *coord_control_main(void *arg);
// Main node thread: the other nodes' metrics stream entries into the telemetry store.
void *coord_fanin_main(void *arg);
