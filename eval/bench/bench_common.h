/* bench_common.h — what several benchmarks share: the benchmark models and
 * the setup of one benchmarked OPD step (bench_common.c, which calls no
 * other benchmark). */
#ifndef OPD_BENCH_COMMON_H
#define OPD_BENCH_COMMON_H

#include "opd.h"

/* A benchmark model: vocabulary V, width d, l layers of h heads (no GQA),
 * SwiGLU hidden size f, max_seq positions; the rest opd_config_default's.
 * The issue-8 pair is (128, 4, 4, 512) and (256, 6, 8, 1024). */
void bench_model_config(opd_config *c, int V, int d, int l, int h, int f, int max_seq);

/* Everything one benchmarked OPD step needs, built the same way by
 * `opd bench step`, `opd bench step --device cuda` and `opd bench targets`:
 * the issue-8 pair with random weights (seeds 1 and 2), AdamW defaults, the
 * full horizon T = max_new_tokens, a step horizon H_k = ceil(rho * T) (rho
 * >= 1: the full T) with no EOS, so every rollout runs to H_k and the
 * step's cost is H_k's, and B random prompts of P tokens without padding. */
/* `opd bench step`'s settings, parsed once by bench_step.c (rho <= 0: all three) */
typedef struct {
    int B, P, max_new_tokens, steps, V;   /* max_new_tokens: the full horizon T */
    float rho;
} bench_cfg;

typedef struct {
    opd_model student, teacher;
    opd_adamw opt;
    opd_distill_config dc;
    int B, P;
    int *prompts;     /* (B, P) */
    int *pad;         /* (B) zeros */
    uint32_t *ids;    /* (B) 0 .. B-1 */
} bench_step_setup;
int bench_step_setup_init(bench_step_setup *s, int V, int B, int P, int max_new_tokens, float rho);
void bench_step_setup_free(bench_step_setup *s);

/* `opd bench step --device cuda` (bench_step_cuda.c), after bench_step.c parsed the options */
int opd_bench_step_cuda(const bench_cfg *b);

#endif
