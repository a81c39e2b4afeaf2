#pragma once
// Coordination (DESIGN §4, §5, §7): Redis on 6379 (embedded or external), the node's
// identity from the AWS Batch multi-node variables, rendezvous, heartbeats, the control
// channel, the metrics stream. Runs in the supervisor; every key lives under
// `runner:{job_id}:{attempt}:`.
//
// Life cycle: coord_start() once before the workers are started, coord_stop() at exit.
// With `--redis off` and a single node both are no-ops and coord_enabled() is false.
#include "runner/config.h"
#include "runner/coord/redis_client.h"

#include <cjson/cJSON.h>

#include <stdbool.h>
#include <stdint.h>

enum { COORD_ID_MAX = 128, COORD_ADDR_MAX = 64, COORD_PREFIX_MAX = 192, COORD_MAX_NODES = 64 };

// Who this node is, from AWS_BATCH_JOB_* (a single local node when they are absent).
typedef struct {
    char job_id[COORD_ID_MAX]; // AWS_BATCH_JOB_ID without "#node", or "local-<host>-<pid>"
    int attempt;               // AWS_BATCH_JOB_ATTEMPT, 1 when unset
    int node_index;            // AWS_BATCH_JOB_NODE_INDEX
    int main_node_index;       // AWS_BATCH_JOB_MAIN_NODE_INDEX
    int num_nodes;             // AWS_BATCH_JOB_NUM_NODES
    bool is_main;              // node_index == main_node_index
    // The main node's address: AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS on the
    // other nodes; Batch leaves it unset on the main node itself ("127.0.0.1" there).
    char main_address[COORD_ADDR_MAX];
    // This node's address as the others reach it (RUNNER_NODE_ADDRESS, else the address
    // of the interface that routes to the main node, else 127.0.0.1).
    char node_address[COORD_ADDR_MAX];
    int rank;                  // node rank assigned by the rendezvous (0..num_nodes-1)
} coord_node;

// Start coordination for this process (the supervisor). Returns 0 or an exit code with
// error_set() called: EXIT_USAGE for a bad --redis value or an embedded server bound
// beyond loopback without REDIS_PASSWORD, EXIT_COORDINATION when Redis is unreachable
// or the rendezvous timed out.
int coord_start(const runner_config *cfg);
// Stop the threads, leave the rendezvous, stop the embedded redis-server. Idempotent.
void coord_stop(void);

// True between a successful coord_start() with Redis in use and coord_stop().
bool coord_enabled(void);
// This node (valid after coord_start(); identity only when Redis is off).
const coord_node *coord_self(void);
// "runner:{job_id}:{attempt}:" (valid after coord_start()).
const char *coord_prefix(void);
// The exit code coordination asks for when it requested a stop: EXIT_PEER_LOST (a node
// died), EXIT_COORDINATION (Redis lost on a multi-node job), EXIT_INTERRUPTED (a stop or
// checkpoint command), 0 when coordination requested nothing.
int coord_exit_code_hint(void);
// What a worker process needs of coordination: whether Redis is in use, this node, the
// key prefix and the endpoint (with its password). Workers are separate programs
// (runner/worker.h): the supervisor exports this view into the worker's handoff, the
// worker adopts it and then opens its own connections; it runs none of coordination's
// threads and never leaves the rendezvous (coord_stop() stays a no-op there).
typedef struct {
    bool enabled;
    coord_node self;
    char prefix[COORD_PREFIX_MAX];
    redis_endpoint endpoint;
    int outage_timeout_ms; // --redis-outage-timeout
    int heartbeat_ms;      // RUNNER_HEARTBEAT_MS as the supervisor read it
} coord_worker_view;
void coord_worker_view_export(coord_worker_view *out);
// In a worker, before its job runs: take over `view` (the password is registered with
// log_redact(), and the search's trials go through Redis when it is in use).
void coord_worker_view_adopt(const coord_worker_view *view);
// Connection parameters for a new client in another process or thread: host, port and
// password of the Redis in use. Returns false when Redis is off.
bool coord_redis_endpoint(char *host, int host_len, int *port, char *password,
                          int password_len);
// Redis as this node's heartbeat thread sees it. An outage begins with the first call
// that Redis did not answer within its retry window (one redis_lost line) and ends
// with the next answer (one redis_back line).
typedef struct {
    bool enabled;          // Redis in use and the heartbeat running (the supervisor)
    bool up;
    long long outages;     // outages so far
    double outage_seconds; // time spent in them, the current one included
} coord_redis_health;

typedef enum { COORD_PEER_ALIVE, COORD_PEER_DEAD, COORD_PEER_LEFT } coord_peer_state;

// One node of the rendezvous as this node sees it.
typedef struct {
    int node_index;
    char address[COORD_ADDR_MAX];
    coord_peer_state state; // LEFT: it ended normally and said so in its beat
    bool main, self;
    long long last_heartbeat_ms_ago; // since its beat last changed (0 for this node)
} coord_peer_view;

// What coordination shows the rest of the process (the HTTP servers: identity, the
// cluster view of /api/v1/nodes, the runner_redis_* families of /metrics). A copy
// taken under coordination's lock, so any thread may ask at any time: readers pull,
// coordination calls into none of them.
typedef struct coord_snapshot {
    bool enabled;      // Redis in use
    coord_node self;   // job_id is "" before coord_start()
    int n_nodes;       // a multi-node job's rendezvous members; 0 on one node
    coord_peer_view nodes[COORD_MAX_NODES];
    coord_redis_health redis;
} coord_snapshot;
void coord_snapshot_get(coord_snapshot *out);

// Publish one step metric of this node to the capped metrics stream (non-blocking for
// the caller: queued and sent by the heartbeat thread; dropped when Redis is down).
// Not needed for telemetry: on a multi-node job every non-main node exports the new
// points of its telemetry store (runner/telemetry_store.h) to the stream by itself, and
// the main node adds the other nodes' points to its store as run "node<N>/<run>".
void coord_publish_metric(const char *run, const char *tag, int64_t step, double value);
// Publish a control command ("stop" or "checkpoint") to every node of this job
// (what `redis-cli PUBLISH runner:{job}:{attempt}:control stop` does). 0 or exit code.
int coord_publish_control(const char *command);
