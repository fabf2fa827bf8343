/* test_data.c — the task generator, the scorer, the tokenizer and CSV I/O.
 * Reads data/vocab.txt from $OPD_SRCDIR (set by make check); writes its
 * files in a fresh directory under $TMPDIR (or /tmp) and removes them. */
#define _GNU_SOURCE
#include "opd_data.h"
#include "testutil.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

static char tmpdir[512];

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    *len = got;
    return buf;
}

/* The last error must contain every one of the NULL-terminated substrings. */
static int error_has(const char *first, ...) {
    const char *msg = opd_last_error();
    va_list ap;
    va_start(ap, first);
    int ok = 1;
    for (const char *s = first; s; s = va_arg(ap, const char *))
        if (!strstr(msg, s)) ok = 0;
    va_end(ap);
    printf("\n      error: %s", msg);
    return ok;
}

/* ------------------------------------------------------------- tokenizer */
static void test_tokenizer_roundtrip(void) {
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    CU_ASSERT_EQUAL(tok.vocab_size, 64);
    CU_ASSERT_STRING_EQUAL(tok.token[OPD_PAD_ID], "<pad>");
    CU_ASSERT_STRING_EQUAL(tok.token[OPD_BOS_ID], "<bos>");
    CU_ASSERT_STRING_EQUAL(tok.token[OPD_EOS_ID], "<eos>");
    opd_task_config c;
    opd_task_config_default(&c);
    int ids[512], n_ok = 0;
    char text[512];
    for (int i = 0; i < 100; i++) {
        opd_task t;
        opd_task_generate(&c, OPD_SPLIT_TRAIN, i, &t);
        int np = opd_tok_encode(&tok, t.prompt, 1, 0, ids, 512);
        CU_ASSERT_EQUAL(np, (int)strlen(t.prompt) + 1);
        CU_ASSERT_EQUAL(ids[0], OPD_BOS_ID);
        int nd = opd_tok_decode(&tok, ids, np, text, sizeof text);
        CU_ASSERT_EQUAL(nd, (int)strlen(t.prompt));
        CU_ASSERT_STRING_EQUAL(text, t.prompt);
        /* a rollout: solution, <eos>, then padding that must not decode */
        int ns = opd_tok_encode(&tok, t.solution, 0, 1, ids, 512);
        CU_ASSERT_EQUAL(ns, (int)strlen(t.solution) + 1);
        CU_ASSERT_EQUAL(ids[ns - 1], OPD_EOS_ID);
        int ok = 1;
        for (int j = 0; j < ns - 1; j++) ok &= ids[j] >= 3 && ids[j] < tok.vocab_size;
        CU_ASSERT(ok);
        ids[ns] = tok.char_to_id['7'];  /* junk after EOS is not decoded */
        ids[ns + 1] = OPD_PAD_ID;
        opd_tok_decode(&tok, ids, ns + 2, text, sizeof text);
        CU_ASSERT_STRING_EQUAL(text, t.solution);
        CU_ASSERT_EQUAL(opd_task_verify(t.prompt, text), 1);
        n_ok += strcmp(text, t.solution) == 0;
    }
    printf("\n      vocab %d tokens, %d/100 prompt+solution round trips exact", tok.vocab_size, n_ok);
}

static void test_tokenizer_errors(void) {
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    int ids[64];
    CU_ASSERT_EQUAL(opd_tok_encode(&tok, "4a+7?", 0, 0, ids, 64), -1);
    CU_ASSERT(error_has("unknown character '?'", "position 4", NULL));
    CU_ASSERT_EQUAL(opd_tok_encode(&tok, "4a\x01", 1, 0, ids, 64), -1);
    CU_ASSERT(error_has("0x01", "position 2", NULL));
    CU_ASSERT_EQUAL(opd_tok_encode(&tok, "4a+7>", 1, 1, ids, 6), -1);
    CU_ASSERT(error_has("do not fit", NULL));
    CU_ASSERT_EQUAL(opd_tok_encode(&tok, "4a+7>", 1, 1, ids, 7), 7);
    char out[8];
    int bad[3] = {5, 64, 6};
    CU_ASSERT_EQUAL(opd_tok_decode(&tok, bad, 3, out, sizeof out), -1);
    CU_ASSERT(error_has("id 64", "position 1", NULL));
    int many[10] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    CU_ASSERT_EQUAL(opd_tok_decode(&tok, many, 10, out, sizeof out), -1);
    CU_ASSERT(error_has("does not fit", NULL));
}

static void vocab_src_path(char *out, size_t cap) {
    const char *src = getenv("OPD_SRCDIR");
    snprintf(out, cap, "%s/data/vocab.txt", src ? src : ".");
}

static void test_vocab_file_matches_builtin(void) {
    char path[1024], saved[1024];
    vocab_src_path(path, sizeof path);
    opd_tokenizer builtin, file, again;
    opd_tokenizer_default(&builtin);
    int rc = opd_tokenizer_load(&file, path);
    if (rc != 0) printf("\n      %s", opd_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(file.vocab_size, builtin.vocab_size);
    CU_ASSERT(opd_tokenizer_equal(&file, &builtin));
    int same_map = 1;
    for (int ch = 0; ch < 256; ch++) same_map &= file.char_to_id[ch] == builtin.char_to_id[ch];
    CU_ASSERT(same_map);
    /* saving the built-in vocabulary reproduces the file byte for byte */
    tmp_path(saved, sizeof saved, "saved_vocab.txt");
    CU_ASSERT_EQUAL(opd_tokenizer_save(&builtin, saved), 0);
    size_t la = 0, lb = 0;
    char *a = slurp(path, &la), *b = slurp(saved, &lb);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    CU_ASSERT_EQUAL(opd_tokenizer_load(&again, saved), 0);
    CU_ASSERT(opd_tokenizer_equal(&again, &builtin));
    printf("\n      %s: %d tokens, identical to the built-in vocabulary", path, file.vocab_size);
}

static void expect_vocab_error(const char *name, const char *text, const char *s1, const char *s2) {
    char path[1024], where[1100];
    tmp_path(path, sizeof path, name);
    write_text(path, text);
    opd_tokenizer tok;
    CU_ASSERT_EQUAL(opd_tokenizer_load(&tok, path), -1);
    snprintf(where, sizeof where, "%s", name);
    CU_ASSERT(error_has(where, s1, s2, NULL));
}

static void test_vocab_file_errors(void) {
    opd_tokenizer tok;
    CU_ASSERT_EQUAL(opd_tokenizer_load(&tok, "/nonexistent/dir/vocab.txt"), -1);
    CU_ASSERT(error_has("/nonexistent/dir/vocab.txt", "cannot open", NULL));
    expect_vocab_error("v_empty.txt", "<pad>\n<bos>\n<eos>\na\n\nb\n", "v_empty.txt:5", "empty line");
    expect_vocab_error("v_dup.txt", "<pad>\n<bos>\n<eos>\na\nb\na\n", "v_dup.txt:6",
                       "duplicate token 'a' (already on line 4)");
    expect_vocab_error("v_multi.txt", "<pad>\n<bos>\n<eos>\nab\n", "v_multi.txt:4", "2 characters");
    expect_vocab_error("v_order.txt", "a\n<pad>\n<bos>\n<eos>\n", "v_order.txt:1", "<pad>");
    expect_vocab_error("v_special.txt", "<pad>\n<bos>\n<eos>\n<unk>\n", "v_special.txt:4",
                       "special token \"<unk>\"");
    expect_vocab_error("v_short.txt", "<pad>\n<bos>\n", "v_short.txt", "2 line(s)");
    expect_vocab_error("v_ctrl.txt", "<pad>\n<bos>\n<eos>\n\x01\n", "v_ctrl.txt:4", "printable");
    char big[1024];
    size_t len = (size_t)sprintf(big, "<pad>\n<bos>\n<eos>\n");
    for (int i = 0; i < 62; i++) len += (size_t)sprintf(big + len, "%c\n", '!' + i);
    expect_vocab_error("v_big.txt", big, "v_big.txt:65", "too many tokens");
    /* CRLF files load: the \r is not part of the token */
    char path[1024];
    tmp_path(path, sizeof path, "v_crlf.txt");
    write_text(path, "<pad>\r\n<bos>\r\n<eos>\r\nx\r\ny");
    CU_ASSERT_EQUAL(opd_tokenizer_load(&tok, path), 0);
    CU_ASSERT_EQUAL(tok.vocab_size, 5);
    CU_ASSERT_EQUAL(tok.char_to_id['y'], 4);
}

/* ------------------------------------------------------------- generator */
static void test_generator_answers_verify(void) {
    int checked = 0, bad = 0, hist[10] = {0};
    for (uint64_t seed = 0; seed < 8; seed++)
        for (int steps = 1; steps <= OPD_TASK_MAX_STEPS; steps++)
            for (int split = 0; split < 3; split++)
                for (int i = 0; i < 4; i++) {
                    opd_task_config c = {.seed = seed, .min_steps = steps, .max_steps = steps};
                    opd_task t;
                    opd_task_generate(&c, (opd_split)split, i, &t);
                    char ref[OPD_TASK_SOLUTION_MAX];
                    int n = 0;
                    int ans = opd_task_solve(t.prompt, ref, sizeof ref, &n);
                    int ok = t.steps == steps && n == steps && ans == t.answer &&
                             strcmp(ref, t.solution) == 0 &&
                             opd_task_verify(t.prompt, t.solution) == 1 &&
                             opd_task_answer(t.solution) == t.answer &&
                             (int)strlen(t.prompt) == opd_task_prompt_len(steps) &&
                             (int)strlen(t.solution) == opd_task_solution_len(steps) &&
                             t.id == i;
                    if (!ok && bad++ < 3) printf("\n      FAIL %s / %s", t.prompt, t.solution);
                    checked++;
                }
    CU_ASSERT_EQUAL(bad, 0);
    /* answers are uniform over the digits (every step is a bijection) */
    opd_task_config c;
    opd_task_config_default(&c);
    int n = 5000;
    opd_task *ts = opd_dataset_generate(&c, OPD_SPLIT_TRAIN, n);
    for (int i = 0; i < n; i++) hist[ts[i].answer]++;
    double chi2 = 0;
    for (int d = 0; d < 10; d++) chi2 += (hist[d] - n / 10.0) * (hist[d] - n / 10.0) / (n / 10.0);
    opd_dataset_free(ts);
    printf("\n      %d problems (8 seeds x steps 1..%d x 3 splits x 4) verified, %d failed",
           checked, OPD_TASK_MAX_STEPS, bad);
    printf("\n      answer histogram over %d: ", n);
    for (int d = 0; d < 10; d++) printf("%d ", hist[d]);
    printf(" chi2(9 dof) = %.1f", chi2);
    CU_ASSERT(chi2 < 30.0);  /* p ~ 4e-4 under uniform */
}

static void test_generator_reproducible(void) {
    opd_task_config c;
    opd_task_config_default(&c);
    opd_task *a = opd_dataset_generate(&c, OPD_SPLIT_TEST, 100);
    opd_task one;
    opd_task_generate(&c, OPD_SPLIT_TEST, 57, &one);  /* alone, out of order */
    CU_ASSERT(memcmp(&one, &a[57], sizeof one) == 0);
    char p1[1024], p2[1024], p3[1024];
    tmp_path(p1, sizeof p1, "repro1.csv");
    tmp_path(p2, sizeof p2, "repro2.csv");
    tmp_path(p3, sizeof p3, "repro3.csv");
    opd_task *b = opd_dataset_generate(&c, OPD_SPLIT_TEST, 100);
    opd_task_config c2 = c;
    c2.seed = c.seed + 1;
    opd_task *d = opd_dataset_generate(&c2, OPD_SPLIT_TEST, 100);
    CU_ASSERT_EQUAL(opd_dataset_write_csv(p1, a, 100), 0);
    CU_ASSERT_EQUAL(opd_dataset_write_csv(p2, b, 100), 0);
    CU_ASSERT_EQUAL(opd_dataset_write_csv(p3, d, 100), 0);
    size_t l1 = 0, l2 = 0, l3 = 0;
    char *f1 = slurp(p1, &l1), *f2 = slurp(p2, &l2), *f3 = slurp(p3, &l3);
    CU_ASSERT_FATAL(f1 && f2 && f3);
    CU_ASSERT(l1 == l2 && memcmp(f1, f2, l1) == 0);
    CU_ASSERT(!(l1 == l3 && memcmp(f1, f3, l1) == 0));
    int same = 0;
    for (int i = 0; i < 100; i++) same += strcmp(a[i].prompt, d[i].prompt) == 0;
    CU_ASSERT_EQUAL(same, 0);
    printf("\n      same seed: %zu identical CSV bytes; seed+1: %d/100 prompts in common", l1, same);
    free(f1); free(f2); free(f3);
    opd_dataset_free(a); opd_dataset_free(b); opd_dataset_free(d);
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Sorted prompt pointers; returns the number of distinct prompts. */
static int sorted_prompts(const opd_task *t, int n, const char **out) {
    for (int i = 0; i < n; i++) out[i] = t[i].prompt;
    qsort(out, (size_t)n, sizeof *out, cmp_str);
    int distinct = n > 0;
    for (int i = 1; i < n; i++) distinct += strcmp(out[i], out[i - 1]) != 0;
    return distinct;
}

static int common_prompts(const char **a, int na, const char **b, int nb) {
    int i = 0, j = 0, common = 0;
    while (i < na && j < nb) {
        int r = strcmp(a[i], b[j]);
        if (r == 0) { common++; i++; j++; }
        else if (r < 0) i++;
        else j++;
    }
    return common;
}

static void test_splits_disjoint(void) {
    /* 1..2 steps: ~4600 possible prompts, so a split-unaware generator would
     * collide often; the partition must keep the splits apart anyway */
    for (int pass = 0; pass < 2; pass++) {
        opd_task_config c;
        opd_task_config_default(&c);
        if (pass == 0) { c.min_steps = 1; c.max_steps = 2; }
        int n[3] = {3000, 600, 600};
        opd_task *t[3];
        const char **s[3];
        int distinct[3], wrong_part = 0;
        for (int k = 0; k < 3; k++) {
            t[k] = opd_dataset_generate(&c, (opd_split)k, n[k]);
            s[k] = malloc((size_t)n[k] * sizeof *s[k]);
            distinct[k] = sorted_prompts(t[k], n[k], s[k]);
            for (int i = 0; i < n[k]; i++) wrong_part += opd_task_split_of(t[k][i].prompt) != (opd_split)k;
        }
        int tr_va = common_prompts(s[0], n[0], s[1], n[1]);
        int tr_te = common_prompts(s[0], n[0], s[2], n[2]);
        int va_te = common_prompts(s[1], n[1], s[2], n[2]);
        printf("\n      steps [%d,%d]: distinct prompts train %d/%d valid %d/%d test %d/%d; "
               "common train-valid %d train-test %d valid-test %d",
               c.min_steps, c.max_steps, distinct[0], n[0], distinct[1], n[1], distinct[2], n[2],
               tr_va, tr_te, va_te);
        CU_ASSERT_EQUAL(wrong_part, 0);
        CU_ASSERT_EQUAL(tr_va, 0);
        CU_ASSERT_EQUAL(tr_te, 0);
        CU_ASSERT_EQUAL(va_te, 0);
        if (pass == 0) CU_ASSERT(distinct[0] < n[0]);  /* the small space does repeat */
        for (int k = 0; k < 3; k++) { free(s[k]); opd_dataset_free(t[k]); }
    }
}

static void test_length_grows_with_difficulty(void) {
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    static const int levels[] = {4, 8, 16, 24, 32, 40, 46};
    double prev = 0;
    int ids[512];
    printf("\n      steps  prompt_tokens  solution_tokens (mean over 200, <bos>/<eos> included)");
    for (int l = 0; l < 7; l++) {
        opd_task_config c = {.seed = 99, .min_steps = levels[l], .max_steps = levels[l]};
        double sp = 0, ss = 0;
        for (int i = 0; i < 200; i++) {
            opd_task t;
            opd_task_generate(&c, OPD_SPLIT_TRAIN, i, &t);
            sp += opd_tok_encode(&tok, t.prompt, 1, 0, ids, 512);
            ss += opd_tok_encode(&tok, t.solution, 0, 1, ids, 512);
        }
        sp /= 200;
        ss /= 200;
        printf("\n      %5d  %13.1f  %15.1f", levels[l], sp, ss);
        CU_ASSERT(ss > prev);
        CU_ASSERT_DOUBLE_EQUAL(ss, 6.0 * levels[l] + 3, 1e-9);
        prev = ss;
    }
    /* the default knob: solutions of a few hundred tokens, lengths varying */
    opd_task_config c;
    opd_task_config_default(&c);
    int lo = 1 << 30, hi = 0, steps_lo = 1 << 30, steps_hi = 0;
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        opd_task t;
        opd_task_generate(&c, OPD_SPLIT_TRAIN, i, &t);
        int n = opd_tok_encode(&tok, t.solution, 0, 1, ids, 512);
        mean += n;
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
        steps_lo = t.steps < steps_lo ? t.steps : steps_lo;
        steps_hi = t.steps > steps_hi ? t.steps : steps_hi;
    }
    mean /= 1000;
    printf("\n      default steps [%d, %d]: solution tokens min %d mean %.1f max %d", c.min_steps,
           c.max_steps, lo, mean, hi);
    CU_ASSERT_EQUAL(steps_lo, c.min_steps);
    CU_ASSERT_EQUAL(steps_hi, c.max_steps);
    CU_ASSERT(mean > 150 && mean < 300);
}

/* ------------------------------------------------------------------ CSV */
static void test_dataset_csv_roundtrip(void) {
    opd_task_config c;
    opd_task_config_default(&c);
    c.min_steps = 1;
    c.max_steps = OPD_TASK_MAX_STEPS;
    int n = 300;
    opd_task *a = opd_dataset_generate(&c, OPD_SPLIT_VALID, n);
    char path[1024];
    tmp_path(path, sizeof path, "valid.csv");
    CU_ASSERT_EQUAL_FATAL(opd_dataset_write_csv(path, a, n), 0);
    size_t len = 0;
    char *text = slurp(path, &len);
    CU_ASSERT_FATAL(text != NULL);
    CU_ASSERT(strncmp(text, "id,steps,prompt,solution,answer\n", 32) == 0);
    opd_task *b = NULL;
    int nb = 0;
    int rc = opd_dataset_read_csv(path, &b, &nb);
    if (rc) printf("\n      %s", opd_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(nb, n);
    int same = 0;
    for (int i = 0; i < n && i < nb; i++)
        same += a[i].id == b[i].id && a[i].steps == b[i].steps && a[i].answer == b[i].answer &&
                strcmp(a[i].prompt, b[i].prompt) == 0 && strcmp(a[i].solution, b[i].solution) == 0;
    CU_ASSERT_EQUAL(same, n);
    printf("\n      %d problems, %zu bytes, %d rows identical after read", n, len, same);
    free(text);
    opd_dataset_free(a);
    opd_dataset_free(b);
    /* an empty dataset is a header only */
    CU_ASSERT_EQUAL(opd_dataset_write_csv(path, NULL, 0), 0);
    CU_ASSERT_EQUAL(opd_dataset_read_csv(path, &b, &nb), 0);
    CU_ASSERT_EQUAL(nb, 0);
    opd_dataset_free(b);
}

static void test_csv_log_roundtrip(void) {
    static const char *const header[3] = {"step", "loss", "note"};
    static const char *const notes[7] = {"plain", "a,b", "say \"hi\"", "two\nlines",
                                         " padded ", "", "crlf\r\nend"};
    const float losses[7] = {0.1f, 1e-30f, 3.14159274f, -2.5f, 65504.0f, 1.17549435e-38f, 0.0f};
    char path[1024];
    tmp_path(path, sizeof path, "metrics.csv");
    opd_csv_log w;
    CU_ASSERT_EQUAL_FATAL(opd_csv_log_open(&w, path, header, 3), 0);
    for (int i = 0; i < 7; i++) {
        CU_ASSERT_EQUAL(opd_csv_log_int(&w, i), 0);
        CU_ASSERT_EQUAL(opd_csv_log_num(&w, losses[i]), 0);
        CU_ASSERT_EQUAL(opd_csv_log_str(&w, notes[i]), 0);
        CU_ASSERT_EQUAL(opd_csv_log_end_row(&w), 0);
        if (i == 2) {
            /* a live view: after a flush the file holds the rows so far */
            CU_ASSERT_EQUAL(opd_csv_log_flush(&w), 0);
            opd_csv_table t;
            CU_ASSERT_EQUAL(opd_csv_read(path, &t), 0);
            CU_ASSERT_EQUAL(t.nrows, 4);
            opd_csv_table_free(&t);
        }
    }
    /* a short row is refused and dropped; a cell too many is refused */
    CU_ASSERT_EQUAL(opd_csv_log_int(&w, 99), 0);
    CU_ASSERT_EQUAL(opd_csv_log_end_row(&w), -1);
    CU_ASSERT(error_has("metrics.csv", "row 8 has 1 cells, the header has 3", NULL));
    for (int k = 0; k < 3; k++) opd_csv_log_int(&w, k);
    CU_ASSERT_EQUAL(opd_csv_log_int(&w, 3), -1);
    CU_ASSERT(error_has("more than 3 cells", NULL));
    CU_ASSERT_EQUAL(opd_csv_log_end_row(&w), 0);
    CU_ASSERT_EQUAL(opd_csv_log_close(&w), 0);

    opd_csv_table t;
    int rc = opd_csv_read(path, &t);
    if (rc) printf("\n      %s", opd_last_error());
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(t.ncols, 3);
    CU_ASSERT_EQUAL_FATAL(t.nrows, 9);
    CU_ASSERT_STRING_EQUAL(t.cell[0], "step");
    CU_ASSERT_STRING_EQUAL(t.cell[2], "note");
    int exact = 0;
    double max_abs = 0;
    for (int i = 0; i < 7; i++) {
        char **r = t.cell + (size_t)(i + 1) * 3;
        float back = strtof(r[1], NULL);
        double d = fabs((double)back - (double)losses[i]);
        max_abs = d > max_abs ? d : max_abs;
        exact += atoi(r[0]) == i && back == losses[i] && strcmp(r[2], notes[i]) == 0;
        if (strcmp(r[2], notes[i]) != 0) printf("\n      note %d: got \"%s\"", i, r[2]);
    }
    CU_ASSERT_EQUAL(exact, 7);
    /* records start on lines 1..: "two\nlines" and "crlf\r\nend" span two lines */
    static const int want_line[9] = {1, 2, 3, 4, 5, 7, 8, 9, 11};
    int lines_ok = 1;
    for (int i = 0; i < 9; i++) lines_ok &= t.line[i] == want_line[i];
    CU_ASSERT(lines_ok);
    printf("\n      %d/7 rows identical (strings with , \" \\n \\r\\n, spaces, empty); float max "
           "abs err %.3g; record lines ok %d", exact, max_abs, lines_ok);
    opd_csv_table_free(&t);
    /* a log in a missing directory fails at open, naming the path */
    CU_ASSERT_EQUAL(opd_csv_log_open(&w, "/nonexistent/dir/m.csv", header, 3), -1);
    CU_ASSERT(error_has("/nonexistent/dir/m.csv", NULL));
}

/* opd_csv_log_init leaves an existing file as it is until the first flush
 * (a resumed run re-adds the old rows before anything is written); the
 * readers refuse a directory or a FIFO by name instead of reading it. */
static void test_csv_log_init_and_special_inputs(void) {
    static const char *const header[2] = {"step", "loss"};
    char path[1024];
    tmp_path(path, sizeof path, "resumed.csv");
    write_text(path, "step,loss\n0,1.5\n1,1.25\n");
    opd_csv_log w;
    CU_ASSERT_EQUAL_FATAL(opd_csv_log_init(&w, path, header, 2), 0);
    size_t n;
    char *before = slurp(path, &n);
    CU_ASSERT(before && strcmp(before, "step,loss\n0,1.5\n1,1.25\n") == 0);
    free(before);
    CU_ASSERT_EQUAL(opd_csv_log_str(&w, "0"), 0);
    CU_ASSERT_EQUAL(opd_csv_log_str(&w, "1.5"), 0);
    CU_ASSERT_EQUAL(opd_csv_log_end_row(&w), 0);
    CU_ASSERT_EQUAL(opd_csv_log_close(&w), 0);
    char *after = slurp(path, &n);
    CU_ASSERT(after && strcmp(after, "step,loss\n0,1.5\n") == 0);
    free(after);

    opd_task *t = NULL;
    int nt = -1;
    CU_ASSERT_EQUAL(opd_dataset_read_csv(tmpdir, &t, &nt), -1);
    CU_ASSERT(error_has(tmpdir, "is a directory, not a regular file", NULL));
    char fifo[1024];
    tmp_path(fifo, sizeof fifo, "fifo.csv");
    CU_ASSERT_FATAL(mkfifo(fifo, 0600) == 0);
    CU_ASSERT_EQUAL(opd_dataset_read_csv(fifo, &t, &nt), -1);   /* at once, no blocking */
    CU_ASSERT(error_has("fifo.csv", "is a FIFO (named pipe), not a regular file", NULL));
    opd_tokenizer tok;
    CU_ASSERT_EQUAL(opd_tokenizer_load(&tok, fifo), -1);
    CU_ASSERT(error_has("fifo.csv", "is a FIFO", NULL));
    unlink(fifo);
}

/* Write `text` as `name`, read it as a dataset: must fail with an error
 * naming "name:line" and containing `what`. */
static void expect_dataset_error(const char *name, const char *text, int line, const char *what) {
    char path[1024], where[1100];
    tmp_path(path, sizeof path, name);
    write_text(path, text);
    opd_task *t = NULL;
    int n = -1;
    CU_ASSERT_EQUAL(opd_dataset_read_csv(path, &t, &n), -1);
    CU_ASSERT(t == NULL && n == 0);
    snprintf(where, sizeof where, "%s:%d:", path, line);
    CU_ASSERT(error_has(where, what, NULL));
}

#define HDR "id,steps,prompt,solution,answer\n"
#define ROW0 "0,3,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8>8,8\n"
#define ROW1 "1,1,2a*7>,a2*7=4>4,4\n"

static void test_dataset_csv_errors(void) {
    char path[1024];
    tmp_path(path, sizeof path, "good.csv");
    write_text(path, HDR ROW0 ROW1);
    opd_task *t;
    int n;
    CU_ASSERT_EQUAL(opd_dataset_read_csv(path, &t, &n), 0);
    CU_ASSERT_EQUAL(n, 2);
    opd_dataset_free(t);

    CU_ASSERT_EQUAL(opd_dataset_read_csv("/nonexistent/x.csv", &t, &n), -1);
    CU_ASSERT(error_has("/nonexistent/x.csv", "cannot open", NULL));
    expect_dataset_error("empty.csv", "", 1, "empty file");
    expect_dataset_error("noheader.csv", ROW0 ROW1, 1, "missing header");
    expect_dataset_error("badheader.csv", "id,steps,prompt,answer,solution\n" ROW0, 1,
                         "wrong header");
    expect_dataset_error("shortheader.csv", "id,steps,prompt,solution\n" ROW0, 1, "wrong header");
    expect_dataset_error("columns.csv", HDR ROW0 "1,1,2a*7>,a2*7=4>4\n", 3,
                         "4 columns, the header has 5");
    expect_dataset_error("columns6.csv", HDR ROW0 ROW1 "2,1,2a*7>,a2*7=4>4,4,x\n", 4, "6 columns");
    expect_dataset_error("badint.csv", HDR "0,x3,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8>8,8\n", 2,
                         "column 'steps': \"x3\" is not an integer");
    expect_dataset_error("badid.csv", HDR ROW0 "1.5,1,2a*7>,a2*7=4>4,4\n", 3, "column 'id'");
    expect_dataset_error("bigans.csv", HDR ROW0 "1,1,2a*7>,a2*7=4>4,14\n", 3, "column 'answer'");
    expect_dataset_error("quote.csv", HDR ROW0 "1,1,2a*7\">,a2*7=4>4,4\n", 3, "CSV quoting error");
    expect_dataset_error("quote2.csv", HDR ROW0 "1,1,\"2a*7>\"x,a2*7=4>4,4\n", 3, "quoting error");
    expect_dataset_error("unterminated.csv", HDR ROW0 "1,1,\"2a*7>,a2*7=4>4,4\n2,1,x\n", 3,
                         "unterminated quoted field");
    /* CRLF and a blank line still count as lines */
    expect_dataset_error("crlf.csv",
                         "id,steps,prompt,solution,answer\r\n0,3,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8>8,8"
                         "\r\n\r\n1,1,2a*7>,a2*7=4>4,5\r\n", 4, "answer 5 does not verify");
    /* a quoted field spanning two lines: the next record starts two lines on */
    expect_dataset_error("multiline.csv", HDR "0,3,\"4a+7\nb*3c-5>\",a4,8\n" ROW1 "2,1,x,y,1\n", 2,
                         "found 0x0a");
    expect_dataset_error("answer.csv", HDR ROW0 ROW1 "2,3,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8>8,7\n", 4,
                         "answer 7 does not verify: the prompt's answer is 8");
    expect_dataset_error("solution.csv", HDR ROW0 "1,3,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8>3,8\n", 3,
                         "final answer does not verify");
    expect_dataset_error("truncated.csv", HDR ROW0 "1,3,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8,8\n", 3,
                         "final answer does not verify");
    expect_dataset_error("steps.csv", HDR ROW0 "1,4,4a+7b*3c-5>,a4+7=1b1*3=3c3-5=8>8,8\n", 3,
                         "steps is 4 but the prompt has 3 steps");
    expect_dataset_error("prompt.csv", HDR "0,3,4a+7c*3c-5>,a4+7=1b1*3=3c3-5=8>8,8\n", 2,
                         "expected label 'b' of step 2, found 'c'");
    expect_dataset_error("midstep.csv", HDR ROW0 "1,3,4a+7b*3c-5>,a4+7=1b1*3=9c3-5=8>8,8\n", 3,
                         "differs from the reference solution at character 11");
    char longrow[2048];
    snprintf(longrow, sizeof longrow, HDR "0,3,%0300d,x,1\n", 7);
    expect_dataset_error("long.csv", longrow, 2, "prompt of 300 characters is too long");

    /* the generic reader: column count after a multi-line record */
    tmp_path(path, sizeof path, "generic.csv");
    write_text(path, "x,y\n\"a\nb\",1\n1,2,3\n");
    opd_csv_table tb;
    CU_ASSERT_EQUAL(opd_csv_read(path, &tb), -1);
    char where[1100];
    snprintf(where, sizeof where, "%s:4:", path);
    CU_ASSERT(error_has(where, "3 columns, the header has 2", NULL));
}

/* ---------------------------------------------------------------- scorer */
static void test_scorer(void) {
    const char *prompt = "4a+7b*3c-5>";
    char sol[OPD_TASK_SOLUTION_MAX];
    int steps = 0;
    /* 4+7 = 11 -> 1; 1*3 = 3; 3-5 = -2 -> 8 */
    CU_ASSERT_EQUAL(opd_task_solve(prompt, sol, sizeof sol, &steps), 8);
    CU_ASSERT_EQUAL(steps, 3);
    CU_ASSERT_STRING_EQUAL(sol, "a4+7=1b1*3=3c3-5=8>8");
    CU_ASSERT_EQUAL(opd_task_answer(sol), 8);
    CU_ASSERT_EQUAL(opd_task_verify(prompt, sol), 1);
    CU_ASSERT_EQUAL(opd_task_verify(prompt, "a4+7=1b1*3=3c3-5=8>7"), 0);   /* wrong */
    CU_ASSERT_EQUAL(opd_task_verify(prompt, "a4+7=1b1*3"), 0);             /* truncated */
    CU_ASSERT_EQUAL(opd_task_verify(prompt, "a4+7=1b1*3=3c3-5=8"), 0);     /* no '>' */
    CU_ASSERT_EQUAL(opd_task_verify(prompt, "a4+7=1b1*3=3c3-5=8>"), 0);    /* cut at '>' */
    CU_ASSERT_EQUAL(opd_task_verify(prompt, "a4+7=1b1*3=3c3-5=8>8d"), 0);  /* trailing text */
    CU_ASSERT_EQUAL(opd_task_verify(prompt, ""), 0);
    CU_ASSERT_EQUAL(opd_task_verify(prompt, ">8"), 1);  /* final answer only, by design */
    CU_ASSERT_EQUAL(opd_task_answer("a4+7=1>3>5"), 5);
    CU_ASSERT_EQUAL(opd_task_answer("a4+7=1>x"), -1);
    CU_ASSERT_EQUAL(opd_task_first_error(prompt, sol), -1);
    CU_ASSERT_EQUAL(opd_task_first_error(prompt, "a4+7=1b1*3=4c4-5=9>9"), 11);
    CU_ASSERT_EQUAL(opd_task_first_error(prompt, "a4+7=1b1*3"), 10);
    CU_ASSERT_EQUAL(opd_task_first_error(prompt, "a4+7=1b1*3=3c3-5=8>8>8"), 20);
    /* malformed prompts are errors, not wrong answers */
    CU_ASSERT_EQUAL(opd_task_verify("4a+7b*3c-5", sol), -1);
    CU_ASSERT(error_has("missing the final '>'", NULL));
    CU_ASSERT_EQUAL(opd_task_verify("4a/7>", sol), -1);
    CU_ASSERT(error_has("expected an operator", "position 2", NULL));
    CU_ASSERT_EQUAL(opd_task_verify("xa+7>", sol), -1);
    CU_ASSERT(error_has("start digit", NULL));
    CU_ASSERT_EQUAL(opd_task_verify("4a+7>9", sol), -1);
    CU_ASSERT(error_has("after the final '>'", NULL));
    CU_ASSERT_EQUAL(opd_task_verify("4>", sol), -1);
    CU_ASSERT(error_has("no steps", NULL));
    CU_ASSERT_EQUAL(opd_task_first_error("4>", sol), -2);
    /* a model-like rollout: the reference with one step wrong scores 0 when
     * the error propagates to the answer */
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    int ids[64];
    int n = opd_tok_encode(&tok, "a4+7=1b1*3=3c3-5=8>8", 0, 1, ids, 64);
    char text[64];
    opd_tok_decode(&tok, ids, n, text, sizeof text);
    CU_ASSERT_EQUAL(opd_task_verify(prompt, text), 1);
    /* splits and the config */
    opd_split s;
    CU_ASSERT(opd_split_parse("test", &s) == 0 && s == OPD_SPLIT_TEST);
    CU_ASSERT_EQUAL(opd_split_parse("dev", &s), -1);
    CU_ASSERT(error_has("unknown split 'dev'", NULL));
    opd_task_config c = {.seed = 1, .min_steps = 5, .max_steps = 4};
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), -1);
    CU_ASSERT(error_has("max_steps 4", NULL));
    c.max_steps = OPD_TASK_MAX_STEPS + 1;
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), -1);
    c.max_steps = OPD_TASK_MAX_STEPS;
    CU_ASSERT_EQUAL(opd_task_config_validate(&c), 0);
    /* an unvalidated config is clamped, never overflows the buffers */
    opd_task_config wild = {.seed = 3, .min_steps = -5, .max_steps = 1000};
    int in_range = 1;
    for (int i = 0; i < 50; i++) {
        opd_task t;
        opd_task_generate(&wild, OPD_SPLIT_TRAIN, i, &t);
        in_range &= t.steps >= 1 && t.steps <= OPD_TASK_MAX_STEPS &&
                    opd_task_verify(t.prompt, t.solution) == 1;
    }
    CU_ASSERT(in_range);
}

/* ----------------------------------------------------------------- main */
static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/opd-test-data-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case tokenizer[] = {
        {"encode/decode round trip of generated problems", test_tokenizer_roundtrip},
        {"unknown character, overflow, bad id", test_tokenizer_errors},
        {"data/vocab.txt equals the built-in vocabulary", test_vocab_file_matches_builtin},
        {"vocabulary file errors name file and line", test_vocab_file_errors},
        {0, 0}};
    static const opd_test_case tasks[] = {
        {"generated answers verify (seeds x lengths x splits)", test_generator_answers_verify},
        {"same seed, same CSV bytes; problem i independent", test_generator_reproducible},
        {"train / valid / test are disjoint", test_splits_disjoint},
        {"solution length grows with the step knob", test_length_grows_with_difficulty},
        {"scorer: correct, wrong, truncated, malformed", test_scorer},
        {0, 0}};
    static const opd_test_case csv[] = {
        {"dataset CSV round trip", test_dataset_csv_roundtrip},
        {"metrics log round trip (quoting, flush, rows)", test_csv_log_roundtrip},
        {"log init writes nothing; directory / FIFO inputs refused", test_csv_log_init_and_special_inputs},
        {"malformed dataset CSVs: file:line in every error", test_dataset_csv_errors},
        {0, 0}};
    opd_test_suite("tokenizer", tokenizer);
    opd_test_suite("tasks", tasks);
    opd_test_suite("csv", csv);
    int rc = opd_test_run();
    remove_tmpdir();
    return rc;
}
