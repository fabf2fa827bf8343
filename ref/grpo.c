/* grpo.c — group-normalised advantages and the policy-gradient token loss
 * (see grpo.h). */
#include "grpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int opd_grpo_advantages(const float *rewards, int P, int G, float eps, float *adv) {
    if (P < 0 || G < 1) return opd_set_error("grpo: bad group shape P=%d G=%d", P, G);
    size_t N = (size_t)P * (size_t)G;
    memset(adv, 0, N * sizeof *adv);
    if (!(eps >= 0.0f) || isinf(eps)) return opd_set_error("grpo: eps = %g must be >= 0", (double)eps);
    for (size_t i = 0; i < N; i++)
        if (!isfinite(rewards[i]))
            return opd_set_error("grpo: reward[%zu] = %g is not finite", i, (double)rewards[i]);
    if (G == 1) return 0;  /* no group to compare with */
    for (int p = 0; p < P; p++) {
        const float *r = rewards + (size_t)p * G;
        float *a = adv + (size_t)p * G;
        int equal = 1;
        for (int g = 1; g < G; g++) equal &= r[g] == r[0];
        /* explicit: the mean of equal floats need not round back to them */
        if (equal) continue;
        double mean = 0.0;
        for (int g = 0; g < G; g++) mean += r[g];
        mean /= G;
        double var = 0.0;
        for (int g = 0; g < G; g++) var += (r[g] - mean) * (r[g] - mean);
        double denom = sqrt(var / (G - 1)) + eps;
        for (int g = 0; g < G; g++) a[g] = (float)((r[g] - mean) / denom);
    }
    return 0;
}

static int pg_check(const int *y, const float *mask, const float *adv, int B, int H, int V) {
    if (B < 0 || H < 0 || V < 1) return opd_set_error("pg loss: bad shape B=%d H=%d V=%d", B, H, V);
    for (int b = 0; b < B; b++)
        if (!isfinite(adv[b])) return opd_set_error("pg loss: adv[%d] = %g is not finite", b, (double)adv[b]);
    size_t N = (size_t)B * (size_t)H;
    for (size_t i = 0; i < N; i++) {
        if (!(mask[i] >= 0.0f) || isinf(mask[i]))
            return opd_set_error("pg loss: mask[%zu] = %g is not a finite weight >= 0", i, (double)mask[i]);
        if (mask[i] != 0.0f && (y[i] < 0 || y[i] >= V))
            return opd_set_error("pg loss: token y[%zu] = %d outside the vocabulary [0, %d)", i, y[i], V);
    }
    return 0;
}

float opd_pg_loss(const float *logits, const int *y, const float *mask,
                  const float *adv, int B, int H, int V, float *dlogits) {
    // logits is (B,H,V), y and mask are (B,H), adv is (B), dlogits is (B,H,V)
    size_t N = (size_t)(B > 0 ? B : 0) * (size_t)(H > 0 ? H : 0);
    if (dlogits && V > 0) memset(dlogits, 0, N * (size_t)V * sizeof *dlogits);
    if (pg_check(y, mask, adv, B, H, V) != 0) return NAN;
    double M = 0.0;
    for (size_t i = 0; i < N; i++) M += mask[i];
    if (M == 0.0) return 0.0f;
    double *row = opd_calloc(N, sizeof *row);  /* m A log p(y) of each row */
    /* a thread team costs more than a few short rows (as losses.c) */
    const int parallel = (double)N * V >= 32768.0;
    #pragma omp parallel for schedule(static) if (parallel)
    for (long li = 0; li < (long)N; li++) {
        size_t i = (size_t)li;
        if (mask[i] == 0.0f) continue;
        const float *z = logits + i * V;
        double lse = opd_log_softmax(NULL, z, V);
        double coef = (double)mask[i] * adv[i / (size_t)H];
        row[i] = coef * ((double)z[y[i]] - lse);
        if (!dlogits) continue;
        /* d (-coef log p_y) / d z_v / M = -coef (1[v = y] - p_v) / M */
        float *d = dlogits + i * V;
        double s = coef / M;
        for (int v = 0; v < V; v++) d[v] = (float)(s * opd_exp((double)z[v] - lse));
        d[y[i]] = (float)(s * (opd_exp((double)z[y[i]] - lse) - 1.0));
    }
    /* one thread, row order: the same sum for any thread count */
    double loss = 0.0;
    for (size_t i = 0; i < N; i++) loss += row[i];
    free(row);
    return (float)(-loss / M);
}
