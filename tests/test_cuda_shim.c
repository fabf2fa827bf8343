/* test_cuda_shim.c — the GPU step driver (gpu/model_cuda.c, gpu/step_cuda.c)
 * run WITHOUT a GPU, on tests/cuda_host_shim.c, which implements every
 * opd_cuda_* kernel with the CPU reference on host memory.
 *
 * This tests the ORCHESTRATION of the CUDA path — the order of the kernel
 * calls, buffer sizes, offsets and strides, the rollout's EOS/mask
 * bookkeeping, the gather/scatter of the rollout rows, the optimizer wiring
 * — against the golden step and against opd_distill_step. It does NOT test
 * the CUDA kernels (the .cu files of gpu/): only tests/gpu_check on a GPU does that.
 * Because the emulated kernels are the reference's own functions, the
 * driver must reproduce the golden files within the manifest's tolerances
 * (and in practice bit for bit), and opd_distill_step bit for bit. */
#include "testutil.h"

#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "gpu_golden.h"
#include "opd.h"
#include "opd_cuda.h"

extern long opd_cuda_shim_live_allocs;   /* cuda_host_shim.c */

static char golden_dir[4096];
static char tmpdir[256];
static opd_cuda *cu;

static void find_golden_dir(void) {
    const char *env = getenv("OPD_SRCDIR");
    if (env && *env) snprintf(golden_dir, sizeof golden_dir, "%s/golden", env);
    else snprintf(golden_dir, sizeof golden_dir, "golden");
}

/* The candidate against the golden file: manifest tolerances (asserted) and
 * zero tolerance (printed: how many tensors are bit-identical). */
static void check_against_golden(const char *file, const char *cand) {
    char ref[4400];
    snprintf(ref, sizeof ref, "%s/%s", golden_dir, file);
    int np = 0, nf = 0, xp = 0, xf = 0;
    opd_golden_check_opts o = {.quiet = 1, .out = stdout};
    printf("\n");
    int rc = opd_golden_check(ref, cand, &o, &np, &nf);
    if (rc < 0) printf("  checker error: %s\n", opd_last_error());
    CU_ASSERT(rc == 0);
    CU_ASSERT(nf == 0);
    CU_ASSERT(np > 50);
    opd_golden_check_opts exact = {.exact = 1, .quiet = 1, .out = NULL};
    opd_golden_check(ref, cand, &exact, &xp, &xf);
    printf("  %s: %d tensors within the manifest's tolerances, %d failed; bit-identical: %d of %d\n",
           file, np, nf, xp, xp + xf);
}

static void test_golden_layers(void) {
    char cand[400], ref[4400];
    snprintf(cand, sizeof cand, "%s/%s", tmpdir, OPD_GOLDEN_LAYERS_FILE);
    snprintf(ref, sizeof ref, "%s/%s", golden_dir, OPD_GOLDEN_LAYERS_FILE);
    printf("\n");
    int rc = gpu_golden_layers(cu, ref, cand, stdout);
    if (rc != 0) printf("  %s\n", opd_last_error());
    CU_ASSERT_FATAL(rc == 0);
    check_against_golden(OPD_GOLDEN_LAYERS_FILE, cand);
    CU_ASSERT(opd_cuda_shim_live_allocs == 0);
}

static void test_golden_step(void) {
    char cand[400], ref[4400];
    snprintf(cand, sizeof cand, "%s/%s", tmpdir, OPD_GOLDEN_STEP_FILE);
    snprintf(ref, sizeof ref, "%s/%s", golden_dir, OPD_GOLDEN_STEP_FILE);
    printf("\n");
    int rc = gpu_golden_step(cu, ref, cand, stdout);
    if (rc != 0) printf("  %s\n", opd_last_error());
    CU_ASSERT_FATAL(rc == 0);
    check_against_golden(OPD_GOLDEN_STEP_FILE, cand);
    printf("  device allocations left: %ld\n", opd_cuda_shim_live_allocs);
    CU_ASSERT(opd_cuda_shim_live_allocs == 0);
}

/* Paths the golden step does not take: tied embeddings (lm_head == wte on
 * the device), no q/k/v bias, one kv head, a progressive horizon that
 * grows the work buffers, top-k/top-p sampling, a teacher temperature,
 * sequence-mean reduction, rkl-full, warmup + cosine. Three steps of the
 * driver against three of opd_distill_step: every statistic and the final
 * weights and moments must be bit-identical, since the emulated kernels are
 * the reference's functions called in the reference's order. */
static void test_driver_matches_cpu_step(void) {
    opd_config sc, tc;
    opd_config_default(&sc);
    sc.vocab_size = 23; sc.d_model = 24; sc.n_layers = 2; sc.n_heads = 4; sc.n_kv_heads = 1;
    sc.d_ff = 40; sc.max_seq_len = 40; sc.qkv_bias = 0; sc.tie_embeddings = 1;
    tc = sc;
    tc.d_model = 32; tc.n_heads = 4; tc.n_kv_heads = 2; tc.d_ff = 48; tc.n_layers = 3;
    tc.qkv_bias = 1; tc.tie_embeddings = 0;
    opd_model s_cpu, s_host, t;
    CU_ASSERT_FATAL(opd_model_init(&s_cpu, &sc) == 0);
    CU_ASSERT_FATAL(opd_model_init(&s_host, &sc) == 0);
    CU_ASSERT_FATAL(opd_model_init(&t, &tc) == 0);
    opd_model_init_random(&s_cpu, 5);
    opd_model_init_random(&t, 6);
    for (size_t i = 0; i < t.num_params; i++) t.params_mem[i] *= 6.0f;   /* a peaked teacher */
    memcpy(s_host.params_mem, s_cpu.params_mem, s_cpu.num_params * sizeof(float));

    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr_kind = OPD_LR_COSINE; oc.warmup_steps = 1; oc.total_steps = 3; oc.lr = 3e-3f;
    opd_adamw opt_cpu, opt_host;
    opd_adamw_init(&opt_cpu, &oc, s_cpu.num_params);
    opd_adamw_init(&opt_host, &oc, s_cpu.num_params);

    opd_distill_config dc;
    opd_distill_config_default(&dc, 12);
    dc.schedule.kind = OPD_SCHED_PROGRESSIVE;
    dc.schedule.H0 = 4; dc.schedule.dH = 4; dc.schedule.dk = 1;
    dc.loss.kind = OPD_LOSS_RKL_FULL;
    dc.loss.reduction = OPD_REDUCE_SEQ_MEAN;
    dc.rollout.sampler.temperature = 0.9f;
    dc.rollout.sampler.top_k = 10;
    dc.rollout.sampler.top_p = 0.95f;
    dc.rollout.eos_id = 2; dc.rollout.pad_id = 0; dc.rollout.seed = 99;
    dc.teacher_temperature = 0.8f;

    enum { B = 4, P = 7 };
    int prompts[B * P], pad[B] = {0, 3, 6, 1};
    uint32_t ids[B] = {7, 8, 9, 10};
    for (int b = 0; b < B; b++)
        for (int i = 0; i < P; i++)
            prompts[b * P + i] = i < pad[b] ? 0 : 3 + (int)(opd_uniform(3, 1, b, i, 0) * (sc.vocab_size - 3));

    opd_cuda_model ds, dt;
    opd_cuda_adamw dopt;
    CU_ASSERT_FATAL(opd_cuda_model_init(cu, &ds, &s_host) == 0);
    CU_ASSERT_FATAL(opd_cuda_model_init(cu, &dt, &t) == 0);
    CU_ASSERT_FATAL(opd_cuda_adamw_init(cu, &dopt, &opt_host) == 0);
    opd_step_work w_cpu;
    opd_cuda_step_work w_gpu;
    memset(&w_cpu, 0, sizeof w_cpu);
    memset(&w_gpu, 0, sizeof w_gpu);
    printf("\n");
    for (long k = 0; k < 3; k++) {
        opd_step_stats a, g;
        CU_ASSERT_FATAL(opd_distill_step(&s_cpu, &t, &opt_cpu, &dc, prompts, pad, ids, B, P, k, &w_cpu, &a) == 0);
        int rc = opd_cuda_distill_step(cu, &ds, &dt, &dopt, &dc, prompts, pad, ids, B, P, k, &w_gpu, &g);
        if (rc != 0) printf("  %s\n", opd_last_error());
        CU_ASSERT_FATAL(rc == 0);
        printf("  step %ld: H %d/%d trained %d/%d tokens %ld/%ld truncated %d/%d loss %.9g/%.9g "
               "rkl %.9g/%.9g |g| %.9g/%.9g lr %g/%g (cpu/driver)\n", k, a.horizon, g.horizon,
               a.trained_len, g.trained_len, a.tokens, g.tokens, a.truncated, g.truncated, a.loss,
               g.loss, a.mean_rkl, g.mean_rkl, a.grad_norm, g.grad_norm, a.lr, g.lr);
        CU_ASSERT(a.horizon == g.horizon && a.trained_len == g.trained_len);
        CU_ASSERT(a.tokens == g.tokens && a.truncated == g.truncated);
        CU_ASSERT(a.loss == g.loss && a.mean_rkl == g.mean_rkl);
        CU_ASSERT(a.grad_norm == g.grad_norm && a.lr == g.lr);
        for (int q = 0; q < OPD_KL_BUCKETS; q++)
            CU_ASSERT(memcmp(&a.kl_bucket[q], &g.kl_bucket[q], sizeof(float)) == 0);   /* NaN too */
        size_t nt = (size_t)B * (P + a.horizon);
        CU_ASSERT(memcmp(w_cpu.roll.tokens, w_gpu.roll.tokens, nt * sizeof(int)) == 0);
        CU_ASSERT(memcmp(w_cpu.roll.logprobs, w_gpu.roll.logprobs, (size_t)B * a.horizon * sizeof(float)) == 0);
    }
    CU_ASSERT(w_gpu.cap_bh >= (size_t)B * 4);   /* grown with the horizon */
    CU_ASSERT_FATAL(opd_cuda_model_download(cu, &s_host, &ds) == 0);
    CU_ASSERT_FATAL(opd_cuda_adamw_download(cu, &opt_host, &dopt) == 0);
    double dw = opd_max_abs_diff(s_cpu.params_mem, s_host.params_mem, s_cpu.num_params);
    double dm = opd_max_abs_diff(opt_cpu.m, opt_host.m, s_cpu.num_params);
    double dv = opd_max_abs_diff(opt_cpu.v, opt_host.v, s_cpu.num_params);
    printf("  after 3 steps: max |w_cpu - w_driver| %.3g, |m| %.3g, |v| %.3g, optimizer steps %ld/%ld\n",
           dw, dm, dv, opt_cpu.step, opt_host.step);
    CU_ASSERT(memcmp(s_cpu.params_mem, s_host.params_mem, s_cpu.num_params * sizeof(float)) == 0);
    CU_ASSERT(memcmp(opt_cpu.m, opt_host.m, s_cpu.num_params * sizeof(float)) == 0);
    CU_ASSERT(memcmp(opt_cpu.v, opt_host.v, s_cpu.num_params * sizeof(float)) == 0);
    CU_ASSERT(opt_cpu.step == 3 && opt_host.step == 3);
    /* the weights moved: the comparison above is not of two untouched copies */
    opd_model s0;
    CU_ASSERT_FATAL(opd_model_init(&s0, &sc) == 0);
    opd_model_init_random(&s0, 5);
    double moved = opd_max_abs_diff(s0.params_mem, s_host.params_mem, s0.num_params);
    printf("  weights moved by up to %.3g over the 3 steps\n", moved);
    CU_ASSERT(moved > 1e-4);
    opd_model_free(&s0);

    /* errors: the CPU's messages, and nothing leaks */
    opd_step_stats st;
    opd_distill_config big = dc;
    big.schedule.kind = OPD_SCHED_FULL;
    big.schedule.max_new_tokens = 40;
    CU_ASSERT(opd_cuda_distill_step(cu, &ds, &dt, &dopt, &big, prompts, pad, ids, B, P, 0, &w_gpu, &st) == -1);
    printf("  P + H > max_seq_len: %s\n", opd_last_error());
    CU_ASSERT(strstr(opd_last_error(), "exceeds max_seq_len") != NULL);
    int badpad[B] = {0, 7, 0, 0};
    opd_rollout r;
    CU_ASSERT(opd_cuda_rollout_sample(cu, &ds, prompts, badpad, ids, B, P, 4, &dc.rollout, &r) == -1);
    printf("  pad = prompt length: %s\n", opd_last_error());
    CU_ASSERT(strstr(opd_last_error(), "sequence 1 has pad 7") != NULL);

    opd_cuda_step_work_free(&w_gpu);
    opd_step_work_free(&w_cpu);
    opd_cuda_adamw_free(&dopt);
    opd_cuda_model_free(&ds);
    opd_cuda_model_free(&dt);
    printf("  device allocations left: %ld\n", opd_cuda_shim_live_allocs);
    CU_ASSERT(opd_cuda_shim_live_allocs == 0);
    opd_adamw_free(&opt_cpu);
    opd_adamw_free(&opt_host);
    opd_model_free(&s_cpu);
    opd_model_free(&s_host);
    opd_model_free(&t);
}

int main(void) {
    find_golden_dir();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/opd_cuda_shim_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    printf("GPU step driver on the host emulation of the CUDA API (no GPU, no CUDA kernel runs):\n"
           "this checks the driver's orchestration, not the kernels. golden files: %s\n", golden_dir);
    if (opd_cuda_create(&cu, 0) != 0) return 1;
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {
        {"golden layers through the opd_cuda_* API (emulated)", test_golden_layers},
        {"golden step through opd_cuda_distill_step (emulated kernels)", test_golden_step},
        {"driver == opd_distill_step over 3 steps (tied, GQA 4/1, POPD, top-k/p)", test_driver_matches_cpu_step},
        {NULL, NULL}};
    opd_test_suite("cuda driver on the host shim", cases);
    int rc = opd_test_run();
    opd_cuda_destroy(cu);
    char path[400];
    snprintf(path, sizeof path, "%s/%s", tmpdir, OPD_GOLDEN_LAYERS_FILE);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", tmpdir, OPD_GOLDEN_STEP_FILE);
    unlink(path);
    rmdir(tmpdir);
    return rc;
}
