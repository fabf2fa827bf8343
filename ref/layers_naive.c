/* layers_naive.c — plain-loop versions of the layers whose fast forms a
 * reader must otherwise take on trust: the linear layer (matmul.c runs it on
 * a blocked gemm) and attention (layers.c runs it as blocked gemms over
 * ATT_QB query rows). One query, one output element at a time, written to
 * be read against the formulas, as llm.c keeps matmul_forward_naive beside
 * its fast matmul. Same arguments and layouts as the fast functions.
 *
 * These are not the reference's bits: the sums run in another order (and
 * without the gemm's fmaf), so they agree with the fast versions within
 * rounding, not bit for bit; tests/test_model.c checks how closely. Serial
 * on purpose: nothing here is on a hot path. */
#include "opd.h"

#include <math.h>

/* ------------------------------------------------------------ linear layer */
void matmul_forward_naive(float *out, const float *inp, const float *weight,
                          const float *bias, int N, int C, int OC) {
    // inp is (N,C), weight is (OC,C), bias is (OC) or NULL, out is (N,OC):
    // out[n][o] = bias[o] + sum_c inp[n][c] weight[o][c]
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const float *w = weight + (size_t)o * C;
            float val = bias ? bias[o] : 0.0f;
            for (int c = 0; c < C; c++) val += x[c] * w[c];
            out[(size_t)n * OC + o] = val;
        }
    }
}

void matmul_backward_naive(float *dinp, float *dweight, float *dbias,
                           const float *dout, const float *inp, const float *weight,
                           int N, int C, int OC) {
    // dout is (N,OC). From out[n][o] = bias[o] + sum_c inp[n][c] weight[o][c]:
    //   dinp[n][c]    += sum_o dout[n][o] weight[o][c]
    //   dweight[o][c] += sum_n dout[n][o] inp[n][c]
    //   dbias[o]      += sum_n dout[n][o]
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * OC, *x = inp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const float *w = weight + (size_t)o * C;
            for (int c = 0; c < C; c++) {
                if (dinp) dinp[(size_t)n * C + c] += d[o] * w[c];
                if (dweight) dweight[(size_t)o * C + c] += d[o] * x[c];
            }
            if (dbias) dbias[o] += d[o];
        }
    }
}

/* --------------------------------------------------------------- attention */
/* For sequence b, query head h (kv head kh = h / (NH/NKV)) and query t, with
 * p = pad[b] leading pad tokens, the visible keys are j in [j0, t],
 * j0 = p for a real query (t >= p) and j0 = t for a pad query (itself only):
 *   Z_tj = q_t . k_j / sqrt(hd)
 *   P_tj = exp(Z_tj - max_j Z_tj) / sum_j exp(Z_tj - max_j Z_tj)   (0 if not visible)
 *   out_t = sum_j P_tj v_j */
void attention_forward_naive(float *out, float *att, const float *q, const float *k,
                             const float *v, const int *pad, int B, int S, int NH,
                             int NKV, int hd) {
    // q is (B,S,NH*hd), k, v are (B,S,NKV*hd), out is (B,S,NH*hd), att is (B,NH,S,S)
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = opd_rsqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        int p = pad ? pad[b] : 0;
        for (int h = 0; h < NH; h++) {
            int kh = h / group;
            for (int t = 0; t < S; t++) {
                const float *qt = q + ((size_t)b * S + t) * qd + h * hd;
                float *Pt = att + (((size_t)b * NH + h) * S + t) * S;
                float *ot = out + ((size_t)b * S + t) * qd + h * hd;
                int j0 = t < p ? t : p;
                // scores, and their max (subtracted so that exp never overflows)
                float maxv = -INFINITY;
                for (int j = 0; j < S; j++) {
                    Pt[j] = 0.0f;
                    if (j < j0 || j > t) continue;
                    const float *kj = k + ((size_t)b * S + j) * kvd + kh * hd;
                    float z = 0.0f;
                    for (int i = 0; i < hd; i++) z += qt[i] * kj[i];
                    Pt[j] = z * scale;
                    if (Pt[j] > maxv) maxv = Pt[j];
                }
                // softmax over the visible keys
                float sum = 0.0f;
                for (int j = j0; j <= t; j++) {
                    Pt[j] = opd_expf(Pt[j] - maxv);
                    sum += Pt[j];
                }
                for (int j = j0; j <= t; j++) Pt[j] /= sum;
                // weighted sum of the values
                for (int i = 0; i < hd; i++) ot[i] = 0.0f;
                for (int j = j0; j <= t; j++) {
                    const float *vj = v + ((size_t)b * S + j) * kvd + kh * hd;
                    for (int i = 0; i < hd; i++) ot[i] += Pt[j] * vj[i];
                }
            }
        }
    }
}

/* Backward of the formulas above, one query at a time:
 *   dP_tj  = dout_t . v_j                  dv_j += P_tj dout_t
 *   dZ_tj  = P_tj (dP_tj - sum_k P_tk dP_tk)
 *   dq_t  += sum_j dZ_tj k_j / sqrt(hd)    dk_j += dZ_tj q_t / sqrt(hd)
 * P = 0 where masked, so dZ = 0 there and the sums may run over all j <= t.
 * datt (B,NH,S,S) receives dZ (0 above the diagonal), as the fast one's. */
void attention_backward_naive(float *dq, float *dk, float *dv, float *datt,
                              const float *dout, const float *q, const float *k,
                              const float *v, const float *att,
                              int B, int S, int NH, int NKV, int hd) {
    int qd = NH * hd, kvd = NKV * hd, group = NH / NKV;
    float scale = opd_rsqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int kh = h / group;
            for (int t = 0; t < S; t++) {
                const float *qt = q + ((size_t)b * S + t) * qd + h * hd;
                const float *dot = dout + ((size_t)b * S + t) * qd + h * hd;
                const float *Pt = att + (((size_t)b * NH + h) * S + t) * S;
                float *dZt = datt + (((size_t)b * NH + h) * S + t) * S;
                float *dqt = dq + ((size_t)b * S + t) * qd + h * hd;
                // through out_t = sum_j P_tj v_j
                for (int j = 0; j < S; j++) {
                    dZt[j] = 0.0f;
                    if (j > t) continue;
                    const float *vj = v + ((size_t)b * S + j) * kvd + kh * hd;
                    float *dvj = dv + ((size_t)b * S + j) * kvd + kh * hd;
                    for (int i = 0; i < hd; i++) {
                        dZt[j] += dot[i] * vj[i];   // dP_tj, for now
                        dvj[i] += Pt[j] * dot[i];
                    }
                }
                // through the softmax
                float pdp = 0.0f;
                for (int j = 0; j <= t; j++) pdp += Pt[j] * dZt[j];
                for (int j = 0; j <= t; j++) dZt[j] = Pt[j] * (dZt[j] - pdp);
                // through Z_tj = q_t . k_j / sqrt(hd)
                for (int j = 0; j <= t; j++) {
                    const float *kj = k + ((size_t)b * S + j) * kvd + kh * hd;
                    float *dkj = dk + ((size_t)b * S + j) * kvd + kh * hd;
                    for (int i = 0; i < hd; i++) {
                        dqt[i] += scale * dZt[j] * kj[i];
                        dkj[i] += scale * dZt[j] * qt[i];
                    }
                }
            }
        }
    }
}
