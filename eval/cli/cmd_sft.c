/* cmd_sft.c — `opd sft`: supervised training on the task's reference
 * solutions (makes the teacher, warm-starts the student). */
#include "cli.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

static void print_eval(const char *what, const harness_eval_result *r) {
    printf("%s: %s %.4f on %d problems (mean length %.1f tokens, %.1f%% cut by the horizon, %.1f s)\n",
           what, r->k == 1 ? "pass@1" : "avg@k", r->acc, r->n, r->mean_len,
           100.0 * r->truncated_frac, r->seconds);
}

/* --log: one row per step; each column's name next to its value (as
 * distill_run.c's log.csv), the header made from the same table */
#define SFT_LOG_COLUMNS(X)        \
    X(int, "step", k)             \
    X(num, "loss", loss)          \
    X(num, "grad_norm", grad_norm) \
    X(num, "lr", lr)              \
    X(num, "seconds", sec)
#define COL_NAME(kind, name, value) name,
#define COL_PUT(kind, name, value) opd_csv_log_##kind(log, value);
static const char *sft_log_header[] = {SFT_LOG_COLUMNS(COL_NAME)};
#define SFT_LOG_COLS ((int)(sizeof sft_log_header / sizeof sft_log_header[0]))

static void sft_log_row(opd_csv_log *log, long k, float loss, float grad_norm, float lr, double sec) {
    SFT_LOG_COLUMNS(COL_PUT)
    opd_csv_log_end_row(log);
}

int cmd_sft(int argc, char **argv) {
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
        {"init", required_argument, 0, 'i'}, {"steps", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'B'}, {"lr", required_argument, 0, 'l'},
        {"warmup", required_argument, 0, 'w'}, {"seed", required_argument, 0, 's'},
        {"log", required_argument, 0, 'L'}, {"eval", required_argument, 0, 'e'},
        {"eval-n", required_argument, 0, 'N'}, {"eval-every", required_argument, 0, 'E'},
        {"stop-at", required_argument, 0, 'A'}, {"micro-batch", required_argument, 0, 'M'},
        {"help", no_argument, 0, 'h'},
        CLI_MODEL_OPTIONS, {0, 0, 0, 0}};
    opd_config cfg;
    opd_config_default(&cfg);
    const char *data = NULL, *out = NULL, *init = NULL, *logp = NULL, *evalp = NULL;
    int steps = 200, B = 16, warmup = 20, eval_n = 100, eval_every = 0, mb = 0;
    float lr = 3e-3f, stop_at = 0.0f;
    uint64_t seed = 1;
    int c, model_opts = 0, vocab_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:o:s:h", opts, NULL)) != -1) {
        int r = cli_model_option("sft", c, optarg, &cfg);
        if (r < 0) return 2;
        if (r > 0) { model_opts++; vocab_given |= c == OPT_VOCAB; continue; }
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
        case 'M': if (cli_int("sft", "micro-batch", optarg, 1, 4096, &mb)) return 2; break;
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
                   "      --micro-batch N  sequences per micro-batch (default: the batch); the fixed\n"
                   "                     tree sum of their gradients: the same bits on any number of\n"
                   "                     ranks (mpirun -np R, R a power of two dividing batch / N)\n"
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
    if (mb == 0) mb = B;
    if (opd_dist_check(B, mb, opd_dist_size()) != 0) {   /* the same on every rank: said once */
        if (opd_dist_rank() == 0) fprintf(stderr, "opd sft: %s\n", opd_last_error());
        return 2;
    }
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
        if (harness_check_vocab(&m, init, tok.vocab_size) != 0) { opd_model_free(&m); opd_dataset_free(tasks); return cli_fail("sft"); }
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
    const int writer = opd_dist_rank() == 0;   /* rank 0 writes the log and the checkpoint */
    int have_log = logp != NULL && writer;
    if (have_log && opd_csv_log_open(&log, logp, sft_log_header, SFT_LOG_COLS) != 0) return cli_fail("sft");
    int *idx = opd_malloc(sizeof(int) * B);
    double t_start = opd_time();
    int rc = 0, done = 0, stopped = 0;
    harness_eval_result last;   /* the latest --eval score */
    float loss = 0, gn = 0;
    for (int k = 0; k < steps && rc == 0; k++) {
        done = k + 1;
        harness_draw_batch(seed, k, n, B, idx);
        int *tokens, *pad, S;   /* S: the batch's sequence length */
        float *mask;
        harness_sft_batch(&tok, tasks, idx, B, &tokens, &pad, &mask, &S);
        if (S > m.cfg.max_seq_len) {
            rc = opd_set_error("%s: a sequence of %d tokens exceeds max_seq_len %d", data, S, m.cfg.max_seq_len);
        } else {
            float lr_now = opd_lr_at(&oc, opt.step);
            rc = opd_sft_step_mb(&m, &opt, tokens, pad, mask, B, S, mb, &loss, &gn);
            double sec = opd_time() - t_start;
            if (rc == 0 && have_log) sft_log_row(&log, k, loss, gn, lr_now, sec);
            if (cli_progress_tty())
                fprintf(stderr, "\rsft step %d/%d  loss %.4f  |g| %.3f  %.0f s   ", k + 1, steps, loss, gn, sec);
            else if ((k + 1) % 50 == 0 || k == 0 || k + 1 == steps)
                printf("sft step %d/%d loss %.4f grad_norm %.3f %.1f s\n", k + 1, steps, loss, gn, sec);
            if (have_log && (k + 1) % 50 == 0 && rc == 0) rc = opd_csv_log_flush(&log);
        }
        free(tokens); free(pad); free(mask);
        if (rc == 0 && eval_every > 0 && (k + 1) % eval_every == 0 && k + 1 < steps) {
            rc = harness_evaluate(&m, &tok, et, en, harness_max_new_tokens(et, en), 64, &greedy, 1, seed, &last);
            if (rc == 0) printf("sft step %d: pass@1 %.4f on %d problems of %s\n", k + 1, last.acc, en, evalp);
            if (rc == 0 && stop_at > 0 && last.acc >= stop_at) {
                printf("sft: pass@1 %.4f >= --stop-at %g: stopping after %d steps\n", last.acc, stop_at, k + 1);
                stopped = 1;
                break;
            }
        }
    }
    if (cli_progress_tty()) fprintf(stderr, "\n");
    free(idx);
    if (have_log) { if (rc == 0) rc = opd_csv_log_close(&log); else opd_csv_log_discard(&log); }
    if (rc == 0 && writer) rc = opd_model_save(&m, out, NULL, NULL, NULL, 0);
    if (rc == 0) printf("wrote %s after %d steps (final loss %.4f, %.1f s)\n", out, done, loss, opd_time() - t_start);
    if (rc == 0 && evalp) {
        /* a run stopped by --stop-at was just scored on these weights */
        if (!stopped) rc = harness_evaluate(&m, &tok, et, en, harness_max_new_tokens(et, en), 64, &greedy, 1, seed, &last);
        if (rc == 0) print_eval(evalp, &last);
    }
    if (et) opd_dataset_free(et);
    opd_adamw_free(&opt);
    opd_model_free(&m);
    opd_dataset_free(tasks);
    return rc == 0 ? 0 : cli_fail("sft");
}
