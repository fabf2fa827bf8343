/* test_loss.c — the distillation losses (ref/SPEC.md section 4) and the horizon
 * schedules (ref/SPEC.md section 5), read as a specification:
 *  - every full-distribution loss has the gradient its value implies
 *    (central finite differences through the library, Richardson-extrapolated);
 *  - the sampled losses have the gradient of their surrogate with the reward
 *    and importance weight held fixed (detached), and NOT the gradient of
 *    their own value, and in expectation over y ~ ps the sampled reverse-KL
 *    gradient is the full reverse-KL gradient;
 *  - JSD's endpoints are forward / reverse KL, its interior bounded by log 2;
 *  - reductions, masks, top-k, sequence-level discounting, thread-count
 *    independence; schedule values and validation. */
#include "opd.h"
#include "testutil.h"

#include <limits.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { TB = 2, TH = 4, TV = 7, TN = TB * TH };

/* mask with zeros: sequence 0 ended after 2 tokens (EOS), sequence 1 has a
 * hole (so the sequence-level advantage must reset inside a sequence); the
 * sequences hold 2 and 3 tokens so token and sequence means differ */
static const float test_mask[TN] = {1, 1, 0, 0,  1, 1, 0, 1};
/* masked-out positions carry an out-of-vocabulary pad id: must be ignored */
static const int test_y[TN] = {3, 0, -1, -1,  6, 4, -1, 2};
/* positions whose reward the clamp changed, counted by ref_sampled_coef */
static int n_clamped;

static void fill_normal(float *x, int n, uint64_t seed, float scale) {
    for (int i = 0; i < n; i++) x[i] = scale * opd_normal(seed, 7, (uint32_t)i, 0);
}

/* log-softmax in double, the test's own */
static void ref_log_softmax(double *out, const double *z, int V) {
    double mx = z[0], s = 0;
    for (int v = 1; v < V; v++) if (z[v] > mx) mx = z[v];
    for (int v = 0; v < V; v++) s += exp(z[v] - mx);
    for (int v = 0; v < V; v++) out[v] = z[v] - mx - log(s);
}

/* The reduction weights, written out independently of the library. */
static void ref_omega(double *omega, const float *mask, int B, int H, opd_reduction red) {
    double M = 0; int nseq = 0;
    for (int i = 0; i < B * H; i++) M += mask[i];
    for (int b = 0; b < B; b++) {
        double Mb = 0;
        for (int t = 0; t < H; t++) Mb += mask[b * H + t];
        if (Mb > 0) nseq++;
    }
    for (int b = 0; b < B; b++) {
        double Mb = 0;
        for (int t = 0; t < H; t++) Mb += mask[b * H + t];
        for (int t = 0; t < H; t++) {
            int i = b * H + t;
            if (red == OPD_REDUCE_TOKEN_MEAN) omega[i] = M > 0 ? mask[i] / M : 0;
            else omega[i] = Mb > 0 ? mask[i] / (nseq * Mb) : 0;
        }
    }
}

static float loss_at(const opd_loss_config *c, const float *s, const float *t,
                     const float *slp) {
    return opd_distill_loss(c, s, t, test_y, test_mask, slp, TB, TH, TV, NULL, NULL, NULL);
}

/* ---------------------------------------------- full-distribution losses */

/* d loss / d s_logits by central differences of the library's own (float)
 * loss, step h and 2h, Richardson-combined; the step actually taken is the
 * float difference of the perturbed logits, not h. Returns max abs error vs
 * the analytic dlogits, and checks masked-out rows are exactly zero. */
static double fd_check_full(const char *label, const opd_loss_config *c, uint64_t seed) {
    float s[TN * TV], t[TN * TV], d[TN * TV];
    fill_normal(s, TN * TV, seed, 1.5f);
    fill_normal(t, TN * TV, seed + 1, 1.5f);
    float loss = opd_distill_loss(c, s, t, test_y, test_mask, NULL, TB, TH, TV, d, NULL, NULL);
    CU_ASSERT(isfinite(loss));
    const float h = 1e-2f;
    double max_err = 0, max_g = 0;
    for (int j = 0; j < TN * TV; j++) {
        float x = s[j];
        double D[2];
        for (int r = 0; r < 2; r++) {
            float hp = x + (r + 1) * h, hm = x - (r + 1) * h;
            s[j] = hp; double fp = loss_at(c, s, t, NULL);
            s[j] = hm; double fm = loss_at(c, s, t, NULL);
            D[r] = (fp - fm) / ((double)hp - (double)hm);
        }
        s[j] = x;
        double fd = (4 * D[0] - D[1]) / 3;
        double err = fabs(fd - d[j]);
        if (err > max_err) max_err = err;
        if (fabs(d[j]) > max_g) max_g = fabs(d[j]);
        if (test_mask[j / TV] == 0.0f) CU_ASSERT_EQUAL(d[j], 0.0f);
    }
    printf("\n    %-28s %-5s loss %.6f  max|g| %.4f  FD max abs err %.2e",
           label, c->reduction == OPD_REDUCE_TOKEN_MEAN ? "token" : "seq",
           (double)loss, max_g, max_err);
    CU_ASSERT(max_g > 1e-3);                 /* a non-trivial gradient */
    CU_ASSERT(max_err < 2e-5 + 1e-3 * max_g); /* float loss: ~5e-6 expected */
    return max_err;
}

static void test_fd_full_losses(void) {
    opd_loss_config c;
    for (int red = 0; red < 2; red++) {
        opd_loss_config_default(&c);
        c.reduction = (opd_reduction)red;
        c.kind = OPD_LOSS_RKL_FULL; fd_check_full("rkl-full", &c, 11);
        c.kind = OPD_LOSS_FKL; fd_check_full("fkl", &c, 12);
        c.kind = OPD_LOSS_JSD;
        float betas[] = {0.0f, 0.1f, 0.5f, 0.9f, 1.0f};
        for (int i = 0; i < 5; i++) {
            char lab[32];
            snprintf(lab, sizeof lab, "jsd beta=%.1f", (double)betas[i]);
            c.beta = betas[i]; fd_check_full(lab, &c, 13 + i);
        }
        c.kind = OPD_LOSS_RKL_TOPK;
        int ks[] = {2, 3, 6, 7};
        for (int i = 0; i < 4; i++) {
            char lab[32];
            snprintf(lab, sizeof lab, "rkl-topk k=%d", ks[i]);
            c.topk = ks[i];
            double e = fd_check_full(lab, &c, 21 + i);
            (void)e;
        }
    }
}

/* ---------------------------------------------------------- sampled losses */

/* The sampled losses are surrogates: l = -w A log ps(y) with the advantage A
 * (= r for "rkl") and w treated as constants. This computes, in double and
 * independently of the library, r, w, A at the given logits and
 * coef_i = -omega_i w_i A_i, so the surrogate is sum_i coef_i log ps_i(y_i). */
static void ref_sampled_coef(double *coef, double *term, const opd_loss_config *c,
                             const float *s, const float *t, const float *slp) {
    double z[TV], lq[TV], lp[TV], r[TN], w[TN], lqy[TN], omega[TN];
    for (int i = 0; i < TN; i++) {
        r[i] = w[i] = lqy[i] = 0;
        if (test_mask[i] == 0.0f) continue;
        for (int v = 0; v < TV; v++) z[v] = s[i * TV + v];
        ref_log_softmax(lq, z, TV);
        for (int v = 0; v < TV; v++) z[v] = t[i * TV + v];
        ref_log_softmax(lp, z, TV);
        int y = test_y[i];
        r[i] = lp[y] - lq[y];
        if (c->reward_clamp > 0 && fabs(r[i]) > c->reward_clamp) n_clamped++;
        if (c->reward_clamp > 0) r[i] = fmax(-c->reward_clamp, fmin(c->reward_clamp, r[i]));
        w[i] = slp ? exp(lq[y] - slp[i]) : 1.0;
        lqy[i] = lq[y];
    }
    ref_omega(omega, test_mask, TB, TH, c->reduction);
    double gamma = c->kind == OPD_LOSS_RKL_SEQ ? c->gamma : 0.0;
    for (int b = 0; b < TB; b++) {
        double A = 0;
        for (int tt = TH - 1; tt >= 0; tt--) {
            int i = b * TH + tt;
            if (test_mask[i] == 0.0f) { A = 0; coef[i] = term[i] = 0; continue; }
            A = r[i] + gamma * A;
            term[i] = -w[i] * A * lqy[i];
            coef[i] = -omega[i] * w[i] * A;
        }
    }
}

static double surrogate(const double *coef, const double *s) {
    double f = 0, lq[TV];
    for (int i = 0; i < TN; i++) {
        if (test_mask[i] == 0.0f) continue;
        ref_log_softmax(lq, s + i * TV, TV);
        f += coef[i] * lq[test_y[i]];
    }
    return f;
}

static void check_sampled(const char *label, const opd_loss_config *c, int with_slp,
                          uint64_t seed) {
    float s[TN * TV], t[TN * TV], d[TN * TV], pt[TN], slp[TN];
    fill_normal(s, TN * TV, seed, 1.5f);
    fill_normal(t, TN * TV, seed + 1, 1.5f);
    fill_normal(slp, TN, seed + 2, 0.3f);
    for (int i = 0; i < TN; i++) slp[i] -= 2.0f;   /* a plausible log-prob */
    const float *sl = with_slp ? slp : NULL;
    float loss = opd_distill_loss(c, s, t, test_y, test_mask, sl, TB, TH, TV, d, pt, NULL);

    /* value: the surrogate's terms and their reduction */
    double coef[TN], term[TN], omega[TN], ref_loss = 0, max_term_err = 0;
    n_clamped = 0;
    ref_sampled_coef(coef, term, c, s, t, sl);
    if (c->reward_clamp > 0) CU_ASSERT(n_clamped > 0);   /* the clamp is exercised */
    ref_omega(omega, test_mask, TB, TH, c->reduction);
    for (int i = 0; i < TN; i++) {
        ref_loss += omega[i] * term[i];
        max_term_err = fmax(max_term_err, fabs(pt[i] - term[i]) / (1 + fabs(term[i])));
    }
    double loss_err = fabs(loss - ref_loss) / (1 + fabs(ref_loss));
    CU_ASSERT(max_term_err < 1e-6);
    CU_ASSERT(loss_err < 1e-6);

    /* gradient: central differences in double of the surrogate with r, w, A
     * frozen at the base point */
    double sd[TN * TV], fd_err = 0, max_g = 0;
    for (int j = 0; j < TN * TV; j++) sd[j] = s[j];
    const double h = 1e-5;
    for (int j = 0; j < TN * TV; j++) {
        double x = sd[j];
        sd[j] = x + h; double fp = surrogate(coef, sd);
        sd[j] = x - h; double fm = surrogate(coef, sd);
        sd[j] = x;
        double fd = (fp - fm) / (2 * h);
        fd_err = fmax(fd_err, fabs(fd - d[j]));
        max_g = fmax(max_g, fabs(d[j]));
        if (test_mask[j / TV] == 0.0f) CU_ASSERT_EQUAL(d[j], 0.0f);
    }
    /* honesty check: differentiating the library's returned value (r and w
     * NOT frozen) gives something else, so the detachment is real */
    double undetached = 0;
    for (int j = 0; j < TN * TV; j++) {
        float x = s[j], hp = x + 1e-2f, hm = x - 1e-2f;
        s[j] = hp; double fp = opd_distill_loss(c, s, t, test_y, test_mask, sl, TB, TH, TV, NULL, NULL, NULL);
        s[j] = hm; double fm = opd_distill_loss(c, s, t, test_y, test_mask, sl, TB, TH, TV, NULL, NULL, NULL);
        s[j] = x;
        undetached = fmax(undetached, fabs((fp - fm) / ((double)hp - (double)hm) - d[j]));
    }
    printf("\n    %-28s %-5s loss %.6f  term err %.1e  surrogate-FD max abs err %.2e"
           "  (|FD of value - grad| %.2e)", label,
           c->reduction == OPD_REDUCE_TOKEN_MEAN ? "token" : "seq", (double)loss,
           max_term_err, fd_err, undetached);
    CU_ASSERT(max_g > 1e-3);
    CU_ASSERT(fd_err < 1e-6 + 1e-5 * max_g);
    CU_ASSERT(undetached > 1e-2 * max_g);
}

static void test_sampled_rkl_gradient(void) {
    opd_loss_config c;
    for (int red = 0; red < 2; red++) {
        opd_loss_config_default(&c);
        c.reduction = (opd_reduction)red;
        check_sampled("rkl w=1", &c, 0, 31);
        check_sampled("rkl w=exp(lq-sampler_lp)", &c, 1, 32);
        c.reward_clamp = 0.5f;
        check_sampled("rkl clamp 0.5", &c, 1, 33);
        c.reward_clamp = 0;
        c.kind = OPD_LOSS_RKL_SEQ; c.gamma = 0.9f;
        check_sampled("rkl-seq gamma=0.9", &c, 1, 34);
        c.gamma = 1.0f;
        check_sampled("rkl-seq gamma=1", &c, 0, 35);
    }
}

/* sampled "rkl" writes the exact full reverse KL to rkl, the same numbers as
 * "rkl-full"'s per-token terms */
static void test_rkl_output(void) {
    float s[TN * TV], t[TN * TV], rk[TN], pt[TN];
    fill_normal(s, TN * TV, 41, 1.0f);
    fill_normal(t, TN * TV, 42, 1.0f);
    opd_loss_config c;
    opd_loss_config_default(&c);
    opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, NULL, rk);
    c.kind = OPD_LOSS_RKL_FULL;
    opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, pt, NULL);
    for (int i = 0; i < TN; i++) {
        CU_ASSERT_EQUAL(rk[i], pt[i]);
        if (test_mask[i] != 0.0f) { CU_ASSERT(rk[i] > 0.0f); }
        else { CU_ASSERT_EQUAL(rk[i], 0.0f); }
    }
}

/* E_{y ~ ps}[ -r_y (onehot(y) - ps) ] = grad of the full reverse KL: the
 * sampled loss is an unbiased estimator of the full one's gradient. */
static void test_sampled_expected_gradient(void) {
    enum { V = TV, NS = 40000 };
    float s[V], t[V], exact[V], d[V];
    fill_normal(s, V, 51, 1.0f);
    fill_normal(t, V, 52, 1.0f);
    const float one = 1.0f;
    const int y0 = 0;
    opd_loss_config c;
    opd_loss_config_default(&c);
    c.kind = OPD_LOSS_RKL_FULL;
    opd_distill_loss(&c, s, t, &y0, &one, NULL, 1, 1, V, exact, NULL, NULL);

    double z[V], lq[V], cdf[V], sum[V] = {0}, sum2[V] = {0};
    for (int v = 0; v < V; v++) z[v] = s[v];
    ref_log_softmax(lq, z, V);
    double acc = 0;
    for (int v = 0; v < V; v++) { acc += exp(lq[v]); cdf[v] = acc; }
    c.kind = OPD_LOSS_RKL_SAMPLED;
    for (int n = 0; n < NS; n++) {
        double u = opd_uniform(1234, 0, (uint32_t)n, 0, 0) * cdf[V - 1];
        int y = 0;
        while (y < V - 1 && u >= cdf[y]) y++;     /* inverse CDF */
        opd_distill_loss(&c, s, t, &y, &one, NULL, 1, 1, V, d, NULL, NULL);
        for (int v = 0; v < V; v++) { sum[v] += d[v]; sum2[v] += (double)d[v] * d[v]; }
    }
    double worst = 0, max_diff = 0;
    int ok = 1;
    for (int v = 0; v < V; v++) {
        double mean = sum[v] / NS;
        double var = (sum2[v] / NS - mean * mean) * NS / (NS - 1);
        double se = sqrt(var / NS);
        double diff = fabs(mean - exact[v]);
        if (!(se > 0) || diff > 5 * se) ok = 0;
        worst = fmax(worst, diff / se);
        max_diff = fmax(max_diff, diff);
    }
    printf("\n    %d draws: max |mean sampled grad - full RKL grad| %.2e, "
           "worst %.2f standard errors (bound 5)", NS, max_diff, worst);
    CU_ASSERT(ok);
}

/* ------------------------------------------------------------ identities */

static void test_rkl_zero_when_equal(void) {
    float s[TN * TV], d[TN * TV], rk[TN];
    fill_normal(s, TN * TV, 61, 3.0f);
    opd_loss_config c;
    opd_loss_config_default(&c);
    opd_loss_kind kinds[] = {OPD_LOSS_RKL_FULL, OPD_LOSS_FKL, OPD_LOSS_JSD,
                             OPD_LOSS_RKL_TOPK, OPD_LOSS_RKL_SAMPLED, OPD_LOSS_RKL_SEQ};
    for (int k = 0; k < 6; k++) {
        c.kind = kinds[k]; c.topk = 3; c.gamma = 0.5f;
        float loss = opd_distill_loss(&c, s, s, test_y, test_mask, NULL, TB, TH, TV, d, NULL, rk);
        double g = 0, r = 0;
        for (int j = 0; j < TN * TV; j++) g = fmax(g, fabs(d[j]));
        for (int i = 0; i < TN; i++) r = fmax(r, fabs(rk[i]));
        printf("\n    student == teacher, %-9s loss %.1e  max|g| %.1e  max rkl %.1e",
               opd_loss_name(kinds[k]), (double)loss, g, r);
        CU_ASSERT(fabs(loss) < 1e-12 && g < 1e-12 && r < 1e-12);
    }
}

static void test_jsd_endpoints_and_bounds(void) {
    float s[TN * TV], t[TN * TV], d0[TN * TV], d1[TN * TV], p0[TN], p1[TN];
    fill_normal(s, TN * TV, 71, 2.0f);
    fill_normal(t, TN * TV, 72, 2.0f);
    opd_loss_config c, f;
    opd_loss_config_default(&c);
    opd_loss_config_default(&f);
    c.kind = OPD_LOSS_JSD;
    const struct { float beta; opd_loss_kind same; } ends[] = {
        {0.0f, OPD_LOSS_FKL}, {1.0f, OPD_LOSS_RKL_FULL}};
    for (int e = 0; e < 2; e++) {
        c.beta = ends[e].beta; f.kind = ends[e].same;
        float l0 = opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, d0, p0, NULL);
        float l1 = opd_distill_loss(&f, s, t, test_y, test_mask, NULL, TB, TH, TV, d1, p1, NULL);
        CU_ASSERT_EQUAL(l0, l1);
        CU_ASSERT(memcmp(d0, d1, sizeof d0) == 0);
        CU_ASSERT(memcmp(p0, p1, sizeof p0) == 0);
        printf("\n    jsd beta=%.0f == %s: %.6f", (double)ends[e].beta,
               opd_loss_name(ends[e].same), (double)l0);
    }
    /* near the endpoints JSD(beta) ~ beta FKL and ~ (1 - beta) RKL */
    float fkl, rkl, jl;
    f.kind = OPD_LOSS_FKL; fkl = opd_distill_loss(&f, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, NULL, NULL);
    f.kind = OPD_LOSS_RKL_FULL; rkl = opd_distill_loss(&f, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, NULL, NULL);
    c.beta = 1e-4f; jl = opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, NULL, NULL);
    double e0 = fabs(jl / c.beta - fkl) / fkl;
    c.beta = 1 - 1e-4f; jl = opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, NULL, NULL);
    double e1 = fabs(jl / (1 - c.beta) - rkl) / rkl;
    printf("\n    JSD(1e-4)/1e-4 vs FKL rel err %.2e, JSD(1-1e-4)/1e-4 vs RKL rel err %.2e", e0, e1);
    CU_ASSERT(e0 < 1e-2 && e1 < 1e-2);

    /* interior: 0 <= JSD(beta) <= h(beta) <= log 2 per token, and nearly
     * log 2 at beta = 0.5 for distributions with disjoint support */
    double worst = 0;
    for (int b = 1; b < 10; b++) {
        c.beta = b / 10.0f;
        double hb = -c.beta * log(c.beta) - (1 - c.beta) * log1p(-c.beta);
        opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, p0, NULL);
        for (int i = 0; i < TN; i++) {
            CU_ASSERT(p0[i] >= 0.0f && p0[i] <= hb + 1e-6 && p0[i] <= log(2.0) + 1e-6);
            worst = fmax(worst, p0[i]);
        }
    }
    for (int j = 0; j < TN * TV; j++) { s[j] = 0; t[j] = 0; }
    for (int i = 0; i < TN; i++) { s[i * TV + 0] = 40; t[i * TV + 1] = 40; }
    c.beta = 0.5f;
    float disjoint = opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, NULL, NULL, NULL);
    printf("\n    max interior JSD term %.4f; disjoint JSD(0.5) %.7f vs log 2 %.7f",
           worst, (double)disjoint, log(2.0));
    CU_ASSERT(fabs(disjoint - log(2.0)) < 1e-6);
}

/* gamma = 0 makes the sequence-level loss the token-level one, bit for bit */
static void test_seq_gamma0_is_token_level(void) {
    float s[TN * TV], t[TN * TV], slp[TN], d0[TN * TV], d1[TN * TV], p0[TN], p1[TN];
    fill_normal(s, TN * TV, 81, 1.0f);
    fill_normal(t, TN * TV, 82, 1.0f);
    fill_normal(slp, TN, 83, 1.0f);
    opd_loss_config a, b;
    opd_loss_config_default(&a);
    b = a;
    b.kind = OPD_LOSS_RKL_SEQ; b.gamma = 0.0f;
    for (int red = 0; red < 2; red++) {
        a.reduction = b.reduction = (opd_reduction)red;
        float l0 = opd_distill_loss(&a, s, t, test_y, test_mask, slp, TB, TH, TV, d0, p0, NULL);
        float l1 = opd_distill_loss(&b, s, t, test_y, test_mask, slp, TB, TH, TV, d1, p1, NULL);
        CU_ASSERT_EQUAL(l0, l1);
        CU_ASSERT(memcmp(d0, d1, sizeof d0) == 0 && memcmp(p0, p1, sizeof p0) == 0);
    }
    /* and gamma > 0 does change it (the discounted future is really added) */
    b.gamma = 0.5f;
    float l0 = opd_distill_loss(&a, s, t, test_y, test_mask, slp, TB, TH, TV, NULL, NULL, NULL);
    float l1 = opd_distill_loss(&b, s, t, test_y, test_mask, slp, TB, TH, TV, NULL, NULL, NULL);
    printf("\n    token-level %.6f, seq gamma=0 identical, seq gamma=0.5 %.6f",
           (double)l0, (double)l1);
    CU_ASSERT(l0 != l1);
}

/* ------------------------------------------------------------ reductions */

static void test_reductions(void) {
    enum { B = 3, H = 4, V = 5, N = B * H };
    /* sequence 1 has no token in the loss: it has no mean, and is not counted */
    const float mask[N] = {1, 1, 1, 0,  0, 0, 0, 0,  1, 0, 0, 0};
    const int y[N] = {0, 1, 2, 0,  0, 0, 0, 0,  4, 0, 0, 0};
    float s[N * V], t[N * V], dt[N * V], ds[N * V], pt[N], ps[N];
    fill_normal(s, N * V, 91, 1.0f);
    fill_normal(t, N * V, 92, 1.0f);
    opd_loss_config c;
    opd_loss_config_default(&c);
    opd_loss_kind kinds[] = {OPD_LOSS_RKL_FULL, OPD_LOSS_RKL_SAMPLED};
    for (int k = 0; k < 2; k++) {
        c.kind = kinds[k];
        c.reduction = OPD_REDUCE_TOKEN_MEAN;
        float lt = opd_distill_loss(&c, s, t, y, mask, NULL, B, H, V, dt, pt, NULL);
        c.reduction = OPD_REDUCE_SEQ_MEAN;
        float ls = opd_distill_loss(&c, s, t, y, mask, NULL, B, H, V, ds, ps, NULL);
        CU_ASSERT(memcmp(pt, ps, sizeof pt) == 0);   /* terms don't depend on it */
        double tok = (pt[0] + pt[1] + pt[2] + pt[8]) / 4.0;
        double seq = ((pt[0] + pt[1] + pt[2]) / 3.0 + pt[8]) / 2.0;
        printf("\n    %-8s token mean %.6f (expect %.6f), seq mean %.6f (expect %.6f)",
               opd_loss_name(kinds[k]), (double)lt, tok, (double)ls, seq);
        CU_ASSERT(fabs(lt - tok) < 1e-6 && fabs(ls - seq) < 1e-6);
        CU_ASSERT(fabs(tok - seq) > 1e-4);   /* the example tells them apart */
        /* gradient rows scale with the weights: 1/4 each (token) vs 1/6 and
         * 1/2 (sequence) */
        double err = 0;
        for (int i = 0; i < N; i++)
            for (int v = 0; v < V; v++) {
                double wt = mask[i] / 4.0, ws = i < 4 ? mask[i] / 6.0 : mask[i] / 2.0;
                if (mask[i] == 0) { CU_ASSERT_EQUAL(dt[i * V + v], 0.0f); CU_ASSERT_EQUAL(ds[i * V + v], 0.0f); continue; }
                err = fmax(err, fabs(ds[i * V + v] / ws - dt[i * V + v] / wt));
            }
        CU_ASSERT(err < 1e-6);
    }
    /* nothing masked (and empty shapes): loss 0, gradients 0, no NaN */
    const float zero[N] = {0};
    for (int j = 0; j < N * V; j++) dt[j] = 1.0f;
    for (int red = 0; red < 2; red++) {
        c.reduction = (opd_reduction)red;
        float l = opd_distill_loss(&c, s, t, y, zero, NULL, B, H, V, dt, pt, ps);
        CU_ASSERT_EQUAL(l, 0.0f);
        for (int j = 0; j < N * V; j++) CU_ASSERT_EQUAL(dt[j], 0.0f);
        for (int i = 0; i < N; i++) CU_ASSERT(pt[i] == 0.0f && ps[i] == 0.0f);
        CU_ASSERT_EQUAL(opd_distill_loss(&c, s, t, y, mask, NULL, 0, H, V, dt, NULL, NULL), 0.0f);
        CU_ASSERT_EQUAL(opd_distill_loss(&c, s, t, y, mask, NULL, B, 0, V, dt, NULL, NULL), 0.0f);
    }
}

/* ----------------------------------------------------------------- top-k */

/* reference: sort ids by (teacher logit desc, id asc), take k, KL of the
 * renormalised distributions in double */
static double ref_topk_rkl(const float *zs, const float *zt, int V, int k, int *in_S) {
    int ids[256];
    for (int v = 0; v < V; v++) ids[v] = v;
    for (int a = 1; a < V; a++)   /* insertion sort, stable on ties */
        for (int b = a; b > 0 && zt[ids[b]] > zt[ids[b - 1]]; b--) {
            int tmp = ids[b]; ids[b] = ids[b - 1]; ids[b - 1] = tmp;
        }
    double qs = 0, pt = 0, mx = zs[ids[0]], mt = zt[ids[0]];
    for (int v = 0; v < V; v++) in_S[v] = 0;
    for (int i = 0; i < k; i++) { in_S[ids[i]] = 1; mx = fmax(mx, zs[ids[i]]); mt = fmax(mt, zt[ids[i]]); }
    for (int i = 0; i < k; i++) { qs += exp(zs[ids[i]] - mx); pt += exp(zt[ids[i]] - mt); }
    double kl = 0;
    for (int i = 0; i < k; i++) {
        double lq = zs[ids[i]] - mx - log(qs), lp = zt[ids[i]] - mt - log(pt);
        kl += exp(lq) * (lq - lp);
    }
    return kl;
}

static void test_topk(void) {
    float s[TN * TV], t[TN * TV], d0[TN * TV], d1[TN * TV];
    fill_normal(s, TN * TV, 101, 1.0f);
    fill_normal(t, TN * TV, 102, 1.0f);
    opd_loss_config c, f;
    opd_loss_config_default(&c);
    c.kind = OPD_LOSS_RKL_TOPK;
    f = c; f.kind = OPD_LOSS_RKL_FULL;
    int ks[] = {TV, TV + 5};
    for (int i = 0; i < 2; i++) {   /* k >= V is the full reverse KL, bit for bit */
        c.topk = ks[i];
        float l0 = opd_distill_loss(&c, s, t, test_y, test_mask, NULL, TB, TH, TV, d0, NULL, NULL);
        float l1 = opd_distill_loss(&f, s, t, test_y, test_mask, NULL, TB, TH, TV, d1, NULL, NULL);
        CU_ASSERT_EQUAL(l0, l1);
        CU_ASSERT(memcmp(d0, d1, sizeof d0) == 0);
    }
    /* ties go to the lower id: teacher row {1,2,2,2,0,0,2}, k=2 -> S={1,2} */
    const float trow[TV] = {1, 2, 2, 2, 0, 0, 2};
    const int y0 = 0; const float one = 1;
    float drow[TV];
    c.topk = 2;
    opd_distill_loss(&c, s, trow, &y0, &one, NULL, 1, 1, TV, drow, NULL, NULL);
    for (int v = 0; v < TV; v++) CU_ASSERT((drow[v] != 0.0f) == (v == 1 || v == 2));

    /* against the reference, with many ties, for the insertion (k <= 64) and
     * the sorting (k > 64) selections */
    enum { V = 200, R = 4 };
    float zs[R * V], zt[R * V], pt[R], dd[R * V];
    int yy[R] = {0, 1, 2, 3}, inS[V];
    float mm[R] = {1, 1, 1, 1};
    fill_normal(zs, R * V, 103, 2.0f);
    fill_normal(zt, R * V, 104, 2.0f);
    for (int j = 0; j < R * V; j++) zt[j] = roundf(zt[j] * 2) / 2;   /* ties */
    int kk[] = {1, 5, 64, 65, 150, 199};
    for (int i = 0; i < 6; i++) {
        c.topk = kk[i];
        opd_distill_loss(&c, zs, zt, yy, mm, NULL, R, 1, V, dd, pt, NULL);
        double err = 0;
        for (int r = 0; r < R; r++) {
            double ref = ref_topk_rkl(zs + r * V, zt + r * V, V, kk[i], inS);
            err = fmax(err, fabs(pt[r] - ref) / (1e-6 + fabs(ref)));
            for (int v = 0; v < V; v++)
                if (!inS[v]) CU_ASSERT_EQUAL(dd[r * V + v], 0.0f);
        }
        printf("\n    top-%d of V=%d with ties: max rel err vs reference %.2e", kk[i], V, err);
        CU_ASSERT(err < 1e-5);
    }
}

/* ------------------------------------------------------ determinism, errors */

static void test_thread_count_independent(void) {
#ifdef _OPENMP
    enum { B = 4, H = 16, V = 1000, N = B * H };   /* big enough for a thread team */
    float *s = opd_malloc(sizeof(float) * N * V), *t = opd_malloc(sizeof(float) * N * V);
    float *d1 = opd_malloc(sizeof(float) * N * V), *d4 = opd_malloc(sizeof(float) * N * V);
    float mask[N], slp[N], p1[N], p4[N];
    int y[N];
    fill_normal(s, N * V, 111, 2.0f);
    fill_normal(t, N * V, 112, 2.0f);
    fill_normal(slp, N, 113, 1.0f);
    for (int i = 0; i < N; i++) { y[i] = (i * 37) % V; mask[i] = (i % 16) < 12 ? 1.0f : 0.0f; }
    int saved = omp_get_max_threads();
    opd_loss_config c;
    opd_loss_config_default(&c);
    c.gamma = 0.7f; c.topk = 20;
    for (int k = 0; k <= OPD_LOSS_RKL_SEQ; k++) {
        c.kind = (opd_loss_kind)k;
        omp_set_num_threads(1);
        float l1 = opd_distill_loss(&c, s, t, y, mask, slp, B, H, V, d1, p1, NULL);
        omp_set_num_threads(4);
        float l4 = opd_distill_loss(&c, s, t, y, mask, slp, B, H, V, d4, p4, NULL);
        CU_ASSERT(l1 == l4 && memcmp(d1, d4, sizeof(float) * N * V) == 0 &&
                  memcmp(p1, p4, sizeof p1) == 0);
    }
    omp_set_num_threads(saved);
    free(s); free(t); free(d1); free(d4);
#else
    CU_ASSERT(1);
#endif
}

static void test_loss_errors_and_names(void) {
    float s[TN * TV] = {0}, t[TN * TV] = {0}, d[TN * TV];
    opd_loss_config c;
    opd_loss_config_default(&c);
    CU_ASSERT(c.kind == OPD_LOSS_RKL_SAMPLED && c.reduction == OPD_REDUCE_TOKEN_MEAN &&
              c.reward_clamp <= 0 && c.beta == 0.5f && c.topk == 8 && c.gamma == 0.0f);
    struct { opd_loss_config c; const char *needle; } bad[6];
    for (int i = 0; i < 6; i++) bad[i].c = c;
    bad[0].c.kind = OPD_LOSS_RKL_TOPK; bad[0].c.topk = 0; bad[0].needle = "topk";
    bad[1].c.kind = OPD_LOSS_JSD; bad[1].c.beta = 1.5f; bad[1].needle = "beta";
    bad[2].c.kind = OPD_LOSS_RKL_SEQ; bad[2].c.gamma = -0.1f; bad[2].needle = "gamma";
    bad[3].c.kind = (opd_loss_kind)99; bad[3].needle = "kind";
    bad[4].c.reduction = (opd_reduction)7; bad[4].needle = "reduction";
    bad[5].c.reward_clamp = NAN; bad[5].needle = "clamp";
    for (int i = 0; i < 6; i++) {
        float l = opd_distill_loss(&bad[i].c, s, t, test_y, test_mask, NULL, TB, TH, TV, d, NULL, NULL);
        CU_ASSERT(isnan(l));
        CU_ASSERT(strstr(opd_last_error(), bad[i].needle) != NULL);
    }
    int ybad[TN];
    memcpy(ybad, test_y, sizeof ybad);
    ybad[4] = TV;   /* a masked token outside the vocabulary */
    CU_ASSERT(isnan(opd_distill_loss(&c, s, t, ybad, test_mask, NULL, TB, TH, TV, d, NULL, NULL)));
    CU_ASSERT(strstr(opd_last_error(), "vocabulary") != NULL);
    printf("\n    e.g. \"%s\"", opd_last_error());

    for (int k = 0; k <= OPD_LOSS_RKL_SEQ; k++) {
        opd_loss_kind back;
        CU_ASSERT(opd_loss_parse(opd_loss_name((opd_loss_kind)k), &back) == 0 && back == k);
    }
    opd_loss_kind back;
    CU_ASSERT(opd_loss_parse("rkl", &back) == 0 && back == OPD_LOSS_RKL_SAMPLED);
    CU_ASSERT(opd_loss_parse("jsd", &back) == 0 && back == OPD_LOSS_JSD);
    CU_ASSERT(opd_loss_parse("kl", &back) == -1 && strstr(opd_last_error(), "'kl'"));
}

/* mask NULL is all ones; y NULL is fine where no sampled token is used; a
 * student logit of -inf (a banned token) leaves the losses finite */
static void test_null_mask_and_inf_logits(void) {
    float s[TN * TV], t[TN * TV], d0[TN * TV], d1[TN * TV], ones[TN];
    int y[TN];
    fill_normal(s, TN * TV, 121, 1.0f);
    fill_normal(t, TN * TV, 122, 1.0f);
    for (int i = 0; i < TN; i++) { ones[i] = 1; y[i] = i % TV; }
    opd_loss_config c;
    opd_loss_config_default(&c);
    for (int k = 0; k <= OPD_LOSS_RKL_SEQ; k++) {
        c.kind = (opd_loss_kind)k; c.topk = 3; c.gamma = 0.5f;
        float l0 = opd_distill_loss(&c, s, t, y, NULL, NULL, TB, TH, TV, d0, NULL, NULL);
        float l1 = opd_distill_loss(&c, s, t, y, ones, NULL, TB, TH, TV, d1, NULL, NULL);
        CU_ASSERT(l0 == l1 && memcmp(d0, d1, sizeof d0) == 0);
        int sampled = k == OPD_LOSS_RKL_SAMPLED || k == OPD_LOSS_RKL_SEQ;
        float l2 = opd_distill_loss(&c, s, t, NULL, NULL, NULL, TB, TH, TV, d1, NULL, NULL);
        if (sampled) { CU_ASSERT(isnan(l2) && strstr(opd_last_error(), "needs the rollout tokens")); }
        else { CU_ASSERT(l2 == l0 && memcmp(d0, d1, sizeof d0) == 0); }
    }
    for (int i = 0; i < TN; i++) s[i * TV + 5] = -INFINITY;
    for (int i = 0; i < TN; i++) if (y[i] == 5) y[i] = 4;
    for (int k = 0; k <= OPD_LOSS_RKL_SEQ; k++) {
        c.kind = (opd_loss_kind)k;
        float l = opd_distill_loss(&c, s, t, y, NULL, NULL, TB, TH, TV, d0, NULL, NULL);
        int finite = 1;
        for (int j = 0; j < TN * TV; j++) finite &= isfinite(d0[j]);
        /* forward KL is +inf when the student bans a token the teacher
         * allows (that is what it measures); its gradient q - p stays finite */
        if (k == OPD_LOSS_FKL) { CU_ASSERT(isinf(l) && l > 0); }
        else { CU_ASSERT(isfinite(l)); }
        CU_ASSERT(finite);
        if (!finite || (k != OPD_LOSS_FKL && !isfinite(l)))
            printf("\n    %s with a -inf student logit: loss %g", opd_loss_name(c.kind), (double)l);
    }
}

/* -------------------------------------------------------------- schedules */

static opd_schedule sched(opd_schedule_kind kind, int T, int H0, int dH, int dk,
                          float rho, float growth, long total) {
    opd_schedule s;
    opd_schedule_default(&s, kind, T);
    s.H0 = H0; s.dH = dH; s.dk = dk; s.rho = rho; s.growth = growth; s.total_steps = total;
    return s;
}

static void test_schedule_values(void) {
    typedef struct { opd_schedule_kind kind; int T, H0, dH, dk; float rho, growth;
                     long total, k; int want; } row;
    const row table[] = {
        /* OPD */
        {OPD_SCHED_FULL, 256, 0, 0, 0, 0, 0, 0, 0, 256},
        {OPD_SCHED_FULL, 1024, 0, 0, 0, 0, 0, 0, LONG_MAX, 1024},
        /* POPD, H_k = min(T, H0 + dH floor(k/dk)) */
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, 0, 32},
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, 9, 32},
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, 10, 64},
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, 69, 224},
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, 70, 256},
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, LONG_MAX, 256},
        {OPD_SCHED_PROGRESSIVE, 1024, 64, 64, 20, 0, 0, 0, 100, 384},
        {OPD_SCHED_PROGRESSIVE, 1000, 100, 300, 1, 0, 0, 0, 3, 1000},  /* 1000 > T: capped */
        {OPD_SCHED_PROGRESSIVE, 1000, 100, 300, 1, 0, 0, 0, 2, 700},
        {OPD_SCHED_PROGRESSIVE, INT_MAX, 1, INT_MAX, 1, 0, 0, 0, LONG_MAX, INT_MAX},
        {OPD_SCHED_PROGRESSIVE, 256, 32, 32, 10, 0, 0, 0, -5, 32},      /* k < 0 is 0 */
        /* linear, H0 + ceil((T - H0) k / total) */
        {OPD_SCHED_LINEAR, 256, 32, 0, 0, 0, 0, 100, 0, 32},
        {OPD_SCHED_LINEAR, 256, 32, 0, 0, 0, 0, 100, 1, 35},
        {OPD_SCHED_LINEAR, 256, 32, 0, 0, 0, 0, 100, 50, 144},
        {OPD_SCHED_LINEAR, 256, 32, 0, 0, 0, 0, 100, 99, 254},
        {OPD_SCHED_LINEAR, 256, 32, 0, 0, 0, 0, 100, 100, 256},
        {OPD_SCHED_LINEAR, INT_MAX, 1, 0, 0, 0, 0, LONG_MAX, LONG_MAX - 1, INT_MAX},
        {OPD_SCHED_LINEAR, INT_MAX, 1, 0, 0, 0, 0, LONG_MAX, LONG_MAX / 2 + 1, 1073741825},
        /* geometric, ceil(H0 growth^floor(k/dk)) */
        {OPD_SCHED_GEOMETRIC, 256, 32, 0, 10, 0, 2.0f, 0, 0, 32},
        {OPD_SCHED_GEOMETRIC, 256, 32, 0, 10, 0, 2.0f, 0, 10, 64},
        {OPD_SCHED_GEOMETRIC, 256, 32, 0, 10, 0, 2.0f, 0, 29, 128},
        {OPD_SCHED_GEOMETRIC, 256, 32, 0, 10, 0, 2.0f, 0, 30, 256},
        {OPD_SCHED_GEOMETRIC, 256, 32, 0, 10, 0, 2.0f, 0, LONG_MAX, 256},
        {OPD_SCHED_GEOMETRIC, 100, 10, 0, 1, 0, 1.5f, 0, 2, 23},        /* 22.5 */
        {OPD_SCHED_GEOMETRIC, 100, 10, 0, 1, 0, 1.5f, 0, 5, 76},        /* 75.94 */
        {OPD_SCHED_GEOMETRIC, 100, 10, 0, 1, 0, 1.5f, 0, 6, 100},       /* 113.9 */
        {OPD_SCHED_GEOMETRIC, 1000, 100, 0, 1, 0, 1.1f, 0, 1, 110},     /* 1.1f*100 = 110.0000024 */
        /* TOPD, ceil(rho T); the paper's rho = 0.25 and 0.10 */
        {OPD_SCHED_TRUNCATED, 256, 0, 0, 0, 0.25f, 0, 0, 0, 64},
        {OPD_SCHED_TRUNCATED, 256, 0, 0, 0, 0.10f, 0, 0, 0, 26},        /* 25.6 */
        {OPD_SCHED_TRUNCATED, 1024, 0, 0, 0, 0.25f, 0, 0, 0, 256},
        {OPD_SCHED_TRUNCATED, 1024, 0, 0, 0, 0.10f, 0, 0, 7, 103},      /* 102.4 */
        {OPD_SCHED_TRUNCATED, 2048, 0, 0, 0, 0.10f, 0, 0, 0, 205},
        {OPD_SCHED_TRUNCATED, 4096, 0, 0, 0, 0.25f, 0, 0, 0, 1024},
        {OPD_SCHED_TRUNCATED, 10, 0, 0, 0, 0.30f, 0, 0, 0, 3},          /* 0.3f*10 = 3.0000001 */
        {OPD_SCHED_TRUNCATED, 10, 0, 0, 0, 0.70f, 0, 0, 0, 7},
        {OPD_SCHED_TRUNCATED, 256, 0, 0, 0, 1.0f, 0, 0, 0, 256},
        {OPD_SCHED_TRUNCATED, 256, 0, 0, 0, 1e-9f, 0, 0, 0, 1},         /* never 0 */
        {OPD_SCHED_TRUNCATED, 4194305, 0, 0, 0, 0.5f, 0, 0, 0, 2097153},/* exact .5 rounds up */
    };
    int n = sizeof table / sizeof table[0], fails = 0;
    for (int i = 0; i < n; i++) {
        const row *r = &table[i];
        opd_schedule s = sched(r->kind, r->T, r->H0, r->dH, r->dk, r->rho, r->growth, r->total);
        int ok_valid = opd_schedule_validate(&s) == 0;
        int h = opd_schedule_horizon(&s, r->k);
        if (h != r->want || !ok_valid) {
            fails++;
            printf("\n    FAIL %s T=%d H0=%d dH=%d dk=%d rho=%g growth=%g total=%ld k=%ld: "
                   "H=%d want %d (valid %d)", opd_schedule_name(r->kind), r->T, r->H0,
                   r->dH, r->dk, (double)r->rho, (double)r->growth, r->total, r->k, h,
                   r->want, ok_valid);
        }
    }
    printf("\n    %d schedule table rows, %d mismatches", n, fails);
    CU_ASSERT_EQUAL(fails, 0);

    /* defaults: the growing schedules reach T around k = 50 */
    opd_schedule s;
    opd_schedule_default(&s, OPD_SCHED_PROGRESSIVE, 256);
    CU_ASSERT(s.H0 == 32 && s.dH == 32 && s.dk == 7 && opd_schedule_validate(&s) == 0);
    CU_ASSERT(opd_schedule_horizon(&s, 48) == 224 && opd_schedule_horizon(&s, 49) == 256);
    opd_schedule_default(&s, OPD_SCHED_GEOMETRIC, 256);
    CU_ASSERT(s.dk == 16 && opd_schedule_horizon(&s, 47) == 128 && opd_schedule_horizon(&s, 48) == 256);
    opd_schedule_default(&s, OPD_SCHED_LINEAR, 256);
    CU_ASSERT(opd_schedule_horizon(&s, 0) == 32 && opd_schedule_horizon(&s, 50) == 256);
    opd_schedule_default(&s, OPD_SCHED_TRUNCATED, 256);
    CU_ASSERT(opd_schedule_horizon(&s, 0) == 64);

    /* always in [1, T] and non-decreasing in k, for every kind and default */
    int Ts[] = {1, 2, 7, 256, 1000};
    int bad = 0;
    for (int kind = 0; kind <= OPD_SCHED_TRUNCATED; kind++)
        for (int ti = 0; ti < 5; ti++) {
            opd_schedule_default(&s, (opd_schedule_kind)kind, Ts[ti]);
            if (opd_schedule_validate(&s) != 0) { bad++; printf("\n    %s", opd_last_error()); }
            int prev = 0;
            for (long k = 0; k < 300; k++) {
                int h = opd_schedule_horizon(&s, k);
                if (h < 1 || h > Ts[ti] || h < prev) bad++;
                prev = h;
            }
            int hmax = opd_schedule_horizon(&s, LONG_MAX);
            if (kind != OPD_SCHED_TRUNCATED && hmax != Ts[ti]) bad++;
        }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_schedule_validation(void) {
    struct { opd_schedule s; const char *needle; } bad[12];
    int n = 0;
    bad[n].s = sched(OPD_SCHED_FULL, 0, 1, 1, 1, 0.25f, 2, 10); bad[n++].needle = "T = 0";
    bad[n].s = sched(OPD_SCHED_TRUNCATED, 256, 1, 1, 1, 0.0f, 2, 10); bad[n++].needle = "rho";
    bad[n].s = sched(OPD_SCHED_TRUNCATED, 256, 1, 1, 1, 1.5f, 2, 10); bad[n++].needle = "rho";
    bad[n].s = sched(OPD_SCHED_TRUNCATED, 256, 1, 1, 1, NAN, 2, 10); bad[n++].needle = "rho";
    bad[n].s = sched(OPD_SCHED_PROGRESSIVE, 256, 32, 32, 0, 0.25f, 2, 10); bad[n++].needle = "dk";
    bad[n].s = sched(OPD_SCHED_PROGRESSIVE, 256, 0, 32, 5, 0.25f, 2, 10); bad[n++].needle = "H0";
    bad[n].s = sched(OPD_SCHED_PROGRESSIVE, 256, 300, 32, 5, 0.25f, 2, 10); bad[n++].needle = "H0";
    bad[n].s = sched(OPD_SCHED_PROGRESSIVE, 256, 32, 0, 5, 0.25f, 2, 10); bad[n++].needle = "dH";
    bad[n].s = sched(OPD_SCHED_GEOMETRIC, 256, 32, 32, 5, 0.25f, 1.0f, 10); bad[n++].needle = "growth";
    bad[n].s = sched(OPD_SCHED_GEOMETRIC, 256, 32, 32, 5, 0.25f, INFINITY, 10); bad[n++].needle = "growth";
    bad[n].s = sched(OPD_SCHED_LINEAR, 256, 32, 32, 5, 0.25f, 2, 0); bad[n++].needle = "total_steps";
    bad[n].s = sched((opd_schedule_kind)9, 256, 32, 32, 5, 0.25f, 2, 10); bad[n++].needle = "kind";
    for (int i = 0; i < n; i++) {
        int rc = opd_schedule_validate(&bad[i].s);
        CU_ASSERT_EQUAL(rc, -1);
        CU_ASSERT(strstr(opd_last_error(), bad[i].needle) != NULL);
        if (rc != -1 || !strstr(opd_last_error(), bad[i].needle))
            printf("\n    case %d: rc %d, \"%s\"", i, rc, opd_last_error());
        /* even invalid, the horizon stays in [1, max(T, 1)] */
        int h = opd_schedule_horizon(&bad[i].s, 12345);
        CU_ASSERT(h >= 1 && h <= (bad[i].s.max_new_tokens > 1 ? bad[i].s.max_new_tokens : 1));
    }
    printf("\n    e.g. \"%s\"", opd_last_error());
    /* fields a kind does not use are not checked */
    opd_schedule s = sched(OPD_SCHED_FULL, 256, 0, 0, 0, 0, 0, 0);
    CU_ASSERT_EQUAL(opd_schedule_validate(&s), 0);

    for (int k = 0; k <= OPD_SCHED_TRUNCATED; k++) {
        opd_schedule_kind back;
        CU_ASSERT(opd_schedule_parse(opd_schedule_name((opd_schedule_kind)k), &back) == 0 && back == k);
    }
    opd_schedule_kind back;
    CU_ASSERT(opd_schedule_parse("popd", &back) == 0 && back == OPD_SCHED_PROGRESSIVE);
    CU_ASSERT(opd_schedule_parse("topd", &back) == 0 && back == OPD_SCHED_TRUNCATED);
    CU_ASSERT(opd_schedule_parse("opd", &back) == 0 && back == OPD_SCHED_FULL);
    CU_ASSERT(opd_schedule_parse("cosine", &back) == -1 && strstr(opd_last_error(), "'cosine'"));
}

/* ------------------------------------------------ micro-batch step (ref/dist.c) */

/* a tiny student, teacher and a step config shared by the micro-batch tests */
typedef struct {
    opd_model s, t;
    opd_distill_config dc;
    int prompts[8 * 5], pad[8];
    uint32_t ids[8];
} mb_fixture;

static void mb_fixture_init(mb_fixture *f, opd_reduction red) {
    opd_config sc, tc;
    opd_config_default(&sc);
    sc.vocab_size = 19; sc.d_model = 16; sc.n_layers = 1; sc.n_heads = 2; sc.n_kv_heads = 1;
    sc.d_ff = 24; sc.max_seq_len = 24;
    tc = sc;
    tc.d_model = 24; tc.n_layers = 2; tc.d_ff = 32;
    CU_ASSERT_FATAL(opd_model_init(&f->s, &sc) == 0);
    CU_ASSERT_FATAL(opd_model_init(&f->t, &tc) == 0);
    opd_model_init_random(&f->s, 11);
    opd_model_init_random(&f->t, 12);
    for (size_t i = 0; i < f->t.num_params; i++) f->t.params_mem[i] *= 4.0f;
    opd_distill_config_default(&f->dc, 8);
    f->dc.loss.reduction = red;
    f->dc.rollout.seed = 7;
    for (int b = 0; b < 8; b++) {
        f->pad[b] = b % 3;
        f->ids[b] = (uint32_t)b;
        for (int i = 0; i < 5; i++)
            f->prompts[b * 5 + i] = i < f->pad[b] ? 0 : 3 + (int)(opd_uniform(4, 1, b, i, 0) * 16);
    }
}

static void mb_fixture_free(mb_fixture *f) { opd_model_free(&f->s); opd_model_free(&f->t); }

/* M = B / mb micro-batches by hand: every rollout, the global normaliser
 * counted here, each g_m from the stages, then the tree of opd_dist.h
 * written out for M = 3 ((g0 + g1) + g2) and M = 4 ((g0 + g1) + (g2 + g3)) */
static void check_mb_by_hand(int B, int mb, opd_reduction red) {
    enum { P = 5 };
    mb_fixture f;
    mb_fixture_init(&f, red);
    const int M = B / mb;
    const size_t np = f.s.num_params;
    opd_mb_work mw;
    memset(&mw, 0, sizeof mw);
    opd_step_stats st;
    CU_ASSERT_FATAL(opd_distill_grad_mb(&f.s, &f.t, &f.dc, f.prompts, f.pad, f.ids, B, P, mb, 0, &mw, &st) == 0);
    float *G = opd_malloc(np * sizeof(float));
    memcpy(G, f.s.grads_mem, np * sizeof(float));

    opd_step_work w;
    memset(&w, 0, sizeof w);
    opd_step_batch sb[4];
    memset(sb, 0, sizeof sb);
    int H;
    CU_ASSERT_FATAL(opd_step_horizon(&f.dc, 0, P, &f.s.cfg, &f.t.cfg, &H) == 0);
    double norm = 0;
    long tokens = 0;
    for (int m = 0; m < M; m++) {
        opd_step_stats s;
        memset(&s, 0, sizeof s);
        CU_ASSERT_FATAL(opd_step_rollout(&f.s, &f.dc, 0, f.prompts + m * mb * P, f.pad + m * mb,
                                         f.ids + m * mb, mb, P, H, &w.roll) == 0);
        CU_ASSERT_FATAL(opd_step_compact(&w.roll, &sb[m], &s) == 0);
        tokens += s.tokens;
        for (int b = 0; b < mb; b++) {
            int any = 0;
            for (int t = 0; t < s.trained_len; t++) {
                float x = sb[m].mask[b * s.trained_len + t];
                if (red == OPD_REDUCE_TOKEN_MEAN) norm += x;
                any |= x > 0;
            }
            if (red == OPD_REDUCE_SEQ_MEAN) norm += any;
        }
    }
    CU_ASSERT(tokens == st.tokens);
    float *g[4];
    double loss[4];
    for (int m = 0; m < M; m++) {
        opd_step_work_reserve(&w, (size_t)mb * sb[m].trained_len, (size_t)mb * sb[m].S, f.s.cfg.vocab_size);
        opd_step_teacher_score(&f.t, &sb[m], f.dc.teacher_temperature, w.t_logits);
        opd_step_student_forward(&f.s, &sb[m], w.s_logits);
        loss[m] = opd_step_loss_backward_norm(&f.s, &f.dc.loss, &sb[m], &w, norm);
        g[m] = opd_malloc(np * sizeof(float));
        memcpy(g[m], f.s.grads_mem, np * sizeof(float));
    }
    float *sum = opd_malloc(np * sizeof(float));
    double lsum;
    if (M == 3) {
        for (size_t i = 0; i < np; i++) sum[i] = (g[0][i] + g[1][i]) + g[2][i];
        lsum = (loss[0] + loss[1]) + loss[2];
    } else {
        for (size_t i = 0; i < np; i++) sum[i] = (g[0][i] + g[1][i]) + (g[2][i] + g[3][i]);
        lsum = (loss[0] + loss[1]) + (loss[2] + loss[3]);
    }
    CU_ASSERT(memcmp(sum, G, np * sizeof(float)) == 0);
    CU_ASSERT(st.loss == (float)lsum);
    printf("\n    B %d, mb %d (M %d), %s: gradient == the hand-written tree (memcmp %s), loss %.9g",
           B, mb, M, red == OPD_REDUCE_TOKEN_MEAN ? "token mean" : "seq mean",
           memcmp(sum, G, np * sizeof(float)) == 0 ? "equal" : "DIFFERS", st.loss);
    for (int m = 0; m < M; m++) { free(g[m]); opd_step_batch_free(&sb[m]); }
    free(sum); free(G);
    opd_step_work_free(&w);
    opd_mb_work_free(&mw);
    mb_fixture_free(&f);
}

static void test_mb_step_is_the_tree(void) {
    check_mb_by_hand(6, 2, OPD_REDUCE_TOKEN_MEAN);
    check_mb_by_hand(6, 2, OPD_REDUCE_SEQ_MEAN);
    check_mb_by_hand(8, 2, OPD_REDUCE_TOKEN_MEAN);
}

/* M = 1: opd_distill_step_mb and opd_sft_step_mb are the whole-batch steps bit for bit */
static void test_mb_one_is_the_step(void) {
    enum { B = 6, P = 5 };
    mb_fixture a, b;
    mb_fixture_init(&a, OPD_REDUCE_TOKEN_MEAN);
    mb_fixture_init(&b, OPD_REDUCE_TOKEN_MEAN);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr = 1e-2f;
    opd_adamw oa, ob;
    opd_adamw_init(&oa, &oc, a.s.num_params);
    opd_adamw_init(&ob, &oc, b.s.num_params);
    opd_mb_work mw;
    opd_step_work w;
    memset(&mw, 0, sizeof mw);
    memset(&w, 0, sizeof w);
    for (long k = 0; k < 2; k++) {
        opd_step_stats sa, sb;
        CU_ASSERT_FATAL(opd_distill_step_mb(&a.s, &a.t, &oa, &a.dc, a.prompts, a.pad, a.ids, B, P, B, k, &mw, &sa) == 0);
        CU_ASSERT_FATAL(opd_distill_step(&b.s, &b.t, &ob, &b.dc, b.prompts, b.pad, b.ids, B, P, k, &w, &sb) == 0);
        CU_ASSERT(sa.loss == sb.loss && sa.mean_rkl == sb.mean_rkl && sa.grad_norm == sb.grad_norm);
        CU_ASSERT(sa.tokens == sb.tokens && sa.trained_len == sb.trained_len && sa.truncated == sb.truncated);
        CU_ASSERT(memcmp(sa.kl_bucket, sb.kl_bucket, sizeof sa.kl_bucket) == 0);
    }
    CU_ASSERT(memcmp(a.s.params_mem, b.s.params_mem, a.s.num_params * sizeof(float)) == 0);
    CU_ASSERT(memcmp(oa.m, ob.m, a.s.num_params * sizeof(float)) == 0);
    CU_ASSERT(memcmp(oa.v, ob.v, a.s.num_params * sizeof(float)) == 0);

    /* SFT on the prompts as sequences, all positions trained */
    float lm[B * P], la, lb, ga, gb;
    for (int i = 0; i < B * P; i++) lm[i] = 1.0f;
    CU_ASSERT_FATAL(opd_sft_step_mb(&a.s, &oa, a.prompts, a.pad, lm, B, P, B, &la, &ga) == 0);
    CU_ASSERT_FATAL(opd_sft_step(&b.s, &ob, b.prompts, b.pad, lm, B, P, &lb, &gb) == 0);
    CU_ASSERT(la == lb && ga == gb);
    CU_ASSERT(memcmp(a.s.params_mem, b.s.params_mem, a.s.num_params * sizeof(float)) == 0);
    /* and a refused split */
    CU_ASSERT(opd_dist_check(6, 4, 1) == -1 && strstr(opd_last_error(), "must divide"));
    CU_ASSERT(opd_dist_check(8, 2, 3) == -1 && strstr(opd_last_error(), "power of two"));
    CU_ASSERT(opd_dist_check(8, 4, 4) == -1 && strstr(opd_last_error(), "do not divide"));
    CU_ASSERT(opd_dist_check(8, 2, 4) == 0 && opd_dist_check(6, 2, 1) == 0);
    opd_adamw_free(&oa); opd_adamw_free(&ob);
    opd_mb_work_free(&mw);
    opd_step_work_free(&w);
    mb_fixture_free(&a);
    mb_fixture_free(&b);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {
        {"full losses: gradient == finite differences", test_fd_full_losses},
        {"sampled losses: gradient of the detached surrogate", test_sampled_rkl_gradient},
        {"sampled rkl logs the exact full reverse KL", test_rkl_output},
        {"sampled rkl gradient is unbiased for full rkl", test_sampled_expected_gradient},
        {"student == teacher: zero loss and gradient", test_rkl_zero_when_equal},
        {"jsd endpoints, limits and log 2 bound", test_jsd_endpoints_and_bounds},
        {"rkl-seq with gamma 0 == rkl", test_seq_gamma0_is_token_level},
        {"token mean and sequence mean", test_reductions},
        {"teacher top-k", test_topk},
        {"independent of the thread count", test_thread_count_independent},
        {"loss config errors and names", test_loss_errors_and_names},
        {"NULL mask, NULL y, -inf student logits", test_null_mask_and_inf_logits},
        {"schedule values", test_schedule_values},
        {"schedule validation and names", test_schedule_validation},
        {"micro-batch step == the hand-written tree of micro-batch gradients", test_mb_step_is_the_tree},
        {"one micro-batch == opd_distill_step / opd_sft_step bit for bit", test_mb_one_is_the_step},
        {0, 0}};
    opd_test_suite("loss", cases);
    return opd_test_run();
}
