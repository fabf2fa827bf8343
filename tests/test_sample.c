/* test_sample.c — the sampler, the KV-cached decode step and rollouts
 * (ref/SPEC.md section 3), written as the behaviour they promise:
 *  - Philox4x32-10 reproduces Random123's known-answer vectors;
 *  - sampled frequencies follow the tempered / top-k / top-p distribution
 *    (chi-square goodness of fit at p = 0.001);
 *  - greedy takes the lowest index on ties; the log-prob is the model's own
 *    (temperature 1, unfiltered) log-softmax;
 *  - rollouts stop at EOS (kept in the mask), are truncated (not failed) at
 *    the horizon, and pad what follows;
 *  - tokens do not depend on the thread count or the batch order;
 *  - the KV-cached decode gives the full forward's logits at every position. */
#include "opd.h"
#include "testutil.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* --------------------------------------------------------------- Philox */
static void test_philox_kat(void) {
    /* Random123 kat_vectors, philox4x32_10 */
    static const uint32_t ctr[3][4] = {
        {0, 0, 0, 0},
        {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    static const uint32_t key[3][2] = {
        {0, 0}, {0xffffffffu, 0xffffffffu}, {0xa4093822u, 0x299f31d0u}};
    static const uint32_t want[3][4] = {
        {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}};
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        opd_philox4x32_10(ctr[i], key[i], out);
        printf("\n  philox kat %d: %08x %08x %08x %08x", i, out[0], out[1], out[2], out[3]);
        for (int j = 0; j < 4; j++) CU_ASSERT_EQUAL(out[j], want[i][j]);
    }
}

/* opd_uniform takes the top 24 bits of the draw keyed by counter (a, b, c, 0)
 * and key (seed lo, seed hi); opd_normal has mean 0 and variance 1. */
static void test_uniform_normal(void) {
    uint64_t seed = 0x0123456789abcdefull;
    uint32_t ctr[4] = {7, 8, 9, 0}, key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, out[4];
    opd_philox4x32_10(ctr, key, out);
    for (int w = 0; w < 4; w++)
        CU_ASSERT_EQUAL(opd_uniform(seed, 7, 8, 9, w), (float)(out[w] >> 8) / 16777216.0f);
    int n = 200000;
    double su = 0, sn = 0, sn2 = 0, umin = 1, umax = 0;
    for (int i = 0; i < n; i++) {
        double u = opd_uniform(42, 1, (uint32_t)i, 3, i & 3);
        double z = opd_normal(42, 2, (uint32_t)i, 3);
        su += u; sn += z; sn2 += z * z;
        if (u < umin) umin = u;
        if (u > umax) umax = u;
    }
    double mu = su / n, mz = sn / n, vz = sn2 / n - mz * mz;
    printf("\n  uniform mean %.5f [%.2g, %.8f]  normal mean %.5f var %.5f (n=%d)", mu, umin, umax, mz, vz, n);
    /* 5-sigma bounds: sd of the uniform mean 0.289/sqrt(n), of the normal
     * mean 1/sqrt(n), of the normal variance sqrt(2/n) */
    CU_ASSERT(fabs(mu - 0.5) < 5 * 0.2887 / sqrt(n));
    CU_ASSERT(fabs(mz) < 5 / sqrt(n));
    CU_ASSERT(fabs(vz - 1) < 5 * sqrt(2.0 / n));
    CU_ASSERT(umin >= 0.0 && umax < 1.0);
}

/* ---------------------------------------------------------------- sampler */
/* The distribution the sampler promises, computed independently in double:
 * softmax(logits / temp), keep the top_k largest, renormalise, keep the
 * smallest prefix (by probability) with mass >= top_p, renormalise. */
static void expected_dist(const float *logits, int V, const opd_sampler_config *s, double *p) {
    double maxv = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) if (logits[i] > maxv) maxv = logits[i];
    for (int i = 0; i < V; i++) { p[i] = exp((logits[i] - maxv) / s->temperature); sum += p[i]; }
    for (int i = 0; i < V; i++) p[i] /= sum;
    int order[64];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++)            /* selection sort, descending */
        for (int j = i + 1; j < V; j++)
            if (p[order[j]] > p[order[i]]) { int tmp = order[i]; order[i] = order[j]; order[j] = tmp; }
    int n = (s->top_k > 0 && s->top_k < V) ? s->top_k : V;
    double kept = 0;
    for (int i = 0; i < n; i++) kept += p[order[i]];
    if (s->top_p < 1) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += p[order[i]] / kept;
            if (cum >= s->top_p) { keep = i + 1; break; }
        }
        n = keep;
    }
    double mass = 0;
    for (int i = 0; i < n; i++) mass += p[order[i]];
    double q[64] = {0};
    for (int i = 0; i < n; i++) q[order[i]] = p[order[i]] / mass;
    for (int i = 0; i < V; i++) p[i] = q[i];
}

/* Upper 0.001 critical values of chi-square, df = 1..15 (standard tables). */
static const double chi2_crit_001[16] = {0, 10.828, 13.816, 16.266, 18.467, 20.515,
    22.458, 24.322, 26.124, 27.877, 29.588, 31.264, 32.909, 34.528, 36.123, 37.697};

static void test_sampler_chi_square(void) {
    enum { V = 10, N = 20000 };
    /* distinct, well-separated logits so no top-p boundary is a near tie */
    const float logits[V] = {1.3f, -0.4f, 2.1f, 0.2f, -1.5f, 0.9f, -0.1f, 1.7f, -2.2f, 0.5f};
    const opd_sampler_config cfgs[] = {
        {1.0f, 0, 1.0f}, {0.6f, 0, 1.0f}, {1.8f, 0, 1.0f}, {1.0f, 4, 1.0f},
        {1.0f, 0, 0.7f}, {1.3f, 6, 0.85f}};
    float scratch[2 * V];
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        double p[V];
        expected_dist(logits, V, &cfgs[c], p);
        long count[V] = {0};
        int bad = 0;
        for (int i = 0; i < N; i++) {
            /* keys vary over every field, as in rollouts */
            int tok = opd_sample_token(logits, V, &cfgs[c], 1234 + c, (uint32_t)(i % 7),
                                       (uint32_t)(i / 7), (uint32_t)(i % 13), NULL, scratch);
            if (tok < 0 || tok >= V) { bad++; continue; }
            count[tok]++;
        }
        double chi2 = 0;
        int df = -1, outside = 0;
        for (int v = 0; v < V; v++) {
            if (p[v] == 0) { outside += count[v]; continue; }
            double e = N * p[v];
            chi2 += (count[v] - e) * (count[v] - e) / e;
            df++;
        }
        printf("\n  T=%.1f top_k=%d top_p=%.2f: chi2 %.2f (df %d, crit@0.001 %.2f), outside support %d",
               cfgs[c].temperature, cfgs[c].top_k, cfgs[c].top_p, chi2, df, chi2_crit_001[df], outside);
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(outside, 0);
        CU_ASSERT(df >= 1 && chi2 < chi2_crit_001[df]);
    }
    /* the filters do what they say on this row: top-k 4 keeps 4 tokens,
     * top-p 0.7 at T=1 keeps 3 ({2.1, 1.7, 1.3} hold 0.72 of the mass) */
    double p[V];
    int support = 0;
    expected_dist(logits, V, &cfgs[3], p);
    for (int v = 0; v < V; v++) support += p[v] > 0;
    CU_ASSERT_EQUAL(support, 4);
    support = 0;
    expected_dist(logits, V, &cfgs[4], p);
    for (int v = 0; v < V; v++) support += p[v] > 0;
    CU_ASSERT_EQUAL(support, 3);
}

static void test_sampler_greedy_logprob(void) {
    enum { V = 6 };
    const float logits[V] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 0.0f};
    float scratch[2 * V], lp = 0;
    opd_sampler_config greedy = {0.0f, 0, 1.0f}, hot = {2.5f, 2, 0.5f}, def;
    opd_sampler_config_default(&def);
    CU_ASSERT(def.temperature == 1.0f && def.top_k == 0 && def.top_p == 1.0f);
    /* ties go to the lowest index, whatever the key */
    for (uint32_t k = 0; k < 50; k++)
        CU_ASSERT_EQUAL(opd_sample_token(logits, V, &greedy, 9, k, k, k, &lp, scratch), 1);
    /* log-softmax at temperature 1, unfiltered, in double */
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp(logits[i] - 3.0);
    double max_err = 0;
    for (uint32_t k = 0; k < 200; k++) {
        int tok = opd_sample_token(logits, V, &hot, 5, 0, k, 0, &lp, scratch);
        CU_ASSERT(tok == 1 || tok == 3);   /* top_k 2 keeps the tied pair */
        double want = logits[tok] - 3.0 - log(sum);
        if (fabs(lp - want) > max_err) max_err = fabs(lp - want);
    }
    opd_sample_token(logits, V, &greedy, 9, 0, 0, 0, &lp, scratch);
    double want1 = 3.0 - 3.0 - log(sum);
    printf("\n  greedy logprob %.7f (want %.7f), max |err| over sampled %.2g", lp, want1, max_err);
    CU_ASSERT(fabs(lp - want1) < 1e-6);
    CU_ASSERT(max_err < 1e-6);
    /* a vanishing temperature is greedy in the limit, not NaN */
    const float near_tie[V] = {0.5f, 2.0f, -1.0f, 3.0f, 2.999f, 0.0f};
    opd_sampler_config cold = {1e-30f, 0, 1.0f};
    int cold_ok = 1;
    for (uint32_t k = 0; k < 50; k++)
        cold_ok &= opd_sample_token(near_tie, V, &cold, 3, k, 0, 0, &lp, scratch) == 3;
    CU_ASSERT(cold_ok);
    /* bad settings are refused with a message */
    opd_sampler_config bad = {1.0f, 0, 0.0f};
    CU_ASSERT_EQUAL(opd_sample_token(logits, V, &bad, 0, 0, 0, 0, &lp, scratch), -1);
    CU_ASSERT(strstr(opd_last_error(), "top_p") != NULL);
}

/* ------------------------------------------------- rollouts, hand-set model */
/* A model whose next token depends only on the current one: every weight 0
 * except an identity embedding (V == C) and the LM head, so x = e_tok passes
 * the blocks unchanged, the final norm gives sqrt(C) e_tok, and
 * logits[v] = sqrt(C) * lm_head[v][tok]. Here tok -> tok + 1 with a margin
 * of 20 * sqrt(8) nats, and tok >= 6 -> EOS (7). */
enum { MV = 8, EOS = 7, PAD = 0 };
static void markov_model(opd_model *m) {
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.vocab_size = MV; cfg.d_model = MV; cfg.n_layers = 2; cfg.n_heads = 2;
    cfg.n_kv_heads = 1; cfg.d_ff = 8; cfg.max_seq_len = 32; cfg.qkv_bias = 1;
    CU_ASSERT_FATAL(opd_model_init(m, &cfg) == 0);
    for (int i = 0; i < MV; i++) m->params.wte[i * MV + i] = 1.0f;
    for (int i = 0; i < MV; i++) m->params.lnf_w[i] = 1.0f;
    for (int i = 0; i < cfg.n_layers * MV; i++) m->params.ln1_w[i] = m->params.ln2_w[i] = 1.0f;
    for (int cur = 0; cur < MV; cur++) {
        int next = cur >= 6 ? EOS : cur + 1;
        m->params.lm_head[next * MV + cur] = 20.0f;
    }
}

static void test_rollout_eos_truncation_padding(void) {
    opd_model m;
    markov_model(&m);
    /* three prompts, left-padded to P = 4; they end in 1, 4 and 6 */
    enum { B = 3, P = 4, H = 5 };
    const int prompts[B * P] = {PAD, PAD, 3, 1,
                                2, 3, 3, 4,
                                PAD, PAD, PAD, 6};
    const int pad[B] = {2, 0, 3};
    const uint32_t ids[B] = {10, 11, 12};
    opd_rollout_config rc = {EOS, PAD, {1.0f, 0, 1.0f}, 77, 3};
    opd_rollout r;
    CU_ASSERT_FATAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, H, &rc, &r) == 0);
    /* 1 -> 2 3 4 5 6 (cut at H: truncated), 4 -> 5 6 EOS, 6 -> EOS */
    const int want_gen[B][H] = {{2, 3, 4, 5, 6}, {5, 6, EOS, PAD, PAD}, {EOS, PAD, PAD, PAD, PAD}};
    const int want_len[B] = {5, 3, 1}, want_trunc[B] = {1, 0, 0};
    int tok_ok = 1, mask_ok = 1, lp_ok = 1;
    double min_lp = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < P; t++) tok_ok &= r.tokens[b * (P + H) + t] == prompts[b * P + t];
        for (int i = 0; i < H; i++) {
            tok_ok &= r.tokens[b * (P + H) + P + i] == want_gen[b][i];
            float mk = r.mask[b * H + i], lp = r.logprobs[b * H + i];
            mask_ok &= mk == (i < want_len[b] ? 1.0f : 0.0f);
            /* a near-certain token: log-prob just below 0; none outside the mask */
            lp_ok &= mk ? (lp <= 0 && lp > -1e-6f) : lp == 0.0f;
            if (lp < min_lp) min_lp = lp;
        }
        CU_ASSERT_EQUAL(r.length[b], want_len[b]);
        CU_ASSERT_EQUAL(r.truncated[b], want_trunc[b]);
        CU_ASSERT_EQUAL(r.pad[b], pad[b]);
    }
    printf("\n  lengths %d %d %d truncated %d %d %d, min logprob %.3g, cache %.0f B",
           r.length[0], r.length[1], r.length[2], r.truncated[0], r.truncated[1],
           r.truncated[2], min_lp, r.peak_cache_bytes);
    CU_ASSERT(tok_ok);
    CU_ASSERT(mask_ok);
    CU_ASSERT(lp_ok);
    CU_ASSERT(r.B == B && r.P == P && r.H == H);
    /* the cache holds P + H positions: 2 (k, v) * L * B * (P+H) * NKV*hd floats */
    CU_ASSERT_EQUAL(r.peak_cache_bytes, 2.0 * 2 * B * (P + H) * 4 * sizeof(float));
    opd_rollout_free(&r);

    /* a horizon that outlasts every sequence: all end with EOS, none truncated */
    CU_ASSERT_FATAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, 12, &rc, &r) == 0);
    CU_ASSERT(r.length[0] == 6 && r.length[1] == 3 && r.length[2] == 1);
    CU_ASSERT(!r.truncated[0] && !r.truncated[1] && !r.truncated[2]);
    CU_ASSERT_EQUAL(r.tokens[0 * (P + 12) + P + 5], EOS);
    CU_ASSERT_EQUAL(r.tokens[0 * (P + 12) + P + 6], PAD);
    CU_ASSERT_EQUAL(r.mask[0 * 12 + 5], 1.0f);
    CU_ASSERT_EQUAL(r.mask[0 * 12 + 6], 0.0f);
    opd_rollout_free(&r);

    /* refusals name the problem */
    CU_ASSERT_EQUAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, 40, &rc, &r), -1);
    printf("\n  refused: %s", opd_last_error());
    CU_ASSERT(strstr(opd_last_error(), "max_seq_len") != NULL);
    const int all_pad[B] = {0, 4, 0};
    CU_ASSERT_EQUAL(opd_rollout_sample(&m, prompts, all_pad, ids, B, P, H, &rc, &r), -1);
    CU_ASSERT(strstr(opd_last_error(), "pad") != NULL);
    opd_model_free(&m);
}

/* ----------------------------------------------------- random tiny models */
static void random_model(opd_model *m, int max_seq_len, float gain) {
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.vocab_size = 32; cfg.d_model = 32; cfg.n_layers = 2; cfg.n_heads = 4;
    cfg.n_kv_heads = 2; cfg.d_ff = 48; cfg.max_seq_len = max_seq_len; cfg.qkv_bias = 1;
    CU_ASSERT_FATAL(opd_model_init(m, &cfg) == 0);
    opd_model_init_random(m, 2024);
    /* larger weights than GPT-2's 0.02 so attention and logits are far
     * from uniform, and nonzero q/k/v biases so the bias path is exercised */
    for (size_t i = 0; i < m->num_params; i++)
        if (m->params_mem[i] != 1.0f) m->params_mem[i] *= gain;
    size_t nq = (size_t)cfg.n_layers * cfg.d_model, nkv = nq / 2;
    for (size_t i = 0; i < nq; i++) m->params.bq[i] = 0.3f * opd_normal(7, 1, (uint32_t)i, 0);
    for (size_t i = 0; i < nkv; i++) m->params.bk[i] = 0.3f * opd_normal(7, 2, (uint32_t)i, 0);
    for (size_t i = 0; i < nkv; i++) m->params.bv[i] = 0.3f * opd_normal(7, 3, (uint32_t)i, 0);
}

/* Same tokens whatever the thread count and whatever the batch order (with
 * the ids permuted alongside): the RNG key never sees the batch slot. */
static void test_rollout_determinism(void) {
    opd_model m;
    random_model(&m, 64, 10.0f);
    enum { B = 6, P = 5, H = 20 };
    int prompts[B * P], pad[B], pprompts[B * P], ppad[B];
    uint32_t ids[B], pids[B];
    for (int b = 0; b < B; b++) {
        pad[b] = b % 3;
        ids[b] = 100 + 7 * b;
        for (int t = 0; t < P; t++) prompts[b * P + t] = t < pad[b] ? 0 : 1 + (b * 5 + t * 3) % 31;
    }
    const int perm[B] = {4, 2, 5, 0, 3, 1};   /* slot j holds sequence perm[j] */
    for (int j = 0; j < B; j++) {
        ppad[j] = pad[perm[j]];
        pids[j] = ids[perm[j]];
        memcpy(pprompts + j * P, prompts + perm[j] * P, P * sizeof(int));
    }
    opd_rollout_config rc = {31, 0, {0.9f, 20, 0.95f}, 555, 12};
    opd_rollout r1, r2, rp;
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    CU_ASSERT_FATAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, H, &rc, &r1) == 0);
    omp_set_num_threads(2);
    CU_ASSERT_FATAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, H, &rc, &r2) == 0);
    CU_ASSERT_FATAL(opd_rollout_sample(&m, pprompts, ppad, pids, B, P, H, &rc, &rp) == 0);
    omp_set_num_threads(nt);
    int same_threads = memcmp(r1.tokens, r2.tokens, sizeof(int) * B * (P + H)) == 0 &&
                       memcmp(r1.logprobs, r2.logprobs, sizeof(float) * B * H) == 0;
    int same_perm = 1, distinct = 0;
    double lp_diff = 0;
    for (int j = 0; j < B; j++) {
        int b = perm[j];
        same_perm &= memcmp(rp.tokens + j * (P + H), r1.tokens + b * (P + H), sizeof(int) * (P + H)) == 0;
        same_perm &= rp.length[j] == r1.length[b] && rp.truncated[j] == r1.truncated[b];
        lp_diff = fmax(lp_diff, opd_max_abs_diff(rp.logprobs + j * H, r1.logprobs + b * H, H));
        /* the sampler is really sampling: different sequences differ */
        if (b > 0) distinct += memcmp(r1.tokens + b * (P + H) + P, r1.tokens + P, sizeof(int) * H) != 0;
    }
    printf("\n  1 vs 2 threads bit-identical: %d; permuted batch same tokens: %d "
           "(max |dlogprob| %.2g); rows differing from row 0: %d/5",
           same_threads, same_perm, lp_diff, distinct);
    CU_ASSERT(same_threads);
    CU_ASSERT(same_perm);
    CU_ASSERT(lp_diff < 1e-5);
    CU_ASSERT(distinct >= 4);
    /* the training step is part of the key: the next step draws afresh */
    opd_rollout rs;
    rc.step++;
    CU_ASSERT_FATAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, H, &rc, &rs) == 0);
    CU_ASSERT(memcmp(rs.tokens, r1.tokens, sizeof(int) * B * (P + H)) != 0);
    opd_rollout_free(&rs);
    opd_rollout_free(&r1);
    opd_rollout_free(&r2);
    opd_rollout_free(&rp);
    opd_model_free(&m);
}

/* KV-cached decode == the full forward, at every real position, for a GQA
 * model with q/k/v bias and left padding. Both are fp32 with the same
 * operations in a different order (one-row vs many-row matmuls, attention
 * accumulated over the cache vs over the (T, T) matrix), so they agree to
 * rounding: 1e-5 abs is ~20 ulps of the largest logits here (|logit| ~4,
 * ulp 4.8e-7) after 2 layers of fp32 sums; measured ~2e-6. */
static void test_decode_matches_forward(void) {
    opd_model m;
    random_model(&m, 40, 10.0f);
    const opd_config *cfg = &m.cfg;
    enum { B = 3, T = 24 };
    int V = cfg->vocab_size;
    int tokens[B * T], pad[B] = {0, 5, 11};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tokens[b * T + t] = t < pad[b] ? 0 : (int)(opd_uniform(3, b, t, 0, 0) * V);
    opd_model_forward(&m, tokens, pad, B, T);
    const float *full = m.acts.logits;   /* (B, T, V) */

    opd_kv_cache c;
    opd_decode_scratch s;
    CU_ASSERT_FATAL(opd_kv_cache_init(&c, cfg, B, T) == 0);
    CU_ASSERT_FATAL(opd_decode_scratch_init(&s, cfg, B, T) == 0);
    float logits[B * 32];
    double max_err = 0, max_logit = 0;
    int col_tokens[B];
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) col_tokens[b] = tokens[b * T + t];
        opd_model_decode_step(&m, &c, &s, col_tokens, pad, t, logits);
        for (int b = 0; b < B; b++) {
            /* pad positions too: both attend to themselves only, at RoPE
             * position 0, so even these unused outputs agree */
            const float *f = full + ((size_t)b * T + t) * V;
            double e = opd_max_abs_diff(logits + b * V, f, V);
            if (e > max_err) max_err = e;
            for (int v = 0; v < V; v++) max_logit = fmax(max_logit, fabs(f[v]));
        }
    }
    printf("\n  decode vs forward: max |dlogit| %.3g over %d positions, 16 of them pads (max |logit| %.2f)",
           max_err, B * T, max_logit);
    CU_ASSERT(max_err < 1e-5);
    CU_ASSERT(max_logit > 1.0);   /* the comparison is not of near-zero logits */
    opd_kv_cache_free(&c);
    opd_decode_scratch_free(&s);
    opd_model_free(&m);
}

/* The prefill is P decode steps in one pass: the cache it leaves (keys and
 * values of every layer, pads included) and the last position's logits are
 * those of the step-by-step decode, up to rounding (its matmuls see B*P rows
 * at once; 1e-5 as above). A scratch too small for B*P rows is an error. */
static void test_prefill_matches_decode_steps(void) {
    opd_model m;
    random_model(&m, 40, 10.0f);
    const opd_config *cfg = &m.cfg;
    enum { B = 3, P = 24 };
    int V = cfg->vocab_size;
    int tokens[B * P], pad[B] = {0, 5, 11}, col_tokens[B];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++)
            tokens[b * P + t] = t < pad[b] ? 0 : (int)(opd_uniform(4, b, t, 0, 0) * V);
    opd_kv_cache c1, c2;
    opd_decode_scratch s1, s2;
    CU_ASSERT_FATAL(opd_kv_cache_init(&c1, cfg, B, P + 4) == 0);
    CU_ASSERT_FATAL(opd_kv_cache_init(&c2, cfg, B, P + 4) == 0);
    CU_ASSERT_FATAL(opd_decode_scratch_init(&s1, cfg, B, P + 4) == 0);
    float steps_logits[B * 32], prefill_logits[B * 32];
    for (int t = 0; t < P; t++) {
        for (int b = 0; b < B; b++) col_tokens[b] = tokens[b * P + t];
        opd_model_decode_step(&m, &c1, &s1, col_tokens, pad, t, steps_logits);
    }
    /* s1 holds B rows: too few for a prefill of B x P */
    CU_ASSERT(opd_model_prefill(&m, &c2, &s1, tokens, pad, P, prefill_logits) == -1);
    CU_ASSERT(strstr(opd_last_error(), "opd_model_prefill") != NULL);
    CU_ASSERT_FATAL(opd_decode_scratch_init(&s2, cfg, B * P, P + 4) == 0);
    CU_ASSERT_FATAL(opd_model_prefill(&m, &c2, &s2, tokens, pad, P, prefill_logits) == 0);

    double e_logits = opd_max_abs_diff(prefill_logits, steps_logits, B * V), max_kv = 0;
    size_t n = (size_t)c1.L * B * c1.S * c1.kv_dim;   /* the whole cache */
    double e_kv = fmax(opd_max_abs_diff(c2.k, c1.k, n), opd_max_abs_diff(c2.v, c1.v, n));
    for (size_t i = 0; i < n; i++) max_kv = fmax(max_kv, fabs(c1.k[i]));
    printf("\n  prefill vs %d decode steps: max |dlogit| %.3g, max |dk|, |dv| %.3g (max |k| %.2f)",
           P, e_logits, e_kv, max_kv);
    CU_ASSERT(e_logits < 1e-5);
    CU_ASSERT(e_kv < 1e-5 * fmax(1.0, max_kv));
    CU_ASSERT(max_kv > 1.0);
    opd_kv_cache_free(&c1);
    opd_kv_cache_free(&c2);
    opd_decode_scratch_free(&s1);
    opd_decode_scratch_free(&s2);
    opd_model_free(&m);
}

/* What the loss relies on: a rollout's log-probs are the full forward's
 * log-softmax over [prompt; rollout] at the position before each generated
 * token (the sampler's log-prob is at temperature 1, unfiltered, whatever
 * the sampling settings). Same fp32 tolerance as above. */
static void test_rollout_logprobs_match_forward(void) {
    opd_model m;
    random_model(&m, 48, 10.0f);
    enum { B = 4, P = 6, H = 14, V = 32 };
    int prompts[B * P], pad[B] = {0, 3, 5, 1};
    uint32_t ids[B] = {3, 1, 4, 15};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++) prompts[b * P + t] = t < pad[b] ? 0 : 1 + (7 * b + 3 * t) % 30;
    opd_rollout_config rc = {5, 0, {0.8f, 12, 0.9f}, 99, 1};
    opd_rollout r;
    CU_ASSERT_FATAL(opd_rollout_sample(&m, prompts, pad, ids, B, P, H, &rc, &r) == 0);
    opd_model_forward(&m, r.tokens, r.pad, B, P + H);
    double max_err = 0;
    int n = 0, eos = 0;
    for (int b = 0; b < B; b++) {
        eos += !r.truncated[b];
        for (int i = 0; i < r.length[b]; i++) {
            const float *lg = m.acts.logits + ((size_t)b * (P + H) + P - 1 + i) * V;
            double mx = lg[0], sum = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, lg[v]);
            for (int v = 0; v < V; v++) sum += exp(lg[v] - mx);
            double want = lg[r.tokens[b * (P + H) + P + i]] - mx - log(sum);
            max_err = fmax(max_err, fabs(r.logprobs[b * H + i] - want));
            n++;
        }
    }
    printf("\n  rollout logprobs vs forward log-softmax: max |err| %.3g over %d tokens (%d of %d rows ended by EOS)",
           max_err, n, eos, B);
    CU_ASSERT(n > 0);
    CU_ASSERT(max_err < 1e-5);
    opd_rollout_free(&r);
    opd_model_free(&m);
}

/* The cache is sized by prompt + horizon, not by max_seq_len. */
static void test_cache_sized_by_horizon(void) {
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.max_seq_len = 2048;
    opd_kv_cache full, trunc;
    CU_ASSERT_FATAL(opd_kv_cache_init(&full, &cfg, 16, 64 + 1024) == 0);
    CU_ASSERT_FATAL(opd_kv_cache_init(&trunc, &cfg, 16, 64 + 103) == 0);
    size_t bf = opd_kv_cache_bytes(&full), bt = opd_kv_cache_bytes(&trunc);
    printf("\n  KV cache B=16 P=64: H=1024 %.1f MiB, H=103 %.1f MiB", bf / 1048576.0, bt / 1048576.0);
    CU_ASSERT_EQUAL(bf, 2ull * 4 * 16 * 1088 * 128 * sizeof(float));
    CU_ASSERT_EQUAL(bt * 1088, bf * 167);
    opd_kv_cache_free(&full);
    opd_kv_cache_free(&trunc);
    CU_ASSERT_EQUAL(opd_kv_cache_init(&full, &cfg, 16, 4096), -1);
    CU_ASSERT(strstr(opd_last_error(), "max_seq_len") != NULL);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {
        {"philox known answers", test_philox_kat},
        {"uniform and normal draws", test_uniform_normal},
        {"sampler chi-square", test_sampler_chi_square},
        {"sampler greedy and logprob", test_sampler_greedy_logprob},
        {"rollout EOS, truncation, padding", test_rollout_eos_truncation_padding},
        {"rollout thread and batch-order invariance", test_rollout_determinism},
        {"decode matches forward", test_decode_matches_forward},
        {"prefill matches the decode steps", test_prefill_matches_decode_steps},
        {"rollout logprobs match the full forward", test_rollout_logprobs_match_forward},
        {"KV cache sized by horizon", test_cache_sized_by_horizon},
        {0, 0}};
    opd_test_suite("sample", cases);
    return opd_test_run();
}
