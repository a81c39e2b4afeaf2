// The Redis-stream trial source (see trials_redis.h).
#include "runner/coord/trials_redis.h"

#include "runner/coord/coord_internal.h"
#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/log.h"
#include "runner/signals.h"
#include "runner/timing.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    DEFAULT_CLAIM_MS = 30000,
    DEFAULT_POLL_MS = 500,
    DEFAULT_RETRY_MS = 10000,
    MAX_HELD = 16,
    KEY_TTL_S = 7 * 24 * 3600,
};

#define GROUP "workers"

typedef struct {
    int trial_id;
    char entry_id[48]; // stream entry id of the trial
} held_trial;

typedef struct {
    redis_client *rc;     // the job thread's connection
    redis_client *keeper; // the claim-refreshing thread's connection
    trial_spec *specs;
    int n;
    asha_config asha;
    trials_redis_options opt;
    char stream[COORD_PREFIX_MAX + 16], results[COORD_PREFIX_MAX + 32],
        rungs[COORD_PREFIX_MAX + 32], seeded[COORD_PREFIX_MAX + 32];
    char consumer[96];
    char *state_path; // NULL: no state file

    pthread_mutex_t lock; // guards held[]
    held_trial held[MAX_HELD];
    int n_held;
    atomic_bool stop;
    pthread_t thread;
    bool thread_running;
    bool takeover_deferred_logged;
} redis_source;

// ---- claims ---------------------------------------------------------------------------

static void hold(redis_source *rs, int trial_id, const char *entry_id) {
    pthread_mutex_lock(&rs->lock);
    if (rs->n_held < MAX_HELD) {
        held_trial *h = &rs->held[rs->n_held++];
        h->trial_id = trial_id;
        snprintf(h->entry_id, sizeof h->entry_id, "%s", entry_id);
    }
    pthread_mutex_unlock(&rs->lock);
}

// Forget trial_id; copies its entry id into entry_id (empty when not held).
static void release(redis_source *rs, int trial_id, char *entry_id, size_t len) {
    entry_id[0] = '\0';
    pthread_mutex_lock(&rs->lock);
    for (int i = 0; i < rs->n_held; i++)
        if (rs->held[i].trial_id == trial_id) {
            snprintf(entry_id, len, "%s", rs->held[i].entry_id);
            rs->held[i] = rs->held[--rs->n_held];
            break;
        }
    pthread_mutex_unlock(&rs->lock);
}

static bool is_held(redis_source *rs, const char *entry_id) {
    bool held = false;
    pthread_mutex_lock(&rs->lock);
    for (int i = 0; i < rs->n_held && !held; i++)
        held = strcmp(rs->held[i].entry_id, entry_id) == 0;
    pthread_mutex_unlock(&rs->lock);
    return held;
}

// Reset the idle time of the trials this worker runs, so nobody takes them over.
static void *keep_claims(void *arg) {
    redis_source *rs = arg;
    int period = rs->opt.claim_ms / 6 > 20 ? rs->opt.claim_ms / 6 : 20;
    while (!atomic_load(&rs->stop)) {
        for (int slept = 0; slept < period && !atomic_load(&rs->stop); slept += 20)
            timing_sleep_ms(20);
        char ids[MAX_HELD][48];
        pthread_mutex_lock(&rs->lock);
        int n = rs->n_held;
        for (int i = 0; i < n; i++)
            memcpy(ids[i], rs->held[i].entry_id, sizeof ids[i]);
        pthread_mutex_unlock(&rs->lock);
        for (int i = 0; i < n && !atomic_load(&rs->stop); i++) {
            redisReply *r = redis_client_command(rs->keeper, "XCLAIM %s " GROUP " %s 0 %s JUSTID",
                                                 rs->stream, rs->consumer, ids[i]);
            if (r)
                freeReplyObject(r);
            error_clear();
        }
    }
    return NULL;
}

// ---- trial_source ---------------------------------------------------------------------

static bool completed(redis_source *rs, int trial_id, int *code) {
    redisReply *r = redis_client_command(rs->rc, "HEXISTS %s %d", rs->results, trial_id);
    if (!r) {
        *code = EXIT_COORDINATION;
        return false;
    }
    bool done = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return done;
}

// The first entry of an entries array ([[id, [field, value...]]...]) as (entry, trial).
static bool first_entry(const redisReply *entries, char *entry_id, size_t len, int *trial_id) {
    if (!entries || entries->type != REDIS_REPLY_ARRAY || entries->elements < 1)
        return false;
    const redisReply *e = entries->element[0];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return false;
    snprintf(entry_id, len, "%s", e->element[0]->str);
    *trial_id = -1;
    const redisReply *f = e->element[1];
    if (f->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < f->elements; i += 2)
            if (strcmp(f->element[i]->str, "id") == 0)
                *trial_id = atoi(f->element[i + 1]->str);
    return true;
}

static void ack(redis_source *rs, const char *entry_id) {
    redisReply *r = redis_client_command(rs->rc, "XACK %s " GROUP " %s", rs->stream, entry_id);
    if (r)
        freeReplyObject(r);
}

static int seed(redis_source *rs);

// Redis lost the queue (an embedded server restarted without persistence): queue the
// trials again, minus what the state file says was completed. A trial another worker
// is still running may then run twice; its result is recorded once (HSETNX).
static bool queue_lost(const redisReply *r) {
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0;
}

static int requeue(redis_source *rs) {
    log_warn("trials_requeued", "Redis lost the trial queue (restarted?): queueing the trials "
             "again%s", rs->state_path ? ", minus those the state file has" : "");
    return seed(rs);
}

enum { CLAIM_NONE = 0, CLAIM_FOUND = 1, CLAIM_REQUEUE = 2 };

// What a reply of `command` that is not an answer means: CLAIM_REQUEUE when the queue
// is gone, -exit code for another error, CLAIM_NONE when it is an answer to read.
static int reply_failure(const redisReply *r, const char *command) {
    if (queue_lost(r)) return CLAIM_REQUEUE;
    if (r->type == REDIS_REPLY_ERROR)
        return -error_set(EXIT_COORDINATION, "trials: %s: %s", command, r->str);
    return CLAIM_NONE;
}

// Take over one trial whose worker went silent: XAUTOCLAIM from the start of the
// pending list, following its cursor to the end. Redis 7 looks at no more than
// 10 x COUNT pending entries per call, so a dead worker's trial behind ten live claims
// is found only by a later call from the cursor the earlier one returned. Returns
// CLAIM_FOUND (entry_id, trial_id set), CLAIM_NONE, CLAIM_REQUEUE (the queue is gone),
// or -exit code.
static int autoclaim(redis_source *rs, char *entry_id, size_t len, int *trial_id) {
    char cursor[48] = "0-0";
    for (;;) {
        redisReply *r = redis_client_command(rs->rc, "XAUTOCLAIM %s " GROUP " %s %d %s COUNT 1",
                                             rs->stream, rs->consumer, rs->opt.claim_ms, cursor);
        if (!r)
            return -EXIT_COORDINATION;
        int result = reply_failure(r, "XAUTOCLAIM");
        // Redis 7: [next-cursor, entries, deleted-ids].
        bool answer = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
                      r->element[0]->type == REDIS_REPLY_STRING;
        if (result == CLAIM_NONE && !answer)
            result = -error_set(EXIT_COORDINATION, "trials: XAUTOCLAIM: unexpected reply");
        else if (result == CLAIM_NONE && first_entry(r->element[1], entry_id, len, trial_id))
            result = CLAIM_FOUND;
        else if (result == CLAIM_NONE)
            snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        freeReplyObject(r);
        if (result != CLAIM_NONE || strcmp(cursor, "0-0") == 0)
            return result;
    }
}

// An entry delivered to this consumer that this worker does not hold: the reply of an
// XREADGROUP (or XAUTOCLAIM) was lost with its connection, and the retry asked again.
// The entry is ours in Redis: run it now (XCLAIM to ourselves returns its fields)
// rather than wait claim_ms for someone to take it over. Same results as take().
static int adopt_orphan(redis_source *rs, char *entry_id, size_t len, int *trial_id) {
    redisReply *r = redis_client_command(rs->rc, "XPENDING %s " GROUP " - + %d %s", rs->stream,
                                         MAX_HELD + 1, rs->consumer);
    if (!r)
        return -EXIT_COORDINATION;
    int result = reply_failure(r, "XPENDING");
    char orphan[48] = "";
    for (size_t i = 0; result == CLAIM_NONE && r->type == REDIS_REPLY_ARRAY && i < r->elements;
         i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING && !is_held(rs, e->element[0]->str)) {
            snprintf(orphan, sizeof orphan, "%s", e->element[0]->str);
            break;
        }
    }
    freeReplyObject(r);
    if (result != CLAIM_NONE || !orphan[0])
        return result;
    r = redis_client_command(rs->rc, "XCLAIM %s " GROUP " %s 0 %s", rs->stream, rs->consumer,
                             orphan);
    if (!r)
        return -EXIT_COORDINATION;
    result = reply_failure(r, "XCLAIM");
    if (result == CLAIM_NONE && first_entry(r, entry_id, len, trial_id)) {
        result = CLAIM_FOUND;
        log_info("trial_adopted", "trial %d was delivered to %s while its connection was lost; "
                 "running it now", *trial_id, rs->consumer);
    }
    freeReplyObject(r);
    return result;
}

// Whether this worker may take over other workers' trials now: only once Redis has
// answered both of its connections for claim_ms without a failure. During an outage no
// worker could refresh its claims, so every running trial looks abandoned when Redis
// comes back; after claim_ms of service every live worker has refreshed its own (the
// keeper does every claim_ms / 6), and what is still idle is a dead worker's.
static bool may_take_over(redis_source *rs) {
    long long a = redis_client_last_failure_ms(rs->rc), b = redis_client_last_failure_ms(rs->keeper);
    long long last = a > b ? a : b;
    if (last == 0 || timing_now_ms() - last >= rs->opt.claim_ms) {
        rs->takeover_deferred_logged = false;
        return true;
    }
    if (!rs->takeover_deferred_logged)
        log_info("trials_takeover_deferred", "Redis was unreachable %lld ms ago: other workers' "
                 "trials are not taken over before %d ms of service", timing_now_ms() - last,
                 rs->opt.claim_ms);
    rs->takeover_deferred_logged = true;
    return false;
}

// Take a new trial (XREADGROUP). CLAIM_FOUND (entry_id, trial_id set), CLAIM_NONE when
// none is left, CLAIM_REQUEUE when the queue is gone, or -exit code.
static int read_new(redis_source *rs, char *entry_id, size_t len, int *trial_id) {
    redisReply *r = redis_client_command(rs->rc, "XREADGROUP GROUP " GROUP " %s COUNT 1 STREAMS %s >",
                                         rs->consumer, rs->stream);
    if (!r)
        return -EXIT_COORDINATION;
    int result = reply_failure(r, "XREADGROUP");
    if (result == CLAIM_NONE && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->elements == 2 &&
             first_entry(r->element[0]->element[1], entry_id, len, trial_id))
        result = CLAIM_FOUND;
    freeReplyObject(r);
    return result;
}

// Try to take one trial: a dead worker's first (XAUTOCLAIM), else a new one
// (XREADGROUP). *found = false when neither exists right now.
static int take(redis_source *rs, trial_spec *out, bool *found) {
    *found = false;
    for (;;) {
        char entry_id[48];
        int trial_id = -1;
        int got = adopt_orphan(rs, entry_id, sizeof entry_id, &trial_id);
        bool claimed = false;
        if (got == CLAIM_NONE && may_take_over(rs)) {
            got = autoclaim(rs, entry_id, sizeof entry_id, &trial_id);
            claimed = got == CLAIM_FOUND;
        }
        if (got == CLAIM_NONE)
            got = read_new(rs, entry_id, sizeof entry_id, &trial_id);
        if (got < 0)
            return -got;
        if (got == CLAIM_REQUEUE) {
            int code = requeue(rs);
            if (code)
                return code;
            continue;
        }
        if (got == CLAIM_NONE)
            return 0;
        if (trial_id < 0 || trial_id >= rs->n) {
            ack(rs, entry_id); // not one of ours: drop it
            continue;
        }
        int code = 0;
        if (completed(rs, trial_id, &code)) {
            ack(rs, entry_id); // its worker finished it but died before the XACK
            continue;
        }
        if (code)
            return code;
        if (claimed)
            log_info("trial_reclaimed", "trial %d taken over by %s (its worker went silent)",
                     trial_id, rs->consumer);
        hold(rs, trial_id, entry_id);
        *out = rs->specs[trial_id];
        *found = true;
        return 0;
    }
}

static int redis_next(trial_source *s, trial_spec *out, bool *have) {
    redis_source *rs = s->impl;
    *have = false;
    for (;;) {
        bool found;
        int code = take(rs, out, &found);
        if (code || found) {
            *have = found;
            return code;
        }
        // Nothing free: done when no trial is pending anywhere, else wait, since a
        // pending trial's worker may die and leave it to us.
        redisReply *r = redis_client_command(rs->rc, "XPENDING %s " GROUP, rs->stream);
        if (!r)
            return EXIT_COORDINATION;
        if (queue_lost(r)) {
            freeReplyObject(r);
            if ((code = requeue(rs)))
                return code;
            continue;
        }
        long long pending = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                                    r->element[0]->type == REDIS_REPLY_INTEGER
                                ? r->element[0]->integer
                                : 0;
        freeReplyObject(r);
        if (pending == 0)
            return 0;
        if (signals_stop_requested())
            return error_set(EXIT_INTERRUPTED, "trials: stop requested while waiting for a trial");
        timing_sleep_ms(rs->opt.poll_ms);
    }
}

// Losses other trials recorded at `epoch`, and ours recorded, in one step.
static const char REPORT_LUA[] =
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local out = {}\n"
    "local suffix = ':' .. ARGV[2]\n"
    "for i = 1, #all, 2 do\n"
    "  local k = all[i]\n"
    "  if k ~= ARGV[1] .. suffix and string.sub(k, -#suffix) == suffix then\n"
    "    out[#out + 1] = all[i + 1]\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], ARGV[1] .. suffix, ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "return out\n";

static int redis_report(trial_source *s, int id, int epoch, double eval_loss, bool *stop) {
    redis_source *rs = s->impl;
    *stop = false;
    char loss[40];
    snprintf(loss, sizeof loss, "%.17g", eval_loss);
    redisReply *r = redis_client_command(rs->rc, "EVAL %s 1 %s %d %d %s %d", REPORT_LUA, rs->rungs,
                                         id, epoch, loss, KEY_TTL_S);
    if (!r)
        return EXIT_COORDINATION;
    if (r->type != REDIS_REPLY_ARRAY) {
        int code = error_set(EXIT_COORDINATION, "trials: report: %s",
                             r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        freeReplyObject(r);
        return code;
    }
    double *others = malloc((r->elements + 1) * sizeof *others);
    if (!others) {
        freeReplyObject(r);
        return error_set(EXIT_RESOURCES, "out of memory");
    }
    for (size_t i = 0; i < r->elements; i++)
        others[i] = strtod(r->element[i]->str, NULL);
    *stop = asha_should_stop(&rs->asha, epoch, eval_loss, others, (int)r->elements);
    free(others);
    freeReplyObject(r);
    return 0;
}

// ---- the state file (trials_local_create's format) ------------------------------------

static int load_state(redis_source *rs, bool *done);

// Rewrite the state file with every result and rung record known: the file's own
// (put back into Redis first, should Redis have lost them) and Redis's.
static int save_state(redis_source *rs) {
    if (!rs->state_path)
        return 0;
    int code = load_state(rs, NULL);
    if (code)
        return code;
    redisReply *results = redis_client_command(rs->rc, "HGETALL %s", rs->results);
    redisReply *rungs = results ? redis_client_command(rs->rc, "HGETALL %s", rs->rungs) : NULL;
    if (!results || !rungs) {
        if (results)
            freeReplyObject(results);
        return EXIT_COORDINATION;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *completed = cJSON_AddArrayToObject(root, "completed");
    for (size_t i = 0; results->type == REDIS_REPLY_ARRAY && i + 1 < results->elements; i += 2) {
        cJSON *o = cJSON_Parse(results->element[i + 1]->str);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            continue;
        }
        cJSON_DeleteItemFromObject(o, "worker");
        cJSON_AddItemToArray(completed, o);
    }
    cJSON *records = cJSON_AddArrayToObject(root, "rungs");
    for (size_t i = 0; rungs->type == REDIS_REPLY_ARRAY && i + 1 < rungs->elements; i += 2) {
        int id, epoch;
        if (sscanf(rungs->element[i]->str, "%d:%d", &id, &epoch) != 2)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", id);
        cJSON_AddNumberToObject(o, "epoch", epoch);
        cJSON_AddNumberToObject(o, "eval_loss", strtod(rungs->element[i + 1]->str, NULL));
        cJSON_AddItemToArray(records, o);
    }
    freeReplyObject(results);
    freeReplyObject(rungs);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    code = text ? files_write_text(rs->state_path, text)
                    : error_set(EXIT_RESOURCES, "out of memory");
    free(text);
    return code;
}

// Put what the state file holds into Redis (HSETNX: Redis's own records win); done[id]
// (may be NULL) marks the completed trials, which are not queued again.
static int load_state(redis_source *rs, bool *done) {
    if (!rs->state_path || !files_exists(rs->state_path))
        return 0;
    char *text;
    int code = files_read_all(rs->state_path, &text, NULL);
    if (code)
        return code;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return error_set(EXIT_BAD_INPUT, "%s: search state is not a JSON object", rs->state_path);
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItem(root, "completed")) {
        int id = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "id"));
        if (id < 0 || id >= rs->n || (done && done[id]))
            continue;
        char *json = cJSON_PrintUnformatted(o);
        redisReply *r = json ? redis_client_command(rs->rc, "HSETNX %s %d %s", rs->results, id, json)
                             : NULL;
        free(json);
        if (!r) {
            cJSON_Delete(root);
            return error_code() ? error_code() : EXIT_RESOURCES;
        }
        freeReplyObject(r);
        if (done)
            done[id] = true;
    }
    cJSON_ArrayForEach(o, cJSON_GetObjectItem(root, "rungs")) {
        redisReply *r = redis_client_command(
            rs->rc, "HSETNX %s %d:%d %.17g", rs->rungs,
            (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "id")),
            (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "epoch")),
            cJSON_GetNumberValue(cJSON_GetObjectItem(o, "eval_loss")));
        if (!r) {
            cJSON_Delete(root);
            return EXIT_COORDINATION;
        }
        freeReplyObject(r);
    }
    cJSON_Delete(root);
    return 0;
}

// Record the result once (HSETNX) and acknowledge the entry, atomically. Returns 1 for
// a new result, 2 when this very result is there already (the script ran, its reply
// was lost with the connection, and the client sent it again), 0 when another
// worker's result for the trial came first.
static const char COMPLETE_LUA[] =
    "local new = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])\n"
    "if new == 0 and redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then new = 2 end\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "if ARGV[3] ~= '' then redis.call('XACK', KEYS[1], 'workers', ARGV[3]) end\n"
    "return new\n";

static int redis_complete(trial_source *s, const trial_result *result) {
    redis_source *rs = s->impl;
    if (result->id < 0 || result->id >= rs->n)
        return error_set(EXIT_INTERNAL, "trial %d is not part of this search", result->id);
    char entry_id[48];
    release(rs, result->id, entry_id, sizeof entry_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", result->id);
    cJSON_AddNumberToObject(o, "epochs_run", result->epochs_run);
    // JSON has no Inf/NaN: a diverged trial's loss is stored as null.
    if (isfinite(result->best_eval_loss))
        cJSON_AddNumberToObject(o, "best_eval_loss", result->best_eval_loss);
    else
        cJSON_AddNullToObject(o, "best_eval_loss");
    cJSON_AddNumberToObject(o, "best_eval_f1", isfinite(result->best_eval_f1) ? result->best_eval_f1 : 0);
    cJSON_AddBoolToObject(o, "halted", result->halted);
    cJSON_AddStringToObject(o, "worker", rs->consumer);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!json)
        return error_set(EXIT_RESOURCES, "out of memory");
    redisReply *r = redis_client_command(rs->rc, "EVAL %s 2 %s %s %d %s %s %d", COMPLETE_LUA,
                                         rs->stream, rs->results, result->id, json, entry_id,
                                         KEY_TTL_S);
    free(json);
    if (!r)
        return EXIT_COORDINATION;
    int code = 0;
    if (r->type == REDIS_REPLY_ERROR)
        code = error_set(EXIT_COORDINATION, "trials: complete: %s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        log_warn("trial_already_complete", "trial %d was completed by another worker first; "
                 "this result is not recorded", result->id);
    else if (r->type == REDIS_REPLY_INTEGER && r->integer == 2)
        log_debug("trial_complete_repeated", "trial %d: this result was recorded already "
                  "(a retried completion counts once)", result->id);
    freeReplyObject(r);
    if (code == 0)
        code = save_state(rs);
    return code;
}

static int redis_results(trial_source *s, trial_result *out, int max) {
    redis_source *rs = s->impl;
    redisReply *r = redis_client_command(rs->rc, "HGETALL %s", rs->results);
    if (!r)
        return -1;
    int n = 0;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements && n < max; i += 2) {
            cJSON *o = cJSON_Parse(r->element[i + 1]->str);
            if (!cJSON_IsObject(o)) {
                cJSON_Delete(o);
                continue;
            }
            trial_result *t = &out[n++];
            memset(t, 0, sizeof *t);
            t->id = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "id"));
            t->epochs_run = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "epochs_run"));
            const cJSON *loss = cJSON_GetObjectItem(o, "best_eval_loss");
            t->best_eval_loss = cJSON_IsNumber(loss) ? loss->valuedouble : INFINITY;
            t->best_eval_f1 = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "best_eval_f1"));
            t->halted = cJSON_IsTrue(cJSON_GetObjectItem(o, "halted"));
            cJSON_Delete(o);
        }
    freeReplyObject(r);
    return n;
}

static void redis_destroy(trial_source *s) {
    if (!s)
        return;
    redis_source *rs = s->impl;
    if (rs) {
        atomic_store(&rs->stop, true);
        if (rs->thread_running)
            pthread_join(rs->thread, NULL);
        redis_client_free(rs->rc);
        redis_client_free(rs->keeper);
        pthread_mutex_destroy(&rs->lock);
        free(rs->state_path);
        free(rs->specs);
        free(rs);
    }
    free(s);
}

// Queue the ids (ARGV[2..]) once, atomically: whoever runs it first; the others find
// the stream complete when their create() returns, never half-seeded.
static const char SEED_LUA[] =
    "if not redis.call('SET', KEYS[2], 'seeded', 'NX', 'EX', ARGV[1]) then return 0 end\n"
    "for i = 2, #ARGV do redis.call('XADD', KEYS[1], '*', 'id', ARGV[i]) end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "return 1\n";

// Create the group (once, whoever is first), take over what the state file says was
// completed, and queue every other trial id (once).
static int seed(redis_source *rs) {
    redisReply *r = redis_client_command(rs->rc, "XGROUP CREATE %s " GROUP " 0 MKSTREAM", rs->stream);
    if (!r)
        return EXIT_COORDINATION;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        int code = error_set(EXIT_COORDINATION, "trials: XGROUP CREATE: %s", r->str);
        freeReplyObject(r);
        return code;
    }
    freeReplyObject(r);
    bool *done = calloc((size_t)(rs->n ? rs->n : 1), sizeof *done);
    // argv: EVAL script 2 stream seeded ttl id...
    const char **argv = malloc((size_t)(rs->n + 6) * sizeof *argv);
    size_t *lens = malloc((size_t)(rs->n + 6) * sizeof *lens);
    char (*ids)[16] = malloc((size_t)(rs->n ? rs->n : 1) * sizeof *ids);
    int code = done && argv && lens && ids ? load_state(rs, done)
                                           : error_set(EXIT_RESOURCES, "out of memory");
    int queued = 0;
    if (code == 0) {
        char ttl[16];
        snprintf(ttl, sizeof ttl, "%d", KEY_TTL_S);
        int argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = SEED_LUA;
        argv[argc++] = "2";
        argv[argc++] = rs->stream;
        argv[argc++] = rs->seeded;
        argv[argc++] = ttl;
        for (int i = 0; i < rs->n; i++) {
            if (done[i])
                continue;
            snprintf(ids[queued], sizeof ids[queued], "%d", rs->specs[i].id);
            argv[argc++] = ids[queued++];
        }
        for (int i = 0; i < argc; i++)
            lens[i] = strlen(argv[i]);
        r = redis_client_argv(rs->rc, argc, argv, lens);
        if (!r)
            code = EXIT_COORDINATION;
        else {
            if (r->type == REDIS_REPLY_ERROR)
                code = error_set(EXIT_COORDINATION, "trials: seeding: %s", r->str);
            else if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
                log_info("trials_seeded", "%d of %d trials queued in %s%s", queued, rs->n,
                         rs->stream, queued < rs->n ? " (the others completed in an earlier attempt)" : "");
            freeReplyObject(r);
        }
    }
    free(done);
    free(argv);
    free(lens);
    free(ids);
    return code;
}

int trials_redis_create(trial_source **out, const trial_spec *specs, int n,
                        const asha_config *asha, const redis_endpoint *ep, const char *prefix,
                        const char *consumer, const trials_redis_options *options) {
    *out = NULL;
    trial_source *s = calloc(1, sizeof *s);
    redis_source *rs = calloc(1, sizeof *rs);
    if (!s || !rs) {
        free(s);
        free(rs);
        return error_set(EXIT_RESOURCES, "out of memory");
    }
    s->impl = rs;
    s->next = redis_next;
    s->report = redis_report;
    s->complete = redis_complete;
    s->results = redis_results;
    s->destroy = redis_destroy;
    pthread_mutex_init(&rs->lock, NULL);
    rs->n = n;
    rs->asha = *asha;
    if (rs->asha.min_epochs < 1)
        rs->asha.min_epochs = 1;
    if (rs->asha.eta < 2)
        rs->asha.eta = 2;
    rs->opt.claim_ms = DEFAULT_CLAIM_MS;
    rs->opt.poll_ms = DEFAULT_POLL_MS;
    const char *claim_env = getenv("RUNNER_TRIAL_CLAIM_MS");
    if (claim_env && atoi(claim_env) > 0)
        rs->opt.claim_ms = atoi(claim_env);
    if (options && options->claim_ms > 0)
        rs->opt.claim_ms = options->claim_ms;
    if (options && options->poll_ms > 0)
        rs->opt.poll_ms = options->poll_ms;
    rs->opt.retry_ms = options && options->retry_ms > 0 ? options->retry_ms : DEFAULT_RETRY_MS;
    snprintf(rs->stream, sizeof rs->stream, "%strials", prefix);
    snprintf(rs->results, sizeof rs->results, "%strials:results", prefix);
    snprintf(rs->rungs, sizeof rs->rungs, "%strials:rungs", prefix);
    snprintf(rs->seeded, sizeof rs->seeded, "%strials:seeded", prefix);
    snprintf(rs->consumer, sizeof rs->consumer, "%s", consumer);
    rs->state_path = options && options->state_path ? strdup(options->state_path) : NULL;
    rs->specs = malloc((size_t)(n ? n : 1) * sizeof *rs->specs);
    rs->rc = redis_client_new(ep, rs->opt.retry_ms);
    rs->keeper = redis_client_new(ep, 1000);
    if (!rs->specs || !rs->rc || !rs->keeper ||
        (options && options->state_path && !rs->state_path)) {
        redis_destroy(s);
        return error_set(EXIT_RESOURCES, "out of memory");
    }
    redis_client_set_stop_flag(rs->keeper, &rs->stop);
    // A stop (SIGTERM, or coordination's 82 when the outage lasts) ends a wait for Redis.
    redis_client_set_stop_check(rs->rc, signals_stop_requested);
    memcpy(rs->specs, specs, (size_t)n * sizeof *specs);
    for (int i = 0; i < n; i++)
        if (specs[i].id != i) {
            redis_destroy(s);
            return error_set(EXIT_INTERNAL, "trials: spec %d has id %d", i, specs[i].id);
        }
    int code = seed(rs);
    if (code == 0 && pthread_create(&rs->thread, NULL, keep_claims, rs) == 0)
        rs->thread_running = true;
    else if (code == 0)
        code = error_set(EXIT_INTERNAL, "trials: cannot start the claim keeper");
    if (code) {
        redis_destroy(s);
        return code;
    }
    *out = s;
    return 0;
}

int trials_redis_create_for_job(trial_source **out, const trial_spec *specs, int n,
                                const asha_config *asha, const char *state_path, int rank) {
    const redis_endpoint *ep = coord_endpoint();
    if (!ep) {
        *out = NULL;
        return error_set(EXIT_USAGE, "trials: the shared trial queue needs Redis (--redis off)");
    }
    char consumer[96];
    snprintf(consumer, sizeof consumer, "node%d-rank%d-pid%d", coord_self()->node_index, rank,
             (int)getpid());
    trials_redis_options options = {.state_path = state_path,
                                    .retry_ms = coord_worker_redis_wait_ms()};
    return trials_redis_create(out, specs, n, asha, ep, coord_prefix(), consumer, &options);
}
