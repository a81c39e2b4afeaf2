#pragma once
// The step the ranks of a data-parallel group resume from: the newest step that EVERY
// rank holds as a complete, valid checkpoint of the run (its own copy: on several nodes
// each node reads its own output, an s3:// output fetched at start), or none (all start
// from scratch). Resuming from different steps would put the ranks out of step in every
// all-reduce after it.
//
// The protocol, in rounds: each rank names its newest valid step at or below a bound
// (LONG_MAX at first), the ranks exchange these candidates, and all of them see the same
// list: when the candidates are equal that is the step; when one is -1 no step is common;
// else the bound becomes the smallest candidate (no common step can lie above it: the
// rank that named it holds none valid between it and the old bound) and the next round
// starts. Every rank takes the same decision from the same list, so all run the same
// number of rounds. Validation is lazy: a rank checks (checksums: reads whole files) only
// the checkpoints it names, newest first, not every one it holds.
//
// Pure logic: the exchange and the validation are the caller's (runner/job/checkpoint.c
// exchanges through the group's collective; the unit test through threads).
#include <stddef.h>

typedef struct {
    int rank, world;
    void *ctx;
    // Every rank's `mine` into all[0..world), in rank order, the same on every rank: a
    // collective, called by all ranks together. 0 or an exit code.
    int (*exchange)(void *ctx, long mine, long *all);
    // This rank's newest valid step at or below `bound` into *step (-1: none). 0 or an
    // exit code (a failure to validate, not an invalid checkpoint: that is skipped).
    int (*newest_valid)(void *ctx, long bound, long *step);
} resume_ops;

enum { RESUME_LACKING_MAX = 16 };

// Why the agreed step is older than this rank's newest: rank `rank` holds no valid
// checkpoint `lacks` (a step this rank named); the newest it named below it is `holds`
// (-1: none).
typedef struct {
    int rank;
    long lacks, holds;
} resume_lack;

typedef struct {
    long step;       // agreed step, the same on every rank; -1: all start from scratch
    long own_newest; // this rank's newest valid step (-1: none)
    int rounds;
    int n_lacking;   // entries of lacking[] (the first RESUME_LACKING_MAX of them)
    resume_lack lacking[RESUME_LACKING_MAX]; // in round order; none when step == own_newest
} resume_agreement;

// Run the protocol as ops->rank. 0 or the first exit code of a callback (the other ranks
// then fail in their next collective, as when a peer dies).
int resume_agree(const resume_ops *ops, resume_agreement *out);

// One line for the log: why `a->step` and not this rank's newest, e.g.
// "rank 1 holds no valid checkpoint-30 (its newest below it: checkpoint-20)".
// Empty when the step is this rank's newest.
void resume_describe(const resume_agreement *a, char *out, size_t cap);
