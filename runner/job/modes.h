#pragma once
// The job's modes (job.c picks one): the pipeline (pipeline.c), predict, embed and
// pretrain (modes.c), and the Hugging Face export they share (export.c).
#include "runner/job/context.h"

// The modes.
int job_pipeline(job_context *ctx, bool search);
int job_predict(job_context *ctx);
int job_embed(job_context *ctx);
int job_pretrain(job_context *ctx);

// Write a Hugging Face model directory: config.json (with id2label/label2id for token
// classification), model.safetensors, vocab.txt, tokenizer_config.json,
// special_tokens_map.json. labels may be NULL (no label maps). 0, EXIT_OUTPUT, or
// EXIT_INTERRUPTED when a stop was requested before a file or after the last one.
int export_model_dir(const job_context *ctx, const bert_model *m, bert_head head,
                     const char *const *labels, int num_labels, const char *dir);
// Read id2label of an exported model's config.json (malloc'd strings); 0 or EXIT_BAD_INPUT.
int export_read_labels(const char *model_dir, char ***labels, int *num_labels);
