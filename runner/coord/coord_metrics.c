// Metrics fan-in (DESIGN §7): every non-main node sends the new points of its telemetry
// store to the capped stream runner:{job}:{attempt}:metrics; the main node reads the
// stream and adds the other nodes' points to its own store as run "node<N>/<run>", so
// its API and dashboard show every node.
#include "runner/coord/coord_internal.h"
#include "runner/error.h"
#include "runner/log.h"
#include "runner/telemetry_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXPORT_BATCH = 512, FANIN_BLOCK_MS = 500 };

static uint64_t exported_seq; // the heartbeat thread's cursor in the local store

int coord_metrics_export(redis_client *rc) {
    uint64_t last = exported_seq;
    cJSON *history = telemetry_store_history(NULL, -1, exported_seq, EXPORT_BATCH, &last);
    if (!history)
        return 0;
    const coord_node *self = coord_self();
    bool ok = true;
    const cJSON *run, *tag, *point;
    cJSON_ArrayForEach(run, history) {
        cJSON_ArrayForEach(tag, run) {
            cJSON_ArrayForEach(point, tag) {
                if (!ok || cJSON_GetArraySize(point) < 3)
                    continue;
                redisReply *r = redis_client_command(
                    rc, "XADD %smetrics MAXLEN ~ %d * node %d run %s tag %s step %.0f value %.17g wall %.6f",
                    coord_prefix(), COORD_METRICS_STREAM_MAXLEN, self->node_index, run->string,
                    tag->string, cJSON_GetArrayItem(point, 0)->valuedouble,
                    cJSON_GetArrayItem(point, 1)->valuedouble,
                    cJSON_GetArrayItem(point, 2)->valuedouble);
                if (!r) {
                    ok = false; // Redis is down: these points are dropped (the caller logs it)
                    continue;
                }
                freeReplyObject(r);
            }
        }
    }
    cJSON_Delete(history);
    exported_seq = last;
    return ok ? 0 : EXIT_COORDINATION;
}

static const char *field(const redisReply *fields, const char *name) {
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

// Add the entries of an XREAD reply to the store; returns the last id seen.
static void ingest(const redisReply *streams, char *last_id, size_t last_id_len,
                   int self_index) {
    if (streams->type != REDIS_REPLY_ARRAY || streams->elements < 1)
        return;
    const redisReply *stream = streams->element[0];
    if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2)
        return;
    const redisReply *entries = stream->element[1];
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        snprintf(last_id, last_id_len, "%s", e->element[0]->str);
        const redisReply *f = e->element[1];
        const char *node = field(f, "node"), *run = field(f, "run"), *tag = field(f, "tag"),
                   *step = field(f, "step"), *value = field(f, "value"),
                   *wall = field(f, "wall");
        if (!node || !run || !tag || !step || !value || atoi(node) == self_index)
            continue;
        char node_run[STORE_RUN_MAX];
        snprintf(node_run, sizeof node_run, "node%d/%s", atoi(node), run);
        telemetry_store_scalar(node_run, tag, strtoll(step, NULL, 10), strtod(value, NULL),
                               wall ? strtod(wall, NULL) : 0.0);
    }
}

void *coord_fanin_main(void *arg) {
    (void)arg;
    const redis_endpoint *ep = coord_endpoint();
    if (!ep)
        return NULL;
    redis_client *rc = redis_client_new(ep, 1000);
    if (!rc)
        return NULL;
    char last_id[64] = "0-0";
    int self_index = coord_self()->node_index;
    while (!coord_stopping()) {
        redisReply *r = redis_client_command(rc, "XREAD COUNT %d BLOCK %d STREAMS %smetrics %s",
                                             EXPORT_BATCH, FANIN_BLOCK_MS, coord_prefix(),
                                             last_id);
        if (r && r->type == REDIS_REPLY_ARRAY)
            ingest(r, last_id, sizeof last_id, self_index);
        if (r)
            freeReplyObject(r);
        else
            error_clear(); // the heartbeat thread decides what an outage means
    }
    redis_client_free(rc);
    return NULL;
}
