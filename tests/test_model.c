/* test_model.c — the reference transformer: every layer's backward against
 * central finite differences, the whole model's loss gradient w.r.t. every
 * parameter tensor, determinism across thread counts, the two matmul
 * backends against each other, the plain-loop (naive) layers against the
 * fast ones, and left padding. */
#include "opd.h"
#include "testutil.h"

#include "config.h"
#if OPD_HAVE_BLAS
#include <cblas.h>
#endif
#include <omp.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */
static void fill_normal(float *x, size_t n, uint64_t seed, float std, float mean) {
    for (size_t i = 0; i < n; i++) x[i] = mean + std * opd_normal(seed, 7, (uint32_t)i, 0);
}

static float *normal_buf(size_t n, uint64_t seed, float std) {
    float *x = opd_malloc(n * sizeof(float));
    fill_normal(x, n, seed, std, 0.0f);
    return x;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Central finite difference (five-point) of f w.r.t. x[i] for a sample of i, against the
 * analytic gradient g. The error of one element is |g - fd| / max(|g|, |fd|,
 * floor): relative for the gradients that matter, absolute below `floor`,
 * where the fp32 round-off of the loss divided by 2*eps dominates the FD. */
typedef double (*loss_fn)(void *ctx);

static double fd_check(const char *what, loss_fn f, void *ctx, float *x,
                       const float *g, size_t n, int nsample, float eps,
                       double floor, uint64_t seed) {
    double max_err = 0.0, max_g = 0.0;
    int count = (size_t)nsample < n ? nsample : (int)n;
    for (int s = 0; s < count; s++) {
        size_t i = (size_t)nsample < n ? (size_t)(opd_uniform(seed, 3, s, 0, 0) * n) % n : (size_t)s;
        // five-point central stencil: truncation error O(eps^4), so eps can be
        // large enough (1e-2) that fp32 round-off in the loss stays small
        float save = x[i];
        double fx[4], steps[4] = {2, 1, -1, -2};
        for (int k = 0; k < 4; k++) {
            x[i] = save + (float)steps[k] * eps;
            fx[k] = f(ctx);
        }
        x[i] = save;
        double fd = (-fx[0] + 8 * fx[1] - 8 * fx[2] + fx[3]) / (12.0 * eps);
        double den = fmax(fmax(fabs(fd), fabs(g[i])), floor);
        double err = fabs(fd - g[i]) / den;
        if (getenv("OPD_FD_DEBUG") && err > 1e-3) printf("      [%zu] g=%.7g fd=%.7g\n", i, g[i], fd);
        if (err > max_err || isnan(err)) max_err = isnan(err) ? INFINITY : err;
        if (fabs(g[i]) > max_g) max_g = fabs(g[i]);
    }
    printf("    %-44s n=%-6zu checked=%-3d max|g|=%.3e max rel err=%.3e\n", what, n,
           count, max_g, max_err);
    return max_err;
}

/* Layer checks: loss = sum(R * out) with R fixed random, summed in double, so
 * d loss / d out = R and the backward is fed R. Inputs are O(1). The FD error
 * is truncation ~eps^4 plus fp32 round-off of the layer output, ~1e-7 *
 * |loss| / eps ~1e-5 absolute: with eps = 1e-2 and a floor of 1e-2 (gradients are O(1)) both are far below
 * the 1e-2 tolerance, while a wrong term in a backward gives O(1) errors. */
#define LAYER_EPS 1e-2f
#define LAYER_FLOOR 1e-2
#define LAYER_TOL 1e-2

/* ----------------------------------------------------------------- matmul */
typedef struct { float *inp, *w, *b, *out, *R; int N, C, OC; } mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return dot_d(c->out, c->R, (size_t)c->N * c->OC);
}

static void test_matmul_grad(void) {
    mm_ctx c = {.N = 9, .C = 7, .OC = 5};
    c.inp = normal_buf(c.N * c.C, 1, 1.0f);
    c.w = normal_buf(c.OC * c.C, 2, 1.0f);
    c.b = normal_buf(c.OC, 3, 1.0f);
    c.R = normal_buf(c.N * c.OC, 4, 1.0f);
    c.out = opd_malloc(c.N * c.OC * sizeof(float));
    float *dinp = opd_calloc(c.N * c.C, 4), *dw = opd_calloc(c.OC * c.C, 4), *db = opd_calloc(c.OC, 4);
    matmul_backward(dinp, dw, db, c.R, c.inp, c.w, c.N, c.C, c.OC);
    CU_ASSERT(fd_check("matmul dinp", mm_loss, &c, c.inp, dinp, c.N * c.C, 64, LAYER_EPS, LAYER_FLOOR, 1) < LAYER_TOL);
    CU_ASSERT(fd_check("matmul dweight", mm_loss, &c, c.w, dw, c.OC * c.C, 64, LAYER_EPS, LAYER_FLOOR, 2) < LAYER_TOL);
    CU_ASSERT(fd_check("matmul dbias", mm_loss, &c, c.b, db, c.OC, 64, LAYER_EPS, LAYER_FLOOR, 3) < LAYER_TOL);
    // accumulation: a second backward doubles the gradients exactly
    float db1 = db[0];
    matmul_backward(NULL, NULL, db, c.R, c.inp, c.w, c.N, c.C, c.OC);
    CU_ASSERT_DOUBLE_EQUAL(db[0], 2 * db1, 1e-5 * fabs(db1) + 1e-7);
    free(c.inp); free(c.w); free(c.b); free(c.R); free(c.out); free(dinp); free(dw); free(db);
}

/* ---------------------------------------------------------------- encoder */
typedef struct { float *wte, *out, *R; int *tok; int N, C; } enc_ctx;
static double enc_loss(void *p) {
    enc_ctx *c = p;
    encoder_forward(c->out, c->tok, c->wte, c->N, c->C);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_encoder_grad(void) {
    int tok[8] = {3, 1, 3, 0, 4, 3, 1, 2};   // repeats: rows must add up
    enc_ctx c = {.tok = tok, .N = 8, .C = 6};
    c.wte = normal_buf(5 * c.C, 5, 1.0f);
    c.R = normal_buf(c.N * c.C, 6, 1.0f);
    c.out = opd_malloc(c.N * c.C * sizeof(float));
    float *dwte = opd_calloc(5 * c.C, 4);
    encoder_backward(dwte, c.R, tok, c.N, c.C);
    CU_ASSERT(fd_check("encoder dwte (all elements)", enc_loss, &c, c.wte, dwte, 5 * c.C, 1000, LAYER_EPS, LAYER_FLOOR, 4) < LAYER_TOL);
    free(c.wte); free(c.R); free(c.out); free(dwte);
}

/* ---------------------------------------------------------------- rmsnorm */
typedef struct { float *inp, *w, *out, *rstd, *R; int N, C; } rms_ctx;
static double rms_loss(void *p) {
    rms_ctx *c = p;
    rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-6f);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm_grad(void) {
    rms_ctx c = {.N = 5, .C = 12};
    c.inp = normal_buf(c.N * c.C, 7, 1.0f);
    c.w = opd_malloc(c.C * sizeof(float));
    fill_normal(c.w, c.C, 8, 0.3f, 1.0f);
    c.R = normal_buf(c.N * c.C, 9, 1.0f);
    c.out = opd_malloc(c.N * c.C * sizeof(float));
    c.rstd = opd_malloc(c.N * sizeof(float));
    rms_loss(&c);
    // forward: each row of out / w has unit mean square
    double ms = 0;
    for (int i = 0; i < c.C; i++) ms += pow(c.out[i] / c.w[i], 2);
    CU_ASSERT_DOUBLE_EQUAL(ms / c.C, 1.0, 1e-5);
    float *dinp = opd_calloc(c.N * c.C, 4), *dw = opd_calloc(c.C, 4);
    rmsnorm_backward(dinp, dw, c.R, c.inp, c.w, c.rstd, c.N, c.C);
    CU_ASSERT(fd_check("rmsnorm dinp", rms_loss, &c, c.inp, dinp, c.N * c.C, 64, LAYER_EPS, LAYER_FLOOR, 5) < LAYER_TOL);
    CU_ASSERT(fd_check("rmsnorm dweight", rms_loss, &c, c.w, dw, c.C, 64, LAYER_EPS, LAYER_FLOOR, 6) < LAYER_TOL);
    free(c.inp); free(c.w); free(c.R); free(c.out); free(c.rstd); free(dinp); free(dw);
}

/* ------------------------------------------------------------------- rope */
typedef struct { float *x, *buf, *R; int *pos; int N, nh, hd; } rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->N * c->nh * c->hd;
    memcpy(c->buf, c->x, n * sizeof(float));
    rope_forward(c->buf, c->pos, c->N, c->nh, c->hd, 10000.0f);
    return dot_d(c->buf, c->R, n);
}

static void test_rope(void) {
    int pos[6] = {0, 1, 2, 5, 17, 300};
    rope_ctx c = {.pos = pos, .N = 6, .nh = 2, .hd = 8};
    size_t n = (size_t)c.N * c.nh * c.hd;
    c.x = normal_buf(n, 10, 1.0f);
    c.R = normal_buf(n, 11, 1.0f);
    c.buf = opd_malloc(n * sizeof(float));
    // the convention: pair (i, i + hd/2), angle pos * theta^(-2i/hd)
    rope_loss(&c);
    {
        int row = 4, i = 1, half = c.hd / 2;   // pos 17, head 0
        double ang = 17.0 * pow(10000.0, -2.0 * i / c.hd);
        double x1 = c.x[row * c.nh * c.hd + i], x2 = c.x[row * c.nh * c.hd + i + half];
        CU_ASSERT_DOUBLE_EQUAL(c.buf[row * c.nh * c.hd + i], x1 * cos(ang) - x2 * sin(ang), 1e-5);
        CU_ASSERT_DOUBLE_EQUAL(c.buf[row * c.nh * c.hd + i + half], x2 * cos(ang) + x1 * sin(ang), 1e-5);
    }
    // position 0 is the identity
    CU_ASSERT(opd_max_abs_diff(c.buf, c.x, c.nh * c.hd) == 0.0);
    // relative: <rope(q, a), rope(k, b)> depends on a - b only
    {
        float q[8], k[8], q2[8], k2[8];
        memcpy(q, c.x, sizeof q); memcpy(k, c.x + 8, sizeof k);
        memcpy(q2, q, sizeof q); memcpy(k2, k, sizeof k);
        int pa = 7, pb = 3, pa2 = 57, pb2 = 53;
        rope_forward(q, &pa, 1, 1, 8, 10000.0f); rope_forward(k, &pb, 1, 1, 8, 10000.0f);
        rope_forward(q2, &pa2, 1, 1, 8, 10000.0f); rope_forward(k2, &pb2, 1, 1, 8, 10000.0f);
        double d1 = dot_d(q, k, 8), d2 = dot_d(q2, k2, 8);
        printf("    rope relative-position dots: %.7f vs %.7f\n", d1, d2);
        CU_ASSERT_DOUBLE_EQUAL(d1, d2, 1e-4);
    }
    float *dx = opd_malloc(n * sizeof(float));
    memcpy(dx, c.R, n * sizeof(float));
    rope_backward(dx, pos, c.N, c.nh, c.hd, 10000.0f);
    CU_ASSERT(fd_check("rope dx", rope_loss, &c, c.x, dx, n, 96, LAYER_EPS, LAYER_FLOOR, 7) < LAYER_TOL);
    free(c.x); free(c.R); free(c.buf); free(dx);
}

/* -------------------------------------------------------------- attention */
typedef struct { float *q, *k, *v, *out, *att, *R; int *pad; int B, T, NH, NKV, hd; } att_ctx;
static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward(c->out, c->att, c->q, c->k, c->v, c->pad, c->B, c->T, c->NH, c->NKV, c->hd);
    return dot_d(c->out, c->R, (size_t)c->B * c->T * c->NH * c->hd);
}

static void attention_case(const char *name, int NH, int NKV, int *pad) {
    att_ctx c = {.pad = pad, .B = 2, .T = 6, .NH = NH, .NKV = NKV, .hd = 4};
    size_t nq = (size_t)c.B * c.T * NH * c.hd, nkv = (size_t)c.B * c.T * NKV * c.hd;
    size_t natt = (size_t)c.B * NH * c.T * c.T;
    c.q = normal_buf(nq, 12, 1.0f);
    c.k = normal_buf(nkv, 13, 1.0f);
    c.v = normal_buf(nkv, 14, 1.0f);
    c.R = normal_buf(nq, 15, 1.0f);
    c.out = opd_malloc(nq * sizeof(float));
    c.att = opd_malloc(natt * sizeof(float));
    att_loss(&c);
    // probabilities: rows sum to 1; no weight on future or padded keys
    double max_row_err = 0, masked = 0;
    for (int b = 0; b < c.B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < c.T; t++) {
                const float *a = c.att + (((size_t)b * NH + h) * c.T + t) * c.T;
                int p = pad ? pad[b] : 0;
                double s = 0;
                for (int j = 0; j < c.T; j++) {
                    s += a[j];
                    int visible = t < p ? j == t : (j >= p && j <= t);
                    if (!visible) masked += fabs(a[j]);
                }
                max_row_err = fmax(max_row_err, fabs(s - 1));
            }
    CU_ASSERT(max_row_err < 1e-6);
    CU_ASSERT(masked == 0.0);
    // GQA: query head h uses kv head h / (NH/NKV). Query head NH-1 of the last
    // row equals an explicit softmax over its kv head's keys.
    {
        int b = 1, t = c.T - 1, h = NH - 1, kh = h / (NH / NKV), p = pad ? pad[b] : 0;
        double sc[16], mx = -1e30, z = 0, o0 = 0;
        for (int j = p; j <= t; j++) {
            sc[j] = dot_d(c.q + ((size_t)b * c.T + t) * NH * c.hd + h * c.hd,
                          c.k + ((size_t)b * c.T + j) * NKV * c.hd + kh * c.hd, c.hd) / sqrt(c.hd);
            mx = fmax(mx, sc[j]);
        }
        for (int j = p; j <= t; j++) z += exp(sc[j] - mx);
        for (int j = p; j <= t; j++)
            o0 += exp(sc[j] - mx) / z * c.v[((size_t)b * c.T + j) * NKV * c.hd + kh * c.hd];
        CU_ASSERT_DOUBLE_EQUAL(c.out[((size_t)b * c.T + t) * NH * c.hd + h * c.hd], o0, 1e-5);
    }
    float *dq = opd_calloc(nq, 4), *dk = opd_calloc(nkv, 4), *dv = opd_calloc(nkv, 4);
    float *datt = opd_malloc(natt * sizeof(float));
    attention_backward(dq, dk, dv, datt, c.R, c.q, c.k, c.v, c.att, c.B, c.T, NH, NKV, c.hd);
    char what[96];
    printf("  %s\n", name);
    snprintf(what, sizeof what, "attention dq");
    CU_ASSERT(fd_check(what, att_loss, &c, c.q, dq, nq, 1000, LAYER_EPS, LAYER_FLOOR, 8) < LAYER_TOL);
    snprintf(what, sizeof what, "attention dk");
    CU_ASSERT(fd_check(what, att_loss, &c, c.k, dk, nkv, 1000, LAYER_EPS, LAYER_FLOOR, 9) < LAYER_TOL);
    snprintf(what, sizeof what, "attention dv");
    CU_ASSERT(fd_check(what, att_loss, &c, c.v, dv, nkv, 1000, LAYER_EPS, LAYER_FLOOR, 10) < LAYER_TOL);
    free(c.q); free(c.k); free(c.v); free(c.R); free(c.out); free(c.att);
    free(dq); free(dk); free(dv); free(datt);
}

static void test_attention_grad(void) {
    int pad[2] = {2, 0};
    attention_case("MHA NH=2 NKV=2, no padding", 2, 2, NULL);
    attention_case("GQA NH=4 NKV=2, no padding", 4, 2, NULL);
    attention_case("GQA NH=4 NKV=1, left padding {2, 0}", 4, 1, pad);
}

/* ----------------------------------------------------------------- swiglu */
typedef struct { float *gate, *up, *out, *R; int N, F; } sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = p;
    swiglu_forward(c->out, c->gate, c->up, c->N, c->F);
    return dot_d(c->out, c->R, (size_t)c->N * c->F);
}

static void test_swiglu_grad(void) {
    sw_ctx c = {.N = 4, .F = 10};
    c.gate = normal_buf(40, 16, 2.0f);
    c.up = normal_buf(40, 17, 1.0f);
    c.R = normal_buf(40, 18, 1.0f);
    c.out = opd_malloc(40 * sizeof(float));
    sw_loss(&c);
    CU_ASSERT_DOUBLE_EQUAL(c.out[3], c.gate[3] / (1 + exp(-c.gate[3])) * c.up[3], 1e-6);
    float *dg = opd_calloc(40, 4), *du = opd_calloc(40, 4);
    swiglu_backward(dg, du, c.R, c.gate, c.up, c.N, c.F);
    CU_ASSERT(fd_check("swiglu dgate", sw_loss, &c, c.gate, dg, 40, 40, LAYER_EPS, LAYER_FLOOR, 11) < LAYER_TOL);
    CU_ASSERT(fd_check("swiglu dup", sw_loss, &c, c.up, du, 40, 40, LAYER_EPS, LAYER_FLOOR, 12) < LAYER_TOL);
    free(c.gate); free(c.up); free(c.R); free(c.out); free(dg); free(du);
}

/* ---------------------------------------------------------- cross-entropy */
typedef struct { float *logits; int *tgt; float *mask; int B, T, V; } ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    return opd_cross_entropy(c->logits, c->tgt, c->mask, c->B, c->T, c->V, NULL);
}

static void test_cross_entropy(void) {
    int tgt[6] = {0, 4, 2, -1 /* masked: never read */, 1, 4};
    float mask[6] = {1, 1, 0.5f, 0, 1, 1};
    ce_ctx c = {.tgt = tgt, .mask = mask, .B = 2, .T = 3, .V = 5};
    c.logits = normal_buf(30, 19, 2.0f);
    // log-softmax: exp sums to 1, shift invariant, stable at huge logits
    float out[5], big[5] = {1000, 999, -1000, 0, 1000};
    opd_log_softmax(out, c.logits, 5);
    double z = 0;
    for (int v = 0; v < 5; v++) z += exp(out[v]);
    CU_ASSERT_DOUBLE_EQUAL(z, 1.0, 1e-6);
    float lse = opd_log_softmax(out, big, 5);
    CU_ASSERT(isfinite(lse) && fabs(lse - (1000 + log(2 + exp(-1)))) < 1e-3);
    CU_ASSERT(isfinite(out[2]) && fabs(out[2] - (-2000 - log(2 + exp(-1)))) < 1e-2);
    // the loss by hand: weighted token mean
    double ref = 0, cnt = 0;
    for (int n = 0; n < 6; n++) {
        if (mask[n] == 0) continue;
        opd_log_softmax(out, c.logits + n * 5, 5);
        ref -= mask[n] * out[tgt[n]];
        cnt += mask[n];
    }
    float *dl = opd_malloc(30 * sizeof(float));
    float loss = opd_cross_entropy(c.logits, tgt, mask, 2, 3, 5, dl);
    printf("    cross-entropy %.7f, by hand %.7f\n", loss, ref / cnt);
    CU_ASSERT_DOUBLE_EQUAL(loss, ref / cnt, 1e-6);
    CU_ASSERT(fd_check("cross-entropy dlogits", ce_loss, &c, c.logits, dl, 30, 30, LAYER_EPS, LAYER_FLOOR, 13) < LAYER_TOL);
    // masked row: zero gradient
    for (int v = 0; v < 5; v++) CU_ASSERT(dl[3 * 5 + v] == 0.0f);
    free(c.logits); free(dl);
}

/* ------------------------------------------------------------ whole model */
static void tiny_config(opd_config *c, int gqa_bias_untied) {
    opd_config_default(c);
    c->vocab_size = 11;
    c->d_model = 16;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = gqa_bias_untied ? 2 : 4;
    c->d_ff = 24;
    c->max_seq_len = 16;
    c->qkv_bias = gqa_bias_untied;
    c->tie_embeddings = !gqa_bias_untied;
}

/* Random weights large enough that every parameter moves the loss: the
 * default init (std 0.02) leaves the logits nearly uniform. */
static void init_sensitive(opd_model *m, uint64_t seed) {
    opd_model_init_random(m, seed);
    int nt = opd_param_tensor_count(&m->cfg);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(&m->cfg, ts);
    for (int i = 0; i < nt; i++) {
        float *w = m->params_mem + ts[i].offset;
        if (strstr(ts[i].name, "norm")) fill_normal(w, ts[i].numel, seed + 100 + i, 0.2f, 1.0f);
        else if (ts[i].ndim == 1) fill_normal(w, ts[i].numel, seed + 100 + i, 0.2f, 0.0f);
        else fill_normal(w, ts[i].numel, seed + 100 + i, 0.35f, 0.0f);
    }
    free(ts);
}

typedef struct { opd_model *m; int *tok, *tgt, *pad; float *mask; int B, T; } model_ctx;

/* The cross-entropy of the model, summed in double from its fp32 logits. */
static double model_loss(void *p) {
    model_ctx *c = p;
    int V = c->m->cfg.vocab_size;
    opd_model_forward(c->m, c->tok, c->pad, c->B, c->T);
    double loss = 0, cnt = 0;
    for (int n = 0; n < c->B * c->T; n++) {
        if (c->mask[n] == 0) continue;
        const float *x = c->m->acts.logits + (size_t)n * V;
        double mx = -1e30, z = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, x[v]);
        for (int v = 0; v < V; v++) z += exp(x[v] - mx);
        loss += c->mask[n] * (mx + log(z) - x[c->tgt[n]]);
        cnt += c->mask[n];
    }
    return loss / cnt;
}

/* Model gradient check. eps = 1e-2 on parameters of std ~0.35: the fp32
 * forward's round-off (~1e-7 relative in a loss of ~3, through two layers)
 * divided by eps is ~1e-4 absolute, so gradient elements below the 1e-2
 * floor are judged in absolute terms; truncation (eps^4) is negligible. A
 * 2e-2 tolerance leaves margin for round-off; a wrong backward term is O(1). */
#define MODEL_EPS 1e-2f
#define MODEL_FLOOR 1e-2
#define MODEL_TOL 2e-2

static void model_grad_case(int gqa_bias_untied) {
    opd_config cfg;
    tiny_config(&cfg, gqa_bias_untied);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    init_sensitive(&m, 42 + gqa_bias_untied);
    opd_model_alloc_grads(&m);
    enum { B = 2, T = 7 };
    int tok[B * T], tgt[B * T], pad[B] = {2, 0};
    float mask[B * T];
    for (int n = 0; n < B * T; n++) {
        tok[n] = (int)(opd_uniform(5, 1, n, 0, 0) * cfg.vocab_size);
        tgt[n] = (int)(opd_uniform(5, 2, n, 0, 0) * cfg.vocab_size);
        mask[n] = (n % T) >= pad[n / T] ? 1.0f : 0.0f;   // no loss on pads
    }
    model_ctx c = {&m, tok, tgt, pad, mask, B, T};
    printf("\n  config: %s\n", gqa_bias_untied ? "GQA (NH=4 NKV=2) + qkv bias + untied head, left pad {2,0}"
                                                : "MHA (NH=NKV=4), no bias, tied head, left pad {2,0}");
    double l = model_loss(&c);
    float *dl = opd_malloc((size_t)B * T * cfg.vocab_size * sizeof(float));
    float ce = opd_cross_entropy(m.acts.logits, tgt, mask, B, T, cfg.vocab_size, dl);
    printf("    loss %.6f (opd_cross_entropy %.6f)\n", l, ce);
    CU_ASSERT_DOUBLE_EQUAL(l, ce, 1e-5);
    opd_model_zero_grads(&m);
    opd_model_backward(&m, dl);
    int nt = opd_param_tensor_count(&cfg);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(&cfg, ts);
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        double e = fd_check(ts[i].name, model_loss, &c, m.params_mem + ts[i].offset,
                            m.grads_mem + ts[i].offset, ts[i].numel, 8, MODEL_EPS,
                            MODEL_FLOOR, 100 + i);
        if (e >= MODEL_TOL) printf("    ^^^ FAIL: %s\n", ts[i].name);
        CU_ASSERT(e < MODEL_TOL);
        worst = fmax(worst, e);
    }
    printf("    worst max rel err over %d tensors: %.3e (tolerance %.0e)\n", nt, worst, MODEL_TOL);
    free(ts);
    free(dl);
    opd_model_free(&m);
}

static void test_model_grad_gqa_bias_untied(void) { model_grad_case(1); }
static void test_model_grad_mha_tied(void) { model_grad_case(0); }

/* ------------------------------------------------------------ determinism */
static void set_threads(int n) {
    omp_set_num_threads(n);
#if OPD_HAVE_BLAS
    openblas_set_num_threads(n);
#endif
}

/* forward + backward of a model large enough that the gemms split over
 * threads; returns logits and grads (malloc'd) */
static void run_fwd_bwd(opd_model *m, int B, int T, float **logits, float **grads) {
    int V = m->cfg.vocab_size, N = B * T;
    int *tok = opd_malloc(N * sizeof(int)), *pad = opd_malloc(B * sizeof(int));
    for (int n = 0; n < N; n++) tok[n] = (int)(opd_uniform(9, 1, n, 0, 0) * V);
    for (int b = 0; b < B; b++) pad[b] = b % 3;
    opd_model_forward(m, tok, pad, B, T);
    float *dl = opd_malloc((size_t)N * V * sizeof(float));
    opd_cross_entropy(m->acts.logits, tok, NULL, B, T, V, dl);
    opd_model_zero_grads(m);
    opd_model_backward(m, dl);
    *logits = opd_malloc((size_t)N * V * sizeof(float));
    memcpy(*logits, m->acts.logits, (size_t)N * V * sizeof(float));
    *grads = opd_malloc(m->num_params * sizeof(float));
    memcpy(*grads, m->grads_mem, m->num_params * sizeof(float));
    free(tok); free(pad); free(dl);
}

static void mid_config(opd_config *c) {
    opd_config_default(c);
    c->vocab_size = 64;
    c->d_model = 64;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->d_ff = 128;
    c->max_seq_len = 64;
}

static void test_determinism_threads(void) {
    int saved = omp_get_max_threads();
    // 1. the sgemm itself at the real model's shapes (N = 16 x 288 rows, and
    //    N = 16: a decode step of batch 16, split by columns): forward, dinp
    //    and dweight of d=128/ffn 512, d=256/ffn 1024, vocab 64
    for (int rows = 0; rows < 2; rows++) {
        int N = rows == 0 ? 16 * 288 : 16;
        int shapes[][2] = {{128, 128}, {128, 512}, {512, 128}, {256, 256},
                           {256, 1024}, {1024, 256}, {128, 64}, {256, 64}};
        int ns = sizeof shapes / sizeof shapes[0], ok = 1;
        for (int s = 0; s < ns; s++) {
            int C = shapes[s][0], OC = shapes[s][1];
            float *inp = normal_buf((size_t)N * C, 20 + s, 1), *w = normal_buf((size_t)OC * C, 40 + s, 1);
            float *dout = normal_buf((size_t)N * OC, 60 + s, 1);
            float *r[2][3];
            for (int th = 0; th < 2; th++) {
                set_threads(th + 1);
                r[th][0] = opd_malloc((size_t)N * OC * 4);
                r[th][1] = opd_calloc((size_t)N * C, 4);
                r[th][2] = opd_calloc((size_t)OC * C, 4);
                matmul_forward(r[th][0], inp, w, NULL, N, C, OC);
                matmul_backward(r[th][1], r[th][2], NULL, dout, inp, w, N, C, OC);
            }
            int same = !memcmp(r[0][0], r[1][0], (size_t)N * OC * 4) &&
                       !memcmp(r[0][1], r[1][1], (size_t)N * C * 4) &&
                       !memcmp(r[0][2], r[1][2], (size_t)OC * C * 4);
            if (!same) printf("    sgemm N=%d C=%d OC=%d differs between 1 and 2 threads\n", N, C, OC);
            ok &= same;
            for (int th = 0; th < 2; th++) for (int j = 0; j < 3; j++) free(r[th][j]);
            free(inp); free(w); free(dout);
        }
        printf("    %s sgemm (%s path), N = %d, %d model shapes x fwd/dinp/dweight, 1 vs 2 threads: %s\n",
               opd_matmul_backend_name(opd_matmul_get_backend()), opd_isa_name(opd_isa_get()), N, ns,
               ok ? "bit-identical" : "DIFFERENT");
        CU_ASSERT(ok);
    }
    // 2. the whole model, forward and backward
    opd_config cfg;
    mid_config(&cfg);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_init_random(&m, 7);
    opd_model_alloc_grads(&m);
    float *l1, *g1, *l2, *g2;
    set_threads(1);
    run_fwd_bwd(&m, 8, 64, &l1, &g1);
    set_threads(2);
    run_fwd_bwd(&m, 8, 64, &l2, &g2);
    set_threads(saved);
    int same_l = !memcmp(l1, l2, (size_t)8 * 64 * cfg.vocab_size * 4);
    int same_g = !memcmp(g1, g2, m.num_params * 4);
    printf("    model B=8 T=64 C=64: logits %s, grads %s (max |diff| %.3e, %.3e)\n",
           same_l ? "bit-identical" : "DIFFER", same_g ? "bit-identical" : "DIFFER",
           opd_max_abs_diff(l1, l2, (size_t)8 * 64 * cfg.vocab_size),
           opd_max_abs_diff(g1, g2, m.num_params));
    CU_ASSERT(same_l);
    CU_ASSERT(same_g);
    free(l1); free(g1); free(l2); free(g2);
    opd_model_free(&m);
}

/* --------------------------------------------------------------- backends */
static double max_rel(const float *a, const float *b, size_t n) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    return opd_max_abs_diff(a, b, n) / (scale > 0 ? scale : 1);
}

static void test_backends_agree(void) {
    opd_matmul_backend saved = opd_matmul_get_backend();
    // every transpose combination, alpha and beta, against a double loop
    int M = 37, N = 29, K = 53;
    float *A = normal_buf(M * K, 80, 1), *Bm = normal_buf(K * N, 81, 1), *C0 = normal_buf(M * N, 82, 1);
    float *Cb = opd_malloc(M * N * 4);
    double worst = 0;
    for (int be = 0; be < 3; be++) {
        if (!opd_matmul_backend_available((opd_matmul_backend)be)) continue;
        opd_matmul_set_backend((opd_matmul_backend)be);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int ab = 0; ab < 2; ab++) {
                    float alpha = ab ? 0.5f : 1.0f, beta = ab ? 1.0f : 0.0f;
                    memcpy(Cb, C0, M * N * 4);
                    int lda = ta ? M : K, ldb = tb ? K : N;
                    opd_sgemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cb, N);
                    double err = 0;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) {
                            double s = 0;
                            for (int k = 0; k < K; k++)
                                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                                     (tb ? Bm[j * ldb + k] : Bm[k * ldb + j]);
                            s = alpha * s + beta * C0[i * N + j];
                            err = fmax(err, fabs(s - Cb[i * N + j]));
                        }
                    if (err > 1e-4) printf("    %s sgemm tA=%d tB=%d alpha=%g beta=%g: err %.3e\n",
                                           opd_matmul_backend_name(be), ta, tb, alpha, beta, err);
                    worst = fmax(worst, err);
                }
    }
    printf("    sgemm vs double loop, every backend built, 8 variants each: max abs err %.3e\n", worst);
    CU_ASSERT(worst < 1e-4);
    free(A); free(Bm); free(C0); free(Cb);
    // the whole model: each optional backend against the reference's own gemm
    opd_config cfg;
    mid_config(&cfg);
    cfg.qkv_bias = 1;
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    opd_model_init_random(&m, 8);
    opd_model_alloc_grads(&m);
    float *l1, *g1;
    opd_matmul_set_backend(OPD_MATMUL_OWN);
    run_fwd_bwd(&m, 4, 32, &l1, &g1);
    for (int be = 1; be < 3; be++) {
        if (!opd_matmul_backend_available((opd_matmul_backend)be)) continue;
        float *l2, *g2;
        opd_matmul_set_backend((opd_matmul_backend)be);
        run_fwd_bwd(&m, 4, 32, &l2, &g2);
        double el = max_rel(l2, l1, (size_t)4 * 32 * cfg.vocab_size);
        double eg = max_rel(g2, g1, m.num_params);
        printf("    model %s vs own: logits max rel err %.3e, grads max rel err %.3e (tol 1e-5)\n",
               opd_matmul_backend_name(be), el, eg);
        CU_ASSERT(el < 1e-5);
        CU_ASSERT(eg < 1e-5);
        free(l2); free(g2);
    }
    opd_matmul_set_backend(saved);
    free(l1); free(g1);
    opd_model_free(&m);
}

/* ---------------------------------------------------------------- padding */
static void test_left_padding(void) {
    opd_config cfg;
    tiny_config(&cfg, 1);
    opd_model m;
    CU_ASSERT_FATAL(opd_model_init(&m, &cfg) == 0);
    init_sensitive(&m, 3);
    int V = cfg.vocab_size;
    int real[5] = {4, 9, 1, 1, 7};
    // batch of 2: sequence 0 is `real` left-padded by 2 (pad token 0),
    // sequence 1 is unrelated and unpadded
    int tok[14] = {0, 0, 4, 9, 1, 1, 7, 3, 5, 2, 8, 10, 6, 2}, pad[2] = {2, 0};
    opd_model_forward(&m, tok, pad, 2, 7);
    float padded[5 * 11];
    memcpy(padded, m.acts.logits + 2 * V, sizeof padded);
    int finite = 1;
    for (int i = 0; i < 14 * V; i++) finite &= isfinite(m.acts.logits[i]);
    CU_ASSERT(finite);
    // the same model, now with smaller (B, T): reuses the activation buffers
    opd_model_forward(&m, real, NULL, 1, 5);
    double d = opd_max_abs_diff(padded, m.acts.logits, 5 * V);
    printf("    left-padded vs unpadded logits of the real tokens: max abs diff %.3e\n", d);
    CU_ASSERT(d < 1e-5);
    // the pad token's identity must not matter either
    int tok2[14];
    memcpy(tok2, tok, sizeof tok);
    tok2[0] = 10; tok2[1] = 3;
    opd_model_forward(&m, tok2, pad, 2, 7);
    double d2 = opd_max_abs_diff(padded, m.acts.logits + 2 * V, 5 * V);
    printf("    different pad tokens: max abs diff %.3e\n", d2);
    CU_ASSERT(d2 == 0.0);
    opd_model_free(&m);
}

/* ------------------------------------------------------ inference forward */
/* The teacher's forward keeps one layer's activations for all layers: its
 * logits must be those of the full forward, bit for bit, whether its buffers
 * were sized for one layer or for all of them. */
static void test_inference_forward(void) {
    opd_config cfg;
    tiny_config(&cfg, 1);
    cfg.n_layers = 3;
    opd_model full, inf;
    CU_ASSERT_FATAL(opd_model_init(&full, &cfg) == 0);
    CU_ASSERT_FATAL(opd_model_init(&inf, &cfg) == 0);
    init_sensitive(&full, 5);
    init_sensitive(&inf, 5);
    int B = 2, T = 9, V = cfg.vocab_size, n = B * T * V;
    int tok[18], pad[2] = {3, 0};
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + 2) % V;
    opd_model_forward(&full, tok, pad, B, T);
    opd_model_forward_inference(&inf, tok, pad, B, T);
    printf("    inference vs full forward: layers kept %d of %d, logits max abs diff %.3e\n",
           inf.acts_L, cfg.n_layers, opd_max_abs_diff(full.acts.logits, inf.acts.logits, n));
    CU_ASSERT(inf.acts_L == 1);
    CU_ASSERT(memcmp(full.acts.logits, inf.acts.logits, n * sizeof(float)) == 0);
    // the same model after a full forward: all layers allocated, still the same bits
    opd_model_forward(&inf, tok, pad, B, T);
    CU_ASSERT(inf.acts_L == cfg.n_layers);
    opd_model_forward_inference(&inf, tok, pad, B, T);
    CU_ASSERT(memcmp(full.acts.logits, inf.acts.logits, n * sizeof(float)) == 0);
    opd_model_free(&full);
    opd_model_free(&inf);
}

/* ------------------------------------------------ naive and fast agree */
/* The plain-loop layers (ref/layers_naive.c) against the fast ones on the
 * same random inputs, one row per tensor with max |fast - naive| / max
 * |naive|, ggml test-backend-ops style.
 *
 * Tolerance. Both compute the same sums in fp32 in different orders (the
 * gemm's fmaf chains vs plain multiply-adds, the scale applied before vs
 * after the dot product), so they differ by rounding only. A sum of n terms
 * has a worst-case rounding error of (n - 1) u sum|terms| (u = 2^-24,
 * Higham). The longest sums here are dk and dv over group * S <= 210
 * terms; for these unit-normal inputs sum|terms| is at most about sqrt(n)
 * (~12) times the largest result, so the worst case is about
 * 140..210 * 6e-8 * 12 ~ 1e-4 of max |naive|: the tolerance. Typical errors
 * grow like sqrt(n) u instead: the measured ones, printed, are ~2e-7. A
 * real error (a wrong mask, head, scale or a missed term) moves values by a
 * fraction of their scale, orders of magnitude above this. */
#define NAIVE_TOL 1e-4

static int naive_report(const char *what, const float *fast, const float *naive, size_t n) {
    double e = max_rel(fast, naive, n);
    printf("    %-28s max |fast - naive| / max |naive| = %.3g\n", what, e);
    return e <= NAIVE_TOL;
}

static void naive_attention_case(int NH, int NKV, int hd, const int *pad, uint64_t seed) {
    int B = 2, S = 70;   // S > ATT_QB = 64: two query blocks in the fast version
    size_t nq = (size_t)B * S * NH * hd, nkv = (size_t)B * S * NKV * hd;
    size_t natt = (size_t)B * NH * S * S;
    printf("\n  attention B=%d S=%d NH=%d NKV=%d hd=%d pad {%d, %d}\n", B, S, NH, NKV, hd,
           pad ? pad[0] : 0, pad ? pad[1] : 0);
    float *q = normal_buf(nq, seed, 1), *k = normal_buf(nkv, seed + 1, 1);
    float *v = normal_buf(nkv, seed + 2, 1), *dout = normal_buf(nq, seed + 3, 1);
    float *out1 = opd_malloc(nq * 4), *out2 = opd_malloc(nq * 4);
    float *att1 = opd_malloc(natt * 4), *att2 = opd_malloc(natt * 4);
    float *datt1 = opd_malloc(natt * 4), *datt2 = opd_malloc(natt * 4);
    // gradients start non-zero: both must accumulate
    float *dq1 = normal_buf(nq, seed + 4, 1), *dk1 = normal_buf(nkv, seed + 5, 1), *dv1 = normal_buf(nkv, seed + 6, 1);
    float *dq2 = opd_malloc(nq * 4), *dk2 = opd_malloc(nkv * 4), *dv2 = opd_malloc(nkv * 4);
    memcpy(dq2, dq1, nq * 4); memcpy(dk2, dk1, nkv * 4); memcpy(dv2, dv1, nkv * 4);
    attention_forward(out1, att1, q, k, v, pad, B, S, NH, NKV, hd);
    attention_forward_naive(out2, att2, q, k, v, pad, B, S, NH, NKV, hd);
    attention_backward(dq1, dk1, dv1, datt1, dout, q, k, v, att1, B, S, NH, NKV, hd);
    attention_backward_naive(dq2, dk2, dv2, datt2, dout, q, k, v, att1, B, S, NH, NKV, hd);
    CU_ASSERT(naive_report("attention_forward out", out1, out2, nq));
    CU_ASSERT(naive_report("attention_forward att", att1, att2, natt));
    CU_ASSERT(naive_report("attention_backward dq", dq1, dq2, nq));
    CU_ASSERT(naive_report("attention_backward dk", dk1, dk2, nkv));
    CU_ASSERT(naive_report("attention_backward dv", dv1, dv2, nkv));
    CU_ASSERT(naive_report("attention_backward dZ", datt1, datt2, natt));
    free(q); free(k); free(v); free(dout); free(out1); free(out2); free(att1); free(att2);
    free(datt1); free(datt2); free(dq1); free(dk1); free(dv1); free(dq2); free(dk2); free(dv2);
}

static void test_naive_agree(void) {
    int pad[2] = {5, 0}, pad_long[2] = {66, 3};   // 66: pad queries in the second block
    naive_attention_case(4, 2, 16, pad, 300);      // GQA, group 2
    naive_attention_case(6, 2, 8, pad_long, 310);  // GQA, group 3
    naive_attention_case(4, 4, 16, NULL, 320);     // MHA, no padding
    // the linear layer, with bias, gradients accumulating onto non-zero values
    int N = 37, C = 53, OC = 29;
    printf("\n  matmul N=%d C=%d OC=%d\n", N, C, OC);
    float *inp = normal_buf((size_t)N * C, 330, 1), *w = normal_buf((size_t)OC * C, 331, 1);
    float *bias = normal_buf(OC, 332, 1), *dout = normal_buf((size_t)N * OC, 333, 1);
    float *o1 = opd_malloc((size_t)N * OC * 4), *o2 = opd_malloc((size_t)N * OC * 4);
    float *di1 = normal_buf((size_t)N * C, 334, 1), *dw1 = normal_buf((size_t)OC * C, 335, 1);
    float *db1 = normal_buf(OC, 336, 1);
    float *di2 = opd_malloc((size_t)N * C * 4), *dw2 = opd_malloc((size_t)OC * C * 4), *db2 = opd_malloc(OC * 4);
    memcpy(di2, di1, (size_t)N * C * 4); memcpy(dw2, dw1, (size_t)OC * C * 4); memcpy(db2, db1, OC * 4);
    matmul_forward(o1, inp, w, bias, N, C, OC);
    matmul_forward_naive(o2, inp, w, bias, N, C, OC);
    matmul_backward(di1, dw1, db1, dout, inp, w, N, C, OC);
    matmul_backward_naive(di2, dw2, db2, dout, inp, w, N, C, OC);
    CU_ASSERT(naive_report("matmul_forward out", o1, o2, (size_t)N * OC));
    CU_ASSERT(naive_report("matmul_backward dinp", di1, di2, (size_t)N * C));
    CU_ASSERT(naive_report("matmul_backward dweight", dw1, dw2, (size_t)OC * C));
    CU_ASSERT(naive_report("matmul_backward dbias", db1, db2, OC));
    free(inp); free(w); free(bias); free(dout); free(o1); free(o2);
    free(di1); free(dw1); free(db1); free(di2); free(dw2); free(db2);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {
        {"matmul_grad", test_matmul_grad},
        {"encoder_grad", test_encoder_grad},
        {"rmsnorm_grad", test_rmsnorm_grad},
        {"rope", test_rope},
        {"attention_grad", test_attention_grad},
        {"swiglu_grad", test_swiglu_grad},
        {"cross_entropy", test_cross_entropy},
        {"model_grad_gqa_bias_untied", test_model_grad_gqa_bias_untied},
        {"model_grad_mha_tied", test_model_grad_mha_tied},
        {"determinism_threads", test_determinism_threads},
        {"backends_agree", test_backends_agree},
        {"naive_agree", test_naive_agree},
        {"left_padding", test_left_padding},
        {"inference_forward", test_inference_forward},
        {0, 0}};
    opd_test_suite("model", cases);
    return opd_test_run();
}
