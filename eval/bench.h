/* bench.h — benchmarks behind `opd bench ...`. */
#ifndef OPD_BENCH_H
#define OPD_BENCH_H

/* `opd bench matmul`: GFLOP/s of the model's real matmul shapes (forward and
 * the two backward gemms) for each backend, and the best sgemm this machine
 * reaches at that shape over backends and OpenBLAS core types. Flags are
 * looked for anywhere in argv (so argv may start at "matmul" or before):
 *   --quick        shorter timing runs
 *   --blas-child   internal: print BLAS timings as "ROW i GFLOPS" lines
 * Returns a process exit code (0 ok). */
int opd_bench_matmul(int argc, char **argv);

/* A benchmark model: vocabulary V, width d, l layers of h heads (no GQA),
 * SwiGLU hidden size f, max_seq positions; the rest opd_config_default's.
 * The issue-8 pair is (128, 4, 4, 512) and (256, 6, 8, 1024). */
#include "opd.h"
void bench_model_config(opd_config *c, int V, int d, int l, int h, int f, int max_seq);

#endif
