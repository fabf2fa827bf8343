/* bench_step_cuda.c — `opd bench step --device cuda`: one OPD step on the GPU
 * (opd_cuda_distill_step) next to the CPU reference (opd_distill_step), on
 * the pair and batch of bench_step.c (bench_common.c), at H_k = T, 0.25 T and 0.1 T: seconds
 * per step on each, the speed-up, and whether the first step sampled the
 * same tokens on both (it should: the sampler is keyed by (seed, step, seq,
 * pos), and both start from the same weights).
 *
 * Kept apart from bench_step.c so that the CPU benchmark has no CUDA code;
 * in a build without CUDA this only says so. */
#include "config.h"
#include "bench.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OPD_HAVE_CUDA
#include "opd_cuda.h"
#endif

#ifndef OPD_HAVE_CUDA
int opd_bench_step_cuda(const bench_cfg *b) {
    (void)b;
    fprintf(stderr, "opd bench step: --device cuda: this opd was built without CUDA: ./configure --with-cuda\n");
    return 2;
}
#else


typedef struct {
    double sec[4];      /* rollout, teacher, student, optim: mean per timed step */
    int H;
    int *tokens0;       /* (B, P + H) the rollout of step 0 */
    float loss0;
} bench_result;

/* warm-up step 0 (not timed, its rollout kept), then `steps` timed steps */
static int run(const bench_cfg *b, opd_cuda *cu, bench_result *res) {
    bench_step_setup e;
    if (bench_step_setup_init(&e, b->V, b->B, b->P, b->max_new_tokens, b->rho) != 0) return -1;

    opd_step_work w;
    opd_cuda_step_work cw;
    memset(&w, 0, sizeof w);
    memset(&cw, 0, sizeof cw);
    opd_cuda_model ds, dt;
    opd_cuda_adamw dopt;
    memset(&ds, 0, sizeof ds);
    memset(&dt, 0, sizeof dt);
    memset(&dopt, 0, sizeof dopt);
    int rc = 0;
    if (cu && (opd_cuda_model_init(cu, &ds, &e.student) != 0 || opd_cuda_model_init(cu, &dt, &e.teacher) != 0 ||
               opd_cuda_adamw_init(cu, &dopt, &e.opt) != 0))
        rc = -1;
    memset(res, 0, sizeof *res);
    for (int k = 0; k <= b->steps && rc == 0; k++) {
        opd_step_stats st;
        if (cu) rc = opd_cuda_distill_step(cu, &ds, &dt, &dopt, &e.dc, e.prompts, e.pad, e.ids, b->B, b->P, k, &cw, &st);
        else rc = opd_distill_step(&e.student, &e.teacher, &e.opt, &e.dc, e.prompts, e.pad, e.ids, b->B, b->P, k, &w, &st);
        if (rc != 0) break;
        res->H = st.horizon;
        if (k == 0) {
            const opd_rollout *r = cu ? &cw.roll : &w.roll;
            size_t n = (size_t)b->B * (b->P + st.horizon);
            res->tokens0 = opd_malloc(n * sizeof(int));
            memcpy(res->tokens0, r->tokens, n * sizeof(int));
            res->loss0 = st.loss;
            continue;
        }
        res->sec[0] += st.sec_rollout / b->steps;
        res->sec[1] += st.sec_teacher / b->steps;
        res->sec[2] += st.sec_student / b->steps;
        res->sec[3] += st.sec_optim / b->steps;
    }
    opd_cuda_step_work_free(&cw);
    opd_cuda_adamw_free(&dopt);
    opd_cuda_model_free(&ds);
    opd_cuda_model_free(&dt);
    opd_step_work_free(&w);
    bench_step_setup_free(&e);
    return rc;
}

static int bench_rho(const bench_cfg *b, opd_cuda *cu) {
    bench_result cpu, gpu;
    if (run(b, NULL, &cpu) != 0) return -1;
    if (run(b, cu, &gpu) != 0) { free(cpu.tokens0); return -1; }
    size_t n = (size_t)b->B * (b->P + cpu.H), diff = 0;
    for (size_t i = 0; i < n; i++) diff += cpu.tokens0[i] != gpu.tokens0[i];
    double tc = cpu.sec[0] + cpu.sec[1] + cpu.sec[2] + cpu.sec[3];
    double tg = gpu.sec[0] + gpu.sec[1] + gpu.sec[2] + gpu.sec[3];
    char same[32];
    if (diff == 0) snprintf(same, sizeof same, "identical");
    else snprintf(same, sizeof same, "%zu differ", diff);
    printf("| %5.2f | %4d | %8.3f | %8.3f | %8.3f | %8.3f | %8.3f | %8.3f | %7.1fx | %-10s | %.3g / %.3g |\n",
           b->rho, cpu.H, tc, gpu.sec[0], gpu.sec[1], gpu.sec[2], gpu.sec[3], tg, tc / tg, same,
           cpu.loss0, gpu.loss0);
    fflush(stdout);
    free(cpu.tokens0);
    free(gpu.tokens0);
    return 0;
}

int opd_bench_step_cuda(const bench_cfg *cfg) {
    const bench_cfg b = *cfg;
    char why[256];
    if (!opd_cuda_available(why, sizeof why)) {
        fprintf(stderr, "opd bench step: --device cuda: no usable GPU (opd_cuda_available: %s)\n", why);
        return 1;
    }
    opd_cuda *cu;
    if (opd_cuda_create(&cu, 0) != 0) return cli_fail("bench step");
    printf("OPD step on the GPU (%s) vs the CPU reference (%s matmul), batch %d, prompt %d, T = %d,\n"
           "mean of %d steps after a warm-up; GPU phases include a stream synchronisation\n",
           why, opd_matmul_backend_name(opd_matmul_get_backend()), b.B, b.P, b.max_new_tokens, b.steps);
    printf("| rho   |  H   | cpu s    | gpu roll | gpu tea. | gpu stu. | gpu opt. | gpu s    | speed-up | step-0 tokens | loss0 cpu / gpu |\n");
    printf("|-------|------|----------|----------|----------|----------|----------|----------|----------|------------|-----------------|\n");
    static const float rhos[] = {1.0f, 0.25f, 0.1f};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (b.rho > 0 && i > 0) break;
        bench_cfg one = b;
        if (b.rho <= 0) one.rho = rhos[i];
        rc = bench_rho(&one, cu);
    }
    opd_cuda_destroy(cu);
    return rc == 0 ? 0 : cli_fail("bench step");
}
#endif
