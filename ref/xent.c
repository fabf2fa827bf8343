/* xent.c — log-softmax and next-token cross-entropy. */
#include "opd.h"

#include <math.h>
#include <stdlib.h>

/* log softmax(x)_v = x_v - log sum_u exp(x_u). The sum is shifted by the
 * max (log sum exp(x) = m + log sum exp(x - m)): every exp is then <= 1, so
 * it cannot overflow for large logits, and the largest term is exactly 1, so
 * the sum cannot underflow to 0 (which would give -inf) for very negative
 * ones. The sum is accumulated in double: V terms of up to 1 each. */
float opd_log_softmax(float *out, const float *logits, int V) {
    float m = -INFINITY;
    for (int v = 0; v < V; v++) if (logits[v] > m) m = logits[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += opd_exp((double)logits[v] - m);
    float lse = (float)(m + opd_log(sum));
    if (out)
        for (int v = 0; v < V; v++) out[v] = logits[v] - lse;
    return lse;
}

float opd_cross_entropy(const float *logits, const int *targets,
                        const float *mask, int B, int S, int V, float *dlogits) {
    return (float)opd_cross_entropy_norm(logits, targets, mask, B, S, V, dlogits, -1.0);
}

double opd_cross_entropy_norm(const float *logits, const int *targets, const float *mask,
                              int B, int S, int V, float *dlogits, double count) {
    // logits is (B,S,V), targets and mask are (B,S), dlogits is (B,S,V)
    int N = B * S;
    if (count < 0.0) {   // this batch's own token count
        count = 0.0;
        for (int n = 0; n < N; n++) count += mask ? mask[n] : 1.0f;
    }
    double *row_loss = opd_malloc((size_t)N * sizeof(double));
    // token mean: each masked position weighs 1 / count
    float inv = count > 0.0 ? (float)(1.0 / count) : 0.0f;
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float w = mask ? mask[n] : 1.0f;
        float lse = opd_log_softmax(NULL, x, V);
        row_loss[n] = w != 0.0f ? (double)w * ((double)lse - x[targets[n]]) : 0.0;
        if (dlogits) {
            // d/dx_v of -log softmax(x)_y = softmax(x)_v - [v == y]
            float *d = dlogits + (size_t)n * V;
            float g = w * inv;
            opd_vexp_sub(d, x, lse, (size_t)V);
            for (int v = 0; v < V; v++) d[v] = g * d[v];
            if (w != 0.0f) d[targets[n]] -= g;
        }
    }
    // summed by one thread in row order: thread-count independent
    double loss = 0.0;
    for (int n = 0; n < N; n++) loss += row_loss[n];
    free(row_loss);
    return count > 0.0 ? loss / count : 0.0;
}
