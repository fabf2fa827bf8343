/* loss_rows.h — one rollout position's loss term and its gradient, one
 * function per loss (ref/loss_rows.c); losses.c runs them over the batch and
 * reduces (internal to libopd; the public side is opd_distill_loss).
 *
 * Every row function returns the loss term l of its row and, when drow is
 * not NULL, writes drow (V) = omega * d l / d z_student (overwrites), omega
 * being the row's reduction weight. lq, lp (V) are the log-softmaxes of the
 * student and the teacher logits zs, zt (V); all row math is in double
 * (ref/SPEC.md section 4). */
#ifndef OPD_LOSS_ROWS_H
#define OPD_LOSS_ROWS_H

/* lp (V) = log_softmax(z) */
void opd_loss_log_softmax_row(double *lp, const float *z, int V);
/* sum_v q (lq - lp), the exact reverse KL the log reports for every loss */
double opd_loss_rkl_value(const double *lq, const double *lp, int V);

/* "rkl-full", given kl = opd_loss_rkl_value(lq, lp) */
double opd_loss_rkl_full_row(float *drow, double omega, const double *lq,
                             const double *lp, double kl, int V);
/* "fkl" */
double opd_loss_fkl_row(float *drow, double omega, const double *lq,
                        const double *lp, int V);
/* "jsd", 0 <= beta <= 1; g (V) is scratch */
double opd_loss_jsd_row(float *drow, double omega, const double *lq,
                        const double *lp, double kl, double beta, double *g, int V);

/* "rkl-topk": the scratch of one thread, k = min(topk, V) */
typedef struct { float val; int id; } opd_loss_scored_id;
typedef struct {
    int k;
    int *S;                   /* (k) the teacher's top-k ids */
    double *sub;              /* (2k) restricted log-softmaxes */
    opd_loss_scored_id *all;  /* (V) when k > 64: a full sort */
} opd_loss_topk_scratch;
void opd_loss_topk_scratch_init(opd_loss_topk_scratch *s, int k, int V);
void opd_loss_topk_scratch_free(opd_loss_topk_scratch *s);
double opd_loss_rkl_topk_row(float *drow, double omega, const float *zs,
                             const float *zt, const double *lq, const double *lp,
                             double kl, opd_loss_topk_scratch *s, int V);

/* "rkl" and "rkl-seq": the detached reward r = log pt(y) - log ps(y),
 * clamped to [-clamp, clamp] when clamp > 0 */
double opd_loss_reward(const double *lq, const double *lp, int y, double clamp);
/* the policy-gradient term of a row with importance weight w and advantage
 * A (A = r for "rkl"); lq_y = log ps(y); lq (V) is scratch */
double opd_loss_rkl_sampled_row(float *drow, double omega, double w, double A,
                                double lq_y, const float *zs, int y, double *lq, int V);

#endif
