/* opd_distill.h — distillation: the losses, the horizon schedules, one OPD step and its stages, SFT.
 * Part of the public API; include "opd.h", which includes every part in
 * order (a part relies on the ones before it). */
#ifndef OPD_API_DISTILL_H
#define OPD_API_DISTILL_H

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------ distillation losses */
typedef enum {
    OPD_LOSS_RKL_SAMPLED = 0, /* token-level sampled reverse KL as a reward (paper, Tinker) */
    OPD_LOSS_RKL_FULL,        /* full-vocabulary reverse KL                             */
    OPD_LOSS_FKL,             /* forward KL                                             */
    OPD_LOSS_JSD,             /* generalized JSD(beta): beta=0 forward, beta=1 reverse  */
    OPD_LOSS_RKL_TOPK,        /* reverse KL on the teacher's top-k tokens, renormalised */
    OPD_LOSS_RKL_SEQ          /* sequence-level: advantage = discounted sum of rewards  */
} opd_loss_kind;
typedef enum { OPD_REDUCE_TOKEN_MEAN = 0, OPD_REDUCE_SEQ_MEAN = 1 } opd_reduction;

typedef struct {
    opd_loss_kind kind;
    opd_reduction reduction;
    float reward_clamp;  /* clamp r_t to [-c, c]; <= 0 disables */
    float beta;          /* JSD */
    int topk;            /* teacher top-k */
    float gamma;         /* sequence-level discount (0 == token level) */
} opd_loss_config;

void opd_loss_config_default(opd_loss_config *c);
const char *opd_loss_name(opd_loss_kind k);
int opd_loss_parse(const char *name, opd_loss_kind *k);
/* s_logits, t_logits (B, trained_len, V): student and teacher logits predicting the trained_len
 * rollout tokens y (B, trained_len); mask (B, trained_len); sampler_lp (B, trained_len) or NULL (importance
 * weight 1). Writes dlogits (B, trained_len, V) = d loss / d s_logits (overwrites),
 * per_token (B, trained_len) the loss term of each token (NULL ok) and rkl (B, trained_len) the
 * exact full-vocabulary reverse KL per token for logging (NULL ok).
 * Returns the reduced loss. */
float opd_distill_loss(const opd_loss_config *c, const float *s_logits,
                       const float *t_logits, const int *y, const float *mask,
                       const float *sampler_lp, int B, int trained_len, int V,
                       float *dlogits, float *per_token, float *rkl);
/* The same with the reduction's normaliser given (> 0): a micro-batch of a
 * step (ref/dist.c) divides by the whole step's masked-token count (token
 * mean) or its number of sequences with a masked token (sequence mean).
 * norm < 0 takes this batch's own, which is opd_distill_loss bit for bit.
 * Returns the reduced loss in double (the partial sums are added across
 * micro-batches). */
double opd_distill_loss_norm(const opd_loss_config *c, const float *s_logits,
                             const float *t_logits, const int *y, const float *mask,
                             const float *sampler_lp, int B, int trained_len, int V,
                             float *dlogits, float *per_token, float *rkl, double norm);
/* That normaliser of this batch alone (an integer for a 0/1 mask). */
double opd_loss_local_norm(opd_reduction red, const float *mask, int B, int trained_len);

/* -------------------------------------------------------- horizon schedules */
typedef enum {
    OPD_SCHED_FULL = 0,       /* OPD:  H_k = T                                   */
    OPD_SCHED_PROGRESSIVE,    /* POPD: H_k = min(T, H0 + dH * floor(k / dk))     */
    OPD_SCHED_LINEAR,         /* min(T, H0 + (T - H0) * k / total_steps), ceil   */
    OPD_SCHED_GEOMETRIC,      /* min(T, ceil(H0 * growth^floor(k / dk)))         */
    OPD_SCHED_TRUNCATED,      /* TOPD: H_k = ceil(rho * T)                       */
    OPD_SCHED_ADAPTIVE        /* H_k from a probe's measured top-k overlap:      */
                              /* opd_adaptive_next_horizon every dk steps        */
} opd_schedule_kind;

typedef struct {
    opd_schedule_kind kind;
    int max_new_tokens; /* T, the full horizon: the most tokens a rollout generates */
    int H0, dH, dk;     /* progressive / geometric start, increment, period */
    float rho;          /* truncated fraction */
    float growth;       /* geometric factor */
    long total_steps;   /* linear */
    /* adaptive: the rule's threshold on the probe's mean top-k overlap per
     * bucket (ref/adaptive.h, default 0.5), and its state, the current H:
     * the caller sets it after each probe (opd_adaptive_next_horizon) and
     * --resume restores it; 0 means H0 */
    float threshold;
    int horizon_now;
} opd_schedule;

void opd_schedule_default(opd_schedule *s, opd_schedule_kind kind, int max_new_tokens);
int opd_schedule_validate(const opd_schedule *s);
int opd_schedule_horizon(const opd_schedule *s, long k);
const char *opd_schedule_name(opd_schedule_kind k);
int opd_schedule_parse(const char *name, opd_schedule_kind *k);

/* ------------------------------------------------------------ one OPD step */
/* KL by rollout position is logged in this many equal buckets of the full
 * horizon T, so a truncated run shows which part of T it trained on. */
#define OPD_KL_BUCKETS 4

/* ref/adaptive.h: per-position reverse KL and top-k overlap of a step */
typedef struct opd_position_diag opd_position_diag;

typedef struct {
    opd_schedule schedule;       /* H_k */
    opd_loss_config loss;
    opd_rollout_config rollout;  /* sampler, eos/pad ids, seed (step set per call) */
    float teacher_temperature;   /* the teacher scores at temperature 1 (ref/SPEC.md section 4) */
    /* NULL, or where the CPU step adds each trained position's reverse KL
     * and top-k overlap (positions.csv); it only reads logits the step
     * computed anyway, so no trained bit depends on it */
    opd_position_diag *positions;
} opd_distill_config;

typedef struct {
    long step;                   /* k */
    int horizon;                 /* H_k */
    int trained_len;             /* longest rollout in the batch (<= H_k) */
    long tokens;                 /* generated tokens in the loss mask */
    int truncated;               /* sequences cut by the horizon */
    float loss;                  /* reduced loss (see loss.reduction) */
    float mean_rkl;              /* exact reverse KL, token mean over the mask */
    float kl_bucket[OPD_KL_BUCKETS];  /* mean reverse KL by position bucket of T (NaN: empty) */
    float grad_norm, lr;
    double sec_rollout, sec_teacher, sec_student, sec_optim;
    long peak_rss_kb;            /* the max over ranks (ref/opd_dist.h) */
    double sec_combine;          /* the ranks' combination of gradients (0 on one rank) */
    long peak_rss_kb_sum;        /* summed over ranks */
} opd_step_stats;

/* The rollout compacted to its trained length: the step trains on the
 * trained_len <= H_k positions up to the longest rollout of the batch, not on
 * H_k (when every sequence stopped at EOS early, the rest is all masked).
 * S = P + trained_len - 1 tokens [x; y_1 .. y_{trained_len - 1}] are scored
 * by both models; rows P-1 .. S-1 of their logits predict y. */
typedef struct {
    int B, P, horizon, trained_len, S;
    int *pad;             /* (B)              left padding of each prompt   */
    int *tokens;          /* (B, S)           [x; y] scored by both models */
    int *y;               /* (B, trained_len) rollout tokens                */
    float *mask;          /* (B, trained_len) 1 where y is in the loss      */
    float *sampler_lp;    /* (B, trained_len) sampler log-probs of y        */
    size_t cap_b, cap_bs, cap_bh;
} opd_step_batch;

/* Work buffers of the CPU step, grown on demand and kept across steps. */
typedef struct {
    opd_rollout roll;
    opd_step_batch batch;
    float *s_logits, *t_logits, *dlogits_h;   /* (B, trained_len, V) */
    float *dlogits;       /* (B, S, V) dlogits_h scattered back for the backward */
    float *per_token, *rkl;                   /* (B, trained_len) */
    size_t cap_bh, cap_bs;
} opd_step_work;

void opd_distill_config_default(opd_distill_config *c, int max_new_tokens);
void opd_step_work_free(opd_step_work *w);
/* grow w's loss buffers to bh = B * trained_len and bs = B * S rows */
void opd_step_work_reserve(opd_step_work *w, size_t bh, size_t bs, int V);
/* One step of ref/SPEC.md section 6 on a batch of B left-padded prompts (B, P):
 * roll out the student to H_k, score [x; y] with one teacher forward, student
 * forward + backward of the loss on the rollout tokens, clip, AdamW.
 * seq_ids (B) key the sampler. Only the H_k (or fewer, if every sequence hit
 * EOS earlier) positions are generated, scored and trained on. */
int opd_distill_step(opd_model *student, opd_model *teacher, opd_adamw *opt,
                     const opd_distill_config *c, const int *prompts,
                     const int *pad, const uint32_t *seq_ids, int B, int P,
                     long k, opd_step_work *w, opd_step_stats *st);

/* The stages of opd_distill_step, in its order (ref/opd_step.c). The CPU
 * step, the CUDA step (gpu/step_cuda.c) and the golden writer
 * (golden/write.c) call the same ones; only the rollout, the forwards, the
 * backward and the update have a device form of their own. */
/* 1. H_k of step k; -1 if P + H_k does not fit either model. */
int opd_step_horizon(const opd_distill_config *c, long k, int P,
                     const opd_config *student, const opd_config *teacher, int *horizon);
/* 2. the student's rollout to H_k, keyed by step k (CPU form). */
int opd_step_rollout(const opd_model *student, const opd_distill_config *c, long k,
                     const int *prompts, const int *pad, const uint32_t *seq_ids,
                     int B, int P, int horizon, opd_rollout *r);
/* 3. compaction of the rollout's (B, H_k) arrays into the (B, trained_len)
 * views of sb; fills st->tokens, truncated, trained_len. -1 if the rollout
 * generated nothing. */
int opd_step_compact(const opd_rollout *r, opd_step_batch *sb, opd_step_stats *st);
void opd_step_batch_free(opd_step_batch *sb);
/* Rows P-1 .. S-1 of logits (B, S, V) into dst (B, trained_len, V), and back
 * (zeros elsewhere), the CPU forms of the views' row mapping. */
void opd_step_gather_logits(float *dst, const float *logits, const opd_step_batch *sb, int V);
void opd_step_scatter_dlogits(float *dlogits, const float *dh, const opd_step_batch *sb, int V);
/* 4. one teacher forward over sb->tokens: t_logits (B, trained_len, V),
 * divided by the teacher temperature unless it is 1. */
void opd_step_teacher_score(opd_model *teacher, const opd_step_batch *sb,
                            float temperature, float *t_logits);
/* 5. the student forward over the same tokens: s_logits (B, trained_len, V);
 * student->acts keeps every layer for the backward. */
void opd_step_student_forward(opd_model *student, const opd_step_batch *sb, float *s_logits);
/* 6. the loss on the views, its dlogits scattered to (B, S, V), and the
 * student backward into freshly zeroed gradients. w->dlogits_h, per_token and
 * rkl hold the loss's outputs afterwards. Returns the loss. */
float opd_step_loss_backward(opd_model *student, const opd_loss_config *lc,
                             const opd_step_batch *sb, opd_step_work *w);
/* The same with the loss's normaliser given (opd_distill_loss_norm; < 0:
 * the batch's own); the loss in double. */
double opd_step_loss_backward_norm(opd_model *student, const opd_loss_config *lc,
                                   const opd_step_batch *sb, opd_step_work *w, double norm);
/* 7. statistics: reverse KL token mean, and by position bucket of the full
 * horizon T = max_new_tokens, from rkl (B, trained_len). */
void opd_step_kl_stats(const opd_step_batch *sb, const float *rkl, int max_new_tokens,
                       opd_step_stats *st);
/* Its sums, to add over micro-batches: sum (1 + OPD_KL_BUCKETS) = the
 * reverse KL summed overall and by bucket, cnt the tokens counted (adds to
 * both arrays); and the means from them. */
void opd_step_kl_sums(const opd_step_batch *sb, const float *rkl, int max_new_tokens,
                      double *sum, long *cnt);
void opd_step_kl_means(const double *sum, const long *cnt, opd_step_stats *st);
/* 8. clip + AdamW; a non-finite loss or gradient is refused before it
 * reaches the weights, so the last checkpoint stays usable. */
int opd_step_update(opd_model *student, opd_adamw *opt, long k, opd_step_stats *st);

/* One supervised (SFT) step: next-token cross-entropy on sequences (B, S),
 * left-padded by pad (B), trained where loss_mask (B, S) is 1 (loss_mask[t]
 * marks the prediction of tokens[t+1] from position t; the last column is
 * ignored). Clip + AdamW. Returns 0, or -1 on a non-finite loss/gradient
 * (weights untouched then). */
int opd_sft_step(opd_model *m, opd_adamw *opt, const int *tokens, const int *pad,
                 const float *loss_mask, int B, int S, float *loss, float *grad_norm);

#ifdef __cplusplus
}
#endif
#endif /* OPD_API_DISTILL_H */
