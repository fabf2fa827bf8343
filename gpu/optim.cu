/* optim.cu — the global gradient norm, clipping and AdamW on the GPU, the
 * formulas of ref/optim.c (torch.optim.AdamW + clip_grad_norm_):
 *   g <- g * min(1, clip / (||g|| + 1e-6))
 *   p <- p * (1 - lr wd)                       (decay tensors only)
 *   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
 *   p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * The norm uses the CPU's chunks of 65536, one block per chunk (in double),
 * the partial sums added on the host in chunk order. */
#include <math.h>
#include <stdlib.h>

#include "common.cuh"

#define NORM_CHUNK 65536

__global__ void sumsq_chunk_kernel(double *partial, const float *g, size_t n) {
    __shared__ double shd[BLOCK_REDUCE];
    size_t lo = (size_t)blockIdx.x * NORM_CHUNK;
    size_t hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
    double s = 0.0;
    for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x) s += (double)g[i] * (double)g[i];
    s = block_sum_double(s, shd);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void scale_kernel(float *g, float coef, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] *= coef;
}

__global__ void adamw_kernel(float *p, const float *g, float *mt, float *vt, size_t len,
                             float lr, float beta1, float beta2, float eps, float bc1,
                             float bc2, float decay) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= len) return;
    float gi = g[i];
    float mi = beta1 * mt[i] + (1.0f - beta1) * gi;
    float vi = beta2 * vt[i] + (1.0f - beta2) * gi * gi;
    mt[i] = mi;
    vt[i] = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    p[i] = p[i] * decay - lr * mhat / (sqrtf(vhat) + eps);
}

extern "C" int opd_cuda_grad_norm(opd_cuda *cu, float *norm, const float *g, size_t n) {
    *norm = 0.0f;
    if (n == 0) return 0;
    size_t nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *partial = (double *)opd_cuda_scratch(cu, nchunks * sizeof(double));
    if (!partial) return -1;
    sumsq_chunk_kernel<<<(unsigned)nchunks, BLOCK_REDUCE, 0, cu->stream>>>(partial, g, n);
    KERNEL_CHECK();
    double *h = (double *)malloc(nchunks * sizeof(double));
    if (!h) return opd_set_error("opd_cuda_grad_norm: out of host memory");
    if (opd_cuda_download(cu, h, partial, nchunks * sizeof(double)) != 0) { free(h); return -1; }
    double s = 0.0;
    for (size_t c = 0; c < nchunks; c++) s += h[c];
    free(h);
    *norm = (float)sqrt(s);
    return 0;
}

extern "C" int opd_cuda_adamw_update(opd_cuda *cu, float *norm, float *params,
                                     float *grads, float *m, float *v,
                                     const opd_config *cfg, const opd_optim_config *c,
                                     long *step) {
    size_t n = opd_param_count(cfg);
    if (opd_cuda_grad_norm(cu, norm, grads, n) != 0) return -1;
    // a NaN/Inf gradient would poison every parameter and moment: skip
    if (!isfinite(*norm)) return 0;
    if (c->grad_clip > 0.0f) {
        float coef = c->grad_clip / (*norm + 1e-6f);   // torch's clip_grad_norm_
        if (coef < 1.0f) {
            scale_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(grads, coef, n);
            KERNEL_CHECK();
        }
    }
    long t = *step + 1;
    float lr = opd_lr_at(c, *step);
    float bc1 = (float)(1.0 - pow((double)c->beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)c->beta2, (double)t));
    int nt = opd_param_tensor_count(cfg);
    opd_tensor_info *ts = (opd_tensor_info *)malloc((size_t)nt * sizeof *ts);
    if (!ts) return opd_set_error("opd_cuda_adamw_update: out of host memory");
    opd_param_tensors(cfg, ts);
    for (int k = 0; k < nt; k++) {
        float decay = ts[k].decay ? 1.0f - lr * c->weight_decay : 1.0f;
        size_t off = ts[k].offset, len = ts[k].numel;
        adamw_kernel<<<ceil_div(len, 256), 256, 0, cu->stream>>>(
            params + off, grads + off, m + off, v + off, len, lr, c->beta1, c->beta2,
            c->eps, bc1, bc2, decay);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) {
            opd_set_error("%s:%d: adamw_kernel (tensor %s): %s", __FILE__, __LINE__,
                          ts[k].name, cudaGetErrorString(e));
            free(ts);
            return -1;
        }
    }
    free(ts);
    *step = t;
    return 0;
}
