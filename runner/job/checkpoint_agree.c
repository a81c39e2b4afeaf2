// The data-parallel resume (checkpoint_resume_agreed in checkpoint.h): the ranks'
// agreement of runner/job/resume.h over this rank's checkpoints, and rank 0's newest
// copied to ranks that hold none of it (checkpoint_replica.c).
#include "runner/job/checkpoint_internal.h"

#include "runner/error.h"
#include "runner/job/files.h"
#include "runner/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// This rank's side of resume.h: its checkpoints, validated when first named.
typedef struct {
    const resume_ops *group;
    const char *dir;
    const bert_model *m;
    const train_state *st;
    long *steps; // newest first
    int n;
    signed char *verdict; // per step: 0 not checked yet, 1 valid, -1 not
    train_state *loaded;  // per step with verdict 1: its trainer state
} agree_side;

static int side_exchange(void *ctx, long mine, long *all) {
    const agree_side *side = ctx;
    return side->group->exchange(side->group->ctx, mine, all);
}

// steps[i]'s verdict, validating it the first time.
static int side_check(agree_side *side, int i) {
    if (side->verdict[i] == 0) {
        char ck[PATH_MAX];
        side->verdict[i] = -1;
        int rc = files_join(ck, sizeof ck, "%s/checkpoint-%ld", side->dir, side->steps[i]);
        if (rc) snprintf(ck, sizeof ck, "checkpoint-%ld", side->steps[i]); // for the line
        else rc = checkpoint_validate(ck, side->m, side->st, &side->loaded[i]);
        if (rc == 0) side->verdict[i] = 1;
        else checkpoint_log_skipped(ck);
    }
    return side->verdict[i];
}

static int side_newest_valid(void *ctx, long bound, long *step) {
    agree_side *side = ctx;
    *step = -1;
    for (int i = 0; i < side->n; i++)
        if (side->steps[i] <= bound && side_check(side, i) == 1) {
            *step = side->steps[i];
            return 0;
        }
    return 0;
}

// What this rank holds of `step`: a RESUME_HOLDS_*.
static long side_holds(agree_side *side, long step) {
    for (int i = 0; i < side->n; i++)
        if (side->steps[i] == step)
            return side_check(side, i) == 1 ? RESUME_HOLDS_VALID : RESUME_HOLDS_DAMAGED;
    return RESUME_HOLDS_NONE;
}

// "1, 2" for the ranks with held[k] != VALID; their count.
static int receivers(const long *held, int world, char *out, size_t cap) {
    int n = 0;
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; k < world; k++) {
        if (held[k] == RESUME_HOLDS_VALID) continue;
        n++;
        if (used < cap) {
            int w = snprintf(out + used, cap - used, "%s%d", used ? ", " : "", k);
            if (w > 0) used += (size_t)w;
        }
    }
    return n;
}

// One "resume_agreed" line: `step` is what every rank resumes; `copied` (NULL: nothing
// was copied) what each rank held of it before rank 0's copy reached those without it.
static void log_agreement(const char *dir, const resume_agreement *a, long step,
                          const long *copied, int world) {
    char why[2048], msg[2800];
    resume_describe(a, why, sizeof why);
    if (copied) {
        char to[512], own[96] = "";
        int n = receivers(copied, world, to, sizeof to);
        if (a->own_newest > step)
            snprintf(own, sizeof own, " (this rank's newest valid checkpoint-%ld left as it is)",
                     a->own_newest);
        snprintf(msg, sizeof msg, "checkpoint-%ld, rank 0's newest valid one, copied from rank 0 "
                 "to rank%s %s, which held no valid copy of it: all %d ranks resume it%s", step,
                 n > 1 ? "s" : "", to, world, own);
    } else if (step < 0 && a->own_newest < 0) {
        snprintf(msg, sizeof msg, "no checkpoint of this run under %s is valid on every rank: "
                 "all %d ranks start from scratch", dir, world);
    } else if (step < 0) {
        snprintf(msg, sizeof msg, "no checkpoint is valid on every rank: all %d ranks start from "
                 "scratch, not from this rank's checkpoint-%ld (left as it is): %s", world,
                 a->own_newest, why);
    } else if (step == a->own_newest) {
        snprintf(msg, sizeof msg, "checkpoint-%ld, this rank's newest valid one, is valid on "
                 "all %d ranks", step, world);
    } else {
        snprintf(msg, sizeof msg, "checkpoint-%ld, not this rank's newest valid checkpoint-%ld "
                 "(left as it is): %s", step, a->own_newest, why);
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "msg", msg);
    if (step >= 0) cJSON_AddNumberToObject(f, "step", (double)step);
    else cJSON_AddNullToObject(f, "step");
    if (a->own_newest >= 0) cJSON_AddNumberToObject(f, "newest", (double)a->own_newest);
    else cJSON_AddNullToObject(f, "newest");
    cJSON_AddNumberToObject(f, "world", world);
    cJSON_AddNumberToObject(f, "rounds", a->rounds);
    cJSON *lacking = cJSON_AddArrayToObject(f, "lacking");
    for (int i = 0; i < a->n_lacking; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "rank", a->lacking[i].rank);
        cJSON_AddNumberToObject(l, "lacks", (double)a->lacking[i].lacks);
        if (a->lacking[i].holds >= 0)
            cJSON_AddNumberToObject(l, "holds", (double)a->lacking[i].holds);
        else
            cJSON_AddNullToObject(l, "holds");
        cJSON_AddItemToArray(lacking, l);
    }
    cJSON *to = cJSON_AddArrayToObject(f, "replicated_to");
    for (int k = 0; copied && k < world; k++)
        if (copied[k] != RESUME_HOLDS_VALID) cJSON_AddItemToArray(to, cJSON_CreateNumber(k));
    // A warning where this rank gives up progress it holds (an older step than its own).
    log_fields(step >= a->own_newest ? LOG_INFO : LOG_WARN, "resume_agreed", f);
}

// After the agreement: when it fell below rank 0's newest valid step and some rank holds
// no copy of that at all (resume_replicates()), copy it there; *step becomes it when
// every rank then holds it valid. `copy` is this rank's part; *held what every rank
// held of it (malloc'd, NULL when nothing was copied).
static int maybe_replicate(agree_side *side, const resume_agreement *a, int keep, long *step,
                           checkpoint_replica *copy, long **held) {
    const resume_ops *g = side->group;
    *held = NULL;
    if (!g->broadcast || a->root_newest <= a->step) return 0;
    long *all = calloc((size_t)g->world, sizeof *all);
    if (!all) return error_set(EXIT_RESOURCES, "out of memory");
    int rc = g->exchange(g->ctx, side_holds(side, a->root_newest), all);
    if (rc == 0 && resume_replicates(a, all, g->world)) {
        rc = checkpoint_replicate(g, side->dir, a->root_newest, all, side->m, side->st, keep, copy);
        if (rc == 0 && copy->everywhere) {
            *step = a->root_newest;
            *held = all;
            return 0;
        }
    }
    free(all);
    return rc;
}

int checkpoint_resume_agreed(const char *dir, bert_model *m, train_state *st,
                             const resume_ops *group, int keep, bool *found) {
    *found = false;
    agree_side side = {.group = group, .dir = dir, .m = m, .st = st};
    side.n = checkpoint_list(dir, &side.steps);
    size_t slots = side.n > 0 ? (size_t)side.n : 1;
    side.verdict = calloc(slots, sizeof *side.verdict);
    side.loaded = calloc(slots, sizeof *side.loaded);
    int rc = side.verdict && side.loaded ? 0 : error_set(EXIT_RESOURCES, "out of memory");
    resume_ops ops = {.rank = group->rank, .world = group->world, .ctx = &side,
                      .exchange = side_exchange, .newest_valid = side_newest_valid};
    resume_agreement agreed;
    if (rc == 0) rc = resume_agree(&ops, &agreed);
    long step = rc == 0 ? agreed.step : -1, *held = NULL;
    checkpoint_replica copy = {0};
    if (rc == 0) rc = maybe_replicate(&side, &agreed, keep, &step, &copy, &held);
    if (rc == 0) log_agreement(dir, &agreed, step, held, group->world);
    // Every other rank loads this step now: a failure here ends the job (the others then
    // fail with 83), never a quiet fall back to another step.
    char ck[PATH_MAX];
    for (int i = 0; i < side.n && side.loaded; i++) {
        if (side.verdict[i] != 1) continue;
        if (rc == 0 && side.steps[i] == step) { // this rank validated it (named or checked it)
            rc = files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, side.steps[i]);
            if (rc == 0) rc = checkpoint_restore(ck, m, st, &side.loaded[i]);
            else train_state_free(&side.loaded[i]);
            *found = rc == 0;
        } else {
            train_state_free(&side.loaded[i]);
        }
    }
    if (copy.received) { // validated where it now lies
        if (rc == 0 && !*found && held) {
            rc = files_join(ck, sizeof ck, "%s/checkpoint-%ld", dir, step);
            if (rc == 0) rc = checkpoint_restore(ck, m, st, &copy.state);
            else train_state_free(&copy.state);
            *found = rc == 0;
        } else {
            train_state_free(&copy.state);
        }
    }
    free(held);
    free(side.steps);
    free(side.verdict);
    free(side.loaded);
    return rc;
}
