/* bench_matmul.c — `opd bench matmul`: GFLOP/s of the matmuls the model
 * really runs, per backend, and the best sgemm the machine reaches there.
 *
 * Shapes: N = 16 sequences x 288 positions = 4608 rows; student d=128,
 * ffn 512; teacher d=256, ffn 1024; vocab 64. Each linear layer (C -> OC)
 * runs three gemms: forward out = inp W^T (N x OC x C), dinp = dout W
 * (N x C x OC) and dW = dout^T inp (OC x C x N).
 *
 * OpenBLAS picks its kernels ("core type") once, when the library loads,
 * from the CPU or from OPENBLAS_CORETYPE; it cannot be switched inside a
 * process. So the "best" column re-runs this benchmark's BLAS part in child
 * processes (this same executable, `bench matmul --blas-child`) with
 * OPENBLAS_CORETYPE set to each candidate, and takes the max over backends
 * and core types. To use another core type for real runs, export
 * OPENBLAS_CORETYPE=<name> before starting opd. */
#define _GNU_SOURCE
#include "bench.h"
#include "opd.h"

#include <cblas.h>
#include <dnnl.h>
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

int opd_bench_matmul(int argc, char **argv) {
    gemm_shape s[MAX_ROWS];
    int n = build_shapes(s);
    int quick = has_flag(argc, argv, "--quick");
    double min_s = quick ? 0.02 : 0.08;
    opd_matmul_backend saved = opd_matmul_get_backend();

    if (has_flag(argc, argv, "--blas-child")) {
        opd_matmul_set_backend(OPD_MATMUL_BLAS);
        printf("CORE %s\n", openblas_get_corename());
        for (int i = 0; i < n; i++) printf("ROW %d %.3f\n", i, time_gemm(&s[i], min_s));
        opd_matmul_set_backend(saved);
        return 0;
    }

    double blas[MAX_ROWS], dnnl[MAX_ROWS], best[MAX_ROWS];
    const char *best_by[MAX_ROWS];
    double t_start = opd_time();
    opd_matmul_set_backend(OPD_MATMUL_BLAS);
    for (int i = 0; i < n; i++) blas[i] = time_gemm(&s[i], min_s);
    opd_matmul_set_backend(OPD_MATMUL_ONEDNN);
    for (int i = 0; i < n; i++) dnnl[i] = time_gemm(&s[i], min_s);
    opd_matmul_set_backend(saved);
    for (int i = 0; i < n; i++) {
        best[i] = blas[i] > dnnl[i] ? blas[i] : dnnl[i];
        best_by[i] = blas[i] > dnnl[i] ? "blas" : "onednn";
    }

    /* other OpenBLAS core types, each in a child process */
    static const char *cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake"};
    static char used_names[4][64];
    const char *own = openblas_get_corename();
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int ncores_run = 0;
    char cores_note[512] = "";
    if (len > 0) {
        exe[len] = 0;
        for (size_t c = 0; c < sizeof cores / sizeof cores[0]; c++) {
            double gf[MAX_ROWS];
            if (run_child(exe, cores[c], quick, n, gf, used_names[c], sizeof used_names[c]) != 0) {
                snprintf(cores_note + strlen(cores_note), sizeof cores_note - strlen(cores_note),
                         " %s(failed)", cores[c]);
                continue;
            }
            ncores_run++;
            double lg = 0;
            for (int i = 0; i < n; i++) lg += log(gf[i]);
            snprintf(cores_note + strlen(cores_note), sizeof cores_note - strlen(cores_note),
                     " %s(->%s: %.0f)", cores[c], used_names[c], exp(lg / n));
            for (int i = 0; i < n; i++)
                if (gf[i] > best[i]) { best[i] = gf[i]; best_by[i] = used_names[c]; }
        }
    }

    printf("opd bench matmul: %d OpenMP threads, OpenBLAS core %s%s, oneDNN %d.%d\n",
           omp_get_max_threads(), own, getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE set)" : "",
           dnnl_version()->major, dnnl_version()->minor);
    printf("rows N = 16 x 288 = 4608; GFLOP/s = 2*M*N*K / time; best = max over backends%s\n\n",
           ncores_run ? " and OpenBLAS core types (child runs):" : " (OpenBLAS core types: none could be run)");
    if (ncores_run) {
        double lb = 0, ld = 0;
        for (int i = 0; i < n; i++) { lb += log(blas[i]); ld += log(dnnl[i]); }
        printf("  geometric-mean GFLOP/s: blas (%s, this process) %.0f, onednn %.0f\n", own,
               exp(lb / n), exp(ld / n));
        printf("  OpenBLAS core types (child runs, requested->used: geomean):%s\n", cores_note);
        printf("  (to run opd with another core type: OPENBLAS_CORETYPE=<name> opd ...)\n\n");
    }
    printf("%-8s %-15s %-5s %5s %5s %5s  %9s %9s %9s  %s\n", "model", "layer", "gemm",
           "M", "N", "K", "blas", "onednn", "best", "best by");
    for (int i = 0; i < n; i++)
        printf("%-8s %-15s %-5s %5d %5d %5d  %9.1f %9.1f %9.1f  %s\n", s[i].model, s[i].layer,
               s[i].dir, s[i].M, s[i].N, s[i].K, blas[i], dnnl[i], best[i], best_by[i]);
    printf("\n(%.1f s)\n", opd_time() - t_start);
    return 0;
}
