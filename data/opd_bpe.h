/* opd_bpe.h — Hugging Face tokenizer.json (byte-level BPE, as in Qwen2 and
 * Llama 3) and JSONL prompt files for real-text distillation (data/).
 *
 * Byte-level BPE
 * --------------
 * opd_bpe_encode gives the ids of tokenizers' `Tokenizer.encode(text,
 * add_special_tokens=False)` (no post-processor: a caller that wants a BOS
 * prepends opd_bpe_token_id(t, "<|begin_of_text|>") itself). The pipeline:
 *
 *   1. added tokens are cut out of the raw text, longest match first at the
 *      leftmost position (those with normalized = false);
 *   2. every remaining piece is normalized (NFC or nothing), then added
 *      tokens with normalized = true are cut out of it;
 *   3. the pre-tokenizer splits each piece into words (the Split regex, run by
 *      PCRE2 with Unicode properties; the GPT-2 regex for ByteLevel with
 *      use_regex = true);
 *   4. each word's bytes are merged by BPE, lowest merge rank first.
 *
 * What a tokenizer.json may contain (anything else is refused with an error
 * naming the file and the JSON key):
 *   normalizer     null | NFC | Sequence of NFC
 *   pre_tokenizer  ByteLevel{add_prefix_space: false} |
 *                  Sequence[Split{pattern: Regex|String, behavior: Isolated,
 *                  invert: false}..., ByteLevel{add_prefix_space: false}]
 *   model          BPE: vocab, merges ("a b" or ["a", "b"]), ignore_merges,
 *                  no dropout, byte_fallback false, no subword prefix/suffix;
 *                  every one of the 256 byte symbols must be in the vocab
 *   added_tokens   special or not, single_word / lstrip / rstrip / normalized
 *   decoder        null | ByteLevel
 *   post_processor anything among null / ByteLevel / TemplateProcessing /
 *                  Sequence (not applied, see above)
 *
 * Errors return -1 with opd_last_error() set ("path: problem"); encode and
 * decode never abort on their input (invalid UTF-8 is an error). A loaded
 * tokenizer is read-only: threads may encode and decode with it at once.
 * Loading a Qwen2-sized file (152k tokens, 152k merges) takes about 0.6 s. */
#ifndef OPD_BPE_H
#define OPD_BPE_H

#include "opd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits that keep a broken or hostile file from exhausting memory. */
#define OPD_BPE_MAX_FILE (256u << 20)   /* tokenizer.json bytes */
#define OPD_BPE_MAX_VOCAB (1 << 21)     /* ids */
#define OPD_BPE_MAX_TOKEN 4096          /* bytes of one token */
#define OPD_BPE_MAX_SPLITS 8            /* Split steps of the pre-tokenizer */

typedef struct opd_bpe_map opd_bpe_map;  /* byte-string -> int hash map (bpe.c) */

/* One added token (tokenizer.json "added_tokens"). */
typedef struct {
    int id;
    char *content;      /* as matched: NFC-normalized when normalized = 1 */
    int len;
    int special, single_word, lstrip, rstrip, normalized;
} opd_bpe_added;

typedef struct {
    int vocab_size;           /* 1 + the largest id of vocab and added tokens */
    char **token;             /* (vocab_size) decoded bytes of each id, NULL for a hole */
    int *token_len;           /* (vocab_size) */
    unsigned char *is_special;/* (vocab_size) 1 for special added tokens */
    int byte_id[256];         /* id of the single-byte symbol */
    opd_bpe_map *vocab;       /* raw bytes -> id (byte-level tokens of the model) */
    opd_bpe_map *merges;      /* (left id, right id) -> rank */
    int *merge_result;        /* (n_merges) id of the merged token, by rank */
    int n_merges;
    int ignore_merges;        /* Llama 3: a word that is a token is not merged */
    int nfc;                  /* normalizer NFC */
    int n_added;
    opd_bpe_added *added;     /* sorted: normalized, first byte, longest first */
    int added_lo[2][257];     /* added[added_lo[c][b] .. added_lo[c][b+1]) start with byte b */
    int n_splits;                    /* Split regexes, applied in order */
    void *split_re[OPD_BPE_MAX_SPLITS]; /* pcre2_code*, read-only once compiled */
} opd_bpe;

/* Reads a tokenizer.json. On error *t is left empty (opd_bpe_free is safe). */
int opd_bpe_load(opd_bpe *t, const char *path);
void opd_bpe_free(opd_bpe *t);

/* Encode len bytes of UTF-8 text into ids (cap entries). Flags: 0, or
 * OPD_BPE_NO_ADDED to treat added-token text as ordinary text. Returns the
 * number of ids, or -1 (invalid UTF-8, more than cap ids). */
#define OPD_BPE_NO_ADDED 1
int opd_bpe_encode(const opd_bpe *t, const char *text, size_t len, int *ids,
                   int cap, int flags);
/* Decode ids into bytes (cap bytes, NUL-terminated); special tokens are
 * written as their content unless flags has OPD_BPE_SKIP_SPECIAL. A token
 * sequence cut anywhere may end inside a UTF-8 character: the bytes are
 * written as they are (no replacement character). Returns the byte count, or
 * -1 on an id outside the vocabulary or when the text does not fit. */
#define OPD_BPE_SKIP_SPECIAL 1
int opd_bpe_decode(const opd_bpe *t, const int *ids, int n, char *out,
                   size_t cap, int flags);
/* Id of a token given by its text (an added token's content, or a model
 * token's decoded bytes); -1 with an error when there is none. */
int opd_bpe_token_id(const opd_bpe *t, const char *text);

/* The GPT-2 / Qwen2 byte <-> unicode map: byte b is written as the code point
 * opd_bpe_byte_char(b) in tokenizer.json; opd_bpe_char_byte is the inverse
 * (-1 for a code point that stands for no byte). */
int opd_bpe_byte_char(int b);
int opd_bpe_char_byte(int cp);

/* ------------------------------------------------------------ prompt files */
/* JSONL: one object per line, {"prompt": "...", "answer": "..."}; answer is
 * optional (a string or a number); blank lines are skipped; other keys are
 * ignored. Errors say "path:line: ...": not JSON, not an object, prompt
 * missing or not a string, answer of another type, a line or prompt over the
 * limits, no prompt at all in the file. */
#define OPD_PROMPT_MAX_LINE (1 << 20)   /* bytes of one line */
#define OPD_PROMPT_MAX_COUNT (1 << 22)  /* prompts of one file */

typedef struct {
    char *prompt;
    char *answer;   /* NULL when the line has none */
    int line;       /* line of the file */
} opd_prompt;

typedef struct {
    int n;
    opd_prompt *item;
} opd_prompt_set;

int opd_prompts_read(const char *path, opd_prompt_set *s);
void opd_prompts_free(opd_prompt_set *s);

/* Chat template: the text put around a prompt before it is tokenized.
 *   none    {prompt}
 *   chatml  <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n  (Qwen2)
 *   llama3  <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}
 *           <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
 *   a path  a file holding the template with exactly one {prompt}
 * (the llama3 line is one string, split here for width). The prompt goes in
 * as it is: Llama 3's own Jinja template also trims it, and Qwen2's puts
 * "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" first; a
 * template file can do the latter. */
typedef struct {
    char *prefix, *suffix;
} opd_chat_template;

int opd_chat_template_load(opd_chat_template *t, const char *spec);
/* prefix + prompt + suffix in a new string (free()). */
char *opd_chat_template_apply(const opd_chat_template *t, const char *prompt);
void opd_chat_template_free(opd_chat_template *t);

/* The verifier: exact match of the LAST number in the generated text against
 * the answer. A number is an optional '-' right before a digit, digits with
 * optional ',' between digit groups ("1,234"), and an optional '.' followed
 * by digits ("3.50"); it is normalised before comparing: the commas removed,
 * leading zeros of the integer part and trailing zeros of the fraction
 * dropped ("007" is "7", "2.50" is "2.5", "2.0" is "2"), "-0" is "0". The
 * answer is normalised the same way (its last number; an answer without a
 * number matches nothing). A '.' ending a sentence ("is 42.") is not a
 * fraction; "v1.5.3" ends with the number 3. Only the first 250 characters
 * of a very long number are compared. */
/* Writes the normalised last number of text into out (cap bytes); returns its
 * length, 0 when the text has no number, -1 when it does not fit. */
int opd_last_number(const char *text, char *out, size_t cap);
/* 1 when the last numbers agree, 0 when not (or either has none). */
int opd_verify_answer(const char *generated, const char *answer);

#ifdef __cplusplus
}
#endif
#endif /* OPD_BPE_H */
