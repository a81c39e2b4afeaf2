// Coordination: Redis, rendezvous, the public interface and its snapshots.
//
// Threads (all in the supervisor process, each with its own Redis connection because
// a hiredis context is not thread-safe):
//   heartbeat  beats every period, scans the peers' beats, flushes the metrics queue,
//              judges Redis outages (coord_heartbeat.c);
//   control    subscribed to runner:{job}:{attempt}:control (coord_control.c);
//   fan-in     (main node, several nodes) reads the other nodes' metrics stream
//              (coord_metrics.c).
// Other areas read coordination's state through coord_snapshot_get(); coordination
// calls into none of them (the HTTP servers, runner/serve, read snapshots).
#include "runner/coord/coord.h"

#include "runner/coord/coord_internal.h"
#include "runner/coord/redis_client.h"
#include "runner/coord/redis_server.h"
#include "runner/coord/trials_redis.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

enum {
    DEFAULT_HEARTBEAT_MS = 5000,
    DEFAULT_RENDEZVOUS_TIMEOUT_S = 300,
    DEFAULT_OUTAGE_TIMEOUT_S = 300,
    RENDEZVOUS_POLL_MS = 200,
    KEY_TTL_S = 7 * 24 * 3600, // rendezvous and node keys outlive no job by long
    LEAVE_WAIT_MS = 10000,
};

coord_state coord = {.lock = PTHREAD_MUTEX_INITIALIZER};

void coord_nap(int ms) {
    for (int slept = 0; slept < ms && !atomic_load(&coord.stop); slept += 50)
        timing_sleep_ms(ms - slept < 50 ? ms - slept : 50);
}

void coord_request_stop(int code, const char *reason) {
    int expected = 0;
    atomic_compare_exchange_strong(&coord.exit_hint, &expected, code);
    log_warn("coord_stop_requested", "%s (exit %d)", reason, code);
    signals_request_stop(reason);
}

// This node's identity, written under the lock (a snapshot may be read meanwhile).
static void set_self(const coord_node *n) {
    pthread_mutex_lock(&coord.lock);
    coord.self = *n;
    pthread_mutex_unlock(&coord.lock);
}

static void set_rank(int rank) {
    pthread_mutex_lock(&coord.lock);
    coord.self.rank = rank;
    pthread_mutex_unlock(&coord.lock);
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
    const coord_peer *x = a, *y = b;
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
    if ((code = coord_env_int("RUNNER_RDZV_MIN_NODES", coord.self.num_nodes, 1, &min_nodes)) ||
        (code = coord_env_int("RUNNER_RDZV_LAST_CALL_MS", 2000, 0, &last_call_ms)))
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
        coord_peer *p = &coord.peers[coord.n_peers++];
        memset(p, 0, sizeof *p);
        p->node_index = atoi(r->element[i]->str);
        snprintf(p->address, sizeof p->address, "%s", r->element[i + 1]->str);
        p->last_seen_ms = timing_now_ms();
        p->last_beat = -1;
    }
    freeReplyObject(r);
    qsort(coord.peers, (size_t)coord.n_peers, sizeof(coord_peer), compare_peers);
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

void coord_snapshot_get(coord_snapshot *out) {
    memset(out, 0, sizeof *out);
    long long now = timing_now_ms();
    pthread_mutex_lock(&coord.lock);
    out->enabled = coord.enabled;
    out->self = coord.self;
    // The cluster view is a multi-node job's; one node shows its own workers instead.
    if (coord.self.num_nodes > 1)
        for (int i = 0; i < coord.n_peers && i < COORD_MAX_NODES; i++) {
            const coord_peer *p = &coord.peers[i];
            coord_peer_view *v = &out->nodes[out->n_nodes++];
            v->node_index = p->node_index;
            snprintf(v->address, sizeof v->address, "%s", p->address);
            v->state = p->dead ? COORD_PEER_DEAD : p->left ? COORD_PEER_LEFT : COORD_PEER_ALIVE;
            v->main = p->node_index == coord.self.main_node_index;
            v->self = p->node_index == coord.self.node_index;
            v->last_heartbeat_ms_ago = v->self ? 0 : now - p->last_seen_ms;
        }
    out->redis.enabled = coord.health.tracked;
    out->redis.up = coord.health.up;
    out->redis.outages = coord.health.outages;
    long long ms = coord.health.outage_ms_done;
    if (coord.health.down_since_ms)
        ms += now - coord.health.down_since_ms;
    pthread_mutex_unlock(&coord.lock);
    out->redis.outage_seconds = (double)ms / 1000.0;
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
    pthread_mutex_lock(&coord.lock);
    out->self = coord.self;
    pthread_mutex_unlock(&coord.lock);
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
    set_self(&view->self);
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
    if (coord.metrics_len == COORD_METRICS_QUEUE) {
        coord.metrics_head = (coord.metrics_head + 1) % COORD_METRICS_QUEUE; // drop the oldest
        coord.metrics_len--;
        coord.metrics_dropped++;
    }
    coord_queued_metric *m = &coord.metrics[(coord.metrics_head + coord.metrics_len) % COORD_METRICS_QUEUE];
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
    coord_node self;
    int code = coord_identity_from_env(&self);
    if (code)
        return code;
    set_self(&self);
    snprintf(coord.prefix, sizeof coord.prefix, "runner:%s:%d:", coord.self.job_id,
             coord.self.attempt);
    coord.rendezvous_timeout_s =
        cfg->rendezvous_timeout_s > 0 ? cfg->rendezvous_timeout_s : DEFAULT_RENDEZVOUS_TIMEOUT_S;
    coord.outage_timeout_ms = (cfg->redis_outage_timeout_s > 0 ? cfg->redis_outage_timeout_s
                                                                : DEFAULT_OUTAGE_TIMEOUT_S) * 1000;
    if ((code = coord_env_int("RUNNER_HEARTBEAT_MS", DEFAULT_HEARTBEAT_MS, 50, &coord.heartbeat_ms)))
        return code;
    atomic_store(&coord.stop, false);
    atomic_store(&coord.exit_hint, 0);
    coord.started = true;
    runner_on_exit(stop_at_exit);

    if (strcmp(cfg->redis, "off") == 0 || cfg->redis[0] == '\0') {
        if (coord.self.num_nodes > 1)
            return error_set(EXIT_USAGE, "--redis off: a multi-node job (AWS_BATCH_JOB_NUM_NODES=%d) "
                                         "coordinates through Redis", coord.self.num_nodes);
        set_rank(0);
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
            set_rank(0);
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
    if (pthread_create(&coord.heartbeat_thread, NULL, coord_heartbeat_main, NULL) == 0)
        coord.heartbeat_running = true;
    if (pthread_create(&coord.control_thread, NULL, coord_control_main, NULL) == 0)
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
