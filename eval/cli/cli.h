/* cli.h — what the `opd` subcommands share: checked number parsing, the
 * model-architecture options, --device, output directories. Each command is
 * one cmd_*.c file in eval/cli/; opd.c only dispatches. */
#ifndef OPD_CLI_H
#define OPD_CLI_H

#include <getopt.h>
#include "opd.h"
#include "opd_hf.h"      /* opd_model_load_any: checkpoints and Hugging Face directories */
#include "opd_device.h"  /* opd_device_kind */

/* Parse helpers: on a malformed or out-of-range value they print
 * "opd CMD: --OPT: ..." and return -1. */
int cli_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out);
int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
/* Print the library's last error as "opd CMD: message" and return 1. */
int cli_fail(const char *cmd);
/* Unknown option / missing argument: print the hint and return 2. */
int cli_usage_error(const char *cmd);
/* A deprecated option spelling: one line on stderr, "opd CMD: OLD is
 * deprecated, use NEW" (e.g. "--horizon", "--max-new-tokens"); the option
 * still works. */
void cli_deprecated(const char *cmd, const char *old, const char *now);

/* Parse --device NAME. "cuda" in a build without CUDA is refused here,
 * before any work: prints "opd CMD: --device cuda: this opd was built
 * without CUDA: ./configure --with-cuda" and returns -1 (the caller exits
 * 2), as does an unknown name. */
int cli_device(const char *cmd, const char *name, opd_device_kind *out);

/* mkdir -p DIR (an output directory and any missing parents); prints
 * "opd CMD: cannot create directory ..." and returns -1 on failure. */
int cli_mkdir_p(const char *cmd, const char *dir);
/* "DIR/NAME", malloc'd */
char *cli_path_join(const char *dir, const char *name);
/* progress lines with \r only on a terminal; a log file gets whole lines */
int cli_progress_tty(void);

/* Long-option codes without a short letter: named, above any character. */
enum {
    OPT_VOCAB = 1001, OPT_D_MODEL, OPT_LAYERS, OPT_HEADS, OPT_KV_HEADS, OPT_FFN, OPT_MAX_SEQ,
    OPT_QKV_BIAS, OPT_TIE_EMBEDDINGS, OPT_ROPE_THETA, OPT_RMS_EPS,
};
/* Model-architecture options shared by `init` and `sft`. */
#define CLI_MODEL_OPTIONS                                        \
    {"vocab", required_argument, 0, OPT_VOCAB},                  \
    {"d-model", required_argument, 0, OPT_D_MODEL},              \
    {"layers", required_argument, 0, OPT_LAYERS},                \
    {"heads", required_argument, 0, OPT_HEADS},                  \
    {"kv-heads", required_argument, 0, OPT_KV_HEADS},            \
    {"ffn", required_argument, 0, OPT_FFN},                      \
    {"max-seq", required_argument, 0, OPT_MAX_SEQ},              \
    {"qkv-bias", required_argument, 0, OPT_QKV_BIAS},            \
    {"tie-embeddings", required_argument, 0, OPT_TIE_EMBEDDINGS}, \
    {"rope-theta", required_argument, 0, OPT_ROPE_THETA},        \
    {"rms-eps", required_argument, 0, OPT_RMS_EPS}
#define CLI_MODEL_HELP                                                            \
    "  --vocab N          vocabulary size V (default 64)\n"                       \
    "  --d-model N        model width C (default 128)\n"                          \
    "  --layers N         transformer blocks L (default 4)\n"                     \
    "  --heads N          query heads (default 4)\n"                              \
    "  --kv-heads N       key/value heads, < heads for GQA (default 4)\n"         \
    "  --ffn N            SwiGLU hidden size (default 512)\n"                     \
    "  --max-seq N        longest sequence S, prompt + max new tokens (default 512)\n" \
    "  --qkv-bias 0|1     bias on q/k/v (Qwen2 style, default 1)\n"               \
    "  --tie-embeddings 0|1  LM head tied to the embedding (default 0)\n"         \
    "  --rope-theta X     RoPE base (default 10000)\n"                            \
    "  --rms-eps X        RMSNorm epsilon (default 1e-6)\n"
/* Returns 1 if `c` was a model option (applied to cfg), 0 if not, -1 on a bad value. */
int cli_model_option(const char *cmd, int c, const char *arg, opd_config *cfg);

/* the commands (one file each: cmd_NAME.c; bench in eval/bench/bench.c,
 * golden in golden/cmd_golden.c) */
int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_rl(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_golden(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_summarize(int argc, char **argv);

#endif
