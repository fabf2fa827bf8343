/* safetensors_write.c — write an opd_safetensors container as a
 * safetensors file (the format and the reader are in safetensors.c):
 *
 *   u64 N (little-endian) | N bytes of JSON header | data buffer
 *
 * Tensors sorted by name, header padded to 8 bytes, written atomically. */
#include "opd.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The data buffer is little-endian; we copy it raw, so the host must be too. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "opd's safetensors I/O assumes a little-endian host"
#endif

static int name_cmp(const void *a, const void *b) {
    const opd_st_tensor *x = *(const opd_st_tensor *const *)a;
    const opd_st_tensor *y = *(const opd_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

int opd_st_write(const opd_safetensors *st, const char *path) {
    /* Sorted by name, as the reference Python writer lays tensors out, so the
     * same content always gives the same bytes. */
    const opd_st_tensor **order = opd_calloc(st->n ? st->n : 1, sizeof *order);
    for (int i = 0; i < st->n; i++) order[i] = &st->t[i];
    qsort(order, st->n, sizeof *order, name_cmp);

    json_t *root = json_object();
    if (st->nmeta > 0) {
        json_t *meta = json_object();
        for (int i = 0; i < st->nmeta; i++)
            json_object_set_new(meta, st->meta_keys[i], json_string(st->meta_vals[i]));
        json_object_set_new(root, "__metadata__", meta);
    }
    uint64_t off = 0;
    for (int i = 0; i < st->n; i++) {
        const opd_st_tensor *t = order[i];
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(opd_dtype_name(t->dtype)));
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(e, "shape", shape);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes)));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, t->name, e);
        off += t->nbytes;
    }
    char *json = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!json) {
        free(order);
        return opd_set_error("%s: cannot serialise the safetensors header (invalid UTF-8 in a name?)", path);
    }

    /* Pad the header with spaces to a multiple of 8 so the data buffer starts
     * 8-byte aligned (what the reference writer does too). */
    size_t jlen = strlen(json);
    size_t hlen = (jlen + 7) & ~(size_t)7;
    char *hdr = opd_malloc(hlen);
    memcpy(hdr, json, jlen);
    memset(hdr + jlen, ' ', hlen - jlen);
    free(json);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    int nparts = 2 + st->n;
    const void **parts = opd_calloc(nparts, sizeof *parts);
    size_t *sizes = opd_calloc(nparts, sizeof *sizes);
    parts[0] = lenb; sizes[0] = 8;
    parts[1] = hdr;  sizes[1] = hlen;
    for (int i = 0; i < st->n; i++) {
        parts[2 + i] = order[i]->data;
        sizes[2 + i] = order[i]->nbytes;
    }
    int rc = opd_atomic_write(path, (const void *const *)parts, sizes, nparts);
    free(parts);
    free(sizes);
    free(hdr);
    free(order);
    return rc;
}
