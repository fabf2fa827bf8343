/* hf_load.c — the weights of a Hugging Face directory -> an opd model
 * (opd_hf_load): model.safetensors or the shards of
 * model.safetensors.index.json; every header parsed and every tensor's
 * dtype, shape and data range checked against the config and its file
 * before the parameters are allocated; then the tensors are read one at a
 * time in file order, BF16 / F16 converted to fp32 on the way. */
#include "hf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>

/* ----------------------------------------------------- safetensors headers */
typedef enum { DT_F32, DT_BF16, DT_F16, DT_OTHER } hf_dtype;

typedef struct {
    char *name;
    int shard;              /* index into hf_weights.shards */
    hf_dtype dtype;
    char dtype_name[16];    /* as written in the file */
    int ndim;
    int64_t shape[HF_MAX_DIMS];
    uint64_t offset;        /* absolute byte offset in the shard file */
    uint64_t nbytes;
} hf_tensor;

typedef struct {
    int nshards;
    char **shards;          /* full paths */
    int n, cap;
    hf_tensor *t;
} hf_weights;

static void weights_free(hf_weights *w) {
    for (int i = 0; i < w->nshards; i++) free(w->shards[i]);
    free(w->shards);
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    memset(w, 0, sizeof *w);
}

/* Element size of a safetensors dtype name, 0 if unknown. */
static size_t dtype_size(const char *s) {
    static const struct { const char *name; size_t size; } tab[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) return tab[i].size;
    return 0;
}

static int parse_tensor_entry(const char *path, const char *name, json_t *e,
                              uint64_t data_start, uint64_t data_size, hf_tensor *t) {
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_object(e) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return opd_set_error("%s: tensor '%s': header entry needs \"dtype\", \"shape\" and "
                             "\"data_offsets\": [begin, end]", path, name);
    const char *dt = json_string_value(jd);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt);
    t->dtype = !strcmp(dt, "F32") ? DT_F32 : !strcmp(dt, "BF16") ? DT_BF16
             : !strcmp(dt, "F16") ? DT_F16 : DT_OTHER;
    if (json_array_size(js) > HF_MAX_DIMS)
        return opd_set_error("%s: tensor '%s': %zu dimensions", path, name, json_array_size(js));
    t->ndim = (int)json_array_size(js);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
            return opd_set_error("%s: tensor '%s': shape[%d] is not an integer in [0, 2^31)", path, name, d);
        t->shape[d] = json_integer_value(x);
        /* numel < 2^62 before each product of a factor < 2^31: no overflow */
        numel *= (uint64_t)t->shape[d];
        if (numel > ((uint64_t)1 << 40))
            return opd_set_error("%s: tensor '%s': shape is too large", path, name);
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b || (uint64_t)en > data_size)
        return opd_set_error("%s: tensor '%s': data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                             "] are not inside the %" PRIu64 "-byte data buffer (file truncated?)",
                             path, name, b, en, data_size);
    size_t es = dtype_size(dt);
    if (es && (uint64_t)(en - b) != numel * es)
        return opd_set_error("%s: tensor '%s': data_offsets span %" JSON_INTEGER_FORMAT
                             " bytes but dtype %s and its shape need %" PRIu64,
                             path, name, en - b, dt, numel * es);
    t->offset = data_start + (uint64_t)b;
    t->nbytes = (uint64_t)(en - b);
    return 0;
}

/* Appends the tensors of one shard's header to w. */
static int read_shard_header(hf_weights *w, int shard) {
    const char *path = w->shards[shard];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return opd_set_error("%s: cannot open: %s", path, strerror(errno));
    char *hdr = NULL;
    json_t *root = NULL;
    int rc = -1;
    struct stat sb;
    unsigned char lenb[8];
    if (fstat(fd, &sb) != 0) { opd_set_error("%s: cannot stat: %s", path, strerror(errno)); goto done; }
    uint64_t file_size = (uint64_t)sb.st_size;
    if (file_size < 8 || pread(fd, lenb, 8, 0) != 8) {
        opd_set_error("%s: shorter than the 8-byte safetensors header length", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen < 2 || hlen > HF_MAX_HEADER || hlen > file_size - 8) {
        opd_set_error("%s: header length %" PRIu64 " does not fit the file (%" PRIu64
                      " bytes): truncated or not a safetensors file", path, hlen, file_size);
        goto done;
    }
    hdr = opd_malloc(hlen);
    if (pread(fd, hdr, hlen, 8) != (ssize_t)hlen) { opd_set_error("%s: short read in the header", path); goto done; }
    json_error_t jerr;
    root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        opd_set_error("%s: invalid safetensors header: %s", path, root ? "not an object" : jerr.text);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 256;
            hf_tensor *t = realloc(w->t, w->cap * sizeof *t);
            if (!t) { fprintf(stderr, "opd: out of memory\n"); abort(); }
            w->t = t;
        }
        hf_tensor *t = &w->t[w->n];
        memset(t, 0, sizeof *t);
        t->shard = shard;
        if (parse_tensor_entry(path, key, val, 8 + hlen, file_size - 8 - hlen, t) != 0) goto done;
        t->name = xstrdup(key);
        w->n++;
    }
    rc = 0;
done:
    json_decref(root);
    free(hdr);
    close(fd);
    return rc;
}

static const hf_tensor *find_tensor(const hf_weights *w, const char *name, int shard) {
    for (int i = 0; i < w->n; i++)
        if ((shard < 0 || w->t[i].shard == shard) && strcmp(w->t[i].name, name) == 0) return &w->t[i];
    return NULL;
}

static int shard_index(hf_weights *w, const char *dir, const char *file) {
    char *path = join(dir, file);
    for (int i = 0; i < w->nshards; i++)
        if (strcmp(w->shards[i], path) == 0) { free(path); return i; }
    char **s = realloc(w->shards, (w->nshards + 1) * sizeof *s);
    if (!s) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    w->shards = s;
    w->shards[w->nshards] = path;
    return w->nshards++;
}

/* Tensors the model does not need but transformers may have saved. */
static int ignorable(const char *name, const opd_config *cfg) {
    /* a tied model's head is the embedding; some writers store it anyway:
     * it is not read (the embedding is the one weight) */
    if (cfg->tie_embeddings && strcmp(name, "lm_head.weight") == 0) return 1;
    /* older checkpoints saved the RoPE frequencies as a buffer; opd computes them */
    const char *suffix = ".rotary_emb.inv_freq";
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

/* Finds the weight files of dir and reads their headers. *where (malloc'd)
 * names the file to blame for a tensor that is not where it should be:
 * model.safetensors, or the index. For a sharded model, map[i] is the shard
 * weight_map gives tensor ts[i] (checked: it exists and holds it). */
static int open_weights(const char *dir, const opd_tensor_info *ts, int nt,
                        hf_weights *w, int *map, char **where) {
    memset(w, 0, sizeof *w);
    char *single = join(dir, "model.safetensors");
    char *index = join(dir, "model.safetensors.index.json");
    json_t *root = NULL;
    int rc = -1;
    if (is_file(index)) {
        *where = xstrdup(index);
        root = opd_hf_load_json(index, HF_MAX_INDEX);
        if (!root) goto done;
        json_t *wm = json_object_get(root, "weight_map");
        if (!json_is_object(wm)) { opd_set_error("%s: key 'weight_map' is missing or not an object", index); goto done; }
        /* every file it names must be a plain name in dir and must exist */
        const char *key;
        json_t *val;
        json_object_foreach(wm, key, val) {
            const char *f = json_is_string(val) ? json_string_value(val) : NULL;
            if (!f || !f[0] || strchr(f, '/') || f[0] == '.') {
                opd_set_error("%s: weight_map entry '%s' is not a file name in the directory", index, key);
                goto done;
            }
            int s = shard_index(w, dir, f);
            if (s == w->nshards - 1 && !is_file(w->shards[s])) {
                opd_set_error("%s: missing shard '%s' (weight_map puts '%s' there)", index, f, key);
                goto done;
            }
        }
        for (int i = 0; i < nt; i++) {
            json_t *f = json_object_get(wm, ts[i].name);
            if (!f) { opd_set_error("%s: tensor '%s' is not in weight_map", index, ts[i].name); goto done; }
            map[i] = shard_index(w, dir, json_string_value(f));
        }
        for (int s = 0; s < w->nshards; s++)
            if (read_shard_header(w, s) != 0) goto done;
        for (int i = 0; i < nt; i++)
            if (!find_tensor(w, ts[i].name, map[i])) {
                opd_set_error("%s: tensor '%s' is missing (weight_map puts it in this shard)",
                              w->shards[map[i]], ts[i].name);
                goto done;
            }
    } else if (is_file(single)) {
        *where = xstrdup(single);
        shard_index(w, dir, "model.safetensors");
        if (read_shard_header(w, 0) != 0) goto done;
        for (int i = 0; i < nt; i++) map[i] = 0;
    } else {
        char *bin = join(dir, "pytorch_model.bin");
        if (is_file(bin))
            opd_set_error("%s: only pytorch_model.bin, a pickle; opd reads safetensors weights "
                          "(save_pretrained(safe_serialization=True))", dir);
        else
            opd_set_error("%s: neither model.safetensors nor model.safetensors.index.json", dir);
        free(bin);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    free(single);
    free(index);
    if (rc != 0) weights_free(w);
    return rc;
}

/* Every tensor present must be needed or knowingly ignored; ts[i] must be
 * present in shard map[i] with a dtype we convert and the config's shape. */
static int check_tensors(const hf_weights *w, const opd_config *cfg, const opd_tensor_info *ts,
                         int nt, const int *map, const char *where) {
    for (int j = 0; j < w->n; j++) {
        const char *name = w->t[j].name;
        int known = ignorable(name, cfg);
        for (int i = 0; i < nt && !known; i++) known = strcmp(name, ts[i].name) == 0;
        if (!known)
            return opd_set_error("%s: unexpected tensor '%s' (not a parameter of a %s model with this config.json)",
                                 w->shards[w->t[j].shard], name, cfg->qkv_bias ? "Qwen2" : "Llama");
    }
    for (int i = 0; i < nt; i++) {
        const hf_tensor *t = find_tensor(w, ts[i].name, map[i]);
        const char *file = w->shards[map[i]];
        if (!t) return opd_set_error("%s: tensor '%s' is missing", where, ts[i].name);
        if (t->dtype == DT_OTHER)
            return opd_set_error("%s: tensor '%s': dtype %s is not supported (opd reads F32, BF16 and F16)",
                                 file, ts[i].name, t->dtype_name);
        int same = t->ndim == ts[i].ndim;
        for (int d = 0; same && d < ts[i].ndim; d++) same = t->shape[d] == ts[i].shape[d];
        if (!same) {
            char found[128] = "[";
            for (int d = 0; d < t->ndim; d++) {
                size_t k = strlen(found);
                snprintf(found + k, sizeof found - k, d ? ", %" PRId64 : "%" PRId64, t->shape[d]);
            }
            strncat(found, "]", sizeof found - strlen(found) - 1);
            char want[64];
            if (ts[i].ndim == 2) snprintf(want, sizeof want, "[%d, %d]", ts[i].shape[0], ts[i].shape[1]);
            else snprintf(want, sizeof want, "[%d]", ts[i].shape[0]);
            return opd_set_error("%s: tensor '%s': shape %s, but config.json gives %s", file,
                                 ts[i].name, found, want);
        }
    }
    return 0;
}

/* pread exactly n bytes (large reads come back in pieces) */
static int pread_full(int fd, void *buf, size_t n, uint64_t off) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Reads tensor t into dst (numel fp32), converting 16-bit data through a
 * bounded staging buffer. */
static int read_tensor(int fd, const char *file, const hf_tensor *t, float *dst,
                       size_t numel, uint16_t *stage) {
    if (t->dtype == DT_F32) {
        if (pread_full(fd, dst, numel * sizeof(float), t->offset) != 0)
            return opd_set_error("%s: tensor '%s': short read (file changed while loading?)", file, t->name);
    } else {
        for (size_t done = 0; done < numel; done += HF_STAGE_ELEMS) {
            size_t k = numel - done < HF_STAGE_ELEMS ? numel - done : HF_STAGE_ELEMS;
            if (pread_full(fd, stage, k * 2, t->offset + done * 2) != 0)
                return opd_set_error("%s: tensor '%s': short read (file changed while loading?)", file, t->name);
            if (t->dtype == DT_BF16) for (size_t j = 0; j < k; j++) dst[done + j] = opd_bf16_to_f32(stage[j]);
            else for (size_t j = 0; j < k; j++) dst[done + j] = opd_f16_to_f32(stage[j]);
        }
    }
    /* as opd_model_load: a NaN / Inf weight would poison training silently */
    for (size_t j = 0; j < numel; j++)
        if (!isfinite(dst[j]))
            return opd_set_error("%s: tensor '%s' element %zu is %s", file, t->name, j,
                                 isnan(dst[j]) ? "NaN" : "infinite");
    return 0;
}

typedef struct { const hf_tensor *t; size_t param; } read_job;

static int job_cmp(const void *a, const void *b) {
    const hf_tensor *x = ((const read_job *)a)->t, *y = ((const read_job *)b)->t;
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int opd_hf_load(opd_model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    opd_config cfg;
    if (opd_hf_read_config(dir, &cfg) != 0) return -1;
    int nt = opd_param_tensor_count(&cfg);
    opd_tensor_info *ts = opd_malloc(nt * sizeof *ts);
    opd_param_tensors(&cfg, ts);
    int *map = opd_calloc(nt, sizeof *map);
    read_job *jobs = opd_calloc(nt, sizeof *jobs);
    int *fds = NULL;
    uint16_t *stage = NULL;
    char *where = NULL;
    hf_weights w;
    int rc = -1;
    if (open_weights(dir, ts, nt, &w, map, &where) != 0) goto done_nw;
    /* everything is checked before the parameters are allocated */
    if (check_tensors(&w, &cfg, ts, nt, map, where) != 0) goto done;
    if (opd_model_init(m, &cfg) != 0) goto done;

    /* in file order, so a cold page cache reads each shard sequentially */
    for (int i = 0; i < nt; i++) {
        jobs[i].t = find_tensor(&w, ts[i].name, map[i]);
        jobs[i].param = (size_t)i;
    }
    qsort(jobs, nt, sizeof *jobs, job_cmp);
    fds = opd_malloc(w.nshards * sizeof *fds);
    for (int s = 0; s < w.nshards; s++) fds[s] = -1;
    stage = opd_malloc(HF_STAGE_ELEMS * sizeof *stage);
    for (int j = 0; j < nt; j++) {
        const hf_tensor *t = jobs[j].t;
        const opd_tensor_info *ti = &ts[jobs[j].param];
        if (fds[t->shard] < 0 && (fds[t->shard] = open(w.shards[t->shard], O_RDONLY)) < 0) {
            opd_set_error("%s: cannot open: %s", w.shards[t->shard], strerror(errno));
            goto done;
        }
        if (read_tensor(fds[t->shard], w.shards[t->shard], t, m->params_mem + ti->offset,
                        ti->numel, stage) != 0)
            goto done;
    }
    rc = 0;
done:
    if (fds) for (int s = 0; s < w.nshards; s++) if (fds[s] >= 0) close(fds[s]);
    weights_free(&w);
done_nw:
    if (rc != 0) opd_model_free(m);
    free(fds);
    free(stage);
    free(where);
    free(jobs);
    free(map);
    free(ts);
    return rc;
}

