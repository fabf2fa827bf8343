/* bench_targets.c — `opd bench targets` (what `make bench` runs): the
 * performance targets in one table, every figure measured in the same run,
 * next to what it is judged against.
 *
 * Shapes: student d=128 L=4 4 heads ffn 512; teacher d=256 L=6 8 heads
 * ffn 1024; V=64; batch 16; prompt 32; full horizon T = max new tokens = 256.
 *
 *  1. the reference's own gemm (ref/gemm.c) against oneDNN and OpenBLAS
 *     (the core it picks here, and its best core type) at every model
 *     shape, with the geometric means (bench_matmul.c's table);
 *  2. the whole OPD step at H_k = T and at H_k = 0.1 T, each in its own process
 *     (time and peak RSS), against PyTorch eager (eval/torch_step_bench.py)
 *     at the same horizon and threads;
 *  3. the step's floor: the gemms of its teacher forward, student forward
 *     and student backward run back to back by oneDNN in this run, plus the
 *     rollout's bandwidth bound (the student's weights and the KV cache
 *     streamed once per generated token, at the memory bandwidth of a
 *     STREAM-like triad measured here).
 *
 * Timings are the best of a few repetitions: on a shared machine the minimum
 * is the run least disturbed by other processes. */
#define _GNU_SOURCE
#include "bench.h"
#include "cli.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { BATCH = 16, PROMPT = 32, MAX_NEW_TOKENS = 256, VOCAB = 64 };

static void student_cfg(opd_config *c) { bench_model_config(c, VOCAB, 128, 4, 4, 512, PROMPT + MAX_NEW_TOKENS); }
static void teacher_cfg(opd_config *c) { bench_model_config(c, VOCAB, 256, 6, 8, 1024, PROMPT + MAX_NEW_TOKENS); }

/* ------------------------------------------------------- (a) gemm shapes */
typedef struct { int transA, transB, M, N, K; } gemm;
enum { MAX_GEMMS = 512 };

/* The gemms of a forward (backward = 0) or a backward over N rows, in the
 * order model.c runs them: per layer q, k, v, o, gate, up, down; the head. */
static int model_gemms(const opd_config *c, int N, int backward, gemm *g) {
    int C = c->d_model, F = c->d_ff, hd = C / c->n_heads;
    int qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    int lin[7][2] = {{C, qd}, {C, kvd}, {C, kvd}, {qd, C}, {C, F}, {C, F}, {F, C}};  /* in -> out */
    int n = 0;
    for (int l = 0; l <= c->n_layers; l++) {
        int nlin = l < c->n_layers ? 7 : 1;
        for (int i = 0; i < nlin; i++) {
            int in = l < c->n_layers ? lin[i][0] : C, out = l < c->n_layers ? lin[i][1] : c->vocab_size;
            if (!backward) {
                g[n++] = (gemm){0, 1, N, out, in};       /* out = inp W^T */
            } else {
                g[n++] = (gemm){0, 0, N, in, out};       /* dinp += dout W */
                g[n++] = (gemm){1, 0, out, in, N};       /* dW += dout^T inp */
            }
        }
    }
    return n;
}

static double gemm_flops(const gemm *g, int n) {
    double f = 0;
    for (int i = 0; i < n; i++) f += 2.0 * g[i].M * g[i].N * g[i].K;
    return f;
}

/* Best time of the gemm list run back to back by opd_sgemm on backend b. */
static double time_sgemm(const gemm *g, int n, int reps, opd_matmul_backend b) {
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (int i = 0; i < n; i++) {
        size_t a = (size_t)g[i].M * g[i].K, bb = (size_t)g[i].K * g[i].N, c = (size_t)g[i].M * g[i].N;
        if (a > maxa) maxa = a;
        if (bb > maxb) maxb = bb;
        if (c > maxc) maxc = c;
    }
    float *A = opd_malloc(maxa * sizeof(float)), *B = opd_malloc(maxb * sizeof(float));
    float *C = opd_calloc(maxc, sizeof(float));
    for (size_t i = 0; i < maxa; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < maxb; i++) B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    opd_matmul_backend saved = opd_matmul_get_backend();
    opd_matmul_set_backend(b);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = opd_time();
        for (int i = 0; i < n; i++) {
            const gemm *q = &g[i];
            int lda = q->transA ? q->M : q->K, ldb = q->transB ? q->K : q->N;
            float beta = q->transA || !q->transB ? 1.0f : 0.0f;   /* backward gemms accumulate */
            opd_sgemm(q->transA, q->transB, q->M, q->N, q->K, 1.0f, A, lda, B, ldb, beta, C, q->N);
        }
        double dt = opd_time() - t0;
        if (r > 0 && dt < best) best = dt;   /* the first pass warms up */
    }
    opd_matmul_set_backend(saved);
    free(A); free(B); free(C);
    return best;
}

/* ------------------------------------------------------ memory bandwidth */
/* STREAM triad a = b + s c over three 64 MiB arrays (beyond any cache),
 * all threads; bytes counted as STREAM does (3 arrays per pass). */
static double triad_gbs(void) {
    size_t n = (size_t)16 << 20;
    float *a = opd_malloc(n * sizeof(float)), *b = opd_malloc(n * sizeof(float));
    float *c = opd_malloc(n * sizeof(float));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0.0f; b[i] = 1.0f; c[i] = 2.0f; }
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = opd_time();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
        double dt = opd_time() - t0;
        if (dt < best) best = dt;
    }
    volatile float sink = a[n / 2];
    (void)sink;
    free(a); free(b); free(c);
    return 3.0 * n * sizeof(float) / best * 1e-9;
}

/* Best rollout time (B 16, P 32, H = T, no EOS) of the student. */
static double time_rollout(const opd_model *s, int reps) {
    int *prompts = opd_malloc(sizeof(int) * BATCH * PROMPT), pad[BATCH] = {0};
    uint32_t ids[BATCH];
    for (int i = 0; i < BATCH * PROMPT; i++) prompts[i] = 3 + (int)(opd_uniform(9, 0, 0, i, 0) * (VOCAB - 3));
    for (int b = 0; b < BATCH; b++) ids[b] = b;
    opd_rollout_config rc = {.eos_id = -1, .pad_id = 0, .seed = 1234, .step = 1};
    opd_sampler_config_default(&rc.sampler);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        opd_rollout ro;
        double t0 = opd_time();
        if (opd_rollout_sample(s, prompts, pad, ids, BATCH, PROMPT, MAX_NEW_TOKENS, &rc, &ro) != 0) {
            free(prompts);
            return -1;
        }
        double dt = opd_time() - t0;
        if (r > 0 && dt < best) best = dt;
        opd_rollout_free(&ro);
    }
    free(prompts);
    return best;
}

/* ------------------------------------------------------- one whole step */
/* Child: warm-up + `steps` OPD steps at horizon fraction rho in this
 * process; prints "STEP H total_s peak_kib". */
static int child_step(float rho, int steps) {
    bench_step_setup e;
    if (bench_step_setup_init(&e, VOCAB, BATCH, PROMPT, MAX_NEW_TOKENS, rho) != 0) return cli_fail("bench targets");
    opd_step_work w;
    memset(&w, 0, sizeof w);
    opd_step_stats st;
    double best = 1e30, best_roll = 0;
    for (int k = 0; k <= steps; k++) {   /* step 0 warms up */
        double t0 = opd_time();
        if (opd_distill_step(&e.student, &e.teacher, &e.opt, &e.dc, e.prompts, e.pad, e.ids, BATCH, PROMPT, k, &w, &st) != 0)
            return cli_fail("bench targets");
        double dt = opd_time() - t0;
        if (k > 0 && dt < best) { best = dt; best_roll = st.sec_rollout; }
    }
    printf("STEP %d %.6f %ld %.6f\n", st.horizon, best, opd_peak_rss_kb(), best_roll);
    opd_step_work_free(&w);
    bench_step_setup_free(&e);
    return 0;
}

/* Run `cmd` and return the first line starting with `tag` (static buffer). */
static const char *run_for_line(const char *cmd, const char *tag) {
    static char line[4096];
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    int found = 0;
    char buf[4096];
    while (fgets(buf, sizeof buf, p))
        if (!found && !strncmp(buf, tag, strlen(tag))) { snprintf(line, sizeof line, "%s", buf); found = 1; }
    int rc = pclose(p);
    return found && rc == 0 ? line : NULL;
}

typedef struct { int H; double sec; long peak_kb; double sec_rollout; } step_result;

static int run_step(const char *exe, int threads, const char *rho, int steps, step_result *r) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d '%s' bench targets --child-step %s --steps %d",
             threads, exe, rho, steps);
    const char *line = run_for_line(cmd, "STEP ");
    return line && sscanf(line, "STEP %d %lf %ld %lf", &r->H, &r->sec, &r->peak_kb, &r->sec_rollout) == 4 ? 0 : -1;
}

/* PyTorch eager: the total step time at H = rho T, or -1 if it could not run. */
static double torch_step_sec(const char *python, const char *script, const char *rho, int threads,
                             int steps) {
    if (access(script, R_OK) != 0 || access(python, X_OK) != 0) return -1;
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d '%s' '%s' --child --rho %s --steps %d --threads %d 2>/dev/null",
             threads, python, script, rho, steps, threads);
    const char *line = run_for_line(cmd, "{");
    const char *tot = line ? strstr(line, "\"total\": ") : NULL;
    return tot ? strtod(tot + 9, NULL) : -1;
}

/* ------------------------------------------------------------- the table */
static void row(const char *what, const char *measured, const char *target, int met) {
    printf("| %-50s | %-38s | %-8s | %-3s |\n", what, measured, target, met < 0 ? "-" : met ? "yes" : "no");
}

int opd_bench_targets(int argc, char **argv) {
    static const struct option opts[] = {
        {"child-step", required_argument, 0, 'c'},
        {"steps", required_argument, 0, 'n'},
        {"python", required_argument, 0, 'p'},
        {"torch-script", required_argument, 0, 's'},
        {"quick", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *child_rho = NULL, *python = "/usr/bin/python3", *script = "eval/torch_step_bench.py";
    int steps = 2, quick = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': child_rho = optarg; break;
        case 'n': if (cli_int("bench targets", "steps", optarg, 1, 100, &steps)) return 2; break;
        case 'p': python = optarg; break;
        case 's': script = optarg; break;
        case 'q': quick = 1; break;
        case 'h':
            printf("Usage: opd bench targets [--steps N] [--quick] [--python PY] [--torch-script FILE]\n"
                   "The performance targets in one table (what `make bench` prints): the own gemm vs\n"
                   "oneDNN and OpenBLAS at the model's shapes, the whole step at H = T and 0.1 T vs\n"
                   "PyTorch eager, and the step against its floor (gemms at oneDNN's rate + the\n"
                   "rollout's bandwidth bound).\n"
                   "  --steps N          timed steps per whole-step run, after a warm-up (default 2)\n"
                   "  --quick            shorter gemm timings\n"
                   "  --python PY        interpreter with torch (default /usr/bin/python3)\n"
                   "  --torch-script F   eval/torch_step_bench.py (default: relative to the cwd)\n");
            return 0;
        default: return cli_usage_error("bench targets");
        }
    }
    if (child_rho) {
        float rho;
        if (cli_float("bench targets", "child-step", child_rho, 0.001, 1, &rho)) return 2;
        return child_step(rho, steps);
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) { perror("opd bench targets: /proc/self/exe"); return 1; }
    exe[len] = 0;
    int nthr = omp_get_max_threads();
    double t_start = opd_time();
    printf("opd bench targets: measured in this run (%d OpenMP threads, %s matmul, %s path)\n\n", nthr,
           opd_matmul_backend_name(opd_matmul_get_backend()), opd_isa_name(opd_isa_get()));

    /* 1. the gemm table */
    bench_matmul_summary gs;
    bench_matmul_table(quick, &gs);

    /* 3. the floor: the step's gemms (over the [x; y] sequence of H = T) at
     * oneDNN's rate, and the rollout at the bandwidth bound */
    int Tq = PROMPT + MAX_NEW_TOKENS - 1, N = BATCH * Tq;
    opd_config sc, tc;
    student_cfg(&sc);
    teacher_cfg(&tc);
    static gemm gl[3 * MAX_GEMMS];
    int ng = model_gemms(&tc, N, 0, gl);
    ng += model_gemms(&sc, N, 0, gl + ng);
    ng += model_gemms(&sc, N, 1, gl + ng);
    opd_matmul_backend fast = opd_matmul_backend_available(OPD_MATMUL_ONEDNN) ? OPD_MATMUL_ONEDNN : OPD_MATMUL_OWN;
    double t_gemm_fast = time_sgemm(gl, ng, 4, fast), t_gemm_own = time_sgemm(gl, ng, 4, OPD_MATMUL_OWN);
    double flops = gemm_flops(gl, ng);
    double bw = triad_gbs();
    opd_model s;
    if (opd_model_init(&s, &sc) != 0) return cli_fail("bench targets");
    opd_model_init_random(&s, 1);
    double t_roll = time_rollout(&s, 3);
    if (t_roll < 0) return cli_fail("bench targets");
    /* generating token i streams the weights and the cache of P + i positions */
    double kv_pos = 2.0 * sc.n_layers * BATCH * (sc.d_model / sc.n_heads * sc.n_kv_heads) * sizeof(float);
    double bytes = 0;
    for (int i = 0; i < MAX_NEW_TOKENS; i++) bytes += s.num_params * sizeof(float) + kv_pos * (PROMPT + i);
    double t_roll_bound = bytes / (bw * 1e9), t_floor = t_gemm_fast + t_roll_bound;
    opd_model_free(&s);

    /* 2. whole steps, each in its own process, and PyTorch eager */
    step_result full, topd, one;
    if (run_step(exe, nthr, "1", steps, &full) != 0 || run_step(exe, nthr, "0.1", steps, &topd) != 0 ||
        run_step(exe, 1, "1", steps, &one) != 0) {
        fprintf(stderr, "opd bench targets: a step child process failed\n");
        return 1;
    }
    double t_torch = torch_step_sec(python, script, "1", nthr, steps);
    double t_torch01 = torch_step_sec(python, script, "0.1", nthr, steps);

    printf("\nstudent d=128 L=4 ffn 512, teacher d=256 L=6 ffn 1024, V=%d, batch %d, prompt %d, T=%d\n\n",
           VOCAB, BATCH, PROMPT, MAX_NEW_TOKENS);
    printf("| %-50s | %-38s | %-8s | %-3s |\n", "what", "measured", "target", "met");
    printf("|%.*s|%.*s|%.*s|%.*s|\n", 52, "------------------------------------------------------------",
           40, "------------------------------------------------------------", 10, "------------",
           5, "-----");
    char m[160], w[160];
    double gpct = gs.onednn > 0 ? 100.0 * gs.own / gs.onednn : 0;
    snprintf(m, sizeof m, "%.0f vs %.0f GFLOP/s (%.0f%%)", gs.own, gs.onednn, gpct);
    row("own gemm vs oneDNN, geomean over the model's shapes", m, ">= 90%", gs.onednn > 0 ? gpct >= 90.0 : -1);
    snprintf(m, sizeof m, "%.0f (%s) / %.0f GFLOP/s", gs.blas, gs.blas_core, gs.blas_best);
    row("    OpenBLAS, its core / its best core type", m, "", -1);
    if (t_torch > 0) {
        snprintf(m, sizeof m, "%.3f s vs %.3f s (%.2fx)", full.sec, t_torch, t_torch / full.sec);
        row("whole step H = T = 256 vs PyTorch eager", m, ">= 4x", t_torch / full.sec >= 4.0);
    } else {
        row("whole step H = T = 256 vs PyTorch eager", "PyTorch not run (no python with torch)", ">= 4x", -1);
    }
    snprintf(w, sizeof w, "whole step H = 0.1 T = %d vs PyTorch eager", topd.H);
    if (t_torch01 > 0) snprintf(m, sizeof m, "%.3f s vs %.3f s (%.2fx)", topd.sec, t_torch01, t_torch01 / topd.sec);
    else snprintf(m, sizeof m, "%.3f s (PyTorch not run)", topd.sec);
    row(w, m, "", -1);
    snprintf(m, sizeof m, "%.3f s vs %.3f s (%.2fx)", full.sec, t_floor, full.sec / t_floor);
    row("whole step H = T vs its floor", m, "<= 1.5x", full.sec / t_floor <= 1.5);
    snprintf(m, sizeof m, "%.3f s (%.0f GFLOP/s) + %.3f s", t_gemm_fast, flops / t_gemm_fast * 1e-9, t_roll_bound);
    snprintf(w, sizeof w, "    floor: gemms at %s + rollout bound", opd_matmul_backend_name(fast));
    row(w, m, "", -1);
    snprintf(m, sizeof m, "%.3f s (%.0f GFLOP/s)", t_gemm_own, flops / t_gemm_own * 1e-9);
    row("    the same gemms, own", m, "", -1);
    snprintf(m, sizeof m, "%.0f tok/s (%.3f s) vs %.1f GB/s", BATCH * MAX_NEW_TOKENS / t_roll, t_roll, bw);
    row("    rollout alone (batch 16, H = T), triad bandwidth", m, "", -1);
    snprintf(m, sizeof m, "%.3f s of %.3f s", full.sec_rollout, full.sec);
    row("    rollout phase inside the H = T step", m, "", -1);
    double mem_frac = (double)topd.peak_kb / full.peak_kb;
    snprintf(m, sizeof m, "%.0f vs %.0f MiB (%.0f%%)", topd.peak_kb / 1024.0, full.peak_kb / 1024.0, 100 * mem_frac);
    row("peak RSS, H = 0.1 T vs H = T step", m, "", -1);
    snprintf(m, sizeof m, "%.3f s vs %.3f s (%.2fx)", one.sec, full.sec, one.sec / full.sec);
    snprintf(w, sizeof w, "whole step H = T, 1 vs %d threads", nthr);
    row(w, m, "", -1);
    printf("\n(%.0f s)\n", opd_time() - t_start);
    return 0;
}
