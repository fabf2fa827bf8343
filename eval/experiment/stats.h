/* stats.h — interval statistics for experiments over seeds (issue 18).
 *
 * What `opd experiment` reports per method is built from these: the mean of
 * a metric over seeds with a 95% bootstrap interval, the paired difference
 * against a baseline on the same seeds with its interval, the standard error
 * of one pass@1 evaluation, and the time a run takes to reach a target
 * accuracy. Plain C over double arrays; the only outside dependency is
 * opd_uniform (ref/philox.c), so an interval is the same on every machine.
 *
 * The bootstrap (opd_bootstrap_mean)
 * ----------------------------------
 * Percentile bootstrap of the mean, 95% (OPD_BOOTSTRAP_LEVEL):
 *   for r = 0 .. R-1 (R = resamples):
 *     draw n indices with replacement, j-th index floor(u * n) where
 *       u = opd_uniform(seed, OPD_BOOTSTRAP_STREAM, r, j / 4, j % 4);
 *     m_r = mean of the drawn samples (summed in double in draw order);
 *   sort m_0 .. m_{R-1} ascending;
 *   lo = Q(0.025), hi = Q(0.975), with Q(q) the linear interpolation between
 *   the order statistics at h = q (R - 1) (numpy's default "linear"
 *   percentile): Q(q) = m_(floor h) + (h - floor h)(m_(floor h + 1) - m_(floor h)).
 * So the interval is a pure function of (samples, R, seed): the same resamples
 * on every run and thread count. R = 10000 is a good default: the Monte
 * Carlo error of each end is then about 1% of the interval's width (another
 * RNG seed moves the ends by that much).
 * With few seeds (n = 5) the percentile interval is known to be too narrow
 * (it ignores the n/(n-1) variance factor); the report should say n.
 *
 * Paired comparison (opd_bootstrap_paired): d_i = method_i - baseline_i on
 * the same seed i, then the bootstrap above on d. Pairing removes the
 * variation the two methods share through a seed (the same warm start and
 * rollout keys), which is usually most of it.
 *
 * Inputs must be finite: a NaN (a run that never reached its target, say)
 * is refused with an error, because dropping it silently would bias the
 * mean. The caller decides (censor at the run's end, or report the count).
 * Functions returning int return 0, or -1 with opd_last_error() set.
 */
#ifndef OPD_EXPERIMENT_STATS_H
#define OPD_EXPERIMENT_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OPD_BOOTSTRAP_LEVEL 0.95
/* the first Philox key word of every bootstrap draw ("BOOT"): keeps these
 * draws apart from the sampler's and the initialiser's, whatever the seed */
#define OPD_BOOTSTRAP_STREAM 0x424f4f54u
#define OPD_BOOTSTRAP_RESAMPLES_DEFAULT 10000

typedef struct {
    double mean;      /* of the samples themselves (not of the resamples) */
    double lo, hi;    /* the 95% percentile interval; lo <= hi */
    int n;            /* samples */
    int resamples;    /* R */
} opd_interval;

/* Mean of x (n), summed in double in index order; NaN when n < 1. */
double opd_stats_mean(const double *x, int n);

/* The percentile bootstrap interval of the mean of x (n >= 1) from R >= 1
 * resamples keyed by seed (above). n = 1 or constant samples give lo = hi =
 * the mean. */
int opd_bootstrap_mean(const double *x, int n, int resamples, uint64_t seed,
                       opd_interval *out);

/* The mean of method[i] - baseline[i] over the same n seeds and its
 * bootstrap interval (the same method and keys as opd_bootstrap_mean). */
int opd_bootstrap_paired(const double *method, const double *baseline, int n,
                         int resamples, uint64_t seed, opd_interval *out);

/* Standard error of a pass@1 p measured on n problems, sqrt(p (1 - p) / n):
 * the evaluation's own noise (binomial), to set against the effects. NaN
 * when n < 1 or p is outside [0, 1]. */
double opd_pass_at_1_se(double p, int n);

/* Time to target on a curve x (n) non-decreasing (wall-clock seconds, steps
 * or tokens), y (n) the metric: the first x[i] with y[i] >= target. With
 * interpolate != 0 and i > 0, the crossing is placed by linear interpolation
 * between (x[i-1], y[i-1]) and (x[i], y[i]) (y[i-1] < target <= y[i]), so a
 * coarse evaluation schedule does not round every time up to its next point;
 * a curve that starts at or above the target gives x[0] either way. NaN when
 * the curve never reaches the target (a NaN y never counts as reaching). */
double opd_time_to_target(const double *x, const double *y, int n, double target,
                          int interpolate);

#ifdef __cplusplus
}
#endif
#endif /* OPD_EXPERIMENT_STATS_H */
