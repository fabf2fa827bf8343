/* opd_layers.h — the layers, one function per layer and direction, and the gemm and math they use.
 * Part of the public API; include "opd.h", which includes every part in
 * order (a part relies on the ones before it). */
#ifndef OPD_API_LAYERS_H
#define OPD_API_LAYERS_H

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------- layers (one per direction) */
/* These are exposed for the tests and the CUDA checks; the model calls them. */
/* own: the reference's gemm (ref/gemm.c), the default and the only one whose
 * bits are promised; blas, onednn: optional fast backends (OPD_MATMUL=). */
typedef enum { OPD_MATMUL_OWN = 0, OPD_MATMUL_BLAS = 1, OPD_MATMUL_ONEDNN = 2 } opd_matmul_backend;
void opd_matmul_set_backend(opd_matmul_backend b);   /* unavailable: own */
opd_matmul_backend opd_matmul_get_backend(void);
const char *opd_matmul_backend_name(opd_matmul_backend b);
int opd_matmul_backend_available(opd_matmul_backend b);  /* built in */
/* out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC) (bias may be NULL) */
void matmul_forward(float *out, const float *inp, const float *weight,
                    const float *bias, int N, int C, int OC);
/* dinp (N, C) += dout @ weight; dweight (OC, C) += dout^T @ inp;
 * dbias (OC) += sum_n dout. Any of dinp, dweight, dbias may be NULL. */
void matmul_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int N, int C, int OC);
/* The same two as plain loops (ref/layers_naive.c), to read against the
 * formulas; equal to the fast ones within rounding, not bit for bit. */
void matmul_forward_naive(float *out, const float *inp, const float *weight,
                          const float *bias, int N, int C, int OC);
void matmul_backward_naive(float *dinp, float *dweight, float *dbias,
                           const float *dout, const float *inp, const float *weight,
                           int N, int C, int OC);
/* C (M, N) = alpha * op(A) op(B) + beta * C, row-major, the one sgemm every
 * layer goes through (dispatches to the selected backend). */
void opd_sgemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc);
/* The reference's own sgemm and its definition (ref/gemm.c): for each
 * element, C = beta * C (beta 0: C = +0), then for k = 0 .. K-1 in order
 * C = fmaf(alpha * op(A)[i][k], op(B)[k][j], C). opd_gemm_reference is that
 * loop as written; opd_gemm_own the packed, blocked, threaded kernels that
 * give its bits on every ISA path and thread count. */
void opd_gemm_reference(int transA, int transB, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        float *C, int ldc);
void opd_gemm_own(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc);

/* Instruction-set paths of the kernels (ref/isa.c). Chosen from the CPU (the
 * widest it has) or forced by OPD_ISA=avx512|avx2|scalar; every path gives
 * the same bits. */
typedef enum { OPD_ISA_SCALAR = 0, OPD_ISA_AVX2 = 1, OPD_ISA_AVX512 = 2 } opd_isa;
opd_isa opd_isa_get(void);
int opd_isa_set(opd_isa i);          /* -1 if the CPU lacks it */
int opd_isa_supported(opd_isa i);
const char *opd_isa_name(opd_isa i); /* "avx512", "avx2", "scalar" */
int opd_isa_parse(const char *name, opd_isa *out);

/* The project's own math (ref/mathfn.c): fixed sequences of IEEE
 * operations, so results do not depend on libm. opd_expf: within 1 ulp,
 * +inf above 88.37, 0 below -86 (no subnormal results). The double ones
 * (fdlibm's algorithms): exp, log, log1p within 1 ulp; opd_pow takes b > 0,
 * within 16 ulp. Measured in tests/test_kernels.c. */
float opd_expf(float x);
double opd_exp(double x);
double opd_log(double x);
double opd_log1p(double x);
double opd_pow(double b, double e);
void opd_sincos(double x, double *s, double *c);
double opd_cos(double x);
/* 1 / sqrt(x): both operations are correctly rounded IEEE ones, the same on
 * every machine (unlike the approximate rsqrt instructions). */
static inline float opd_rsqrtf(float x) { return 1.0f / __builtin_sqrtf(x); }
/* Vector forms, dispatched by ISA, each element equal to the scalar
 * expression in the comment (y may alias x). */
void opd_vexp_sub(float *y, const float *x, float shift, size_t n);   /* opd_expf(x - shift) */
void opd_vsilu_mul(float *out, const float *gate, const float *up, size_t n);
                                                      /* g / (1 + opd_expf(-g)) * up */
void opd_vsilu_mul_backward(float *dgate, float *dup, const float *dout,
                            const float *gate, const float *up, size_t n);
            /* s = 1 / (1 + opd_expf(-g)): dgate += dout * up * (s + g * s * (1 - s)),
             * dup += dout * g * s */

/* An elementwise loop over fewer elements than this runs on one thread: an
 * OpenMP fork/join and its barrier cost more than the loop (the decode step,
 * 16 rows of width 128). Only the thread count changes, never a result:
 * every row is computed by one thread either way. */
#define OPD_OMP_MIN_ELEMS 16384

/* out (N, C) = wte[tokens] */
void encoder_forward(float *out, const int *tokens, const float *wte, int N, int C);
void encoder_backward(float *dwte, const float *dout, const int *tokens, int N, int C);
/* out = inp * rstd * weight, rstd (N) saved for backward */
void rmsnorm_forward(float *out, float *rstd, const float *inp,
                     const float *weight, int N, int C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout,
                      const float *inp, const float *weight, const float *rstd,
                      int N, int C);
/* In-place rotary embedding of x (N, nh, hd) at positions pos (N); the
 * rotate-half convention of Llama/Qwen2 (pairs i and i + hd/2). */
void rope_forward(float *x, const int *pos, int N, int nh, int hd, float theta);
/* dx in place: the transpose of the rotation (rotation by -angle). */
void rope_backward(float *dx, const int *pos, int N, int nh, int hd, float theta);
/* Causal grouped-query attention.
 * q (B, S, NH*hd), k, v (B, S, NKV*hd), out (B, S, NH*hd), att (B, NH, S, S).
 * pad (B) or NULL: keys j < pad[b] are masked; a padded query row attends to
 * itself only (its output is never used, but stays finite). */
void attention_forward(float *out, float *att, const float *q, const float *k,
                       const float *v, const int *pad, int B, int S, int NH,
                       int NKV, int hd);
/* No pad: the mask is already in att (P = 0 where masked, hence dZ = 0). */
void attention_backward(float *dq, float *dk, float *dv, float *datt,
                        const float *dout, const float *q, const float *k,
                        const float *v, const float *att,
                        int B, int S, int NH, int NKV, int hd);
/* The same two one query at a time in plain loops (ref/layers_naive.c), to
 * read against the formulas; equal to the blocked gemm versions within
 * rounding, not bit for bit (tests/test_model.c). */
void attention_forward_naive(float *out, float *att, const float *q, const float *k,
                             const float *v, const int *pad, int B, int S, int NH,
                             int NKV, int hd);
void attention_backward_naive(float *dq, float *dk, float *dv, float *datt,
                              const float *dout, const float *q, const float *k,
                              const float *v, const float *att,
                              int B, int S, int NH, int NKV, int hd);
/* Attention of n new positions t0..t0+n-1 per sequence against the KV cache
 * (the decode step n = 1, the prefill n = P): q (B, n, NH*hd); kc (B, NKV*hd,
 * S) one layer's keys, transposed; vc (B, S, NKV*hd); att (B, n, NH, S)
 * scratch; out (B, n, NH*hd). Equal to the rows t0..t0+n-1 of
 * attention_forward up to rounding. */
void attention_decode_forward(float *out, float *att, const float *q, const float *kc,
                              const float *vc, const int *pad, int B, int n, int t0,
                              int S, int NH, int NKV, int hd);
/* out (N, F) = silu(gate) * up */
void swiglu_forward(float *out, const float *gate, const float *up, int N, int F);
void swiglu_backward(float *dgate, float *dup, const float *dout,
                     const float *gate, const float *up, int N, int F);

/* ------------------------------------------------------- cross-entropy loss */
/* Next-token cross-entropy on logits (B, S, V) against targets (B, S) with
 * mask (B, S) (NULL: all ones); token-mean over masked positions. Writes
 * dlogits (B, S, V) (may be NULL) and returns the loss. */
float opd_cross_entropy(const float *logits, const int *targets,
                        const float *mask, int B, int S, int V, float *dlogits);
/* The same with the token mean's count given (the whole step's, when the
 * batch is one micro-batch of it; < 0: this batch's own, opd_cross_entropy
 * bit for bit); the mean in double. */
double opd_cross_entropy_norm(const float *logits, const int *targets, const float *mask,
                              int B, int S, int V, float *dlogits, double count);
/* log-softmax of one row; returns the log-sum-exp. */
float opd_log_softmax(float *out, const float *logits, int V);

#ifdef __cplusplus
}
#endif
#endif /* OPD_API_LAYERS_H */
