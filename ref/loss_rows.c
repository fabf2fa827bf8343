/* loss_rows.c — the per-row math of the distillation losses: one function
 * per loss, each computing one rollout position's term l and its gradient
 * omega * d l / d z_student (see loss_rows.h for the shared conventions and
 * losses.c for the batch, the reduction and the definitions' references).
 *
 * q = softmax(z_student), p = softmax(z_teacher), lq = log q, lp = log p.
 * Everything is double: the log-softmax differences of two models are small
 * numbers made of large ones. Sums run in vocabulary order. */
#include "opd.h"
#include "loss_rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- shared */

/* The max is subtracted before exp so that no term overflows and the
 * largest one is exactly 1 (the sum is >= 1, its log safe). */
void opd_loss_log_softmax_row(double *lp, const float *z, int V) {
    double mx = z[0];
    for (int v = 1; v < V; v++) if (z[v] > mx) mx = z[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += opd_exp((double)z[v] - mx);
    double lse = mx + opd_log(sum);
    for (int v = 0; v < V; v++) lp[v] = (double)z[v] - lse;
}

/* KL(q || p) = sum_v q (lq - lp). A token the student gives probability 0
 * adds nothing (0 log 0 = 0). */
double opd_loss_rkl_value(const double *lq, const double *lp, int V) {
    double kl = 0.0;
    for (int v = 0; v < V; v++) {
        double q = opd_exp(lq[v]);
        if (q > 0.0) kl += q * (lq[v] - lp[v]);
    }
    return kl;
}

/* ------------------------------------------------------ full reverse KL */

/* l = KL(q || p) = sum_v q_v (lq_v - lp_v)
 * d l / d z_j = q_j (lq_j - lp_j - KL) */
double opd_loss_rkl_full_row(float *drow, double omega, const double *lq,
                             const double *lp, double kl, int V) {
    if (drow)
        for (int v = 0; v < V; v++) {
            double q = opd_exp(lq[v]);
            drow[v] = q > 0.0 ? (float)(omega * q * ((lq[v] - lp[v]) - kl)) : 0.0f;
        }
    return kl;
}

/* ---------------------------------------------------------- forward KL */

/* l = KL(p || q) = sum_v p_v (lp_v - lq_v)
 * d l / d z_j = q_j - p_j */
double opd_loss_fkl_row(float *drow, double omega, const double *lq,
                        const double *lp, int V) {
    double kl = 0.0;
    for (int v = 0; v < V; v++) {
        double p = opd_exp(lp[v]);
        if (p > 0.0) kl += p * (lp[v] - lq[v]);  /* 0 log 0 = 0 */
    }
    if (drow)
        for (int v = 0; v < V; v++)
            drow[v] = (float)(omega * (opd_exp(lq[v]) - opd_exp(lp[v])));
    return kl;
}

/* ---------------------------------------------------------------- JSD */

/* log(exp(a) + exp(b)) without overflow */
static double logaddexp(double a, double b) {
    double mx = a > b ? a : b, mn = a > b ? b : a;
    if (mn == -INFINITY) return mx;
    return mx + opd_log1p(opd_exp(mn - mx));
}

/* m = beta p + (1 - beta) q
 * l = beta KL(p || m) + (1 - beta) KL(q || m)
 * d l / d q_v = (1 - beta) log(q_v / m_v) =: g_v (the terms from d m / d q
 * cancel against sum_v of the ratio terms), so through the softmax
 * d l / d z_j = q_j (g_j - sum_v q_v g_v).
 * The mixture vanishes at the endpoints, so (as TRL's GKD trainer does)
 * beta = 0 IS the forward KL and beta = 1 IS the reverse KL. */
double opd_loss_jsd_row(float *drow, double omega, const double *lq,
                        const double *lp, double kl, double beta, double *g, int V) {
    if (beta == 1.0) return opd_loss_rkl_full_row(drow, omega, lq, lp, kl, V);
    if (beta == 0.0) return opd_loss_fkl_row(drow, omega, lq, lp, V);
    double lb = opd_log(beta), l1b = opd_log1p(-beta);
    double jsd = 0.0, qg = 0.0;
    for (int v = 0; v < V; v++) {
        double lm = logaddexp(lb + lp[v], l1b + lq[v]);
        double p = opd_exp(lp[v]), q = opd_exp(lq[v]);
        if (p > 0.0) jsd += beta * p * (lp[v] - lm);
        if (q > 0.0) jsd += (1.0 - beta) * q * (lq[v] - lm);
        g[v] = q > 0.0 ? (1.0 - beta) * (lq[v] - lm) : 0.0;
        qg += q * g[v];
    }
    if (drow)
        for (int v = 0; v < V; v++)
            drow[v] = (float)(omega * opd_exp(lq[v]) * (g[v] - qg));
    return jsd;
}

/* ------------------------------------------------- teacher top-k reverse KL */

void opd_loss_topk_scratch_init(opd_loss_topk_scratch *s, int k, int V) {
    memset(s, 0, sizeof *s);
    s->k = k;
    if (k >= V) return;   /* the full reverse KL: no selection */
    s->S = opd_malloc((size_t)k * sizeof *s->S);
    s->sub = opd_malloc(2 * (size_t)k * sizeof *s->sub);
    if (k > 64) s->all = opd_malloc((size_t)V * sizeof *s->all);
}

void opd_loss_topk_scratch_free(opd_loss_topk_scratch *s) {
    free(s->S); free(s->sub); free(s->all);
    memset(s, 0, sizeof *s);
}

static int scored_cmp(const void *a, const void *b) {
    const opd_loss_scored_id *x = a, *y = b;
    if (x->val != y->val) return x->val > y->val ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int int_cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* S (k) = ids of the k largest teacher logits, larger first, ties to the lower
 * id; returned sorted by id so sums over S run in vocabulary order.
 * An insertion into a sorted list of k is O(V k) at worst: fine for the small
 * k this loss is for; large k sort every id once instead. */
static void teacher_topk(int *S, const float *zt, int V, int k, opd_loss_scored_id *all) {
    if (k > 64) {
        for (int v = 0; v < V; v++) { all[v].val = zt[v]; all[v].id = v; }
        qsort(all, V, sizeof *all, scored_cmp);
        for (int i = 0; i < k; i++) S[i] = all[i].id;
    } else {
        int n = 0;
        for (int v = 0; v < V; v++) {
            /* strictly greater: an equal later id never displaces an earlier */
            if (n == k && !(zt[v] > zt[S[k - 1]])) continue;
            int i = n < k ? n++ : k - 1;
            while (i > 0 && zt[v] > zt[S[i - 1]]) { S[i] = S[i - 1]; i--; }
            S[i] = v;
        }
    }
    qsort(S, k, sizeof *S, int_cmp);
}

/* Restricted log-softmax over S: out (k) = z[S] - log sum_{S} exp(z). */
static void log_softmax_subset(double *out, const float *z, const int *S, int k) {
    double mx = z[S[0]];
    for (int i = 1; i < k; i++) if (z[S[i]] > mx) mx = z[S[i]];
    double sum = 0.0;
    for (int i = 0; i < k; i++) sum += opd_exp((double)z[S[i]] - mx);
    double lse = mx + opd_log(sum);
    for (int i = 0; i < k; i++) out[i] = (double)z[S[i]] - lse;
}

/* S = the teacher's top-k, q^S = softmax(z_student[S]), p^S = softmax(z_teacher[S])
 * l = KL(q^S || p^S) = sum_{v in S} q^S_v (log q^S_v - log p^S_v)
 * l depends on z_student[S] only: the gradient is the reverse-KL gradient of
 * that sub-softmax, 0 outside S. k >= V is the full reverse KL. */
double opd_loss_rkl_topk_row(float *drow, double omega, const float *zs,
                             const float *zt, const double *lq, const double *lp,
                             double kl, opd_loss_topk_scratch *s, int V) {
    int k = s->k;
    if (k >= V) return opd_loss_rkl_full_row(drow, omega, lq, lp, kl, V);
    teacher_topk(s->S, zt, V, k, s->all);
    double *lqS = s->sub, *lpS = s->sub + k;
    log_softmax_subset(lqS, zs, s->S, k);
    log_softmax_subset(lpS, zt, s->S, k);
    double klS = opd_loss_rkl_value(lqS, lpS, k);
    if (drow) {
        memset(drow, 0, (size_t)V * sizeof *drow);
        for (int i = 0; i < k; i++) {
            double q = opd_exp(lqS[i]);
            if (q > 0.0) drow[s->S[i]] = (float)(omega * q * ((lqS[i] - lpS[i]) - klS));
        }
    }
    return klS;
}

/* ---------------------------------------- sampled (policy-gradient) losses */

/* r = log pt(y) - log ps(y), a constant of the gradient (detached) */
double opd_loss_reward(const double *lq, const double *lp, int y, double clamp) {
    double r = lp[y] - lq[y];
    if (clamp > 0.0) r = r < -clamp ? -clamp : (r > clamp ? clamp : r);
    return r;
}

/* l = -w A log ps(y)
 * d l / d z_j = -w A (onehot(y)_j - q_j)
 * A surrogate whose gradient is the policy gradient; its value is not the KL. */
double opd_loss_rkl_sampled_row(float *drow, double omega, double w, double A,
                                double lq_y, const float *zs, int y, double *lq, int V) {
    double coef = -w * A;
    if (drow) {
        opd_loss_log_softmax_row(lq, zs, V);
        double s = omega * coef;
        for (int v = 0; v < V; v++) drow[v] = (float)(-s * opd_exp(lq[v]));
        drow[y] = (float)(s * (1.0 - opd_exp(lq[y])));
    }
    return coef * lq_y;
}
