/* cmd_rl.c — `opd rl`: GRPO on the task's verifiable reward (ref/grpo.h,
 * ref/SPEC.md section 6b). The options mirror `opd distill`'s; the loop is
 * distill_run.c's with opd_rl_step in place of the distillation step, and
 * the evaluation, eval.csv, the checkpoint and --resume are distill's own
 * (distill.h), so an RL run's files read like an OPD run's. */
#include "distill.h"
#include "grpo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_STUDENT = 256, OPT_MAX_NEW_TOKENS, OPT_GROUP, OPT_TEMPERATURE, OPT_EVAL, OPT_EVAL_EVERY,
    OPT_EVAL_N, OPT_SAVE_EVERY, OPT_RESUME, OPT_WARMUP, OPT_STOP_AFTER, OPT_WEIGHT_DECAY, OPT_BETA2,
    OPT_CLIP,
};

static const struct option opts[] = {
    {"student", required_argument, 0, OPT_STUDENT}, {"data", required_argument, 0, 'd'},
    {"out", required_argument, 0, 'o'}, {"max-new-tokens", required_argument, 0, OPT_MAX_NEW_TOKENS},
    {"batch", required_argument, 0, 'B'}, {"group", required_argument, 0, OPT_GROUP},
    {"temperature", required_argument, 0, OPT_TEMPERATURE}, {"lr", required_argument, 0, 'l'},
    {"steps", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},
    {"eval", required_argument, 0, OPT_EVAL}, {"eval-every", required_argument, 0, OPT_EVAL_EVERY},
    {"eval-n", required_argument, 0, OPT_EVAL_N}, {"save-every", required_argument, 0, OPT_SAVE_EVERY},
    {"resume", no_argument, 0, OPT_RESUME}, {"warmup", required_argument, 0, OPT_WARMUP},
    {"stop-after", required_argument, 0, OPT_STOP_AFTER},
    {"weight-decay", required_argument, 0, OPT_WEIGHT_DECAY}, {"beta2", required_argument, 0, OPT_BETA2},
    {"clip", required_argument, 0, OPT_CLIP}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};

static void help(void) {
    printf("Usage: opd rl --student CKPT --data TRAIN.csv --out DIR [OPTIONS]\n"
           "GRPO on the task's verifiable reward: the student samples G rollouts of each prompt to\n"
           "the full horizon T, a rollout scores 1 when its answer verifies (else 0), the advantage\n"
           "is the reward normalised within its group, the loss the policy gradient. One gradient\n"
           "step per batch (no PPO ratio or clip) and no KL penalty (ref/SPEC.md section 6b).\n\n"
           "      --student CKPT    the starting policy (an opd checkpoint, e.g. from opd sft)\n"
           "  -d, --data CSV        training problems (opd data's train.csv)\n"
           "      --max-new-tokens N  the full horizon T every rollout runs to\n"
           "                        (default: longest reference solution + 1)\n"
           "  -B, --batch N         prompts per step P (default 8)\n"
           "      --group N         rollouts per prompt G, rows p * G + g (default 8; >= 2 for a signal)\n"
           "      --temperature X   sampling temperature, > 0 (default 1)\n"
           "  -l, --lr X            learning rate (default 1e-4), --warmup N (0)\n"
           "      --weight-decay X  AdamW decoupled weight decay (default 0)\n"
           "      --beta2 X         AdamW second-moment decay (default 0.95)\n"
           "      --clip X          global gradient-norm clip, 0 off (default 1)\n"
           "  -n, --steps N         steps (default 100)\n"
           "  -s, --seed N          seed of batches and sampling (default 1)\n"
           "  -o, --out DIR         student.safetensors (the policy), log.csv (per step: mean_reward,\n"
           "                        groups_with_signal, tokens, loss, ...), eval.csv (distill's columns)\n"
           "      --save-every N    checkpoint period (default: at the end)\n"
           "      --resume          continue from DIR/student.safetensors (bit-identical)\n"
           "      --stop-after K    stop after K steps with a checkpoint, as if interrupted\n"
           "Evaluation (greedy pass@1, decoding to the full horizon T):\n"
           "      --eval CSV --eval-every N --eval-n N (100)\n");
}

typedef struct {
    const char *student, *data, *out, *evalp;
    opd_rl_config rc;
    opd_optim_config oc;
    int B, steps, eval_every, eval_n, save_every, resume, stop_after, max_new_tokens;
    uint64_t seed;
} rl_args;

/* One option into a: 0, -1 on a bad value (message printed), -2 unknown. */
static int rl_option(int c, const char *arg, rl_args *a) {
    const char *C = "rl";
    switch (c) {
    case OPT_STUDENT: a->student = arg; return 0;
    case 'd': a->data = arg; return 0;
    case 'o': a->out = arg; return 0;
    case OPT_EVAL: a->evalp = arg; return 0;
    case OPT_RESUME: a->resume = 1; return 0;
    case OPT_MAX_NEW_TOKENS: return cli_int(C, "max-new-tokens", arg, 1, 1 << 20, &a->max_new_tokens);
    case 'B': return cli_int(C, "batch", arg, 1, 4096, &a->B);
    case OPT_GROUP: return cli_int(C, "group", arg, 1, 1024, &a->rc.group);
    case OPT_TEMPERATURE: return cli_float(C, "temperature", arg, 1e-3, 100, &a->rc.rollout.sampler.temperature);
    case 'l': return cli_float(C, "lr", arg, 1e-10, 10, &a->oc.lr);
    case 'n': return cli_int(C, "steps", arg, 1, 1 << 30, &a->steps);
    case 's': return cli_u64(C, "seed", arg, &a->seed);
    case OPT_EVAL_EVERY: return cli_int(C, "eval-every", arg, 0, 1 << 30, &a->eval_every);
    case OPT_EVAL_N: return cli_int(C, "eval-n", arg, 1, 1 << 30, &a->eval_n);
    case OPT_SAVE_EVERY: return cli_int(C, "save-every", arg, 0, 1 << 30, &a->save_every);
    case OPT_WARMUP: return cli_int(C, "warmup", arg, 0, 1 << 30, &a->oc.warmup_steps);
    case OPT_STOP_AFTER: return cli_int(C, "stop-after", arg, 1, 1 << 30, &a->stop_after);
    case OPT_WEIGHT_DECAY: return cli_float(C, "weight-decay", arg, 0, 10, &a->oc.weight_decay);
    case OPT_BETA2: return cli_float(C, "beta2", arg, 0, 0.999999, &a->oc.beta2);
    case OPT_CLIP: return cli_float(C, "clip", arg, 0, 1e9, &a->oc.grad_clip);
    }
    return -2;
}

/* log.csv, one row per step: each name next to its value (as distill_run.c) */
#define COL_NAME(kind, name, value) name,
#define COL_PUT(kind, name, value) opd_csv_log_##kind(log, value);
#define RL_LOG_COLUMNS(X)                                \
    X(int, "step", k)                                    \
    X(num, "mean_reward", st->mean_reward)               \
    X(num, "groups_with_signal", st->groups_with_signal) \
    X(int, "tokens", st->tokens)                         \
    X(int, "truncated", st->truncated)                   \
    X(int, "trained_len", st->trained_len)               \
    X(num, "loss", st->loss)                             \
    X(num, "grad_norm", st->grad_norm)                   \
    X(num, "lr", st->lr)                                 \
    X(num, "sec_rollout", st->sec_rollout)               \
    X(num, "sec_reward", st->sec_reward)                 \
    X(num, "sec_student", st->sec_student)               \
    X(num, "sec_optim", st->sec_optim)                   \
    X(num, "train_seconds", train_sec)                   \
    X(int, "peak_rss_kb", st->peak_rss_kb)
static const char *rl_log_header[] = {RL_LOG_COLUMNS(COL_NAME)};
#define RL_LOG_COLS ((int)(sizeof rl_log_header / sizeof rl_log_header[0]))

static void rl_log_row(opd_csv_log *log, long k, const opd_rl_stats *st, double train_sec) {
    RL_LOG_COLUMNS(COL_PUT)
    opd_csv_log_end_row(log);
}

/* The verifier behind opd_reward_fn: the rows' problems are idx (B). */
typedef struct {
    const source *src;
    const int *idx;
} rl_reward_ctx;

static int rl_reward(void *ctx, const opd_rollout *r, float *rewards) {
    const rl_reward_ctx *c = ctx;
    return harness_rollout_rewards(&c->src->tok, c->src->tasks, c->idx, r, rewards);
}

static void print_progress(const rl_args *a, long k, const opd_rl_stats *st, double train_sec) {
    double sec = st->sec_rollout + st->sec_reward + st->sec_student + st->sec_optim;
    if (cli_progress_tty())
        fprintf(stderr, "\rrl step %ld/%d  reward %.3f  signal %.2f  loss %.4f  %.1f s   ", k + 1, a->steps,
                st->mean_reward, st->groups_with_signal, st->loss, train_sec);
    else
        printf("rl step %ld/%d reward %.3f signal %.2f loss %.4f %.1f s/step peak %ld MiB\n", k + 1, a->steps,
               st->mean_reward, st->groups_with_signal, st->loss, sec, st->peak_rss_kb / 1024);
}

/* The loop, as distill_run's: a keyed batch, one step, a log.csv row; then
 * evaluate, flush both logs, rename the checkpoint into place, so a kill
 * leaves logs at or ahead of the checkpoint (--resume drops the rows ahead). */
static int rl_run(const rl_args *a, const source *src, const source *es) {
    opd_rl_config rc = a->rc;
    const int T = rc.max_new_tokens, G = rc.group, B = a->B * G;
    int ret = 0;
    opd_model student;
    memset(&student, 0, sizeof student);
    opd_adamw opt;
    memset(&opt, 0, sizeof opt);
    opd_step_work w;
    memset(&w, 0, sizeof w);
    opd_csv_log slog, elog;
    int have_logs = 0;
    char *ckpt = cli_path_join(a->out, "student.safetensors");
    char *slog_path = cli_path_join(a->out, "log.csv"), *elog_path = cli_path_join(a->out, "eval.csv");
    const char *const *eval_header;
    int eval_cols;
    distill_eval_header(SOURCE_TASK, &eval_header, &eval_cols);
    int *idx = opd_malloc(sizeof(int) * a->B), *sidx = opd_malloc(sizeof(int) * B);
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * B);
    long k0 = 0, tokens = 0;
    double train_sec = 0;

    if (a->resume) {
        if ((ret = distill_load_resume(ckpt, &student, &opt, &k0, &tokens, &train_sec)) != 0) goto done;
    } else {
        if ((ret = opd_model_load_any(&student, a->student, NULL)) != 0) goto done;
        opd_adamw_init(&opt, &a->oc, student.num_params);
    }
    const char *spath = a->resume ? ckpt : a->student;
    if ((ret = source_check_model(src, &student, spath, T)) != 0) goto done;
    if (es && (ret = source_check_model(es, &student, spath, T)) != 0) goto done;
    rc.rollout.eos_id = src->eos_id;
    rc.rollout.pad_id = src->pad_id;
    rc.rollout.seed = a->seed;
    if (a->resume) {
        ret = distill_resume_logs(&slog, slog_path, rl_log_header, RL_LOG_COLS, &elog, elog_path,
                                  eval_header, eval_cols, k0);
    } else if ((ret = opd_csv_log_open(&slog, slog_path, rl_log_header, RL_LOG_COLS)) == 0 &&
               (ret = opd_csv_log_open(&elog, elog_path, eval_header, eval_cols)) != 0) {
        opd_csv_log_discard(&slog);
    }
    if (ret != 0) goto done;
    have_logs = 1;

    printf("rl: GRPO, max_new_tokens T=%d, %d prompts x %d samples, %d steps, temperature %g, "
           "%d problems in %s\n", T, a->B, G, a->steps, (double)rc.rollout.sampler.temperature, src->n,
           src->path);
    if (es && k0 == 0 && (ret = distill_eval_log(es, &student, a->eval_n, T, a->seed, 0, 0, 0, &elog)) != 0)
        goto done;
    for (long k = k0; k < a->steps; k++) {
        /* the batches of distill at the same seed: draws keyed by (seed, k) */
        harness_draw_batch(a->seed, k, src->n, a->B, idx);
        for (int i = 0; i < B; i++) {
            sidx[i] = idx[i / G];
            ids[i] = (uint32_t)i;   /* sample g of prompt slot p: key p*G + g */
        }
        int *prompts, *pad, P;
        source_batch(src, sidx, B, &prompts, &pad, &P);
        rl_reward_ctx ctx = {src, sidx};
        opd_rl_stats st;
        ret = opd_rl_step(&student, &opt, &rc, prompts, pad, ids, a->B, P, k, rl_reward, &ctx, &w, &st);
        free(prompts);
        free(pad);
        if (ret != 0) goto done;
        train_sec += st.sec_rollout + st.sec_reward + st.sec_student + st.sec_optim;
        tokens += st.tokens;
        rl_log_row(&slog, k, &st, train_sec);
        print_progress(a, k, &st, train_sec);
        int last = k + 1 == a->steps;
        int stop = a->stop_after > 0 && k + 1 == a->stop_after && !last;
        int save = (a->save_every > 0 && (k + 1) % a->save_every == 0) || last || stop;
        int eval = es && ((a->eval_every > 0 && (k + 1) % a->eval_every == 0) || last);
        if (eval && (ret = distill_eval_log(es, &student, a->eval_n, T, a->seed, k + 1, train_sec, tokens,
                                            &elog)) != 0)
            goto done;
        if (save) {
            if ((ret = opd_csv_log_flush(&slog)) != 0) goto done;
            if ((ret = distill_save_checkpoint(&student, &opt, ckpt, k, train_sec, tokens, a->seed, "grpo", "pg",
                                               NULL, 0)) != 0)
                goto done;
        }
        if (stop) {
            printf("stopped after step %ld as asked (--stop-after); continue with --resume\n", k + 1);
            break;
        }
    }
    if (cli_progress_tty()) fprintf(stderr, "\n");
    printf("wrote %s, %s, %s (%.1f s of training, %ld tokens generated)\n", ckpt, slog_path, elog_path,
           train_sec, tokens);
done:
    if (have_logs && opd_csv_log_close(&slog) != 0 && ret == 0) ret = -1;
    if (have_logs && opd_csv_log_close(&elog) != 0 && ret == 0) ret = -1;
    opd_step_work_free(&w);
    free(idx); free(sidx); free(ids);
    free(ckpt); free(slog_path); free(elog_path);
    if (opt.m) opd_adamw_free(&opt);
    if (student.params_mem) opd_model_free(&student);
    return ret;
}

int cmd_rl(int argc, char **argv) {
    const char *C = "rl";
    rl_args a;
    memset(&a, 0, sizeof a);
    opd_sampler_config_default(&a.rc.rollout.sampler);
    a.rc.group = 8;
    opd_optim_config_default(&a.oc);
    a.oc.lr = 1e-4f;
    a.oc.weight_decay = 0.0f;   /* as distill's default (cmd_distill.c says why) */
    a.B = 8; a.steps = 100; a.eval_n = 100; a.seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:B:n:s:l:h", opts, NULL)) != -1) {
        if (c == 'h') { help(); return 0; }
        int r = rl_option(c, optarg, &a);
        if (r == -2) return cli_usage_error(C);
        if (r != 0) return 2;
    }
    if (optind != argc) return cli_usage_error(C);
    if (!a.out || !a.data || (!a.student && !a.resume)) {
        fprintf(stderr, "opd rl: --student, --data and --out are required\n");
        return cli_usage_error(C);
    }
    if (opd_dist_size() > 1) {
        if (opd_dist_rank() == 0) fprintf(stderr, "opd rl: runs on one process (no mpirun yet)\n");
        return 2;
    }
    source train, evals;
    memset(&train, 0, sizeof train);
    memset(&evals, 0, sizeof evals);
    int rc = source_open_task(&train, a.data);
    if (rc == 0 && a.evalp) rc = source_open_task(&evals, a.evalp);
    if (rc == 0) {
        a.rc.max_new_tokens = a.max_new_tokens > 0 ? a.max_new_tokens : source_default_max_new_tokens(&train);
        a.oc.total_steps = a.steps;
        if (cli_mkdir_p(C, a.out) != 0) { source_free(&train); source_free(&evals); return 1; }
        rc = rl_run(&a, &train, a.evalp ? &evals : NULL);
    }
    source_free(&train);
    source_free(&evals);
    return rc == 0 ? 0 : cli_fail(C);
}
