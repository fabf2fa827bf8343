/* cmd_train.c — `opd data`, `opd sft`, `opd distill` and `opd eval`: the
 * commands that make datasets, train teacher and student, distill, and score. */
#include "cli.h"
#include "device.h"
#include "harness.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ shared bits */
/* mkdir -p: an output directory and any missing parents */
static int ensure_dir(const char *cmd, const char *dir) {
    char *p = strdup(dir);
    int rc = 0;
    for (char *s = p + 1; ; s++) {
        if (*s != '/' && *s != '\0') continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "opd %s: cannot create directory %s: %s\n", cmd, p, strerror(errno));
            rc = -1;
            break;
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    return rc;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = opd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void print_eval(const char *what, const harness_eval_result *r) {
    printf("%s: %s %.4f on %d problems (mean length %.1f tokens, %.1f%% cut by the horizon, %.1f s)\n",
           what, r->k == 1 ? "pass@1" : "avg@k", r->acc, r->n, r->mean_len,
           100.0 * r->truncated_frac, r->seconds);
}

static int progress_tty(void) { return isatty(fileno(stderr)); }

/* ------------------------------------------------------------- opd data */
int cmd_data(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"seed", required_argument, 0, 's'},
        {"min-steps", required_argument, 0, 'a'}, {"max-steps", required_argument, 0, 'b'},
        {"train", required_argument, 0, 'T'}, {"valid", required_argument, 0, 'V'},
        {"test", required_argument, 0, 'E'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opd_task_config tc;
    opd_task_config_default(&tc);
    const char *out = NULL;
    int n[3] = {4000, 200, 500};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': if (cli_u64("data", "seed", optarg, &tc.seed)) return 2; break;
        case 'a': if (cli_int("data", "min-steps", optarg, 1, OPD_TASK_MAX_STEPS, &tc.min_steps)) return 2; break;
        case 'b': if (cli_int("data", "max-steps", optarg, 1, OPD_TASK_MAX_STEPS, &tc.max_steps)) return 2; break;
        case 'T': if (cli_int("data", "train", optarg, 1, 10000000, &n[0])) return 2; break;
        case 'V': if (cli_int("data", "valid", optarg, 1, 10000000, &n[1])) return 2; break;
        case 'E': if (cli_int("data", "test", optarg, 1, 10000000, &n[2])) return 2; break;
        case 'h':
            printf("Usage: opd data --out DIR [OPTIONS]\n"
                   "Generate the modular-arithmetic chain task: DIR/train.csv, valid.csv, test.csv.\n\n"
                   "  -o, --out DIR        output directory (created)\n"
                   "  -s, --seed N         generator seed (default 1234)\n"
                   "      --min-steps N    fewest steps per problem (default 24)\n"
                   "      --max-steps N    most steps per problem, <= %d (default 40)\n"
                   "      --train N / --valid N / --test N   split sizes (4000 / 200 / 500)\n",
                   OPD_TASK_MAX_STEPS);
            return 0;
        default: return cli_usage_error("data");
        }
    }
    if (!out || optind != argc) { fprintf(stderr, "opd data: --out DIR is required\n"); return cli_usage_error("data"); }
    if (opd_task_config_validate(&tc) != 0) return cli_fail("data");
    if (ensure_dir("data", out) != 0) return 1;
    static const opd_split splits[3] = {OPD_SPLIT_TRAIN, OPD_SPLIT_VALID, OPD_SPLIT_TEST};
    for (int i = 0; i < 3; i++) {
        opd_task *t = opd_dataset_generate(&tc, splits[i], n[i]);
        char name[32];
        snprintf(name, sizeof name, "%s.csv", opd_split_name(splits[i]));
        char *p = path_join(out, name);
        int rc = opd_dataset_write_csv(p, t, n[i]);
        if (rc == 0) printf("wrote %s (%d problems, %d..%d steps)\n", p, n[i], tc.min_steps, tc.max_steps);
        free(p);
        opd_dataset_free(t);
        if (rc != 0) return cli_fail("data");
    }
    return 0;
}

/* -------------------------------------------------------------- opd sft */
int cmd_sft(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
        {"init", required_argument, 0, 'i'}, {"steps", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'B'}, {"lr", required_argument, 0, 'l'},
        {"warmup", required_argument, 0, 'w'}, {"seed", required_argument, 0, 's'},
        {"log", required_argument, 0, 'L'}, {"eval", required_argument, 0, 'e'},
        {"eval-n", required_argument, 0, 'N'}, {"eval-every", required_argument, 0, 'E'},
        {"stop-at", required_argument, 0, 'A'}, {"help", no_argument, 0, 'h'},
        CLI_MODEL_OPTIONS, {0, 0, 0, 0}};
    opd_config cfg;
    opd_config_default(&cfg);
    const char *data = NULL, *out = NULL, *init = NULL, *logp = NULL, *evalp = NULL;
    int steps = 200, B = 16, warmup = 20, eval_n = 100, eval_every = 0;
    float lr = 3e-3f, stop_at = 0.0f;
    uint64_t seed = 1;
    int c, model_opts = 0, vocab_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:s:h", opts, NULL)) != -1) {
        int r = cli_model_option("sft", c, optarg, &cfg);
        if (r < 0) return 2;
        if (r > 0) { model_opts++; vocab_given |= c == 1001; continue; }
        switch (c) {
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'i': init = optarg; break;
        case 'L': logp = optarg; break;
        case 'e': evalp = optarg; break;
        case 'n': if (cli_int("sft", "steps", optarg, 1, 10000000, &steps)) return 2; break;
        case 'B': if (cli_int("sft", "batch", optarg, 1, 4096, &B)) return 2; break;
        case 'w': if (cli_int("sft", "warmup", optarg, 0, 10000000, &warmup)) return 2; break;
        case 'N': if (cli_int("sft", "eval-n", optarg, 1, 10000000, &eval_n)) return 2; break;
        case 'E': if (cli_int("sft", "eval-every", optarg, 1, 10000000, &eval_every)) return 2; break;
        case 'A': if (cli_float("sft", "stop-at", optarg, 1e-6, 1, &stop_at)) return 2; break;
        case 'l': if (cli_float("sft", "lr", optarg, 1e-8, 10, &lr)) return 2; break;
        case 's': if (cli_u64("sft", "seed", optarg, &seed)) return 2; break;
        case 'h':
            printf("Usage: opd sft --data TRAIN.csv --out CKPT [OPTIONS]\n"
                   "Supervised training on reference solutions (makes the teacher, warm-starts the student).\n\n"
                   "  -d, --data CSV     training split\n"
                   "  -o, --out CKPT     output checkpoint (safetensors)\n"
                   "      --init CKPT    start from this checkpoint (else a random model, see below)\n"
                   "      --steps N      optimizer steps (default 200)\n"
                   "      --batch N      sequences per step (default 16)\n"
                   "      --lr X         peak learning rate, warmup + cosine (default 3e-3)\n"
                   "      --warmup N     warmup steps (default 20)\n"
                   "  -s, --seed N       seed of the init and the batch draws (default 1)\n"
                   "      --log CSV      per-step log (step,loss,grad_norm,lr,seconds)\n"
                   "      --eval CSV     score greedy pass@1 on this split at the end\n"
                   "      --eval-n N     problems scored (default 100)\n"
                   "      --eval-every N also score every N steps (needs --eval)\n"
                   "      --stop-at A    stop at the first of those scores >= A (a student warm\n"
                   "                     start of a chosen accuracy; needs --eval-every)\n" CLI_MODEL_HELP);
            return 0;
        default: return cli_usage_error("sft");
        }
    }
    if (!data || !out || optind != argc) { fprintf(stderr, "opd sft: --data and --out are required\n"); return cli_usage_error("sft"); }
    if (eval_every > 0 && !evalp) { fprintf(stderr, "opd sft: --eval-every needs --eval\n"); return cli_usage_error("sft"); }
    if (stop_at > 0 && eval_every == 0) { fprintf(stderr, "opd sft: --stop-at needs --eval-every\n"); return cli_usage_error("sft"); }
    /* options that would be ignored are errors, not silently dropped */
    if (init && model_opts) {
        fprintf(stderr, "opd sft: model options (--d-model, --vocab, ...) do not apply with --init: "
                        "the architecture is %s's\n", init);
        return 2;
    }
    if (vocab_given) {
        opd_tokenizer t0;
        opd_tokenizer_default(&t0);
        if (cfg.vocab_size != t0.vocab_size) {
            fprintf(stderr, "opd sft: --vocab %d: sft trains on the tokenizer's vocabulary of %d tokens\n",
                    cfg.vocab_size, t0.vocab_size);
            return 2;
        }
    }
    opd_task *tasks;
    int n;
    if (opd_dataset_read_csv(data, &tasks, &n) != 0) return cli_fail("sft");
    opd_task *et = NULL;
    int en = 0;
    if (evalp && opd_dataset_read_csv(evalp, &et, &en) != 0) { opd_dataset_free(tasks); return cli_fail("sft"); }
    if (en > eval_n) en = eval_n;
    opd_sampler_config greedy = {0.0f, 0, 1.0f};
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    opd_model m;
    if (init) {
        if (opd_model_load_any(&m, init, NULL) != 0) { opd_dataset_free(tasks); return cli_fail("sft"); }
        if (cli_check_task_vocab(&m, init, tok.vocab_size) != 0) { opd_model_free(&m); opd_dataset_free(tasks); return cli_fail("sft"); }
    } else {
        cfg.vocab_size = tok.vocab_size;
        if (opd_model_init(&m, &cfg) != 0) { opd_dataset_free(tasks); return cli_fail("sft"); }
        opd_model_init_random(&m, seed);
    }
    opd_optim_config oc;
    opd_optim_config_default(&oc);
    oc.lr = lr;
    oc.lr_kind = OPD_LR_COSINE;
    oc.warmup_steps = warmup;
    oc.total_steps = steps;
    opd_adamw opt;
    opd_adamw_init(&opt, &oc, m.num_params);
    opd_csv_log log;
    static const char *hdr[] = {"step", "loss", "grad_norm", "lr", "seconds"};
    int have_log = logp != NULL;
    if (have_log && opd_csv_log_open(&log, logp, hdr, 5) != 0) return cli_fail("sft");
    int *idx = opd_malloc(sizeof(int) * B);
    double t_start = opd_time();
    int rc = 0, done = 0, stopped = 0;
    harness_eval_result last;   /* the latest --eval score */
    float loss = 0, gn = 0;
    for (int k = 0; k < steps && rc == 0; k++) {
        done = k + 1;
        harness_draw_batch(seed, k, n, B, idx);
        int *tokens, *pad, T;
        float *mask;
        harness_sft_batch(&tok, tasks, idx, B, &tokens, &pad, &mask, &T);
        if (T > m.cfg.max_seq_len) {
            rc = opd_set_error("%s: a sequence of %d tokens exceeds max_seq_len %d", data, T, m.cfg.max_seq_len);
        } else {
            float lr_now = opd_lr_at(&oc, opt.step);
            rc = opd_sft_step(&m, &opt, tokens, pad, mask, B, T, &loss, &gn);
            double sec = opd_time() - t_start;
            if (rc == 0 && have_log) {
                opd_csv_log_int(&log, k); opd_csv_log_num(&log, loss); opd_csv_log_num(&log, gn);
                opd_csv_log_num(&log, lr_now); opd_csv_log_num(&log, sec);
                opd_csv_log_end_row(&log);
            }
            if (progress_tty())
                fprintf(stderr, "\rsft step %d/%d  loss %.4f  |g| %.3f  %.0f s   ", k + 1, steps, loss, gn, sec);
            else if ((k + 1) % 50 == 0 || k == 0 || k + 1 == steps)
                printf("sft step %d/%d loss %.4f grad_norm %.3f %.1f s\n", k + 1, steps, loss, gn, sec);
            if (have_log && (k + 1) % 50 == 0 && rc == 0) rc = opd_csv_log_flush(&log);
        }
        free(tokens); free(pad); free(mask);
        if (rc == 0 && eval_every > 0 && (k + 1) % eval_every == 0 && k + 1 < steps) {
            rc = harness_evaluate(&m, &tok, et, en, harness_full_horizon(et, en), 64, &greedy, 1, seed, &last);
            if (rc == 0) printf("sft step %d: pass@1 %.4f on %d problems of %s\n", k + 1, last.acc, en, evalp);
            if (rc == 0 && stop_at > 0 && last.acc >= stop_at) {
                printf("sft: pass@1 %.4f >= --stop-at %g: stopping after %d steps\n", last.acc, stop_at, k + 1);
                stopped = 1;
                break;
            }
        }
    }
    if (progress_tty()) fprintf(stderr, "\n");
    free(idx);
    if (have_log) { if (rc == 0) rc = opd_csv_log_close(&log); else opd_csv_log_discard(&log); }
    if (rc == 0) rc = opd_model_save(&m, out, NULL, NULL, NULL, 0);
    if (rc == 0) printf("wrote %s after %d steps (final loss %.4f, %.1f s)\n", out, done, loss, opd_time() - t_start);
    if (rc == 0 && evalp) {
        /* a run stopped by --stop-at was just scored on these weights */
        if (!stopped) rc = harness_evaluate(&m, &tok, et, en, harness_full_horizon(et, en), 64, &greedy, 1, seed, &last);
        if (rc == 0) print_eval(evalp, &last);
    }
    if (et) opd_dataset_free(et);
    opd_adamw_free(&opt);
    opd_model_free(&m);
    opd_dataset_free(tasks);
    return rc == 0 ? 0 : cli_fail("sft");
}

/* ---------------------------------------------------------- opd distill */
typedef struct {
    const char *teacher, *student, *data, *out, *evalp;
    opd_distill_config dc;
    opd_optim_config oc;
    int B, samples, steps, eval_every, eval_n, save_every, resume, T;
    int stop_after;   /* stop (with a checkpoint) after this many steps, as if interrupted */
    uint64_t seed;
    opd_device_kind device;   /* --device: where the steps run (device.h) */
} distill_args;

static const char *step_log_header[] = {
    "step", "horizon", "trained_len", "tokens", "truncated", "loss", "loss_kind", "reduction",
    "mean_rkl", "kl_q1", "kl_q2", "kl_q3", "kl_q4", "grad_norm", "lr",
    "sec_rollout", "sec_teacher", "sec_student", "sec_optim", "train_seconds", "peak_rss_kb"};
#define STEP_LOG_COLS ((int)(sizeof step_log_header / sizeof step_log_header[0]))
static const char *eval_log_header[] = {"step", "train_seconds", "tokens_generated", "acc",
                                        "mean_len", "truncated_frac", "peak_rss_kb"};
#define EVAL_LOG_COLS 7

/* A step number from a file (a log cell, checkpoint metadata): a plain
 * decimal integer in [lo, hi], nothing else ("", "-5", "9e99" and LONG_MAX
 * are all errors, not 0 or an overflow). */
static int parse_step(const char *s, long lo, long hi, long *out) {
    if (!s || !*s || *s == '+' || *s == ' ') return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* On --resume, keep the rows of an existing log up to the resumed step: read
 * them before the log is rewritten. The log must have the columns this
 * version writes (another shape would lose its rows without a word). */
static int read_old_log(const char *path, const char *const *header, int ncols, opd_csv_table *t) {
    memset(t, 0, sizeof *t);
    if (access(path, F_OK) != 0) return 0;
    if (opd_csv_read(path, t) != 0) return -1;
    int same = t->ncols == ncols;
    for (int c = 0; same && c < ncols; c++) same = strcmp(t->cell[c], header[c]) == 0;
    if (!same) {
        char got[160];
        size_t k = 0;
        got[0] = '\0';
        for (int c = 0; c < t->ncols && k + 1 < sizeof got; c++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%s", c ? "," : "", t->cell[c]);
        int nc = t->ncols;
        opd_csv_table_free(t);
        return opd_set_error("%s: %d columns \"%.80s\" are not the %d this opd logs (starting \"%s,%s\"): "
                             "its rows would be lost; move it away to resume", path, nc, got, ncols,
                             header[0], header[1]);
    }
    return 0;
}

/* Re-adds the old rows whose step is <= upto (rows beyond the checkpoint
 * are dropped: the resumed run writes them again). With `need` > 0 the rows
 * kept must be exactly steps 0 .. need-1, in order: a log behind its
 * checkpoint would otherwise resume with a hole. */
static int append_old_rows(opd_csv_log *log, opd_csv_table *t, long upto, long need, const char *path) {
    long next = 0;
    int rc = 0;
    for (int r = 1; r < t->nrows && rc == 0; r++) {
        long step;
        if (parse_step(t->cell[r * t->ncols], 0, 1L << 30, &step) != 0) {
            rc = opd_set_error("%s:%d: step \"%.40s\" is not an integer in [0, 2^30]", path, t->line[r],
                               t->cell[r * t->ncols]);
            break;
        }
        if (step > upto) continue;
        if (need > 0 && step != next)
            rc = opd_set_error("%s:%d: step %ld where step %ld was expected (a log out of order or with a hole)",
                               path, t->line[r], step, next);
        next = step + 1;
        for (int c = 0; c < t->ncols && c < log->ncols; c++) opd_csv_log_str(log, t->cell[r * t->ncols + c]);
        opd_csv_log_end_row(log);
    }
    if (rc == 0 && need > 0 && next != need)
        rc = opd_set_error("%s: holds steps up to %ld but the checkpoint is at step %ld: the log is behind "
                           "its checkpoint", path, next - 1, need - 1);
    if (t->cell) opd_csv_table_free(t);
    return rc;
}

/* --resume of a distill run's log.csv and eval.csv (both distill commands).
 * The logs are flushed before each checkpoint is renamed into place, so
 * after any kill they hold at least the checkpoint's rows, maybe more: keep
 * rows up to the checkpoint (step rows of steps < k0; eval rows are labelled
 * by steps done, <= k0) and write them back before anything else, so the
 * files are never shorter than they were. On success both logs are open;
 * on failure neither is, and the files are as they were. */
int cli_resume_logs(opd_csv_log *slog, const char *slog_path, const char *const *shdr, int scols,
                    opd_csv_log *elog, const char *elog_path, const char *const *ehdr, int ecols,
                    long k0) {
    opd_csv_table old_s, old_e;
    memset(&old_s, 0, sizeof old_s);
    memset(&old_e, 0, sizeof old_e);
    if (read_old_log(slog_path, shdr, scols, &old_s) != 0) return -1;
    if (read_old_log(elog_path, ehdr, ecols, &old_e) != 0) {
        if (old_s.cell) opd_csv_table_free(&old_s);
        return -1;
    }
    if (!old_s.cell || !old_e.cell) {
        /* both are written from the first step on: one missing was removed */
        opd_set_error("%s: missing: resuming at step %ld needs the log of the steps before it",
                      old_s.cell ? elog_path : slog_path, k0);
        if (old_s.cell) opd_csv_table_free(&old_s);
        if (old_e.cell) opd_csv_table_free(&old_e);
        return -1;
    }
    opd_csv_log_init(slog, slog_path, shdr, scols);
    opd_csv_log_init(elog, elog_path, ehdr, ecols);
    int rc = append_old_rows(slog, &old_s, k0 - 1, k0, slog_path);
    if (rc == 0) rc = append_old_rows(elog, &old_e, k0, 0, elog_path);
    else if (old_e.cell) opd_csv_table_free(&old_e);
    if (rc == 0) rc = opd_csv_log_flush(slog);
    if (rc == 0) rc = opd_csv_log_flush(elog);
    if (rc != 0) {   /* leave the files as they were */
        opd_csv_log_discard(slog);
        opd_csv_log_discard(elog);
    }
    return rc;
}

static int distill_eval(const opd_model *m, const opd_tokenizer *tok, const opd_task *et, int en,
                        int T, uint64_t seed, long step, double train_sec, long tokens,
                        opd_csv_log *elog) {
    opd_sampler_config sc = {0.0f, 0, 1.0f};
    harness_eval_result r;
    if (harness_evaluate(m, tok, et, en, T, 64, &sc, 1, seed, &r) != 0) return -1;
    opd_csv_log_int(elog, step); opd_csv_log_num(elog, train_sec); opd_csv_log_int(elog, tokens);
    opd_csv_log_num(elog, r.acc); opd_csv_log_num(elog, r.mean_len);
    opd_csv_log_num(elog, r.truncated_frac); opd_csv_log_int(elog, opd_peak_rss_kb());
    opd_csv_log_end_row(elog);
    if (progress_tty()) fprintf(stderr, "\n");
    printf("eval step %ld: pass@1 %.4f (mean length %.1f, train %.1f s)\n", step, r.acc, r.mean_len, train_sec);
    fflush(stdout);
    return opd_csv_log_flush(elog);
}

static int save_student(const opd_model *m, const opd_adamw *opt, const char *path, long step,
                        double sec, long tokens, const distill_args *a) {
    char s_step[32], s_sec[32], s_tok[32], s_seed[32];
    snprintf(s_step, sizeof s_step, "%ld", step);
    snprintf(s_sec, sizeof s_sec, "%.17g", sec);
    snprintf(s_tok, sizeof s_tok, "%ld", tokens);
    snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)a->seed);
    const char *keys[] = {"opd.train.step", "opd.train.seconds", "opd.train.tokens", "opd.train.seed",
                          "opd.train.method", "opd.train.loss"};
    const char *vals[] = {s_step, s_sec, s_tok, s_seed, opd_schedule_name(a->dc.schedule.kind),
                          opd_loss_name(a->dc.loss.kind)};
    return opd_model_save(m, path, opt, keys, vals, 6);
}

int cli_meta_long(const char *path, const char *key, long lo, long hi, long *out) {
    char *v = opd_checkpoint_meta(path, key);
    if (!v) return opd_set_error("%s: no '%s' in the checkpoint's metadata (not a distill checkpoint?)", path, key);
    int bad = parse_step(v, lo, hi, out) != 0;
    if (bad) opd_set_error("%s: metadata '%s' = \"%.40s\" is not an integer in [%ld, %ld]", path, key, v, lo, hi);
    free(v);
    return bad ? -1 : 0;
}

int cli_meta_seconds(const char *path, const char *key, double *out) {
    char *v = opd_checkpoint_meta(path, key);
    if (!v) return opd_set_error("%s: no '%s' in the checkpoint's metadata (not a distill checkpoint?)", path, key);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    int bad = !*v || *end != '\0' || errno != 0 || !isfinite(x) || x < 0;
    if (bad) opd_set_error("%s: metadata '%s' = \"%.40s\" is not a finite number >= 0", path, key, v);
    free(v);
    *out = bad ? 0 : x;
    return bad ? -1 : 0;
}

static int run_distill(distill_args *a) {
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    opd_task *tasks = NULL, *et = NULL;
    int n = 0, en = 0, rc = 0;
    opd_model teacher, student;
    memset(&teacher, 0, sizeof teacher);
    memset(&student, 0, sizeof student);
    opd_adamw opt;
    memset(&opt, 0, sizeof opt);
    opd_csv_log slog, elog;
    int have_slog = 0, have_elog = 0;
    char *ckpt = path_join(a->out, "student.safetensors");
    char *slog_path = path_join(a->out, "log.csv");
    char *elog_path = path_join(a->out, "eval.csv");
    long k0 = 0, tokens = 0;
    double train_sec = 0;
    int *idx = opd_malloc(sizeof(int) * a->B), *sidx = NULL;
    uint32_t *ids = NULL;
    opd_device *dev = NULL;

    if ((rc = opd_dataset_read_csv(a->data, &tasks, &n)) != 0) goto done;
    if (a->evalp) {
        if ((rc = opd_dataset_read_csv(a->evalp, &et, &en)) != 0) goto done;
        if (a->eval_n < en) en = a->eval_n;
    }
    if (a->T <= 0) a->T = harness_full_horizon(tasks, n);
    a->dc.schedule.max_new_tokens = a->T;
    if ((rc = opd_schedule_validate(&a->dc.schedule)) != 0) goto done;
    if ((rc = opd_model_load_any(&teacher, a->teacher, NULL)) != 0) goto done;
    if (a->resume) {
        /* everything else of the state is keyed by (seed, step): the student,
         * its optimizer moments and the step number are all there is */
        if ((rc = opd_model_load(&student, ckpt, &opt)) != 0) goto done;
        /* the step is the last one done, < --steps' bound of 2^30 */
        if ((rc = cli_meta_long(ckpt, "opd.train.step", 0, (1L << 30) - 1, &k0)) != 0) goto done;
        if ((rc = cli_meta_long(ckpt, "opd.train.tokens", 0, 1L << 60, &tokens)) != 0) goto done;
        if ((rc = cli_meta_seconds(ckpt, "opd.train.seconds", &train_sec)) != 0) goto done;
        k0 += 1;
        printf("resuming %s at step %ld\n", ckpt, k0);
    } else {
        if ((rc = opd_model_load_any(&student, a->student, NULL)) != 0) goto done;
        a->oc.total_steps = a->steps;
        opd_adamw_init(&opt, &a->oc, student.num_params);
    }
    if (teacher.cfg.vocab_size != student.cfg.vocab_size || student.cfg.vocab_size != tok.vocab_size) {
        rc = opd_set_error("vocabularies differ: teacher %s %d, student %s %d, the task's character tokenizer %d%s",
                           a->teacher, teacher.cfg.vocab_size, a->resume ? ckpt : a->student,
                           student.cfg.vocab_size, tok.vocab_size, CLI_TEXT_HINT);
        goto done;
    }
    a->dc.rollout.eos_id = tok.eos_id;
    a->dc.rollout.pad_id = tok.pad_id;
    a->dc.rollout.seed = a->seed;
    if ((rc = opd_device_open(&dev, a->device, &student, &teacher, &opt)) != 0) goto done;

    if (a->resume) {
        if ((rc = cli_resume_logs(&slog, slog_path, step_log_header, STEP_LOG_COLS, &elog, elog_path,
                                  eval_log_header, EVAL_LOG_COLS, k0)) != 0)
            goto done;
        have_slog = have_elog = 1;
    } else {
        if ((rc = opd_csv_log_open(&slog, slog_path, step_log_header, STEP_LOG_COLS)) != 0) goto done;
        have_slog = 1;
        if ((rc = opd_csv_log_open(&elog, elog_path, eval_log_header, EVAL_LOG_COLS)) != 0) goto done;
        have_elog = 1;
    }

    int BS = a->B * a->samples;
    sidx = opd_malloc(sizeof(int) * BS);
    ids = opd_malloc(sizeof(uint32_t) * BS);
    printf("distill: %s, loss %s (%s), T=%d, %d prompts x %d samples, %d steps, device %s\n",
           opd_schedule_name(a->dc.schedule.kind), opd_loss_name(a->dc.loss.kind),
           a->dc.loss.reduction == OPD_REDUCE_TOKEN_MEAN ? "token mean" : "sequence mean",
           a->T, a->B, a->samples, a->steps, opd_device_name(dev));
    if (et && k0 == 0 && (rc = distill_eval(&student, &tok, et, en, a->T, a->seed, 0, 0, 0, &elog)) != 0) goto done;
    for (long k = k0; k < a->steps; k++) {
        harness_draw_batch(a->seed, k, n, a->B, idx);
        for (int i = 0; i < BS; i++) {
            sidx[i] = idx[i / a->samples];
            ids[i] = (uint32_t)i;   /* sample j of prompt slot p: key p*samples + j */
        }
        int *prompts, *pad, P;
        harness_prompt_batch(&tok, tasks, sidx, BS, &prompts, &pad, &P);
        opd_step_stats st;
        rc = opd_device_distill_step(dev, &student, &teacher, &opt, &a->dc, prompts, pad, ids, BS, P, k, &st);
        free(prompts);
        free(pad);
        if (rc != 0) goto done;
        double sec = st.sec_rollout + st.sec_teacher + st.sec_student + st.sec_optim;
        train_sec += sec;
        tokens += st.tokens;
        opd_csv_log_int(&slog, k); opd_csv_log_int(&slog, st.horizon); opd_csv_log_int(&slog, st.trained_len);
        opd_csv_log_int(&slog, st.tokens); opd_csv_log_int(&slog, st.truncated);
        opd_csv_log_num(&slog, st.loss); opd_csv_log_str(&slog, opd_loss_name(a->dc.loss.kind));
        opd_csv_log_str(&slog, a->dc.loss.reduction == OPD_REDUCE_TOKEN_MEAN ? "token_mean" : "seq_mean");
        opd_csv_log_num(&slog, st.mean_rkl);
        for (int q = 0; q < OPD_KL_BUCKETS; q++) opd_csv_log_num(&slog, st.kl_bucket[q]);
        opd_csv_log_num(&slog, st.grad_norm); opd_csv_log_num(&slog, st.lr);
        opd_csv_log_num(&slog, st.sec_rollout); opd_csv_log_num(&slog, st.sec_teacher);
        opd_csv_log_num(&slog, st.sec_student); opd_csv_log_num(&slog, st.sec_optim);
        opd_csv_log_num(&slog, train_sec); opd_csv_log_int(&slog, st.peak_rss_kb);
        opd_csv_log_end_row(&slog);
        if (progress_tty())
            fprintf(stderr, "\rdistill step %ld/%d  H=%d  loss %.4f  rkl %.4f  %.1f s   ", k + 1, a->steps,
                    st.horizon, st.loss, st.mean_rkl, train_sec);
        int last = k + 1 == a->steps;
        int stop = a->stop_after > 0 && k + 1 == a->stop_after && !last;
        int save = (a->save_every > 0 && (k + 1) % a->save_every == 0) || last || stop;
        int eval = et && ((a->eval_every > 0 && (k + 1) % a->eval_every == 0) || last);
        /* checkpoints and evaluations read the host copies */
        if ((save || eval) && (rc = opd_device_sync_to_host(dev, &student, &opt)) != 0) goto done;
        /* Evaluate, then flush both logs, then rename the checkpoint into
         * place: a kill at any point leaves logs at or ahead of the
         * checkpoint, never behind it (resume drops the rows ahead). */
        if (eval)
            if ((rc = distill_eval(&student, &tok, et, en, a->T, a->seed, k + 1, train_sec, tokens, &elog)) != 0) goto done;
        if (save) {
            if ((rc = opd_csv_log_flush(&slog)) != 0) goto done;
            if ((rc = save_student(&student, &opt, ckpt, k, train_sec, tokens, a)) != 0) goto done;
        }
        if (stop) {
            printf("stopped after step %ld as asked (--stop-after); continue with --resume\n", k + 1);
            break;
        }
    }
    if (progress_tty()) fprintf(stderr, "\n");
    printf("wrote %s, %s, %s (%.1f s of training, %ld tokens generated)\n", ckpt, slog_path,
           elog_path, train_sec, tokens);
done:
    /* the logs are closed (written) even after an error: they show how far
     * the run got; a close failure is reported only if nothing failed before */
    if (have_slog && opd_csv_log_close(&slog) != 0 && rc == 0) rc = -1;
    if (have_elog && opd_csv_log_close(&elog) != 0 && rc == 0) rc = -1;
    opd_device_close(dev);
    free(idx); free(sidx); free(ids);
    free(ckpt); free(slog_path); free(elog_path);
    if (opt.m) opd_adamw_free(&opt);
    if (student.params_mem) opd_model_free(&student);
    if (teacher.params_mem) opd_model_free(&teacher);
    if (tasks) opd_dataset_free(tasks);
    if (et) opd_dataset_free(et);
    return rc;
}

int cmd_distill(int argc, char **argv) {
    if (cli_has_prompts(argc, argv)) return cmd_distill_text(argc, argv);   /* text prompts: cmd_text.c */
    static const struct option opts[] = {
        {"teacher", required_argument, 0, 't'}, {"student", required_argument, 0, 'S'},
        {"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
        {"method", required_argument, 0, 'm'}, {"horizon", required_argument, 0, 'T'},
        {"h0", required_argument, 0, 1}, {"dh", required_argument, 0, 2}, {"dk", required_argument, 0, 3},
        {"rho", required_argument, 0, 4}, {"growth", required_argument, 0, 5},
        {"loss", required_argument, 0, 6}, {"beta", required_argument, 0, 7},
        {"topk-teacher", required_argument, 0, 8}, {"gamma", required_argument, 0, 9},
        {"clamp", required_argument, 0, 10}, {"reduction", required_argument, 0, 11},
        {"temperature", required_argument, 0, 12}, {"top-k", required_argument, 0, 13},
        {"top-p", required_argument, 0, 14}, {"batch", required_argument, 0, 'B'},
        {"samples", required_argument, 0, 15}, {"lr", required_argument, 0, 'l'},
        {"steps", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},
        {"eval", required_argument, 0, 16}, {"eval-every", required_argument, 0, 17},
        {"eval-n", required_argument, 0, 18}, {"save-every", required_argument, 0, 19},
        {"resume", no_argument, 0, 20}, {"warmup", required_argument, 0, 21},
        {"stop-after", required_argument, 0, 22},
        {"weight-decay", required_argument, 0, 23}, {"beta2", required_argument, 0, 24},
        {"clip", required_argument, 0, 25}, {"device", required_argument, 0, 26},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    distill_args a;
    memset(&a, 0, sizeof a);
    opd_distill_config_default(&a.dc, 1);
    opd_optim_config_default(&a.oc);
    a.oc.lr = 1e-3f;
    /* No weight decay by default: with it, distilling a student into an
     * identical teacher (loss and gradient exactly 0) is no fixed point:
     * decay opens a tiny gap and AdamW turns the tiny gradients into
     * lr-sized steps. Measured: such a self-distillation lost 22 points of
     * pass@1 in 200 steps with weight decay 0.01, none with 0. */
    a.oc.weight_decay = 0.0f;
    a.B = 8; a.samples = 1; a.steps = 100; a.eval_n = 100; a.seed = 1;
    a.dc.schedule.kind = OPD_SCHED_FULL;
    int h0 = -1, dh = -1, dk = -1;
    float rho = 0.25f, growth = 2.0f;
    const char *C = "distill";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:d:o:m:T:B:n:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': a.teacher = optarg; break;
        case 'S': a.student = optarg; break;
        case 'd': a.data = optarg; break;
        case 'o': a.out = optarg; break;
        case 'm':
            if (opd_schedule_parse(optarg, &a.dc.schedule.kind) != 0) {
                fprintf(stderr, "opd distill: --method: %s\n", opd_last_error());
                return 2;
            }
            break;
        case 'T': if (cli_int(C, "horizon", optarg, 1, 1 << 20, &a.T)) return 2; break;
        case 1: if (cli_int(C, "h0", optarg, 1, 1 << 20, &h0)) return 2; break;
        case 2: if (cli_int(C, "dh", optarg, 1, 1 << 20, &dh)) return 2; break;
        case 3: if (cli_int(C, "dk", optarg, 1, 1 << 30, &dk)) return 2; break;
        case 4: if (cli_float(C, "rho", optarg, 1e-6, 1, &rho)) return 2; break;
        case 5: if (cli_float(C, "growth", optarg, 1.0001, 1000, &growth)) return 2; break;
        case 6:
            if (opd_loss_parse(optarg, &a.dc.loss.kind) != 0) {
                fprintf(stderr, "opd distill: --loss: %s\n", opd_last_error());
                return 2;
            }
            break;
        case 7: if (cli_float(C, "beta", optarg, 0, 1, &a.dc.loss.beta)) return 2; break;
        case 8: if (cli_int(C, "topk-teacher", optarg, 1, 1 << 20, &a.dc.loss.topk)) return 2; break;
        case 9: if (cli_float(C, "gamma", optarg, 0, 1, &a.dc.loss.gamma)) return 2; break;
        case 10: if (cli_float(C, "clamp", optarg, 0, 1e6, &a.dc.loss.reward_clamp)) return 2; break;
        case 11:
            if (!strcmp(optarg, "token")) a.dc.loss.reduction = OPD_REDUCE_TOKEN_MEAN;
            else if (!strcmp(optarg, "sequence")) a.dc.loss.reduction = OPD_REDUCE_SEQ_MEAN;
            else { fprintf(stderr, "opd distill: --reduction: '%s' is not token or sequence\n", optarg); return 2; }
            break;
        case 12: if (cli_float(C, "temperature", optarg, 0, 100, &a.dc.rollout.sampler.temperature)) return 2; break;
        case 13: if (cli_int(C, "top-k", optarg, 0, 1 << 20, &a.dc.rollout.sampler.top_k)) return 2; break;
        case 14: if (cli_float(C, "top-p", optarg, 1e-6, 1, &a.dc.rollout.sampler.top_p)) return 2; break;
        case 'B': if (cli_int(C, "batch", optarg, 1, 4096, &a.B)) return 2; break;
        case 15: if (cli_int(C, "samples", optarg, 1, 1024, &a.samples)) return 2; break;
        case 'l': if (cli_float(C, "lr", optarg, 1e-8, 10, &a.oc.lr)) return 2; break;
        case 'n': if (cli_int(C, "steps", optarg, 1, 1 << 30, &a.steps)) return 2; break;
        case 's': if (cli_u64(C, "seed", optarg, &a.seed)) return 2; break;
        case 16: a.evalp = optarg; break;
        case 17: if (cli_int(C, "eval-every", optarg, 0, 1 << 30, &a.eval_every)) return 2; break;
        case 18: if (cli_int(C, "eval-n", optarg, 1, 1 << 30, &a.eval_n)) return 2; break;
        case 19: if (cli_int(C, "save-every", optarg, 0, 1 << 30, &a.save_every)) return 2; break;
        case 20: a.resume = 1; break;
        case 21: if (cli_int(C, "warmup", optarg, 0, 1 << 30, &a.oc.warmup_steps)) return 2; break;
        case 22: if (cli_int(C, "stop-after", optarg, 1, 1 << 30, &a.stop_after)) return 2; break;
        case 23: if (cli_float(C, "weight-decay", optarg, 0, 10, &a.oc.weight_decay)) return 2; break;
        case 24: if (cli_float(C, "beta2", optarg, 0, 0.999999, &a.oc.beta2)) return 2; break;
        case 25: if (cli_float(C, "clip", optarg, 0, 1e9, &a.oc.grad_clip)) return 2; break;
        case 26: if (cli_device(C, optarg, &a.device)) return 2; break;
        case 'h':
            printf("Usage: opd distill --teacher CKPT --student CKPT --data TRAIN.csv --out DIR [OPTIONS]\n"
                   "On-policy distillation: the student samples rollouts to the horizon H_k, the teacher\n"
                   "scores them, the student follows the per-token reverse KL.\n\n"
                   "Horizon (H_k):\n"
                   "  -m, --method M        full (OPD) | popd (progressive) | topd (truncated) | linear | geometric\n"
                   "  -T, --horizon T       full horizon, max new tokens (default: longest reference solution + 1)\n"
                   "      --h0 N --dh N --dk N   POPD: H_k = min(T, h0 + dh * floor(k / dk))\n"
                   "      --rho R           TOPD: H_k = ceil(rho * T) (default 0.25)\n"
                   "      --growth G        geometric: H_k = min(T, ceil(h0 * G^floor(k / dk)))\n"
                   "Loss:\n"
                   "      --loss L          rkl (sampled, default) | rkl-full | fkl | jsd | rkl-topk | rkl-seq\n"
                   "      --beta B --topk-teacher K --gamma G --clamp C   loss knobs\n"
                   "      --reduction R     token (mean over tokens, default) | sequence\n"
                   "Sampling:  --temperature X (1) --top-k K (0: off) --top-p P (1: off)\n"
                   "Training:\n"
                   "  -B, --batch N         prompts per step (default 8)\n"
                   "      --samples N       rollouts per prompt (default 1)\n"
                   "      --lr X            learning rate (default 1e-3), --warmup N (0)\n"
                   "      --weight-decay X  AdamW decoupled weight decay (default 0: see cmd_train.c)\n"
                   "      --beta2 X         AdamW second-moment decay (default 0.95)\n"
                   "      --clip X          global gradient-norm clip, 0 off (default 1)\n"
                   "  -n, --steps N         steps (default 100)\n"
                   "  -s, --seed N          seed of batches and sampling (default 1)\n"
                   "      --device D        cpu (default, the reference) | cuda (./configure --with-cuda;\n"
                   "                        checkpoints and --eval run on the CPU from synced weights)\n"
                   "  -o, --out DIR         student.safetensors, log.csv (per step), eval.csv\n"
                   "      --save-every N    checkpoint period (default: at the end)\n"
                   "      --resume          continue from DIR/student.safetensors (bit-identical)\n"
                   "      --stop-after K    stop after K steps with a checkpoint, as if interrupted\n"
                   "Evaluation (greedy pass@1, decoding to the full horizon):\n"
                   "      --eval CSV --eval-every N --eval-n N (100)\n"
                   "Text prompts and a real model's tokenizer: see 'opd distill --prompts F --help'.\n");
            return 0;
        default: return cli_usage_error(C);
        }
    }
    if (!a.teacher || !a.data || !a.out || (!a.student && !a.resume) || optind != argc) {
        fprintf(stderr, "opd distill: --teacher, --student, --data and --out are required\n");
        return cli_usage_error(C);
    }
    /* schedule knobs: defaults scaled to T once T is known */
    opd_schedule *s = &a.dc.schedule;
    s->rho = rho;
    s->growth = growth;
    s->total_steps = a.steps;
    if (ensure_dir(C, a.out) != 0) return 1;
    /* T may still be unknown (from the data): resolve defaults after loading */
    a.dc.schedule.H0 = h0; a.dc.schedule.dH = dh; a.dc.schedule.dk = dk;
    {
        /* fill unset knobs from opd_schedule_default for the eventual T */
        opd_task *tasks; int n;
        if (opd_dataset_read_csv(a.data, &tasks, &n) != 0) return cli_fail(C);
        if (a.T <= 0) a.T = harness_full_horizon(tasks, n);
        opd_dataset_free(tasks);
        opd_schedule d;
        opd_schedule_default(&d, s->kind, a.T);
        if (h0 < 0) s->H0 = d.H0;
        if (dh < 0) s->dH = d.dH;
        if (dk < 0) s->dk = d.dk;
        s->max_new_tokens = a.T;
    }
    return run_distill(&a) == 0 ? 0 : cli_fail(C);
}

/* -------------------------------------------------------------- opd eval */
int cmd_eval(int argc, char **argv) {
    if (cli_has_prompts(argc, argv)) return cmd_eval_text(argc, argv);   /* text prompts: cmd_text.c */
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"n", required_argument, 0, 'n'}, {"samples", required_argument, 0, 'k'},
        {"temperature", required_argument, 0, 't'}, {"horizon", required_argument, 0, 'T'},
        {"batch", required_argument, 0, 'B'}, {"seed", required_argument, 0, 's'},
        {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL, *data = NULL, *out = NULL;
    int n = 0, k = 1, T = 0, B = 64;
    float temp = 1.0f;
    uint64_t seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:d:n:k:t:T:B:s:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'n': if (cli_int("eval", "n", optarg, 1, 1 << 30, &n)) return 2; break;
        case 'k': if (cli_int("eval", "samples", optarg, 1, 4096, &k)) return 2; break;
        case 't': if (cli_float("eval", "temperature", optarg, 0, 100, &temp)) return 2; break;
        case 'T': if (cli_int("eval", "horizon", optarg, 1, 1 << 20, &T)) return 2; break;
        case 'B': if (cli_int("eval", "batch", optarg, 1, 4096, &B)) return 2; break;
        case 's': if (cli_u64("eval", "seed", optarg, &seed)) return 2; break;
        case 'h':
            printf("Usage: opd eval --model CKPT --data TEST.csv [OPTIONS]\n"
                   "Exact-match accuracy, decoding to the full horizon: greedy pass@1, and avg@k\n"
                   "over k sampled solutions when --samples k > 1.\n\n"
                   "  -m, --model CKPT      checkpoint\n"
                   "  -d, --data CSV        split to score\n"
                   "  -n, --n N             first N problems (default all)\n"
                   "  -k, --samples K       sampled solutions per problem for avg@k (default 1: greedy only)\n"
                   "  -t, --temperature X   sampling temperature for avg@k (default 1)\n"
                   "  -T, --horizon T       max new tokens (default: longest reference solution + 1)\n"
                   "  -B, --batch N         sequences decoded together (default 64)\n"
                   "  -o, --out CSV         write the table (metric,steps,value) here too\n"
                   "Text prompts and a real model's tokenizer: see 'opd eval --prompts F --help'.\n");
            return 0;
        default: return cli_usage_error("eval");
        }
    }
    if (!model || !data || optind != argc) { fprintf(stderr, "opd eval: --model and --data are required\n"); return cli_usage_error("eval"); }
    opd_task *tasks;
    int nt;
    if (opd_dataset_read_csv(data, &tasks, &nt) != 0) return cli_fail("eval");
    if (n == 0 || n > nt) n = nt;
    if (T == 0) T = harness_full_horizon(tasks, n);
    opd_model m;
    if (opd_model_load_any(&m, model, NULL) != 0) { opd_dataset_free(tasks); return cli_fail("eval"); }
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    if (cli_check_task_vocab(&m, model, tok.vocab_size) != 0) { opd_model_free(&m); opd_dataset_free(tasks); return cli_fail("eval"); }
    harness_eval_result g, s;
    opd_sampler_config greedy = {0.0f, 0, 1.0f}, sampled = {temp, 0, 1.0f};
    int rc = harness_evaluate(&m, &tok, tasks, n, T, B, &greedy, 1, seed, &g);
    if (rc == 0 && k > 1) rc = harness_evaluate(&m, &tok, tasks, n, T, B, &sampled, k, seed, &s);
    if (rc == 0) {
        printf("%s on %s (%d problems, horizon %d)\n", model, data, n, T);
        printf("| metric              | value   |\n|---------------------|---------|\n");
        printf("| greedy pass@1       | %.4f  |\n", g.acc);
        if (k > 1) printf("| avg@%-3d (T=%.2g)     | %.4f  |\n", k, temp, s.acc);
        printf("| mean length (tok)   | %7.1f |\n", g.mean_len);
        printf("| cut by horizon      | %6.1f%% |\n", 100 * g.truncated_frac);
        printf("\naccuracy by problem length (greedy):\n| steps | problems | pass@1 |\n|-------|----------|--------|\n");
        for (int st = 1; st <= OPD_TASK_MAX_STEPS; st++)
            if (g.count_by_steps[st])
                printf("| %5d | %8d | %.4f |\n", st, g.count_by_steps[st], g.correct_by_steps[st] / g.count_by_steps[st]);
    }
    if (rc == 0 && out) {
        opd_csv_log log;
        static const char *hdr[] = {"metric", "steps", "value"};
        rc = opd_csv_log_open(&log, out, hdr, 3);
        if (rc == 0) {
            opd_csv_log_str(&log, "pass@1"); opd_csv_log_str(&log, "all"); opd_csv_log_num(&log, g.acc); opd_csv_log_end_row(&log);
            if (k > 1) { char nm[32]; snprintf(nm, sizeof nm, "avg@%d", k);
                opd_csv_log_str(&log, nm); opd_csv_log_str(&log, "all"); opd_csv_log_num(&log, s.acc); opd_csv_log_end_row(&log); }
            opd_csv_log_str(&log, "mean_len"); opd_csv_log_str(&log, "all"); opd_csv_log_num(&log, g.mean_len); opd_csv_log_end_row(&log);
            for (int st = 1; st <= OPD_TASK_MAX_STEPS; st++)
                if (g.count_by_steps[st]) {
                    opd_csv_log_str(&log, "pass@1"); opd_csv_log_int(&log, st);
                    opd_csv_log_num(&log, g.correct_by_steps[st] / g.count_by_steps[st]); opd_csv_log_end_row(&log);
                }
            rc = opd_csv_log_close(&log);
        }
    }
    opd_model_free(&m);
    opd_dataset_free(tasks);
    return rc == 0 ? 0 : cli_fail("eval");
}
