/* kernels_avx512.c — the AVX-512 path (kernels.h): the gemm micro-kernel and
 * the vector exp / SiLU. Each lane runs the scalar definition's operations on
 * its own element, in the same order, so the bits are the scalar path's. */
/* the whole file is compiled for AVX-512 (gcc: a target pragma; clang, which
 * the fuzzing build uses: an attribute on every function that follows) */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC target("avx512f")
#endif
#include "kernels.h"

#include <immintrin.h>
#include <stdint.h>

/* ---------------------------------------------------------- gemm 12 x 32 */
/* 24 accumulators (12 rows x 2 vectors of 16 columns) stay in registers for
 * the whole K block; per k: two loads of Bp, 12 broadcasts of Ap, 24 FMAs.
 * Each C element gets its products in k order, one fmaf each. */
#define MR 12
void opd_ukernel_avx512_12x32(int kc, const float *A, size_t rs, size_t cs, const float *Bp,
                              size_t bs, float *C, size_t ldc, int acc) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        c0[r] = acc ? _mm512_loadu_ps(C + r * ldc) : _mm512_setzero_ps();
        c1[r] = acc ? _mm512_loadu_ps(C + r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(Bp + (size_t)k * bs), b1 = _mm512_loadu_ps(Bp + (size_t)k * bs + 16);
        const float *a = A + (size_t)k * cs;
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 ar = _mm512_set1_ps(a[r * rs]);
            c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(C + r * ldc, c0[r]);
        _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
    }
}
#undef MR

/* --------------------------------------------------------------- vec-mat */
/* vecmat_accumulate (ref/vecmat.h) on 16 columns per vector, four rows per
 * pass, y + x0 m0 + x1 m1 + x2 m2 + x3 m3 rounded after every operation, as
 * the scalar loop is (separate multiplies and adds, no FMA). Four vectors of
 * columns advance together: each column's adds depend on each other, so
 * independent columns keep the adder busy while one waits. */
static inline __m512 vm_rows4(__m512 acc, const float *x, const float *m0, size_t ld, __mmask16 mk) {
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x[0]), _mm512_maskz_loadu_ps(mk, m0)));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x[1]), _mm512_maskz_loadu_ps(mk, m0 + ld)));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x[2]), _mm512_maskz_loadu_ps(mk, m0 + 2 * ld)));
    return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x[3]), _mm512_maskz_loadu_ps(mk, m0 + 3 * ld)));
}

void opd_vecmat_accumulate_avx512(float *y, const float *x, const float *M, size_t ld, int m, int n) {
    const __mmask16 all = 0xffff;
    int c = 0;
    for (; c + 64 <= n; c += 64) {
        __m512 a0 = _mm512_loadu_ps(y + c), a1 = _mm512_loadu_ps(y + c + 16);
        __m512 a2 = _mm512_loadu_ps(y + c + 32), a3 = _mm512_loadu_ps(y + c + 48);
        int r = 0;
        for (; r + 4 <= m; r += 4) {
            const float *m0 = M + (size_t)r * ld + c;
            a0 = vm_rows4(a0, x + r, m0, ld, all);
            a1 = vm_rows4(a1, x + r, m0 + 16, ld, all);
            a2 = vm_rows4(a2, x + r, m0 + 32, ld, all);
            a3 = vm_rows4(a3, x + r, m0 + 48, ld, all);
        }
        for (; r < m; r++) {
            const float *mr = M + (size_t)r * ld + c;
            __m512 xr = _mm512_set1_ps(x[r]);
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(xr, _mm512_loadu_ps(mr)));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(xr, _mm512_loadu_ps(mr + 16)));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(xr, _mm512_loadu_ps(mr + 32)));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(xr, _mm512_loadu_ps(mr + 48)));
        }
        _mm512_storeu_ps(y + c, a0);
        _mm512_storeu_ps(y + c + 16, a1);
        _mm512_storeu_ps(y + c + 32, a2);
        _mm512_storeu_ps(y + c + 48, a3);
    }
    for (; c < n; c += 16) {
        __mmask16 mk = n - c >= 16 ? all : (__mmask16)((1u << (n - c)) - 1);
        __m512 acc = _mm512_maskz_loadu_ps(mk, y + c);
        int r = 0;
        for (; r + 4 <= m; r += 4) acc = vm_rows4(acc, x + r, M + (size_t)r * ld + c, ld, mk);
        for (; r < m; r++)
            acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x[r]),
                                                   _mm512_maskz_loadu_ps(mk, M + (size_t)r * ld + c)));
        _mm512_mask_storeu_ps(y + c, mk, acc);
    }
}

/* ------------------------------------------------------------------ exp */
/* opd_expf (mathfn.c) on 16 lanes: the same reduction, polynomial and
 * special cases, the latter as masks instead of branches. */
static inline __m512 expf16(__m512 x) {
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(OPD_EXPF_LOG2E),
                                             _mm512_set1_ps(OPD_EXPF_SHIFT)),
                             _mm512_set1_ps(OPD_EXPF_SHIFT));
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-OPD_EXPF_LN2_HI), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-OPD_EXPF_LN2_LO), r);
    __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(OPD_EXPF_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(OPD_EXPF_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(OPD_EXPF_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(OPD_EXPF_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(OPD_EXPF_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(OPD_EXPF_P5));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, z, r), _mm512_set1_ps(1.0f));
    // n is integral and in range wherever the result is kept (masks below)
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    __mmask16 hi = _mm512_cmp_ps_mask(x, _mm512_set1_ps(OPD_EXPF_HI), _CMP_GT_OQ);
    __mmask16 lo = _mm512_cmp_ps_mask(x, _mm512_set1_ps(OPD_EXPF_LO), _CMP_LT_OQ);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    y = _mm512_mask_mov_ps(y, hi, _mm512_set1_ps(__builtin_inff()));
    y = _mm512_mask_mov_ps(y, lo, _mm512_setzero_ps());
    y = _mm512_mask_mov_ps(y, nan, x);
    return y;
}

/* -g exactly as the scalar code's unary minus: flip the sign bit */
static inline __m512 neg16(__m512 g) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000u)));
}

static inline __mmask16 tail_mask(size_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

void opd_vexp_sub_avx512(float *y, const float *x, float shift, size_t n) {
    __m512 s = _mm512_set1_ps(shift);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, expf16(_mm512_sub_ps(v, s)));
    }
}

void opd_vsilu_mul_avx512(float *out, const float *gate, const float *up, size_t n) {
    __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 d = _mm512_add_ps(one, expf16(neg16(g)));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, d), u));
    }
}

void opd_vsilu_mul_backward_avx512(float *dgate, float *dup, const float *dout,
                                   const float *gate, const float *up, size_t n) {
    __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 d = _mm512_maskz_loadu_ps(m, dout + i);
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, expf16(neg16(g))));
        // dout * up * (s + g * s * (1 - s)), left to right as in the scalar code
        __m512 ds = _mm512_add_ps(s, _mm512_mul_ps(_mm512_mul_ps(g, s), _mm512_sub_ps(one, s)));
        __m512 dg = _mm512_mul_ps(_mm512_mul_ps(d, u), ds);
        __m512 du = _mm512_mul_ps(_mm512_mul_ps(d, g), s);
        _mm512_mask_storeu_ps(dgate + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dgate + i), dg));
        _mm512_mask_storeu_ps(dup + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dup + i), du));
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
