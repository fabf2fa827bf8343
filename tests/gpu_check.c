/* gpu_check.c — every CUDA kernel of gpu/ against the CPU reference of ref/,
 * in the manner of ggml's test-backend-ops: the same random inputs go to both,
 * the outputs are compared (max abs, max rel, normalised MSE) against a
 * tolerance chosen per op, and one table row per output says OK or FAIL.
 * Sampled tokens and Philox draws must match exactly.
 *
 * Stage 2 runs the golden files (golden/) through the CUDA path: every golden
 * layer through its kernel, and the whole golden step through the GPU step
 * driver (opd_cuda_distill_step: KV-cached rollout, teacher scoring, student
 * forward/backward, every loss, AdamW), written under the golden names and
 * compared by the golden checker with the manifest's tolerances (sampled
 * tokens exactly).
 *
 * Without a CUDA device it prints "SKIP: no CUDA GPU (<reason>)" and exits
 * 77, which automake reports as SKIP: a machine without a GPU has not shown
 * that the kernels are right, so it must never read as PASS. (The driver's
 * host code alone is checked without a GPU by tests/test_cuda_shim.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "gpu_golden.h"
#include "opd.h"
#include "opd_cuda.h"

/* ------------------------------------------------------------ tolerances */
/* NMSE = sum (gpu - cpu)^2 / sum cpu^2, per output tensor. */
typedef struct { const char *op; double nmse; const char *why; } tolerance;
static const tolerance tolerances[] = {
    {"exact", 0.0,   "a copy, integer work or the same fp32 adds in the same order"},
    {"gemm",  1e-10, "cuBLAS fp32 (no TF32) sums K products in another order than the reference gemm"},
    {"row",   1e-10, "fp32 row reductions: warp/tree order vs serial, FMA contraction"},
    {"trig",  1e-10, "device powf/cosf/sinf/expf are within 2 ulp of glibc"},
    {"attn",  1e-9,  "fp32 dot products and softmax over T, expf ulps, sums in another order"},
    {"loss",  1e-10, "double row sums in tree order vs serial; results rounded to fp32"},
    {"adamw", 1e-10, "elementwise fp32 with FMA contraction; the norm in double"},
};

static double tol_of(const char *op) {
    for (size_t i = 0; i < sizeof tolerances / sizeof tolerances[0]; i++)
        if (!strcmp(tolerances[i].op, op)) return tolerances[i].nmse;
    fprintf(stderr, "gpu_check: no tolerance named %s\n", op);
    exit(2);
}

/* ------------------------------------------------------------- helpers */
static opd_cuda *cu;
static int n_fail, n_rows;

static void die_on(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "gpu_check: %s: %s\n", what, opd_last_error());
        exit(1);
    }
}

/* x (n) uniform in [lo, hi), keyed by `id` so every input is reproducible */
static void fill(float *x, size_t n, uint32_t id, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * opd_uniform(20240601u, id, (uint32_t)i, 0, 0);
}

static void *dev_copy(const void *h, size_t bytes) {
    void *d;
    die_on(opd_cuda_alloc(cu, &d, bytes), "alloc");
    die_on(opd_cuda_upload(cu, d, h, bytes), "upload");
    return d;
}

/* Compare the CPU result `ref` (n) with the device array `dgpu`; print a row. */
static void check(const char *op, const char *shape, const char *tol_name,
                  const float *ref, const float *dgpu, size_t n) {
    float *g = opd_malloc(n * sizeof *g);
    die_on(opd_cuda_download(cu, g, dgpu, n * sizeof *g), "download");
    double max_abs = 0.0, max_rel = 0.0, se = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double a = ref[i], b = g[i], d = fabs(a - b);
        if (!(d <= max_abs)) max_abs = isnan(d) ? INFINITY : d;
        double r = d / (fabs(a) > 1e-6 ? fabs(a) : 1e-6);
        if (!(r <= max_rel)) max_rel = isnan(r) ? INFINITY : r;
        se += d * d;
        ss += a * a;
    }
    double nmse = ss > 0.0 ? se / ss : se;
    if (isnan(nmse)) nmse = INFINITY;
    double tol = tol_of(tol_name);
    int ok = nmse <= tol;
    printf("%-28s %-22s %10.3e %10.3e %10.3e %8.0e  %s\n", op, shape, max_abs, max_rel,
           nmse, tol, ok ? "OK" : "FAIL");
    n_rows++;
    if (!ok) n_fail++;
    free(g);
}

static void check_scalar(const char *op, const char *shape, const char *tol_name,
                         float ref, float gpu) {
    float *d = dev_copy(&gpu, sizeof gpu);
    check(op, shape, tol_name, &ref, d, 1);
    opd_cuda_free(d);
}

/* exact equality of integers (tokens, positions) */
static void check_ints(const char *op, const char *shape, const int *ref,
                       const int *dgpu, size_t n) {
    int *g = opd_malloc(n * sizeof *g);
    die_on(opd_cuda_download(cu, g, dgpu, n * sizeof *g), "download");
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += ref[i] != g[i];
    printf("%-28s %-22s %10zu %10s %10s %8s  %s\n", op, shape, bad, "mismatch", "-", "exact",
           bad ? "FAIL" : "OK");
    n_rows++;
    if (bad) n_fail++;
    free(g);
}

/* ------------------------------------------------- the gemm definition */
/* The device's fixed-order gemm against the CPU's definition: bit for bit
 * (every transpose, alpha and beta), not within a tolerance. */
static void test_gemm_reference_bits(void) {
    static const int shapes[][3] = {{1, 1, 1}, {17, 63, 65}, {129, 33, 7}, {64, 300, 32}};
    for (int s = 0; s < 4; s++)
        for (int v = 0; v < 4; v++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = v % 2, tb = v / 2;
            float alpha = v == 3 ? 0.37f : 1.0f, beta = v == 1 ? 1.0f : v == 3 ? -0.5f : 0.0f;
            int lda = ta ? M : K, ldb = tb ? K : N;
            float *A = opd_malloc((size_t)M * K * 4), *B = opd_malloc((size_t)K * N * 4);
            float *C = opd_malloc((size_t)M * N * 4), *G = opd_malloc((size_t)M * N * 4);
            fill(A, (size_t)M * K, 11 + s, -1, 1); fill(B, (size_t)K * N, 12 + s, -1, 1);
            fill(C, (size_t)M * N, 13 + s, -1, 1);
            float *dA = dev_copy(A, (size_t)M * K * 4), *dB = dev_copy(B, (size_t)K * N * 4);
            float *dC = dev_copy(C, (size_t)M * N * 4);
            opd_gemm_reference(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
            die_on(opd_cuda_gemm_reference(cu, ta, tb, M, N, K, alpha, dA, lda, dB, ldb, beta, dC, N),
                   "gemm_reference");
            die_on(opd_cuda_download(cu, G, dC, (size_t)M * N * 4), "download");
            size_t bad = 0;
            for (size_t i = 0; i < (size_t)M * N; i++) bad += memcmp(C + i, G + i, 4) != 0;
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%d t%d%d", M, N, K, ta, tb);
            printf("%-28s %-22s %10zu %10s %10s %8s  %s\n", "gemm definition (bits)", shape, bad,
                   "differ", "-", "exact", bad ? "FAIL" : "OK");
            n_rows++;
            if (bad) n_fail++;
            free(A); free(B); free(C); free(G);
            opd_cuda_free(dA); opd_cuda_free(dB); opd_cuda_free(dC);
        }
}

/* ---------------------------------------------------------------- layers */
static void test_matmul(void) {
    const int N = 64, C = 96, OC = 80;
    const char *shape = "N=64 C=96 OC=80";
    float *inp = opd_malloc(N * C * 4), *w = opd_malloc(OC * C * 4), *b = opd_malloc(OC * 4);
    float *out = opd_malloc(N * OC * 4), *dout = opd_malloc(N * OC * 4);
    float *dinp = opd_malloc(N * C * 4), *dw = opd_malloc(OC * C * 4), *db = opd_malloc(OC * 4);
    fill(inp, N * C, 1, -1, 1); fill(w, OC * C, 2, -0.5f, 0.5f); fill(b, OC, 3, -1, 1);
    fill(dout, N * OC, 4, -1, 1);
    fill(dinp, N * C, 5, -1, 1); fill(dw, OC * C, 6, -1, 1); fill(db, OC, 7, -1, 1);
    float *d_inp = dev_copy(inp, N * C * 4), *d_w = dev_copy(w, OC * C * 4), *d_b = dev_copy(b, OC * 4);
    float *d_out = dev_copy(out, N * OC * 4), *d_dout = dev_copy(dout, N * OC * 4);
    float *d_dinp = dev_copy(dinp, N * C * 4), *d_dw = dev_copy(dw, OC * C * 4), *d_db = dev_copy(db, OC * 4);

    matmul_forward(out, inp, w, b, N, C, OC);
    die_on(opd_cuda_matmul_forward(cu, d_out, d_inp, d_w, d_b, N, C, OC), "matmul_forward");
    check("matmul_forward out", shape, "gemm", out, d_out, N * OC);
    matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);   // accumulates onto random values
    die_on(opd_cuda_matmul_backward(cu, d_dinp, d_dw, d_db, d_dout, d_inp, d_w, N, C, OC), "matmul_backward");
    check("matmul_backward dinp", shape, "gemm", dinp, d_dinp, N * C);
    check("matmul_backward dweight", shape, "gemm", dw, d_dw, OC * C);
    check("matmul_backward dbias", shape, "row", db, d_db, OC);
    free(inp); free(w); free(b); free(out); free(dout); free(dinp); free(dw); free(db);
    opd_cuda_free(d_inp); opd_cuda_free(d_w); opd_cuda_free(d_b); opd_cuda_free(d_out);
    opd_cuda_free(d_dout); opd_cuda_free(d_dinp); opd_cuda_free(d_dw); opd_cuda_free(d_db);
}

static void test_encoder(void) {
    const int N = 50, C = 24, V = 17;
    const char *shape = "N=50 C=24 V=17";
    int tokens[50];
    for (int n = 0; n < N; n++) tokens[n] = (n * 7 + 3) % V;   // repeated tokens: rows add up
    float *wte = opd_malloc(V * C * 4), *out = opd_malloc(N * C * 4);
    float *dout = opd_malloc(N * C * 4), *dwte = opd_malloc(V * C * 4);
    fill(wte, V * C, 10, -1, 1); fill(dout, N * C, 11, -1, 1); fill(dwte, V * C, 12, -1, 1);
    int *d_tok = dev_copy(tokens, sizeof tokens);
    float *d_wte = dev_copy(wte, V * C * 4), *d_out = dev_copy(out, N * C * 4);
    float *d_dout = dev_copy(dout, N * C * 4), *d_dwte = dev_copy(dwte, V * C * 4);
    encoder_forward(out, tokens, wte, N, C);
    die_on(opd_cuda_encoder_forward(cu, d_out, d_tok, d_wte, N, C), "encoder_forward");
    check("encoder_forward out", shape, "exact", out, d_out, N * C);
    encoder_backward(dwte, dout, tokens, N, C);
    die_on(opd_cuda_encoder_backward(cu, d_dwte, d_dout, d_tok, N, C), "encoder_backward");
    check("encoder_backward dwte", shape, "exact", dwte, d_dwte, V * C);
    free(wte); free(out); free(dout); free(dwte);
    opd_cuda_free(d_tok); opd_cuda_free(d_wte); opd_cuda_free(d_out); opd_cuda_free(d_dout); opd_cuda_free(d_dwte);
}

static void test_rmsnorm(void) {
    const int N = 40, C = 72;
    const char *shape = "N=40 C=72";
    float *inp = opd_malloc(N * C * 4), *w = opd_malloc(C * 4), *out = opd_malloc(N * C * 4);
    float *rstd = opd_malloc(N * 4), *dout = opd_malloc(N * C * 4), *dinp = opd_malloc(N * C * 4);
    float *dw = opd_malloc(C * 4);
    fill(inp, N * C, 20, -2, 2); fill(w, C, 21, 0.5f, 1.5f); fill(dout, N * C, 22, -1, 1);
    fill(dinp, N * C, 23, -1, 1); fill(dw, C, 24, -1, 1);
    float *d_inp = dev_copy(inp, N * C * 4), *d_w = dev_copy(w, C * 4), *d_out = dev_copy(out, N * C * 4);
    float *d_rstd = dev_copy(rstd, N * 4), *d_dout = dev_copy(dout, N * C * 4);
    float *d_dinp = dev_copy(dinp, N * C * 4), *d_dw = dev_copy(dw, C * 4);
    rmsnorm_forward(out, rstd, inp, w, N, C, 1e-6f);
    die_on(opd_cuda_rmsnorm_forward(cu, d_out, d_rstd, d_inp, d_w, N, C, 1e-6f), "rmsnorm_forward");
    check("rmsnorm_forward out", shape, "row", out, d_out, N * C);
    check("rmsnorm_forward rstd", shape, "row", rstd, d_rstd, N);
    rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    die_on(opd_cuda_rmsnorm_backward(cu, d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C), "rmsnorm_backward");
    check("rmsnorm_backward dinp", shape, "row", dinp, d_dinp, N * C);
    check("rmsnorm_backward dweight", shape, "row", dw, d_dw, C);
    free(inp); free(w); free(out); free(rstd); free(dout); free(dinp); free(dw);
    opd_cuda_free(d_inp); opd_cuda_free(d_w); opd_cuda_free(d_out); opd_cuda_free(d_rstd);
    opd_cuda_free(d_dout); opd_cuda_free(d_dinp); opd_cuda_free(d_dw);
}

static void test_rope(void) {
    const int B = 3, T = 37, nh = 4, hd = 16, N = B * T;
    const char *shape = "B=3 T=37 nh=4 hd=16";
    int pad[3] = {0, 5, 36}, pos[3 * 37];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) pos[b * T + t] = t >= pad[b] ? t - pad[b] : 0;
    int *d_pad = dev_copy(pad, sizeof pad), *d_pos = dev_copy(pos, sizeof pos);
    die_on(opd_cuda_rope_positions(cu, d_pos, d_pad, B, T), "rope_positions");
    check_ints("rope_positions", "B=3 T=37 pad 0,5,36", pos, d_pos, N);
    size_t n = (size_t)N * nh * hd;
    float *x = opd_malloc(n * 4);
    fill(x, n, 30, -1, 1);
    float *d_x = dev_copy(x, n * 4);
    rope_forward(x, pos, N, nh, hd, 10000.0f);
    die_on(opd_cuda_rope_forward(cu, d_x, d_pos, N, nh, hd, 10000.0f), "rope_forward");
    check("rope_forward x", shape, "trig", x, d_x, n);
    rope_backward(x, pos, N, nh, hd, 10000.0f);
    die_on(opd_cuda_rope_backward(cu, d_x, d_pos, N, nh, hd, 10000.0f), "rope_backward");
    check("rope_backward dx", shape, "trig", x, d_x, n);
    free(x);
    opd_cuda_free(d_x); opd_cuda_free(d_pad); opd_cuda_free(d_pos);
}

static void test_attention(int NH, int NKV, const int *pad, const char *shape) {
    const int B = 2, T = 13, hd = 8;
    size_t nq = (size_t)B * T * NH * hd, nkv = (size_t)B * T * NKV * hd, na = (size_t)B * NH * T * T;
    float *q = opd_malloc(nq * 4), *k = opd_malloc(nkv * 4), *v = opd_malloc(nkv * 4);
    float *out = opd_calloc(nq, 4), *att = opd_calloc(na, 4), *datt = opd_calloc(na, 4);
    float *dout = opd_malloc(nq * 4), *dq = opd_malloc(nq * 4), *dk = opd_malloc(nkv * 4), *dv = opd_malloc(nkv * 4);
    fill(q, nq, 40, -1, 1); fill(k, nkv, 41, -1, 1); fill(v, nkv, 42, -1, 1);
    fill(dout, nq, 43, -1, 1); fill(dq, nq, 44, -1, 1); fill(dk, nkv, 45, -1, 1); fill(dv, nkv, 46, -1, 1);
    float *d_q = dev_copy(q, nq * 4), *d_k = dev_copy(k, nkv * 4), *d_v = dev_copy(v, nkv * 4);
    float *d_out = dev_copy(out, nq * 4), *d_att = dev_copy(att, na * 4), *d_datt = dev_copy(datt, na * 4);
    float *d_dout = dev_copy(dout, nq * 4), *d_dq = dev_copy(dq, nq * 4);
    float *d_dk = dev_copy(dk, nkv * 4), *d_dv = dev_copy(dv, nkv * 4);
    int *d_pad = pad ? dev_copy(pad, B * sizeof(int)) : NULL;
    attention_forward(out, att, q, k, v, pad, B, T, NH, NKV, hd);
    die_on(opd_cuda_attention_forward(cu, d_out, d_att, d_q, d_k, d_v, d_pad, B, T, NH, NKV, hd), "attention_forward");
    check("attention_forward out", shape, "attn", out, d_out, nq);
    check("attention_forward att", shape, "attn", att, d_att, na);
    attention_backward(dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, hd);
    die_on(opd_cuda_attention_backward(cu, d_dq, d_dk, d_dv, d_datt, d_dout, d_q, d_k, d_v, d_att,
                                       B, T, NH, NKV, hd), "attention_backward");
    check("attention_backward dq", shape, "attn", dq, d_dq, nq);
    check("attention_backward dk", shape, "attn", dk, d_dk, nkv);
    check("attention_backward dv", shape, "attn", dv, d_dv, nkv);
    free(q); free(k); free(v); free(out); free(att); free(datt); free(dout); free(dq); free(dk); free(dv);
    opd_cuda_free(d_q); opd_cuda_free(d_k); opd_cuda_free(d_v); opd_cuda_free(d_out); opd_cuda_free(d_att);
    opd_cuda_free(d_datt); opd_cuda_free(d_dout); opd_cuda_free(d_dq); opd_cuda_free(d_dk);
    opd_cuda_free(d_dv); opd_cuda_free(d_pad);
}

static void test_swiglu(void) {
    const int N = 33, F = 70;
    const char *shape = "N=33 F=70";
    size_t n = (size_t)N * F;
    float *g = opd_malloc(n * 4), *u = opd_malloc(n * 4), *out = opd_malloc(n * 4);
    float *dout = opd_malloc(n * 4), *dg = opd_malloc(n * 4), *du = opd_malloc(n * 4);
    fill(g, n, 50, -6, 6); fill(u, n, 51, -2, 2); fill(dout, n, 52, -1, 1);
    fill(dg, n, 53, -1, 1); fill(du, n, 54, -1, 1);
    float *d_g = dev_copy(g, n * 4), *d_u = dev_copy(u, n * 4), *d_out = dev_copy(out, n * 4);
    float *d_dout = dev_copy(dout, n * 4), *d_dg = dev_copy(dg, n * 4), *d_du = dev_copy(du, n * 4);
    swiglu_forward(out, g, u, N, F);
    die_on(opd_cuda_swiglu_forward(cu, d_out, d_g, d_u, N, F), "swiglu_forward");
    check("swiglu_forward out", shape, "trig", out, d_out, n);
    swiglu_backward(dg, du, dout, g, u, N, F);
    die_on(opd_cuda_swiglu_backward(cu, d_dg, d_du, d_dout, d_g, d_u, N, F), "swiglu_backward");
    check("swiglu_backward dgate", shape, "trig", dg, d_dg, n);
    check("swiglu_backward dup", shape, "trig", du, d_du, n);
    free(g); free(u); free(out); free(dout); free(dg); free(du);
    opd_cuda_free(d_g); opd_cuda_free(d_u); opd_cuda_free(d_out); opd_cuda_free(d_dout);
    opd_cuda_free(d_dg); opd_cuda_free(d_du);
}

/* ---------------------------------------------------------------- losses */
static void test_xent(void) {
    const int B = 3, T = 7, V = 300, N = B * T;
    const char *shape = "B=3 T=7 V=300";
    float *logits = opd_malloc((size_t)N * V * 4), *lsm = opd_malloc((size_t)N * V * 4);
    float *lse = opd_malloc(N * 4), *dl = opd_malloc((size_t)N * V * 4), mask[21];
    int targets[21];
    fill(logits, (size_t)N * V, 60, -8, 8);
    for (int n = 0; n < N; n++) { targets[n] = (n * 37) % V; mask[n] = (n % 4) != 1; }
    for (int n = 0; n < N; n++) lse[n] = opd_log_softmax(lsm + (size_t)n * V, logits + (size_t)n * V, V);
    float *d_logits = dev_copy(logits, (size_t)N * V * 4), *d_lsm = dev_copy(lsm, (size_t)N * V * 4);
    float *d_lse = dev_copy(lse, N * 4), *d_dl = dev_copy(dl, (size_t)N * V * 4), *d_mask = dev_copy(mask, sizeof mask);
    int *d_t = dev_copy(targets, sizeof targets);
    die_on(opd_cuda_log_softmax(cu, d_lsm, d_lse, d_logits, N, V), "log_softmax");
    check("log_softmax out", shape, "loss", lsm, d_lsm, (size_t)N * V);
    check("log_softmax lse", shape, "loss", lse, d_lse, N);
    float loss = opd_cross_entropy(logits, targets, mask, B, T, V, dl), gloss;
    die_on(opd_cuda_cross_entropy(cu, &gloss, d_logits, d_t, d_mask, B, T, V, d_dl), "cross_entropy");
    check_scalar("cross_entropy loss", shape, "loss", loss, gloss);
    check("cross_entropy dlogits", shape, "loss", dl, d_dl, (size_t)N * V);
    free(logits); free(lsm); free(lse); free(dl);
    opd_cuda_free(d_logits); opd_cuda_free(d_lsm); opd_cuda_free(d_lse); opd_cuda_free(d_dl);
    opd_cuda_free(d_mask); opd_cuda_free(d_t);
}

static void test_distill(opd_loss_kind kind, opd_reduction red, float beta, int topk,
                         float gamma, float clamp, int with_sampler_lp) {
    const int B = 3, H = 6, V = 257, N = B * H;
    size_t nv = (size_t)N * V;
    float *s = opd_malloc(nv * 4), *t = opd_malloc(nv * 4), *dl = opd_malloc(nv * 4);
    float mask[18], slp[18], pt[18], rkl[18];
    int y[18];
    fill(s, nv, 70, -4, 4); fill(t, nv, 71, -4, 4);
    fill(slp, N, 72, -7, -3);
    for (int i = 0; i < N; i++) y[i] = (i * 53 + 11) % V;
    // sequence 0 full, 1 ends early (EOS then masked), 2 fully masked
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) mask[b * H + h] = b == 0 ? 1.0f : (b == 1 ? (h < 4) : 0.0f);
    opd_loss_config c;
    opd_loss_config_default(&c);
    c.kind = kind; c.reduction = red; c.beta = beta; c.topk = topk; c.gamma = gamma;
    c.reward_clamp = clamp;
    float loss = opd_distill_loss(&c, s, t, y, mask, with_sampler_lp ? slp : NULL, B, H, V, dl, pt, rkl);
    float *d_s = dev_copy(s, nv * 4), *d_t = dev_copy(t, nv * 4), *d_dl = dev_copy(dl, nv * 4);
    float *d_mask = dev_copy(mask, sizeof mask), *d_slp = dev_copy(slp, sizeof slp);
    float *d_pt = dev_copy(pt, sizeof pt), *d_rkl = dev_copy(rkl, sizeof rkl);
    int *d_y = dev_copy(y, sizeof y);
    float gloss;
    die_on(opd_cuda_distill_loss(cu, &gloss, &c, d_s, d_t, d_y, d_mask, with_sampler_lp ? d_slp : NULL,
                                 B, H, V, d_dl, d_pt, d_rkl), "distill_loss");
    char op[64], shape[64];
    snprintf(shape, sizeof shape, "B=3 H=6 V=257 %s", red == OPD_REDUCE_TOKEN_MEAN ? "tok" : "seq");
    const char *name = opd_loss_name(kind);
    char var[32] = "";
    if (kind == OPD_LOSS_JSD) snprintf(var, sizeof var, "(b=%.1f)", beta);
    if (kind == OPD_LOSS_RKL_TOPK) snprintf(var, sizeof var, "(k=%d)", topk);
    if (kind == OPD_LOSS_RKL_SEQ) snprintf(var, sizeof var, "(g=%.1f)", gamma);
    if (kind == OPD_LOSS_RKL_SAMPLED && (clamp > 0 || with_sampler_lp)) snprintf(var, sizeof var, "(c,w)");
    snprintf(op, sizeof op, "%s%s loss", name, var);
    check_scalar(op, shape, "loss", loss, gloss);
    snprintf(op, sizeof op, "%s%s dlogits", name, var);
    check(op, shape, "loss", dl, d_dl, nv);
    snprintf(op, sizeof op, "%s%s per_token", name, var);
    check(op, shape, "loss", pt, d_pt, N);
    snprintf(op, sizeof op, "%s%s rkl", name, var);
    check(op, shape, "loss", rkl, d_rkl, N);
    free(s); free(t); free(dl);
    opd_cuda_free(d_s); opd_cuda_free(d_t); opd_cuda_free(d_dl); opd_cuda_free(d_mask);
    opd_cuda_free(d_slp); opd_cuda_free(d_pt); opd_cuda_free(d_rkl); opd_cuda_free(d_y);
}

/* ------------------------------------------------- KV cache and decode */
/* The decode attention at position t against row t of the full causal
 * attention over the same keys (which is what the decode step must give),
 * and against the reference's attention_decode_forward on the same cache,
 * with the cache filled by opd_cuda_kv_cache_write one position at a time. */
static void test_decode(int NH, int NKV, const int *pad, const char *shape) {
    const int B = 2, T = 11, hd = 8, qd = NH * hd, kvd = NKV * hd;
    size_t nq = (size_t)B * T * qd, nkv = (size_t)B * T * kvd;
    float *q = opd_malloc(nq * 4), *k = opd_malloc(nkv * 4), *v = opd_malloc(nkv * 4);
    float *out = opd_calloc(nq, 4), *att = opd_calloc((size_t)B * NH * T * T, 4);
    fill(q, nq, 100, -1, 1); fill(k, nkv, 101, -1, 1); fill(v, nkv, 102, -1, 1);
    attention_forward(out, att, q, k, v, pad, B, T, NH, NKV, hd);
    float *d_kc, *d_vc, *d_att, *d_out, *d_krow, *d_vrow, *d_qrow;
    die_on(opd_cuda_alloc(cu, (void **)&d_kc, nkv * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_vc, nkv * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_att, (size_t)B * NH * T * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_out, (size_t)B * T * qd * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_krow, (size_t)B * kvd * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_vrow, (size_t)B * kvd * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_qrow, (size_t)B * qd * 4), "alloc");
    int *d_pad = pad ? dev_copy(pad, B * sizeof(int)) : NULL, *d_pos;
    die_on(opd_cuda_alloc(cu, (void **)&d_pos, B * sizeof(int)), "alloc");
    float *krow = opd_malloc((size_t)B * kvd * 4), *vrow = opd_malloc((size_t)B * kvd * 4);
    float *qrow = opd_malloc((size_t)B * qd * 4);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            memcpy(krow + b * kvd, k + ((size_t)b * T + t) * kvd, kvd * 4);
            memcpy(vrow + b * kvd, v + ((size_t)b * T + t) * kvd, kvd * 4);
            memcpy(qrow + b * qd, q + ((size_t)b * T + t) * qd, qd * 4);
        }
        die_on(opd_cuda_upload(cu, d_krow, krow, (size_t)B * kvd * 4), "upload");
        die_on(opd_cuda_upload(cu, d_vrow, vrow, (size_t)B * kvd * 4), "upload");
        die_on(opd_cuda_upload(cu, d_qrow, qrow, (size_t)B * qd * 4), "upload");
        die_on(opd_cuda_kv_cache_write(cu, d_kc, d_vc, d_krow, d_vrow, B, T, kvd, t), "kv_cache_write");
        // decode output of position t for sequence b lands in d_out row (b, t) via one copy per b
        float *d_o;
        die_on(opd_cuda_alloc(cu, (void **)&d_o, (size_t)B * qd * 4), "alloc");
        die_on(opd_cuda_decode_attention(cu, d_o, d_att, d_qrow, d_kc, d_vc, d_pad, B, T, t, NH, NKV, hd),
               "decode_attention");
        for (int b = 0; b < B; b++)
            die_on(opd_cuda_copy(cu, d_out + ((size_t)b * T + t) * qd, d_o + (size_t)b * qd, qd * 4), "copy");
        opd_cuda_free(d_o);
    }
    // keys are cached transposed, (B, kvd, T), as on the CPU (opd_kv_cache_write)
    float *kT = opd_malloc(nkv * 4);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < kvd; d++) kT[((size_t)b * kvd + d) * T + t] = k[((size_t)b * T + t) * kvd + d];
    check("kv_cache_write k", shape, "exact", kT, d_kc, nkv);
    check("kv_cache_write v", shape, "exact", v, d_vc, nkv);
    check("decode_attention (all t)", shape, "attn", out, d_out, nq);
    // the reference's decode attention on the same cache (every position at once: n = T, t0 = 0)
    float *ref = opd_calloc(nq, 4), *ratt = opd_calloc((size_t)B * T * NH * T, 4);
    attention_decode_forward(ref, ratt, q, kT, v, pad, B, T, 0, T, NH, NKV, hd);
    check("decode_attention vs attention_decode_forward", shape, "attn", ref, d_out, nq);
    free(ref); free(ratt); free(kT);
    // positions of the decode step at t = 5: t - pad, 0 for a pad position
    int pos[2], t = 5;
    for (int b = 0; b < B; b++) pos[b] = t >= (pad ? pad[b] : 0) ? t - (pad ? pad[b] : 0) : 0;
    die_on(opd_cuda_decode_positions(cu, d_pos, d_pad, B, t), "decode_positions");
    check_ints("decode_positions t=5", shape, pos, d_pos, B);
    free(q); free(k); free(v); free(out); free(att); free(krow); free(vrow); free(qrow);
    opd_cuda_free(d_kc); opd_cuda_free(d_vc); opd_cuda_free(d_att); opd_cuda_free(d_out);
    opd_cuda_free(d_krow); opd_cuda_free(d_vrow); opd_cuda_free(d_qrow); opd_cuda_free(d_pad);
    opd_cuda_free(d_pos);
}

/* the residual add and the teacher-temperature scale: one rounding each */
static void test_elementwise(void) {
    const size_t n = 1000;
    float *y = opd_malloc(n * 4), *x = opd_malloc(n * 4);
    fill(y, n, 110, -3, 3); fill(x, n, 111, -3, 3);
    float *d_y = dev_copy(y, n * 4), *d_x = dev_copy(x, n * 4);
    for (size_t i = 0; i < n; i++) y[i] += x[i];
    die_on(opd_cuda_add_inplace(cu, d_y, d_x, n), "add_inplace");
    check("add_inplace", "n=1000", "exact", y, d_y, n);
    for (size_t i = 0; i < n; i++) y[i] *= 1.0f / 0.7f;
    die_on(opd_cuda_scale(cu, d_y, 1.0f / 0.7f, n), "scale");
    check("scale", "n=1000", "exact", y, d_y, n);
    free(y); free(x);
    opd_cuda_free(d_y); opd_cuda_free(d_x);
}

/* -------------------------------------------------------------- sampling */
static void test_uniform(void) {
    const size_t n = 4096;
    float *ref = opd_malloc(n * 4);
    uint64_t seed = 0x123456789abcdefull;   // both halves of the key matter
    for (size_t i = 0; i < n; i++) ref[i] = opd_uniform(seed, 7, 9, (uint32_t)(100 + i), 2);
    float *d;
    die_on(opd_cuda_alloc(cu, (void **)&d, n * 4), "alloc");
    die_on(opd_cuda_uniform(cu, d, n, seed, 7, 9, 100, 2), "uniform");
    check("philox uniform", "n=4096 word 2", "exact", ref, d, n);
    free(ref);
    opd_cuda_free(d);
}

static void test_sample(float temperature, int top_k, float top_p, const char *name) {
    const int B = 16, V = 1000;
    float *logits = opd_malloc((size_t)B * V * 4), *scratch = opd_malloc(2 * (size_t)V * 4);
    fill(logits, (size_t)B * V, 80, -3, 3);
    // ties: in row 1 every logit equal, in row 2 a tied maximum
    for (int v = 0; v < V; v++) logits[V + v] = 0.5f;
    logits[2 * V + 10] = logits[2 * V + 700] = 9.0f;
    uint32_t seq[16], pos[16];
    int tok[16];
    float lp[16];
    opd_sampler_config s = {temperature, top_k, top_p};
    for (int b = 0; b < B; b++) {
        seq[b] = 1000 + 3 * b;
        pos[b] = 17 + b;
        tok[b] = opd_sample_token(logits + (size_t)b * V, V, &s, 42, 5, seq[b], pos[b], &lp[b], scratch);
        if (tok[b] < 0) { fprintf(stderr, "gpu_check: CPU sampler: %s\n", opd_last_error()); exit(1); }
    }
    float *d_logits = dev_copy(logits, (size_t)B * V * 4), *d_lp;
    uint32_t *d_seq = dev_copy(seq, sizeof seq), *d_pos = dev_copy(pos, sizeof pos);
    int *d_tok;
    die_on(opd_cuda_alloc(cu, (void **)&d_tok, sizeof tok), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_lp, sizeof lp), "alloc");
    die_on(opd_cuda_sample_tokens(cu, d_tok, d_lp, d_logits, B, V, &s, 42, 5, d_seq, d_pos), "sample_tokens");
    char op[64];
    snprintf(op, sizeof op, "sample %s tokens", name);
    check_ints(op, "B=16 V=1000", tok, d_tok, B);
    snprintf(op, sizeof op, "sample %s logprob", name);
    check(op, "B=16 V=1000", "loss", lp, d_lp, B);
    free(logits); free(scratch);
    opd_cuda_free(d_logits); opd_cuda_free(d_lp); opd_cuda_free(d_seq); opd_cuda_free(d_pos); opd_cuda_free(d_tok);
}

/* -------------------------------------------------------------- optimizer */
static void test_adamw(void) {
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.vocab_size = 50; cfg.d_model = 32; cfg.n_layers = 2; cfg.n_heads = 4; cfg.n_kv_heads = 2;
    cfg.d_ff = 48; cfg.max_seq_len = 16;
    opd_model m;
    die_on(opd_model_init(&m, &cfg), "model_init");
    opd_model_alloc_grads(&m);
    size_t n = m.num_params;
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr = 1e-2f; oc.weight_decay = 0.1f; oc.grad_clip = 1.0f;   // the clip is active
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, n);
    fill(m.params_mem, n, 90, -0.1f, 0.1f);
    float *d_p = dev_copy(m.params_mem, n * 4), *d_g, *d_m, *d_v;
    die_on(opd_cuda_alloc(cu, (void **)&d_g, n * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_m, n * 4), "alloc");
    die_on(opd_cuda_alloc(cu, (void **)&d_v, n * 4), "alloc");
    long gstep = 0;
    float norm = 0.0f, gnorm = 0.0f;
    for (int it = 0; it < 3; it++) {
        fill(m.grads_mem, n, 91 + it, -0.05f, 0.05f);
        die_on(opd_cuda_upload(cu, d_g, m.grads_mem, n * 4), "upload");
        norm = opd_adamw_update(&opt, &m);
        die_on(opd_cuda_adamw_update(cu, &gnorm, d_p, d_g, d_m, d_v, &cfg, &oc, &gstep), "adamw_update");
    }
    char shape[64];
    snprintf(shape, sizeof shape, "n=%zu, 3 steps", n);
    check_scalar("adamw grad_norm", shape, "adamw", norm, gnorm);
    check("adamw params", shape, "adamw", m.params_mem, d_p, n);
    check("adamw m", shape, "adamw", opt.m, d_m, n);
    check("adamw v", shape, "adamw", opt.v, d_v, n);
    int steps_ok = gstep == opt.step;
    printf("%-28s %-22s %10ld %10ld %10s %8s  %s\n", "adamw step count", shape, opt.step, gstep, "-",
           "exact", steps_ok ? "OK" : "FAIL");
    n_rows++;
    if (!steps_ok) n_fail++;
    opd_adamw_free(&opt);
    opd_model_free(&m);
    opd_cuda_free(d_p); opd_cuda_free(d_g); opd_cuda_free(d_m); opd_cuda_free(d_v);
}

/* ------------------------------------------------------ stage 2: golden */
/* One golden file through the CUDA path, checked by the golden checker;
 * returns the number of failing tensors (or 1 if nothing could be run). */
static int golden_file(const char *dir, const char *tmp, const char *file,
                       int (*run)(opd_cuda *, const char *, const char *, FILE *)) {
    char ref[4400], cand[4400];
    snprintf(ref, sizeof ref, "%s/%s", dir, file);
    snprintf(cand, sizeof cand, "%s/%s", tmp, file);
    printf("\n");
    if (run(cu, ref, cand, stdout) != 0) {
        printf("gpu_check: %s: %s\n", file, opd_last_error());
        return 1;
    }
    int np = 0, nf = 0;
    opd_golden_check_opts o = {.out = stdout};
    int rc = opd_golden_check(ref, cand, &o, &np, &nf);
    if (rc < 0) {
        printf("gpu_check: golden check of %s: %s\n", file, opd_last_error());
        nf = nf ? nf : 1;
    }
    unlink(cand);
    return nf;
}

static int golden_stage(void) {
    const char *src = getenv("OPD_SRCDIR");
    char dir[4096], tmp[64] = "/tmp/opd_gpu_check_XXXXXX";
    snprintf(dir, sizeof dir, "%s/golden", src && *src ? src : ".");
    if (!mkdtemp(tmp)) { perror("gpu_check: mkdtemp"); return 1; }
    printf("\nstage 2: the golden files of %s through the CUDA kernels and the GPU step driver,\n"
           "compared with the manifest's tolerances (sampled tokens exactly)\n", dir);
    int nf = golden_file(dir, tmp, OPD_GOLDEN_LAYERS_FILE, gpu_golden_layers);
    nf += golden_file(dir, tmp, OPD_GOLDEN_STEP_FILE, gpu_golden_step);
    rmdir(tmp);
    return nf;
}

int main(void) {
    char why[256];
    if (!opd_cuda_available(why, sizeof why)) {
        printf("SKIP: no CUDA GPU (%s)\n", why);
        return 77;
    }
    die_on(opd_cuda_create(&cu, 0), "opd_cuda_create");
    printf("gpu_check: CUDA kernels vs the CPU reference (%s)\n\n", why);
    printf("tolerances (normalised MSE):\n");
    for (size_t i = 0; i < sizeof tolerances / sizeof tolerances[0]; i++)
        printf("  %-6s %8.0e  %s\n", tolerances[i].op, tolerances[i].nmse, tolerances[i].why);
    printf("\n%-28s %-22s %10s %10s %10s %8s  %s\n", "op", "shape", "max_abs", "max_rel",
           "nmse", "tol", "result");

    test_gemm_reference_bits();
    test_matmul();
    test_encoder();
    test_rmsnorm();
    test_rope();
    int pad[2] = {0, 4};
    test_attention(4, 4, NULL, "B=2 T=13 NH=4 NKV=4");
    test_attention(4, 2, pad, "B=2 T=13 GQA 4/2 pad 0,4");
    test_swiglu();
    test_xent();
    for (int red = 0; red < 2; red++) {
        opd_reduction r = (opd_reduction)red;
        test_distill(OPD_LOSS_RKL_SAMPLED, r, 0.5f, 8, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_RKL_SAMPLED, r, 0.5f, 8, 0.0f, 0.5f, 1);
        test_distill(OPD_LOSS_RKL_FULL, r, 0.5f, 8, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_FKL, r, 0.5f, 8, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_JSD, r, 0.0f, 8, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_JSD, r, 0.3f, 8, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_JSD, r, 1.0f, 8, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_RKL_TOPK, r, 0.5f, 5, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_RKL_TOPK, r, 0.5f, 100, 0.0f, 0.0f, 0);
        test_distill(OPD_LOSS_RKL_SEQ, r, 0.5f, 8, 0.9f, 0.0f, 1);
    }
    test_uniform();
    test_sample(0.0f, 0, 1.0f, "greedy");
    test_sample(1.0f, 0, 1.0f, "t=1");
    test_sample(0.7f, 50, 1.0f, "t=.7 k=50");
    test_sample(1.0f, 0, 0.9f, "p=.9");
    test_sample(1.3f, 20, 0.8f, "t=1.3 k=20 p=.8");
    test_adamw();
    test_decode(4, 4, NULL, "B=2 T=11 NH=4");
    test_decode(4, 2, pad, "B=2 T=11 GQA 4/2 pad 0,4");
    test_elementwise();
    printf("\n%d/%d kernel checks OK\n", n_rows - n_fail, n_rows);

    int golden_fail = golden_stage();
    printf("\ngpu_check: %d/%d kernel checks OK; golden stage: %s\n", n_rows - n_fail, n_rows,
           golden_fail ? "FAILED" : "every tensor within tolerance");
    opd_cuda_destroy(cu);
    return n_fail || golden_fail ? 1 : 0;
}
