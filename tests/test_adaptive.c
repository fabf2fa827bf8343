/* test_adaptive.c — per-position statistics by bucket and the adaptive
 * horizon rule of ref/adaptive.h on synthetic reliability profiles. */
#include "adaptive.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* a profile of T positions, bucket width w, every bucket measured `count`
 * times with the given mean */
static void profile_of(opd_position_stats *p, int T, int w, const double *mean, double count) {
    CU_ASSERT_EQUAL_FATAL(opd_position_stats_init(p, T, w), 0);
    for (int j = 0; j < p->nbuckets; j++) { p->sum[j] = mean[j] * count; p->count[j] = count; }
}

static opd_adaptive_config config(int T, int H0, int dH, double threshold) {
    opd_adaptive_config c;
    opd_adaptive_config_default(&c, T);
    c.H0 = H0; c.dH = dH; c.threshold = threshold;
    return c;
}

static void test_stats_accumulate_by_bucket(void) {
    /* B = 2 sequences of H = 6 positions into buckets of 4 over T = 10:
     * bucket 0 = positions 0..3, bucket 1 = 4..7, bucket 2 = 8..9 (never reached) */
    float v[12] = {1, 2, 3, 4, 5, 6,   10, 20, 30, 40, 50, 60};
    float m[12] = {1, 1, 1, 1, 1, 0,   1, 1, 0, 0, 1, 1};
    opd_position_stats s;
    CU_ASSERT_EQUAL_FATAL(opd_position_stats_init(&s, 10, 4), 0);
    CU_ASSERT_EQUAL(s.nbuckets, 3);
    CU_ASSERT_EQUAL(opd_position_stats_add(&s, v, m, 2, 6), 0);
    CU_ASSERT_EQUAL(s.sum[0], 1 + 2 + 3 + 4 + 10 + 20);
    CU_ASSERT_EQUAL(s.count[0], 6);
    CU_ASSERT_EQUAL(s.sum[1], 5 + 50 + 60);
    CU_ASSERT_EQUAL(s.count[1], 3);
    CU_ASSERT_DOUBLE_EQUAL(opd_position_stats_mean(&s, 1), 115.0 / 3.0, 1e-12);
    CU_ASSERT(isnan(opd_position_stats_mean(&s, 2)));   /* beyond the rollouts */
    CU_ASSERT(isnan(opd_position_stats_mean(&s, 3)));   /* no such bucket */
    /* a second call adds on; NULL mask is all ones */
    CU_ASSERT_EQUAL(opd_position_stats_add(&s, v, NULL, 1, 6), 0);
    CU_ASSERT_EQUAL(s.count[0], 10);
    CU_ASSERT_EQUAL(s.count[1], 5);
    /* errors add nothing */
    double before = s.sum[0];
    float bad[2] = {1, NAN}, ones[2] = {1, 1};
    CU_ASSERT_EQUAL(opd_position_stats_add(&s, bad, ones, 1, 2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "value[1]"));
    CU_ASSERT_EQUAL(s.sum[0], before);
    m[0] = -1;
    CU_ASSERT_EQUAL(opd_position_stats_add(&s, v, m, 2, 6), -1);
    CU_ASSERT_EQUAL(opd_position_stats_add(&s, v, NULL, 1, 11), -1);  /* H > T */
    opd_position_stats_reset(&s);
    CU_ASSERT_EQUAL(s.count[0], 0);
    CU_ASSERT(isnan(opd_position_stats_mean(&s, 0)));
    opd_position_stats_free(&s);
    CU_ASSERT_EQUAL(opd_position_stats_init(&s, 10, 9), -1);  /* buckets of at most 8 */
    CU_ASSERT_EQUAL(opd_position_stats_init(&s, 10, 0), -1);
    CU_ASSERT_EQUAL(opd_position_stats_init(&s, 0, 4), -1);
}

/* H through `updates` calls of the rule from H0 */
static int run_rule(const opd_adaptive_config *c, const opd_position_stats *p, int updates,
                    int *trace) {
    int H = c->H0;
    for (int k = 0; k < updates; k++) {
        int next = opd_adaptive_next_horizon(c, p, H, NULL);
        CU_ASSERT(next >= H && next <= c->T);
        H = next;
        if (trace) trace[k] = H;
    }
    return H;
}

static void test_grows_while_reliable_stops_at_first_unreliable(void) {
    /* T = 64 in 8 buckets of 8; the teacher is reliable (overlap >= 0.5)
     * up to position 31, not in bucket 4 (32..39), reliable again after */
    double overlap[8] = {0.95, 0.9, 0.9, 0.85, 0.4, 0.9, 0.9, 0.9};
    opd_position_stats p;
    profile_of(&p, 64, 8, overlap, 100);
    opd_adaptive_config c = config(64, 8, 8, 0.5);
    int trace[6], stop = 0;
    run_rule(&c, &p, 6, trace);
    printf("\n      dH = 8: H = 8 -> %d %d %d %d %d %d", trace[0], trace[1], trace[2], trace[3],
           trace[4], trace[5]);
    CU_ASSERT(trace[0] == 16 && trace[1] == 24 && trace[2] == 32);
    CU_ASSERT(trace[3] == 32 && trace[5] == 32);  /* never past the unreliable bucket */
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 32, &stop), 32);
    CU_ASSERT_EQUAL(stop, 4);
    /* a step wider than a bucket stops at the bucket's start, not before the
     * step and not across it: 8 -> 28 (full step), then 32 (bucket 4's start) */
    c = config(64, 8, 20, 0.5);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 8, &stop), 28);
    CU_ASSERT_EQUAL(stop, -1);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 28, &stop), 32);
    CU_ASSERT_EQUAL(stop, 4);
    /* inside the unreliable bucket already: stay (monotone, no shrinking) */
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 35, NULL), 35);
    /* the same profile as a reverse KL: reliable when KL <= threshold */
    double kl[8] = {0.1, 0.2, 0.2, 0.3, 1.5, 0.2, 0.2, 0.2};
    opd_position_stats q;
    profile_of(&q, 64, 8, kl, 100);
    c = config(64, 8, 8, 0.5);
    c.sense = OPD_RELIABLE_BELOW;
    CU_ASSERT_EQUAL(run_rule(&c, &q, 10, NULL), 32);
    opd_position_stats_free(&p);
    opd_position_stats_free(&q);
}

static void test_all_reliable_is_popd_and_capped_at_T(void) {
    /* T = 61, a partial last bucket: H0 + dH k, then exactly T, then T */
    double good[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    opd_position_stats p;
    profile_of(&p, 61, 8, good, 50);
    opd_adaptive_config c = config(61, 7, 7, 0.5);
    int trace[12];
    run_rule(&c, &p, 12, trace);
    for (int k = 0; k < 12; k++) {
        int popd = 7 + 7 * (k + 1) < 61 ? 7 + 7 * (k + 1) : 61;
        CU_ASSERT_EQUAL(trace[k], popd);
    }
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 61, NULL), 61);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 500, NULL), 61);  /* H > T: T */
    opd_position_stats_free(&p);
}

static void test_minimum_and_unmeasured(void) {
    /* nothing reliable at all: the horizon stays at H0, and an H below H0
     * is raised to it */
    double bad[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    opd_position_stats p;
    profile_of(&p, 64, 8, bad, 100);
    opd_adaptive_config c = config(64, 12, 8, 0.5);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 12, NULL), 12);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 3, NULL), 12);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, -7, NULL), 12);
    opd_position_stats_free(&p);
    /* reliable where measured, but bucket 3 has fewer than min_count
     * measurements: no evidence, no extension past position 24 */
    double good[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    profile_of(&p, 64, 8, good, 100);
    p.count[3] = 5; p.sum[3] = 5;
    c = config(64, 8, 8, 0.5);
    int stop = 0;
    CU_ASSERT_EQUAL(run_rule(&c, &p, 8, NULL), 24);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 24, &stop), 24);
    CU_ASSERT_EQUAL(stop, 3);
    c.min_count = 5;  /* now it counts */
    CU_ASSERT_EQUAL(run_rule(&c, &p, 8, NULL), 64);
    /* a truncated probe (H = 20 of T = 64) measures nothing beyond 20 */
    opd_position_stats_reset(&p);
    float ones[4 * 20];
    for (int i = 0; i < 80; i++) ones[i] = 1.0f;
    CU_ASSERT_EQUAL(opd_position_stats_add(&p, ones, NULL, 4, 20), 0);
    /* bucket 2 (16..23) has 16 measurements (positions 16..19 of 4 sequences):
     * enough for min_count 8, so 24; bucket 3 has none, so no further */
    c.min_count = 8;
    CU_ASSERT_EQUAL(run_rule(&c, &p, 8, NULL), 24);
    c.min_count = 20;
    CU_ASSERT_EQUAL(run_rule(&c, &p, 8, NULL), 16);
    opd_position_stats_free(&p);
}

static void test_random_profiles_invariants(void) {
    /* monotone, within [H0, T], across reliable buckets only, and as far
     * as they allow */
    int violations = 0, trials = 0;
    for (int t = 0; t < 400; t++) {
        int T = 1 + (int)(200 * opd_uniform(77, 0, (uint32_t)t, 0, 0));
        int w = 1 + (int)(8 * opd_uniform(77, 0, (uint32_t)t, 0, 1));
        opd_position_stats p;
        opd_position_stats_init(&p, T, w);
        for (int j = 0; j < p.nbuckets; j++) {
            p.count[j] = (int)(20 * opd_uniform(77, 1, (uint32_t)t, (uint32_t)j, 0));
            p.sum[j] = p.count[j] * opd_uniform(77, 1, (uint32_t)t, (uint32_t)j, 1);
        }
        opd_adaptive_config c;
        opd_adaptive_config_default(&c, T);
        c.dH = 1 + (int)(16 * opd_uniform(77, 0, (uint32_t)t, 0, 2));
        for (int H = -2; H <= T + 2; H++) {
            int next = opd_adaptive_next_horizon(&c, &p, H, NULL);
            int h = H < c.H0 ? c.H0 : H > T ? T : H;
            int ok = next >= h && next <= T && next <= h + c.dH;
            /* every bucket that the growth [h, next) touches is reliable */
            for (int j = h / w; next > h && j <= (next - 1) / w; j++) {
                double m = p.count[j] >= c.min_count ? p.sum[j] / p.count[j] : -1;
                if (!(m >= c.threshold)) ok = 0;
            }
            /* and it stops only at one that is not */
            int end = h + c.dH < T ? h + c.dH : T;
            if (next < end) {
                int j = next / w;
                double m = p.count[j] >= c.min_count ? p.sum[j] / p.count[j] : -1;
                if (m >= c.threshold) ok = 0;
            }
            violations += !ok;
            trials++;
        }
        opd_position_stats_free(&p);
    }
    printf("\n      %d (profile, H) pairs, %d violations", trials, violations);
    CU_ASSERT_EQUAL(violations, 0);
}

static void test_config_errors(void) {
    opd_position_stats p;
    opd_position_stats_init(&p, 64, 8);
    opd_adaptive_config c = config(64, 8, 8, 0.5);
    c.H0 = 0;
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 8, NULL), -1);
    c = config(64, 8, 0, 0.5);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 8, NULL), -1);
    c = config(64, 8, 8, NAN);
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 8, NULL), -1);
    c = config(65, 8, 8, 0.5);  /* the profile is of another horizon */
    CU_ASSERT_EQUAL(opd_adaptive_next_horizon(&c, &p, 8, NULL), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "T = 64"));
    opd_adaptive_config_default(&c, 64);
    CU_ASSERT(c.H0 == 8 && c.dH == 8 && opd_adaptive_config_validate(&c) == 0);
    opd_adaptive_config_default(&c, 5);
    CU_ASSERT_EQUAL(c.H0, 1);
    opd_position_stats_free(&p);
}

static void test_topk_overlap(void) {
    /* V = 8. student's top 5: ids 0 1 2 3 4 (descending 7..3); teacher's
     * top 5: 4 3 7 6 0 -> common {0, 3, 4}: 3/5 */
    const float s[8] = {7, 6, 5, 4, 3, 2, 1, 0};
    const float t[8] = {1, -1, -2, 5, 6, -3, 2, 3};
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(s, t, 8, 5), 0.6, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(s, s, 8, 5), 1.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(t, s, 8, 5), 0.6, 1e-12);   /* symmetric */
    /* top-1: 0 vs 4 */
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(s, t, 8, 1), 0.0, 0);
    /* ties: lower token id first. Uniform logits: top 2 = {0, 1}; against
     * a row whose top 2 is {1, 7}: one in common */
    const float u[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const float w[8] = {0, 1, 0, 0, 0, 0, 0, 1};
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(u, w, 8, 2), 0.5, 1e-12);
    /* w's tie between 1 and 7 at the top and 0..6 below: top 3 = {1, 7, 0} */
    const float x[8] = {9, 0, 0, 0, 0, 0, 0, 0};   /* top 3 = {0, 1, 2} */
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(w, x, 8, 3), 2.0 / 3.0, 1e-12);
    /* a probability-equivalent shift changes nothing; k is clipped to V */
    float s2[8];
    for (int i = 0; i < 8; i++) s2[i] = s[i] - 100.0f;
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(s2, t, 8, 5), 0.6, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(opd_topk_overlap(s, t, 8, 50), 1.0, 0);
    CU_ASSERT(isnan(opd_topk_overlap(s, t, 8, 0)));
}

/* the definition written out: sort ids by (logit descending, id ascending) */
static const float *g_row;
static int by_logit_then_id(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_row[i] != g_row[j]) return g_row[i] > g_row[j] ? -1 : 1;
    return i - j;
}
static double overlap_by_sorting(const float *a, const float *b, int V, int k) {
    int ia[64], ib[64];
    for (int v = 0; v < V; v++) ia[v] = ib[v] = v;
    g_row = a; qsort(ia, V, sizeof *ia, by_logit_then_id);
    g_row = b; qsort(ib, V, sizeof *ib, by_logit_then_id);
    int common = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) common += ia[i] == ib[j];
    return (double)common / k;
}

static void test_topk_overlap_matches_sorting(void) {
    /* rows of small integers (many ties) against the sorted definition */
    int mismatches = 0;
    for (int r = 0; r < 2000; r++) {
        float a[64], b[64];
        const int V = 2 + r % 62, k = 1 + r % 7 < V ? 1 + r % 7 : V;
        for (int v = 0; v < V; v++) {
            a[v] = (float)(int)(4 * opd_uniform(17, 1, (uint32_t)r, (uint32_t)v, 0));
            b[v] = (float)(int)(4 * opd_uniform(17, 2, (uint32_t)r, (uint32_t)v, 0));
        }
        mismatches += opd_topk_overlap(a, b, V, k) != overlap_by_sorting(a, b, V, k);
    }
    CU_ASSERT_EQUAL(mismatches, 0);
}

static void test_diag_overlap_by_bucket(void) {
    /* B = 1, H = 3 positions, V = 8, buckets of 2 over T = 4: positions 0, 1
     * (overlaps 3/5, 1) to bucket 0, position 2 masked out */
    const float s[24] = {7, 6, 5, 4, 3, 2, 1, 0,   7, 6, 5, 4, 3, 2, 1, 0,   0, 0, 0, 0, 0, 0, 0, 9};
    const float t[24] = {1, -1, -2, 5, 6, -3, 2, 3,   7, 6, 5, 4, 3, 2, 1, 0,   9, 0, 0, 0, 0, 0, 0, 0};
    const float rkl[3] = {0.5f, 0.25f, 100.0f}, mask[3] = {1, 1, 0};
    opd_position_diag d;
    CU_ASSERT_EQUAL_FATAL(opd_position_diag_init(&d, 4, 2, OPD_OVERLAP_TOPK), 0);
    CU_ASSERT_EQUAL(opd_position_diag_add(&d, s, t, rkl, mask, 1, 3, 8), 0);
    CU_ASSERT_EQUAL(d.rkl.count[0], 2);
    CU_ASSERT_EQUAL(d.rkl.count[1], 0);
    CU_ASSERT_DOUBLE_EQUAL(opd_position_stats_mean(&d.rkl, 0), 0.375, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(opd_position_stats_mean(&d.overlap, 0), 0.8, 1e-6);
    CU_ASSERT(isnan(opd_position_stats_mean(&d.overlap, 1)));
    opd_position_diag_reset(&d);
    CU_ASSERT_EQUAL(d.overlap.count[0], 0);
    opd_position_diag_free(&d);
    CU_ASSERT_EQUAL(opd_position_diag_init(&d, 4, 2, 0), -1);   /* k out of range, nothing held */
    CU_ASSERT_PTR_NULL(d.rkl.sum);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case adaptive[] = {
        {"position statistics: sums and counts by bucket, errors add nothing", test_stats_accumulate_by_bucket},
        {"grows while reliable, stops at the first unreliable bucket", test_grows_while_reliable_stops_at_first_unreliable},
        {"every bucket reliable: POPD's horizons, capped at T", test_all_reliable_is_popd_and_capped_at_T},
        {"never below H0; unmeasured buckets stop the growth", test_minimum_and_unmeasured},
        {"random profiles: monotone, in [H0, T], only across reliable buckets", test_random_profiles_invariants},
        {"bad configs and a profile of another T are refused", test_config_errors},
        {"top-k overlap: hand-made pairs, ties to the lower token id", test_topk_overlap},
        {"top-k overlap: 2000 tied rows equal the sorted definition", test_topk_overlap_matches_sorting},
        {"per-position diagnostics: masked KL and overlap by bucket", test_diag_overlap_by_bucket},
        {0, 0}};
    opd_test_suite("adaptive horizon", adaptive);
    return opd_test_run();
}
