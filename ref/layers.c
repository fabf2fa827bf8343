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
#pragma omp parallel for
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
        float r = 1.0f / sqrtf(ss / C + eps);
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
 * pair (i, i + hd/2) is rotated by pos * theta^(-2i/hd). Frequencies and
 * angles are computed in fp32 as transformers does, so logits match it. */
static void rope_rotate(float *x, const int *pos, int N, int nh, int hd,
                        float theta, float sign) {
    int half = hd / 2, maxpos = 0;
    for (int n = 0; n < N; n++) if (pos[n] > maxpos) maxpos = pos[n];
    // cos and sin of each (position, i) in use once, not once per row: a
    // batch repeats every position B times (same expressions, same bits)
    unsigned char *used = opd_calloc(maxpos + 1, 1);
    for (int n = 0; n < N; n++) used[pos[n]] = 1;
    float *cs = opd_malloc((size_t)(maxpos + 1) * half * 2 * sizeof(float));
#pragma omp parallel for
    for (int p = 0; p <= maxpos; p++) {
        if (!used[p]) continue;
        for (int i = 0; i < half; i++) {
            float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
            float angle = (float)p * inv_freq;
            cs[((size_t)p * half + i) * 2] = cosf(angle);
            cs[((size_t)p * half + i) * 2 + 1] = sinf(angle);
        }
    }
#pragma omp parallel for
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
 * to itself only, so its softmax is well defined (output = its own value). */
void attention_forward(float *out, float *att, const float *q, const float *k,
                       const float *v, const int *pad, int B, int T, int NH,
                       int NKV, int hd) {
    // q is (B,T,NH*hd), k, v are (B,T,NKV*hd), out is (B,T,NH*hd), att is (B,NH,T,T)
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        // kT (hd, T): this head's keys transposed, so that the scores of a
        // query are accumulated over i in the outer loop with the keys j in
        // the inner one, a loop the compiler vectorizes. Each score still sums
        // its hd products in order from 0, so the bits are a plain dot's.
        float *kT = opd_malloc((size_t)hd * T * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                int p = pad ? pad[b] : 0;
                const float *kb = k + (size_t)b * T * kvd + (h / group) * hd;
                const float *vb = v + (size_t)b * T * kvd + (h / group) * hd;
                for (int j = 0; j < T; j++)
                    for (int i = 0; i < hd; i++) kT[(size_t)i * T + j] = kb[(size_t)j * kvd + i];
                for (int t = 0; t < T; t++) {
                    const float *qt = q + ((size_t)b * T + t) * qd + h * hd;
                    float *a = att + (((size_t)b * NH + h) * T + t) * T;
                    float *o = out + ((size_t)b * T + t) * qd + h * hd;
                    // the keys this query sees: [j0, t]
                    int j0 = t < p ? t : p;
                    memset(a, 0, T * sizeof(float));
                    vecmat_accumulate(a + j0, qt, kT + j0, T, hd, t - j0 + 1);   // q_t . k_j
                    float maxv = -INFINITY;
                    for (int j = j0; j <= t; j++) {
                        a[j] *= scale;
                        if (a[j] > maxv) maxv = a[j];
                    }
                    // softmax shifted by the max so exp never overflows
                    float sum = 0.0f;
                    for (int j = j0; j <= t; j++) { a[j] = expf(a[j] - maxv); sum += a[j]; }
                    for (int j = j0; j <= t; j++) a[j] /= sum;
                    for (int i = 0; i < hd; i++) o[i] = 0.0f;
                    vecmat_accumulate(o, a + j0, vb + (size_t)j0 * kvd, kvd, t - j0 + 1, hd);  // sum_j a_j v_j
                }
            }
        }
        free(kT);
    }
}

/* Backward of attention_forward, in the order a reader derives it:
 *   out_t   = sum_j P_tj v_j           ->  dP_tj = dout_t . v_j,  dv_j += P_tj dout_t
 *   P_t     = softmax(S_t)             ->  dS_tj = P_tj (dP_tj - sum_k P_tk dP_tk)
 *   S_tj    = scale q_t . k_j          ->  dq_t += scale sum_j dS_tj k_j,
 *                                          dk_j += scale dS_tj q_t
 * Masked entries have P = 0, hence dS = 0: they need no special case. dk and
 * dv of a kv head sum over every query head of its group and every query
 * position, so one thread owns one (b, kv head) and loops over them in order. */
void attention_backward(float *dq, float *dk, float *dv, float *datt,
                        const float *dout, const float *q, const float *k,
                        const float *v, const float *att, const int *pad,
                        int B, int T, int NH, int NKV, int hd) {
    // datt is (B,NH,T,T) scratch: dP, then overwritten by dS
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        // vT (hd, T): the kv head's values transposed, for dP as in the forward's
        // scores (vectorized over j, each dP summed over i in order)
        float *vT = opd_malloc((size_t)hd * T * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int kh = 0; kh < NKV; kh++) {
                const float *kb = k + (size_t)b * T * kvd + kh * hd;
                const float *vb = v + (size_t)b * T * kvd + kh * hd;
                float *dkb = dk + (size_t)b * T * kvd + kh * hd;
                float *dvb = dv + (size_t)b * T * kvd + kh * hd;
                for (int j = 0; j < T; j++)
                    for (int i = 0; i < hd; i++) vT[(size_t)i * T + j] = vb[(size_t)j * kvd + i];
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    for (int t = 0; t < T; t++) {
                        const float *qt = q + ((size_t)b * T + t) * qd + h * hd;
                        const float *dot = dout + ((size_t)b * T + t) * qd + h * hd;
                        float *dqt = dq + ((size_t)b * T + t) * qd + h * hd;
                        const float *P = att + (((size_t)b * NH + h) * T + t) * T;
                        float *dS = datt + (((size_t)b * NH + h) * T + t) * T;
                        // 1. through out_t = sum_j P_tj v_j (causal: j <= t)
                        for (int j = 0; j <= t; j++) dS[j] = 0.0f;
                        vecmat_accumulate(dS, dot, vT, T, hd, t + 1);   // dP_tj = dout_t . v_j, for now
                        for (int j = 0; j <= t; j++) {
                            float *dvj = dvb + (size_t)j * kvd;
                            for (int i = 0; i < hd; i++) dvj[i] += P[j] * dot[i];
                        }
                        // 2. through the softmax
                        float pdp = 0.0f;
                        for (int j = 0; j <= t; j++) pdp += P[j] * dS[j];
                        for (int j = 0; j <= t; j++) dS[j] = P[j] * (dS[j] - pdp);
                        for (int j = t + 1; j < T; j++) dS[j] = 0.0f;
                        // 3. through S_tj = scale * q_t . k_j
                        for (int j = 0; j <= t; j++) {
                            if (dS[j] == 0.0f) continue;   // masked keys, pad rows
                            const float *kj = kb + (size_t)j * kvd;
                            float *dkj = dkb + (size_t)j * kvd;
                            float g = scale * dS[j];
                            for (int i = 0; i < hd; i++) {
                                dqt[i] += g * kj[i];
                                dkj[i] += g * qt[i];
                            }
                        }
                    }
                }
            }
        }
        free(vT);
    }
    (void)pad;   // the mask is already in att (P = 0 where masked)
}

/* ------------------------------------------------------------------ swiglu */
void swiglu_forward(float *out, const float *gate, const float *up, int N, int F) {
    // gate, up, out are (N,F); silu(g) = g * sigmoid(g)
    size_t n = (size_t)N * F;
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout,
                     const float *gate, const float *up, int N, int F) {
    // d silu(g)/dg = s + g s (1 - s), s = sigmoid(g)
    size_t n = (size_t)N * F;
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g));
        dgate[i] += dout[i] * up[i] * (s + g * s * (1.0f - s));
        dup[i] += dout[i] * g * s;
    }
}
