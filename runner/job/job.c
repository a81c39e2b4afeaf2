// The job's entry point: open the context, run the configured mode, publish what it
// wrote. The modes (pipeline.c, modes.c) and the context (context.c) never call back
// here. See job.h and docs/pipeline.md.
#include "runner/job/job.h"

#include "runner/error.h"
#include "runner/exitcode.h"
#include "runner/job/context.h"
#include "runner/job/modes.h"

#include <stdbool.h>

int job_run(const runner_config *cfg, int rank, int world_size) {
    if (!cfg) return error_set(EXIT_INTERNAL, "job_run: no configuration");
    bool need_data = cfg->mode == MODE_PIPELINE || cfg->mode == MODE_TRAIN ||
                     (cfg->mode == MODE_PRETRAIN && !cfg->input_path[0]);
    job_context ctx;
    int rc = job_context_open(&ctx, cfg, rank, world_size, need_data);
    if (rc == 0) {
        switch (cfg->mode) {
        case MODE_PIPELINE: rc = job_pipeline(&ctx, true); break;
        case MODE_TRAIN: rc = job_pipeline(&ctx, false); break;
        case MODE_PREDICT: rc = job_predict(&ctx); break;
        case MODE_EMBED: rc = job_embed(&ctx); break;
        case MODE_PRETRAIN: rc = job_pretrain(&ctx); break;
        default: rc = error_set(EXIT_INTERNAL, "job_run: mode %d is not a job", (int)cfg->mode);
        }
        // What was written is uploaded whatever happened: checkpoints of an interrupted
        // run are what the next attempt resumes from.
        if (ctx.output[0]) {
            int upload = job_context_publish(&ctx);
            if (rc == 0) rc = upload;
        }
    }
    job_context_close(&ctx);
    return rc;
}
