/* optim.c — AdamW with decoupled weight decay and bias correction, global-norm
 * gradient clipping, and the learning-rate schedule (ref/SPEC.md section 2).
 *
 * The update follows torch.optim.AdamW and torch.nn.utils.clip_grad_norm_, so
 * a PyTorch run with the same gradients takes the same steps:
 *   g   <- g * min(1, clip / (||g|| + 1e-6))            (in place, like torch)
 *   p   <- p * (1 - lr * wd)                            (decay tensors only)
 *   m   <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
 *   p   <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * with t the 1-based update number and lr = opd_lr_at(cfg, t - 1). */
#include "opd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void opd_optim_config_default(opd_optim_config *c) {
    memset(c, 0, sizeof *c);
    c->lr = 1e-3f;
    c->beta1 = 0.9f;
    c->beta2 = 0.95f;
    c->eps = 1e-8f;
    c->weight_decay = 0.01f;
    c->grad_clip = 1.0f;
    c->lr_kind = OPD_LR_CONSTANT;
    c->warmup_steps = 0;
    c->total_steps = 0;
    c->min_lr_frac = 0.1f;
}

void opd_adamw_init(opd_adamw *opt, const opd_optim_config *cfg, size_t n) {
    memset(opt, 0, sizeof *opt);
    opt->cfg = *cfg;
    opt->n = n;
    opt->m = opd_calloc(n, sizeof(float));
    opt->v = opd_calloc(n, sizeof(float));
    opt->step = 0;
}

void opd_adamw_free(opd_adamw *opt) {
    free(opt->m);
    free(opt->v);
    memset(opt, 0, sizeof *opt);
}

/* Learning rate of update number `step` (0-based: the first update uses
 * opd_lr_at(c, 0)). Cosine: lr * step / warmup during warmup (so it starts
 * from 0, as transformers' get_cosine_schedule_with_warmup does), then a
 * half cosine from lr down to min_lr_frac * lr at total_steps, flat after. */
float opd_lr_at(const opd_optim_config *c, long step) {
    double lr = c->lr, min_lr = (double)c->min_lr_frac * c->lr;
    if (step < 0) step = 0;
    /* warmup applies to both schedules: fresh AdamW moments make the first
     * updates sign-like, every weight moving by ~lr, which knocks a
     * warm-started model back unless the rate starts small */
    if (step < c->warmup_steps) return (float)(lr * (double)step / (double)c->warmup_steps);
    if (c->lr_kind != OPD_LR_COSINE) return c->lr;
    if (step >= c->total_steps) return (float)min_lr;
    double progress = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    double cosine = 0.5 * (1.0 + opd_cos(M_PI * progress));
    return (float)(min_lr + (lr - min_lr) * cosine);
}

/* Fixed-size chunks, summed in chunk order: the chunking depends only on n,
 * so the result is the same bits whatever the number of threads. */
#define NORM_CHUNK 65536

float opd_grad_norm(const float *g, size_t n) {
    size_t nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    if (nchunks <= 1) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
        return (float)sqrt(s);
    }
    double *partial = opd_malloc(nchunks * sizeof(double));
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * (double)g[i];
        partial[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < nchunks; c++) s += partial[c];
    free(partial);
    return (float)sqrt(s);
}

float opd_adamw_update(opd_adamw *opt, opd_model *m) {
    if (!m->grads_mem || opt->n != m->num_params) {
        /* a programming error, not a data error: no sensible way to go on */
        fprintf(stderr, "opd_adamw_update: optimizer holds %zu moments, model has %zu parameters%s\n",
                opt->n, m->num_params, m->grads_mem ? "" : " and no gradients");
        abort();
    }
    const opd_optim_config *c = &opt->cfg;
    float *params = m->params_mem, *grads = m->grads_mem;
    size_t n = m->num_params;

    float norm = opd_grad_norm(grads, n);
    /* A NaN/Inf gradient would poison every parameter and both moments for
     * good; skip the update (step not counted) and let the caller see the
     * norm it gets back. */
    if (!isfinite(norm)) return norm;

    if (c->grad_clip > 0.0f) {
        float coef = c->grad_clip / (norm + 1e-6f);   /* torch's clip_grad_norm_ */
        if (coef < 1.0f) {
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) grads[i] *= coef;
        }
    }

    long t = opt->step + 1;
    float lr = opd_lr_at(c, opt->step);
    float beta1 = c->beta1, beta2 = c->beta2, eps = c->eps;
    /* bias corrections in double: beta^t underflows gracefully and 1 - beta^t
     * is exact enough even for t = 1 */
    float bc1 = (float)(1.0 - opd_pow((double)beta1, (double)t));
    float bc2 = (float)(1.0 - opd_pow((double)beta2, (double)t));

    /* weight decay is per tensor (matrices, not norms or biases); the tied
     * LM head has no entry of its own, so the embedding is updated once */
    int nt = opd_param_tensor_count(&m->cfg);
    opd_tensor_info *ts = opd_malloc(nt * sizeof *ts);
    opd_param_tensors(&m->cfg, ts);
    float *mom1 = opt->m, *mom2 = opt->v;
    for (int k = 0; k < nt; k++) {
        float decay = ts[k].decay ? 1.0f - lr * c->weight_decay : 1.0f;
        float *p = params + ts[k].offset;
        const float *g = grads + ts[k].offset;
        float *mt = mom1 + ts[k].offset, *vt = mom2 + ts[k].offset;
        size_t len = ts[k].numel;
        /* elementwise, so splitting it over threads changes no result */
        #pragma omp parallel for schedule(static) if (len > 16384)
        for (size_t i = 0; i < len; i++) {
            float gi = g[i];
            float mi = beta1 * mt[i] + (1.0f - beta1) * gi;
            float vi = beta2 * vt[i] + (1.0f - beta2) * gi * gi;
            mt[i] = mi;
            vt[i] = vi;
            float mhat = mi / bc1, vhat = vi / bc2;
            p[i] = p[i] * decay - lr * mhat / (sqrtf(vhat) + eps);
        }
    }
    free(ts);
    opt->step = t;
    return norm;
}
