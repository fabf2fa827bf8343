/* opd_data.h — the reasoning task, the tokenizer and CSV I/O (data/).
 *
 * The task: a chain of modular (mod 10) arithmetic with labelled steps
 * ---------------------------------------------------------------------
 * A problem of n steps (the difficulty knob, 1 <= n <= OPD_TASK_MAX_STEPS) is
 *
 *   prompt   = S L1 o1 d1 L2 o2 d2 ... Ln on dn '>'
 *   solution = L1 v0 o1 d1 '=' v1  L2 v1 o2 d2 '=' v2 ... Ln v(n-1) on dn '=' vn  '>' vn
 *   answer   = vn
 *
 * S = v0 is the start digit, Li the label of step i ('a'..'z', then 'A'..'T'),
 * oi one of '+', '-', '*' and di a digit; vi = (v(i-1) oi di) mod 10 taken in
 * [0, 9]. Multipliers are drawn from {3, 7, 9} (units mod 10) and addends from
 * 1..9, so every step is a bijection of the value: the answer depends on every
 * step and is uniform over the digits. Example with n = 3:
 *
 *   prompt   "4a+7b*3c-5>"
 *   solution "a4+7=1b1*3=3c3-5=8>8"          answer 8
 *
 * Why this shape: every solution token is a local computation a tiny
 * transformer can learn. The label is the successor of the previous label (or
 * copied from the prompt after the previous step's triple), the operator and
 * operand are copied from the prompt right after the matching label (a
 * unique-key copy, the induction-head pattern), the left value is the previous
 * result, and the result is a lookup in a 10x10 table of each operator. A step
 * is 6 characters, so the solution has 6n + 2 characters and the prompt 3n + 2:
 * the default n in [24, 40] gives solutions of 146..242 tokens.
 *
 * Scoring: the final answer is the digit after the last '>' and the solution
 * must END there (exact match); a truncated solution has no answer.
 *
 * Model sequences: prompt tokens are [<bos>] + chars(prompt); the target is
 * chars(solution) + [<eos>]. Token ids: <pad> 0, <bos> 1, <eos> 2, then one id
 * per character (data/vocab.txt, identical to the built-in vocabulary).
 *
 * Splits: problem i of a split is a pure function of (seed, split, i). The
 * prompt space is partitioned by a hash of the prompt string (10% test, 10%
 * validation, 80% train), and a split only accepts prompts of its own part, so
 * train / validation / test are disjoint for every size and every seed.
 *
 * A second family: "plan", where the decisive token comes first
 * ----------------------------------------------------------------
 * The chain above is the CONTROL regime of the paper's claim: its signal is
 * spread along the horizon (every step can go wrong, errors compound late).
 * The plan family (opd_task_config.family = OPD_TASK_PLAN) puts what matters
 * at the START of the rollout. Its start value is not written in the prompt:
 * it is found by following a hidden map h times from a start key.
 *
 *   prompt   = K0 m0 K1 m1 ... K9 m9  L1 o1 d1 ... Ln on dn  '='^h  s  '>'
 *   solution = the chain solution of start v0 = pi^h(s), byte for byte
 *   answer   = vn
 *
 * The first 20 characters are the map pi of the digits as 10 (key, value)
 * pairs, the key of digit k written as the letter 'A' + k (so K_i = 'A' +
 * k_i, m_i = pi(k_i)), the pairs in a random order; pi is a single 10-cycle.
 * Then come the n <= 26 chain steps as in the chain prompt (labels 'a'..'z'
 * only, so an uppercase letter in a plan prompt is always a map key), h '='
 * (the number of hops, 1..OPD_TASK_PLAN_MAX_HOPS, OPD_TASK_PLAN_HOPS_DEFAULT
 * by default) and the start digit s. Example, pi(k) = k + 7 mod 10, h = 2,
 * s = 3 (pi(3) = 0, pi(0) = 7, so v0 = 7):
 *
 *   prompt   "A7B8C9D0E1F2G3H4I5J6a+7b*3c-5==3>"
 *   solution "a7+7=4b4*3=2c2-5=7>7"          answer 7
 *
 * What the early segment decides: solution character 1
 * (OPD_TASK_PLAN_DECISION_POS), v0, decides the answer. Every chain step is a
 * bijection of the value, so each of the 10 possible v0 gives a different
 * answer: a wrong v0 is a wrong answer however well the rest is executed,
 * and after v0 every token is the chain's routine (a label successor, a copy
 * from the prompt by label, a 10x10 table lookup).
 *
 * Why the decision is hard for the student and not for the teacher: v0 is
 * written in one token, with no intermediate hops in the solution, so the
 * model must chase h pointers inside one forward pass. With the pairs in a
 * random order a hop is a content lookup (attend to the value whose key
 * letter stands for the current digit: the chain's copy by label, with a
 * query that is computed, not read), which needs the key of each value
 * gathered first (a previous-token head) and then one attention layer per
 * hop, each hop's query being the last hop's result: about h + 1
 * layers (s sits at a fixed distance before the solution, so reading it
 * is a positional head beside the previous-token one, and it comes last,
 * so nothing about its chase can be prepared while the map is read). The
 * default h = 2 asks for 3: beyond a 2-layer student (d = 64), within a
 * 4-layer teacher. The routine part is the chain step, which a 2-layer
 * model learns by SFT (a copy by label is exactly the 2-layer induction
 * pattern). pi is one 10-cycle so that no shortcut with fewer hops is ever
 * right: pi^j(s) != pi^h(s) for 0 <= j < h. h is the knob of the
 * decision's difficulty: h = 1 is within a 2-layer model's reach. (A
 * student that cannot represent the decision at all cannot be taught it by
 * any method either; where OPD should show a gain, pick h or the student's
 * depth so that it can, and SFT alone falls short.)
 *
 * Why a truncated rollout carries the teacher's useful signal here: the only
 * position where a student that has learned the routine disagrees with the
 * teacher is the decision at rollout position 1; after it, the teacher
 * scores a wrong v0's continuation as the routine continuation of that v0,
 * which the student already does. TOPD's horizon ceil(rho T) >= 2 holds for
 * rho = 0.1 whenever T >= 11 (every plan config with max_steps >= 2; T = 63
 * for the default [4, 10] steps), so a rho = 0.1 rollout always contains the
 * decision, and the tokens beyond it add cost but little signal. Expected:
 * TOPD at rho = 0.1 about matches full OPD here, while on the chain it does
 * not. That is the design's expectation, not a measurement: issue 18 asks
 * for the runs that show it.
 *
 * Two knobs (opd data --chase, --sorted; off by default, so the plan
 * problems above are unchanged). With chase (opd_task_config.chase) the
 * start is written as its key letter and the solution first writes the
 * chase out, a key and its value per hop, then the chain solution from the
 * last value: for the example above with start key D,
 *
 *   prompt   "A7B8C9D0E1F2G3H4I5J6a+7b*3c-5==D>"
 *   solution "D0A7a7+7=4b4*3=2c2-5=7>7"      answer 7
 *
 * so each hop is the routine's copy (the token after a key written just
 * before), and for h = 1 the decision is still solution character 1. With
 * sorted (opd_task_config.sorted) the pairs are written in key order A..J,
 * so with a fixed n every value sits at a fixed position. The solution is
 * 2h characters longer with chase (opd_task_solution_len(n) + 2h).
 *
 * Measured (one seed each, 1 thread on the shared 2-core machine, decision
 * and routine teacher-forced on 200 test problems by eval/experiment/tf_acc,
 * 50000 training problems so no decision is seen twice, batch 32, lr 3e-3):
 *   - h = 1, steps [2, 4], no knob: the teacher's greedy pass@1 stayed at
 *     chance (0.085-0.115) through 1500 steps (about 5 min) while its loss
 *     fell to 0.16 (the routine learned): the 3-minute budget is too short.
 *   - h = 1, steps [2, 4], chase: teacher 800 steps (3 min): decision 0.105,
 *     routine 0.984 per token. The content lookup in a shuffled map is not
 *     learned in time even when its key is the current token.
 *   - h = 1, steps 3..3, chase + sorted: the teacher (800 steps, 129 s)
 *     learns it: decision 1.000, routine 0.989 per token, greedy pass@1
 *     0.830 (valid) / 0.800 (test). But so does the 2-layer d = 64 student,
 *     and BEFORE its routine: after 250 SFT steps decision 0.345, routine
 *     0.867; 300 steps 1.000 / 0.922 (pass@1 0.25); 400 steps 1.000 /
 *     0.963. No warm start is worse at the decision and good at the routine:
 *     here the decision is the easy part, and the gap to the teacher is in
 *     the routine tail, as on the chain. See the README for the distillation
 *     runs from the 250-step student.
 * So the early-decision regime is not yet shown: a decision the teacher
 * learns in 3 minutes was, in these tries, one a 2-layer student learns as
 * fast; what separates them (depth: h >= 2 with chase + sorted, or a longer
 * teacher run for the shuffled map) is the next thing to measure.
 *
 * A third family: "shift", a one-token habit at the start
 * ----------------------------------------------------------
 * The plan family's decision turned out hard to teach (above). The shift
 * family makes the early signal as small as it can be: its prompt is a chain
 * prompt with '=' before the final '>', and its rule is one change at the
 * start, v0 = s + 1 (mod 10) in place of v0 = s:
 *
 *   prompt   "4a+7b*3c-5=>"
 *   solution "a5+7=2b2*3=6c6-5=1>1"          answer 1
 *
 * (the chain solution of "5a+7b*3c-5>", byte for byte). A student trained
 * on the chain has exactly the wrong habit at solution character 1 (it
 * copies s) and a routine that is already right after it; a teacher
 * trained on shift problems knows the fix, a 10-entry table change any
 * model here can represent. Every step is a bijection, so a wrong v0 is a
 * wrong answer. TOPD's horizon ceil(rho T) >= 2 for rho = 0.1 and T >= 11
 * contains it. A shift prompt is told apart by its last two characters
 * ("=>": a chain prompt ends with a digit and '>'); its draws are keyed
 * apart from the chain's (stream + 2^25), so the chain's problems are
 * unchanged. At most OPD_TASK_SHIFT_MAX_STEPS steps.
 *
 * Everything else is shared with the chain: the vocabulary (data/vocab.txt,
 * no new token), the solution format and so opd_task_answer, the split
 * hash, the CSV format (steps = n), opd_task_solve / _verify / _first_error,
 * which tell the families apart by the prompt (a plan prompt starts with a
 * key letter A..J and a digit, a chain prompt with a digit). The generator draws a
 * plan problem with keys of its own (a = split + 4 attempt + 2^24), so the
 * chain family's problems are byte-identical to what they were before the
 * plan family existed.
 */
#ifndef OPD_DATA_H
#define OPD_DATA_H

#include "opd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- tokenizer */
#define OPD_TOK_MAX_VOCAB 64
#define OPD_PAD_ID 0
#define OPD_BOS_ID 1
#define OPD_EOS_ID 2

/* Character-level: every ordinary token is one printable ASCII character;
 * the special tokens <pad>, <bos>, <eos> have the fixed ids 0, 1, 2. */
typedef struct {
    int vocab_size;                      /* V, <= OPD_TOK_MAX_VOCAB */
    char token[OPD_TOK_MAX_VOCAB][8];    /* text of each id: "<pad>", "a", ... */
    int char_to_id[256];                 /* -1 where the character has no id */
    int pad_id, bos_id, eos_id;
} opd_tokenizer;

/* The built-in vocabulary (the same as data/vocab.txt). */
void opd_tokenizer_default(opd_tokenizer *tok);
/* Vocabulary file: one token per line, line i (from 0) is id i; a token is a
 * single printable ASCII character or one of <pad>, <bos>, <eos>, which must
 * be lines 0, 1, 2. Errors name the file and line: missing file, empty line,
 * duplicate token, a multi-character token, a non-printable character, too
 * many tokens. A trailing "\r" (CRLF file) is ignored. */
int opd_tokenizer_load(opd_tokenizer *tok, const char *path);
/* Writes the vocabulary file (atomically). */
int opd_tokenizer_save(const opd_tokenizer *tok, const char *path);
/* 1 if both tokenizers give every id the same text. */
int opd_tokenizer_equal(const opd_tokenizer *a, const opd_tokenizer *b);
/* Encode text into ids (cap entries available), with <bos> first and/or <eos>
 * last when asked. Returns the number of ids, or -1 on an unknown character
 * (the message gives the character and its position) or on overflow. */
int opd_tok_encode(const opd_tokenizer *tok, const char *text, int add_bos,
                   int add_eos, int *ids, int cap);
/* Decode ids into text (cap bytes, NUL-terminated). <pad> and <bos> are
 * skipped and <eos> ends the text (what follows is not decoded), so the
 * output of a rollout decodes to the solution text. Returns the text length,
 * or -1 on an id outside the vocabulary or when the text does not fit. */
int opd_tok_decode(const opd_tokenizer *tok, const int *ids, int n, char *out,
                   size_t cap);

/* --------------------------------------------------------------------- tasks */
#define OPD_TASK_MODULUS 10
#define OPD_TASK_MAX_STEPS 46                        /* number of labels */
#define OPD_TASK_PROMPT_MAX (3 * OPD_TASK_MAX_STEPS + 3)    /* chars + NUL */
#define OPD_TASK_SOLUTION_MAX (6 * OPD_TASK_MAX_STEPS + 3)  /* chars + NUL */

typedef enum { OPD_SPLIT_TRAIN = 0, OPD_SPLIT_VALID = 1, OPD_SPLIT_TEST = 2 } opd_split;

/* The task families (see the header comment); the chain is the default. */
typedef enum { OPD_TASK_CHAIN = 0, OPD_TASK_PLAN = 1, OPD_TASK_SHIFT = 2 } opd_task_family;
#define OPD_TASK_SHIFT_MAX_STEPS (OPD_TASK_MAX_STEPS - 1)   /* its prompt has one more character */
#define OPD_TASK_PLAN_MAX_STEPS 26     /* labels a..z: A..J are the map's keys */
#define OPD_TASK_PLAN_MAX_HOPS 3
#define OPD_TASK_PLAN_HOPS_DEFAULT 2
#define OPD_TASK_PLAN_DECISION_POS 1   /* solution character of v0 */

typedef struct {
    uint64_t seed;
    int min_steps, max_steps;  /* difficulty knob: steps uniform in [min, max] */
    /* appended, so {seed, min, max} initialisers still mean the chain */
    opd_task_family family;    /* OPD_TASK_CHAIN (0) unless set */
    int hops;                  /* plan: h in [1, OPD_TASK_PLAN_MAX_HOPS]; chain: unused */
    int chase;                 /* plan: 1 = the chase written out (see above); chain: unused */
    int sorted;                /* plan: 1 = the map's pairs written in key order A..J */
} opd_task_config;

/* One problem, plain fixed-size strings so an array of them is one block. */
typedef struct {
    int id;                               /* index within its split */
    int steps;                            /* n */
    char prompt[OPD_TASK_PROMPT_MAX];
    char solution[OPD_TASK_SOLUTION_MAX]; /* the reference solution */
    int answer;                           /* 0..9 */
} opd_task;

void opd_task_config_default(opd_task_config *c);  /* chain, seed 1234, steps [24, 40] */
/* The plan family's defaults: seed 1234, steps [4, 10], h = 2 (T = 63; a
 * prompt of at most 55 tokens: both fit the demo preset's max-seq 128). */
void opd_task_config_plan(opd_task_config *c);
int opd_task_config_validate(const opd_task_config *c);
const char *opd_task_family_name(opd_task_family f);   /* "chain", "plan" */
int opd_task_family_parse(const char *name, opd_task_family *f);
/* The family a prompt is written in: OPD_TASK_PLAN when it starts with a
 * map key A..J and a digit, else OPD_TASK_CHAIN (a malformed prompt is the
 * chain's to refuse). */
opd_task_family opd_task_family_of(const char *prompt);
const char *opd_split_name(opd_split s);            /* "train", "valid", "test" */
int opd_split_parse(const char *name, opd_split *s);
/* Split whose part of the prompt space holds this prompt. */
opd_split opd_task_split_of(const char *prompt);
/* Characters of a prompt / reference solution with n steps (no <bos>/<eos>).
 * Model side: a prompt is opd_task_prompt_len(n) + 1 tokens (<bos>), and the
 * full horizon T that fits every solution is opd_task_solution_len(max) + 1
 * (<eos>): 243 for the default max of 40 steps. */
int opd_task_prompt_len(int steps);
int opd_task_solution_len(int steps);
/* Characters of a plan prompt: 20 (the map) + 3 n + h + 2. Its solution is
 * opd_task_solution_len(n), as the chain's. */
int opd_task_plan_prompt_len(int steps, int hops);

/* Problem `index` of `split`: a pure function of (c->seed, c->family,
 * c->hops, split, index). Steps outside [1, OPD_TASK_MAX_STEPS] (plan:
 * [1, OPD_TASK_PLAN_MAX_STEPS]) and hops outside [1, OPD_TASK_PLAN_MAX_HOPS]
 * are clamped, an unknown family is the chain (validate first). */
void opd_task_generate(const opd_task_config *c, opd_split split, int index,
                       opd_task *out);
/* n problems 0..n-1 of a split into a new array (free with opd_dataset_free). */
opd_task *opd_dataset_generate(const opd_task_config *c, opd_split split, int n);
void opd_dataset_free(opd_task *tasks);

/* Parse a prompt and write its reference solution (cap bytes); returns the
 * answer 0..9, or -1 if the prompt is malformed (message says where). *steps
 * (may be NULL) receives n. */
int opd_task_solve(const char *prompt, char *solution, size_t cap, int *steps);
/* The final answer of a (generated) solution: the digit after the last '>'
 * when the solution ends right there; -1 when there is none (truncated,
 * trailing text, no digit). Sets no error: a missing answer is an outcome. */
int opd_task_answer(const char *solution);
/* Exact-match scorer: 1 if the solution's final answer is the prompt's
 * answer, 0 if not (wrong or missing), -1 if the prompt is malformed. */
int opd_task_verify(const char *prompt, const char *solution);
/* Character offset of the first difference between `solution` and the
 * reference solution (a diagnostic of where a model goes wrong); -1 when they
 * are identical, -2 when the prompt is malformed. */
int opd_task_first_error(const char *prompt, const char *solution);

/* ----------------------------------------------------------------- datasets */
/* CSV with the header "id,steps,prompt,solution,answer" (RFC 4180 quoting via
 * libcsv), written atomically. */
int opd_dataset_write_csv(const char *path, const opd_task *tasks, int n);
/* Reads a dataset into a new array (*out, *n; free with opd_dataset_free).
 * Every row is checked, errors say "path:line: ...": missing or wrong header,
 * wrong column count, unparseable integer, CSV quoting error, a field too
 * long, steps not matching the prompt, a malformed prompt, a solution that
 * is not the reference one or whose answer does not verify. */
int opd_dataset_read_csv(const char *path, opd_task **out, int *n);

/* ------------------------------------------------------------ generic CSV */
/* A table read from any CSV file: row 0 is the header. */
typedef struct {
    int nrows;     /* records, header included */
    int ncols;     /* columns of the header; every row has exactly ncols */
    char **cell;   /* (nrows, ncols) NUL-terminated strings */
    int *line;     /* (nrows) line of the file where each record starts */
} opd_csv_table;

/* Strict RFC 4180 parse; errors name file and line (quoting errors, rows
 * whose column count differs from the header, an empty file). */
int opd_csv_read(const char *path, opd_csv_table *t);
void opd_csv_table_free(opd_csv_table *t);

/* A metrics log: rows are kept in memory and every opd_csv_log_flush
 * rewrites the whole file atomically, so the file on disk is always a
 * complete CSV (header + every row up to the last flush) that can be read
 * while training runs, and a crash never leaves half a row. Call flush as
 * often as a live view is wanted (a log of thousands of rows costs
 * milliseconds); close flushes. Cells are written one at a time, then
 * opd_csv_log_end_row checks the column count. */
typedef struct {
    char *path;
    int ncols;
    int nrows;      /* completed rows, header excluded */
    int col;        /* cells written in the current row */
    char *buf;      /* CSV text: header + rows */
    size_t len, cap;
    size_t row_start;  /* offset of the current row in buf */
} opd_csv_log;

int opd_csv_log_open(opd_csv_log *w, const char *path,
                     const char *const *header, int ncols);
/* The same without writing anything yet: the file stays as it is until the
 * first flush (a resumed run re-adds the old rows first, so a kill before
 * that flush cannot leave the log shorter than it was). */
int opd_csv_log_init(opd_csv_log *w, const char *path,
                     const char *const *header, int ncols);
int opd_csv_log_str(opd_csv_log *w, const char *s);  /* quoted when needed */
int opd_csv_log_int(opd_csv_log *w, long v);
int opd_csv_log_num(opd_csv_log *w, double v);       /* "%.9g" */
int opd_csv_log_end_row(opd_csv_log *w);
int opd_csv_log_flush(opd_csv_log *w);
int opd_csv_log_close(opd_csv_log *w);               /* flush + free */
void opd_csv_log_discard(opd_csv_log *w);            /* free, no write */

#ifdef __cplusplus
}
#endif
#endif /* OPD_DATA_H */
