/* rollout.c — batched student rollouts to the horizon H_k (ref/SPEC.md section 3).
 *
 * Everything here is sized by P + H, where H is the step's horizon: the KV
 * cache, the token and mask arrays. That is where the paper's truncated and
 * progressive horizons save time and memory. */
#include "opd.h"

#include <stdlib.h>
#include <string.h>

void opd_rollout_free(opd_rollout *r) {
    free(r->tokens);
    free(r->pad);
    free(r->mask);
    free(r->logprobs);
    free(r->length);
    free(r->truncated);
    memset(r, 0, sizeof *r);
}

/* The inputs of a rollout, checked before any work: shared by the CUDA
 * path (gpu/step_cuda.c) so a bad batch gives the same message there. */
int opd_rollout_check(const opd_config *cfg, const int *prompts, const int *pad,
                      int B, int P, int H, const opd_rollout_config *rc) {
    int V = cfg->vocab_size;
    if (B < 1 || P < 1 || H < 0)
        return opd_set_error("opd_rollout_sample: need batch >= 1, prompt length >= 1, horizon >= 0 (got %d, %d, %d)", B, P, H);
    if (P + H > cfg->max_seq_len)
        return opd_set_error("opd_rollout_sample: prompt %d + horizon %d exceeds max_seq_len %d", P, H, cfg->max_seq_len);
    /* eos_id < 0: no end-of-sequence token, every rollout runs to H (benchmarks) */
    if (rc->eos_id >= V || rc->pad_id < 0 || rc->pad_id >= V)
        return opd_set_error("opd_rollout_sample: eos_id %d / pad_id %d outside the vocabulary (%d)", rc->eos_id, rc->pad_id, V);
    for (int b = 0; b < B; b++) {
        /* at least one real token: the first sample conditions on it */
        if (pad[b] < 0 || pad[b] >= P)
            return opd_set_error("opd_rollout_sample: sequence %d has pad %d, need 0 <= pad < prompt length %d", b, pad[b], P);
        for (int t = 0; t < P; t++) {
            int tok = prompts[(size_t)b * P + t];
            if (tok < 0 || tok >= V)
                return opd_set_error("opd_rollout_sample: prompt token %d at (%d, %d) outside the vocabulary (%d)", tok, b, t, V);
        }
    }
    /* fail before any work if the sampler settings are invalid */
    if (rc->sampler.temperature < 0.0f || rc->sampler.top_k < 0 ||
        !(rc->sampler.top_p > 0.0f && rc->sampler.top_p <= 1.0f))
        return opd_set_error("opd_rollout_sample: invalid sampler (temperature %g, top_k %d, top_p %g)",
                             rc->sampler.temperature, rc->sampler.top_k, rc->sampler.top_p);
    return 0;
}

int opd_rollout_sample(const opd_model *student, const int *prompts,
                       const int *pad, const uint32_t *seq_ids, int B, int P,
                       int H, const opd_rollout_config *rc, opd_rollout *out) {
    const opd_config *cfg = &student->cfg;
    int V = cfg->vocab_size, S = P + H;   /* S: row length of out->tokens */
    memset(out, 0, sizeof *out);
    if (opd_rollout_check(cfg, prompts, pad, B, P, H, rc) != 0) return -1;

    out->B = B; out->P = P; out->H = H;
    out->tokens = opd_malloc((size_t)B * (S > 0 ? S : 1) * sizeof(int));
    out->pad = opd_malloc(B * sizeof(int));
    out->mask = opd_calloc((size_t)B * (H > 0 ? H : 1), sizeof(float));
    out->logprobs = opd_calloc((size_t)B * (H > 0 ? H : 1), sizeof(float));
    out->length = opd_calloc(B, sizeof(int));
    out->truncated = opd_calloc(B, sizeof(int));
    memcpy(out->pad, pad, B * sizeof(int));
    for (int b = 0; b < B; b++) {
        memcpy(out->tokens + (size_t)b * S, prompts + (size_t)b * P, P * sizeof(int));
        for (int i = 0; i < H; i++) out->tokens[(size_t)b * S + P + i] = rc->pad_id;
    }
    if (H == 0) {            /* nothing to generate: every sequence is cut */
        for (int b = 0; b < B; b++) out->truncated[b] = 1;
        return 0;
    }

    opd_kv_cache cache;
    opd_decode_scratch ds;
    if (opd_kv_cache_init(&cache, cfg, B, S) != 0 ||
        opd_decode_scratch_init(&ds, cfg, B * P, S) != 0) {   /* B*P rows: the prefill */
        opd_kv_cache_free(&cache);
        opd_rollout_free(out);
        return -1;
    }
    out->peak_cache_bytes = (double)opd_kv_cache_bytes(&cache);
    float *logits = opd_malloc((size_t)B * V * sizeof(float));        /* (B, V) */
    float *samp_scratch = opd_malloc((size_t)B * 2 * V * sizeof(float));
    int *step_tokens = opd_malloc(B * sizeof(int));
    int *done = opd_calloc(B, sizeof(int));
    int err = 0;

    /* prefill: all prompt positions in one pass; the logits of the last
     * prompt position predict the first generated token */
    if (opd_model_prefill(student, &cache, &ds, prompts, pad, P, logits) != 0) err = 2;

    for (int i = 0; i < H && !err; i++) {
        /* sample generated token i of every live sequence, keyed by its
         * stable id and its index in the rollout, never its batch slot */
        #pragma omp parallel for schedule(static) if ((size_t)B * V > OPD_OMP_MIN_ELEMS)
        for (int b = 0; b < B; b++) {
            int *row = out->tokens + (size_t)b * S;
            if (done[b]) { step_tokens[b] = rc->pad_id; continue; }
            float lp = 0.0f;
            int tok = opd_sample_token(logits + (size_t)b * V, V, &rc->sampler, rc->seed,
                                       rc->step, seq_ids[b], (uint32_t)i, &lp,
                                       samp_scratch + (size_t)b * 2 * V);
            if (tok < 0) {
                #pragma omp atomic write
                err = 1;
                tok = rc->pad_id;
            }
            row[P + i] = tok;
            out->mask[(size_t)b * H + i] = 1.0f;   /* EOS itself counts */
            out->logprobs[(size_t)b * H + i] = lp;
            out->length[b] = i + 1;
            if (tok == rc->eos_id) done[b] = 1;
            step_tokens[b] = tok;
        }
        if (err) break;
        int all_done = 1;
        for (int b = 0; b < B; b++) all_done &= done[b];
        if (all_done || i == H - 1) break;
        /* feed token i at position P + i (finished rows carry pad_id; their
         * outputs are ignored, but a fixed batch keeps the matmuls simple) */
        opd_model_decode_step(student, &cache, &ds, step_tokens, pad, P + i, logits);
    }
    /* a sequence without EOS was cut by the horizon: truncated, not failed,
     * and all of its tokens stay in the loss mask */
    for (int b = 0; b < B; b++) out->truncated[b] = !done[b];

    free(logits);
    free(samp_scratch);
    free(step_tokens);
    free(done);
    opd_kv_cache_free(&cache);
    opd_decode_scratch_free(&ds);
    if (err) {
        opd_rollout_free(out);
        if (err == 2) return -1;   /* the prefill's message stands */
        return opd_set_error("opd_rollout_sample: sampling failed (non-finite logits from the student?)");
    }
    return 0;
}
