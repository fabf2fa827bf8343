/* prompt_source.c — JSONL prompts as model inputs (see prompt_source.h). */
#include "prompt_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The EOS rule of prompt_source.h. */
static int pick_eos(const opd_bpe *t, const char *tok_path, const char *tmpl, const char *eos) {
    if (eos) {
        int id = opd_bpe_token_id(t, eos);
        if (id < 0) opd_set_error("%s: --eos '%s' is not a token of this tokenizer", tok_path, eos);
        return id;
    }
    const char *want = NULL;
    if (tmpl && !strcmp(tmpl, "chatml")) want = "<|im_end|>";
    if (tmpl && !strcmp(tmpl, "llama3")) want = "<|eot_id|>";
    if (want) {
        int id = opd_bpe_token_id(t, want);
        if (id < 0) opd_set_error("%s: the %s template ends a turn with %s, which this tokenizer lacks", tok_path, tmpl, want);
        return id;
    }
    static const char *fallback[] = {"<|endoftext|>", "<|end_of_text|>", "</s>"};
    for (int i = 0; i < 3; i++) {
        int id = opd_bpe_token_id(t, fallback[i]);
        if (id >= 0) return id;
    }
    opd_set_error("%s: no end-of-sequence token (<|endoftext|>, <|end_of_text|>, </s>); name one with --eos", tok_path);
    return -1;
}

int prompt_source_open(prompt_source *s, const char *prompts, const char *tokenizer,
                       const char *tmpl, const char *eos) {
    memset(s, 0, sizeof *s);
    s->prompts_path = prompts;
    s->tok_path = tokenizer;
    if (opd_bpe_load(&s->bpe, tokenizer) != 0) return -1;
    if (opd_prompts_read(prompts, &s->set) != 0) { prompt_source_free(s); return -1; }
    opd_chat_template ct;
    if (opd_chat_template_load(&ct, tmpl ? tmpl : "none") != 0) { prompt_source_free(s); return -1; }
    int id = pick_eos(&s->bpe, tokenizer, tmpl, eos);
    if (id < 0) { opd_chat_template_free(&ct); prompt_source_free(s); return -1; }
    s->eos_id = s->pad_id = id;
    int n = s->set.n;
    s->ids = opd_calloc((size_t)n, sizeof(int *));
    s->len = opd_calloc((size_t)n, sizeof(int));
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const opd_prompt *p = &s->set.item[i];
        char *text = opd_chat_template_apply(&ct, p->prompt);
        size_t tl = strlen(text);
        /* a byte-level BPE never makes more ids than bytes */
        int cap = (int)tl + 1;
        s->ids[i] = opd_malloc(sizeof(int) * (size_t)cap);
        int got = opd_bpe_encode(&s->bpe, text, tl, s->ids[i], cap, 0);
        free(text);
        if (got < 0) rc = opd_set_error("%s:%d: cannot tokenize the prompt: %s", prompts, p->line, opd_last_error());
        else if (got == 0) rc = opd_set_error("%s:%d: the prompt is empty after the template", prompts, p->line);
        else {
            s->len[i] = got;
            if (got > s->max_len) s->max_len = got;
            s->n_answered += p->answer != NULL;
        }
    }
    opd_chat_template_free(&ct);
    if (rc != 0) prompt_source_free(s);
    return rc;
}

void prompt_source_free(prompt_source *s) {
    if (s->ids)
        for (int i = 0; i < s->set.n; i++) free(s->ids[i]);
    free(s->ids);
    free(s->len);
    opd_prompts_free(&s->set);
    opd_bpe_free(&s->bpe);
    memset(s, 0, sizeof *s);
}

int prompt_source_check(const prompt_source *s, const opd_model *m, const char *path, int max_new_tokens) {
    int V = m->cfg.vocab_size;
    if (s->bpe.vocab_size > V)
        return opd_set_error("%s: vocab_size %d is smaller than the tokenizer's %d ids (%s): not the model of this tokenizer",
                             path, V, s->bpe.vocab_size, s->tok_path);
    for (int i = 0; i < s->set.n; i++)
        if (s->len[i] + max_new_tokens > m->cfg.max_seq_len)
            return opd_set_error("%s:%d: the prompt's %d tokens + %d new tokens exceed the max_seq_len %d of %s",
                                 s->prompts_path, s->set.item[i].line, s->len[i], max_new_tokens, m->cfg.max_seq_len, path);
    return 0;
}

void prompt_source_batch(const prompt_source *s, const int *idx, int B, int **prompts,
                         int **pad, int *P) {
    int maxlen = 1;
    for (int b = 0; b < B; b++)
        if (s->len[idx[b]] > maxlen) maxlen = s->len[idx[b]];
    *P = maxlen;
    *prompts = opd_malloc(sizeof(int) * (size_t)B * maxlen);
    *pad = opd_malloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) {
        int l = s->len[idx[b]], p = maxlen - l;
        int *row = *prompts + (size_t)b * maxlen;
        for (int t = 0; t < p; t++) row[t] = s->pad_id;
        memcpy(row + p, s->ids[idx[b]], sizeof(int) * l);
        (*pad)[b] = p;
    }
}

int prompt_source_evaluate(const prompt_source *s, const opd_model *m, int n, int max_new_tokens, int batch,
                           uint64_t seed, prompt_eval_result *r) {
    memset(r, 0, sizeof *r);
    if (n > s->set.n) n = s->set.n;
    r->n = n;
    double t0 = opd_time();
    opd_rollout_config rc;
    memset(&rc, 0, sizeof rc);
    rc.eos_id = s->eos_id;
    rc.pad_id = s->pad_id;
    rc.sampler.temperature = 0.0f;   /* greedy */
    rc.sampler.top_p = 1.0f;
    rc.seed = seed;
    rc.step = 0xe7a1u;   /* as harness_evaluate: never a training step's key */
    int maxtok = 1;
    for (int i = 0; i < s->bpe.vocab_size; i++)
        if (s->bpe.token_len[i] > maxtok) maxtok = s->bpe.token_len[i];
    size_t cap = (size_t)max_new_tokens * maxtok + 1;
    char *text = opd_malloc(cap);
    int *idx = opd_malloc(sizeof(int) * batch);
    uint32_t *ids = opd_malloc(sizeof(uint32_t) * batch);
    double len_sum = 0, trunc = 0;
    int ret = 0;
    for (int start = 0; start < n && ret == 0; start += batch) {
        int B = n - start < batch ? n - start : batch;
        for (int b = 0; b < B; b++) { idx[b] = start + b; ids[b] = (uint32_t)(start + b); }
        int *prompts, *pad, P;
        prompt_source_batch(s, idx, B, &prompts, &pad, &P);
        opd_rollout roll;
        memset(&roll, 0, sizeof roll);
        ret = opd_rollout_sample(m, prompts, pad, ids, B, P, max_new_tokens, &rc, &roll);
        free(prompts);
        free(pad);
        if (ret != 0) break;
        for (int b = 0; b < B; b++) {
            const opd_prompt *p = &s->set.item[idx[b]];
            len_sum += roll.length[b];
            trunc += roll.truncated[b];
            if (!p->answer) continue;
            const int *gen = roll.tokens + (size_t)b * (P + max_new_tokens) + P;
            /* ids past the tokenizer's (HF's padded rows) decode to nothing: a miss */
            if (opd_bpe_decode(&s->bpe, gen, roll.length[b], text, cap, OPD_BPE_SKIP_SPECIAL) < 0) text[0] = '\0';
            r->scored++;
            r->correct += opd_verify_answer(text, p->answer) == 1;
        }
        opd_rollout_free(&roll);
    }
    free(text); free(idx); free(ids);
    if (ret != 0) return -1;
    r->acc = r->scored ? (double)r->correct / r->scored : 0.0;
    r->mean_len = n ? len_sum / n : 0;
    r->truncated_frac = n ? trunc / n : 0;
    r->seconds = opd_time() - t0;
    return 0;
}
