/* test_grpo.c — GRPO advantages on hand-computed groups and the
 * policy-gradient loss against finite differences and cross-entropy. */
#include "grpo.h"
#include "testutil.h"

#include <omp.h>
#include <string.h>

static void test_advantages_by_hand(void) {
    /* group 0 {1, 0, 0, 1}: mean 0.5, sample std sqrt(4 * 0.25 / 3) = 1/sqrt(3);
     * group 1 {1, 1, 1, 1}: all solved, no signal; group 2: one of four */
    float r[12] = {1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0}, a[12];
    CU_ASSERT_EQUAL_FATAL(opd_grpo_advantages(r, 3, 4, OPD_GRPO_EPS, a), 0);
    double s0 = 1.0 / sqrt(3.0) + OPD_GRPO_EPS;
    double want0[4] = {0.5 / s0, -0.5 / s0, -0.5 / s0, 0.5 / s0};
    for (int g = 0; g < 4; g++) CU_ASSERT_DOUBLE_EQUAL(a[g], want0[g], 1e-6);
    for (int g = 4; g < 8; g++) CU_ASSERT_EQUAL(a[g], 0.0f);
    /* {0, 0, 1, 0}: mean 0.25, sample std sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5 */
    double s2 = 0.5 + OPD_GRPO_EPS;
    CU_ASSERT_DOUBLE_EQUAL(a[10], 0.75 / s2, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(a[8], -0.25 / s2, 1e-6);
    printf("\n      {1,0,0,1} -> %.4f %.4f %.4f %.4f; {0,0,1,0} -> %.4f %.4f %.4f %.4f",
           a[0], a[1], a[2], a[3], a[8], a[9], a[10], a[11]);
    /* every group's advantages sum to 0: the group mean is the baseline */
    for (int p = 0; p < 3; p++)
        CU_ASSERT_DOUBLE_EQUAL(a[4 * p] + a[4 * p + 1] + a[4 * p + 2] + a[4 * p + 3], 0.0, 1e-6);
}

static void test_advantages_equal_and_single(void) {
    /* equal rewards whose mean does not round back to them still give 0 */
    float r[5] = {0.37f, 0.37f, 0.37f, 0.37f, 0.37f}, a[5];
    CU_ASSERT_EQUAL(opd_grpo_advantages(r, 1, 5, OPD_GRPO_EPS, a), 0);
    for (int g = 0; g < 5; g++) CU_ASSERT_EQUAL(a[g], 0.0f);
    /* G = 1: nothing to compare with */
    float r1[3] = {1, 0, 1}, a1[3] = {9, 9, 9};
    CU_ASSERT_EQUAL(opd_grpo_advantages(r1, 3, 1, OPD_GRPO_EPS, a1), 0);
    for (int g = 0; g < 3; g++) CU_ASSERT_EQUAL(a1[g], 0.0f);
    /* eps = 0: exactly unit sample variance */
    float r2[2] = {3, 1}, a2[2];
    CU_ASSERT_EQUAL(opd_grpo_advantages(r2, 1, 2, 0.0f, a2), 0);
    CU_ASSERT_DOUBLE_EQUAL(a2[0], 1.0 / sqrt(2.0), 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(a2[1], -1.0 / sqrt(2.0), 1e-7);
    /* errors */
    float bad[2] = {1, NAN};
    CU_ASSERT_EQUAL(opd_grpo_advantages(bad, 1, 2, OPD_GRPO_EPS, a2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "reward[1]"));
    CU_ASSERT_EQUAL(opd_grpo_advantages(r2, 1, 0, OPD_GRPO_EPS, a2), -1);
}

#define B_ 2
#define H_ 3
#define V_ 5

/* logits, tokens, mask with one unmasked row, advantages of both signs */
static void pg_case(float *z, int *y, float *m, float *adv) {
    for (int i = 0; i < B_ * H_ * V_; i++) z[i] = (float)(2.0 * opd_uniform(9, 1, 0, (uint32_t)i, 0) - 1.0);
    for (int i = 0; i < B_ * H_; i++) { y[i] = (3 * i + 1) % V_; m[i] = 1.0f; }
    m[B_ * H_ - 1] = 0.0f;  /* after EOS */
    y[B_ * H_ - 1] = 77;    /* unmasked: never read */
    adv[0] = 0.7f; adv[1] = -1.3f;
}

static void test_pg_gradient_finite_differences(void) {
    float z[B_ * H_ * V_], d[B_ * H_ * V_], m[B_ * H_], adv[B_];
    int y[B_ * H_];
    pg_case(z, y, m, adv);
    float loss = opd_pg_loss(z, y, m, adv, B_, H_, V_, d);
    CU_ASSERT_FATAL(isfinite(loss));
    /* the loss by hand: -(1/5) sum_masked A_b log p(y) */
    double want = 0.0;
    for (int i = 0; i < B_ * H_ - 1; i++) {
        float lp[V_];
        opd_log_softmax(lp, z + i * V_, V_);
        want -= adv[i / H_] * lp[y[i]] / 5.0;
    }
    CU_ASSERT_DOUBLE_EQUAL(loss, want, 1e-6);
    double worst = 0.0;
    const float h = 1e-2f;
    for (int i = 0; i < B_ * H_ * V_; i++) {
        float keep = z[i];
        z[i] = keep + h;
        double up = opd_pg_loss(z, y, m, adv, B_, H_, V_, NULL);
        z[i] = keep - h;
        double dn = opd_pg_loss(z, y, m, adv, B_, H_, V_, NULL);
        z[i] = keep;
        double fd = (up - dn) / (2.0 * h);
        double e = fabs(fd - d[i]);
        if (e > worst) worst = e;
    }
    printf("\n      loss %.6f, max |analytic - central difference| %.2e", loss, worst);
    CU_ASSERT(worst < 2e-4);
    /* the unmasked row has no gradient */
    for (int v = 0; v < V_; v++) CU_ASSERT_EQUAL(d[(B_ * H_ - 1) * V_ + v], 0.0f);
}

static void test_pg_zero_advantage(void) {
    float z[B_ * H_ * V_], d[B_ * H_ * V_], m[B_ * H_], adv[B_];
    int y[B_ * H_];
    pg_case(z, y, m, adv);
    adv[0] = adv[1] = 0.0f;
    CU_ASSERT_EQUAL(opd_pg_loss(z, y, m, adv, B_, H_, V_, d), 0.0f);
    for (int i = 0; i < B_ * H_ * V_; i++) CU_ASSERT_EQUAL(d[i], 0.0f);
    /* no masked token at all: 0 and no gradient, whatever the advantage */
    pg_case(z, y, m, adv);
    memset(m, 0, sizeof m);
    CU_ASSERT_EQUAL(opd_pg_loss(z, y, m, adv, B_, H_, V_, d), 0.0f);
    for (int i = 0; i < B_ * H_ * V_; i++) CU_ASSERT_EQUAL(d[i], 0.0f);
}

static void test_pg_unit_advantage_is_cross_entropy(void) {
    /* A = 1 everywhere: the policy gradient is maximum likelihood on the
     * rollout, the SFT loss of opd_cross_entropy */
    float z[B_ * H_ * V_], d[B_ * H_ * V_], dx[B_ * H_ * V_], m[B_ * H_], adv[B_] = {1, 1};
    int y[B_ * H_];
    float a0[B_];
    pg_case(z, y, m, a0);
    y[B_ * H_ - 1] = 0;  /* opd_cross_entropy reads every target */
    float pg = opd_pg_loss(z, y, m, adv, B_, H_, V_, d);
    float ce = opd_cross_entropy(z, y, m, B_, H_, V_, dx);
    CU_ASSERT_DOUBLE_EQUAL(pg, ce, 1e-6);
    CU_ASSERT(opd_max_abs_diff(d, dx, B_ * H_ * V_) < 1e-6);
}

static void test_pg_threads_and_errors(void) {
    /* a batch big enough for the parallel path: the same bits on 1 and 3 threads */
    int B = 8, H = 80, V = 64;  /* B H V >= 32768: the parallel path */
    size_t N = (size_t)B * H;
    float *z = malloc(N * V * sizeof *z), *d1 = malloc(N * V * sizeof *d1), *d3 = malloc(N * V * sizeof *d3);
    float *m = malloc(N * sizeof *m), adv[8];
    int *y = malloc(N * sizeof *y);
    for (size_t i = 0; i < N * V; i++) z[i] = 4.0f * opd_uniform(3, 2, 0, (uint32_t)i, 1) - 2.0f;
    for (size_t i = 0; i < N; i++) { y[i] = (int)(i * 7 % V); m[i] = (i % H) < 60 + (i / H) ? 1.0f : 0.0f; }
    for (int b = 0; b < B; b++) adv[b] = (float)(b - 3.5) / 2.0f;
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    float l1 = opd_pg_loss(z, y, m, adv, B, H, V, d1);
    omp_set_num_threads(3);
    float l3 = opd_pg_loss(z, y, m, adv, B, H, V, d3);
    omp_set_num_threads(nt);
    CU_ASSERT(memcmp(&l1, &l3, sizeof l1) == 0);
    CU_ASSERT(memcmp(d1, d3, N * V * sizeof *d1) == 0);
    /* errors: NaN, outputs zeroed, the message names the culprit */
    y[5] = V;
    CU_ASSERT(isnan(opd_pg_loss(z, y, m, adv, B, H, V, d1)));
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "y[5]"));
    CU_ASSERT_EQUAL(d1[0], 0.0f);
    y[5] = 0;
    adv[2] = INFINITY;
    CU_ASSERT(isnan(opd_pg_loss(z, y, m, adv, B, H, V, NULL)));
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "adv[2]"));
    adv[2] = 0.0f;
    m[0] = -1.0f;
    CU_ASSERT(isnan(opd_pg_loss(z, y, m, adv, B, H, V, NULL)));
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "mask[0]"));
    free(z); free(d1); free(d3); free(m); free(y);
}

/* ---------------------------------------------------- the RL step's wiring */
/* A verifier stand-in: every rollout gets the reward ctx says; kind 0 all
 * equal (1), 1 alternating within each group, 2 a failing verifier. */
static int stub_reward(void *ctx, const opd_rollout *r, float *rewards) {
    int kind = *(const int *)ctx;
    if (kind == 2) return opd_set_error("stub verifier failed");
    for (int b = 0; b < r->B; b++) rewards[b] = kind == 0 ? 1.0f : (float)(b % 2);
    return 0;
}

/* One opd_rl_step of a tiny random model on 2 prompts x 4 samples; the
 * parameters before and after in *before / m. */
static int rl_step_case(int kind, opd_model *m, float **before, opd_rl_stats *st) {
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.vocab_size = 16; cfg.d_model = 16; cfg.n_layers = 1; cfg.n_heads = 2; cfg.n_kv_heads = 1;
    cfg.d_ff = 32; cfg.max_seq_len = 16;
    CU_ASSERT_EQUAL_FATAL(opd_model_init(m, &cfg), 0);
    opd_model_init_random(m, 7);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.weight_decay = 0.0f;
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, m->num_params);
    *before = malloc(m->num_params * sizeof **before);
    memcpy(*before, m->params_mem, m->num_params * sizeof **before);
    opd_rl_config c;
    memset(&c, 0, sizeof c);
    opd_sampler_config_default(&c.rollout.sampler);
    c.rollout.eos_id = -1;   /* every rollout runs to T */
    c.rollout.seed = 3;
    c.max_new_tokens = 6;
    c.group = 4;
    int prompts[8 * 3], pad[8] = {0};
    uint32_t ids[8];
    for (int b = 0; b < 8; b++) {
        ids[b] = (uint32_t)b;
        for (int t = 0; t < 3; t++) prompts[b * 3 + t] = 3 + (b / 4) * 5 + t;   /* one prompt per group */
    }
    opd_step_work w;
    memset(&w, 0, sizeof w);
    int rc = opd_rl_step(m, &opt, &c, prompts, pad, ids, 2, 3, 0, stub_reward, &kind, &w, st);
    opd_step_work_free(&w);
    opd_adamw_free(&opt);
    return rc;
}

static void test_rl_step_no_signal_no_gradient(void) {
    /* every group all-equal: advantages 0, so the loss, every gradient and
     * (first step, zero moments, no decay) the update are exactly 0 */
    opd_model m;
    float *before;
    opd_rl_stats st;
    CU_ASSERT_EQUAL_FATAL(rl_step_case(0, &m, &before, &st), 0);
    CU_ASSERT_EQUAL(st.mean_reward, 1.0f);
    CU_ASSERT_EQUAL(st.groups_with_signal, 0.0f);
    CU_ASSERT_EQUAL(st.tokens, 8 * 6);
    CU_ASSERT_EQUAL(st.trained_len, 6);
    CU_ASSERT_EQUAL(st.loss, 0.0f);
    CU_ASSERT_EQUAL(st.grad_norm, 0.0f);
    int nonzero = 0;
    for (size_t i = 0; i < m.num_params; i++) nonzero += m.grads_mem[i] != 0.0f;
    CU_ASSERT_EQUAL(nonzero, 0);
    CU_ASSERT(memcmp(before, m.params_mem, m.num_params * sizeof *before) == 0);
    free(before);
    opd_model_free(&m);
}

static void test_rl_step_signal_moves_weights(void) {
    /* rewards {0,1,0,1} in both groups: every group has signal */
    opd_model m;
    float *before;
    opd_rl_stats st;
    CU_ASSERT_EQUAL_FATAL(rl_step_case(1, &m, &before, &st), 0);
    CU_ASSERT_EQUAL(st.mean_reward, 0.5f);
    CU_ASSERT_EQUAL(st.groups_with_signal, 1.0f);
    CU_ASSERT(st.grad_norm > 0.0f && isfinite(st.loss));
    CU_ASSERT(memcmp(before, m.params_mem, m.num_params * sizeof *before) != 0);
    free(before);
    opd_model_free(&m);
    /* a failing verifier fails the step, weights untouched */
    CU_ASSERT_EQUAL(rl_step_case(2, &m, &before, &st), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "stub verifier"));
    CU_ASSERT(memcmp(before, m.params_mem, m.num_params * sizeof *before) == 0);
    free(before);
    opd_model_free(&m);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case grpo[] = {
        {"advantages of {1,0,0,1}, {1,1,1,1}, {0,0,1,0} by hand", test_advantages_by_hand},
        {"equal rewards and G = 1 give 0; eps = 0; bad rewards refused", test_advantages_equal_and_single},
        {"pg loss by hand; gradient = central differences; unmasked rows 0", test_pg_gradient_finite_differences},
        {"zero advantage or no masked token: zero loss and gradient", test_pg_zero_advantage},
        {"unit advantage: the pg loss is the cross-entropy", test_pg_unit_advantage_is_cross_entropy},
        {"same bits on 1 and 3 threads; bad inputs give NaN", test_pg_threads_and_errors},
        {"RL step, every group all-equal: zero loss, gradient and update", test_rl_step_no_signal_no_gradient},
        {"RL step, a signal in every group moves the weights; a failing verifier fails", test_rl_step_signal_moves_weights},
        {0, 0}};
    opd_test_suite("grpo", grpo);
    return opd_test_run();
}
