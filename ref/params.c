/* params.c — the model config and the flat parameter buffer: its layout,
 * the named views into it, and the Hugging Face name of every tensor. */
#include "opd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void opd_config_default(opd_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 64;
    c->d_model = 128;
    c->n_layers = 4;
    c->n_heads = 4;
    c->n_kv_heads = 4;
    c->d_ff = 512;
    c->max_seq_len = 512;
    c->qkv_bias = 1;
    c->tie_embeddings = 0;
    c->rope_theta = 10000.0f;
    c->rms_eps = 1e-6f;
}

int opd_config_validate(const opd_config *c, const char *what) {
    if (!what) what = "config";
    if (c->vocab_size < 2 || c->vocab_size > (1 << 20))
        return opd_set_error("%s: vocab_size %d out of range [2, 1048576]", what, c->vocab_size);
    if (c->d_model < 2 || c->d_model > 65536)
        return opd_set_error("%s: d_model %d out of range [2, 65536]", what, c->d_model);
    if (c->n_layers < 1 || c->n_layers > 1024)
        return opd_set_error("%s: n_layers %d out of range [1, 1024]", what, c->n_layers);
    if (c->n_heads < 1 || c->d_model % c->n_heads != 0)
        return opd_set_error("%s: n_heads %d must be >= 1 and divide d_model %d", what, c->n_heads, c->d_model);
    if ((c->d_model / c->n_heads) % 2 != 0)
        return opd_set_error("%s: head dim %d must be even for RoPE", what, c->d_model / c->n_heads);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads != 0)
        return opd_set_error("%s: n_kv_heads %d must be >= 1 and divide n_heads %d", what, c->n_kv_heads, c->n_heads);
    if (c->d_ff < 1 || c->d_ff > (1 << 20))
        return opd_set_error("%s: d_ff %d out of range [1, 1048576]", what, c->d_ff);
    if (c->max_seq_len < 1 || c->max_seq_len > (1 << 20))
        return opd_set_error("%s: max_seq_len %d out of range [1, 1048576]", what, c->max_seq_len);
    if (c->qkv_bias != 0 && c->qkv_bias != 1)
        return opd_set_error("%s: qkv_bias must be 0 or 1, not %d", what, c->qkv_bias);
    if (c->tie_embeddings != 0 && c->tie_embeddings != 1)
        return opd_set_error("%s: tie_embeddings must be 0 or 1, not %d", what, c->tie_embeddings);
    if (!(c->rope_theta > 1.0f) || !isfinite(c->rope_theta))
        return opd_set_error("%s: rope_theta %g must be a finite number > 1", what, c->rope_theta);
    if (!(c->rms_eps > 0.0f) || !(c->rms_eps < 1.0f))
        return opd_set_error("%s: rms_eps %g must be in (0, 1)", what, c->rms_eps);
    return 0;
}

/* ------------------------------------------------------------------ layout */
/* The one place sizes are computed from the config. Order of the flat
 * buffer: wte, then each per-layer kind stacked over L, then lnf, lm_head. */
enum { P_WTE, P_LN1, P_WQ, P_BQ, P_WK, P_BK, P_WV, P_BV, P_WO, P_LN2,
       P_WGATE, P_WUP, P_WDOWN, P_LNF, P_HEAD, P_COUNT };

static void param_sizes(const opd_config *c, size_t sz[P_COUNT]) {
    size_t V = c->vocab_size, C = c->d_model, L = c->n_layers, F = c->d_ff;
    size_t hd = C / c->n_heads, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    int bias = c->qkv_bias;
    sz[P_WTE] = V * C;
    sz[P_LN1] = L * C;
    sz[P_WQ] = L * qd * C;
    sz[P_BQ] = bias ? L * qd : 0;
    sz[P_WK] = L * kvd * C;
    sz[P_BK] = bias ? L * kvd : 0;
    sz[P_WV] = L * kvd * C;
    sz[P_BV] = bias ? L * kvd : 0;
    sz[P_WO] = L * C * qd;
    sz[P_LN2] = L * C;
    sz[P_WGATE] = L * F * C;
    sz[P_WUP] = L * F * C;
    sz[P_WDOWN] = L * C * F;
    sz[P_LNF] = C;
    sz[P_HEAD] = c->tie_embeddings ? 0 : V * C;
}

size_t opd_param_count(const opd_config *c) {
    size_t sz[P_COUNT], n = 0;
    param_sizes(c, sz);
    for (int i = 0; i < P_COUNT; i++) n += sz[i];
    return n;
}

void opd_params_bind(opd_params *p, float *mem, const opd_config *c) {
    size_t sz[P_COUNT];
    param_sizes(c, sz);
    float **views[P_COUNT] = {&p->wte, &p->ln1_w, &p->wq, &p->bq, &p->wk, &p->bk,
                              &p->wv, &p->bv, &p->wo, &p->ln2_w, &p->w_gate,
                              &p->w_up, &p->w_down, &p->lnf_w, &p->lm_head};
    float *ptr = mem;
    for (int i = 0; i < P_COUNT; i++) {
        *views[i] = sz[i] ? ptr : NULL;
        ptr += sz[i];
    }
    if (c->tie_embeddings) p->lm_head = p->wte;
}

int opd_param_tensor_count(const opd_config *c) {
    int per_layer = c->qkv_bias ? 12 : 9;
    return 1 + c->n_layers * per_layer + 1 + (c->tie_embeddings ? 0 : 1);
}

static void add_tensor(opd_tensor_info *t, const char *name, size_t offset,
                       int d0, int d1, int decay) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = offset;
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->decay = decay;
}

/* Tensor `suffix` of layer l: its slice of the per-layer stack `kind`. */
static void add_layer_tensor(opd_tensor_info *t, int l, const char *suffix,
                             size_t base, size_t stack_size, int L, int d0, int d1,
                             int decay) {
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    add_tensor(t, name, base + (size_t)l * (stack_size / L), d0, d1, decay);
}

void opd_param_tensors(const opd_config *c, opd_tensor_info *out) {
    size_t sz[P_COUNT], base[P_COUNT], off = 0;
    param_sizes(c, sz);
    for (int i = 0; i < P_COUNT; i++) { base[i] = off; off += sz[i]; }
    int V = c->vocab_size, C = c->d_model, L = c->n_layers, F = c->d_ff;
    int hd = C / c->n_heads, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    int n = 0;
    add_tensor(&out[n++], "model.embed_tokens.weight", base[P_WTE], V, C, 1);
    for (int l = 0; l < L; l++) {
        /* the Hugging Face Qwen2 order within a layer */
        add_layer_tensor(&out[n++], l, "input_layernorm.weight", base[P_LN1], sz[P_LN1], L, C, 0, 0);
        add_layer_tensor(&out[n++], l, "self_attn.q_proj.weight", base[P_WQ], sz[P_WQ], L, qd, C, 1);
        if (c->qkv_bias)
            add_layer_tensor(&out[n++], l, "self_attn.q_proj.bias", base[P_BQ], sz[P_BQ], L, qd, 0, 0);
        add_layer_tensor(&out[n++], l, "self_attn.k_proj.weight", base[P_WK], sz[P_WK], L, kvd, C, 1);
        if (c->qkv_bias)
            add_layer_tensor(&out[n++], l, "self_attn.k_proj.bias", base[P_BK], sz[P_BK], L, kvd, 0, 0);
        add_layer_tensor(&out[n++], l, "self_attn.v_proj.weight", base[P_WV], sz[P_WV], L, kvd, C, 1);
        if (c->qkv_bias)
            add_layer_tensor(&out[n++], l, "self_attn.v_proj.bias", base[P_BV], sz[P_BV], L, kvd, 0, 0);
        add_layer_tensor(&out[n++], l, "self_attn.o_proj.weight", base[P_WO], sz[P_WO], L, C, qd, 1);
        add_layer_tensor(&out[n++], l, "post_attention_layernorm.weight", base[P_LN2], sz[P_LN2], L, C, 0, 0);
        add_layer_tensor(&out[n++], l, "mlp.gate_proj.weight", base[P_WGATE], sz[P_WGATE], L, F, C, 1);
        add_layer_tensor(&out[n++], l, "mlp.up_proj.weight", base[P_WUP], sz[P_WUP], L, F, C, 1);
        add_layer_tensor(&out[n++], l, "mlp.down_proj.weight", base[P_WDOWN], sz[P_WDOWN], L, C, F, 1);
    }
    add_tensor(&out[n++], "model.norm.weight", base[P_LNF], C, 0, 0);
    if (!c->tie_embeddings) add_tensor(&out[n++], "lm_head.weight", base[P_HEAD], V, C, 1);
}
