#pragma once
// The BERT model over a compute backend (kernels/backend.h): configuration, one buffer
// per kind (params, grads, AdamW m and v), forward/backward through the backend's ops,
// task heads, and Hugging Face safetensors in and out with HF tensor names.
#include "kernels/backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { ARCH_BERT, ARCH_DISTILBERT, ARCH_ELECTRA, ARCH_ROBERTA } bert_arch;

typedef struct {
    bert_arch arch;
    int vocab_size;       // V
    int hidden_size;      // C
    int num_layers;       // L
    int num_heads;        // NH
    int intermediate_size; // F
    int max_position;     // P
    int type_vocab_size;  // TT (0 for DistilBERT: no token-type embeddings)
    float layer_norm_eps; // 1e-12
    float hidden_dropout; // 0.1
    float attention_dropout; // 0.1
    int embedding_size;   // ELECTRA may project embeddings; == hidden_size otherwise
    int position_offset;  // RoBERTa: pad_token_id + 1 (its positions start after the
                          // padding index, so P - offset tokens fit); 0 otherwise
} bert_config;

typedef enum {
    HEAD_TOKEN_CLASSIFICATION,    // the original job's task: logits (B,T,num_labels)
    HEAD_SEQUENCE_CLASSIFICATION, // pooled [CLS] -> logits (B,num_labels)
    HEAD_MASKED_LM,               // logits (B,T,V), decoder tied to word embeddings
    HEAD_EMBEDDING,               // mean-pooled sentence embedding (B,C), no parameters
} bert_head;

// A batch on the host; the model copies it to the device.
typedef struct {
    int B, T;
    const int32_t *ids;         // (B,T)
    const int32_t *token_types; // (B,T) or NULL
    const int32_t *mask;        // (B,T) 1 = token, 0 = padding
    const int32_t *labels;      // (B,T) for token tasks, (B) for sequence; -100 ignored; or NULL
} bert_batch;

typedef struct bert_model bert_model;

// Presets: "bert-tiny" (L2 C128), "bert-mini" (L4 C256), "bert-small" (L4 C512),
// "bert-medium" (L8 C512), "bert-base" / "bert" (L12 C768), "minilm-l6" (L6 C384 NH12),
// "distil" / "distilbert" (L6 C768), "electra" (base discriminator), "electra-small"
// (E128 C256). Vocabulary 30522 (set cfg.vocab_size from the job's vocab.txt before
// bert_create), max_position 512, dropout 0.1. Returns 0 or EXIT_USAGE (lists the names).
int bert_config_preset(const char *name, bert_config *out);
// A Hugging Face config.json (BERT, DistilBERT, ELECTRA discriminator, RoBERTa); 0 or
// EXIT_BAD_INPUT.
int bert_config_load(const char *config_json_path, bert_config *out);

// Allocate a model for batches up to max_batch x max_seq. 0 or an exit code. Gradients
// and AdamW moments are allocated on the first bert_backward / bert_step, so inference
// models hold parameters and activations only. DistilBERT and ELECTRA support the token
// classification and embedding heads; sequence classification and masked LM are BERT's
// and RoBERTa's (RoBERTa's under its own names: classifier.dense/out_proj, lm_head).
int bert_create(bert_model **out, backend *be, const bert_config *cfg, bert_head head,
                int num_labels, int max_batch, int max_seq);
void bert_destroy(bert_model *m);
// Hugging Face initialisation: normal(0, 0.02) weights, zero biases, LayerNorm 1 and 0.
int bert_init_random(bert_model *m, uint64_t seed);
// Load weights by HF name (with or without the "bert." / "distilbert." / "electra." /
// "roberta." prefix); a head missing from the file keeps its random init (as HF warns). Validates
// shapes against the config; a bad file exits 3 naming the tensor. `path` is a
// .safetensors file or a sharded checkpoint's model.safetensors.index.json (the tensors
// are read across its shards; safetensors_checkpoint_path picks one for a folder).
int bert_load_safetensors(bert_model *m, const char *path);
// Write every parameter under its HF name with the task model's prefix.
int bert_save_safetensors(const bert_model *m, const char *path);

// Forward pass. With labels, computes the mean loss over labelled positions into *loss
// (may be NULL). `training` enables dropout drawn from (dropout_seed, step).
int bert_forward(bert_model *m, const bert_batch *batch, bool training, uint64_t dropout_seed,
                 uint64_t step, float *loss);
// Backward pass of the last forward (which must have had labels); grads accumulate.
int bert_backward(bert_model *m);
void bert_zero_grad(bert_model *m);
// Clip to max_grad_norm (<= 0: no clipping) and take one AdamW step (t is 1-based);
// weight decay is skipped for biases and LayerNorm. *grad_norm gets the pre-clip norm.
int bert_step(bert_model *m, float lr, float weight_decay, float max_grad_norm, int t,
              float *grad_norm);
// Copy the last forward's logits to the host: (B,T,num_labels), (B,num_labels) or (B,T,V).
int bert_logits(bert_model *m, float *out);
// Mean-pooled (optionally L2-normalised) embeddings of the last forward: (B,C).
int bert_embeddings(bert_model *m, float *out, bool normalize);

// Buffers for checkpoints and tests: count of fp32 parameters and the host-side copies.
size_t bert_num_parameters(const bert_model *m);
int bert_get_state(const bert_model *m, float *params, float *m1, float *v1);
int bert_set_state(bert_model *m, const float *params, const float *m1, const float *v1);
// Gradients to the host, in parameter-buffer order (tests compare them with PyTorch).
int bert_get_grads(const bert_model *m, float *grads);
// Name, offset and shape of parameter i (0 <= i < bert_num_tensors), for tests and I/O;
// shape[1] == 0 for vectors. Names are HF's, with the task prefix ("bert.", none for the
// embedding head).
int bert_num_tensors(const bert_model *m);
const char *bert_tensor_info(const bert_model *m, int i, size_t *offset, int shape[2]);
const bert_config *bert_get_config(const bert_model *m);
