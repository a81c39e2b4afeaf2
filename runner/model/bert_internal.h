#pragma once
// Internals of the BERT model shared by bert.c (layout, forward, backward, optimiser) and
// bert_io.c (configuration files, safetensors in and out). Not for other modules.
#include "runner/model/bert.h"

#include <stdbool.h>
#include <stddef.h>

enum { BERT_NAME_MAX = 96 };

// One named tensor: a range of the parameter buffer (and of grads, m, v at the same offset).
typedef struct {
    char name[BERT_NAME_MAX]; // HF name as saved, task prefix included ("bert.embeddings...")
    const char *base_name;    // the same name without the task prefix (points into name)
    size_t offset;            // in floats from the start of the buffer
    int shape[2];             // (rows, cols); cols == 0 for a vector
    bool decay;               // weight decay applies (not biases, not LayerNorm)
    bool head;                // belongs to the task head: may be absent from a base checkpoint
} bert_tensor;

// Offsets (in floats) of one encoder layer's parameters. q, k and v weights are adjacent
// so that one (3C, C) GEMM computes all three; their biases likewise form one (3C).
typedef struct {
    size_t qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, fc_w, fc_b, fp_w, fp_b, ln2_w, ln2_b;
} bert_layer_params;

// Activations saved by the forward pass for one layer (activation dtype unless noted).
typedef struct {
    void *qkv;         // (N,3C)
    void *att;         // (B,NH,T,T) softmax probabilities (before dropout)
    void *atty;        // (N,C) attention output, heads concatenated
    void *res1, *ln1;  // (N,C) x + dropout(attn proj), its LayerNorm
    float *mean1, *rstd1; // (N)
    void *fc_pre, *fc_gelu; // (N,F)
    void *res2, *ln2;  // (N,C) ln1 + dropout(ffn out), its LayerNorm (the layer's output)
    float *mean2, *rstd2; // (N)
} bert_layer_acts;

struct bert_model {
    backend *be;
    bert_config cfg;
    bert_head head;
    int num_labels;   // classes of the head; V for masked LM, 0 for embeddings
    int max_B, max_T;
    const char *prefix; // "bert.", "distilbert.", "electra." or "" (embedding models)

    // ---- parameters: one buffer per kind, tensors are offsets into them -------------
    bert_tensor *tensors;
    int num_tensors;
    size_t num_params;
    float *params, *grads, *m, *v; // device; grads, m, v allocated on first use
    void *params_act;              // activation-dtype copy (== params on fp32 backends)

    size_t wte, wpe, wtt, emb_ln_w, emb_ln_b, proj_w, proj_b; // wtt, proj_*: SIZE_MAX if absent
    bert_layer_params *layer;
    size_t pool_w, pool_b, cls_w, cls_b;                  // sequence / token classification
    size_t mlm_w, mlm_b, mlm_ln_w, mlm_ln_b, mlm_bias;    // masked LM

    // ---- activations for max_B x max_T ----------------------------------------------
    int32_t *ids, *types, *mask, *labels; // device (N)
    int32_t *host_ints;                   // (N) host scratch (all-ones mask, checks)
    void *emb;            // (N,E) word + position + type
    void *emb_ln;         // (N,E)
    float *emb_mean, *emb_rstd;
    void *emb_drop;       // (N,E) after dropout: the encoder input unless projected
    void *enc_in;         // (N,C) ELECTRA's projection of emb_drop; == emb_drop otherwise
    bert_layer_acts *acts;
    void *proj;           // (N,C) scratch: attention / FFN projection before the residual
    void *head_in;        // (N,C) token: dropout(hidden); MLM: transform pre-activation
    void *head_mid;       // (N,C) MLM: gelu(transform)
    void *head_ln;        // (N,C) MLM: LayerNorm(gelu)
    float *head_mean, *head_rstd;
    void *cls_rows;       // (B,C) [CLS] hidden states
    void *cls_drop;       // (B,C) RoBERTa: the <s> rows after its head's first dropout
    void *pool_pre, *pooled, *pooled_drop; // (B,C)
    float *host_pool;     // (B,C) host copy of tanh(pool_pre), kept for backward
    void *logits;         // (rows, num_labels)
    float *probs, *losses; // (rows, num_labels), (rows)
    float *pool_out;      // (B,C) fp32 mean pooling
    float *f32_scratch;   // conversions on non-fp32 backends (rows*num_labels or B*C)
    size_t f32_scratch_n;

    // ---- gradients of activations, allocated on the first backward ------------------
    void *dx, *dres, *dproj, *dln1, *datty, *dqkv, *dfc_gelu, *dfc_pre, *datt_scratch;
    void *dlogits, *dhead_a, *dhead_b, *demb_a, *demb_b;

    // ---- the last forward -----------------------------------------------------------
    int B, T;
    bool have_labels, training;
    bool have_types; // the last forward's batch carried token types (m->types is valid)
    int label_count;
    uint64_t step_seed;
};

// Size of an activation element and pointer arithmetic on activation buffers.
static inline void *bert_act_at(const bert_model *m, void *buf, size_t elems) {
    return (char *)buf + elems * backend_act_size(m->be);
}

// Refresh params_act from params (after load, init or set_state).
int bert_sync_params_act(bert_model *m);

// Shared by the forward (bert.c) and backward (bert_backward.c) passes:
// a device buffer of `bytes`, or NULL with *rc set (no-op when *rc is already set);
void *bert_dev_alloc(bert_model *m, size_t bytes, int *rc);
// the counter offset of dropout site `site` (see bert.c's header comment);
uint64_t bert_dropout_offset(int site);
// the encoder's output (N,C): the last layer's LayerNorm, or the embeddings without layers.
void *bert_final_hidden(bert_model *m);
