/* harness.c — task problems in and out of the model: batches for SFT and
 * distillation, and the exact-match evaluation harness. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void harness_prompt_batch(const opd_tokenizer *tok, const opd_task *tasks,
                          const int *idx, int B, int **prompts, int **pad, int *P) {
    int maxlen = 0;
    int *lens = opd_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        lens[b] = 1 + (int)strlen(tasks[idx[b]].prompt);
        if (lens[b] > maxlen) maxlen = lens[b];
    }
    *P = maxlen;
    *prompts = opd_malloc(sizeof(int) * B * maxlen);
    *pad = opd_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        int p = maxlen - lens[b];
        int *row = *prompts + (size_t)b * maxlen;
        for (int t = 0; t < p; t++) row[t] = tok->pad_id;
        /* the generator only emits characters of the vocabulary */
        int n = opd_tok_encode(tok, tasks[idx[b]].prompt, 1, 0, row + p, lens[b]);
        if (n != lens[b]) { fprintf(stderr, "opd: %s\n", opd_last_error()); abort(); }
        (*pad)[b] = p;
    }
    free(lens);
}

void harness_sft_batch(const opd_tokenizer *tok, const opd_task *tasks,
                       const int *idx, int B, int **tokens, int **pad,
                       float **loss_mask, int *S) {
    int maxlen = 0;
    int *plen = opd_malloc(sizeof(int) * B), *len = opd_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        plen[b] = 1 + (int)strlen(tasks[idx[b]].prompt);
        len[b] = plen[b] + (int)strlen(tasks[idx[b]].solution) + 1;
        if (len[b] > maxlen) maxlen = len[b];
    }
    *S = maxlen;
    *tokens = opd_malloc(sizeof(int) * B * maxlen);
    *pad = opd_malloc(sizeof(int) * B);
    *loss_mask = opd_calloc((size_t)B * maxlen, sizeof(float));
    char *text = opd_malloc(OPD_TASK_PROMPT_MAX + OPD_TASK_SOLUTION_MAX);
    for (int b = 0; b < B; b++) {
        int p = maxlen - len[b];
        int *row = *tokens + (size_t)b * maxlen;
        for (int t = 0; t < p; t++) row[t] = tok->pad_id;
        snprintf(text, OPD_TASK_PROMPT_MAX + OPD_TASK_SOLUTION_MAX, "%s%s",
                 tasks[idx[b]].prompt, tasks[idx[b]].solution);
        int n = opd_tok_encode(tok, text, 1, 1, row + p, len[b]);
        if (n != len[b]) { fprintf(stderr, "opd: %s\n", opd_last_error()); abort(); }
        (*pad)[b] = p;
        /* position t predicts token t+1: train where t+1 is past the prompt */
        for (int t = p + plen[b] - 1; t < maxlen - 1; t++) (*loss_mask)[(size_t)b * maxlen + t] = 1.0f;
    }
    free(text);
    free(plen);
    free(len);
}

int harness_max_new_tokens(const opd_task *tasks, int n) {
    int max_new_tokens = 1;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(tasks[i].solution) + 1;
        if (l > max_new_tokens) max_new_tokens = l;
    }
    return max_new_tokens;
}

int harness_check_vocab(const opd_model *m, const char *path, int tok_vocab) {
    if (m->cfg.vocab_size == tok_vocab) return 0;
    return opd_set_error("%s: vocab_size %d is not the %d of the task's character tokenizer%s", path,
                         m->cfg.vocab_size, tok_vocab, HARNESS_TEXT_HINT);
}

void harness_draw_batch(uint64_t seed, long k, int n_tasks, int B, int *idx) {
    for (int b = 0; b < B; b++)
        idx[b] = (int)(opd_uniform(seed, 0x62617463u /* "batc" */, (uint32_t)k, (uint32_t)b, 0) * n_tasks);
}

/* 1 if row b of rollout r decodes to a solution of task's prompt (exact
 * match of the answer, opd_task_verify); text
 * holds at least r->H + 16 bytes */
static int rollout_row_correct(const opd_tokenizer *tok, const opd_task *task, const opd_rollout *r,
                               int b, char *text) {
    const int *gen = r->tokens + (size_t)b * (r->P + r->H) + r->P;
    if (opd_tok_decode(tok, gen, r->length[b], text, (size_t)r->H + 16) < 0) text[0] = '\0';
    return opd_task_verify(task->prompt, text) == 1;
}

int harness_rollout_rewards(const opd_tokenizer *tok, const opd_task *tasks, const int *idx,
                            const opd_rollout *r, float *rewards) {
    char *text = opd_malloc((size_t)r->H + 16);
    for (int b = 0; b < r->B; b++) rewards[b] = (float)rollout_row_correct(tok, &tasks[idx[b]], r, b, text);
    free(text);
    return 0;
}

int harness_evaluate(const opd_model *m, const opd_tokenizer *tok,
                     const opd_task *tasks, int n, int max_new_tokens, int batch,
                     const opd_sampler_config *s, int k, uint64_t seed,
                     harness_eval_result *r) {
    memset(r, 0, sizeof *r);
    r->n = n;
    r->k = k;
    double t0 = opd_time();
    opd_rollout_config rc;
    memset(&rc, 0, sizeof rc);
    rc.eos_id = tok->eos_id;
    rc.pad_id = tok->pad_id;
    rc.sampler = *s;
    rc.seed = seed;
    rc.step = 0xe7a1u;   /* evaluation draws never collide with training steps' */
    int total = n * k;
    int *idx = opd_malloc(sizeof(int) * batch);
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * batch);
    char *text = opd_malloc((size_t)max_new_tokens + 16);
    /* per sample: correct, length, truncated. Under mpirun decode batch i
     * runs on rank i % R (the batches are the same for every R), the
     * integers are summed over ranks, and the totals are taken below in
     * sample order, as on one rank */
    const int R = opd_dist_size(), rank = opd_dist_rank();
    long *out = opd_calloc((size_t)(total ? total : 1) * 3, sizeof *out);
    for (int start = 0; start < total; start += batch) {
        if ((start / batch) % R != rank) continue;
        int B = total - start < batch ? total - start : batch;
        for (int b = 0; b < B; b++) {
            idx[b] = (start + b) / k;
            ids[b] = (uint32_t)(start + b);
        }
        int *prompts, *pad, P;
        harness_prompt_batch(tok, tasks, idx, B, &prompts, &pad, &P);
        if (P + max_new_tokens > m->cfg.max_seq_len) {
            free(prompts); free(pad); free(idx); free(ids); free(text); free(out);
            return opd_set_error("prompt %d + max new tokens %d exceeds the model's max_seq_len %d",
                                 P, max_new_tokens, m->cfg.max_seq_len);
        }
        opd_rollout roll;
        memset(&roll, 0, sizeof roll);
        int rc_ = opd_rollout_sample(m, prompts, pad, ids, B, P, max_new_tokens, &rc, &roll);
        free(prompts);
        free(pad);
        if (rc_ != 0) { free(idx); free(ids); free(text); free(out); return -1; }
        for (int b = 0; b < B; b++) {
            long *o = out + (size_t)(start + b) * 3;
            o[0] = rollout_row_correct(tok, &tasks[idx[b]], &roll, b, text);
            o[1] = roll.length[b];
            o[2] = roll.truncated[b];
        }
        opd_rollout_free(&roll);
    }
    for (int o = 0; o < total * 3; o += 1 << 20)   /* int counts per message */
        opd_dist_sum_long(out + o, total * 3 - o < (1 << 20) ? total * 3 - o : 1 << 20);
    double correct = 0, len_sum = 0, trunc = 0;
    for (int i = 0; i < total; i++) {
        const long *o = out + (size_t)i * 3;
        int ok = (int)o[0];
        int steps = tasks[i / k].steps;
        correct += ok;
        r->count_by_steps[steps] += i % k == 0;
        r->correct_by_steps[steps] += (double)ok / k;
        len_sum += (double)o[1];
        trunc += (double)o[2];
    }
    free(out);
    r->acc = correct / total;
    r->mean_len = len_sum / total;
    r->truncated_frac = trunc / total;
    r->seconds = opd_time() - t0;
    free(idx);
    free(ids);
    free(text);
    return 0;
}

/* greedy decode of (B, P) prompts to H new tokens; *r owns the result */
static int greedy_rollout(const opd_model *m, const opd_tokenizer *tok, const int *prompts, const int *pad,
                          int B, int P, int H, opd_rollout *r) {
    opd_rollout_config rc;
    memset(&rc, 0, sizeof rc);
    rc.eos_id = tok->eos_id;
    rc.pad_id = tok->pad_id;
    rc.sampler.temperature = 0.0f;   /* greedy: no draw is used */
    rc.sampler.top_p = 1.0f;
    rc.step = 0xe7a1u;
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * (B ? B : 1));
    for (int b = 0; b < B; b++) ids[b] = (uint32_t)b;
    memset(r, 0, sizeof *r);
    int rc_ = opd_rollout_sample(m, prompts, pad, ids, B, P, H, &rc, r);
    free(ids);
    return rc_;
}

int harness_reliability(const opd_model *student, const opd_model *teacher, const opd_tokenizer *tok,
                        const opd_task *tasks, int n, int max_new_tokens, int width,
                        double *student_acc, double *teacher_acc) {
    const int T = max_new_tokens, nb = (T + width - 1) / width;
    if (n < 1 || width < 1) return opd_set_error("reliability: n = %d, width = %d must be >= 1", n, width);
    int *idx = opd_malloc(sizeof(int) * n);
    for (int b = 0; b < n; b++) idx[b] = b;
    int *prompts, *pad, P;
    harness_prompt_batch(tok, tasks, idx, n, &prompts, &pad, &P);
    if (P + T > student->cfg.max_seq_len || P + T > teacher->cfg.max_seq_len) {
        free(idx); free(prompts); free(pad);
        return opd_set_error("reliability: prompt %d + T %d exceeds a model's max_seq_len", P, T);
    }
    char *text = opd_malloc((size_t)2 * T + 16);
    int *seq = opd_malloc(sizeof(int) * 2 * (T + 1));
    opd_rollout s;
    int rc = greedy_rollout(student, tok, prompts, pad, n, P, T, &s);
    long correct = 0;
    int *L = opd_malloc(sizeof(int) * n);   /* the student's answer without <eos> */
    for (int b = 0; rc == 0 && b < n; b++) {
        const int *gen = s.tokens + (size_t)b * (P + T) + P;
        L[b] = s.length[b] - (s.truncated[b] ? 0 : 1);
        if (opd_tok_decode(tok, gen, s.length[b], text, (size_t)2 * T + 16) < 0) text[0] = '\0';
        correct += opd_task_verify(tasks[b].prompt, text) == 1;
    }
    *student_acc = (double)correct / n;
    /* (n, P + p) rows: the prompt, then the prefix, left-padded together */
    int *pp = opd_malloc(sizeof(int) * (size_t)n * (P + T)), *ppad = opd_malloc(sizeof(int) * n);
    for (int j = 0; rc == 0 && j < nb; j++) {
        const int p = j * width, Pp = P + p;
        for (int b = 0; b < n; b++) {
            const int q = L[b] < p ? L[b] : p, plen = P - pad[b];
            int *row = pp + (size_t)b * Pp;
            ppad[b] = Pp - plen - q;
            for (int t = 0; t < ppad[b]; t++) row[t] = tok->pad_id;
            memcpy(row + ppad[b], prompts + (size_t)b * P + pad[b], sizeof(int) * plen);
            memcpy(row + ppad[b] + plen, s.tokens + (size_t)b * (P + T) + P, sizeof(int) * q);
        }
        opd_rollout t;
        if ((rc = greedy_rollout(teacher, tok, pp, ppad, n, Pp, T - p, &t)) != 0) break;
        correct = 0;
        for (int b = 0; b < n; b++) {
            const int q = L[b] < p ? L[b] : p, nt = t.length[b];
            memcpy(seq, s.tokens + (size_t)b * (P + T) + P, sizeof(int) * q);
            memcpy(seq + q, t.tokens + (size_t)b * (Pp + T - p) + Pp, sizeof(int) * nt);
            if (opd_tok_decode(tok, seq, q + nt, text, (size_t)2 * T + 16) < 0) text[0] = '\0';
            correct += opd_task_verify(tasks[b].prompt, text) == 1;
        }
        teacher_acc[j] = (double)correct / n;
        opd_rollout_free(&t);
    }
    opd_rollout_free(&s);
    free(idx); free(prompts); free(pad); free(text); free(seq); free(L); free(pp); free(ppad);
    return rc;
}
