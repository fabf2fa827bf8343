/* cmd_eval.c — `opd eval`: exact-match accuracy decoding to the full horizon
 * T (max new tokens). One parser for both prompt sources, the built-in task
 * (--data TEST.csv) or text prompts (--prompts FILE.jsonl --tokenizer
 * tokenizer.json); only the report differs (the task's by problem length,
 * the text prompts' with the unanswered ones counted). */
#include "cli.h"
#include "source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_PROMPTS = 256, OPT_TOKENIZER, OPT_CHAT_TEMPLATE, OPT_EOS, OPT_MAX_NEW_TOKENS,
    OPT_HORIZON_OLD,
};

static const struct option opts[] = {
    {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
    {"prompts", required_argument, 0, OPT_PROMPTS}, {"tokenizer", required_argument, 0, OPT_TOKENIZER},
    {"chat-template", required_argument, 0, OPT_CHAT_TEMPLATE}, {"eos", required_argument, 0, OPT_EOS},
    {"n", required_argument, 0, 'n'}, {"samples", required_argument, 0, 'k'},
    {"temperature", required_argument, 0, 't'},
    {"max-new-tokens", required_argument, 0, OPT_MAX_NEW_TOKENS},
    {"horizon", required_argument, 0, OPT_HORIZON_OLD},   /* the old name of --max-new-tokens */
    {"batch", required_argument, 0, 'B'}, {"seed", required_argument, 0, 's'},
    {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};

static void help(int text) {
    if (text) {
        printf("Usage: opd eval --model M --prompts FILE.jsonl --tokenizer tokenizer.json [OPTIONS]\n"
               "Greedy decoding of every prompt to T new tokens; a prompt scores when the last\n"
               "number of its completion equals the last number of its answer. Prompts without\n"
               "an answer are decoded, counted, and left out of the score.\n\n"
               "      --chat-template X none | chatml | llama3 | FILE; --eos TOKEN (see opd distill --prompts --help)\n"
               "      --max-new-tokens N the full horizon T (default 256)   -n, --n N  first N prompts (default all)\n"
               "  -B, --batch N (default 64)             -o, --out CSV  metric,value rows\n");
        return;
    }
    printf("Usage: opd eval --model CKPT --data TEST.csv [OPTIONS]\n"
           "Exact-match accuracy, decoding to the full horizon T: greedy pass@1, and avg@k\n"
           "over k sampled solutions when --samples k > 1.\n\n"
           "  -m, --model CKPT      checkpoint\n"
           "  -d, --data CSV        split to score\n"
           "  -n, --n N             first N problems (default all)\n"
           "  -k, --samples K       sampled solutions per problem for avg@k (default 1: greedy only)\n"
           "  -t, --temperature X   sampling temperature for avg@k (default 1)\n"
           "      --max-new-tokens N  the full horizon T (default: longest reference solution + 1;\n"
           "                        old names: --horizon, -T)\n"
           "  -B, --batch N         sequences decoded together (default 64)\n"
           "  -o, --out CSV         write the table (metric,steps,value) here too\n"
           "Text prompts and a real model's tokenizer: see 'opd eval --prompts F --help'.\n");
}

static void report_task(const char *model, const char *data, int max_new_tokens, int k, float temp,
                        const source_eval *g, const source_eval *s) {
    const harness_eval_result *t = &g->task;
    printf("%s on %s (%d problems, max_new_tokens T=%d)\n", model, data, g->n, max_new_tokens);
    printf("| metric              | value   |\n|---------------------|---------|\n");
    printf("| greedy pass@1       | %.4f  |\n", g->acc);
    if (k > 1) printf("| avg@%-3d (T=%.2g)     | %.4f  |\n", k, temp, s->acc);
    printf("| mean length (tok)   | %7.1f |\n", g->mean_len);
    printf("| cut by horizon      | %6.1f%% |\n", 100 * g->truncated_frac);
    printf("\naccuracy by problem length (greedy):\n| steps | problems | pass@1 |\n|-------|----------|--------|\n");
    for (int st = 1; st <= OPD_TASK_MAX_STEPS; st++)
        if (t->count_by_steps[st])
            printf("| %5d | %8d | %.4f |\n", st, t->count_by_steps[st], t->correct_by_steps[st] / t->count_by_steps[st]);
}

static void report_text(const char *model, const char *prompts, int max_new_tokens, const source_eval *r) {
    printf("%s on %s (%d prompts, %d with an answer, %d new tokens)\n", model, prompts, r->n, r->scored,
           max_new_tokens);
    printf("| metric              | value   |\n|---------------------|---------|\n");
    printf("| greedy pass@1       | %.4f  |\n", r->acc);
    printf("| correct / scored    | %d / %d |\n", r->correct, r->scored);
    printf("| not scored (no answer) | %d   |\n", r->n - r->scored);
    printf("| mean length (tok)   | %7.1f |\n", r->mean_len);
    printf("| cut by horizon      | %6.1f%% |\n", 100 * r->truncated_frac);
}

/* --out: the task's rows are metric,steps,value (steps "all" or a problem
 * length); the text prompts' metric,value */
static int write_task_csv(const char *out, int k, const source_eval *g, const source_eval *s) {
    opd_csv_log log;
    static const char *hdr[] = {"metric", "steps", "value"};
    if (opd_csv_log_open(&log, out, hdr, 3) != 0) return -1;
    opd_csv_log_str(&log, "pass@1"); opd_csv_log_str(&log, "all"); opd_csv_log_num(&log, g->acc); opd_csv_log_end_row(&log);
    if (k > 1) {
        char nm[32];
        snprintf(nm, sizeof nm, "avg@%d", k);
        opd_csv_log_str(&log, nm); opd_csv_log_str(&log, "all"); opd_csv_log_num(&log, s->acc); opd_csv_log_end_row(&log);
    }
    opd_csv_log_str(&log, "mean_len"); opd_csv_log_str(&log, "all"); opd_csv_log_num(&log, g->mean_len); opd_csv_log_end_row(&log);
    const harness_eval_result *t = &g->task;
    for (int st = 1; st <= OPD_TASK_MAX_STEPS; st++)
        if (t->count_by_steps[st]) {
            opd_csv_log_str(&log, "pass@1"); opd_csv_log_int(&log, st);
            opd_csv_log_num(&log, t->correct_by_steps[st] / t->count_by_steps[st]); opd_csv_log_end_row(&log);
        }
    return opd_csv_log_close(&log);
}

static int write_text_csv(const char *out, const source_eval *r) {
    opd_csv_log log;
    static const char *hdr[] = {"metric", "value"};
    if (opd_csv_log_open(&log, out, hdr, 2) != 0) return -1;
    opd_csv_log_str(&log, "pass@1"); opd_csv_log_num(&log, r->acc); opd_csv_log_end_row(&log);
    opd_csv_log_str(&log, "scored"); opd_csv_log_int(&log, r->scored); opd_csv_log_end_row(&log);
    opd_csv_log_str(&log, "unscored"); opd_csv_log_int(&log, r->n - r->scored); opd_csv_log_end_row(&log);
    opd_csv_log_str(&log, "mean_len"); opd_csv_log_num(&log, r->mean_len); opd_csv_log_end_row(&log);
    return opd_csv_log_close(&log);
}

int cmd_eval(int argc, char **argv) {
    const char *C = "eval";
    const char *model = NULL, *data = NULL, *prompts = NULL, *tokp = NULL, *tmpl = NULL, *eos = NULL, *out = NULL;
    int n = 0, k = 1, max_new_tokens = 0, B = 64;
    float temp = 1.0f;
    uint64_t seed = 1;
    int text = 0;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        text |= !strcmp(argv[i], "--prompts") || !strncmp(argv[i], "--prompts=", 10);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:d:n:k:t:T:B:s:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case OPT_PROMPTS: prompts = optarg; break;
        case OPT_TOKENIZER: tokp = optarg; break;
        case OPT_CHAT_TEMPLATE: tmpl = optarg; break;
        case OPT_EOS: eos = optarg; break;
        case 'n': if (cli_int(C, "n", optarg, 1, 1 << 30, &n)) return 2; break;
        case 'k': if (cli_int(C, "samples", optarg, 1, 4096, &k)) return 2; break;
        case 't': if (cli_float(C, "temperature", optarg, 0, 100, &temp)) return 2; break;
        case OPT_HORIZON_OLD: cli_deprecated(C, "--horizon", "--max-new-tokens"); /* fall through */
        case 'T':
            if (c == 'T') cli_deprecated(C, "-T", "--max-new-tokens");
            /* fall through */
        case OPT_MAX_NEW_TOKENS:
            if (cli_int(C, "max-new-tokens", optarg, 1, 1 << 20, &max_new_tokens)) return 2;
            break;
        case 'B': if (cli_int(C, "batch", optarg, 1, 4096, &B)) return 2; break;
        case 's': if (cli_u64(C, "seed", optarg, &seed)) return 2; break;
        case 'h': help(text); return 0;
        default: return cli_usage_error(C);
        }
    }
    if (optind != argc) return cli_usage_error(C);
    if (text && (!model || !prompts || !tokp)) {
        fprintf(stderr, "opd eval: --model, --prompts and --tokenizer are required\n");
        return cli_usage_error(C);
    }
    if (!text && (!model || !data)) { fprintf(stderr, "opd eval: --model and --data are required\n"); return cli_usage_error(C); }
    if (text && (data || k > 1)) {
        fprintf(stderr, "opd eval: --prompts takes neither --data nor --samples (text prompts are scored greedily)\n");
        return cli_usage_error(C);
    }
    if (!text && (tokp || tmpl || eos)) {
        fprintf(stderr, "opd eval: --tokenizer, --chat-template and --eos need --prompts\n");
        return cli_usage_error(C);
    }

    source src;
    if ((text ? source_open_text(&src, prompts, tokp, tmpl, eos) : source_open_task(&src, data)) != 0) {
        source_free(&src);
        return cli_fail(C);
    }
    if (n == 0 || n > src.n) n = src.n;
    if (max_new_tokens == 0) max_new_tokens = source_default_max_new_tokens(&src);
    opd_model m;
    if (opd_model_load_any(&m, model, NULL) != 0) { source_free(&src); return cli_fail(C); }
    source_eval g, s;
    opd_sampler_config greedy = {0.0f, 0, 1.0f}, sampled = {temp, 0, 1.0f};
    int rc = source_check_model(&src, &m, model, max_new_tokens);
    if (rc == 0) rc = source_evaluate(&src, &m, n, max_new_tokens, B, &greedy, 1, seed, &g);
    if (rc == 0 && k > 1) rc = source_evaluate(&src, &m, n, max_new_tokens, B, &sampled, k, seed, &s);
    if (rc == 0) {
        if (text) report_text(model, prompts, max_new_tokens, &g);
        else report_task(model, data, max_new_tokens, k, temp, &g, &s);
    }
    if (rc == 0 && out) rc = text ? write_text_csv(out, &g) : write_task_csv(out, k, &g, &s);
    opd_model_free(&m);
    source_free(&src);
    return rc == 0 ? 0 : cli_fail(C);
}
