/* crosscheck_dump.c — writes one safetensors file holding a random model, a
 * batch (with left padding), and what the reference computes from it: logits,
 * the cross-entropy loss and every parameter gradient. tests/torch_crosscheck.py
 * rebuilds the same model in PyTorch and compares.
 *
 * usage: crosscheck_dump OUT.safetensors GQA(0|1) TIED(0|1) */
#include "opd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s OUT.safetensors GQA(0|1) TIED(0|1)\n", argv[0]);
        return 2;
    }
    int gqa = atoi(argv[2]), tied = atoi(argv[3]);
    opd_config cfg;
    opd_config_default(&cfg);
    cfg.vocab_size = 23;
    cfg.d_model = 32;
    cfg.n_layers = 2;
    cfg.n_heads = 4;
    cfg.n_kv_heads = gqa ? 2 : 4;
    cfg.d_ff = 48;
    cfg.max_seq_len = 16;
    cfg.qkv_bias = gqa;          /* cover both bias settings across the two runs */
    cfg.tie_embeddings = tied;
    opd_model m;
    if (opd_model_init(&m, &cfg) != 0) { fprintf(stderr, "%s\n", opd_last_error()); return 1; }
    opd_model_init_random(&m, 7);
    /* larger weights than the training init so the check is not dominated by
     * near-zero activations, and non-trivial norm scales / biases */
    for (size_t i = 0; i < m.num_params; i++)
        m.params_mem[i] = 0.15f * opd_normal(99, 1, 0, (uint32_t)i);
    int nt = opd_param_tensor_count(&cfg);
    opd_tensor_info *ts = calloc(nt, sizeof *ts);
    opd_param_tensors(&cfg, ts);
    for (int i = 0; i < nt; i++)
        if (strstr(ts[i].name, "norm"))
            for (size_t j = 0; j < ts[i].numel; j++) m.params_mem[ts[i].offset + j] += 1.0f;

    enum { B = 3, T = 9 };
    int tokens[B * T], targets[B * T], pad[B] = {0, 2, 5};
    float mask[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            tokens[i] = (int)(opd_uniform(5, 2, b, t, 0) * cfg.vocab_size);
            targets[i] = (int)(opd_uniform(5, 3, b, t, 0) * cfg.vocab_size);
            mask[i] = t >= pad[b] ? 1.0f : 0.0f;   /* no loss on pad rows */
        }
    opd_model_forward(&m, tokens, pad, B, T);
    float *dlogits = malloc(sizeof(float) * B * T * cfg.vocab_size);
    float loss = opd_cross_entropy(m.acts.logits, targets, mask, B, T, cfg.vocab_size, dlogits);
    opd_model_alloc_grads(&m);
    opd_model_zero_grads(&m);
    opd_model_backward(&m, dlogits);

    opd_safetensors st;
    opd_st_init(&st);
    opd_config_to_meta(&cfg, &st);
    int64_t shp[3];
    for (int i = 0; i < nt; i++) {
        char name[128];
        shp[0] = ts[i].shape[0]; shp[1] = ts[i].shape[1];
        opd_st_add(&st, ts[i].name, OPD_F32, ts[i].ndim, shp, m.params_mem + ts[i].offset);
        snprintf(name, sizeof name, "grad.%s", ts[i].name);
        opd_st_add(&st, name, OPD_F32, ts[i].ndim, shp, m.grads_mem + ts[i].offset);
    }
    shp[0] = B; shp[1] = T; shp[2] = cfg.vocab_size;
    opd_st_add(&st, "in.tokens", OPD_I32, 2, shp, tokens);
    opd_st_add(&st, "in.targets", OPD_I32, 2, shp, targets);
    opd_st_add(&st, "in.mask", OPD_F32, 2, shp, mask);
    opd_st_add(&st, "out.logits", OPD_F32, 3, shp, m.acts.logits);
    shp[0] = B;
    opd_st_add(&st, "in.pad", OPD_I32, 1, shp, pad);
    shp[0] = 1;
    opd_st_add(&st, "out.loss", OPD_F32, 1, shp, &loss);
    int rc = opd_st_write(&st, argv[1]);
    if (rc != 0) fprintf(stderr, "%s\n", opd_last_error());
    opd_st_free(&st);
    free(ts);
    free(dlogits);
    opd_model_free(&m);
    return rc ? 1 : 0;
}
