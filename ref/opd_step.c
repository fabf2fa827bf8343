/* opd_step.c — one on-policy distillation step (ref/SPEC.md section 6).
 *
 * Following H_k through the step: the schedule gives H_k; the rollout
 * generates at most H_k tokens with a KV cache of P + H_k positions; teacher
 * and student run over the P + H' - 1 tokens that predict the H' <= H_k
 * generated ones; the loss mask covers exactly those tokens. Nothing in the
 * step is sized by the full horizon T. */
#include "opd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void opd_distill_config_default(opd_distill_config *c, int T) {
    memset(c, 0, sizeof *c);
    opd_schedule_default(&c->schedule, OPD_SCHED_FULL, T);
    opd_loss_config_default(&c->loss);
    opd_sampler_config_default(&c->rollout.sampler);
    c->rollout.eos_id = 2;
    c->rollout.pad_id = 0;
    c->rollout.seed = 1234;
    c->teacher_temperature = 1.0f;
}

void opd_step_work_free(opd_step_work *w) {
    opd_rollout_free(&w->roll);
    free(w->seq_tokens);
    free(w->s_logits);
    free(w->t_logits);
    free(w->dlogits_h);
    free(w->dlogits);
    free(w->per_token);
    free(w->rkl);
    memset(w, 0, sizeof *w);
}

static void work_reserve(opd_step_work *w, size_t bh, size_t bt, int V) {
    if (bh > w->cap_bh) {
        free(w->s_logits); free(w->t_logits); free(w->dlogits_h);
        free(w->per_token); free(w->rkl);
        w->s_logits = opd_malloc(bh * V * sizeof(float));
        w->t_logits = opd_malloc(bh * V * sizeof(float));
        w->dlogits_h = opd_malloc(bh * V * sizeof(float));
        w->per_token = opd_malloc(bh * sizeof(float));
        w->rkl = opd_malloc(bh * sizeof(float));
        w->cap_bh = bh;
    }
    if (bt > w->cap_bt) {
        free(w->seq_tokens); free(w->dlogits);
        w->seq_tokens = opd_malloc(bt * sizeof(int));
        w->dlogits = opd_malloc(bt * V * sizeof(float));
        w->cap_bt = bt;
    }
}

/* Rows P-1 .. P+H-2 of logits (B, Tq, V) predict the H rollout tokens. */
static void gather_rollout_logits(float *dst, const float *logits, int B, int Tq,
                                  int P, int H, int V) {
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * H * V, logits + ((size_t)b * Tq + P - 1) * V,
               (size_t)H * V * sizeof(float));
}

static void scatter_rollout_grads(float *dlogits, const float *dh, int B, int Tq,
                                  int P, int H, int V) {
    memset(dlogits, 0, (size_t)B * Tq * V * sizeof(float));
    for (int b = 0; b < B; b++)
        memcpy(dlogits + ((size_t)b * Tq + P - 1) * V, dh + (size_t)b * H * V,
               (size_t)H * V * sizeof(float));
}

int opd_distill_step(opd_model *student, opd_model *teacher, opd_adamw *opt,
                     const opd_distill_config *c, const int *prompts,
                     const int *pad, const uint32_t *seq_ids, int B, int P,
                     long k, opd_step_work *w, opd_step_stats *st) {
    const int V = student->cfg.vocab_size;
    if (teacher->cfg.vocab_size != V)
        return opd_set_error("teacher vocab %d != student vocab %d", teacher->cfg.vocab_size, V);
    memset(st, 0, sizeof *st);
    st->step = k;

    /* 1. the horizon of this step */
    const int H = opd_schedule_horizon(&c->schedule, k);
    st->horizon = H;
    if (P + H > student->cfg.max_seq_len || P + H > teacher->cfg.max_seq_len)
        return opd_set_error("prompt %d + horizon %d exceeds max_seq_len (student %d, teacher %d)",
                             P, H, student->cfg.max_seq_len, teacher->cfg.max_seq_len);

    /* 2. student rollout to H_k */
    double t0 = opd_time();
    opd_rollout_config rc = c->rollout;
    rc.step = (uint32_t)k;
    opd_rollout_free(&w->roll);
    if (opd_rollout_sample(student, prompts, pad, seq_ids, B, P, H, &rc, &w->roll) != 0) return -1;
    const opd_rollout *r = &w->roll;
    /* Train on the longest rollout in the batch, not on H: when every
     * sequence stopped at EOS early, the positions after it are all masked. */
    int Hs = 0;
    for (int b = 0; b < B; b++) {
        if (r->length[b] > Hs) Hs = r->length[b];
        st->truncated += r->truncated[b];
    }
    for (size_t i = 0; i < (size_t)B * H; i++) st->tokens += r->mask[i] > 0.0f;
    st->trained_len = Hs;
    st->sec_rollout = opd_time() - t0;
    if (Hs == 0) return opd_set_error("step %ld: rollout generated no tokens", k);

    /* The scored sequence [x; y_1..y_{Hs-1}]: its last Hs rows predict y. */
    const int Tq = P + Hs - 1;
    work_reserve(w, (size_t)B * Hs, (size_t)B * Tq, V);
    for (int b = 0; b < B; b++)
        memcpy(w->seq_tokens + (size_t)b * Tq, r->tokens + (size_t)b * (P + H), (size_t)Tq * sizeof(int));
    /* compact (B, Hs) views of the rollout's (B, H) arrays */
    int *y = opd_malloc((size_t)B * Hs * sizeof(int));
    float *mask = opd_malloc((size_t)B * Hs * sizeof(float));
    float *slp = opd_malloc((size_t)B * Hs * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Hs; t++) {
            y[b * Hs + t] = r->tokens[(size_t)b * (P + H) + P + t];
            mask[b * Hs + t] = r->mask[(size_t)b * H + t];
            slp[b * Hs + t] = r->logprobs[(size_t)b * H + t];
        }

    /* 3. one teacher forward over [x; y] */
    t0 = opd_time();
    opd_model_forward_inference(teacher, w->seq_tokens, pad, B, Tq);   /* logits only */
    gather_rollout_logits(w->t_logits, teacher->acts.logits, B, Tq, P, Hs, V);
    if (c->teacher_temperature != 1.0f) {
        float inv = 1.0f / c->teacher_temperature;
        for (size_t i = 0; i < (size_t)B * Hs * V; i++) w->t_logits[i] *= inv;
    }
    st->sec_teacher = opd_time() - t0;

    /* 4. student forward + backward of the loss on the rollout tokens */
    t0 = opd_time();
    opd_model_forward(student, w->seq_tokens, pad, B, Tq);
    gather_rollout_logits(w->s_logits, student->acts.logits, B, Tq, P, Hs, V);
    st->loss = opd_distill_loss(&c->loss, w->s_logits, w->t_logits, y, mask, slp,
                                B, Hs, V, w->dlogits_h, w->per_token, w->rkl);
    scatter_rollout_grads(w->dlogits, w->dlogits_h, B, Tq, P, Hs, V);
    opd_model_alloc_grads(student);
    opd_model_zero_grads(student);
    opd_model_backward(student, w->dlogits);
    st->sec_student = opd_time() - t0;

    /* reverse KL overall and by position bucket of the full horizon T */
    double kl_sum = 0, bsum[OPD_KL_BUCKETS] = {0}, bcnt[OPD_KL_BUCKETS] = {0}, n = 0;
    const int T = c->schedule.max_new_tokens;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Hs; t++) {
            if (mask[b * Hs + t] <= 0.0f) continue;
            double kl = w->rkl[b * Hs + t];
            int bk = (int)((long)t * OPD_KL_BUCKETS / T);
            if (bk >= OPD_KL_BUCKETS) bk = OPD_KL_BUCKETS - 1;
            kl_sum += kl; n += 1;
            bsum[bk] += kl; bcnt[bk] += 1;
        }
    st->mean_rkl = n > 0 ? (float)(kl_sum / n) : 0.0f;
    for (int i = 0; i < OPD_KL_BUCKETS; i++)
        st->kl_bucket[i] = bcnt[i] > 0 ? (float)(bsum[i] / bcnt[i]) : NAN;
    free(y);
    free(mask);
    free(slp);

    /* 5. clip + AdamW; a non-finite loss or gradient stops the run before it
     * reaches the weights, so the last checkpoint stays usable */
    t0 = opd_time();
    float gnorm = opd_grad_norm(student->grads_mem, student->num_params);
    if (!isfinite(st->loss) || !isfinite(gnorm))
        return opd_set_error("step %ld: non-finite loss %g or gradient norm %g", k, st->loss, gnorm);
    st->lr = opd_lr_at(&opt->cfg, opt->step);
    st->grad_norm = opd_adamw_update(opt, student);
    st->sec_optim = opd_time() - t0;
    st->peak_rss_kb = opd_peak_rss_kb();
    return 0;
}

int opd_sft_step(opd_model *m, opd_adamw *opt, const int *tokens, const int *pad,
                 const float *loss_mask, int B, int T, float *loss, float *grad_norm) {
    const int V = m->cfg.vocab_size;
    int *targets = opd_malloc(sizeof(int) * B * T);
    float *mask = opd_malloc(sizeof(float) * B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            int last = t == T - 1;
            targets[i] = last ? 0 : tokens[i + 1];
            mask[i] = last ? 0.0f : loss_mask[i];
        }
    float *dlogits = opd_malloc(sizeof(float) * B * T * V);
    opd_model_forward(m, tokens, pad, B, T);
    *loss = opd_cross_entropy(m->acts.logits, targets, mask, B, T, V, dlogits);
    opd_model_alloc_grads(m);
    opd_model_zero_grads(m);
    opd_model_backward(m, dlogits);
    free(dlogits);
    free(targets);
    free(mask);
    float gnorm = opd_grad_norm(m->grads_mem, m->num_params);
    if (!isfinite(*loss) || !isfinite(gnorm))
        return opd_set_error("SFT step: non-finite loss %g or gradient norm %g", *loss, gnorm);
    *grad_norm = opd_adamw_update(opt, m);
    return 0;
}
