#pragma once
// The context every mode of the job runs on (context.c): where things are, which
// backend, model shape and tokenizer, and how a model is created. job.c opens it; the
// modes (pipeline.c, modes.c, export.c) use it.
#include "kernels/backend.h"
#include "runner/config.h"
#include "runner/job/dataset.h"
#include "runner/job/space.h"
#include "runner/model/bert.h"
#include "runner/model/tokenizer.h"

#include <limits.h>

typedef struct {
    const runner_config *cfg;
    int rank, world_size;
    backend *be;
    bool on_gpu;
    char output[PATH_MAX];       // local output root (staging when the output is on S3)
    char artefacts[PATH_MAX];    // {output}/artefacts/{architecture}
    char data[PATH_MAX];         // local data directory or file
    char model_dir[PATH_MAX];    // local pretrained/exported model directory, or ""
    char hyperspace[PATH_MAX];   // local hyperspace.json, or ""
    char shape[64];              // the model shape used ("bert-tiny", or from config.json)
    bert_config bcfg;
    tokenizer *tok;
    bool lowercase;
} job_context;

// Resolve paths (fetching s3:// inputs into a staging directory), pick the backend, the
// model shape and the tokenizer. `need_data` = the mode reads the NER data.
int job_context_open(job_context *ctx, const runner_config *cfg, int rank, int world_size,
                     bool need_data);
void job_context_close(job_context *ctx);
// Upload the local output to the S3 output (when the output is remote). 0 or code.
int job_context_publish(const job_context *ctx);

// A model of the context's shape with `head`, initialised from the pretrained model
// directory when there is one (its head stays random when absent), else randomly from
// `seed`. 0 or an exit code.
int job_model_create(const job_context *ctx, bert_head head, int num_labels, int max_batch,
                     int max_seq, uint64_t seed, bert_model **out);

// The starting point of the context's model: pretrained weights (a model directory) or
// random ones, and its shape (runner/job/space.h chooses defaults from it).
space_start job_space_start(const job_context *ctx);
// The learning rate and warm-up ratio of a run without a search: the configured ones
// where the user set them, else the starting point's defaults.
void job_schedule(const job_context *ctx, double *learning_rate, double *warmup_ratio);
