/* matmul.c — opd_sgemm, the one sgemm every layer goes through, and the
 * linear layer (matmul_forward / matmul_backward) built on it.
 *
 * Backends. The default is the reference's own gemm (gemm.c): one fixed
 * order of fmaf per output element, the same bits on every CPU, ISA path
 * and thread count, which is what the golden files hold. OpenBLAS
 * (cblas_sgemm) and oneDNN (dnnl_matmul) are optional fast backends, chosen
 * with OPD_MATMUL=blas|onednn or ./configure --with-matmul=: their results
 * agree with the reference within rounding (tests/test_model.c), but their
 * bits depend on the kernel each library picks for the CPU, so they are
 * never golden.
 *
 * The BLAS backend partitions C itself, into blocks of rows (or of columns:
 * for the long-K weight gradients when C is wider than tall, and for gemms
 * of at most 16 rows, the decode step's) whose size depends only on the
 * shape, one single-threaded cblas_sgemm per block, the blocks spread over
 * OpenMP threads. OpenBLAS 0.3.21 splits C over threads itself otherwise,
 * and with its Haswell and Zen kernels an element's bits then depend on
 * where the split falls. K is never split. */
#include "config.h"
#include "opd.h"

#if OPD_HAVE_BLAS
#include <cblas.h>
#endif
#if OPD_HAVE_ONEDNN
#include <dnnl.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- backend */
static int backend_chosen = 0;   /* 0 until the env var / default was read */
static opd_matmul_backend backend = OPD_MATMUL_OWN;

int opd_matmul_backend_available(opd_matmul_backend b) {
    if (b == OPD_MATMUL_BLAS) return OPD_HAVE_BLAS;
    if (b == OPD_MATMUL_ONEDNN) return OPD_HAVE_ONEDNN;
    return 1;
}

static void choose_backend_once(void) {
    if (backend_chosen) return;
    backend = (opd_matmul_backend)OPD_DEFAULT_MATMUL;
    const char *env = getenv("OPD_MATMUL");
    if (env && *env) {
        opd_matmul_backend b = OPD_MATMUL_OWN;
        if (!strcmp(env, "own")) b = OPD_MATMUL_OWN;
        else if (!strcmp(env, "blas")) b = OPD_MATMUL_BLAS;
        else if (!strcmp(env, "onednn")) b = OPD_MATMUL_ONEDNN;
        else {
            fprintf(stderr, "opd: OPD_MATMUL='%s' is not own, blas or onednn; using %s\n",
                    env, opd_matmul_backend_name(backend));
            b = backend;
        }
        if (!opd_matmul_backend_available(b))
            fprintf(stderr, "opd: OPD_MATMUL=%s but this opd was built without it; using %s\n",
                    env, opd_matmul_backend_name(backend));
        else
            backend = b;
    }
    backend_chosen = 1;
}

void opd_matmul_set_backend(opd_matmul_backend b) {
    if (!opd_matmul_backend_available(b)) b = OPD_MATMUL_OWN;
    backend = b;
    backend_chosen = 1;   /* an explicit choice wins over OPD_MATMUL */
}

opd_matmul_backend opd_matmul_get_backend(void) {
    choose_backend_once();
    return backend;
}

const char *opd_matmul_backend_name(opd_matmul_backend b) {
    return b == OPD_MATMUL_ONEDNN ? "onednn" : b == OPD_MATMUL_BLAS ? "blas" : "own";
}

/* ------------------------------------------------------------- oneDNN */
#if OPD_HAVE_ONEDNN
/* Creating a dnnl primitive costs far more than running a small one, so
 * primitives are made once per (transposes, shape, leading dims, alpha,
 * beta) and kept. The engine and stream are created once. */
typedef struct {
    int transA, transB, M, N, K, lda, ldb, ldc;
    float alpha, beta;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, b_md, c_md;
} dnnl_entry;

static dnnl_engine_t dnnl_eng;
static dnnl_stream_t dnnl_strm;
static dnnl_entry *dnnl_cache;
static int dnnl_n, dnnl_cap;

static void dnnl_check(dnnl_status_t s, const char *what) {
    if (s != dnnl_success) {
        /* a failure here is a programming error (bad descriptor), not an
         * input error: there is no sane way to continue a forward pass */
        fprintf(stderr, "opd: oneDNN %s failed (status %d)\n", what, (int)s);
        abort();
    }
}

static void dnnl_release(void) {
    for (int i = 0; i < dnnl_n; i++) dnnl_primitive_destroy(dnnl_cache[i].prim);
    free(dnnl_cache);
    dnnl_cache = NULL;
    dnnl_n = dnnl_cap = 0;
    if (dnnl_strm) dnnl_stream_destroy(dnnl_strm);
    if (dnnl_eng) dnnl_engine_destroy(dnnl_eng);
    dnnl_strm = NULL;
    dnnl_eng = NULL;
}

static dnnl_entry *dnnl_get(int transA, int transB, int M, int N, int K,
                            int lda, int ldb, int ldc, float alpha, float beta) {
    if (!dnnl_eng) {
        dnnl_check(dnnl_engine_create(&dnnl_eng, dnnl_cpu, 0), "engine_create");
        dnnl_check(dnnl_stream_create(&dnnl_strm, dnnl_eng, dnnl_stream_default_flags),
                   "stream_create");
        atexit(dnnl_release);
    }
    for (int i = 0; i < dnnl_n; i++) {
        dnnl_entry *e = &dnnl_cache[i];
        if (e->transA == transA && e->transB == transB && e->M == M && e->N == N &&
            e->K == K && e->lda == lda && e->ldb == ldb && e->ldc == ldc &&
            e->alpha == alpha && e->beta == beta)
            return e;
    }
    if (dnnl_n == dnnl_cap) {
        dnnl_cap = dnnl_cap ? 2 * dnnl_cap : 32;
        dnnl_cache = realloc(dnnl_cache, dnnl_cap * sizeof *dnnl_cache);
        if (!dnnl_cache) { fprintf(stderr, "opd: out of memory (oneDNN cache)\n"); abort(); }
    }
    dnnl_entry *e = &dnnl_cache[dnnl_n];
    memset(e, 0, sizeof *e);
    e->transA = transA; e->transB = transB; e->M = M; e->N = N; e->K = K;
    e->lda = lda; e->ldb = ldb; e->ldc = ldc; e->alpha = alpha; e->beta = beta;
    /* Row-major C (M,N) = op(A) (M,K) op(B) (K,N); a transpose is only a
     * different pair of strides over the same memory. */
    dnnl_dims_t a_dims = {M, K}, b_dims = {K, N}, c_dims = {M, N};
    dnnl_dims_t a_str = {transA ? 1 : lda, transA ? lda : 1};
    dnnl_dims_t b_str = {transB ? 1 : ldb, transB ? ldb : 1};
    dnnl_dims_t c_str = {ldc, 1};
    dnnl_check(dnnl_memory_desc_init_by_strides(&e->a_md, 2, a_dims, dnnl_f32, a_str), "A desc");
    dnnl_check(dnnl_memory_desc_init_by_strides(&e->b_md, 2, b_dims, dnnl_f32, b_str), "B desc");
    dnnl_check(dnnl_memory_desc_init_by_strides(&e->c_md, 2, c_dims, dnnl_f32, c_str), "C desc");
    dnnl_matmul_desc_t desc;
    dnnl_check(dnnl_matmul_desc_init(&desc, &e->a_md, &e->b_md, NULL, &e->c_md), "matmul_desc_init");
    dnnl_primitive_attr_t attr;
    dnnl_check(dnnl_primitive_attr_create(&attr), "attr_create");
    if (alpha != 1.0f)
        dnnl_check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "output scales");
    dnnl_post_ops_t po = NULL;
    if (beta != 0.0f) {   /* C = alpha AB + beta C is a "sum" post-op */
        dnnl_check(dnnl_post_ops_create(&po), "post_ops_create");
        dnnl_check(dnnl_post_ops_append_sum(po, beta), "append_sum");
        dnnl_check(dnnl_primitive_attr_set_post_ops(attr, po), "set_post_ops");
    }
    dnnl_primitive_desc_t pd;
    dnnl_check(dnnl_primitive_desc_create(&pd, &desc, attr, dnnl_eng, NULL), "primitive_desc_create");
    dnnl_check(dnnl_primitive_create(&e->prim, pd), "primitive_create");
    dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    dnnl_n++;
    return e;
}

static void sgemm_onednn(int transA, int transB, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb,
                         float beta, float *C, int ldc) {
    dnnl_memory_t ma, mb, mc;
    dnnl_primitive_t prim;
    /* the cache is shared; a caller inside a parallel region must not race it */
#pragma omp critical(opd_dnnl_cache)
    {
        dnnl_entry *e = dnnl_get(transA, transB, M, N, K, lda, ldb, ldc, alpha, beta);
        prim = e->prim;
        /* memory objects only wrap our pointers: cheap, made per call */
        dnnl_check(dnnl_memory_create(&ma, &e->a_md, dnnl_eng, (void *)A), "memory A");
        dnnl_check(dnnl_memory_create(&mb, &e->b_md, dnnl_eng, (void *)B), "memory B");
        dnnl_check(dnnl_memory_create(&mc, &e->c_md, dnnl_eng, C), "memory C");
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    dnnl_check(dnnl_primitive_execute(prim, dnnl_strm, 3, args), "execute");
    dnnl_check(dnnl_stream_wait(dnnl_strm), "stream_wait");
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(mc);
}

#endif /* OPD_HAVE_ONEDNN */

/* --------------------------------------------------------------- BLAS */
#if OPD_HAVE_BLAS
/* Rows (or columns) of C per block: a function of that dimension alone
 * (never of the thread count), at most 16 blocks, a multiple of 16 rows so
 * OpenBLAS's kernels see full tiles, and at least `least`. */
static int blas_block_size(int D, int least) {
    int r = (D + 15) / 16;
    r = (r + 15) / 16 * 16;
    return r < least ? least : r;
}

/* Every block re-packs the whole other operand (K x the other side), so thin
 * blocks of a long-K gemm spend their time packing: the weight gradients
 * (dW = dout^T inp, M = OC, N = C, K = B*T) ran at 80..150 GFLOP/s in 16-row
 * blocks, 160..190 in 64-wide blocks along the longer side of C. Only those
 * gemms get the fat blocks: OpenBLAS switches to other kernels (gemv,
 * small-matrix) for small or thin blocks, whose last bits differ, so every
 * other shape keeps the 16-row blocks it always had. With the Cooperlake and
 * SkylakeX kernels the fat blocks give the 16-row blocks' bits exactly
 * (memcmp over M, N in 1..4608, K in 128..9216, all three transposes, 1 and
 * 2 threads); with Haswell/Zen the dW gemms' last bits move, still thread-
 * count independent (those cores never matched the Cooperlake-generated
 * golden files bit for bit anyway). */
static int blas_fat_blocks(int M, int N, int K) {
    return K >= 2048 && M >= 64 && N >= 64;
}

/* A gemm of one row block (the decode step: B rows, one token per
 * sequence) would run on one thread; split it by columns instead, 64-wide
 * blocks, so every thread reads its share of the weights. */
static int blas_few_rows(int M, int N) {
    return M <= 16 && N >= 128;
}

static void sgemm_blas_blocked(int transA, int transB, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb,
                               float beta, float *C, int ldc) {
    int fat = blas_fat_blocks(M, N, K), by_cols = (fat && N > M) || blas_few_rows(M, N);
    int D = by_cols ? N : M, size = blas_block_size(D, by_cols ? 64 : 16);
    int nblocks = (D + size - 1) / size;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblocks; blk++) {
        int d0 = blk * size, db = D - d0 < size ? D - d0 : size;
        if (by_cols) {
            // columns d0.. of op(B) and C: column offset in B, or row offset if transposed
            const float *Bb = transB ? B + (size_t)d0 * ldb : B + d0;
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                        transB ? CblasTrans : CblasNoTrans, M, db, K, alpha, A, lda,
                        Bb, ldb, beta, C + d0, ldc);
        } else {
            // rows d0.. of op(A) and C: row offset in A, or column offset if transposed
            const float *Ab = transA ? A + d0 : A + (size_t)d0 * lda;
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                        transB ? CblasTrans : CblasNoTrans, db, N, K, alpha, Ab, lda,
                        B, ldb, beta, C + (size_t)d0 * ldc, ldc);
        }
    }
}

#endif /* OPD_HAVE_BLAS */

/* --------------------------------------------------------------- sgemm */
void opd_sgemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   /* neither backend needs to see the degenerate case */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    choose_backend_once();
#if OPD_HAVE_ONEDNN
    if (backend == OPD_MATMUL_ONEDNN) {
        sgemm_onednn(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
#if OPD_HAVE_BLAS
    if (backend == OPD_MATMUL_BLAS) {
        sgemm_blas_blocked(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    opd_gemm_own(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ------------------------------------------------------------ linear layer */
void matmul_forward(float *out, const float *inp, const float *weight,
                    const float *bias, int N, int C, int OC) {
    // inp is (N,C), weight is (OC,C), bias is (OC), out is (N,OC)
    opd_sgemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
    if (bias) {
#pragma omp parallel for if ((size_t)N * OC > OPD_OMP_MIN_ELEMS)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int N, int C, int OC) {
    // dout is (N,OC); dinp (N,C) += dout @ weight
    if (dinp) opd_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    // dweight (OC,C) += dout^T @ inp
    if (dweight) opd_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    // dbias (OC) += sum over the N rows: one thread per output channel, each
    // summing its rows in order, so the result is thread-count independent
    if (dbias) {
#pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
            dbias[o] += s;
        }
    }
}
