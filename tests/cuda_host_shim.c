/* cuda_host_shim.c — a HOST EMULATION of the opd_cuda_* kernel API, for
 * tests only: "device" memory is host memory (opd_cuda_alloc = calloc,
 * upload/download/copy = memcpy) and every kernel calls the CPU reference
 * function of ref/ that it mirrors.
 *
 * What this proves, and what it does not: linked with the GPU step driver
 * (gpu/model_cuda.c, gpu/step_cuda.c) it runs the driver's host code on a
 * machine without a GPU, so tests/test_cuda_shim can check the driver's
 * COMPOSITION — which kernel is called in which order, on which buffers,
 * with which sizes, strides, offsets and masks — against the golden step.
 * It says nothing about the CUDA kernels themselves (the .cu files of gpu/): those are
 * checked only by tests/gpu_check, on a machine with a GPU.
 *
 * Never linked into libopd or the CLI. */
#include "opd.h"
#include "opd_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The emulated context only counts live allocations, so the test can see
 * that the driver frees what it allocates. */
struct opd_cuda {
    int device;
};
long opd_cuda_shim_live_allocs = 0;

int opd_cuda_available(char *why, size_t n) {
    if (why && n) snprintf(why, n, "host emulation of the CUDA API (tests/cuda_host_shim.c), no GPU");
    return 1;
}

int opd_cuda_create(opd_cuda **out, int device) {
    *out = opd_calloc(1, sizeof **out);
    (*out)->device = device;
    return 0;
}

void opd_cuda_destroy(opd_cuda *cu) { free(cu); }
int opd_cuda_sync(opd_cuda *cu) { return 0; }

int opd_cuda_alloc(opd_cuda *cu, void **dptr, size_t nbytes) {
    *dptr = opd_calloc(1, nbytes ? nbytes : 1);
    opd_cuda_shim_live_allocs++;
    return 0;
}

void opd_cuda_free(void *dptr) {
    if (!dptr) return;
    opd_cuda_shim_live_allocs--;
    free(dptr);
}

int opd_cuda_upload(opd_cuda *cu, void *dst, const void *host_src, size_t nbytes) {
    if (nbytes) memcpy(dst, host_src, nbytes);
    return 0;
}

int opd_cuda_download(opd_cuda *cu, void *host_dst, const void *src, size_t nbytes) {
    if (nbytes) memcpy(host_dst, src, nbytes);
    return 0;
}

int opd_cuda_copy(opd_cuda *cu, void *dst, const void *src, size_t nbytes) {
    if (nbytes) memcpy(dst, src, nbytes);
    return 0;
}

int opd_cuda_zero(opd_cuda *cu, void *dptr, size_t nbytes) {
    if (nbytes) memset(dptr, 0, nbytes);
    return 0;
}

/* ---------------------------------------------------------------- layers */
int opd_cuda_matmul_forward(opd_cuda *cu, float *out, const float *inp, const float *weight,
                            const float *bias, int N, int C, int OC) {
    matmul_forward(out, inp, weight, bias, N, C, OC);
    return 0;
}

int opd_cuda_matmul_backward(opd_cuda *cu, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight,
                             int N, int C, int OC) {
    matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
    return 0;
}

int opd_cuda_encoder_forward(opd_cuda *cu, float *out, const int *tokens, const float *wte,
                             int N, int C) {
    encoder_forward(out, tokens, wte, N, C);
    return 0;
}

int opd_cuda_encoder_backward(opd_cuda *cu, float *dwte, const float *dout, const int *tokens,
                              int N, int C) {
    encoder_backward(dwte, dout, tokens, N, C);
    return 0;
}

int opd_cuda_rmsnorm_forward(opd_cuda *cu, float *out, float *rstd, const float *inp,
                             const float *weight, int N, int C, float eps) {
    rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
    return 0;
}

int opd_cuda_rmsnorm_backward(opd_cuda *cu, float *dinp, float *dweight, const float *dout,
                              const float *inp, const float *weight, const float *rstd,
                              int N, int C) {
    rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
    return 0;
}

int opd_cuda_rope_positions(opd_cuda *cu, int *pos, const int *pad, int B, int S) {
    for (int b = 0; b < B; b++) {
        int p = pad ? pad[b] : 0;
        for (int t = 0; t < S; t++) pos[b * S + t] = t >= p ? t - p : 0;
    }
    return 0;
}

int opd_cuda_rope_forward(opd_cuda *cu, float *x, const int *pos, int N, int nh, int hd,
                          float theta) {
    rope_forward(x, pos, N, nh, hd, theta);
    return 0;
}

int opd_cuda_rope_backward(opd_cuda *cu, float *dx, const int *pos, int N, int nh, int hd,
                           float theta) {
    rope_backward(dx, pos, N, nh, hd, theta);
    return 0;
}

int opd_cuda_attention_forward(opd_cuda *cu, float *out, float *att, const float *q,
                               const float *k, const float *v, const int *pad, int B, int S,
                               int NH, int NKV, int hd) {
    attention_forward(out, att, q, k, v, pad, B, S, NH, NKV, hd);
    return 0;
}

int opd_cuda_attention_backward(opd_cuda *cu, float *dq, float *dk, float *dv, float *datt,
                                const float *dout, const float *q, const float *k,
                                const float *v, const float *att, int B,
                                int S, int NH, int NKV, int hd) {
    attention_backward(dq, dk, dv, datt, dout, q, k, v, att, B, S, NH, NKV, hd);
    return 0;
}

int opd_cuda_swiglu_forward(opd_cuda *cu, float *out, const float *gate, const float *up,
                            int N, int F) {
    swiglu_forward(out, gate, up, N, F);
    return 0;
}

int opd_cuda_swiglu_backward(opd_cuda *cu, float *dgate, float *dup, const float *dout,
                             const float *gate, const float *up, int N, int F) {
    swiglu_backward(dgate, dup, dout, gate, up, N, F);
    return 0;
}

/* the residual add and the temperature scale are plain loops in ref/ */
int opd_cuda_add_inplace(opd_cuda *cu, float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
    return 0;
}

int opd_cuda_scale(opd_cuda *cu, float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
    return 0;
}

/* ------------------------------------------------ KV cache, decode attention */
int opd_cuda_decode_positions(opd_cuda *cu, int *pos, const int *pad, int B, int t) {
    for (int b = 0; b < B; b++) {
        int pb = pad ? pad[b] : 0;
        pos[b] = t >= pb ? t - pb : 0;
    }
    return 0;
}

int opd_cuda_kv_cache_write(opd_cuda *cu, float *kc, float *vc, const float *k, const float *v,
                            int B, int S, int kvd, int t) {
    /* one layer of an opd_kv_cache of this shape: the reference's own write */
    opd_kv_cache c = {.L = 1, .B = B, .S = S, .kv_dim = kvd, .k = kc, .v = vc};
    opd_kv_cache_write(&c, 0, k, v, 1, t);
    return 0;
}

/* decode_attention_kernel (gpu/layers.cu) on the host: the device uses the
 * CPU's cache layout, so this is the reference's attention_decode_forward
 * with one position per sequence. */
int opd_cuda_decode_attention(opd_cuda *cu, float *out, float *att, const float *q,
                              const float *kc, const float *vc, const int *pad, int B, int S,
                              int t, int NH, int NKV, int hd) {
    if (NKV <= 0 || NH % NKV != 0)
        return opd_set_error("opd_cuda_decode_attention: NH = %d is not a multiple of NKV = %d", NH, NKV);
    if (t < 0 || t >= S)
        return opd_set_error("opd_cuda_decode_attention: position %d outside the cache (capacity %d)", t, S);
    attention_decode_forward(out, att, q, kc, vc, pad, B, 1, t, S, NH, NKV, hd);
    return 0;
}

/* ---------------------------------------------------------------- losses */
int opd_cuda_log_softmax(opd_cuda *cu, float *out, float *lse, const float *logits, int N, int V) {
    float *row = opd_malloc((size_t)V * sizeof(float));
    for (int n = 0; n < N; n++) {
        float l = opd_log_softmax(row, logits + (size_t)n * V, V);
        if (out) memcpy(out + (size_t)n * V, row, (size_t)V * sizeof(float));
        if (lse) lse[n] = l;
    }
    free(row);
    return 0;
}

int opd_cuda_cross_entropy(opd_cuda *cu, float *loss, const float *logits, const int *targets,
                           const float *mask, int B, int S, int V, float *dlogits) {
    *loss = opd_cross_entropy(logits, targets, mask, B, S, V, dlogits);
    return 0;
}

int opd_cuda_distill_loss(opd_cuda *cu, float *loss, const opd_loss_config *c,
                          const float *s_logits, const float *t_logits, const int *y,
                          const float *mask, const float *sampler_lp, int B, int trained_len, int V,
                          float *dlogits, float *per_token, float *rkl) {
    *loss = opd_distill_loss(c, s_logits, t_logits, y, mask, sampler_lp, B, trained_len, V, dlogits,
                             per_token, rkl);
    /* the CPU returns NaN both for a bad config and for non-finite logits;
     * the step's finiteness check reports either */
    return 0;
}

/* -------------------------------------------------------------- sampling */
int opd_cuda_sample_tokens(opd_cuda *cu, int *tokens, float *logprobs, const float *logits,
                           int B, int V, const opd_sampler_config *s, uint64_t seed,
                           uint32_t step, const uint32_t *seq, const uint32_t *pos) {
    float *scratch = opd_malloc(2 * (size_t)V * sizeof(float));
    int rc = 0;
    for (int b = 0; b < B && rc == 0; b++) {
        float lp = 0.0f;
        tokens[b] = opd_sample_token(logits + (size_t)b * V, V, s, seed, step, seq[b], pos[b], &lp, scratch);
        if (tokens[b] < 0) rc = -1;   /* the message is the sampler's */
        if (logprobs) logprobs[b] = lp;
    }
    free(scratch);
    return rc;
}

int opd_cuda_uniform(opd_cuda *cu, float *out, size_t n, uint64_t seed, uint32_t a, uint32_t b,
                     uint32_t c0, int word) {
    for (size_t i = 0; i < n; i++) out[i] = opd_uniform(seed, a, b, c0 + (uint32_t)i, word);
    return 0;
}

/* ------------------------------------------------------------- optimizer */
int opd_cuda_grad_norm(opd_cuda *cu, float *norm, const float *g, size_t n) {
    *norm = opd_grad_norm(g, n);
    return 0;
}

/* opd_adamw_update works on an opd_model and an opd_adamw: wrap the
 * emulated device buffers in both (no copies, nothing owned). */
int opd_cuda_adamw_update(opd_cuda *cu, float *norm, float *params, float *grads, float *m,
                          float *v, const opd_config *cfg, const opd_optim_config *oc,
                          long *step) {
    opd_model model;
    memset(&model, 0, sizeof model);
    model.cfg = *cfg;
    model.num_params = opd_param_count(cfg);
    model.params_mem = params;
    model.grads_mem = grads;
    opd_adamw opt = {.cfg = *oc, .n = model.num_params, .m = m, .v = v, .step = *step};
    *norm = opd_adamw_update(&opt, &model);
    *step = opt.step;
    return 0;
}
