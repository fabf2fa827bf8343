/* grpo.h — GRPO-style reinforcement learning on a verifiable reward: the
 * group-normalised advantage and the policy-gradient loss on a rollout
 * (issue 18 item 3: `opd rl`, the paper-like teacher and the RLVR baseline).
 *
 * One RL step (opd_rl_step below, ref/rl_step.c, ref/SPEC.md section 6b)
 * reuses the OPD step's machinery, with the teacher replaced by the verifier:
 *   1. draw P prompts and G samples of each (opd_rollout_sample with
 *      samples = G: rows b = p * G + g, the layout below);
 *   2. reward r_b = opd_task_verify(prompt, decoded rollout) (1 or 0);
 *   3. A = opd_grpo_advantages(r, P, G) — no critic, the group is the baseline;
 *   4. student forward on [x; y], opd_pg_loss(logits, y, mask, A) in place of
 *      opd_distill_loss, backward, clip, AdamW (as opd_distill_step).
 *
 * What is left out, and why it changes nothing here: the PPO ratio and its
 * clip (one gradient step per rollout batch, so the ratio is exactly 1 and the
 * clipped objective has this gradient) and the KL penalty to a reference
 * model (beta = 0, as Dr. GRPO and DAPO; the reward is exact, there is no
 * reward model to over-optimise).
 */
#ifndef OPD_GRPO_H
#define OPD_GRPO_H

#include "opd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* TRL's default: keeps a nearly-constant group from blowing up */
#define OPD_GRPO_EPS 1e-4f

/* Group-normalised advantages. rewards (P, G): G completions of each of P
 * prompts, a group's rows contiguous. For each group
 *   A_i = (r_i - mean) / (std + eps),
 * mean and std over the group's G rewards, std the SAMPLE standard deviation
 * (divisor G - 1, as torch.std and TRL's GRPOTrainer), in double. A group
 * whose rewards are all equal (all solved, or none) carries no signal: its
 * advantages are exactly 0, and so is every advantage when G = 1. Writes
 * adv (P, G); returns 0, or -1 on G < 1, P < 0, eps < 0 or a non-finite
 * reward (adv zeroed). */
int opd_grpo_advantages(const float *rewards, int P, int G, float eps, float *adv);

/* Policy-gradient token loss on a rollout. logits (B, H, V) predict the H
 * rollout tokens y (B, H); mask (B, H) as the distillation losses' (1 on
 * generated tokens, EOS included); adv (B) one advantage per sequence.
 *   loss = - sum_{b,t} m_bt A_b log softmax(logits_bt)[y_bt] / sum m
 * the token mean over every masked position of the batch, the reduction of
 * opd_distill_loss's default (so an RL and an OPD step weigh tokens alike).
 * Writes dlogits (B, H, V) = d loss / d logits (overwrites; 0 on unmasked
 * rows), may be NULL. Rows run in parallel, one thread each; the sum is in
 * double in row order, so the result does not depend on the thread count.
 * No masked token: loss 0, gradient 0. Errors (a masked token outside
 * [0, V), a mask that is not a finite weight >= 0, a non-finite advantage)
 * return NaN with opd_last_error() set and dlogits zeroed. */
float opd_pg_loss(const float *logits, const int *y, const float *mask,
                  const float *adv, int B, int H, int V, float *dlogits);

/* ------------------------------------------------------------ one RL step */
typedef struct {
    opd_rollout_config rollout;  /* sampler, eos/pad ids, seed (step set per call) */
    int max_new_tokens;          /* T: every rollout runs to the full horizon */
    int group;                   /* G samples of each prompt */
} opd_rl_config;

typedef struct {
    long step;                   /* k */
    float mean_reward;           /* over the B = n_prompts * G rollouts */
    float groups_with_signal;    /* fraction of groups whose rewards are not all equal */
    long tokens;                 /* generated tokens in the loss mask */
    int truncated;               /* rollouts cut by T before EOS */
    int trained_len;             /* longest rollout of the batch (<= T) */
    float loss, grad_norm, lr;
    double sec_rollout, sec_reward, sec_student, sec_optim;
    long peak_rss_kb;
} opd_rl_stats;

/* The verifier, the caller's (ref/ knows no task): rewards (B) of the rows
 * of rollout r, B = n_prompts * G, rows b = p * G + g. Returns 0 or -1. */
typedef int (*opd_reward_fn)(void *ctx, const opd_rollout *r, float *rewards);

/* The policy-gradient loss on the step's views (sb, w->s_logits from
 * opd_step_student_forward), its dlogits scattered to (B, S, V), and the
 * student backward into freshly zeroed gradients. adv (B). Returns the loss
 * (NaN on an error, opd_last_error set). */
float opd_rl_loss_backward(opd_model *student, const opd_step_batch *sb, const float *adv,
                           opd_step_work *w);

/* One GRPO step (ref/SPEC.md section 6b) on B = n_prompts * c->group
 * left-padded prompts (B, P), each prompt repeated in its G rows: roll out
 * the student to T, reward every rollout, A = opd_grpo_advantages, student
 * forward + backward of opd_pg_loss, clip, AdamW (the OPD step's stages).
 * seq_ids (B) key the sampler as in opd_distill_step. Returns 0 or -1. */
int opd_rl_step(opd_model *student, opd_adamw *opt, const opd_rl_config *c,
                const int *prompts, const int *pad, const uint32_t *seq_ids, int n_prompts, int P,
                long k, opd_reward_fn reward, void *ctx, opd_step_work *w, opd_rl_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* OPD_GRPO_H */
