/* bench.h — benchmarks behind `opd bench ...`. */
#ifndef OPD_BENCH_H
#define OPD_BENCH_H

#include "opd.h"

/* `opd bench matmul`: GFLOP/s of the model's real matmul shapes (forward and
 * the two backward gemms) for the reference's own gemm, oneDNN, OpenBLAS on
 * the core it picks and OpenBLAS's best core type. Flags are
 * looked for anywhere in argv (so argv may start at "matmul" or before):
 *   --quick        shorter timing runs
 *   --blas-child   internal: print BLAS timings as "ROW i GFLOPS" lines
 * Returns a process exit code (0 ok). */
int opd_bench_matmul(int argc, char **argv);

/* The same table, printed, with its geometric means (GFLOP/s; 0 where a
 * backend is not built). Used by `opd bench targets`. */
typedef struct {
    double own, onednn, blas, blas_best;
    char blas_core[64];
} bench_matmul_summary;
int bench_matmul_table(int quick, bench_matmul_summary *sum);

/* A benchmark model: vocabulary V, width d, l layers of h heads (no GQA),
 * SwiGLU hidden size f, max_seq positions; the rest opd_config_default's.
 * The issue-8 pair is (128, 4, 4, 512) and (256, 6, 8, 1024). */
void bench_model_config(opd_config *c, int V, int d, int l, int h, int f, int max_seq);

/* Everything one benchmarked OPD step needs, built the same way by
 * `opd bench step`, `opd bench step --device cuda` and `opd bench targets`:
 * the issue-8 pair with random weights (seeds 1 and 2), AdamW defaults, a
 * horizon of rho * T (rho >= 1: the full T) with no EOS, so every rollout
 * runs to the horizon and the step's cost is H's, and B random prompts of
 * P tokens without padding. */
typedef struct {
    opd_model student, teacher;
    opd_adamw opt;
    opd_distill_config dc;
    int B, P;
    int *prompts;     /* (B, P) */
    int *pad;         /* (B) zeros */
    uint32_t *ids;    /* (B) 0 .. B-1 */
} bench_step_setup;
int bench_step_setup_init(bench_step_setup *s, int V, int B, int P, int T, float rho);
void bench_step_setup_free(bench_step_setup *s);

#endif
