/* bench_scale.c — `opd bench scale`: data parallelism (ref/opd_dist.h).
 * Measures one benchmarked OPD step (bench_common.h's pair) split in two
 * micro-batches, run by 1 rank x 2 threads and by 2 ranks x 1 thread
 * (mpirun), both the same bits: seconds per step and the time the ranks
 * spend combining gradients. Then, on paper, the combination's cost for
 * the paper's 1.5B student at 8 and 64 ranks from the bytes the tree moves.
 *
 * Each configuration runs in its own process (this binary re-executed with
 * --child, under mpirun for 2 ranks), as `opd bench step` does. */
#include "bench.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* one configuration, in this process (every rank): rank 0 prints its row */
static int scale_child(int B, int T, int steps) {
    bench_step_setup e;
    if (bench_step_setup_init(&e, 64, B, 16, T, 1.0f) != 0) return cli_fail("bench");
    opd_mb_work w;
    memset(&w, 0, sizeof w);
    double sec = 0, comb = 0;
    opd_step_stats st;
    for (int k = 0; k <= steps; k++) {   /* step 0 warms up, untimed */
        if (opd_distill_step_mb(&e.student, &e.teacher, &e.opt, &e.dc, e.prompts, e.pad, e.ids, B, e.P,
                                B / 2, k, &w, &st) != 0)
            return cli_fail("bench");
        if (k == 0) continue;
        sec += st.sec_rollout + st.sec_teacher + st.sec_student + st.sec_optim + st.sec_combine;
        comb += st.sec_combine;
    }
    const char *thr = getenv("OMP_NUM_THREADS");
    printf("| %5d | %7s | %9.3f | %10.4f | %8.1f | %9.3f |\n", opd_dist_size(), thr ? thr : "?",
           sec / steps, comb / steps, st.peak_rss_kb_sum / 1024.0,
           e.student.num_params * 4.0 / 1e6);
    fflush(stdout);
    opd_mb_work_free(&w);
    bench_step_setup_free(&e);
    return 0;
}

/* the tree's communication for N fp32 parameters on R ranks (R a power of
 * two): log2 R levels up (a pair exchanges one gradient per level, the
 * pairs of a level in parallel) and a binomial broadcast of log2 R levels
 * down; the critical path moves 2 log2(R) gradients. Rollouts never move:
 * every rank samples its own from the step's keys. */
static void paper_projection(double N) {
    const double G = 4.0 * N;   /* bytes of one fp32 gradient */
    const double bw[2] = {25e9, 100e9 / 8};
    const char *bwn[2] = {"25 GB/s", "100 Gb/s"};
    printf("\nOn paper: the combination for the paper's 1.5B student, N = %.3g parameters,\n"
           "gradient G = 4 N = %.2f GB (fp32) per tree level. Per step the tree moves\n"
           "(R - 1) G up and (R - 1) G down in all; its critical path is 2 log2(R) G:\n"
           "  t_combine = 2 log2(R) x G / bandwidth     (rollouts: 0 bytes; counts: a few bytes)\n\n",
           N, G / 1e9);
    printf("| ranks | levels | bytes moved / step | critical path | t @ %-8s | t @ %-8s |\n"
           "|-------|--------|--------------------|---------------|---------------|---------------|\n",
           bwn[0], bwn[1]);
    const int Rs[3] = {2, 8, 64};
    for (int i = 0; i < 3; i++) {
        int R = Rs[i], L = (int)round(log2(R));
        double total = 2.0 * (R - 1) * G, path = 2.0 * L * G;
        printf("| %5d | %6d | %15.1f GB | %10.1f GB | %11.2f s | %11.2f s |\n", R, L, total / 1e9,
               path / 1e9, path / bw[0], path / bw[1]);
    }
    printf("\nThe rollout and scoring work per rank falls as 1/R (M/R micro-batches each); the\n"
           "combination grows as log2(R), so it pays while the step's compute on one rank is\n"
           "well above t_combine.\n");
}

int opd_bench_scale(int argc, char **argv) {
    static const struct option opts[] = {
        {"steps", required_argument, 0, 'n'}, {"batch", required_argument, 0, 'B'},
        {"max-new-tokens", required_argument, 0, 'T'}, {"params", required_argument, 0, 'N'},
        {"child", no_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int steps = 3, B = 8, T = 32, child = 0;
    float N = 1.54e9f;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:B:T:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': if (cli_int("bench", "steps", optarg, 1, 1000, &steps)) return 2; break;
        case 'B': if (cli_int("bench", "batch", optarg, 2, 4096, &B)) return 2; break;
        case 'T': if (cli_int("bench", "max-new-tokens", optarg, 1, 4096, &T)) return 2; break;
        case 'N': if (cli_float("bench", "params", optarg, 1, 1e13, &N)) return 2; break;
        case 'c': child = 1; break;
        case 'h':
            printf("Usage: opd bench scale [--steps N (3)] [--batch B (8, even)] [--max-new-tokens T (32)]\n"
                   "                      [--params N (1.54e9, the projection's model)]\n"
                   "1 rank x 2 threads against 2 ranks x 1 thread (mpirun, an --with-mpi build) on\n"
                   "one step in 2 micro-batches: seconds per step, seconds combining gradients;\n"
                   "then the combination's cost at 8 and 64 ranks on paper.\n");
            return 0;
        default: return cli_usage_error("bench");
        }
    }
    if (B % 2) { fprintf(stderr, "opd bench scale: --batch must be even (2 micro-batches)\n"); return 2; }
    if (child) return scale_child(B, T, steps);

    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) { fprintf(stderr, "opd bench scale: cannot find this binary\n"); return 1; }
    self[n] = '\0';
    printf("opd bench scale: bench_common.h's pair, batch %d in 2 micro-batches of %d, T = %d, %d steps\n\n"
           "| ranks | threads | s / step  | combine s  | RSS MiB  | grad MB   |   (RSS: summed over ranks)\n"
           "|-------|---------|-----------|------------|----------|-----------|\n", B, B / 2, T, steps);
    fflush(stdout);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=2 '%s' bench scale --child --steps %d --batch %d --max-new-tokens %d",
             self, steps, B, T);
    int rc = system(cmd);
    if (opd_dist_have_mpi()) {
        snprintf(cmd, sizeof cmd,
                 "OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 "
                 "--oversubscribe --bind-to none --mca btl self,vader -x OMP_NUM_THREADS '%s' bench scale "
                 "--child --steps %d --batch %d --max-new-tokens %d", self, steps, B, T);
        if (rc == 0) rc = system(cmd);
    } else {
        printf("|     2 |       1 | (this opd was built without MPI: ./configure --with-mpi) |\n");
    }
    paper_projection(N);
    return rc == 0 ? 0 : 1;
}
