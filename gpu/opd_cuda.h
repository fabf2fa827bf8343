/* opd_cuda.h — the optional CUDA path of libopd (./configure --with-cuda).
 *
 * Every function mirrors a CPU function of ref/opd.h with the same name
 * prefixed by opd_cuda_, the same argument order and the same semantics
 * (backward functions ACCUMULATE into their gradients), but every array
 * argument is a DEVICE pointer unless its comment says "host". All work is
 * queued on the context's stream; functions that return a host value (a
 * loss, a norm, sampled-token checks) synchronise that stream.
 *
 * Functions returning int return 0 on success and -1 on error, with the
 * message (file:line and cudaGetErrorString) in opd_last_error(); the library
 * never exits. The CPU reference (ref/) is the source of truth: tests/gpu_check
 * runs each kernel against it.
 *
 * The C API needs no CUDA header: the context is opaque. */
#ifndef OPD_CUDA_H
#define OPD_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "opd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------- device, context */
/* 1 if a CUDA device can be used, 0 if not; `why` (n bytes, may be NULL)
 * receives the reason when not ("no CUDA device", the driver's message). */
int opd_cuda_available(char *why, size_t n);

/* cuBLAS handle, stream and a scratch buffer grown on demand. */
typedef struct opd_cuda opd_cuda;
int opd_cuda_create(opd_cuda **out, int device);
void opd_cuda_destroy(opd_cuda *cu);          /* NULL ok */
int opd_cuda_sync(opd_cuda *cu);              /* wait for the stream */

/* Device memory. opd_cuda_alloc zeroes what it allocates. */
int opd_cuda_alloc(opd_cuda *cu, void **dptr, size_t nbytes);
void opd_cuda_free(void *dptr);               /* NULL ok */
int opd_cuda_upload(opd_cuda *cu, void *dst, const void *host_src, size_t nbytes);
int opd_cuda_download(opd_cuda *cu, void *host_dst, const void *src, size_t nbytes);
int opd_cuda_zero(opd_cuda *cu, void *dptr, size_t nbytes);
/* device to device, queued on the stream */
int opd_cuda_copy(opd_cuda *cu, void *dst, const void *src, size_t nbytes);

/* ---------------------------------------------------------------- layers */
/* out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC) (bias may be NULL);
 * cuBLAS sgemm in fp32 (no TF32). */
int opd_cuda_matmul_forward(opd_cuda *cu, float *out, const float *inp,
                            const float *weight, const float *bias,
                            int N, int C, int OC);
/* The CPU reference's gemm definition on the device (opd_gemm_reference in
 * ref/gemm.c: the same fmaf chain per element, so the same bits), row-major;
 * slow, for checking that a GPU reproduces the CPU's gemm bit for bit. */
int opd_cuda_gemm_reference(opd_cuda *cu, int transA, int transB, int M, int N, int K,
                            float alpha, const float *A, int lda, const float *B, int ldb,
                            float beta, float *C, int ldc);
/* dinp (N, C) += dout @ weight; dweight (OC, C) += dout^T @ inp;
 * dbias (OC) += sum_n dout. Any of dinp, dweight, dbias may be NULL. */
int opd_cuda_matmul_backward(opd_cuda *cu, float *dinp, float *dweight,
                             float *dbias, const float *dout, const float *inp,
                             const float *weight, int N, int C, int OC);
/* out (N, C) = wte[tokens]; dwte += scatter of dout (rows in order). */
int opd_cuda_encoder_forward(opd_cuda *cu, float *out, const int *tokens,
                             const float *wte, int N, int C);
int opd_cuda_encoder_backward(opd_cuda *cu, float *dwte, const float *dout,
                              const int *tokens, int N, int C);
/* out = inp * rstd * weight, rstd (N) saved for the backward */
int opd_cuda_rmsnorm_forward(opd_cuda *cu, float *out, float *rstd,
                             const float *inp, const float *weight,
                             int N, int C, float eps);
int opd_cuda_rmsnorm_backward(opd_cuda *cu, float *dinp, float *dweight,
                              const float *dout, const float *inp,
                              const float *weight, const float *rstd,
                              int N, int C);
/* pos (B, S) = t - pad[b] for real tokens, 0 for pads (pad NULL: t). */
int opd_cuda_rope_positions(opd_cuda *cu, int *pos, const int *pad, int B, int S);
/* In-place rotate-half RoPE of x (N, nh, hd) at positions pos (N):
 * pair (i, i + hd/2) rotated by pos * theta^(-2i/hd); backward by -angle. */
int opd_cuda_rope_forward(opd_cuda *cu, float *x, const int *pos, int N,
                          int nh, int hd, float theta);
int opd_cuda_rope_backward(opd_cuda *cu, float *dx, const int *pos, int N,
                           int nh, int hd, float theta);
/* Causal GQA attention with left padding, exactly as attention_forward:
 * q (B, S, NH*hd), k, v (B, S, NKV*hd), out (B, S, NH*hd), att (B, NH, S, S);
 * pad (B) device or NULL: keys j < pad[b] masked, a pad query row attends to
 * itself only. datt (B, NH, S, S) is scratch (holds dZ afterwards). */
int opd_cuda_attention_forward(opd_cuda *cu, float *out, float *att,
                               const float *q, const float *k, const float *v,
                               const int *pad, int B, int S, int NH, int NKV,
                               int hd);
int opd_cuda_attention_backward(opd_cuda *cu, float *dq, float *dk, float *dv,
                                float *datt, const float *dout, const float *q,
                                const float *k, const float *v, const float *att,
                                int B, int S, int NH, int NKV,
                                int hd);
/* out (N, F) = silu(gate) * up */
int opd_cuda_swiglu_forward(opd_cuda *cu, float *out, const float *gate,
                            const float *up, int N, int F);
int opd_cuda_swiglu_backward(opd_cuda *cu, float *dgate, float *dup,
                             const float *dout, const float *gate,
                             const float *up, int N, int F);

/* y (n) += x (n): the residual connections */
int opd_cuda_add_inplace(opd_cuda *cu, float *y, const float *x, size_t n);
/* x (n) *= s: the teacher's temperature */
int opd_cuda_scale(opd_cuda *cu, float *x, float s, size_t n);

/* ------------------------------------------------ KV cache, one-token decode */
/* The pieces of ref/decode.c's opd_model_decode_step that are not layers.
 * pos (B) = t - pad[b] for a real token at position t, 0 for a pad position
 * (pad device or NULL: t). */
int opd_cuda_decode_positions(opd_cuda *cu, int *pos, const int *pad, int B, int t);
/* Position t of every sequence into one layer's cache, in the CPU's layout
 * (opd_kv_cache_write): keys kc (B, kvd, S) transposed, values vc (B, S,
 * kvd); k, v (B, kvd). */
int opd_cuda_kv_cache_write(opd_cuda *cu, float *kc, float *vc, const float *k,
                            const float *v, int B, int S, int kvd, int t);
/* One query per sequence at position t attending over its cached positions
 * pad[b]..t (a pad position attends to itself only), exactly the loop of
 * attention_decode_forward with n = 1: q (B, NH*hd); kc (B, NKV*hd, S),
 * vc (B, S, NKV*hd) this layer's cache with position t already written; out (B, NH*hd); att (B, NH, S)
 * scratch. pad (B) device or NULL. */
int opd_cuda_decode_attention(opd_cuda *cu, float *out, float *att, const float *q,
                              const float *kc, const float *vc, const int *pad,
                              int B, int S, int t, int NH, int NKV, int hd);

/* ------------------------------------------------------------ losses */
/* Row-wise log-softmax of logits (N, V): out (N, V) (may be NULL) and
 * lse (N) (may be NULL), the log-sum-exp, accumulated in double. */
int opd_cuda_log_softmax(opd_cuda *cu, float *out, float *lse,
                         const float *logits, int N, int V);
/* As opd_cross_entropy: token-mean next-token cross-entropy of logits
 * (B, S, V) against targets (B, S), mask (B, S) or NULL; dlogits (B, S, V)
 * or NULL is overwritten. *loss (host) receives the loss. */
int opd_cuda_cross_entropy(opd_cuda *cu, float *loss, const float *logits,
                           const int *targets, const float *mask, int B, int S,
                           int V, float *dlogits);
/* As opd_distill_loss (every loss kind and reduction of opd_loss_config):
 * s_logits, t_logits (B, trained_len, V), y (B, trained_len), mask (B, trained_len), sampler_lp (B, trained_len) or
 * NULL; dlogits (B, trained_len, V), per_token (B, trained_len), rkl (B, trained_len) may be NULL and are
 * overwritten. *loss (host) receives the reduced loss (NaN on error). */
int opd_cuda_distill_loss(opd_cuda *cu, float *loss, const opd_loss_config *c,
                          const float *s_logits, const float *t_logits,
                          const int *y, const float *mask,
                          const float *sampler_lp, int B, int trained_len, int V,
                          float *dlogits, float *per_token, float *rkl);

/* ------------------------------------------------------------ sampling */
/* One token per row of logits (B, V), each exactly the token that
 * opd_sample_token gives for the same row and key (seed, step, seq[b],
 * pos[b]) (seq, pos: device (B)). tokens (B); logprobs (B) or NULL receives
 * the temperature-1 unfiltered log-probability. */
int opd_cuda_sample_tokens(opd_cuda *cu, int *tokens, float *logprobs,
                           const float *logits, int B, int V,
                           const opd_sampler_config *s, uint64_t seed,
                           uint32_t step, const uint32_t *seq,
                           const uint32_t *pos);
/* n (host) uniforms: out[i] = opd_uniform(seed, a, b, c0 + i, word). */
int opd_cuda_uniform(opd_cuda *cu, float *out, size_t n, uint64_t seed,
                     uint32_t a, uint32_t b, uint32_t c0, int word);

/* ----------------------------------------------------------- optimizer */
/* Global L2 norm of g (n), chunked exactly as opd_grad_norm; *norm host. */
int opd_cuda_grad_norm(opd_cuda *cu, float *norm, const float *g, size_t n);
/* Exactly opd_adamw_update on device buffers: params, grads, m, v each
 * opd_param_count(cfg) floats laid out as opd_param_tensors(cfg) says (the
 * decay flag per tensor). *step (host) is the number of updates done and is
 * advanced; *norm (host) receives the norm before clipping. A non-finite
 * norm skips the update (step not counted), as on the CPU. */
int opd_cuda_adamw_update(opd_cuda *cu, float *norm, float *params,
                          float *grads, float *m, float *v,
                          const opd_config *cfg, const opd_optim_config *oc,
                          long *step);

/* ==================================================================
 * The whole OPD step on the GPU (gpu/model_cuda.c, gpu/step_cuda.c): host C
 * that calls the functions above in the order ref/model.c, ref/decode.c,
 * ref/rollout.c and ref/opd_step.c call the CPU layers, so the two can be
 * read side by side. The structs reuse the CPU's view types (opd_params,
 * opd_acts, opd_grad_scratch) with DEVICE pointers; they are distinct types
 * so that a device model can never be handed to a CPU function.
 * ================================================================== */

/* ---------------------------------------------------------- the model */
typedef struct {
    opd_config cfg;
    size_t num_params;
    float *params_mem;     /* device (num_params), the CPU's flat layout */
    opd_params params;     /* device views into params_mem */
    float *grads_mem;      /* device (num_params), NULL until alloc_grads */
    opd_params grads;
    opd_acts acts;         /* device, the CPU's layout and (B, S) packing */
    opd_grad_scratch gs;   /* device */
    int B, S;              /* shape of the last forward */
    int acts_B, acts_S, acts_L, acts_one_layer;   /* as in opd_model */
} opd_cuda_model;

/* A device copy of host's config and weights (no gradients yet). */
int opd_cuda_model_init(opd_cuda *cu, opd_cuda_model *m, const opd_model *host);
void opd_cuda_model_free(opd_cuda_model *m);
/* weights host -> device / device -> host (same config) */
int opd_cuda_model_upload(opd_cuda *cu, opd_cuda_model *m, const opd_model *host);
int opd_cuda_model_download(opd_cuda *cu, opd_model *host, const opd_cuda_model *m);
int opd_cuda_model_alloc_grads(opd_cuda *cu, opd_cuda_model *m);
int opd_cuda_model_zero_grads(opd_cuda *cu, opd_cuda_model *m);
/* As opd_model_forward / opd_model_forward_inference / opd_model_backward;
 * tokens (B, S) and pad (B) (or NULL) are device arrays. */
int opd_cuda_model_forward(opd_cuda *cu, opd_cuda_model *m, const int *tokens,
                           const int *pad, int B, int S);
int opd_cuda_model_forward_inference(opd_cuda *cu, opd_cuda_model *m,
                                     const int *tokens, const int *pad, int B, int S);
int opd_cuda_model_backward(opd_cuda *cu, opd_cuda_model *m, const float *dlogits);

/* ------------------------------------------------ KV cache and decode */
typedef struct {
    int L, B, S, kv_dim;   /* as opd_kv_cache */
    float *k;                /* device (L, B, NKV*hd, S), keys transposed, as opd_kv_cache */
    float *v;                /* device (L, B, S, NKV*hd) */
} opd_cuda_kv_cache;
typedef struct {
    int B, S;
    float *x, *xn, *q, *k, *v, *atty, *tmp, *gate, *up, *att, *rstd; /* device, as opd_decode_scratch */
    int *pos;                /* device (B) */
} opd_cuda_decode_scratch;

int opd_cuda_kv_cache_init(opd_cuda *cu, opd_cuda_kv_cache *c, const opd_config *cfg,
                           int B, int S);
void opd_cuda_kv_cache_free(opd_cuda_kv_cache *c);
int opd_cuda_decode_scratch_init(opd_cuda *cu, opd_cuda_decode_scratch *s,
                                 const opd_config *cfg, int B, int S);
void opd_cuda_decode_scratch_free(opd_cuda_decode_scratch *s);
/* As opd_model_decode_step: tokens (B), pad (B) or NULL device; logits (B, V) device. */
int opd_cuda_model_decode_step(opd_cuda *cu, const opd_cuda_model *m,
                               opd_cuda_kv_cache *c, opd_cuda_decode_scratch *s,
                               const int *tokens, const int *pad, int t, float *logits);

/* ------------------------------------------------------------- rollouts */
/* As opd_rollout_sample, with the student on the device. Every argument
 * and the result are HOST memory (the same opd_rollout as the CPU's, freed
 * with opd_rollout_free): the sampled tokens are the CPU's, because the
 * sampler's draws are keyed by (seed, step, seq_ids[b], i). */
int opd_cuda_rollout_sample(opd_cuda *cu, const opd_cuda_model *student,
                            const int *prompts, const int *pad,
                            const uint32_t *seq_ids, int B, int P, int H,
                            const opd_rollout_config *rc, opd_rollout *out);

/* ------------------------------------------------------------ optimizer */
typedef struct {
    opd_optim_config cfg;
    size_t n;
    float *m, *v;            /* device (n) */
    long step;               /* updates done (host) */
} opd_cuda_adamw;
/* A device copy of host's moments and step. */
int opd_cuda_adamw_init(opd_cuda *cu, opd_cuda_adamw *opt, const opd_adamw *host);
/* moments and step device -> host (host->n must match) */
int opd_cuda_adamw_download(opd_cuda *cu, opd_adamw *host, const opd_cuda_adamw *opt);
void opd_cuda_adamw_free(opd_cuda_adamw *opt);

/* ------------------------------------------------------- one OPD step */
/* Work buffers of the GPU step, grown on demand and kept across steps. */
typedef struct {
    opd_rollout roll;          /* host, as opd_step_work */
    opd_step_batch batch;      /* host: the (B, trained_len) views, built by opd_step_compact */
    int *tokens;               /* device (B, S) the [x; y] sequence */
    int *y;                    /* device (B, trained_len) rollout tokens */
    float *mask, *slp;         /* device (B, trained_len) loss mask, sampler log-probs */
    float *s_logits, *t_logits, *dlogits_h;   /* device (B, trained_len, V) */
    float *dlogits;            /* device (B, S, V) */
    float *per_token, *rkl;    /* device (B, trained_len) */
    float *h_rkl;              /* host (B, trained_len): rkl for opd_step_kl_stats */
    int *pad;                  /* device (B) */
    size_t cap_bh, cap_bs, cap_b;
} opd_cuda_step_work;

void opd_cuda_step_work_free(opd_cuda_step_work *w);
/* opd_distill_step with both models and the optimizer on the device:
 * prompts, pad, seq_ids and st are host memory; the results of the step
 * stay in w (the rollout on the host, logits and dlogits on the device)
 * until the next call. Phase timings include a stream synchronisation. */
int opd_cuda_distill_step(opd_cuda *cu, opd_cuda_model *student,
                          opd_cuda_model *teacher, opd_cuda_adamw *opt,
                          const opd_distill_config *c, const int *prompts,
                          const int *pad, const uint32_t *seq_ids, int B, int P,
                          long k, opd_cuda_step_work *w, opd_step_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* OPD_CUDA_H */
