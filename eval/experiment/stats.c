/* stats.c — interval statistics over seeds (see stats.h for the method). */
#include "stats.h"

#include "opd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

double opd_stats_mean(const double *x, int n) {
    if (n < 1) return NAN;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    return s / n;
}

static int check_samples(const char *what, const double *x, int n) {
    if (n < 1) return opd_set_error("%s: no samples (n = %d)", what, n);
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return opd_set_error("%s: sample %d is %g, not a finite number", what, i, x[i]);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Q(q) of sorted m (R): linear interpolation at h = q (R - 1) */
static double percentile_sorted(const double *m, int R, double q) {
    double h = q * (R - 1);
    int i = (int)floor(h);
    if (i >= R - 1) return m[R - 1];
    return m[i] + (h - i) * (m[i + 1] - m[i]);
}

/* the bootstrap of stats.h on samples already checked */
static void bootstrap(const double *x, int n, int R, uint64_t seed, opd_interval *out) {
    double *m = malloc((size_t)R * sizeof *m);
    if (!m) { fprintf(stderr, "opd: out of memory (%d resamples)\n", R); abort(); }
    for (int r = 0; r < R; r++) {
        double s = 0.0;
        for (int j = 0; j < n; j++) {
            float u = opd_uniform(seed, OPD_BOOTSTRAP_STREAM, (uint32_t)r,
                                  (uint32_t)(j / 4), j % 4);
            int k = (int)((double)u * n);
            s += x[k < n ? k : n - 1];
        }
        m[r] = s / n;  /* the same sum as opd_stats_mean: constant samples give exactly it */
    }
    qsort(m, (size_t)R, sizeof *m, cmp_double);
    double tail = (1.0 - OPD_BOOTSTRAP_LEVEL) / 2.0;
    out->mean = opd_stats_mean(x, n);
    out->lo = percentile_sorted(m, R, tail);
    out->hi = percentile_sorted(m, R, 1.0 - tail);
    out->n = n;
    out->resamples = R;
    free(m);
}

int opd_bootstrap_mean(const double *x, int n, int resamples, uint64_t seed,
                       opd_interval *out) {
    if (check_samples("bootstrap", x, n) != 0) return -1;
    if (resamples < 1) return opd_set_error("bootstrap: resamples = %d must be >= 1", resamples);
    bootstrap(x, n, resamples, seed, out);
    return 0;
}

int opd_bootstrap_paired(const double *method, const double *baseline, int n,
                         int resamples, uint64_t seed, opd_interval *out) {
    if (check_samples("paired bootstrap (method)", method, n) != 0) return -1;
    if (check_samples("paired bootstrap (baseline)", baseline, n) != 0) return -1;
    if (resamples < 1)
        return opd_set_error("paired bootstrap: resamples = %d must be >= 1", resamples);
    double *d = malloc((size_t)n * sizeof *d);
    if (!d) { fprintf(stderr, "opd: out of memory (%d samples)\n", n); abort(); }
    for (int i = 0; i < n; i++) d[i] = method[i] - baseline[i];
    bootstrap(d, n, resamples, seed, out);
    free(d);
    return 0;
}

double opd_pass_at_1_se(double p, int n) {
    if (n < 1 || !(p >= 0.0 && p <= 1.0)) return NAN;
    return sqrt(p * (1.0 - p) / n);
}

double opd_time_to_target(const double *x, const double *y, int n, double target,
                          int interpolate) {
    for (int i = 0; i < n; i++) {
        if (!(y[i] >= target)) continue;
        /* y[i-1] < target here unless it was NaN, which leaves no line to follow */
        if (!interpolate || i == 0 || isnan(y[i - 1])) return x[i];
        return x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]);
    }
    return NAN;
}
