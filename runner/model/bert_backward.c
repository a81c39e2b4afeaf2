// The backward pass of the BERT model (bert.c has the layout and the forward pass, whose
// saved activations this reads), global-norm gradient clipping and AdamW. Every op goes
// through the backend, so the CPU reference and the CUDA path share this code.
#include "runner/model/bert_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rng.h"
#include "runner/error.h"

#define ABSENT SIZE_MAX

// ---- backward ----------------------------------------------------------------------------

static int ensure_grads(bert_model *m) {
    if (m->grads) return 0;
    int rc = 0;
    size_t a = backend_act_size(m->be), N = (size_t)m->max_B * m->max_T, B = m->max_B;
    size_t C = m->cfg.hidden_size, E = m->cfg.embedding_size, F = m->cfg.intermediate_size;
    size_t T = m->max_T, NH = m->cfg.num_heads;
    size_t rows = m->head == HEAD_SEQUENCE_CLASSIFICATION ? B : N;
    m->grads = bert_dev_alloc(m, m->num_params * sizeof(float), &rc);
    m->dx = bert_dev_alloc(m, N * C * a, &rc);
    m->dres = bert_dev_alloc(m, N * C * a, &rc);
    m->dproj = bert_dev_alloc(m, N * C * a, &rc);
    m->dln1 = bert_dev_alloc(m, N * C * a, &rc);
    m->datty = bert_dev_alloc(m, N * C * a, &rc);
    m->dqkv = bert_dev_alloc(m, N * 3 * C * a, &rc);
    m->dfc_gelu = bert_dev_alloc(m, N * F * a, &rc);
    m->dfc_pre = bert_dev_alloc(m, N * F * a, &rc);
    m->datt_scratch = bert_dev_alloc(m, B * NH * T * T * a, &rc);
    m->dlogits = bert_dev_alloc(m, rows * (m->num_labels ? m->num_labels : 1) * a, &rc);
    m->dhead_a = bert_dev_alloc(m, N * C * a, &rc);
    m->dhead_b = bert_dev_alloc(m, N * C * a, &rc);
    m->demb_a = bert_dev_alloc(m, N * E * a, &rc);
    m->demb_b = bert_dev_alloc(m, N * E * a, &rc);
    if (!rc) rc = m->be->memset_zero(m->be, m->grads, m->num_params * sizeof(float));
    return rc;
}

void bert_zero_grad(bert_model *m) {
    if (m->grads) m->be->memset_zero(m->be, m->grads, m->num_params * sizeof(float));
}

// Host-side derivative of the pooler's tanh: dpre = dpooled * (1 - pooled^2).
static int pooler_tanh_backward(bert_model *m, void *dpre, const void *dpooled, int B) {
    backend *be = m->be;
    size_t n = (size_t)B * m->cfg.hidden_size;
    float *host = malloc(n * sizeof(float));
    if (!host) return error_set(EXIT_RESOURCES, "bert: out of memory");
    int rc;
    if (be->act_dtype == DTYPE_F32) {
        rc = be->copy_to_host(be, host, dpooled, n * sizeof(float));
    } else {
        rc = be->act_to_f32(be, m->f32_scratch, dpooled, n);
        if (!rc) rc = be->copy_to_host(be, host, m->f32_scratch, n * sizeof(float));
    }
    for (size_t i = 0; i < n && !rc; i++)
        host[i] *= 1.0f - m->host_pool[i] * m->host_pool[i];
    if (!rc) {
        if (be->act_dtype == DTYPE_F32) {
            rc = be->copy_to_device(be, dpre, host, n * sizeof(float));
        } else {
            rc = be->copy_to_device(be, m->f32_scratch, host, n * sizeof(float));
            if (!rc) rc = be->f32_to_act(be, dpre, m->f32_scratch, n);
        }
    }
    free(host);
    return rc;
}

int bert_backward(bert_model *m) {
    if (!m->have_labels)
        return error_set(EXIT_INTERNAL, "bert: backward without a labelled forward");
    int rc = ensure_grads(m);
    if (rc) return rc;
    backend *be = m->be;
    const bert_config *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T;
    int C = c->hidden_size, E = c->embedding_size, F = c->intermediate_size, NH = c->num_heads;
    int L = c->num_layers;
    size_t a = backend_act_size(be);
    float p_hidden = m->training ? c->hidden_dropout : 0.0f;
    float p_att = m->training ? c->attention_dropout : 0.0f;
    float p_attn_out = c->arch == ARCH_DISTILBERT ? 0.0f : p_hidden;
    uint64_t s = m->step_seed;
    float *G = m->grads;
    void *W = m->params_act;
    const float *P = m->params;
    // Only what forward saw: without token types both passes use type 0 for every
    // token, and m->types holds nothing of this batch.
    const int32_t *types = m->wtt != ABSENT && m->have_types ? m->types : NULL;
    void *x = bert_final_hidden(m);
    size_t NC = (size_t)N * C * a;

    // loss -> logits -> head -> dx, the gradient of the final hidden states
    int rows = m->head == HEAD_SEQUENCE_CLASSIFICATION ? B : N;
    float scale = m->label_count ? 1.0f / (float)m->label_count : 0.0f;
    be->softmax_xent_backward(be, m->dlogits, m->probs, m->labels, rows, m->num_labels, scale);
    uint64_t head_offset = bert_dropout_offset(1 + 3 * L);
    rc = be->memset_zero(be, m->dx, NC);
    if (rc) return rc;
    switch (m->head) {
    case HEAD_TOKEN_CLASSIFICATION:
        be->memset_zero(be, m->dhead_a, NC);
        be->matmul_backward(be, m->dhead_a, G + m->cls_w, G + m->cls_b, m->dlogits, m->head_in,
                            bert_act_at(m, W, m->cls_w), N, C, m->num_labels);
        be->dropout_backward(be, m->dx, m->dhead_a, (size_t)N * C, p_hidden, s, head_offset);
        break;
    case HEAD_SEQUENCE_CLASSIFICATION: {
        size_t BC = (size_t)B * C * a;
        be->memset_zero(be, m->dhead_a, BC);
        be->matmul_backward(be, m->dhead_a, G + m->cls_w, G + m->cls_b, m->dlogits,
                            m->pooled_drop, bert_act_at(m, W, m->cls_w), B, C, m->num_labels);
        be->memset_zero(be, m->dhead_b, BC);
        be->dropout_backward(be, m->dhead_b, m->dhead_a, (size_t)B * C, p_hidden, s,
                             head_offset);
        rc = pooler_tanh_backward(m, m->dhead_a, m->dhead_b, B); // dhead_a = dpool_pre
        if (rc) return rc;
        be->memset_zero(be, m->dhead_b, BC);
        be->matmul_backward(be, m->dhead_b, G + m->pool_w, G + m->pool_b, m->dhead_a,
                            m->cls_drop ? m->cls_drop : m->cls_rows,
                            bert_act_at(m, W, m->pool_w), B, C, C);
        void *dcls = m->dhead_b; // (B,C) gradient of the <s> / [CLS] rows
        if (m->cls_drop) {       // through RoBERTa's first dropout; dhead_a is free again
            be->memset_zero(be, m->dhead_a, BC);
            be->dropout_backward(be, m->dhead_a, m->dhead_b, (size_t)B * C, p_hidden, s,
                                 bert_dropout_offset(2 + 3 * L));
            dcls = m->dhead_a;
        }
        for (int b = 0; b < B && !rc; b++)
            rc = be->copy_device(be, bert_act_at(m, m->dx, (size_t)b * T * C),
                                 bert_act_at(m, dcls, (size_t)b * C), (size_t)C * a);
        if (rc) return rc;
        break;
    }
    case HEAD_MASKED_LM:
        be->memset_zero(be, m->dhead_a, NC);
        // the tied decoder: its weight gradient lands in the word embeddings' gradient
        be->matmul_backward(be, m->dhead_a, G + m->wte, G + m->mlm_bias, m->dlogits,
                            m->head_ln, bert_act_at(m, W, m->wte), N, C, c->vocab_size);
        be->memset_zero(be, m->dhead_b, NC);
        be->layernorm_backward(be, m->dhead_b, G + m->mlm_ln_w, G + m->mlm_ln_b, m->dhead_a,
                               m->head_mid, P + m->mlm_ln_w, m->head_mean, m->head_rstd, N, C);
        be->memset_zero(be, m->dhead_a, NC);
        be->gelu_backward(be, m->dhead_a, m->head_in, m->dhead_b, (size_t)N * C);
        be->matmul_backward(be, m->dx, G + m->mlm_w, G + m->mlm_b, m->dhead_a, x,
                            bert_act_at(m, W, m->mlm_w), N, C, C);
        break;
    case HEAD_EMBEDDING:
        return error_set(EXIT_INTERNAL, "bert: the embedding head has no loss to backpropagate");
    }

    // encoder layers in reverse; dx holds the gradient of the layer's output
    for (int l = L - 1; l >= 0; l--) {
        const bert_layer_params *lp = &m->layer[l];
        bert_layer_acts *ac = &m->acts[l];
        void *lin = l ? m->acts[l - 1].ln2 : m->enc_in;
        be->memset_zero(be, m->dres, NC);
        be->layernorm_backward(be, m->dres, G + lp->ln2_w, G + lp->ln2_b, m->dx, ac->res2,
                               P + lp->ln2_w, ac->mean2, ac->rstd2, N, C);
        be->memset_zero(be, m->dproj, NC);
        be->dropout_backward(be, m->dproj, m->dres, (size_t)N * C, p_hidden, s,
                             bert_dropout_offset(3 + 3 * l));
        be->memset_zero(be, m->dfc_gelu, (size_t)N * F * a);
        be->matmul_backward(be, m->dfc_gelu, G + lp->fp_w, G + lp->fp_b, m->dproj, ac->fc_gelu,
                            bert_act_at(m, W, lp->fp_w), N, F, C);
        be->memset_zero(be, m->dfc_pre, (size_t)N * F * a);
        be->gelu_backward(be, m->dfc_pre, ac->fc_pre, m->dfc_gelu, (size_t)N * F);
        // ln1 feeds both the FFN and the second residual
        be->copy_device(be, m->dln1, m->dres, NC);
        be->matmul_backward(be, m->dln1, G + lp->fc_w, G + lp->fc_b, m->dfc_pre, ac->ln1,
                            bert_act_at(m, W, lp->fc_w), N, C, F);
        be->memset_zero(be, m->dres, NC);
        be->layernorm_backward(be, m->dres, G + lp->ln1_w, G + lp->ln1_b, m->dln1, ac->res1,
                               P + lp->ln1_w, ac->mean1, ac->rstd1, N, C);
        be->memset_zero(be, m->dproj, NC);
        be->dropout_backward(be, m->dproj, m->dres, (size_t)N * C, p_attn_out, s,
                             bert_dropout_offset(2 + 3 * l));
        be->memset_zero(be, m->datty, NC);
        be->matmul_backward(be, m->datty, G + lp->ao_w, G + lp->ao_b, m->dproj, ac->atty,
                            bert_act_at(m, W, lp->ao_w), N, C, C);
        be->memset_zero(be, m->dqkv, (size_t)N * 3 * C * a);
        be->attention_backward(be, m->dqkv, m->datt_scratch, m->datty, ac->qkv, ac->att,
                               m->mask, B, T, C, NH, p_att, s, bert_dropout_offset(1 + 3 * l));
        // the layer input feeds both the attention and the first residual
        be->copy_device(be, m->dx, m->dres, NC);
        be->matmul_backward(be, m->dx, G + lp->qkv_w, G + lp->qkv_b, m->dqkv, lin,
                            bert_act_at(m, W, lp->qkv_w), N, C, 3 * C);
    }

    // embeddings: (projection) -> dropout -> LayerNorm -> tables
    size_t NE = (size_t)N * E * a;
    void *ddrop = m->dx;
    if (m->proj_w != ABSENT) {
        be->memset_zero(be, m->demb_a, NE);
        be->matmul_backward(be, m->demb_a, G + m->proj_w, G + m->proj_b, m->dx, m->emb_drop,
                            bert_act_at(m, W, m->proj_w), N, E, C);
        ddrop = m->demb_a;
    }
    be->memset_zero(be, m->demb_b, NE);
    be->dropout_backward(be, m->demb_b, ddrop, (size_t)N * E, p_hidden, s, bert_dropout_offset(0));
    void *demb = m->demb_a; // free again: the projection's gradient was consumed above
    be->memset_zero(be, demb, NE);
    be->layernorm_backward(be, demb, G + m->emb_ln_w, G + m->emb_ln_b, m->demb_b, m->emb,
                           P + m->emb_ln_w, m->emb_mean, m->emb_rstd, N, E);
    be->embeddings_backward(be, G + m->wte, G + m->wpe, m->wtt != ABSENT ? G + m->wtt : NULL,
                            demb, m->ids, types, B, T, E, c->vocab_size, c->position_offset);
    return be->synchronize(be);
}

// ---- optimiser ---------------------------------------------------------------------------

int bert_step(bert_model *m, float lr, float weight_decay, float max_grad_norm, int t,
              float *grad_norm) {
    backend *be = m->be;
    int rc = ensure_grads(m);
    if (rc) return rc;
    if (!m->m) {
        m->m = bert_dev_alloc(m, m->num_params * sizeof(float), &rc);
        m->v = bert_dev_alloc(m, m->num_params * sizeof(float), &rc);
        if (!rc) rc = be->memset_zero(be, m->m, m->num_params * sizeof(float));
        if (!rc) rc = be->memset_zero(be, m->v, m->num_params * sizeof(float));
        if (rc) return rc;
    }
    double ss = 0;
    rc = be->grad_norm_squared(be, m->grads, m->num_params, &ss);
    if (rc) return rc;
    float norm = (float)sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return error_set(EXIT_DIVERGED, "bert: gradient norm is %s at step %d",
                         isnan(norm) ? "NaN" : "Inf", t);
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1
    if (max_grad_norm > 0) {
        float coef = max_grad_norm / (norm + 1e-6f);
        if (coef < 1.0f) be->scale(be, m->grads, m->num_params, coef);
    }
    // one update per run of adjacent tensors with the same decay setting
    int i = 0;
    while (i < m->num_tensors) {
        bool decay = m->tensors[i].decay;
        size_t start = m->tensors[i].offset;
        int j = i + 1;
        while (j < m->num_tensors && m->tensors[j].decay == decay) j++;
        size_t end = j < m->num_tensors ? m->tensors[j].offset : m->num_params;
        void *act = m->params_act == (void *)m->params ? NULL
                                                        : bert_act_at(m, m->params_act, start);
        be->adamw_update(be, m->params + start, act, m->grads + start, m->m + start,
                         m->v + start, end - start, lr, 0.9f, 0.999f, 1e-8f,
                         decay ? weight_decay : 0.0f, t);
        i = j;
    }
    return be->synchronize(be);
}

