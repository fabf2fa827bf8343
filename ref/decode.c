/* decode.c — the KV cache and the one-token decode step (llama2.c's
 * forward()): each new token costs one token of matmuls and O(t) attention
 * over the cached keys and values, never a re-run of the prefix.
 *
 * The cache is sized by S = prompt + horizon H_k, not by max_seq_len: with
 * a truncated (TOPD) or progressive (POPD) horizon the memory saving is real. */
#include "opd.h"
#include "block.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int opd_kv_cache_init(opd_kv_cache *c, const opd_config *cfg, int B, int S) {
    memset(c, 0, sizeof *c);
    if (B < 1) return opd_set_error("opd_kv_cache_init: batch %d < 1", B);
    if (S < 1 || S > cfg->max_seq_len)
        return opd_set_error("opd_kv_cache_init: capacity %d (prompt + horizon) not in [1, max_seq_len %d]",
                             S, cfg->max_seq_len);
    int hd = cfg->d_model / cfg->n_heads;
    c->L = cfg->n_layers;
    c->B = B;
    c->S = S;
    c->kv_dim = cfg->n_kv_heads * hd;
    size_t n = (size_t)c->L * B * S * c->kv_dim;
    c->k = opd_calloc(n, sizeof(float));
    c->v = opd_calloc(n, sizeof(float));
    return 0;
}

void opd_kv_cache_free(opd_kv_cache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

/* Layer l's keys are stored (B, kvd, S), transposed, so a query's scores
 * run over contiguous positions; values (B, S, kvd). The key writes are
 * strided (one cache line per element): worth splitting over threads even
 * for one position. */
void opd_kv_cache_write(opd_kv_cache *c, int l, const float *k, const float *v, int n, int t0) {
    const int B = c->B, kvd = c->kv_dim, S = c->S;
    float *kc = c->k + (size_t)l * B * S * kvd;
    float *vc = c->v + (size_t)l * B * S * kvd;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < n; i++) {
            const float *kr = k + ((size_t)b * n + i) * kvd;
            for (int d = 0; d < kvd; d++) kc[((size_t)b * kvd + d) * S + t0 + i] = kr[d];
        }
        memcpy(vc + ((size_t)b * S + t0) * kvd, v + (size_t)b * n * kvd,
               (size_t)n * kvd * sizeof(float));
    }
}

size_t opd_kv_cache_bytes(const opd_kv_cache *c) {
    return 2 * (size_t)c->L * c->B * c->S * c->kv_dim * sizeof(float);
}

int opd_decode_scratch_init(opd_decode_scratch *s, const opd_config *cfg,
                            int B, int S) {
    memset(s, 0, sizeof *s);
    if (B < 1 || S < 1)
        return opd_set_error("opd_decode_scratch_init: batch %d and capacity %d must be >= 1", B, S);
    size_t C = cfg->d_model, NH = cfg->n_heads, hd = C / NH, F = cfg->d_ff;
    size_t qd = NH * hd, kvd = cfg->n_kv_heads * hd;
    s->B = B;
    s->S = S;
    s->x = opd_malloc(B * C * sizeof(float));
    s->xn = opd_malloc(B * C * sizeof(float));
    s->q = opd_malloc(B * qd * sizeof(float));
    s->k = opd_malloc(B * kvd * sizeof(float));
    s->v = opd_malloc(B * kvd * sizeof(float));
    s->atty = opd_malloc(B * qd * sizeof(float));
    s->tmp = opd_malloc(B * C * sizeof(float));
    s->gate = opd_malloc(B * F * sizeof(float));
    s->up = opd_malloc(B * F * sizeof(float));
    s->att = opd_malloc(B * NH * (size_t)S * sizeof(float));
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

/* The decode step over n consecutive positions t0..t0+n-1 of every sequence
 * at once: tokens (B, n), scratch rows ordered (B, n). n = 1 is the decode
 * step; n = P is the prompt prefill, whose matmuls then see B*P rows at once
 * instead of P calls of B rows (the weights are read once, not P times).
 * Every row attends over cache positions pad[b]..t0+i, so the cache holds the
 * same keys and values either way. logits (B, V) of the last position only:
 * nothing else of a prefill is sampled from. */
static void decode_positions(const opd_model *m, opd_kv_cache *c,
                             opd_decode_scratch *s, const int *tokens,
                             const int *pad, int t0, int n, float *logits) {
    const opd_config *cfg = &m->cfg;
    const opd_params *p = &m->params;
    int B = c->B, C = cfg->d_model, L = cfg->n_layers, V = cfg->vocab_size;
    int NH = cfg->n_heads, NKV = cfg->n_kv_heads, hd = C / NH;
    int kvd = NKV * hd, S = c->S;
    int N = B * n;   /* rows */
    float eps = cfg->rms_eps;

    /* a real token's RoPE position counts from its first real token; a pad
     * position's value is irrelevant (its output is never used) */
    for (int b = 0; b < B; b++) {
        int pb = pad ? pad[b] : 0;
        for (int i = 0; i < n; i++) {
            int t = t0 + i;
            s->pos[b * n + i] = t >= pb ? t - pb : 0;
        }
    }

    encoder_forward(s->x, tokens, p->wte, N, C);               /* x (N, C) */
    /* the forward's block wiring (ref/block.c) on the scratch rows: x is the
     * residual stream, updated in place; xn holds n1(x), then n2(h) */
    opd_block_bufs o = {
        .ln1 = s->xn, .ln1_rstd = s->rstd, .q = s->q, .k = s->k, .v = s->v,
        .atty = s->atty, .res_mid = s->tmp, .ln2 = s->xn, .ln2_rstd = s->rstd,
        .gate = s->gate, .up = s->up, .swiglu = s->gate, .res_out = s->x};
    for (int l = 0; l < L; l++) {
        block_attention_inputs(m, l, s->x, s->pos, N, &o);
        /* write positions t0..t0+n-1 first: row i attends over the rows before it */
        opd_kv_cache_write(c, l, s->k, s->v, n, t0);
        attention_decode_forward(s->atty, s->att, s->q, c->k + (size_t)l * c->B * S * kvd,
                                 c->v + (size_t)l * c->B * S * kvd, pad, B, n, t0, S,
                                 NH, NKV, hd);
        block_output(m, l, s->x, N, &o);
    }
    /* the last position of each sequence, moved to rows 0..B-1 (row b*n+n-1
     * lies at or after row b, so moving in order b = 0, 1, ... is safe) */
    for (int b = 0; n > 1 && b < B; b++)
        memmove(s->x + (size_t)b * C, s->x + ((size_t)b * n + n - 1) * C, C * sizeof(float));
    rmsnorm_forward(s->xn, s->rstd, s->x, p->lnf_w, B, C, eps);
    matmul_forward(logits, s->xn, p->lm_head, NULL, B, C, V);  /* (B, V) */
}

/* tokens (B) at position t; the cache holds positions 0..t-1 of every
 * sequence (positions < pad[b] are padding and never read by real tokens).
 * logits (B, V). The caller guarantees t < c->S and B <= c->B, s->B. */
void opd_model_decode_step(const opd_model *m, opd_kv_cache *c,
                           opd_decode_scratch *s, const int *tokens,
                           const int *pad, int t, float *logits) {
    decode_positions(m, c, s, tokens, pad, t, 1, logits);
}

int opd_model_prefill(const opd_model *m, opd_kv_cache *c, opd_decode_scratch *s,
                      const int *tokens, const int *pad, int n, float *logits) {
    if (n < 1 || n > c->S)
        return opd_set_error("opd_model_prefill: %d positions, the cache holds %d", n, c->S);
    if ((size_t)c->B * n > (size_t)s->B || s->S < c->S)
        return opd_set_error("opd_model_prefill: scratch for %d rows of %d positions, need %d x %d rows "
                             "and %d positions (opd_decode_scratch_init(s, cfg, B * n, S))",
                             s->B, s->S, c->B, n, c->S);
    decode_positions(m, c, s, tokens, pad, 0, n, logits);
    return 0;
}
