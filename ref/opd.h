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

/* ------------------------------------------------------------ model config */
typedef struct {
    int vocab_size;     /* V */
    int d_model;        /* C */
    int n_layers;       /* L */
    int n_heads;        /* NH, query heads */
    int n_kv_heads;     /* NKV, key/value heads; NH % NKV == 0 (GQA when <) */
    int d_ff;           /* F, SwiGLU hidden size */
    int max_seq_len;    /* longest sequence (prompt + horizon) the model takes */
    int qkv_bias;       /* 1: bias on q/k/v projections (Qwen2 style) */
    int tie_embeddings; /* 1: LM head is the token embedding */
    float rope_theta;   /* RoPE base, default 10000 */
    float rms_eps;      /* RMSNorm epsilon, default 1e-6 */
} opd_config;

void opd_config_default(opd_config *cfg);
/* Checks every field's range; `what` names the source in the message. */
int opd_config_validate(const opd_config *cfg, const char *what);

/* ------------------------------------------------------------- parameters */
/* All parameters live in one flat buffer; this struct names views into it.
 * Per-layer tensors are stacked over L: layer l of wq is wq + l*(C*C). */
typedef struct {
    float *wte;     /* (V, C)           token embedding                    */
    float *ln1_w;   /* (L, C)           RMSNorm before attention           */
    float *wq;      /* (L, NH*hd, C)                                       */
    float *bq;      /* (L, NH*hd)       NULL unless qkv_bias               */
    float *wk;      /* (L, NKV*hd, C)                                      */
    float *bk;      /* (L, NKV*hd)      NULL unless qkv_bias               */
    float *wv;      /* (L, NKV*hd, C)                                      */
    float *bv;      /* (L, NKV*hd)      NULL unless qkv_bias               */
    float *wo;      /* (L, C, NH*hd)                                       */
    float *ln2_w;   /* (L, C)           RMSNorm before the MLP             */
    float *w_gate;  /* (L, F, C)                                           */
    float *w_up;    /* (L, F, C)                                           */
    float *w_down;  /* (L, C, F)                                           */
    float *lnf_w;   /* (C)              final RMSNorm                      */
    float *lm_head; /* (V, C)           == wte when tie_embeddings         */
} opd_params;

/* One named tensor of the flat buffer, Hugging Face Qwen2 naming
 * ("model.layers.3.self_attn.q_proj.weight"), so checkpoints load in
 * transformers' Qwen2ForCausalLM. */
typedef struct {
    char name[96];
    size_t offset;  /* in floats, into the flat parameter buffer */
    size_t numel;
    int ndim;       /* 1 or 2 */
    int shape[2];
    int decay;      /* 1: AdamW weight decay applies (matrices, not norms/biases) */
} opd_tensor_info;

/* Number of named tensors for this config (tied head: no lm_head entry). */
int opd_param_tensor_count(const opd_config *cfg);
/* Fill `out` (opd_param_tensor_count entries). */
void opd_param_tensors(const opd_config *cfg, opd_tensor_info *out);
size_t opd_param_count(const opd_config *cfg);
/* Point the views of `p` into the flat buffer `mem`. */
void opd_params_bind(opd_params *p, float *mem, const opd_config *cfg);

/* ------------------------------------------------------------ activations */
/* Everything the backward pass needs, sized for (B, S) at allocation. */
typedef struct {
    int B, S;          /* capacity */
    float *encoded;    /* (B, S, C)          embedding output = input of layer 0 */
    float *ln1;        /* (L, B, S, C)       n1(x)                              */
    float *ln1_rstd;   /* (L, B, S)                                             */
    float *q;          /* (L, B, S, NH*hd)   after RoPE                         */
    float *k;          /* (L, B, S, NKV*hd)  after RoPE                         */
    float *v;          /* (L, B, S, NKV*hd)                                     */
    float *att;        /* (L, B, NH, S, S)   softmax probabilities              */
    float *atty;       /* (L, B, S, NH*hd)   attention output before Wo         */
    float *res_mid;    /* (L, B, S, C)       h = x + Wo atty                    */
    float *ln2;        /* (L, B, S, C)                                          */
    float *ln2_rstd;   /* (L, B, S)                                             */
    float *gate;       /* (L, B, S, F)       Wgate n2(h), before silu           */
    float *up;         /* (L, B, S, F)                                          */
    float *swiglu;     /* (L, B, S, F)       silu(gate) * up                    */
    float *res_out;    /* (L, B, S, C)       block output = input of layer l+1  */
    float *lnf;        /* (B, S, C)                                             */
    float *lnf_rstd;   /* (B, S)                                                */
    float *logits;     /* (B, S, V)                                             */
    int *pos;          /* (B, S)             RoPE position of each token        */
    int *tokens;       /* (B, S)             input tokens (the backward needs them) */
    int *pad;          /* (B)                left padding of the last forward   */
} opd_acts;

/* Scratch for the backward pass, sized like one layer. */
typedef struct {
    float *dres;       /* (B, S, C)   gradient of the residual stream      */
    float *dbuf_c;     /* (B, S, C)                                        */
    float *dq;         /* (B, S, NH*hd)                                    */
    float *dk;         /* (B, S, NKV*hd)                                   */
    float *dv;         /* (B, S, NKV*hd)                                   */
    float *datty;      /* (B, S, NH*hd)                                    */
    float *datt;       /* (B, NH, S, S)                                    */
    float *dgate;      /* (B, S, F)                                        */
    float *dup;        /* (B, S, F)                                        */
    float *dswiglu;    /* (B, S, F)                                        */
} opd_grad_scratch;

typedef struct {
    opd_config cfg;
    size_t num_params;
    float *params_mem;     /* (num_params) */
    opd_params params;
    float *grads_mem;      /* (num_params), NULL until opd_model_alloc_grads */
    opd_params grads;
    opd_acts acts;         /* allocated on demand for the largest (B, S) seen */
    opd_grad_scratch gs;
    int B, S;              /* shape of the last forward */
    int acts_B, acts_S;    /* capacity of acts */
    int acts_L;            /* layers of acts: n_layers, or 1 if only inference ran */
    int acts_one_layer;    /* the last forward kept one layer: no backward */
} opd_model;

int opd_model_init(opd_model *m, const opd_config *cfg);  /* params zeroed */
/* GPT-2 style init: N(0, 0.02) matrices, residual projections scaled by
 * 1/sqrt(2L), norms 1, biases 0. Deterministic in `seed` (Philox keyed). */
void opd_model_init_random(opd_model *m, uint64_t seed);
void opd_model_alloc_grads(opd_model *m);
void opd_model_zero_grads(opd_model *m);
void opd_model_free(opd_model *m);

/* Forward over tokens (B, S). pad (B) or NULL: sequence b is left-padded with
 * pad[b] tokens that are neither attended to nor given RoPE positions; its
 * first real token has position 0. Fills m->acts (logits (B, S, V)). */
void opd_model_forward(opd_model *m, const int *tokens, const int *pad,
                       int B, int S);
/* The same forward for scoring only (the teacher): bit-identical logits, but
 * every layer overwrites one layer's activations (att (B, NH, S, S) is kept
 * once, not L times), so no backward can follow it. */
void opd_model_forward_inference(opd_model *m, const int *tokens, const int *pad,
                                 int B, int S);
/* Backward from dlogits (B, S, V) of the last forward; accumulates into
 * m->grads (call opd_model_zero_grads first). */
void opd_model_backward(opd_model *m, const float *dlogits);

/* ------------------------------------------------- layers (one per direction) */
/* These are exposed for the tests and the CUDA checks; the model calls them. */
/* own: the reference's gemm (ref/gemm.c), the default and the only one whose
 * bits are promised; blas, onednn: optional fast backends (OPD_MATMUL=). */
typedef enum { OPD_MATMUL_OWN = 0, OPD_MATMUL_BLAS = 1, OPD_MATMUL_ONEDNN = 2 } opd_matmul_backend;
void opd_matmul_set_backend(opd_matmul_backend b);   /* unavailable: own */
opd_matmul_backend opd_matmul_get_backend(void);
const char *opd_matmul_backend_name(opd_matmul_backend b);
int opd_matmul_backend_available(opd_matmul_backend b);  /* built in */
/* out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC) (bias may be NULL) */
void matmul_forward(float *out, const float *inp, const float *weight,
                    const float *bias, int N, int C, int OC);
/* dinp (N, C) += dout @ weight; dweight (OC, C) += dout^T @ inp;
 * dbias (OC) += sum_n dout. Any of dinp, dweight, dbias may be NULL. */
void matmul_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int N, int C, int OC);
/* The same two as plain loops (ref/layers_naive.c), to read against the
 * formulas; equal to the fast ones within rounding, not bit for bit. */
void matmul_forward_naive(float *out, const float *inp, const float *weight,
                          const float *bias, int N, int C, int OC);
void matmul_backward_naive(float *dinp, float *dweight, float *dbias,
                           const float *dout, const float *inp, const float *weight,
                           int N, int C, int OC);
/* C (M, N) = alpha * op(A) op(B) + beta * C, row-major, the one sgemm every
 * layer goes through (dispatches to the selected backend). */
void opd_sgemm(int transA, int transB, int M, int N, int K, float alpha,
               const float *A, int lda, const float *B, int ldb, float beta,
               float *C, int ldc);
/* The reference's own sgemm and its definition (ref/gemm.c): for each
 * element, C = beta * C (beta 0: C = +0), then for k = 0 .. K-1 in order
 * C = fmaf(alpha * op(A)[i][k], op(B)[k][j], C). opd_gemm_reference is that
 * loop as written; opd_gemm_own the packed, blocked, threaded kernels that
 * give its bits on every ISA path and thread count. */
void opd_gemm_reference(int transA, int transB, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        float *C, int ldc);
void opd_gemm_own(int transA, int transB, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc);

/* Instruction-set paths of the kernels (ref/isa.c). Chosen from the CPU (the
 * widest it has) or forced by OPD_ISA=avx512|avx2|scalar; every path gives
 * the same bits. */
typedef enum { OPD_ISA_SCALAR = 0, OPD_ISA_AVX2 = 1, OPD_ISA_AVX512 = 2 } opd_isa;
opd_isa opd_isa_get(void);
int opd_isa_set(opd_isa i);          /* -1 if the CPU lacks it */
int opd_isa_supported(opd_isa i);
const char *opd_isa_name(opd_isa i); /* "avx512", "avx2", "scalar" */
int opd_isa_parse(const char *name, opd_isa *out);

/* The project's own math (ref/mathfn.c): fixed sequences of IEEE
 * operations, so results do not depend on libm. opd_expf: within 1 ulp,
 * +inf above 88.37, 0 below -86 (no subnormal results). The double ones
 * (fdlibm's algorithms): exp, log, log1p within 1 ulp; opd_pow takes b > 0,
 * within 16 ulp. Measured in tests/test_kernels.c. */
float opd_expf(float x);
double opd_exp(double x);
double opd_log(double x);
double opd_log1p(double x);
double opd_pow(double b, double e);
void opd_sincos(double x, double *s, double *c);
double opd_cos(double x);
/* 1 / sqrt(x): both operations are correctly rounded IEEE ones, the same on
 * every machine (unlike the approximate rsqrt instructions). */
static inline float opd_rsqrtf(float x) { return 1.0f / __builtin_sqrtf(x); }
/* Vector forms, dispatched by ISA, each element equal to the scalar
 * expression in the comment (y may alias x). */
void opd_vexp_sub(float *y, const float *x, float shift, size_t n);   /* opd_expf(x - shift) */
void opd_vsilu_mul(float *out, const float *gate, const float *up, size_t n);
                                                      /* g / (1 + opd_expf(-g)) * up */
void opd_vsilu_mul_backward(float *dgate, float *dup, const float *dout,
                            const float *gate, const float *up, size_t n);
            /* s = 1 / (1 + opd_expf(-g)): dgate += dout * up * (s + g * s * (1 - s)),
             * dup += dout * g * s */

/* An elementwise loop over fewer elements than this runs on one thread: an
 * OpenMP fork/join and its barrier cost more than the loop (the decode step,
 * 16 rows of width 128). Only the thread count changes, never a result:
 * every row is computed by one thread either way. */
#define OPD_OMP_MIN_ELEMS 16384

/* out (N, C) = wte[tokens] */
void encoder_forward(float *out, const int *tokens, const float *wte, int N, int C);
void encoder_backward(float *dwte, const float *dout, const int *tokens, int N, int C);
/* out = inp * rstd * weight, rstd (N) saved for backward */
void rmsnorm_forward(float *out, float *rstd, const float *inp,
                     const float *weight, int N, int C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout,
                      const float *inp, const float *weight, const float *rstd,
                      int N, int C);
/* In-place rotary embedding of x (N, nh, hd) at positions pos (N); the
 * rotate-half convention of Llama/Qwen2 (pairs i and i + hd/2). */
void rope_forward(float *x, const int *pos, int N, int nh, int hd, float theta);
/* dx in place: the transpose of the rotation (rotation by -angle). */
void rope_backward(float *dx, const int *pos, int N, int nh, int hd, float theta);
/* Causal grouped-query attention.
 * q (B, S, NH*hd), k, v (B, S, NKV*hd), out (B, S, NH*hd), att (B, NH, S, S).
 * pad (B) or NULL: keys j < pad[b] are masked; a padded query row attends to
 * itself only (its output is never used, but stays finite). */
void attention_forward(float *out, float *att, const float *q, const float *k,
                       const float *v, const int *pad, int B, int S, int NH,
                       int NKV, int hd);
/* No pad: the mask is already in att (P = 0 where masked, hence dZ = 0). */
void attention_backward(float *dq, float *dk, float *dv, float *datt,
                        const float *dout, const float *q, const float *k,
                        const float *v, const float *att,
                        int B, int S, int NH, int NKV, int hd);
/* The same two one query at a time in plain loops (ref/layers_naive.c), to
 * read against the formulas; equal to the blocked gemm versions within
 * rounding, not bit for bit (tests/test_model.c). */
void attention_forward_naive(float *out, float *att, const float *q, const float *k,
                             const float *v, const int *pad, int B, int S, int NH,
                             int NKV, int hd);
void attention_backward_naive(float *dq, float *dk, float *dv, float *datt,
                              const float *dout, const float *q, const float *k,
                              const float *v, const float *att,
                              int B, int S, int NH, int NKV, int hd);
/* Attention of n new positions t0..t0+n-1 per sequence against the KV cache
 * (the decode step n = 1, the prefill n = P): q (B, n, NH*hd); kc (B, NKV*hd,
 * S) one layer's keys, transposed; vc (B, S, NKV*hd); att (B, n, NH, S)
 * scratch; out (B, n, NH*hd). Equal to the rows t0..t0+n-1 of
 * attention_forward up to rounding. */
void attention_decode_forward(float *out, float *att, const float *q, const float *kc,
                              const float *vc, const int *pad, int B, int n, int t0,
                              int S, int NH, int NKV, int hd);
/* out (N, F) = silu(gate) * up */
void swiglu_forward(float *out, const float *gate, const float *up, int N, int F);
void swiglu_backward(float *dgate, float *dup, const float *dout,
                     const float *gate, const float *up, int N, int F);

/* ------------------------------------------------------- cross-entropy loss */
/* Next-token cross-entropy on logits (B, S, V) against targets (B, S) with
 * mask (B, S) (NULL: all ones); token-mean over masked positions. Writes
 * dlogits (B, S, V) (may be NULL) and returns the loss. */
float opd_cross_entropy(const float *logits, const int *targets,
                        const float *mask, int B, int S, int V, float *dlogits);
/* log-softmax of one row; returns the log-sum-exp. */
float opd_log_softmax(float *out, const float *logits, int V);

/* ---------------------------------------------------------------- optimizer */
typedef enum { OPD_LR_CONSTANT = 0, OPD_LR_COSINE = 1 } opd_lr_kind;
typedef struct {
    float lr;           /* peak learning rate */
    float beta1, beta2, eps;
    float weight_decay; /* decoupled, on tensors with decay = 1 */
    float grad_clip;    /* global-norm clip; <= 0 disables */
    opd_lr_kind lr_kind;
    int warmup_steps;   /* linear warmup from 0 (both schedules) */
    int total_steps;    /* cosine reaches min_lr_frac * lr here */
    float min_lr_frac;
} opd_optim_config;

typedef struct {
    opd_optim_config cfg;
    size_t n;
    float *m, *v;       /* (n) first and second moments */
    long step;          /* number of updates done */
} opd_adamw;

void opd_optim_config_default(opd_optim_config *c);
void opd_adamw_init(opd_adamw *opt, const opd_optim_config *cfg, size_t n);
void opd_adamw_free(opd_adamw *opt);
float opd_lr_at(const opd_optim_config *c, long step);
/* Global L2 norm of the gradient, accumulated in double in a fixed order. */
float opd_grad_norm(const float *g, size_t n);
/* Clip (per cfg), then one AdamW update of m->params from m->grads.
 * Returns the gradient norm before clipping. */
float opd_adamw_update(opd_adamw *opt, opd_model *m);

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

/* ------------------------------------------------------------------- RNG */
/* Philox4x32-10 (Salmon et al. 2011), the counter-based generator used for
 * every random draw, so that a draw depends only on its key, not on thread
 * count, batch order or device. */
void opd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* Uniform in [0, 1) from the draw keyed by (seed, a, b, c); word selects
 * which of the 4 outputs (0..3). 24-bit mantissa-exact. */
float opd_uniform(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, int word);
/* Standard normal via Box-Muller on the same keyed draw. */
float opd_normal(uint64_t seed, uint32_t a, uint32_t b, uint32_t c);

/* --------------------------------------------------------------- sampling */
typedef struct {
    float temperature;  /* 0: greedy */
    int top_k;          /* 0: off */
    float top_p;        /* 1: off */
} opd_sampler_config;

void opd_sampler_config_default(opd_sampler_config *s);
/* Sample one token from logits (V). The uniform draw is keyed by
 * (seed, step, seq, pos). *logprob receives log softmax(logits)[token] at
 * temperature 1, unfiltered: the model's own probability, which is what the
 * importance weight of the sampled reverse-KL loss compares against.
 * scratch holds 2*V floats. */
int opd_sample_token(const float *logits, int V, const opd_sampler_config *s,
                     uint64_t seed, uint32_t step, uint32_t seq, uint32_t pos,
                     float *logprob, float *scratch);

/* --------------------------------------------------------- KV cache, decode */
typedef struct {
    int L, B, S, kv_dim;     /* S: positions held, P + H_k (a rollout's sequence) */
    float *k;                /* (L, B, NKV*hd, S) keys transposed: a query's
                                scores run over contiguous positions */
    float *v;                /* (L, B, S, NKV*hd) */
} opd_kv_cache;

int opd_kv_cache_init(opd_kv_cache *c, const opd_config *cfg, int B, int S);
void opd_kv_cache_free(opd_kv_cache *c);
/* Positions t0..t0+n-1 of every sequence of layer l: k, v (B, n, NKV*hd). */
void opd_kv_cache_write(opd_kv_cache *c, int l, const float *k, const float *v, int n, int t0);
size_t opd_kv_cache_bytes(const opd_kv_cache *c);

/* Per-call scratch of the decode step: B rows (one token per sequence), or
 * B * n rows for a prefill of n positions of B sequences. */
typedef struct {
    int B, S;                /* B: rows; S: positions of the cache it serves */
    float *x, *xn, *q, *k, *v, *atty, *tmp, *gate, *up, *att; /* sized for B rows */
    float *rstd;             /* (B) RMSNorm statistics, unused by decode */
    int *pos;                /* (B) RoPE position of each sequence's token */
} opd_decode_scratch;
int opd_decode_scratch_init(opd_decode_scratch *s, const opd_config *cfg,
                            int B, int S);
void opd_decode_scratch_free(opd_decode_scratch *s);

/* Decode one position t for every sequence: tokens (B) are the tokens at
 * position t, written into the cache, attention over cache positions
 * pad[b]..t. logits (B, V). Costs O(t) attention, one token of matmuls. */
void opd_model_decode_step(const opd_model *m, opd_kv_cache *c,
                           opd_decode_scratch *s, const int *tokens,
                           const int *pad, int t, float *logits);
/* Prefill: positions 0..n-1 of every sequence in one pass, tokens (B, n)
 * (B = c->B): the cache ends as after n decode steps (equal up to rounding:
 * the matmuls see B*n rows at once), logits (B, V) of position n-1. s needs
 * B * n rows (opd_decode_scratch_init(s, cfg, B * n, S)). */
int opd_model_prefill(const opd_model *m, opd_kv_cache *c, opd_decode_scratch *s,
                      const int *tokens, const int *pad, int n, float *logits);

/* ---------------------------------------------------------------- rollouts */
typedef struct {
    int B, P, H;      /* batch, padded prompt length, horizon H_k */
    int *tokens;      /* (B, P + H) left-padded prompt, then generated tokens
                         (pad_id after a sequence ends)                      */
    int *pad;         /* (B) leading pad tokens of each prompt               */
    float *mask;      /* (B, H) 1 for tokens in the loss (EOS kept)          */
    float *logprobs;  /* (B, H) sampler log-probs (temperature 1)            */
    int *length;      /* (B) generated tokens, EOS included                  */
    int *truncated;   /* (B) 1 if cut by the horizon before EOS              */
    double peak_cache_bytes;
} opd_rollout;

typedef struct {
    int eos_id, pad_id;   /* eos_id < 0: no EOS, every rollout runs to H */
    opd_sampler_config sampler;
    uint64_t seed;
    uint32_t step;        /* training step k, part of the RNG key */
} opd_rollout_config;

/* prompts: (B, P) left-padded, pad (B). seq_ids (B): stable ids used in the RNG
 * key so a sequence's tokens don't depend on its place in the batch.
 * Generates at most H tokens per sequence; the KV cache holds P + H. */
int opd_rollout_sample(const opd_model *student, const int *prompts,
                       const int *pad, const uint32_t *seq_ids, int B, int P,
                       int H, const opd_rollout_config *rc, opd_rollout *out);
void opd_rollout_free(opd_rollout *r);
/* The input checks of opd_rollout_sample alone (shapes, token ids, sampler):
 * 0, or -1 with the message set. */
int opd_rollout_check(const opd_config *cfg, const int *prompts, const int *pad,
                      int B, int P, int H, const opd_rollout_config *rc);

/* ------------------------------------------------------ distillation losses */
typedef enum {
    OPD_LOSS_RKL_SAMPLED = 0, /* token-level sampled reverse KL as a reward (paper, Tinker) */
    OPD_LOSS_RKL_FULL,        /* full-vocabulary reverse KL                             */
    OPD_LOSS_FKL,             /* forward KL                                             */
    OPD_LOSS_JSD,             /* generalized JSD(beta): beta=0 forward, beta=1 reverse  */
    OPD_LOSS_RKL_TOPK,        /* reverse KL on the teacher's top-k tokens, renormalised */
    OPD_LOSS_RKL_SEQ          /* sequence-level: advantage = discounted sum of rewards  */
} opd_loss_kind;
typedef enum { OPD_REDUCE_TOKEN_MEAN = 0, OPD_REDUCE_SEQ_MEAN = 1 } opd_reduction;

typedef struct {
    opd_loss_kind kind;
    opd_reduction reduction;
    float reward_clamp;  /* clamp r_t to [-c, c]; <= 0 disables */
    float beta;          /* JSD */
    int topk;            /* teacher top-k */
    float gamma;         /* sequence-level discount (0 == token level) */
} opd_loss_config;

void opd_loss_config_default(opd_loss_config *c);
const char *opd_loss_name(opd_loss_kind k);
int opd_loss_parse(const char *name, opd_loss_kind *k);
/* s_logits, t_logits (B, H, V): student and teacher logits predicting the H
 * rollout tokens y (B, H); mask (B, H); sampler_lp (B, H) or NULL (importance
 * weight 1). Writes dlogits (B, H, V) = d loss / d s_logits (overwrites),
 * per_token (B, H) the loss term of each token (NULL ok) and rkl (B, H) the
 * exact full-vocabulary reverse KL per token for logging (NULL ok).
 * Returns the reduced loss. */
float opd_distill_loss(const opd_loss_config *c, const float *s_logits,
                       const float *t_logits, const int *y, const float *mask,
                       const float *sampler_lp, int B, int H, int V,
                       float *dlogits, float *per_token, float *rkl);

/* -------------------------------------------------------- horizon schedules */
typedef enum {
    OPD_SCHED_FULL = 0,       /* OPD:  H_k = T                                   */
    OPD_SCHED_PROGRESSIVE,    /* POPD: H_k = min(T, H0 + dH * floor(k / dk))     */
    OPD_SCHED_LINEAR,         /* min(T, H0 + (T - H0) * k / total_steps), ceil   */
    OPD_SCHED_GEOMETRIC,      /* min(T, ceil(H0 * growth^floor(k / dk)))         */
    OPD_SCHED_TRUNCATED       /* TOPD: H_k = ceil(rho * T)                       */
} opd_schedule_kind;

typedef struct {
    opd_schedule_kind kind;
    int max_new_tokens; /* T, the full horizon: the most tokens a rollout generates */
    int H0, dH, dk;     /* progressive / geometric start, increment, period */
    float rho;          /* truncated fraction */
    float growth;       /* geometric factor */
    long total_steps;   /* linear */
} opd_schedule;

void opd_schedule_default(opd_schedule *s, opd_schedule_kind kind, int max_new_tokens);
int opd_schedule_validate(const opd_schedule *s);
int opd_schedule_horizon(const opd_schedule *s, long k);
const char *opd_schedule_name(opd_schedule_kind k);
int opd_schedule_parse(const char *name, opd_schedule_kind *k);

/* ------------------------------------------------------------ one OPD step */
/* KL by rollout position is logged in this many equal buckets of the full
 * horizon T, so a truncated run shows which part of T it trained on. */
#define OPD_KL_BUCKETS 4

typedef struct {
    opd_schedule schedule;       /* H_k */
    opd_loss_config loss;
    opd_rollout_config rollout;  /* sampler, eos/pad ids, seed (step set per call) */
    float teacher_temperature;   /* the teacher scores at temperature 1 (ref/SPEC.md section 4) */
} opd_distill_config;

typedef struct {
    long step;                   /* k */
    int horizon;                 /* H_k */
    int trained_len;             /* longest rollout in the batch (<= H_k) */
    long tokens;                 /* generated tokens in the loss mask */
    int truncated;               /* sequences cut by the horizon */
    float loss;                  /* reduced loss (see loss.reduction) */
    float mean_rkl;              /* exact reverse KL, token mean over the mask */
    float kl_bucket[OPD_KL_BUCKETS];  /* mean reverse KL by position bucket of T (NaN: empty) */
    float grad_norm, lr;
    double sec_rollout, sec_teacher, sec_student, sec_optim;
    long peak_rss_kb;
} opd_step_stats;

/* The rollout compacted to its trained length: the step trains on the
 * trained_len <= H_k positions up to the longest rollout of the batch, not on
 * H_k (when every sequence stopped at EOS early, the rest is all masked).
 * S = P + trained_len - 1 tokens [x; y_1 .. y_{trained_len - 1}] are scored
 * by both models; rows P-1 .. S-1 of their logits predict y. */
typedef struct {
    int B, P, horizon, trained_len, S;
    int *pad;             /* (B)              left padding of each prompt   */
    int *tokens;          /* (B, S)           [x; y] scored by both models */
    int *y;               /* (B, trained_len) rollout tokens                */
    float *mask;          /* (B, trained_len) 1 where y is in the loss      */
    float *sampler_lp;    /* (B, trained_len) sampler log-probs of y        */
    size_t cap_b, cap_bs, cap_bh;
} opd_step_batch;

/* Work buffers of the CPU step, grown on demand and kept across steps. */
typedef struct {
    opd_rollout roll;
    opd_step_batch batch;
    float *s_logits, *t_logits, *dlogits_h;   /* (B, trained_len, V) */
    float *dlogits;       /* (B, S, V) dlogits_h scattered back for the backward */
    float *per_token, *rkl;                   /* (B, trained_len) */
    size_t cap_bh, cap_bs;
} opd_step_work;

void opd_distill_config_default(opd_distill_config *c, int max_new_tokens);
void opd_step_work_free(opd_step_work *w);
/* One step of ref/SPEC.md section 6 on a batch of B left-padded prompts (B, P):
 * roll out the student to H_k, score [x; y] with one teacher forward, student
 * forward + backward of the loss on the rollout tokens, clip, AdamW.
 * seq_ids (B) key the sampler. Only the H_k (or fewer, if every sequence hit
 * EOS earlier) positions are generated, scored and trained on. */
int opd_distill_step(opd_model *student, opd_model *teacher, opd_adamw *opt,
                     const opd_distill_config *c, const int *prompts,
                     const int *pad, const uint32_t *seq_ids, int B, int P,
                     long k, opd_step_work *w, opd_step_stats *st);

/* The stages of opd_distill_step, in its order (ref/opd_step.c). The CPU
 * step, the CUDA step (gpu/step_cuda.c) and the golden writer
 * (golden/write.c) call the same ones; only the rollout, the forwards, the
 * backward and the update have a device form of their own. */
/* 1. H_k of step k; -1 if P + H_k does not fit either model. */
int opd_step_horizon(const opd_distill_config *c, long k, int P,
                     const opd_config *student, const opd_config *teacher, int *horizon);
/* 2. the student's rollout to H_k, keyed by step k (CPU form). */
int opd_step_rollout(const opd_model *student, const opd_distill_config *c, long k,
                     const int *prompts, const int *pad, const uint32_t *seq_ids,
                     int B, int P, int horizon, opd_rollout *r);
/* 3. compaction of the rollout's (B, H_k) arrays into the (B, trained_len)
 * views of sb; fills st->tokens, truncated, trained_len. -1 if the rollout
 * generated nothing. */
int opd_step_compact(const opd_rollout *r, opd_step_batch *sb, opd_step_stats *st);
void opd_step_batch_free(opd_step_batch *sb);
/* Rows P-1 .. S-1 of logits (B, S, V) into dst (B, trained_len, V), and back
 * (zeros elsewhere), the CPU forms of the views' row mapping. */
void opd_step_gather_logits(float *dst, const float *logits, const opd_step_batch *sb, int V);
void opd_step_scatter_dlogits(float *dlogits, const float *dh, const opd_step_batch *sb, int V);
/* 4. one teacher forward over sb->tokens: t_logits (B, trained_len, V),
 * divided by the teacher temperature unless it is 1. */
void opd_step_teacher_score(opd_model *teacher, const opd_step_batch *sb,
                            float temperature, float *t_logits);
/* 5. the student forward over the same tokens: s_logits (B, trained_len, V);
 * student->acts keeps every layer for the backward. */
void opd_step_student_forward(opd_model *student, const opd_step_batch *sb, float *s_logits);
/* 6. the loss on the views, its dlogits scattered to (B, S, V), and the
 * student backward into freshly zeroed gradients. w->dlogits_h, per_token and
 * rkl hold the loss's outputs afterwards. Returns the loss. */
float opd_step_loss_backward(opd_model *student, const opd_loss_config *lc,
                             const opd_step_batch *sb, opd_step_work *w);
/* 7. statistics: reverse KL token mean, and by position bucket of the full
 * horizon T = max_new_tokens, from rkl (B, trained_len). */
void opd_step_kl_stats(const opd_step_batch *sb, const float *rkl, int max_new_tokens,
                       opd_step_stats *st);
/* 8. clip + AdamW; a non-finite loss or gradient is refused before it
 * reaches the weights, so the last checkpoint stays usable. */
int opd_step_update(opd_model *student, opd_adamw *opt, long k, opd_step_stats *st);

/* One supervised (SFT) step: next-token cross-entropy on sequences (B, S),
 * left-padded by pad (B), trained where loss_mask (B, S) is 1 (loss_mask[t]
 * marks the prediction of tokens[t+1] from position t; the last column is
 * ignored). Clip + AdamW. Returns 0, or -1 on a non-finite loss/gradient
 * (weights untouched then). */
int opd_sft_step(opd_model *m, opd_adamw *opt, const int *tokens, const int *pad,
                 const float *loss_mask, int B, int S, float *loss, float *grad_norm);

#ifdef __cplusplus
}
#endif
#endif /* OPD_H */
