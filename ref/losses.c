/* losses.c — distillation losses on student and teacher logits, with their
 * exact gradients into the student logits (ref/SPEC.md section 4).
 *
 * Every loss is a sum over rollout positions i = (b, t) of
 *     loss = sum_i omega_i * l_i
 * where l_i is the per-token term (written to per_token) and omega_i is the
 * reduction weight, which depends on the mask only:
 *   token mean:    omega_i = m_i / sum_j m_j                 (all of the batch)
 *   sequence mean: omega_i = m_i / (S * sum_{t'} m_{b,t'})    S = sequences with
 *                  at least one masked token (the others have no mean to take)
 * The mask is 0/1 in practice; a fractional value acts as a token weight.
 * dlogits row i = omega_i * d l_i / d s_logits_i; dlogits, per_token and rkl
 * are 0 where m_i = 0. When no token is masked the loss is 0 and every
 * gradient is 0. mask NULL: all ones (as opd_cross_entropy); y may be NULL
 * for the full-distribution losses, which do not look at the sampled tokens.
 * Errors (bad config, a masked token outside [0, V)) return NaN with
 * opd_last_error() set and every output zeroed.
 *
 * Names (opd_loss_name / opd_loss_parse):
 *   "rkl"       token-level sampled reverse KL as a detached reward (paper
 *               default, Tinker style): l = -w r log ps(y), r = log pt(y) -
 *               log ps(y) (optionally clamped), w = exp(log ps(y) - sampler_lp).
 *               l is a surrogate whose gradient is the policy gradient; its
 *               value is not the KL (the KL goes to `rkl`).
 *   "rkl-full"  full-vocabulary reverse KL  sum_v ps (log ps - log pt).
 *   "fkl"       forward KL                  sum_v pt (log pt - log ps).
 *   "jsd"       generalized JSD(beta) of GKD (Agarwal et al. 2024), teacher P,
 *               student Q, M = beta P + (1 - beta) Q:
 *                 JSD = beta KL(P || M) + (1 - beta) KL(Q || M).
 *               For beta -> 0 it behaves like beta * forward KL, for beta -> 1
 *               like (1 - beta) * reverse KL, but the mixture formula itself
 *               vanishes at the endpoints, so (as in TRL's GKD trainer) beta = 0
 *               IS the forward KL and beta = 1 IS the reverse KL exactly.
 *   "rkl-topk"  reverse KL over S = the teacher's top-k tokens (ties broken by
 *               the lower token id), both distributions renormalised over S,
 *               differentiated through the renormalisation; topk >= V is the
 *               full reverse KL.
 *   "rkl-seq"   sequence-level: the reward r of "rkl" replaced by the
 *               advantage A_t = sum_{k >= t} gamma^(k-t) r_k over the run of
 *               masked positions that contains t (the run ends at EOS, whose
 *               successor is masked, or at the horizon); gamma = 0 is "rkl"
 *               bit for bit.
 *
 * All row arithmetic is in double (the logits are fp32): the log-softmax
 * differences of two models are small numbers made of large ones.
 * Rows are independent and run in parallel; the final sum is sequential in
 * row order, so the result does not depend on the number of threads. */
#include "opd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void opd_loss_config_default(opd_loss_config *c) {
    c->kind = OPD_LOSS_RKL_SAMPLED;
    c->reduction = OPD_REDUCE_TOKEN_MEAN;
    c->reward_clamp = 0.0f;   /* off */
    c->beta = 0.5f;
    c->topk = 8;
    c->gamma = 0.0f;
}

static const char *const loss_names[] = {
    "rkl", "rkl-full", "fkl", "jsd", "rkl-topk", "rkl-seq"};
#define N_LOSS_KINDS ((int)(sizeof loss_names / sizeof loss_names[0]))

const char *opd_loss_name(opd_loss_kind k) {
    if ((int)k < 0 || (int)k >= N_LOSS_KINDS) return "unknown";
    return loss_names[k];
}

int opd_loss_parse(const char *name, opd_loss_kind *k) {
    if (!name) return opd_set_error("loss: no loss name given");
    for (int i = 0; i < N_LOSS_KINDS; i++)
        if (strcmp(name, loss_names[i]) == 0) { *k = (opd_loss_kind)i; return 0; }
    if (strcmp(name, "rkl-sampled") == 0) { *k = OPD_LOSS_RKL_SAMPLED; return 0; }
    return opd_set_error("loss: unknown loss '%s' (expected rkl, rkl-full, fkl, "
                         "jsd, rkl-topk or rkl-seq)", name);
}

/* ------------------------------------------------------------- row kernels */

/* lp (V) = log_softmax(z). The max is subtracted before exp so that no term
 * overflows and the largest one is exactly 1 (the sum is >= 1, its log safe). */
static void log_softmax_row(double *lp, const float *z, int V) {
    double mx = z[0];
    for (int v = 1; v < V; v++) if (z[v] > mx) mx = z[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += opd_exp((double)z[v] - mx);
    double lse = mx + opd_log(sum);
    for (int v = 0; v < V; v++) lp[v] = (double)z[v] - lse;
}

/* Reverse KL sum_v q (lq - lp) of student lq and teacher lp (both log-probs).
 * A token the student gives probability 0 adds nothing (0 log 0 = 0). */
static double rkl_value(const double *lq, const double *lp, int V) {
    double kl = 0.0;
    for (int v = 0; v < V; v++) {
        double q = opd_exp(lq[v]);
        if (q > 0.0) kl += q * (lq[v] - lp[v]);
    }
    return kl;
}

/* drow (V) = scale * d KL / d z_student = scale * q (lq - lp - KL), given KL */
static void rkl_grad(float *drow, double scale, const double *lq,
                     const double *lp, double kl, int V) {
    for (int v = 0; v < V; v++) {
        double q = opd_exp(lq[v]);
        drow[v] = q > 0.0 ? (float)(scale * q * ((lq[v] - lp[v]) - kl)) : 0.0f;
    }
}

/* Forward KL sum_v p (lp - lq); d / d z_student = q - p. */
static double row_fkl(float *drow, double scale, const double *lq,
                      const double *lp, int V) {
    double kl = 0.0;
    for (int v = 0; v < V; v++) {
        double p = opd_exp(lp[v]);
        if (p > 0.0) kl += p * (lp[v] - lq[v]);  /* 0 log 0 = 0 */
    }
    if (drow)
        for (int v = 0; v < V; v++)
            drow[v] = (float)(scale * (opd_exp(lq[v]) - opd_exp(lp[v])));
    return kl;
}

/* log(exp(a) + exp(b)) without overflow */
static double logaddexp(double a, double b) {
    double mx = a > b ? a : b, mn = a > b ? b : a;
    if (mn == -INFINITY) return mx;
    return mx + opd_log1p(opd_exp(mn - mx));
}

/* Generalized JSD(beta), 0 < beta < 1, teacher lp, student lq.
 * With m = beta p + (1-beta) q, d JSD / d q_v = (1-beta) log(q_v / m_v)
 * (the terms from d m / d q cancel against sum_v of the ratio terms),
 * so through the softmax: d / d z_j = q_j (g_j - sum_v q_v g_v).
 * g (V) is scratch. */
static double row_jsd(float *drow, double scale, const double *lq,
                      const double *lp, double beta, double *g, int V) {
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
            drow[v] = (float)(scale * opd_exp(lq[v]) * (g[v] - qg));
    return jsd;
}

/* S (k) = ids of the k largest teacher logits, larger first, ties to the lower
 * id; returned sorted by id so sums over S run in vocabulary order.
 * An insertion into a sorted list of k is O(V k) at worst: fine for the small
 * k this loss is for; large k sort every id once instead. */
typedef struct { float val; int id; } scored_id;

static int scored_cmp(const void *a, const void *b) {
    const scored_id *x = a, *y = b;
    if (x->val != y->val) return x->val > y->val ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int int_cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void teacher_topk(int *S, const float *zt, int V, int k, scored_id *all) {
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

/* Reverse KL over the teacher's top-k, renormalised. The renormalised student
 * is softmax(z_s[S]), so the loss depends on z_s[S] only, and its gradient
 * is the reverse-KL gradient of that sub-softmax (zero outside S).
 * sub (2k) and S (k) are scratch. */
static double row_rkl_topk(float *drow, double scale, const float *zs,
                           const float *zt, int V, int k, int *S,
                           double *sub, scored_id *all) {
    teacher_topk(S, zt, V, k, all);
    double *lq = sub, *lp = sub + k;
    log_softmax_subset(lq, zs, S, k);
    log_softmax_subset(lp, zt, S, k);
    double kl = rkl_value(lq, lp, k);
    if (drow) {
        memset(drow, 0, (size_t)V * sizeof *drow);
        for (int i = 0; i < k; i++) {
            double q = opd_exp(lq[i]);
            if (q > 0.0) drow[S[i]] = (float)(scale * q * ((lq[i] - lp[i]) - kl));
        }
    }
    return kl;
}

/* ------------------------------------------------------------- the loss */

static int loss_config_check(const opd_loss_config *c, int B, int H, int V) {
    if (!c) return opd_set_error("loss: no config");
    if ((int)c->kind < 0 || (int)c->kind >= N_LOSS_KINDS)
        return opd_set_error("loss: unknown loss kind %d", (int)c->kind);
    if (c->reduction != OPD_REDUCE_TOKEN_MEAN && c->reduction != OPD_REDUCE_SEQ_MEAN)
        return opd_set_error("loss: unknown reduction %d", (int)c->reduction);
    if (B < 0 || H < 0 || V < 1)
        return opd_set_error("loss: bad shape B=%d H=%d V=%d", B, H, V);
    if (c->kind == OPD_LOSS_JSD && !(c->beta >= 0.0f && c->beta <= 1.0f))
        return opd_set_error("loss jsd: beta = %g must be in [0, 1]", (double)c->beta);
    if (c->kind == OPD_LOSS_RKL_TOPK && c->topk < 1)
        return opd_set_error("loss rkl-topk: topk = %d must be >= 1", c->topk);
    if (c->kind == OPD_LOSS_RKL_SEQ && !(c->gamma >= 0.0f && c->gamma <= 1.0f))
        return opd_set_error("loss rkl-seq: gamma = %g must be in [0, 1]", (double)c->gamma);
    if (isnan(c->reward_clamp))
        return opd_set_error("loss: reward_clamp is NaN");
    return 0;
}

static float distill_loss(const opd_loss_config *c, const float *s_logits,
                          const float *t_logits, const int *y, const float *mask,
                          const float *sampler_lp, int B, int H, int V,
                          float *dlogits, float *per_token, float *rkl) {
    /* outputs start at zero: masked-out rows stay so, and so does everything
     * on an error (the caller gets NaN and opd_last_error()) */
    size_t N = (size_t)(B > 0 ? B : 0) * (size_t)(H > 0 ? H : 0);
    if (dlogits && V > 0) memset(dlogits, 0, N * (size_t)V * sizeof *dlogits);
    if (per_token) memset(per_token, 0, N * sizeof *per_token);
    if (rkl) memset(rkl, 0, N * sizeof *rkl);
    if (loss_config_check(c, B, H, V) != 0) return NAN;
    const int sampled = c->kind == OPD_LOSS_RKL_SAMPLED || c->kind == OPD_LOSS_RKL_SEQ;
    if (sampled && !y && N > 0) {
        opd_set_error("loss %s: needs the rollout tokens y", loss_names[c->kind]);
        return NAN;
    }
    for (size_t i = 0; i < N; i++) {
        if (!(mask[i] >= 0.0f) || isinf(mask[i])) {
            opd_set_error("loss: mask[%zu] = %g is not a finite weight >= 0",
                          i, (double)mask[i]);
            return NAN;
        }
        if (y && mask[i] != 0.0f && (y[i] < 0 || y[i] >= V)) {
            opd_set_error("loss: token y[%zu] = %d outside the vocabulary [0, %d)",
                          i, y[i], V);
            return NAN;
        }
    }

    /* reduction weights omega (N), from the mask alone */
    double *omega = opd_calloc(N ? N : 1, sizeof *omega);
    int any = 0;
    if (c->reduction == OPD_REDUCE_TOKEN_MEAN) {
        double M = 0.0;
        for (size_t i = 0; i < N; i++) M += mask[i];
        if (M > 0.0) {
            any = 1;
            for (size_t i = 0; i < N; i++) omega[i] = mask[i] / M;
        }
    } else {
        int nseq = 0;
        for (int b = 0; b < B; b++) {
            double Mb = 0.0;
            for (int t = 0; t < H; t++) Mb += mask[(size_t)b * H + t];
            if (Mb > 0.0) nseq++;
        }
        if (nseq > 0) {
            any = 1;
            for (int b = 0; b < B; b++) {
                const float *mb = mask + (size_t)b * H;
                double Mb = 0.0;
                for (int t = 0; t < H; t++) Mb += mb[t];
                if (Mb > 0.0)
                    for (int t = 0; t < H; t++)
                        omega[(size_t)b * H + t] = mb[t] / ((double)nseq * Mb);
            }
        }
    }
    if (!any) { free(omega); return 0.0f; }

    int k = c->kind == OPD_LOSS_RKL_TOPK ? (c->topk < V ? c->topk : V) : V;
    double *term = opd_calloc(N, sizeof *term);    /* l_i */
    double *reward = NULL, *iw = NULL, *lq_y = NULL;
    if (sampled) {
        reward = opd_calloc(N, sizeof *reward);    /* r_i, clamped */
        iw = opd_calloc(N, sizeof *iw);            /* w_i */
        lq_y = opd_calloc(N, sizeof *lq_y);        /* log ps(y_i) */
    }
    const double clamp = c->reward_clamp;
    /* a thread team costs more than a few short rows; rows are independent,
     * so the result is the same either way */
    const int parallel = (double)N * V >= 32768.0;

    /* pass 1: per row, the exact reverse KL for the log, and the loss term and
     * gradient of the full-distribution losses; the sampled ones only gather
     * r, w and log ps(y) here, since rkl-seq needs the later rewards first */
    #pragma omp parallel if (parallel)
    {
        double *lq = opd_malloc((size_t)V * sizeof *lq);
        double *lp = opd_malloc((size_t)V * sizeof *lp);
        double *g = opd_malloc((size_t)V * sizeof *g);
        int *S = NULL; double *sub = NULL; scored_id *all = NULL;
        if (c->kind == OPD_LOSS_RKL_TOPK && k < V) {
            S = opd_malloc((size_t)k * sizeof *S);
            sub = opd_malloc(2 * (size_t)k * sizeof *sub);
            if (k > 64) all = opd_malloc((size_t)V * sizeof *all);
        }
        #pragma omp for schedule(static)
        for (long li = 0; li < (long)N; li++) {
            size_t i = (size_t)li;
            if (mask[i] == 0.0f) continue;
            const float *zs = s_logits + i * V, *zt = t_logits + i * V;
            float *drow = dlogits ? dlogits + i * V : NULL;
            log_softmax_row(lq, zs, V);
            log_softmax_row(lp, zt, V);
            double kl = rkl_value(lq, lp, V);
            if (rkl) rkl[i] = (float)kl;
            /* topk >= V and beta = 1 are the full reverse KL itself */
            int full_rkl = c->kind == OPD_LOSS_RKL_FULL ||
                           (c->kind == OPD_LOSS_RKL_TOPK && k >= V) ||
                           (c->kind == OPD_LOSS_JSD && c->beta == 1.0f);
            if (full_rkl) {
                term[i] = kl;
                if (drow) rkl_grad(drow, omega[i], lq, lp, kl, V);
                continue;
            }
            switch (c->kind) {
            case OPD_LOSS_FKL:
                term[i] = row_fkl(drow, omega[i], lq, lp, V);
                break;
            case OPD_LOSS_JSD:
                if (c->beta == 0.0f) term[i] = row_fkl(drow, omega[i], lq, lp, V);
                else term[i] = row_jsd(drow, omega[i], lq, lp, c->beta, g, V);
                break;
            case OPD_LOSS_RKL_TOPK:
                term[i] = row_rkl_topk(drow, omega[i], zs, zt, V, k, S, sub, all);
                break;
            default: { /* sampled: r and w are constants of the gradient */
                double r = lp[y[i]] - lq[y[i]];
                if (clamp > 0.0) r = r < -clamp ? -clamp : (r > clamp ? clamp : r);
                reward[i] = r;
                iw[i] = sampler_lp ? opd_exp(lq[y[i]] - (double)sampler_lp[i]) : 1.0;
                lq_y[i] = lq[y[i]];
            } break;
            }
        }
        free(lq); free(lp); free(g); free(S); free(sub); free(all);
    }

    if (sampled) {
        /* advantage A_i; rkl-seq discounts the later rewards of the same run
         * of masked tokens (gamma = 0 leaves A = r exactly: r + 0 * A = r) */
        double *adv = opd_calloc(N, sizeof *adv);
        const double gamma = c->kind == OPD_LOSS_RKL_SEQ ? c->gamma : 0.0;
        for (int b = 0; b < B; b++) {
            double carry = 0.0;
            for (int t = H - 1; t >= 0; t--) {
                size_t i = (size_t)b * H + t;
                if (mask[i] == 0.0f) { carry = 0.0; continue; }
                carry = reward[i] + gamma * carry;
                adv[i] = carry;
            }
        }
        /* pass 2: l_i = -w A log ps(y), grad = -w A (onehot(y) - ps) */
        #pragma omp parallel if (parallel)
        {
            double *lq = opd_malloc((size_t)V * sizeof *lq);
            #pragma omp for schedule(static)
            for (long li = 0; li < (long)N; li++) {
                size_t i = (size_t)li;
                if (mask[i] == 0.0f) continue;
                double coef = -iw[i] * adv[i];
                term[i] = coef * lq_y[i];
                if (!dlogits) continue;
                float *drow = dlogits + i * V;
                log_softmax_row(lq, s_logits + i * V, V);
                double s = omega[i] * coef;
                for (int v = 0; v < V; v++) drow[v] = (float)(-s * opd_exp(lq[v]));
                drow[y[i]] = (float)(s * (1.0 - opd_exp(lq[y[i]])));
            }
            free(lq);
        }
        free(adv);
    }

    /* the reduction, sequential in row order */
    double loss = 0.0;
    for (size_t i = 0; i < N; i++) {
        if (mask[i] == 0.0f) continue;
        loss += omega[i] * term[i];
        if (per_token) per_token[i] = (float)term[i];
    }
    free(omega); free(term); free(reward); free(iw); free(lq_y);
    return (float)loss;
}

float opd_distill_loss(const opd_loss_config *c, const float *s_logits,
                       const float *t_logits, const int *y, const float *mask,
                       const float *sampler_lp, int B, int H, int V,
                       float *dlogits, float *per_token, float *rkl) {
    if (mask) return distill_loss(c, s_logits, t_logits, y, mask, sampler_lp,
                                  B, H, V, dlogits, per_token, rkl);
    /* no mask: every position is in the loss */
    size_t N = (size_t)(B > 0 ? B : 0) * (size_t)(H > 0 ? H : 0);
    float *ones = opd_malloc((N ? N : 1) * sizeof *ones);
    for (size_t i = 0; i < N; i++) ones[i] = 1.0f;
    float loss = distill_loss(c, s_logits, t_logits, y, ones, sampler_lp,
                              B, H, V, dlogits, per_token, rkl);
    free(ones);
    return loss;
}
