/* source.h — the prompts a distill or eval run draws from, behind one type:
 * the built-in task's CSV with its character tokenizer (harness.h), or a
 * JSONL prompt file with a Hugging Face tokenizer (prompt_source.h). The
 * commands have one option parser and one loop; the kind of source is the
 * only difference between a task run and a text run. */
#ifndef OPD_SOURCE_H
#define OPD_SOURCE_H

#include "opd.h"
#include "opd_data.h"
#include "harness.h"
#include "prompt_source.h"

typedef enum { SOURCE_TASK, SOURCE_TEXT } source_kind;

typedef struct {
    source_kind kind;
    const char *path;       /* the CSV or the JSONL file */
    int n;                  /* problems or prompts */
    int eos_id, pad_id;
    opd_tokenizer tok;      /* SOURCE_TASK: the character tokenizer */
    opd_task *tasks;        /* SOURCE_TASK: (n) */
    prompt_source text;     /* SOURCE_TEXT */
} source;

/* The task's CSV, read once. */
int source_open_task(source *s, const char *csv);
/* prompts.jsonl + tokenizer.json; tmpl and eos as prompt_source_open's. */
int source_open_text(source *s, const char *jsonl, const char *tokenizer, const char *tmpl,
                     const char *eos);
void source_free(source *s);   /* also of a source never opened (zeroed) */

/* The full horizon T when --max-new-tokens is not given: the task's longest
 * reference solution + <eos>; 256 for text prompts (a real model's answers
 * have no reference length). */
int source_default_max_new_tokens(const source *s);
/* Model m (from path) reads this source's ids (task: the same vocabulary;
 * text: prompt_source_check's rule, every prompt + max_new_tokens fitting). */
int source_check_model(const source *s, const opd_model *m, const char *path, int max_new_tokens);
/* Teacher and student: one error naming both when their vocabularies differ. */
int source_check_pair(const source *s, const opd_model *t, const char *tpath, const opd_model *st,
                      const char *spath, int max_new_tokens);
/* Prompts idx[0..B) left-padded to the longest: prompts (B, P), pad (B). */
void source_batch(const source *s, const int *idx, int B, int **prompts, int **pad, int *P);

typedef struct {
    int n;           /* problems or prompts decoded */
    int scored;      /* of those, with an answer to score (the task: all) */
    int correct;     /* text prompts: answered ones whose last number matched */
    double acc;      /* pass@1 (greedy) or avg@k */
    double mean_len, truncated_frac, seconds;
    harness_eval_result task;   /* SOURCE_TASK: by problem length too */
} source_eval;
/* Decode the first n items to max_new_tokens and score them: greedy when
 * sc->temperature == 0, else k samples each (the task only). */
int source_evaluate(const source *s, const opd_model *m, int n, int max_new_tokens, int batch,
                    const opd_sampler_config *sc, int k, uint64_t seed, source_eval *r);

#endif
