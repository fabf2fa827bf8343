/* harness.h — batches of task problems as model inputs, and the evaluation
 * harness (exact-match accuracy decoding to the full horizon). */
#ifndef OPD_HARNESS_H
#define OPD_HARNESS_H

#include "opd.h"
#include "opd_data.h"

/* Prompts [<bos> prompt] of tasks idx[0..B) left-padded to the longest:
 * prompts (B, P), pad (B). Caller frees both. */
void harness_prompt_batch(const opd_tokenizer *tok, const opd_task *tasks,
                          const int *idx, int B, int **prompts, int **pad, int *P);
/* SFT sequences [<bos> prompt solution <eos>] left-padded to the longest:
 * tokens (B, S), pad (B), loss_mask (B, S) = 1 where position t predicts a
 * solution or <eos> token. Caller frees all three. */
void harness_sft_batch(const opd_tokenizer *tok, const opd_task *tasks,
                       const int *idx, int B, int **tokens, int **pad,
                       float **loss_mask, int *S);
/* The default full horizon T (max new tokens) of a dataset: the longest
 * reference solution + <eos>. */
int harness_max_new_tokens(const opd_task *tasks, int n);
/* The task's character tokenizer against model m (from path): the vocab
 * sizes must be equal, else an error naming the file and how a real model
 * is run instead (HARNESS_TEXT_HINT). */
int harness_check_vocab(const opd_model *m, const char *path, int tok_vocab);
#define HARNESS_TEXT_HINT " (a model with its own tokenizer takes --prompts FILE.jsonl --tokenizer tokenizer.json)"
/* Indices of a training batch for step k: keyed draws, independent of
 * anything but (seed, k), so a resumed run sees the same batches. */
void harness_draw_batch(uint64_t seed, long k, int n_tasks, int B, int *idx);

/* The task's verifiable reward of a rollout's rows: rewards (r->B) = 1 when
 * row b's decoded text verifies against the prompt of tasks[idx[b]]
 * (opd_task_verify, as the evaluation scores), else 0. Returns 0. */
int harness_rollout_rewards(const opd_tokenizer *tok, const opd_task *tasks, const int *idx,
                            const opd_rollout *r, float *rewards);

typedef struct {
    int n;                 /* problems */
    int k;                 /* samples per problem (1 greedy) */
    double acc;            /* pass@1 (greedy) or avg@k (sampled) */
    double mean_len;       /* mean generated tokens, <eos> included */
    double truncated_frac; /* rollouts cut by the horizon */
    int count_by_steps[OPD_TASK_MAX_STEPS + 1];
    double correct_by_steps[OPD_TASK_MAX_STEPS + 1];   /* summed over samples / k */
    double seconds;
} harness_eval_result;

/* Decode every problem to max_new_tokens (greedy when s->temperature == 0,
 * else k samples keyed by (seed, problem * k + j)) and score exact match. */
int harness_evaluate(const opd_model *m, const opd_tokenizer *tok,
                     const opd_task *tasks, int n, int max_new_tokens, int batch,
                     const opd_sampler_config *s, int k, uint64_t seed,
                     harness_eval_result *r);

/* Teacher accuracy from the student's prefix, by position (issue 18 item 5;
 * ref/SPEC.md section 11): the student decodes problems 0..n-1 greedily to
 * max_new_tokens T; for each bucket start p = j * width < T the teacher
 * continues greedily, for at most T - p tokens, from the prompt and the
 * student's first min(p, L) tokens (L: the student's output without its
 * <eos>; a student that stopped before p hands over its whole answer), and
 * prefix + continuation is verified exactly. student_acc: the student's own
 * pass@1; teacher_acc (ceil(T / width)): per bucket start. Greedy, so no
 * draw depends on the seed. */
int harness_reliability(const opd_model *student, const opd_model *teacher, const opd_tokenizer *tok,
                        const opd_task *tasks, int n, int max_new_tokens, int width,
                        double *student_acc, double *teacher_acc);

#endif
