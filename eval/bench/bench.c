/* bench.c — `opd bench [matmul|decode|step|all]`: the benchmark tables
 * (`make bench` runs them all). Speed targets live here, not in unit tests. */
#include "bench.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_bench(int argc, char **argv) {
    const char *which = argc >= 2 ? argv[1] : "targets";
    if (!strcmp(which, "-h") || !strcmp(which, "--help")) {
        printf("Usage: opd bench [targets|matmul|decode|step|scale|all] [OPTIONS]\n"
               "  targets  the issue-8 targets in one table, measured side by side (default; make bench)\n"
               "  matmul   GFLOP/s of each matmul backend at the model's shapes, next to the best sgemm\n"
               "  decode   rollout tokens/s at positions ~64, 256, 1024 and KV-cache memory\n"
               "  step     one OPD step at H_k = T, 0.25 T, 0.1 T (T: --max-new-tokens): seconds per phase, peak memory\n"
               "  scale    1 rank x 2 threads vs 2 ranks x 1 thread (MPI): s/step, combine s; 8 / 64 ranks on paper\n"
               "  all      matmul, decode and step\n"
               "Run 'opd bench NAME --help' for a benchmark's options.\n");
        return 0;
    }
    if (!strcmp(which, "matmul")) return opd_bench_matmul(argc - 1, argv + 1);
    if (!strcmp(which, "decode")) return opd_bench_decode(argc - 1, argv + 1);
    if (!strcmp(which, "step")) return opd_bench_step(argc - 1, argv + 1);
    if (!strcmp(which, "scale")) return opd_bench_scale(argc - 1, argv + 1);
    if (!strcmp(which, "targets")) return opd_bench_targets(argc - 1, argv + 1);
    if (!strcmp(which, "all")) {
        char *none[] = {(char *)"bench", NULL};
        int rc = opd_bench_matmul(1, none);
        if (rc == 0) { printf("\n"); rc = opd_bench_decode(1, none); }
        if (rc == 0) { printf("\n"); rc = opd_bench_step(1, none); }
        return rc;
    }
    fprintf(stderr, "opd bench: unknown benchmark '%s' (targets, matmul, decode, step, scale, all)\n", which);
    return 2;
}
