/* distill.h — `opd distill` in three files, called in one direction:
 * cmd_distill.c (options, defaults, help) -> distill_run.c (the loop, the
 * logs, checkpoints) -> distill_resume.c (--resume: checkpoint metadata and
 * the logs' old rows). */
#ifndef OPD_DISTILL_H
#define OPD_DISTILL_H

#include "cli.h"
#include "source.h"

typedef struct {
    const char *teacher, *student, *out, *evalp;
    const char *data;                                /* the built-in task's CSV, or */
    const char *prompts, *tokenizer, *tmpl, *eos;    /* text prompts */
    opd_distill_config dc;   /* dc.schedule.max_new_tokens is T, the full horizon */
    opd_optim_config oc;
    int B, samples, steps, eval_every, eval_n, save_every, resume;
    int micro_batch;  /* sequences per micro-batch (0: the whole batch), ref/opd_dist.h */
    int stop_after;   /* stop (with a checkpoint) after this many steps, as if interrupted */
    int reliability_every;  /* reliability.csv period (-1: the eval schedule; 0: off) */
    int reliability_n;      /* problems of the --eval CSV it decodes */
    int bucket_width;       /* positions per bucket of positions.csv / reliability.csv / the probe */
    int probe_n;            /* adaptive: sequences of each probe */
    int overlap_k;          /* k of the top-k overlap (positions.csv, the probe) */
    int no_positions;       /* --no-positions: no positions.csv */
    uint64_t seed;
    opd_device_kind device;   /* --device: where the steps run (opd_device.h) */
} distill_args;

/* The run on resolved arguments: train draws the batches, evals (NULL: no
 * --eval) scores the student. Both stay the caller's. */
int distill_run(const distill_args *a, const source *train, const source *evals);

/* What `opd rl` (cmd_rl.c) shares with distill, so the two runs' files read
 * alike: eval.csv's columns for a source kind; one greedy pass@1
 * evaluation to T and its eval.csv row (log NULL: evaluate only); the
 * checkpoint with the metadata --resume reads (prompts NULL: not named;
 * adaptive_horizon > 0: --method adaptive's current H, else not written);
 * and --resume's state from it (k0: the step to continue at). */
void distill_eval_header(source_kind kind, const char *const **header, int *ncols);
int distill_eval_log(const source *es, const opd_model *m, int eval_n, int max_new_tokens, uint64_t seed,
                     long step, double train_sec, long tokens, opd_csv_log *log);
int distill_save_checkpoint(const opd_model *m, const opd_adamw *opt, const char *path, long step,
                            double sec, long tokens, uint64_t seed, const char *method, const char *loss,
                            const char *prompts, int adaptive_horizon);
int distill_load_resume(const char *ckpt, opd_model *student, opd_adamw *opt, long *k0, long *tokens,
                        double *train_sec);

/* --resume. A checkpoint's integer metadata in [lo, hi] / seconds (finite,
 * >= 0), with the value in the error. */
int distill_meta_long(const char *path, const char *key, long lo, long hi, long *out);
int distill_meta_seconds(const char *path, const char *key, double *out);
/* log.csv and eval.csv of a run resumed at step k0: rows up to the
 * checkpoint kept, a log of other columns, behind its checkpoint or missing
 * refused; both logs open on success, neither on failure. */
int distill_resume_logs(opd_csv_log *slog, const char *slog_path, const char *const *shdr, int scols,
                        opd_csv_log *elog, const char *elog_path, const char *const *ehdr, int ecols,
                        long k0);
/* A further log of a resumed run (positions.csv, reliability.csv): rows with
 * step <= upto kept, a file of other columns refused, a missing one started
 * anew (they are diagnostics, not the run's state); open on success. */
int distill_resume_log(opd_csv_log *log, const char *path, const char *const *hdr, int cols, long upto);

#endif
