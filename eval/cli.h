/* cli.h — shared helpers of the `opd` subcommands (option parsing, model
 * config options, checked number parsing). */
#ifndef OPD_CLI_H
#define OPD_CLI_H

#include <getopt.h>
#include "opd.h"
#include "opd_hf.h"   /* opd_model_load_any: checkpoints and Hugging Face directories */

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

/* Model-architecture options shared by `init` and friends. */
#define CLI_MODEL_OPTIONS                                        \
    {"vocab", required_argument, 0, 1001},                       \
    {"d-model", required_argument, 0, 1002},                     \
    {"layers", required_argument, 0, 1003},                      \
    {"heads", required_argument, 0, 1004},                       \
    {"kv-heads", required_argument, 0, 1005},                    \
    {"ffn", required_argument, 0, 1006},                         \
    {"max-seq", required_argument, 0, 1007},                     \
    {"qkv-bias", required_argument, 0, 1008},                    \
    {"tie-embeddings", required_argument, 0, 1009},              \
    {"rope-theta", required_argument, 0, 1010},                  \
    {"rms-eps", required_argument, 0, 1011}
#define CLI_MODEL_HELP                                                            \
    "  --vocab N          vocabulary size V (default 64)\n"                       \
    "  --d-model N        model width C (default 128)\n"                          \
    "  --layers N         transformer blocks L (default 4)\n"                     \
    "  --heads N          query heads (default 4)\n"                              \
    "  --kv-heads N       key/value heads, < heads for GQA (default 4)\n"         \
    "  --ffn N            SwiGLU hidden size (default 512)\n"                     \
    "  --max-seq N        longest sequence, prompt + horizon (default 512)\n"     \
    "  --qkv-bias 0|1     bias on q/k/v (Qwen2 style, default 1)\n"               \
    "  --tie-embeddings 0|1  LM head tied to the embedding (default 0)\n"         \
    "  --rope-theta X     RoPE base (default 10000)\n"                            \
    "  --rms-eps X        RMSNorm epsilon (default 1e-6)\n"
/* Returns 1 if `c` was a model option (applied to cfg), 0 if not, -1 on a bad value. */
int cli_model_option(const char *cmd, int c, const char *arg, opd_config *cfg);

int cmd_init(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_golden(int argc, char **argv);
/* eval/cmd_text.c: distill / eval on JSONL text prompts with a tokenizer.json;
 * cmd_distill and cmd_eval hand over when cli_has_prompts(argc, argv). */
/* Shared by the two distill commands (cmd_train.c): a checkpoint's integer
 * metadata in [lo, hi] / seconds (finite, >= 0), with the value in the
 * error; and --resume of log.csv and eval.csv (rows up to the checkpoint
 * kept, a log of other columns, behind its checkpoint or missing refused;
 * both logs open on success, neither on failure). */
#include "opd_data.h"
int cli_meta_long(const char *path, const char *key, long lo, long hi, long *out);
int cli_meta_seconds(const char *path, const char *key, double *out);
int cli_resume_logs(opd_csv_log *slog, const char *slog_path, const char *const *shdr, int scols,
                    opd_csv_log *elog, const char *elog_path, const char *const *ehdr, int ecols,
                    long k0);
int cli_has_prompts(int argc, char **argv);
int cmd_distill_text(int argc, char **argv);
int cmd_eval_text(int argc, char **argv);
/* The built-in task's character tokenizer against a model (from path): the
 * vocab sizes must be equal, else an error naming the file. */
int cli_check_task_vocab(const opd_model *m, const char *path, int tok_vocab);
#define CLI_TEXT_HINT " (a model with its own tokenizer takes --prompts FILE.jsonl --tokenizer tokenizer.json)"

#endif
