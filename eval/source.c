/* source.c — the built-in task or text prompts behind one type (source.h).
 * Each function is a switch on the kind, calling harness.c or
 * prompt_source.c: those two never call back here. */
#include "source.h"

#include <stdlib.h>
#include <string.h>

int source_open_task(source *s, const char *csv) {
    memset(s, 0, sizeof *s);
    s->kind = SOURCE_TASK;
    s->path = csv;
    opd_tokenizer_default(&s->tok);
    s->eos_id = s->tok.eos_id;
    s->pad_id = s->tok.pad_id;
    return opd_dataset_read_csv(csv, &s->tasks, &s->n);
}

int source_open_text(source *s, const char *jsonl, const char *tokenizer, const char *tmpl,
                     const char *eos) {
    memset(s, 0, sizeof *s);
    s->kind = SOURCE_TEXT;
    s->path = jsonl;
    if (prompt_source_open(&s->text, jsonl, tokenizer, tmpl, eos) != 0) return -1;
    s->n = s->text.set.n;
    s->eos_id = s->text.eos_id;
    s->pad_id = s->text.pad_id;
    return 0;
}

void source_free(source *s) {
    if (s->kind == SOURCE_TASK && s->tasks) opd_dataset_free(s->tasks);
    if (s->kind == SOURCE_TEXT) prompt_source_free(&s->text);
    memset(s, 0, sizeof *s);
}

int source_default_max_new_tokens(const source *s) {
    return s->kind == SOURCE_TASK ? harness_max_new_tokens(s->tasks, s->n) : 256;
}

int source_check_model(const source *s, const opd_model *m, const char *path, int max_new_tokens) {
    if (s->kind == SOURCE_TASK) return harness_check_vocab(m, path, s->tok.vocab_size);
    return prompt_source_check(&s->text, m, path, max_new_tokens);
}

int source_check_pair(const source *s, const opd_model *t, const char *tpath, const opd_model *st,
                      const char *spath, int max_new_tokens) {
    if (s->kind == SOURCE_TASK) {
        if (t->cfg.vocab_size == st->cfg.vocab_size && st->cfg.vocab_size == s->tok.vocab_size) return 0;
        return opd_set_error("vocabularies differ: teacher %s %d, student %s %d, the task's character tokenizer %d%s",
                             tpath, t->cfg.vocab_size, spath, st->cfg.vocab_size, s->tok.vocab_size,
                             HARNESS_TEXT_HINT);
    }
    if (t->cfg.vocab_size != st->cfg.vocab_size)
        return opd_set_error("vocabularies differ: teacher %s has vocab_size %d, student %s has %d",
                             tpath, t->cfg.vocab_size, spath, st->cfg.vocab_size);
    if (prompt_source_check(&s->text, t, tpath, max_new_tokens) != 0) return -1;
    return prompt_source_check(&s->text, st, spath, max_new_tokens);
}

void source_batch(const source *s, const int *idx, int B, int **prompts, int **pad, int *P) {
    if (s->kind == SOURCE_TASK) harness_prompt_batch(&s->tok, s->tasks, idx, B, prompts, pad, P);
    else prompt_source_batch(&s->text, idx, B, prompts, pad, P);
}

int source_evaluate(const source *s, const opd_model *m, int n, int max_new_tokens, int batch,
                    const opd_sampler_config *sc, int k, uint64_t seed, source_eval *r) {
    memset(r, 0, sizeof *r);
    if (n > s->n) n = s->n;
    if (s->kind == SOURCE_TASK) {
        if (harness_evaluate(m, &s->tok, s->tasks, n, max_new_tokens, batch, sc, k, seed, &r->task) != 0)
            return -1;
        r->n = r->scored = n;
        r->acc = r->task.acc;
        r->mean_len = r->task.mean_len;
        r->truncated_frac = r->task.truncated_frac;
        r->seconds = r->task.seconds;
        return 0;
    }
    /* text prompts are scored greedily (cmd_eval refuses --samples for them) */
    prompt_eval_result t;
    if (prompt_source_evaluate(&s->text, m, n, max_new_tokens, batch, seed, &t) != 0) return -1;
    r->n = t.n;
    r->scored = t.scored;
    r->correct = t.correct;
    r->acc = t.acc;
    r->mean_len = t.mean_len;
    r->truncated_frac = t.truncated_frac;
    r->seconds = t.seconds;
    return 0;
}
