/* cmd_export.c — `opd export`: write a model as a Hugging Face directory
 * (config.json + model.safetensors) that transformers' from_pretrained loads. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENIZER_FILES 8

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"out", required_argument, 0, 'o'},
        {"dtype", required_argument, 0, 'd'},
        {"tokenizer", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model = NULL, *out = NULL;
    const char *files[MAX_TOKENIZER_FILES];
    int nfiles = 0, bf16 = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:d:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'o': out = optarg; break;
        case 'd':
            if (!strcmp(optarg, "f32")) bf16 = 0;
            else if (!strcmp(optarg, "bf16")) bf16 = 1;
            else {
                fprintf(stderr, "opd export: --dtype: '%s' is not f32 or bf16\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (nfiles == MAX_TOKENIZER_FILES) {
                fprintf(stderr, "opd export: --tokenizer: at most %d files\n", MAX_TOKENIZER_FILES);
                return 2;
            }
            files[nfiles++] = optarg;
            break;
        case 'h':
            printf("Usage: opd export --model CKPT --out DIR [--dtype f32|bf16] [--tokenizer FILE]...\n"
                   "Write a model (an opd checkpoint or a Hugging Face directory) as a Hugging Face\n"
                   "directory: config.json (Qwen2ForCausalLM with q/k/v bias, else LlamaForCausalLM)\n"
                   "and model.safetensors. DIR must not exist (or be empty); it appears complete or\n"
                   "not at all.\n\n"
                   "  -m, --model PATH     model to export\n"
                   "  -o, --out DIR        output directory\n"
                   "  -d, --dtype T        f32 (default, exact) or bf16 (round to nearest even)\n"
                   "  -t, --tokenizer FILE copy FILE (tokenizer.json, tokenizer_config.json, ...)\n"
                   "                       into DIR under its own name; may be repeated\n");
            return 0;
        default: return cli_usage_error("export");
        }
    }
    if (!model || !out || optind != argc) {
        fprintf(stderr, "opd export: --model and --out are required, and nothing else\n");
        return cli_usage_error("export");
    }
    opd_model m;
    if (opd_model_load_any(&m, model, NULL) != 0) return cli_fail("export");
    int rc = opd_hf_save(&m, out, bf16, files, nfiles);
    if (rc == 0)
        printf("wrote %s: %s, %zu parameters as %s\n", out,
               m.cfg.qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM", m.num_params,
               bf16 ? "bf16" : "f32");
    opd_model_free(&m);
    return rc == 0 ? 0 : cli_fail("export");
}
