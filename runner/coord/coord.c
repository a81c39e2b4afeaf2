// Coordination: Redis, node identity, rendezvous, heartbeats, control, metrics stream.
//
// Threads (all in the supervisor process, each with its own Redis connection because
// a hiredis context is not thread-safe):
//   heartbeat  beats every period, scans the peers' beats, flushes the metrics queue;
//   control    subscribed to runner:{job}:{attempt}:control;
//   fan-in     (main node, several nodes) reads the other nodes' metrics stream.
#include "runner/coord/coord.h"

#include "runner/coord/coord_internal.h"
#include "runner/coord/redis_client.h"
#include "runner/coord/redis_server.h"
#include "runner/coord/trials_redis.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/serve/serve.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    DEFAULT_HEARTBEAT_MS = 5000,
    MISSED_BEATS_DEAD = 3,
    DEFAULT_RENDEZVOUS_TIMEOUT_S = 300,
    DEFAULT_OUTAGE_TIMEOUT_S = 300,
    RENDEZVOUS_POLL_MS = 200,
    KEY_TTL_S = 7 * 24 * 3600, // rendezvous and node keys outlive no job by long
    METRICS_QUEUE = 1024,
    METRICS_STREAM_MAXLEN = 100000,
    LEAVE_WAIT_MS = 10000,
};

typedef struct {
    char run[64];
    char tag[96];
    int64_t step;
    double value;
} queued_metric;

typedef struct {
    int node_index;
    char address[COORD_ADDR_MAX];
    long long last_beat;    // the peer's own counter, last value seen
    long long last_seen_ms; // our monotonic clock when it changed
    bool dead;
    bool left; // stopped normally (its beat says "left")
} peer;

static struct {
    bool started;
    bool enabled; // Redis in use
    coord_node self;
    char prefix[COORD_PREFIX_MAX];
    redis_endpoint ep;
    bool embedded;
    int heartbeat_ms;
    int rendezvous_timeout_s;
    int outage_timeout_ms; // --redis-outage-timeout
    atomic_bool stop;
    atomic_int exit_hint;

    pthread_mutex_t lock; // guards peers, the metrics queue and health
    // Redis as the heartbeat thread sees it (runner_redis_* on /metrics).
    struct {
        bool tracked; // between coord_start() with Redis and coord_stop()
        bool up;
        long long outages;
        long long outage_ms_done;  // outages that ended
        long long down_since_ms;   // the current one's start, 0 when up
    } health;
    peer peers[COORD_MAX_NODES];
    int n_peers;
    queued_metric metrics[METRICS_QUEUE];
    int metrics_head, metrics_len;
    long long metrics_dropped;

    pthread_t heartbeat_thread, control_thread, fanin_thread;
    bool heartbeat_running, control_running, fanin_running;
} coord = {.lock = PTHREAD_MUTEX_INITIALIZER};

// Sleep up to `ms`, waking early when coordination stops.
static void nap(int ms) {
    for (int slept = 0; slept < ms && !atomic_load(&coord.stop); slept += 50)
        timing_sleep_ms(ms - slept < 50 ? ms - slept : 50);
}

// Ask the job to stop with `code` as the exit code; the first request wins.
static void request_stop(int code, const char *reason) {
    int expected = 0;
    atomic_compare_exchange_strong(&coord.exit_hint, &expected, code);
    log_warn("coord_stop_requested", "%s (exit %d)", reason, code);
    signals_request_stop(reason);
}

// ---------------------------------------------------------------------------------
// Identity

static int env_int(const char *name, int fallback, int min, int *out) {
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = fallback;
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > 1000000)
        return error_set(EXIT_USAGE, "%s: expected an integer >= %d, got '%s'", name, min, v);
    *out = (int)n;
    return 0;
}

// The local address that routes to `remote` (no packet is sent: UDP connect only).
static void route_address(const char *remote, char *out, size_t out_len) {
    snprintf(out, out_len, "127.0.0.1");
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(6379)};
    if (inet_pton(AF_INET, remote, &dst.sin_addr) != 1)
        return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &len) == 0)
        inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)out_len);
    close(fd);
}

// The main node's own address (Batch does not tell it): the first IPv4 address of an
// interface that is up and not loopback.
static void interface_address(char *out, size_t out_len) {
    snprintf(out, out_len, "127.0.0.1");
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0)
        return;
    for (struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || (a->ifa_flags & IFF_LOOPBACK) ||
            !(a->ifa_flags & IFF_UP))
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, out, (socklen_t)out_len);
        break;
    }
    freeifaddrs(list);
}

int coord_identity_from_env(coord_node *n) {
    memset(n, 0, sizeof *n);
    int code;
    if ((code = env_int("AWS_BATCH_JOB_ATTEMPT", 1, 1, &n->attempt)) ||
        (code = env_int("AWS_BATCH_JOB_NUM_NODES", 1, 1, &n->num_nodes)) ||
        (code = env_int("AWS_BATCH_JOB_NODE_INDEX", 0, 0, &n->node_index)) ||
        (code = env_int("AWS_BATCH_JOB_MAIN_NODE_INDEX", 0, 0, &n->main_node_index)))
        return code;
    if (n->num_nodes > COORD_MAX_NODES)
        return error_set(EXIT_USAGE, "AWS_BATCH_JOB_NUM_NODES: at most %d nodes, got %d",
                         COORD_MAX_NODES, n->num_nodes);
    if (n->node_index >= n->num_nodes || n->main_node_index >= n->num_nodes)
        return error_set(EXIT_USAGE,
                         "AWS_BATCH_JOB_NODE_INDEX %d / MAIN_NODE_INDEX %d out of range for %d "
                         "nodes", n->node_index, n->main_node_index, n->num_nodes);
    n->is_main = n->node_index == n->main_node_index;

    // Multi-node children carry "<id>#<node index>"; all nodes share the part before '#'.
    const char *id = getenv("AWS_BATCH_JOB_ID");
    if (id && *id) {
        size_t len = strcspn(id, "#");
        if (len >= sizeof n->job_id)
            len = sizeof n->job_id - 1;
        memcpy(n->job_id, id, len);
        n->job_id[len] = '\0';
    } else if (n->num_nodes > 1) {
        return error_set(EXIT_USAGE, "AWS_BATCH_JOB_ID is required when AWS_BATCH_JOB_NUM_NODES > 1");
    } else {
        char host[64] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(n->job_id, sizeof n->job_id, "local-%.60s-%d", host, (int)getpid());
    }
    // Key names: keep them free of spaces, braces and control characters.
    for (char *c = n->job_id; *c; c++)
        if (*c <= ' ' || *c == '{' || *c == '}' || *c == ':' || *c == 0x7f)
            *c = '_';

    const char *main_addr = getenv("AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS");
    if (n->is_main || !main_addr || !*main_addr) {
        if (!n->is_main)
            return error_set(EXIT_USAGE, "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS is unset "
                                         "on node %d (not the main node)", n->node_index);
        snprintf(n->main_address, sizeof n->main_address, "127.0.0.1");
    } else {
        snprintf(n->main_address, sizeof n->main_address, "%s", main_addr);
    }
    const char *own = getenv("RUNNER_NODE_ADDRESS");
    if (own && *own)
        snprintf(n->node_address, sizeof n->node_address, "%s", own);
    else if (n->num_nodes == 1)
        snprintf(n->node_address, sizeof n->node_address, "127.0.0.1");
    else if (!n->is_main)
        route_address(n->main_address, n->node_address, sizeof n->node_address);
    else {
        // The source address of the default route (what Batch reports as this node's
        // private address), else the first interface's.
        route_address("192.0.2.1", n->node_address, sizeof n->node_address);
        if (strcmp(n->node_address, "127.0.0.1") == 0)
            interface_address(n->node_address, sizeof n->node_address);
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// Redis endpoint

static bool loopback_only(const char *bind) {
    char copy[128];
    snprintf(copy, sizeof copy, "%s", bind);
    char *save = NULL;
    for (char *a = strtok_r(copy, " ", &save); a; a = strtok_r(NULL, " ", &save))
        if (strncmp(a, "127.", 4) != 0 && strcmp(a, "::1") != 0 && strcmp(a, "localhost") != 0)
            return false;
    return true;
}

static void generate_password(char *out, size_t out_len) {
    unsigned char raw[24];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        // getrandom never fails for 24 bytes after boot; mix the clock in as a fallback.
        long long t = timing_now_ms() ^ ((long long)getpid() << 20);
        for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (unsigned char)(t >> (i % 8 * 8)) ^ (unsigned char)(i * 131);
    }
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    for (; i < sizeof raw && 2 * i + 2 < out_len; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * i] = '\0';
}

static int setup_endpoint(const runner_config *cfg) {
    const char *env_password = getenv("REDIS_PASSWORD");
    if (env_password && *env_password)
        log_redact(env_password);
    if (strcmp(cfg->redis, "embedded") != 0) {
        int code = redis_endpoint_parse(cfg->redis, &coord.ep);
        if (code)
            return code;
        if (!coord.ep.password[0] && env_password && *env_password)
            snprintf(coord.ep.password, sizeof coord.ep.password, "%s", env_password);
        return 0;
    }
    coord.embedded = true;
    int port = cfg->redis_port > 0 ? cfg->redis_port : 6379;
    coord.ep.port = port;
    if (!coord.self.is_main) {
        // The main node runs the server; this node connects to it with the shared password.
        snprintf(coord.ep.host, sizeof coord.ep.host, "%s", coord.self.main_address);
        if (env_password && *env_password)
            snprintf(coord.ep.password, sizeof coord.ep.password, "%s", env_password);
        else
            return error_set(EXIT_USAGE, "REDIS_PASSWORD is required on a multi-node job: "
                                         "the nodes share the embedded Redis of the main node");
        return 0;
    }
    snprintf(coord.ep.host, sizeof coord.ep.host, "127.0.0.1");
    const char *bind_env = getenv("RUNNER_REDIS_BIND");
    char bind[128];
    // Other nodes must reach the main node; a password set by the job definition means
    // the operator wants it reachable (docker -p 6379:6379) too.
    if (bind_env && *bind_env)
        snprintf(bind, sizeof bind, "%s", bind_env);
    else if (coord.self.num_nodes > 1 || (env_password && *env_password))
        snprintf(bind, sizeof bind, "0.0.0.0");
    else
        snprintf(bind, sizeof bind, "127.0.0.1");
    if (env_password && *env_password) {
        if (strlen(env_password) >= sizeof coord.ep.password ||
            strpbrk(env_password, "\"\\\r\n"))
            return error_set(EXIT_USAGE, "REDIS_PASSWORD: at most %zu characters, without quotes, "
                                         "backslashes or line breaks",
                             sizeof coord.ep.password - 1);
        snprintf(coord.ep.password, sizeof coord.ep.password, "%s", env_password);
    } else if (loopback_only(bind)) {
        generate_password(coord.ep.password, sizeof coord.ep.password);
        log_redact(coord.ep.password);
    } else {
        return error_set(EXIT_USAGE, "embedded Redis bound to '%s' needs REDIS_PASSWORD "
                                     "(a password is required off loopback)", bind);
    }
    return redis_server_start(bind, port, coord.ep.password);
}

// ---------------------------------------------------------------------------------
// Rendezvous (torch elastic's semantics: join until max nodes, or min nodes plus a
// last-call wait; the state changes only inside one Lua script, so it is a
// compare-and-set; a node arriving after the close is refused).

static const char RENDEZVOUS_LUA[] =
    "local state = redis.call('HGET', KEYS[1], 'state') or 'joining'\n"
    "local member = redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1\n"
    "if state == 'closed' then\n"
    "  if member then return 'closed' else return 'late' end\n"
    "end\n"
    "if not member then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end\n"
    "local n = redis.call('HLEN', KEYS[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local min, max = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "if n >= max then state = 'closed'\n"
    "elseif n >= min then\n"
    "  local lc = redis.call('HGET', KEYS[1], 'last_call')\n"
    "  if not lc then redis.call('HSET', KEYS[1], 'last_call', now + tonumber(ARGV[5]))\n"
    "  elseif now >= tonumber(lc) then state = 'closed' end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', state)\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[6])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[6])\n"
    "return state\n";

static int compare_peers(const void *a, const void *b) {
    const peer *x = a, *y = b;
    return x->node_index - y->node_index;
}

// Milliseconds left until `deadline` (0 when it passed).
static int time_left(long long deadline) {
    long long left = deadline - timing_now_ms();
    return left > 0 ? (int)left : 0;
}

// Join by `deadline` (the join's, shared with the wait for Redis): each command retries
// no longer than what is left of it.
static int rendezvous(redis_client *rc, long long deadline) {
    int min_nodes = 0, last_call_ms = 0;
    int code;
    if ((code = env_int("RUNNER_RDZV_MIN_NODES", coord.self.num_nodes, 1, &min_nodes)) ||
        (code = env_int("RUNNER_RDZV_LAST_CALL_MS", 2000, 0, &last_call_ms)))
        return code;
    if (min_nodes > coord.self.num_nodes)
        min_nodes = coord.self.num_nodes;
    char state_key[COORD_PREFIX_MAX + 16], members_key[COORD_PREFIX_MAX + 24];
    snprintf(state_key, sizeof state_key, "%srdzv", coord.prefix);
    snprintf(members_key, sizeof members_key, "%srdzv:members", coord.prefix);
    log_info("rendezvous_join", "node %d of %d (min %d), timeout %d s", coord.self.node_index,
             coord.self.num_nodes, min_nodes, coord.rendezvous_timeout_s);
    for (;;) {
        redis_client_set_retry_ms(rc, time_left(deadline));
        redisReply *r = redis_client_command(
            rc, "EVAL %s 2 %s %s %d %s %d %d %d %d", RENDEZVOUS_LUA, state_key, members_key,
            coord.self.node_index, coord.self.node_address, min_nodes, coord.self.num_nodes,
            last_call_ms, KEY_TTL_S);
        if (!r)
            return error_set(EXIT_COORDINATION, "rendezvous: %s", error_message());
        char state[16] = "";
        if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
            snprintf(state, sizeof state, "%s", r->str);
        else if (r->type == REDIS_REPLY_ERROR) {
            code = error_set(EXIT_COORDINATION, "rendezvous script: %s", r->str);
            freeReplyObject(r);
            return code;
        }
        freeReplyObject(r);
        if (strcmp(state, "late") == 0)
            return error_set(EXIT_COORDINATION,
                             "rendezvous: node %d arrived after the rendezvous closed",
                             coord.self.node_index);
        if (strcmp(state, "closed") == 0)
            break;
        if (atomic_load(&coord.stop) || signals_stop_requested())
            return error_set(EXIT_INTERRUPTED, "rendezvous: stop requested while joining");
        if (timing_now_ms() >= deadline)
            return error_set(EXIT_COORDINATION,
                             "rendezvous: timed out after %d s waiting for %d nodes "
                             "(--rendezvous-timeout)", coord.rendezvous_timeout_s, min_nodes);
        timing_sleep_ms(RENDEZVOUS_POLL_MS);
    }

    redis_client_set_retry_ms(rc, time_left(deadline));
    redisReply *r = redis_client_command(rc, "HGETALL %s", members_key);
    if (!r)
        return error_set(EXIT_COORDINATION, "rendezvous: %s", error_message());
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return error_set(EXIT_COORDINATION, "rendezvous: members vanished (Redis restarted?)");
    }
    pthread_mutex_lock(&coord.lock);
    coord.n_peers = 0;
    for (size_t i = 0; i + 1 < r->elements && coord.n_peers < COORD_MAX_NODES; i += 2) {
        peer *p = &coord.peers[coord.n_peers++];
        memset(p, 0, sizeof *p);
        p->node_index = atoi(r->element[i]->str);
        snprintf(p->address, sizeof p->address, "%s", r->element[i + 1]->str);
        p->last_seen_ms = timing_now_ms();
        p->last_beat = -1;
    }
    freeReplyObject(r);
    qsort(coord.peers, (size_t)coord.n_peers, sizeof(peer), compare_peers);
    // Ranks in node-index order (the supervisor numbers its workers the same way:
    // rank = node index * workers per node + local rank when every node joined).
    coord.self.rank = -1;
    for (int i = 0; i < coord.n_peers; i++)
        if (coord.peers[i].node_index == coord.self.node_index)
            coord.self.rank = i;
    int n_peers = coord.n_peers;
    pthread_mutex_unlock(&coord.lock);
    if (coord.self.rank < 0)
        return error_set(EXIT_COORDINATION, "rendezvous: this node is not among the members");
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "node_index", coord.self.node_index);
    cJSON_AddNumberToObject(f, "rank", coord.self.rank);
    cJSON_AddNumberToObject(f, "nodes", n_peers);
    cJSON_AddStringToObject(f, "address", coord.self.node_address);
    log_fields(LOG_INFO, "rendezvous_done", f);

    cJSON *node = cJSON_CreateObject();
    cJSON_AddNumberToObject(node, "rank", coord.self.rank);
    cJSON_AddStringToObject(node, "address", coord.self.node_address);
    cJSON_AddNumberToObject(node, "pid", getpid());
    char *json = cJSON_PrintUnformatted(node);
    cJSON_Delete(node);
    code = redis_client_ok(rc, "HSET %snodes %d %s", coord.prefix, coord.self.node_index,
                           json ? json : "{}");
    free(json);
    if (code == 0)
        code = redis_client_ok(rc, "EXPIRE %snodes %d", coord.prefix, KEY_TTL_S);
    return code;
}

// ---------------------------------------------------------------------------------
// Heartbeats: SET hb:{node} {counter} PX 3*period every period; peers are scanned on
// every tick with our own clock, so a Redis restart (keys gone for a moment) is not a
// death, and expiry notifications (not timely) are not needed.

// Send the queued step metrics; 0, or EXIT_COORDINATION when Redis did not answer
// (the metric in hand is dropped).
static int flush_metrics(redis_client *rc) {
    for (;;) {
        queued_metric m;
        pthread_mutex_lock(&coord.lock);
        bool have = coord.metrics_len > 0;
        if (have) {
            m = coord.metrics[coord.metrics_head];
            coord.metrics_head = (coord.metrics_head + 1) % METRICS_QUEUE;
            coord.metrics_len--;
        }
        pthread_mutex_unlock(&coord.lock);
        if (!have)
            return 0;
        redisReply *r = redis_client_command(
            rc, "XADD %smetrics MAXLEN ~ %d * node %d run %s tag %s step %lld value %.9g",
            coord.prefix, METRICS_STREAM_MAXLEN, coord.self.node_index, m.run, m.tag,
            (long long)m.step, m.value);
        if (!r)
            return EXIT_COORDINATION;
        freeReplyObject(r);
    }
}

// The cluster view of /api/v1/nodes and the dashboard (multi-node jobs; one node shows
// its own workers and GPUs instead).
static void publish_nodes(void) {
    if (coord.self.num_nodes < 2)
        return;
    cJSON *nodes = coord_nodes_json();
    serve_set_nodes(nodes);
    cJSON_Delete(nodes);
}

// Read every peer's beat and mark the silent ones dead; 0, or EXIT_COORDINATION when
// Redis did not answer.
static int scan_peers(redis_client *rc, long long now) {
    pthread_mutex_lock(&coord.lock);
    int n = coord.n_peers;
    pthread_mutex_unlock(&coord.lock);
    if (n <= 1)
        return 0;
    // One MGET for all beats.
    const char *argv[COORD_MAX_NODES + 1];
    size_t lens[COORD_MAX_NODES + 1];
    char keys[COORD_MAX_NODES][COORD_PREFIX_MAX + 16];
    argv[0] = "MGET";
    lens[0] = 4;
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%shb:%d", coord.prefix, coord.peers[i].node_index);
        argv[i + 1] = keys[i];
        lens[i + 1] = strlen(keys[i]);
    }
    redisReply *r = redis_client_argv(rc, n + 1, argv, lens);
    if (!r)
        return EXIT_COORDINATION;
    if (r->type == REDIS_REPLY_ARRAY && (int)r->elements == n) {
        int dead_index = -1;
        long long quiet_ms = 0;
        bool changed = false;
        pthread_mutex_lock(&coord.lock);
        for (int i = 0; i < n; i++) {
            peer *p = &coord.peers[i];
            redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING && strcmp(e->str, "left") == 0) {
                changed = changed || !p->left;
                p->left = true; // finished and gone on purpose: not a death
            } else if (e->type == REDIS_REPLY_STRING) {
                long long beat = atoll(e->str);
                if (beat != p->last_beat) {
                    p->last_beat = beat;
                    p->last_seen_ms = now;
                }
            }
            if (p->node_index != coord.self.node_index && !p->dead && !p->left &&
                now - p->last_seen_ms > (long long)MISSED_BEATS_DEAD * coord.heartbeat_ms) {
                p->dead = true;
                dead_index = p->node_index;
                quiet_ms = now - p->last_seen_ms;
            }
        }
        pthread_mutex_unlock(&coord.lock);
        if (changed || dead_index >= 0)
            publish_nodes();
        if (dead_index >= 0) {
            char reason[160];
            snprintf(reason, sizeof reason, "node %d missed %d heartbeats (silent %lld ms)",
                     dead_index, MISSED_BEATS_DEAD, quiet_ms);
            request_stop(EXIT_PEER_LOST, reason);
        }
    }
    freeReplyObject(r);
    return 0;
}

// Peers get a fresh grace period after we ourselves could not see Redis.
static void forgive_peers(long long now) {
    pthread_mutex_lock(&coord.lock);
    for (int i = 0; i < coord.n_peers; i++)
        coord.peers[i].last_seen_ms = now;
    pthread_mutex_unlock(&coord.lock);
}

// The heartbeat thread's view of Redis.
typedef struct {
    redis_client *rc;
    bool multi;                  // a multi-node job: stop when Redis stays away
    int retry_ms;                // one call's retry window while Redis answers
    long long counter, next_beat;
    long long unreachable_since; // when the first failed call began (0: Redis answers)
    long reconnects;
} heartbeat;

// A beat lives as long as a dead node may be silent, 3 periods.
static long long beat_ttl_ms(void) { return (long long)MISSED_BEATS_DEAD * coord.heartbeat_ms; }

// How long Redis may stay away. A multi-node job: as long as a dead node may be silent
// (3 beats, or the outage timeout when that is shorter): without Redis no node sees its
// peers, and a node that died meanwhile would never be noticed. A single node needs
// Redis for nothing but the search's trial queue and the control channel: it waits
// --redis-outage-timeout, long enough for a managed Redis to fail over.
static long long outage_budget_ms(const heartbeat *h) {
    long long timeout = (long long)coord.outage_timeout_ms;
    return h->multi && beat_ttl_ms() < timeout ? beat_ttl_ms() : timeout;
}

// Redis answered again through a reconnection inside one call's retry window (e.g. the
// embedded server restarted within a fraction of a second): no outage, but the server
// may have come back empty, and the others need a period to write their beats again;
// their silence meanwhile is not a death.
static void note_reconnects(heartbeat *h) {
    if (redis_client_reconnects(h->rc) != h->reconnects) {
        h->reconnects = redis_client_reconnects(h->rc);
        log_info("redis_reconnected", "%s:%d answered again within one retry window",
                 coord.ep.host, coord.ep.port);
        forgive_peers(timing_now_ms());
    }
}

// Write this node's beat, then read the others'.
static int beat(heartbeat *h) {
    int code = redis_client_ok(h->rc, "SET %shb:%d %lld PX %lld", coord.prefix,
                               coord.self.node_index, ++h->counter, beat_ttl_ms());
    if (code == 0)
        code = scan_peers(h->rc, timing_now_ms());
    return code;
}

// Between beats: the peers' beats, the metrics queue, this node's telemetry. Stops at
// the first failure, so an outage costs one retry window per round, not three.
static int chores(heartbeat *h, long long now) {
    int code = scan_peers(h->rc, now);
    if (code == 0)
        code = flush_metrics(h->rc);
    if (code == 0 && h->multi && !coord.self.is_main)
        code = coord_metrics_export(h->rc);
    return code;
}

// Account for one round of calls that began at `started`. Any failed call starts (or
// continues) the outage: one redis_lost line, and one redis_back when a call succeeds
// again, however many retries and clients there were in between. The next calls retry
// no longer than what is left of the budget, so the stop comes on time.
static void track_outage(heartbeat *h, long long started, bool failed) {
    long long now = timing_now_ms();
    if (!failed) {
        if (h->unreachable_since) {
            long long lasted = now - h->unreachable_since;
            cJSON *f = cJSON_CreateObject();
            cJSON_AddNumberToObject(f, "outage_ms", (double)lasted);
            cJSON_AddStringToObject(f, "msg", "Redis answers again");
            log_fields(LOG_INFO, "redis_back", f);
            pthread_mutex_lock(&coord.lock);
            coord.health.up = true;
            coord.health.down_since_ms = 0;
            coord.health.outage_ms_done += lasted;
            pthread_mutex_unlock(&coord.lock);
            h->unreachable_since = 0;
            h->reconnects = redis_client_reconnects(h->rc);
            forgive_peers(now);
            redis_client_set_retry_ms(h->rc, h->retry_ms);
        }
        note_reconnects(h);
        return;
    }
    if (!h->unreachable_since) {
        h->unreachable_since = started;
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "budget_ms", (double)outage_budget_ms(h));
        cJSON_AddStringToObject(f, "msg", error_message());
        log_fields(LOG_WARN, "redis_lost", f);
        pthread_mutex_lock(&coord.lock);
        coord.health.up = false;
        coord.health.down_since_ms = started;
        coord.health.outages++;
        pthread_mutex_unlock(&coord.lock);
    }
    error_clear();
    long long left = h->unreachable_since + outage_budget_ms(h) - now;
    if (left < 1)
        left = 1;
    redis_client_set_retry_ms(h->rc, left < h->retry_ms ? (int)left : h->retry_ms);
}

// Redis stayed away for the whole budget: the job stops and exits 82.
static bool outage_too_long(const heartbeat *h) {
    return h->unreachable_since && timing_now_ms() - h->unreachable_since >= outage_budget_ms(h);
}

// One turn of the loop: the beat when due, else the chores while Redis answers.
// Returns true when the job must stop.
static bool heartbeat_turn(heartbeat *h) {
    long long now = timing_now_ms();
    if (now >= h->next_beat) {
        h->next_beat = now + coord.heartbeat_ms;
        track_outage(h, now, beat(h) != 0);
    } else if (!h->unreachable_since) {
        track_outage(h, now, chores(h, now) != 0);
    }
    return outage_too_long(h);
}

static void *heartbeat_main(void *arg) {
    (void)arg;
    heartbeat h = {.multi = coord.self.num_nodes > 1, .retry_ms = coord.heartbeat_ms};
    // One call retries for at most a beat: the outage budget is counted here, across
    // calls, and a retry must not overrun it.
    h.rc = redis_client_new(&coord.ep, h.retry_ms);
    if (!h.rc)
        return NULL;
    redis_client_set_stop_flag(h.rc, &coord.stop);
    int tick = coord.heartbeat_ms / 5 < 200 ? coord.heartbeat_ms / 5 : 200;
    if (tick < 20)
        tick = 20;
    while (!atomic_load(&coord.stop)) {
        if (heartbeat_turn(&h)) {
            char reason[160];
            if (h.multi && outage_budget_ms(&h) == beat_ttl_ms())
                snprintf(reason, sizeof reason, "Redis unreachable for %lld ms (%d heartbeats) "
                         "on a multi-node job", outage_budget_ms(&h), MISSED_BEATS_DEAD);
            else
                snprintf(reason, sizeof reason, "Redis unreachable for %lld s "
                         "(--redis-outage-timeout)", outage_budget_ms(&h) / 1000);
            request_stop(EXIT_COORDINATION, reason);
            break;
        }
        nap(tick);
    }
    // The last points of a node that ends normally still reach the main node; one try
    // each: never hold the exit up when Redis is gone.
    if (!h.unreachable_since) {
        redis_client_set_retry_ms(h.rc, 0);
        if (flush_metrics(h.rc) == 0 && h.multi && !coord.self.is_main)
            coord_metrics_export(h.rc);
        error_clear();
    }
    redis_client_free(h.rc);
    return NULL;
}

// ---------------------------------------------------------------------------------
// Control channel: "stop" → everyone checkpoints and exits 80; "checkpoint" → everyone
// checkpoints and goes on. Plain words or {"command": "stop"}.

static void handle_control(const char *msg, size_t len) {
    char command[32] = "";
    if (len > 0 && msg[0] == '{') {
        cJSON *j = cJSON_ParseWithLength(msg, len);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "command");
        if (cJSON_IsString(c))
            snprintf(command, sizeof command, "%s", c->valuestring);
        cJSON_Delete(j);
    } else {
        snprintf(command, sizeof command, "%.*s", (int)(len < 31 ? len : 31), msg);
        command[strcspn(command, " \r\n")] = '\0';
    }
    if (strcmp(command, "stop") == 0) {
        request_stop(EXIT_INTERRUPTED, "stop command on the control channel");
    } else if (strcmp(command, "checkpoint") == 0) {
        log_info("coord_checkpoint_requested", "checkpoint command on the control channel");
        signals_request_checkpoint();
    } else {
        log_warn("coord_control_unknown", "ignored control message '%.*s'",
                 (int)(len < 64 ? len : 64), msg);
    }
}

static void *control_main(void *arg) {
    (void)arg;
    redis_client *rc = redis_client_new(&coord.ep, 2000);
    if (!rc)
        return NULL;
    redis_client_set_stop_flag(rc, &coord.stop);
    char channel[COORD_PREFIX_MAX + 16];
    snprintf(channel, sizeof channel, "%scontrol", coord.prefix);
    while (!atomic_load(&coord.stop)) {
        int connected = redis_client_connect(rc);
        if (connected != 0) {
            error_clear();
            nap(500);
            continue;
        }
        redisContext *c = redis_client_context(rc);
        redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
        if (r)
            freeReplyObject(r);
        if (!r) {
            redis_client_drop(rc);
            continue;
        }
        // A subscribed connection only reads: poll its socket so stop is noticed.
        while (!atomic_load(&coord.stop)) {
            void *reply = NULL;
            int status = redisGetReplyFromReader(c, &reply);
            if (reply) {
                redisReply *m = reply;
                if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                    m->element[0]->type == REDIS_REPLY_STRING &&
                    strcmp(m->element[0]->str, "message") == 0)
                    handle_control(m->element[2]->str, m->element[2]->len);
                freeReplyObject(m);
            }
            if (status != REDIS_OK)
                break;
            if (reply)
                continue;
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            int ready = poll(&pfd, 1, 200);
            if (ready < 0 && errno != EINTR)
                break;
            if (ready > 0) {
                status = redisBufferRead(c);
                if (status != REDIS_OK)
                    break;
            }
        }
        redis_client_drop(rc);
    }
    redis_client_free(rc);
    return NULL;
}

// ---------------------------------------------------------------------------------
// Public interface

bool coord_enabled(void) { return coord.enabled; }
const coord_node *coord_self(void) { return &coord.self; }
const char *coord_prefix(void) { return coord.prefix; }
int coord_exit_code_hint(void) { return atomic_load(&coord.exit_hint); }
int coord_heartbeat_ms(void) { return coord.heartbeat_ms; }
int coord_outage_timeout_ms(void) {
    return coord.outage_timeout_ms > 0 ? coord.outage_timeout_ms : DEFAULT_OUTAGE_TIMEOUT_S * 1000;
}

int coord_worker_redis_wait_ms(void) {
    int period = coord.heartbeat_ms > 0 ? coord.heartbeat_ms : DEFAULT_HEARTBEAT_MS;
    return coord_outage_timeout_ms() + 2 * period + 2000;
}

void coord_redis_health_get(coord_redis_health *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&coord.lock);
    out->enabled = coord.health.tracked;
    out->up = coord.health.up;
    out->outages = coord.health.outages;
    long long ms = coord.health.outage_ms_done;
    if (coord.health.down_since_ms)
        ms += timing_now_ms() - coord.health.down_since_ms;
    pthread_mutex_unlock(&coord.lock);
    out->outage_seconds = (double)ms / 1000.0;
}

bool coord_redis_endpoint(char *host, int host_len, int *port, char *password,
                          int password_len) {
    if (!coord.enabled)
        return false;
    snprintf(host, (size_t)host_len, "%s", coord.ep.host);
    *port = coord.ep.port;
    snprintf(password, (size_t)password_len, "%s", coord.ep.password);
    return true;
}

const redis_endpoint *coord_endpoint(void) { return coord.enabled ? &coord.ep : NULL; }

void coord_worker_view_export(coord_worker_view *out) {
    memset(out, 0, sizeof *out);
    out->enabled = coord.enabled;
    out->self = coord.self;
    snprintf(out->prefix, sizeof out->prefix, "%s", coord.prefix);
    out->outage_timeout_ms = coord_outage_timeout_ms();
    out->heartbeat_ms = coord.heartbeat_ms;
    if (coord.enabled)
        out->endpoint = coord.ep;
}

static int redis_trials_factory(trial_source **out, const trial_spec *specs, int n,
                                const asha_config *asha, const char *state_path, int rank,
                                int world_size);

void coord_worker_view_adopt(const coord_worker_view *view) {
    coord.enabled = view->enabled;
    coord.self = view->self;
    snprintf(coord.prefix, sizeof coord.prefix, "%s", view->prefix);
    coord.ep = view->endpoint;
    coord.outage_timeout_ms = view->outage_timeout_ms;
    coord.heartbeat_ms = view->heartbeat_ms;
    log_redact(coord.ep.password);
    trials_set_factory(coord.enabled ? redis_trials_factory : NULL);
}

void coord_publish_metric(const char *run, const char *tag, int64_t step, double value) {
    if (!coord.enabled)
        return;
    pthread_mutex_lock(&coord.lock);
    if (coord.metrics_len == METRICS_QUEUE) {
        coord.metrics_head = (coord.metrics_head + 1) % METRICS_QUEUE; // drop the oldest
        coord.metrics_len--;
        coord.metrics_dropped++;
    }
    queued_metric *m = &coord.metrics[(coord.metrics_head + coord.metrics_len) % METRICS_QUEUE];
    snprintf(m->run, sizeof m->run, "%s", run);
    snprintf(m->tag, sizeof m->tag, "%s", tag);
    m->step = step;
    m->value = value;
    coord.metrics_len++;
    pthread_mutex_unlock(&coord.lock);
}

int coord_publish_control(const char *command) {
    if (!coord.enabled)
        return error_set(EXIT_USAGE, "control: Redis is off (--redis off)");
    redis_client *rc = redis_client_new(&coord.ep, 2000);
    if (!rc)
        return error_set(EXIT_INTERNAL, "control: out of memory");
    int code = redis_client_ok(rc, "PUBLISH %scontrol %s", coord.prefix, command);
    redis_client_free(rc);
    return code;
}

cJSON *coord_nodes_json(void) {
    cJSON *arr = cJSON_CreateArray();
    long long now = timing_now_ms();
    pthread_mutex_lock(&coord.lock);
    for (int i = 0; i < coord.n_peers; i++) {
        const peer *p = &coord.peers[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "node", p->node_index);
        cJSON_AddNumberToObject(o, "node_index", p->node_index);
        cJSON_AddStringToObject(o, "state", p->dead ? "dead" : p->left ? "left" : "alive");
        cJSON_AddStringToObject(o, "address", p->address);
        cJSON_AddBoolToObject(o, "main", p->node_index == coord.self.main_node_index);
        cJSON_AddBoolToObject(o, "self", p->node_index == coord.self.node_index);
        cJSON_AddBoolToObject(o, "alive", !p->dead && !p->left);
        cJSON_AddBoolToObject(o, "left", p->left);
        cJSON_AddNumberToObject(o, "last_heartbeat_ms_ago",
                                p->node_index == coord.self.node_index ? 0
                                                                       : (double)(now - p->last_seen_ms));
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&coord.lock);
    return arr;
}

static void stop_at_exit(void) { coord_stop(); }

// The pipeline's search shares its trials through Redis when the job has several
// workers (runner/job/trials.h: trials_set_factory).
static int redis_trials_factory(trial_source **out, const trial_spec *specs, int n,
                                const asha_config *asha, const char *state_path, int rank,
                                int world_size) {
    (void)world_size;
    return trials_redis_create_for_job(out, specs, n, asha, state_path, rank);
}

int coord_start(const runner_config *cfg) {
    if (coord.started)
        return 0;
    int code = coord_identity_from_env(&coord.self);
    if (code)
        return code;
    snprintf(coord.prefix, sizeof coord.prefix, "runner:%s:%d:", coord.self.job_id,
             coord.self.attempt);
    coord.rendezvous_timeout_s =
        cfg->rendezvous_timeout_s > 0 ? cfg->rendezvous_timeout_s : DEFAULT_RENDEZVOUS_TIMEOUT_S;
    coord.outage_timeout_ms = (cfg->redis_outage_timeout_s > 0 ? cfg->redis_outage_timeout_s
                                                                : DEFAULT_OUTAGE_TIMEOUT_S) * 1000;
    if ((code = env_int("RUNNER_HEARTBEAT_MS", DEFAULT_HEARTBEAT_MS, 50, &coord.heartbeat_ms)))
        return code;
    atomic_store(&coord.stop, false);
    atomic_store(&coord.exit_hint, 0);
    coord.started = true;
    runner_on_exit(stop_at_exit);

    if (strcmp(cfg->redis, "off") == 0 || cfg->redis[0] == '\0') {
        if (coord.self.num_nodes > 1)
            return error_set(EXIT_USAGE, "--redis off: a multi-node job (AWS_BATCH_JOB_NUM_NODES=%d) "
                                         "coordinates through Redis", coord.self.num_nodes);
        coord.self.rank = 0;
        log_info("coord_off", "single node, Redis off");
        return 0;
    }
    if ((code = setup_endpoint(cfg))) {
        // One node needs no Redis to train: when its embedded server cannot start (the
        // port is taken, no redis-server on PATH) it goes on without one.
        if (code == EXIT_COORDINATION && coord.embedded && coord.self.num_nodes == 1) {
            log_warn("coord_redis_unavailable", "%s; going on without Redis (single node)",
                     error_message());
            error_clear();
            coord.self.rank = 0;
            return 0;
        }
        return code;
    }
    coord.enabled = true;

    // One deadline for the whole join: the wait for the main node's server and the
    // rendezvous share --rendezvous-timeout, so a join never takes twice as long.
    long long join_deadline = timing_now_ms() + (long long)coord.rendezvous_timeout_s * 1000;
    redis_client *rc = redis_client_new(&coord.ep, coord.rendezvous_timeout_s * 1000);
    if (!rc)
        return error_set(EXIT_INTERNAL, "coord: out of memory");
    redis_client_set_stop_flag(rc, &coord.stop);
    redis_client_set_stop_check(rc, signals_stop_requested);
    code = redis_client_connect(rc);
    if (code && signals_stop_requested())
        code = error_set(EXIT_INTERRUPTED, "%s while waiting for Redis",
                         signals_stop_reason() ? signals_stop_reason() : "stop");
    if (code == 0)
        code = rendezvous(rc, join_deadline);
    redis_client_free(rc);
    if (code)
        return code;

    pthread_mutex_lock(&coord.lock);
    memset(&coord.health, 0, sizeof coord.health);
    coord.health.tracked = true;
    coord.health.up = true; // it answered the join
    pthread_mutex_unlock(&coord.lock);
    trials_set_factory(redis_trials_factory);
    publish_nodes();
    if (pthread_create(&coord.heartbeat_thread, NULL, heartbeat_main, NULL) == 0)
        coord.heartbeat_running = true;
    if (pthread_create(&coord.control_thread, NULL, control_main, NULL) == 0)
        coord.control_running = true;
    if (coord.self.is_main && coord.self.num_nodes > 1 &&
        pthread_create(&coord.fanin_thread, NULL, coord_fanin_main, NULL) == 0)
        coord.fanin_running = true;
    if (!coord.heartbeat_running || !coord.control_running)
        return error_set(EXIT_INTERNAL, "coord: cannot start its threads");
    return 0;
}

bool coord_stopping(void) { return atomic_load(&coord.stop); }

// Leave the job. A node that ends normally says so in its beat ("left"), so the others
// do not take it for dead; a node that stops on a failure just goes quiet. The main
// node keeps the embedded server up until the others left (or LEAVE_WAIT_MS).
static void leave(void) {
    bool clean = atomic_load(&coord.exit_hint) == 0 && !signals_stop_requested();
    redis_client *rc = redis_client_new(&coord.ep, 0);
    if (!rc)
        return;
    if (clean) {
        redisReply *r = redis_client_command(rc, "SET %shb:%d left EX %d", coord.prefix,
                                             coord.self.node_index, KEY_TTL_S);
        if (r)
            freeReplyObject(r);
    }
    if (clean && coord.embedded && coord.self.is_main && coord.n_peers > 1) {
        long long deadline = timing_now_ms() + LEAVE_WAIT_MS;
        while (timing_now_ms() < deadline) {
            int gone = 0;
            for (int i = 0; i < coord.n_peers; i++) {
                redisReply *r = redis_client_command(rc, "GET %shb:%d", coord.prefix,
                                                     coord.peers[i].node_index);
                if (!r)
                    break;
                if (r->type == REDIS_REPLY_NIL ||
                    (r->type == REDIS_REPLY_STRING && strcmp(r->str, "left") == 0))
                    gone++;
                freeReplyObject(r);
            }
            if (gone == coord.n_peers)
                break;
            timing_sleep_ms(100);
        }
    }
    redis_client_free(rc);
    error_clear();
}

void coord_stop(void) {
    if (!coord.started)
        return;
    // Runs as an exit hook: the reason of the exit must survive what stopping does.
    int saved_code = error_code();
    char saved_reason[1024];
    snprintf(saved_reason, sizeof saved_reason, "%s", error_message());
    atomic_store(&coord.stop, true);
    if (coord.heartbeat_running)
        pthread_join(coord.heartbeat_thread, NULL);
    if (coord.control_running)
        pthread_join(coord.control_thread, NULL);
    if (coord.fanin_running)
        pthread_join(coord.fanin_thread, NULL);
    coord.heartbeat_running = coord.control_running = coord.fanin_running = false;
    pthread_mutex_lock(&coord.lock);
    coord.health.tracked = false;
    pthread_mutex_unlock(&coord.lock);
    if (coord.enabled)
        leave();
    if (coord.embedded && coord.self.is_main)
        redis_server_stop();
    trials_set_factory(NULL);
    coord.enabled = false;
    coord.started = false;
    error_clear();
    if (saved_code)
        error_set(saved_code, "%s", saved_reason);
}
