/* distill_run.c — the loop of `opd distill` (distill.h): for each step k a
 * keyed batch from the source, one opd_device_distill_step, a log.csv row;
 * evaluations, checkpoints and the stop in their order. The same loop runs
 * the built-in task and text prompts: the source is the only difference. */
#include "distill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The logs' columns: each name next to the value written under it, so the
 * header and the rows cannot drift. X(kind, name, value): kind int | num |
 * str is the opd_csv_log_* writer. */
#define COL_NAME(kind, name, value) name,
#define COL_PUT(kind, name, value) opd_csv_log_##kind(log, value);
#define COL_SKIP(kind, name, value)

/* log.csv, one row per step (step_log_row). horizon is H_k, the step's
 * horizon; trained_len the longest rollout of the batch (<= H_k); the full
 * horizon T is the run's max_new_tokens, printed at the start. */
#define STEP_LOG_COLUMNS(X)                                                              \
    X(int, "step", k)                                                                    \
    X(int, "horizon", st->horizon)                                                       \
    X(int, "trained_len", st->trained_len)                                               \
    X(int, "tokens", st->tokens)                                                         \
    X(int, "truncated", st->truncated)                                                   \
    X(num, "loss", st->loss)                                                             \
    X(str, "loss_kind", opd_loss_name(dc->loss.kind))                                    \
    X(str, "reduction", dc->loss.reduction == OPD_REDUCE_TOKEN_MEAN ? "token_mean" : "seq_mean") \
    X(num, "mean_rkl", st->mean_rkl)                                                     \
    X(num, "kl_q1", st->kl_bucket[0])                                                    \
    X(num, "kl_q2", st->kl_bucket[1])                                                    \
    X(num, "kl_q3", st->kl_bucket[2])                                                    \
    X(num, "kl_q4", st->kl_bucket[3])                                                    \
    X(num, "grad_norm", st->grad_norm)                                                   \
    X(num, "lr", st->lr)                                                                 \
    X(num, "sec_rollout", st->sec_rollout)                                               \
    X(num, "sec_teacher", st->sec_teacher)                                               \
    X(num, "sec_student", st->sec_student)                                               \
    X(num, "sec_optim", st->sec_optim)                                                   \
    X(num, "train_seconds", train_sec)                                                   \
    X(int, "peak_rss_kb", st->peak_rss_kb)                                               \
    X(num, "sec_combine", st->sec_combine)                                               \
    X(int, "peak_rss_kb_sum", st->peak_rss_kb_sum)
_Static_assert(OPD_KL_BUCKETS == 4, "log.csv has the columns kl_q1 .. kl_q4");

/* eval.csv, one row per evaluation (eval_log_row); text prompts add
 * `scored` (prompts with an answer), the task scores every problem. */
#define EVAL_LOG_COLUMNS(X, TEXT)                                                        \
    X(int, "step", step)                                                                 \
    X(num, "train_seconds", train_sec)                                                   \
    X(int, "tokens_generated", tokens)                                                   \
    X(num, "acc", r->acc)                                                                \
    TEXT(int, "scored", r->scored)                                                       \
    X(num, "mean_len", r->mean_len)                                                      \
    X(num, "truncated_frac", r->truncated_frac)                                          \
    X(int, "peak_rss_kb", opd_peak_rss_kb())

static const char *step_log_header[] = {STEP_LOG_COLUMNS(COL_NAME)};
#define STEP_LOG_COLS ((int)(sizeof step_log_header / sizeof step_log_header[0]))
static const char *task_eval_header[] = {EVAL_LOG_COLUMNS(COL_NAME, COL_SKIP)};
static const char *text_eval_header[] = {EVAL_LOG_COLUMNS(COL_NAME, COL_NAME)};

static void step_log_row(opd_csv_log *log, long k, const opd_step_stats *st,
                         const opd_distill_config *dc, double train_sec) {
    STEP_LOG_COLUMNS(COL_PUT)
    opd_csv_log_end_row(log);
}

static void eval_log_row(opd_csv_log *log, source_kind kind, long step, double train_sec,
                         long tokens, const source_eval *r) {
    if (kind == SOURCE_TEXT) { EVAL_LOG_COLUMNS(COL_PUT, COL_PUT) }
    else { EVAL_LOG_COLUMNS(COL_PUT, COL_SKIP) }
    opd_csv_log_end_row(log);
}

void distill_eval_header(source_kind kind, const char *const **header, int *ncols) {
    *header = kind == SOURCE_TEXT ? text_eval_header : task_eval_header;
    *ncols = kind == SOURCE_TEXT ? (int)(sizeof text_eval_header / sizeof *text_eval_header)
                                 : (int)(sizeof task_eval_header / sizeof *task_eval_header);
}

/* Greedy pass@1 of the student, decoding to the full horizon T; every
 * rank decodes its share, rank 0 (the one with a log) writes. */
int distill_eval_log(const source *es, const opd_model *m, int eval_n, int max_new_tokens, uint64_t seed,
                     long step, double train_sec, long tokens, opd_csv_log *log) {
    opd_sampler_config greedy = {0.0f, 0, 1.0f};
    source_eval r;
    if (source_evaluate(es, m, eval_n, max_new_tokens, 64, &greedy, 1, seed, &r) != 0)
        return -1;
    if (!log) return 0;
    eval_log_row(log, es->kind, step, train_sec, tokens, &r);
    if (cli_progress_tty()) fprintf(stderr, "\n");
    printf("eval step %ld: pass@1 %.4f (%d scored, mean length %.1f, train %.1f s)\n", step, r.acc,
           r.scored, r.mean_len, train_sec);
    fflush(stdout);
    return opd_csv_log_flush(log);
}

/* The checkpoint: the student, its AdamW moments, and what --resume needs
 * (the step done, seconds, tokens); text runs also name their prompts. */
int distill_save_checkpoint(const opd_model *m, const opd_adamw *opt, const char *path, long step,
                            double sec, long tokens, uint64_t seed, const char *method, const char *loss,
                            const char *prompts) {
    char s_step[32], s_sec[32], s_tok[32], s_seed[32];
    snprintf(s_step, sizeof s_step, "%ld", step);
    snprintf(s_sec, sizeof s_sec, "%.17g", sec);
    snprintf(s_tok, sizeof s_tok, "%ld", tokens);
    snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)seed);
    const char *keys[] = {"opd.train.step", "opd.train.seconds", "opd.train.tokens", "opd.train.seed",
                          "opd.train.method", "opd.train.loss", "opd.train.prompts"};
    const char *vals[] = {s_step, s_sec, s_tok, s_seed, method, loss, prompts};
    return opd_model_save(m, path, opt, keys, vals, prompts ? 7 : 6);
}

static int save_student(const distill_args *a, const source *src, const opd_model *m,
                        const opd_adamw *opt, const char *path, long step, double sec, long tokens) {
    return distill_save_checkpoint(m, opt, path, step, sec, tokens, a->seed,
                                   opd_schedule_name(a->dc.schedule.kind), opd_loss_name(a->dc.loss.kind),
                                   src->kind == SOURCE_TEXT ? src->path : NULL);
}

/* --resume's state: the student and its AdamW moments from ckpt, the step
 * to continue at (the one after the checkpoint's), tokens and seconds. */
int distill_load_resume(const char *ckpt, opd_model *student, opd_adamw *opt, long *k0, long *tokens,
                        double *train_sec) {
    /* everything else of the state is keyed by (seed, step): the student,
     * its optimizer moments and the step number are all there is */
    if (opd_model_load(student, ckpt, opt) != 0) return -1;
    /* the step is the last one done, < --steps' bound of 2^30 */
    if (distill_meta_long(ckpt, "opd.train.step", 0, (1L << 30) - 1, k0) != 0) return -1;
    if (distill_meta_long(ckpt, "opd.train.tokens", 0, 1L << 60, tokens) != 0) return -1;
    if (distill_meta_seconds(ckpt, "opd.train.seconds", train_sec) != 0) return -1;
    *k0 += 1;
    printf("resuming %s at step %ld\n", ckpt, *k0);
    return 0;
}

static void print_progress(const distill_args *a, long k, const opd_step_stats *st, double train_sec) {
    double sec = st->sec_rollout + st->sec_teacher + st->sec_student + st->sec_optim;
    if (cli_progress_tty())
        fprintf(stderr, "\rdistill step %ld/%d  H_k=%d  loss %.4f  rkl %.4f  %.1f s   ", k + 1, a->steps,
                st->horizon, st->loss, st->mean_rkl, train_sec);
    else
        printf("distill step %ld/%d H_k=%d loss %.4f rkl %.4f %.1f s/step peak %ld MiB\n", k + 1, a->steps,
               st->horizon, st->loss, st->mean_rkl, sec, st->peak_rss_kb / 1024);
}

int distill_run(const distill_args *a, const source *src, const source *es) {
    opd_distill_config dc = a->dc;
    int max_new_tokens = dc.schedule.max_new_tokens;
    int rc = 0;
    opd_model teacher, student;
    memset(&teacher, 0, sizeof teacher);
    memset(&student, 0, sizeof student);
    opd_adamw opt;
    memset(&opt, 0, sizeof opt);
    opd_csv_log slog, elog;
    int have_logs = 0;
    char *ckpt = cli_path_join(a->out, "student.safetensors");
    char *slog_path = cli_path_join(a->out, "log.csv"), *elog_path = cli_path_join(a->out, "eval.csv");
    const char *const *eval_header;
    int eval_cols;
    distill_eval_header(src->kind, &eval_header, &eval_cols);
    int BS = a->B * a->samples;
    int *idx = opd_malloc(sizeof(int) * a->B), *sidx = opd_malloc(sizeof(int) * BS);
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * BS);
    opd_device *dev = NULL;
    long k0 = 0, tokens = 0;
    double train_sec = 0;
    /* only rank 0 writes the logs and the checkpoint (ref/opd_dist.h) */
    const int writer = opd_dist_rank() == 0;
    const int mb = a->micro_batch > 0 ? a->micro_batch : BS;

    if ((rc = opd_schedule_validate(&dc.schedule)) != 0) goto done;
    if ((rc = opd_model_load_any(&teacher, a->teacher, NULL)) != 0) goto done;
    if (a->resume) {
        if ((rc = distill_load_resume(ckpt, &student, &opt, &k0, &tokens, &train_sec)) != 0) goto done;
    } else {
        if ((rc = opd_model_load_any(&student, a->student, NULL)) != 0) goto done;
        opd_adamw_init(&opt, &a->oc, student.num_params);
    }
    const char *spath = a->resume ? ckpt : a->student;
    if ((rc = source_check_pair(src, &teacher, a->teacher, &student, spath, max_new_tokens)) != 0) goto done;
    if (es && (rc = source_check_model(es, &student, spath, max_new_tokens)) != 0) goto done;
    dc.rollout.eos_id = src->eos_id;
    dc.rollout.pad_id = src->pad_id;
    dc.rollout.seed = a->seed;
    if ((rc = opd_device_open(&dev, a->device, &student, &teacher, &opt)) != 0) goto done;
    if (!writer) {
        rc = 0;
    } else if (a->resume) {
        rc = distill_resume_logs(&slog, slog_path, step_log_header, STEP_LOG_COLS, &elog, elog_path,
                                 eval_header, eval_cols, k0);
    } else if ((rc = opd_csv_log_open(&slog, slog_path, step_log_header, STEP_LOG_COLS)) == 0 &&
               (rc = opd_csv_log_open(&elog, elog_path, eval_header, eval_cols)) != 0) {
        opd_csv_log_discard(&slog);
    }
    if (rc != 0) goto done;
    have_logs = writer;
    opd_csv_log *el = writer ? &elog : NULL;   /* eval.csv: rank 0 only */

    printf("distill: %s, loss %s (%s), max_new_tokens T=%d, %d prompts x %d samples, %d steps, device %s, "
           "%d prompts in %s, EOS id %d\n",
           opd_schedule_name(dc.schedule.kind), opd_loss_name(dc.loss.kind),
           dc.loss.reduction == OPD_REDUCE_TOKEN_MEAN ? "token mean" : "sequence mean", max_new_tokens,
           a->B, a->samples, a->steps, opd_device_name(dev), src->n, src->path, src->eos_id);
    if (mb != BS || opd_dist_size() > 1)
        printf("distill: %d micro-batches of %d sequences over %d rank(s)\n", BS / mb, mb, opd_dist_size());
    if (es && k0 == 0 &&
        (rc = distill_eval_log(es, &student, a->eval_n, max_new_tokens, a->seed, 0, 0, 0, el)) != 0)
        goto done;
    for (long k = k0; k < a->steps; k++) {
        harness_draw_batch(a->seed, k, src->n, a->B, idx);
        for (int i = 0; i < BS; i++) {
            sidx[i] = idx[i / a->samples];
            ids[i] = (uint32_t)i;   /* sample j of prompt slot p: key p*samples + j */
        }
        int *prompts, *pad, P;
        source_batch(src, sidx, BS, &prompts, &pad, &P);
        opd_step_stats st;
        rc = opd_device_distill_step_mb(dev, &student, &teacher, &opt, &dc, prompts, pad, ids, BS, P, mb,
                                        k, &st);
        free(prompts);
        free(pad);
        if (rc != 0) goto done;
        train_sec += st.sec_rollout + st.sec_teacher + st.sec_student + st.sec_optim;
        tokens += st.tokens;
        if (writer) step_log_row(&slog, k, &st, &dc, train_sec);
        print_progress(a, k, &st, train_sec);
        int last = k + 1 == a->steps;
        int stop = a->stop_after > 0 && k + 1 == a->stop_after && !last;
        int save = (a->save_every > 0 && (k + 1) % a->save_every == 0) || last || stop;
        int eval = es && ((a->eval_every > 0 && (k + 1) % a->eval_every == 0) || last);
        /* checkpoints and evaluations read the host copies */
        if ((save || eval) && (rc = opd_device_sync_to_host(dev, &student, &opt)) != 0) goto done;
        /* Evaluate, then flush both logs, then rename the checkpoint into
         * place: a kill at any point leaves logs at or ahead of the
         * checkpoint, never behind it (resume drops the rows ahead). */
        if (eval && (rc = distill_eval_log(es, &student, a->eval_n, max_new_tokens, a->seed, k + 1,
                                                  train_sec, tokens, el)) != 0) goto done;
        if (save && writer) {
            if ((rc = opd_csv_log_flush(&slog)) != 0) goto done;
            if ((rc = save_student(a, src, &student, &opt, ckpt, k, train_sec, tokens)) != 0) goto done;
        }
        if (stop) {
            printf("stopped after step %ld as asked (--stop-after); continue with --resume\n", k + 1);
            break;
        }
    }
    if (cli_progress_tty()) fprintf(stderr, "\n");
    printf("wrote %s, %s, %s (%.1f s of training, %ld tokens generated)\n", ckpt, slog_path,
           elog_path, train_sec, tokens);
done:
    /* the logs are closed (written) even after an error: they show how far
     * the run got; a close failure is reported only if nothing failed before */
    if (have_logs && opd_csv_log_close(&slog) != 0 && rc == 0) rc = -1;
    if (have_logs && opd_csv_log_close(&elog) != 0 && rc == 0) rc = -1;
    opd_device_close(dev);
    free(idx); free(sidx); free(ids);
    free(ckpt); free(slog_path); free(elog_path);
    if (opt.m) opd_adamw_free(&opt);
    if (student.params_mem) opd_model_free(&student);
    if (teacher.params_mem) opd_model_free(&teacher);
    return rc;
}
