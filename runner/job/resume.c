// The resume step every rank of a group holds (see resume.h).
#include "runner/job/resume.h"

#include "runner/error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int resume_agree(const resume_ops *ops, resume_agreement *out) {
    memset(out, 0, sizeof *out);
    out->step = -1;
    out->own_newest = -1;
    if (ops->world < 1 || ops->rank < 0 || ops->rank >= ops->world)
        return error_set(EXIT_INTERNAL, "resume_agree: rank %d of %d", ops->rank, ops->world);
    long *all = malloc((size_t)ops->world * sizeof *all);
    if (!all) return error_set(EXIT_RESOURCES, "out of memory agreeing on the resume step");
    long bound = LONG_MAX;
    int rc = 0;
    for (;;) {
        long mine = -1;
        if ((rc = ops->newest_valid(ops->ctx, bound, &mine))) break;
        if (mine > bound) mine = bound; // a caller's slip must not loop for ever
        if (mine < -1) mine = -1;
        if (out->rounds++ == 0) out->own_newest = mine;
        if ((rc = ops->exchange(ops->ctx, mine, all))) break;
        long lo = all[0], hi = all[0];
        for (int k = 1; k < ops->world; k++) {
            if (all[k] < lo) lo = all[k];
            if (all[k] > hi) hi = all[k];
        }
        if (lo == hi) { // every rank holds it (or none holds anything)
            out->step = lo;
            break;
        }
        // Why this rank's candidate is not the step: the ranks that named an older one
        // hold no valid checkpoint of it (theirs is their newest at or below the bound).
        for (int k = 0; k < ops->world; k++)
            if (all[k] < mine && out->n_lacking < RESUME_LACKING_MAX)
                out->lacking[out->n_lacking++] = (resume_lack){.rank = k, .lacks = mine,
                                                               .holds = all[k]};
        if (lo < 0) break; // a rank holds none at or below the bound: from scratch
        // Candidates only go down, and at least the newest one does: this ends.
        bound = lo;
    }
    free(all);
    return rc;
}

void resume_describe(const resume_agreement *a, char *out, size_t cap) {
    if (cap == 0) return;
    out[0] = '\0';
    if (a->step == a->own_newest) return;
    size_t used = 0;
    for (int i = 0; i < a->n_lacking && used < cap; i++) {
        const resume_lack *l = &a->lacking[i];
        char holds[64];
        if (l->holds >= 0) snprintf(holds, sizeof holds, "checkpoint-%ld", l->holds);
        else snprintf(holds, sizeof holds, "none");
        int n = snprintf(out + used, cap - used, "%srank %d holds no valid checkpoint-%ld (its "
                         "newest below it: %s)", used ? "; " : "", l->rank, l->lacks, holds);
        if (n < 0) break;
        used += (size_t)n;
    }
}
