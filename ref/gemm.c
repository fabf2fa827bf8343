/* gemm.c — the reference's own sgemm: one fixed order of arithmetic, fast
 * kernels that keep it.
 *
 * The definition (gemm_reference below, the loop a reader checks):
 *
 *   C[i][j] <- beta * C[i][j]            (beta == 0: C[i][j] <- +0, C unread)
 *   for k = 0, 1, ..., K-1:
 *       C[i][j] <- fmaf(alpha * op(A)[i][k], op(B)[k][j], C[i][j])
 *
 * Every element accumulates its K products in increasing k, each with one
 * rounding (fmaf). The fast path computes exactly this:
 *  - packing copies op(B) into k-major strips of NR columns, and each
 *    MR-row strip of op(A) into a compact buffer (times alpha: the
 *    definition's one rounding) that the micro-kernel reads through two
 *    strides, so one micro-kernel serves every transpose;
 *  - blocking over K (KC) stores the running C and resumes from it, which is
 *    the same sequence of fmaf as one long loop;
 *  - a micro-kernel (kernels_avx512.c 12 x 32, kernels_avx2.c 6 x 16) holds
 *    an MR x NR tile of C in registers and vectorises across the tile's
 *    columns: each lane is one element's own fmaf chain;
 *  - OpenMP splits the output into blocks of whole tiles, never the
 *    reduction over k, so an element's bits do not depend on the thread
 *    that computes it or on how many there are.
 * The portable path (OPD_ISA=scalar) runs the same chains row by row in C.
 * tests/test_model.c checks every path against gemm_reference with memcmp. */
#include "kernels.h"
#include "opd.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* op(A)[i][k] and op(B)[k][j] of a row-major matrix and its transpose flag */
#define OPA(i, k) (transA ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define OPB(k, j) (transB ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

void opd_gemm_reference(int transA, int transB, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float c = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
            for (int k = 0; k < K; k++) c = fmaf(alpha * OPA(i, k), OPB(k, j), c);
            C[(size_t)i * ldc + j] = c;
        }
}

/* ------------------------------------------------------- portable path */
/* The definition with the loops turned i, k, j: row i of C is updated once
 * per k, so each element still sees its products in k order. op(B) is
 * transposed once first when it is stored transposed. */
static void gemm_portable(int transA, int transB, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta,
                          float *C, int ldc, int nthreads) {
    float *Bt = NULL;
    if (transB) {
        Bt = opd_malloc((size_t)K * N * sizeof(float));
        for (int k = 0; k < K; k++)
            for (int j = 0; j < N; j++) Bt[(size_t)k * N + j] = B[(size_t)j * ldb + k];
        B = Bt; ldb = N; transB = 0;
    }
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * OPA(i, k);
            const float *b = B + (size_t)k * ldb;
            for (int j = 0; j < N; j++) c[j] = fmaf(a, b[j], c[j]);
        }
    }
    free(Bt);
}

/* --------------------------------------------------------- packed path */
typedef struct { int mr, nr; opd_ukernel_fn run; } ukernel;

/* Blocking, measured on the model's shapes (tests of KC 64..1024, NC
 * 128..1024): long K blocks win, since each one costs a C tile load and
 * store and a kernel call, and the B block (KC x NC, 512 KiB) stays in L2
 * while the MR-row strips of A pass over it, each meeting every NR-wide
 * strip of the block. */
enum { KC = 512, NC = 256 };

/* Copy the strip of rows i0 .. i0+MR of op(A), columns p0 .. p0+kc, into a
 * compact buffer, times alpha (the definition's one rounding), rows past M
 * zero. An untransposed A keeps its layout, (MR, kc), a transposed one its
 * own, (kc, MR): both copies are runs of contiguous floats. *rs and *cs
 * receive the strip's row and k strides for the micro-kernel. */
static void pack_a(float *Ap, int MR, int transA, const float *A, int lda, int M,
                   int i0, int p0, int kc, float alpha, size_t *rs, size_t *cs) {
    int mr = M - i0 < MR ? M - i0 : MR;
    if (!transA) {
        for (int r = 0; r < mr; r++) {
            const float *a = A + (size_t)(i0 + r) * lda + p0;
            float *d = Ap + (size_t)r * kc;
            if (alpha == 1.0f) memcpy(d, a, kc * sizeof(float));
            else for (int k = 0; k < kc; k++) d[k] = alpha * a[k];
        }
        memset(Ap + (size_t)mr * kc, 0, (size_t)(MR - mr) * kc * sizeof(float));
        *rs = (size_t)kc;
        *cs = 1;
    } else {
        for (int k = 0; k < kc; k++) {
            const float *a = A + (size_t)(p0 + k) * lda + i0;
            float *d = Ap + (size_t)k * MR;
            if (alpha == 1.0f) memcpy(d, a, (size_t)mr * sizeof(float));
            else for (int r = 0; r < mr; r++) d[r] = alpha * a[r];
            for (int r = mr; r < MR; r++) d[r] = 0.0f;
        }
        *rs = 1;
        *cs = (size_t)MR;
    }
}

/* Bp (kc, nr_full): columns j0 .. j0+nr of op(B), rows p0 .. p0+kc; columns
 * past N are zero */
static void pack_b(float *Bp, int nr_full, int transB, const float *B, int ldb, int N,
                   int j0, int p0, int kc) {
    int nr = N - j0 < nr_full ? N - j0 : nr_full;
    if (transB) {   // read along k (contiguous), write down the strip
        for (int j = 0; j < nr; j++) {
            const float *b = B + (size_t)(j0 + j) * ldb + p0;
            for (int k = 0; k < kc; k++) Bp[(size_t)k * nr_full + j] = b[k];
        }
        for (int k = 0; k < kc; k++)
            for (int j = nr; j < nr_full; j++) Bp[(size_t)k * nr_full + j] = 0.0f;
    } else {   // runs of nr contiguous floats (memcpy: the library's widest copy)
        for (int k = 0; k < kc; k++) {
            const float *b = B + (size_t)(p0 + k) * ldb + j0;
            float *d = Bp + (size_t)k * nr_full;
            memcpy(d, b, (size_t)nr * sizeof(float));
            if (nr < nr_full) memset(d + nr, 0, (size_t)(nr_full - nr) * sizeof(float));
        }
    }
}

/* Element (i, j) of C: row-major, or transposed (ctrans: the product is
 * computed as C^T, see opd_gemm_own) */
#define CAT(C, ldc, ctrans, i, j) \
    ((C) + ((ctrans) ? (size_t)(j) * (ldc) + (i) : (size_t)(i) * (ldc) + (j)))

/* One MR x NR tile of C at (i0, j0), A strip at (a, rs, cs). A tile cut by
 * the edge of C (or stored transposed) runs in a full-size copy: its extra
 * rows and columns come from the zero padding and are dropped; the kept
 * elements see the same operations. */
static void run_tile(const ukernel *u, int kc, const float *a, size_t rs, size_t cs,
                     const float *b, size_t bs, float *C, int ldc, int ctrans, int M, int N,
                     int i0, int j0, int acc) {
    int mr = M - i0 < u->mr ? M - i0 : u->mr, nr = N - j0 < u->nr ? N - j0 : u->nr;
    if (mr == u->mr && nr == u->nr && !ctrans) {
        u->run(kc, a, rs, cs, b, bs, C + (size_t)i0 * ldc + j0, (size_t)ldc, acc);
        return;
    }
    float tile[12 * 32] __attribute__((aligned(64)));
    if (acc)
        for (int r = 0; r < mr; r++)
            for (int c = 0; c < nr; c++) tile[r * u->nr + c] = *CAT(C, ldc, ctrans, i0 + r, j0 + c);
    u->run(kc, a, rs, cs, b, bs, tile, (size_t)u->nr, acc);
    if (ctrans)   // C^T's rows are C's columns: write each of C's rows contiguously
        for (int c = 0; c < nr; c++)
            for (int r = 0; r < mr; r++) C[(size_t)(j0 + c) * ldc + i0 + r] = tile[r * u->nr + c];
    else
        for (int r = 0; r < mr; r++) memcpy(C + (size_t)(i0 + r) * ldc + j0, tile + r * u->nr, nr * sizeof(float));
}

/* One thread's gemm on its block of C: every K block of A meets every K
 * block of B in k order, so each element's fmaf chain is the definition's. */
static void gemm_block(const ukernel *u, int transA, int transB, int M, int N, int K,
                       float alpha, const float *A, int lda, const float *B, int ldb,
                       int first_acc, float *C, int ldc, int ctrans, float *Ap, float *Bp) {
    const int MR = u->mr, NR = u->nr;
    // An untransposed B is read in place when K is long next to this
    // block's rows (the weight gradients: M = out channels, K = B*T rows):
    // a packed block would meet too few rows to repay streaming all of B
    // twice. Strips cut by the edge of B are still packed (zero padding).
    int b_inplace = !transB && (size_t)K >= 4 * (size_t)M;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC, nstrips = (nc + NR - 1) / NR;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC, acc = pc > 0 || first_acc;
            for (int s = 0; s < nstrips; s++)
                if (!b_inplace || jc + (s + 1) * NR > N)
                    pack_b(Bp + (size_t)s * NR * kc, NR, transB, B, ldb, N, jc + s * NR, pc, kc);
            for (int i0 = 0; i0 < M; i0 += MR) {
                // A is read in place where it can be: untransposed, alpha 1 (no
                // rounding to apply), a whole strip, and an lda that does not
                // put the strip's rows into the same few L1 sets (4 KiB apart)
                size_t rs, cs;
                const float *a = Ap;
                if (!transA && alpha == 1.0f && i0 + MR <= M && lda % 1024 != 0) {
                    a = A + (size_t)i0 * lda + pc;
                    rs = (size_t)lda;
                    cs = 1;
                } else {
                    pack_a(Ap, MR, transA, A, lda, M, i0, pc, kc, alpha, &rs, &cs);
                }
                for (int s = 0; s < nstrips; s++) {
                    int j0 = jc + s * NR;
                    if (b_inplace && j0 + NR <= N)
                        run_tile(u, kc, a, rs, cs, B + (size_t)pc * ldb + j0, (size_t)ldb, C, ldc, ctrans,
                                 M, N, i0, j0, acc);
                    else
                        run_tile(u, kc, a, rs, cs, Bp + (size_t)s * NR * kc, (size_t)NR, C, ldc, ctrans,
                                 M, N, i0, j0, acc);
                }
            }
        }
    }
}

/* Threads split C into one block each, along whichever of M and N has more
 * tiles, at tile boundaries. Blocks share nothing (each packs its own A and
 * B), so there is no barrier inside: one fork, one join. */
static void gemm_packed(const ukernel *u, int transA, int transB, int M, int N, int K,
                        float alpha, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc, int ctrans, int nthreads) {
    const int MR = u->mr, NR = u->nr;
    // beta: 0 starts the first K block from zero, 1 from C; anything else
    // scales C first (the definition's beta * C)
    if (beta != 0.0f && beta != 1.0f)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) *CAT(C, ldc, ctrans, i, j) *= beta;
    int first_acc = beta != 0.0f;
    int mtiles = (M + MR - 1) / MR, ntiles = (N + NR - 1) / NR;
    int by_rows = mtiles >= ntiles;
    int tiles = by_rows ? mtiles : ntiles;
    if (nthreads > tiles) nthreads = tiles;
    int kc_max = K < KC ? K : KC, nc_max = N < NC ? N : NC;
    size_t ap_size = (size_t)MR * kc_max, bp_size = (size_t)(nc_max + NR - 1) / NR * NR * kc_max;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int lo = (int)((long)tiles * t / nt), hi = (int)((long)tiles * (t + 1) / nt);
        float *Ap = opd_malloc(ap_size * sizeof(float)), *Bp = opd_malloc(bp_size * sizeof(float));
        if (by_rows) {
            int i0 = lo * MR, i1 = hi * MR < M ? hi * MR : M;
            if (i1 > i0)
                gemm_block(u, transA, transB, i1 - i0, N, K, alpha,
                           transA ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb, first_acc,
                           CAT(C, ldc, ctrans, i0, 0), ldc, ctrans, Ap, Bp);
        } else {
            int j0 = lo * NR, j1 = hi * NR < N ? hi * NR : N;
            if (j1 > j0)
                gemm_block(u, transA, transB, M, j1 - j0, K, alpha, A, lda,
                           transB ? B + (size_t)j0 * ldb : B + j0, ldb, first_acc,
                           CAT(C, ldc, ctrans, 0, j0), ldc, ctrans, Ap, Bp);
        }
        free(Ap);
        free(Bp);
    }
}

/* Threads for one gemm: one inside a parallel region (attention runs its
 * gemms per head) or for a product too small to repay a fork/join. */
static int gemm_threads(int M, int N, int K) {
    if (omp_in_parallel()) return 1;
    if ((double)M * N * K < 262144.0) return 1;
    return omp_get_max_threads();
}

void opd_gemm_own(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc) {
    static const ukernel k512 = {12, 32, opd_ukernel_avx512_12x32};
    static const ukernel k2 = {6, 16, opd_ukernel_avx2_6x16};
    int nthreads = gemm_threads(M, N, K);
    opd_isa isa = opd_isa_get();
    if (isa == OPD_ISA_SCALAR) {
        gemm_portable(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nthreads);
        return;
    }
    // Few rows (the decode step: one per sequence) against a wide B (the
    // weights): packing B would cost as much as the product, since each
    // packed element meets only M rows. Computing C^T = op(B)^T op(A)^T
    // instead reads the weights in place and packs only the few rows of A,
    // with the 6 x 16 kernel, whose 16 columns fit M = 16 (every AVX-512 CPU
    // has AVX2). Each element's chain is unchanged: fmaf(b, a, c) is
    // fmaf(a, b, c), and alpha 1 rounds nothing.
    if (M <= 16 && N >= 64 && alpha == 1.0f) {
        gemm_packed(&k2, !transB, !transA, N, M, K, 1.0f, B, ldb, A, lda, beta, C, ldc, 1, nthreads);
        return;
    }
    gemm_packed(isa == OPD_ISA_AVX512 ? &k512 : &k2, transA, transB, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc, 0, nthreads);
}
