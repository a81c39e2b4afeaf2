// Heartbeats: SET hb:{node} {counter} PX 3*period every period; peers are scanned on
// every tick with our own clock, so a Redis restart (keys gone for a moment) is not a
// death, and expiry notifications (not timely) are not needed. The same thread sends
// the queued step metrics and this node's telemetry, and judges Redis outages
// (docs/coordination.md, "Redis outages").
#include "runner/coord/coord_internal.h"
#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/log.h"
#include "runner/timing.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Send the queued step metrics; 0, or EXIT_COORDINATION when Redis did not answer
// (the metric in hand is dropped).
static int flush_metrics(redis_client *rc) {
    for (;;) {
        coord_queued_metric m;
        pthread_mutex_lock(&coord.lock);
        bool have = coord.metrics_len > 0;
        if (have) {
            m = coord.metrics[coord.metrics_head];
            coord.metrics_head = (coord.metrics_head + 1) % COORD_METRICS_QUEUE;
            coord.metrics_len--;
        }
        pthread_mutex_unlock(&coord.lock);
        if (!have)
            return 0;
        redisReply *r = redis_client_command(
            rc, "XADD %smetrics MAXLEN ~ %d * node %d run %s tag %s step %lld value %.9g",
            coord.prefix, COORD_METRICS_STREAM_MAXLEN, coord.self.node_index, m.run, m.tag,
            (long long)m.step, m.value);
        if (!r)
            return EXIT_COORDINATION;
        freeReplyObject(r);
    }
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
        pthread_mutex_lock(&coord.lock);
        for (int i = 0; i < n; i++) {
            coord_peer *p = &coord.peers[i];
            redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_STRING && strcmp(e->str, "left") == 0) {
                p->left = true; // finished and gone on purpose: not a death
            } else if (e->type == REDIS_REPLY_STRING) {
                long long beat = atoll(e->str);
                if (beat != p->last_beat) {
                    p->last_beat = beat;
                    p->last_seen_ms = now;
                }
            }
            if (p->node_index != coord.self.node_index && !p->dead && !p->left &&
                now - p->last_seen_ms > (long long)COORD_MISSED_BEATS_DEAD * coord.heartbeat_ms) {
                p->dead = true;
                dead_index = p->node_index;
                quiet_ms = now - p->last_seen_ms;
            }
        }
        pthread_mutex_unlock(&coord.lock);
        if (dead_index >= 0) {
            char reason[160];
            snprintf(reason, sizeof reason, "node %d missed %d heartbeats (silent %lld ms)",
                     dead_index, COORD_MISSED_BEATS_DEAD, quiet_ms);
            coord_request_stop(EXIT_PEER_LOST, reason);
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
static long long beat_ttl_ms(void) { return (long long)COORD_MISSED_BEATS_DEAD * coord.heartbeat_ms; }

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

void *coord_heartbeat_main(void *arg) {
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
                         "on a multi-node job", outage_budget_ms(&h), COORD_MISSED_BEATS_DEAD);
            else
                snprintf(reason, sizeof reason, "Redis unreachable for %lld s "
                         "(--redis-outage-timeout)", outage_budget_ms(&h) / 1000);
            coord_request_stop(EXIT_COORDINATION, reason);
            break;
        }
        coord_nap(tick);
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
