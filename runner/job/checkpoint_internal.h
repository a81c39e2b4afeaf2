#pragma once
// What runner/job/checkpoint.c shares with checkpoint_agree.c (the data-parallel resume
// and the copy of rank 0's checkpoint); not for other modules. The comments at the
// definitions in checkpoint.c say the details.
#include "runner/job/checkpoint.h"

enum { CHECKPOINT_NFILES = 3 };
// The files a manifest covers, in the order it lists them (manifest.json comes after).
extern const char *const CHECKPOINT_FILES[CHECKPOINT_NFILES];

// Steps of every checkpoint-<N> entry under dir, newest first (*steps malloc'd); the count.
int checkpoint_list(const char *dir, long **steps);
// save_total_limit after checkpoint-<current> is in place (see checkpoint_save()).
void checkpoint_rotate(const char *dir, long current, long best, int keep,
                       const cJSON *fingerprint);
// Rename a complete checkpoint of another run (another fingerprint than `fingerprint`)
// at `ck` aside, contents untouched; nothing when `ck` is not one. 0 or EXIT_OUTPUT.
int checkpoint_set_aside(const char *ck, const cJSON *fingerprint);
// Every check a resume makes of `ck` before loading it into m (*loaded: its trainer
// state, the caller's to free or move; freed on failure). 0 or EXIT_BAD_INPUT.
int checkpoint_validate(const char *ck, const bert_model *m, const train_state *st,
                        train_state *loaded);
// Load validated `ck` into m; *loaded moves into *st. Logs "checkpoint_resumed".
int checkpoint_restore(const char *ck, bert_model *m, train_state *st, train_state *loaded);
// The "checkpoint_skipped" warning for `ck` with error_message(); clears the error.
void checkpoint_log_skipped(const char *ck);

typedef struct {
    bool received;      // this rank took a copy: validated, in place
    train_state state;  // its trainer state when received (the caller frees or moves it)
    bool everywhere;    // every rank of the group now holds the step valid
} checkpoint_replica;
// Copy rank 0's <dir>/checkpoint-<step> to every rank whose held[rank] is not
// RESUME_HOLDS_VALID (runner/job/resume.h: resume_replicates() said so), through
// g->broadcast: a collective, every rank calls it with the same step and held[]. Rank 0
// sends a header (each file's name and size), then the files in pieces, the manifest
// last; a receiving rank writes them under <dir>/checkpoint-<step>.replica-<rank>/
// (fsynced), validates that as any checkpoint, and renames it to checkpoint-<step>
// (a damaged copy there is replaced, another run's set aside; a valid one never
// rewritten: a rank sharing the folder may have written it). Logs
// "checkpoint_replicated" (step, bytes, seconds) on each receiving rank, or
// "checkpoint_replication_failed"; then the ranks agree whether every one holds the
// step (out->everywhere). Where this rank wrote a copy, its older ones rotate by `keep`
// (save_total_limit) as rank 0's do. 0 or an exit code of the collective (a failure to
// read or store is not one: out->everywhere is false then).
int checkpoint_replicate(const resume_ops *g, const char *dir, long step, const long *held,
                         const bert_model *m, const train_state *st, int keep,
                         checkpoint_replica *out);
