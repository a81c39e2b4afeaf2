#pragma once
// Training checkpoints under a run directory: <dir>/checkpoint-<step>/ holding
//   state.bin           parameters, AdamW m and v (fp32, the model's buffer order)
//   model.safetensors   the weights under Hugging Face names (loadable on their own)
//   trainer_state.json  step, epoch, position in the epoch, seed, early-stopping state,
//                       the evaluation curve
//   manifest.json       written LAST: size and CRC-32 of each file above.
// Every file is written atomically (temporary name, fsync, rename), so a checkpoint
// without a manifest, or whose files disagree with it, is incomplete or corrupt: resume
// skips it with a warning and takes the previous one.
#include "runner/job/resume.h"
#include "runner/model/bert.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    long step;            // optimizer steps taken
    int epoch;            // epochs completed
    int batch_in_epoch;   // batches done of epoch `epoch` (0 at an epoch boundary)
    uint64_t seed;        // data order and dropout derive from (seed, epoch, step)
    double loss_sum;      // running training loss of the current epoch
    long loss_count;
    double best_eval_loss; // +inf before the first evaluation
    double best_eval_f1;
    long best_step;       // the checkpoint holding the best weights (-1: none)
    int bad_epochs;       // evaluations without improvement (early stopping)
    bool finished;        // all epochs run, stopped early or halted by ASHA
    bool halted;          // halted by ASHA
    cJSON *curve;         // [{epoch, step, train_loss, eval_loss, eval_f1, ...}], owned
    // Everything the run's result depends on ({key: value}, owned; NULL: not checked),
    // written into trainer_state.json. A checkpoint is resumed, and counted or deleted
    // by save_total_limit, only when its fingerprint equals the run's.
    cJSON *fingerprint;
} train_state;

void train_state_init(train_state *st, uint64_t seed);
void train_state_free(train_state *st);

// Write <dir>/checkpoint-<st->step>, then delete older complete checkpoints beyond the
// newest `keep` complete ones (save_total_limit; keep <= 0 keeps all). Only complete
// checkpoints count; incomplete folders are neither counted nor deleted; the one just
// written and the best one (st->best_step) are never deleted. 0 or an exit code.
int checkpoint_save(const char *dir, const bert_model *m, const train_state *st, int keep);
// Restore the newest valid checkpoint under `dir` into m and st; *found = false (and
// 0 returned) when there is none. Valid: its manifest present, every file of the size
// and CRC-32 the manifest says, trainer_state.json parses with st's seed, state.bin
// holds m's parameter count, model.safetensors' header parses. Corrupt or incomplete
// ones are skipped with a warning; so is one whose fingerprint differs from
// st->fingerprint (when set): logged as "checkpoint_fingerprint_mismatch" with the keys
// that differ, and left untouched.
int checkpoint_resume(const char *dir, bert_model *m, train_state *st, bool *found);
// The same as rank group->rank of a data-parallel group: the ranks agree on the newest
// step that every one of them holds valid (runner/job/resume.h, through group->exchange;
// group->newest_valid is not used) and restore that one, or none (*found = false on
// every rank: all start from scratch). Each rank validates its own copies, lazily and as
// checkpoint_resume does, and loads only one it validated; newer ones are left as they
// are. Logs "resume_agreed": the step and, when it is older than this rank's newest
// valid one, which rank lacked which step. 0 or an exit code.
int checkpoint_resume_agreed(const char *dir, bert_model *m, train_state *st,
                             const resume_ops *group, bool *found);
// Load only the weights of <dir>/checkpoint-<step> (the best model at the end).
int checkpoint_load_weights(const char *dir, long step, bert_model *m);
// Delete every checkpoint-* under `dir` (a finished trial's: its result is recorded).
int checkpoint_remove_all(const char *dir);
// Verify a checkpoint directory against its manifest; 0 or EXIT_BAD_INPUT (why in
// error_message()).
int checkpoint_verify(const char *checkpoint_dir);
