/* bench.h — the benchmarks behind `opd bench ...`: one entry point per
 * benchmark, each in its own file; what several share is bench_common.h's. */
#ifndef OPD_BENCH_H
#define OPD_BENCH_H

#include "opd.h"
#include "bench_common.h"

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

/* `opd bench decode` (bench_decode.c): argv[0] is the command name; options
 * --batch N, --steps N (timed decode steps per position window). */
int opd_bench_decode(int argc, char **argv);
/* `opd bench step` (bench_step.c); with --device cuda it hands over to
 * opd_bench_step_cuda (bench_step_cuda.c: the GPU step next to the CPU one). */
int opd_bench_step(int argc, char **argv);

/* `opd bench targets` (bench_targets.c): what `make bench` runs. */
int opd_bench_targets(int argc, char **argv);
/* bench_scale.c: 1 rank x 2 threads vs 2 ranks x 1 thread, and the tree's cost on paper */
int opd_bench_scale(int argc, char **argv);

#endif
