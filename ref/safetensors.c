/* safetensors.c — read and write the safetensors format (ref/SPEC.md section 7):
 *
 *   u64 N (little-endian) | N bytes of JSON header | data buffer
 *
 * The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end)} (offsets relative to the data buffer) and may hold a
 * "__metadata__" map of strings. The reader trusts nothing in the file: every
 * size is checked against the file before it is used, and the tensors must
 * cover the data buffer exactly (no overlaps, no holes), as the format
 * requires. JSON goes through jansson.
 *
 * This file: the dtypes, the in-memory container, the reader;
 * safetensors_write.c the writer. */
#include "opd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The data buffer is little-endian; we copy it raw, so the host must be too. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "opd's safetensors I/O assumes a little-endian host"
#endif

/* A header this large is not a checkpoint; refuse before allocating it. */
#define ST_MAX_HEADER (100u * 1024u * 1024u)
#define ST_MAX_DIMS 4

static const char *const dtype_names[] = {"F32", "I32", "F64", "U8", "I64"};
static const size_t dtype_sizes[] = {4, 4, 8, 1, 8};
#define N_DTYPES 5

size_t opd_dtype_size(opd_dtype d) {
    return (unsigned)d < N_DTYPES ? dtype_sizes[d] : 0;
}

const char *opd_dtype_name(opd_dtype d) {
    return (unsigned)d < N_DTYPES ? dtype_names[d] : "?";
}

static int dtype_parse(const char *s, opd_dtype *d) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtype_names[i]) == 0) { *d = (opd_dtype)i; return 0; }
    return -1;
}

/* ------------------------------------------------------------ containers */
void opd_st_init(opd_safetensors *st) { memset(st, 0, sizeof *st); }

void opd_st_free(opd_safetensors *st) {
    for (int i = 0; i < st->n; i++) {
        free(st->t[i].name);
        free(st->t[i].data);
    }
    free(st->t);
    free(st->by_name);
    for (int i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    memset(st, 0, sizeof *st);
}

/* The name index: a binary search over the tensors indexed so far, then a
 * linear scan of the few added since (a file of 100,000 tensors is looked up
 * by name in log time, not scanned for every name). */
typedef struct { const char *name; int idx; } name_idx;

static int name_idx_cmp(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

static void st_reindex(opd_safetensors *st) {
    size_t n = (size_t)(st->n ? st->n : 1);
    int *ix = realloc(st->by_name, n * sizeof *ix);
    name_idx *tmp = malloc(n * sizeof *tmp);
    if (!ix || !tmp) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    for (int i = 0; i < st->n; i++) tmp[i] = (name_idx){st->t[i].name, i};
    qsort(tmp, st->n, sizeof *tmp, name_idx_cmp);
    for (int i = 0; i < st->n; i++) ix[i] = tmp[i].idx;
    free(tmp);
    st->by_name = ix;
    st->n_indexed = st->n;
}

const opd_st_tensor *opd_st_find(const opd_safetensors *st, const char *name) {
    /* an index longer than the table means entries were removed behind its
     * back: scan instead of trusting it */
    int indexed = st->by_name && st->n_indexed <= st->n ? st->n_indexed : 0;
    int lo = 0, hi = indexed;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[st->by_name[mid]].name, name);
        if (c == 0) return &st->t[st->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    for (int i = indexed; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

const char *opd_st_get_meta(const opd_safetensors *st, const char *key) {
    for (int i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_vals[i];
    return NULL;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    memcpy(p, s, n);
    return p;
}

int opd_st_set_meta(opd_safetensors *st, const char *key, const char *val) {
    if (!key || !val) return opd_set_error("safetensors: metadata key and value must not be NULL");
    for (int i = 0; i < st->nmeta; i++) {
        if (strcmp(st->meta_keys[i], key) == 0) {   /* replace */
            free(st->meta_vals[i]);
            st->meta_vals[i] = xstrdup(val);
            return 0;
        }
    }
    char **k = realloc(st->meta_keys, (st->nmeta + 1) * sizeof *k);
    if (!k) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    st->meta_keys = k;
    char **v = realloc(st->meta_vals, (st->nmeta + 1) * sizeof *v);
    if (!v) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    st->meta_vals = v;
    st->meta_keys[st->nmeta] = xstrdup(key);
    st->meta_vals[st->nmeta] = xstrdup(val);
    st->nmeta++;
    return 0;
}

/* Byte size of a tensor, or -1 when the shape is negative or the product
 * overflows (a hostile header must not wrap a size into something small). */
static int shape_nbytes(opd_dtype dtype, int ndim, const int64_t *shape, size_t *out) {
    size_t n = opd_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] > 0 && n > SIZE_MAX / (uint64_t)shape[i]) return -1;
        n *= (size_t)shape[i];
    }
    if (n > (size_t)INT64_MAX) return -1;
    *out = n;
    return 0;
}

/* Appends a tensor slot with `data` (ownership taken). */
static opd_st_tensor *push_tensor(opd_safetensors *st) {
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 16;
        opd_st_tensor *t = realloc(st->t, cap * sizeof *t);
        if (!t) { fprintf(stderr, "opd: out of memory\n"); abort(); }
        st->t = t;
        st->cap = cap;
    }
    opd_st_tensor *t = &st->t[st->n++];
    memset(t, 0, sizeof *t);
    return t;
}

int opd_st_add(opd_safetensors *st, const char *name, opd_dtype dtype,
               int ndim, const int64_t *shape, const void *data) {
    if (!name || !name[0]) return opd_set_error("safetensors: tensor name must not be empty");
    if (strcmp(name, "__metadata__") == 0)
        return opd_set_error("safetensors: '__metadata__' is reserved, not a tensor name");
    if ((unsigned)dtype >= N_DTYPES)
        return opd_set_error("safetensors: tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return opd_set_error("safetensors: tensor '%s': %d dimensions (0..%d supported)", name, ndim, ST_MAX_DIMS);
    if (opd_st_find(st, name))
        return opd_set_error("safetensors: tensor '%s' added twice", name);
    size_t nbytes;
    if (shape_nbytes(dtype, ndim, shape, &nbytes) != 0)
        return opd_set_error("safetensors: tensor '%s': shape is negative or too large", name);
    opd_st_tensor *t = push_tensor(st);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->data = opd_malloc(nbytes);
    if (nbytes) memcpy(t->data, data, nbytes);
    /* keep the unindexed tail short: reindexing when it outgrows the index
     * costs O(n log n) each time n doubles */
    if (st->n - st->n_indexed > 32 + st->n_indexed) st_reindex(st);
    return 0;
}

/* ----------------------------------------------------------------- reader */
/* One header entry with its byte range, for the coverage check. */
typedef struct { int idx; uint64_t begin, end; } st_range;

static int range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_metadata(const char *path, json_t *meta, opd_safetensors *st) {
    if (!json_is_object(meta))
        return opd_set_error("%s: __metadata__ is not a JSON object", path);
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val))
            return opd_set_error("%s: __metadata__ value of '%s' is not a string "
                                 "(safetensors metadata is a string-to-string map)", path, key);
        opd_st_set_meta(st, key, json_string_value(val));
    }
    return 0;
}

/* Parses one tensor entry; fills t (data not yet read) and its range. */
static int parse_entry(const char *path, const char *name, json_t *e,
                       opd_st_tensor *t, st_range *r, uint64_t data_size) {
    if (!json_is_object(e))
        return opd_set_error("%s: tensor '%s': header entry is not a JSON object", path, name);
    json_t *jd = json_object_get(e, "dtype");
    json_t *js = json_object_get(e, "shape");
    json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return opd_set_error("%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (dtype_parse(json_string_value(jd), &t->dtype) != 0)
        return opd_set_error("%s: tensor '%s': unsupported dtype '%s' (supported: F32, I32, F64, U8, I64)",
                             path, name, json_string_value(jd));
    if (!json_is_array(js))
        return opd_set_error("%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (json_array_size(js) > ST_MAX_DIMS)
        return opd_set_error("%s: tensor '%s': %zu dimensions, at most %d supported",
                             path, name, json_array_size(js), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return opd_set_error("%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = json_integer_value(d);
    }
    if (shape_nbytes(t->dtype, t->ndim, t->shape, &t->nbytes) != 0)
        return opd_set_error("%s: tensor '%s': shape overflows a byte size", path, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
        return opd_set_error("%s: tensor '%s': \"data_offsets\" must be [begin, end] integers", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b)
        return opd_set_error("%s: tensor '%s': data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                             "] are not an increasing non-negative range", path, name, b, en);
    if ((uint64_t)en > data_size)
        return opd_set_error("%s: tensor '%s': data_offsets end %" JSON_INTEGER_FORMAT
                             " is past the end of the data buffer (%" PRIu64 " bytes; file truncated?)",
                             path, name, en, data_size);
    if ((uint64_t)(en - b) != t->nbytes)
        return opd_set_error("%s: tensor '%s': data_offsets span %" JSON_INTEGER_FORMAT
                             " bytes but dtype %s and its shape need %zu",
                             path, name, en - b, opd_dtype_name(t->dtype), t->nbytes);
    r->begin = (uint64_t)b;
    r->end = (uint64_t)en;
    return 0;
}

/* Reads and validates the header; with read_data also every tensor. */
static int st_read(const char *path, opd_safetensors *st, int read_data) {
    opd_st_init(st);
    FILE *f = opd_fopen_input(path);
    if (!f) return -1;
    char *hdr = NULL;
    json_t *root = NULL;
    st_range *ranges = NULL;
    int rc = -1;

    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) { opd_set_error("%s: cannot stat: %s", path, strerror(errno)); goto done; }
    uint64_t file_size = (uint64_t)sb.st_size;
    if (file_size < 8) {
        opd_set_error("%s: file is %" PRIu64 " bytes, shorter than the 8-byte safetensors header length", path, file_size);
        goto done;
    }
    unsigned char lenb[8];
    if (fread(lenb, 1, 8, f) != 8) { opd_set_error("%s: cannot read the header length", path); goto done; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen > ST_MAX_HEADER) {
        opd_set_error("%s: header length %" PRIu64 " is absurd (> %u bytes): not a safetensors file?",
                      path, hlen, ST_MAX_HEADER);
        goto done;
    }
    if (hlen < 2 || hlen > file_size - 8) {
        opd_set_error("%s: header length %" PRIu64 " does not fit the file (%" PRIu64
                      " bytes after the length): truncated or not a safetensors file",
                      path, hlen, file_size - 8);
        goto done;
    }
    uint64_t data_size = file_size - 8 - hlen;
    hdr = opd_malloc(hlen);
    if (fread(hdr, 1, hlen, f) != hlen) { opd_set_error("%s: short read in the header", path); goto done; }
    if (hdr[0] != '{') {
        opd_set_error("%s: header does not start with '{': not a safetensors file", path);
        goto done;
    }

    /* duplicate names are rejected by jansson itself */
    json_error_t jerr;
    root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        opd_set_error("%s: invalid JSON header: %s (line %d, column %d, byte %d)",
                      path, jerr.text, jerr.line, jerr.column, jerr.position);
        goto done;
    }
    if (!json_is_object(root)) { opd_set_error("%s: JSON header is not an object", path); goto done; }

    size_t nent = json_object_size(root);
    ranges = opd_calloc(nent ? nent : 1, sizeof *ranges);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (parse_metadata(path, val, st) != 0) goto done;
            continue;
        }
        if (!key[0]) { opd_set_error("%s: tensor with an empty name", path); goto done; }
        opd_st_tensor *t = push_tensor(st);
        t->name = xstrdup(key);
        st_range *r = &ranges[st->n - 1];
        r->idx = st->n - 1;
        if (parse_entry(path, key, val, t, r, data_size) != 0) goto done;
    }

    /* The tensors must tile [0, data_size) exactly. */
    qsort(ranges, st->n, sizeof *ranges, range_cmp);
    uint64_t pos = 0;
    for (int i = 0; i < st->n; i++) {
        const st_range *r = &ranges[i];
        if (r->begin < pos) {
            const st_range *p = &ranges[i - 1];
            opd_set_error("%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                          ") overlap in the data buffer", path, st->t[p->idx].name, p->begin, p->end,
                          st->t[r->idx].name, r->begin, r->end);
            goto done;
        }
        if (r->begin > pos) {
            opd_set_error("%s: bytes [%" PRIu64 ", %" PRIu64 ") of the data buffer belong to no tensor "
                          "(a hole before '%s')", path, pos, r->begin, st->t[r->idx].name);
            goto done;
        }
        pos = r->end;
    }
    if (pos != data_size) {
        opd_set_error("%s: data buffer is %" PRIu64 " bytes but the tensors cover only %" PRIu64
                      " (trailing bytes)", path, data_size, pos);
        goto done;
    }

    st_reindex(st);
    if (read_data) {
        /* in offset order, so the reads are sequential */
        for (int i = 0; i < st->n; i++) {
            opd_st_tensor *t = &st->t[ranges[i].idx];
            t->data = opd_malloc(t->nbytes);
            if (t->nbytes && fread(t->data, 1, t->nbytes, f) != t->nbytes) {
                opd_set_error("%s: tensor '%s': short read (file changed or truncated while reading)",
                              path, t->name);
                goto done;
            }
        }
    }
    rc = 0;
done:
    if (rc != 0) opd_st_free(st);
    free(ranges);
    json_decref(root);
    free(hdr);
    fclose(f);
    return rc;
}

int opd_st_read(const char *path, opd_safetensors *st) { return st_read(path, st, 1); }
int opd_st_read_header(const char *path, opd_safetensors *st) { return st_read(path, st, 0); }
