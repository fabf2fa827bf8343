/* bpe.c — Hugging Face tokenizer.json reader and byte-level BPE encoder /
 * decoder (Qwen2, Llama 3). The pipeline and what is supported are described
 * in opd_bpe.h; the numbered stages below follow it.
 *
 * Libraries instead of hand-written Unicode tables: jansson parses the JSON,
 * PCRE2 runs the pre-tokenizer regex (its \p{L}, \p{N}, \s follow the Unicode
 * tables of the library, as Oniguruma's do inside tokenizers), libunistring
 * does NFC and the character classes of the added-token rules. */
#define _GNU_SOURCE
#include "opd_bpe.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

/* GPT-2's pre-tokenizer regex (ByteLevel with use_regex = true). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ------------------------------------------------------------ the byte map */
/* GPT-2's reversible byte <-> unicode map: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes (controls, space, 0x7f-0xa0, 0xad) for the
 * code points 256, 257, ... in byte order. tokenizer.json writes every token
 * of a byte-level vocabulary in these characters, so no token has a space or
 * a control character in it. */
static int byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

/* The 68 others, in byte order, are 0x00-0x20 (33), 0x7f-0xa0 (34), 0xad. */
int opd_bpe_byte_char(int b) {
    if (b < 0 || b > 255) return -1;
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 256 + b;
    if (b <= 0xa0) return 256 + 33 + (b - 0x7f);
    return 256 + 67;  /* 0xad */
}

int opd_bpe_char_byte(int cp) {
    if (cp >= 0 && cp <= 255) return byte_is_printable(cp) ? cp : -1;
    int n = cp - 256;
    if (n < 0 || n >= 68) return -1;
    if (n < 33) return n;
    if (n < 67) return 0x7f + (n - 33);
    return 0xad;
}

/* A token's text as tokenizers' ByteLevel decoder gives it: when every
 * character stands for a byte, those bytes; otherwise (an added token such as
 * "<|im end|>" with a space) its UTF-8 as it is. Writes into out (cap >=
 * len). Returns the byte count and sets *mapped. */
static int token_bytes(const char *s, int len, unsigned char *out, int *mapped) {
    int n = 0;
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    while (p < end) {
        ucs4_t c;
        int k = u8_mbtouc(&c, p, end - p);
        int b = opd_bpe_char_byte((int)c);
        if (b < 0) { memcpy(out, s, len); *mapped = 0; return len; }
        out[n++] = (unsigned char)b;
        p += k;
    }
    *mapped = 1;
    return n;
}

/* ------------------------------------------------------------ a hash map */
/* Open addressing over byte-string keys: the vocabulary (token bytes -> id)
 * and the merges ((left id, right id) as 8 bytes -> rank). */
struct opd_bpe_map {
    size_t cap, n;        /* cap a power of two, n <= cap / 2 */
    unsigned char **key;
    int *klen, *val;
};

static uint64_t fnv1a(const unsigned char *k, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ull;
    return h;
}

static opd_bpe_map *map_new(size_t expect) {
    opd_bpe_map *m = opd_calloc(1, sizeof *m);
    m->cap = 16;
    while (m->cap < 2 * expect + 2) m->cap *= 2;
    m->key = opd_calloc(m->cap, sizeof *m->key);
    m->klen = opd_calloc(m->cap, sizeof *m->klen);
    m->val = opd_calloc(m->cap, sizeof *m->val);
    return m;
}

static void map_free(opd_bpe_map *m) {
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++) free(m->key[i]);
    free(m->key); free(m->klen); free(m->val); free(m);
}

static size_t map_slot(const opd_bpe_map *m, const void *k, int n) {
    size_t i = fnv1a(k, n) & (m->cap - 1);
    while (m->key[i] && !(m->klen[i] == n && !memcmp(m->key[i], k, n))) i = (i + 1) & (m->cap - 1);
    return i;
}

/* Value of a key, or -1. */
static int map_get(const opd_bpe_map *m, const void *k, int n) {
    size_t i = map_slot(m, k, n);
    return m->key[i] ? m->val[i] : -1;
}

/* Sets (or overwrites) a key; returns the previous value or -1. */
static int map_put(opd_bpe_map *m, const void *k, int n, int v) {
    if (2 * (m->n + 1) > m->cap) {  /* grow: rehash every key */
        opd_bpe_map big = {m->cap * 2, 0, NULL, NULL, NULL};
        big.key = opd_calloc(big.cap, sizeof *big.key);
        big.klen = opd_calloc(big.cap, sizeof *big.klen);
        big.val = opd_calloc(big.cap, sizeof *big.val);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->key[i]) continue;
            size_t j = map_slot(&big, m->key[i], m->klen[i]);
            big.key[j] = m->key[i]; big.klen[j] = m->klen[i]; big.val[j] = m->val[i];
            big.n++;
        }
        free(m->key); free(m->klen); free(m->val);
        *m = big;
    }
    size_t i = map_slot(m, k, n);
    if (m->key[i]) { int old = m->val[i]; m->val[i] = v; return old; }
    m->key[i] = opd_malloc(n > 0 ? n : 1);
    memcpy(m->key[i], k, n);
    m->klen[i] = n;
    m->val[i] = v;
    m->n++;
    return -1;
}

/* ------------------------------------------------------------ loading */
void opd_bpe_free(opd_bpe *t) {
    if (!t) return;
    if (t->token)
        for (int i = 0; i < t->vocab_size; i++) free(t->token[i]);
    free(t->token); free(t->token_len); free(t->is_special);
    map_free(t->vocab); map_free(t->merges);
    free(t->merge_result);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    for (int i = 0; i < t->n_splits; i++) pcre2_code_free(t->split_re[i]);
    memset(t, 0, sizeof *t);
}

static const char *type_of(json_t *obj) {
    json_t *ty = json_object_get(obj, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

/* A boolean option that must be absent, null or the given value. */
static int check_bool(const char *path, json_t *obj, const char *where, const char *key, int want) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v))
        return opd_set_error("%s: %s.%s must be true or false", path, where, key);
    if (json_is_true(v) != want)
        return opd_set_error("%s: %s.%s = %s is not supported (only %s)", path, where, key,
                             want ? "false" : "true", want ? "true" : "false");
    return 0;
}

/* A string option that must be absent, null or "". */
static int check_empty_string(const char *path, json_t *obj, const char *where, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v) || (json_is_string(v) && !json_string_length(v))) return 0;
    return opd_set_error("%s: %s.%s is not supported (only null)", path, where, key);
}

static int load_normalizer(opd_bpe *t, const char *path, json_t *n, const char *where) {
    if (!n || json_is_null(n)) return 0;
    const char *ty = json_is_object(n) ? type_of(n) : NULL;
    if (!ty) return opd_set_error("%s: %s.type is missing", path, where);
    if (!strcmp(ty, "NFC")) { t->nfc = 1; return 0; }
    if (!strcmp(ty, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) return opd_set_error("%s: %s.normalizers must be a list", path, where);
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            char sub[128];
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
            if (json_is_null(e)) return opd_set_error("%s: %s is null", path, sub);
            if (load_normalizer(t, path, e, sub)) return -1;
        }
        return 0;
    }
    return opd_set_error("%s: %s.type '%s' is not supported (only NFC, or a Sequence of NFC)", path, where, ty);
}

/* Unicode White_Space, which is what \s is in Oniguruma (the regex engine of
 * tokenizers). PCRE2's \s with PCRE2_UCP also takes U+180E (Mongolian vowel
 * separator, White_Space until Unicode 6.3), so the pattern's \s and \S are
 * rewritten into this explicit class before compiling. */
#define WHITE_SPACE "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* Copies pattern into out with \s / \S rewritten (see WHITE_SPACE); -1 for
 * a \S inside a character class, which has no such rewrite. */
static int rewrite_white_space(const char *pattern, char *out, size_t cap) {
    size_t n = 0;
    int in_class = 0;
    for (const char *p = pattern; *p; p++) {
        const char *add = NULL;
        char one[4] = {0};
        if (p[0] == '\\' && (p[1] == 's' || p[1] == 'S')) {
            if (in_class && p[1] == 'S') return -1;
            add = in_class ? WHITE_SPACE : p[1] == 's' ? "[" WHITE_SPACE "]" : "[^" WHITE_SPACE "]";
            p++;
        } else if (p[0] == '\\' && p[1]) {
            one[0] = p[0]; one[1] = p[1];
            add = one;
            p++;
        } else {
            if (p[0] == '[' && !in_class) {
                in_class = 1;
                /* a ']' right after '[' or '[^' is a literal, not the end */
                int k = 0;
                one[k++] = '[';
                if (p[1] == '^') { one[k++] = '^'; p++; }
                if (p[1] == ']') { one[k++] = ']'; p++; }
            } else if (p[0] == ']' && in_class) {
                in_class = 0;
                one[0] = ']';
            } else {
                one[0] = p[0];
            }
            add = one;
        }
        size_t k = strlen(add);
        if (n + k + 1 > cap) return -1;
        memcpy(out + n, add, k);
        n += k;
    }
    out[n] = '\0';
    return 0;
}

static int add_split(opd_bpe *t, const char *path, const char *where, const char *pattern, int literal) {
    if (t->n_splits == OPD_BPE_MAX_SPLITS)
        return opd_set_error("%s: %s: more than %d Split steps", path, where, OPD_BPE_MAX_SPLITS);
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    char rewritten[8192];
    if (!literal) {
        if (strlen(pattern) > 1024)
            return opd_set_error("%s: %s: regex of %zu bytes (at most 1024)", path, where, strlen(pattern));
        if (rewrite_white_space(pattern, rewritten, sizeof rewritten))
            return opd_set_error("%s: %s: \\S inside a character class is not supported", path, where);
        pattern = rewritten;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return opd_set_error("%s: %s: the regex does not compile at offset %zu: %s", path, where, (size_t)off, msg);
    }
    /* JIT when the platform has it; the interpreter gives the same matches */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    t->split_re[t->n_splits++] = re;
    return 0;
}

static int load_byte_level(opd_bpe *t, const char *path, json_t *p, const char *where) {
    if (check_bool(path, p, where, "add_prefix_space", 0)) return -1;
    json_t *ur = json_object_get(p, "use_regex");
    if (ur && !json_is_boolean(ur)) return opd_set_error("%s: %s.use_regex must be true or false", path, where);
    /* use_regex defaults to true (the GPT-2 split) */
    if (!ur || json_is_true(ur)) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s (use_regex)", where);
        return add_split(t, path, sub, gpt2_pattern, 0);
    }
    return 0;
}

static int load_split(opd_bpe *t, const char *path, json_t *p, const char *where) {
    json_t *b = json_object_get(p, "behavior");
    if (!json_is_string(b) || strcmp(json_string_value(b), "Isolated"))
        return opd_set_error("%s: %s.behavior '%s' is not supported (only Isolated)", path, where,
                             json_is_string(b) ? json_string_value(b) : "?");
    if (check_bool(path, p, where, "invert", 0)) return -1;
    json_t *pat = json_object_get(p, "pattern");
    json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
    json_t *lit = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
    char sub[160];
    if (json_is_string(re)) {
        snprintf(sub, sizeof sub, "%s.pattern.Regex", where);
        return add_split(t, path, sub, json_string_value(re), 0);
    }
    if (json_is_string(lit)) {
        snprintf(sub, sizeof sub, "%s.pattern.String", where);
        return add_split(t, path, sub, json_string_value(lit), 1);
    }
    return opd_set_error("%s: %s.pattern must be {\"Regex\": ...} or {\"String\": ...}", path, where);
}

/* Sequence[Split..., ByteLevel] or a lone ByteLevel: the byte-level step must
 * come last (it turns text into byte symbols; a Split after it would see the
 * mapped characters, which no Qwen2 / Llama 3 file does). */
static int load_pre_tokenizer(opd_bpe *t, const char *path, json_t *p) {
    if (!p || json_is_null(p))
        return opd_set_error("%s: pre_tokenizer is null (a byte-level BPE needs ByteLevel)", path);
    const char *ty = json_is_object(p) ? type_of(p) : NULL;
    if (!ty) return opd_set_error("%s: pre_tokenizer.type is missing", path);
    if (!strcmp(ty, "ByteLevel")) return load_byte_level(t, path, p, "pre_tokenizer");
    if (strcmp(ty, "Sequence"))
        return opd_set_error("%s: pre_tokenizer.type '%s' is not supported (only ByteLevel, or a Sequence of Split and ByteLevel)", path, ty);
    json_t *list = json_object_get(p, "pretokenizers");
    if (!json_is_array(list) || json_array_size(list) == 0)
        return opd_set_error("%s: pre_tokenizer.pretokenizers must be a non-empty list", path);
    size_t n = json_array_size(list);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        char where[96];
        snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%zu]", i);
        const char *et = json_is_object(e) ? type_of(e) : NULL;
        if (!et) return opd_set_error("%s: %s.type is missing", path, where);
        if (!strcmp(et, "Split")) {
            if (i == n - 1) return opd_set_error("%s: %s: the last step must be ByteLevel", path, where);
            if (load_split(t, path, e, where)) return -1;
        } else if (!strcmp(et, "ByteLevel")) {
            if (i != n - 1) return opd_set_error("%s: %s: ByteLevel must be the last step", path, where);
            if (load_byte_level(t, path, e, where)) return -1;
        } else {
            return opd_set_error("%s: %s.type '%s' is not supported (only Split and ByteLevel)", path, where, et);
        }
    }
    return 0;
}

static int load_decoder_and_post(const char *path, json_t *root) {
    json_t *d = json_object_get(root, "decoder");
    const char *ty = json_is_object(d) ? type_of(d) : NULL;
    if (!ty || strcmp(ty, "ByteLevel"))
        return opd_set_error("%s: decoder.type '%s' is not supported (only ByteLevel)", path, ty ? ty : "null");
    json_t *p = json_object_get(root, "post_processor");
    if (p && !json_is_null(p)) {
        ty = json_is_object(p) ? type_of(p) : NULL;
        if (!ty || (strcmp(ty, "ByteLevel") && strcmp(ty, "TemplateProcessing") && strcmp(ty, "Sequence")))
            return opd_set_error("%s: post_processor.type '%s' is not supported (only ByteLevel, TemplateProcessing, Sequence)",
                                 path, ty ? ty : "?");
    }
    return 0;
}

/* Gives id the (decoded) text s; the id table grows as needed. */
static int set_token(opd_bpe *t, int *cap, const char *path, const char *where, int id, const char *s, int len) {
    if (id < 0 || id >= OPD_BPE_MAX_VOCAB)
        return opd_set_error("%s: %s: id %d is outside [0, %d)", path, where, id, OPD_BPE_MAX_VOCAB);
    if (len <= 0 || len > OPD_BPE_MAX_TOKEN)
        return opd_set_error("%s: %s: token of %d bytes (must be 1..%d)", path, where, len, OPD_BPE_MAX_TOKEN);
    if (id >= *cap) {
        int nc = *cap ? *cap : 1024;
        while (nc <= id) nc *= 2;
        t->token = realloc(t->token, nc * sizeof *t->token);
        t->token_len = realloc(t->token_len, nc * sizeof *t->token_len);
        t->is_special = realloc(t->is_special, nc);
        if (!t->token || !t->token_len || !t->is_special) { fprintf(stderr, "opd: out of memory\n"); abort(); }
        for (int i = *cap; i < nc; i++) { t->token[i] = NULL; t->token_len[i] = 0; t->is_special[i] = 0; }
        *cap = nc;
    }
    unsigned char buf[OPD_BPE_MAX_TOKEN];
    int mapped;
    int n = token_bytes(s, len, buf, &mapped);
    free(t->token[id]);
    t->token[id] = opd_malloc(n + 1);
    memcpy(t->token[id], buf, n);
    t->token[id][n] = '\0';
    t->token_len[id] = n;
    if (id >= t->vocab_size) t->vocab_size = id + 1;
    return mapped;
}

static int load_vocab(opd_bpe *t, int *cap, const char *path, json_t *model) {
    json_t *v = json_object_get(model, "vocab");
    if (!v) return opd_set_error("%s: model.vocab is missing", path);
    if (!json_is_object(v)) return opd_set_error("%s: model.vocab must be an object {token: id}", path);
    if (json_object_size(v) > OPD_BPE_MAX_VOCAB)
        return opd_set_error("%s: model.vocab has %zu tokens (at most %d)", path, json_object_size(v), OPD_BPE_MAX_VOCAB);
    t->vocab = map_new(json_object_size(v));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char where[96];
        snprintf(where, sizeof where, "model.vocab['%.40s']", key);
        if (!json_is_integer(val)) return opd_set_error("%s: %s must be an integer id", path, where);
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= OPD_BPE_MAX_VOCAB)
            return opd_set_error("%s: %s: id %lld is outside [0, %d)", path, where, (long long)id, OPD_BPE_MAX_VOCAB);
        if (id < *cap && t->token[id])
            return opd_set_error("%s: %s: id %lld is given to two tokens", path, where, (long long)id);
        int mapped = set_token(t, cap, path, where, (int)id, key, (int)strlen(key));
        if (mapped < 0) return -1;
        /* only byte-level tokens can come out of the merges of byte symbols */
        if (mapped) map_put(t->vocab, t->token[id], t->token_len[id], (int)id);
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = map_get(t->vocab, &c, 1);
        if (t->byte_id[b] < 0)
            return opd_set_error("%s: model.vocab has no token for byte 0x%02x (a byte-level vocabulary has all 256)", path, b);
    }
    return 0;
}

/* A vocab token given by its tokenizer.json text, or -1. */
static int vocab_lookup(const opd_bpe *t, const char *s, int len) {
    unsigned char buf[OPD_BPE_MAX_TOKEN];
    int mapped;
    if (len <= 0 || len > OPD_BPE_MAX_TOKEN) return -1;
    int n = token_bytes(s, len, buf, &mapped);
    return mapped ? map_get(t->vocab, buf, n) : -1;
}

/* merges: "left right" (one space) or ["left", "right"]; rank = position. */
static int load_merges(opd_bpe *t, const char *path, json_t *model) {
    json_t *m = json_object_get(model, "merges");
    if (!m) return opd_set_error("%s: model.merges is missing", path);
    if (!json_is_array(m)) return opd_set_error("%s: model.merges must be a list", path);
    size_t n = json_array_size(m);
    if (n > OPD_BPE_MAX_VOCAB) return opd_set_error("%s: model.merges has %zu entries (at most %d)", path, n, OPD_BPE_MAX_VOCAB);
    t->merges = map_new(n);
    t->merge_result = opd_calloc(n ? n : 1, sizeof *t->merge_result);
    t->n_merges = (int)n;
    for (size_t r = 0; r < n; r++) {
        json_t *e = json_array_get(m, r);
        const char *a, *b;
        int la, lb;
        char tmp[2 * OPD_BPE_MAX_TOKEN + 2];
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1] || strlen(s) >= sizeof tmp)
                return opd_set_error("%s: model.merges[%zu] '%.60s' is not two tokens separated by one space", path, r, s);
            a = s; la = (int)(sp - s); b = sp + 1; lb = (int)strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0)); la = (int)json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1)); lb = (int)json_string_length(json_array_get(e, 1));
            if (la + lb >= (int)sizeof tmp) return opd_set_error("%s: model.merges[%zu]: token too long", path, r);
        } else {
            return opd_set_error("%s: model.merges[%zu] must be a string \"a b\" or a pair [\"a\", \"b\"]", path, r);
        }
        int ia = vocab_lookup(t, a, la), ib = vocab_lookup(t, b, lb);
        if (ia < 0 || ib < 0)
            return opd_set_error("%s: model.merges[%zu]: '%.*s' is not in the vocab", path, r,
                                 ia < 0 ? la : lb, ia < 0 ? a : b);
        memcpy(tmp, a, la);
        memcpy(tmp + la, b, lb);
        int im = vocab_lookup(t, tmp, la + lb);
        if (im < 0)
            return opd_set_error("%s: model.merges[%zu]: the merged token '%.*s' is not in the vocab", path, r, la + lb, tmp);
        int key[2] = {ia, ib};
        /* a repeated pair keeps its last rank, as tokenizers' map does */
        map_put(t->merges, key, sizeof key, (int)r);
        t->merge_result[r] = im;
    }
    return 0;
}

static int load_model(opd_bpe *t, int *cap, const char *path, json_t *model) {
    if (!json_is_object(model)) return opd_set_error("%s: model is missing", path);
    const char *ty = type_of(model);
    if (!ty) return opd_set_error("%s: model.type is missing", path);
    if (strcmp(ty, "BPE")) return opd_set_error("%s: model.type '%s' is not supported (only BPE)", path, ty);
    json_t *dr = json_object_get(model, "dropout");
    if (dr && !json_is_null(dr) && !(json_is_number(dr) && json_number_value(dr) == 0))
        return opd_set_error("%s: model.dropout is not supported (only null)", path);
    if (check_bool(path, model, "model", "byte_fallback", 0) ||
        check_empty_string(path, model, "model", "continuing_subword_prefix") ||
        check_empty_string(path, model, "model", "end_of_word_suffix"))
        return -1;
    json_t *im = json_object_get(model, "ignore_merges");
    if (im && !json_is_null(im) && !json_is_boolean(im))
        return opd_set_error("%s: model.ignore_merges must be true or false", path);
    t->ignore_merges = json_is_true(im);
    if (load_vocab(t, cap, path, model)) return -1;
    return load_merges(t, path, model);
}

/* Orders the added tokens for matching: class (normalized), first byte, then
 * longest first, so the first token that matches at a position is the
 * longest one (tokenizers' leftmost-longest). */
static int added_cmp(const void *pa, const void *pb) {
    const opd_bpe_added *a = pa, *b = pb;
    if (a->normalized != b->normalized) return a->normalized - b->normalized;
    unsigned char ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
    if (ca != cb) return ca - cb;
    return b->len - a->len;
}

static int load_added(opd_bpe *t, int *cap, const char *path, json_t *root) {
    json_t *list = json_object_get(root, "added_tokens");
    if (list && !json_is_null(list) && !json_is_array(list))
        return opd_set_error("%s: added_tokens must be a list", path);
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    if (n > OPD_BPE_MAX_VOCAB) return opd_set_error("%s: added_tokens has %zu entries", path, n);
    t->added = opd_calloc(n ? n : 1, sizeof *t->added);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        json_t *id = json_object_get(e, "id"), *content = json_object_get(e, "content");
        if (!json_is_integer(id)) return opd_set_error("%s: %s.id must be an integer", path, where);
        if (!json_is_string(content) || !json_string_length(content))
            return opd_set_error("%s: %s.content must be a non-empty string", path, where);
        json_int_t idv = json_integer_value(id);
        if (idv < 0 || idv >= OPD_BPE_MAX_VOCAB)
            return opd_set_error("%s: %s: id %lld is outside [0, %d)", path, where, (long long)idv, OPD_BPE_MAX_VOCAB);
        opd_bpe_added *a = &t->added[t->n_added++];
        a->id = (int)idv;
        a->special = json_is_true(json_object_get(e, "special"));
        a->single_word = json_is_true(json_object_get(e, "single_word"));
        a->lstrip = json_is_true(json_object_get(e, "lstrip"));
        a->rstrip = json_is_true(json_object_get(e, "rstrip"));
        /* tokenizers' default: normalized unless special */
        json_t *norm = json_object_get(e, "normalized");
        a->normalized = json_is_boolean(norm) ? json_is_true(norm) : !a->special;
        const char *s = json_string_value(content);
        int len = (int)json_string_length(content);
        if ((int)strlen(s) != len) return opd_set_error("%s: %s.content has a NUL character", path, where);
        if (set_token(t, cap, path, where, a->id, s, len) < 0) return -1;
        t->is_special[a->id] = (unsigned char)a->special;
        /* normalized tokens are matched in normalized text: match their NFC form */
        size_t nlen = len;
        uint8_t *c = NULL;
        if (a->normalized && t->nfc) c = u8_normalize(UNINORM_NFC, (const uint8_t *)s, len, NULL, &nlen);
        if (c) {
            a->content = opd_malloc(nlen + 1);
            memcpy(a->content, c, nlen);
            free(c);
        } else {
            a->content = opd_malloc(len + 1);
            memcpy(a->content, s, len);
            nlen = len;
        }
        a->content[nlen] = '\0';
        a->len = (int)nlen;
    }
    qsort(t->added, t->n_added, sizeof *t->added, added_cmp);
    /* added_lo[c][b]: first token of class c whose first byte is >= b */
    for (int c = 0; c < 2; c++)
        for (int b = 0; b <= 256; b++) {
            int k = 0;
            while (k < t->n_added && (t->added[k].normalized < c ||
                   (t->added[k].normalized == c && (unsigned char)t->added[k].content[0] < b)))
                k++;
            t->added_lo[c][b] = k;
        }
    return 0;
}

int opd_bpe_load(opd_bpe *t, const char *path) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return opd_set_error("%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        if (sz < 0 || (unsigned long)sz > OPD_BPE_MAX_FILE) {
            fclose(f);
            return opd_set_error("%s: %ld bytes is not a tokenizer.json (at most %u)", path, sz, OPD_BPE_MAX_FILE);
        }
        rewind(f);
        buf = opd_malloc((size_t)sz + 1);
        len = fread(buf, 1, (size_t)sz, f);
    }
    fclose(f);
    if (!buf) return opd_set_error("%s: cannot read", path);
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    free(buf);
    if (!root) return opd_set_error("%s:%d: not JSON: %s", path, jerr.line, jerr.text);
    int cap = 0, rc = -1;
    if (!json_is_object(root)) { opd_set_error("%s: not a tokenizer.json (not a JSON object)", path); goto done; }
    if (load_normalizer(t, path, json_object_get(root, "normalizer"), "normalizer")) goto done;
    if (load_pre_tokenizer(t, path, json_object_get(root, "pre_tokenizer"))) goto done;
    if (load_decoder_and_post(path, root)) goto done;
    if (load_model(t, &cap, path, json_object_get(root, "model"))) goto done;
    if (load_added(t, &cap, path, root)) goto done;
    rc = 0;
done:
    json_decref(root);
    if (rc) opd_bpe_free(t);
    return rc;
}

/* ------------------------------------------------------------ encoding */
typedef struct {
    int *ids;
    int n, cap;
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
    int scratch_n;       /* bpe_word's buffers, kept for the whole encode */
    int *sym;            /* (3 * scratch_n) symbols, next and prev links */
    uint64_t *heap;      /* (3 * scratch_n) pending merges */
} encoder;

static int emit(encoder *e, int id) {
    if (e->n == e->cap) return opd_set_error("bpe encode: more than %d tokens", e->cap);
    e->ids[e->n++] = id;
    return 0;
}

/* Rank of merging symbols a and b, or INT_MAX when no merge joins them. */
static int pair_rank(const opd_bpe *t, int a, int b) {
    int key[2] = {a, b};
    int r = map_get(t->merges, key, sizeof key);
    return r < 0 ? INT_MAX : r;
}

/* A min-heap of pending merges, each a 64-bit key (rank << 32 | position):
 * the lowest rank comes out first and, on a tie, the leftmost position. */
static void heap_push(uint64_t *h, int *n, uint64_t k) {
    int i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > k) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = k;
}

static uint64_t heap_pop(uint64_t *h, int *n) {
    uint64_t top = h[0], last = h[--*n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Queues the merge of symbol i with its right neighbour j, if there is one. */
static void queue_pair(const opd_bpe *t, const int *sym, int i, int j, uint64_t *heap, int *nheap) {
    int r = pair_rank(t, sym[i], sym[j]);
    if (r != INT_MAX) heap_push(heap, nheap, (uint64_t)r << 32 | (uint32_t)i);
}

/* Stage 4, BPE on one word: start from its bytes and repeatedly merge the
 * adjacent pair of lowest rank (the leftmost one on a tie). As in
 * tokenizers, the symbols are a linked list over the byte positions and the
 * candidate merges wait in a heap by (rank, position), so a long word (a
 * run of letters with no space, base64) costs O(n log n), not O(n^2). An
 * entry is stale once a neighbour has been merged away or replaced: it is
 * skipped when the pair at its position no longer has its rank. */
static int bpe_word(const opd_bpe *t, encoder *e, const unsigned char *w, int n) {
    if (t->ignore_merges) {  /* Llama 3: a word that is a token stays whole */
        int id = n <= OPD_BPE_MAX_TOKEN ? map_get(t->vocab, w, n) : -1;
        if (id >= 0) return emit(e, id);
    }
    if (n > e->scratch_n) {  /* every merge queues at most two pairs: 3n entries */
        free(e->sym); free(e->heap);
        e->scratch_n = n;
        e->sym = opd_malloc(3 * (size_t)n * sizeof *e->sym);
        e->heap = opd_malloc(3 * (size_t)n * sizeof *e->heap);
    }
    /* the live symbols are a doubly linked list over the byte positions;
     * sym[i] < 0: position i has been merged into the symbol on its left */
    int *sym = e->sym, *next = e->sym + n, *prev = e->sym + 2 * n;
    uint64_t *heap = e->heap;
    int nheap = 0;
    for (int i = 0; i < n; i++) {
        sym[i] = t->byte_id[w[i]];
        next[i] = i + 1 < n ? i + 1 : -1;
        prev[i] = i - 1;
    }
    for (int i = 0; i + 1 < n; i++) queue_pair(t, sym, i, i + 1, heap, &nheap);
    while (nheap > 0) {
        uint64_t k = heap_pop(heap, &nheap);
        int rank = (int)(k >> 32), i = (int)(k & 0xffffffffu), j = next[i];
        if (sym[i] < 0 || j < 0 || pair_rank(t, sym[i], sym[j]) != rank) continue;  /* stale */
        sym[i] = t->merge_result[rank];
        sym[j] = -1;
        next[i] = next[j];
        if (next[i] >= 0) prev[next[i]] = i;
        /* the merged symbol forms new pairs with both neighbours */
        if (prev[i] >= 0) queue_pair(t, sym, prev[i], i, heap, &nheap);
        if (next[i] >= 0) queue_pair(t, sym, i, next[i], heap, &nheap);
    }
    for (int i = 0; i >= 0; i = next[i])
        if (emit(e, sym[i])) return -1;
    return 0;
}

/* Stage 3, the pre-tokenizer: Split step `level` cuts s into its regex
 * matches and the gaps between them (behavior Isolated: both are pieces);
 * each piece goes to the next step, and after the last to BPE. Each step
 * sees only its piece, as in tokenizers, so a lookahead stops at its end. */
static int pre_tokenize(const opd_bpe *t, encoder *e, int level, const char *s, size_t n) {
    if (n == 0) return 0;
    if (level == t->n_splits) return bpe_word(t, e, (const unsigned char *)s, (int)n);
    const pcre2_code *re = t->split_re[level];
    size_t pos = 0, from = 0;
    while (from < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, e->md, e->mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return opd_set_error("bpe encode: pre-tokenizer regex failed: %s", msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (b == a) {  /* an empty match cuts nothing: step over one character */
            from = a + 1;
            while (from < n && ((unsigned char)s[from] & 0xc0) == 0x80) from++;
            continue;
        }
        if (a > pos && pre_tokenize(t, e, level + 1, s + pos, a - pos)) return -1;
        if (pre_tokenize(t, e, level + 1, s + a, b - a)) return -1;
        pos = from = b;
    }
    return pre_tokenize(t, e, level + 1, s + pos, n - pos);
}

/* Character classes of the added-token rules, as tokenizers' regex crate has
 * them: \w (alphabetic, marks, decimal digits, connectors) and \s. */
static int is_word_char(ucs4_t c) {
    return uc_is_property_alphabetic(c) || uc_is_general_category(c, UC_CATEGORY_M) ||
           uc_is_general_category(c, UC_CATEGORY_Nd) || uc_is_general_category(c, UC_CATEGORY_Pc) ||
           uc_is_property_join_control(c);
}

static ucs4_t char_before(const char *s, size_t i) {
    size_t j = i;
    while (j > 0 && ((unsigned char)s[--j] & 0xc0) == 0x80) {}
    ucs4_t c;
    u8_mbtouc(&c, (const uint8_t *)s + j, i - j);
    return c;
}

static ucs4_t char_at(const char *s, size_t i, size_t n, int *len) {
    ucs4_t c;
    *len = u8_mbtouc(&c, (const uint8_t *)s + i, n - i);
    return c;
}

static int encode_normalized(const opd_bpe *t, encoder *e, const char *s, size_t n, int flags);

/* Stages 1 and 2: cut added tokens of class `normalized` out of s,
 * leftmost-longest and without overlap (a match that fails single_word is
 * consumed, not retried one character later, as with tokenizers'
 * Aho-Corasick iterator); lstrip / rstrip take the whitespace beside a match
 * into the token (a match that starts inside whitespace taken by rstrip is
 * still a match). The text between matches goes on to the next stage. */
static int split_added(const opd_bpe *t, encoder *e, const char *s, size_t n, int normalized, int flags) {
    size_t done = 0, i = 0;
    const int *lo = t->added_lo[normalized];
    while (i < n && !(flags & OPD_BPE_NO_ADDED)) {
        unsigned char c0 = (unsigned char)s[i];
        const opd_bpe_added *hit = NULL;
        for (int k = lo[c0]; k < lo[c0 + 1] && !hit; k++) {
            const opd_bpe_added *a = &t->added[k];
            if ((size_t)a->len <= n - i && !memcmp(s + i, a->content, a->len)) hit = a;
        }
        if (!hit) { i++; continue; }
        size_t start = i, stop = i + hit->len;
        i = stop;
        if (hit->single_word) {
            int l;
            int left_ok = start == 0 || !is_word_char(char_before(s, start));
            int right_ok = stop == n || !is_word_char(char_at(s, stop, n, &l));
            if (!left_ok || !right_ok) continue;
        }
        if (hit->lstrip)
            while (start > done && uc_is_property_white_space(char_before(s, start))) {
                size_t j = start;
                while (j > 0 && ((unsigned char)s[--j] & 0xc0) == 0x80) {}
                start = j;
            }
        if (hit->rstrip) {  /* the search goes on from the match's end, as in tokenizers */
            int l;
            while (stop < n && uc_is_property_white_space(char_at(s, stop, n, &l))) stop += l;
        }
        if (start > done) {
            int rc = normalized ? pre_tokenize(t, e, 0, s + done, start - done)
                                : encode_normalized(t, e, s + done, start - done, flags);
            if (rc) return -1;
        }
        if (emit(e, hit->id)) return -1;
        if (stop > done) done = stop;
    }
    if (done >= n) return 0;
    return normalized ? pre_tokenize(t, e, 0, s + done, n - done)
                      : encode_normalized(t, e, s + done, n - done, flags);
}

/* Stage 2: normalize one piece (the normalizer sees the text between the
 * raw-matched added tokens, never across them), then cut the normalized
 * added tokens out of it. */
static int encode_normalized(const opd_bpe *t, encoder *e, const char *s, size_t n, int flags) {
    if (!t->nfc) return split_added(t, e, s, n, 1, flags);
    size_t m = 0;
    uint8_t *nfc = u8_normalize(UNINORM_NFC, (const uint8_t *)s, n, NULL, &m);
    if (!nfc) return opd_set_error("bpe encode: NFC normalization failed: %s", strerror(errno));
    int rc = split_added(t, e, (const char *)nfc, m, 1, flags);
    free(nfc);
    return rc;
}

int opd_bpe_encode(const opd_bpe *t, const char *text, size_t len, int *ids, int cap, int flags) {
    if (!t->vocab) return opd_set_error("bpe encode: no tokenizer loaded");
    if (len > (size_t)INT_MAX / 4) return opd_set_error("bpe encode: a text of %zu bytes is too long", len);
    const uint8_t *bad = u8_check((const uint8_t *)text, len);
    if (bad) return opd_set_error("bpe encode: invalid UTF-8 at byte %zu", (size_t)(bad - (const uint8_t *)text));
    encoder e = {ids, 0, cap < 0 ? 0 : cap, NULL, NULL, NULL, 0, NULL, NULL};
    e.md = pcre2_match_data_create(1, NULL);
    e.mc = pcre2_match_context_create(NULL);
    /* a JIT stack larger than the default 32 KiB, for long whitespace runs */
    e.js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (e.js) pcre2_jit_stack_assign(e.mc, NULL, e.js);
    int rc = split_added(t, &e, text, len, 0, flags);
    pcre2_jit_stack_free(e.js);
    pcre2_match_context_free(e.mc);
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.heap);
    return rc ? -1 : e.n;
}

/* ------------------------------------------------------------ decoding */
int opd_bpe_decode(const opd_bpe *t, const int *ids, int n, char *out, size_t cap, int flags) {
    size_t len = 0;
    if (cap == 0) return opd_set_error("bpe decode: no room for the text");
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->token[id])
            return opd_set_error("bpe decode: id %d is not in the vocabulary (%d ids)", id, t->vocab_size);
        if ((flags & OPD_BPE_SKIP_SPECIAL) && t->is_special[id]) continue;
        size_t k = t->token_len[id];
        if (len + k + 1 > cap) return opd_set_error("bpe decode: the text does not fit in %zu bytes", cap);
        memcpy(out + len, t->token[id], k);
        len += k;
    }
    out[len] = '\0';
    return (int)len;
}

int opd_bpe_token_id(const opd_bpe *t, const char *text) {
    size_t len = strlen(text);
    for (int i = 0; i < t->n_added; i++)
        if ((size_t)t->added[i].len == len && !memcmp(t->added[i].content, text, len)) return t->added[i].id;
    int id = len <= OPD_BPE_MAX_TOKEN ? map_get(t->vocab, text, (int)len) : -1;
    if (id >= 0) return id;
    for (id = 0; id < t->vocab_size; id++)
        if (t->token[id] && (size_t)t->token_len[id] == len && !memcmp(t->token[id], text, len)) return id;
    return opd_set_error("no token '%.60s' in the tokenizer", text);
}
