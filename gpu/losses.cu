/* losses.cu — log-softmax, cross-entropy and the distillation losses on the
 * GPU, mirroring ref/xent.c and ref/losses.c (read those for the maths; the
 * comments here say how the work is split).
 *
 * One block of BLOCK_REDUCE threads per row of V logits; row sums are in
 * double, as on the CPU, through a fixed reduction tree. Whatever is small
 * and order-sensitive stays on the host, in the CPU's order: validating the
 * mask and tokens, the reduction weights omega, and the final sum over rows
 * (the per-row terms come back to the host, N doubles). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

/* log sum_v exp(z_v), max-shifted so no term overflows; every thread gets it */
__device__ double row_lse(const float *z, int V, float *shf, double *shd) {
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, z[v]);
    mx = block_max_float(mx, shf);
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += exp((double)z[v] - mx);
    s = block_sum_double(s, shd);
    return (double)mx + log(s);
}

/* ------------------------------------------------------------ log-softmax */
__global__ void log_softmax_kernel(float *out, float *lse_out, const float *logits, int V) {
    __shared__ float shf[BLOCK_REDUCE];
    __shared__ double shd[BLOCK_REDUCE];
    const float *z = logits + (size_t)blockIdx.x * V;
    // as opd_log_softmax: the lse is rounded to float, then subtracted in float
    float lse = (float)row_lse(z, V, shf, shd);
    if (out)
        for (int v = threadIdx.x; v < V; v += blockDim.x) out[(size_t)blockIdx.x * V + v] = z[v] - lse;
    if (lse_out && threadIdx.x == 0) lse_out[blockIdx.x] = lse;
}

extern "C" int opd_cuda_log_softmax(opd_cuda *cu, float *out, float *lse,
                                    const float *logits, int N, int V) {
    if (N <= 0) return 0;
    log_softmax_kernel<<<N, BLOCK_REDUCE, 0, cu->stream>>>(out, lse, logits, V);
    KERNEL_CHECK();
    return 0;
}

/* ---------------------------------------------------------- cross-entropy */
__global__ void cross_entropy_kernel(double *row_loss, float *dlogits, const float *logits,
                                     const int *targets, const float *mask, float inv, int V) {
    __shared__ float shf[BLOCK_REDUCE];
    __shared__ double shd[BLOCK_REDUCE];
    size_t n = blockIdx.x;
    const float *x = logits + n * V;
    float w = mask ? mask[n] : 1.0f;
    float lse = (float)row_lse(x, V, shf, shd);
    int y = targets[n];
    if (threadIdx.x == 0)
        row_loss[n] = w != 0.0f ? (double)w * ((double)lse - x[y]) : 0.0;
    if (dlogits) {
        // d/dx_v of -log softmax(x)_y = softmax(x)_v - [v == y]
        float g = w * inv;
        float *d = dlogits + n * V;
        for (int v = threadIdx.x; v < V; v += blockDim.x) {
            float dv = g * expf(x[v] - lse);
            if (v == y && w != 0.0f) dv -= g;
            d[v] = dv;
        }
    }
}

extern "C" int opd_cuda_cross_entropy(opd_cuda *cu, float *loss, const float *logits,
                                      const int *targets, const float *mask, int B, int S,
                                      int V, float *dlogits) {
    *loss = NAN;
    int N = B * S;
    if (N <= 0) { *loss = 0.0f; return 0; }
    // the count of masked tokens, summed on the host in the CPU's order
    float *hmask = NULL;
    double count = N;
    if (mask) {
        hmask = (float *)malloc((size_t)N * sizeof(float));
        if (!hmask) return opd_set_error("opd_cuda_cross_entropy: out of host memory");
        if (opd_cuda_download(cu, hmask, mask, (size_t)N * sizeof(float)) != 0) { free(hmask); return -1; }
        count = 0.0;
        for (int n = 0; n < N; n++) count += hmask[n];
        free(hmask);
    }
    float inv = count > 0.0 ? (float)(1.0 / count) : 0.0f;
    double *row_loss = (double *)opd_cuda_scratch(cu, (size_t)N * sizeof(double));
    if (!row_loss) return -1;
    cross_entropy_kernel<<<N, BLOCK_REDUCE, 0, cu->stream>>>(row_loss, dlogits, logits,
                                                             targets, mask, inv, V);
    KERNEL_CHECK();
    double *h = (double *)malloc((size_t)N * sizeof(double));
    if (!h) return opd_set_error("opd_cuda_cross_entropy: out of host memory");
    if (opd_cuda_download(cu, h, row_loss, (size_t)N * sizeof(double)) != 0) { free(h); return -1; }
    double s = 0.0;
    for (int n = 0; n < N; n++) s += h[n];
    free(h);
    *loss = count > 0.0 ? (float)(s / count) : 0.0f;
    return 0;
}

/* ----------------------------------------------------- distillation losses */
__device__ double logaddexp_d(double a, double b) {
    double mx = a > b ? a : b, mn = a > b ? b : a;
    if (mn == -INFINITY) return mx;
    return mx + log1p(exp(mn - mx));
}

/* The teacher's top-k ids (ties to the lower id), then sorted by id: the
 * insertion of ref/losses.c's teacher_topk, run by one thread. O(V k):
 * meant for the small k this loss is for. */
__device__ void teacher_topk_serial(int *S, const float *zt, int V, int k) {
    int n = 0;
    for (int v = 0; v < V; v++) {
        if (n == k && !(zt[v] > zt[S[k - 1]])) continue;
        int i = n < k ? n++ : k - 1;
        while (i > 0 && zt[v] > zt[S[i - 1]]) { S[i] = S[i - 1]; i--; }
        S[i] = v;
    }
    for (int a = 1; a < k; a++) {   // insertion sort by id
        int x = S[a], b = a - 1;
        while (b >= 0 && S[b] > x) { S[b + 1] = S[b]; b--; }
        S[b + 1] = x;
    }
}

/* log-sum-exp of z over the ids S (k), serial in id order, as the CPU */
__device__ double lse_subset(const float *z, const int *S, int k) {
    double mx = z[S[0]];
    for (int i = 1; i < k; i++) if (z[S[i]] > mx) mx = z[S[i]];
    double sum = 0.0;
    for (int i = 0; i < k; i++) sum += exp((double)z[S[i]] - mx);
    return mx + log(sum);
}

/* Pass 1, one block per row i = (b, t): the exact reverse KL for the log,
 * and the term and gradient of the full-distribution losses. The sampled
 * losses only gather r, w and log ps(y) here (rkl-seq needs later rewards). */
__global__ void distill_row_kernel(int kind, float beta, double clamp, int k,
                                   const float *s_logits, const float *t_logits,
                                   const int *y, const float *mask,
                                   const float *sampler_lp, const double *omega, int V,
                                   float *dlogits, float *rkl, double *term,
                                   double *reward, double *iw, double *lqy, int *Sbuf) {
    __shared__ float shf[BLOCK_REDUCE];
    __shared__ double shd[BLOCK_REDUCE];
    size_t i = blockIdx.x;
    int tid = threadIdx.x;
    float *drow = dlogits ? dlogits + i * V : NULL;
    if (mask[i] == 0.0f) {   // the whole block takes this branch
        if (drow) for (int v = tid; v < V; v += blockDim.x) drow[v] = 0.0f;
        if (tid == 0) { term[i] = 0.0; if (rkl) rkl[i] = 0.0f; }
        return;
    }
    const float *zs = s_logits + i * V, *zt = t_logits + i * V;
    double lse_s = row_lse(zs, V, shf, shd), lse_t = row_lse(zt, V, shf, shd);
    double kl = 0.0;
    for (int v = tid; v < V; v += blockDim.x) {
        double lq = zs[v] - lse_s, lp = zt[v] - lse_t;
        kl += exp(lq) * (lq - lp);
    }
    kl = block_sum_double(kl, shd);
    if (tid == 0 && rkl) rkl[i] = (float)kl;
    double om = omega[i];

    int use_rkl = kind == OPD_LOSS_RKL_FULL || (kind == OPD_LOSS_JSD && beta == 1.0f) ||
                  (kind == OPD_LOSS_RKL_TOPK && k >= V);
    int use_fkl = kind == OPD_LOSS_FKL || (kind == OPD_LOSS_JSD && beta == 0.0f);
    if (use_rkl) {
        // d KL / d z_s = q (lq - lp - KL)
        if (drow)
            for (int v = tid; v < V; v += blockDim.x) {
                double lq = zs[v] - lse_s, lp = zt[v] - lse_t;
                drow[v] = (float)(om * exp(lq) * ((lq - lp) - kl));
            }
        if (tid == 0) term[i] = kl;
    } else if (use_fkl) {
        // sum_v p (lp - lq), with 0 log 0 = 0; gradient q - p
        double f = 0.0;
        for (int v = tid; v < V; v += blockDim.x) {
            double lq = zs[v] - lse_s, lp = zt[v] - lse_t, p = exp(lp);
            if (p > 0.0) f += p * (lp - lq);
            if (drow) drow[v] = (float)(om * (exp(lq) - p));
        }
        f = block_sum_double(f, shd);
        if (tid == 0) term[i] = f;
    } else if (kind == OPD_LOSS_JSD) {
        // m = beta p + (1-beta) q; g_v = (1-beta) log(q_v / m_v);
        // d / d z_j = q_j (g_j - sum_v q_v g_v)
        double lb = log((double)beta), l1b = log1p(-(double)beta);
        double jsd = 0.0, qg = 0.0;
        for (int v = tid; v < V; v += blockDim.x) {
            double lq = zs[v] - lse_s, lp = zt[v] - lse_t;
            double lm = logaddexp_d(lb + lp, l1b + lq);
            double p = exp(lp), q = exp(lq);
            if (p > 0.0) jsd += beta * p * (lp - lm);
            if (q > 0.0) jsd += (1.0 - beta) * q * (lq - lm);
            qg += q * ((1.0 - beta) * (lq - lm));
        }
        jsd = block_sum_double(jsd, shd);
        qg = block_sum_double(qg, shd);
        if (drow)
            for (int v = tid; v < V; v += blockDim.x) {
                double lq = zs[v] - lse_s, lp = zt[v] - lse_t;
                double lm = logaddexp_d(lb + lp, l1b + lq);
                drow[v] = (float)(om * exp(lq) * ((1.0 - beta) * (lq - lm) - qg));
            }
        if (tid == 0) term[i] = jsd;
    } else if (kind == OPD_LOSS_RKL_TOPK) {
        // zero outside S, then one thread does the k-sized sub-softmax
        if (drow) for (int v = tid; v < V; v += blockDim.x) drow[v] = 0.0f;
        __syncthreads();
        if (tid == 0) {
            int *S = Sbuf + i * (size_t)k;
            teacher_topk_serial(S, zt, V, k);
            double ls = lse_subset(zs, S, k), lt = lse_subset(zt, S, k);
            double kls = 0.0;
            for (int a = 0; a < k; a++) {
                double lq = zs[S[a]] - ls, lp = zt[S[a]] - lt;
                kls += exp(lq) * (lq - lp);
            }
            if (drow)
                for (int a = 0; a < k; a++) {
                    double lq = zs[S[a]] - ls, lp = zt[S[a]] - lt;
                    drow[S[a]] = (float)(om * exp(lq) * ((lq - lp) - kls));
                }
            term[i] = kls;
        }
    } else {
        // sampled: r and w are constants of the gradient
        if (drow) for (int v = tid; v < V; v += blockDim.x) drow[v] = 0.0f;
        if (tid == 0) {
            int yi = y[i];
            double lq_y = zs[yi] - lse_s, lp_y = zt[yi] - lse_t;
            double r = lp_y - lq_y;
            if (clamp > 0.0) r = r < -clamp ? -clamp : (r > clamp ? clamp : r);
            reward[i] = r;
            iw[i] = sampler_lp ? exp(lq_y - (double)sampler_lp[i]) : 1.0;
            lqy[i] = lq_y;
        }
    }
}

/* A_t = r_t + gamma A_{t+1} within a run of masked tokens; one thread per
 * sequence, backwards in time as on the CPU. */
__global__ void advantage_kernel(double *adv, const double *reward, const float *mask,
                                 double gamma, int B, int trained_len) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    double carry = 0.0;
    for (int t = trained_len - 1; t >= 0; t--) {
        size_t i = (size_t)b * trained_len + t;
        if (mask[i] == 0.0f) { carry = 0.0; continue; }
        carry = reward[i] + gamma * carry;
        adv[i] = carry;
    }
}

/* Pass 2 of the sampled losses: l = -w A log ps(y), grad = -w A (onehot(y) - ps) */
__global__ void sampled_grad_kernel(const float *s_logits, const int *y, const float *mask,
                                    const double *omega, const double *iw, const double *adv,
                                    const double *lqy, int V, float *dlogits, double *term) {
    __shared__ float shf[BLOCK_REDUCE];
    __shared__ double shd[BLOCK_REDUCE];
    size_t i = blockIdx.x;
    if (mask[i] == 0.0f) return;
    double coef = -iw[i] * adv[i];
    if (threadIdx.x == 0) term[i] = coef * lqy[i];
    if (!dlogits) return;
    const float *zs = s_logits + i * V;
    double lse_s = row_lse(zs, V, shf, shd);
    double s = omega[i] * coef;
    int yi = y[i];
    float *drow = dlogits + i * V;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        double q = exp(zs[v] - lse_s);
        drow[v] = (float)(v == yi ? s * (1.0 - q) : -s * q);
    }
}

__global__ void per_token_kernel(float *per_token, const double *term, const float *mask, size_t N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) per_token[i] = mask[i] != 0.0f ? (float)term[i] : 0.0f;
}

/* the checks of ref/losses.c's loss_config_check */
static int loss_config_check(const opd_loss_config *c, int B, int trained_len, int V) {
    if (!c) return opd_set_error("loss: no config");
    if ((int)c->kind < 0 || (int)c->kind > (int)OPD_LOSS_RKL_SEQ)
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
    if (isnan(c->reward_clamp)) return opd_set_error("loss: reward_clamp is NaN");
    return 0;
}

/* Reduction weights omega (N) from the mask alone, exactly as the CPU.
 * Returns 1 if any token is masked. */
static int reduction_weights(double *omega, const float *mask, opd_reduction red, int B, int trained_len) {
    size_t N = (size_t)B * trained_len;
    for (size_t i = 0; i < N; i++) omega[i] = 0.0;
    if (red == OPD_REDUCE_TOKEN_MEAN) {
        double M = 0.0;
        for (size_t i = 0; i < N; i++) M += mask[i];
        if (!(M > 0.0)) return 0;
        for (size_t i = 0; i < N; i++) omega[i] = mask[i] / M;
        return 1;
    }
    int nseq = 0;
    for (int b = 0; b < B; b++) {
        double Mb = 0.0;
        for (int t = 0; t < trained_len; t++) Mb += mask[(size_t)b * trained_len + t];
        if (Mb > 0.0) nseq++;
    }
    if (nseq == 0) return 0;
    for (int b = 0; b < B; b++) {
        const float *mb = mask + (size_t)b * trained_len;
        double Mb = 0.0;
        for (int t = 0; t < trained_len; t++) Mb += mb[t];
        if (Mb > 0.0)
            for (int t = 0; t < trained_len; t++) omega[(size_t)b * trained_len + t] = mb[t] / ((double)nseq * Mb);
    }
    return 1;
}

extern "C" int opd_cuda_distill_loss(opd_cuda *cu, float *loss, const opd_loss_config *c,
                                     const float *s_logits, const float *t_logits,
                                     const int *y, const float *mask,
                                     const float *sampler_lp, int B, int trained_len, int V,
                                     float *dlogits, float *per_token, float *rkl) {
    *loss = NAN;
    size_t N = (size_t)(B > 0 ? B : 0) * (size_t)(trained_len > 0 ? trained_len : 0);
    // outputs start at zero, as on the CPU (also on an error)
    if (dlogits && V > 0) CUDA_CHECK(cudaMemsetAsync(dlogits, 0, N * V * sizeof(float), cu->stream));
    if (per_token) CUDA_CHECK(cudaMemsetAsync(per_token, 0, N * sizeof(float), cu->stream));
    if (rkl) CUDA_CHECK(cudaMemsetAsync(rkl, 0, N * sizeof(float), cu->stream));
    if (loss_config_check(c, B, trained_len, V) != 0) return -1;
    if (N == 0) { *loss = 0.0f; return 0; }

    // host side: validate, reduction weights (small, order-sensitive)
    float *hmask = (float *)malloc(N * sizeof(float));
    int *hy = (int *)malloc(N * sizeof(int));
    double *homega = (double *)malloc(N * sizeof(double));
    double *hterm = (double *)malloc(N * sizeof(double));
    int rc = -1;
    if (!hmask || !hy || !homega || !hterm) { opd_set_error("opd_cuda_distill_loss: out of host memory"); goto done; }
    if (opd_cuda_download(cu, hmask, mask, N * sizeof(float)) != 0) goto done;
    if (opd_cuda_download(cu, hy, y, N * sizeof(int)) != 0) goto done;
    for (size_t i = 0; i < N; i++) {
        if (!(hmask[i] >= 0.0f) || isinf(hmask[i])) {
            opd_set_error("loss: mask[%zu] = %g is not a finite weight >= 0", i, (double)hmask[i]);
            goto done;
        }
        if (hmask[i] != 0.0f && (hy[i] < 0 || hy[i] >= V)) {
            opd_set_error("loss: token y[%zu] = %d outside the vocabulary [0, %d)", i, hy[i], V);
            goto done;
        }
    }
    if (!reduction_weights(homega, hmask, c->reduction, B, trained_len)) { *loss = 0.0f; rc = 0; goto done; }

    {
        int k = c->kind == OPD_LOSS_RKL_TOPK ? (c->topk < V ? c->topk : V) : V;
        int topk_ids = c->kind == OPD_LOSS_RKL_TOPK && k < V;
        // scratch: omega, term, reward, iw, lqy, adv (N doubles each), S (N k ints)
        size_t bytes = 6 * N * sizeof(double) + (topk_ids ? N * (size_t)k * sizeof(int) : 0);
        double *omega = (double *)opd_cuda_scratch(cu, bytes);
        if (!omega) goto done;
        double *term = omega + N, *reward = term + N, *iw = reward + N, *lqy = iw + N, *adv = lqy + N;
        int *S = topk_ids ? (int *)(adv + N) : NULL;
        if (opd_cuda_upload(cu, omega, homega, N * sizeof(double)) != 0) goto done;
        int sampled = c->kind == OPD_LOSS_RKL_SAMPLED || c->kind == OPD_LOSS_RKL_SEQ;
        distill_row_kernel<<<(unsigned)N, BLOCK_REDUCE, 0, cu->stream>>>(
            (int)c->kind, c->beta, (double)c->reward_clamp, k, s_logits, t_logits, y, mask,
            sampler_lp, omega, V, dlogits, rkl, term, reward, iw, lqy, S);
        cudaError_t e = cudaGetLastError();
        if (e == cudaSuccess && sampled) {
            // gamma = 0 leaves A = r exactly: r + 0 * A = r
            double gamma = c->kind == OPD_LOSS_RKL_SEQ ? c->gamma : 0.0;
            advantage_kernel<<<ceil_div(B, 64), 64, 0, cu->stream>>>(adv, reward, mask, gamma, B, trained_len);
            e = cudaGetLastError();
            if (e == cudaSuccess)
                sampled_grad_kernel<<<(unsigned)N, BLOCK_REDUCE, 0, cu->stream>>>(
                    s_logits, y, mask, omega, iw, adv, lqy, V, dlogits, term);
            if (e == cudaSuccess) e = cudaGetLastError();
        }
        if (e == cudaSuccess && per_token) {
            per_token_kernel<<<ceil_div(N, 256), 256, 0, cu->stream>>>(per_token, term, mask, N);
            e = cudaGetLastError();
        }
        if (e != cudaSuccess) {
            opd_set_error("%s:%d: distillation loss kernels: %s", __FILE__, __LINE__, cudaGetErrorString(e));
            goto done;
        }
        if (opd_cuda_download(cu, hterm, term, N * sizeof(double)) != 0) goto done;
        // the reduction, sequential in row order (as the CPU)
        double sum = 0.0;
        for (size_t i = 0; i < N; i++)
            if (hmask[i] != 0.0f) sum += homega[i] * hterm[i];
        *loss = (float)sum;
        rc = 0;
    }
done:
    free(hmask); free(hy); free(homega); free(hterm);
    return rc;
}
