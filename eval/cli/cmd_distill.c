/* cmd_distill.c — `opd distill`: the options, their defaults, the help.
 * One parser for both prompt sources: the built-in task (--data TRAIN.csv)
 * or text prompts (--prompts FILE.jsonl --tokenizer tokenizer.json); the
 * loop is distill_run.c's. */
#include "distill.h"
#include "adaptive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* long options without a short letter */
enum {
    OPT_STUDENT = 256, OPT_MAX_NEW_TOKENS, OPT_PROMPTS, OPT_TOKENIZER, OPT_CHAT_TEMPLATE, OPT_EOS,
    OPT_HORIZON_OLD, OPT_H0, OPT_DH, OPT_DK, OPT_RHO, OPT_GROWTH, OPT_LOSS, OPT_BETA,
    OPT_TOPK_TEACHER, OPT_GAMMA, OPT_CLAMP, OPT_REDUCTION, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P,
    OPT_SAMPLES, OPT_EVAL, OPT_EVAL_EVERY, OPT_EVAL_N, OPT_SAVE_EVERY, OPT_RESUME, OPT_WARMUP,
    OPT_STOP_AFTER, OPT_MICRO_BATCH, OPT_WEIGHT_DECAY, OPT_BETA2, OPT_CLIP, OPT_DEVICE,
    OPT_RELIABILITY_EVERY, OPT_RELIABILITY_N, OPT_BUCKET_WIDTH, OPT_PROBE_N, OPT_ADAPTIVE_THRESHOLD, OPT_OVERLAP_K,
    OPT_NO_POSITIONS,
};

static const struct option opts[] = {
    {"teacher", required_argument, 0, 't'}, {"student", required_argument, 0, OPT_STUDENT},
    {"data", required_argument, 0, 'd'}, {"out", required_argument, 0, 'o'},
    {"prompts", required_argument, 0, OPT_PROMPTS}, {"tokenizer", required_argument, 0, OPT_TOKENIZER},
    {"chat-template", required_argument, 0, OPT_CHAT_TEMPLATE}, {"eos", required_argument, 0, OPT_EOS},
    {"method", required_argument, 0, 'm'}, {"max-new-tokens", required_argument, 0, OPT_MAX_NEW_TOKENS},
    {"horizon", required_argument, 0, OPT_HORIZON_OLD},   /* the old name of --max-new-tokens */
    {"h0", required_argument, 0, OPT_H0}, {"dh", required_argument, 0, OPT_DH},
    {"dk", required_argument, 0, OPT_DK}, {"rho", required_argument, 0, OPT_RHO},
    {"growth", required_argument, 0, OPT_GROWTH}, {"loss", required_argument, 0, OPT_LOSS},
    {"beta", required_argument, 0, OPT_BETA}, {"topk-teacher", required_argument, 0, OPT_TOPK_TEACHER},
    {"gamma", required_argument, 0, OPT_GAMMA}, {"clamp", required_argument, 0, OPT_CLAMP},
    {"reduction", required_argument, 0, OPT_REDUCTION},
    {"temperature", required_argument, 0, OPT_TEMPERATURE}, {"top-k", required_argument, 0, OPT_TOP_K},
    {"top-p", required_argument, 0, OPT_TOP_P}, {"batch", required_argument, 0, 'B'},
    {"samples", required_argument, 0, OPT_SAMPLES}, {"lr", required_argument, 0, 'l'},
    {"steps", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},
    {"eval", required_argument, 0, OPT_EVAL}, {"eval-every", required_argument, 0, OPT_EVAL_EVERY},
    {"eval-n", required_argument, 0, OPT_EVAL_N}, {"save-every", required_argument, 0, OPT_SAVE_EVERY},
    {"resume", no_argument, 0, OPT_RESUME}, {"warmup", required_argument, 0, OPT_WARMUP},
    {"stop-after", required_argument, 0, OPT_STOP_AFTER},
    {"micro-batch", required_argument, 0, OPT_MICRO_BATCH},
    {"weight-decay", required_argument, 0, OPT_WEIGHT_DECAY}, {"beta2", required_argument, 0, OPT_BETA2},
    {"clip", required_argument, 0, OPT_CLIP}, {"device", required_argument, 0, OPT_DEVICE},
    {"reliability-every", required_argument, 0, OPT_RELIABILITY_EVERY},
    {"reliability-n", required_argument, 0, OPT_RELIABILITY_N},
    {"bucket-width", required_argument, 0, OPT_BUCKET_WIDTH}, {"probe-n", required_argument, 0, OPT_PROBE_N},
    {"adaptive-threshold", required_argument, 0, OPT_ADAPTIVE_THRESHOLD},
    {"overlap-k", required_argument, 0, OPT_OVERLAP_K},
    {"no-positions", no_argument, 0, OPT_NO_POSITIONS},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};

static void help_task(void) {
    printf("Usage: opd distill --teacher CKPT --student CKPT --data TRAIN.csv --out DIR [OPTIONS]\n"
           "On-policy distillation: the student samples rollouts to the step's horizon H_k, the\n"
           "teacher scores them, the student follows the per-token reverse KL.\n\n"
           "Horizon (H_k, at most the full horizon T):\n"
           "  -m, --method M        full (OPD) | popd (progressive) | topd (truncated) | linear | geometric\n"
           "                        | adaptive (POPD's clock, grown only where a probe measured the teacher\n"
           "                        reliable)\n"
           "      --max-new-tokens N  the full horizon T: the most new tokens a rollout has\n"
           "                        (default: longest reference solution + 1; old names: --horizon, -T)\n"
           "      --h0 N --dh N --dk N   POPD: H_k = min(T, h0 + dh * floor(k / dk))\n"
           "      --rho R           TOPD: H_k = ceil(rho * T) (default 0.25)\n"
           "      --growth G        geometric: H_k = min(T, ceil(h0 * G^floor(k / dk)))\n"
           "      --probe-n N       adaptive: every dk steps N sequences (default 8) rolled out to T (not\n"
           "                        trained on; their time and tokens count in the run's), scored by both\n"
           "                        models; H grows by up to dh across buckets whose mean student/teacher\n"
           "                        top-k overlap is >= --adaptive-threshold X (default 0.5)\n"
           "      --overlap-k K     k of the top-k overlap in positions.csv and the probe (default %d;\n"
           "                        1: top-1 agreement)\n"
           "Loss:\n"
           "      --loss L          rkl (sampled, default) | rkl-full | fkl | jsd | rkl-topk | rkl-seq\n"
           "      --beta B --topk-teacher K --gamma G --clamp C   loss knobs\n"
           "      --reduction R     token (mean over tokens, default) | sequence\n"
           "Sampling:  --temperature X (1) --top-k K (0: off) --top-p P (1: off)\n"
           "Training:\n"
           "  -B, --batch N         prompts per step (default 8)\n"
           "      --samples N       rollouts per prompt (default 1)\n"
           "      --micro-batch N   sequences per micro-batch (default: the whole batch x samples);\n"
           "                        the gradient is their fixed tree sum: the same bits on any number\n"
           "                        of ranks (mpirun -np R, R a power of two dividing the micro-batches)\n"
           "  -l, --lr X            learning rate (default 1e-3), --warmup N (0)\n"
           "      --weight-decay X  AdamW decoupled weight decay (default 0: see cmd_distill.c)\n"
           "      --beta2 X         AdamW second-moment decay (default 0.95)\n"
           "      --clip X          global gradient-norm clip, 0 off (default 1)\n"
           "  -n, --steps N         steps (default 100)\n"
           "  -s, --seed N          seed of batches and sampling (default 1)\n"
           "      --device D        cpu (default, the reference) | cuda (./configure --with-cuda;\n"
           "                        checkpoints and --eval run on the CPU from synced weights)\n"
           "  -o, --out DIR         student.safetensors, log.csv (per step: horizon = H_k,\n"
           "                        trained_len = the longest rollout), eval.csv\n"
           "      --save-every N    checkpoint period (default: at the end)\n"
           "      --resume          continue from DIR/student.safetensors (bit-identical)\n"
           "      --stop-after K    stop after K steps with a checkpoint, as if interrupted\n"
           "Evaluation (greedy pass@1, decoding to the full horizon T):\n"
           "      --eval CSV --eval-every N --eval-n N (100)\n"
           "Diagnostics by position (outside train_seconds; ref/SPEC.md section 11):\n"
           "      positions.csv     every step (CPU): step,bucket,pos_lo,pos_hi,count,rkl,overlap, the\n"
           "                        masked reverse KL and top-k overlap by bucket of the full horizon T\n"
           "      --no-positions    do not compute or write positions.csv (the same trained bits)\n"
           "      --reliability-every N  reliability.csv (step,bucket,pos,n,teacher_acc,student_acc):\n"
           "                        the teacher's greedy accuracy continuing the student's greedy prefix\n"
           "                        of pos tokens (default: the eval schedule; 0 off; needs --eval)\n"
           "      --reliability-n N problems of the --eval CSV (default 50)\n"
           "      --bucket-width N  positions per bucket, 1..8 (default 8)\n"
           "Text prompts and a real model's tokenizer: see 'opd distill --prompts F --help'.\n",
           OPD_OVERLAP_TOPK);
}

static void help_text(void) {
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
           "      --max-new-tokens N the full horizon T (default 256)\n"
           "  -l, --lr X            learning rate (default 1e-5)\n"
           "      --eval FILE.jsonl greedy last-number score of the student (--eval-every, --eval-n)\n"
           "Teacher and student must have the same vocab_size, and every tokenizer id must be\n"
           "below it; every prompt + T must fit both models' max positions.\n");
}

/* --help names the options of the source asked about, wherever --prompts is */
static int asks_text(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--prompts") || !strncmp(argv[i], "--prompts=", 10)) return 1;
    }
    return 0;
}

/* Knobs whose default depends on T or on the source: < 0 (or 0 for T)
 * until given. */
typedef struct {
    int max_new_tokens, h0, dh, dk;
    float rho, growth, lr;
} distill_knobs;

/* Every default that depends on the source or on T, in one place: T from
 * the source when not given, then the schedule's knobs for that T
 * (opd_schedule_default), the learning rate for the source's scale. */
static void resolve_defaults(distill_args *a, const distill_knobs *kn, const source *src) {
    opd_schedule *s = &a->dc.schedule, d;
    int max_new_tokens = kn->max_new_tokens > 0 ? kn->max_new_tokens : source_default_max_new_tokens(src);
    opd_schedule_default(&d, s->kind, max_new_tokens);
    s->max_new_tokens = max_new_tokens;
    s->H0 = kn->h0 < 0 ? d.H0 : kn->h0;
    s->dH = kn->dh < 0 ? d.dH : kn->dh;
    s->dk = kn->dk < 0 ? d.dk : kn->dk;
    s->rho = kn->rho < 0 ? d.rho : kn->rho;
    s->growth = kn->growth < 0 ? d.growth : kn->growth;
    s->total_steps = a->steps;
    /* a real model's scale (text prompts), not the tiny task's */
    a->oc.lr = kn->lr > 0 ? kn->lr : src->kind == SOURCE_TEXT ? 1e-5f : 1e-3f;
    a->oc.total_steps = a->steps;
}

/* One option into a / kn: 0, or -1 on a bad value (message printed). */
static int distill_option(int c, const char *arg, distill_args *a, distill_knobs *kn) {
    const char *C = "distill";
    opd_loss_config *l = &a->dc.loss;
    opd_sampler_config *smp = &a->dc.rollout.sampler;
    switch (c) {
    case 't': a->teacher = arg; return 0;
    case OPT_STUDENT: a->student = arg; return 0;
    case 'd': a->data = arg; return 0;
    case 'o': a->out = arg; return 0;
    case OPT_PROMPTS: a->prompts = arg; return 0;
    case OPT_TOKENIZER: a->tokenizer = arg; return 0;
    case OPT_CHAT_TEMPLATE: a->tmpl = arg; return 0;
    case OPT_EOS: a->eos = arg; return 0;
    case OPT_EVAL: a->evalp = arg; return 0;
    case OPT_RESUME: a->resume = 1; return 0;
    case OPT_NO_POSITIONS: a->no_positions = 1; return 0;
    case 'm':
        if (opd_schedule_parse(arg, &a->dc.schedule.kind) == 0) return 0;
        fprintf(stderr, "opd distill: --method: %s\n", opd_last_error());
        return -1;
    case OPT_LOSS:
        if (opd_loss_parse(arg, &l->kind) == 0) return 0;
        fprintf(stderr, "opd distill: --loss: %s\n", opd_last_error());
        return -1;
    case OPT_REDUCTION:
        if (!strcmp(arg, "token")) { l->reduction = OPD_REDUCE_TOKEN_MEAN; return 0; }
        if (!strcmp(arg, "sequence")) { l->reduction = OPD_REDUCE_SEQ_MEAN; return 0; }
        fprintf(stderr, "opd distill: --reduction: '%s' is not token or sequence\n", arg);
        return -1;
    case OPT_HORIZON_OLD:   /* the old spellings: they named T "the horizon", which is H_k */
        cli_deprecated(C, "--horizon", "--max-new-tokens");
        return cli_int(C, "max-new-tokens", arg, 1, 1 << 20, &kn->max_new_tokens);
    case 'T':
        cli_deprecated(C, "-T", "--max-new-tokens");
        return cli_int(C, "max-new-tokens", arg, 1, 1 << 20, &kn->max_new_tokens);
    case OPT_MAX_NEW_TOKENS: return cli_int(C, "max-new-tokens", arg, 1, 1 << 20, &kn->max_new_tokens);
    case OPT_H0: return cli_int(C, "h0", arg, 1, 1 << 20, &kn->h0);
    case OPT_DH: return cli_int(C, "dh", arg, 1, 1 << 20, &kn->dh);
    case OPT_DK: return cli_int(C, "dk", arg, 1, 1 << 30, &kn->dk);
    case OPT_RHO: return cli_float(C, "rho", arg, 1e-6, 1, &kn->rho);
    case OPT_GROWTH: return cli_float(C, "growth", arg, 1.0001, 1000, &kn->growth);
    case 'l': return cli_float(C, "lr", arg, 1e-10, 10, &kn->lr);
    case OPT_BETA: return cli_float(C, "beta", arg, 0, 1, &l->beta);
    case OPT_TOPK_TEACHER: return cli_int(C, "topk-teacher", arg, 1, 1 << 20, &l->topk);
    case OPT_GAMMA: return cli_float(C, "gamma", arg, 0, 1, &l->gamma);
    case OPT_CLAMP: return cli_float(C, "clamp", arg, 0, 1e6, &l->reward_clamp);
    case OPT_TEMPERATURE: return cli_float(C, "temperature", arg, 0, 100, &smp->temperature);
    case OPT_TOP_K: return cli_int(C, "top-k", arg, 0, 1 << 20, &smp->top_k);
    case OPT_TOP_P: return cli_float(C, "top-p", arg, 1e-6, 1, &smp->top_p);
    case 'B': return cli_int(C, "batch", arg, 1, 4096, &a->B);
    case OPT_SAMPLES: return cli_int(C, "samples", arg, 1, 1024, &a->samples);
    case 'n': return cli_int(C, "steps", arg, 1, 1 << 30, &a->steps);
    case 's': return cli_u64(C, "seed", arg, &a->seed);
    case OPT_EVAL_EVERY: return cli_int(C, "eval-every", arg, 0, 1 << 30, &a->eval_every);
    case OPT_EVAL_N: return cli_int(C, "eval-n", arg, 1, 1 << 30, &a->eval_n);
    case OPT_SAVE_EVERY: return cli_int(C, "save-every", arg, 0, 1 << 30, &a->save_every);
    case OPT_WARMUP: return cli_int(C, "warmup", arg, 0, 1 << 30, &a->oc.warmup_steps);
    case OPT_STOP_AFTER: return cli_int(C, "stop-after", arg, 1, 1 << 30, &a->stop_after);
    case OPT_MICRO_BATCH: return cli_int(C, "micro-batch", arg, 1, 1 << 22, &a->micro_batch);
    case OPT_WEIGHT_DECAY: return cli_float(C, "weight-decay", arg, 0, 10, &a->oc.weight_decay);
    case OPT_BETA2: return cli_float(C, "beta2", arg, 0, 0.999999, &a->oc.beta2);
    case OPT_CLIP: return cli_float(C, "clip", arg, 0, 1e9, &a->oc.grad_clip);
    case OPT_DEVICE: return cli_device(C, arg, &a->device);
    case OPT_RELIABILITY_EVERY: return cli_int(C, "reliability-every", arg, 0, 1 << 30, &a->reliability_every);
    case OPT_RELIABILITY_N: return cli_int(C, "reliability-n", arg, 1, 1 << 30, &a->reliability_n);
    case OPT_BUCKET_WIDTH: return cli_int(C, "bucket-width", arg, 1, OPD_POSITION_BUCKET_MAX, &a->bucket_width);
    case OPT_PROBE_N: return cli_int(C, "probe-n", arg, 1, 4096, &a->probe_n);
    case OPT_OVERLAP_K: return cli_int(C, "overlap-k", arg, 1, OPD_OVERLAP_TOPK_MAX, &a->overlap_k);
    case OPT_ADAPTIVE_THRESHOLD:
        return cli_float(C, "adaptive-threshold", arg, -1e6, 1e6, &a->dc.schedule.threshold);
    }
    return -2;   /* not an option of distill */
}

/* Required options and options that would be ignored: 0, or a usage error printed. */
static int check_args(const distill_args *a, int text) {
    const char *what = text ? "--teacher, --student, --prompts, --tokenizer and --out"
                            : "--teacher, --student, --data and --out";
    if (text && a->data) { fprintf(stderr, "opd distill: --data and --prompts exclude each other\n"); return -1; }
    if (!text && (a->tokenizer || a->tmpl || a->eos)) {
        fprintf(stderr, "opd distill: --tokenizer, --chat-template and --eos need --prompts\n");
        return -1;
    }
    int missing = !a->teacher || !a->out || (!a->student && !a->resume) ||
                  (text ? !a->prompts || !a->tokenizer : !a->data);
    if (missing) { fprintf(stderr, "opd distill: %s are required\n", what); return -1; }
    return 0;
}

int cmd_distill(int argc, char **argv) {
    const char *C = "distill";
    distill_args a;
    memset(&a, 0, sizeof a);
    opd_distill_config_default(&a.dc, 1);
    a.dc.schedule.kind = OPD_SCHED_FULL;
    opd_optim_config_default(&a.oc);
    /* No weight decay by default: with it, distilling a student into an
     * identical teacher (loss and gradient exactly 0) is no fixed point:
     * decay opens a tiny gap and AdamW turns the tiny gradients into
     * lr-sized steps. Measured: such a self-distillation lost 22 points of
     * pass@1 in 200 steps with weight decay 0.01, none with 0. */
    a.oc.weight_decay = 0.0f;
    a.B = 8; a.samples = 1; a.steps = 100; a.eval_n = 100; a.seed = 1;
    a.reliability_every = -1; a.reliability_n = 50; a.bucket_width = OPD_POSITION_BUCKET_MAX; a.probe_n = 8; a.overlap_k = OPD_OVERLAP_TOPK;
    distill_knobs kn = {.max_new_tokens = 0, .h0 = -1, .dh = -1, .dk = -1, .rho = -1, .growth = -1, .lr = -1};
    int text = asks_text(argc, argv);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:d:o:m:T:B:n:s:l:h", opts, NULL)) != -1) {
        if (c == 'h') { if (text) help_text(); else help_task(); return 0; }
        int r = distill_option(c, optarg, &a, &kn);
        if (r == -2) return cli_usage_error(C);
        if (r != 0) return 2;
    }
    if (optind != argc || check_args(&a, text) != 0) return cli_usage_error(C);
    /* the ranks and micro-batches, before any work; the same on every rank,
     * so rank 0 says it once and all end with 2 */
    int BS = a.B * a.samples;
    if (opd_dist_check(BS, a.micro_batch > 0 ? a.micro_batch : BS, opd_dist_size()) != 0) {
        if (opd_dist_rank() == 0) fprintf(stderr, "opd distill: %s\n", opd_last_error());
        return 2;
    }
    if (a.device != OPD_DEVICE_CPU && (opd_dist_size() > 1 || (a.micro_batch > 0 && a.micro_batch != BS))) {
        if (opd_dist_rank() == 0)
            fprintf(stderr, "opd distill: --device cuda runs whole batches on one process: --micro-batch "
                            "and mpirun are CPU only (no NCCL combination yet)\n");
        return 2;
    }

    /* the training prompts are read once, here; T's default comes from them */
    source train, evals;
    memset(&train, 0, sizeof train);
    memset(&evals, 0, sizeof evals);
    int rc = text ? source_open_text(&train, a.prompts, a.tokenizer, a.tmpl, a.eos)
                  : source_open_task(&train, a.data);
    if (rc == 0 && a.evalp)
        rc = text ? source_open_text(&evals, a.evalp, a.tokenizer, a.tmpl, a.eos)
                  : source_open_task(&evals, a.evalp);
    if (rc == 0) {
        resolve_defaults(&a, &kn, &train);
        if (cli_mkdir_p(C, a.out) != 0) { source_free(&train); source_free(&evals); return 1; }
        rc = distill_run(&a, &train, a.evalp ? &evals : NULL);
    }
    source_free(&train);
    source_free(&evals);
    return rc == 0 ? 0 : cli_fail(C);
}
