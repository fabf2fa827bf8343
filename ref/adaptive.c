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
