// The BERT model over a compute backend: parameter layout with HF names, forward and
// backward of post-LN BERT (and DistilBERT / ELECTRA discriminator, which differ only in
// names, the dropout after the attention projection and ELECTRA's embedding projection),
// task heads and their outputs. The backward pass, gradient clipping and AdamW are in
// bert_backward.c, configuration files and safetensors in bert_io.c.
//
// Dropout streams: every dropout site draws from kernels/rng.h with one seed per step,
// step_seed = mix(dropout_seed + golden * (step + 1)), and a site-specific counter
// offset (site << 40): site 0 the embeddings, 1 + 3l layer l's attention probabilities,
// 2 + 3l its attention output, 3 + 3l its FFN output, 1 + 3L the head. The masks depend
// only on (seed, step, site, position), so any backend draws the same ones.
#include "runner/model/bert_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rng.h"
#include "runner/error.h"

#define ABSENT SIZE_MAX

// ---- configuration presets ---------------------------------------------------------------

typedef struct {
    const char *name;
    bert_arch arch;
    int L, C, NH, F, E;
} bert_preset;

static const bert_preset presets[] = {
    {"bert-tiny", ARCH_BERT, 2, 128, 2, 512, 128},
    {"bert-mini", ARCH_BERT, 4, 256, 4, 1024, 256},
    {"bert-small", ARCH_BERT, 4, 512, 8, 2048, 512},
    {"bert-medium", ARCH_BERT, 8, 512, 8, 2048, 512},
    {"bert-base", ARCH_BERT, 12, 768, 12, 3072, 768},
    {"bert", ARCH_BERT, 12, 768, 12, 3072, 768},
    {"minilm-l6", ARCH_BERT, 6, 384, 12, 1536, 384},
    {"distil", ARCH_DISTILBERT, 6, 768, 12, 3072, 768},
    {"distilbert", ARCH_DISTILBERT, 6, 768, 12, 3072, 768},
    {"electra", ARCH_ELECTRA, 12, 768, 12, 3072, 768},
    {"electra-small", ARCH_ELECTRA, 12, 256, 4, 1024, 128},
};

int bert_config_preset(const char *name, bert_config *out) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const bert_preset *p = &presets[i];
        if (strcmp(name, p->name) != 0) continue;
        *out = (bert_config){
            .arch = p->arch,
            .vocab_size = 30522,
            .hidden_size = p->C,
            .num_layers = p->L,
            .num_heads = p->NH,
            .intermediate_size = p->F,
            .max_position = 512,
            .type_vocab_size = p->arch == ARCH_DISTILBERT ? 0 : 2,
            .layer_norm_eps = 1e-12f,
            .hidden_dropout = 0.1f,
            .attention_dropout = 0.1f,
            .embedding_size = p->E,
        };
        return 0;
    }
    char list[512] = "";
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, presets[i].name, sizeof list - strlen(list) - 1);
    }
    return error_set(EXIT_USAGE, "unknown architecture '%s' (valid: %s)", name, list);
}

// ---- parameter layout --------------------------------------------------------------------

typedef struct {
    bert_model *m;
    size_t next;
    int cap;
} layout;

static size_t layout_add(layout *lo, const char *prefix, const char *name, int rows, int cols,
                         bool decay, bool head) {
    bert_model *m = lo->m;
    if (m->num_tensors == lo->cap) {
        lo->cap = lo->cap ? 2 * lo->cap : 64;
        bert_tensor *grown = realloc(m->tensors, sizeof(bert_tensor) * lo->cap);
        if (!grown) return ABSENT;
        m->tensors = grown;
    }
    bert_tensor *t = &m->tensors[m->num_tensors++];
    snprintf(t->name, sizeof t->name, "%s%s", prefix, name);
    t->base_name = NULL; // set once the array stops moving
    t->offset = lo->next;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->decay = decay;
    t->head = head;
    lo->next += (size_t)rows * (cols ? cols : 1);
    return t->offset;
}

// Weight (rows, cols) and bias (rows) of a Linear named `name`.
// dst = a + b; our names are far shorter than BERT_NAME_MAX, cut rather than overflow.
static void name_join(char dst[BERT_NAME_MAX], const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (lb > BERT_NAME_MAX - 1) lb = BERT_NAME_MAX - 1;
    if (la > BERT_NAME_MAX - 1 - lb) la = BERT_NAME_MAX - 1 - lb;
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb);
    dst[la + lb] = '\0';
}

static void layout_linear(layout *lo, const char *prefix, const char *name, int out, int in,
                          size_t *w, size_t *b, bool head) {
    char n[BERT_NAME_MAX];
    name_join(n, name, ".weight");
    *w = layout_add(lo, prefix, n, out, in, true, head);
    name_join(n, name, ".bias");
    *b = layout_add(lo, prefix, n, out, 0, false, head);
}

static void layout_layernorm(layout *lo, const char *prefix, const char *name, int C, size_t *w,
                             size_t *b, bool head) {
    char n[BERT_NAME_MAX];
    name_join(n, name, ".weight");
    *w = layout_add(lo, prefix, n, C, 0, false, head);
    name_join(n, name, ".bias");
    *b = layout_add(lo, prefix, n, C, 0, false, head);
}

static int bert_layout(bert_model *m) {
    const bert_config *c = &m->cfg;
    int C = c->hidden_size, E = c->embedding_size, F = c->intermediate_size;
    bool distil = c->arch == ARCH_DISTILBERT;
    layout lo = {m, 0, 0};
    const char *p = m->prefix;
    char n[BERT_NAME_MAX];

    m->wte = layout_add(&lo, p, "embeddings.word_embeddings.weight", c->vocab_size, E, true, false);
    m->wpe = layout_add(&lo, p, "embeddings.position_embeddings.weight", c->max_position, E,
                        true, false);
    m->wtt = c->type_vocab_size > 0 ? layout_add(&lo, p, "embeddings.token_type_embeddings.weight",
                                                 c->type_vocab_size, E, true, false)
                                    : ABSENT;
    layout_layernorm(&lo, p, "embeddings.LayerNorm", E, &m->emb_ln_w, &m->emb_ln_b, false);
    m->proj_w = m->proj_b = ABSENT;
    if (c->arch == ARCH_ELECTRA && E != C)
        layout_linear(&lo, p, "embeddings_project", C, E, &m->proj_w, &m->proj_b, false);

    for (int l = 0; l < c->num_layers; l++) {
        bert_layer_params *lp = &m->layer[l];
        char base[48];
        if (distil) {
            snprintf(base, sizeof base, "transformer.layer.%d.", l);
        } else {
            snprintf(base, sizeof base, "encoder.layer.%d.", l);
        }
        const char *q = distil ? "attention.q_lin" : "attention.self.query";
        const char *k = distil ? "attention.k_lin" : "attention.self.key";
        const char *v = distil ? "attention.v_lin" : "attention.self.value";
        // q, k, v weights adjacent (one (3C,C) GEMM), then their biases adjacent (3C)
        snprintf(n, sizeof n, "%s%s.weight", base, q);
        lp->qkv_w = layout_add(&lo, p, n, C, C, true, false);
        snprintf(n, sizeof n, "%s%s.weight", base, k);
        layout_add(&lo, p, n, C, C, true, false);
        snprintf(n, sizeof n, "%s%s.weight", base, v);
        layout_add(&lo, p, n, C, C, true, false);
        snprintf(n, sizeof n, "%s%s.bias", base, q);
        lp->qkv_b = layout_add(&lo, p, n, C, 0, false, false);
        snprintf(n, sizeof n, "%s%s.bias", base, k);
        layout_add(&lo, p, n, C, 0, false, false);
        snprintf(n, sizeof n, "%s%s.bias", base, v);
        layout_add(&lo, p, n, C, 0, false, false);

        snprintf(n, sizeof n, "%s%s", base, distil ? "attention.out_lin" : "attention.output.dense");
        layout_linear(&lo, p, n, C, C, &lp->ao_w, &lp->ao_b, false);
        snprintf(n, sizeof n, "%s%s", base, distil ? "sa_layer_norm" : "attention.output.LayerNorm");
        layout_layernorm(&lo, p, n, C, &lp->ln1_w, &lp->ln1_b, false);
        snprintf(n, sizeof n, "%s%s", base, distil ? "ffn.lin1" : "intermediate.dense");
        layout_linear(&lo, p, n, F, C, &lp->fc_w, &lp->fc_b, false);
        snprintf(n, sizeof n, "%s%s", base, distil ? "ffn.lin2" : "output.dense");
        layout_linear(&lo, p, n, C, F, &lp->fp_w, &lp->fp_b, false);
        snprintf(n, sizeof n, "%s%s", base, distil ? "output_layer_norm" : "output.LayerNorm");
        layout_layernorm(&lo, p, n, C, &lp->ln2_w, &lp->ln2_b, false);
    }

    m->pool_w = m->pool_b = m->cls_w = m->cls_b = ABSENT;
    m->mlm_w = m->mlm_b = m->mlm_ln_w = m->mlm_ln_b = m->mlm_bias = ABSENT;
    switch (m->head) {
    case HEAD_TOKEN_CLASSIFICATION:
        layout_linear(&lo, "", "classifier", m->num_labels, C, &m->cls_w, &m->cls_b, true);
        break;
    case HEAD_SEQUENCE_CLASSIFICATION:
        if (c->arch == ARCH_ROBERTA) {
            // RobertaClassificationHead: dropout, dense + tanh, dropout, out_proj on <s>:
            // BERT's pooler + classifier with one more dropout, under the head's names.
            layout_linear(&lo, "", "classifier.dense", C, C, &m->pool_w, &m->pool_b, true);
            layout_linear(&lo, "", "classifier.out_proj", m->num_labels, C, &m->cls_w,
                          &m->cls_b, true);
            break;
        }
        // The pooler belongs to the base model (bert.pooler...), but a checkpoint saved
        // from a model without it lacks it: treated as part of the head when loading.
        layout_linear(&lo, p, "pooler.dense", C, C, &m->pool_w, &m->pool_b, true);
        layout_linear(&lo, "", "classifier", m->num_labels, C, &m->cls_w, &m->cls_b, true);
        break;
    case HEAD_MASKED_LM: {
        // BERT's cls.predictions and RoBERTa's lm_head compute the same thing (dense,
        // GELU, LayerNorm, tied decoder + bias) under different names.
        bool roberta = c->arch == ARCH_ROBERTA;
        const char *dense = roberta ? "lm_head.dense" : "cls.predictions.transform.dense";
        const char *norm = roberta ? "lm_head.layer_norm" : "cls.predictions.transform.LayerNorm";
        const char *bias = roberta ? "lm_head.bias" : "cls.predictions.bias";
        layout_linear(&lo, "", dense, C, C, &m->mlm_w, &m->mlm_b, true);
        layout_layernorm(&lo, "", norm, C, &m->mlm_ln_w, &m->mlm_ln_b, true);
        // the decoder weight is the word embedding matrix (tied), only its bias is new
        m->mlm_bias = layout_add(&lo, "", bias, c->vocab_size, 0, false, true);
        break;
    }
    case HEAD_EMBEDDING:
        break;
    }
    for (int i = 0; i < m->num_tensors; i++) {
        bert_tensor *t = &m->tensors[i];
        size_t plen = strlen(p);
        t->base_name = strncmp(t->name, p, plen) == 0 ? t->name + plen : t->name;
    }
    m->num_params = lo.next;
    return m->tensors ? 0 : error_set(EXIT_RESOURCES, "bert: out of memory for the tensor table");
}

// ---- creation ----------------------------------------------------------------------------

void *bert_dev_alloc(bert_model *m, size_t bytes, int *rc) {
    if (*rc) return NULL;
    void *p = m->be->alloc(m->be, bytes ? bytes : 1);
    if (!p) {
        *rc = error_code() ? error_code() : EXIT_RESOURCES;
        if (!error_code()) error_set(EXIT_RESOURCES, "bert: cannot allocate %zu bytes", bytes);
    }
    return p;
}

static int check_config(const bert_config *c, bert_head head, int num_labels, int B, int T) {
    if (c->hidden_size <= 0 || c->num_layers < 0 || c->num_heads <= 0 || c->vocab_size <= 0 ||
        c->intermediate_size <= 0 || c->max_position <= 0 || c->embedding_size <= 0 ||
        c->type_vocab_size < 0)
        return error_set(EXIT_USAGE, "bert: model sizes must be positive");
    if (c->hidden_size % c->num_heads)
        return error_set(EXIT_USAGE, "bert: hidden_size %d is not a multiple of num_heads %d",
                         c->hidden_size, c->num_heads);
    if (c->embedding_size != c->hidden_size && c->arch != ARCH_ELECTRA)
        return error_set(EXIT_USAGE, "bert: embedding_size != hidden_size needs ELECTRA");
    if (c->arch != ARCH_BERT && c->arch != ARCH_ROBERTA &&
        (head == HEAD_SEQUENCE_CLASSIFICATION || head == HEAD_MASKED_LM))
        return error_set(EXIT_USAGE, "bert: sequence classification and masked LM heads are "
                                     "BERT's and RoBERTa's only");
    if ((head == HEAD_TOKEN_CLASSIFICATION || head == HEAD_SEQUENCE_CLASSIFICATION) &&
        num_labels < 1)
        return error_set(EXIT_USAGE, "bert: a classification head needs num_labels >= 1");
    if (c->position_offset < 0 || c->position_offset >= c->max_position)
        return error_set(EXIT_USAGE, "bert: position offset %d outside 0..max_position %d",
                         c->position_offset, c->max_position);
    if (B < 1 || T < 1 || T > c->max_position - c->position_offset)
        return error_set(EXIT_USAGE, "bert: batch %dx%d outside 1..%d positions", B, T,
                         c->max_position - c->position_offset);
    return 0;
}

int bert_create(bert_model **out, backend *be, const bert_config *cfg, bert_head head,
                int num_labels, int max_batch, int max_seq) {
    *out = NULL;
    int rc = check_config(cfg, head, num_labels, max_batch, max_seq);
    if (rc) return rc;
    bert_model *m = calloc(1, sizeof *m);
    if (!m) return error_set(EXIT_RESOURCES, "bert: out of memory");
    m->be = be;
    m->cfg = *cfg;
    m->head = head;
    m->num_labels = head == HEAD_MASKED_LM ? cfg->vocab_size
                    : head == HEAD_EMBEDDING ? 0
                                             : num_labels;
    m->max_B = max_batch;
    m->max_T = max_seq;
    m->prefix = head == HEAD_EMBEDDING ? ""
                : cfg->arch == ARCH_DISTILBERT ? "distilbert."
                : cfg->arch == ARCH_ELECTRA ? "electra."
                : cfg->arch == ARCH_ROBERTA ? "roberta."
                                            : "bert.";
    int L = cfg->num_layers;
    m->layer = calloc(L ? L : 1, sizeof *m->layer);
    m->acts = calloc(L ? L : 1, sizeof *m->acts);
    if (!m->layer || !m->acts) {
        bert_destroy(m);
        return error_set(EXIT_RESOURCES, "bert: out of memory");
    }
    rc = bert_layout(m);
    if (rc) {
        bert_destroy(m);
        return rc;
    }

    size_t a = backend_act_size(be), f = sizeof(float), i32 = sizeof(int32_t);
    size_t N = (size_t)max_batch * max_seq, B = max_batch;
    size_t C = cfg->hidden_size, E = cfg->embedding_size, F = cfg->intermediate_size;
    size_t NH = cfg->num_heads, T = max_seq;
    m->params = bert_dev_alloc(m, m->num_params * f, &rc);
    m->params_act = be->act_dtype == DTYPE_F32 ? (void *)m->params
                                               : bert_dev_alloc(m, m->num_params * a, &rc);
    m->ids = bert_dev_alloc(m, N * i32, &rc);
    m->types = bert_dev_alloc(m, N * i32, &rc);
    m->mask = bert_dev_alloc(m, N * i32, &rc);
    m->labels = bert_dev_alloc(m, N * i32, &rc);
    m->host_ints = rc ? NULL : malloc(N * i32);
    if (!rc && !m->host_ints) rc = error_set(EXIT_RESOURCES, "bert: out of memory");
    m->emb = bert_dev_alloc(m, N * E * a, &rc);
    m->emb_ln = bert_dev_alloc(m, N * E * a, &rc);
    m->emb_mean = bert_dev_alloc(m, N * f, &rc);
    m->emb_rstd = bert_dev_alloc(m, N * f, &rc);
    m->emb_drop = bert_dev_alloc(m, N * E * a, &rc);
    m->enc_in = m->proj_w != ABSENT ? bert_dev_alloc(m, N * C * a, &rc) : m->emb_drop;
    for (int l = 0; l < L; l++) {
        bert_layer_acts *ac = &m->acts[l];
        ac->qkv = bert_dev_alloc(m, N * 3 * C * a, &rc);
        ac->att = bert_dev_alloc(m, B * NH * T * T * a, &rc);
        ac->atty = bert_dev_alloc(m, N * C * a, &rc);
        ac->res1 = bert_dev_alloc(m, N * C * a, &rc);
        ac->ln1 = bert_dev_alloc(m, N * C * a, &rc);
        ac->mean1 = bert_dev_alloc(m, N * f, &rc);
        ac->rstd1 = bert_dev_alloc(m, N * f, &rc);
        ac->fc_pre = bert_dev_alloc(m, N * F * a, &rc);
        ac->fc_gelu = bert_dev_alloc(m, N * F * a, &rc);
        ac->res2 = bert_dev_alloc(m, N * C * a, &rc);
        ac->ln2 = bert_dev_alloc(m, N * C * a, &rc);
        ac->mean2 = bert_dev_alloc(m, N * f, &rc);
        ac->rstd2 = bert_dev_alloc(m, N * f, &rc);
    }
    m->proj = bert_dev_alloc(m, N * C * a, &rc);
    size_t rows = head == HEAD_SEQUENCE_CLASSIFICATION ? B : N;
    switch (head) {
    case HEAD_TOKEN_CLASSIFICATION:
        m->head_in = bert_dev_alloc(m, N * C * a, &rc);
        break;
    case HEAD_SEQUENCE_CLASSIFICATION:
        m->cls_rows = bert_dev_alloc(m, B * C * a, &rc);
        if (cfg->arch == ARCH_ROBERTA) m->cls_drop = bert_dev_alloc(m, B * C * a, &rc);
        m->pool_pre = bert_dev_alloc(m, B * C * a, &rc);
        m->pooled = bert_dev_alloc(m, B * C * a, &rc);
        m->pooled_drop = bert_dev_alloc(m, B * C * a, &rc);
        m->host_pool = rc ? NULL : malloc(B * C * f);
        if (!rc && !m->host_pool) rc = error_set(EXIT_RESOURCES, "bert: out of memory");
        break;
    case HEAD_MASKED_LM:
        m->head_in = bert_dev_alloc(m, N * C * a, &rc);
        m->head_mid = bert_dev_alloc(m, N * C * a, &rc);
        m->head_ln = bert_dev_alloc(m, N * C * a, &rc);
        m->head_mean = bert_dev_alloc(m, N * f, &rc);
        m->head_rstd = bert_dev_alloc(m, N * f, &rc);
        break;
    case HEAD_EMBEDDING:
        break;
    }
    if (m->num_labels > 0) {
        m->logits = bert_dev_alloc(m, rows * m->num_labels * a, &rc);
        m->probs = bert_dev_alloc(m, rows * m->num_labels * f, &rc);
        m->losses = bert_dev_alloc(m, rows * f, &rc);
    }
    m->pool_out = bert_dev_alloc(m, B * C * f, &rc);
    if (be->act_dtype != DTYPE_F32) {
        m->f32_scratch_n = rows * (m->num_labels > (int)C ? (size_t)m->num_labels : C);
        m->f32_scratch = bert_dev_alloc(m, m->f32_scratch_n * f, &rc);
    }
    if (rc) {
        bert_destroy(m);
        return rc;
    }
    *out = m;
    return 0;
}

static void dev_free(bert_model *m, void *p) {
    if (p) m->be->free(m->be, p);
}

void bert_destroy(bert_model *m) {
    if (!m) return;
    if (m->params_act != m->params) dev_free(m, m->params_act);
    dev_free(m, m->params);
    dev_free(m, m->grads);
    dev_free(m, m->m);
    dev_free(m, m->v);
    void *bufs[] = {m->ids, m->types, m->mask, m->labels, m->emb, m->emb_ln, m->emb_mean,
                    m->emb_rstd, m->emb_drop, m->proj, m->head_in, m->head_mid, m->head_ln,
                    m->head_mean, m->head_rstd, m->cls_rows, m->cls_drop, m->pool_pre, m->pooled,
                    m->pooled_drop, m->logits, m->probs, m->losses, m->pool_out,
                    m->f32_scratch, m->dx, m->dres, m->dproj, m->dln1, m->datty, m->dqkv,
                    m->dfc_gelu, m->dfc_pre, m->datt_scratch, m->dlogits, m->dhead_a,
                    m->dhead_b, m->demb_a, m->demb_b};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(m, bufs[i]);
    if (m->enc_in != m->emb_drop) dev_free(m, m->enc_in);
    if (m->acts)
        for (int l = 0; l < m->cfg.num_layers; l++) {
            bert_layer_acts *ac = &m->acts[l];
            void *lb[] = {ac->qkv, ac->att, ac->atty, ac->res1, ac->ln1, ac->mean1, ac->rstd1,
                          ac->fc_pre, ac->fc_gelu, ac->res2, ac->ln2, ac->mean2, ac->rstd2};
            for (size_t i = 0; i < sizeof lb / sizeof lb[0]; i++) dev_free(m, lb[i]);
        }
    free(m->acts);
    free(m->layer);
    free(m->tensors);
    free(m->host_ints);
    free(m->host_pool);
    free(m);
}

int bert_sync_params_act(bert_model *m) {
    if (m->params_act == (void *)m->params) return 0;
    return m->be->f32_to_act(m->be, m->params_act, m->params, m->num_params);
}

// ---- random initialisation ---------------------------------------------------------------

// HF's _init_weights: Linear and Embedding weights normal(0, 0.02), biases 0, LayerNorm
// weight 1 and bias 0, the padding row (id 0) of the word embeddings 0.
int bert_init_random(bert_model *m, uint64_t seed) {
    float *host = malloc(m->num_params * sizeof(float));
    if (!host) return error_set(EXIT_RESOURCES, "bert: out of memory for initial weights");
    uint64_t counter = 0;
    for (int i = 0; i < m->num_tensors; i++) {
        const bert_tensor *t = &m->tensors[i];
        size_t n = (size_t)t->shape[0] * (t->shape[1] ? t->shape[1] : 1);
        float *p = host + t->offset;
        bool layernorm = strstr(t->name, "LayerNorm") || strstr(t->name, "layer_norm");
        if (t->shape[1] == 0) {
            float fill = layernorm && strstr(t->name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < n; j++) p[j] = fill;
            continue;
        }
        for (size_t j = 0; j < n; j++) { // Box-Muller on the counter RNG
            double u1 = rng_uniform(seed, counter++), u2 = rng_uniform(seed, counter++);
            if (u1 < 1e-12) u1 = 1e-12;
            p[j] = (float)(0.02 * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
        }
        if (t->offset == m->wte) memset(p, 0, sizeof(float) * t->shape[1]);
    }
    int rc = m->be->copy_to_device(m->be, m->params, host, m->num_params * sizeof(float));
    free(host);
    return rc ? rc : bert_sync_params_act(m);
}

// ---- forward -----------------------------------------------------------------------------

uint64_t bert_dropout_offset(int site) { return (uint64_t)site << 40; }

// Copy the batch to the device after checking every id against the model's sizes.
static int upload_batch(bert_model *m, const bert_batch *b) {
    const bert_config *c = &m->cfg;
    if (b->B < 1 || b->T < 1 || b->B > m->max_B || b->T > m->max_T)
        return error_set(EXIT_INTERNAL, "bert: batch %dx%d exceeds the model's %dx%d", b->B, b->T,
                         m->max_B, m->max_T);
    size_t N = (size_t)b->B * b->T;
    for (size_t i = 0; i < N; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size)
            return error_set(EXIT_BAD_INPUT, "bert: token id %d outside the vocabulary (%d)",
                             b->ids[i], c->vocab_size);
        if (b->token_types && m->wtt != ABSENT &&
            (b->token_types[i] < 0 || b->token_types[i] >= c->type_vocab_size))
            return error_set(EXIT_BAD_INPUT, "bert: token type %d outside 0..%d",
                             b->token_types[i], c->type_vocab_size - 1);
    }
    size_t label_n = m->head == HEAD_SEQUENCE_CLASSIFICATION ? (size_t)b->B : N;
    m->label_count = 0;
    if (b->labels && m->num_labels > 0) {
        for (size_t i = 0; i < label_n; i++) {
            int y = b->labels[i];
            if (y == -100) continue;
            if (y < 0 || y >= m->num_labels)
                return error_set(EXIT_BAD_INPUT, "bert: label %d outside 0..%d (or -100)", y,
                                 m->num_labels - 1);
            m->label_count++;
        }
    }
    backend *be = m->be;
    int rc = be->copy_to_device(be, m->ids, b->ids, N * sizeof(int32_t));
    if (!rc && b->token_types)
        rc = be->copy_to_device(be, m->types, b->token_types, N * sizeof(int32_t));
    if (!rc) {
        const int32_t *mask = b->mask;
        if (!mask) {
            for (size_t i = 0; i < N; i++) m->host_ints[i] = 1;
            mask = m->host_ints;
        }
        rc = be->copy_to_device(be, m->mask, mask, N * sizeof(int32_t));
    }
    if (!rc && b->labels && m->num_labels > 0)
        rc = be->copy_to_device(be, m->labels, b->labels, label_n * sizeof(int32_t));
    return rc;
}

// Pooler tanh on the host: (B,C) values, too few to deserve a kernel of their own.
static int pooler_tanh(bert_model *m, int B) {
    backend *be = m->be;
    size_t n = (size_t)B * m->cfg.hidden_size;
    int rc;
    if (be->act_dtype == DTYPE_F32) {
        rc = be->copy_to_host(be, m->host_pool, m->pool_pre, n * sizeof(float));
    } else {
        rc = be->act_to_f32(be, m->f32_scratch, m->pool_pre, n);
        if (!rc) rc = be->copy_to_host(be, m->host_pool, m->f32_scratch, n * sizeof(float));
    }
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) m->host_pool[i] = tanhf(m->host_pool[i]);
    if (be->act_dtype == DTYPE_F32)
        return be->copy_to_device(be, m->pooled, m->host_pool, n * sizeof(float));
    rc = be->copy_to_device(be, m->f32_scratch, m->host_pool, n * sizeof(float));
    return rc ? rc : be->f32_to_act(be, m->pooled, m->f32_scratch, n);
}

void *bert_final_hidden(bert_model *m) {
    int L = m->cfg.num_layers;
    return L ? m->acts[L - 1].ln2 : m->enc_in;
}

int bert_forward(bert_model *m, const bert_batch *batch, bool training, uint64_t dropout_seed,
                 uint64_t step, float *loss) {
    int rc = upload_batch(m, batch);
    if (rc) return rc;
    backend *be = m->be;
    const bert_config *c = &m->cfg;
    int B = batch->B, T = batch->T, N = B * T;
    int C = c->hidden_size, E = c->embedding_size, F = c->intermediate_size, NH = c->num_heads;
    int L = c->num_layers;
    float eps = c->layer_norm_eps;
    float p_hidden = training ? c->hidden_dropout : 0.0f;
    float p_att = training ? c->attention_dropout : 0.0f;
    uint64_t s = rng_mix64(dropout_seed + 0x9e3779b97f4a7c15ULL * (step + 1));
    m->B = B;
    m->T = T;
    m->training = training;
    m->step_seed = s;
    m->have_labels = batch->labels != NULL && m->num_labels > 0;
    m->have_types = batch->token_types != NULL;
    const float *P = m->params;
    void *W = m->params_act;
    const int32_t *types = batch->token_types ? m->types : NULL;
    // A pass no backward follows (evaluation, predict, embed) takes the backend's inference
    // GEMMs, which may compute in a narrower type (--precision bf16 on the CPU); the
    // training forward keeps the GEMMs whose activations backward differentiates.
    void (*matmul)(backend *, void *, void *, const void *, const void *, const void *, int, int,
                   int, matmul_epilogue) =
        !training && be->infer_matmul_forward ? be->infer_matmul_forward : be->matmul_forward;

    // embeddings: LN(word + type + position), dropout, ELECTRA's projection
    be->embeddings_forward(be, m->emb, m->ids, types, P + m->wte, P + m->wpe,
                           m->wtt != ABSENT ? P + m->wtt : NULL, B, T, E, c->position_offset);
    be->layernorm_forward(be, m->emb_ln, NULL, m->emb_mean, m->emb_rstd, m->emb, NULL,
                          P + m->emb_ln_w, P + m->emb_ln_b, N, E, eps);
    be->dropout_forward(be, m->emb_drop, m->emb_ln, (size_t)N * E, p_hidden, s,
                        bert_dropout_offset(0));
    if (m->proj_w != ABSENT)
        matmul(be, m->enc_in, NULL, m->emb_drop, bert_act_at(m, W, m->proj_w),
               bert_act_at(m, W, m->proj_b), N, E, C, EPILOGUE_NONE);

    // DistilBERT has no dropout on the attention projection
    float p_attn_out = c->arch == ARCH_DISTILBERT ? 0.0f : p_hidden;
    // Without labels nothing can be backpropagated: the probabilities need not be kept,
    // which lets a backend use a fused attention kernel.
    bool save_att = training || m->have_labels;
    void *x = m->enc_in;
    for (int l = 0; l < L; l++) {
        const bert_layer_params *lp = &m->layer[l];
        bert_layer_acts *ac = &m->acts[l];
        matmul(be, ac->qkv, NULL, x, bert_act_at(m, W, lp->qkv_w),
               bert_act_at(m, W, lp->qkv_b), N, C, 3 * C, EPILOGUE_NONE);
        be->attention_forward(be, ac->atty, save_att ? ac->att : NULL, ac->qkv, m->mask, B, T, C, NH, p_att, s,
                              bert_dropout_offset(1 + 3 * l));
        matmul(be, m->proj, NULL, ac->atty, bert_act_at(m, W, lp->ao_w),
               bert_act_at(m, W, lp->ao_b), N, C, C, EPILOGUE_NONE);
        be->dropout_forward(be, m->proj, m->proj, (size_t)N * C, p_attn_out, s,
                            bert_dropout_offset(2 + 3 * l));
        be->layernorm_forward(be, ac->ln1, ac->res1, ac->mean1, ac->rstd1, m->proj, x,
                              P + lp->ln1_w, P + lp->ln1_b, N, C, eps);
        matmul(be, ac->fc_gelu, ac->fc_pre, ac->ln1, bert_act_at(m, W, lp->fc_w),
               bert_act_at(m, W, lp->fc_b), N, C, F, EPILOGUE_GELU);
        matmul(be, m->proj, NULL, ac->fc_gelu, bert_act_at(m, W, lp->fp_w),
               bert_act_at(m, W, lp->fp_b), N, F, C, EPILOGUE_NONE);
        be->dropout_forward(be, m->proj, m->proj, (size_t)N * C, p_hidden, s,
                            bert_dropout_offset(3 + 3 * l));
        be->layernorm_forward(be, ac->ln2, ac->res2, ac->mean2, ac->rstd2, m->proj, ac->ln1,
                              P + lp->ln2_w, P + lp->ln2_b, N, C, eps);
        x = ac->ln2;
    }

    uint64_t head_offset = bert_dropout_offset(1 + 3 * L);
    int rows = N;
    switch (m->head) {
    case HEAD_TOKEN_CLASSIFICATION:
        be->dropout_forward(be, m->head_in, x, (size_t)N * C, p_hidden, s, head_offset);
        matmul(be, m->logits, NULL, m->head_in, bert_act_at(m, W, m->cls_w),
               bert_act_at(m, W, m->cls_b), N, C, m->num_labels, EPILOGUE_NONE);
        break;
    case HEAD_SEQUENCE_CLASSIFICATION:
        rows = B;
        for (int b = 0; b < B && !rc; b++)
            rc = be->copy_device(be, bert_act_at(m, m->cls_rows, (size_t)b * C),
                                 bert_act_at(m, x, (size_t)b * T * C),
                                 (size_t)C * backend_act_size(be));
        if (rc) return rc;
        if (m->cls_drop) // RoBERTa's head drops out the <s> rows first
            be->dropout_forward(be, m->cls_drop, m->cls_rows, (size_t)B * C, p_hidden, s,
                                bert_dropout_offset(2 + 3 * L));
        matmul(be, m->pool_pre, NULL, m->cls_drop ? m->cls_drop : m->cls_rows,
               bert_act_at(m, W, m->pool_w), bert_act_at(m, W, m->pool_b), B, C, C,
               EPILOGUE_NONE);
        rc = pooler_tanh(m, B);
        if (rc) return rc;
        be->dropout_forward(be, m->pooled_drop, m->pooled, (size_t)B * C, p_hidden, s,
                            head_offset);
        matmul(be, m->logits, NULL, m->pooled_drop, bert_act_at(m, W, m->cls_w),
               bert_act_at(m, W, m->cls_b), B, C, m->num_labels, EPILOGUE_NONE);
        break;
    case HEAD_MASKED_LM:
        matmul(be, m->head_mid, m->head_in, x, bert_act_at(m, W, m->mlm_w),
               bert_act_at(m, W, m->mlm_b), N, C, C, EPILOGUE_GELU);
        be->layernorm_forward(be, m->head_ln, NULL, m->head_mean, m->head_rstd, m->head_mid,
                              NULL, P + m->mlm_ln_w, P + m->mlm_ln_b, N, C, eps);
        matmul(be, m->logits, NULL, m->head_ln, bert_act_at(m, W, m->wte),
               bert_act_at(m, W, m->mlm_bias), N, C, c->vocab_size, EPILOGUE_NONE);
        break;
    case HEAD_EMBEDDING:
        break;
    }

    if (m->have_labels) {
        be->softmax_xent_forward(be, m->losses, m->probs, m->logits, m->labels, rows,
                                 m->num_labels);
        if (loss) {
            float *host = malloc(sizeof(float) * rows);
            if (!host) return error_set(EXIT_RESOURCES, "bert: out of memory");
            rc = be->copy_to_host(be, host, m->losses, sizeof(float) * rows);
            double sum = 0;
            for (int i = 0; i < rows && !rc; i++) sum += host[i];
            free(host);
            if (rc) return rc;
            // no labelled position: loss 0 (HF would return NaN), nothing to learn
            *loss = m->label_count ? (float)(sum / m->label_count) : 0.0f;
        }
    } else if (loss) {
        *loss = 0.0f;
    }
    return be->synchronize(be);
}

// ---- outputs -----------------------------------------------------------------------------

// Copy n activation-dtype values at `src` to host fp32.
static int act_to_host(bert_model *m, float *dst, const void *src, size_t n) {
    backend *be = m->be;
    if (be->act_dtype == DTYPE_F32) return be->copy_to_host(be, dst, src, n * sizeof(float));
    int rc = 0;
    for (size_t done = 0; done < n && !rc; done += m->f32_scratch_n) {
        size_t chunk = n - done < m->f32_scratch_n ? n - done : m->f32_scratch_n;
        rc = be->act_to_f32(be, m->f32_scratch, bert_act_at(m, (void *)src, done), chunk);
        if (!rc) rc = be->copy_to_host(be, dst + done, m->f32_scratch, chunk * sizeof(float));
    }
    return rc;
}

int bert_logits(bert_model *m, float *out) {
    if (m->num_labels <= 0 || !m->B)
        return error_set(EXIT_INTERNAL, "bert: no logits (embedding head or no forward yet)");
    size_t rows = m->head == HEAD_SEQUENCE_CLASSIFICATION ? (size_t)m->B : (size_t)m->B * m->T;
    return act_to_host(m, out, m->logits, rows * m->num_labels);
}

int bert_embeddings(bert_model *m, float *out, bool normalize) {
    if (!m->B) return error_set(EXIT_INTERNAL, "bert: embeddings before any forward");
    backend *be = m->be;
    be->mean_pool_forward(be, m->pool_out, bert_final_hidden(m), m->mask, m->B, m->T,
                          m->cfg.hidden_size, normalize);
    return be->copy_to_host(be, out, m->pool_out,
                            (size_t)m->B * m->cfg.hidden_size * sizeof(float));
}

// ---- state for checkpoints and tests -------------------------------------------------------

size_t bert_num_parameters(const bert_model *m) { return m->num_params; }

int bert_get_state(const bert_model *m, float *params, float *m1, float *v1) {
    backend *be = m->be;
    size_t bytes = m->num_params * sizeof(float);
    int rc = params ? be->copy_to_host(be, params, m->params, bytes) : 0;
    if (!rc && m1) rc = m->m ? be->copy_to_host(be, m1, m->m, bytes) : (memset(m1, 0, bytes), 0);
    if (!rc && v1) rc = m->v ? be->copy_to_host(be, v1, m->v, bytes) : (memset(v1, 0, bytes), 0);
    return rc;
}

int bert_set_state(bert_model *m, const float *params, const float *m1, const float *v1) {
    backend *be = m->be;
    size_t bytes = m->num_params * sizeof(float);
    int rc = 0;
    if ((m1 || v1) && !m->m) {
        m->m = bert_dev_alloc(m, bytes, &rc);
        m->v = bert_dev_alloc(m, bytes, &rc);
        if (!rc) rc = be->memset_zero(be, m->m, bytes);
        if (!rc) rc = be->memset_zero(be, m->v, bytes);
    }
    if (!rc && params) rc = be->copy_to_device(be, m->params, params, bytes);
    if (!rc && m1) rc = be->copy_to_device(be, m->m, m1, bytes);
    if (!rc && v1) rc = be->copy_to_device(be, m->v, v1, bytes);
    if (!rc && params) rc = bert_sync_params_act(m);
    return rc;
}

int bert_get_grads(const bert_model *m, float *grads) {
    size_t bytes = m->num_params * sizeof(float);
    if (!m->grads) {
        memset(grads, 0, bytes);
        return 0;
    }
    return m->be->copy_to_host(m->be, grads, m->grads, bytes);
}

int bert_num_tensors(const bert_model *m) { return m->num_tensors; }

const char *bert_tensor_info(const bert_model *m, int i, size_t *offset, int shape[2]) {
    if (i < 0 || i >= m->num_tensors) return NULL;
    const bert_tensor *t = &m->tensors[i];
    if (offset) *offset = t->offset;
    if (shape) {
        shape[0] = t->shape[0];
        shape[1] = t->shape[1];
    }
    return t->name;
}

const bert_config *bert_get_config(const bert_model *m) { return &m->cfg; }
