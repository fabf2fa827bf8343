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
void loss_log_softmax_row(double *lp, const float *z, int V);
/* sum_v q (lq - lp), the exact reverse KL the log reports for every loss */
double loss_rkl_value(const double *lq, const double *lp, int V);

/* "rkl-full", given kl = loss_rkl_value(lq, lp) */
double loss_rkl_full_row(float *drow, double omega, const double *lq,
                         const double *lp, double kl, int V);
/* "fkl" */
double loss_fkl_row(float *drow, double omega, const double *lq,
                    const double *lp, int V);
/* "jsd", 0 <= beta <= 1; g (V) is scratch */
double loss_jsd_row(float *drow, double omega, const double *lq,
                    const double *lp, double kl, double beta, double *g, int V);

/* "rkl-topk": the scratch of one thread, k = min(topk, V) */
typedef struct { float val; int id; } loss_scored_id;
typedef struct {
    int k;
    int *S;               /* (k) the teacher's top-k ids */
    double *sub;          /* (2k) restricted log-softmaxes */
    loss_scored_id *all;  /* (V) when k > 64: a full sort */
} loss_topk_scratch;
void loss_topk_scratch_init(loss_topk_scratch *s, int k, int V);
void loss_topk_scratch_free(loss_topk_scratch *s);
double loss_rkl_topk_row(float *drow, double omega, const float *zs,
                         const float *zt, const double *lq, const double *lp,
                         double kl, loss_topk_scratch *s, int V);

/* "rkl" and "rkl-seq": the detached reward r = log pt(y) - log ps(y),
 * clamped to [-clamp, clamp] when clamp > 0 */
double loss_reward(const double *lq, const double *lp, int y, double clamp);
/* the policy-gradient term of a row with importance weight w and advantage
 * A (A = r for "rkl"); lq_y = log ps(y); lq (V) is scratch */
double loss_rkl_sampled_row(float *drow, double omega, double w, double A,
                            double lq_y, const float *zs, int y, double *lq, int V);

#endif
