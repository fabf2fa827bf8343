/* step_cuda.c — one on-policy distillation step on the GPU (ref/SPEC.md section 6):
 * the rollout of ref/rollout.c and the step of ref/opd_step.c, with the
 * models, the logits and the optimizer moments on the device. Host C only;
 * the control flow (EOS bookkeeping, masks, the horizon) stays on the host
 * exactly as on the CPU, the arithmetic goes through opd_cuda_* calls.
 *
 * Following the horizon: the schedule gives H_k on the host; the rollout's
 * KV cache holds P + H_k positions; teacher and student run over
 * S = P + trained_len - 1 tokens (trained_len <= H_k, the longest rollout);
 * every device buffer of the step is sized by trained_len, never by the full
 * horizon T. */
#include "opd_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TRY(call) do { if ((call) != 0) return -1; } while (0)

/* ------------------------------------------------------------ rollouts */
/* Device buffers of one rollout (B, V) and the host mirrors of the
 * per-token values the host's loop needs. */
typedef struct {
    opd_cuda_kv_cache cache;
    opd_cuda_decode_scratch ds;
    float *logits;           /* device (B, V) */
    int *pad, *tok_in;       /* device (B): pads; the tokens fed to the decode step */
    uint32_t *seq, *pos;     /* device (B): the sampler's key */
    int *tok_out;            /* device (B): sampled tokens */
    float *lp_out;           /* device (B): their log-probs */
    int *h_tok_in, *h_tok_out, *done;   /* host (B) */
    uint32_t *h_pos;         /* host (B) */
    float *h_lp;             /* host (B) */
} rollout_bufs;

static void rollout_bufs_free(rollout_bufs *r) {
    opd_cuda_kv_cache_free(&r->cache);
    opd_cuda_decode_scratch_free(&r->ds);
    opd_cuda_free(r->logits); opd_cuda_free(r->pad); opd_cuda_free(r->tok_in);
    opd_cuda_free(r->seq); opd_cuda_free(r->pos); opd_cuda_free(r->tok_out); opd_cuda_free(r->lp_out);
    free(r->h_tok_in); free(r->h_tok_out); free(r->done); free(r->h_pos); free(r->h_lp);
    memset(r, 0, sizeof *r);
}

static int rollout_bufs_init(opd_cuda *cu, rollout_bufs *r, const opd_config *cfg, int B, int S) {
    memset(r, 0, sizeof *r);
    size_t V = cfg->vocab_size;
    TRY(opd_cuda_kv_cache_init(cu, &r->cache, cfg, B, S));
    TRY(opd_cuda_decode_scratch_init(cu, &r->ds, cfg, B, S));
    TRY(opd_cuda_alloc(cu, (void **)&r->logits, (size_t)B * V * sizeof(float)));
    TRY(opd_cuda_alloc(cu, (void **)&r->pad, (size_t)B * sizeof(int)));
    TRY(opd_cuda_alloc(cu, (void **)&r->tok_in, (size_t)B * sizeof(int)));
    TRY(opd_cuda_alloc(cu, (void **)&r->seq, (size_t)B * sizeof(uint32_t)));
    TRY(opd_cuda_alloc(cu, (void **)&r->pos, (size_t)B * sizeof(uint32_t)));
    TRY(opd_cuda_alloc(cu, (void **)&r->tok_out, (size_t)B * sizeof(int)));
    TRY(opd_cuda_alloc(cu, (void **)&r->lp_out, (size_t)B * sizeof(float)));
    r->h_tok_in = opd_malloc(B * sizeof(int));
    r->h_tok_out = opd_malloc(B * sizeof(int));
    r->done = opd_calloc(B, sizeof(int));
    r->h_pos = opd_malloc(B * sizeof(uint32_t));
    r->h_lp = opd_malloc(B * sizeof(float));
    return 0;
}

/* The loop of opd_rollout_sample with the decode step and the sampler on
 * the device. One host round trip per generated token (B tokens and
 * log-probs down, B tokens up): the EOS bookkeeping stays on the host, in
 * the CPU's words. */
static int rollout_loop(opd_cuda *cu, const opd_cuda_model *student, rollout_bufs *r,
                        const int *prompts, int B, int P, int H, const opd_rollout_config *rc,
                        opd_rollout *out) {
    int S = P + H;
    /* prefill: the prompt positions one decode step at a time; the logits of
     * the last prompt position predict the first generated token */
    for (int t = 0; t < P; t++) {
        for (int b = 0; b < B; b++) r->h_tok_in[b] = prompts[(size_t)b * P + t];
        TRY(opd_cuda_upload(cu, r->tok_in, r->h_tok_in, B * sizeof(int)));
        TRY(opd_cuda_model_decode_step(cu, student, &r->cache, &r->ds, r->tok_in, r->pad, t, r->logits));
    }
    for (int i = 0; i < H; i++) {
        /* generated token i of every sequence, keyed by its stable id and
         * its index in the rollout, never its batch slot. Finished rows are
         * sampled too (one kernel for the batch) and their draws dropped;
         * their logits come from pad tokens, finite if the live rows' are. */
        for (int b = 0; b < B; b++) r->h_pos[b] = (uint32_t)i;
        TRY(opd_cuda_upload(cu, r->pos, r->h_pos, B * sizeof(uint32_t)));
        TRY(opd_cuda_sample_tokens(cu, r->tok_out, r->lp_out, r->logits, B, student->cfg.vocab_size,
                                   &rc->sampler, rc->seed, rc->step, r->seq, r->pos));
        TRY(opd_cuda_download(cu, r->h_tok_out, r->tok_out, B * sizeof(int)));
        TRY(opd_cuda_download(cu, r->h_lp, r->lp_out, B * sizeof(float)));
        for (int b = 0; b < B; b++) {
            int *row = out->tokens + (size_t)b * S;
            if (r->done[b]) { r->h_tok_in[b] = rc->pad_id; continue; }
            int tok = r->h_tok_out[b];
            row[P + i] = tok;
            out->mask[(size_t)b * H + i] = 1.0f;   /* EOS itself counts */
            out->logprobs[(size_t)b * H + i] = r->h_lp[b];
            out->length[b] = i + 1;
            if (tok == rc->eos_id) r->done[b] = 1;
            r->h_tok_in[b] = tok;
        }
        int all_done = 1;
        for (int b = 0; b < B; b++) all_done &= r->done[b];
        if (all_done || i == H - 1) break;
        /* feed token i at position P + i (finished rows carry pad_id) */
        TRY(opd_cuda_upload(cu, r->tok_in, r->h_tok_in, B * sizeof(int)));
        TRY(opd_cuda_model_decode_step(cu, student, &r->cache, &r->ds, r->tok_in, r->pad, P + i, r->logits));
    }
    /* a sequence without EOS was cut by the horizon: truncated, not failed */
    for (int b = 0; b < B; b++) out->truncated[b] = !r->done[b];
    return 0;
}

int opd_cuda_rollout_sample(opd_cuda *cu, const opd_cuda_model *student, const int *prompts,
                            const int *pad, const uint32_t *seq_ids, int B, int P, int H,
                            const opd_rollout_config *rc, opd_rollout *out) {
    memset(out, 0, sizeof *out);
    TRY(opd_rollout_check(&student->cfg, prompts, pad, B, P, H, rc));
    int S = P + H;   /* S: row length of out->tokens */
    out->B = B; out->P = P; out->H = H;
    out->tokens = opd_malloc((size_t)B * S * sizeof(int));
    out->pad = opd_malloc(B * sizeof(int));
    out->mask = opd_calloc((size_t)B * (H > 0 ? H : 1), sizeof(float));
    out->logprobs = opd_calloc((size_t)B * (H > 0 ? H : 1), sizeof(float));
    out->length = opd_calloc(B, sizeof(int));
    out->truncated = opd_calloc(B, sizeof(int));
    memcpy(out->pad, pad, B * sizeof(int));
    for (int b = 0; b < B; b++) {
        memcpy(out->tokens + (size_t)b * S, prompts + (size_t)b * P, P * sizeof(int));
        for (int i = 0; i < H; i++) out->tokens[(size_t)b * S + P + i] = rc->pad_id;
    }
    if (H == 0) {            /* nothing to generate: every sequence is cut */
        for (int b = 0; b < B; b++) out->truncated[b] = 1;
        return 0;
    }

    rollout_bufs r;
    int rc_ = rollout_bufs_init(cu, &r, &student->cfg, B, S);
    if (rc_ == 0) {
        out->peak_cache_bytes = 2.0 * r.cache.L * r.cache.B * r.cache.S * r.cache.kv_dim * sizeof(float);
        rc_ = opd_cuda_upload(cu, r.pad, pad, B * sizeof(int));
    }
    if (rc_ == 0) rc_ = opd_cuda_upload(cu, r.seq, seq_ids, B * sizeof(uint32_t));
    if (rc_ == 0) rc_ = rollout_loop(cu, student, &r, prompts, B, P, H, rc, out);
    rollout_bufs_free(&r);
    if (rc_ != 0) opd_rollout_free(out);
    return rc_;
}

/* ------------------------------------------------------------ optimizer */
int opd_cuda_adamw_init(opd_cuda *cu, opd_cuda_adamw *opt, const opd_adamw *host) {
    memset(opt, 0, sizeof *opt);
    opt->cfg = host->cfg;
    opt->n = host->n;
    opt->step = host->step;
    if (opd_cuda_alloc(cu, (void **)&opt->m, opt->n * sizeof(float)) != 0 ||
        opd_cuda_alloc(cu, (void **)&opt->v, opt->n * sizeof(float)) != 0 ||
        opd_cuda_upload(cu, opt->m, host->m, opt->n * sizeof(float)) != 0 ||
        opd_cuda_upload(cu, opt->v, host->v, opt->n * sizeof(float)) != 0) {
        opd_cuda_adamw_free(opt);
        return -1;
    }
    return 0;
}

int opd_cuda_adamw_download(opd_cuda *cu, opd_adamw *host, const opd_cuda_adamw *opt) {
    if (host->n != opt->n)
        return opd_set_error("opd_cuda_adamw_download: host optimizer holds %zu moments, device %zu",
                             host->n, opt->n);
    TRY(opd_cuda_download(cu, host->m, opt->m, opt->n * sizeof(float)));
    TRY(opd_cuda_download(cu, host->v, opt->v, opt->n * sizeof(float)));
    host->step = opt->step;
    return 0;
}

void opd_cuda_adamw_free(opd_cuda_adamw *opt) {
    opd_cuda_free(opt->m);
    opd_cuda_free(opt->v);
    memset(opt, 0, sizeof *opt);
}

/* ------------------------------------------------------- one OPD step */
/* The stages of ref/opd_step.c: the horizon, the compaction and the
 * statistics are the CPU's own functions, run on the host; the rollout, the
 * forwards, the loss, the backward and the update are the device forms. */
void opd_cuda_step_work_free(opd_cuda_step_work *w) {
    opd_rollout_free(&w->roll);
    opd_step_batch_free(&w->batch);
    opd_cuda_free(w->tokens); opd_cuda_free(w->y); opd_cuda_free(w->mask); opd_cuda_free(w->slp);
    opd_cuda_free(w->s_logits); opd_cuda_free(w->t_logits); opd_cuda_free(w->dlogits_h);
    opd_cuda_free(w->dlogits); opd_cuda_free(w->per_token); opd_cuda_free(w->rkl);
    opd_cuda_free(w->pad);
    free(w->h_rkl);
    memset(w, 0, sizeof *w);
}

/* work_reserve of ref/opd_step.c, on the device: bh = B * trained_len rows,
 * bs = B * S rows. A failed allocation leaves the capacity at 0, so the next
 * call allocates again. */
static int work_reserve(opd_cuda *cu, opd_cuda_step_work *w, size_t bh, size_t bs, size_t b, int V) {
    const size_t fl = sizeof(float);
    if (bh > w->cap_bh) {
        opd_cuda_free(w->s_logits); opd_cuda_free(w->t_logits); opd_cuda_free(w->dlogits_h);
        opd_cuda_free(w->per_token); opd_cuda_free(w->rkl);
        opd_cuda_free(w->y); opd_cuda_free(w->mask); opd_cuda_free(w->slp);
        free(w->h_rkl);
        w->s_logits = w->t_logits = w->dlogits_h = w->per_token = w->rkl = w->mask = w->slp = NULL;
        w->y = NULL;
        w->cap_bh = 0;
        TRY(opd_cuda_alloc(cu, (void **)&w->s_logits, bh * V * fl));
        TRY(opd_cuda_alloc(cu, (void **)&w->t_logits, bh * V * fl));
        TRY(opd_cuda_alloc(cu, (void **)&w->dlogits_h, bh * V * fl));
        TRY(opd_cuda_alloc(cu, (void **)&w->per_token, bh * fl));
        TRY(opd_cuda_alloc(cu, (void **)&w->rkl, bh * fl));
        TRY(opd_cuda_alloc(cu, (void **)&w->y, bh * sizeof(int)));
        TRY(opd_cuda_alloc(cu, (void **)&w->mask, bh * fl));
        TRY(opd_cuda_alloc(cu, (void **)&w->slp, bh * fl));
        w->h_rkl = opd_malloc(bh * fl);
        w->cap_bh = bh;
    }
    if (bs > w->cap_bs) {
        opd_cuda_free(w->tokens); opd_cuda_free(w->dlogits);
        w->tokens = NULL;
        w->dlogits = NULL;
        w->cap_bs = 0;
        TRY(opd_cuda_alloc(cu, (void **)&w->tokens, bs * sizeof(int)));
        TRY(opd_cuda_alloc(cu, (void **)&w->dlogits, bs * V * fl));
        w->cap_bs = bs;
    }
    if (b > w->cap_b) {
        opd_cuda_free(w->pad);
        w->pad = NULL;
        w->cap_b = 0;
        TRY(opd_cuda_alloc(cu, (void **)&w->pad, b * sizeof(int)));
        w->cap_b = b;
    }
    return 0;
}

/* opd_step_gather_logits / opd_step_scatter_dlogits with device copies:
 * rows P-1 .. S-1 of logits (B, S, V) predict the trained_len rollout tokens. */
static int gather_logits(opd_cuda *cu, float *dst, const float *logits, const opd_step_batch *sb, int V) {
    const size_t row = (size_t)sb->trained_len * V;
    for (int b = 0; b < sb->B; b++)
        TRY(opd_cuda_copy(cu, dst + b * row, logits + ((size_t)b * sb->S + sb->P - 1) * V,
                          row * sizeof(float)));
    return 0;
}

static int scatter_dlogits(opd_cuda *cu, float *dlogits, const float *dh, const opd_step_batch *sb, int V) {
    const size_t row = (size_t)sb->trained_len * V;
    TRY(opd_cuda_zero(cu, dlogits, (size_t)sb->B * sb->S * V * sizeof(float)));
    for (int b = 0; b < sb->B; b++)
        TRY(opd_cuda_copy(cu, dlogits + ((size_t)b * sb->S + sb->P - 1) * V, dh + b * row,
                          row * sizeof(float)));
    return 0;
}

/* The batch's views to the device. */
static int upload_batch(opd_cuda *cu, opd_cuda_step_work *w, const opd_step_batch *sb) {
    const size_t bh = (size_t)sb->B * sb->trained_len;
    TRY(opd_cuda_upload(cu, w->tokens, sb->tokens, (size_t)sb->B * sb->S * sizeof(int)));
    TRY(opd_cuda_upload(cu, w->pad, sb->pad, (size_t)sb->B * sizeof(int)));
    TRY(opd_cuda_upload(cu, w->y, sb->y, bh * sizeof(int)));
    TRY(opd_cuda_upload(cu, w->mask, sb->mask, bh * sizeof(float)));
    TRY(opd_cuda_upload(cu, w->slp, sb->sampler_lp, bh * sizeof(float)));
    return 0;
}

/* 4. opd_step_teacher_score on the device */
static int teacher_score(opd_cuda *cu, opd_cuda_model *teacher, const opd_step_batch *sb,
                         float temperature, opd_cuda_step_work *w) {
    const int V = teacher->cfg.vocab_size;
    TRY(opd_cuda_model_forward_inference(cu, teacher, w->tokens, w->pad, sb->B, sb->S));   /* logits only */
    TRY(gather_logits(cu, w->t_logits, teacher->acts.logits, sb, V));
    if (temperature != 1.0f)
        TRY(opd_cuda_scale(cu, w->t_logits, 1.0f / temperature, (size_t)sb->B * sb->trained_len * V));
    return 0;
}

/* 5-6. opd_step_student_forward and opd_step_loss_backward on the device */
static int student_loss_backward(opd_cuda *cu, opd_cuda_model *student, const opd_loss_config *lc,
                                 const opd_step_batch *sb, opd_cuda_step_work *w, float *loss) {
    const int V = student->cfg.vocab_size;
    TRY(opd_cuda_model_forward(cu, student, w->tokens, w->pad, sb->B, sb->S));
    TRY(gather_logits(cu, w->s_logits, student->acts.logits, sb, V));
    TRY(opd_cuda_distill_loss(cu, loss, lc, w->s_logits, w->t_logits, w->y, w->mask, w->slp,
                              sb->B, sb->trained_len, V, w->dlogits_h, w->per_token, w->rkl));
    TRY(scatter_dlogits(cu, w->dlogits, w->dlogits_h, sb, V));
    TRY(opd_cuda_model_alloc_grads(cu, student));
    TRY(opd_cuda_model_zero_grads(cu, student));
    TRY(opd_cuda_model_backward(cu, student, w->dlogits));
    return 0;
}

/* 8. opd_step_update on the device */
static int update(opd_cuda *cu, opd_cuda_model *student, opd_cuda_adamw *opt, long k,
                  opd_step_stats *st) {
    float gnorm;
    TRY(opd_cuda_grad_norm(cu, &gnorm, student->grads_mem, student->num_params));
    if (!isfinite(st->loss) || !isfinite(gnorm))
        return opd_set_error("step %ld: non-finite loss %g or gradient norm %g", k, st->loss, gnorm);
    st->lr = opd_lr_at(&opt->cfg, opt->step);
    TRY(opd_cuda_adamw_update(cu, &st->grad_norm, student->params_mem, student->grads_mem,
                              opt->m, opt->v, &student->cfg, &opt->cfg, &opt->step));
    return 0;
}

int opd_cuda_distill_step(opd_cuda *cu, opd_cuda_model *student, opd_cuda_model *teacher,
                          opd_cuda_adamw *opt, const opd_distill_config *c, const int *prompts,
                          const int *pad, const uint32_t *seq_ids, int B, int P, long k,
                          opd_cuda_step_work *w, opd_step_stats *st) {
    const int V = student->cfg.vocab_size;
    if (teacher->cfg.vocab_size != V)
        return opd_set_error("teacher vocab %d != student vocab %d", teacher->cfg.vocab_size, V);
    if (opt->n != student->num_params)
        return opd_set_error("opd_cuda_distill_step: optimizer holds %zu moments, student has %zu parameters",
                             opt->n, student->num_params);
    memset(st, 0, sizeof *st);
    st->step = k;
    opd_step_batch *sb = &w->batch;

    /* 1. the horizon H_k */
    TRY(opd_step_horizon(c, k, P, &student->cfg, &teacher->cfg, &st->horizon));

    /* 2. the student's rollout to H_k (device); 3. its views (host) */
    double t0 = opd_time();
    opd_rollout_config rc = c->rollout;
    rc.step = (uint32_t)k;
    opd_rollout_free(&w->roll);
    TRY(opd_cuda_rollout_sample(cu, student, prompts, pad, seq_ids, B, P, st->horizon, &rc, &w->roll));
    int rc_ = opd_step_compact(&w->roll, sb, st);
    st->sec_rollout = opd_time() - t0;
    if (rc_ != 0) return -1;
    TRY(work_reserve(cu, w, (size_t)B * sb->trained_len, (size_t)B * sb->S, (size_t)B, V));
    TRY(upload_batch(cu, w, sb));

    /* 4. one teacher forward over [x; y] */
    t0 = opd_time();
    TRY(teacher_score(cu, teacher, sb, c->teacher_temperature, w));
    TRY(opd_cuda_sync(cu));
    st->sec_teacher = opd_time() - t0;

    /* 5. student forward; 6. the loss and the backward */
    t0 = opd_time();
    TRY(student_loss_backward(cu, student, &c->loss, sb, w, &st->loss));
    TRY(opd_cuda_sync(cu));
    st->sec_student = opd_time() - t0;

    /* 7. reverse KL overall and by position, on the host */
    TRY(opd_cuda_download(cu, w->h_rkl, w->rkl, (size_t)B * sb->trained_len * sizeof(float)));
    opd_step_kl_stats(sb, w->h_rkl, c->schedule.max_new_tokens, st);

    /* 8. clip + AdamW */
    t0 = opd_time();
    TRY(update(cu, student, opt, k, st));
    TRY(opd_cuda_sync(cu));
    st->sec_optim = opd_time() - t0;
    st->peak_rss_kb = opd_peak_rss_kb();
    return 0;
}
