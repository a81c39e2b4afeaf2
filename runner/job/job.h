#pragma once
// The job itself (DESIGN §2 and §8): what `runner --architecture bert` does in a worker.
// Mode pipeline: read data -> split 80/15/5 -> hyper-parameter search -> prime training
// -> evaluation -> export; modes train, predict, embed and pretrain run their part.
#include "runner/config.h"

// Run the configured mode in this worker (rank of world_size). Returns an exit code from
// runner/exitcode.h: EXIT_OK, EXIT_INTERRUPTED after a stop request (a checkpoint was
// written first), or the code of the first failure (its reason is in error_message()).
int job_run(const runner_config *cfg, int rank, int world_size);
