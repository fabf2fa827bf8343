/* bpe_dump.c — helper of tests/bpe_crosscheck.sh: encodes every string of a
 * JSONL file (one JSON string per line) with a tokenizer.json and prints, per
 * line, the ids, the decoded bytes and the decoded bytes without special
 * tokens (hex, since a decode need not be valid UTF-8):
 *
 *   ID ID ID...<TAB>HEX<TAB>HEX          or   ERROR message
 *
 * The timing of the encodes goes to stderr. */
#include "opd_bpe.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_hex(const char *s, int n) {
    for (int i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bpe_dump TOKENIZER.json STRINGS.jsonl\n");
        return 2;
    }
    opd_bpe t;
    if (opd_bpe_load(&t, argv[1])) { fprintf(stderr, "bpe_dump: %s\n", opd_last_error()); return 1; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    char *line = NULL;
    size_t lcap = 0;
    int cap = 1 << 20;
    int *ids = malloc(cap * sizeof *ids);
    size_t ocap = 16u << 20;
    char *out = malloc(ocap);
    double secs = 0;
    long nstr = 0, nbytes = 0, ntok = 0;
    while (getline(&line, &lcap, f) >= 0) {
        json_error_t err;
        json_t *s = json_loads(line, JSON_DECODE_ANY, &err);
        if (!json_is_string(s)) { fprintf(stderr, "bpe_dump: %s: not a JSON string: %s\n", argv[2], err.text); return 1; }
        double t0 = opd_time();
        int n = opd_bpe_encode(&t, json_string_value(s), json_string_length(s), ids, cap, 0);
        secs += opd_time() - t0;
        nstr++;
        nbytes += json_string_length(s);
        if (n < 0) {
            printf("ERROR %s\n", opd_last_error());
        } else {
            ntok += n;
            for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            for (int skip = 0; skip < 2; skip++) {
                int k = opd_bpe_decode(&t, ids, n, out, ocap, skip ? OPD_BPE_SKIP_SPECIAL : 0);
                putchar('\t');
                if (k < 0) printf("ERROR");
                else print_hex(out, k);
            }
            putchar('\n');
        }
        json_decref(s);
    }
    fprintf(stderr, "bpe_dump: %ld strings, %ld bytes, %ld tokens encoded in %.3f s (%.2f MB/s)\n",
            nstr, nbytes, ntok, secs, secs > 0 ? nbytes / secs / 1e6 : 0.0);
    free(line); free(ids); free(out);
    fclose(f);
    opd_bpe_free(&t);
    return 0;
}
