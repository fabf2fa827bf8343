/* layers.c — the layers of the decoder, one function per layer and direction
 * (llm.c style). Backward functions ACCUMULATE (+=) into their gradients.
 *
 * Determinism: OpenMP sits on loops whose iterations write disjoint outputs;
 * every reduction (a weight gradient summed over rows, a key gradient summed
 * over queries) is done by one thread in a fixed order, so results do not
 * depend on the number of threads. */
#include "opd.h"
#include "vecmat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- encoder */
void encoder_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    // tokens is (N), wte is (V,C), out is (N,C)
#pragma omp parallel for if ((size_t)N * C > OPD_OMP_MIN_ELEMS)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, C * sizeof(float));
}

void encoder_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    // Rows of the same token add into one row of dwte: serial, in row order,
    // so the sum does not depend on the thread count (and costs N*C adds).
    for (int n = 0; n < N; n++) {
        float *dw = dwte + (size_t)tokens[n] * C;
        const float *d = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) dw[c] += d[c];
    }
}

/* ----------------------------------------------------------------- rmsnorm */
void rmsnorm_forward(float *out, float *rstd, const float *inp,
                     const float *weight, int N, int C, float eps) {
    // inp is (N,C), weight is (C), out is (N,C), rstd is (N)
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = opd_rsqrtf(ss / C + eps);
        for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
        rstd[n] = r;
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout,
                      const float *inp, const float *weight, const float *rstd,
                      int N, int C) {
    // y = x * r * w with r = (mean(x^2) + eps)^(-1/2), and dr/dx_i = -r^3 x_i / C:
    // dx_i = r w_i dy_i - x_i r^3 / C * sum_j dy_j w_j x_j
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n], dot = 0.0f;
        for (int c = 0; c < C; c++) dot += dy[c] * weight[c] * x[c];
        float coef = dot * r * r * r / C;
        for (int c = 0; c < C; c++) dx[c] += r * weight[c] * dy[c] - coef * x[c];
    }
    // dw_c = sum_n dy * x * r: one thread per channel, rows in order
#pragma omp parallel for
    for (int c = 0; c < C; c++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++)
            s += dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
        dweight[c] += s;
    }
}

/* -------------------------------------------------------------------- rope */
/* Rotary embedding, rotate-half convention (Llama / Qwen2 in Hugging Face):
 * pair (i, i + hd/2) is rotated by pos * theta^(-2i/hd). The exponent, the
 * frequency and the angle are rounded to fp32 as transformers does, so
 * logits match it; theta^e, cos and sin are the project's own (mathfn.c),
 * evaluated in double and rounded once. */
static void rope_rotate(float *x, const int *pos, int N, int nh, int hd,
                        float theta, float sign) {
    int half = hd / 2, maxpos = 0;
    for (int n = 0; n < N; n++) if (pos[n] > maxpos) maxpos = pos[n];
    // cos and sin of each (position, i) in use once, not once per row: a
    // batch repeats every position B times (same expressions, same bits)
    unsigned char *used = opd_calloc(maxpos + 1, 1);
    for (int n = 0; n < N; n++) used[pos[n]] = 1;
    float *cs = opd_malloc((size_t)(maxpos + 1) * half * 2 * sizeof(float));
#pragma omp parallel for if ((size_t)N * half > OPD_OMP_MIN_ELEMS)
    for (int p = 0; p <= maxpos; p++) {
        if (!used[p]) continue;
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / (float)opd_pow(theta, (float)(2 * i) / (float)hd);
            float angle = (float)p * inv_freq;
            double sn, cn;
            opd_sincos(angle, &sn, &cn);
            cs[((size_t)p * half + i) * 2] = (float)cn;
            cs[((size_t)p * half + i) * 2 + 1] = (float)sn;
        }
    }
#pragma omp parallel for if ((size_t)N * nh * hd > OPD_OMP_MIN_ELEMS)
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            const float *csi = cs + ((size_t)pos[n] * half + i) * 2;
            float c = csi[0], s = sign * csi[1];
            for (int h = 0; h < nh; h++) {
                float *xh = x + ((size_t)n * nh + h) * hd;
                float x1 = xh[i], x2 = xh[i + half];
                xh[i] = x1 * c - x2 * s;
                xh[i + half] = x2 * c + x1 * s;
            }
        }
    }
    free(cs);
    free(used);
}

void rope_forward(float *x, const int *pos, int N, int nh, int hd, float theta) {
    // x is (N, nh, hd), pos is (N)
    rope_rotate(x, pos, N, nh, hd, theta, 1.0f);
}

void rope_backward(float *dx, const int *pos, int N, int nh, int hd, float theta) {
    // a rotation's Jacobian is the rotation; its transpose rotates by -angle
    rope_rotate(dx, pos, N, nh, hd, theta, -1.0f);
}

/* --------------------------------------------------------------- attention */
/* Causal grouped-query attention with left padding. Query head h reads
 * key/value head h / (NH/NKV). Sequence b has pad[b] leading pad tokens: no
 * real query sees them (keys j < pad[b] masked), and a pad query row attends
 * to itself only, so its softmax is well defined (output = its own value).
 *
 * Why gemms: per (b, h) the scores Z = scale Q K^T and the output P V are
 * (S,hd)x(hd,S) and (S,S)x(S,hd) products; one sgemm each runs them several
 * times faster than one query at a time. Causal: query rows go in blocks of
 * ATT_QB, and a block's products stop at its last row's key, so the blocks
 * above the diagonal are never computed. Determinism as in matmul.c: the
 * parallel loop is ours, over (b, h); each opd_sgemm inside it runs on one
 * thread (nested regions are inactive, and OpenBLAS does not thread inside a
 * parallel region), so the bits do not depend on the thread count. */
#define ATT_QB 64

void attention_forward(float *out, float *att, const float *q, const float *k,
                       const float *v, const int *pad, int B, int S, int NH,
                       int NKV, int hd) {
    // q is (B,S,NH*hd), k, v are (B,S,NKV*hd), out is (B,S,NH*hd), att is (B,NH,S,S)
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = opd_rsqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int p = pad ? pad[b] : 0;
            const float *qb = q + (size_t)b * S * qd + h * hd;                // (S,hd), row stride qd
            const float *kb = k + (size_t)b * S * kvd + (h / group) * hd;     // (S,hd), row stride kvd
            const float *vb = v + (size_t)b * S * kvd + (h / group) * hd;     // (S,hd), row stride kvd
            float *ab = att + ((size_t)b * NH + h) * S * S;                   // (S,S)
            float *ob = out + (size_t)b * S * qd + h * hd;                    // (S,hd), row stride qd
            for (int t0 = 0; t0 < S; t0 += ATT_QB) {
                int t1 = t0 + ATT_QB < S ? t0 + ATT_QB : S, m = t1 - t0;
                // Z[t0:t1, 0:t1] (m,t1) = scale Q[t0:t1] (m,hd) K[0:t1]^T (hd,t1)
                opd_sgemm(0, 1, m, t1, hd, scale, qb + (size_t)t0 * qd, qd, kb, kvd,
                          0.0f, ab + (size_t)t0 * S, S);
                for (int t = t0; t < t1; t++) {
                    float *a = ab + (size_t)t * S;
                    // the keys this query sees: [j0, t]; the rest of the row is 0
                    int j0 = t < p ? t : p;
                    float maxv = -INFINITY;
                    for (int j = j0; j <= t; j++) if (a[j] > maxv) maxv = a[j];
                    // softmax shifted by the max so exp never overflows
                    opd_vexp_sub(a + j0, a + j0, maxv, (size_t)(t - j0 + 1));
                    float sum = 0.0f;
                    for (int j = j0; j <= t; j++) sum += a[j];
                    for (int j = j0; j <= t; j++) a[j] /= sum;
                    for (int j = 0; j < j0; j++) a[j] = 0.0f;
                    for (int j = t + 1; j < S; j++) a[j] = 0.0f;
                }
                // out[t0:t1] (m,hd) = P[t0:t1, 0:t1] (m,t1) V[0:t1] (t1,hd)
                opd_sgemm(0, 0, m, hd, t1, 1.0f, ab + (size_t)t0 * S, S, vb, kvd,
                          0.0f, ob + (size_t)t0 * qd, qd);
            }
        }
    }
}

/* Backward of attention_forward, in the order a reader derives it:
 *   out_t   = sum_j P_tj v_j           ->  dP_tj = dout_t . v_j,  dv_j += P_tj dout_t
 *   P_t     = softmax(Z_t)             ->  dZ_tj = P_tj (dP_tj - sum_k P_tk dP_tk)
 *   Z_tj    = scale q_t . k_j          ->  dq_t += scale sum_j dZ_tj k_j,
 *                                          dk_j += scale dZ_tj q_t
 * Masked entries have P = 0, hence dZ = 0: they need no special case. As in
 * the forward, each line is a gemm over a block of ATT_QB query rows and the
 * keys up to its last row: dP = dout V^T, dv += P^T dout, dq += scale dZ K,
 * dk += scale dZ^T Q. dk and dv of a kv head sum over every query head of its
 * group and every query block, so one thread owns one (b, kv head) and loops
 * over them in order; its gemms are single-threaded (see the forward). */
void attention_backward(float *dq, float *dk, float *dv, float *datt,
                        const float *dout, const float *q, const float *k,
                        const float *v, const float *att,
                        int B, int S, int NH, int NKV, int hd) {
    // datt is (B,NH,S,S) scratch: dP, then overwritten by dZ
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = opd_rsqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < NKV; kh++) {
            const float *kb = k + (size_t)b * S * kvd + kh * hd;   // (S,hd), row stride kvd
            const float *vb = v + (size_t)b * S * kvd + kh * hd;
            float *dkb = dk + (size_t)b * S * kvd + kh * hd;
            float *dvb = dv + (size_t)b * S * kvd + kh * hd;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                const float *qb = q + (size_t)b * S * qd + h * hd;      // (S,hd), row stride qd
                const float *dob = dout + (size_t)b * S * qd + h * hd;
                float *dqb = dq + (size_t)b * S * qd + h * hd;
                const float *Pb = att + ((size_t)b * NH + h) * S * S;   // (S,S)
                float *dZb = datt + ((size_t)b * NH + h) * S * S;       // (S,S)
                for (int t0 = 0; t0 < S; t0 += ATT_QB) {
                    int t1 = t0 + ATT_QB < S ? t0 + ATT_QB : S, m = t1 - t0;
                    const float *P = Pb + (size_t)t0 * S;   // rows t0..t1-1, (m,t1) used
                    float *dZ = dZb + (size_t)t0 * S;
                    // 1. through out = P V: dP (m,t1) = dout[t0:t1] (m,hd) V[0:t1]^T (hd,t1),
                    //    dv[0:t1] (t1,hd) += P^T (t1,m) dout[t0:t1] (m,hd)
                    opd_sgemm(0, 1, m, t1, hd, 1.0f, dob + (size_t)t0 * qd, qd, vb, kvd,
                              0.0f, dZ, S);
                    opd_sgemm(1, 0, t1, hd, m, 1.0f, P, S, dob + (size_t)t0 * qd, qd,
                              1.0f, dvb, kvd);
                    // 2. through the softmax, row by row (causal: j <= t)
                    for (int t = t0; t < t1; t++) {
                        const float *Pt = Pb + (size_t)t * S;
                        float *dZt = dZb + (size_t)t * S;
                        float pdp = 0.0f;
                        for (int j = 0; j <= t; j++) pdp += Pt[j] * dZt[j];
                        for (int j = 0; j <= t; j++) dZt[j] = Pt[j] * (dZt[j] - pdp);
                        for (int j = t + 1; j < S; j++) dZt[j] = 0.0f;
                    }
                    // 3. through Z = scale Q K^T: dq[t0:t1] (m,hd) += scale dZ (m,t1) K[0:t1] (t1,hd),
                    //    dk[0:t1] (t1,hd) += scale dZ^T (t1,m) Q[t0:t1] (m,hd)
                    opd_sgemm(0, 0, m, hd, t1, scale, dZ, S, kb, kvd, 1.0f,
                              dqb + (size_t)t0 * qd, qd);
                    opd_sgemm(1, 0, t1, hd, m, scale, dZ, S, qb + (size_t)t0 * qd, qd,
                              1.0f, dkb, kvd);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ swiglu */
void swiglu_forward(float *out, const float *gate, const float *up, int N, int F) {
    // gate, up, out are (N,F); silu(g) = g * sigmoid(g): out = g / (1 + exp(-g)) * up,
    // each row through the vector form of exactly that expression
#pragma omp parallel for
    for (int n = 0; n < N; n++)
        opd_vsilu_mul(out + (size_t)n * F, gate + (size_t)n * F, up + (size_t)n * F, (size_t)F);
}

void swiglu_backward(float *dgate, float *dup, const float *dout,
                     const float *gate, const float *up, int N, int F) {
    // d silu(g)/dg = s + g s (1 - s), s = sigmoid(g) = 1 / (1 + exp(-g)):
    // dgate += dout * up * (s + g s (1 - s)), dup += dout * g * s
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * F;
        opd_vsilu_mul_backward(dgate + o, dup + o, dout + o, gate + o, up + o, (size_t)F);
    }
}

/* Attention of n new positions t0 .. t0+n-1 of each sequence against the
 * KV cache (the decode step: n = 1; the prompt prefill: n = P). Each query
 * attends over cache positions pad[b]..t; a pad position attends to itself
 * only, as in attention_forward, so it stays finite.
 *   q (B, n, NH*hd) after RoPE; kc (B, NKV*hd, S) this layer's keys,
 *   transposed so a query's scores run over contiguous positions; vc (B, S,
 *   NKV*hd); att (B, n, NH, S) scratch; out (B, n, NH*hd).
 * The cache holds positions 0 .. t0+n-1 already (opd_kv_cache_write).
 * Every (b, i, h) is independent, and each score sums its hd products in
 * order from 0, so the thread count changes nothing. */
void attention_decode_forward(float *out, float *att, const float *q, const float *kc,
                              const float *vc, const int *pad, int B, int n, int t0,
                              int S, int NH, int NKV, int hd) {
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = opd_rsqrtf((float)hd);
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < NH; h++) {
                int t = t0 + i, row = b * n + i;
                int pb = pad ? pad[b] : 0;
                int j0 = t >= pb ? pb : t;
                const float *qh = q + (size_t)row * qd + h * hd;
                const float *kT = kc + ((size_t)b * kvd + (h / group) * hd) * S;  /* (hd, S) */
                const float *vb = vc + (size_t)b * S * kvd + (h / group) * hd;
                float *a = att + ((size_t)row * NH + h) * S;
                /* scores q . k_j over the transposed keys: the inner loop
                 * runs over positions j (vectorized) */
                for (int j = j0; j <= t; j++) a[j] = 0.0f;
                opd_vecmat_accumulate(a + j0, qh, kT + j0, S, hd, t - j0 + 1);
                float maxv = -INFINITY;
                for (int j = j0; j <= t; j++) {
                    a[j] *= scale;
                    if (a[j] > maxv) maxv = a[j];
                }
                opd_vexp_sub(a + j0, a + j0, maxv, (size_t)(t - j0 + 1));
                float sum = 0.0f;
                for (int j = j0; j <= t; j++) sum += a[j];
                float inv = 1.0f / sum;
                for (int j = j0; j <= t; j++) a[j] *= inv;
                float *o = out + (size_t)row * qd + h * hd;
                for (int d = 0; d < hd; d++) o[d] = 0.0f;
                opd_vecmat_accumulate(o, a + j0, vb + (size_t)j0 * kvd, kvd, t - j0 + 1, hd);
            }
        }
    }
}
