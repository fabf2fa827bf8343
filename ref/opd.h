/* opd.h — public API of libopd, the reference implementation of on-policy
 * distillation with rollout-horizon control (see ref/SPEC.md).
 *
 * Conventions
 *  - fp32 everywhere in the reference. Row-major arrays; shapes in comments use
 *    B (batch), S (sequence length: tokens in one forward), C (d_model), V (vocab), L (layers),
 *    NH (query heads), NKV (key/value heads), hd (head dim = C / NH), F (ffn).
 *  - A weight of a linear layer is (OC, C) and computes out = inp @ W^T (+ b),
 *    as in PyTorch / Hugging Face, so checkpoints load there without transposes.
 *  - *_backward functions ACCUMULATE (+=) into their gradient outputs, so a
 *    residual branch simply adds; callers zero gradients once per step.
 *  - Functions returning int return 0 on success and -1 on error; the error
 *    message (naming the file and the problem) is in opd_last_error().
 *
 * The API is in parts, one header each, included below in this order:
 *   opd_model.h    config, parameters, activations, forward/backward, AdamW
 *   opd_layers.h   the layers (one function per layer and direction), gemm, math
 *   opd_io.h       safetensors files and checkpoints
 *   opd_rollout.h  Philox RNG, the sampler, KV cache and decode, rollouts
 *   opd_distill.h  losses, horizon schedules, the OPD step and its stages, SFT
 */
#ifndef OPD_H
#define OPD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */
const char *opd_last_error(void);
/* printf-style; the library's single way to report an error. Returns -1. */
int opd_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --------------------------------------------------------------- utilities */
void *opd_malloc(size_t nbytes);               /* aborts with a message on OOM */
void *opd_calloc(size_t n, size_t size);       /* zeroed; aborts on OOM */
double opd_time(void);                         /* monotonic seconds */
long opd_peak_rss_kb(void);                    /* VmHWM of this process, kB */
/* Write `n` byte ranges to `path` atomically: temp file in the same directory
 * (unnamed with O_TMPFILE where the filesystem has it), fsync, rename, fsync
 * the directory. On failure the old file is untouched. An existing `path`
 * that is not a regular file (a device, a FIFO, a directory, a symlink) is
 * refused, not replaced. */
int opd_atomic_write(const char *path, const void *const *parts,
                     const size_t *sizes, int n);
/* Same, for a file produced by a callback writing to a FILE* (CSV, JSON). */
int opd_atomic_write_cb(const char *path,
                        int (*write_fn)(void *user, void *fp /* FILE* */),
                        void *user);
/* fopen(path, "rb") for the parsers, refusing anything but a regular file
 * (a FIFO would block, a directory reads as an error): NULL with the error
 * set ("PATH: is a directory, not a regular file"). */
FILE *opd_fopen_input(const char *path);

#ifdef __cplusplus
}
#endif

#include "opd_model.h"
#include "opd_layers.h"
#include "opd_io.h"
#include "opd_rollout.h"
#include "opd_distill.h"
#include "opd_dist.h"

#endif /* OPD_H */
