/* distill_run.c — the loop of `opd distill` (distill.h): for each step k a
 * keyed batch from the source, one opd_device_distill_step, a log.csv row;
 * evaluations, checkpoints and the stop in their order. The same loop runs
 * the built-in task and text prompts: the source is the only difference. */
#include "distill.h"
#include "adaptive.h"

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

/* positions.csv, one row per (step, bucket of the full horizon T): the
 * step's masked reverse KL and top-k overlap by position (ref/SPEC.md
 * section 11); count is the masked tokens of the bucket, rkl and overlap
 * their means (NaN where the step trained nothing) */
#define POSITION_LOG_COLUMNS(X)                                                          \
    X(int, "step", k)                                                                    \
    X(int, "bucket", j)                                                                  \
    X(int, "pos_lo", j * pd->rkl.width)                                                  \
    X(int, "pos_hi", pos_hi)                                                             \
    X(int, "count", (long)pd->rkl.count[j])                                              \
    X(num, "rkl", opd_position_stats_mean(&pd->rkl, j))                                  \
    X(num, "overlap", opd_position_stats_mean(&pd->overlap, j))

/* reliability.csv, one row per (evaluation, bucket start pos): the teacher's
 * greedy accuracy continuing from the student's first pos tokens, and the
 * student's own greedy pass@1 on the same n problems */
#define RELIABILITY_LOG_COLUMNS(X)                                                       \
    X(int, "step", step)                                                                 \
    X(int, "bucket", j)                                                                  \
    X(int, "pos", j * width)                                                             \
    X(int, "n", n)                                                                       \
    X(num, "teacher_acc", teacher_acc[j])                                                \
    X(num, "student_acc", student_acc)

static const char *step_log_header[] = {STEP_LOG_COLUMNS(COL_NAME)};
static const char *position_log_header[] = {POSITION_LOG_COLUMNS(COL_NAME)};
#define POSITION_LOG_COLS ((int)(sizeof position_log_header / sizeof position_log_header[0]))
static const char *reliability_log_header[] = {RELIABILITY_LOG_COLUMNS(COL_NAME)};
#define RELIABILITY_LOG_COLS ((int)(sizeof reliability_log_header / sizeof reliability_log_header[0]))
#define STEP_LOG_COLS ((int)(sizeof step_log_header / sizeof step_log_header[0]))
static const char *task_eval_header[] = {EVAL_LOG_COLUMNS(COL_NAME, COL_SKIP)};
static const char *text_eval_header[] = {EVAL_LOG_COLUMNS(COL_NAME, COL_NAME)};

static void step_log_row(opd_csv_log *log, long k, const opd_step_stats *st,
                         const opd_distill_config *dc, double train_sec) {
    STEP_LOG_COLUMNS(COL_PUT)
    opd_csv_log_end_row(log);
}

static void position_log_rows(opd_csv_log *log, long k, const opd_position_diag *pd) {
    for (int j = 0; j < pd->rkl.nbuckets; j++) {
        int pos_hi = (j + 1) * pd->rkl.width < pd->rkl.T ? (j + 1) * pd->rkl.width - 1 : pd->rkl.T - 1;
        POSITION_LOG_COLUMNS(COL_PUT)
        opd_csv_log_end_row(log);
    }
}

/* Teacher accuracy from the student's prefix by position (the task only),
 * outside train_seconds like the evaluation; no message between ranks, so
 * only rank 0 (the one with the log) decodes */
static int distill_reliability(const distill_args *a, const source *es, const opd_model *student,
                               const opd_model *teacher, long step, opd_csv_log *log) {
    if (!log) return 0;
    const int T = a->dc.schedule.max_new_tokens, width = a->bucket_width;
    const int nb = (T + width - 1) / width, n = a->reliability_n < es->n ? a->reliability_n : es->n;
    double student_acc, *teacher_acc = opd_malloc(sizeof(double) * nb);
    double t0 = opd_time();
    int rc = harness_reliability(student, teacher, &es->tok, es->tasks, n, T, width, &student_acc,
                                 teacher_acc);
    if (rc == 0) {
        for (int j = 0; j < nb; j++) {
            RELIABILITY_LOG_COLUMNS(COL_PUT)
            opd_csv_log_end_row(log);
        }
        if (cli_progress_tty()) fprintf(stderr, "\n");
        printf("reliability step %ld: student pass@1 %.4f, teacher from the student's prefix at 0 %.4f, "
               "at %d %.4f (%d problems, %.1f s)\n", step, student_acc, teacher_acc[0], (nb - 1) * width,
               teacher_acc[nb - 1], n, opd_time() - t0);
        rc = opd_csv_log_flush(log);
    }
    free(teacher_acc);
    return rc;
}

/* The adaptive schedule's probe before step k: a batch of probe_n prompts
 * drawn on their own key ("prob"), rolled out to T and scored by both
 * models (opd_step_probe), then H = opd_adaptive_next_horizon. Its seconds
 * and tokens are the method's cost: the caller adds them to the run's. */
static int adaptive_probe(const distill_args *a, const source *src, opd_model *student, opd_model *teacher,
                          opd_distill_config *dc, long k, opd_position_stats *profile, double *sec,
                          long *tokens) {
    double t0 = opd_time();
    const int n = a->probe_n;
    int *idx = opd_malloc(sizeof(int) * n);
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * n);
    for (int b = 0; b < n; b++) {
        idx[b] = (int)(opd_uniform(a->seed, 0x70726f62u /* "prob" */, (uint32_t)k, (uint32_t)b, 0) * src->n);
        ids[b] = (uint32_t)b;
    }
    int *prompts, *pad, P;
    source_batch(src, idx, n, &prompts, &pad, &P);
    opd_position_stats_reset(profile);
    int rc = opd_step_probe(student, teacher, dc, k, prompts, pad, ids, n, P, a->overlap_k, profile,
                            tokens);
    free(prompts); free(pad); free(idx); free(ids);
    if (rc != 0) return -1;
    opd_adaptive_config ac;
    opd_adaptive_config_from_schedule(&ac, &dc->schedule);
    int stop, H_old = opd_schedule_horizon(&dc->schedule, k);
    int H = opd_adaptive_next_horizon(&ac, profile, H_old, &stop);
    if (H < 0) return -1;
    dc->schedule.horizon_now = H;
    *sec = opd_time() - t0;
    if (cli_progress_tty())
        ;
    else if (stop < 0)
        printf("adaptive probe before step %ld: H %d -> %d (the window was reliable)\n", k, H_old, H);
    else
        printf("adaptive probe before step %ld: H %d -> %d (bucket %d: mean overlap %.3f over %.0f)\n", k,
               H_old, H, stop, opd_position_stats_mean(profile, stop), profile->count[stop]);
    return 0;
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
                            const char *prompts, int adaptive_horizon) {
    char s_step[32], s_sec[32], s_tok[32], s_seed[32], s_h[32];
    snprintf(s_step, sizeof s_step, "%ld", step);
    snprintf(s_sec, sizeof s_sec, "%.17g", sec);
    snprintf(s_tok, sizeof s_tok, "%ld", tokens);
    snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)seed);
    /* the adaptive schedule's state: H after this step (the probe's profile
     * is reset after every probe, so H is all of it) */
    snprintf(s_h, sizeof s_h, "%d", adaptive_horizon);
    const char *keys[8] = {"opd.train.step", "opd.train.seconds", "opd.train.tokens", "opd.train.seed",
                           "opd.train.method", "opd.train.loss"};
    const char *vals[8] = {s_step, s_sec, s_tok, s_seed, method, loss};
    int n = 6;
    if (prompts) { keys[n] = "opd.train.prompts"; vals[n++] = prompts; }
    if (adaptive_horizon > 0) { keys[n] = "opd.train.adaptive_horizon"; vals[n++] = s_h; }
    return opd_model_save(m, path, opt, keys, vals, n);
}

static int save_student(const distill_args *a, const source *src, const opd_model *m,
                        const opd_adamw *opt, const char *path, long step, double sec, long tokens,
                        int horizon_now) {
    return distill_save_checkpoint(m, opt, path, step, sec, tokens, a->seed,
                                   opd_schedule_name(a->dc.schedule.kind), opd_loss_name(a->dc.loss.kind),
                                   src->kind == SOURCE_TEXT ? src->path : NULL,
                                   a->dc.schedule.kind == OPD_SCHED_ADAPTIVE ? horizon_now : 0);
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
    opd_csv_log slog, elog, plog, rlog;
    int have_logs = 0, have_plog = 0, have_rlog = 0;
    opd_position_diag pd;
    opd_position_stats profile;
    memset(&pd, 0, sizeof pd);
    memset(&profile, 0, sizeof profile);
    char *plog_path = cli_path_join(a->out, "positions.csv"), *rlog_path = cli_path_join(a->out, "reliability.csv");
    /* positions.csv on the CPU step (the CUDA step keeps its logits on the device) */
    const int positions = a->device == OPD_DEVICE_CPU && !a->no_positions;
    const int rel_every = a->reliability_every < 0 ? a->eval_every : a->reliability_every;
    const int reliability = es && es->kind == SOURCE_TASK && a->reliability_every != 0 &&
                            (rel_every > 0 || a->reliability_every < 0);
    const int adaptive = dc.schedule.kind == OPD_SCHED_ADAPTIVE;
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
        long h = 0;
        if (adaptive && (rc = distill_meta_long(ckpt, "opd.train.adaptive_horizon", 1, max_new_tokens, &h)) != 0)
            goto done;
        dc.schedule.horizon_now = (int)h;
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
    if (positions) {
        if ((rc = opd_position_diag_init(&pd, max_new_tokens, a->bucket_width, a->overlap_k)) != 0) goto done;
        dc.positions = &pd;
        if (writer) {
            rc = a->resume ? distill_resume_log(&plog, plog_path, position_log_header, POSITION_LOG_COLS, k0 - 1)
                           : opd_csv_log_open(&plog, plog_path, position_log_header, POSITION_LOG_COLS);
            if (rc != 0) goto done;
            have_plog = 1;
        }
    } else if (!a->no_positions) {
        printf("distill: no positions.csv on --device %s (the per-position top-k overlap needs the logits "
               "on the host)\n", opd_device_name(dev));
    }
    if (reliability && writer) {
        rc = a->resume ? distill_resume_log(&rlog, rlog_path, reliability_log_header, RELIABILITY_LOG_COLS, k0)
                       : opd_csv_log_open(&rlog, rlog_path, reliability_log_header, RELIABILITY_LOG_COLS);
        if (rc != 0) goto done;
        have_rlog = 1;
    }
    opd_csv_log *rl = have_rlog ? &rlog : NULL;
    if (adaptive && (rc = opd_position_stats_init(&profile, max_new_tokens, a->bucket_width)) != 0) goto done;

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
    if (reliability && k0 == 0 && (rc = distill_reliability(a, es, &student, &teacher, 0, rl)) != 0) goto done;
    for (long k = k0; k < a->steps; k++) {
        if (adaptive && k > 0 && k % dc.schedule.dk == 0) {
            double psec = 0;
            long ptok = 0;
            if ((rc = opd_device_sync_to_host(dev, &student, &opt)) != 0) goto done;
            if ((rc = adaptive_probe(a, src, &student, &teacher, &dc, k, &profile, &psec, &ptok)) != 0) goto done;
            train_sec += psec;   /* the probe is the method's cost */
            tokens += ptok;
        }
        if (positions) opd_position_diag_reset(&pd);
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
        if (have_plog) position_log_rows(&plog, k, &pd);
        print_progress(a, k, &st, train_sec);
        int last = k + 1 == a->steps;
        int stop = a->stop_after > 0 && k + 1 == a->stop_after && !last;
        int save = (a->save_every > 0 && (k + 1) % a->save_every == 0) || last || stop;
        int eval = es && ((a->eval_every > 0 && (k + 1) % a->eval_every == 0) || last);
        int rel = reliability && ((rel_every > 0 && (k + 1) % rel_every == 0) || last);
        /* checkpoints and evaluations read the host copies */
        if ((save || eval || rel) && (rc = opd_device_sync_to_host(dev, &student, &opt)) != 0) goto done;
        /* Evaluate, then flush both logs, then rename the checkpoint into
         * place: a kill at any point leaves logs at or ahead of the
         * checkpoint, never behind it (resume drops the rows ahead). */
        if (eval && (rc = distill_eval_log(es, &student, a->eval_n, max_new_tokens, a->seed, k + 1,
                                                  train_sec, tokens, el)) != 0) goto done;
        if (rel && (rc = distill_reliability(a, es, &student, &teacher, k + 1, rl)) != 0) goto done;
        if (save && writer) {
            if ((rc = opd_csv_log_flush(&slog)) != 0) goto done;
            if (have_plog && (rc = opd_csv_log_flush(&plog)) != 0) goto done;
            if ((rc = save_student(a, src, &student, &opt, ckpt, k, train_sec, tokens,
                                   opd_schedule_horizon(&dc.schedule, k))) != 0) goto done;
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
    if (have_plog && opd_csv_log_close(&plog) != 0 && rc == 0) rc = -1;
    if (have_rlog && opd_csv_log_close(&rlog) != 0 && rc == 0) rc = -1;
    if (pd.rkl.sum) opd_position_diag_free(&pd);
    if (profile.sum) opd_position_stats_free(&profile);
    free(plog_path); free(rlog_path);
    opd_device_close(dev);
    free(idx); free(sidx); free(ids);
    free(ckpt); free(slog_path); free(elog_path);
    if (opt.m) opd_adamw_free(&opt);
    if (student.params_mem) opd_model_free(&student);
    if (teacher.params_mem) opd_model_free(&teacher);
    return rc;
}
