/* cmd_tokenize.c — `opd tokenize`: encode text with a Hugging Face
 * tokenizer.json (data/bpe.c) and print the ids, or decode ids back. */
#include "cli.h"
#include "opd_bpe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tokenize_help(void) {
    printf("Usage: opd tokenize --tokenizer TOKENIZER.json (--text STR | --file F | --prompts P) [OPTIONS]\n"
           "Encode text with a Hugging Face tokenizer.json (byte-level BPE: Qwen2, Llama 3)\n"
           "and print the ids on one line; with --decode, read ids and print the text.\n\n"
           "  --tokenizer FILE   the tokenizer.json\n"
           "  --text STR         the text (with --decode: ids separated by spaces)\n"
           "  --file F           read the text (or the ids) from a file, '-' for stdin\n"
           "  --prompts P        a JSONL prompt file: print, per prompt, its line and its\n"
           "                     number of ids after the template, then the largest\n"
           "  --template T       chat template around the text: none (default), chatml,\n"
           "                     llama3, or a file with one {prompt}\n"
           "  --decode           ids in, text out\n"
           "  --skip-special     with --decode: leave out special tokens\n"
           "  --no-added         encode added-token text (\"<|im_end|>\") as plain text\n"
           "  --count            print the number of ids instead of the ids\n");
}

/* The whole of a file (or stdin) as a NUL-terminated string. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) { opd_set_error("%s: cannot open: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = opd_malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            if (cap >= (size_t)1 << 30) { free(buf); opd_set_error("%s: larger than 1 GiB", path); return NULL; }
            char *nb = opd_malloc(cap * 2);
            memcpy(nb, buf, n);
            free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    if (f != stdin) fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int decode_ids(const opd_bpe *t, const char *s, int flags) {
    size_t cap = 1024, n = 0;
    int *ids = opd_malloc(cap * sizeof *ids);
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 0x7fffffff) {
            free(ids);
            return opd_set_error("--decode: '%.20s' is not a token id", p);
        }
        if (n == cap) {
            int *ni = opd_malloc(2 * cap * sizeof *ni);
            memcpy(ni, ids, n * sizeof *ni);
            free(ids);
            ids = ni;
            cap *= 2;
        }
        ids[n++] = (int)v;
        p = end;
    }
    size_t ocap = (n + 1) * OPD_BPE_MAX_TOKEN;
    char *out = opd_malloc(ocap);
    int len = opd_bpe_decode(t, ids, (int)n, out, ocap, flags);
    if (len >= 0) fwrite(out, 1, len, stdout);
    free(out);
    free(ids);
    return len < 0 ? -1 : 0;
}

/* --prompts: the number of ids of every prompt once templated (what a
 * model's max sequence length has to hold), then the largest. */
static int prompt_lengths(const opd_bpe *t, const char *path, const char *tmpl, int flags) {
    opd_prompt_set s;
    opd_chat_template ct;
    if (opd_chat_template_load(&ct, tmpl)) return -1;
    if (opd_prompts_read(path, &s)) { opd_chat_template_free(&ct); return -1; }
    int rc = 0, longest = 0, longest_line = 0;
    long total = 0;
    for (int i = 0; i < s.n && !rc; i++) {
        char *full = opd_chat_template_apply(&ct, s.item[i].prompt);
        size_t len = strlen(full);
        int *ids = opd_malloc((len + 1) * sizeof *ids);
        int n = opd_bpe_encode(t, full, len, ids, (int)len + 1, flags);
        if (n < 0) {
            rc = opd_set_error("%s:%d: %s", path, s.item[i].line, opd_last_error());
        } else {
            printf("%d\t%d\n", s.item[i].line, n);
            total += n;
            if (n > longest) { longest = n; longest_line = s.item[i].line; }
        }
        free(ids);
        free(full);
    }
    if (!rc)
        printf("# %d prompts, %ld ids, mean %.1f, longest %d (line %d)\n", s.n, total,
               (double)total / s.n, longest, longest_line);
    opd_prompts_free(&s);
    opd_chat_template_free(&ct);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"text", required_argument, 0, 'x'},
        {"file", required_argument, 0, 'f'},      {"template", required_argument, 0, 'T'},
        {"decode", no_argument, 0, 'd'},          {"skip-special", no_argument, 0, 's'},
        {"no-added", no_argument, 0, 'n'},        {"count", no_argument, 0, 'c'},
        {"prompts", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    const char *tok_path = NULL, *text = NULL, *file = NULL, *prompts = NULL, *tmpl = "none";
    int decode = 0, skip = 0, no_added = 0, count = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'x': text = optarg; break;
        case 'f': file = optarg; break;
        case 'T': tmpl = optarg; break;
        case 'd': decode = 1; break;
        case 's': skip = 1; break;
        case 'n': no_added = 1; break;
        case 'c': count = 1; break;
        case 'p': prompts = optarg; break;
        case 'h': tokenize_help(); return 0;
        default: return cli_usage_error("tokenize");
        }
    }
    if (optind != argc || !tok_path || (!!text + !!file + !!prompts) != 1 || (prompts && decode)) {
        fprintf(stderr, "opd tokenize: needs --tokenizer and exactly one of --text, --file, --prompts\n");
        return cli_usage_error("tokenize");
    }
    opd_bpe t;
    if (opd_bpe_load(&t, tok_path)) return cli_fail("tokenize");
    if (prompts) {
        int rc = prompt_lengths(&t, prompts, tmpl, no_added ? OPD_BPE_NO_ADDED : 0);
        opd_bpe_free(&t);
        return rc ? cli_fail("tokenize") : 0;
    }
    size_t len = 0;
    char *owned = NULL;
    if (file) {
        if (!(owned = read_all(file, &len))) { opd_bpe_free(&t); return cli_fail("tokenize"); }
        text = owned;
    } else {
        len = strlen(text);
    }
    int rc = 0;
    if (decode) {
        rc = decode_ids(&t, text, skip ? OPD_BPE_SKIP_SPECIAL : 0);
    } else {
        opd_chat_template ct;
        if (opd_chat_template_load(&ct, tmpl)) {
            rc = -1;
        } else {
            char *full = opd_chat_template_apply(&ct, text);
            size_t flen = strlen(ct.prefix) + len + strlen(ct.suffix);
            if (!owned || strlen(text) == len) {
                /* a byte-level BPE makes at most one id per byte */
                int cap = flen + 1 > 0x7fffffff ? 0x7fffffff : (int)flen + 1;
                int *ids = opd_malloc((size_t)cap * sizeof *ids);
                int n = opd_bpe_encode(&t, full, flen, ids, cap, no_added ? OPD_BPE_NO_ADDED : 0);
                if (n < 0) rc = -1;
                else if (count) printf("%d\n", n);
                else {
                    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
                    printf("\n");
                }
                free(ids);
            } else {
                rc = opd_set_error("%s: the text has a NUL byte", file);
            }
            free(full);
            opd_chat_template_free(&ct);
        }
    }
    free(owned);
    opd_bpe_free(&t);
    return rc ? cli_fail("tokenize") : 0;
}
