/* philox.c — Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011). A draw is a pure function of its
 * counter and key, which is what makes sampling independent of thread count,
 * batch order and device. */
#include "opd.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u  /* golden ratio */
#define PHILOX_W1 0xBB67AE85u  /* sqrt(3) - 1 */

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void opd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n1 = lo1;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        uint32_t n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;   /* key schedule: bump after every round */
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The key is the 64-bit seed; the counter is (a, b, c, 0). */
static void keyed_draw(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, uint32_t out[4]) {
    const uint32_t ctr[4] = {a, b, c, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    opd_philox4x32_10(ctr, key, out);
}

/* Top 24 bits -> [0, 1): exactly representable in float, never rounds to 1. */
static inline float u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

float opd_uniform(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, int word) {
    uint32_t out[4];
    keyed_draw(seed, a, b, c, out);
    return u32_to_unit(out[word & 3]);
}

float opd_normal(uint64_t seed, uint32_t a, uint32_t b, uint32_t c) {
    uint32_t out[4];
    keyed_draw(seed, a, b, c, out);
    /* Box-Muller in double; u1 in (0, 1] so the log is finite */
    double u1 = ((double)(out[0] >> 8) + 1.0) / 16777216.0;
    double u2 = (double)(out[1] >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * opd_log(u1)) * opd_cos(2.0 * M_PI * u2));
}
