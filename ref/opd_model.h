/* opd_model.h — the model: config, flat parameters, activations, forward and backward, the optimizer.
 * Part of the public API; include "opd.h", which includes every part in
 * order (a part relies on the ones before it). */
#ifndef OPD_API_MODEL_H
#define OPD_API_MODEL_H

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif
#endif /* OPD_API_MODEL_H */
