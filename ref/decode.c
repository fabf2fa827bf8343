/* decode.c — the KV cache and the one-token decode step (llama2.c's
 * forward()): each new token costs one token of matmuls and O(t) attention
 * over the cached keys and values, never a re-run of the prefix.
 *
 * The cache is sized by cap = prompt + horizon H_k, not by max_seq_len: with
 * a truncated (TOPD) or progressive (POPD) horizon the memory saving is real. */
#include "opd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int opd_kv_cache_init(opd_kv_cache *c, const opd_config *cfg, int B, int cap) {
    memset(c, 0, sizeof *c);
    if (B < 1) return opd_set_error("opd_kv_cache_init: batch %d < 1", B);
    if (cap < 1 || cap > cfg->max_seq_len)
        return opd_set_error("opd_kv_cache_init: capacity %d (prompt + horizon) not in [1, max_seq_len %d]",
                             cap, cfg->max_seq_len);
    int hd = cfg->d_model / cfg->n_heads;
    c->L = cfg->n_layers;
    c->B = B;
    c->cap = cap;
    c->kv_dim = cfg->n_kv_heads * hd;
    size_t n = (size_t)c->L * B * cap * c->kv_dim;
    c->k = opd_calloc(n, sizeof(float));
    c->v = opd_calloc(n, sizeof(float));
    return 0;
}

void opd_kv_cache_free(opd_kv_cache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

size_t opd_kv_cache_bytes(const opd_kv_cache *c) {
    return 2 * (size_t)c->L * c->B * c->cap * c->kv_dim * sizeof(float);
}

int opd_decode_scratch_init(opd_decode_scratch *s, const opd_config *cfg,
                            int B, int cap) {
    memset(s, 0, sizeof *s);
    if (B < 1 || cap < 1)
        return opd_set_error("opd_decode_scratch_init: batch %d and capacity %d must be >= 1", B, cap);
    size_t C = cfg->d_model, NH = cfg->n_heads, hd = C / NH, F = cfg->d_ff;
    size_t qd = NH * hd, kvd = cfg->n_kv_heads * hd;
    s->B = B;
    s->cap = cap;
    s->x = opd_malloc(B * C * sizeof(float));
    s->xn = opd_malloc(B * C * sizeof(float));
    s->q = opd_malloc(B * qd * sizeof(float));
    s->k = opd_malloc(B * kvd * sizeof(float));
    s->v = opd_malloc(B * kvd * sizeof(float));
    s->atty = opd_malloc(B * qd * sizeof(float));
    s->tmp = opd_malloc(B * C * sizeof(float));
    s->gate = opd_malloc(B * F * sizeof(float));
    s->up = opd_malloc(B * F * sizeof(float));
    s->att = opd_malloc(B * NH * (size_t)cap * sizeof(float));
    s->rstd = opd_malloc(B * sizeof(float));
    s->pos = opd_malloc(B * sizeof(int));
    return 0;
}

void opd_decode_scratch_free(opd_decode_scratch *s) {
    float *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->atty, s->tmp, s->gate,
                     s->up, s->att, s->rstd};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

/* tokens (B) at position t; the cache holds positions 0..t-1 of every
 * sequence (positions < pad[b] are padding and never read by real tokens).
 * logits (B, V). The caller guarantees t < c->cap and B <= c->B, s->B. */
void opd_model_decode_step(const opd_model *m, opd_kv_cache *c,
                           opd_decode_scratch *s, const int *tokens,
                           const int *pad, int t, float *logits) {
    const opd_config *cfg = &m->cfg;
    const opd_params *p = &m->params;
    int B = c->B, C = cfg->d_model, L = cfg->n_layers, V = cfg->vocab_size;
    int NH = cfg->n_heads, NKV = cfg->n_kv_heads, hd = C / NH, F = cfg->d_ff;
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV, cap = c->cap;
    float eps = cfg->rms_eps, scale = 1.0f / sqrtf((float)hd);

    /* a real token's RoPE position counts from its first real token; a pad
     * position's value is irrelevant (its output is never used) */
    for (int b = 0; b < B; b++) {
        int pb = pad ? pad[b] : 0;
        s->pos[b] = t >= pb ? t - pb : 0;
    }

    encoder_forward(s->x, tokens, p->wte, B, C);               /* x (B, C) */
    for (int l = 0; l < L; l++) {
        /* attention: q, k, v (B, qd | kvd) from n1(x) */
        rmsnorm_forward(s->xn, s->rstd, s->x, p->ln1_w + (size_t)l * C, B, C, eps);
        matmul_forward(s->q, s->xn, p->wq + (size_t)l * qd * C,
                       p->bq ? p->bq + (size_t)l * qd : NULL, B, C, qd);
        matmul_forward(s->k, s->xn, p->wk + (size_t)l * kvd * C,
                       p->bk ? p->bk + (size_t)l * kvd : NULL, B, C, kvd);
        matmul_forward(s->v, s->xn, p->wv + (size_t)l * kvd * C,
                       p->bv ? p->bv + (size_t)l * kvd : NULL, B, C, kvd);
        rope_forward(s->q, s->pos, B, NH, hd, cfg->rope_theta);
        rope_forward(s->k, s->pos, B, NKV, hd, cfg->rope_theta);

        /* this layer's cache (B, cap, kvd); write position t */
        float *kc = c->k + (size_t)l * c->B * cap * kvd;
        float *vc = c->v + (size_t)l * c->B * cap * kvd;
        for (int b = 0; b < B; b++) {
            memcpy(kc + ((size_t)b * cap + t) * kvd, s->k + (size_t)b * kvd, kvd * sizeof(float));
            memcpy(vc + ((size_t)b * cap + t) * kvd, s->v + (size_t)b * kvd, kvd * sizeof(float));
        }

        /* each (sequence, query head) attends over cache positions
         * pad[b]..t; a pad position attends to itself only, as in the full
         * forward, so it stays finite. Every (b, h) is independent. */
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                int pb = pad ? pad[b] : 0;
                int j0 = t >= pb ? pb : t;
                const float *qh = s->q + (size_t)b * qd + h * hd;
                const float *kb = kc + (size_t)b * cap * kvd + (h / group) * hd;
                const float *vb = vc + (size_t)b * cap * kvd + (h / group) * hd;
                float *att = s->att + ((size_t)b * NH + h) * cap;
                float maxv = -INFINITY;
                for (int j = j0; j <= t; j++) {
                    const float *kj = kb + (size_t)j * kvd;
                    float dot = 0.0f;
                    for (int i = 0; i < hd; i++) dot += qh[i] * kj[i];
                    att[j] = dot * scale;
                    if (att[j] > maxv) maxv = att[j];
                }
                float sum = 0.0f;
                for (int j = j0; j <= t; j++) {
                    att[j] = expf(att[j] - maxv);
                    sum += att[j];
                }
                float inv = 1.0f / sum;
                float *out = s->atty + (size_t)b * qd + h * hd;
                for (int i = 0; i < hd; i++) out[i] = 0.0f;
                for (int j = j0; j <= t; j++) {
                    const float *vj = vb + (size_t)j * kvd;
                    float a = att[j] * inv;
                    for (int i = 0; i < hd; i++) out[i] += a * vj[i];
                }
            }
        }

        /* h = x + Wo atty */
        matmul_forward(s->tmp, s->atty, p->wo + (size_t)l * C * qd, NULL, B, qd, C);
        for (size_t i = 0; i < (size_t)B * C; i++) s->x[i] += s->tmp[i];

        /* out = h + Wdown (silu(Wgate n2(h)) * Wup n2(h)) */
        rmsnorm_forward(s->xn, s->rstd, s->x, p->ln2_w + (size_t)l * C, B, C, eps);
        matmul_forward(s->gate, s->xn, p->w_gate + (size_t)l * F * C, NULL, B, C, F);
        matmul_forward(s->up, s->xn, p->w_up + (size_t)l * F * C, NULL, B, C, F);
        swiglu_forward(s->gate, s->gate, s->up, B, F);   /* elementwise, in place */
        matmul_forward(s->tmp, s->gate, p->w_down + (size_t)l * C * F, NULL, B, F, C);
        for (size_t i = 0; i < (size_t)B * C; i++) s->x[i] += s->tmp[i];
    }
    rmsnorm_forward(s->xn, s->rstd, s->x, p->lnf_w, B, C, eps);
    matmul_forward(logits, s->xn, p->lm_head, NULL, B, C, V);  /* (B, V) */
}
