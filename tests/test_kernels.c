/* test_kernels.c — the bit contract of the reference's own kernels
 * (ref/SPEC.md section 9): every ISA path of the gemm gives the bits of the
 * readable definition (opd_gemm_reference) on every shape, transpose, alpha,
 * beta and thread count; the vector exp and SiLU give the scalar
 * functions' bits; and the project's own math is accurate (against glibc,
 * which is not part of any result). */
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "opd.h"
#include "vecmat.h"

static float *rand_buf(size_t n, uint64_t seed) {
    float *p = opd_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = opd_normal(seed, 3, (uint32_t)i, (uint32_t)(i >> 32));
    return p;
}

/* equal bits, except that any NaN equals any NaN (their sign and payload
 * are not part of the contract) */
static size_t count_bit_diffs(const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(a + i, b + i, sizeof(float)) != 0) bad++;
    }
    return bad;
}

static const opd_isa all_isas[] = {OPD_ISA_SCALAR, OPD_ISA_AVX2, OPD_ISA_AVX512};

/* ------------------------------------------------------------------ gemm */
/* Random shapes from the edge sizes around the tile sizes (MR 6 / 12, NR
 * 16 / 32) and the blocking (KC 512, NC 256), plus the model's own shapes
 * scaled down; every transpose pair; alpha 1 (no rounding of A) and not;
 * beta 0, 1 and other; 1 and 2 threads. */
static void test_gemm_paths_equal_definition(void) {
    static const int sizes[] = {1, 3, 7, 15, 17, 63, 65, 129};
    const int nsizes = sizeof sizes / sizeof sizes[0];
    static const int model[][3] = {   /* M, N, K: linear layers, attention blocks, decode */
        {288, 128, 128}, {288, 512, 128}, {128, 128, 288}, {64, 300, 32}, {64, 32, 300},
        {16, 1024, 256}, {16, 64, 128}, {1100, 40, 24}, {24, 40, 1100}, {40, 600, 520}};
    const int nmodel = sizeof model / sizeof model[0];
    int cases = 0, bad_cases = 0, paths = 0;
    opd_isa saved = opd_isa_get();
    int saved_threads = omp_get_max_threads();
    for (int c = 0; c < 60 + nmodel; c++) {
        int M, N, K;
        if (c < 60) {   // a deterministic draw of three edge sizes
            M = sizes[(int)(opd_uniform(5, c, 0, 0, 0) * nsizes)];
            N = sizes[(int)(opd_uniform(5, c, 1, 0, 0) * nsizes)];
            K = sizes[(int)(opd_uniform(5, c, 2, 0, 0) * nsizes)];
        } else {
            M = model[c - 60][0]; N = model[c - 60][1]; K = model[c - 60][2];
        }
        int ta = c % 2, tb = (c / 2) % 2;
        float alpha = (c / 4) % 2 ? 0.37f : 1.0f;
        float beta = c % 3 == 0 ? 0.0f : c % 3 == 1 ? 1.0f : -0.5f;
        int lda = ta ? M : K, ldb = tb ? K : N, ldc = N + (c % 5 == 0 ? 3 : 0);   // a padded ldc too
        float *A = rand_buf((size_t)M * K, 100 + c), *B = rand_buf((size_t)K * N, 200 + c);
        float *C0 = rand_buf((size_t)M * ldc, 300 + c);
        if (beta == 0.0f) for (size_t i = 0; i < (size_t)M * ldc; i++) C0[i] = NAN;   // must not be read
        float *ref = opd_malloc((size_t)M * ldc * sizeof(float));
        float *got = opd_malloc((size_t)M * ldc * sizeof(float));
        memcpy(ref, C0, (size_t)M * ldc * sizeof(float));
        opd_gemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, ref, ldc);
        for (int i = 0; i < 3; i++) {
            if (!opd_isa_supported(all_isas[i])) continue;
            opd_isa_set(all_isas[i]);
            for (int th = 1; th <= 2; th++) {
                omp_set_num_threads(th);
                memcpy(got, C0, (size_t)M * ldc * sizeof(float));
                opd_gemm_own(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, got, ldc);
                size_t bad = 0;
                for (int r = 0; r < M; r++)   // the columns past N (padding) must be untouched too
                    bad += count_bit_diffs(ref + (size_t)r * ldc, got + (size_t)r * ldc, (size_t)ldc);
                cases++;
                if (bad) {
                    bad_cases++;
                    printf("\n    %s %d threads: M=%d N=%d K=%d tA=%d tB=%d alpha=%g beta=%g: %zu elements differ",
                           opd_isa_name(all_isas[i]), th, M, N, K, ta, tb, alpha, beta, bad);
                }
                if (c == 0) paths++;
            }
        }
        free(A); free(B); free(C0); free(ref); free(got);
    }
    opd_isa_set(saved);
    omp_set_num_threads(saved_threads);
    printf("\n    %d gemm runs (%d paths x threads) against the definition: %d differ (memcmp)",
           cases, paths, bad_cases);
    CU_ASSERT(bad_cases == 0);
    CU_ASSERT(cases >= 2 * (60 + nmodel));
}

/* The model's layer widths with N = 4 x 288 rows on the selected path, 1 vs
 * 2 threads, against the portable path: the blocks cross KC and NC. */
static void test_gemm_model_shapes_threads(void) {
    static const int lin[][2] = {{128, 512}, {512, 128}, {256, 1024}, {128, 64}};
    const int N = 4 * 288;
    opd_isa saved = opd_isa_get();
    int saved_threads = omp_get_max_threads(), bad = 0;
    for (int s = 0; s < 4; s++) {
        int C = lin[s][0], OC = lin[s][1];
        float *inp = rand_buf((size_t)N * C, 20 + s), *w = rand_buf((size_t)OC * C, 40 + s);
        float *dout = rand_buf((size_t)N * OC, 60 + s);
        float *r[3][3];
        for (int v = 0; v < 3; v++) {   // portable 1 thread, best path 1 thread, best path 2 threads
            opd_isa_set(v == 0 ? OPD_ISA_SCALAR : saved);
            omp_set_num_threads(v == 2 ? 2 : 1);
            r[v][0] = opd_malloc((size_t)N * OC * 4);
            r[v][1] = opd_calloc((size_t)N * C, 4);
            r[v][2] = opd_calloc((size_t)OC * C, 4);
            matmul_forward(r[v][0], inp, w, NULL, N, C, OC);
            matmul_backward(r[v][1], r[v][2], NULL, dout, inp, w, N, C, OC);
        }
        for (int v = 1; v < 3; v++) {
            int same = !memcmp(r[0][0], r[v][0], (size_t)N * OC * 4) &&
                       !memcmp(r[0][1], r[v][1], (size_t)N * C * 4) &&
                       !memcmp(r[0][2], r[v][2], (size_t)OC * C * 4);
            if (!same) { bad++; printf("\n    C=%d OC=%d: %s %d threads differs from scalar", C, OC,
                                       opd_isa_name(saved), v); }
        }
        for (int v = 0; v < 3; v++) for (int j = 0; j < 3; j++) free(r[v][j]);
        free(inp); free(w); free(dout);
    }
    opd_isa_set(saved);
    omp_set_num_threads(saved_threads);
    printf("\n    model widths (N = 1152), fwd / dinp / dweight: %s 1 and 2 threads vs scalar: %s",
           opd_isa_name(saved), bad ? "DIFFERENT" : "bit-identical");
    CU_ASSERT(bad == 0);
}

/* ------------------------------------------------------------ vector math */
/* Inputs that exercise every branch of opd_expf: the cut-offs, zeros,
 * infinities, NaN, tiny and huge values, and a sweep of ordinary ones. */
static size_t special_inputs(float *x, size_t cap) {
    static const float fixed[] = {0.0f, -0.0f, 1.0f, -1.0f, 88.37f, 88.3701f, 88.36f, 88.72f, 89.0f,
                                  -86.0f, -86.0001f, -85.99f, -87.3f, -104.0f, 1e-30f, -1e-30f,
                                  1e30f, -1e30f, 0.5f, -0.5f, 0.34657359f, -0.34657359f};
    size_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && n < cap; i++) x[n++] = fixed[i];
    if (n + 3 <= cap) { x[n++] = INFINITY; x[n++] = -INFINITY; x[n++] = NAN; }
    for (size_t i = 0; n < cap; i++) x[n++] = -100.0f + 200.0f * opd_uniform(7, (uint32_t)i, 0, 0, 0);
    return n;
}

static void test_vector_math_equals_scalar(void) {
    enum { N = 4099 };   // not a multiple of 8 or 16: the tails run too
    float *x = opd_malloc(N * sizeof(float)), *up = rand_buf(N, 2), *dout = rand_buf(N, 3);
    special_inputs(x, N);
    float ref[3][N], got[3][N];
    // the scalar definitions, element by element
    for (int i = 0; i < N; i++) {
        ref[0][i] = opd_expf(x[i] - 0.25f);
        ref[1][i] = x[i] / (1.0f + opd_expf(-x[i])) * up[i];
        float g = x[i], s = 1.0f / (1.0f + opd_expf(-g));
        ref[2][i] = 0.5f + dout[i] * up[i] * (s + g * s * (1.0f - s));   // dgate starts at 0.5
    }
    opd_isa saved = opd_isa_get();
    int checked = 0;
    for (int k = 0; k < 3; k++) {
        if (!opd_isa_supported(all_isas[k])) continue;
        opd_isa_set(all_isas[k]);
        float dup[N];
        for (int i = 0; i < N; i++) { got[2][i] = 0.5f; dup[i] = 0.0f; }
        opd_vexp_sub(got[0], x, 0.25f, N);
        opd_vsilu_mul(got[1], x, up, N);
        opd_vsilu_mul_backward(got[2], dup, dout, x, up, N);
        size_t b0 = count_bit_diffs(ref[0], got[0], N), b1 = count_bit_diffs(ref[1], got[1], N);
        size_t b2 = count_bit_diffs(ref[2], got[2], N);
        // decode attention's vec-mat (ref/vecmat.h) at sizes around the vector widths
        size_t b3 = 0;
        for (int m = 1; m <= 37; m += 9)
            for (int n = 1; n <= 70; n += 23) {
                float y0[70], y1[70];
                for (int c = 0; c < n; c++) y0[c] = y1[c] = up[c];
                vecmat_accumulate(y0, dout, x + 30, 71, m, n);   // the definition
                opd_vecmat_accumulate(y1, dout, x + 30, 71, m, n);
                b3 += count_bit_diffs(y0, y1, (size_t)n);
            }
        printf("\n    %s: exp %zu, silu*up %zu, its backward %zu of %d elements differ; vec-mat %zu",
               opd_isa_name(all_isas[k]), b0, b1, b2, N, b3);
        CU_ASSERT(b0 == 0 && b1 == 0 && b2 == 0 && b3 == 0);
        checked++;
    }
    opd_isa_set(saved);
    CU_ASSERT(checked >= 1);
    free(x); free(up); free(dout);
}

/* ulp distance between two finite floats of the same sign region */
static double ulp_f(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0) ia = INT32_MIN - ia;
    if (ib < 0) ib = INT32_MIN - ib;
    return fabs((double)ia - (double)ib);
}

static double ulp_d(double a, double b) {
    int64_t ia, ib;
    memcpy(&ia, &a, 8);
    memcpy(&ib, &b, 8);
    if (ia < 0) ia = INT64_MIN - ia;
    if (ib < 0) ib = INT64_MIN - ib;
    int64_t d = ia > ib ? ia - ib : ib - ia;   // in integers: a double cannot hold ia exactly
    return (double)d;
}

/* Against glibc, which has ~0.5 ulp: the project's functions are within a
 * couple of ulp where they are defined, and exact on their special cases. */
static void test_math_accuracy(void) {
    double w_expf = 0, w_exp = 0, w_log = 0, w_log1p = 0, w_sin = 0, w_cos = 0, w_pow = 0;
    for (int i = 0; i < 200000; i++) {
        float u = opd_uniform(11, (uint32_t)i, 0, 0, 0), v = opd_uniform(11, (uint32_t)i, 1, 0, 0);
        float xf = -85.9f + 174.2f * u;                      // opd_expf's normal range
        w_expf = fmax(w_expf, ulp_f(opd_expf(xf), (float)exp((double)xf)));
        double xd = -700.0 + 1400.0 * (double)u;
        w_exp = fmax(w_exp, ulp_d(opd_exp(xd), exp(xd)));
        double ld = ldexp(0.5 + (double)v, (int)(u * 400.0) - 200);   // wide exponent range
        w_log = fmax(w_log, ulp_d(opd_log(ld), log(ld)));
        double l1 = (double)v - 0.999;                        // (-1, 1)
        if (l1 != 0.0) w_log1p = fmax(w_log1p, ulp_d(opd_log1p(l1), log1p(l1)));
        double ang = 40000.0 * ((double)u - 0.5);             // RoPE angles stay below the context length
        double s, c;
        opd_sincos(ang, &s, &c);
        // judged in absolute ulp of 1: near a zero, sin's relative error is no measure
        w_sin = fmax(w_sin, fabs(s - sin(ang)) / 2.220446049250313e-16);
        w_cos = fmax(w_cos, fabs(c - cos(ang)) / 2.220446049250313e-16);
        double pb = 1.0 + 1e6 * (double)v, pe = (double)u;
        w_pow = fmax(w_pow, ulp_d(opd_pow(pb, pe), pow(pb, pe)));
    }
    printf("\n    max ulp vs glibc: expf %.0f, exp %.0f, log %.0f, log1p %.0f; sin %.1f, cos %.1f "
           "(units of 2^-52, absolute); pow %.0f",
           w_expf, w_exp, w_log, w_log1p, w_sin, w_cos, w_pow);
    CU_ASSERT(w_expf <= 2);
    CU_ASSERT(w_exp <= 2);
    CU_ASSERT(w_log <= 2);
    CU_ASSERT(w_log1p <= 4);
    // the reduction by pi/2 in two parts loses about log2(|x|) bits of
    // absolute accuracy at |x| = 20000: 2^15 ulps of 1 is 7e-12, far below
    // the float the angle is rounded to
    CU_ASSERT(w_sin <= 32768 && w_cos <= 32768);
    // pow = exp(e log b): log's rounding error, times |e log b| <= 14, is
    // exp's argument error, so a few ulp more (used only where the result is
    // rounded to float: RoPE frequencies, Adam's bias corrections)
    CU_ASSERT(w_pow <= 32);
    // special cases, exactly
    CU_ASSERT(opd_expf(0.0f) == 1.0f);
    CU_ASSERT(opd_expf(100.0f) == INFINITY && opd_expf(-100.0f) == 0.0f && isnan(opd_expf(NAN)));
    CU_ASSERT(opd_exp(0.0) == 1.0 && opd_exp(800.0) == INFINITY && opd_exp(-800.0) == 0.0);
    CU_ASSERT(opd_log(1.0) == 0.0 && opd_log(0.0) == -INFINITY && isnan(opd_log(-1.0)));
    CU_ASSERT(opd_log1p(0.0) == 0.0 && opd_pow(7.0, 0.0) == 1.0);
}

/* OPD_ISA names and refusals */
static void test_isa_choice(void) {
    opd_isa i;
    CU_ASSERT(opd_isa_parse("avx512", &i) == 0 && i == OPD_ISA_AVX512);
    CU_ASSERT(opd_isa_parse("avx2", &i) == 0 && i == OPD_ISA_AVX2);
    CU_ASSERT(opd_isa_parse("scalar", &i) == 0 && i == OPD_ISA_SCALAR);
    CU_ASSERT(opd_isa_parse("sse9", &i) == -1 && strstr(opd_last_error(), "sse9") != NULL);
    CU_ASSERT(opd_isa_supported(OPD_ISA_SCALAR));
    opd_isa saved = opd_isa_get();
    for (int k = 0; k < 3; k++) {
        int ok = opd_isa_set(all_isas[k]) == 0;
        CU_ASSERT(ok == opd_isa_supported(all_isas[k]));   // refused exactly when the CPU lacks it
        if (ok) CU_ASSERT(opd_isa_get() == all_isas[k]);
    }
    opd_isa_set(saved);
}

int main(void) {
    printf("ISA paths on this CPU:");
    for (int i = 0; i < 3; i++)
        if (opd_isa_supported(all_isas[i])) printf(" %s", opd_isa_name(all_isas[i]));
    printf(" (selected: %s)\n", opd_isa_name(opd_isa_get()));
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {
        {"gemm: every ISA path and thread count gives the definition's bits", test_gemm_paths_equal_definition},
        {"gemm: the model's shapes, 1 and 2 threads, equal the portable path", test_gemm_model_shapes_threads},
        {"vector exp, SiLU and vec-mat equal the scalar functions bit for bit", test_vector_math_equals_scalar},
        {"own exp, log, log1p, sin, cos, pow: accuracy and special cases", test_math_accuracy},
        {"OPD_ISA: names, and paths the CPU lacks are refused", test_isa_choice},
        {NULL, NULL}};
    opd_test_suite("kernels", cases);
    return opd_test_run();
}
