/* layers.cu — the decoder layers on the GPU, one kernel (or cuBLAS call) per
 * layer and direction, mirroring ref/layers.c and ref/matmul.c. Written for
 * clarity, in the manner of llm.c's simplest CUDA kernels: one thread per
 * output element or per row, every reduction in a fixed order (a weight
 * gradient is summed over rows by one thread per channel), so results are
 * deterministic. Backward kernels ACCUMULATE (+=). */
#include <math.h>

#include "common.cuh"

/* ------------------------------------------------------------------ matmul */
/* cuBLAS is column-major. A row-major (R, K) array read column-major is
 * its transpose, the (K x R) matrix X_cm. So the row-major product
 *     out (N, OC) = inp (N, C) @ W (OC, C)^T
 * transposed is out_cm (OC x N) = W (OC x C) * inp^T (C x N)
 *                               = op_T(W_cm (C x OC)) * inp_cm (C x N),
 * i.e. sgemm(S, N, m=OC, n=N, k=C, W, lda=C, inp, ldb=C, out, ldc=OC). */

__global__ void add_bias_kernel(float *out, const float *bias, int N, int OC) {
    // out is (N, OC), bias is (OC)
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)N * OC) out[i] += bias[i % OC];
}

__global__ void bias_backward_kernel(float *dbias, const float *dout, int N, int OC) {
    // one thread per output channel, rows summed in order (deterministic)
    int oc = blockIdx.x * blockDim.x + threadIdx.x;
    if (oc >= OC) return;
    float s = 0.0f;
    for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + oc];
    dbias[oc] += s;
}

extern "C" int opd_cuda_matmul_forward(opd_cuda *cu, float *out, const float *inp,
                                       const float *weight, const float *bias,
                                       int N, int C, int OC) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasSgemm(cu->cublas, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one,
                             weight, C, inp, C, &zero, out, OC));
    if (bias) {
        size_t n = (size_t)N * OC;
        add_bias_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(out, bias, N, OC);
        KERNEL_CHECK();
    }
    return 0;
}

extern "C" int opd_cuda_matmul_backward(opd_cuda *cu, float *dinp, float *dweight,
                                        float *dbias, const float *dout,
                                        const float *inp, const float *weight,
                                        int N, int C, int OC) {
    const float one = 1.0f;
    if (dinp) {
        // dinp (N, C) += dout (N, OC) @ W (OC, C)
        // column-major: dinp_cm (C x N) += W_cm (C x OC) * dout_cm (OC x N)
        CUBLAS_CHECK(cublasSgemm(cu->cublas, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one,
                                 weight, C, dout, OC, &one, dinp, C));
    }
    if (dweight) {
        // dW (OC, C) += dout^T (OC, N) @ inp (N, C)
        // column-major: dW_cm (C x OC) += inp_cm (C x N) * op_T(dout_cm (OC x N))
        CUBLAS_CHECK(cublasSgemm(cu->cublas, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one,
                                 inp, C, dout, OC, &one, dweight, C));
    }
    if (dbias) {
        bias_backward_kernel<<<ceil_div(OC, 256), 256, 0, cu->stream>>>(dbias, dout, N, OC);
        KERNEL_CHECK();
    }
    return 0;
}

/* The reference's gemm definition (ref/gemm.c) on the GPU, for checking bits
 * rather than for speed: one thread per element of row-major C, C = beta C
 * (beta 0: +0), then C = fmaf(alpha A[i][k], B[k][j], C) for k = 0 .. K-1 in
 * order. __fmul_rn / __fmaf_rn are IEEE round-to-nearest and never fused
 * with anything else, so the result is the CPU's bit for bit. */
__global__ void gemm_reference_kernel(int transA, int transB, int M, int N, int K, float alpha,
                                      const float *A, int lda, const float *B, int ldb,
                                      float beta, float *C, int ldc) {
    int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (i >= M || j >= N) return;
    float c = beta == 0.0f ? 0.0f : __fmul_rn(beta, C[(size_t)i * ldc + j]);
    for (int k = 0; k < K; k++) {
        float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        c = __fmaf_rn(__fmul_rn(alpha, a), b, c);
    }
    C[(size_t)i * ldc + j] = c;
}

extern "C" int opd_cuda_gemm_reference(opd_cuda *cu, int transA, int transB, int M, int N, int K,
                                       float alpha, const float *A, int lda, const float *B, int ldb,
                                       float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return 0;
    dim3 grid((unsigned)ceil_div((size_t)N, 128), (unsigned)M);
    gemm_reference_kernel<<<grid, 128, 0, cu->stream>>>(transA, transB, M, N, K, alpha, A, lda, B,
                                                         ldb, beta, C, ldc);
    KERNEL_CHECK();
    return 0;
}

/* ----------------------------------------------------------------- encoder */
__global__ void encoder_forward_kernel(float *out, const int *tokens,
                                       const float *wte, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    out[i] = wte[(size_t)tokens[n] * C + c];
}

__global__ void encoder_backward_kernel(float *dwte, const float *dout,
                                        const int *tokens, int N, int C) {
    // rows of the same token add into one row of dwte: one thread per
    // channel walks the rows in order, as the CPU does, so no atomics
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++)
        dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

extern "C" int opd_cuda_encoder_forward(opd_cuda *cu, float *out, const int *tokens,
                                        const float *wte, int N, int C) {
    size_t n = (size_t)N * C;
    encoder_forward_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(out, tokens, wte, N, C);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_encoder_backward(opd_cuda *cu, float *dwte, const float *dout,
                                         const int *tokens, int N, int C) {
    encoder_backward_kernel<<<ceil_div(C, 128), 128, 0, cu->stream>>>(dwte, dout, tokens, N, C);
    KERNEL_CHECK();
    return 0;
}

/* ----------------------------------------------------------------- rmsnorm */
/* One warp per row: the lanes stride over C and combine with shuffles (a
 * fixed butterfly, so the sum is deterministic). */
__device__ inline float warp_sum(float x) {
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp,
                                       const float *weight, int N, int C, float eps) {
    int n = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (n >= N) return;   // whole warps leave together (blockDim is a multiple of 32)
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) ss += x[c] * x[c];
    ss = warp_sum(ss);
    float r = 1.0f / sqrtf(ss / C + eps);
    for (int c = lane; c < C; c += 32) o[c] = x[c] * r * weight[c];
    if (lane == 0) rstd[n] = r;
}

__global__ void rmsnorm_backward_dinp_kernel(float *dinp, const float *dout,
                                             const float *inp, const float *weight,
                                             const float *rstd, int N, int C) {
    // dx_i = r w_i dy_i - x_i r^3 / C * sum_j dy_j w_j x_j
    int n = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
    float *dx = dinp + (size_t)n * C;
    float r = rstd[n], dot = 0.0f;
    for (int c = lane; c < C; c += 32) dot += dy[c] * weight[c] * x[c];
    dot = warp_sum(dot);
    float coef = dot * r * r * r / C;
    for (int c = lane; c < C; c += 32) dx[c] += r * weight[c] * dy[c] - coef * x[c];
}

__global__ void rmsnorm_backward_dweight_kernel(float *dweight, const float *dout,
                                                const float *inp, const float *rstd,
                                                int N, int C) {
    // dw_c = sum_n dy * x * r, one thread per channel, rows in order
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int n = 0; n < N; n++)
        s += dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
    dweight[c] += s;
}

extern "C" int opd_cuda_rmsnorm_forward(opd_cuda *cu, float *out, float *rstd,
                                        const float *inp, const float *weight,
                                        int N, int C, float eps) {
    rmsnorm_forward_kernel<<<ceil_div((size_t)N * 32, 256), 256, 0, cu->stream>>>(
        out, rstd, inp, weight, N, C, eps);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_rmsnorm_backward(opd_cuda *cu, float *dinp, float *dweight,
                                         const float *dout, const float *inp,
                                         const float *weight, const float *rstd,
                                         int N, int C) {
    rmsnorm_backward_dinp_kernel<<<ceil_div((size_t)N * 32, 256), 256, 0, cu->stream>>>(
        dinp, dout, inp, weight, rstd, N, C);
    KERNEL_CHECK();
    rmsnorm_backward_dweight_kernel<<<ceil_div(C, 128), 128, 0, cu->stream>>>(
        dweight, dout, inp, rstd, N, C);
    KERNEL_CHECK();
    return 0;
}

/* -------------------------------------------------------------------- rope */
__global__ void rope_positions_kernel(int *pos, const int *pad, int B, int S) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * S) return;
    int b = i / S, t = i % S;
    int p = pad ? pad[b] : 0;
    pos[i] = t >= p ? t - p : 0;
}

/* One thread per (n, h, i < hd/2) rotates the pair (i, i + hd/2). The
 * frequency and angle are fp32 as in ref/layers.c (and transformers);
 * device powf/cosf/sinf differ from glibc by an ulp or two. */
__global__ void rope_kernel(float *x, const int *pos, int N, int nh, int hd,
                            float theta, float sign) {
    int half = hd / 2;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)N * nh * half) return;
    int i = idx % half;
    size_t nhh = idx / half;          // (n, h)
    size_t n = nhh / nh;
    float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    float angle = (float)pos[n] * inv_freq;
    float c = cosf(angle), s = sign * sinf(angle);
    float *xh = x + nhh * hd;
    float x1 = xh[i], x2 = xh[i + half];
    xh[i] = x1 * c - x2 * s;
    xh[i + half] = x2 * c + x1 * s;
}

extern "C" int opd_cuda_rope_positions(opd_cuda *cu, int *pos, const int *pad, int B, int S) {
    rope_positions_kernel<<<ceil_div((size_t)B * S, 256), 256, 0, cu->stream>>>(pos, pad, B, S);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_rope_forward(opd_cuda *cu, float *x, const int *pos, int N,
                                     int nh, int hd, float theta) {
    size_t n = (size_t)N * nh * (hd / 2);
    rope_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(x, pos, N, nh, hd, theta, 1.0f);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_rope_backward(opd_cuda *cu, float *dx, const int *pos, int N,
                                      int nh, int hd, float theta) {
    // a rotation's Jacobian is the rotation; its transpose rotates by -angle
    size_t n = (size_t)N * nh * (hd / 2);
    rope_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(dx, pos, N, nh, hd, theta, -1.0f);
    KERNEL_CHECK();
    return 0;
}

/* --------------------------------------------------------------- attention */
/* One thread per query row (b, h, t), the loop of ref/layers.c verbatim:
 * scores over the keys [j0, t] it sees, a max-shifted softmax, the weighted
 * sum of values. Query head h reads kv head h / (NH / NKV). */
__global__ void attention_forward_kernel(float *out, float *att, const float *q,
                                         const float *k, const float *v,
                                         const int *pad, int B, int S, int NH,
                                         int NKV, int hd) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * S) return;
    int t = idx % S;
    int h = (idx / S) % NH;
    int b = idx / ((size_t)S * NH);
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hd);
    int p = pad ? pad[b] : 0;
    const float *qt = q + ((size_t)b * S + t) * qd + h * hd;
    const float *kb = k + (size_t)b * S * kvd + (h / group) * hd;
    const float *vb = v + (size_t)b * S * kvd + (h / group) * hd;
    float *a = att + (((size_t)b * NH + h) * S + t) * S;
    float *o = out + ((size_t)b * S + t) * qd + h * hd;
    // a real query sees keys [pad, t]; a pad query (t < pad) sees only itself
    int j0 = t < p ? t : p;
    for (int j = 0; j < S; j++) a[j] = 0.0f;
    float maxv = -INFINITY;
    for (int j = j0; j <= t; j++) {
        const float *kj = kb + (size_t)j * kvd;
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += qt[i] * kj[i];
        a[j] = s * scale;
        if (a[j] > maxv) maxv = a[j];
    }
    float sum = 0.0f;
    for (int j = j0; j <= t; j++) { a[j] = expf(a[j] - maxv); sum += a[j]; }
    for (int j = j0; j <= t; j++) a[j] /= sum;
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int j = j0; j <= t; j++) {
        const float *vj = vb + (size_t)j * kvd;
        for (int i = 0; i < hd; i++) o[i] += a[j] * vj[i];
    }
}

/* Backward in three kernels so that every output has exactly one writer:
 *  1. per query row (b, h, t): dP_tj = dout_t . v_j, then through the
 *     softmax dZ_tj = P_tj (dP_tj - sum_k P_tk dP_tk) (0 for j > t);
 *  2. per (b, t, h, i): dq += scale sum_j dZ_tj k_j[i];
 *  3. per (b, j, kv head, i): dk += scale sum_{h in group, t >= j} dZ_tj q_t[i],
 *     dv += sum_{h in group, t >= j} P_tj dout_t[i].
 * Masked entries have P = 0 hence dZ = 0, so the mask needs no case. */
__global__ void attention_backward_dS_kernel(float *datt, const float *dout,
                                             const float *v, const float *att,
                                             int B, int S, int NH, int NKV, int hd) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * NH * S) return;
    int t = idx % S;
    int h = (idx / S) % NH;
    int b = idx / ((size_t)S * NH);
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    const float *dot = dout + ((size_t)b * S + t) * qd + h * hd;
    const float *vb = v + (size_t)b * S * kvd + (h / group) * hd;
    const float *P = att + (((size_t)b * NH + h) * S + t) * S;
    float *dZ = datt + (((size_t)b * NH + h) * S + t) * S;
    for (int j = 0; j <= t; j++) {
        const float *vj = vb + (size_t)j * kvd;
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += dot[i] * vj[i];
        dZ[j] = s;   // dP for now
    }
    float pdp = 0.0f;
    for (int j = 0; j <= t; j++) pdp += P[j] * dZ[j];
    for (int j = 0; j <= t; j++) dZ[j] = P[j] * (dZ[j] - pdp);
    for (int j = t + 1; j < S; j++) dZ[j] = 0.0f;
}

__global__ void attention_backward_dq_kernel(float *dq, const float *datt,
                                             const float *k, int B, int S, int NH,
                                             int NKV, int hd) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * S * NH * hd) return;
    int i = idx % hd;
    int h = (idx / hd) % NH;
    int t = (idx / ((size_t)hd * NH)) % S;
    int b = idx / ((size_t)hd * NH * S);
    int kvd = NKV * hd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hd);
    const float *dZ = datt + (((size_t)b * NH + h) * S + t) * S;
    const float *kb = k + (size_t)b * S * kvd + (h / group) * hd + i;
    float s = 0.0f;
    for (int j = 0; j <= t; j++) s += dZ[j] * kb[(size_t)j * kvd];
    dq[idx] += scale * s;   // idx is the (b, t, h, i) offset of dq
}

__global__ void attention_backward_dkv_kernel(float *dk, float *dv, const float *datt,
                                              const float *att, const float *q,
                                              const float *dout, int B, int S, int NH,
                                              int NKV, int hd) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * S * NKV * hd) return;
    int i = idx % hd;
    int kh = (idx / hd) % NKV;
    int j = (idx / ((size_t)hd * NKV)) % S;
    int b = idx / ((size_t)hd * NKV * S);
    int qd = NH * hd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hd);
    float sk = 0.0f, sv = 0.0f;
    for (int h = kh * group; h < (kh + 1) * group; h++) {
        for (int t = j; t < S; t++) {
            size_t row = (((size_t)b * NH + h) * S + t) * S;
            size_t qo = ((size_t)b * S + t) * qd + h * hd + i;
            sk += datt[row + j] * q[qo];
            sv += att[row + j] * dout[qo];
        }
    }
    dk[idx] += scale * sk;   // idx is the (b, j, kh, i) offset of dk and dv
    dv[idx] += sv;
}

extern "C" int opd_cuda_attention_forward(opd_cuda *cu, float *out, float *att,
                                          const float *q, const float *k, const float *v,
                                          const int *pad, int B, int S, int NH, int NKV,
                                          int hd) {
    if (NKV <= 0 || NH % NKV != 0)
        return opd_set_error("opd_cuda_attention_forward: NH = %d is not a multiple of NKV = %d", NH, NKV);
    size_t rows = (size_t)B * NH * S;
    attention_forward_kernel<<<ceil_div(rows, 128), 128, 0, cu->stream>>>(
        out, att, q, k, v, pad, B, S, NH, NKV, hd);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_attention_backward(opd_cuda *cu, float *dq, float *dk, float *dv,
                                           float *datt, const float *dout, const float *q,
                                           const float *k, const float *v, const float *att,
                                           int B, int S, int NH, int NKV,
                                           int hd) {
    if (NKV <= 0 || NH % NKV != 0)
        return opd_set_error("opd_cuda_attention_backward: NH = %d is not a multiple of NKV = %d", NH, NKV);
    size_t rows = (size_t)B * NH * S;
    attention_backward_dS_kernel<<<ceil_div(rows, 128), 128, 0, cu->stream>>>(
        datt, dout, v, att, B, S, NH, NKV, hd);
    KERNEL_CHECK();
    size_t nq = (size_t)B * S * NH * hd;
    attention_backward_dq_kernel<<<ceil_div(nq, 256), 256, 0, cu->stream>>>(
        dq, datt, k, B, S, NH, NKV, hd);
    KERNEL_CHECK();
    size_t nkv = (size_t)B * S * NKV * hd;
    attention_backward_dkv_kernel<<<ceil_div(nkv, 256), 256, 0, cu->stream>>>(
        dk, dv, datt, att, q, dout, B, S, NH, NKV, hd);
    KERNEL_CHECK();
    return 0;
}

/* ------------------------------------------------------------------ swiglu */
__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout,
                                       const float *gate, const float *up, size_t n) {
    // d silu(g)/dg = s + g s (1 - s), s = sigmoid(g)
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i], s = 1.0f / (1.0f + expf(-g));
    dgate[i] += dout[i] * up[i] * (s + g * s * (1.0f - s));
    dup[i] += dout[i] * g * s;
}

extern "C" int opd_cuda_swiglu_forward(opd_cuda *cu, float *out, const float *gate,
                                       const float *up, int N, int F) {
    size_t n = (size_t)N * F;
    swiglu_forward_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(out, gate, up, n);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_swiglu_backward(opd_cuda *cu, float *dgate, float *dup,
                                        const float *dout, const float *gate,
                                        const float *up, int N, int F) {
    size_t n = (size_t)N * F;
    swiglu_backward_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(dgate, dup, dout, gate, up, n);
    KERNEL_CHECK();
    return 0;
}

/* ---------------------------------------------------------- elementwise */
__global__ void add_inplace_kernel(float *y, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

__global__ void scale_inplace_kernel(float *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

extern "C" int opd_cuda_add_inplace(opd_cuda *cu, float *y, const float *x, size_t n) {
    if (n == 0) return 0;
    add_inplace_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(y, x, n);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_scale(opd_cuda *cu, float *x, float s, size_t n) {
    if (n == 0) return 0;
    scale_inplace_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(x, s, n);
    KERNEL_CHECK();
    return 0;
}

/* ------------------------------------------------- KV cache and decode */
__global__ void decode_positions_kernel(int *pos, const int *pad, int B, int t) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    int p = pad ? pad[b] : 0;
    pos[b] = t >= p ? t - p : 0;
}

extern "C" int opd_cuda_decode_positions(opd_cuda *cu, int *pos, const int *pad, int B, int t) {
    decode_positions_kernel<<<ceil_div(B, 128), 128, 0, cu->stream>>>(pos, pad, B, t);
    KERNEL_CHECK();
    return 0;
}

extern "C" int opd_cuda_kv_cache_write(opd_cuda *cu, float *kc, float *vc, const float *k,
                                       const float *v, int B, int S, int kvd, int t) {
    const size_t fl = sizeof(float), row = (size_t)kvd * fl;
    // keys (B, kvd, S): the B*kvd floats of k, each to column t of its row
    CUDA_CHECK(cudaMemcpy2DAsync(kc + t, (size_t)S * fl, k, fl, fl, (size_t)B * kvd,
                                 cudaMemcpyDeviceToDevice, cu->stream));
    // values (B, S, kvd): B rows of kvd floats, each to row t of its sequence's block
    CUDA_CHECK(cudaMemcpy2DAsync(vc + (size_t)t * kvd, (size_t)S * row, v, row, row, B,
                                 cudaMemcpyDeviceToDevice, cu->stream));
    return 0;
}

/* One thread per (sequence, query head), the loop of attention_decode_forward
 * (ref/layers.c) with n = 1 over the same cache layout (keys transposed),
 * including its 1/sum multiply, so the logits the sampler sees are the CPU's
 * up to rounding (expf, not opd_expf). The att row is this thread's own
 * scratch. */
__global__ void decode_attention_kernel(float *out, float *att, const float *q,
                                        const float *kc, const float *vc, const int *pad,
                                        int B, int S, int t, int NH, int NKV, int hd) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * NH) return;
    int b = idx / NH, h = idx % NH;
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hd);
    int pb = pad ? pad[b] : 0;
    int j0 = t >= pb ? pb : t;
    const float *qh = q + (size_t)b * qd + h * hd;
    const float *kT = kc + ((size_t)b * kvd + (h / group) * hd) * S;   // (hd, S)
    const float *vb = vc + (size_t)b * S * kvd + (h / group) * hd;
    float *a = att + ((size_t)b * NH + h) * S;
    float maxv = -INFINITY;
    for (int j = j0; j <= t; j++) {
        float dot = 0.0f;
        for (int i = 0; i < hd; i++) dot += qh[i] * kT[(size_t)i * S + j];
        a[j] = dot * scale;
        if (a[j] > maxv) maxv = a[j];
    }
    float sum = 0.0f;
    for (int j = j0; j <= t; j++) { a[j] = expf(a[j] - maxv); sum += a[j]; }
    float inv = 1.0f / sum;
    float *o = out + (size_t)b * qd + h * hd;
    for (int i = 0; i < hd; i++) o[i] = 0.0f;
    for (int j = j0; j <= t; j++) {
        const float *vj = vb + (size_t)j * kvd;
        float w = a[j] * inv;
        for (int i = 0; i < hd; i++) o[i] += w * vj[i];
    }
}

extern "C" int opd_cuda_decode_attention(opd_cuda *cu, float *out, float *att, const float *q,
                                         const float *kc, const float *vc, const int *pad,
                                         int B, int S, int t, int NH, int NKV, int hd) {
    if (NKV <= 0 || NH % NKV != 0)
        return opd_set_error("opd_cuda_decode_attention: NH = %d is not a multiple of NKV = %d", NH, NKV);
    if (t < 0 || t >= S)
        return opd_set_error("opd_cuda_decode_attention: position %d outside the cache (capacity %d)", t, S);
    decode_attention_kernel<<<ceil_div((size_t)B * NH, 128), 128, 0, cu->stream>>>(
        out, att, q, kc, vc, pad, B, S, t, NH, NKV, hd);
    KERNEL_CHECK();
    return 0;
}
