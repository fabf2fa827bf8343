/* test_bpe.c — the tokenizer.json reader on a tiny hand-made fixture
 * (tests/bpe_tiny.json: the 256 byte symbols, ten merges, three added
 * tokens, Qwen2's pre-tokenizer and NFC), its errors, the JSONL prompt files,
 * the chat templates and the last-number verifier. Reads the fixture from
 * $OPD_SRCDIR (set by make check); writes files under a fresh temporary
 * directory and removes them. */
#define _GNU_SOURCE
#include "opd_bpe.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[512];
static char fixture[1024];

static void tmp_path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", tmpdir, name); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
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

/* Encodes text and compares with the expected ids (n of them). */
static int encodes_to(const opd_bpe *t, const char *text, const int *want, int n) {
    int ids[256];
    int got = opd_bpe_encode(t, text, strlen(text), ids, 256, 0);
    if (got != n) { printf("\n      '%s': %d ids, want %d", text, got, n); return 0; }
    for (int i = 0; i < n; i++)
        if (ids[i] != want[i]) { printf("\n      '%s': id %d is %d, want %d", text, i, ids[i], want[i]); return 0; }
    return 1;
}

/* ------------------------------------------------------------ byte map */
static void test_byte_map(void) {
    CU_ASSERT_EQUAL(opd_bpe_byte_char('a'), 'a');
    CU_ASSERT_EQUAL(opd_bpe_byte_char(' '), 0x120);  /* 'Ġ' */
    CU_ASSERT_EQUAL(opd_bpe_byte_char('\n'), 0x10a); /* 'Ċ' */
    CU_ASSERT_EQUAL(opd_bpe_byte_char(0xad), 0x143);
    int seen[324] = {0};
    for (int b = 0; b < 256; b++) {
        int c = opd_bpe_byte_char(b);
        CU_ASSERT(c >= 0 && c < 324);
        CU_ASSERT_EQUAL(seen[c], 0);
        seen[c] = 1;
        CU_ASSERT_EQUAL(opd_bpe_char_byte(c), b);
    }
    CU_ASSERT_EQUAL(opd_bpe_char_byte(' '), -1);
    CU_ASSERT_EQUAL(opd_bpe_char_byte(0x144), -1);
}

/* ------------------------------------------------------------ encode / decode */
static void test_merges_by_rank(void) {
    opd_bpe t;
    CU_ASSERT_FATAL(opd_bpe_load(&t, fixture) == 0);
    CU_ASSERT_EQUAL(t.vocab_size, 269);
    CU_ASSERT_EQUAL(t.n_merges, 10);
    /* "l l" (rank 0) first, then "h e", "he ll", "hell o" */
    CU_ASSERT(encodes_to(&t, "hello", (int[]){260}, 1));
    /* "h e" (rank 1) beats "e l" (rank 2): h e l o -> he l o */
    CU_ASSERT(encodes_to(&t, "helo", (int[]){257, 'l', 'o'}, 3));
    CU_ASSERT(encodes_to(&t, "elo", (int[]){258, 'o'}, 2));
    /* the pre-tokenizer keeps the space with the word; the merges of " world"
     * include the ["a", "b"] form */
    CU_ASSERT(encodes_to(&t, "hello world", (int[]){260, 265}, 2));
    /* a space is byte 0x20 (symbol 'Ġ'), a newline 0x0a */
    CU_ASSERT(encodes_to(&t, "a \n", (int[]){'a', ' ', '\n'}, 3));
    CU_ASSERT(encodes_to(&t, "", NULL, 0));
    /* NFC: e + combining acute is U+00E9, bytes c3 a9 */
    CU_ASSERT(encodes_to(&t, "e\xcc\x81", (int[]){0xc3, 0xa9}, 2));
    opd_bpe_free(&t);
}

static void test_added_tokens(void) {
    opd_bpe t;
    CU_ASSERT_FATAL(opd_bpe_load(&t, fixture) == 0);
    CU_ASSERT_EQUAL(opd_bpe_token_id(&t, "<|end|>"), 266);
    CU_ASSERT_EQUAL(opd_bpe_token_id(&t, "hello"), 260);
    CU_ASSERT_EQUAL(opd_bpe_token_id(&t, " world"), 265);
    CU_ASSERT_EQUAL(opd_bpe_token_id(&t, "nope"), -1);
    CU_ASSERT(error_has("nope", NULL));
    /* cut out before pre-tokenizing, even inside a word */
    CU_ASSERT(encodes_to(&t, "hello<|end|>", (int[]){260, 266}, 2));
    CU_ASSERT(encodes_to(&t, "he<|end|>llo", (int[]){257, 266, 256, 'o'}, 4));
    CU_ASSERT(encodes_to(&t, "<|end|><|end|>", (int[]){266, 266}, 2));
    /* an incomplete one is text */
    CU_ASSERT(encodes_to(&t, "<|end|", (int[]){'<', '|', 'e', 'n', 'd', '|'}, 6));
    /* longest match first: "<a>b" over "<a>" */
    CU_ASSERT(encodes_to(&t, "<a>bc", (int[]){268, 'c'}, 2));
    CU_ASSERT(encodes_to(&t, "<a>c", (int[]){267, 'c'}, 2));
    /* OPD_BPE_NO_ADDED: the text of an added token is plain text */
    int ids[32];
    int n = opd_bpe_encode(&t, "<a>", 3, ids, 32, OPD_BPE_NO_ADDED);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(ids[0], '<');
    opd_bpe_free(&t);
}

static void test_decode(void) {
    opd_bpe t;
    CU_ASSERT_FATAL(opd_bpe_load(&t, fixture) == 0);
    char out[256];
    int ids[] = {260, 265, 266, '\n'};
    CU_ASSERT_EQUAL(opd_bpe_decode(&t, ids, 4, out, sizeof out, 0), 19);
    CU_ASSERT_STRING_EQUAL(out, "hello world<|end|>\n");
    CU_ASSERT_EQUAL(opd_bpe_decode(&t, ids, 4, out, sizeof out, OPD_BPE_SKIP_SPECIAL), 12);
    CU_ASSERT_STRING_EQUAL(out, "hello world\n");
    /* non-special added tokens are never skipped */
    int a[] = {267};
    CU_ASSERT_EQUAL(opd_bpe_decode(&t, a, 1, out, sizeof out, OPD_BPE_SKIP_SPECIAL), 3);
    /* round trip of UTF-8 through the byte symbols */
    const char *text = "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\r\n\t x hello<|end|>";
    int buf[128];
    int n = opd_bpe_encode(&t, text, strlen(text), buf, 128, 0);
    CU_ASSERT(n > 0);
    CU_ASSERT_EQUAL(opd_bpe_decode(&t, buf, n, out, sizeof out, 0), (int)strlen(text));
    CU_ASSERT_STRING_EQUAL(out, text);
    /* errors: an unknown id, no room */
    int bad[] = {269};
    CU_ASSERT_EQUAL(opd_bpe_decode(&t, bad, 1, out, sizeof out, 0), -1);
    CU_ASSERT(error_has("id 269", NULL));
    CU_ASSERT_EQUAL(opd_bpe_decode(&t, ids, 4, out, 5, 0), -1);
    CU_ASSERT(error_has("does not fit", NULL));
    opd_bpe_free(&t);
}

static void test_encode_errors(void) {
    opd_bpe t;
    CU_ASSERT_FATAL(opd_bpe_load(&t, fixture) == 0);
    int ids[4];
    CU_ASSERT_EQUAL(opd_bpe_encode(&t, "ab\xff", 3, ids, 4, 0), -1);
    CU_ASSERT(error_has("invalid UTF-8 at byte 2", NULL));
    CU_ASSERT_EQUAL(opd_bpe_encode(&t, "a b c d e", 9, ids, 4, 0), -1);
    CU_ASSERT(error_has("more than 4 tokens", NULL));
    /* a long whitespace run and a long word: bounded, no crash */
    size_t n = 20000;
    char *s = malloc(n + 2);
    memset(s, ' ', n);
    s[n] = 'x';
    s[n + 1] = '\0';
    int *big = malloc((n + 1) * sizeof *big);
    CU_ASSERT_EQUAL(opd_bpe_encode(&t, s, n + 1, big, (int)n + 1, 0), (int)n + 1);
    memset(s, 'l', n);
    CU_ASSERT_EQUAL(opd_bpe_encode(&t, s, n + 1, big, (int)n + 1, 0), (int)n / 2 + 1);  /* "ll" ... "x" */
    free(s);
    free(big);
    opd_bpe_free(&t);
}

/* ------------------------------------------------------------ load errors */
/* Writes the fixture with `from` replaced by `to` and checks that loading it
 * fails with an error containing the file name and `want`. */
static int load_fails(const char *from, const char *to, const char *want) {
    char *text = slurp(fixture);
    CU_ASSERT_FATAL(text != NULL);
    char *at = strstr(text, from);
    CU_ASSERT_FATAL(at != NULL);
    size_t a = at - text, nf = strlen(from), nt = strlen(to), nt_all = strlen(text);
    char *mod = malloc(nt_all - nf + nt + 1);
    memcpy(mod, text, a);
    memcpy(mod + a, to, nt);
    memcpy(mod + a + nt, at + nf, nt_all - a - nf + 1);
    char path[600];
    tmp_path(path, sizeof path, "tok.json");
    write_text(path, mod);
    free(text);
    free(mod);
    opd_bpe t;
    int rc = opd_bpe_load(&t, path);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_EQUAL(t.vocab_size, 0);
    opd_bpe_free(&t);
    return rc == -1 && error_has(path, want, NULL);
}

static void test_load_errors(void) {
    CU_ASSERT(load_fails("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model.type 'WordPiece' is not supported (only BPE)"));
    CU_ASSERT(load_fails("\"l l\"", "\"l l l\"", "model.merges[0]"));
    CU_ASSERT(load_fails("\"l l\"", "\"l q\"", "model.merges[0]: the merged token 'lq' is not in the vocab"));
    CU_ASSERT(load_fails("\"l l\"", "[\"l\"]", "model.merges[0] must be"));
    CU_ASSERT(load_fails("\"vocab\"", "\"vocabulary\"", "model.vocab is missing"));
    CU_ASSERT(load_fails("\"NFC\"", "\"NFKC\"", "normalizer.type 'NFKC' is not supported"));
    CU_ASSERT(load_fails("\"Isolated\"", "\"Removed\"", "behavior 'Removed' is not supported"));
    CU_ASSERT(load_fails("\"byte_fallback\": false", "\"byte_fallback\": true", "model.byte_fallback"));
    CU_ASSERT(load_fails("\"dropout\": null", "\"dropout\": 0.1", "model.dropout"));
    CU_ASSERT(load_fails("\"add_prefix_space\": false", "\"add_prefix_space\": true", "add_prefix_space"));
    CU_ASSERT(load_fails("\"\\u0100\": 0,", "", "no token for byte 0x00"));
    CU_ASSERT(load_fails("\"model\": {", "\"model\": [{", "not JSON"));
    CU_ASSERT(load_fails("(?i:", "(?i", "does not compile"));
    opd_bpe t;
    CU_ASSERT_EQUAL(opd_bpe_load(&t, "/nonexistent/tok.json"), -1);
    CU_ASSERT(error_has("/nonexistent/tok.json", "cannot open", NULL));
}

/* ------------------------------------------------------------ prompts */
static void test_prompts_read(void) {
    char path[600];
    tmp_path(path, sizeof path, "p.jsonl");
    write_text(path, "{\"prompt\": \"What is 2+2?\", \"answer\": \"4\"}\n"
                     "\n   \n"
                     "{\"prompt\": \"Say hi\\nthere\", \"id\": 7}\r\n"
                     "{\"prompt\": \"\\u00e9\", \"answer\": 12}\n"
                     "{\"prompt\": \"p\", \"answer\": 0.1}\n");
    opd_prompt_set s;
    CU_ASSERT_FATAL(opd_prompts_read(path, &s) == 0);
    CU_ASSERT_EQUAL(s.n, 4);
    CU_ASSERT_STRING_EQUAL(s.item[0].prompt, "What is 2+2?");
    CU_ASSERT_STRING_EQUAL(s.item[0].answer, "4");
    CU_ASSERT_EQUAL(s.item[0].line, 1);
    CU_ASSERT_STRING_EQUAL(s.item[1].prompt, "Say hi\nthere");
    CU_ASSERT_PTR_NULL(s.item[1].answer);
    CU_ASSERT_EQUAL(s.item[1].line, 4);
    CU_ASSERT_STRING_EQUAL(s.item[2].prompt, "\xc3\xa9");
    CU_ASSERT_STRING_EQUAL(s.item[2].answer, "12");
    CU_ASSERT_STRING_EQUAL(s.item[3].answer, "0.1");
    opd_prompts_free(&s);

    struct { const char *text, *want; } bad[] = {
        {"{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n", ":2: not JSON"},
        {"{\"answer\": \"1\"}\n", ":1: no \"prompt\""},
        {"{\"prompt\": 3}\n", ":1: \"prompt\" must be a string"},
        {"\n{\"prompt\": \"x\", \"answer\": [1]}\n", ":2: \"answer\" must be a string or a number"},
        {"[1, 2]\n", ":1: not a JSON object"},
        {"\n\n", "no prompt in the file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text);
        CU_ASSERT_EQUAL(opd_prompts_read(path, &s), -1);
        CU_ASSERT(error_has(path, bad[i].want, NULL));
    }
    CU_ASSERT_EQUAL(opd_prompts_read("/nonexistent.jsonl", &s), -1);
    CU_ASSERT(error_has("/nonexistent.jsonl", NULL));
}

static void test_chat_templates(void) {
    opd_chat_template t;
    char *s;
    CU_ASSERT_FATAL(opd_chat_template_load(&t, "none") == 0);
    s = opd_chat_template_apply(&t, "hi");
    CU_ASSERT_STRING_EQUAL(s, "hi");
    free(s);
    opd_chat_template_free(&t);
    CU_ASSERT_FATAL(opd_chat_template_load(&t, "chatml") == 0);
    s = opd_chat_template_apply(&t, "hi");
    CU_ASSERT_STRING_EQUAL(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    opd_chat_template_free(&t);
    CU_ASSERT_FATAL(opd_chat_template_load(&t, "llama3") == 0);
    s = opd_chat_template_apply(&t, "hi");
    CU_ASSERT_STRING_EQUAL(s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                              "hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    opd_chat_template_free(&t);

    char path[600];
    tmp_path(path, sizeof path, "tmpl.txt");
    write_text(path, "Q: {prompt}\nA:");
    CU_ASSERT_FATAL(opd_chat_template_load(&t, path) == 0);
    s = opd_chat_template_apply(&t, "2+2?");
    CU_ASSERT_STRING_EQUAL(s, "Q: 2+2?\nA:");
    free(s);
    opd_chat_template_free(&t);
    write_text(path, "Q: prompt");
    CU_ASSERT_EQUAL(opd_chat_template_load(&t, path), -1);
    CU_ASSERT(error_has(path, "no {prompt}", NULL));
    write_text(path, "{prompt} and {prompt}");
    CU_ASSERT_EQUAL(opd_chat_template_load(&t, path), -1);
    CU_ASSERT(error_has(path, "more than one", NULL));
    CU_ASSERT_EQUAL(opd_chat_template_load(&t, "chatlm"), -1);
    CU_ASSERT(error_has("chatlm", "none, chatml, llama3 or a file", NULL));
}

static void test_verifier(void) {
    struct { const char *text, *num; } cases[] = {
        {"The answer is 42.", "42"},   {"x = -3.50", "-3.5"},    {"1,234 apples", "1234"},
        {"3, 4", "4"},                 {"007", "7"},              {"2.0 then 2.", "2"},
        {"-0", "0"},                   {"a-5", "-5"},             {"5 - 3 = 2", "2"},
        {"#### 1,000,000", "1000000"}, {"v1.5.3", "3"},          {"0.250", "0.25"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = opd_last_number(cases[i].text, out, sizeof out);
        CU_ASSERT_EQUAL(n, (int)strlen(cases[i].num));
        if (strcmp(out, cases[i].num)) printf("\n      '%s' -> '%s', want '%s'", cases[i].text, out, cases[i].num);
        CU_ASSERT_STRING_EQUAL(out, cases[i].num);
    }
    CU_ASSERT_EQUAL(opd_last_number("no number here", out, sizeof out), 0);
    CU_ASSERT_EQUAL(opd_last_number("123456", out, 3), -1);
    CU_ASSERT_EQUAL(opd_verify_answer("so the total is 12.", "12"), 1);
    CU_ASSERT_EQUAL(opd_verify_answer("12 or maybe 13", "12"), 0);
    CU_ASSERT_EQUAL(opd_verify_answer("it costs $1,234.00", "#### 1234"), 1);
    CU_ASSERT_EQUAL(opd_verify_answer("it is -4", "4"), 0);
    CU_ASSERT_EQUAL(opd_verify_answer("no idea", "4"), 0);
    CU_ASSERT_EQUAL(opd_verify_answer("4", NULL), 0);
    CU_ASSERT_EQUAL(opd_verify_answer("4", "four"), 0);
}

int main(void) {
    const char *src = getenv("OPD_SRCDIR");
    snprintf(fixture, sizeof fixture, "%s/tests/bpe_tiny.json", src ? src : ".");
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/opd_test_bpe.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    opd_test_suite("bpe", (opd_test_case[]){
        {"byte map", test_byte_map},
        {"merges by rank", test_merges_by_rank},
        {"added tokens", test_added_tokens},
        {"decode", test_decode},
        {"encode errors", test_encode_errors},
        {"load errors", test_load_errors},
        {NULL, NULL}});
    opd_test_suite("prompts", (opd_test_case[]){
        {"JSONL files", test_prompts_read},
        {"chat templates", test_chat_templates},
        {"last-number verifier", test_verifier},
        {NULL, NULL}});
    int rc = opd_test_run();
    const char *names[] = {"tok.json", "p.jsonl", "tmpl.txt"};
    for (size_t i = 0; i < 3; i++) {
        char p[600];
        tmp_path(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return rc;
}
