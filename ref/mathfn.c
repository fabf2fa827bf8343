/* mathfn.c — exp, log, sin/cos and pow as the project's own functions.
 *
 * Why not libm: glibc's expf, logf, sinf ... are accurate to within an ulp
 * or so, but which ulp is not promised, and it has changed between glibc
 * versions and differs between libm implementations. The reference promises
 * the same bits on every machine (ref/SPEC.md section 9), so every function
 * whose value reaches a result is defined here by a fixed sequence of IEEE
 * operations (+ - * / sqrt, fmaf and exact conversions), each correctly
 * rounded on every conforming machine. sqrt and division are such
 * operations, so 1 / sqrtf(x) is already the same everywhere and needs no
 * definition of its own (opd_rsqrtf).
 *
 * opd_expf is the hot one (softmax, SiLU, the cross-entropy gradient, the
 * sampler): it has vector versions in kernels_avx2.c / kernels_avx512.c that
 * run the same operations lane by lane, chosen by the dispatchers of
 * vector.c. The double
 * functions (losses, log-softmax, RoPE tables, the init, the lr schedule)
 * are scalar. Accuracy against glibc (tests/test_kernels.c, 200,000 points
 * each): expf, exp, log and log1p within 1 ulp; sin and cos within half an
 * ulp of 1 (absolute) for |x| <= 20000; pow = exp(e log b) within 16 ulp.
 *
 * The double algorithms follow fdlibm (Sun Microsystems, 1993; the same
 * reductions and polynomial coefficients as its e_exp.c, e_log.c,
 * k_sin.c, k_cos.c), without its special-case refinements. */
#include "kernels.h"
#include "opd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline double f64_from_bits(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static inline uint64_t f64_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* ------------------------------------------------------------- float exp */
float opd_expf(float x) {
    if (x != x) return x;                       // NaN
    if (x > OPD_EXPF_HI) return INFINITY;
    if (x < OPD_EXPF_LO) return 0.0f;
    // n = round(x / ln2): adding 1.5 * 2^23 leaves the integer in the low bits
    float n = fmaf(x, OPD_EXPF_LOG2E, OPD_EXPF_SHIFT) - OPD_EXPF_SHIFT;
    // r = x - n ln2 in two parts (Cody and Waite), so r keeps its low bits
    float r = fmaf(n, -OPD_EXPF_LN2_HI, x);
    r = fmaf(n, -OPD_EXPF_LN2_LO, r);
    float z = r * r;
    float p = OPD_EXPF_P0;
    p = fmaf(p, r, OPD_EXPF_P1);
    p = fmaf(p, r, OPD_EXPF_P2);
    p = fmaf(p, r, OPD_EXPF_P3);
    p = fmaf(p, r, OPD_EXPF_P4);
    p = fmaf(p, r, OPD_EXPF_P5);
    float y = fmaf(p, z, r) + 1.0f;             // exp(r) = 1 + r + r^2 p(r)
    // 2^n from its exponent bits: n in [-125, 127] here
    return y * f32_from_bits((uint32_t)((int32_t)n + 127) << 23);
}

/* ------------------------------------------------------------ double exp */
static const double
    EXP_INVLN2 = 1.44269504088896338700e+00,
    EXP_LN2HI = 6.93147180369123816490e-01,   /* ln 2, high 32 bits */
    EXP_LN2LO = 1.90821492927058770002e-10,   /* the rest */
    EXP_P1 = 1.66666666666666019037e-01,
    EXP_P2 = -2.77777777770155933842e-03,
    EXP_P3 = 6.61375632143793436117e-05,
    EXP_P4 = -1.65339022054652515390e-06,
    EXP_P5 = 4.13813679705723846039e-08;

double opd_exp(double x) {
    if (x != x) return x;
    if (x > 709.0) return INFINITY;   /* exp(709.78) is the largest double */
    if (x < -708.0) return 0.0;       /* results below 2^-1021: 0, no subnormals */
    // x = k ln2 + r, |r| <= ln2 / 2; k rounded to nearest (half away from 0)
    double kd = x * EXP_INVLN2;
    int k = (int)(kd < 0 ? kd - 0.5 : kd + 0.5);
    double hi = x - k * EXP_LN2HI, lo = k * EXP_LN2LO, r = hi - lo;
    // exp(r) = 1 + 2r / (2 - c) with c = r - r^2 P(r^2), the Remez fit of fdlibm
    double t = r * r;
    double c = r - t * (EXP_P1 + t * (EXP_P2 + t * (EXP_P3 + t * (EXP_P4 + t * EXP_P5))));
    double y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    // y * 2^k, with k in [-1022, 1023]
    return y * f64_from_bits((uint64_t)(k + 1023) << 52);
}

/* ------------------------------------------------------------ double log */
static const double
    LOG_LN2HI = 6.93147180369123816490e-01, LOG_LN2LO = 1.90821492927058770002e-10,
    LG1 = 6.666666666666735130e-01, LG2 = 3.999999999940941908e-01,
    LG3 = 2.857142874366239149e-01, LG4 = 2.222219843214978396e-01,
    LG5 = 1.818357216161805012e-01, LG6 = 1.531383769920937332e-01,
    LG7 = 1.479819860511658591e-01;

double opd_log(double x) {
    if (x != x) return x;
    if (x < 0.0) return NAN;
    if (x == 0.0) return -INFINITY;
    if (x == INFINITY) return x;
    int k = 0;
    if (x < 2.2250738585072014e-308) { x *= 18014398509481984.0; k = -54; }  /* subnormal: * 2^54 */
    // x = 2^k m with m in [sqrt(2)/2, sqrt(2)): f = m - 1 is small
    uint64_t u = f64_bits(x);
    int e = (int)((u >> 52) & 0x7ff) - 1023;
    uint64_t mant = u & 0x000fffffffffffffULL;
    double m = f64_from_bits(mant | 0x3ff0000000000000ULL);   /* [1, 2) */
    if (m > 1.4142135623730951) { m *= 0.5; e += 1; }
    k += e;
    double f = m - 1.0;
    // log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f)
    double s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * (LG2 + w * (LG4 + w * LG6));
    double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    double R = t2 + t1, hfsq = 0.5 * f * f;
    return k * LOG_LN2HI - ((hfsq - (s * (hfsq + R) + k * LOG_LN2LO)) - f);
}

double opd_log1p(double x) {
    // log(u) * x / (u - 1) with u = 1 + x rounded: the division corrects
    // the rounding of u (Goldberg 1991), within a few ulp for any x > -1
    double u = 1.0 + x;
    if (u == 1.0) return x;
    if (u == INFINITY) return u;
    return opd_log(u) * (x / (u - 1.0));
}

double opd_pow(double b, double e) {
    // b > 0 only (RoPE frequencies, Adam's bias corrections)
    if (e == 0.0) return 1.0;
    return opd_exp(e * opd_log(b));
}

/* -------------------------------------------------------- double sin, cos */
static const double
    S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
    S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
    S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10,
    C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
    C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
    C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11,
    PIO2_1 = 1.57079632673412561417e+00,   /* pi/2, first 33 bits */
    PIO2_1T = 6.07710050650619224932e-11,  /* pi/2 - PIO2_1 */
    INV_PIO2 = 6.36619772367581382433e-01;

static double kernel_sin(double x) {   /* |x| <= pi/4 */
    double z = x * x, r = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)));
    return x + z * x * (S1 + z * r);
}

static double kernel_cos(double x) {   /* |x| <= pi/4 */
    double z = x * x, r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
    return 1.0 - (0.5 * z - z * r);
}

void opd_sincos(double x, double *s, double *c) {
    // x = k pi/2 + r, |r| <= pi/4; good to |x| ~ 1e9 (RoPE angles stay below
    // the context length)
    double kd = x * INV_PIO2;
    long k = (long)(kd < 0 ? kd - 0.5 : kd + 0.5);
    double r = (x - k * PIO2_1) - k * PIO2_1T;
    double sr = kernel_sin(r), cr = kernel_cos(r);
    switch (k & 3) {
    case 0: *s = sr; *c = cr; break;
    case 1: *s = cr; *c = -sr; break;
    case 2: *s = -sr; *c = -cr; break;
    default: *s = -cr; *c = sr; break;
    }
}

double opd_cos(double x) { double s, c; opd_sincos(x, &s, &c); return c; }
