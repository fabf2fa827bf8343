/* tasks.c — the long-horizon reasoning task: chains of mod-10 arithmetic.
 *
 * Format (also in opd_data.h), for n steps:
 *
 *   prompt   "4a+7b*3c-5>"              start digit, then (label, op, digit) x n, '>'
 *   solution "a4+7=1b1*3=3c3-5=8>8"     (label, left, op, digit, '=', result) x n,
 *                                        then '>' and the answer
 *
 * Labels are 'a'..'z' then 'A'..'T' (46, hence OPD_TASK_MAX_STEPS). Results
 * are taken mod 10 in [0, 9]; multipliers come from {3, 7, 9} and addends
 * from 1..9 so that no step loses information (a *0 or *5 would make the rest
 * of the chain irrelevant and the answers skewed).
 *
 * Every solution token is local: the label follows the previous label, the
 * operator and digit are copied from the prompt after the same label, the
 * left value is the previous result, the result is a table lookup. That is
 * what lets a 4-layer transformer learn it on a CPU in minutes, while the
 * solution length (6n + 2 tokens) is set by n alone: the horizon knob.
 *
 * Reproducibility: every random choice is one opd_uniform draw keyed by
 * (seed, split + 4 * attempt, problem index, draw / 4) and word draw % 4, so
 * problem i never depends on how many others were generated or in what order.
 * Split disjointness: a hash of the prompt string assigns every possible
 * prompt to one split (10% test, 10% valid, 80% train); a split redraws
 * (attempt + 1) until the prompt falls in its own part. */
#include "opd_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- config */
void opd_task_config_default(opd_task_config *c) {
    c->seed = 1234;
    c->min_steps = 24;
    c->max_steps = 40;
}

int opd_task_config_validate(const opd_task_config *c) {
    if (c->min_steps < 1 || c->min_steps > OPD_TASK_MAX_STEPS)
        return opd_set_error("task: min_steps %d out of range [1, %d]", c->min_steps,
                             OPD_TASK_MAX_STEPS);
    if (c->max_steps < c->min_steps || c->max_steps > OPD_TASK_MAX_STEPS)
        return opd_set_error("task: max_steps %d out of range [min_steps=%d, %d]",
                             c->max_steps, c->min_steps, OPD_TASK_MAX_STEPS);
    return 0;
}

static const char *const split_names[3] = {"train", "valid", "test"};

const char *opd_split_name(opd_split s) {
    return (s >= 0 && s <= 2) ? split_names[s] : "?";
}

int opd_split_parse(const char *name, opd_split *s) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, split_names[i]) == 0) { *s = (opd_split)i; return 0; }
    if (strcmp(name, "validation") == 0 || strcmp(name, "val") == 0) { *s = OPD_SPLIT_VALID; return 0; }
    return opd_set_error("unknown split '%s' (train, valid, test)", name);
}

int opd_task_prompt_len(int steps) { return 3 * steps + 2; }
int opd_task_solution_len(int steps) { return 6 * steps + 2; }

/* Label of step i (0-based). */
static char step_label(int i) { return i < 26 ? (char)('a' + i) : (char)('A' + (i - 26)); }

/* ------------------------------------------------------------- splits */
/* FNV-1a, then the splitmix64 finalizer so that the low digits used for the
 * bucket depend on every character. */
static uint64_t prompt_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 0x100000001b3ull; }
    h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27; h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

opd_split opd_task_split_of(const char *prompt) {
    unsigned bucket = (unsigned)(prompt_hash(prompt) % 10u);
    if (bucket == 0) return OPD_SPLIT_TEST;
    if (bucket == 1) return OPD_SPLIT_VALID;
    return OPD_SPLIT_TRAIN;
}

/* ----------------------------------------------------------- arithmetic */
static int apply_op(int v, char op, int d) {
    switch (op) {
    case '+': return (v + d) % OPD_TASK_MODULUS;
    case '-': return (v - d + OPD_TASK_MODULUS) % OPD_TASK_MODULUS;
    default:  return (v * d) % OPD_TASK_MODULUS;  /* '*' */
    }
}

/* Uniform integer in [0, n) from draw number `draw` of this problem. */
static int draw_int(uint64_t seed, uint32_t stream, uint32_t index, int draw, int n) {
    float u = opd_uniform(seed, stream, index, (uint32_t)(draw / 4), draw % 4);
    int k = (int)(u * (float)n);
    return k < n ? k : n - 1;
}

/* Writes the prompt and reference solution of start v0 and n (op, digit)
 * pairs; returns the answer. Buffers are OPD_TASK_*_MAX long. */
static int write_problem(int v0, const char *ops, const int *digits, int n,
                         char *prompt, char *solution) {
    int p = 0, s = 0, v = v0;
    prompt[p++] = (char)('0' + v0);
    for (int i = 0; i < n; i++) {
        int next = apply_op(v, ops[i], digits[i]);
        prompt[p++] = step_label(i);
        prompt[p++] = ops[i];
        prompt[p++] = (char)('0' + digits[i]);
        solution[s++] = step_label(i);
        solution[s++] = (char)('0' + v);
        solution[s++] = ops[i];
        solution[s++] = (char)('0' + digits[i]);
        solution[s++] = '=';
        solution[s++] = (char)('0' + next);
        v = next;
    }
    prompt[p++] = '>';
    prompt[p] = '\0';
    solution[s++] = '>';
    solution[s++] = (char)('0' + v);
    solution[s] = '\0';
    return v;
}

/* ------------------------------------------------------------- generator */
void opd_task_generate(const opd_task_config *c, opd_split split, int index,
                       opd_task *out) {
    static const int multipliers[3] = {3, 7, 9};
    static const char op_chars[3] = {'+', '-', '*'};
    char ops[OPD_TASK_MAX_STEPS];
    int digits[OPD_TASK_MAX_STEPS];
    /* clamp a config that skipped opd_task_config_validate into range */
    int lo = c->min_steps < 1 ? 1 : c->min_steps > OPD_TASK_MAX_STEPS ? OPD_TASK_MAX_STEPS : c->min_steps;
    int hi = c->max_steps < lo ? lo : c->max_steps > OPD_TASK_MAX_STEPS ? OPD_TASK_MAX_STEPS : c->max_steps;
    int span = hi - lo + 1;
    /* A split keeps ~10% of the prompt space at worst, so the expected number
     * of attempts is <= 10; the loop ends with probability 1. */
    for (uint32_t attempt = 0;; attempt++) {
        uint32_t stream = (uint32_t)split + 4u * attempt;
        uint32_t idx = (uint32_t)index;
        memset(out, 0, sizeof *out);  /* whole struct defined: bytes are reproducible too */
        int n = lo + draw_int(c->seed, stream, idx, 0, span);
        int v0 = draw_int(c->seed, stream, idx, 1, OPD_TASK_MODULUS);
        for (int i = 0; i < n; i++) {
            int op = draw_int(c->seed, stream, idx, 2 + 2 * i, 3);
            ops[i] = op_chars[op];
            if (op == 2) digits[i] = multipliers[draw_int(c->seed, stream, idx, 3 + 2 * i, 3)];
            else         digits[i] = 1 + draw_int(c->seed, stream, idx, 3 + 2 * i, 9);
        }
        out->id = index;
        out->steps = n;
        out->answer = write_problem(v0, ops, digits, n, out->prompt, out->solution);
        if (opd_task_split_of(out->prompt) == split) return;
    }
}

opd_task *opd_dataset_generate(const opd_task_config *c, opd_split split, int n) {
    opd_task *t = opd_calloc((size_t)(n > 0 ? n : 1), sizeof *t);
    for (int i = 0; i < n; i++) opd_task_generate(c, split, i, &t[i]);
    return t;
}

void opd_dataset_free(opd_task *tasks) { free(tasks); }

/* ---------------------------------------------------------------- scorer */
static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* "'x'" or "0x0a": a character for an error message. */
static const char *show_char(char ch, char buf[8]) {
    unsigned char u = (unsigned char)ch;
    if (u >= 0x20 && u < 0x7f) snprintf(buf, 8, "'%c'", ch);
    else snprintf(buf, 8, "0x%02x", u);
    return buf;
}

int opd_task_solve(const char *prompt, char *solution, size_t cap, int *steps) {
    char ops[OPD_TASK_MAX_STEPS];
    int digits[OPD_TASK_MAX_STEPS];
    size_t len = strlen(prompt);
    if (len < 2 || !is_digit(prompt[0]))
        return opd_set_error("prompt \"%.60s\": must start with the start digit", prompt);
    size_t p = 1;
    int n = 0;
    char shown[8];
    while (p < len && prompt[p] != '>') {
        if (n == OPD_TASK_MAX_STEPS)
            return opd_set_error("prompt \"%.60s...\": more than %d steps", prompt,
                                 OPD_TASK_MAX_STEPS);
        if (prompt[p] != step_label(n))
            return opd_set_error("prompt \"%.60s\": position %zu: expected label '%c' of "
                                 "step %d, found %s", prompt, p, step_label(n), n + 1,
                                 show_char(prompt[p], shown));
        if (p + 2 >= len)
            return opd_set_error("prompt \"%.60s\": step %d cut short", prompt, n + 1);
        char op = prompt[p + 1];
        if (op != '+' && op != '-' && op != '*')
            return opd_set_error("prompt \"%.60s\": position %zu: expected an operator "
                                 "(+ - *), found %s", prompt, p + 1, show_char(op, shown));
        if (!is_digit(prompt[p + 2]))
            return opd_set_error("prompt \"%.60s\": position %zu: expected a digit, found %s",
                                 prompt, p + 2, show_char(prompt[p + 2], shown));
        ops[n] = op;
        digits[n] = prompt[p + 2] - '0';
        n++;
        p += 3;
    }
    if (p >= len)
        return opd_set_error("prompt \"%.60s\": missing the final '>'", prompt);
    if (p + 1 != len)
        return opd_set_error("prompt \"%.60s\": text after the final '>' at position %zu",
                             prompt, p);
    if (n == 0) return opd_set_error("prompt \"%.60s\": no steps", prompt);
    char pbuf[OPD_TASK_PROMPT_MAX], sbuf[OPD_TASK_SOLUTION_MAX];
    int answer = write_problem(prompt[0] - '0', ops, digits, n, pbuf, sbuf);
    if (solution) {
        size_t slen = strlen(sbuf);
        if (slen + 1 > cap)
            return opd_set_error("prompt \"%.60s\": solution of %zu characters does not fit "
                                 "in %zu bytes", prompt, slen, cap);
        memcpy(solution, sbuf, slen + 1);
    }
    if (steps) *steps = n;
    return answer;
}

int opd_task_answer(const char *solution) {
    size_t len = strlen(solution);
    if (len < 2 || solution[len - 2] != '>' || !is_digit(solution[len - 1])) return -1;
    return solution[len - 1] - '0';
}

int opd_task_verify(const char *prompt, const char *solution) {
    int truth = opd_task_solve(prompt, NULL, 0, NULL);
    if (truth < 0) return -1;
    return opd_task_answer(solution) == truth ? 1 : 0;
}

int opd_task_first_error(const char *prompt, const char *solution) {
    char ref[OPD_TASK_SOLUTION_MAX];
    if (opd_task_solve(prompt, ref, sizeof ref, NULL) < 0) return -2;
    int i = 0;
    while (ref[i] && solution[i] && ref[i] == solution[i]) i++;
    return (ref[i] == solution[i]) ? -1 : i;
}
