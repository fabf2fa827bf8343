/* check.c — the golden checker (ref/SPEC.md section 8): compares a candidate's
 * tensors with the reference's, tensor by tensor, each within the tolerance
 * the manifest gives it (see write.c for the classes and golden/README.md). */
#include "golden.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --------------------------------------------------------------- compare */
/* Map a float's bits onto a line of integers where neighbours differ by 1
 * (negative floats mirrored), so |a - b| is the ULP distance; +0 == -0. */
static int64_t f32_ordered(float x) {
    int32_t i;
    memcpy(&i, &x, 4);
    return i >= 0 ? (int64_t)i : -(int64_t)(i & 0x7fffffff);
}

static double f64_ulp(double a, double b) {
    int64_t i, j;
    memcpy(&i, &a, 8);
    memcpy(&j, &b, 8);
    double oi = i >= 0 ? (double)i : -(double)(i & INT64_MAX);
    double oj = j >= 0 ? (double)j : -(double)(j & INT64_MAX);
    return fabs(oi - oj);
}

static double element(const opd_st_tensor *t, size_t i) {
    switch (t->dtype) {
    case OPD_F32: return ((const float *)t->data)[i];
    case OPD_F64: return ((const double *)t->data)[i];
    case OPD_I32: return ((const int32_t *)t->data)[i];
    case OPD_I64: return (double)((const int64_t *)t->data)[i];
    case OPD_U8: return ((const uint8_t *)t->data)[i];
    }
    return 0;
}

int opd_golden_compare(const opd_st_tensor *ref, const opd_st_tensor *cand,
                       const opd_golden_tol *tol, opd_golden_diff *d) {
    memset(d, 0, sizeof *d);
    if (ref->dtype != cand->dtype)
        return opd_set_error("dtype %s, candidate has %s", opd_dtype_name(ref->dtype),
                             opd_dtype_name(cand->dtype));
    int same = ref->ndim == cand->ndim;
    for (int i = 0; same && i < ref->ndim; i++) same = ref->shape[i] == cand->shape[i];
    if (!same) {
        char a[96] = "", b[96] = "";
        for (int i = 0; i < ref->ndim; i++)
            snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", i ? "," : "", (long long)ref->shape[i]);
        for (int i = 0; i < cand->ndim; i++)
            snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", i ? "," : "", (long long)cand->shape[i]);
        return opd_set_error("shape (%s), candidate has (%s)", a, b);
    }
    const size_t es = opd_dtype_size(ref->dtype), n = es ? ref->nbytes / es : 0;
    const int exact = tol->max_abs == 0 && tol->max_rel == 0 && tol->max_ulp == 0 && tol->nmse == 0;
    const int is_float = ref->dtype == OPD_F32 || ref->dtype == OPD_F64;
    double sum_d2 = 0, sum_r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double r = element(ref, i), c = element(cand, i), diff, ulp;
        if (isnan(r) || isnan(c)) {
            diff = ulp = isnan(r) && isnan(c) ? 0 : INFINITY;
        } else if (r == c) {
            diff = ulp = 0;
        } else {
            diff = fabs(c - r);   /* inf when one side is inf */
            if (ref->dtype == OPD_F32)
                ulp = (double)llabs(f32_ordered((float)c) - f32_ordered((float)r));
            else if (ref->dtype == OPD_F64) ulp = f64_ulp(c, r);
            else ulp = diff;
        }
        double rel = diff == 0 ? 0 : r != 0 ? diff / fabs(r) : INFINITY;
        if (diff > d->max_abs || isnan(diff)) d->max_abs = diff;
        if (rel > d->max_rel) d->max_rel = rel;
        if (ulp > d->max_ulp) d->max_ulp = ulp;
        sum_d2 += diff * diff;
        sum_r2 += r * r;
        int ok;
        if (exact) /* bit for bit (a flipped low bit, or -0 for +0, fails) */
            ok = memcmp((const char *)ref->data + i * es, (const char *)cand->data + i * es, es) == 0;
        else
            ok = diff == 0 || diff <= tol->max_abs || diff <= tol->max_rel * fabs(r) ||
                 (is_float && ulp <= tol->max_ulp);
        if (!ok) d->n_bad++;
    }
    d->nmse = sum_d2 == 0 ? 0 : sum_r2 > 0 ? sum_d2 / sum_r2 : INFINITY;
    d->pass = d->n_bad == 0 && (exact || d->nmse <= tol->nmse);
    return 0;
}

/* ----------------------------------------------------------------- check */
typedef struct {
    char *file, *name;
    opd_golden_tol tol;
} manifest_entry;

typedef struct {
    int n;
    manifest_entry *e;
} manifest;

static void manifest_free(manifest *m) {
    for (int i = 0; i < m->n; i++) { free(m->e[i].file); free(m->e[i].name); }
    free(m->e);
    memset(m, 0, sizeof *m);
}

static int entry_cmp(const void *a, const void *b) {
    const manifest_entry *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

/* A manifest names files inside the golden directory: a bare file name, so
 * that "../../elsewhere.safetensors" or "/etc/x" cannot point outside it. */
static int plain_file_name(const char *f) {
    return f[0] != '\0' && strchr(f, '/') == NULL && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

static int manifest_load(const char *path, manifest *m) {
    memset(m, 0, sizeof *m);
    json_error_t jerr;
    FILE *f = opd_fopen_input(path);
    if (!f) return -1;
    /* a manifest is kilobytes (100,000 tensors: ~12 MB); cap what is parsed */
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && sb.st_size > (off_t)256 << 20) {
        fclose(f);
        return opd_set_error("%s: %lld bytes, larger than the 256 MiB a manifest may be", path,
                             (long long)sb.st_size);
    }
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root) return opd_set_error("%s: line %d: %s", path, jerr.line, jerr.text);
    json_t *ts = json_object_get(root, "tensors");
    if (!json_is_array(ts)) {
        json_decref(root);
        return opd_set_error("%s: no \"tensors\" array (not an opd golden manifest)", path);
    }
    m->e = opd_calloc(json_array_size(ts) + 1, sizeof *m->e);
    for (size_t i = 0; i < json_array_size(ts); i++) {
        const char *file, *name;
        double a, r, u, q;
        if (json_unpack(json_array_get(ts, i), "{s:s, s:s, s:F, s:F, s:F, s:F}", "file", &file,
                        "name", &name, "max_abs", &a, "max_rel", &r, "max_ulp", &u, "nmse", &q) != 0 ||
            a < 0 || r < 0 || u < 0 || q < 0) {
            manifest_free(m);
            json_decref(root);
            return opd_set_error("%s: tensor entry %zu: need file, name and non-negative "
                                 "max_abs, max_rel, max_ulp, nmse", path, i);
        }
        if (!plain_file_name(file)) {
            opd_set_error("%s: tensor entry %zu: file \"%.100s\" is not a plain file name "
                          "(a path leaving the golden directory is refused)", path, i, file);
            manifest_free(m);
            json_decref(root);   /* `file` belongs to root: freed after the message */
            return -1;
        }
        manifest_entry *e = &m->e[m->n++];
        e->file = strdup(file);
        e->name = strdup(name);
        if (!e->file || !e->name) { fprintf(stderr, "opd: out of memory\n"); abort(); }
        e->tol = (opd_golden_tol){a, r, u, q};
    }
    json_decref(root);
    /* sorted by (file, name): looked up by binary search, not scanned per
     * tensor (100,000 tensors were quadratic) */
    qsort(m->e, m->n, sizeof *m->e, entry_cmp);
    for (int i = 1; i < m->n; i++)
        if (entry_cmp(&m->e[i - 1], &m->e[i]) == 0) {
            opd_set_error("%s: tensor '%s' of %s is listed twice", path, m->e[i].name, m->e[i].file);
            manifest_free(m);
            return -1;
        }
    return 0;
}

static const manifest_entry *manifest_find(const manifest *m, const char *file, const char *name) {
    manifest_entry key = {.file = (char *)file, .name = (char *)name};
    return m->n ? bsearch(&key, m->e, m->n, sizeof *m->e, entry_cmp) : NULL;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* the error for a REF or CANDIDATE that is neither a file nor a directory */
static int not_found(const char *p) {
    struct stat sb;
    if (stat(p, &sb) != 0) return opd_set_error("%s: %s", p, strerror(errno));
    return opd_set_error("%s: neither a regular file nor a directory (a FIFO or a device?)", p);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void shape_str(char *buf, size_t n, const opd_st_tensor *t) {
    int k = snprintf(buf, n, "%s(", opd_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && k < (int)n; i++)
        k += snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (k < (int)n) snprintf(buf + k, n - k, ")");
}

/* Compare one pair of files; counts into *np / *nf. */
static int check_file(const char *ref_path, const char *cand_path, const char *file,
                      const manifest *m, const opd_golden_check_opts *o, int *np, int *nf) {
    opd_safetensors r, c;
    opd_st_init(&r);
    opd_st_init(&c);
    if (opd_st_read(ref_path, &r) != 0) return -1;
    if (opd_st_read(cand_path, &c) != 0) { opd_st_free(&r); return -1; }
    FILE *out = o->out;
    if (out && !o->quiet)
        fprintf(out, "%-64s %-14s %10s %10s %9s %10s  %s\n", file, "dtype(shape)", "max_abs",
                "max_rel", "max_ulp", "nmse", "result");
    int unlisted = 0;
    for (int i = 0; i < r.n; i++) {
        const opd_st_tensor *rt = &r.t[i];
        const opd_st_tensor *ct = opd_st_find(&c, rt->name);
        char shp[64];
        shape_str(shp, sizeof shp, rt);
        if (!ct) {
            (*nf)++;
            if (out) fprintf(out, "%-64s %-14s FAIL: missing in the candidate\n", rt->name, shp);
            continue;
        }
        opd_golden_tol tol = {0, 0, 0, 0};
        const manifest_entry *e = o->exact || !m ? NULL : manifest_find(m, file, rt->name);
        if (e) tol = e->tol;
        else if (!o->exact && m) unlisted++;
        opd_golden_diff d;
        if (opd_golden_compare(rt, ct, &tol, &d) != 0) {
            (*nf)++;
            if (out) fprintf(out, "%-64s %-14s FAIL: %s\n", rt->name, shp, opd_last_error());
            continue;
        }
        if (d.pass) (*np)++;
        else (*nf)++;
        if (out && (!o->quiet || !d.pass)) {
            char verdict[96];
            if (d.pass) snprintf(verdict, sizeof verdict, "ok");
            else snprintf(verdict, sizeof verdict, "FAIL (%zu bad, tol abs %.3g rel %.3g ulp %.0f nmse %.3g)",
                          d.n_bad, tol.max_abs, tol.max_rel, tol.max_ulp, tol.nmse);
            fprintf(out, "%-64s %-14s %10.3e %10.3e %9.0f %10.3e  %s\n", rt->name, shp, d.max_abs,
                    d.max_rel, d.max_ulp, d.nmse, verdict);
        }
    }
    if (out && unlisted)
        fprintf(out, "note: %d tensor(s) of %s are not in the manifest: compared exactly\n", unlisted, file);
    opd_st_free(&r);
    opd_st_free(&c);
    return 0;
}

int opd_golden_check(const char *ref, const char *cand, const opd_golden_check_opts *o,
                     int *n_pass, int *n_fail) {
    *n_pass = *n_fail = 0;
    int ref_dir = is_dir(ref), cand_dir = is_dir(cand);
    if (!ref_dir && !file_exists(ref)) return not_found(ref);
    if (!cand_dir && !file_exists(cand)) return not_found(cand);
    if (ref_dir && !cand_dir)
        return opd_set_error("%s is a directory but %s is not: compare two directories or two files", ref, cand);
    char mpath[4096] = "";
    if (o->manifest) {
        snprintf(mpath, sizeof mpath, "%s", o->manifest);
    } else {
        const char *slash = strrchr(ref, '/');
        if (ref_dir) snprintf(mpath, sizeof mpath, "%s/%s", ref, OPD_GOLDEN_MANIFEST);
        else if (slash) snprintf(mpath, sizeof mpath, "%.*s/%s", (int)(slash - ref), ref, OPD_GOLDEN_MANIFEST);
        else snprintf(mpath, sizeof mpath, "%s", OPD_GOLDEN_MANIFEST);
        if (!file_exists(mpath)) {
            if (ref_dir) return opd_set_error("%s: no %s (a golden directory needs its manifest)", ref, OPD_GOLDEN_MANIFEST);
            mpath[0] = 0;   /* a lone file: exact comparison */
        }
    }
    manifest m = {0};
    int have_m = 0;
    if (mpath[0] && (!o->exact || ref_dir)) {
        if (manifest_load(mpath, &m) != 0) return -1;
        have_m = 1;
    }
    if (o->out && !have_m && !o->exact)
        fprintf(o->out, "note: no manifest next to %s: comparing exactly\n", ref);
    int rc = 0;
    if (ref_dir) {
        /* every file the manifest names (sorted: each file's entries are adjacent) */
        for (int i = 0; i < m.n && rc == 0; i++) {
            if (i > 0 && !strcmp(m.e[i - 1].file, m.e[i].file)) continue;
            char rp[4096], cp[4096];
            snprintf(rp, sizeof rp, "%s/%s", ref, m.e[i].file);
            snprintf(cp, sizeof cp, "%s/%s", cand, m.e[i].file);
            rc = check_file(rp, cp, m.e[i].file, &m, o, n_pass, n_fail);
        }
    } else {
        const char *cp = cand;
        char buf[4096];
        if (cand_dir) { snprintf(buf, sizeof buf, "%s/%s", cand, base_name(ref)); cp = buf; }
        rc = check_file(ref, cp, base_name(ref), have_m ? &m : NULL, o, n_pass, n_fail);
    }
    manifest_free(&m);
    if (rc != 0) return -1;
    if (o->out) fprintf(o->out, "golden: %d passed, %d failed\n", *n_pass, *n_fail);
    /* a check that compared nothing proves nothing */
    if (*n_pass + *n_fail == 0)
        return opd_set_error("%s: nothing was compared (an empty manifest, or files without tensors)", ref);
    return *n_fail ? 1 : 0;
}
