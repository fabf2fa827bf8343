/* tokenizer.c — character-level tokenizer over a vocabulary of <= 64 tokens.
 * Ids 0, 1, 2 are <pad>, <bos>, <eos>; every other id is one printable ASCII
 * character. The built-in vocabulary below is the content of data/vocab.txt
 * (a test checks that they agree), so the tool works without the file. */
#include "opd_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const special_names[3] = {"<pad>", "<bos>", "<eos>"};

/* Digits, the three operators, '=' and '>', then the 46 step labels. */
static const char default_chars[] =
    "0123456789+-*=>abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST";

static void tokenizer_clear(opd_tokenizer *tok) {
    memset(tok, 0, sizeof *tok);
    for (int c = 0; c < 256; c++) tok->char_to_id[c] = -1;
    for (int i = 0; i < 3; i++) strcpy(tok->token[i], special_names[i]);
    tok->vocab_size = 3;
    tok->pad_id = OPD_PAD_ID;
    tok->bos_id = OPD_BOS_ID;
    tok->eos_id = OPD_EOS_ID;
}

static void tokenizer_add_char(opd_tokenizer *tok, unsigned char c) {
    int id = tok->vocab_size++;
    tok->token[id][0] = (char)c;
    tok->token[id][1] = '\0';
    tok->char_to_id[c] = id;
}

void opd_tokenizer_default(opd_tokenizer *tok) {
    tokenizer_clear(tok);
    for (const char *p = default_chars; *p; p++) tokenizer_add_char(tok, (unsigned char)*p);
}

int opd_tokenizer_load(opd_tokenizer *tok, const char *path) {
    FILE *f = opd_fopen_input(path);
    if (!f) return -1;
    tokenizer_clear(tok);
    int first_line[256];  /* line where each character was defined, for duplicates */
    for (int c = 0; c < 256; c++) first_line[c] = 0;
    char line[256];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = opd_set_error("%s:%d: line too long for a token", path, lineno);
            break;
        }
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
        int id = lineno - 1;
        if (len == 0) {
            rc = opd_set_error("%s:%d: empty line (every line must hold one token)", path, lineno);
            break;
        }
        if (id < 3) {
            /* the special tokens are pinned so that every model agrees on them */
            if (strcmp(line, special_names[id]) != 0) {
                rc = opd_set_error("%s:%d: expected the special token %s (id %d), found \"%s\"",
                                   path, lineno, special_names[id], id, line);
                break;
            }
            continue;
        }
        if (line[0] == '<' && len > 1) {
            rc = opd_set_error("%s:%d: special token \"%s\" at id %d: only <pad>, <bos>, <eos> "
                               "exist, as ids 0, 1, 2", path, lineno, line, id);
            break;
        }
        if (len != 1) {
            rc = opd_set_error("%s:%d: token \"%s\" has %zu characters; the tokenizer is "
                               "character-level (one character per line)", path, lineno, line, len);
            break;
        }
        unsigned char c = (unsigned char)line[0];
        if (c < 0x20 || c > 0x7e) {
            rc = opd_set_error("%s:%d: token 0x%02x is not a printable ASCII character",
                               path, lineno, c);
            break;
        }
        if (tok->char_to_id[c] >= 0) {
            rc = opd_set_error("%s:%d: duplicate token '%c' (already on line %d)", path,
                               lineno, c, first_line[c]);
            break;
        }
        if (tok->vocab_size >= OPD_TOK_MAX_VOCAB) {
            rc = opd_set_error("%s:%d: too many tokens (at most %d)", path, lineno,
                               OPD_TOK_MAX_VOCAB);
            break;
        }
        first_line[c] = lineno;
        tokenizer_add_char(tok, c);
    }
    if (rc == 0 && ferror(f)) rc = opd_set_error("%s: read error", path);
    if (rc == 0 && lineno < 3)
        rc = opd_set_error("%s: %d line(s); the file must start with <pad>, <bos>, <eos>",
                           path, lineno);
    fclose(f);
    return rc;
}

static int write_vocab(void *user, void *fp) {
    const opd_tokenizer *tok = user;
    for (int i = 0; i < tok->vocab_size; i++)
        if (fprintf(fp, "%s\n", tok->token[i]) < 0) return -1;
    return 0;
}

int opd_tokenizer_save(const opd_tokenizer *tok, const char *path) {
    return opd_atomic_write_cb(path, write_vocab, (void *)tok);
}

int opd_tokenizer_equal(const opd_tokenizer *a, const opd_tokenizer *b) {
    if (a->vocab_size != b->vocab_size) return 0;
    for (int i = 0; i < a->vocab_size; i++)
        if (strcmp(a->token[i], b->token[i]) != 0) return 0;
    return 1;
}

int opd_tok_encode(const opd_tokenizer *tok, const char *text, int add_bos,
                   int add_eos, int *ids, int cap) {
    int n = 0;
    size_t len = strlen(text);
    if ((size_t)(add_bos != 0) + len + (size_t)(add_eos != 0) > (size_t)cap)
        return opd_set_error("tokenize: %zu characters do not fit in %d ids", len, cap);
    if (add_bos) ids[n++] = tok->bos_id;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        int id = tok->char_to_id[c];
        if (id < 0) {
            if (c >= 0x20 && c <= 0x7e)
                return opd_set_error("tokenize: unknown character '%c' (0x%02x) at position %zu "
                                     "of \"%.40s%s\"", c, c, i, text, len > 40 ? "..." : "");
            return opd_set_error("tokenize: unknown character 0x%02x at position %zu of "
                                 "\"%.40s%s\"", c, i, text, len > 40 ? "..." : "");
        }
        ids[n++] = id;
    }
    if (add_eos) ids[n++] = tok->eos_id;
    return n;
}

int opd_tok_decode(const opd_tokenizer *tok, const int *ids, int n, char *out,
                   size_t cap) {
    size_t len = 0;
    if (cap == 0) return opd_set_error("detokenize: output buffer of 0 bytes");
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= tok->vocab_size) {
            out[len] = '\0';
            return opd_set_error("detokenize: id %d at position %d outside the vocabulary "
                                 "[0, %d)", id, i, tok->vocab_size);
        }
        if (id == tok->eos_id) break;
        if (id == tok->pad_id || id == tok->bos_id) continue;
        if (len + 1 >= cap) {
            out[len] = '\0';
            return opd_set_error("detokenize: text does not fit in %zu bytes", cap);
        }
        out[len++] = tok->token[id][0];
    }
    out[len] = '\0';
    return (int)len;
}
