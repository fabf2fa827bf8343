/* schedule.c — the rollout horizon H_k of training step k (ref/SPEC.md section 5).
 *
 *   full         (OPD)   H_k = T
 *   progressive  (POPD)  H_k = min(T, H0 + dH * floor(k / dk))   the paper's rule
 *   linear               H_k = min(T, H0 + ceil((T - H0) * k / total_steps))
 *   geometric            H_k = min(T, ceil(H0 * growth^floor(k / dk)))
 *   truncated    (TOPD)  H_k = ceil(rho * T)
 *   adaptive             H_k = the current H (horizon_now), which the caller
 *                        moves every dk steps by opd_adaptive_next_horizon
 *                        on a probe's measured top-k overlap (ref/adaptive.h):
 *                        POPD's clock and increments, granted only across
 *                        positions where the teacher was measured reliable
 *
 * H_k is always in [1, T]; a negative k counts as 0. The integer rules use
 * integer arithmetic that cannot overflow for any k (the horizon saturates at T
 * long before); linear uses a 128-bit product.
 *
 * rho and growth are floats, usually written as decimals that floats cannot
 * hold (0.3f * 10 = 3.0000001): a product within one float ulp per factor above
 * an integer counts as that integer, so rho = 0.3, T = 10 gives 3, not 4.
 *
 * Defaults (opd_schedule_default) assume the growing schedules should reach
 * the full horizon half-way through a nominal 100-step run: total_steps = 50
 * is the linear ramp length, and dk is set so that progressive and geometric
 * also reach T at about k = 50. H0 = dH = max(1, T/8) (the paper's POPD starts
 * short and adds a fixed increment), rho = 0.25 (the paper's TOPD), growth 2. */
#include "adaptive.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ceil(x) for x >= 0 made of n_factors rounded float factors (see above). */
static long ceil_tolerant(double x, double n_factors) {
    double f = floor(x);
    double tol = x * FLT_EPSILON * n_factors;
    if (tol > 0.25) tol = 0.25;   /* never swallow a true fraction like .5 */
    return x - f <= tol ? (long)f : (long)f + 1;
}

/* Growth steps n after which ceil(H0 * growth^n) >= T. */
static long geometric_steps_to_full(int H0, double growth, int T) {
    long n = 0;
    double x = H0;
    while (ceil_tolerant(x, (double)n + 1.0) < T && n < 100000) { x *= growth; n++; }
    return n;
}

void opd_schedule_default(opd_schedule *s, opd_schedule_kind kind, int T) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->max_new_tokens = T;
    s->H0 = T / 8 >= 1 ? T / 8 : 1;
    s->dH = s->H0;
    s->rho = 0.25f;
    s->growth = 2.0f;
    s->total_steps = 50;
    s->threshold = 0.5f;   /* opd_adaptive_config_default's */
    s->horizon_now = 0;    /* H0 */
    long n; /* increments needed to reach T */
    if (kind == OPD_SCHED_GEOMETRIC) n = geometric_steps_to_full(s->H0, s->growth, T);
    else n = T > s->H0 ? (T - s->H0 + s->dH - 1) / s->dH : 0;
    s->dk = n > 0 && s->total_steps / n >= 1 ? (int)(s->total_steps / n) : 1;
}

static const char *const sched_names[] = {
    "full", "progressive", "linear", "geometric", "truncated", "adaptive"};
#define N_SCHED_KINDS ((int)(sizeof sched_names / sizeof sched_names[0]))

const char *opd_schedule_name(opd_schedule_kind k) {
    if ((int)k < 0 || (int)k >= N_SCHED_KINDS) return "unknown";
    return sched_names[k];
}

int opd_schedule_parse(const char *name, opd_schedule_kind *k) {
    if (!name) return opd_set_error("schedule: no schedule name given");
    for (int i = 0; i < N_SCHED_KINDS; i++)
        if (strcmp(name, sched_names[i]) == 0) { *k = (opd_schedule_kind)i; return 0; }
    /* the paper's method names */
    if (strcmp(name, "opd") == 0) { *k = OPD_SCHED_FULL; return 0; }
    if (strcmp(name, "popd") == 0) { *k = OPD_SCHED_PROGRESSIVE; return 0; }
    if (strcmp(name, "topd") == 0) { *k = OPD_SCHED_TRUNCATED; return 0; }
    return opd_set_error("schedule: unknown schedule '%s' (expected full/opd, "
                         "progressive/popd, linear, geometric, truncated/topd or adaptive)",
                         name);
}

/* Checks the fields the kind uses; the others are ignored. */
int opd_schedule_validate(const opd_schedule *s) {
    if ((int)s->kind < 0 || (int)s->kind >= N_SCHED_KINDS)
        return opd_set_error("schedule: unknown kind %d", (int)s->kind);
    const char *name = sched_names[s->kind];
    if (s->max_new_tokens < 1)
        return opd_set_error("schedule %s: max_new_tokens T = %d must be >= 1", name, s->max_new_tokens);
    switch (s->kind) {
    case OPD_SCHED_FULL:
        return 0;
    case OPD_SCHED_TRUNCATED:
        if (!(s->rho > 0.0f && s->rho <= 1.0f))
            return opd_set_error("schedule %s: rho = %g must be in (0, 1]",
                                 name, (double)s->rho);
        return 0;
    default:
        break;
    }
    if (s->H0 < 1 || s->H0 > s->max_new_tokens)
        return opd_set_error("schedule %s: H0 = %d must be in [1, T = %d]",
                             name, s->H0, s->max_new_tokens);
    if (s->kind == OPD_SCHED_LINEAR) {
        if (s->total_steps < 1)
            return opd_set_error("schedule %s: total_steps = %ld must be >= 1",
                                 name, s->total_steps);
        return 0;
    }
    if (s->dk < 1)
        return opd_set_error("schedule %s: dk = %d must be >= 1", name, s->dk);
    if ((s->kind == OPD_SCHED_PROGRESSIVE || s->kind == OPD_SCHED_ADAPTIVE) && s->dH < 1)
        return opd_set_error("schedule %s: dH = %d must be >= 1 (a constant "
                             "horizon is the truncated schedule)", name, s->dH);
    if (s->kind == OPD_SCHED_ADAPTIVE && !isfinite(s->threshold))
        return opd_set_error("schedule %s: threshold %g is not finite", name, (double)s->threshold);
    if (s->kind == OPD_SCHED_ADAPTIVE && (s->horizon_now < 0 || s->horizon_now > s->max_new_tokens))
        return opd_set_error("schedule %s: current horizon %d must be in [0, T = %d]", name,
                             s->horizon_now, s->max_new_tokens);
    if (s->kind == OPD_SCHED_GEOMETRIC && !(s->growth > 1.0f && isfinite(s->growth)))
        return opd_set_error("schedule %s: growth = %g must be a finite number > 1",
                             name, (double)s->growth);
    return 0;
}

/* Callers validate first; on an invalid schedule the result is still a
 * horizon in [1, max(T, 1)], never an overflow or a division by zero. */
int opd_schedule_horizon(const opd_schedule *s, long k) {
    const long T = s->max_new_tokens >= 1 ? s->max_new_tokens : 1;
    const long H0 = s->H0 >= 1 ? s->H0 : 1;
    const long dk = s->dk >= 1 ? s->dk : 1;
    if (k < 0) k = 0;
    long h = T;
    switch (s->kind) {
    case OPD_SCHED_FULL:
        h = T;
        break;
    case OPD_SCHED_PROGRESSIVE: {
        long n = k / dk;
        if (H0 >= T || s->dH < 1) { h = H0; break; }
        /* the first n at which H0 + dH n >= T; compare n against it rather
         * than multiply, so a huge k cannot overflow */
        long need = (T - H0 + s->dH - 1) / s->dH;
        h = n >= need ? T : H0 + (long)s->dH * n;
    } break;
    case OPD_SCHED_LINEAR: {
        if (s->total_steps < 1 || k >= s->total_steps || H0 >= T) { h = T; break; }
        unsigned __int128 num = (unsigned __int128)(T - H0) * (unsigned long)k;
        unsigned __int128 den = (unsigned long)s->total_steps;
        h = H0 + (long)((num + den - 1) / den);
    } break;
    case OPD_SCHED_GEOMETRIC: {
        long n = k / dk;
        double x = (double)H0 * opd_pow((double)s->growth, (double)n);
        h = (x >= (double)T || !(x == x)) ? T : ceil_tolerant(x, (double)n + 1.0);
    } break;
    case OPD_SCHED_TRUNCATED:
        h = ceil_tolerant((double)s->rho * (double)T, 1.0);
        break;
    case OPD_SCHED_ADAPTIVE:
        /* the state, not k: the probe every dk steps moves it */
        h = s->horizon_now > H0 ? s->horizon_now : H0;
        break;
    }
    if (h < 1) h = 1;
    if (h > T) h = T;
    return (int)h;
}

void opd_adaptive_config_from_schedule(opd_adaptive_config *c, const opd_schedule *s) {
    opd_adaptive_config_default(c, s->max_new_tokens);
    c->H0 = s->H0;
    c->dH = s->dH;
    c->threshold = s->threshold;
    c->sense = OPD_RELIABLE_ABOVE;
}
