/* bench_matmul.c — `opd bench matmul`: GFLOP/s of the matmuls the model
 * really runs, for the reference's own gemm and the optional backends, side
 * by side in one run.
 *
 * Shapes: N = 16 sequences x 288 positions = 4608 rows; student d=128,
 * ffn 512; teacher d=256, ffn 1024; vocab 64. Each linear layer (C -> OC)
 * runs three gemms: forward out = inp W^T (N x OC x C), dinp = dout W
 * (N x C x OC) and dW = dout^T inp (OC x C x N).
 *
 * Columns: own (ref/gemm.c, the ISA path this CPU selects), oneDNN,
 * OpenBLAS with the core type it picks for this CPU, and OpenBLAS's best
 * core type. OpenBLAS picks its kernels once, when the library loads, from
 * the CPU or from OPENBLAS_CORETYPE, so the other core types run in child
 * processes (this same executable, `bench matmul --blas-child`). */
#define _GNU_SOURCE
#include "config.h"
#include "bench.h"
#include "opd.h"

#if OPD_HAVE_BLAS
#include <cblas.h>
#endif
#if OPD_HAVE_ONEDNN
#include <dnnl.h>
#endif
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model, *layer, *dir;
    int transA, transB, M, N, K;
} gemm_shape;

enum { MAX_ROWS = 64 };

static int build_shapes(gemm_shape *s) {
    const int rows = 16 * 288;
    struct { const char *model, *layer; int C, OC; } lin[] = {
        {"student", "attn q/o C->C", 128, 128}, {"student", "mlp up C->F", 128, 512},
        {"student", "mlp down F->C", 512, 128}, {"student", "head C->V", 128, 64},
        {"teacher", "attn q/o C->C", 256, 256}, {"teacher", "mlp up C->F", 256, 1024},
        {"teacher", "mlp down F->C", 1024, 256}, {"teacher", "head C->V", 256, 64},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
        int C = lin[i].C, OC = lin[i].OC;
        s[n++] = (gemm_shape){lin[i].model, lin[i].layer, "fwd", 0, 1, rows, OC, C};
        s[n++] = (gemm_shape){lin[i].model, lin[i].layer, "dinp", 0, 0, rows, C, OC};
        s[n++] = (gemm_shape){lin[i].model, lin[i].layer, "dW", 1, 0, OC, C, rows};
    }
    return n;
}

/* GFLOP/s of one gemm shape on the current backend: one untimed call (it
 * creates oneDNN's primitive), then repeat for at least `min_s` seconds. */
static double time_gemm(const gemm_shape *g, double min_s) {
    int M = g->M, N = g->N, K = g->K;
    float *A = opd_malloc((size_t)M * K * sizeof(float));
    float *B = opd_malloc((size_t)K * N * sizeof(float));
    float *C = opd_calloc((size_t)M * N, sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    int lda = g->transA ? M : K, ldb = g->transB ? K : N;
    float beta = strcmp(g->dir, "fwd") ? 1.0f : 0.0f;   /* backward accumulates */
    opd_sgemm(g->transA, g->transB, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
    /* best of 4 trials: on a shared machine the minimum time is the one
     * least disturbed by other processes */
    double best = 0.0;
    for (int trial = 0; trial < 4; trial++) {
        int reps = 0;
        double t0 = opd_time(), t;
        do {
            opd_sgemm(g->transA, g->transB, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
            reps++;
            t = opd_time() - t0;
        } while (t < min_s / 4);
        double gf = 2.0 * M * N * K * reps / t * 1e-9;
        if (gf > best) best = gf;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

static int has_flag(int argc, char **argv, const char *flag) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], flag)) return 1;
    return 0;
}

static double time_backend(const gemm_shape *g, double min_s, opd_matmul_backend b) {
    opd_matmul_backend saved = opd_matmul_get_backend();
    opd_matmul_set_backend(b);
    double gf = time_gemm(g, min_s);
    opd_matmul_set_backend(saved);
    return gf;
}

#if OPD_HAVE_BLAS
/* Run this executable's BLAS part with OPENBLAS_CORETYPE=core; fill gf[]
 * and the core name it really used. Returns 0 if the child ran. */
static int run_child(const char *exe, const char *core, int quick, int nrows,
                     double *gf, char *used, size_t used_sz) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=%s '%s' bench matmul --blas-child%s 2>/dev/null",
             core, exe, quick ? " --quick" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[256];
    int got = 0;
    used[0] = 0;
    while (fgets(line, sizeof line, p)) {
        int i;
        double v;
        char name[64];
        if (sscanf(line, "ROW %d %lf", &i, &v) == 2 && i >= 0 && i < nrows) { gf[i] = v; got++; }
        else if (sscanf(line, "CORE %63s", name) == 1) snprintf(used, used_sz, "%s", name);
    }
    int rc = pclose(p);
    return (rc == 0 && got == nrows) ? 0 : -1;
}
#endif

static double geomean(const double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        if (!(x[i] > 0)) return 0;
        s += log(x[i]);
    }
    return exp(s / n);
}

int bench_matmul_table(int quick, bench_matmul_summary *sum) {
    gemm_shape s[MAX_ROWS];
    int n = build_shapes(s);
    double min_s = quick ? 0.02 : 0.08;
    double own[MAX_ROWS], dnnl[MAX_ROWS], blas[MAX_ROWS], best[MAX_ROWS];
    const char *best_by[MAX_ROWS];
    memset(sum, 0, sizeof *sum);
    /* interleaved per shape, so a disturbance hits every column alike */
    for (int i = 0; i < n; i++) {
        own[i] = time_backend(&s[i], min_s, OPD_MATMUL_OWN);
        dnnl[i] = opd_matmul_backend_available(OPD_MATMUL_ONEDNN) ? time_backend(&s[i], min_s, OPD_MATMUL_ONEDNN) : 0;
        blas[i] = opd_matmul_backend_available(OPD_MATMUL_BLAS) ? time_backend(&s[i], min_s, OPD_MATMUL_BLAS) : 0;
        best[i] = blas[i];
        best_by[i] = "-";
    }
    const char *own_core = "-";
    char cores_note[512] = "";
#if OPD_HAVE_BLAS
    own_core = openblas_get_corename();
    for (int i = 0; i < n; i++) best_by[i] = own_core;
    /* other OpenBLAS core types, each in a child process */
    static const char *cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake"};
    static char used_names[4][64];
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        for (size_t c = 0; c < sizeof cores / sizeof cores[0]; c++) {
            double gf[MAX_ROWS];
            if (run_child(exe, cores[c], quick, n, gf, used_names[c], sizeof used_names[c]) != 0) {
                snprintf(cores_note + strlen(cores_note), sizeof cores_note - strlen(cores_note),
                         " %s(failed)", cores[c]);
                continue;
            }
            snprintf(cores_note + strlen(cores_note), sizeof cores_note - strlen(cores_note),
                     " %s(->%s: %.0f)", cores[c], used_names[c], geomean(gf, n));
            for (int i = 0; i < n; i++)
                if (gf[i] > best[i]) { best[i] = gf[i]; best_by[i] = used_names[c]; }
        }
    }
#endif
    sum->own = geomean(own, n);
    sum->onednn = geomean(dnnl, n);
    sum->blas = geomean(blas, n);
    sum->blas_best = geomean(best, n);
    snprintf(sum->blas_core, sizeof sum->blas_core, "%s", own_core);
    printf("gemm GFLOP/s at the model's shapes, %d OpenMP threads; own = ref/gemm.c on its %s path;\n"
           "OpenBLAS: the core it picks here (%s) and the best core type per shape (child runs:%s)\n\n",
           omp_get_max_threads(), opd_isa_name(opd_isa_get()), own_core, cores_note[0] ? cores_note : " none");
    printf("%-8s %-15s %-5s %5s %5s %5s  %7s %7s %7s %7s  %-10s %s\n", "model", "layer", "gemm", "M", "N",
           "K", "own", "onednn", "blas", "blas*", "blas* by", "own/onednn");
    for (int i = 0; i < n; i++)
        printf("%-8s %-15s %-5s %5d %5d %5d  %7.1f %7.1f %7.1f %7.1f  %-10s %5.0f%%\n", s[i].model,
               s[i].layer, s[i].dir, s[i].M, s[i].N, s[i].K, own[i], dnnl[i], blas[i], best[i], best_by[i],
               dnnl[i] > 0 ? 100.0 * own[i] / dnnl[i] : 0.0);
    printf("%-38s  %7.1f %7.1f %7.1f %7.1f  %-10s %5.0f%%\n", "geometric mean", sum->own, sum->onednn,
           sum->blas, sum->blas_best, "", sum->onednn > 0 ? 100.0 * sum->own / sum->onednn : 0.0);
    return 0;
}

int opd_bench_matmul(int argc, char **argv) {
    int quick = has_flag(argc, argv, "--quick");
#if OPD_HAVE_BLAS
    if (has_flag(argc, argv, "--blas-child")) {
        gemm_shape s[MAX_ROWS];
        int n = build_shapes(s);
        printf("CORE %s\n", openblas_get_corename());
        for (int i = 0; i < n; i++)
            printf("ROW %d %.3f\n", i, time_backend(&s[i], quick ? 0.02 : 0.08, OPD_MATMUL_BLAS));
        return 0;
    }
#endif
    double t0 = opd_time();
    printf("opd bench matmul\n");
    bench_matmul_summary sum;
    bench_matmul_table(quick, &sum);
    printf("\n(%.1f s)\n", opd_time() - t0);
    return 0;
}
