/* model.c — the decoder's life cycle (init, random init, gradients), its
 * activations, and the whole-model forward/backward that runs the blocks
 * (block.c) and the layers (layers.c) one after another. The config and the
 * parameter layout are in params.c. */
#include "opd.h"
#include "block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- life cycle */
int opd_model_init(opd_model *m, const opd_config *cfg) {
    memset(m, 0, sizeof *m);
    if (opd_config_validate(cfg, "model config") != 0) return -1;
    m->cfg = *cfg;
    m->num_params = opd_param_count(cfg);
    m->params_mem = opd_calloc(m->num_params, sizeof(float));
    opd_params_bind(&m->params, m->params_mem, cfg);
    return 0;
}

void opd_model_init_random(opd_model *m, uint64_t seed) {
    const opd_config *c = &m->cfg;
    int nt = opd_param_tensor_count(c);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(c, ts);
    float resid_scale = 1.0f / sqrtf(2.0f * c->n_layers);
    for (int i = 0; i < nt; i++) {
        float *w = m->params_mem + ts[i].offset;
        const char *name = ts[i].name;
        if (strstr(name, "norm")) {            /* RMSNorm scales start at 1 */
            for (size_t j = 0; j < ts[i].numel; j++) w[j] = 1.0f;
        } else if (ts[i].ndim == 1) {          /* biases start at 0 */
            for (size_t j = 0; j < ts[i].numel; j++) w[j] = 0.0f;
        } else {
            /* GPT-2 init; the projections that write into the residual
             * stream are scaled down so its variance does not grow with L */
            float std = 0.02f;
            if (strstr(name, "o_proj") || strstr(name, "down_proj")) std *= resid_scale;
            /* keyed by (tensor, element): independent of everything else */
            for (size_t j = 0; j < ts[i].numel; j++)
                w[j] = std * opd_normal(seed, 0x696e6974u /* "init" */, (uint32_t)i, (uint32_t)j);
        }
    }
    free(ts);
}

void opd_model_alloc_grads(opd_model *m) {
    if (m->grads_mem) return;
    m->grads_mem = opd_calloc(m->num_params, sizeof(float));
    opd_params_bind(&m->grads, m->grads_mem, &m->cfg);
}

void opd_model_zero_grads(opd_model *m) {
    if (m->grads_mem) memset(m->grads_mem, 0, m->num_params * sizeof(float));
}

static void free_acts(opd_model *m) {
    opd_acts *a = &m->acts;
    float *bufs[] = {a->encoded, a->ln1, a->ln1_rstd, a->q, a->k, a->v, a->att,
                     a->atty, a->res_mid, a->ln2, a->ln2_rstd, a->gate, a->up,
                     a->swiglu, a->res_out, a->lnf, a->lnf_rstd, a->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(a->pos);
    free(a->tokens);
    free(a->pad);
    opd_grad_scratch *g = &m->gs;
    float *gbufs[] = {g->dres, g->dbuf_c, g->dq, g->dk, g->dv,
                      g->datty, g->datt, g->dgate, g->dup, g->dswiglu};
    for (size_t i = 0; i < sizeof gbufs / sizeof gbufs[0]; i++) free(gbufs[i]);
    memset(a, 0, sizeof *a);
    memset(g, 0, sizeof *g);
    m->acts_B = m->acts_S = m->acts_L = 0;
}

void opd_model_free(opd_model *m) {
    free_acts(m);
    free(m->params_mem);
    free(m->grads_mem);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------- forward / backward */
/* Activations and backward scratch for (B, S) and `layers` layers (n_layers,
 * or 1 for inference). Capacity only grows: a smaller batch reuses the
 * buffers, packed with its own (B, S), so the per-layer stride of an
 * (L, B, S, X) tensor is B*S*X of the current call. */
static void ensure_acts(opd_model *m, int B, int S, int layers) {
    if (B <= m->acts_B && S <= m->acts_S && layers <= m->acts_L) return;
    int Bc = B > m->acts_B ? B : m->acts_B, Sc = S > m->acts_S ? S : m->acts_S;
    int Lc = layers > m->acts_L ? layers : m->acts_L;
    free_acts(m);
    const opd_config *c = &m->cfg;
    size_t L = Lc, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    size_t hd = C / c->n_heads, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    size_t BT = (size_t)Bc * Sc, att = (size_t)Bc * c->n_heads * Sc * Sc;
    opd_acts *a = &m->acts;
    a->B = Bc;
    a->S = Sc;
    a->encoded = opd_calloc(BT * C, sizeof(float));
    a->ln1 = opd_calloc(L * BT * C, sizeof(float));
    a->ln1_rstd = opd_calloc(L * BT, sizeof(float));
    a->q = opd_calloc(L * BT * qd, sizeof(float));
    a->k = opd_calloc(L * BT * kvd, sizeof(float));
    a->v = opd_calloc(L * BT * kvd, sizeof(float));
    a->att = opd_calloc(L * att, sizeof(float));
    a->atty = opd_calloc(L * BT * qd, sizeof(float));
    a->res_mid = opd_calloc(L * BT * C, sizeof(float));
    a->ln2 = opd_calloc(L * BT * C, sizeof(float));
    a->ln2_rstd = opd_calloc(L * BT, sizeof(float));
    a->gate = opd_calloc(L * BT * F, sizeof(float));
    a->up = opd_calloc(L * BT * F, sizeof(float));
    a->swiglu = opd_calloc(L * BT * F, sizeof(float));
    a->res_out = opd_calloc(L * BT * C, sizeof(float));
    a->lnf = opd_calloc(BT * C, sizeof(float));
    a->lnf_rstd = opd_calloc(BT, sizeof(float));
    a->logits = opd_calloc(BT * V, sizeof(float));
    a->pos = opd_calloc(BT, sizeof(int));
    a->tokens = opd_calloc(BT, sizeof(int));
    a->pad = opd_calloc(Bc, sizeof(int));
    opd_grad_scratch *g = &m->gs;
    g->dres = opd_calloc(BT * C, sizeof(float));
    g->dbuf_c = opd_calloc(BT * C, sizeof(float));
    g->dq = opd_calloc(BT * qd, sizeof(float));
    g->dk = opd_calloc(BT * kvd, sizeof(float));
    g->dv = opd_calloc(BT * kvd, sizeof(float));
    g->datty = opd_calloc(BT * qd, sizeof(float));
    g->datt = opd_calloc(att, sizeof(float));
    g->dgate = opd_calloc(BT * F, sizeof(float));
    g->dup = opd_calloc(BT * F, sizeof(float));
    g->dswiglu = opd_calloc(BT * F, sizeof(float));
    m->acts_B = Bc;
    m->acts_S = Sc;
    m->acts_L = Lc;
}

/* all_layers = 0 (inference): layer l writes its activations where layer
 * l-1 wrote its own (a layer stride of 0); each layer reads only its input
 * x, the previous layer's res_out, and is done with it before res_out is
 * overwritten, so the numbers are those of the full forward. */
static void model_forward(opd_model *m, const int *tokens, const int *pad, int B, int S,
                          int all_layers) {
    const opd_config *c = &m->cfg;
    if (B < 1 || S < 1 || S > c->max_seq_len) {
        /* a caller bug (the horizon/prompt sizing upstream), not a data
         * error: stop loudly rather than write past the RoPE/config limits */
        fprintf(stderr, "opd_model_forward: B=%d S=%d: need B >= 1 and 1 <= S <= "
                "max_seq_len (%d)\n", B, S, c->max_seq_len);
        abort();
    }
    ensure_acts(m, B, S, all_layers ? c->n_layers : 1);
    m->B = B;
    m->S = S;
    m->acts_one_layer = !all_layers;
    int L = c->n_layers, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    int NH = c->n_heads, NKV = c->n_kv_heads, hd = C / NH, qd = NH * hd, kvd = NKV * hd;
    int N = B * S;
    opd_params *p = &m->params;
    opd_acts *a = &m->acts;

    memcpy(a->tokens, tokens, (size_t)N * sizeof(int));
    for (int b = 0; b < B; b++) {
        a->pad[b] = pad ? pad[b] : 0;
        // RoPE position: the first real token is position 0; pads get 0
        for (int t = 0; t < S; t++)
            a->pos[b * S + t] = t >= a->pad[b] ? t - a->pad[b] : 0;
    }
    encoder_forward(a->encoded, tokens, p->wte, N, C);
    for (int l = 0; l < L; l++) {
        size_t la = all_layers ? l : 0, prev = all_layers ? l - 1 : 0;   // activation slots
        const float *x = l == 0 ? a->encoded : a->res_out + prev * N * C;
        opd_block_bufs o = {
            .ln1 = a->ln1 + la * N * C, .ln1_rstd = a->ln1_rstd + la * N,
            .q = a->q + la * N * qd, .k = a->k + la * N * kvd, .v = a->v + la * N * kvd,
            .atty = a->atty + la * N * qd, .res_mid = a->res_mid + la * N * C,
            .ln2 = a->ln2 + la * N * C, .ln2_rstd = a->ln2_rstd + la * N,
            .gate = a->gate + la * N * F, .up = a->up + la * N * F,
            .swiglu = a->swiglu + la * N * F, .res_out = a->res_out + la * N * C};
        float *att = a->att + la * B * NH * S * S;
        // h = x + Wo Attn(RoPE(Wq n1(x)), RoPE(Wk n1(x)), Wv n1(x)); out = h + MLP(n2(h))
        block_attention_inputs(m, l, x, a->pos, N, &o);
        attention_forward(o.atty, att, o.q, o.k, o.v, a->pad, B, S, NH, NKV, hd);
        block_output(m, l, x, N, &o);
    }
    size_t last = all_layers ? L - 1 : 0;
    rmsnorm_forward(a->lnf, a->lnf_rstd, a->res_out + last * N * C, p->lnf_w,
                    N, C, c->rms_eps);
    matmul_forward(a->logits, a->lnf, p->lm_head, NULL, N, C, V);
}

void opd_model_forward(opd_model *m, const int *tokens, const int *pad, int B, int S) {
    model_forward(m, tokens, pad, B, S, 1);
}

void opd_model_forward_inference(opd_model *m, const int *tokens, const int *pad, int B, int S) {
    model_forward(m, tokens, pad, B, S, 0);
}

void opd_model_backward(opd_model *m, const float *dlogits) {
    const opd_config *c = &m->cfg;
    if (m->acts_one_layer) {
        /* a caller bug: the activations of all but one layer are gone */
        fprintf(stderr, "opd_model_backward: the last forward was opd_model_forward_inference\n");
        abort();
    }
    if (!m->grads_mem) opd_model_alloc_grads(m);
    int B = m->B, S = m->S, N = B * S;
    int L = c->n_layers, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    int NH = c->n_heads, NKV = c->n_kv_heads, hd = C / NH, qd = NH * hd, kvd = NKV * hd;
    opd_params *p = &m->params, *g = &m->grads;
    opd_acts *a = &m->acts;
    opd_grad_scratch *s = &m->gs;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;

    // logits = lnf @ lm_head^T. With tied embeddings g->lm_head == g->wte, so
    // the head's gradient lands in the embedding's, next to the encoder's.
    memset(s->dbuf_c, 0, NC * sizeof(float));
    matmul_backward(s->dbuf_c, g->lm_head, NULL, dlogits, a->lnf, p->lm_head, N, C, V);
    // dres: gradient w.r.t. the residual stream, walked from the top down
    memset(s->dres, 0, NC * sizeof(float));
    rmsnorm_backward(s->dres, g->lnf_w, s->dbuf_c, a->res_out + (size_t)(L - 1) * NC,
                     p->lnf_w, a->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const float *x = l == 0 ? a->encoded : a->res_out + (size_t)(l - 1) * NC;
        const float *ln1 = a->ln1 + (size_t)l * NC, *ln1_rstd = a->ln1_rstd + (size_t)l * N;
        const float *q = a->q + (size_t)l * N * qd, *k = a->k + (size_t)l * N * kvd;
        const float *v = a->v + (size_t)l * N * kvd;
        const float *att = a->att + (size_t)l * B * NH * S * S;
        const float *atty = a->atty + (size_t)l * N * qd;
        const float *res_mid = a->res_mid + (size_t)l * NC;
        const float *ln2 = a->ln2 + (size_t)l * NC, *ln2_rstd = a->ln2_rstd + (size_t)l * N;
        const float *gate = a->gate + (size_t)l * NF, *up = a->up + (size_t)l * NF;
        const float *sw = a->swiglu + (size_t)l * NF;

        // MLP branch: out = h + Wdown swiglu. dres (= dout) also flows to h as is.
        memset(s->dswiglu, 0, NF * sizeof(float));
        matmul_backward(s->dswiglu, g->w_down + (size_t)l * C * F, NULL, s->dres, sw,
                        p->w_down + (size_t)l * C * F, N, F, C);
        memset(s->dgate, 0, NF * sizeof(float));
        memset(s->dup, 0, NF * sizeof(float));
        swiglu_backward(s->dgate, s->dup, s->dswiglu, gate, up, N, F);
        memset(s->dbuf_c, 0, NC * sizeof(float));
        matmul_backward(s->dbuf_c, g->w_gate + (size_t)l * F * C, NULL, s->dgate, ln2,
                        p->w_gate + (size_t)l * F * C, N, C, F);
        matmul_backward(s->dbuf_c, g->w_up + (size_t)l * F * C, NULL, s->dup, ln2,
                        p->w_up + (size_t)l * F * C, N, C, F);
        rmsnorm_backward(s->dres, g->ln2_w + (size_t)l * C, s->dbuf_c, res_mid,
                         p->ln2_w + (size_t)l * C, ln2_rstd, N, C);
        // now dres = d loss / d h

        // attention branch: h = x + Wo atty
        memset(s->datty, 0, (size_t)N * qd * sizeof(float));
        matmul_backward(s->datty, g->wo + (size_t)l * C * qd, NULL, s->dres, atty,
                        p->wo + (size_t)l * C * qd, N, qd, C);
        memset(s->dq, 0, (size_t)N * qd * sizeof(float));
        memset(s->dk, 0, (size_t)N * kvd * sizeof(float));
        memset(s->dv, 0, (size_t)N * kvd * sizeof(float));
        attention_backward(s->dq, s->dk, s->dv, s->datt, s->datty, q, k, v, att,
                           B, S, NH, NKV, hd);
        rope_backward(s->dq, a->pos, N, NH, hd, c->rope_theta);
        rope_backward(s->dk, a->pos, N, NKV, hd, c->rope_theta);
        memset(s->dbuf_c, 0, NC * sizeof(float));
        matmul_backward(s->dbuf_c, g->wq + (size_t)l * qd * C, g->bq ? g->bq + (size_t)l * qd : NULL,
                        s->dq, ln1, p->wq + (size_t)l * qd * C, N, C, qd);
        matmul_backward(s->dbuf_c, g->wk + (size_t)l * kvd * C, g->bk ? g->bk + (size_t)l * kvd : NULL,
                        s->dk, ln1, p->wk + (size_t)l * kvd * C, N, C, kvd);
        matmul_backward(s->dbuf_c, g->wv + (size_t)l * kvd * C, g->bv ? g->bv + (size_t)l * kvd : NULL,
                        s->dv, ln1, p->wv + (size_t)l * kvd * C, N, C, kvd);
        rmsnorm_backward(s->dres, g->ln1_w + (size_t)l * C, s->dbuf_c, x,
                         p->ln1_w + (size_t)l * C, ln1_rstd, N, C);
        // now dres = d loss / d x, the output of layer l-1
    }
    encoder_backward(g->wte, s->dres, a->tokens, N, C);
}
