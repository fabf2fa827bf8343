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
 * (attempt + 1) until the prompt falls in its own part.
 *
 * The plan family (opd_data.h) is at the end of the file: a chain whose
 * start value is found by h hops through a map written in the prompt. It
 * shares the chain's step draws, solution writer and scorer. */
#include "opd_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- config */
void opd_task_config_default(opd_task_config *c) {
    c->seed = 1234;
    c->min_steps = 24;
    c->max_steps = 40;
    c->family = OPD_TASK_CHAIN;
    c->hops = OPD_TASK_PLAN_HOPS_DEFAULT;  /* unused by the chain */
    c->chase = 0;
    c->sorted = 0;
}

void opd_task_config_plan(opd_task_config *c) {
    opd_task_config_default(c);
    c->family = OPD_TASK_PLAN;
    c->min_steps = 4;
    c->max_steps = 10;
}

static int plan_config_validate(const opd_task_config *c);

int opd_task_config_validate(const opd_task_config *c) {
    if (c->family != OPD_TASK_CHAIN && c->family != OPD_TASK_PLAN && c->family != OPD_TASK_SHIFT)
        return opd_set_error("task: unknown family %d (chain, plan, shift)", (int)c->family);
    if (c->family == OPD_TASK_PLAN) return plan_config_validate(c);
    if (c->family == OPD_TASK_SHIFT && c->max_steps > OPD_TASK_SHIFT_MAX_STEPS)
        return opd_set_error("task shift: max_steps %d out of range [min_steps=%d, %d]",
                             c->max_steps, c->min_steps, OPD_TASK_SHIFT_MAX_STEPS);
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

/* The n (op, digit) pairs of a problem: draws first, first + 1, ... two per
 * step. Multipliers are units mod 10 and addends nonzero, so every step is
 * a bijection of the value. */
static void draw_steps(uint64_t seed, uint32_t stream, uint32_t idx, int first, int n,
                       char *ops, int *digits) {
    static const int multipliers[3] = {3, 7, 9};
    static const char op_chars[3] = {'+', '-', '*'};
    for (int i = 0; i < n; i++) {
        int op = draw_int(seed, stream, idx, first + 2 * i, 3);
        ops[i] = op_chars[op];
        if (op == 2) digits[i] = multipliers[draw_int(seed, stream, idx, first + 1 + 2 * i, 3)];
        else         digits[i] = 1 + draw_int(seed, stream, idx, first + 1 + 2 * i, 9);
    }
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
static void generate_plan(const opd_task_config *c, opd_split split, int index,
                          opd_task *out);

/* a shift problem's draws are keyed apart from every chain and plan problem's */
#define SHIFT_STREAM (1u << 25)

void opd_task_generate(const opd_task_config *c, opd_split split, int index,
                       opd_task *out) {
    if (c->family == OPD_TASK_PLAN) { generate_plan(c, split, index, out); return; }
    const int shift = c->family == OPD_TASK_SHIFT;  /* its prompt is one character longer */
    char ops[OPD_TASK_MAX_STEPS];
    int digits[OPD_TASK_MAX_STEPS];
    /* clamp a config that skipped opd_task_config_validate into range */
    int lo = c->min_steps < 1 ? 1 : c->min_steps > OPD_TASK_MAX_STEPS ? OPD_TASK_MAX_STEPS : c->min_steps;
    int hi = c->max_steps < lo ? lo : c->max_steps > OPD_TASK_MAX_STEPS ? OPD_TASK_MAX_STEPS : c->max_steps;
    if (shift && lo > OPD_TASK_SHIFT_MAX_STEPS) lo = OPD_TASK_SHIFT_MAX_STEPS;
    if (shift && hi > OPD_TASK_SHIFT_MAX_STEPS) hi = OPD_TASK_SHIFT_MAX_STEPS;
    int span = hi - lo + 1;
    /* A split keeps ~10% of the prompt space at worst, so the expected number
     * of attempts is <= 10; the loop ends with probability 1. */
    for (uint32_t attempt = 0;; attempt++) {
        uint32_t stream = (uint32_t)split + 4u * attempt + (shift ? SHIFT_STREAM : 0u);
        uint32_t idx = (uint32_t)index;
        memset(out, 0, sizeof *out);  /* whole struct defined: bytes are reproducible too */
        int n = lo + draw_int(c->seed, stream, idx, 0, span);
        int v0 = draw_int(c->seed, stream, idx, 1, OPD_TASK_MODULUS);
        draw_steps(c->seed, stream, idx, 2, n, ops, digits);
        out->id = index;
        out->steps = n;
        if (shift) {
            /* the chain of start s + 1, its prompt showing s and the marker */
            int s0 = v0;
            out->answer = write_problem((s0 + 1) % OPD_TASK_MODULUS, ops, digits, n, out->prompt,
                                        out->solution);
            size_t len = strlen(out->prompt);
            out->prompt[0] = (char)('0' + s0);
            out->prompt[len - 1] = '=';
            out->prompt[len] = '>';
            out->prompt[len + 1] = '\0';
        } else {
            out->answer = write_problem(v0, ops, digits, n, out->prompt, out->solution);
        }
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

static int solve_plan(const char *prompt, char *solution, size_t cap, int *steps);

int opd_task_solve(const char *prompt, char *solution, size_t cap, int *steps) {
    if (opd_task_family_of(prompt) == OPD_TASK_PLAN) return solve_plan(prompt, solution, cap, steps);
    if (opd_task_family_of(prompt) == OPD_TASK_SHIFT) {
        /* "s ... =>" is the chain "s+1 ... >" */
        size_t len = strlen(prompt);
        if (len + 1 > OPD_TASK_PROMPT_MAX)
            return opd_set_error("prompt \"%.60s...\": longer than %d characters", prompt,
                                 OPD_TASK_PROMPT_MAX - 1);
        if (!is_digit(prompt[0]))
            return opd_set_error("prompt \"%.60s\": must start with the start digit", prompt);
        char chain[OPD_TASK_PROMPT_MAX];
        memcpy(chain, prompt, len - 1);
        chain[0] = (char)('0' + (prompt[0] - '0' + 1) % OPD_TASK_MODULUS);
        chain[len - 2] = '>';
        chain[len - 1] = '\0';
        return opd_task_solve(chain, solution, cap, steps);
    }
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

/* ------------------------------------------------------------ plan family */
#define PLAN_MAP_LEN (2 * OPD_TASK_MODULUS)   /* 10 (key, value) pairs */
/* a plan problem's draws are keyed apart from every chain problem's */
#define PLAN_STREAM (1u << 24)
/* draws 0 (n), 1 (s), 2 .. 2n+1 (steps) as the chain; then the cycle's
 * shuffle, then the order the keys are written in */
#define PLAN_DRAW_CYCLE (2 + 2 * OPD_TASK_MAX_STEPS)
#define PLAN_DRAW_ORDER (PLAN_DRAW_CYCLE + OPD_TASK_MODULUS)

static const char *const family_names[3] = {"chain", "plan", "shift"};

/* the map's keys: 'A' + k stands for the digit k; a plan has at most 26
 * steps, labelled 'a'..'z', so these letters mean nothing else there */
static int is_map_key(char ch) { return ch >= 'A' && ch < 'A' + OPD_TASK_MODULUS; }

const char *opd_task_family_name(opd_task_family f) {
    return (f == OPD_TASK_CHAIN || f == OPD_TASK_PLAN || f == OPD_TASK_SHIFT) ? family_names[f] : "?";
}

int opd_task_family_parse(const char *name, opd_task_family *f) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, family_names[i]) == 0) { *f = (opd_task_family)i; return 0; }
    return opd_set_error("unknown task family '%s' (chain, plan, shift)", name);
}

opd_task_family opd_task_family_of(const char *prompt) {
    if (is_map_key(prompt[0]) && is_digit(prompt[1])) return OPD_TASK_PLAN;
    size_t len = strlen(prompt);
    /* a chain prompt ends "digit >", a shift prompt "= >" */
    if (len >= 3 && prompt[len - 1] == '>' && prompt[len - 2] == '=') return OPD_TASK_SHIFT;
    return OPD_TASK_CHAIN;
}

int opd_task_plan_prompt_len(int steps, int hops) { return PLAN_MAP_LEN + 3 * steps + hops + 2; }

static int plan_config_validate(const opd_task_config *c) {
    if (c->min_steps < 1 || c->min_steps > OPD_TASK_PLAN_MAX_STEPS)
        return opd_set_error("task plan: min_steps %d out of range [1, %d]", c->min_steps,
                             OPD_TASK_PLAN_MAX_STEPS);
    if (c->max_steps < c->min_steps || c->max_steps > OPD_TASK_PLAN_MAX_STEPS)
        return opd_set_error("task plan: max_steps %d out of range [min_steps=%d, %d]",
                             c->max_steps, c->min_steps, OPD_TASK_PLAN_MAX_STEPS);
    if (c->hops < 1 || c->hops > OPD_TASK_PLAN_MAX_HOPS)
        return opd_set_error("task plan: hops %d out of range [1, %d]", c->hops,
                             OPD_TASK_PLAN_MAX_HOPS);
    return 0;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* perm (10) = a uniform permutation of the digits (Fisher-Yates), from the
 * 9 draws first .. first + 8 */
static void draw_permutation(uint64_t seed, uint32_t stream, uint32_t idx, int first, int *perm) {
    for (int i = 0; i < OPD_TASK_MODULUS; i++) perm[i] = i;
    for (int i = OPD_TASK_MODULUS - 1; i > 0; i--) {
        int j = draw_int(seed, stream, idx, first + (OPD_TASK_MODULUS - 1 - i), i + 1);
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
}

static int follow(const int *map, int s, int hops) {
    for (int i = 0; i < hops; i++) s = map[s];
    return s;
}

/* The plan prompt of map (10), its keys written in `order` (10), the steps,
 * hops and start key; the solution is the chain's from pi^h(s). With chase,
 * the start is written as its key letter and the solution first writes the
 * chase out, a key and the value it maps to per hop: K(s) pi(s) K(pi(s)) ... */
static int write_plan(const int *map, const int *order, const char *ops, const int *digits,
                      int n, int hops, int s, int chase, char *prompt, char *solution) {
    char chain_prompt[OPD_TASK_PROMPT_MAX];
    int q = 0;
    if (chase)
        for (int i = 0, v = s; i < hops; i++, v = map[v]) {
            solution[q++] = (char)('A' + v);
            solution[q++] = (char)('0' + map[v]);
        }
    int answer = write_problem(follow(map, s, hops), ops, digits, n, chain_prompt, solution + q);
    int p = 0;
    for (int i = 0; i < OPD_TASK_MODULUS; i++) {
        prompt[p++] = (char)('A' + order[i]);
        prompt[p++] = (char)('0' + map[order[i]]);
    }
    /* the chain prompt without its start digit and '>': the labelled steps */
    memcpy(prompt + p, chain_prompt + 1, (size_t)(3 * n));
    p += 3 * n;
    for (int i = 0; i < hops; i++) prompt[p++] = '=';
    prompt[p++] = (char)((chase ? 'A' : '0') + s);
    prompt[p++] = '>';
    prompt[p] = '\0';
    return answer;
}

static void generate_plan(const opd_task_config *c, opd_split split, int index,
                          opd_task *out) {
    char ops[OPD_TASK_PLAN_MAX_STEPS];
    int digits[OPD_TASK_PLAN_MAX_STEPS], cycle[OPD_TASK_MODULUS], order[OPD_TASK_MODULUS],
        map[OPD_TASK_MODULUS];
    int lo = clamp_int(c->min_steps, 1, OPD_TASK_PLAN_MAX_STEPS);
    int hi = clamp_int(c->max_steps, lo, OPD_TASK_PLAN_MAX_STEPS);
    int hops = clamp_int(c->hops, 1, OPD_TASK_PLAN_MAX_HOPS);
    for (uint32_t attempt = 0;; attempt++) {  /* as the chain's: ends w.p. 1 */
        uint32_t stream = PLAN_STREAM + (uint32_t)split + 4u * attempt;
        uint32_t idx = (uint32_t)index;
        memset(out, 0, sizeof *out);
        int n = lo + draw_int(c->seed, stream, idx, 0, hi - lo + 1);
        int s = draw_int(c->seed, stream, idx, 1, OPD_TASK_MODULUS);
        draw_steps(c->seed, stream, idx, 2, n, ops, digits);
        /* one 10-cycle: pi(cycle[i]) = cycle[i + 1], so pi^j(s) differs for
         * every j < 10 and no chase with fewer hops lands on the answer */
        draw_permutation(c->seed, stream, idx, PLAN_DRAW_CYCLE, cycle);
        for (int i = 0; i < OPD_TASK_MODULUS; i++)
            map[cycle[i]] = cycle[(i + 1) % OPD_TASK_MODULUS];
        draw_permutation(c->seed, stream, idx, PLAN_DRAW_ORDER, order);
        if (c->sorted)
            for (int i = 0; i < OPD_TASK_MODULUS; i++) order[i] = i;
        out->id = index;
        out->steps = n;
        out->answer = write_plan(map, order, ops, digits, n, hops, s, c->chase != 0, out->prompt,
                                 out->solution);
        if (opd_task_split_of(out->prompt) == split) return;
    }
}

/* Parses "map steps '='^h s '>'" (opd_data.h); the map must be a permutation
 * of the digits (any permutation: only the generator insists on one cycle). */
static int solve_plan(const char *prompt, char *solution, size_t cap, int *steps) {
    char ops[OPD_TASK_PLAN_MAX_STEPS], shown[8];
    int digits[OPD_TASK_PLAN_MAX_STEPS], map[OPD_TASK_MODULUS], order[OPD_TASK_MODULUS];
    int seen_key = 0, seen_value = 0;
    size_t len = strlen(prompt), p = 0;
    for (int i = 0; i < OPD_TASK_MODULUS; i++, p += 2) {
        if (p + 1 >= len || !is_map_key(prompt[p]) || !is_digit(prompt[p + 1]))
            return opd_set_error("plan prompt \"%.60s\": position %zu: expected pair %d of the "
                                 "map, a key A..J and a digit", prompt, p, i + 1);
        int k = prompt[p] - 'A', v = prompt[p + 1] - '0';
        if (seen_key & (1 << k))
            return opd_set_error("plan prompt \"%.60s\": position %zu: key %c appears twice in "
                                 "the map", prompt, p, prompt[p]);
        if (seen_value & (1 << v))
            return opd_set_error("plan prompt \"%.60s\": position %zu: value %d appears twice in "
                                 "the map (it must be a permutation)", prompt, p + 1, v);
        seen_key |= 1 << k;
        seen_value |= 1 << v;
        map[k] = v;
        order[i] = k;
    }
    int n = 0;
    while (p < len && prompt[p] != '=') {
        if (n == OPD_TASK_PLAN_MAX_STEPS)
            return opd_set_error("plan prompt \"%.60s...\": more than %d steps", prompt,
                                 OPD_TASK_PLAN_MAX_STEPS);
        if (prompt[p] != step_label(n))
            return opd_set_error("plan prompt \"%.60s\": position %zu: expected label '%c' of "
                                 "step %d or the '=' of the hops, found %s", prompt, p,
                                 step_label(n), n + 1, show_char(prompt[p], shown));
        if (p + 2 >= len || (prompt[p + 1] != '+' && prompt[p + 1] != '-' && prompt[p + 1] != '*') ||
            !is_digit(prompt[p + 2]))
            return opd_set_error("plan prompt \"%.60s\": step %d at position %zu: expected an "
                                 "operator (+ - *) and a digit", prompt, n + 1, p);
        ops[n] = prompt[p + 1];
        digits[n] = prompt[p + 2] - '0';
        n++;
        p += 3;
    }
    if (n == 0) return opd_set_error("plan prompt \"%.60s\": no steps", prompt);
    int hops = 0;
    while (p < len && prompt[p] == '=') { hops++; p++; }
    if (hops < 1 || hops > OPD_TASK_PLAN_MAX_HOPS)
        return opd_set_error("plan prompt \"%.60s\": %d hops ('='), expected 1 to %d", prompt,
                             hops, OPD_TASK_PLAN_MAX_HOPS);
    if (p + 2 != len || !(is_digit(prompt[p]) || is_map_key(prompt[p])) || prompt[p + 1] != '>')
        return opd_set_error("plan prompt \"%.60s\": position %zu: expected the start key (a "
                             "digit, or its letter A..J: the chase) and the final '>' ending the "
                             "prompt", prompt, p);
    char pbuf[OPD_TASK_PROMPT_MAX], sbuf[OPD_TASK_SOLUTION_MAX];
    int chase = is_map_key(prompt[p]);
    int answer = write_plan(map, order, ops, digits, n, hops, prompt[p] - (chase ? 'A' : '0'), chase,
                            pbuf, sbuf);
    if (solution) {
        size_t slen = strlen(sbuf);
        if (slen + 1 > cap)
            return opd_set_error("plan prompt \"%.60s\": solution of %zu characters does not fit "
                                 "in %zu bytes", prompt, slen, cap);
        memcpy(solution, sbuf, slen + 1);
    }
    if (steps) *steps = n;
    return answer;
}
