/* opd_io.h — files: safetensors and checkpoints.
 * Part of the public API; include "opd.h", which includes every part in
 * order (a part relies on the ones before it). */
#ifndef OPD_API_IO_H
#define OPD_API_IO_H

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------- safetensors */
typedef enum { OPD_F32 = 0, OPD_I32 = 1, OPD_F64 = 2, OPD_U8 = 3, OPD_I64 = 4 } opd_dtype;
size_t opd_dtype_size(opd_dtype d);
const char *opd_dtype_name(opd_dtype d);   /* "F32", "I32", ... */

typedef struct {
    char *name;
    opd_dtype dtype;
    int ndim;
    int64_t shape[4];
    size_t nbytes;
    void *data;        /* owned copy, aligned */
} opd_st_tensor;

typedef struct {
    int n, cap;
    opd_st_tensor *t;  /* in file order (sorted by name when written) */
    int nmeta;
    char **meta_keys, **meta_vals;   /* the __metadata__ string map */
    /* lookup index: by_name[0..n_indexed) are indices of t[0..n_indexed)
     * sorted by name; tensors added since are searched linearly. Code that
     * removes, reorders or renames entries of t must set n_indexed = 0. */
    int *by_name;
    int n_indexed;
} opd_safetensors;

void opd_st_init(opd_safetensors *st);
/* Read and validate: header length, JSON, dtypes, shapes, offsets inside the
 * file, no overlaps or gaps, sizes matching shapes. */
int opd_st_read(const char *path, opd_safetensors *st);
/* The same checks, header only: names, dtypes, shapes, metadata; data NULL. */
int opd_st_read_header(const char *path, opd_safetensors *st);
/* Adds a copy of data. */
int opd_st_add(opd_safetensors *st, const char *name, opd_dtype dtype,
               int ndim, const int64_t *shape, const void *data);
int opd_st_set_meta(opd_safetensors *st, const char *key, const char *val);
const char *opd_st_get_meta(const opd_safetensors *st, const char *key);
const opd_st_tensor *opd_st_find(const opd_safetensors *st, const char *name);
/* Atomic write (temp file, fsync, rename). */
int opd_st_write(const opd_safetensors *st, const char *path);
void opd_st_free(opd_safetensors *st);

/* ------------------------------------------------------------ checkpoints */
/* The config is stored in __metadata__ (one key per field, "opd.*"), plus
 * "format": "pt". Extra string pairs (training state) may be passed. */
int opd_model_save(const opd_model *m, const char *path,
                   const opd_adamw *opt /* NULL: weights only */,
                   const char *const *meta_keys, const char *const *meta_vals,
                   int nmeta);
/* Loads config + weights into a fresh model (m uninitialised on entry).
 * opt may be NULL; if not, the optimizer moments and step are restored and
 * the file must hold them. Checks every tensor name, dtype and shape. */
int opd_model_load(opd_model *m, const char *path, opd_adamw *opt);
/* Read a metadata value of a checkpoint without loading the weights
 * (returns a malloc'd string or NULL). */
char *opd_checkpoint_meta(const char *path, const char *key);
int opd_config_from_meta(opd_config *cfg, const opd_safetensors *st,
                         const char *path);
int opd_config_to_meta(const opd_config *cfg, opd_safetensors *st);

#ifdef __cplusplus
}
#endif
#endif /* OPD_API_IO_H */
