// The job's entry point: dispatch on the configured mode.
#include "runner/job/job.h"

#include "runner/error.h"
#include "runner/exitcode.h"

int job_run(const runner_config *cfg, int rank, int world_size) {
    (void)rank;
    (void)world_size;
    if (!cfg) return error_set(EXIT_INTERNAL, "job_run: no configuration");
    return error_set(EXIT_INTERNAL, "job: mode not implemented yet");
}
