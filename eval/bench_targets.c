/* bench_targets.c — `opd bench targets` (what `make bench` runs): the
 * performance targets of issue 8 in one table, every figure measured in the
 * same run, next to the machine limit it is judged against.
 *
 * Shapes: the step (student d=128 L=4 4 heads ffn 512; teacher
 * d=256 L=6 8 heads ffn 1024; V=64; batch 16; prompt 32; horizon T=256).
 *
 *  (a) teacher scoring forward, student forward, student backward: the
 *      phase's matmul FLOPs / the phase's time, next to plain cblas_sgemm
 *      (OpenBLAS, all threads, no blocking of ours) running exactly the
 *      phase's gemm shapes back to back. The percent is sgemm time / phase
 *      time: everything that is not a matmul (attention, norms, RoPE) counts
 *      against the phase.
 *  (b) rollout decoding, batch 16, H = T: tokens/s next to the bound of
 *      streaming the student's weights and the KV cache written so far once
 *      per generated token, at the memory bandwidth measured here (a
 *      STREAM-like triad over arrays larger than the caches).
 *  (c) one whole step at H = T and at TOPD rho = 0.1: time and peak RSS,
 *      each configuration in its own process (a process's peak only grows).
 *  (d) the whole step on 1 thread vs all threads (OMP_NUM_THREADS).
 *  (e) the same step in PyTorch eager (eval/torch_step_bench.py), same
 *      threads, if a python with torch is found.
 *
 * Timings are the best of a few repetitions: on a shared machine the minimum
 * is the run least disturbed by other processes. */
#define _GNU_SOURCE
#include "bench.h"
#include "cli.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { BATCH = 16, PROMPT = 32, HORIZON = 256, VOCAB = 64 };

static void student_cfg(opd_config *c) { bench_model_config(c, VOCAB, 128, 4, 4, 512, PROMPT + HORIZON); }
static void teacher_cfg(opd_config *c) { bench_model_config(c, VOCAB, 256, 6, 8, 1024, PROMPT + HORIZON); }

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

/* Best time of the gemm list run back to back by plain cblas_sgemm
 * (plain = 1: OpenBLAS's own threading) or by opd_sgemm (plain = 0: our
 * shape-blocked, thread-count independent path). */
static double time_sgemm(const gemm *g, int n, int reps, int plain) {
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (int i = 0; i < n; i++) {
        size_t a = (size_t)g[i].M * g[i].K, b = (size_t)g[i].K * g[i].N, c = (size_t)g[i].M * g[i].N;
        if (a > maxa) maxa = a;
        if (b > maxb) maxb = b;
        if (c > maxc) maxc = c;
    }
    float *A = opd_malloc(maxa * sizeof(float)), *B = opd_malloc(maxb * sizeof(float));
    float *C = opd_calloc(maxc, sizeof(float));
    for (size_t i = 0; i < maxa; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < maxb; i++) B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = opd_time();
        for (int i = 0; i < n; i++) {
            const gemm *q = &g[i];
            int lda = q->transA ? q->M : q->K, ldb = q->transB ? q->K : q->N;
            float beta = q->transA || !q->transB ? 1.0f : 0.0f;   /* backward gemms accumulate */
            if (plain)
                cblas_sgemm(CblasRowMajor, q->transA ? CblasTrans : CblasNoTrans,
                            q->transB ? CblasTrans : CblasNoTrans, q->M, q->N, q->K, 1.0f, A, lda,
                            B, ldb, beta, C, q->N);
            else
                opd_sgemm(q->transA, q->transB, q->M, q->N, q->K, 1.0f, A, lda, B, ldb, beta, C, q->N);
        }
        double dt = opd_time() - t0;
        if (r > 0 && dt < best) best = dt;   /* the first pass warms up */
    }
    free(A); free(B); free(C);
    return best;
}

typedef struct { double t_teacher, t_sfwd, t_sbwd; } phase_times;

/* Best times of the three matmul-heavy phases at the step's shapes. */
static int time_phases(int Tq, int reps, phase_times *pt) {
    opd_config sc, tc;
    student_cfg(&sc);
    teacher_cfg(&tc);
    opd_model s, t;
    if (opd_model_init(&s, &sc) != 0 || opd_model_init(&t, &tc) != 0) return -1;
    opd_model_init_random(&s, 1);
    opd_model_init_random(&t, 2);
    int N = BATCH * Tq;
    int *tokens = opd_malloc(sizeof(int) * N);
    for (int i = 0; i < N; i++) tokens[i] = (int)(opd_uniform(9, 1, 0, i, 0) * VOCAB);
    float *dlogits = opd_malloc(sizeof(float) * N * VOCAB);
    for (int i = 0; i < N * VOCAB; i++) dlogits[i] = 1e-3f * opd_normal(9, 2, 0, i);
    opd_model_alloc_grads(&s);
    pt->t_teacher = pt->t_sfwd = pt->t_sbwd = 1e30;
    for (int r = 0; r <= reps; r++) {   /* r = 0 warms up (allocates activations) */
        double t0 = opd_time();
        opd_model_forward_inference(&t, tokens, NULL, BATCH, Tq);
        double t1 = opd_time();
        opd_model_forward(&s, tokens, NULL, BATCH, Tq);
        double t2 = opd_time();
        opd_model_zero_grads(&s);
        double t3 = opd_time();
        opd_model_backward(&s, dlogits);
        double t4 = opd_time();
        if (r == 0) continue;
        if (t1 - t0 < pt->t_teacher) pt->t_teacher = t1 - t0;
        if (t2 - t1 < pt->t_sfwd) pt->t_sfwd = t2 - t1;
        if (t4 - t3 < pt->t_sbwd) pt->t_sbwd = t4 - t3;
    }
    free(tokens);
    free(dlogits);
    opd_model_free(&s);
    opd_model_free(&t);
    return 0;
}

/* --------------------------------------------------- (b) memory bandwidth */
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
        if (opd_rollout_sample(s, prompts, pad, ids, BATCH, PROMPT, HORIZON, &rc, &ro) != 0) {
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

/* ------------------------------------------------ (c, d) one whole step */
/* Child: warm-up + `steps` OPD steps at horizon fraction rho in this
 * process; prints "STEP H total_s peak_kib". */
static int child_step(float rho, int steps) {
    bench_step_setup e;
    if (bench_step_setup_init(&e, VOCAB, BATCH, PROMPT, HORIZON, rho) != 0) return cli_fail("bench targets");
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

/* PyTorch eager: the total step time at H = T, or -1 if it could not run. */
static double torch_step_sec(const char *python, const char *script, int threads, int steps) {
    if (access(script, R_OK) != 0 || access(python, X_OK) != 0) return -1;
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d '%s' '%s' --child --rho 1 --steps %d --threads %d 2>/dev/null",
             threads, python, script, steps, threads);
    const char *line = run_for_line(cmd, "{");
    const char *tot = line ? strstr(line, "\"total\": ") : NULL;
    return tot ? strtod(tot + 9, NULL) : -1;
}

/* ------------------------------------------------------------- the table */
static void row(const char *what, const char *measured, const char *target, int met) {
    printf("| %-56s | %-32s | %-9s | %-3s |\n", what, measured, target, met < 0 ? "-" : met ? "yes" : "no");
}

int opd_bench_targets(int argc, char **argv) {
    static const struct option opts[] = {
        {"child-step", required_argument, 0, 'c'},
        {"steps", required_argument, 0, 'n'},
        {"python", required_argument, 0, 'p'},
        {"torch-script", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *child_rho = NULL, *python = "/usr/bin/python3", *script = "eval/torch_step_bench.py";
    int steps = 2, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': child_rho = optarg; break;
        case 'n': if (cli_int("bench targets", "steps", optarg, 1, 100, &steps)) return 2; break;
        case 'p': python = optarg; break;
        case 's': script = optarg; break;
        case 'h':
            printf("Usage: opd bench targets [--steps N] [--python PY] [--torch-script FILE]\n"
                   "The issue-8 performance targets in one table (what `make bench` prints):\n"
                   "matmul phases vs plain sgemm, rollout tokens/s vs the memory-bandwidth bound,\n"
                   "full vs TOPD step time and peak memory, 1 vs all threads, PyTorch eager.\n"
                   "  --steps N          timed steps per whole-step run, after a warm-up (default 2)\n"
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

    /* (a) the matmul-heavy phases, over the [x; y] sequence of H = T */
    int Tq = PROMPT + HORIZON - 1, N = BATCH * Tq;
    opd_config sc, tc;
    student_cfg(&sc);
    teacher_cfg(&tc);
    static gemm gt[MAX_GEMMS], gsf[MAX_GEMMS], gsb[MAX_GEMMS];
    int nt = model_gemms(&tc, N, 0, gt), nsf = model_gemms(&sc, N, 0, gsf), nsb = model_gemms(&sc, N, 1, gsb);
    double ft = gemm_flops(gt, nt), fsf = gemm_flops(gsf, nsf), fsb = gemm_flops(gsb, nsb);
    phase_times pt;
    if (time_phases(Tq, 3, &pt) != 0) return cli_fail("bench targets");
    /* [0]: plain cblas_sgemm, [1]: opd_sgemm; the phase is judged against
     * the faster of the two */
    double sg[3][2];
    const gemm *lists[3] = {gt, gsf, gsb};
    int counts[3] = {nt, nsf, nsb};
    for (int i = 0; i < 3; i++)
        for (int plain = 0; plain < 2; plain++) sg[i][plain] = time_sgemm(lists[i], counts[i], 4, !plain);

    /* (b) decoding vs the bandwidth bound */
    double bw = triad_gbs();
    opd_model s;
    if (opd_model_init(&s, &sc) != 0) return cli_fail("bench targets");
    opd_model_init_random(&s, 1);
    double t_roll = time_rollout(&s, 3);
    if (t_roll < 0) return cli_fail("bench targets");
    /* generating token i streams the weights and the cache of P + i positions */
    double kv_pos = 2.0 * sc.n_layers * BATCH * (sc.d_model / sc.n_heads * sc.n_kv_heads) * sizeof(float);
    double bytes = 0;
    for (int i = 0; i < HORIZON; i++) bytes += s.num_params * sizeof(float) + kv_pos * (PROMPT + i);
    double tok_s = BATCH * HORIZON / t_roll, tok_bound = BATCH * HORIZON / (bytes / (bw * 1e9));
    opd_model_free(&s);

    /* (c, d) whole steps, each in its own process */
    step_result full, topd, one;
    if (run_step(exe, nthr, "1", steps, &full) != 0 || run_step(exe, nthr, "0.1", steps, &topd) != 0 ||
        run_step(exe, 1, "1", steps, &one) != 0) {
        fprintf(stderr, "opd bench targets: a step child process failed\n");
        return 1;
    }
    /* (e) PyTorch eager, same threads */
    double t_torch = torch_step_sec(python, script, nthr, steps);

    printf("opd bench targets: issue 8, measured in this run (%d OpenMP threads, OpenBLAS core %s, %s matmul)\n",
           nthr, openblas_get_corename(), opd_matmul_backend_name(opd_matmul_get_backend()));
    printf("student d=128 L=4 ffn 512, teacher d=256 L=6 ffn 1024, V=%d, batch %d, prompt %d, T=%d; "
           "best of the repetitions\n\n", VOCAB, BATCH, PROMPT, HORIZON);
    printf("| %-56s | %-32s | %-9s | %-3s |\n", "what", "measured", "target", "met");
    printf("|%.*s|%.*s|%.*s|%.*s|\n", 58, "------------------------------------------------------------",
           34, "------------------------------------------------------------", 11, "------------",
           5, "-----");
    char m[128], w[128];
    struct { const char *name; double flops, t; } ph[3] = {
        {"teacher scoring", ft, pt.t_teacher}, {"student fwd", fsf, pt.t_sfwd},
        {"student bwd", fsb, pt.t_sbwd}};
    double t_floor = 0;   /* the three phases' gemms at the best sgemm */
    for (int i = 0; i < 3; i++) {
        double best = sg[i][0] < sg[i][1] ? sg[i][0] : sg[i][1], pct = 100.0 * best / ph[i].t;
        t_floor += best;
        snprintf(w, sizeof w, "(a) %s GFLOP/s vs sgemm plain / opd_sgemm", ph[i].name);
        snprintf(m, sizeof m, "%.0f vs %.0f / %.0f (%.0f%%)", ph[i].flops / ph[i].t * 1e-9,
                 ph[i].flops / sg[i][0] * 1e-9, ph[i].flops / sg[i][1] * 1e-9, pct);
        row(w, m, ">= 60%", pct >= 60.0);
    }
    snprintf(m, sizeof m, "%.0f vs %.0f (%.2fx)", tok_s, tok_bound, tok_bound / tok_s);
    row("(b) rollout decode tok/s, batch 16, vs bandwidth bound", m, "<= 2x", tok_bound / tok_s <= 2.0);
    snprintf(m, sizeof m, "%.1f GB/s", bw);
    row("    memory bandwidth (triad, 3 x 64 MiB, all threads)", m, "", -1);
    snprintf(m, sizeof m, "%.3f s, %.0f MiB", full.sec, full.peak_kb / 1024.0);
    row("(c) whole step, H = T = 256: time, peak RSS", m, "", -1);
    double mem_frac = (double)topd.peak_kb / full.peak_kb;
    snprintf(m, sizeof m, "%.3f s, %.0f MiB (%.0f%%)", topd.sec, topd.peak_kb / 1024.0, 100 * mem_frac);
    snprintf(w, sizeof w, "    TOPD rho = 0.1 step (H = %d): time, peak (%% of full)", topd.H);
    row(w, m, "<= 25%", mem_frac <= 0.25);
    snprintf(m, sizeof m, "%.3f s vs %.3f s (%.2fx)", one.sec, full.sec, one.sec / full.sec);
    snprintf(w, sizeof w, "(d) whole step, 1 vs %d threads: speed-up", nthr);
    row(w, m, ">= 1.6x", one.sec / full.sec >= 1.6);
    if (t_torch > 0) {
        snprintf(m, sizeof m, "%.3f s vs %.3f s (%.2fx)", t_torch, full.sec, t_torch / full.sec);
        snprintf(w, sizeof w, "(e) PyTorch eager step (%d threads) vs opd", nthr);
        row(w, m, ">= 5x", t_torch / full.sec >= 5.0);
    } else {
        row("(e) PyTorch eager step vs opd", "not run (no python with torch)", ">= 5x", -1);
    }
    printf("\n(a) %% = time of the phase's gemms at the faster sgemm / time of the phase (attention, norms,\n"
           "    RoPE, SwiGLU count against it). Seconds: teacher fwd %.3f, student fwd %.3f, bwd %.3f;\n"
           "    their gemms %.3f / %.3f / %.3f (plain cblas_sgemm), %.3f / %.3f / %.3f (opd_sgemm).\n",
           pt.t_teacher, pt.t_sfwd, pt.t_sbwd, sg[0][0], sg[1][0], sg[2][0], sg[0][1], sg[1][1], sg[2][1]);
    printf("(b) rollout alone %.3f s; the bound streams %.2f GB (student weights + KV cache per token).\n"
           "    Inside the whole H = T step the rollout phase took %.3f s = %.0f tok/s (%.2fx the bound).\n",
           t_roll, bytes * 1e-9, full.sec_rollout, BATCH * HORIZON / full.sec_rollout,
           tok_bound / (BATCH * HORIZON / full.sec_rollout));
    /* what the step cannot beat: its gemms at the best sgemm, the rollout at the bound */
    double t_min = t_floor + bytes / (bw * 1e9);
    printf("Floor of one H = T step at these shapes: gemms %.3f s + rollout bound %.3f s = %.3f s", t_floor,
           bytes / (bw * 1e9), t_min);
    if (t_torch > 0) printf(", i.e. at most %.1fx faster than PyTorch eager here", t_torch / t_min);
    printf(".\n");
    printf("(%.0f s)\n", opd_time() - t_start);
    return 0;
}
