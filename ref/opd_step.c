/* opd_step.c — one on-policy distillation step (ref/SPEC.md section 6), as
 * named stages that the CPU step below, the CUDA step (gpu/step_cuda.c) and
 * the golden writer (golden/golden.c) share.
 *
 * Following the horizon through the step: the schedule gives H_k; the
 * rollout generates at most H_k tokens with a KV cache of P + H_k positions;
 * teacher and student run over the S = P + trained_len - 1 tokens that
 * predict the trained_len <= H_k generated ones; the loss mask covers exactly
 * those tokens. Nothing in the step is sized by the full horizon T. */
#include "adaptive.h"

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

void opd_step_batch_free(opd_step_batch *sb) {
    free(sb->pad); free(sb->tokens); free(sb->y); free(sb->mask); free(sb->sampler_lp);
    memset(sb, 0, sizeof *sb);
}

void opd_step_work_free(opd_step_work *w) {
    opd_rollout_free(&w->roll);
    opd_step_batch_free(&w->batch);
    free(w->s_logits); free(w->t_logits); free(w->dlogits_h);
    free(w->dlogits); free(w->per_token); free(w->rkl);
    memset(w, 0, sizeof *w);
}

/* The loss's buffers for bh = B * trained_len rows and bs = B * S rows. */
void opd_step_work_reserve(opd_step_work *w, size_t bh, size_t bs, int V) {
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
    if (bs > w->cap_bs) {
        free(w->dlogits);
        w->dlogits = opd_malloc(bs * V * sizeof(float));
        w->cap_bs = bs;
    }
}

/* ------------------------------------------------------------ the stages */

int opd_step_horizon(const opd_distill_config *c, long k, int P,
                     const opd_config *student, const opd_config *teacher, int *horizon) {
    const int H = opd_schedule_horizon(&c->schedule, k);
    *horizon = H;
    if (P + H > student->max_seq_len || P + H > teacher->max_seq_len)
        return opd_set_error("prompt %d + horizon %d exceeds max_seq_len (student %d, teacher %d)",
                             P, H, student->max_seq_len, teacher->max_seq_len);
    return 0;
}

int opd_step_rollout(const opd_model *student, const opd_distill_config *c, long k,
                     const int *prompts, const int *pad, const uint32_t *seq_ids,
                     int B, int P, int horizon, opd_rollout *r) {
    opd_rollout_config rc = c->rollout;
    rc.step = (uint32_t)k;             /* the step is part of every draw's key */
    opd_rollout_free(r);
    return opd_rollout_sample(student, prompts, pad, seq_ids, B, P, horizon, &rc, r);
}

int opd_step_compact(const opd_rollout *r, opd_step_batch *sb, opd_step_stats *st) {
    const int B = r->B, P = r->P, H = r->H;
    int trained_len = 0;
    st->truncated = 0;
    st->tokens = 0;
    for (int b = 0; b < B; b++) {
        if (r->length[b] > trained_len) trained_len = r->length[b];
        st->truncated += r->truncated[b];
    }
    for (size_t i = 0; i < (size_t)B * H; i++) st->tokens += r->mask[i] > 0.0f;
    st->trained_len = trained_len;
    if (trained_len == 0) return opd_set_error("step %ld: rollout generated no tokens", st->step);

    const int S = P + trained_len - 1;
    const size_t bs = (size_t)B * S, bh = (size_t)B * trained_len;
    if ((size_t)B > sb->cap_b) {
        free(sb->pad);
        sb->pad = opd_malloc((size_t)B * sizeof(int));
        sb->cap_b = B;
    }
    if (bs > sb->cap_bs) {
        free(sb->tokens);
        sb->tokens = opd_malloc(bs * sizeof(int));
        sb->cap_bs = bs;
    }
    if (bh > sb->cap_bh) {
        free(sb->y); free(sb->mask); free(sb->sampler_lp);
        sb->y = opd_malloc(bh * sizeof(int));
        sb->mask = opd_malloc(bh * sizeof(float));
        sb->sampler_lp = opd_malloc(bh * sizeof(float));
        sb->cap_bh = bh;
    }
    sb->B = B; sb->P = P; sb->horizon = H; sb->trained_len = trained_len; sb->S = S;
    memcpy(sb->pad, r->pad, (size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        const int *row = r->tokens + (size_t)b * (P + H);   /* (P + H) */
        memcpy(sb->tokens + (size_t)b * S, row, (size_t)S * sizeof(int));
        for (int t = 0; t < trained_len; t++) {
            size_t i = (size_t)b * trained_len + t;
            sb->y[i] = row[P + t];
            sb->mask[i] = r->mask[(size_t)b * H + t];
            sb->sampler_lp[i] = r->logprobs[(size_t)b * H + t];
        }
    }
    return 0;
}

void opd_step_gather_logits(float *dst, const float *logits, const opd_step_batch *sb, int V) {
    const size_t row = (size_t)sb->trained_len * V;
    for (int b = 0; b < sb->B; b++)
        memcpy(dst + b * row, logits + ((size_t)b * sb->S + sb->P - 1) * V, row * sizeof(float));
}

void opd_step_scatter_dlogits(float *dlogits, const float *dh, const opd_step_batch *sb, int V) {
    const size_t row = (size_t)sb->trained_len * V;
    memset(dlogits, 0, (size_t)sb->B * sb->S * V * sizeof(float));
    for (int b = 0; b < sb->B; b++)
        memcpy(dlogits + ((size_t)b * sb->S + sb->P - 1) * V, dh + b * row, row * sizeof(float));
}

void opd_step_teacher_score(opd_model *teacher, const opd_step_batch *sb,
                            float temperature, float *t_logits) {
    const int V = teacher->cfg.vocab_size;
    opd_model_forward_inference(teacher, sb->tokens, sb->pad, sb->B, sb->S);  /* logits only */
    opd_step_gather_logits(t_logits, teacher->acts.logits, sb, V);
    if (temperature != 1.0f) {
        float inv = 1.0f / temperature;
        for (size_t i = 0; i < (size_t)sb->B * sb->trained_len * V; i++) t_logits[i] *= inv;
    }
}
void opd_step_student_forward(opd_model *student, const opd_step_batch *sb, float *s_logits) {
    opd_model_forward(student, sb->tokens, sb->pad, sb->B, sb->S);
    opd_step_gather_logits(s_logits, student->acts.logits, sb, student->cfg.vocab_size);
}

float opd_step_loss_backward(opd_model *student, const opd_loss_config *lc,
                             const opd_step_batch *sb, opd_step_work *w) {
    return (float)opd_step_loss_backward_norm(student, lc, sb, w, -1.0);
}

double opd_step_loss_backward_norm(opd_model *student, const opd_loss_config *lc,
                                   const opd_step_batch *sb, opd_step_work *w, double norm) {
    const int V = student->cfg.vocab_size;
    double loss = opd_distill_loss_norm(lc, w->s_logits, w->t_logits, sb->y, sb->mask, sb->sampler_lp,
                                        sb->B, sb->trained_len, V, w->dlogits_h, w->per_token, w->rkl,
                                        norm);
    opd_step_scatter_dlogits(w->dlogits, w->dlogits_h, sb, V);
    opd_model_alloc_grads(student);
    opd_model_zero_grads(student);
    opd_model_backward(student, w->dlogits);
    return loss;
}

void opd_step_kl_sums(const opd_step_batch *sb, const float *rkl, int max_new_tokens,
                      double *sum, long *cnt) {
    const int n_pos = sb->trained_len;
    for (int b = 0; b < sb->B; b++)
        for (int t = 0; t < n_pos; t++) {
            if (sb->mask[b * n_pos + t] <= 0.0f) continue;
            double kl = rkl[b * n_pos + t];
            int bk = (int)((long)t * OPD_KL_BUCKETS / max_new_tokens);
            if (bk >= OPD_KL_BUCKETS) bk = OPD_KL_BUCKETS - 1;
            sum[0] += kl; cnt[0] += 1;
            sum[1 + bk] += kl; cnt[1 + bk] += 1;
        }
}

void opd_step_kl_means(const double *sum, const long *cnt, opd_step_stats *st) {
    st->mean_rkl = cnt[0] > 0 ? (float)(sum[0] / (double)cnt[0]) : 0.0f;
    for (int i = 0; i < OPD_KL_BUCKETS; i++)
        st->kl_bucket[i] = cnt[1 + i] > 0 ? (float)(sum[1 + i] / (double)cnt[1 + i]) : NAN;
}

void opd_step_kl_stats(const opd_step_batch *sb, const float *rkl, int max_new_tokens,
                       opd_step_stats *st) {
    double sum[1 + OPD_KL_BUCKETS] = {0};
    long cnt[1 + OPD_KL_BUCKETS] = {0};
    opd_step_kl_sums(sb, rkl, max_new_tokens, sum, cnt);
    opd_step_kl_means(sum, cnt, st);
}

int opd_step_update(opd_model *student, opd_adamw *opt, long k, opd_step_stats *st) {
    float gnorm = opd_grad_norm(student->grads_mem, student->num_params);
    if (!isfinite(st->loss) || !isfinite(gnorm))
        return opd_set_error("step %ld: non-finite loss %g or gradient norm %g", k, st->loss, gnorm);
    st->lr = opd_lr_at(&opt->cfg, opt->step);
    st->grad_norm = opd_adamw_update(opt, student);
    return 0;
}

/* ------------------------------------------------------------ the step */

int opd_distill_step(opd_model *student, opd_model *teacher, opd_adamw *opt,
                     const opd_distill_config *c, const int *prompts,
                     const int *pad, const uint32_t *seq_ids, int B, int P,
                     long k, opd_step_work *w, opd_step_stats *st) {
    const int V = student->cfg.vocab_size;
    if (teacher->cfg.vocab_size != V)
        return opd_set_error("teacher vocab %d != student vocab %d", teacher->cfg.vocab_size, V);
    memset(st, 0, sizeof *st);
    st->step = k;
    opd_step_batch *sb = &w->batch;

    /* 1. the horizon H_k */
    if (opd_step_horizon(c, k, P, &student->cfg, &teacher->cfg, &st->horizon) != 0) return -1;

    /* 2. the student's rollout to H_k; 3. its (B, trained_len) views */
    double t0 = opd_time();
    if (opd_step_rollout(student, c, k, prompts, pad, seq_ids, B, P, st->horizon, &w->roll) != 0) return -1;
    int rc = opd_step_compact(&w->roll, sb, st);
    st->sec_rollout = opd_time() - t0;
    if (rc != 0) return -1;
    opd_step_work_reserve(w, (size_t)B * sb->trained_len, (size_t)B * sb->S, V);

    /* 4. one teacher forward over [x; y] */
    t0 = opd_time();
    opd_step_teacher_score(teacher, sb, c->teacher_temperature, w->t_logits);
    st->sec_teacher = opd_time() - t0;

    /* 5. student forward; 6. the loss and the backward */
    t0 = opd_time();
    opd_step_student_forward(student, sb, w->s_logits);
    st->loss = opd_step_loss_backward(student, &c->loss, sb, w);
    st->sec_student = opd_time() - t0;

    /* 7. reverse KL overall and by position; the per-position diagnostics
     * read the same logits and per-token KL (nothing trained changes) */
    opd_step_kl_stats(sb, w->rkl, c->schedule.max_new_tokens, st);
    if (c->positions &&
        opd_position_diag_add(c->positions, w->s_logits, w->t_logits, w->rkl, sb->mask, B,
                              sb->trained_len, V) != 0) return -1;

    /* 8. clip + AdamW */
    t0 = opd_time();
    if (opd_step_update(student, opt, k, st) != 0) return -1;
    st->sec_optim = opd_time() - t0;
    st->peak_rss_kb = st->peak_rss_kb_sum = opd_peak_rss_kb();
    return 0;
}

int opd_step_probe(opd_model *student, opd_model *teacher, const opd_distill_config *c, long k,
                   const int *prompts, const int *pad, const uint32_t *seq_ids, int B, int P,
                   int topk, opd_position_stats *profile, long *tokens) {
    const int V = student->cfg.vocab_size, T = c->schedule.max_new_tokens;
    *tokens = 0;
    if (P + T > student->cfg.max_seq_len || P + T > teacher->cfg.max_seq_len)
        return opd_set_error("probe: prompt %d + T %d exceeds max_seq_len (student %d, teacher %d)", P, T,
                             student->cfg.max_seq_len, teacher->cfg.max_seq_len);
    opd_rollout_config rc = c->rollout;
    rc.step = OPD_PROBE_STEP_KEY + (uint32_t)k;   /* its own draws: k < 2^30 */
    opd_step_work w;
    memset(&w, 0, sizeof w);
    opd_step_stats st;
    memset(&st, 0, sizeof st);
    st.step = k;
    int rc_ = opd_rollout_sample(student, prompts, pad, seq_ids, B, P, T, &rc, &w.roll);
    if (rc_ == 0) rc_ = opd_step_compact(&w.roll, &w.batch, &st);
    if (rc_ == 0) {
        const opd_step_batch *sb = &w.batch;
        *tokens = st.tokens;
        opd_step_work_reserve(&w, (size_t)B * sb->trained_len, 0, V);
        opd_step_teacher_score(teacher, sb, c->teacher_temperature, w.t_logits);
        opd_model_forward_inference(student, sb->tokens, sb->pad, B, sb->S);   /* no gradient */
        opd_step_gather_logits(w.s_logits, student->acts.logits, sb, V);
        rc_ = opd_position_overlap_add(profile, w.s_logits, w.t_logits, sb->mask, B, sb->trained_len, V,
                                       topk);
    }
    opd_step_work_free(&w);
    return rc_;
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
