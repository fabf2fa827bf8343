/* cmd_model.c — `opd init` (a fresh random model) and `opd info` (what a
 * checkpoint holds). */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_init(int argc, char **argv) {
    static const struct option opts[] = {
        {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},
        CLI_MODEL_OPTIONS,
        {0, 0, 0, 0}};
    opd_config cfg;
    opd_config_default(&cfg);
    uint64_t seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        int r = cli_model_option("init", c, optarg, &cfg);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (c) {
        case 's': if (cli_u64("init", "seed", optarg, &seed)) return 2; break;
        case 'h':
            printf("Usage: opd init [OPTIONS] OUT.safetensors\n"
                   "Write a randomly initialised model (GPT-2 style init, keyed by --seed).\n\n"
                   "  -s, --seed N       initialisation seed (default 1)\n" CLI_MODEL_HELP);
            return 0;
        default: return cli_usage_error("init");
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "opd init: expected one output path\n");
        return cli_usage_error("init");
    }
    opd_model m;
    if (opd_model_init(&m, &cfg) != 0) return cli_fail("init");
    opd_model_init_random(&m, seed);
    int rc = opd_model_save(&m, argv[optind], NULL, NULL, NULL, 0);
    if (rc == 0)
        printf("wrote %s: %zu parameters (V=%d C=%d L=%d heads=%d/%d F=%d)\n", argv[optind],
               m.num_params, cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads,
               cfg.n_kv_heads, cfg.d_ff);
    opd_model_free(&m);
    return rc == 0 ? 0 : cli_fail("init");
}

int cmd_info(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("Usage: opd info CHECKPOINT.safetensors | HF_MODEL_DIR\n"
               "Check a checkpoint (or a Hugging Face model directory) completely and print\n"
               "its config and tensors.\n");
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "opd info: expected one checkpoint path\n");
        return cli_usage_error("info");
    }
    opd_model m;
    if (opd_model_load_any(&m, argv[1], NULL) != 0) return cli_fail("info");
    const opd_config *c = &m.cfg;
    printf("%s: ok\n", argv[1]);
    printf("config: vocab=%d d_model=%d layers=%d heads=%d kv_heads=%d ffn=%d max_seq=%d "
           "qkv_bias=%d tie_embeddings=%d rope_theta=%g rms_eps=%g\n",
           c->vocab_size, c->d_model, c->n_layers, c->n_heads, c->n_kv_heads, c->d_ff,
           c->max_seq_len, c->qkv_bias, c->tie_embeddings, c->rope_theta, c->rms_eps);
    printf("parameters: %zu\n", m.num_params);
    opd_model_free(&m);
    return 0;
}
