/* cmd_text.c — `opd distill --prompts FILE.jsonl ...` and `opd eval --prompts
 * FILE.jsonl ...`: distillation and scoring on text prompts with a Hugging
 * Face tokenizer (eval/prompt_source.h), for real models.
 *
 * cmd_distill / cmd_eval hand their arguments here when --prompts is among
 * them (cli_has_prompts). The step is the same opd_device_distill_step the
 * built-in task runs, with the same log.csv columns, the same checkpoint
 * metadata (so --resume works the same way) and keyed batch draws
 * (harness_draw_batch); only the batch source and the verifier differ. */
#include "cli.h"
#include "device.h"
#include "harness.h"
#include "prompt_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_has_prompts(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--prompts") || !strncmp(argv[i], "--prompts=", 10)) return 1;
    }
    return 0;
}

static int mkdir_p(const char *cmd, const char *dir) {
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

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = opd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The model's vocabulary and the tokenizer (prompt_source.h), for a pair:
 * equal vocab_size first, so the message names both model files. */
static int check_pair(const prompt_source *src, const opd_model *t, const char *tpath,
                      const opd_model *s, const char *spath, int T) {
    if (t->cfg.vocab_size != s->cfg.vocab_size)
        return opd_set_error("vocabularies differ: teacher %s has vocab_size %d, student %s has %d",
                             tpath, t->cfg.vocab_size, spath, s->cfg.vocab_size);
    if (prompt_source_check(src, t, tpath, T) != 0) return -1;
    return prompt_source_check(src, s, spath, T);
}

/* ------------------------------------------------------------- distill */
typedef struct {
    const char *teacher, *student, *prompts, *tokenizer, *tmpl, *eos, *out, *evalp;
    opd_distill_config dc;
    opd_optim_config oc;
    int B, samples, steps, eval_every, eval_n, save_every, resume, T, stop_after;
    uint64_t seed;
    opd_device_kind device;
} text_args;

/* the columns of the built-in task's log.csv (cmd_train.c), so one plot script reads both */
static const char *step_hdr[] = {
    "step", "horizon", "trained_len", "tokens", "truncated", "loss", "loss_kind", "reduction",
    "mean_rkl", "kl_q1", "kl_q2", "kl_q3", "kl_q4", "grad_norm", "lr",
    "sec_rollout", "sec_teacher", "sec_student", "sec_optim", "train_seconds", "peak_rss_kb"};
#define STEP_COLS ((int)(sizeof step_hdr / sizeof step_hdr[0]))
static const char *eval_hdr[] = {"step", "train_seconds", "tokens_generated", "acc", "scored",
                                 "mean_len", "truncated_frac", "peak_rss_kb"};
#define EVAL_COLS ((int)(sizeof eval_hdr / sizeof eval_hdr[0]))

static int text_eval(const prompt_source *es, const opd_model *m, const text_args *a, long step,
                     double sec, long tokens, opd_csv_log *log) {
    prompt_eval_result r;
    if (prompt_source_evaluate(es, m, a->eval_n, a->T, 64, a->seed, &r) != 0) return -1;
    opd_csv_log_int(log, step); opd_csv_log_num(log, sec); opd_csv_log_int(log, tokens);
    opd_csv_log_num(log, r.acc); opd_csv_log_int(log, r.scored); opd_csv_log_num(log, r.mean_len);
    opd_csv_log_num(log, r.truncated_frac); opd_csv_log_int(log, opd_peak_rss_kb());
    opd_csv_log_end_row(log);
    printf("eval step %ld: pass@1 %.4f (%d of %d answered prompts, mean length %.1f)\n", step, r.acc,
           r.correct, r.scored, r.mean_len);
    return opd_csv_log_flush(log);
}

static int run_text_distill(text_args *a) {
    prompt_source src, es;
    memset(&src, 0, sizeof src);
    memset(&es, 0, sizeof es);
    opd_model teacher, student;
    memset(&teacher, 0, sizeof teacher);
    memset(&student, 0, sizeof student);
    opd_adamw opt;
    memset(&opt, 0, sizeof opt);
    opd_csv_log slog, elog;
    int have_slog = 0, have_elog = 0, rc;
    char *ckpt = join(a->out, "student.safetensors");
    char *slog_path = join(a->out, "log.csv"), *elog_path = join(a->out, "eval.csv");
    int BS = a->B * a->samples;
    int *idx = opd_malloc(sizeof(int) * a->B), *sidx = opd_malloc(sizeof(int) * BS);
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * BS);
    opd_device *dev = NULL;
    long k0 = 0, tokens = 0;
    double train_sec = 0;

    if ((rc = prompt_source_open(&src, a->prompts, a->tokenizer, a->tmpl, a->eos)) != 0) goto done;
    if (a->evalp && (rc = prompt_source_open(&es, a->evalp, a->tokenizer, a->tmpl, a->eos)) != 0) goto done;
    if ((rc = opd_schedule_validate(&a->dc.schedule)) != 0) goto done;
    if ((rc = opd_model_load_any(&teacher, a->teacher, NULL)) != 0) goto done;
    if (a->resume) {
        if ((rc = opd_model_load(&student, ckpt, &opt)) != 0) goto done;
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
    const char *spath = a->resume ? ckpt : a->student;
    if ((rc = check_pair(&src, &teacher, a->teacher, &student, spath, a->T)) != 0) goto done;
    if (a->evalp && (rc = prompt_source_check(&es, &student, spath, a->T)) != 0) goto done;
    a->dc.rollout.eos_id = src.eos_id;
    a->dc.rollout.pad_id = src.pad_id;
    a->dc.rollout.seed = a->seed;
    if ((rc = opd_device_open(&dev, a->device, &student, &teacher, &opt)) != 0) goto done;
    if (a->resume) {
        if ((rc = cli_resume_logs(&slog, slog_path, step_hdr, STEP_COLS, &elog, elog_path, eval_hdr,
                                  EVAL_COLS, k0)) != 0)
            goto done;
        have_slog = have_elog = 1;
    } else {
        if ((rc = opd_csv_log_open(&slog, slog_path, step_hdr, STEP_COLS)) != 0) goto done;
        have_slog = 1;
        if ((rc = opd_csv_log_open(&elog, elog_path, eval_hdr, EVAL_COLS)) != 0) goto done;
        have_elog = 1;
    }

    printf("distill: %s, loss %s, T=%d new tokens, %d prompts x %d samples, %d steps, %d prompts in %s, EOS id %d\n",
           opd_schedule_name(a->dc.schedule.kind), opd_loss_name(a->dc.loss.kind), a->T, a->B,
           a->samples, a->steps, src.set.n, a->prompts, src.eos_id);
    if (a->evalp && k0 == 0 && (rc = text_eval(&es, &student, a, 0, 0, 0, &elog)) != 0) goto done;
    for (long k = k0; k < a->steps; k++) {
        harness_draw_batch(a->seed, k, src.set.n, a->B, idx);
        for (int i = 0; i < BS; i++) {
            sidx[i] = idx[i / a->samples];
            ids[i] = (uint32_t)i;
        }
        int *prompts, *pad, P;
        prompt_source_batch(&src, sidx, BS, &prompts, &pad, &P);
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
        printf("distill step %ld/%d H=%d loss %.4f rkl %.4f %.1f s/step peak %ld MiB\n", k + 1, a->steps,
               st.horizon, st.loss, st.mean_rkl, sec, st.peak_rss_kb / 1024);
        int last = k + 1 == a->steps;
        int stop = a->stop_after > 0 && k + 1 == a->stop_after && !last;
        int save = (a->save_every > 0 && (k + 1) % a->save_every == 0) || last || stop;
        int eval = a->evalp && ((a->eval_every > 0 && (k + 1) % a->eval_every == 0) || last);
        if ((save || eval) && (rc = opd_device_sync_to_host(dev, &student, &opt)) != 0) goto done;
        /* as in cmd_train.c: evaluate, flush both logs, then rename the
         * checkpoint into place, so a kill never leaves the logs behind it */
        if (eval && (rc = text_eval(&es, &student, a, k + 1, train_sec, tokens, &elog)) != 0) goto done;
        if (save) {
            if ((rc = opd_csv_log_flush(&slog)) != 0) goto done;
            char s_step[32], s_sec[32], s_tok[32], s_seed[32];
            snprintf(s_step, sizeof s_step, "%ld", k);
            snprintf(s_sec, sizeof s_sec, "%.17g", train_sec);
            snprintf(s_tok, sizeof s_tok, "%ld", tokens);
            snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)a->seed);
            const char *keys[] = {"opd.train.step", "opd.train.seconds", "opd.train.tokens", "opd.train.seed",
                                  "opd.train.method", "opd.train.loss", "opd.train.prompts"};
            const char *vals[] = {s_step, s_sec, s_tok, s_seed, opd_schedule_name(a->dc.schedule.kind),
                                  opd_loss_name(a->dc.loss.kind), a->prompts};
            if ((rc = opd_model_save(&student, ckpt, &opt, keys, vals, 7)) != 0) goto done;
        }
        if (stop) {
            printf("stopped after step %ld as asked (--stop-after); continue with --resume\n", k + 1);
            break;
        }
    }
    printf("wrote %s, %s, %s (%.1f s of training, %ld tokens generated)\n", ckpt, slog_path, elog_path,
           train_sec, tokens);
done:
    if (have_slog && opd_csv_log_close(&slog) != 0 && rc == 0) rc = -1;
    if (have_elog && opd_csv_log_close(&elog) != 0 && rc == 0) rc = -1;
    opd_device_close(dev);
    free(idx); free(sidx); free(ids);
    free(ckpt); free(slog_path); free(elog_path);
    if (opt.m) opd_adamw_free(&opt);
    if (student.params_mem) opd_model_free(&student);
    if (teacher.params_mem) opd_model_free(&teacher);
    prompt_source_free(&src);
    prompt_source_free(&es);
    return rc;
}

int cmd_distill_text(int argc, char **argv) {
    static const struct option opts[] = {
        {"teacher", required_argument, 0, 't'}, {"student", required_argument, 0, 'S'},
        {"prompts", required_argument, 0, 'p'}, {"tokenizer", required_argument, 0, 'k'},
        {"chat-template", required_argument, 0, 'c'}, {"eos", required_argument, 0, 'e'},
        {"max-new-tokens", required_argument, 0, 'T'}, {"horizon", required_argument, 0, 'T'},
        {"out", required_argument, 0, 'o'}, {"method", required_argument, 0, 'm'},
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
        {"stop-after", required_argument, 0, 22}, {"weight-decay", required_argument, 0, 23},
        {"beta2", required_argument, 0, 24}, {"clip", required_argument, 0, 25},
        {"device", required_argument, 0, 26}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *C = "distill";
    text_args a;
    memset(&a, 0, sizeof a);
    opd_distill_config_default(&a.dc, 1);
    opd_optim_config_default(&a.oc);
    a.oc.lr = 1e-5f;            /* a real model's scale, not the tiny task's 1e-3 */
    a.oc.weight_decay = 0.0f;   /* see cmd_train.c: self-distillation stays a fixed point */
    a.B = 8; a.samples = 1; a.steps = 100; a.eval_n = 100; a.seed = 1; a.T = 256;
    a.dc.schedule.kind = OPD_SCHED_FULL;
    int h0 = -1, dh = -1, dk = -1;
    float rho = 0.25f, growth = 2.0f;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:o:m:T:s:B:n:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': a.teacher = optarg; break;
        case 'S': a.student = optarg; break;
        case 'p': a.prompts = optarg; break;
        case 'k': a.tokenizer = optarg; break;
        case 'c': a.tmpl = optarg; break;
        case 'e': a.eos = optarg; break;
        case 'o': a.out = optarg; break;
        case 'm':
            if (opd_schedule_parse(optarg, &a.dc.schedule.kind) != 0) {
                fprintf(stderr, "opd distill: --method: %s\n", opd_last_error());
                return 2;
            }
            break;
        case 'T': if (cli_int(C, "max-new-tokens", optarg, 1, 1 << 20, &a.T)) return 2; break;
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
        case 'l': if (cli_float(C, "lr", optarg, 1e-10, 10, &a.oc.lr)) return 2; break;
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
            printf("Usage: opd distill --teacher M --student M --prompts FILE.jsonl --tokenizer tokenizer.json\n"
                   "                   --out DIR [OPTIONS]\n"
                   "On-policy distillation on text prompts (M: a Hugging Face directory or an opd checkpoint).\n"
                   "The options of the built-in task's 'opd distill' (--method, --rho, --h0/--dh/--dk,\n"
                   "--loss, sampling, --batch, --samples, --steps, --lr, --save-every, --resume,\n"
                   "--stop-after, --device) work the same; these differ:\n\n"
                   "      --prompts FILE    JSONL, {\"prompt\": ..., \"answer\": ...} a line (answer optional)\n"
                   "      --tokenizer FILE  the models' tokenizer.json\n"
                   "      --chat-template X none (default) | chatml | llama3 | a file with one {prompt}\n"
                   "      --eos TOKEN       the token that ends a rollout (default: <|im_end|> for chatml,\n"
                   "                        <|eot_id|> for llama3, else the tokenizer's <|endoftext|>,\n"
                   "                        <|end_of_text|> or </s>)\n"
                   "  -T, --max-new-tokens N the full horizon T (default 256)\n"
                   "  -l, --lr X            learning rate (default 1e-5)\n"
                   "      --eval FILE.jsonl greedy last-number score of the student (--eval-every, --eval-n)\n"
                   "Teacher and student must have the same vocab_size, and every tokenizer id must be\n"
                   "below it; every prompt + T must fit both models' max positions.\n");
            return 0;
        default: return cli_usage_error(C);
        }
    }
    if (!a.teacher || !a.prompts || !a.tokenizer || !a.out || (!a.student && !a.resume) || optind != argc) {
        fprintf(stderr, "opd distill: --teacher, --student, --prompts, --tokenizer and --out are required\n");
        return cli_usage_error(C);
    }
    opd_schedule *s = &a.dc.schedule, d;
    opd_schedule_default(&d, s->kind, a.T);
    s->max_new_tokens = a.T;
    s->rho = rho;
    s->growth = growth;
    s->total_steps = a.steps;
    s->H0 = h0 < 0 ? d.H0 : h0;
    s->dH = dh < 0 ? d.dH : dh;
    s->dk = dk < 0 ? d.dk : dk;
    if (mkdir_p(C, a.out) != 0) return 1;
    return run_text_distill(&a) == 0 ? 0 : cli_fail(C);
}

/* ---------------------------------------------------------------- eval */
int cmd_eval_text(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"prompts", required_argument, 0, 'p'},
        {"tokenizer", required_argument, 0, 'k'}, {"chat-template", required_argument, 0, 'c'},
        {"eos", required_argument, 0, 'e'}, {"max-new-tokens", required_argument, 0, 'T'},
        {"horizon", required_argument, 0, 'T'}, {"n", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'B'}, {"seed", required_argument, 0, 's'},
        {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *C = "eval", *model = NULL, *prompts = NULL, *tokp = NULL, *tmpl = NULL, *eos = NULL, *out = NULL;
    int n = 0, T = 256, B = 64;
    uint64_t seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:n:T:B:s:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompts = optarg; break;
        case 'k': tokp = optarg; break;
        case 'c': tmpl = optarg; break;
        case 'e': eos = optarg; break;
        case 'o': out = optarg; break;
        case 'T': if (cli_int(C, "max-new-tokens", optarg, 1, 1 << 20, &T)) return 2; break;
        case 'n': if (cli_int(C, "n", optarg, 1, 1 << 30, &n)) return 2; break;
        case 'B': if (cli_int(C, "batch", optarg, 1, 4096, &B)) return 2; break;
        case 's': if (cli_u64(C, "seed", optarg, &seed)) return 2; break;
        case 'h':
            printf("Usage: opd eval --model M --prompts FILE.jsonl --tokenizer tokenizer.json [OPTIONS]\n"
                   "Greedy decoding of every prompt to T new tokens; a prompt scores when the last\n"
                   "number of its completion equals the last number of its answer. Prompts without\n"
                   "an answer are decoded, counted, and left out of the score.\n\n"
                   "      --chat-template X none | chatml | llama3 | FILE; --eos TOKEN (see opd distill --prompts --help)\n"
                   "  -T, --max-new-tokens N (default 256)   -n, --n N  first N prompts (default all)\n"
                   "  -B, --batch N (default 64)             -o, --out CSV  metric,value rows\n");
            return 0;
        default: return cli_usage_error(C);
        }
    }
    if (!model || !prompts || !tokp || optind != argc) {
        fprintf(stderr, "opd eval: --model, --prompts and --tokenizer are required\n");
        return cli_usage_error(C);
    }
    prompt_source src;
    if (prompt_source_open(&src, prompts, tokp, tmpl, eos) != 0) return cli_fail(C);
    opd_model m;
    if (opd_model_load_any(&m, model, NULL) != 0) { prompt_source_free(&src); return cli_fail(C); }
    if (n == 0 || n > src.set.n) n = src.set.n;
    prompt_eval_result r;
    int rc = prompt_source_check(&src, &m, model, T);
    if (rc == 0) rc = prompt_source_evaluate(&src, &m, n, T, B, seed, &r);
    if (rc == 0) {
        printf("%s on %s (%d prompts, %d with an answer, %d new tokens)\n", model, prompts, r.n, r.scored, T);
        printf("| metric              | value   |\n|---------------------|---------|\n");
        printf("| greedy pass@1       | %.4f  |\n", r.acc);
        printf("| correct / scored    | %d / %d |\n", r.correct, r.scored);
        printf("| not scored (no answer) | %d   |\n", r.n - r.scored);
        printf("| mean length (tok)   | %7.1f |\n", r.mean_len);
        printf("| cut by horizon      | %6.1f%% |\n", 100 * r.truncated_frac);
    }
    if (rc == 0 && out) {
        opd_csv_log log;
        static const char *hdr[] = {"metric", "value"};
        rc = opd_csv_log_open(&log, out, hdr, 2);
        if (rc == 0) {
            opd_csv_log_str(&log, "pass@1"); opd_csv_log_num(&log, r.acc); opd_csv_log_end_row(&log);
            opd_csv_log_str(&log, "scored"); opd_csv_log_int(&log, r.scored); opd_csv_log_end_row(&log);
            opd_csv_log_str(&log, "unscored"); opd_csv_log_int(&log, r.n - r.scored); opd_csv_log_end_row(&log);
            opd_csv_log_str(&log, "mean_len"); opd_csv_log_num(&log, r.mean_len); opd_csv_log_end_row(&log);
            rc = opd_csv_log_close(&log);
        }
    }
    opd_model_free(&m);
    prompt_source_free(&src);
    return rc == 0 ? 0 : cli_fail(C);
}

/* ------------------------------------------------- the built-in task */
int cli_check_task_vocab(const opd_model *m, const char *path, int tok_vocab) {
    if (m->cfg.vocab_size == tok_vocab) return 0;
    return opd_set_error("%s: vocab_size %d is not the %d of the task's character tokenizer%s", path,
                         m->cfg.vocab_size, tok_vocab, CLI_TEXT_HINT);
}
