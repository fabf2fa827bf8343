/* sample.c — the token sampler: greedy, temperature, top-k, top-p.
 *
 * The random draw is a pure function of (seed, step, seq, pos) through
 * Philox, so the sampled token does not depend on thread count, on the
 * sequence's place in the batch, or on the device. */
#include "opd.h"

#include <math.h>
#include <stdlib.h>

void opd_sampler_config_default(opd_sampler_config *s) {
    s->temperature = 1.0f;
    s->top_k = 0;
    s->top_p = 1.0f;
}

/* One candidate token in the sort: its (tempered, unnormalised) weight and
 * its index. The index is kept as a float so that the pair lives in the
 * caller's float scratch without type punning; vocabularies are capped at
 * 2^20 by opd_config_validate, well inside float's exact integers (2^24). */
typedef struct { float w, idx; } candidate;

/* Probability descending, ties by index ascending: a total order, so the
 * (unstable) qsort gives the same sequence everywhere. */
static int candidate_cmp(const void *pa, const void *pb) {
    const candidate *a = pa, *b = pb;
    if (a->w > b->w) return -1;
    if (a->w < b->w) return 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* scratch (2*V floats) is used as V candidate pairs (weight, index). */
int opd_sample_token(const float *logits, int V, const opd_sampler_config *s,
                     uint64_t seed, uint32_t step, uint32_t seq, uint32_t pos,
                     float *logprob, float *scratch) {
    if (V < 1) return opd_set_error("opd_sample_token: vocab size %d < 1", V);
    if (!(s->temperature >= 0.0f) || !isfinite(s->temperature))
        return opd_set_error("opd_sample_token: temperature %g must be finite and >= 0", s->temperature);
    if (s->top_k < 0) return opd_set_error("opd_sample_token: top_k %d < 0", s->top_k);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return opd_set_error("opd_sample_token: top_p %g not in (0, 1]", s->top_p);

    /* argmax, ties to the lowest index; also the shift for the softmaxes */
    int argmax = 0;
    float maxv = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > maxv) { maxv = logits[i]; argmax = i; }
    if (!isfinite(maxv))
        return opd_set_error("opd_sample_token: non-finite logits (max %g)", maxv);

    int token;
    if (s->temperature == 0.0f) {
        token = argmax;
    } else {
        candidate *cand = (candidate *)scratch;
        for (int i = 0; i < V; i++) {
            /* shifted by the max: every weight <= 1, the largest exactly 1
             * (a division, not a multiply by 1/temp: a tiny temperature
             * would make that inf, and 0 * inf is NaN) */
            cand[i].w = opd_expf((logits[i] - maxv) / s->temperature);
            cand[i].idx = (float)i;
        }
        qsort(cand, V, sizeof *cand, candidate_cmp);

        int n = V;
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        /* top-p acts on the distribution after top-k (renormalised over the
         * kept tokens), as in Hugging Face's logits warpers. The mass is
         * summed in double in the sorted order, so it is reproducible. */
        double mass = 0.0;
        for (int i = 0; i < n; i++) mass += cand[i].w;
        if (s->top_p < 1.0f) {
            double target = (double)s->top_p * mass, cum = 0.0;
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += cand[i].w;
                if (cum >= target) { keep = i + 1; break; }
            }
            n = keep;
            mass = 0.0;
            for (int i = 0; i < n; i++) mass += cand[i].w;
        }

        /* invert the CDF of the kept, renormalised distribution */
        double u = opd_uniform(seed, step, seq, pos, 0) * mass, cum = 0.0;
        int k = n - 1;   /* if rounding leaves u at the very top */
        for (int i = 0; i < n; i++) {
            cum += cand[i].w;
            if (u < cum) { k = i; break; }
        }
        token = (int)cand[k].idx;
    }

    if (logprob) {
        /* the model's own probability: temperature 1, no filtering */
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += opd_exp((double)logits[i] - maxv);
        *logprob = (float)((double)logits[token] - maxv - opd_log(sum));
    }
    return token;
}
