/* kernels.h — the per-ISA kernels behind opd_sgemm and the vector math
 * (internal to libopd; the public side is in opd.h: opd_isa_*, opd_sgemm,
 * opd_expf, ...).
 *
 * The bit contract (ref/SPEC.md section 9): every kernel here computes, for
 * each output element, exactly the sequence of IEEE operations of the
 * readable scalar definition next to its caller. A vector lane runs the same
 * operations on its own element, so the AVX-512, AVX2 and portable paths give
 * the same bits, whatever the thread count. Files kernels_avx2.c and
 * kernels_avx512.c are compiled with `#pragma GCC target`, so the library
 * itself needs nothing beyond x86-64, and a path is only called when the CPU
 * has it. */
#ifndef OPD_KERNELS_H
#define OPD_KERNELS_H

#include <stddef.h>

/* A gemm micro-kernel: the full MR x NR tile C (row stride ldc) of
 *   C[r][j] = fmaf(A[r * rs + k * cs], B[k * bs + j], C[r][j])   for k = 0 .. kc-1 in order,
 * starting from C's values when acc is 1 and from +0.0f when it is 0.
 * A is read in place (rs, cs: its row and k strides, either transpose) or
 * from a packed strip; B is a packed strip (bs = NR) or NR contiguous
 * columns of an untransposed B read in place (bs = ldb). */
typedef void (*opd_ukernel_fn)(int kc, const float *A, size_t rs, size_t cs, const float *B,
                               size_t bs, float *C, size_t ldc, int acc);

void opd_ukernel_avx2_6x16(int kc, const float *A, size_t rs, size_t cs, const float *B,
                           size_t bs, float *C, size_t ldc, int acc);
void opd_ukernel_avx512_12x32(int kc, const float *A, size_t rs, size_t cs, const float *B,
                              size_t bs, float *C, size_t ldc, int acc);

void opd_vecmat_accumulate_avx2(float *y, const float *x, const float *M, size_t ld, int m, int n);
void opd_vecmat_accumulate_avx512(float *y, const float *x, const float *M, size_t ld, int m, int n);

/* y[i] = opd_expf(x[i] - shift) (y may alias x) */
void opd_vexp_sub_avx2(float *y, const float *x, float shift, size_t n);
void opd_vexp_sub_avx512(float *y, const float *x, float shift, size_t n);
/* out[i] = g / (1 + opd_expf(-g)) * up[i], g = gate[i] */
void opd_vsilu_mul_avx2(float *out, const float *gate, const float *up, size_t n);
void opd_vsilu_mul_avx512(float *out, const float *gate, const float *up, size_t n);
/* s = 1 / (1 + opd_expf(-g)); dgate += dout * up * (s + g * s * (1 - s)); dup += dout * g * s */
void opd_vsilu_mul_backward_avx2(float *dgate, float *dup, const float *dout,
                                 const float *gate, const float *up, size_t n);
void opd_vsilu_mul_backward_avx512(float *dgate, float *dup, const float *dout,
                                   const float *gate, const float *up, size_t n);

/* The constants of opd_expf (ref/mathfn.c), shared by every path so they
 * cannot drift apart. exp(x) = 2^n * exp(r), x = n ln2 + r, |r| <= ln2 / 2;
 * exp(r) by a degree-7 polynomial (Cephes' expf coefficients). */
#define OPD_EXPF_HI 88.37f        /* above: +inf (n stays <= 127)               */
#define OPD_EXPF_LO -86.0f        /* below: 0 (no subnormal results, n >= -125) */
#define OPD_EXPF_LOG2E 1.44269504088896341f
#define OPD_EXPF_SHIFT 12582912.0f   /* 1.5 * 2^23: t + SHIFT rounds t to an integer */
#define OPD_EXPF_LN2_HI 0.693359375f /* ln 2 = LN2_HI + LN2_LO; LN2_HI has 9 bits */
#define OPD_EXPF_LN2_LO -2.12194440e-4f
#define OPD_EXPF_P0 1.9875691500e-4f
#define OPD_EXPF_P1 1.3981999507e-3f
#define OPD_EXPF_P2 8.3334519073e-3f
#define OPD_EXPF_P3 4.1665795894e-2f
#define OPD_EXPF_P4 1.6666665459e-1f
#define OPD_EXPF_P5 5.0000001201e-1f

#endif
