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
 * This file: the input checks, the reduction (omega, and the final sum),
 * the passes over the batch and the dispatch. The per-row math, one
 * function per loss with its formula, is in loss_rows.c, in double (the
 * logits are fp32): the log-softmax differences of two models are small
 * numbers made of large ones.
 * Rows are independent and run in parallel; the final sum is sequential in
 * row order, so the result does not depend on the number of threads. */
#include "opd.h"
#include "loss_rows.h"

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

/* ------------------------------------------------------------- input checks */

static int loss_config_check(const opd_loss_config *c, int B, int trained_len, int V) {
    if (!c) return opd_set_error("loss: no config");
    if ((int)c->kind < 0 || (int)c->kind >= N_LOSS_KINDS)
        return opd_set_error("loss: unknown loss kind %d", (int)c->kind);
    if (c->reduction != OPD_REDUCE_TOKEN_MEAN && c->reduction != OPD_REDUCE_SEQ_MEAN)
        return opd_set_error("loss: unknown reduction %d", (int)c->reduction);
    if (B < 0 || trained_len < 0 || V < 1)
        return opd_set_error("loss: bad shape B=%d trained_len=%d V=%d", B, trained_len, V);
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

static int is_sampled(opd_loss_kind k) {
    return k == OPD_LOSS_RKL_SAMPLED || k == OPD_LOSS_RKL_SEQ;
}

/* The config, then the inputs: mask (N) finite weights >= 0, and the
 * sampled tokens y (N) in [0, V) wherever masked (and present when the loss
 * needs them). 0, or -1 with the message set. */
static int loss_check(const opd_loss_config *c, const int *y, const float *mask,
                      int B, int trained_len, int V, size_t N) {
    if (loss_config_check(c, B, trained_len, V) != 0) return -1;
    if (is_sampled(c->kind) && !y && N > 0)
        return opd_set_error("loss %s: needs the rollout tokens y", loss_names[c->kind]);
    for (size_t i = 0; i < N; i++) {
        if (!(mask[i] >= 0.0f) || isinf(mask[i]))
            return opd_set_error("loss: mask[%zu] = %g is not a finite weight >= 0",
                                 i, (double)mask[i]);
        if (y && mask[i] != 0.0f && (y[i] < 0 || y[i] >= V))
            return opd_set_error("loss: token y[%zu] = %d outside the vocabulary [0, %d)",
                                 i, y[i], V);
    }
    return 0;
}

/* ------------------------------------------------------------- the reduction */

/* The normaliser of the reduction over this batch alone: sum of the mask
 * (token mean) or the number of sequences with a masked token (sequence
 * mean). A micro-batch step passes the whole step's instead (opd_distill_loss_norm). */
double opd_loss_local_norm(opd_reduction red, const float *mask, int B, int trained_len) {
    size_t N = (size_t)B * trained_len;
    double n = 0.0;
    if (red == OPD_REDUCE_TOKEN_MEAN) {
        for (size_t i = 0; i < N; i++) n += mask[i];
        return n;
    }
    for (int b = 0; b < B; b++) {
        double Mb = 0.0;
        for (int t = 0; t < trained_len; t++) Mb += mask[(size_t)b * trained_len + t];
        if (Mb > 0.0) n += 1.0;
    }
    return n;
}

/* omega (N) = the reduction weights, from the mask (B, trained_len) and the
 * normaliser norm (the top of this file; norm is the batch's own or the
 * whole step's). Returns 0 when no token is masked: nothing to reduce. */
static int reduction_weights(double *omega, opd_reduction red, const float *mask,
                             int B, int trained_len, double norm) {
    size_t N = (size_t)B * trained_len;
    if (opd_loss_local_norm(red, mask, B, trained_len) == 0.0 || !(norm > 0.0)) return 0;
    if (red == OPD_REDUCE_TOKEN_MEAN) {
        double M = norm;
        for (size_t i = 0; i < N; i++) omega[i] = mask[i] / M;
        return 1;
    }
    double nseq = norm;
    for (int b = 0; b < B; b++) {
        const float *mb = mask + (size_t)b * trained_len;
        double Mb = 0.0;
        for (int t = 0; t < trained_len; t++) Mb += mb[t];
        if (Mb > 0.0)
            for (int t = 0; t < trained_len; t++)
                omega[(size_t)b * trained_len + t] = mb[t] / (nseq * Mb);
    }
    return 1;
}

/* loss = sum_i omega_i l_i, sequential in row order (thread-count free);
 * per_token (N) = l_i where masked */
static double reduce(const double *omega, const double *term, const float *mask,
                     size_t N, float *per_token) {
    double loss = 0.0;
    for (size_t i = 0; i < N; i++) {
        if (mask[i] == 0.0f) continue;
        loss += omega[i] * term[i];
        if (per_token) per_token[i] = (float)term[i];
    }
    return loss;
}

/* ------------------------------------------------------------- the passes */

/* What every pass over the rows reads and writes. */
typedef struct {
    const opd_loss_config *c;
    const float *s_logits, *t_logits;   /* (N, V) */
    const int *y;                       /* (N) or NULL (full-distribution losses) */
    const float *mask, *sampler_lp;     /* (N); sampler_lp may be NULL */
    const double *omega;                /* (N) reduction weights */
    int B, trained_len, V;              /* N = B * trained_len rows */
    float *dlogits, *rkl;               /* (N, V), (N); either may be NULL */
    double *term;                       /* (N) l_i */
    int parallel;
} loss_batch;

/* lq, lp (V) = the row's log-softmaxes; the exact reverse KL goes to the log
 * whatever the loss is */
static double row_log_probs(double *lq, double *lp, const loss_batch *x, size_t i) {
    opd_loss_log_softmax_row(lq, x->s_logits + i * x->V, x->V);
    opd_loss_log_softmax_row(lp, x->t_logits + i * x->V, x->V);
    double kl = opd_loss_rkl_value(lq, lp, x->V);
    if (x->rkl) x->rkl[i] = (float)kl;
    return kl;
}

/* "rkl-full", "fkl", "jsd", "rkl-topk": each row on its own */
static void full_distribution_pass(const loss_batch *x) {
    const opd_loss_config *c = x->c;
    const int V = x->V;
    const long N = (long)x->B * x->trained_len;
    #pragma omp parallel if (x->parallel)
    {
        double *lq = opd_malloc((size_t)V * sizeof *lq);
        double *lp = opd_malloc((size_t)V * sizeof *lp);
        double *g = c->kind == OPD_LOSS_JSD ? opd_malloc((size_t)V * sizeof *g) : NULL;
        opd_loss_topk_scratch topk = {0};
        if (c->kind == OPD_LOSS_RKL_TOPK)
            opd_loss_topk_scratch_init(&topk, c->topk < V ? c->topk : V, V);
        #pragma omp for schedule(static)
        for (long li = 0; li < N; li++) {
            size_t i = (size_t)li;
            if (x->mask[i] == 0.0f) continue;
            const float *zs = x->s_logits + i * V, *zt = x->t_logits + i * V;
            float *drow = x->dlogits ? x->dlogits + i * V : NULL;
            double kl = row_log_probs(lq, lp, x, i), w = x->omega[i];
            switch (c->kind) {
            case OPD_LOSS_RKL_FULL:
                x->term[i] = opd_loss_rkl_full_row(drow, w, lq, lp, kl, V); break;
            case OPD_LOSS_FKL:
                x->term[i] = opd_loss_fkl_row(drow, w, lq, lp, V); break;
            case OPD_LOSS_JSD:
                x->term[i] = opd_loss_jsd_row(drow, w, lq, lp, kl, c->beta, g, V); break;
            case OPD_LOSS_RKL_TOPK:
                x->term[i] = opd_loss_rkl_topk_row(drow, w, zs, zt, lq, lp, kl, &topk, V); break;
            default: break;
            }
        }
        free(lq); free(lp); free(g);
        opd_loss_topk_scratch_free(&topk);
    }
}

/* "rkl-seq": A_i = sum_{k >= t} gamma^(k-t) r_k over the run of masked
 * positions of sequence b that contains t = i - b trained_len (a masked-out position
 * ends the run). gamma = 0 is "rkl", A = r, exactly: r + 0 * A = r. */
static void advantage(double *adv, const double *reward, const float *mask,
                      int B, int trained_len, double gamma) {
    for (int b = 0; b < B; b++) {
        double carry = 0.0;
        for (int t = trained_len - 1; t >= 0; t--) {
            size_t i = (size_t)b * trained_len + t;
            if (mask[i] == 0.0f) { carry = 0.0; continue; }
            carry = reward[i] + gamma * carry;
            adv[i] = carry;
        }
    }
}

/* "rkl" (gamma 0) and "rkl-seq": l_i = -w_i A_i log ps(y_i). Two passes,
 * since A_i needs the rewards of the later positions first: the rewards r,
 * the importance weights w = exp(log ps(y) - sampler_lp) and log ps(y), then
 * the advantages, then the terms and gradients. */
static void policy_gradient_pass(const loss_batch *x, double gamma) {
    const int V = x->V;
    const long N = (long)x->B * x->trained_len;
    const double clamp = x->c->reward_clamp;
    double *reward = opd_calloc((size_t)N, sizeof *reward);   /* r_i, clamped */
    double *iw = opd_calloc((size_t)N, sizeof *iw);           /* w_i */
    double *lq_y = opd_calloc((size_t)N, sizeof *lq_y);       /* log ps(y_i) */
    double *adv = opd_calloc((size_t)N, sizeof *adv);         /* A_i */
    #pragma omp parallel if (x->parallel)
    {
        double *lq = opd_malloc((size_t)V * sizeof *lq);
        double *lp = opd_malloc((size_t)V * sizeof *lp);
        #pragma omp for schedule(static)
        for (long li = 0; li < N; li++) {
            size_t i = (size_t)li;
            if (x->mask[i] == 0.0f) continue;
            int y = x->y[i];
            row_log_probs(lq, lp, x, i);
            reward[i] = opd_loss_reward(lq, lp, y, clamp);
            iw[i] = x->sampler_lp ? opd_exp(lq[y] - (double)x->sampler_lp[i]) : 1.0;
            lq_y[i] = lq[y];
        }
        free(lq); free(lp);
    }
    advantage(adv, reward, x->mask, x->B, x->trained_len, gamma);
    #pragma omp parallel if (x->parallel)
    {
        double *lq = opd_malloc((size_t)V * sizeof *lq);
        #pragma omp for schedule(static)
        for (long li = 0; li < N; li++) {
            size_t i = (size_t)li;
            if (x->mask[i] == 0.0f) continue;
            float *drow = x->dlogits ? x->dlogits + i * V : NULL;
            x->term[i] = opd_loss_rkl_sampled_row(drow, x->omega[i], iw[i], adv[i], lq_y[i],
                                                  x->s_logits + i * V, x->y[i], lq, V);
        }
        free(lq);
    }
    free(reward); free(iw); free(lq_y); free(adv);
}

/* ------------------------------------------------------------- the loss */

/* norm < 0: the batch's own normaliser */
static double distill_loss(const opd_loss_config *c, const float *s_logits,
                           const float *t_logits, const int *y, const float *mask,
                           const float *sampler_lp, int B, int trained_len, int V,
                           float *dlogits, float *per_token, float *rkl, double norm) {
    /* outputs start at zero: masked-out rows stay so, and so does everything
     * on an error (the caller gets NaN and opd_last_error()) */
    size_t N = (size_t)(B > 0 ? B : 0) * (size_t)(trained_len > 0 ? trained_len : 0);
    if (dlogits && V > 0) memset(dlogits, 0, N * (size_t)V * sizeof *dlogits);
    if (per_token) memset(per_token, 0, N * sizeof *per_token);
    if (rkl) memset(rkl, 0, N * sizeof *rkl);
    if (loss_check(c, y, mask, B, trained_len, V, N) != 0) return NAN;

    if (norm < 0.0) norm = opd_loss_local_norm(c->reduction, mask, B, trained_len);
    double *omega = opd_calloc(N ? N : 1, sizeof *omega);
    if (!reduction_weights(omega, c->reduction, mask, B, trained_len, norm)) { free(omega); return 0.0; }

    double *term = opd_calloc(N, sizeof *term);    /* l_i */
    loss_batch x = {
        .c = c, .s_logits = s_logits, .t_logits = t_logits, .y = y, .mask = mask,
        .sampler_lp = sampler_lp, .omega = omega, .B = B, .trained_len = trained_len, .V = V,
        .dlogits = dlogits, .rkl = rkl, .term = term,
        /* a thread team costs more than a few short rows; rows are
         * independent, so the result is the same either way */
        .parallel = (double)N * V >= 32768.0,
    };
    switch (c->kind) {
    case OPD_LOSS_RKL_SAMPLED: policy_gradient_pass(&x, 0.0); break;
    case OPD_LOSS_RKL_SEQ:     policy_gradient_pass(&x, c->gamma); break;
    default:                   full_distribution_pass(&x); break;
    }
    double loss = reduce(omega, term, mask, N, per_token);
    free(omega); free(term);
    return loss;
}

double opd_distill_loss_norm(const opd_loss_config *c, const float *s_logits,
                             const float *t_logits, const int *y, const float *mask,
                             const float *sampler_lp, int B, int trained_len, int V,
                             float *dlogits, float *per_token, float *rkl, double norm) {
    if (mask) return distill_loss(c, s_logits, t_logits, y, mask, sampler_lp,
                                  B, trained_len, V, dlogits, per_token, rkl, norm);
    /* no mask: every position is in the loss */
    size_t N = (size_t)(B > 0 ? B : 0) * (size_t)(trained_len > 0 ? trained_len : 0);
    float *ones = opd_malloc((N ? N : 1) * sizeof *ones);
    for (size_t i = 0; i < N; i++) ones[i] = 1.0f;
    double loss = distill_loss(c, s_logits, t_logits, y, ones, sampler_lp,
                               B, trained_len, V, dlogits, per_token, rkl, norm);
    free(ones);
    return loss;
}

float opd_distill_loss(const opd_loss_config *c, const float *s_logits,
                       const float *t_logits, const int *y, const float *mask,
                       const float *sampler_lp, int B, int trained_len, int V,
                       float *dlogits, float *per_token, float *rkl) {
    return (float)opd_distill_loss_norm(c, s_logits, t_logits, y, mask, sampler_lp, B, trained_len,
                                        V, dlogits, per_token, rkl, -1.0);
}
