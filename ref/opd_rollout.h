/* opd_rollout.h — sampling: the RNG, the sampler, the KV cache and decode step, rollouts.
 * Part of the public API; include "opd.h", which includes every part in
 * order (a part relies on the ones before it). */
#ifndef OPD_API_ROLLOUT_H
#define OPD_API_ROLLOUT_H

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------- RNG */
/* Philox4x32-10 (Salmon et al. 2011), the counter-based generator used for
 * every random draw, so that a draw depends only on its key, not on thread
 * count, batch order or device. */
void opd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* Uniform in [0, 1) from the draw keyed by (seed, a, b, c); word selects
 * which of the 4 outputs (0..3). 24-bit mantissa-exact. */
float opd_uniform(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, int word);
/* Standard normal via Box-Muller on the same keyed draw. */
float opd_normal(uint64_t seed, uint32_t a, uint32_t b, uint32_t c);

/* --------------------------------------------------------------- sampling */
typedef struct {
    float temperature;  /* 0: greedy */
    int top_k;          /* 0: off */
    float top_p;        /* 1: off */
} opd_sampler_config;

void opd_sampler_config_default(opd_sampler_config *s);
/* Sample one token from logits (V). The uniform draw is keyed by
 * (seed, step, seq, pos). *logprob receives log softmax(logits)[token] at
 * temperature 1, unfiltered: the model's own probability, which is what the
 * importance weight of the sampled reverse-KL loss compares against.
 * scratch holds 2*V floats. */
int opd_sample_token(const float *logits, int V, const opd_sampler_config *s,
                     uint64_t seed, uint32_t step, uint32_t seq, uint32_t pos,
                     float *logprob, float *scratch);

/* --------------------------------------------------------- KV cache, decode */
typedef struct {
    int L, B, S, kv_dim;     /* S: positions held, P + H_k (a rollout's sequence) */
    float *k;                /* (L, B, NKV*hd, S) keys transposed: a query's
                                scores run over contiguous positions */
    float *v;                /* (L, B, S, NKV*hd) */
} opd_kv_cache;

int opd_kv_cache_init(opd_kv_cache *c, const opd_config *cfg, int B, int S);
void opd_kv_cache_free(opd_kv_cache *c);
/* Positions t0..t0+n-1 of every sequence of layer l: k, v (B, n, NKV*hd). */
void opd_kv_cache_write(opd_kv_cache *c, int l, const float *k, const float *v, int n, int t0);
size_t opd_kv_cache_bytes(const opd_kv_cache *c);

/* Per-call scratch of the decode step: B rows (one token per sequence), or
 * B * n rows for a prefill of n positions of B sequences. */
typedef struct {
    int B, S;                /* B: rows; S: positions of the cache it serves */
    float *x, *xn, *q, *k, *v, *atty, *tmp, *gate, *up, *att; /* sized for B rows */
    float *rstd;             /* (B) RMSNorm statistics, unused by decode */
    int *pos;                /* (B) RoPE position of each sequence's token */
} opd_decode_scratch;
int opd_decode_scratch_init(opd_decode_scratch *s, const opd_config *cfg,
                            int B, int S);
void opd_decode_scratch_free(opd_decode_scratch *s);

/* Decode one position t for every sequence: tokens (B) are the tokens at
 * position t, written into the cache, attention over cache positions
 * pad[b]..t. logits (B, V). Costs O(t) attention, one token of matmuls. */
void opd_model_decode_step(const opd_model *m, opd_kv_cache *c,
                           opd_decode_scratch *s, const int *tokens,
                           const int *pad, int t, float *logits);
/* Prefill: positions 0..n-1 of every sequence in one pass, tokens (B, n)
 * (B = c->B): the cache ends as after n decode steps (equal up to rounding:
 * the matmuls see B*n rows at once), logits (B, V) of position n-1. s needs
 * B * n rows (opd_decode_scratch_init(s, cfg, B * n, S)). */
int opd_model_prefill(const opd_model *m, opd_kv_cache *c, opd_decode_scratch *s,
                      const int *tokens, const int *pad, int n, float *logits);

/* ---------------------------------------------------------------- rollouts */
typedef struct {
    int B, P, H;      /* batch, padded prompt length, horizon H_k */
    int *tokens;      /* (B, P + H) left-padded prompt, then generated tokens
                         (pad_id after a sequence ends)                      */
    int *pad;         /* (B) leading pad tokens of each prompt               */
    float *mask;      /* (B, H) 1 for tokens in the loss (EOS kept)          */
    float *logprobs;  /* (B, H) sampler log-probs (temperature 1)            */
    int *length;      /* (B) generated tokens, EOS included                  */
    int *truncated;   /* (B) 1 if cut by the horizon before EOS              */
    double peak_cache_bytes;
} opd_rollout;

typedef struct {
    int eos_id, pad_id;   /* eos_id < 0: no EOS, every rollout runs to H */
    opd_sampler_config sampler;
    uint64_t seed;
    uint32_t step;        /* training step k, part of the RNG key */
} opd_rollout_config;

/* prompts: (B, P) left-padded, pad (B). seq_ids (B): stable ids used in the RNG
 * key so a sequence's tokens don't depend on its place in the batch.
 * Generates at most H tokens per sequence; the KV cache holds P + H. */
int opd_rollout_sample(const opd_model *student, const int *prompts,
                       const int *pad, const uint32_t *seq_ids, int B, int P,
                       int H, const opd_rollout_config *rc, opd_rollout *out);
void opd_rollout_free(opd_rollout *r);
/* The input checks of opd_rollout_sample alone (shapes, token ids, sampler):
 * 0, or -1 with the message set. */
int opd_rollout_check(const opd_config *cfg, const int *prompts, const int *pad,
                      int B, int P, int H, const opd_rollout_config *rc);

#ifdef __cplusplus
}
#endif
#endif /* OPD_API_ROLLOUT_H */
