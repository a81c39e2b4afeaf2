#pragma once
// The fingerprint of a training run: everything its result depends on, so that a
// checkpoint is resumed only by the run that wrote it (runner/job/checkpoint.h). Keys:
//   code            runner version and git commit
//   model           architecture, sizes and dropout of the model's configuration
//   model_hash      FNV-1a 64 of the initial parameters (random init or --model weights)
//   train_data_hash, valid_data_hash, train_rows, valid_rows
//                   FNV-1a 64 of the encoded ids, mask and labels the run trains on and
//                   evaluates with (so the data, its split, the tokenizer and MAX_LENGTH)
//   run, epochs, batch_size, eval_batch_size, learning_rate, weight_decay,
//   max_grad_norm, warmup_ratio, patience, seed, world_size, labels, mask_id
//                   every training setting (doubles as hex floats: compared exactly)
// save_total_limit is not in it: it changes which checkpoints are kept, not the result.
#include "runner/job/train.h"

#include <cjson/cJSON.h>

// The fingerprint of training `m` (as initialised, before any resume) on `train`,
// evaluated on `valid` (may be NULL), with `opt`. Into *out (owned). 0 or an exit code.
int fingerprint_of_training(const bert_model *m, const encoded_set *train,
                            const encoded_set *valid, const train_options *opt, cJSON **out);
