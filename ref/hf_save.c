/* hf_save.c — an opd model -> a Hugging Face directory (opd_hf_save):
 * config.json (Qwen2ForCausalLM when qkv_bias, else LlamaForCausalLM) and
 * model.safetensors (F32, or BF16 rounded to nearest even), plus extra files,
 * written into a temporary sibling directory renamed into place. */
#include "hf_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

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
