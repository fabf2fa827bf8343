/* opd_device.h — where an OPD step runs: on the CPU reference
 * (opd_distill_step) or on the GPU (opd_cuda_distill_step, ./configure
 * --with-cuda), behind one API, so a caller (the CLI's --device) makes the
 * choice once. The CPU stays the default and the source of truth. */
#ifndef OPD_DEVICE_H
#define OPD_DEVICE_H

#include "opd.h"

typedef enum { OPD_DEVICE_CPU = 0, OPD_DEVICE_CUDA = 1 } opd_device_kind;

/* 1 when this library was built with the CUDA path (./configure --with-cuda). */
int opd_device_have_cuda(void);

/* The models and the optimizer on the chosen device. With CUDA the student,
 * teacher and AdamW moments live on the GPU between steps; the host copies
 * are brought up to date by opd_device_sync_to_host (before a checkpoint or
 * an evaluation, which run on the CPU). */
typedef struct opd_device opd_device;

/* Open `kind` (CUDA: the first GPU, or a clear error naming why none is
 * usable) and copy student, teacher and opt to it. */
int opd_device_open(opd_device **out, opd_device_kind kind, const opd_model *student,
                    const opd_model *teacher, const opd_adamw *opt);
/* One step: opd_distill_step on the CPU, opd_cuda_distill_step on the GPU
 * (the host models are then stale until opd_device_sync_to_host). */
int opd_device_distill_step(opd_device *d, opd_model *student, opd_model *teacher,
                            opd_adamw *opt, const opd_distill_config *c, const int *prompts,
                            const int *pad, const uint32_t *seq_ids, int B, int P, long k,
                            opd_step_stats *st);
/* The same over micro-batches of mb sequences and the ranks (ref/opd_dist.h):
 * mb == B on one rank is opd_device_distill_step; anything else runs on the
 * CPU only (the CUDA path has no NCCL combination: README). */
int opd_device_distill_step_mb(opd_device *d, opd_model *student, opd_model *teacher,
                               opd_adamw *opt, const opd_distill_config *c, const int *prompts,
                               const int *pad, const uint32_t *seq_ids, int B, int P, int mb,
                               long k, opd_step_stats *st);
int opd_device_sync_to_host(opd_device *d, opd_model *student, opd_adamw *opt);
const char *opd_device_name(const opd_device *d);
void opd_device_close(opd_device *d);   /* NULL ok */

#endif
