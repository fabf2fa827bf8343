/* golden.h — golden tensors (ref/SPEC.md section 8): the reference writes every
 * intermediate of one OPD step and of each layer in isolation as named
 * tensors, and a checker compares a candidate (a GPU kernel, another
 * implementation) against them tensor by tensor. See golden/README.md. */
#ifndef OPD_GOLDEN_H
#define OPD_GOLDEN_H

#include <stddef.h>
#include <stdio.h>
#include "opd.h"

/* The files `opd golden write DIR` produces, in this order. */
#define OPD_GOLDEN_STEP_FILE "golden_step.safetensors"
#define OPD_GOLDEN_LAYERS_FILE "golden_layers.safetensors"
#define OPD_GOLDEN_MANIFEST "manifest.json"

/* Tolerance of one tensor. An element is within tolerance when its error
 * d = |cand - ref| is 0, or d <= max_abs, or d <= max_rel * |ref|, or its
 * ULP distance <= max_ulp. A tensor passes when every element is within
 * tolerance and its NMSE = sum d^2 / sum ref^2 <= nmse. All four zero means
 * exact: every element must be bit-identical. */
typedef struct {
    double max_abs, max_rel, max_ulp, nmse;
} opd_golden_tol;

/* What the comparison of one tensor measured. */
typedef struct {
    double max_abs;     /* max |cand - ref| */
    double max_rel;     /* max |cand - ref| / |ref| (inf where ref = 0, cand != 0) */
    double max_ulp;     /* max ULP distance (integers: max |difference|) */
    double nmse;        /* sum d^2 / sum ref^2 (0 when both are all zero) */
    size_t n_bad;       /* elements outside the tolerance */
    int pass;
} opd_golden_diff;

/* Write golden_step.safetensors, golden_layers.safetensors and manifest.json
 * into `dir` (which must exist). Uses the BLAS matmul backend whatever is
 * selected (restored afterwards). */
int opd_golden_write(const char *dir);
/* The same files at a production shape: prod's widths (d_model, heads, kv
 * heads, head_dim, d_ff, vocab_size, rope_theta, rms_eps, n_layers) for the
 * step's teacher and student and for every layer; prod NULL is
 * opd_golden_write. keep_backend: run the matmuls on the backend selected
 * (OPD_MATMUL) instead of the reference's own gemm, to compare that backend
 * against the reference's files with opd_golden_check. */
int opd_golden_write_shape(const char *dir, const opd_config *prod, int keep_backend);

/* Compare two tensors. A dtype or shape mismatch returns -1 with a message
 * (the caller counts it as a failure); otherwise fills d and returns 0. */
int opd_golden_compare(const opd_st_tensor *ref, const opd_st_tensor *cand,
                       const opd_golden_tol *tol, opd_golden_diff *d);

typedef struct {
    int exact;              /* ignore the manifest: zero tolerance everywhere */
    int quiet;              /* print only failing tensors and the summary */
    const char *manifest;   /* NULL: REF/manifest.json (REF a directory) or
                               manifest.json next to REF (REF a file), if any */
    FILE *out;              /* the table and summary; NULL: print nothing */
} opd_golden_check_opts;

/* Compare REF against CANDIDATE: both directories (every file the manifest
 * names) or both files. Prints one row per tensor and the summary line
 * "golden: N passed, M failed". A tensor missing from the candidate or with
 * a different dtype/shape is a failure. Returns 0 when everything passed, 1
 * when something failed, -1 on an unreadable or corrupted file or manifest
 * (message in opd_last_error()). */
int opd_golden_check(const char *ref, const char *cand,
                     const opd_golden_check_opts *o, int *n_pass, int *n_fail);

#endif
