/* checkpoint.c — model (and optimizer) checkpoints as safetensors.
 *
 * Tensors carry the Hugging Face Qwen2 names of opd_param_tensors(), so the
 * weights load in transformers without renaming. The config is stored in
 * __metadata__, one key per field ("opd.d_model", ...), plus "format": "pt"
 * (what transformers' safetensors loader looks for). With an optimizer, its
 * moments are the tensors "optimizer.m.<name>" / "optimizer.v.<name>" and its
 * step and config are "opd.optim.*" keys. Loading checks everything against
 * the config the file itself declares, and names the file, the tensor and the
 * expected vs found value on any mismatch. */
#include "opd.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPTIM_M_PREFIX "optimizer.m."
#define OPTIM_V_PREFIX "optimizer.v."
/* the largest optimizer step a file may claim (2^40, far beyond any run) */
#define OPD_MAX_STEP (1L << 40)

/* --------------------------------------------------------- typed metadata */
static void meta_set_int(opd_safetensors *st, const char *key, long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    opd_st_set_meta(st, key, buf);
}

/* %.9g round-trips every float exactly */
static void meta_set_float(opd_safetensors *st, const char *key, float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)v);
    opd_st_set_meta(st, key, buf);
}

static int meta_get_long(const opd_safetensors *st, const char *path,
                         const char *key, long lo, long hi, long *out) {
    const char *s = opd_st_get_meta(st, key);
    if (!s) return opd_set_error("%s: metadata key '%s' is missing", path, key);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    /* exactly what meta_set_int writes: no space or '+' strtol would skip */
    if (end == s || *end != '\0' || errno != 0 || s[0] == ' ' || s[0] == '+' || (s[0] >= '\t' && s[0] <= '\r'))
        return opd_set_error("%s: metadata key '%s' = \"%s\" is not an integer", path, key, s);
    if (v < lo || v > hi)
        return opd_set_error("%s: metadata key '%s' = %ld out of range [%ld, %ld]", path, key, v, lo, hi);
    *out = v;
    return 0;
}

static int meta_get_int(const opd_safetensors *st, const char *path,
                        const char *key, int *out) {
    long v;
    if (meta_get_long(st, path, key, INT_MIN, INT_MAX, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

static int meta_get_float(const opd_safetensors *st, const char *path,
                          const char *key, float *out) {
    const char *s = opd_st_get_meta(st, key);
    if (!s) return opd_set_error("%s: metadata key '%s' is missing", path, key);
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v))
        return opd_set_error("%s: metadata key '%s' = \"%s\" is not a finite number", path, key, s);
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- config */
int opd_config_to_meta(const opd_config *cfg, opd_safetensors *st) {
    opd_st_set_meta(st, "format", "pt");
    meta_set_int(st, "opd.vocab_size", cfg->vocab_size);
    meta_set_int(st, "opd.d_model", cfg->d_model);
    meta_set_int(st, "opd.n_layers", cfg->n_layers);
    meta_set_int(st, "opd.n_heads", cfg->n_heads);
    meta_set_int(st, "opd.n_kv_heads", cfg->n_kv_heads);
    meta_set_int(st, "opd.d_ff", cfg->d_ff);
    meta_set_int(st, "opd.max_seq_len", cfg->max_seq_len);
    meta_set_int(st, "opd.qkv_bias", cfg->qkv_bias);
    meta_set_int(st, "opd.tie_embeddings", cfg->tie_embeddings);
    meta_set_float(st, "opd.rope_theta", cfg->rope_theta);
    meta_set_float(st, "opd.rms_eps", cfg->rms_eps);
    return 0;
}

int opd_config_from_meta(opd_config *cfg, const opd_safetensors *st,
                         const char *path) {
    opd_config c;
    memset(&c, 0, sizeof c);
    if (meta_get_int(st, path, "opd.vocab_size", &c.vocab_size) ||
        meta_get_int(st, path, "opd.d_model", &c.d_model) ||
        meta_get_int(st, path, "opd.n_layers", &c.n_layers) ||
        meta_get_int(st, path, "opd.n_heads", &c.n_heads) ||
        meta_get_int(st, path, "opd.n_kv_heads", &c.n_kv_heads) ||
        meta_get_int(st, path, "opd.d_ff", &c.d_ff) ||
        meta_get_int(st, path, "opd.max_seq_len", &c.max_seq_len) ||
        meta_get_int(st, path, "opd.qkv_bias", &c.qkv_bias) ||
        meta_get_int(st, path, "opd.tie_embeddings", &c.tie_embeddings) ||
        meta_get_float(st, path, "opd.rope_theta", &c.rope_theta) ||
        meta_get_float(st, path, "opd.rms_eps", &c.rms_eps))
        return -1;
    if (opd_config_validate(&c, path) != 0) return -1;
    *cfg = c;
    return 0;
}

/* ------------------------------------------------------- optimizer config */
static void optim_to_meta(const opd_adamw *opt, opd_safetensors *st) {
    const opd_optim_config *c = &opt->cfg;
    meta_set_int(st, "opd.optim.step", opt->step);
    meta_set_float(st, "opd.optim.lr", c->lr);
    meta_set_float(st, "opd.optim.beta1", c->beta1);
    meta_set_float(st, "opd.optim.beta2", c->beta2);
    meta_set_float(st, "opd.optim.eps", c->eps);
    meta_set_float(st, "opd.optim.weight_decay", c->weight_decay);
    meta_set_float(st, "opd.optim.grad_clip", c->grad_clip);
    opd_st_set_meta(st, "opd.optim.lr_schedule", c->lr_kind == OPD_LR_COSINE ? "cosine" : "constant");
    meta_set_int(st, "opd.optim.warmup_steps", c->warmup_steps);
    meta_set_int(st, "opd.optim.total_steps", c->total_steps);
    meta_set_float(st, "opd.optim.min_lr_frac", c->min_lr_frac);
}

static int optim_from_meta(opd_optim_config *c, long *step,
                           const opd_safetensors *st, const char *path) {
    memset(c, 0, sizeof *c);
    /* bounded well below LONG_MAX: the step is incremented and used in the
     * schedule's arithmetic */
    if (meta_get_long(st, path, "opd.optim.step", 0, OPD_MAX_STEP, step) ||
        meta_get_float(st, path, "opd.optim.lr", &c->lr) ||
        meta_get_float(st, path, "opd.optim.beta1", &c->beta1) ||
        meta_get_float(st, path, "opd.optim.beta2", &c->beta2) ||
        meta_get_float(st, path, "opd.optim.eps", &c->eps) ||
        meta_get_float(st, path, "opd.optim.weight_decay", &c->weight_decay) ||
        meta_get_float(st, path, "opd.optim.grad_clip", &c->grad_clip) ||
        meta_get_int(st, path, "opd.optim.warmup_steps", &c->warmup_steps) ||
        meta_get_int(st, path, "opd.optim.total_steps", &c->total_steps) ||
        meta_get_float(st, path, "opd.optim.min_lr_frac", &c->min_lr_frac))
        return -1;
    const char *kind = opd_st_get_meta(st, "opd.optim.lr_schedule");
    if (!kind) return opd_set_error("%s: metadata key 'opd.optim.lr_schedule' is missing", path);
    if (strcmp(kind, "constant") == 0) c->lr_kind = OPD_LR_CONSTANT;
    else if (strcmp(kind, "cosine") == 0) c->lr_kind = OPD_LR_COSINE;
    else
        return opd_set_error("%s: metadata key 'opd.optim.lr_schedule' = \"%s\" is not constant or cosine",
                             path, kind);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return opd_set_error("%s: optimizer betas (%g, %g) must be in [0, 1)", path, c->beta1, c->beta2);
    /* the ranges the command line accepts, so a resumed run is one the CLI could start */
    if (!(c->lr > 0.0f && c->lr <= 10.0f))
        return opd_set_error("%s: metadata 'opd.optim.lr' = %g out of range (0, 10]", path, c->lr);
    if (!(c->eps > 0.0f && c->eps <= 1.0f))
        return opd_set_error("%s: metadata 'opd.optim.eps' = %g out of range (0, 1]", path, c->eps);
    if (!(c->weight_decay >= 0.0f && c->weight_decay <= 10.0f))
        return opd_set_error("%s: metadata 'opd.optim.weight_decay' = %g out of range [0, 10]", path, c->weight_decay);
    if (!(c->grad_clip >= 0.0f && c->grad_clip <= 1e9f))
        return opd_set_error("%s: metadata 'opd.optim.grad_clip' = %g out of range [0, 1e9]", path, c->grad_clip);
    if (c->warmup_steps < 0 || c->total_steps < 0)
        return opd_set_error("%s: metadata 'opd.optim.warmup_steps' / 'total_steps' (%d / %d) must be >= 0",
                             path, c->warmup_steps, c->total_steps);
    if (!(c->min_lr_frac >= 0.0f && c->min_lr_frac <= 1.0f))
        return opd_set_error("%s: metadata 'opd.optim.min_lr_frac' = %g out of range [0, 1]", path, c->min_lr_frac);
    return 0;
}

/* ------------------------------------------------------------------ save */
static int add_param_tensor(opd_safetensors *st, const char *prefix,
                            const opd_tensor_info *ti, const float *base) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, ti->name);
    int64_t shape[2] = {ti->shape[0], ti->shape[1]};
    return opd_st_add(st, name, OPD_F32, ti->ndim, shape, base + ti->offset);
}

int opd_model_save(const opd_model *m, const char *path,
                   const opd_adamw *opt, const char *const *meta_keys,
                   const char *const *meta_vals, int nmeta) {
    if (opt && opt->n != m->num_params)
        return opd_set_error("%s: optimizer holds %zu moments but the model has %zu parameters",
                             path, opt->n, m->num_params);
    opd_safetensors st;
    opd_st_init(&st);
    int rc = -1;
    opd_config_to_meta(&m->cfg, &st);
    if (opt) optim_to_meta(opt, &st);
    for (int i = 0; i < nmeta; i++) {
        /* the caller's pairs must not silently replace the config */
        if (opd_st_get_meta(&st, meta_keys[i])) {
            opd_set_error("%s: extra metadata key '%s' collides with a key the checkpoint writes itself",
                          path, meta_keys[i]);
            goto done;
        }
        opd_st_set_meta(&st, meta_keys[i], meta_vals[i]);
    }

    int nt = opd_param_tensor_count(&m->cfg);
    opd_tensor_info *ts = opd_malloc(nt * sizeof *ts);
    opd_param_tensors(&m->cfg, ts);
    for (int i = 0; i < nt; i++) {
        if (add_param_tensor(&st, "", &ts[i], m->params_mem) != 0 ||
            (opt && add_param_tensor(&st, OPTIM_M_PREFIX, &ts[i], opt->m) != 0) ||
            (opt && add_param_tensor(&st, OPTIM_V_PREFIX, &ts[i], opt->v) != 0)) {
            free(ts);
            goto done;
        }
    }
    free(ts);
    rc = opd_st_write(&st, path);
done:
    opd_st_free(&st);
    return rc;
}

/* ------------------------------------------------------------------ load */
static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Checks that the tensor prefix+ti->name of st is there, F32, and shaped as
 * the config says; returns it (NULL with the error set). */
static const opd_st_tensor *find_param_tensor(const opd_safetensors *st, const char *path,
                                              const char *prefix, const opd_tensor_info *ti) {
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, ti->name);
    const opd_st_tensor *t = opd_st_find(st, name);
    if (!t) { opd_set_error("%s: tensor '%s' is missing", path, name); return NULL; }
    int64_t want[2] = {ti->shape[0], ti->shape[1]};
    char ws[64], fs[96];
    shape_str(ws, sizeof ws, ti->ndim, want);
    shape_str(fs, sizeof fs, t->ndim, t->shape);
    if (t->dtype != OPD_F32) {
        opd_set_error("%s: tensor '%s': expected dtype F32, found %s", path, name, opd_dtype_name(t->dtype));
        return NULL;
    }
    int same = t->ndim == ti->ndim;
    for (int d = 0; same && d < ti->ndim; d++) same = t->shape[d] == want[d];
    if (!same) {
        opd_set_error("%s: tensor '%s': expected shape %s for this config, found %s", path, name, ws, fs);
        return NULL;
    }
    return t;
}

/* Copies a checked tensor into base + ti->offset. */
static int copy_param_tensor(const opd_st_tensor *t, const char *path, const opd_tensor_info *ti,
                             float *base) {
    /* a NaN or Inf weight (a diverged run saved, a flipped exponent bit)
     * would poison every later step silently: refuse it here, by name */
    const float *src = t->data;
    for (size_t j = 0; j < ti->numel; j++)
        if (!isfinite(src[j]))
            return opd_set_error("%s: tensor '%s' element %zu is %s", path, t->name, j,
                                 isnan(src[j]) ? "NaN" : "infinite");
    memcpy(base + ti->offset, t->data, ti->numel * sizeof(float));
    return 0;
}

static int info_name_cmp(const void *a, const void *b) {
    return strcmp(((const opd_tensor_info *)a)->name, ((const opd_tensor_info *)b)->name);
}

/* Every tensor in the file must be one we expect: a stray tensor means the
 * file was written for another model layout (e.g. an lm_head in a tied
 * config), and silently ignoring it would hide that. `sorted` is the
 * config's tensors sorted by name. */
static int check_no_extra(const opd_safetensors *st, const char *path,
                          const opd_tensor_info *sorted, int nt, int *has_optim) {
    *has_optim = 0;
    opd_tensor_info key;
    for (int i = 0; i < st->n; i++) {
        const char *name = st->t[i].name;
        int is_optim = 0;
        if (strncmp(name, OPTIM_M_PREFIX, strlen(OPTIM_M_PREFIX)) == 0) {
            name += strlen(OPTIM_M_PREFIX);
            is_optim = 1;
        } else if (strncmp(name, OPTIM_V_PREFIX, strlen(OPTIM_V_PREFIX)) == 0) {
            name += strlen(OPTIM_V_PREFIX);
            is_optim = 1;
        }
        int known = strlen(name) < sizeof key.name;
        if (known) {
            snprintf(key.name, sizeof key.name, "%s", name);
            known = bsearch(&key, sorted, nt, sizeof *sorted, info_name_cmp) != NULL;
        }
        if (!known)
            return opd_set_error("%s: unexpected tensor '%s' (not a parameter of the config in its metadata)",
                                 path, st->t[i].name);
        *has_optim |= is_optim;
    }
    return 0;
}

int opd_model_load(opd_model *m, const char *path, opd_adamw *opt) {
    memset(m, 0, sizeof *m);
    if (opt) memset(opt, 0, sizeof *opt);
    opd_safetensors st;
    if (opd_st_read(path, &st) != 0) return -1;
    opd_tensor_info *ts = NULL, *sorted = NULL;
    const opd_st_tensor **found = NULL;
    int rc = -1;

    opd_config cfg;
    if (opd_config_from_meta(&cfg, &st, path) != 0) goto done;
    /* The config in the metadata is only a claim: nothing is allocated from
     * it until every tensor it implies is in the file with its shape, so the
     * model can be no larger than the file (a 300-byte file declaring a
     * 1e12-parameter model fails here, by name, instead of allocating). */
    int nt = opd_param_tensor_count(&cfg);   /* at most 12 * 1024 + 3 */
    ts = opd_malloc(nt * sizeof *ts);
    sorted = opd_malloc(nt * sizeof *sorted);
    found = opd_calloc(3 * (size_t)nt, sizeof *found);
    opd_param_tensors(&cfg, ts);
    memcpy(sorted, ts, nt * sizeof *ts);
    qsort(sorted, nt, sizeof *sorted, info_name_cmp);
    int has_optim;
    if (check_no_extra(&st, path, sorted, nt, &has_optim) != 0) goto done;
    for (int i = 0; i < nt; i++)
        if (!(found[i] = find_param_tensor(&st, path, "", &ts[i]))) goto done;
    opd_optim_config oc;
    memset(&oc, 0, sizeof oc);
    long step = 0;
    if (opt) {
        if (!has_optim && !opd_st_get_meta(&st, "opd.optim.step")) {
            opd_set_error("%s: holds no optimizer state (a weights-only checkpoint) but one was asked for", path);
            goto done;
        }
        if (optim_from_meta(&oc, &step, &st, path) != 0) goto done;
        for (int i = 0; i < nt; i++)
            if (!(found[nt + i] = find_param_tensor(&st, path, OPTIM_M_PREFIX, &ts[i])) ||
                !(found[2 * nt + i] = find_param_tensor(&st, path, OPTIM_V_PREFIX, &ts[i])))
                goto done;
    }

    if (opd_model_init(m, &cfg) != 0) goto done;
    for (int i = 0; i < nt; i++)
        if (copy_param_tensor(found[i], path, &ts[i], m->params_mem) != 0) goto done;
    if (opt) {
        opd_adamw_init(opt, &oc, m->num_params);
        opt->step = step;
        for (int i = 0; i < nt; i++)
            if (copy_param_tensor(found[nt + i], path, &ts[i], opt->m) != 0 ||
                copy_param_tensor(found[2 * nt + i], path, &ts[i], opt->v) != 0)
                goto done;
    }
    rc = 0;
done:
    if (rc != 0) {
        opd_model_free(m);
        if (opt && opt->m) opd_adamw_free(opt);
    }
    free(found);
    free(sorted);
    free(ts);
    opd_st_free(&st);
    return rc;
}

char *opd_checkpoint_meta(const char *path, const char *key) {
    opd_safetensors st;
    if (opd_st_read_header(path, &st) != 0) return NULL;
    const char *v = opd_st_get_meta(&st, key);
    char *out = NULL;
    if (v) {
        size_t n = strlen(v) + 1;
        out = malloc(n);
        if (out) memcpy(out, v, n);
    } else {
        opd_set_error("%s: metadata key '%s' is missing", path, key);
    }
    opd_st_free(&st);
    return out;
}
