/* prompts.c — JSONL prompt files, chat templates and the last-number
 * verifier for real-text distillation and evaluation (see opd_bpe.h). */
#define _GNU_SOURCE
#include "opd_bpe.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ------------------------------------------------------------ JSONL */
static int line_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

static char *dup_n(const char *s, size_t n) {
    char *d = opd_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* One line into *p; errors say path:line. */
static int parse_prompt_line(const char *path, int lineno, const char *s, size_t n, opd_prompt *p) {
    json_error_t jerr;
    json_t *o = json_loadb(s, n, 0, &jerr);
    if (!o) return opd_set_error("%s:%d: not JSON: %s", path, lineno, jerr.text);
    int rc = -1;
    json_t *pr = json_object_get(o, "prompt"), *an = json_object_get(o, "answer");
    if (!json_is_object(o)) { opd_set_error("%s:%d: not a JSON object", path, lineno); goto done; }
    if (!pr) { opd_set_error("%s:%d: no \"prompt\"", path, lineno); goto done; }
    if (!json_is_string(pr)) { opd_set_error("%s:%d: \"prompt\" must be a string", path, lineno); goto done; }
    if (strlen(json_string_value(pr)) != json_string_length(pr)) {
        opd_set_error("%s:%d: \"prompt\" has a NUL character", path, lineno);
        goto done;
    }
    p->line = lineno;
    p->answer = NULL;
    if (an && !json_is_null(an)) {
        char num[64];
        if (json_is_string(an)) {
            p->answer = dup_n(json_string_value(an), strlen(json_string_value(an)));
        } else if (json_is_integer(an)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(an));
            p->answer = dup_n(num, strlen(num));
        } else if (json_is_real(an)) {
            /* the shortest form that reads back as the same double: 0.1 is
             * "0.1", not "0.10000000000000001" */
            double v = json_real_value(an);
            for (int prec = 1; prec <= 17; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, v);
                if (strtod(num, NULL) == v) break;
            }
            p->answer = dup_n(num, strlen(num));
        } else {
            opd_set_error("%s:%d: \"answer\" must be a string or a number", path, lineno);
            goto done;
        }
    }
    p->prompt = dup_n(json_string_value(pr), json_string_length(pr));
    rc = 0;
done:
    json_decref(o);
    return rc;
}

int opd_prompts_read(const char *path, opd_prompt_set *s) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    if (!f) return opd_set_error("%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    int lineno = 0, cap = 0, rc = 0;
    while ((got = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (got > OPD_PROMPT_MAX_LINE) {
            rc = opd_set_error("%s:%d: line of %zd bytes (at most %d)", path, lineno, got, OPD_PROMPT_MAX_LINE);
            break;
        }
        if (line_is_blank(line, got)) continue;
        if (s->n == OPD_PROMPT_MAX_COUNT) {
            rc = opd_set_error("%s:%d: more than %d prompts", path, lineno, OPD_PROMPT_MAX_COUNT);
            break;
        }
        if (s->n == cap) {
            cap = cap ? 2 * cap : 64;
            opd_prompt *ni = realloc(s->item, cap * sizeof *ni);
            if (!ni) { fprintf(stderr, "opd: out of memory\n"); abort(); }
            s->item = ni;
        }
        if (parse_prompt_line(path, lineno, line, got, &s->item[s->n])) { rc = -1; break; }
        s->n++;
    }
    free(line);
    if (!rc && ferror(f)) rc = opd_set_error("%s: read error: %s", path, strerror(errno));
    fclose(f);
    if (!rc && s->n == 0) rc = opd_set_error("%s: no prompt in the file", path);
    if (rc) opd_prompts_free(s);
    return rc;
}

void opd_prompts_free(opd_prompt_set *s) {
    for (int i = 0; i < s->n; i++) { free(s->item[i].prompt); free(s->item[i].answer); }
    free(s->item);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ templates */
static const char chatml_prefix[] = "<|im_start|>user\n";
static const char chatml_suffix[] = "<|im_end|>\n<|im_start|>assistant\n";
static const char llama3_prefix[] = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n";
static const char llama3_suffix[] = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
static const char placeholder[] = "{prompt}";

static void set_template(opd_chat_template *t, const char *pre, size_t npre, const char *suf, size_t nsuf) {
    t->prefix = dup_n(pre, npre);
    t->suffix = dup_n(suf, nsuf);
}

int opd_chat_template_load(opd_chat_template *t, const char *spec) {
    memset(t, 0, sizeof *t);
    if (!strcmp(spec, "none")) { set_template(t, "", 0, "", 0); return 0; }
    if (!strcmp(spec, "chatml")) {
        set_template(t, chatml_prefix, strlen(chatml_prefix), chatml_suffix, strlen(chatml_suffix));
        return 0;
    }
    if (!strcmp(spec, "llama3")) {
        set_template(t, llama3_prefix, strlen(llama3_prefix), llama3_suffix, strlen(llama3_suffix));
        return 0;
    }
    /* otherwise a file holding the template */
    FILE *f = fopen(spec, "rb");
    if (!f)
        return opd_set_error("%s: chat template is none, chatml, llama3 or a file (cannot open: %s)", spec, strerror(errno));
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    int too_long = n == sizeof buf;
    fclose(f);
    if (too_long) return opd_set_error("%s: chat template longer than %zu bytes", spec, sizeof buf - 1);
    buf[n] = '\0';
    if (strlen(buf) != n) return opd_set_error("%s: chat template has a NUL byte", spec);
    char *at = strstr(buf, placeholder);
    if (!at) return opd_set_error("%s: chat template has no %s placeholder", spec, placeholder);
    const char *rest = at + strlen(placeholder);
    if (strstr(rest, placeholder)) return opd_set_error("%s: chat template has more than one %s", spec, placeholder);
    set_template(t, buf, at - buf, rest, strlen(rest));
    return 0;
}

char *opd_chat_template_apply(const opd_chat_template *t, const char *prompt) {
    size_t a = strlen(t->prefix), b = strlen(prompt), c = strlen(t->suffix);
    char *s = opd_malloc(a + b + c + 1);
    memcpy(s, t->prefix, a);
    memcpy(s + a, prompt, b);
    memcpy(s + a + b, t->suffix, c + 1);
    return s;
}

void opd_chat_template_free(opd_chat_template *t) {
    free(t->prefix);
    free(t->suffix);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------ verifier */
/* Parses a number starting at s[i] (a digit) and writes its normalised form;
 * returns the index after it. */
static size_t scan_number(const char *s, size_t i, int neg, char *out, size_t cap, size_t *outlen) {
    char buf[256];
    size_t n = 0;
    if (neg) buf[n++] = '-';
    size_t int_start = n;
    for (;;) {
        while (isdigit((unsigned char)s[i])) { if (n < sizeof buf - 2) buf[n++] = s[i]; i++; }
        /* a ',' counts only between digit groups: "1,234" but not "1, 2" */
        if (s[i] == ',' && isdigit((unsigned char)s[i + 1])) { i++; continue; }
        break;
    }
    /* strip leading zeros of the integer part ("007" is 7) */
    size_t z = int_start;
    while (z + 1 < n && buf[z] == '0') z++;
    memmove(buf + int_start, buf + z, n - z);
    n -= z - int_start;
    if (s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        size_t dot = n;
        if (n < sizeof buf - 2) buf[n++] = '.';
        i++;
        while (isdigit((unsigned char)s[i])) { if (n < sizeof buf - 2) buf[n++] = s[i]; i++; }
        while (n > dot + 1 && buf[n - 1] == '0') n--;
        if (n == dot + 1) n = dot;  /* "3.0" is "3" */
    }
    if (neg && n == 2 && buf[1] == '0') { buf[0] = '0'; n = 1; }  /* "-0" is "0" */
    buf[n] = '\0';
    if (n + 1 <= cap) memcpy(out, buf, n + 1);
    *outlen = n;
    return i;
}

int opd_last_number(const char *text, char *out, size_t cap) {
    size_t len = 0, i = 0;
    int found = 0;
    char tmp[256];
    while (text[i]) {
        if (isdigit((unsigned char)text[i])) {
            int neg = i > 0 && text[i - 1] == '-';
            i = scan_number(text, i, neg, tmp, sizeof tmp, &len);
            found = 1;
        } else {
            i++;
        }
    }
    if (!found) { if (cap) out[0] = '\0'; return 0; }
    if (len + 1 > cap) return opd_set_error("last number: %zu bytes do not fit in %zu", len, cap);
    memcpy(out, tmp, len + 1);
    return (int)len;
}

int opd_verify_answer(const char *generated, const char *answer) {
    char a[256], b[256];
    if (!answer || !generated) return 0;
    if (opd_last_number(answer, a, sizeof a) <= 0) return 0;
    if (opd_last_number(generated, b, sizeof b) <= 0) return 0;
    return strcmp(a, b) == 0;
}
