/* opd.c — the command-line tool: `opd COMMAND [OPTIONS]`. Each command is a
 * function in its own file (eval/cli/cmd_NAME.c, eval/bench/bench.c,
 * golden/cmd_golden.c); this file only dispatches. */
#include "config.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"init", cmd_init, "write a randomly initialised model checkpoint"},
    {"info", cmd_info, "check a checkpoint and print its config"},
    {"data", cmd_data, "generate the task's train/valid/test CSV splits"},
    {"sft", cmd_sft, "supervised training on reference solutions (teacher, student warm start)"},
    {"distill", cmd_distill, "on-policy distillation: full, POPD or TOPD step horizons H_k"},
    {"rl", cmd_rl, "GRPO on the task's verifiable reward (the RLVR baseline)"},
    {"eval", cmd_eval, "exact-match accuracy decoding to the full horizon T (max new tokens)"},
    {"summarize", cmd_summarize, "an experiment's runs over seeds: means, 95% intervals, paired differences"},
    {"golden", cmd_golden, "write golden tensors / compare two golden files"},
    {"bench", cmd_bench, "benchmarks: targets, matmul, decode, step (see 'opd bench --help')"},
    {"tokenize", cmd_tokenize, "encode / decode text with a Hugging Face tokenizer.json"},
    {"export", cmd_export, "write a model as a Hugging Face directory (config.json + safetensors)"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "Usage: opd COMMAND [OPTIONS]\n"
               "On-policy distillation with rollout-horizon control (reference implementation).\n\n"
               "Commands:\n");
    for (const command *c = commands; c->name; c++) fprintf(f, "  %-12s %s\n", c->name, c->help);
    fprintf(f, "\nRun 'opd COMMAND --help' for a command's options.\n"
               "  -h, --help     show this help\n"
               "  -V, --version  show the version\n");
}

/* One command on every rank. Under mpirun (ref/opd_dist.h) only rank 0
 * prints (and writes files); errors still reach stderr from any rank. A
 * usage error (2) is the same on every rank, which all end normally; any
 * other failure may be one rank's alone, so it stops the whole job. */
static int run_command(const command *c, int argc, char **argv) {
    opd_dist_init(&argc, &argv);
    if (opd_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    int rc = c->fn(argc - 1, argv + 1);
    if (rc != 0 && rc != 2 && opd_dist_size() > 1) opd_dist_abort(rc);
    opd_dist_finalize();
    return rc;
}

int main(int argc, char **argv) {
    /* progress lines must reach a log file as they happen, not at exit */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) { printf("opd %s\n", PACKAGE_VERSION); return 0; }
    for (const command *c = commands; c->name; c++)
        if (!strcmp(cmd, c->name)) return run_command(c, argc, argv);
    fprintf(stderr, "opd: unknown command '%s' (try 'opd --help')\n", cmd);
    return 2;
}
