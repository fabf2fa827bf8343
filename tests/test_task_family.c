/* test_task_family.c — the task families of data/tasks.c: the chain
 * (control) is unchanged by the plan family's arrival, and every plan
 * problem is well formed, decided by its early token and verified by the
 * shared scorer. Writes one CSV in a fresh directory under $TMPDIR. */
#define _GNU_SOURCE
#include "opd_data.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[512];

/* FNV-1a of "id,steps,prompt,solution,answer\n" of problems 0..n-1 of every
 * split, continuing from h */
static uint64_t fnv_add(uint64_t h, const char *s) {
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 0x100000001b3ull; }
    return h;
}

static uint64_t hash_problems(uint64_t h, const opd_task_config *c, int n) {
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < n; i++) {
            opd_task t;
            char b[64];
            opd_task_generate(c, (opd_split)s, i, &t);
            snprintf(b, sizeof b, "%d,%d,", t.id, t.steps);
            h = fnv_add(fnv_add(fnv_add(fnv_add(h, b), t.prompt), ","), t.solution);
            snprintf(b, sizeof b, ",%d\n", t.answer);
            h = fnv_add(h, b);
        }
    return h;
}

static void test_chain_unchanged(void) {
    /* recorded from the generator before the plan family existed (data/tasks.c
     * of commit 22887c6, built on its own): the chain is the control regime,
     * and the golden files and every earlier result depend on its bytes */
    static const struct {
        uint64_t seed; int lo, hi, split, index, answer; const char *prompt, *solution;
    } want[] = {
        {1234, 24, 40, 0, 0, 0,
         "8a+8b*3c*3d-9e-3f-7g*7h+6i-9j*9k-7l-8m+8n-2o*3p-6q*3r*9s+4t-1u*3v-8w-9x*3y+6z+5>",
         "a8+8=6b6*3=8c8*3=4d4-9=5e5-3=2f2-7=5g5*7=5h5+6=1i1-9=2j2*9=8k8-7=1l1-8=3m3+8=1n1-2=9"
         "o9*3=7p7-6=1q1*3=3r3*9=7s7+4=1t1-1=0u0*3=0v0-8=2w2-9=3x3*3=9y9+6=5z5+5=0>0"},
        {1234, 24, 40, 2, 123, 1,
         "8a+1b*3c*9d*7e+8f+2g-5h+1i*7j*9k-7l+7m*7n*7o*9p+1q-2r*7s-9t*3u+9v*7w+3x+6y-2>",
         "a8+1=9b9*3=7c7*9=3d3*7=1e1+8=9f9+2=1g1-5=6h6+1=7i7*7=9j9*9=1k1-7=4l4+7=1m1*7=7n7*7=9"
         "o9*9=1p1+1=2q2-2=0r0*7=0s0-9=1t1*3=3u3+9=2v2*7=4w4+3=7x7+6=3y3-2=1>1"},
        {7, 3, 5, 0, 0, 8, "7a+1b-2c+3d*9e-3>", "a7+1=8b8-2=6c6+3=9d9*9=1e1-3=8>8"},
        {7, 3, 5, 0, 1, 0, "1a-5b+4c*7d*3>", "a1-5=6b6+4=0c0*7=0d0*3=0>0"},
        {7, 3, 5, 0, 2, 0, "4a+8b+4c-3d-1e+8>", "a4+8=2b2+4=6c6-3=3d3-1=2e2+8=0>0"},
    };
    for (int k = 0; k < 5; k++) {
        /* family left out: 0, the chain */
        opd_task_config c = {.seed = want[k].seed, .min_steps = want[k].lo, .max_steps = want[k].hi};
        opd_task t;
        opd_task_generate(&c, (opd_split)want[k].split, want[k].index, &t);
        CU_ASSERT_STRING_EQUAL(t.prompt, want[k].prompt);
        CU_ASSERT_STRING_EQUAL(t.solution, want[k].solution);
        CU_ASSERT_EQUAL(t.answer, want[k].answer);
        CU_ASSERT_EQUAL(opd_task_family_of(t.prompt), OPD_TASK_CHAIN);
    }
    /* 300 problems of every split with the default config, then with every
     * length (seed 7, steps 1..46), hashed in that order */
    opd_task_config c, all;
    opd_task_config_default(&c);
    CU_ASSERT_EQUAL(c.family, OPD_TASK_CHAIN);
    all = c;
    all.seed = 7; all.min_steps = 1; all.max_steps = OPD_TASK_MAX_STEPS;
    uint64_t h = hash_problems(hash_problems(0xcbf29ce484222325ull, &c, 300), &all, 300);
    printf("\n      1800 chain problems hash to %016llx (recorded a236447be7c85a22)",
           (unsigned long long)h);
    CU_ASSERT_EQUAL(h, 0xa236447be7c85a22ull);
    /* the hops field means nothing to the chain */
    c.hops = 3;
    CU_ASSERT_EQUAL(hash_problems(0xcbf29ce484222325ull, &c, 50),
                    hash_problems(0xcbf29ce484222325ull, &(opd_task_config){.seed = 1234, .min_steps = 24, .max_steps = 40}, 50));
}

/* The plan spec read independently of tasks.c: map from the first 20
 * characters (key 'A' + k, value), h = the '=' run before the start key, v0 = pi^h(s). Also
 * writes the chain prompt with start v and the plan prompt's steps. */
static int spec_v0(const char *prompt, int *map, int *s, int *hops) {
    for (int i = 0; i < 10; i++) map[prompt[2 * i] - 'A'] = prompt[2 * i + 1] - '0';
    size_t len = strlen(prompt);
    *s = prompt[len - 2] - '0';
    *hops = 0;
    for (size_t p = len - 3; prompt[p] == '='; p--) (*hops)++;
    int v = *s;
    for (int j = 0; j < *hops; j++) v = map[v];
    return v;
}

static void chain_prompt_from(const char *plan_prompt, int hops, int v, char *out) {
    size_t len = strlen(plan_prompt), nsteps = len - 20 - hops - 2;
    out[0] = (char)('0' + v);
    memcpy(out + 1, plan_prompt + 20, nsteps);
    out[1 + nsteps] = '>';
    out[2 + nsteps] = '\0';
}

static void test_plan_answers_verify(void) {
    int checked = 0, bad = 0, hist[10] = {0};
    for (uint64_t seed = 0; seed < 3; seed++)
        for (int steps = 1; steps <= OPD_TASK_PLAN_MAX_STEPS; steps++)
            for (int hops = 1; hops <= OPD_TASK_PLAN_MAX_HOPS; hops++)
                for (int split = 0; split < 3; split++)
                    for (int i = 0; i < 2; i++) {
                        opd_task_config c = {.seed = seed, .min_steps = steps, .max_steps = steps, .family = OPD_TASK_PLAN, .hops = hops};
                        CU_ASSERT_EQUAL(opd_task_config_validate(&c), 0);
                        opd_task t;
                        opd_task_generate(&c, (opd_split)split, i, &t);
                        char ref[OPD_TASK_SOLUTION_MAX], chain[OPD_TASK_PROMPT_MAX],
                            chain_sol[OPD_TASK_SOLUTION_MAX];
                        int n = 0, map[10], s, h;
                        int ans = opd_task_solve(t.prompt, ref, sizeof ref, &n);
                        int v0 = spec_v0(t.prompt, map, &s, &h);
                        chain_prompt_from(t.prompt, h, v0, chain);
                        int chain_ans = opd_task_solve(chain, chain_sol, sizeof chain_sol, NULL);
                        int ok = t.steps == steps && n == steps && ans == t.answer && h == hops &&
                                 strcmp(ref, t.solution) == 0 &&
                                 opd_task_verify(t.prompt, t.solution) == 1 &&
                                 opd_task_answer(t.solution) == t.answer &&
                                 opd_task_first_error(t.prompt, t.solution) == -1 &&
                                 opd_task_family_of(t.prompt) == OPD_TASK_PLAN &&
                                 (int)strlen(t.prompt) == opd_task_plan_prompt_len(steps, hops) &&
                                 (int)strlen(t.solution) == opd_task_solution_len(steps) &&
                                 (int)strlen(t.prompt) < OPD_TASK_PROMPT_MAX &&
                                 /* the solution is the chain's from v0, v0 at the decision */
                                 t.solution[OPD_TASK_PLAN_DECISION_POS] == '0' + v0 &&
                                 strcmp(chain_sol, t.solution) == 0 && chain_ans == t.answer &&
                                 t.id == i;
                        if (!ok && bad++ < 3) printf("\n      FAIL %s / %s", t.prompt, t.solution);
                        if (hops == OPD_TASK_PLAN_HOPS_DEFAULT) hist[t.answer]++;
                        checked++;
                    }
    printf("\n      %d plan problems (3 seeds x steps 1..%d x hops 1..%d x 3 splits x 2) verified, "
           "%d failed", checked, OPD_TASK_PLAN_MAX_STEPS, OPD_TASK_PLAN_MAX_HOPS, bad);
    CU_ASSERT_EQUAL(bad, 0);
    /* and the example of opd_data.h */
    char sol[64];
    CU_ASSERT_EQUAL(opd_task_solve("A7B8C9D0E1F2G3H4I5J6a+7b*3c-5==3>", sol, sizeof sol, NULL), 7);
    CU_ASSERT_STRING_EQUAL(sol, "a7+7=4b4*3=2c2-5=7>7");
    /* answers spread over the digits (every step and the chase are bijections) */
    opd_task_config c;
    opd_task_config_plan(&c);
    opd_task *ts = opd_dataset_generate(&c, OPD_SPLIT_TRAIN, 4000);
    int v0hist[10] = {0};
    for (int d = 0; d < 10; d++) hist[d] = 0;
    for (int i = 0; i < 4000; i++) {
        hist[ts[i].answer]++;
        v0hist[ts[i].solution[OPD_TASK_PLAN_DECISION_POS] - '0']++;
    }
    double chi_a = 0, chi_v = 0;
    for (int d = 0; d < 10; d++) {
        chi_a += (hist[d] - 400.0) * (hist[d] - 400.0) / 400.0;
        chi_v += (v0hist[d] - 400.0) * (v0hist[d] - 400.0) / 400.0;
    }
    printf("\n      default plan config, 4000 problems: chi2(9 dof) answers %.1f, decisions %.1f",
           chi_a, chi_v);
    CU_ASSERT(chi_a < 30.0 && chi_v < 30.0);
    opd_dataset_free(ts);
}

static void test_plan_decision_decides(void) {
    /* each of the 10 possible decisions gives a different answer, and the
     * chases with fewer hops than asked never give the right one */
    opd_task_config c;
    opd_task_config_plan(&c);
    int bad_bijection = 0, shortcut_right = 0, n = 500;
    for (int hops = 1; hops <= OPD_TASK_PLAN_MAX_HOPS; hops++) {
        c.hops = hops;
        for (int i = 0; i < n; i++) {
            opd_task t;
            opd_task_generate(&c, OPD_SPLIT_TRAIN, i, &t);
            int map[10], s, h, v0 = spec_v0(t.prompt, map, &s, &h), seen = 0;
            for (int v = 0; v < 10; v++) {
                char chain[OPD_TASK_PROMPT_MAX];
                chain_prompt_from(t.prompt, h, v, chain);
                int a = opd_task_solve(chain, NULL, 0, NULL);
                seen |= 1 << a;
                if ((a == t.answer) != (v == v0)) bad_bijection++;
            }
            if (seen != 0x3ff) bad_bijection++;
            for (int j = 0, u = s; j < h; j++, u = map[u]) shortcut_right += u == v0;
            /* a rollout that gets the decision wrong and all the rest right fails */
            char wrong[OPD_TASK_SOLUTION_MAX], chain[OPD_TASK_PROMPT_MAX];
            chain_prompt_from(t.prompt, h, (v0 + 1) % 10, chain);
            opd_task_solve(chain, wrong, sizeof wrong, NULL);
            CU_ASSERT_EQUAL(opd_task_verify(t.prompt, wrong), 0);
            CU_ASSERT_EQUAL(opd_task_first_error(t.prompt, wrong), OPD_TASK_PLAN_DECISION_POS);
        }
    }
    CU_ASSERT_EQUAL(bad_bijection, 0);
    CU_ASSERT_EQUAL(shortcut_right, 0);
    /* the decision lies inside a rho = 0.1 rollout of the default config, and
     * of the smallest config with max_steps >= 2 */
    static const int max_steps[] = {2, 10, OPD_TASK_PLAN_MAX_STEPS};
    for (int k = 0; k < 3; k++) {
        opd_schedule sch;
        int T = opd_task_solution_len(max_steps[k]) + 1;
        opd_schedule_default(&sch, OPD_SCHED_TRUNCATED, T);
        sch.rho = 0.1f;
        int H = opd_schedule_horizon(&sch, 0);
        printf("\n      max_steps %d: T = %d, TOPD rho = 0.1 trains on H = %d positions", max_steps[k], T, H);
        CU_ASSERT(H > OPD_TASK_PLAN_DECISION_POS);
    }
}

static void test_plan_reproducible_and_keyed(void) {
    opd_task_config c;
    opd_task_config_plan(&c);
    opd_task *a = opd_dataset_generate(&c, OPD_SPLIT_TEST, 100), one;
    opd_task_generate(&c, OPD_SPLIT_TEST, 57, &one);  /* alone, out of order */
    CU_ASSERT(memcmp(&one, &a[57], sizeof one) == 0);
    opd_task *b = opd_dataset_generate(&c, OPD_SPLIT_TEST, 100);
    CU_ASSERT(memcmp(a, b, 100 * sizeof *a) == 0);
    opd_task_config c2 = c;
    c2.seed++;
    opd_task *d = opd_dataset_generate(&c2, OPD_SPLIT_TEST, 100);
    /* the plan problem i of a seed is not the chain problem i with a map in
     * front: its draws are keyed apart */
    opd_task_config chain = c;
    chain.family = OPD_TASK_CHAIN;
    opd_task *e = opd_dataset_generate(&chain, OPD_SPLIT_TEST, 100);
    int same_seed = 0, same_steps = 0;
    for (int i = 0; i < 100; i++) {
        same_seed += strcmp(a[i].prompt, d[i].prompt) == 0;
        same_steps += strncmp(a[i].prompt + 20, e[i].prompt + 1, 3 * (size_t)e[i].steps) == 0;
    }
    printf("\n      seed+1: %d/100 prompts in common; plan steps equal to the chain's: %d/100",
           same_seed, same_steps);
    CU_ASSERT_EQUAL(same_seed, 0);
    CU_ASSERT(same_steps < 5);
    opd_dataset_free(a); opd_dataset_free(b); opd_dataset_free(d); opd_dataset_free(e);
}

/* --sorted (opd_task_config.sorted): the map's pairs in key order A..J.
 * --chase (opd_task_config.chase): the start written as its key letter, the
 * solution = the chase written out ("K(s) pi(s) K(pi(s)) ...", a key and its
 * value per hop, read here from the prompt's map) + the solution of the same
 * prompt with the start digit; the last hop's value is v0. */
static void test_plan_chase(void) {
    int checked = 0, bad = 0;
    for (uint64_t seed = 0; seed < 3; seed++)
        for (int steps = 1; steps <= OPD_TASK_PLAN_MAX_STEPS; steps += 5)
            for (int hops = 1; hops <= OPD_TASK_PLAN_MAX_HOPS; hops++)
                for (int i = 0; i < 8; i++) {
                    /* odd i: the map sorted (--sorted) too */
                    opd_task_config c = {.seed = seed, .min_steps = steps, .max_steps = steps,
                                         .family = OPD_TASK_PLAN, .hops = hops, .chase = 1,
                                         .sorted = i % 2};
                    CU_ASSERT_EQUAL(opd_task_config_validate(&c), 0);
                    opd_task t;
                    opd_task_generate(&c, (opd_split)(i % 3), i, &t);
                    size_t len = strlen(t.prompt);
                    int map[10];
                    for (int k = 0; k < 10; k++) map[t.prompt[2 * k] - 'A'] = t.prompt[2 * k + 1] - '0';
                    char digit[OPD_TASK_PROMPT_MAX], plain[OPD_TASK_SOLUTION_MAX],
                        want[OPD_TASK_SOLUTION_MAX];
                    int s = t.prompt[len - 2] - 'A', q = 0;
                    for (int j = 0, v = s; j < hops; j++, v = map[v]) {
                        want[q++] = (char)('A' + v);
                        want[q++] = (char)('0' + map[v]);
                    }
                    strcpy(digit, t.prompt);
                    digit[len - 2] = (char)('0' + s);
                    int plain_ans = opd_task_solve(digit, plain, sizeof plain, NULL);
                    strcpy(want + q, plain);
                    int in_order = 1;
                    for (int k = 0; k < 10; k++) in_order &= t.prompt[2 * k] == 'A' + k;
                    int ok = s >= 0 && s < 10 && strcmp(t.solution, want) == 0 &&
                             (!c.sorted || in_order) &&
                             plain_ans == t.answer && want[q + 1] == want[q - 1] &&
                             opd_task_verify(t.prompt, t.solution) == 1 &&
                             opd_task_first_error(t.prompt, t.solution) == -1 &&
                             opd_task_family_of(t.prompt) == OPD_TASK_PLAN &&
                             (int)strlen(t.prompt) == opd_task_plan_prompt_len(steps, hops) &&
                             (int)strlen(t.solution) == opd_task_solution_len(steps) + 2 * hops;
                    if (!ok && bad++ < 3) printf("\n      FAIL %s / %s", t.prompt, t.solution);
                    checked++;
                }
    CU_ASSERT_EQUAL(bad, 0);
    /* the example of opd_data.h */
    char sol[OPD_TASK_SOLUTION_MAX];
    CU_ASSERT_EQUAL(opd_task_solve("A7B8C9D0E1F2G3H4I5J6a+7b*3c-5==D>", sol, sizeof sol, NULL), 7);
    CU_ASSERT_STRING_EQUAL(sol, "D0A7a7+7=4b4*3=2c2-5=7>7");
    printf("\n      %d chase problems verified (half with the map sorted)", checked);
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void test_plan_splits_disjoint(void) {
    /* one step, one hop: the smallest plan problems */
    opd_task_config c = {.seed = 5, .min_steps = 1, .max_steps = 1, .family = OPD_TASK_PLAN, .hops = 1};
    int n[3] = {3000, 600, 600}, wrong_part = 0, total = 0;
    const char **all = malloc(4200 * sizeof *all);
    opd_task *t[3];
    for (int k = 0; k < 3; k++) {
        t[k] = opd_dataset_generate(&c, (opd_split)k, n[k]);
        for (int i = 0; i < n[k]; i++) {
            wrong_part += opd_task_split_of(t[k][i].prompt) != (opd_split)k;
            all[total++] = t[k][i].prompt;
        }
    }
    /* a prompt in two splits would be a repeat across the sorted union with
     * different splits; count repeats across splits */
    qsort(all, (size_t)total, sizeof *all, cmp_str);
    int across = 0;
    for (int i = 1; i < total; i++)
        if (strcmp(all[i], all[i - 1]) == 0 &&
            opd_task_split_of(all[i]) != opd_task_split_of(all[i - 1])) across++;
    CU_ASSERT_EQUAL(wrong_part, 0);
    CU_ASSERT_EQUAL(across, 0);
    free(all);
    for (int k = 0; k < 3; k++) opd_dataset_free(t[k]);
}

static void test_plan_vocabulary_and_csv(void) {
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    opd_task_config c;
    opd_task_config_plan(&c);
    c.max_steps = OPD_TASK_PLAN_MAX_STEPS;
    c.hops = OPD_TASK_PLAN_MAX_HOPS;
    opd_task *t = opd_dataset_generate(&c, OPD_SPLIT_VALID, 200);
    int ids[512], unknown = 0;
    for (int i = 0; i < 200; i++) {
        unknown += opd_tok_encode(&tok, t[i].prompt, 1, 0, ids, 512) < 0;
        unknown += opd_tok_encode(&tok, t[i].solution, 0, 1, ids, 512) < 0;
    }
    CU_ASSERT_EQUAL(unknown, 0);  /* data/vocab.txt as it is */
    /* the CSV reader checks every row with the shared scorer */
    char path[600];
    snprintf(path, sizeof path, "%s/plan.csv", tmpdir);
    CU_ASSERT_EQUAL_FATAL(opd_dataset_write_csv(path, t, 200), 0);
    opd_task *r = NULL;
    int nr = 0;
    CU_ASSERT_EQUAL_FATAL(opd_dataset_read_csv(path, &r, &nr), 0);
    CU_ASSERT_EQUAL(nr, 200);
    CU_ASSERT(memcmp(r, t, 200 * sizeof *t) == 0);
    unlink(path);
    opd_dataset_free(r);
    opd_dataset_free(t);
}

static void test_plan_malformed_and_config(void) {
    static const struct { const char *prompt, *says; } bad[] = {
        {"A7A8C9D0E1F2G3H4I5J6a+7==3>", "key A appears twice"},
        {"A7B8C9D0E1F2G3H4I5J7a+7==3>", "value 7 appears twice"},
        {"A7B8C9D0E1F2G3H4I5J", "pair 10 of the map"},
        {"A7B8C9D0E1F2G3H4I5K6a+7==3>", "pair 10 of the map"},
        {"A7B8C9D0E1F2G3H4I5J6a+7b*33>", "expected label 'c'"},
        {"A7B8C9D0E1F2G3H4I5J6==3>", "no steps"},
        {"A7B8C9D0E1F2G3H4I5J6a+7====3>", "4 hops"},
        {"A7B8C9D0E1F2G3H4I5J6a+7==>", "start key"},
        {"A7B8C9D0E1F2G3H4I5J6a+7==3>x", "start key"},
        {"A7B8C9D0E1F2G3H4I5J6a/7==3>", "operator"},
    };
    for (int k = 0; k < 10; k++) {
        CU_ASSERT_EQUAL(opd_task_family_of(bad[k].prompt), OPD_TASK_PLAN);
        CU_ASSERT_EQUAL(opd_task_solve(bad[k].prompt, NULL, 0, NULL), -1);
        int says = strstr(opd_last_error(), bad[k].says) != NULL;
        if (!says) printf("\n      %s: %s", bad[k].prompt, opd_last_error());
        CU_ASSERT(says);
        CU_ASSERT_EQUAL(opd_task_verify(bad[k].prompt, "a7>7"), -1);
        CU_ASSERT_EQUAL(opd_task_first_error(bad[k].prompt, "a7>7"), -2);
    }
    /* a solution buffer too small is an error, not an overflow */
    char small[8];
    CU_ASSERT_EQUAL(opd_task_solve("A7B8C9D0E1F2G3H4I5J6a+7b*3c-5==3>", small, sizeof small, NULL), -1);
    /* config */
    opd_task_config c;
    opd_task_config_plan(&c);
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), 0);
    CU_ASSERT_EQUAL(c.hops, OPD_TASK_PLAN_HOPS_DEFAULT);
    c.hops = 0;
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "hops"));
    c.hops = 2; c.max_steps = OPD_TASK_PLAN_MAX_STEPS + 1;
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), -1);
    c.max_steps = 10; c.family = (opd_task_family)7;
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(opd_last_error(), "family"));
    opd_task_config chain = {.seed = 1, .min_steps = 24, .max_steps = 40};  /* hops 0: unused */
    CU_ASSERT_EQUAL(opd_task_config_validate(&chain), 0);
    opd_task_family f;
    CU_ASSERT(opd_task_family_parse("plan", &f) == 0 && f == OPD_TASK_PLAN);
    CU_ASSERT(opd_task_family_parse("chain", &f) == 0 && f == OPD_TASK_CHAIN);
    CU_ASSERT_EQUAL(opd_task_family_parse("tree", &f), -1);
    CU_ASSERT_STRING_EQUAL(opd_task_family_name(OPD_TASK_PLAN), "plan");
    /* an unvalidated config is clamped into range, as the chain's */
    opd_task_config wild = {.seed = 3, .min_steps = -5, .max_steps = 1000, .family = OPD_TASK_PLAN, .hops = 99};
    opd_task t;
    opd_task_generate(&wild, OPD_SPLIT_TRAIN, 0, &t);
    CU_ASSERT_EQUAL(opd_task_verify(t.prompt, t.solution), 1);
    CU_ASSERT(t.steps >= 1 && t.steps <= OPD_TASK_PLAN_MAX_STEPS);
}

/* shift: every answer verifies; the solution is the chain's from s + 1,
 * byte for byte; the marker tells it apart; the decision decides; the
 * CSV reader takes it; the example of opd_data.h */
static void test_shift(void) {
    int checked = 0, bad = 0;
    for (uint64_t seed = 0; seed < 3; seed++)
        for (int steps = 1; steps <= OPD_TASK_SHIFT_MAX_STEPS; steps++)
            for (int split = 0; split < 3; split++)
                for (int i = 0; i < 2; i++) {
                    opd_task_config c = {.seed = seed, .min_steps = steps, .max_steps = steps,
                                         .family = OPD_TASK_SHIFT};
                    CU_ASSERT_EQUAL(opd_task_config_validate(&c), 0);
                    opd_task t;
                    opd_task_generate(&c, (opd_split)split, i, &t);
                    size_t len = strlen(t.prompt);
                    /* the same chain written the chain's way, from s + 1 */
                    char chain[OPD_TASK_PROMPT_MAX], chain_sol[OPD_TASK_SOLUTION_MAX], ref[OPD_TASK_SOLUTION_MAX];
                    memcpy(chain, t.prompt, len - 2);
                    chain[0] = (char)('0' + (t.prompt[0] - '0' + 1) % 10);
                    chain[len - 2] = '>';
                    chain[len - 1] = 0;
                    int chain_ans = opd_task_solve(chain, chain_sol, sizeof chain_sol, NULL);
                    int n = 0, ans = opd_task_solve(t.prompt, ref, sizeof ref, &n);
                    /* a wrong start (s itself, the chain habit) is a wrong answer */
                    char habit[OPD_TASK_PROMPT_MAX], habit_sol[OPD_TASK_SOLUTION_MAX];
                    memcpy(habit, chain, len);
                    habit[0] = t.prompt[0];
                    int habit_ans = opd_task_solve(habit, habit_sol, sizeof habit_sol, NULL);
                    int ok = t.steps == steps && n == steps && ans == t.answer &&
                             strcmp(ref, t.solution) == 0 && strcmp(chain_sol, t.solution) == 0 &&
                             chain_ans == t.answer && habit_ans != t.answer &&
                             opd_task_verify(t.prompt, t.solution) == 1 &&
                             opd_task_verify(t.prompt, habit_sol) == 0 &&
                             opd_task_first_error(t.prompt, habit_sol) == 1 &&
                             opd_task_family_of(t.prompt) == OPD_TASK_SHIFT &&
                             opd_task_family_of(chain) == OPD_TASK_CHAIN &&
                             (int)len == opd_task_prompt_len(steps) + 1 && len < OPD_TASK_PROMPT_MAX &&
                             t.prompt[len - 2] == '=' && opd_task_split_of(t.prompt) == (opd_split)split;
                    if (!ok && bad++ < 3) printf("\n      FAIL %s / %s", t.prompt, t.solution);
                    checked++;
                }
    printf("\n      %d shift problems verified, %d failed", checked, bad);
    CU_ASSERT_EQUAL(bad, 0);
    char sol[64];
    CU_ASSERT_EQUAL(opd_task_solve("4a+7b*3c-5=>", sol, sizeof sol, NULL), 1);
    CU_ASSERT_STRING_EQUAL(sol, "a5+7=2b2*3=6c6-5=1>1");
    opd_task_config c = {.seed = 1, .min_steps = 1, .max_steps = OPD_TASK_MAX_STEPS, .family = OPD_TASK_SHIFT};
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), -1);
    opd_task_family f;
    CU_ASSERT_EQUAL(opd_task_family_parse("shift", &f), 0);
    CU_ASSERT_EQUAL(f, OPD_TASK_SHIFT);
    CU_ASSERT_STRING_EQUAL(opd_task_family_name(OPD_TASK_SHIFT), "shift");
    /* through the checked CSV reader */
    opd_task_config d = {.seed = 5, .min_steps = 4, .max_steps = 10, .family = OPD_TASK_SHIFT};
    opd_task *ts = opd_dataset_generate(&d, OPD_SPLIT_TRAIN, 50), *back = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/shift.csv", tmpdir);
    int nb = 0;
    CU_ASSERT_EQUAL(opd_dataset_write_csv(path, ts, 50), 0);
    CU_ASSERT_EQUAL(opd_dataset_read_csv(path, &back, &nb), 0);
    CU_ASSERT_EQUAL(nb, 50);
    if (back && nb == 50) CU_ASSERT_STRING_EQUAL(back[7].prompt, ts[7].prompt);
    remove(path);
    opd_dataset_free(ts);
    if (back) opd_dataset_free(back);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/opd-test-family-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case families[] = {
        {"chain family byte-identical to before the plan family", test_chain_unchanged},
        {"plan: every reference solution verifies, v0 at the decision", test_plan_answers_verify},
        {"plan: the decision decides the answer; no shortcut; inside rho = 0.1", test_plan_decision_decides},
        {"plan: reproducible, keyed apart from the chain", test_plan_reproducible_and_keyed},
        {"plan: train / valid / test disjoint", test_plan_splits_disjoint},
        {"plan: same vocabulary; CSV round trip through the checked reader", test_plan_vocabulary_and_csv},
        {"plan: malformed prompts and configs refused", test_plan_malformed_and_config},
        {"plan: --chase writes the chase out, answers verify", test_plan_chase},
        {"shift: the chain from s + 1, the habit s wrong at character 1, answers verify", test_shift},
        {0, 0}};
    opd_test_suite("task families", families);
    int rc = opd_test_run();
    rmdir(tmpdir);
    return rc;
}
