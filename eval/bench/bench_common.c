/* bench_common.c — see bench_common.h. */
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>

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

int bench_step_setup_init(bench_step_setup *s, int V, int B, int P, int max_new_tokens, float rho) {
    memset(s, 0, sizeof *s);
    opd_config sc, tc;
    bench_model_config(&sc, V, 128, 4, 4, 512, P + max_new_tokens);
    bench_model_config(&tc, V, 256, 6, 8, 1024, P + max_new_tokens);
    if (opd_model_init(&s->student, &sc) != 0) return -1;
    if (opd_model_init(&s->teacher, &tc) != 0) { opd_model_free(&s->student); return -1; }
    opd_model_init_random(&s->student, 1);
    opd_model_init_random(&s->teacher, 2);
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    opd_adamw_init(&s->opt, &oc, s->student.num_params);
    opd_distill_config_default(&s->dc, max_new_tokens);
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
