/* device.c — see opd_device.h. Everything CUDA is behind OPD_HAVE_CUDA, so the
 * CPU-only build has no CUDA dependency at all. */
#include "config.h"
#include "opd_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OPD_HAVE_CUDA
#include "opd_cuda.h"
#endif

int opd_device_have_cuda(void) {
#ifdef OPD_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

struct opd_device {
    opd_device_kind kind;
    opd_step_work w;                 /* CPU */
    opd_mb_work mw;                  /* CPU, micro-batches / ranks */
#ifdef OPD_HAVE_CUDA
    opd_cuda *cu;
    opd_cuda_model student, teacher;
    opd_cuda_adamw opt;
    opd_cuda_step_work cw;
    char name[300];
#endif
};

int opd_device_open(opd_device **out, opd_device_kind kind, const opd_model *student,
                    const opd_model *teacher, const opd_adamw *opt) {
    opd_device *d = opd_calloc(1, sizeof *d);
    d->kind = kind;
    *out = d;
    if (kind == OPD_DEVICE_CPU) return 0;
#ifdef OPD_HAVE_CUDA
    char why[256];
    if (!opd_cuda_available(why, sizeof why))
        return opd_set_error("--device cuda: no usable GPU (opd_cuda_available: %s)", why);
    if (opd_cuda_create(&d->cu, 0) != 0) return -1;
    snprintf(d->name, sizeof d->name, "cuda (%s)", why);
    if (opd_cuda_model_init(d->cu, &d->student, student) != 0 ||
        opd_cuda_model_init(d->cu, &d->teacher, teacher) != 0 ||
        opd_cuda_adamw_init(d->cu, &d->opt, opt) != 0)
        return -1;
    return 0;
#else
    return opd_set_error("--device cuda: this opd was built without CUDA: ./configure --with-cuda");
#endif
}

int opd_device_distill_step(opd_device *d, opd_model *student, opd_model *teacher,
                            opd_adamw *opt, const opd_distill_config *c, const int *prompts,
                            const int *pad, const uint32_t *seq_ids, int B, int P, long k,
                            opd_step_stats *st) {
#ifdef OPD_HAVE_CUDA
    if (d->kind == OPD_DEVICE_CUDA)
    {
        int rc = opd_cuda_distill_step(d->cu, &d->student, &d->teacher, &d->opt, c, prompts, pad,
                                       seq_ids, B, P, k, &d->cw, st);
        st->peak_rss_kb_sum = st->peak_rss_kb;
        return rc;
    }
#endif
    return opd_distill_step(student, teacher, opt, c, prompts, pad, seq_ids, B, P, k, &d->w, st);
}

int opd_device_distill_step_mb(opd_device *d, opd_model *student, opd_model *teacher,
                               opd_adamw *opt, const opd_distill_config *c, const int *prompts,
                               const int *pad, const uint32_t *seq_ids, int B, int P, int mb,
                               long k, opd_step_stats *st) {
    if (mb == B && opd_dist_size() == 1)
        return opd_device_distill_step(d, student, teacher, opt, c, prompts, pad, seq_ids, B, P, k, st);
    if (d->kind != OPD_DEVICE_CPU)
        return opd_set_error("--device cuda runs whole batches on one process: micro-batches and "
                             "ranks are CPU only (no NCCL combination yet)");
    return opd_distill_step_mb(student, teacher, opt, c, prompts, pad, seq_ids, B, P, mb, k, &d->mw, st);
}

int opd_device_sync_to_host(opd_device *d, opd_model *student, opd_adamw *opt) {
#ifdef OPD_HAVE_CUDA
    if (d->kind == OPD_DEVICE_CUDA) {
        if (opd_cuda_model_download(d->cu, student, &d->student) != 0) return -1;
        return opd_cuda_adamw_download(d->cu, opt, &d->opt);
    }
#endif
    return 0;
}

const char *opd_device_name(const opd_device *d) {
#ifdef OPD_HAVE_CUDA
    if (d->kind == OPD_DEVICE_CUDA) return d->name;
#endif
    return "cpu";
}

void opd_device_close(opd_device *d) {
    if (!d) return;
    opd_step_work_free(&d->w);
    opd_mb_work_free(&d->mw);
#ifdef OPD_HAVE_CUDA
    opd_cuda_step_work_free(&d->cw);
    opd_cuda_adamw_free(&d->opt);
    opd_cuda_model_free(&d->student);
    opd_cuda_model_free(&d->teacher);
    opd_cuda_destroy(d->cu);
#endif
    free(d);
}
