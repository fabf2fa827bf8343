/* test_experiment.c — the interval statistics of eval/experiment/stats.c on
 * samples whose answers are known by hand or by theory. */
#include "experiment/stats.h"
#include "opd.h"
#include "testutil.h"

#include <string.h>

#define R_TEST 4000

static double width(const opd_interval *iv) { return iv->hi - iv->lo; }

static void test_constant_samples(void) {
    /* every resample of a constant sample sums the same n numbers as the
     * mean does: a zero-width interval at exactly the computed mean (which
     * is the constant up to rounding), whatever n and R */
    static const int ns[] = {1, 2, 5, 33};
    for (int k = 0; k < 4; k++) {
        double x[33];
        for (int i = 0; i < ns[k]; i++) x[i] = 0.37;
        opd_interval iv;
        CU_ASSERT_EQUAL_FATAL(opd_bootstrap_mean(x, ns[k], 1 + 97 * k, 5, &iv), 0);
        CU_ASSERT_DOUBLE_EQUAL(iv.mean, 0.37, 1e-15);
        CU_ASSERT_EQUAL(iv.lo, iv.mean);
        CU_ASSERT_EQUAL(iv.hi, iv.mean);
        CU_ASSERT_EQUAL(iv.n, ns[k]);
        CU_ASSERT_EQUAL(iv.resamples, 1 + 97 * k);
    }
}

static void test_mean_and_paired_by_hand(void) {
    double x[4] = {1, 2, 3, 4};
    CU_ASSERT_EQUAL(opd_stats_mean(x, 4), 2.5);
    CU_ASSERT(isnan(opd_stats_mean(x, 0)));
    /* per seed: method - baseline = {0.1, 0, 0.2, -0.1}, mean 0.05 */
    double method[4] = {0.8, 0.6, 0.9, 0.7}, base[4] = {0.7, 0.6, 0.7, 0.8};
    opd_interval d;
    CU_ASSERT_EQUAL_FATAL(opd_bootstrap_paired(method, base, 4, R_TEST, 11, &d), 0);
    printf("\n      paired difference %.4f [%.4f, %.4f]", d.mean, d.lo, d.hi);
    CU_ASSERT_DOUBLE_EQUAL(d.mean, 0.05, 1e-12);
    CU_ASSERT(d.lo < d.mean && d.mean < d.hi);
    /* a resample mean is a mean of the differences: it cannot leave their range */
    CU_ASSERT(d.lo >= -0.1 - 1e-12 && d.hi <= 0.2 + 1e-12);
    /* a method that is the baseline plus a constant: the pairing removes
     * every shared variation, the interval is that constant exactly */
    double shifted[4];
    for (int i = 0; i < 4; i++) shifted[i] = base[i] + 0.125;
    CU_ASSERT_EQUAL(opd_bootstrap_paired(shifted, base, 4, R_TEST, 11, &d), 0);
    CU_ASSERT_DOUBLE_EQUAL(d.lo, 0.125, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(d.hi, 0.125, 1e-12);
    /* while the unpaired intervals of both overlap widely */
    opd_interval a, b;
    opd_bootstrap_mean(shifted, 4, R_TEST, 11, &a);
    opd_bootstrap_mean(base, 4, R_TEST, 11, &b);
    CU_ASSERT(width(&a) > 0.05 && a.lo < b.hi);
}

/* x_i = (7 i mod 10) / 9: the digits 0..9 / 9 in a scrambled order, so
 * every multiple of 10 samples has mean exactly 0.5 (sd 0.319) */
static void digits_sample(double *x, int n) {
    for (int i = 0; i < n; i++) x[i] = (double)((7 * i) % 10) / 9.0;
}

static void test_interval_contains_mean_and_narrows(void) {
    static const int ns[] = {10, 40, 160, 640};
    double x[640], prev = 0.0;
    digits_sample(x, 640);
    printf("\n      n     mean    95%% interval        width   normal-theory width");
    for (int k = 0; k < 4; k++) {
        int n = ns[k];
        opd_interval iv;
        CU_ASSERT_EQUAL_FATAL(opd_bootstrap_mean(x, n, R_TEST, 3, &iv), 0);
        /* population sd of the sample: what the bootstrap resamples from */
        double m = opd_stats_mean(x, n), v = 0.0;
        for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
        double normal = 2.0 * 1.959964 * sqrt(v / n) / sqrt((double)n);
        printf("\n      %-4d  %.4f  [%.4f, %.4f]  %.4f  %.4f", n, iv.mean, iv.lo, iv.hi,
               width(&iv), normal);
        CU_ASSERT_DOUBLE_EQUAL(iv.mean, 0.5, 1e-12);
        CU_ASSERT(iv.lo < 0.5 && 0.5 < iv.hi);
        /* the percentile interval of a mean is close to the normal one */
        CU_ASSERT(fabs(width(&iv) / normal - 1.0) < 0.15);
        /* 4x the samples: half the width (1 / sqrt(n)), within MC noise */
        if (k > 0) CU_ASSERT(width(&iv) / prev > 0.4 && width(&iv) / prev < 0.6);
        prev = width(&iv);
    }
}

static void test_reproducible_and_keyed(void) {
    double x[20];
    digits_sample(x, 20);
    x[3] = 4.0;  /* skewed, so the ends are not symmetric by accident */
    opd_interval a, b, c;
    CU_ASSERT_EQUAL(opd_bootstrap_mean(x, 20, 10000, 42, &a), 0);
    CU_ASSERT_EQUAL(opd_bootstrap_mean(x, 20, 10000, 42, &b), 0);
    CU_ASSERT_EQUAL(opd_bootstrap_mean(x, 20, 10000, 43, &c), 0);
    CU_ASSERT(memcmp(&a, &b, sizeof a) == 0);
    CU_ASSERT(a.lo != c.lo || a.hi != c.hi);
    /* another RNG seed moves the ends by the Monte Carlo error only */
    double moved = fmax(fabs(a.lo - c.lo), fabs(a.hi - c.hi)) / width(&a);
    printf("\n      R = 10000: seed 42 [%.5f, %.5f], seed 43 [%.5f, %.5f]: ends moved %.2f%% of the width",
           a.lo, a.hi, c.lo, c.hi, 100.0 * moved);
    CU_ASSERT(moved < 0.03);
    /* skew shows: the outlier stretches the upper end more than the lower */
    CU_ASSERT(a.hi - a.mean > a.mean - a.lo);
}

static void test_coverage(void) {
    /* 300 samples of n = 20 uniforms (true mean 0.5): the 95% interval
     * should cover 0.5 about 95% of the time (a little less: percentile
     * intervals run narrow at small n) */
    int covered = 0, trials = 300;
    for (int t = 0; t < trials; t++) {
        double x[20];
        for (int i = 0; i < 20; i++) x[i] = opd_uniform(2024, 7, (uint32_t)t, (uint32_t)i, 0);
        opd_interval iv;
        opd_bootstrap_mean(x, 20, 1000, (uint64_t)t, &iv);
        covered += iv.lo <= 0.5 && 0.5 <= iv.hi;
    }
    printf("\n      covered the true mean in %d / %d trials", covered, trials);
    CU_ASSERT(covered >= (int)(0.88 * trials) && covered <= (int)(0.985 * trials));
}

static void test_pass_at_1_se(void) {
    CU_ASSERT_DOUBLE_EQUAL(opd_pass_at_1_se(0.5, 100), 0.05, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(opd_pass_at_1_se(0.9, 400), 0.015, 1e-15);
    CU_ASSERT_EQUAL(opd_pass_at_1_se(0.0, 50), 0.0);
    CU_ASSERT_EQUAL(opd_pass_at_1_se(1.0, 50), 0.0);
    CU_ASSERT(isnan(opd_pass_at_1_se(0.5, 0)));
    CU_ASSERT(isnan(opd_pass_at_1_se(1.5, 10)));
    CU_ASSERT(isnan(opd_pass_at_1_se(NAN, 10)));
}

static void test_time_to_target(void) {
    double x[4] = {0, 10, 20, 30}, y[4] = {0.1, 0.3, 0.5, 0.7};
    CU_ASSERT_EQUAL(opd_time_to_target(x, y, 4, 0.4, 0), 20.0);
    CU_ASSERT_DOUBLE_EQUAL(opd_time_to_target(x, y, 4, 0.4, 1), 15.0, 1e-12);
    CU_ASSERT_EQUAL(opd_time_to_target(x, y, 4, 0.5, 1), 20.0);  /* hit exactly */
    CU_ASSERT_EQUAL(opd_time_to_target(x, y, 4, 0.05, 1), 0.0);  /* from the start */
    CU_ASSERT_EQUAL(opd_time_to_target(x, y, 4, 0.7, 1), 30.0);
    CU_ASSERT(isnan(opd_time_to_target(x, y, 4, 0.71, 0)));
    CU_ASSERT(isnan(opd_time_to_target(x, y, 4, 0.71, 1)));
    CU_ASSERT(isnan(opd_time_to_target(x, y, 0, 0.0, 1)));
    /* the FIRST crossing counts, even if the curve falls back after it */
    double z[4] = {0.2, 0.6, 0.3, 0.9};
    CU_ASSERT_DOUBLE_EQUAL(opd_time_to_target(x, z, 4, 0.5, 1), 7.5, 1e-12);
    CU_ASSERT_EQUAL(opd_time_to_target(x, z, 4, 0.5, 0), 10.0);
    /* a NaN point never reaches and leaves nothing to interpolate from */
    double w[4] = {0.1, NAN, 0.6, 0.9};
    CU_ASSERT_EQUAL(opd_time_to_target(x, w, 4, 0.5, 1), 20.0);
}

static void test_errors(void) {
    double x[3] = {1, NAN, 2}, y[3] = {1, 2, 3};
    opd_interval iv;
    CU_ASSERT_EQUAL(opd_bootstrap_mean(x, 3, 10, 1, &iv), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "sample 1"));
    CU_ASSERT_EQUAL(opd_bootstrap_mean(y, 0, 10, 1, &iv), -1);
    CU_ASSERT_EQUAL(opd_bootstrap_mean(y, 3, 0, 1, &iv), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "resamples"));
    CU_ASSERT_EQUAL(opd_bootstrap_paired(y, x, 3, 10, 1, &iv), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "baseline"));
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case stats[] = {
        {"constant samples: zero-width interval at the constant", test_constant_samples},
        {"mean and paired difference by hand; pairing removes shared noise", test_mean_and_paired_by_hand},
        {"interval holds the mean, matches normal theory, narrows as 1/sqrt(n)", test_interval_contains_mean_and_narrows},
        {"same seed same interval; another seed moves it by MC error only", test_reproducible_and_keyed},
        {"95% interval covers the true mean about 95% of the time", test_coverage},
        {"pass@1 standard error sqrt(p(1-p)/n)", test_pass_at_1_se},
        {"time to target: first crossing, interpolated or not, NaN if never", test_time_to_target},
        {"NaN samples, no samples, no resamples are refused", test_errors},
        {0, 0}};
    opd_test_suite("stats", stats);
    return opd_test_run();
}
