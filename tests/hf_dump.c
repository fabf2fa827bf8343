/* hf_dump.c — loads a model the way the CLI does (a Hugging Face directory or
 * an opd checkpoint, opd_model_load_any) and writes what opd computes from
 * it, for tests/hf_crosscheck.py to compare with transformers:
 *   out.logits (B, T, V)      forward on the tokens given
 *   out.loss   (1)            next-token cross-entropy of every sequence on
 *                             itself (what transformers' labels=input_ids gives)
 *   grad.NAME                 its gradient, every parameter
 *   out.greedy (B, NGEN)      greedy continuation of each sequence
 *
 * usage: hf_dump MODEL OUT.safetensors B T NGEN TOKEN... (B*T tokens) */
#include "opd_hf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s MODEL OUT.safetensors B T NGEN TOKEN...\n", argv[0]);
        return 2;
    }
    int B = atoi(argv[3]), T = atoi(argv[4]), NGEN = atoi(argv[5]);
    if (B < 1 || T < 2 || NGEN < 0 || argc != 6 + B * T) {
        fprintf(stderr, "hf_dump: need B >= 1, T >= 2, NGEN >= 0 and B*T tokens\n");
        return 2;
    }
    opd_model m;
    if (opd_model_load_any(&m, argv[1], NULL) != 0) {
        fprintf(stderr, "hf_dump: %s\n", opd_last_error());
        return 1;
    }
    const opd_config *cfg = &m.cfg;
    int V = cfg->vocab_size;
    int *tokens = calloc((size_t)B * T, sizeof *tokens), *targets = calloc((size_t)B * T, sizeof *targets);
    float *mask = calloc((size_t)B * T, sizeof *mask);
    for (int i = 0; i < B * T; i++) tokens[i] = atoi(argv[6 + i]);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            /* position t predicts token t+1; the last position has no target */
            targets[b * T + t] = t + 1 < T ? tokens[b * T + t + 1] : 0;
            mask[b * T + t] = t + 1 < T;
        }
    opd_model_forward(&m, tokens, NULL, B, T);
    float *logits = malloc(sizeof(float) * B * T * V), *dlogits = malloc(sizeof(float) * B * T * V);
    memcpy(logits, m.acts.logits, sizeof(float) * B * T * V);
    float loss = opd_cross_entropy(logits, targets, mask, B, T, V, dlogits);
    opd_model_alloc_grads(&m);
    opd_model_zero_grads(&m);
    opd_model_backward(&m, dlogits);

    opd_safetensors st;
    opd_st_init(&st);
    int nt = opd_param_tensor_count(cfg);
    opd_tensor_info *ts = calloc(nt, sizeof *ts);
    opd_param_tensors(cfg, ts);
    for (int i = 0; i < nt; i++) {
        char name[128];
        int64_t shp[2] = {ts[i].shape[0], ts[i].shape[1]};
        snprintf(name, sizeof name, "grad.%s", ts[i].name);
        opd_st_add(&st, name, OPD_F32, ts[i].ndim, shp, m.grads_mem + ts[i].offset);
    }
    int64_t shp[3] = {B, T, V};
    opd_st_add(&st, "out.logits", OPD_F32, 3, shp, logits);
    shp[0] = 1;
    opd_st_add(&st, "out.loss", OPD_F32, 1, shp, &loss);

    /* greedy: re-run the whole sequence each step (the plain forward, no
     * cache, so only the model itself is compared) */
    if (NGEN > 0) {
        int L = T + NGEN;
        if (L > cfg->max_seq_len) { fprintf(stderr, "hf_dump: T + NGEN > max_seq_len\n"); return 1; }
        int *seq = calloc((size_t)B * L, sizeof *seq), *gen = calloc((size_t)B * NGEN, sizeof *gen);
        for (int b = 0; b < B; b++) memcpy(seq + b * L, tokens + b * T, sizeof(int) * T);
        for (int k = 0; k < NGEN; k++) {
            int n = T + k;
            int *cur = calloc((size_t)B * n, sizeof *cur);
            for (int b = 0; b < B; b++) memcpy(cur + b * n, seq + b * L, sizeof(int) * n);
            opd_model_forward_inference(&m, cur, NULL, B, n);
            for (int b = 0; b < B; b++) {
                int y = argmax(m.acts.logits + ((size_t)b * n + n - 1) * V, V);
                seq[b * L + n] = y;
                gen[b * NGEN + k] = y;
            }
            free(cur);
        }
        int64_t gs[2] = {B, NGEN};
        opd_st_add(&st, "out.greedy", OPD_I32, 2, gs, gen);
        free(seq);
        free(gen);
    }
    int rc = opd_st_write(&st, argv[2]);
    if (rc != 0) fprintf(stderr, "hf_dump: %s\n", opd_last_error());
    opd_st_free(&st);
    free(ts);
    free(tokens);
    free(targets);
    free(mask);
    free(logits);
    free(dlogits);
    opd_model_free(&m);
    return rc ? 1 : 0;
}
