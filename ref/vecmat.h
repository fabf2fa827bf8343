/* vecmat.h — the inner loop of decode.c's one-query attention (internal to
 * libopd, not part of the API; layers.c's attention runs on opd_sgemm). This
 * is the definition; opd_vecmat_accumulate (vector.c) dispatches to vector
 * forms of it with the same bits (kernels_avx2.c, kernels_avx512.c). */
#ifndef OPD_VECMAT_H
#define OPD_VECMAT_H

#include <stddef.h>

/* y (n) += x (m) @ M (m, n), M row-major with leading dimension ld: each
 * y[c] adds x[r] * M[r][c] for r = 0, 1, ..., m-1 in that order, exactly as
 * a plain loop over r would. Decode uses it for scores (x a query, M the
 * transposed keys) and weighted sums of values (x the probabilities, M the
 * values).
 *
 * Why four rows per pass: a loop that adds one row at a time loads and
 * stores y once per row, and each load waits for the previous store; adding
 * rows r..r+3 in one expression, (((y + x0 m0) + x1 m1) + x2 m2) + x3 m3,
 * rounds exactly as four single-row passes do but touches y once. The loop
 * over c is what the compiler vectorizes. */
static inline void vecmat_accumulate(float *restrict y, const float *restrict x,
                                     const float *restrict M, size_t ld, int m, int n) {
    int r = 0;
    for (; r + 4 <= m; r += 4) {
        const float *m0 = M + (size_t)r * ld, *m1 = m0 + ld, *m2 = m1 + ld, *m3 = m2 + ld;
        float x0 = x[r], x1 = x[r + 1], x2 = x[r + 2], x3 = x[r + 3];
        for (int c = 0; c < n; c++)
            y[c] = (((y[c] + x0 * m0[c]) + x1 * m1[c]) + x2 * m2[c]) + x3 * m3[c];
    }
    for (; r < m; r++) {
        const float *mr = M + (size_t)r * ld;
        float xr = x[r];
        for (int c = 0; c < n; c++) y[c] += xr * mr[c];
    }
}

/* the dispatcher: the ISA path's vector form of the loop above */
void opd_vecmat_accumulate(float *y, const float *x, const float *M, size_t ld, int m, int n);

#endif
