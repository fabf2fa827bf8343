/* kernels_avx2.c — the AVX2 + FMA path (kernels.h): the gemm micro-kernel and
 * the vector exp / SiLU. Each lane runs the scalar definition's operations on
 * its own element, in the same order; the last n % 8 elements go through the
 * scalar functions themselves. */
/* the whole file is compiled for AVX2 + FMA (gcc: a target pragma; clang, which
 * the fuzzing build uses: an attribute on every function that follows) */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif
#include "kernels.h"
#include "vecmat.h"
#include "opd.h"

#include <immintrin.h>
#include <stdint.h>

/* ----------------------------------------------------------- gemm 6 x 16 */
/* 12 accumulators (6 rows x 2 vectors of 8 columns), two loads of Bp and six
 * broadcasts of Ap per k: 16 ymm registers in all. */
#define MR 6
void opd_ukernel_avx2_6x16(int kc, const float *A, size_t rs, size_t cs, const float *Bp,
                           size_t bs, float *C, size_t ldc, int acc) {
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        c0[r] = acc ? _mm256_loadu_ps(C + r * ldc) : _mm256_setzero_ps();
        c1[r] = acc ? _mm256_loadu_ps(C + r * ldc + 8) : _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(Bp + (size_t)k * bs), b1 = _mm256_loadu_ps(Bp + (size_t)k * bs + 8);
        const float *a = A + (size_t)k * cs;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 ar = _mm256_broadcast_ss(a + r * rs);
            c0[r] = _mm256_fmadd_ps(ar, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(ar, b1, c1[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_ps(C + r * ldc, c0[r]);
        _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
    }
}
#undef MR

/* --------------------------------------------------------------- vec-mat */
/* vecmat_accumulate (ref/vecmat.h) on 8 columns at a time, rounded after
 * every multiply and add as the scalar loop is; the last n % 8 columns by
 * the scalar loop itself. */
void opd_vecmat_accumulate_avx2(float *y, const float *x, const float *M, size_t ld, int m, int n) {
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 acc = _mm256_loadu_ps(y + c);
        int r = 0;
        for (; r + 4 <= m; r += 4) {
            const float *m0 = M + (size_t)r * ld + c;
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x[r]), _mm256_loadu_ps(m0)));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x[r + 1]), _mm256_loadu_ps(m0 + ld)));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x[r + 2]), _mm256_loadu_ps(m0 + 2 * ld)));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x[r + 3]), _mm256_loadu_ps(m0 + 3 * ld)));
        }
        for (; r < m; r++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x[r]), _mm256_loadu_ps(M + (size_t)r * ld + c)));
        _mm256_storeu_ps(y + c, acc);
    }
    if (c < n) vecmat_accumulate(y + c, x, M + c, ld, m, n - c);
}

/* ------------------------------------------------------------------ exp */
static inline __m256 expf8(__m256 x) {
    __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(OPD_EXPF_LOG2E),
                                             _mm256_set1_ps(OPD_EXPF_SHIFT)),
                             _mm256_set1_ps(OPD_EXPF_SHIFT));
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-OPD_EXPF_LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-OPD_EXPF_LN2_LO), r);
    __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(OPD_EXPF_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPD_EXPF_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPD_EXPF_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPD_EXPF_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPD_EXPF_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(OPD_EXPF_P5));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    __m256 hi = _mm256_cmp_ps(x, _mm256_set1_ps(OPD_EXPF_HI), _CMP_GT_OQ);
    __m256 lo = _mm256_cmp_ps(x, _mm256_set1_ps(OPD_EXPF_LO), _CMP_LT_OQ);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), hi);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), lo);
    y = _mm256_blendv_ps(y, x, nan);
    return y;
}

static inline __m256 neg8(__m256 g) {   /* the scalar unary minus: the sign bit */
    return _mm256_xor_ps(g, _mm256_set1_ps(-0.0f));
}

void opd_vexp_sub_avx2(float *y, const float *x, float shift, size_t n) {
    __m256 s = _mm256_set1_ps(shift);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, expf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
    for (; i < n; i++) y[i] = opd_expf(x[i] - shift);
}

void opd_vsilu_mul_avx2(float *out, const float *gate, const float *up, size_t n) {
    __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 d = _mm256_add_ps(one, expf8(neg8(g)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, d), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + opd_expf(-gate[i])) * up[i];
}

void opd_vsilu_mul_backward_avx2(float *dgate, float *dup, const float *dout,
                                 const float *gate, const float *up, size_t n) {
    __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i), d = _mm256_loadu_ps(dout + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, expf8(neg8(g))));
        __m256 ds = _mm256_add_ps(s, _mm256_mul_ps(_mm256_mul_ps(g, s), _mm256_sub_ps(one, s)));
        _mm256_storeu_ps(dgate + i, _mm256_add_ps(_mm256_loadu_ps(dgate + i), _mm256_mul_ps(_mm256_mul_ps(d, u), ds)));
        _mm256_storeu_ps(dup + i, _mm256_add_ps(_mm256_loadu_ps(dup + i), _mm256_mul_ps(_mm256_mul_ps(d, g), s)));
    }
    for (; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + opd_expf(-g));
        dgate[i] += dout[i] * up[i] * (s + g * s * (1.0f - s));
        dup[i] += dout[i] * g * s;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
