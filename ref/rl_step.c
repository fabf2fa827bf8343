/* rl_step.c — one GRPO step on a verifiable reward (grpo.h, ref/SPEC.md
 * section 6b): the OPD step's stages (ref/opd_step.c) with the teacher
 * replaced by the caller's verifier and the distillation loss by the
 * policy-gradient loss.
 *
 * Following the horizon: RL needs a complete answer to score, so every
 * rollout runs to the full horizon T (stopping early only at EOS), and the
 * student trains on the trained_len <= T positions the batch generated. */
#include "grpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Mean reward and the fraction of groups that carry a gradient. rewards
 * (n_prompts, G). */
static void rl_reward_stats(const float *rewards, int n_prompts, int G, opd_rl_stats *st) {
    double sum = 0.0;
    int signal = 0;
    for (int p = 0; p < n_prompts; p++) {
        const float *r = rewards + (size_t)p * G;
        int equal = 1;
        for (int g = 0; g < G; g++) {
            sum += r[g];
            equal &= r[g] == r[0];
        }
        signal += !equal;
    }
    st->mean_reward = n_prompts > 0 ? (float)(sum / ((double)n_prompts * G)) : 0.0f;
    st->groups_with_signal = n_prompts > 0 ? (float)signal / (float)n_prompts : 0.0f;
}

float opd_rl_loss_backward(opd_model *student, const opd_step_batch *sb, const float *adv,
                           opd_step_work *w) {
    // s_logits and dlogits_h are (B, trained_len, V); dlogits is (B, S, V)
    const int V = student->cfg.vocab_size;
    float loss = opd_pg_loss(w->s_logits, sb->y, sb->mask, adv, sb->B, sb->trained_len, V, w->dlogits_h);
    if (isnan(loss)) return loss;
    opd_step_scatter_dlogits(w->dlogits, w->dlogits_h, sb, V);
    opd_model_alloc_grads(student);
    opd_model_zero_grads(student);
    opd_model_backward(student, w->dlogits);
    return loss;
}

int opd_rl_step(opd_model *student, opd_adamw *opt, const opd_rl_config *c,
                const int *prompts, const int *pad, const uint32_t *seq_ids, int n_prompts, int P,
                long k, opd_reward_fn reward, void *ctx, opd_step_work *w, opd_rl_stats *st) {
    const int V = student->cfg.vocab_size, G = c->group, T = c->max_new_tokens;
    memset(st, 0, sizeof *st);
    st->step = k;
    if (n_prompts < 1 || G < 1) return opd_set_error("rl step: bad shape %d prompts x %d samples", n_prompts, G);
    if (P + T > student->cfg.max_seq_len)
        return opd_set_error("prompt %d + max new tokens %d exceeds the student's max_seq_len %d",
                             P, T, student->cfg.max_seq_len);
    const int B = n_prompts * G;
    opd_step_batch *sb = &w->batch;
    /* the OPD stages fill an opd_step_stats; the fields RL logs are copied */
    opd_step_stats ost;
    memset(&ost, 0, sizeof ost);
    ost.step = k;

    /* 1. the student's rollout to T, keyed by (seed, k, seq_id) as distill's;
     * 2. its (B, trained_len) views */
    opd_distill_config dc;
    opd_distill_config_default(&dc, T);
    dc.rollout = c->rollout;
    double t0 = opd_time();
    if (opd_step_rollout(student, &dc, k, prompts, pad, seq_ids, B, P, T, &w->roll) != 0) return -1;
    int rc = opd_step_compact(&w->roll, sb, &ost);
    st->sec_rollout = opd_time() - t0;
    st->tokens = ost.tokens;
    st->truncated = ost.truncated;
    st->trained_len = ost.trained_len;
    if (rc != 0) return -1;
    opd_step_work_reserve(w, (size_t)B * sb->trained_len, (size_t)B * sb->S, V);

    /* 3. the verifier's rewards r (B); 4. A = group-normalised r (B) */
    float *r = opd_malloc((size_t)B * sizeof *r), *adv = opd_malloc((size_t)B * sizeof *adv);
    t0 = opd_time();
    rc = reward(ctx, &w->roll, r);
    if (rc == 0) {
        rl_reward_stats(r, n_prompts, G, st);
        rc = opd_grpo_advantages(r, n_prompts, G, OPD_GRPO_EPS, adv);
    }
    st->sec_reward = opd_time() - t0;

    /* 5. student forward; 6. the policy-gradient loss and the backward */
    if (rc == 0) {
        t0 = opd_time();
        opd_step_student_forward(student, sb, w->s_logits);
        /* + 0: a batch without signal logs 0, not opd_pg_loss's -0 */
        st->loss = ost.loss = opd_rl_loss_backward(student, sb, adv, w) + 0.0f;
        st->sec_student = opd_time() - t0;
        if (isnan(st->loss)) rc = -1;
    }
    free(r);
    free(adv);
    if (rc != 0) return -1;

    /* 7. clip + AdamW: the update of every step, also one without signal
     * (zero gradient), so the moments and the schedule advance as TRL's */
    t0 = opd_time();
    if (opd_step_update(student, opt, k, &ost) != 0) return -1;
    st->sec_optim = opd_time() - t0;
    st->grad_norm = ost.grad_norm;
    st->lr = ost.lr;
    st->peak_rss_kb = opd_peak_rss_kb();
    return 0;
}
