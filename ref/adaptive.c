/* adaptive.c — per-position statistics by bucket and the adaptive horizon
 * rule (see adaptive.h). */
#include "adaptive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int opd_position_stats_init(opd_position_stats *s, int T, int width) {
    memset(s, 0, sizeof *s);
    if (T < 1) return opd_set_error("position stats: T = %d must be >= 1", T);
    if (width < 1 || width > OPD_POSITION_BUCKET_MAX)
        return opd_set_error("position stats: bucket width %d out of range [1, %d]", width,
                             OPD_POSITION_BUCKET_MAX);
    s->T = T;
    s->width = width;
    s->nbuckets = (T + width - 1) / width;
    s->sum = opd_calloc((size_t)s->nbuckets, sizeof *s->sum);
    s->count = opd_calloc((size_t)s->nbuckets, sizeof *s->count);
    return 0;
}

void opd_position_stats_free(opd_position_stats *s) {
    free(s->sum);
    free(s->count);
    memset(s, 0, sizeof *s);
}

void opd_position_stats_reset(opd_position_stats *s) {
    memset(s->sum, 0, (size_t)s->nbuckets * sizeof *s->sum);
    memset(s->count, 0, (size_t)s->nbuckets * sizeof *s->count);
}

int opd_position_stats_add(opd_position_stats *s, const float *values, const float *mask,
                           int B, int H) {
    // values and mask are (B,H)
    if (B < 0 || H < 0 || H > s->T)
        return opd_set_error("position stats: shape B=%d H=%d (H must be <= T=%d)", B, H, s->T);
    size_t N = (size_t)B * (size_t)H;
    /* check everything first, so an error adds nothing */
    for (size_t i = 0; i < N; i++) {
        float m = mask ? mask[i] : 1.0f;
        if (!(m >= 0.0f) || isinf(m))
            return opd_set_error("position stats: mask[%zu] = %g is not a finite weight >= 0",
                                 i, (double)m);
        if (m != 0.0f && !isfinite(values[i]))
            return opd_set_error("position stats: value[%zu] = %g is not finite", i,
                                 (double)values[i]);
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < H; t++) {
            size_t i = (size_t)b * H + t;
            float m = mask ? mask[i] : 1.0f;
            if (m == 0.0f) continue;
            s->sum[t / s->width] += (double)m * values[i];
            s->count[t / s->width] += m;
        }
    return 0;
}

/* the k largest of x (V) in descending order, ties to the lower id: idx (k).
 * One pass, insertion into a sorted list of k (O(V) when the top is early,
 * O(V k) at worst): a later id must be strictly greater to move ahead, so
 * equal logits keep id order. NaN counts as -inf. */
static void topk_ids(const float *x, int V, int k, int *idx) {
    float val[OPD_OVERLAP_TOPK_MAX];
    int n = 0;
    for (int v = 0; v < V; v++) {
        float xv = isnan(x[v]) ? -INFINITY : x[v];
        if (n == k && !(xv > val[k - 1])) continue;
        int i = n < k ? n++ : k - 1;
        while (i > 0 && xv > val[i - 1]) { val[i] = val[i - 1]; idx[i] = idx[i - 1]; i--; }
        val[i] = xv;
        idx[i] = v;
    }
}

double opd_topk_overlap(const float *a, const float *b, int V, int k) {
    if (k > V) k = V;
    if (k > OPD_OVERLAP_TOPK_MAX) k = OPD_OVERLAP_TOPK_MAX;
    if (k < 1) return NAN;
    int ia[OPD_OVERLAP_TOPK_MAX], ib[OPD_OVERLAP_TOPK_MAX];
    topk_ids(a, V, k, ia);
    topk_ids(b, V, k, ib);
    int common = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) common += ia[i] == ib[j];
    return (double)common / k;
}

int opd_position_diag_init(opd_position_diag *d, int T, int width, int topk) {
    memset(d, 0, sizeof *d);
    if (topk < 1 || topk > OPD_OVERLAP_TOPK_MAX)
        return opd_set_error("position diagnostics: top-k %d out of range [1, %d]", topk,
                             OPD_OVERLAP_TOPK_MAX);
    if (opd_position_stats_init(&d->rkl, T, width) != 0) return -1;
    if (opd_position_stats_init(&d->overlap, T, width) != 0) {
        opd_position_stats_free(&d->rkl);
        return -1;
    }
    d->topk = topk;
    return 0;
}

void opd_position_diag_free(opd_position_diag *d) {
    opd_position_stats_free(&d->rkl);
    opd_position_stats_free(&d->overlap);
    memset(d, 0, sizeof *d);
}

void opd_position_diag_reset(opd_position_diag *d) {
    opd_position_stats_reset(&d->rkl);
    opd_position_stats_reset(&d->overlap);
}

int opd_position_overlap_add(opd_position_stats *overlap, const float *s_logits,
                             const float *t_logits, const float *mask, int B, int H, int V, int k) {
    // s_logits, t_logits are (B,H,V), mask is (B,H)
    const size_t N = (size_t)B * H;
    float *ov = opd_malloc((N ? N : 1) * sizeof *ov);
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)N; i++)
        ov[i] = mask && mask[i] == 0.0f ? 0.0f
              : (float)opd_topk_overlap(s_logits + (size_t)i * V, t_logits + (size_t)i * V, V, k);
    int rc = opd_position_stats_add(overlap, ov, mask, B, H);
    free(ov);
    return rc;
}

int opd_position_diag_add(opd_position_diag *d, const float *s_logits, const float *t_logits,
                          const float *rkl, const float *mask, int B, int H, int V) {
    if (opd_position_stats_add(&d->rkl, rkl, mask, B, H) != 0) return -1;
    return opd_position_overlap_add(&d->overlap, s_logits, t_logits, mask, B, H, V, d->topk);
}

double opd_position_stats_mean(const opd_position_stats *s, int j) {
    if (j < 0 || j >= s->nbuckets || s->count[j] == 0.0) return NAN;
    return s->sum[j] / s->count[j];
}

void opd_adaptive_config_default(opd_adaptive_config *c, int T) {
    c->T = T;
    c->H0 = T / 8 >= 1 ? T / 8 : 1;
    c->dH = c->H0;
    c->threshold = 0.5;
    c->sense = OPD_RELIABLE_ABOVE;
    c->min_count = 8.0;
}

int opd_adaptive_config_validate(const opd_adaptive_config *c) {
    if (c->T < 1) return opd_set_error("adaptive: T = %d must be >= 1", c->T);
    if (c->H0 < 1 || c->H0 > c->T)
        return opd_set_error("adaptive: H0 = %d out of range [1, T=%d]", c->H0, c->T);
    if (c->dH < 1) return opd_set_error("adaptive: dH = %d must be >= 1", c->dH);
    if (!isfinite(c->threshold))
        return opd_set_error("adaptive: threshold %g is not finite", c->threshold);
    if (c->sense != OPD_RELIABLE_ABOVE && c->sense != OPD_RELIABLE_BELOW)
        return opd_set_error("adaptive: unknown reliability sense %d", (int)c->sense);
    if (!(c->min_count > 0.0) || isinf(c->min_count))
        return opd_set_error("adaptive: min_count %g must be a finite number > 0", c->min_count);
    return 0;
}

static int bucket_reliable(const opd_adaptive_config *c, const opd_position_stats *p, int j) {
    if (p->count[j] < c->min_count) return 0;  /* unmeasured: no licence to extend */
    double m = p->sum[j] / p->count[j];
    return c->sense == OPD_RELIABLE_ABOVE ? m >= c->threshold : m <= c->threshold;
}

int opd_adaptive_next_horizon(const opd_adaptive_config *c, const opd_position_stats *profile,
                              int H, int *stop) {
    if (stop) *stop = -1;
    if (opd_adaptive_config_validate(c) != 0) return -1;
    if (profile->T != c->T)
        return opd_set_error("adaptive: the profile's T = %d is not the config's T = %d",
                             profile->T, c->T);
    if (H < c->H0) H = c->H0;
    if (H > c->T) H = c->T;
    int end = c->dH > c->T - H ? c->T : H + c->dH;  /* the window [H, end) */
    int w = profile->width;
    for (int j = H / w; j * w < end; j++)
        if (!bucket_reliable(c, profile, j)) {
            if (stop) *stop = j;
            return j * w > H ? j * w : H;
        }
    return end;
}
