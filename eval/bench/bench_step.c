/* bench_step.c — `opd bench step`: one OPD step on a small teacher/student
 * pair at H_k = T, 0.25 T and 0.1 T: seconds per phase and peak memory.
 *
 * Each horizon runs in its own process (this binary re-executed with
 * --rho), because a process's peak RSS can only grow: measuring the three in
 * one process would report the largest for all. */
#include "bench.h"
#include "cli.h"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* One horizon, in this process: prints one table row. */
static int bench_one(const bench_cfg *b) {
    bench_step_setup e;
    if (bench_step_setup_init(&e, b->V, b->B, b->P, b->max_new_tokens, b->rho) != 0) return cli_fail("bench");

    opd_step_work w;
    memset(&w, 0, sizeof w);
    double sum[4] = {0};
    opd_step_stats st;
    int H = 0;
    for (int k = 0; k <= b->steps; k++) {   /* step 0 is a warm-up, not timed */
        if (opd_distill_step(&e.student, &e.teacher, &e.opt, &e.dc, e.prompts, e.pad, e.ids, b->B, b->P, k, &w, &st) != 0)
            return cli_fail("bench");
        H = st.horizon;
        if (k == 0) continue;
        sum[0] += st.sec_rollout; sum[1] += st.sec_teacher;
        sum[2] += st.sec_student; sum[3] += st.sec_optim;
    }
    double n = b->steps;
    double total = (sum[0] + sum[1] + sum[2] + sum[3]) / n;
    printf("| %5.2f | %4d | %8.3f | %8.3f | %8.3f | %8.3f | %8.3f | %9.1f |\n", b->rho, H,
           sum[0] / n, sum[1] / n, sum[2] / n, sum[3] / n, total, opd_peak_rss_kb() / 1024.0);
    fflush(stdout);
    opd_step_work_free(&w);
    bench_step_setup_free(&e);
    return 0;
}

int opd_bench_step(int argc, char **argv) {
    static const struct option opts[] = {
        {"device", required_argument, 0, 'D'},
        {"rho", required_argument, 0, 'r'},
        {"steps", required_argument, 0, 'n'},
        {"max-new-tokens", required_argument, 0, 'T'},
        {"horizon", required_argument, 0, 'H'},   /* the old name of --max-new-tokens */
        {"batch", required_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    /* the pair: student d=128 L=4 ffn 512, teacher d=256 L=6 ffn 1024 */
    bench_cfg b = {.B = 16, .P = 32, .max_new_tokens = 256, .steps = 2, .V = 64, .rho = -1};
    int c, cuda = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': if (cli_float("bench step", "rho", optarg, 0.001, 1, &b.rho)) return 2; break;
        case 'n': if (cli_int("bench step", "steps", optarg, 1, 1000, &b.steps)) return 2; break;
        case 'H': cli_deprecated("bench step", "--horizon", "--max-new-tokens"); /* fall through */
        case 'T': if (cli_int("bench step", "max-new-tokens", optarg, 1, 1 << 16, &b.max_new_tokens)) return 2; break;
        case 'B': if (cli_int("bench step", "batch", optarg, 1, 4096, &b.B)) return 2; break;
        case 'D':   /* cuda: the GPU step next to this CPU one, in bench_step_cuda.c */
            if (!strcmp(optarg, "cuda")) cuda = 1;
            else if (strcmp(optarg, "cpu")) { fprintf(stderr, "opd bench step: --device: '%s' is not cpu or cuda\n", optarg); return 2; }
            break;
        case 'h':
            printf("Usage: opd bench step [--rho R] [--steps N] [--max-new-tokens T] [--batch B] [--device cpu|cuda]\n"
                   "One OPD step (student d=128 L=4, teacher d=256 L=6, V=64, prompt 32):\n"
                   "seconds per phase and peak RSS, at H_k = T, 0.25 T, 0.1 T (or only --rho R).\n"
                   "--device cuda: the GPU step next to the CPU reference: seconds per step, the GPU's\n"
                   "phases, the speed-up, and whether step 0 sampled the same tokens on both.\n");
            return 0;
        default: return cli_usage_error("bench step");
        }
    }
    if (cuda) return opd_bench_step_cuda(&b);
    if (b.rho > 0) return bench_one(&b);

    printf("OPD step, batch %d, prompt %d, T = %d, mean of %d steps after a warm-up, %s matmul\n",
           b.B, b.P, b.max_new_tokens, b.steps, opd_matmul_backend_name(opd_matmul_get_backend()));
    printf("| rho   |  H   | rollout  | teacher  | student  | optim    | total s  | peak MiB  |\n");
    printf("|-------|------|----------|----------|----------|----------|----------|-----------|\n");
    fflush(stdout);
    static const char *rhos[] = {"1", "0.25", "0.1"};
    char steps[16], max_new_tokens[16], B[16];
    snprintf(steps, sizeof steps, "%d", b.steps);
    snprintf(max_new_tokens, sizeof max_new_tokens, "%d", b.max_new_tokens);
    snprintf(B, sizeof B, "%d", b.B);
    for (int i = 0; i < 3; i++) {
        /* a fresh process per horizon: see the comment at the top */
        char *args[] = {"opd", "bench", "step", "--rho", (char *)rhos[i], "--steps", steps,
                        "--max-new-tokens", max_new_tokens, "--batch", B, NULL};
        pid_t pid;
        if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, environ) != 0) {
            perror("opd bench step: posix_spawn");
            return 1;
        }
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    }
    return 0;
}
