/* vector.c — the dispatchers of the vector kernels: each calls the ISA
 * path's form (kernels_avx512.c, kernels_avx2.c) or the scalar definition,
 * which all give the same bits (tests/test_kernels.c). The scalar
 * definitions are opd_expf (mathfn.c) and vecmat_accumulate (vecmat.h). */
#include "kernels.h"
#include "opd.h"
#include "vecmat.h"

#include <stddef.h>

/* ------------------------------------------------------------ exp, SiLU */
void opd_vexp_sub(float *y, const float *x, float shift, size_t n) {
    // y[i] = opd_expf(x[i] - shift)
    switch (opd_isa_get()) {
    case OPD_ISA_AVX512: opd_vexp_sub_avx512(y, x, shift, n); return;
    case OPD_ISA_AVX2: opd_vexp_sub_avx2(y, x, shift, n); return;
    default: for (size_t i = 0; i < n; i++) y[i] = opd_expf(x[i] - shift);
    }
}

void opd_vsilu_mul(float *out, const float *gate, const float *up, size_t n) {
    switch (opd_isa_get()) {
    case OPD_ISA_AVX512: opd_vsilu_mul_avx512(out, gate, up, n); return;
    case OPD_ISA_AVX2: opd_vsilu_mul_avx2(out, gate, up, n); return;
    default:
        for (size_t i = 0; i < n; i++) {
            float g = gate[i];
            out[i] = g / (1.0f + opd_expf(-g)) * up[i];
        }
    }
}

void opd_vsilu_mul_backward(float *dgate, float *dup, const float *dout,
                            const float *gate, const float *up, size_t n) {
    switch (opd_isa_get()) {
    case OPD_ISA_AVX512: opd_vsilu_mul_backward_avx512(dgate, dup, dout, gate, up, n); return;
    case OPD_ISA_AVX2: opd_vsilu_mul_backward_avx2(dgate, dup, dout, gate, up, n); return;
    default:
        for (size_t i = 0; i < n; i++) {
            float g = gate[i], s = 1.0f / (1.0f + opd_expf(-g));
            dgate[i] += dout[i] * up[i] * (s + g * s * (1.0f - s));
            dup[i] += dout[i] * g * s;
        }
    }
}

/* ------------------------------------------------------------- vec-mat */
/* y (n) += x (m) @ M (m, n), the loop of vecmat.h */
void opd_vecmat_accumulate(float *y, const float *x, const float *M, size_t ld, int m, int n) {
    switch (opd_isa_get()) {
    case OPD_ISA_AVX512: opd_vecmat_accumulate_avx512(y, x, M, ld, m, n); return;
    case OPD_ISA_AVX2: opd_vecmat_accumulate_avx2(y, x, M, ld, m, n); return;
    default: vecmat_accumulate(y, x, M, ld, m, n);
    }
}
