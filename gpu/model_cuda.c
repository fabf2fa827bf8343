/* model_cuda.c — the decoder on the GPU: the device copy of the weights,
 * activations, the whole-model forward/backward and the KV-cached decode
 * step. Host C only: every line is a call of an opd_cuda_* function (the
 * kernels are in layers.cu, losses.cu, ...), in the order ref/model.c and
 * ref/decode.c call the CPU layers, with the same buffers, strides and
 * offsets, so the two files can be read side by side.
 *
 * Device pointers live in the CPU's view structs (opd_params, opd_acts,
 * opd_grad_scratch), bound into one flat device buffer by opd_params_bind:
 * the layout is the CPU's, so a download is a single copy.
 *
 * Every opd_cuda_* call can fail (a launch error, out of device memory);
 * TRY returns -1 from the calling function with the callee's message in
 * opd_last_error(). */
#include "opd_cuda.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TRY(call) do { if ((call) != 0) return -1; } while (0)

/* n elements of `size` bytes, zeroed, into *(void **)pp */
static int dev_alloc(opd_cuda *cu, void *pp, size_t n, size_t size) {
    return opd_cuda_alloc(cu, (void **)pp, n * size);
}

/* ---------------------------------------------------------- life cycle */
int opd_cuda_model_init(opd_cuda *cu, opd_cuda_model *m, const opd_model *host) {
    memset(m, 0, sizeof *m);
    m->cfg = host->cfg;
    m->num_params = host->num_params;
    TRY(dev_alloc(cu, &m->params_mem, m->num_params, sizeof(float)));
    opd_params_bind(&m->params, m->params_mem, &m->cfg);
    return opd_cuda_model_upload(cu, m, host);
}

int opd_cuda_model_upload(opd_cuda *cu, opd_cuda_model *m, const opd_model *host) {
    if (host->num_params != m->num_params)
        return opd_set_error("opd_cuda_model_upload: host model has %zu parameters, device model %zu",
                             host->num_params, m->num_params);
    return opd_cuda_upload(cu, m->params_mem, host->params_mem, m->num_params * sizeof(float));
}

int opd_cuda_model_download(opd_cuda *cu, opd_model *host, const opd_cuda_model *m) {
    if (host->num_params != m->num_params)
        return opd_set_error("opd_cuda_model_download: host model has %zu parameters, device model %zu",
                             host->num_params, m->num_params);
    return opd_cuda_download(cu, host->params_mem, m->params_mem, m->num_params * sizeof(float));
}

int opd_cuda_model_alloc_grads(opd_cuda *cu, opd_cuda_model *m) {
    if (m->grads_mem) return 0;
    TRY(dev_alloc(cu, &m->grads_mem, m->num_params, sizeof(float)));
    opd_params_bind(&m->grads, m->grads_mem, &m->cfg);
    return 0;
}

int opd_cuda_model_zero_grads(opd_cuda *cu, opd_cuda_model *m) {
    if (!m->grads_mem) return 0;
    return opd_cuda_zero(cu, m->grads_mem, m->num_params * sizeof(float));
}

static void free_acts(opd_cuda_model *m) {
    opd_acts *a = &m->acts;
    float *bufs[] = {a->encoded, a->ln1, a->ln1_rstd, a->q, a->k, a->v, a->att,
                     a->atty, a->res_mid, a->ln2, a->ln2_rstd, a->gate, a->up,
                     a->swiglu, a->res_out, a->lnf, a->lnf_rstd, a->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) opd_cuda_free(bufs[i]);
    opd_cuda_free(a->pos);
    opd_cuda_free(a->tokens);
    opd_cuda_free(a->pad);
    opd_grad_scratch *g = &m->gs;
    float *gbufs[] = {g->dres, g->dbuf_c, g->dq, g->dk, g->dv,
                      g->datty, g->datt, g->dgate, g->dup, g->dswiglu};
    for (size_t i = 0; i < sizeof gbufs / sizeof gbufs[0]; i++) opd_cuda_free(gbufs[i]);
    memset(a, 0, sizeof *a);
    memset(g, 0, sizeof *g);
    m->acts_B = m->acts_S = m->acts_L = 0;
}

void opd_cuda_model_free(opd_cuda_model *m) {
    free_acts(m);
    opd_cuda_free(m->params_mem);
    opd_cuda_free(m->grads_mem);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------- forward / backward */
/* ensure_acts of ref/model.c: the same sizes, on the device. */
static int alloc_acts(opd_cuda *cu, opd_cuda_model *m, int Bc, int Sc, int Lc) {
    const opd_config *c = &m->cfg;
    size_t L = Lc, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    size_t hd = C / c->n_heads, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    size_t BT = (size_t)Bc * Sc, att = (size_t)Bc * c->n_heads * Sc * Sc;
    opd_acts *a = &m->acts;
    opd_grad_scratch *g = &m->gs;
    a->B = Bc;
    a->S = Sc;
    TRY(dev_alloc(cu, &a->encoded, BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &a->ln1, L * BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &a->ln1_rstd, L * BT, sizeof(float)));
    TRY(dev_alloc(cu, &a->q, L * BT * qd, sizeof(float)));
    TRY(dev_alloc(cu, &a->k, L * BT * kvd, sizeof(float)));
    TRY(dev_alloc(cu, &a->v, L * BT * kvd, sizeof(float)));
    TRY(dev_alloc(cu, &a->att, L * att, sizeof(float)));
    TRY(dev_alloc(cu, &a->atty, L * BT * qd, sizeof(float)));
    TRY(dev_alloc(cu, &a->res_mid, L * BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &a->ln2, L * BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &a->ln2_rstd, L * BT, sizeof(float)));
    TRY(dev_alloc(cu, &a->gate, L * BT * F, sizeof(float)));
    TRY(dev_alloc(cu, &a->up, L * BT * F, sizeof(float)));
    TRY(dev_alloc(cu, &a->swiglu, L * BT * F, sizeof(float)));
    TRY(dev_alloc(cu, &a->res_out, L * BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &a->lnf, BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &a->lnf_rstd, BT, sizeof(float)));
    TRY(dev_alloc(cu, &a->logits, BT * V, sizeof(float)));
    TRY(dev_alloc(cu, &a->pos, BT, sizeof(int)));
    TRY(dev_alloc(cu, &a->tokens, BT, sizeof(int)));
    TRY(dev_alloc(cu, &a->pad, Bc, sizeof(int)));
    TRY(dev_alloc(cu, &g->dres, BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &g->dbuf_c, BT * C, sizeof(float)));
    TRY(dev_alloc(cu, &g->dq, BT * qd, sizeof(float)));
    TRY(dev_alloc(cu, &g->dk, BT * kvd, sizeof(float)));
    TRY(dev_alloc(cu, &g->dv, BT * kvd, sizeof(float)));
    TRY(dev_alloc(cu, &g->datty, BT * qd, sizeof(float)));
    TRY(dev_alloc(cu, &g->datt, att, sizeof(float)));
    TRY(dev_alloc(cu, &g->dgate, BT * F, sizeof(float)));
    TRY(dev_alloc(cu, &g->dup, BT * F, sizeof(float)));
    TRY(dev_alloc(cu, &g->dswiglu, BT * F, sizeof(float)));
    return 0;
}

/* Capacity only grows, as on the CPU: a smaller (B, S) reuses the buffers,
 * packed with its own (B, S). */
static int ensure_acts(opd_cuda *cu, opd_cuda_model *m, int B, int S, int layers) {
    if (B <= m->acts_B && S <= m->acts_S && layers <= m->acts_L) return 0;
    int Bc = B > m->acts_B ? B : m->acts_B, Sc = S > m->acts_S ? S : m->acts_S;
    int Lc = layers > m->acts_L ? layers : m->acts_L;
    free_acts(m);
    if (alloc_acts(cu, m, Bc, Sc, Lc) != 0) {
        free_acts(m);   /* nothing half-allocated stays behind */
        return -1;
    }
    m->acts_B = Bc;
    m->acts_S = Sc;
    m->acts_L = Lc;
    return 0;
}

/* model_forward of ref/model.c, call for call. all_layers = 0 (inference):
 * every layer writes one layer's activation slots (see ref/model.c). */
static int model_forward(opd_cuda *cu, opd_cuda_model *m, const int *tokens, const int *pad,
                         int B, int S, int all_layers) {
    const opd_config *c = &m->cfg;
    if (B < 1 || S < 1 || S > c->max_seq_len)
        return opd_set_error("opd_cuda_model_forward: B=%d S=%d: need B >= 1 and 1 <= S <= max_seq_len (%d)",
                             B, S, c->max_seq_len);
    TRY(ensure_acts(cu, m, B, S, all_layers ? c->n_layers : 1));
    m->B = B;
    m->S = S;
    m->acts_one_layer = !all_layers;
    int L = c->n_layers, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    int NH = c->n_heads, NKV = c->n_kv_heads, hd = C / NH, qd = NH * hd, kvd = NKV * hd;
    int N = B * S;
    opd_params *p = &m->params;
    opd_acts *a = &m->acts;

    TRY(opd_cuda_copy(cu, a->tokens, tokens, (size_t)N * sizeof(int)));
    if (pad) TRY(opd_cuda_copy(cu, a->pad, pad, (size_t)B * sizeof(int)));
    else TRY(opd_cuda_zero(cu, a->pad, (size_t)B * sizeof(int)));
    // RoPE position: the first real token is position 0; pads get 0
    TRY(opd_cuda_rope_positions(cu, a->pos, a->pad, B, S));
    TRY(opd_cuda_encoder_forward(cu, a->encoded, a->tokens, p->wte, N, C));
    for (int l = 0; l < L; l++) {
        size_t la = all_layers ? l : 0, prev = all_layers ? l - 1 : 0;   // activation slots
        const float *x = l == 0 ? a->encoded : a->res_out + prev * N * C;
        float *ln1 = a->ln1 + la * N * C, *ln1_rstd = a->ln1_rstd + la * N;
        float *q = a->q + la * N * qd, *k = a->k + la * N * kvd;
        float *v = a->v + la * N * kvd;
        float *att = a->att + la * B * NH * S * S;
        float *atty = a->atty + la * N * qd;
        float *res_mid = a->res_mid + la * N * C;
        float *ln2 = a->ln2 + la * N * C, *ln2_rstd = a->ln2_rstd + la * N;
        float *gate = a->gate + la * N * F, *up = a->up + la * N * F;
        float *sw = a->swiglu + la * N * F;
        float *res_out = a->res_out + la * N * C;

        // h = x + Wo Attn(RoPE(Wq n1(x)), RoPE(Wk n1(x)), Wv n1(x))
        TRY(opd_cuda_rmsnorm_forward(cu, ln1, ln1_rstd, x, p->ln1_w + (size_t)l * C, N, C, c->rms_eps));
        TRY(opd_cuda_matmul_forward(cu, q, ln1, p->wq + (size_t)l * qd * C,
                                    p->bq ? p->bq + (size_t)l * qd : NULL, N, C, qd));
        TRY(opd_cuda_matmul_forward(cu, k, ln1, p->wk + (size_t)l * kvd * C,
                                    p->bk ? p->bk + (size_t)l * kvd : NULL, N, C, kvd));
        TRY(opd_cuda_matmul_forward(cu, v, ln1, p->wv + (size_t)l * kvd * C,
                                    p->bv ? p->bv + (size_t)l * kvd : NULL, N, C, kvd));
        TRY(opd_cuda_rope_forward(cu, q, a->pos, N, NH, hd, c->rope_theta));
        TRY(opd_cuda_rope_forward(cu, k, a->pos, N, NKV, hd, c->rope_theta));
        TRY(opd_cuda_attention_forward(cu, atty, att, q, k, v, a->pad, B, S, NH, NKV, hd));
        TRY(opd_cuda_matmul_forward(cu, res_mid, atty, p->wo + (size_t)l * C * qd, NULL, N, qd, C));
        TRY(opd_cuda_add_inplace(cu, res_mid, x, (size_t)N * C));
        // out = h + Wdown (silu(Wgate n2(h)) * Wup n2(h))
        TRY(opd_cuda_rmsnorm_forward(cu, ln2, ln2_rstd, res_mid, p->ln2_w + (size_t)l * C, N, C, c->rms_eps));
        TRY(opd_cuda_matmul_forward(cu, gate, ln2, p->w_gate + (size_t)l * F * C, NULL, N, C, F));
        TRY(opd_cuda_matmul_forward(cu, up, ln2, p->w_up + (size_t)l * F * C, NULL, N, C, F));
        TRY(opd_cuda_swiglu_forward(cu, sw, gate, up, N, F));
        TRY(opd_cuda_matmul_forward(cu, res_out, sw, p->w_down + (size_t)l * C * F, NULL, N, F, C));
        TRY(opd_cuda_add_inplace(cu, res_out, res_mid, (size_t)N * C));
    }
    size_t last = all_layers ? L - 1 : 0;
    TRY(opd_cuda_rmsnorm_forward(cu, a->lnf, a->lnf_rstd, a->res_out + last * N * C, p->lnf_w,
                                 N, C, c->rms_eps));
    TRY(opd_cuda_matmul_forward(cu, a->logits, a->lnf, p->lm_head, NULL, N, C, V));
    return 0;
}

int opd_cuda_model_forward(opd_cuda *cu, opd_cuda_model *m, const int *tokens, const int *pad,
                           int B, int S) {
    return model_forward(cu, m, tokens, pad, B, S, 1);
}

int opd_cuda_model_forward_inference(opd_cuda *cu, opd_cuda_model *m, const int *tokens,
                                     const int *pad, int B, int S) {
    return model_forward(cu, m, tokens, pad, B, S, 0);
}

/* opd_model_backward of ref/model.c, call for call. */
int opd_cuda_model_backward(opd_cuda *cu, opd_cuda_model *m, const float *dlogits) {
    const opd_config *c = &m->cfg;
    if (m->acts_one_layer || m->acts_L == 0)
        return opd_set_error("opd_cuda_model_backward: the last forward was an inference forward (or none)");
    TRY(opd_cuda_model_alloc_grads(cu, m));
    int B = m->B, S = m->S, N = B * S;
    int L = c->n_layers, C = c->d_model, V = c->vocab_size, F = c->d_ff;
    int NH = c->n_heads, NKV = c->n_kv_heads, hd = C / NH, qd = NH * hd, kvd = NKV * hd;
    opd_params *p = &m->params, *g = &m->grads;
    opd_acts *a = &m->acts;
    opd_grad_scratch *s = &m->gs;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    const size_t fl = sizeof(float);

    // logits = lnf @ lm_head^T. With tied embeddings g->lm_head == g->wte, so
    // the head's gradient lands in the embedding's, next to the encoder's.
    TRY(opd_cuda_zero(cu, s->dbuf_c, NC * fl));
    TRY(opd_cuda_matmul_backward(cu, s->dbuf_c, g->lm_head, NULL, dlogits, a->lnf, p->lm_head, N, C, V));
    // dres: gradient w.r.t. the residual stream, walked from the top down
    TRY(opd_cuda_zero(cu, s->dres, NC * fl));
    TRY(opd_cuda_rmsnorm_backward(cu, s->dres, g->lnf_w, s->dbuf_c, a->res_out + (size_t)(L - 1) * NC,
                                  p->lnf_w, a->lnf_rstd, N, C));
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
        TRY(opd_cuda_zero(cu, s->dswiglu, NF * fl));
        TRY(opd_cuda_matmul_backward(cu, s->dswiglu, g->w_down + (size_t)l * C * F, NULL, s->dres, sw,
                                     p->w_down + (size_t)l * C * F, N, F, C));
        TRY(opd_cuda_zero(cu, s->dgate, NF * fl));
        TRY(opd_cuda_zero(cu, s->dup, NF * fl));
        TRY(opd_cuda_swiglu_backward(cu, s->dgate, s->dup, s->dswiglu, gate, up, N, F));
        TRY(opd_cuda_zero(cu, s->dbuf_c, NC * fl));
        TRY(opd_cuda_matmul_backward(cu, s->dbuf_c, g->w_gate + (size_t)l * F * C, NULL, s->dgate, ln2,
                                     p->w_gate + (size_t)l * F * C, N, C, F));
        TRY(opd_cuda_matmul_backward(cu, s->dbuf_c, g->w_up + (size_t)l * F * C, NULL, s->dup, ln2,
                                     p->w_up + (size_t)l * F * C, N, C, F));
        TRY(opd_cuda_rmsnorm_backward(cu, s->dres, g->ln2_w + (size_t)l * C, s->dbuf_c, res_mid,
                                      p->ln2_w + (size_t)l * C, ln2_rstd, N, C));
        // now dres = d loss / d h

        // attention branch: h = x + Wo atty
        TRY(opd_cuda_zero(cu, s->datty, (size_t)N * qd * fl));
        TRY(opd_cuda_matmul_backward(cu, s->datty, g->wo + (size_t)l * C * qd, NULL, s->dres, atty,
                                     p->wo + (size_t)l * C * qd, N, qd, C));
        TRY(opd_cuda_zero(cu, s->dq, (size_t)N * qd * fl));
        TRY(opd_cuda_zero(cu, s->dk, (size_t)N * kvd * fl));
        TRY(opd_cuda_zero(cu, s->dv, (size_t)N * kvd * fl));
        TRY(opd_cuda_attention_backward(cu, s->dq, s->dk, s->dv, s->datt, s->datty, q, k, v, att,
                                        B, S, NH, NKV, hd));
        TRY(opd_cuda_rope_backward(cu, s->dq, a->pos, N, NH, hd, c->rope_theta));
        TRY(opd_cuda_rope_backward(cu, s->dk, a->pos, N, NKV, hd, c->rope_theta));
        TRY(opd_cuda_zero(cu, s->dbuf_c, NC * fl));
        TRY(opd_cuda_matmul_backward(cu, s->dbuf_c, g->wq + (size_t)l * qd * C,
                                     g->bq ? g->bq + (size_t)l * qd : NULL,
                                     s->dq, ln1, p->wq + (size_t)l * qd * C, N, C, qd));
        TRY(opd_cuda_matmul_backward(cu, s->dbuf_c, g->wk + (size_t)l * kvd * C,
                                     g->bk ? g->bk + (size_t)l * kvd : NULL,
                                     s->dk, ln1, p->wk + (size_t)l * kvd * C, N, C, kvd));
        TRY(opd_cuda_matmul_backward(cu, s->dbuf_c, g->wv + (size_t)l * kvd * C,
                                     g->bv ? g->bv + (size_t)l * kvd : NULL,
                                     s->dv, ln1, p->wv + (size_t)l * kvd * C, N, C, kvd));
        TRY(opd_cuda_rmsnorm_backward(cu, s->dres, g->ln1_w + (size_t)l * C, s->dbuf_c, x,
                                      p->ln1_w + (size_t)l * C, ln1_rstd, N, C));
        // now dres = d loss / d x, the output of layer l-1
    }
    TRY(opd_cuda_encoder_backward(cu, g->wte, s->dres, a->tokens, N, C));
    return 0;
}

/* --------------------------------------------------- KV cache and decode */
int opd_cuda_kv_cache_init(opd_cuda *cu, opd_cuda_kv_cache *c, const opd_config *cfg, int B, int S) {
    memset(c, 0, sizeof *c);
    if (B < 1) return opd_set_error("opd_cuda_kv_cache_init: batch %d < 1", B);
    if (S < 1 || S > cfg->max_seq_len)
        return opd_set_error("opd_cuda_kv_cache_init: capacity %d (prompt + horizon) not in [1, max_seq_len %d]",
                             S, cfg->max_seq_len);
    int hd = cfg->d_model / cfg->n_heads;
    c->L = cfg->n_layers;
    c->B = B;
    c->S = S;
    c->kv_dim = cfg->n_kv_heads * hd;
    size_t n = (size_t)c->L * B * S * c->kv_dim;
    if (dev_alloc(cu, &c->k, n, sizeof(float)) != 0 || dev_alloc(cu, &c->v, n, sizeof(float)) != 0) {
        opd_cuda_kv_cache_free(c);
        return -1;
    }
    return 0;
}

void opd_cuda_kv_cache_free(opd_cuda_kv_cache *c) {
    opd_cuda_free(c->k);
    opd_cuda_free(c->v);
    memset(c, 0, sizeof *c);
}

int opd_cuda_decode_scratch_init(opd_cuda *cu, opd_cuda_decode_scratch *s, const opd_config *cfg,
                                 int B, int S) {
    memset(s, 0, sizeof *s);
    if (B < 1 || S < 1)
        return opd_set_error("opd_cuda_decode_scratch_init: batch %d and capacity %d must be >= 1", B, S);
    size_t C = cfg->d_model, NH = cfg->n_heads, hd = C / NH, F = cfg->d_ff;
    size_t qd = NH * hd, kvd = cfg->n_kv_heads * hd;
    s->B = B;
    s->S = S;
    if (dev_alloc(cu, &s->x, B * C, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->xn, B * C, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->q, B * qd, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->k, B * kvd, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->v, B * kvd, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->atty, B * qd, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->tmp, B * C, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->gate, B * F, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->up, B * F, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->att, B * NH * (size_t)S, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->rstd, B, sizeof(float)) != 0 ||
        dev_alloc(cu, &s->pos, B, sizeof(int)) != 0) {
        opd_cuda_decode_scratch_free(s);
        return -1;
    }
    return 0;
}

void opd_cuda_decode_scratch_free(opd_cuda_decode_scratch *s) {
    float *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->atty, s->tmp, s->gate,
                     s->up, s->att, s->rstd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) opd_cuda_free(bufs[i]);
    opd_cuda_free(s->pos);
    memset(s, 0, sizeof *s);
}

/* opd_model_decode_step of ref/decode.c, call for call: tokens (B) at
 * position t; the cache holds positions 0..t-1 of every sequence. */
int opd_cuda_model_decode_step(opd_cuda *cu, const opd_cuda_model *m, opd_cuda_kv_cache *c,
                               opd_cuda_decode_scratch *s, const int *tokens, const int *pad,
                               int t, float *logits) {
    const opd_config *cfg = &m->cfg;
    const opd_params *p = &m->params;
    int B = c->B, C = cfg->d_model, L = cfg->n_layers, V = cfg->vocab_size;
    int NH = cfg->n_heads, NKV = cfg->n_kv_heads, hd = C / NH, F = cfg->d_ff;
    int qd = NH * hd, kvd = NKV * hd, S = c->S;
    float eps = cfg->rms_eps;
    if (t < 0 || t >= S || B > s->B)
        return opd_set_error("opd_cuda_model_decode_step: position %d / batch %d outside the cache (%d, %d)",
                             t, B, S, s->B);

    TRY(opd_cuda_decode_positions(cu, s->pos, pad, B, t));
    TRY(opd_cuda_encoder_forward(cu, s->x, tokens, p->wte, B, C));       /* x (B, C) */
    for (int l = 0; l < L; l++) {
        /* attention: q, k, v (B, qd | kvd) from n1(x) */
        TRY(opd_cuda_rmsnorm_forward(cu, s->xn, s->rstd, s->x, p->ln1_w + (size_t)l * C, B, C, eps));
        TRY(opd_cuda_matmul_forward(cu, s->q, s->xn, p->wq + (size_t)l * qd * C,
                                    p->bq ? p->bq + (size_t)l * qd : NULL, B, C, qd));
        TRY(opd_cuda_matmul_forward(cu, s->k, s->xn, p->wk + (size_t)l * kvd * C,
                                    p->bk ? p->bk + (size_t)l * kvd : NULL, B, C, kvd));
        TRY(opd_cuda_matmul_forward(cu, s->v, s->xn, p->wv + (size_t)l * kvd * C,
                                    p->bv ? p->bv + (size_t)l * kvd : NULL, B, C, kvd));
        TRY(opd_cuda_rope_forward(cu, s->q, s->pos, B, NH, hd, cfg->rope_theta));
        TRY(opd_cuda_rope_forward(cu, s->k, s->pos, B, NKV, hd, cfg->rope_theta));

        /* this layer's cache (the CPU's layout): write position t, attend over pad[b]..t */
        float *kc = c->k + (size_t)l * c->B * S * kvd;
        float *vc = c->v + (size_t)l * c->B * S * kvd;
        TRY(opd_cuda_kv_cache_write(cu, kc, vc, s->k, s->v, B, S, kvd, t));
        TRY(opd_cuda_decode_attention(cu, s->atty, s->att, s->q, kc, vc, pad, B, S, t, NH, NKV, hd));

        /* h = x + Wo atty */
        TRY(opd_cuda_matmul_forward(cu, s->tmp, s->atty, p->wo + (size_t)l * C * qd, NULL, B, qd, C));
        TRY(opd_cuda_add_inplace(cu, s->x, s->tmp, (size_t)B * C));

        /* out = h + Wdown (silu(Wgate n2(h)) * Wup n2(h)) */
        TRY(opd_cuda_rmsnorm_forward(cu, s->xn, s->rstd, s->x, p->ln2_w + (size_t)l * C, B, C, eps));
        TRY(opd_cuda_matmul_forward(cu, s->gate, s->xn, p->w_gate + (size_t)l * F * C, NULL, B, C, F));
        TRY(opd_cuda_matmul_forward(cu, s->up, s->xn, p->w_up + (size_t)l * F * C, NULL, B, C, F));
        TRY(opd_cuda_swiglu_forward(cu, s->gate, s->gate, s->up, B, F));   /* elementwise, in place */
        TRY(opd_cuda_matmul_forward(cu, s->tmp, s->gate, p->w_down + (size_t)l * C * F, NULL, B, F, C));
        TRY(opd_cuda_add_inplace(cu, s->x, s->tmp, (size_t)B * C));
    }
    TRY(opd_cuda_rmsnorm_forward(cu, s->xn, s->rstd, s->x, p->lnf_w, B, C, eps));
    TRY(opd_cuda_matmul_forward(cu, logits, s->xn, p->lm_head, NULL, B, C, V));   /* (B, V) */
    return 0;
}
