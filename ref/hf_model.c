/* hf_model.c — Hugging Face model directories (see opd_hf.h).
 *
 * A directory written by transformers' save_pretrained holds config.json and
 * either model.safetensors or model.safetensors.index.json naming shard
 * files ("weight_map": tensor name -> file). opd's tensor names are already
 * the Hugging Face ones (opd_param_tensors), so loading is: map the config,
 * refuse what opd cannot compute, check every tensor's dtype and shape
 * against it, then read the tensors one at a time, converting BF16 / F16 to
 * fp32 on the way.
 *
 * The safetensors headers are parsed here (not by ref/safetensors.c) because
 * that reader knows neither BF16 nor F16 and reads the data into its own
 * copies; here the data goes straight into the model's buffer. Nothing in a
 * file is trusted: sizes are checked against the file before they are used.
 */
#include "opd_hf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hf_model.c reads little-endian safetensors data in place"
#endif

#define HF_MAX_CONFIG (1u << 20)            /* a config.json is a few kB */
#define HF_MAX_INDEX (64u << 20)            /* an index is ~100 bytes per tensor */
#define HF_MAX_HEADER (100u << 20)          /* as ref/safetensors.c */
#define HF_MAX_DIMS 8
#define HF_STAGE_ELEMS ((size_t)1 << 20)    /* 2 MiB of 16-bit values per read */

/* ------------------------------------------------------ 16-bit floats */
float opd_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float opd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;      /* biased by 15 */
    uint32_t man = h & 0x3ff;             /* 10 bits */
    uint32_t u;
    if (exp == 0x1f) {                    /* inf, or NaN with its payload */
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {                /* normal: rebias 15 -> 127 */
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {                /* +-0 */
        u = sign;
    } else {
        /* subnormal: man * 2^-24. With k the top set bit of man (0..9), that
         * is 1.f * 2^(k-24): a normal fp32 with exponent field k - 24 + 127. */
        int k = 31 - __builtin_clz(man);
        u = sign | ((uint32_t)(k + 103) << 23) | ((man << (23 - k)) & 0x7fffffu);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t opd_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)         /* NaN: truncating could give inf */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* add half an ulp of bf16, minus one unless the kept lsb is odd: ties go
     * to the even neighbour; a carry into the exponent is the right result
     * (up to inf for values past the largest bf16) */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* -------------------------------------------------------------- helpers */
static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = opd_malloc(n);
    memcpy(p, s, n);
    return p;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = opd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* A JSON file of at most `limit` bytes; NULL with the error set. */
static json_t *load_json(const char *path, size_t limit) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        opd_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if ((uint64_t)sb.st_size > limit) {
        opd_set_error("%s: %lld bytes, more than the %zu a file of this kind may have",
                      path, (long long)sb.st_size, limit);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        opd_set_error("%s: invalid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        opd_set_error("%s: not a JSON object", path);
        return NULL;
    }
    return root;
}

/* --------------------------------------------------------------- config */
/* An integer key in [lo, hi]; absent or null: def (def < 0: required). */
static int cfg_int(json_t *root, const char *path, const char *key, long def,
                   long lo, long hi, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return opd_set_error("%s: key '%s' is missing", path, key);
        *out = (int)def;
        return 0;
    }
    if (!json_is_integer(v))
        return opd_set_error("%s: key '%s' is not an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return opd_set_error("%s: key '%s' = %" JSON_INTEGER_FORMAT " out of range [%ld, %ld]",
                             path, key, x, lo, hi);
    *out = (int)x;
    return 0;
}

static int cfg_num(json_t *root, const char *path, const char *key, double def,
                   double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_number(v)) return opd_set_error("%s: key '%s' is not a number", path, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return opd_set_error("%s: key '%s' is not finite", path, key);
    return 0;
}

static int cfg_bool(json_t *root, const char *path, const char *key, int def, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_boolean(v)) return opd_set_error("%s: key '%s' is not true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* A key that must be absent, null or false (or 0) because opd has no such
 * feature: `why` says what opd does instead. */
static int cfg_refuse(json_t *root, const char *path, const char *key, const char *why) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_number(v) && json_number_value(v) == 0.0) return 0;
    return opd_set_error("%s: key '%s' is not supported (%s)", path, key, why);
}

static int parse_config(json_t *root, const char *path, opd_config *out) {
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt))
        return opd_set_error("%s: key 'model_type' is missing (opd loads qwen2 and llama)", path);
    const char *type = json_string_value(mt);
    int qwen2 = strcmp(type, "qwen2") == 0, llama = strcmp(type, "llama") == 0;
    if (!qwen2 && !llama)
        return opd_set_error("%s: key 'model_type' = \"%s\" is not supported (opd loads qwen2 and llama)",
                             path, type);
    const char *arch = qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
    json_t *ja = json_object_get(root, "architectures");
    if (ja && !json_is_null(ja)) {
        if (!json_is_array(ja) || json_array_size(ja) != 1 || !json_is_string(json_array_get(ja, 0)))
            return opd_set_error("%s: key 'architectures' must be [\"%s\"]", path, arch);
        const char *a = json_string_value(json_array_get(ja, 0));
        if (strcmp(a, arch) != 0)
            return opd_set_error("%s: key 'architectures' = [\"%s\"] is not supported (opd loads %s for model_type %s)",
                                 path, a, arch, type);
    }

    opd_config c;
    opd_config_default(&c);
    int mpe = 0;
    if (cfg_int(root, path, "hidden_size", -1, 2, 65536, &c.d_model) ||
        cfg_int(root, path, "num_hidden_layers", -1, 1, 1024, &c.n_layers) ||
        cfg_int(root, path, "num_attention_heads", -1, 1, 65536, &c.n_heads) ||
        cfg_int(root, path, "num_key_value_heads", c.n_heads, 1, 65536, &c.n_kv_heads) ||
        cfg_int(root, path, "intermediate_size", -1, 1, 1 << 20, &c.d_ff) ||
        cfg_int(root, path, "vocab_size", -1, 2, 1 << 20, &c.vocab_size) ||
        /* transformers' defaults: Qwen2Config 32768, LlamaConfig 2048 */
        cfg_int(root, path, "max_position_embeddings", qwen2 ? 32768 : 2048, 1, INT_MAX, &mpe))
        return -1;
    if (c.d_model % c.n_heads != 0)
        return opd_set_error("%s: key 'num_attention_heads' = %d does not divide hidden_size %d",
                             path, c.n_heads, c.d_model);
    if (c.n_heads % c.n_kv_heads != 0)
        return opd_set_error("%s: key 'num_key_value_heads' = %d does not divide num_attention_heads %d",
                             path, c.n_kv_heads, c.n_heads);
    int head_dim;
    if (cfg_int(root, path, "head_dim", c.d_model / c.n_heads, 1, 65536, &head_dim)) return -1;
    if (head_dim != c.d_model / c.n_heads)
        return opd_set_error("%s: key 'head_dim' = %d is not supported (opd's head dim is hidden_size / "
                             "num_attention_heads = %d)", path, head_dim, c.d_model / c.n_heads);
    if (head_dim % 2 != 0)
        return opd_set_error("%s: key 'num_attention_heads' = %d gives an odd head dim %d (RoPE needs it even)",
                             path, c.n_heads, head_dim);
    c.max_seq_len = mpe < OPD_HF_MAX_SEQ_LEN ? mpe : OPD_HF_MAX_SEQ_LEN;

    double theta = 0, eps = 0;
    if (cfg_num(root, path, "rope_theta", 10000.0, &theta) ||
        cfg_num(root, path, "rms_norm_eps", 1e-6, &eps) ||
        cfg_bool(root, path, "tie_word_embeddings", 0, &c.tie_embeddings))
        return -1;
    if (!(eps > 0.0 && eps < 1.0)) return opd_set_error("%s: key 'rms_norm_eps' = %g is not in (0, 1)", path, eps);
    if (!(theta > 1.0 && theta < 3.0e38)) return opd_set_error("%s: key 'rope_theta' = %g is not a number > 1", path, theta);
    /* transformers applies both in fp32 (eps is added to an fp32 tensor) */
    c.rope_theta = (float)theta;
    c.rms_eps = (float)eps;

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        return opd_set_error("%s: key 'hidden_act' is not supported (opd's MLP is SwiGLU with silu)", path);
    if (cfg_refuse(root, path, "rope_scaling", "opd implements plain RoPE") ||
        cfg_refuse(root, path, "attention_dropout", "opd has no dropout") ||
        cfg_refuse(root, path, "mlp_bias", "opd's MLP has no biases"))
        return -1;
    if (qwen2) {
        /* Qwen2: bias on q/k/v, always; none on o_proj */
        c.qkv_bias = 1;
        if (cfg_refuse(root, path, "use_sliding_window", "opd attends over the whole sequence"))
            return -1;
    } else {
        /* LlamaAttention puts attention_bias on q, k, v AND o_proj; opd has
         * no o_proj bias */
        c.qkv_bias = 0;
        if (cfg_refuse(root, path, "attention_bias", "Llama's attention_bias includes an o_proj bias, "
                                                     "which opd does not have"))
            return -1;
    }
    if (opd_config_validate(&c, path) != 0) return -1;
    *out = c;
    return 0;
}

int opd_hf_read_config(const char *dir, opd_config *cfg) {
    char *path = join(dir, "config.json");
    if (!is_file(path)) {
        free(path);
        return opd_set_error("%s: no config.json: not a Hugging Face model directory", dir);
    }
    json_t *root = load_json(path, HF_MAX_CONFIG);
    int rc = root ? parse_config(root, path, cfg) : -1;
    json_decref(root);
    free(path);
    return rc;
}

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
        root = load_json(index, HF_MAX_INDEX);
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

/* ------------------------------------------------------------- dispatch */
int opd_hf_path(const char *path, char **dir_out) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (dir_out) *dir_out = xstrdup(path);
        return 1;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int hf = strcmp(base, "config.json") == 0 || strcmp(base, "model.safetensors.index.json") == 0;
    if (!hf && strcmp(base, "model.safetensors") == 0) {
        /* the weights file of a directory: HF when a config.json sits next
         * to it (opd's own checkpoints keep their config inside) */
        size_t n = slash ? (size_t)(slash - path) + 1 : 0;
        char *cfg = opd_malloc(n + sizeof "config.json");
        memcpy(cfg, path, n);
        strcpy(cfg + n, "config.json");
        hf = is_file(cfg);
        free(cfg);
    }
    if (!hf) return 0;
    if (dir_out) {
        size_t n = slash ? (size_t)(slash - path) : 0;
        if (slash && n == 0) n = 1;   /* "/config.json" */
        char *d = opd_malloc(n + 2);
        if (slash) { memcpy(d, path, n); d[n] = '\0'; }
        else strcpy(d, ".");
        *dir_out = d;
    }
    return 1;
}

int opd_model_load_any(opd_model *m, const char *path, opd_adamw *opt) {
    char *dir = NULL;
    if (!opd_hf_path(path, &dir)) return opd_model_load(m, path, opt);
    int rc;
    if (opt) {
        memset(m, 0, sizeof *m);
        rc = opd_set_error("%s: a Hugging Face model directory holds no optimizer state "
                           "(resuming needs an opd checkpoint)", path);
    } else {
        rc = opd_hf_load(m, dir);
    }
    free(dir);
    return rc;
}

/* ---------------------------------------------------------------- write */
static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }

/* Closes f after flushing it to disk; -1 with the error set on failure. */
static int close_synced(FILE *f, const char *path) {
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) { bad = 1; err = errno; }
    return bad ? opd_set_error("%s: write failed: %s", path, strerror(err)) : 0;
}

/* The shortest decimal that reads back as the same float, as a JSON real:
 * 1e-06, not 9.9999999747524271e-07 (the float's exact double). */
static json_t *json_float(float v) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    return json_real(strtod(buf, NULL));
}

static int write_config(const opd_model *m, const char *path, int bf16) {
    const opd_config *c = &m->cfg;
    int qwen2 = c->qkv_bias;
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(qwen2 ? "qwen2" : "llama"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->d_model));
    json_object_set_new(o, "intermediate_size", json_integer(c->d_ff));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq_len));
    json_object_set_new(o, "rms_norm_eps", json_float(c->rms_eps));
    json_object_set_new(o, "rope_theta", json_float(c->rope_theta));
    json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "use_cache", json_true());
    if (qwen2) {
        json_object_set_new(o, "use_sliding_window", json_false());
        json_object_set_new(o, "sliding_window", json_null());
        json_object_set_new(o, "max_window_layers", json_integer(c->n_layers));
    } else {
        json_object_set_new(o, "attention_bias", json_false());
        json_object_set_new(o, "mlp_bias", json_false());
        json_object_set_new(o, "pretraining_tp", json_integer(1));
        json_object_set_new(o, "head_dim", json_integer(c->d_model / c->n_heads));
    }
    json_object_set_new(o, "torch_dtype", json_string(bf16 ? "bfloat16" : "float32"));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!s) return opd_set_error("%s: cannot serialise the config", path);
    FILE *f = fopen(path, "wb");
    int rc;
    if (!f) rc = opd_set_error("%s: cannot create: %s", path, strerror(errno));
    else if (write_all(f, s, strlen(s)) != 0 || write_all(f, "\n", 1) != 0) {
        fclose(f);
        rc = opd_set_error("%s: write failed: %s", path, strerror(errno));
    } else rc = close_synced(f, path);
    free(s);
    return rc;
}

/* model.safetensors with the Hugging Face names, F32 or BF16, and the
 * {"format": "pt"} metadata transformers checks for. */
static int write_weights(const opd_model *m, const char *path, int bf16) {
    int nt = opd_param_tensor_count(&m->cfg);
    opd_tensor_info *ts = opd_malloc(nt * sizeof *ts);
    opd_param_tensors(&m->cfg, ts);
    size_t es = bf16 ? 2 : 4;
    json_t *root = json_object(), *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        json_object_set_new(e, "dtype", json_string(bf16 ? "BF16" : "F32"));
        for (int d = 0; d < ts[i].ndim; d++) json_array_append_new(shape, json_integer(ts[i].shape[d]));
        json_object_set_new(e, "shape", shape);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += ts[i].numel * es;
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, ts[i].name, e);
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    uint16_t *stage = NULL;
    int rc = -1;
    FILE *f = NULL;
    if (!hdr) { opd_set_error("%s: cannot serialise the header", path); goto done; }
    /* pad with spaces so the data starts 8-byte aligned, as safetensors does */
    size_t jlen = strlen(hdr), hlen = (jlen + 7) & ~(size_t)7;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (!(f = fopen(path, "wb"))) { opd_set_error("%s: cannot create: %s", path, strerror(errno)); goto done; }
    int bad = write_all(f, lenb, 8) || write_all(f, hdr, jlen) || write_all(f, "       ", hlen - jlen);
    if (bf16) stage = opd_malloc(HF_STAGE_ELEMS * sizeof *stage);
    for (int i = 0; i < nt && !bad; i++) {
        const float *src = m->params_mem + ts[i].offset;
        if (!bf16) { bad = write_all(f, src, ts[i].numel * 4); continue; }
        for (size_t done = 0; done < ts[i].numel && !bad; done += HF_STAGE_ELEMS) {
            size_t k = ts[i].numel - done < HF_STAGE_ELEMS ? ts[i].numel - done : HF_STAGE_ELEMS;
            for (size_t j = 0; j < k; j++) stage[j] = opd_f32_to_bf16(src[done + j]);
            bad = write_all(f, stage, k * 2);
        }
    }
    if (bad) { opd_set_error("%s: write failed: %s", path, strerror(errno)); fclose(f); goto done; }
    rc = close_synced(f, path);
done:
    free(stage);
    free(hdr);
    free(ts);
    return rc;
}

static int copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return opd_set_error("%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) { fclose(in); return opd_set_error("%s: cannot create: %s", dst, strerror(errno)); }
    char buf[1 << 16];
    size_t n;
    int bad = 0;
    while (!bad && (n = fread(buf, 1, sizeof buf, in)) > 0) bad = write_all(out, buf, n);
    if (ferror(in)) { fclose(in); fclose(out); return opd_set_error("%s: read failed", src); }
    fclose(in);
    if (bad) { fclose(out); return opd_set_error("%s: write failed: %s", dst, strerror(errno)); }
    return close_synced(out, dst);
}

/* Removes the temporary directory and the files written into it. */
static void remove_tmp(const char *tmp, char **written, int n) {
    for (int i = 0; i < n; i++) unlink(written[i]);
    rmdir(tmp);
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int opd_hf_save(const opd_model *m, const char *dir, int bf16,
                const char *const *extra_files, int n_extra) {
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return opd_set_error("%s: exists and is not a directory", dir);
        /* refuse before the work: the final rename would fail anyway */
        DIR *d = opendir(dir);
        struct dirent *e;
        int empty = 1;
        while (d && empty && (e = readdir(d)))
            empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        if (d) closedir(d);
        if (!empty) return opd_set_error("%s: exists and is not empty (choose a new --out)", dir);
    }
    /* the extra files land under their base names: refuse clashes up front */
    for (int i = 0; i < n_extra; i++) {
        const char *b = strrchr(extra_files[i], '/');
        b = b ? b + 1 : extra_files[i];
        if (!b[0] || !strcmp(b, "config.json") || !strcmp(b, "model.safetensors"))
            return opd_set_error("%s: cannot be copied into the model directory under that name", extra_files[i]);
        if (!is_file(extra_files[i])) return opd_set_error("%s: not a readable file", extra_files[i]);
    }
    /* a sibling of dir, so the final rename stays on one file system */
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    char *tmp = opd_malloc(n + 16);
    memcpy(tmp, dir, n);
    strcpy(tmp + n, ".tmp-XXXXXX");
    char *target = opd_malloc(n + 1);
    memcpy(target, dir, n);
    target[n] = '\0';
    if (!mkdtemp(tmp)) {
        int e = errno;
        free(tmp);
        free(target);
        return opd_set_error("%s: cannot create a temporary directory next to it: %s", dir, strerror(e));
    }
    /* mkdtemp makes it 0700; the model directory gets the usual mode */
    mode_t mask = umask(0);
    umask(mask);
    chmod(tmp, 0777 & ~mask);
    int nw = 0;
    char **written = opd_calloc(2 + n_extra, sizeof *written);
    int rc = -1;
    written[nw] = join(tmp, "config.json");
    if (write_config(m, written[nw++], bf16) != 0) goto done;
    written[nw] = join(tmp, "model.safetensors");
    if (write_weights(m, written[nw++], bf16) != 0) goto done;
    for (int i = 0; i < n_extra; i++) {
        const char *b = strrchr(extra_files[i], '/');
        written[nw] = join(tmp, b ? b + 1 : extra_files[i]);
        if (copy_file(extra_files[i], written[nw++]) != 0) goto done;
    }
    fsync_dir(tmp);
    /* rename() replaces an empty directory, never a non-empty one */
    if (rename(tmp, target) != 0) {
        opd_set_error("%s: cannot move the finished model into place: %s%s", target, strerror(errno),
                      errno == ENOTEMPTY || errno == EEXIST ? " (the directory exists and is not empty)" : "");
        goto done;
    }
    char *parent = xstrdup(target);
    char *slash = strrchr(parent, '/');
    if (slash) { if (slash == parent) slash[1] = '\0'; else *slash = '\0'; }
    fsync_dir(slash ? parent : ".");
    free(parent);
    rc = 0;
done:
    if (rc != 0) remove_tmp(tmp, written, nw);
    for (int i = 0; i < nw; i++) free(written[i]);
    free(written);
    free(tmp);
    free(target);
    return rc;
}
