/* hf_internal.h — what the files of the Hugging Face directory code share
 * (internal to libopd; the API is opd_hf.h): hf_model.c (the overview, the
 * 16-bit floats, path dispatch), hf_config.c (config.json -> opd_config),
 * hf_load.c (safetensors headers and weights -> the model), hf_save.c (the
 * model -> config.json + model.safetensors). */
#ifndef OPD_HF_INTERNAL_H
#define OPD_HF_INTERNAL_H

#include "opd_hf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the Hugging Face code reads and writes little-endian safetensors data in place"
#endif

#define HF_MAX_CONFIG (1u << 20)            /* a config.json is a few kB */
#define HF_MAX_INDEX (64u << 20)            /* an index is ~100 bytes per tensor */
#define HF_MAX_HEADER (100u << 20)          /* as ref/safetensors.c */
#define HF_MAX_DIMS 8
#define HF_STAGE_ELEMS ((size_t)1 << 20)    /* 2 MiB of 16-bit values per read */

/* a malloc'd copy of s */
static inline char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = opd_malloc(n);
    memcpy(p, s, n);
    return p;
}

/* "dir/name", malloc'd */
static inline char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = opd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* 1 when path is a regular file (following links) */
static inline int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* A JSON object file of at most `limit` bytes; NULL with the error set. */
json_t *opd_hf_load_json(const char *path, size_t limit);

#endif
