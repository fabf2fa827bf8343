/* bench_step.c — `opd bench step`: one OPD step on a small teacher/student
 * pair at H = T, 0.25 T and 0.1 T: seconds per phase and peak memory.
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

typedef struct {
    int B, P, T, steps, V;
    float rho;
} bench_cfg;

void bench_model_config(opd_config *c, int V, int d, int l, int h, int f, int max_seq) {
    opd_config_default(c);
    c->vocab_size = V;
    c->d_model = d;
    c->n_layers = l;
    c->n_heads = h;
    c->n_kv_heads = h;
    c->d_ff = f;
    c->max_seq_len = max_seq;
}

int bench_step_setup_init(bench_step_setup *s, int V, int B, int P, int T, float rho) {
    memset(s, 0, sizeof *s);
    opd_config sc, tc;
    bench_model_config(&sc, V, 128, 4, 4, 512, P + T);
    bench_model_config(&tc, V, 256, 6, 8, 1024, P + T);
    if (opd_model_init(&s->student, &sc) != 0) return -1;
    if (opd_model_init(&s->teacher, &tc) != 0) { opd_model_free(&s->student); return -1; }
    opd_model_init_random(&s->student, 1);
    opd_model_init_random(&s->teacher, 2);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    opd_adamw_init(&s->opt, &oc, s->student.num_params);
    opd_distill_config_default(&s->dc, T);
    s->dc.schedule.kind = rho >= 1.0f ? OPD_SCHED_FULL : OPD_SCHED_TRUNCATED;
    s->dc.schedule.rho = rho;
    s->dc.rollout.eos_id = -1;
    s->B = B;
    s->P = P;
    s->prompts = opd_malloc(sizeof(int) * B * P);
    s->pad = opd_calloc(B, sizeof(int));
    s->ids = opd_malloc(sizeof(uint32_t) * B);
    for (int i = 0; i < B * P; i++) s->prompts[i] = 3 + (int)(opd_uniform(9, 0, 0, i, 0) * (V - 3));
    for (int i = 0; i < B; i++) s->ids[i] = i;
    return 0;
}

void bench_step_setup_free(bench_step_setup *s) {
    free(s->prompts); free(s->pad); free(s->ids);
    opd_adamw_free(&s->opt);
    opd_model_free(&s->student);
    opd_model_free(&s->teacher);
    memset(s, 0, sizeof *s);
}

/* One horizon, in this process: prints one table row. */
static int bench_one(const bench_cfg *b) {
    bench_step_setup e;
    if (bench_step_setup_init(&e, b->V, b->B, b->P, b->T, b->rho) != 0) return cli_fail("bench");

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

int opd_bench_step_cuda(int argc, char **argv);   /* bench_step_cuda.c */

int opd_bench_step(int argc, char **argv) {
    static const struct option opts[] = {
        {"device", required_argument, 0, 'D'},
        {"rho", required_argument, 0, 'r'},
        {"steps", required_argument, 0, 'n'},
        {"horizon", required_argument, 0, 'T'},
        {"batch", required_argument, 0, 'B'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    /* the pair: student d=128 L=4 ffn 512, teacher d=256 L=6 ffn 1024 */
    bench_cfg b = {.B = 16, .P = 32, .T = 256, .steps = 2, .V = 64, .rho = -1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': if (cli_float("bench step", "rho", optarg, 0.001, 1, &b.rho)) return 2; break;
        case 'n': if (cli_int("bench step", "steps", optarg, 1, 1000, &b.steps)) return 2; break;
        case 'T': if (cli_int("bench step", "horizon", optarg, 1, 1 << 16, &b.T)) return 2; break;
        case 'B': if (cli_int("bench step", "batch", optarg, 1, 4096, &b.B)) return 2; break;
        case 'D':   /* cuda: the GPU step next to this CPU one, in bench_step_cuda.c */
            if (!strcmp(optarg, "cuda")) return opd_bench_step_cuda(argc, argv);
            if (strcmp(optarg, "cpu")) { fprintf(stderr, "opd bench step: --device: '%s' is not cpu or cuda\n", optarg); return 2; }
            break;
        case 'h':
            printf("Usage: opd bench step [--rho R] [--steps N] [--horizon T] [--batch B] [--device cpu|cuda]\n"
                   "One OPD step (student d=128 L=4, teacher d=256 L=6, V=64, prompt 32):\n"
                   "seconds per phase and peak RSS, at H = T, 0.25 T, 0.1 T (or only --rho R).\n");
            return 0;
        default: return cli_usage_error("bench step");
        }
    }
    if (b.rho > 0) return bench_one(&b);

    printf("OPD step, batch %d, prompt %d, T = %d, mean of %d steps after a warm-up, %s matmul\n",
           b.B, b.P, b.T, b.steps, opd_matmul_backend_name(opd_matmul_get_backend()));
    printf("| rho   |  H   | rollout  | teacher  | student  | optim    | total s  | peak MiB  |\n");
    printf("|-------|------|----------|----------|----------|----------|----------|-----------|\n");
    fflush(stdout);
    static const char *rhos[] = {"1", "0.25", "0.1"};
    char steps[16], T[16], B[16];
    snprintf(steps, sizeof steps, "%d", b.steps);
    snprintf(T, sizeof T, "%d", b.T);
    snprintf(B, sizeof B, "%d", b.B);
    for (int i = 0; i < 3; i++) {
        /* a fresh process per horizon: see the comment at the top */
        char *args[] = {"opd", "bench", "step", "--rho", (char *)rhos[i], "--steps", steps,
                        "--horizon", T, "--batch", B, NULL};
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
