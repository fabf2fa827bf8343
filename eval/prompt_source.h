/* prompt_source.h — a JSONL prompt file + a tokenizer.json + a chat template
 * as model inputs: the same left-padded prompt batches the built-in task's
 * CSV path makes (harness_prompt_batch), and the verifier's score.
 *
 * Ids. Every prompt is templated and encoded once, at open. The EOS id that
 * ends a rollout is, in this order: --eos TOKEN when given; <|im_end|> for
 * the chatml template; <|eot_id|> for llama3; else the first of
 * <|endoftext|>, <|end_of_text|>, </s> the tokenizer has. Pad positions are
 * masked everywhere (left pad counts, the rollout mask), so PAD = EOS.
 *
 * Vocabulary rule (prompt_source_check): teacher and student have the same
 * vocab_size, and every id the tokenizer can produce (its vocab_size: 1 +
 * the largest id, added tokens included) is < that vocab_size. Hugging Face
 * pads a model's vocab_size past the tokenizer's (Qwen2: 151936 vs 151665),
 * so equality is not asked. */
#ifndef OPD_PROMPT_SOURCE_H
#define OPD_PROMPT_SOURCE_H

#include "opd.h"
#include "opd_bpe.h"

typedef struct {
    const char *prompts_path, *tok_path;
    opd_bpe bpe;
    opd_prompt_set set;
    int **ids;        /* (n) templated, encoded prompts */
    int *len;         /* (n) */
    int max_len;      /* the longest prompt, in tokens */
    int eos_id, pad_id;
    int n_answered;   /* prompts with an answer (the others are not scored) */
} prompt_source;

/* tmpl: none | chatml | llama3 | a template file (NULL: none); eos: a token's
 * text, or NULL for the rule above. */
int prompt_source_open(prompt_source *s, const char *prompts, const char *tokenizer,
                       const char *tmpl, const char *eos);
void prompt_source_free(prompt_source *s);
/* The vocabulary rule for model m (from path), and that every prompt plus
 * max_new_tokens fits its max_seq_len. Errors name the model and the tokenizer
 * or prompt file (path:line). */
int prompt_source_check(const prompt_source *s, const opd_model *m, const char *path, int max_new_tokens);
/* Prompts idx[0..B) left-padded (pad_id) to the longest: prompts (B, P), pad (B). */
void prompt_source_batch(const prompt_source *s, const int *idx, int B, int **prompts,
                         int **pad, int *P);

typedef struct {
    int n;            /* prompts decoded */
    int scored;       /* of those, with an answer */
    int correct;      /* answered ones whose last number matches */
    double acc;       /* correct / scored (0 when none scored) */
    double mean_len, truncated_frac, seconds;
} prompt_eval_result;

/* Decode the first n prompts greedily to max_new_tokens and verify the last
 * number of each against its answer. */
int prompt_source_evaluate(const prompt_source *s, const opd_model *m, int n, int max_new_tokens, int batch,
                           uint64_t seed, prompt_eval_result *r);

#endif
