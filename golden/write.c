/* write.c — the golden tensors' writer (ref/SPEC.md section 8).
 *
 * The writer runs a fixed tiny teacher/student pair through one OPD step
 * (ref/SPEC.md section 6), calling the step's own stage functions
 * (ref/opd_step.c) one at a time, and keeps
 * every intermediate as a named tensor; then each layer function alone on
 * fixed random inputs. The manifest gives every tensor a tolerance for a
 * CANDIDATE implementation, by class (see tol_classes below and README.md).
 * The checker (check.c) compares two such files tensor by tensor. */
#include "golden.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------ tolerances */
/* max_abs = abs_fixed + abs_scaled * max|ref| of the tensor: errors are
 * judged against the tensor's own scale, because an entry near zero has no
 * meaningful relative error after a reduction. */
typedef enum { T_EXACT, T_ELEM, T_MATMUL, T_SOFTMAX, T_MODEL, T_GRAD, T_ADAM, T_COUNT } tol_class;

static const struct {
    const char *name;
    double abs_fixed, abs_scaled, max_rel, max_ulp, nmse;
    const char *why;
} tol_classes[T_COUNT] = {
    [T_EXACT] = {"exact", 0, 0, 0, 0, 0,
                 "integers, sampled tokens, masks, Philox words, horizons and the fixed inputs: "
                 "any difference is a bug, not rounding"},
    [T_ELEM] = {"elementwise", 0, 1e-6, 1e-5, 16, 1e-11,
                "a few roundings per element (exp, 1/sqrt, sin/cos of the RoPE angle); the reference's "
                "own functions are within 2 ulp of correctly rounded, a GPU's libm may differ by a few "
                "ULP, fast-math intrinsics (__expf, __sinf) do not fit"},
    [T_MATMUL] = {"matmul", 0, 1e-5, 1e-4, 64, 1e-10,
                  "sums of K products (K <= 48 here): another summation order (blocking, "
                  "split-K, FMA) moves a result by ~sqrt(K) eps times the size of its terms"},
    [T_SOFTMAX] = {"softmax", 0, 1e-5, 1e-4, 64, 1e-10,
                   "exp of shifted logits and a sum over the row (attention probabilities, "
                   "log-probs, losses and their per-token terms, dlogits)"},
    [T_MODEL] = {"model", 0, 5e-5, 1e-3, 512, 1e-8,
                 "activations through the whole model: matmul and softmax errors compound "
                 "over layers; the candidate is fed the golden weights and tokens"},
    [T_GRAD] = {"gradient", 0, 1e-4, 1e-3, 4096, 1e-7,
                "gradients reduce over B*T rows and flow back through every layer; judged "
                "against the tensor's largest entry (entries near zero have no meaningful "
                "relative error); AdamW moments are gradients scaled"},
    [T_ADAM] = {"adamw-update", 2.02e-3, 0, 1e-5, 64, 1e-6,
                "the first AdamW step moves each weight by ~lr * sign(g): a gradient entry "
                "within rounding of 0 may flip its step, so one element may be off by 2 lr "
                "(lr = 1e-3); the moments (gradient class) judge the update's inputs"},
};

/* ---------------------------------------------------------------- writer */
typedef struct {
    opd_safetensors st;
    const char *file;     /* basename, for the manifest */
    json_t *entries;      /* manifest rows (borrowed) */
    int err;
} golden_writer;

static void put(golden_writer *w, tol_class cls, const char *fn, opd_dtype dt,
                const void *data, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

static void put(golden_writer *w, tol_class cls, const char *fn, opd_dtype dt,
                const void *data, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (w->err) return;
    if (opd_st_add(&w->st, name, dt, ndim, shape, data) != 0) { w->err = 1; return; }
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (dt != OPD_F32) cls = T_EXACT;   /* integer tensors are exact */
    double scale = 0;
    if (dt == OPD_F32)
        for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(((const float *)data)[i]));
    if (scale == 0) scale = 1;
    json_t *shp = json_array();
    for (int i = 0; i < ndim; i++) json_array_append_new(shp, json_integer(shape[i]));
    /* rounded to 3 digits so the manifest reads well; the fixed part is exact */
    double max_abs = tol_classes[cls].abs_fixed + tol_classes[cls].abs_scaled * scale;
    if (max_abs > 0) {
        double p = pow(10.0, floor(log10(max_abs)) - 2);
        max_abs = ceil(max_abs / p) * p;
    }
    json_t *e = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:f, s:f, s:f, s:f}",
                          "file", w->file, "name", name, "dtype", opd_dtype_name(dt),
                          "shape", shp, "function", fn, "class", tol_classes[cls].name,
                          "max_abs", max_abs, "max_rel", tol_classes[cls].max_rel,
                          "max_ulp", tol_classes[cls].max_ulp, "nmse", tol_classes[cls].nmse);
    json_array_append_new(w->entries, e);
}

#define SHAPE(...) (sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static void put_f32(golden_writer *w, tol_class cls, const char *fn, const float *x,
                    int ndim, const int64_t *shape, const char *name) {
    put(w, cls, fn, OPD_F32, x, ndim, shape, "%s", name);
}

/* Fixed random inputs: N(0, scale^2), keyed by (tag, element). */
static void randn(float *x, size_t n, uint32_t tag, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * opd_normal(2024, tag, 0, (uint32_t)i);
}

static void cfg_meta(opd_safetensors *st, const char *who, const opd_config *c) {
    char key[64], val[64];
#define META_INT(f) do { snprintf(key, sizeof key, "%s.%s", who, #f); \
        snprintf(val, sizeof val, "%d", c->f); opd_st_set_meta(st, key, val); } while (0)
#define META_FLT(f) do { snprintf(key, sizeof key, "%s.%s", who, #f); \
        snprintf(val, sizeof val, "%.9g", c->f); opd_st_set_meta(st, key, val); } while (0)
    META_INT(vocab_size); META_INT(d_model); META_INT(n_layers); META_INT(n_heads);
    META_INT(n_kv_heads); META_INT(d_ff); META_INT(max_seq_len); META_INT(qkv_bias);
    META_INT(tie_embeddings); META_FLT(rope_theta); META_FLT(rms_eps);
#undef META_INT
#undef META_FLT
}

/* Every named parameter tensor of a flat buffer laid out for cfg. */
static void put_params(golden_writer *w, tol_class cls, const char *fn,
                       const opd_config *cfg, const float *mem, const char *prefix) {
    int nt = opd_param_tensor_count(cfg);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(cfg, ts);
    for (int i = 0; i < nt; i++) {
        int64_t shape[2] = {ts[i].shape[0], ts[i].shape[1]};
        put(w, cls, fn, OPD_F32, mem + ts[i].offset, ts[i].ndim, shape, "%s%s", prefix, ts[i].name);
    }
    free(ts);
}

/* Every activation of the last forward of m (opd_acts), per layer. The
 * (L, B, S, X) buffers are packed with the forward's own (B, S). */
static void put_acts(golden_writer *w, const char *who, const opd_model *m) {
    const opd_config *c = &m->cfg;
    const opd_acts *a = &m->acts;
    int64_t B = m->B, S = m->S, N = B * S;
    int64_t C = c->d_model, V = c->vocab_size, F = c->d_ff, NH = c->n_heads;
    int64_t hd = C / NH, qd = NH * hd, kvd = c->n_kv_heads * hd;
    const char *fn = "opd_model_forward";
    char name[160];
    snprintf(name, sizeof name, "%s.encoded", who);
    put_f32(w, T_EXACT, "encoder_forward", a->encoded, SHAPE(B, S, C), name);
    for (int l = 0; l < c->n_layers; l++) {
        const struct { const char *n; const float *base; int64_t width; const char *f; } rows[] = {
            {"ln1", a->ln1, C, "rmsnorm_forward"},
            {"ln1_rstd", a->ln1_rstd, 1, "rmsnorm_forward"},
            {"q", a->q, qd, "matmul_forward + rope_forward"},
            {"k", a->k, kvd, "matmul_forward + rope_forward"},
            {"v", a->v, kvd, "matmul_forward"},
            {"atty", a->atty, qd, "attention_forward"},
            {"res_mid", a->res_mid, C, "matmul_forward + residual"},
            {"ln2", a->ln2, C, "rmsnorm_forward"},
            {"ln2_rstd", a->ln2_rstd, 1, "rmsnorm_forward"},
            {"gate", a->gate, F, "matmul_forward"},
            {"up", a->up, F, "matmul_forward"},
            {"swiglu", a->swiglu, F, "swiglu_forward"},
            {"res_out", a->res_out, C, "matmul_forward + residual"},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            char f[96];
            snprintf(f, sizeof f, "%s: %s", fn, rows[i].f);
            snprintf(name, sizeof name, "%s.layers.%d.%s", who, l, rows[i].n);
            const float *x = rows[i].base + (size_t)l * N * rows[i].width;
            if (rows[i].width == 1) put_f32(w, T_MODEL, f, x, SHAPE(B, S), name);
            else put_f32(w, T_MODEL, f, x, SHAPE(B, S, rows[i].width), name);
        }
        snprintf(name, sizeof name, "%s.layers.%d.att", who, l);
        put_f32(w, T_MODEL, "opd_model_forward: attention_forward (softmax probabilities)",
                a->att + (size_t)l * B * NH * S * S, SHAPE(B, NH, S, S), name);
    }
    snprintf(name, sizeof name, "%s.lnf", who);
    put_f32(w, T_MODEL, "opd_model_forward: rmsnorm_forward", a->lnf, SHAPE(B, S, C), name);
    snprintf(name, sizeof name, "%s.lnf_rstd", who);
    put_f32(w, T_MODEL, "opd_model_forward: rmsnorm_forward", a->lnf_rstd, SHAPE(B, S), name);
    snprintf(name, sizeof name, "%s.logits", who);
    put_f32(w, T_MODEL, "opd_model_forward: matmul_forward (lm_head)", a->logits, SHAPE(B, S, V), name);
    put(w, T_EXACT, "opd_model_forward (RoPE positions)", OPD_I32, a->pos, SHAPE(B, S), "%s.pos", who);
}

/* Larger weights than the training init (std 0.02 gives near-uniform
 * softmaxes, where a wrong kernel can hide), and norm scales / biases away
 * from 1 / 0 so that their code paths matter. Keyed, so deterministic. */
static void spread_weights(opd_model *m, uint64_t seed, float factor) {
    int nt = opd_param_tensor_count(&m->cfg);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(&m->cfg, ts);
    for (int i = 0; i < nt; i++) {
        float *x = m->params_mem + ts[i].offset;
        for (size_t j = 0; j < ts[i].numel; j++) {
            float z = opd_normal(seed, 0x73707264u /* "sprd" */, (uint32_t)i, (uint32_t)j);
            if (strstr(ts[i].name, "norm")) x[j] = 1.0f + 0.1f * z;
            else if (ts[i].ndim == 1) x[j] = 0.1f * z;
            else x[j] *= factor;
        }
    }
    free(ts);
}

/* The golden pair: GQA, q/k/v bias, untied heads, so every path runs. At a
 * production shape (prod) both are that config, with their own seeds. */
static void golden_configs(opd_config *s, opd_config *t, const opd_config *prod) {
    if (prod) { *s = *t = *prod; return; }
    opd_config_default(s);
    s->vocab_size = 16; s->d_model = 16; s->n_layers = 2; s->n_heads = 4;
    s->n_kv_heads = 2; s->d_ff = 32; s->max_seq_len = 24;
    s->qkv_bias = 1; s->tie_embeddings = 0;
    *t = *s;
    t->d_model = 24; t->d_ff = 48;
}

enum { G_B = 3, G_P = 6, G_H = 8, G_EOS = 2, G_PAD = 0, G_SCHED_T = 32, G_SCHED_N = 64 };
#define G_ROLLOUT_SEED 1234u
#define G_STUDENT_SEED 11u
#define G_TEACHER_SEED 22u

/* prod: NULL for the tiny pair, else a production shape (see
 * opd_golden_write_shape): a smaller batch, and of the six losses only the
 * default one with its gradient (the AdamW update and moments are
 * elementwise in the gradient, checked by the tiny files; at a real vocab
 * each parameter-sized tensor is GBs). */
static int write_step(const char *dir, json_t *entries, const opd_config *prod) {
    golden_writer w = {.file = OPD_GOLDEN_STEP_FILE, .entries = entries};
    opd_st_init(&w.st);
    opd_config sc, tc;
    golden_configs(&sc, &tc, prod);
    opd_model s, t;
    if (opd_model_init(&s, &sc) != 0) return -1;
    if (opd_model_init(&t, &tc) != 0) { opd_model_free(&s); return -1; }
    /* x8 at the tiny width; at width C the same activation scale (the init's
     * std times sqrt(C)) takes 8 sqrt(16 / C) */
    float spread = prod ? 8.0f * sqrtf(16.0f / (float)sc.d_model) : 8.0f;
    opd_model_init_random(&s, G_STUDENT_SEED);
    spread_weights(&s, G_STUDENT_SEED, spread);
    opd_model_init_random(&t, G_TEACHER_SEED);
    spread_weights(&t, G_TEACHER_SEED, spread);
    const int B = prod ? 2 : G_B, P = G_P, H = prod ? 4 : G_H, V = sc.vocab_size;
    cfg_meta(&w.st, "student", &sc);
    cfg_meta(&w.st, "teacher", &tc);
    char val[64];
    snprintf(val, sizeof val, "%u", G_ROLLOUT_SEED); opd_st_set_meta(&w.st, "step.seed", val);
    snprintf(val, sizeof val, "%d", 0); opd_st_set_meta(&w.st, "step.k", val);
    snprintf(val, sizeof val, "%d", H); opd_st_set_meta(&w.st, "step.horizon", val);
    snprintf(val, sizeof val, "%d", G_EOS); opd_st_set_meta(&w.st, "step.eos_id", val);
    snprintf(val, sizeof val, "%d", G_PAD); opd_st_set_meta(&w.st, "step.pad_id", val);
    opd_st_set_meta(&w.st, "step.sampler", "temperature 1, top_k 0, top_p 1");
    opd_st_set_meta(&w.st, "step.optimizer", "AdamW lr 1e-3 betas (0.9, 0.95) eps 1e-8 wd 0.01 clip 1.0");
    put_params(&w, T_EXACT, "opd_model_init_random + spread (golden/write.c)", &sc, s.params_mem, "student.");
    put_params(&w, T_EXACT, "opd_model_init_random + spread (golden/write.c)", &tc, t.params_mem, "teacher.");

    /* left-padded prompts of lengths 6, 4, 2; real tokens avoid pad and EOS */
    int prompts[G_B * G_P], pad[G_B] = {0, 2, 4};
    uint32_t seq_ids[G_B] = {100, 101, 102};
    int32_t seq_ids_i[G_B] = {100, 101, 102};
    for (int b = 0; b < B; b++)
        for (int i = 0; i < P; i++)
            prompts[b * P + i] = i < pad[b] ? G_PAD : 3 + (int)(opd_uniform(7, 1, b, i, 0) * (V - 3));
    put(&w, T_EXACT, "fixed input", OPD_I32, prompts, SHAPE(B, P), "input.prompts");
    put(&w, T_EXACT, "fixed input", OPD_I32, pad, SHAPE(B), "input.pad");
    put(&w, T_EXACT, "fixed input", OPD_I32, seq_ids_i, SHAPE(B), "input.seq_ids");

    /* The step's stages are opd_distill_step's own (ref/opd_step.c), called
     * one at a time so every intermediate can be written: k = 0, schedule
     * full with T = H, each loss from the same weights. */
    opd_distill_config dc;
    opd_distill_config_default(&dc, H);
    dc.rollout.eos_id = G_EOS;
    dc.rollout.pad_id = G_PAD;
    dc.rollout.seed = G_ROLLOUT_SEED;
    opd_step_work sw;
    memset(&sw, 0, sizeof sw);
    opd_step_stats st;
    memset(&st, 0, sizeof st);
    opd_step_batch *sb = &sw.batch;
    opd_rollout *r = &sw.roll;
    float *w0 = NULL, *row = NULL, *t_lp = NULL, *s_lp = NULL;
    int rc_ = -1, Hk = 0;

    /* 1. the horizon; 2. the student's rollout to it */
    if (opd_step_horizon(&dc, 0, P, &sc, &tc, &Hk) != 0 ||
        opd_step_rollout(&s, &dc, 0, prompts, pad, seq_ids, B, P, Hk, r) != 0)
        goto done;
    const char *rfn = "opd_rollout_sample (KV-cached opd_model_decode_step + opd_sample_token)";
    put(&w, T_EXACT, rfn, OPD_I32, r->tokens, SHAPE(B, P + H), "rollout.tokens");
    put(&w, T_EXACT, rfn, OPD_F32, r->mask, SHAPE(B, H), "rollout.mask");
    put(&w, T_SOFTMAX, rfn, OPD_F32, r->logprobs, SHAPE(B, H), "rollout.sampler_logprobs");
    put(&w, T_EXACT, rfn, OPD_I32, r->length, SHAPE(B), "rollout.length");
    put(&w, T_EXACT, rfn, OPD_I32, r->truncated, SHAPE(B), "rollout.truncated");

    /* 3. the (B, trained_len) views */
    if (opd_step_compact(r, sb, &st) != 0) goto done;
    const int n_pos = sb->trained_len, S = sb->S;
    put(&w, T_EXACT, "opd_step_compact: [x; y_1..y_{trained_len-1}] scored by both models", OPD_I32,
        sb->tokens, SHAPE(B, S), "step.tokens");
    put(&w, T_EXACT, "opd_step_compact: rollout tokens y", OPD_I32, sb->y, SHAPE(B, n_pos), "step.y");
    put(&w, T_EXACT, "opd_step_compact: rollout mask", OPD_F32, sb->mask, SHAPE(B, n_pos), "step.mask");

    /* 4. the teacher's scores; 5. the student forward, on the same tokens */
    sw.t_logits = opd_malloc(sizeof(float) * B * n_pos * V);
    sw.s_logits = opd_malloc(sizeof(float) * B * n_pos * V);
    sw.dlogits_h = opd_malloc(sizeof(float) * B * n_pos * V);
    sw.dlogits = opd_malloc(sizeof(float) * B * S * V);
    sw.per_token = opd_malloc(sizeof(float) * B * n_pos);
    sw.rkl = opd_malloc(sizeof(float) * B * n_pos);
    sw.cap_bh = (size_t)B * n_pos;
    sw.cap_bs = (size_t)B * S;
    opd_step_teacher_score(&t, sb, dc.teacher_temperature, sw.t_logits);
    /* the teacher's activations: the stage keeps one layer of them, so one
     * full forward of the same tokens (bit-identical logits) records them */
    opd_model_forward(&t, sb->tokens, sb->pad, B, S);
    put_acts(&w, "teacher", &t);
    opd_step_student_forward(&s, sb, sw.s_logits);
    put_acts(&w, "student", &s);
    /* per-token log-probs of y under both models (temperature 1) */
    row = opd_malloc(sizeof(float) * V);
    t_lp = opd_malloc(sizeof(float) * B * n_pos);
    s_lp = opd_malloc(sizeof(float) * B * n_pos);
    for (int i = 0; i < B * n_pos; i++) {
        opd_log_softmax(row, sw.t_logits + (size_t)i * V, V);
        t_lp[i] = row[sb->y[i]];
        opd_log_softmax(row, sw.s_logits + (size_t)i * V, V);
        s_lp[i] = row[sb->y[i]];
    }
    put(&w, T_SOFTMAX, "opd_log_softmax(teacher logits)[y]", OPD_F32, t_lp, SHAPE(B, n_pos), "step.teacher_logprobs");
    put(&w, T_SOFTMAX, "opd_log_softmax(student logits)[y]", OPD_F32, s_lp, SHAPE(B, n_pos), "step.student_logprobs");

    /* 6. each loss and the backward; 8. clip + AdamW, from the same weights
     * (one loss at a production shape: no copy) */
    w0 = prod ? NULL : opd_malloc(sizeof(float) * s.num_params);
    if (w0) memcpy(w0, s.params_mem, sizeof(float) * s.num_params);
    int last_loss = prod ? OPD_LOSS_RKL_SAMPLED : OPD_LOSS_RKL_SEQ;
    for (int kind = OPD_LOSS_RKL_SAMPLED; kind <= last_loss; kind++) {
        opd_loss_config lc;
        opd_loss_config_default(&lc);
        lc.kind = (opd_loss_kind)kind;
        lc.beta = 0.5f;
        lc.topk = 4;
        lc.gamma = kind == OPD_LOSS_RKL_SEQ ? 0.9f : 0.0f;
        const char *ln = opd_loss_name(lc.kind);
        char f[160], pre[96];
        snprintf(f, sizeof f, "opd_distill_loss(%s, token mean, beta 0.5, topk 4, gamma %.1f)", ln, lc.gamma);
        float loss = opd_step_loss_backward(&s, &lc, sb, &sw);
        put(&w, T_SOFTMAX, f, OPD_F32, &loss, SHAPE(1), "loss.%s.value", ln);
        put(&w, T_SOFTMAX, f, OPD_F32, sw.per_token, SHAPE(B, n_pos), "loss.%s.per_token", ln);
        put(&w, T_SOFTMAX, f, OPD_F32, sw.rkl, SHAPE(B, n_pos), "loss.%s.rkl", ln);
        put(&w, T_SOFTMAX, f, OPD_F32, sw.dlogits_h, SHAPE(B, n_pos, V), "loss.%s.dlogits", ln);
        snprintf(pre, sizeof pre, "loss.%s.student.grad.", ln);
        put_params(&w, T_GRAD, "opd_model_backward", &sc, s.grads_mem, pre);
        if (prod) {
            float gnorm = opd_grad_norm(s.grads_mem, s.num_params);
            put(&w, T_SOFTMAX, "opd_grad_norm (before clipping)", OPD_F32, &gnorm, SHAPE(1), "loss.%s.grad_norm", ln);
            continue;
        }
        opd_optim_config oc;
        opd_optim_config_default(&oc);
        opd_adamw opt;
        opd_adamw_init(&opt, &oc, s.num_params);
        st.loss = loss;
        if (opd_step_update(&s, &opt, 0, &st) != 0) { opd_adamw_free(&opt); goto done; }
        put(&w, T_SOFTMAX, "opd_grad_norm (before clipping)", OPD_F32, &st.grad_norm, SHAPE(1), "loss.%s.grad_norm", ln);
        snprintf(pre, sizeof pre, "loss.%s.student.updated.", ln);
        put_params(&w, T_ADAM, "opd_adamw_update (clip 1.0, lr 1e-3, wd 0.01)", &sc, s.params_mem, pre);
        snprintf(pre, sizeof pre, "loss.%s.adamw.m.", ln);
        put_params(&w, T_GRAD, "opd_adamw_update: first moment", &sc, opt.m, pre);
        snprintf(pre, sizeof pre, "loss.%s.adamw.v.", ln);
        put_params(&w, T_GRAD, "opd_adamw_update: second moment", &sc, opt.v, pre);
        opd_adamw_free(&opt);
        memcpy(s.params_mem, w0, sizeof(float) * s.num_params);
    }

    /* horizons H_k of each schedule for its first steps */
    for (int kind = OPD_SCHED_FULL; kind <= OPD_SCHED_TRUNCATED; kind++) {
        opd_schedule sch;
        opd_schedule_default(&sch, (opd_schedule_kind)kind, G_SCHED_T);
        int32_t hk[G_SCHED_N];
        for (int k = 0; k < G_SCHED_N; k++) hk[k] = opd_schedule_horizon(&sch, k);
        char f[160];
        snprintf(f, sizeof f, "opd_schedule_horizon(opd_schedule_default(%s, T=%d), k), k = 0..%d",
                 opd_schedule_name(sch.kind), G_SCHED_T, G_SCHED_N - 1);
        put(&w, T_EXACT, f, OPD_I32, hk, SHAPE(G_SCHED_N), "schedule.%s", opd_schedule_name(sch.kind));
    }

    if (!w.err) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, w.file);
        rc_ = opd_st_write(&w.st, path);
    }
done:
    free(row); free(t_lp); free(s_lp); free(w0);
    opd_step_work_free(&sw);
    opd_model_free(&s);
    opd_model_free(&t);
    opd_st_free(&w.st);
    return rc_;
}

/* One linear layer, forward and backward: N rows, K = C, OC outputs. */
static void layer_matmul(golden_writer *w, const char *pre, int N, int C, int OC, uint32_t tag) {
    float *inp = opd_calloc((size_t)N * C, sizeof(float)), *wt = opd_calloc((size_t)OC * C, sizeof(float));
    float *bias = opd_calloc(OC, sizeof(float)), *out = opd_calloc((size_t)N * OC, sizeof(float));
    float *dout = opd_calloc((size_t)N * OC, sizeof(float)), *dinp = opd_calloc((size_t)N * C, sizeof(float));
    float *dw = opd_calloc((size_t)OC * C, sizeof(float)), *db = opd_calloc(OC, sizeof(float));
    randn(inp, (size_t)N * C, tag, 1.0f); randn(wt, (size_t)OC * C, tag + 1, 0.2f); randn(bias, OC, tag + 2, 0.1f);
    randn(dout, (size_t)N * OC, tag + 3, 1.0f);
    matmul_forward(out, inp, wt, bias, N, C, OC);
    matmul_backward(dinp, dw, db, dout, inp, wt, N, C, OC);
    char nm[64];
#define NM(x) (snprintf(nm, sizeof nm, "%s.%s", pre, x), nm)
    put_f32(w, T_EXACT, "input", inp, SHAPE(N, C), NM("inp"));
    put_f32(w, T_EXACT, "input", wt, SHAPE(OC, C), NM("weight"));
    put_f32(w, T_EXACT, "input", bias, SHAPE(OC), NM("bias"));
    put_f32(w, T_EXACT, "input", dout, SHAPE(N, OC), NM("dout"));
    put_f32(w, T_MATMUL, "matmul_forward: out = inp weight^T + bias", out, SHAPE(N, OC), NM("out"));
    put_f32(w, T_MATMUL, "matmul_backward: dinp = dout weight", dinp, SHAPE(N, C), NM("dinp"));
    put_f32(w, T_MATMUL, "matmul_backward: dweight = dout^T inp", dw, SHAPE(OC, C), NM("dweight"));
    put_f32(w, T_MATMUL, "matmul_backward: dbias = sum_n dout", db, SHAPE(OC), NM("dbias"));
#undef NM
    free(inp); free(wt); free(bias); free(out); free(dout); free(dinp); free(dw); free(db);
}

/* prod: NULL for the tiny shapes, else every layer at that config's widths
 * (hidden, heads, kv heads, head_dim, intermediate, vocab, rope_theta), and
 * both MLP matmuls (K = hidden and K = intermediate). */
static int write_layers(const char *dir, json_t *entries, const opd_config *prod) {
    golden_writer w = {.file = OPD_GOLDEN_LAYERS_FILE, .entries = entries};
    opd_st_init(&w.st);
    const int Cm = prod ? prod->d_model : 0, Fm = prod ? prod->d_ff : 0, Vm = prod ? prod->vocab_size : 0;
    const int NHm = prod ? prod->n_heads : 0, NKVm = prod ? prod->n_kv_heads : 0, HDm = prod ? Cm / NHm : 0;
    const float theta = prod ? prod->rope_theta : 10000.0f, eps = prod ? prod->rms_eps : 1e-6f;
#define ZF(n) ((float *)opd_calloc((size_t)(n), sizeof(float)))

    /* linear layer: K = 40 is not a multiple of any SIMD width */
    if (!prod) layer_matmul(&w, "matmul", 9, 40, 24, 1);
    else {
        layer_matmul(&w, "matmul", 9, Cm, Fm, 1);        /* gate / up: K = hidden */
        layer_matmul(&w, "matmul_down", 9, Fm, Cm, 90);  /* down: K = intermediate */
    }
    { /* RMSNorm */
        const int N = 9, C = prod ? Cm : 24;
        float *inp = ZF(N * C), *wt = ZF(C), *out = ZF(N * C), *rstd = ZF(N), *dout = ZF(N * C);
        float *dinp = ZF(N * C), *dw = ZF(C);
        randn(inp, N * C, 10, 2.0f); randn(wt, C, 11, 0.3f); randn(dout, N * C, 12, 1.0f);
        for (int c = 0; c < C; c++) wt[c] += 1.0f;
        rmsnorm_forward(out, rstd, inp, wt, N, C, eps);
        rmsnorm_backward(dinp, dw, dout, inp, wt, rstd, N, C);
        put_f32(&w, T_EXACT, "input", inp, SHAPE(N, C), "rmsnorm.inp");
        put_f32(&w, T_EXACT, "input", wt, SHAPE(C), "rmsnorm.weight");
        put_f32(&w, T_EXACT, "input", dout, SHAPE(N, C), "rmsnorm.dout");
        put_f32(&w, T_ELEM, prod ? "rmsnorm_forward (the config's eps)" : "rmsnorm_forward (eps 1e-6)", out, SHAPE(N, C), "rmsnorm.out");
        put_f32(&w, T_ELEM, "rmsnorm_forward: 1/sqrt(mean(x^2) + eps)", rstd, SHAPE(N), "rmsnorm.rstd");
        put_f32(&w, T_MATMUL, "rmsnorm_backward", dinp, SHAPE(N, C), "rmsnorm.dinp");
        put_f32(&w, T_MATMUL, "rmsnorm_backward (sum over N)", dw, SHAPE(C), "rmsnorm.dweight");
        free(inp); free(wt); free(out); free(rstd); free(dout); free(dinp); free(dw);
    }
    { /* RoPE, rotate-half; positions up to 500 test the angle's accuracy */
        const int N = 9, NHr = prod ? NHm : 3, HD = prod ? HDm : 8, n = N * NHr * HD;
        int pos[9] = {0, 1, 2, 3, 7, 15, 31, 100, 500};
        float *x = ZF(n), *out = ZF(n), *dx = ZF(n), *dxo = ZF(n);
        randn(x, n, 20, 1.0f); randn(dx, n, 21, 1.0f);
        memcpy(out, x, sizeof(float) * n); memcpy(dxo, dx, sizeof(float) * n);
        rope_forward(out, pos, N, NHr, HD, theta);
        rope_backward(dxo, pos, N, NHr, HD, theta);
        put_f32(&w, T_EXACT, "input", x, SHAPE(N, NHr, HD), "rope.x");
        put(&w, T_EXACT, "input", OPD_I32, pos, SHAPE(N), "rope.pos");
        put_f32(&w, T_EXACT, "input", dx, SHAPE(N, NHr, HD), "rope.dout");
        put_f32(&w, T_ELEM, prod ? "rope_forward (the config's theta, in place)" : "rope_forward (theta 10000, in place)",
                out, SHAPE(N, NHr, HD), "rope.out");
        put_f32(&w, T_ELEM, "rope_backward (rotation by -angle, in place)", dxo, SHAPE(N, NHr, HD), "rope.dinp");
        free(x); free(out); free(dx); free(dxo);
    }
    { /* causal GQA attention with left padding */
        const int B = 2, T = 7, NH = prod ? NHm : 4, NKV = prod ? NKVm : 2, HD = prod ? HDm : 8;
        const int nq = B * T * NH * HD, nk = B * T * NKV * HD, na = B * NH * T * T;
        int pad[2] = {0, 3};
        float *q = ZF(nq), *k = ZF(nk), *v = ZF(nk), *out = ZF(nq), *att = ZF(na), *dout = ZF(nq);
        float *dq = ZF(nq), *dk = ZF(nk), *dv = ZF(nk), *datt = ZF(na);
        randn(q, nq, 30, 1.0f); randn(k, nk, 31, 1.0f);
        randn(v, nk, 32, 1.0f); randn(dout, nq, 33, 1.0f);
        attention_forward(out, att, q, k, v, pad, B, T, NH, NKV, HD);
        attention_backward(dq, dk, dv, datt, dout, q, k, v, att, B, T, NH, NKV, HD);
        put_f32(&w, T_EXACT, "input", q, SHAPE(B, T, NH * HD), "attention.q");
        put_f32(&w, T_EXACT, "input", k, SHAPE(B, T, NKV * HD), "attention.k");
        put_f32(&w, T_EXACT, "input", v, SHAPE(B, T, NKV * HD), "attention.v");
        put(&w, T_EXACT, "input", OPD_I32, pad, SHAPE(B), "attention.pad");
        put_f32(&w, T_EXACT, "input", dout, SHAPE(B, T, NH * HD), "attention.dout");
        put_f32(&w, T_SOFTMAX, "attention_forward (scale 1/sqrt(hd), causal, keys j >= pad)", att,
                SHAPE(B, NH, T, T), "attention.att");
        put_f32(&w, T_SOFTMAX, "attention_forward", out, SHAPE(B, T, NH * HD), "attention.out");
        put_f32(&w, T_MATMUL, "attention_backward", dq, SHAPE(B, T, NH * HD), "attention.dq");
        put_f32(&w, T_MATMUL, "attention_backward (sum over queries and the group's heads)", dk,
                SHAPE(B, T, NKV * HD), "attention.dk");
        put_f32(&w, T_MATMUL, "attention_backward (sum over queries and the group's heads)", dv,
                SHAPE(B, T, NKV * HD), "attention.dv");
        free(q); free(k); free(v); free(out); free(att); free(dout); free(dq); free(dk); free(dv); free(datt);
    }
    { /* SwiGLU */
        const int N = 9, F = prod ? Fm : 20;
        float *g = ZF(N * F), *u = ZF(N * F), *out = ZF(N * F), *dout = ZF(N * F), *dg = ZF(N * F), *du = ZF(N * F);
        randn(g, N * F, 40, 3.0f); randn(u, N * F, 41, 1.0f); randn(dout, N * F, 42, 1.0f);
        swiglu_forward(out, g, u, N, F);
        swiglu_backward(dg, du, dout, g, u, N, F);
        put_f32(&w, T_EXACT, "input", g, SHAPE(N, F), "swiglu.gate");
        put_f32(&w, T_EXACT, "input", u, SHAPE(N, F), "swiglu.up");
        put_f32(&w, T_EXACT, "input", dout, SHAPE(N, F), "swiglu.dout");
        put_f32(&w, T_ELEM, "swiglu_forward: silu(gate) * up", out, SHAPE(N, F), "swiglu.out");
        put_f32(&w, T_ELEM, "swiglu_backward", dg, SHAPE(N, F), "swiglu.dgate");
        put_f32(&w, T_ELEM, "swiglu_backward", du, SHAPE(N, F), "swiglu.dup");
        free(g); free(u); free(out); free(dout); free(dg); free(du);
    }
    { /* token embedding; repeated tokens accumulate into one row */
        const int N = 9, V = prod ? Vm : 11, C = prod ? Cm : 8;
        int tok[9] = {3, 0, 10, 3, 5, 3, 7, 0, 1};
        if (prod)   /* the same pattern spread over the vocabulary, last row included */
            for (int i = 0; i < N; i++) tok[i] = (int)((int64_t)tok[i] * (V - 1) / 10);
        float *wte = ZF((size_t)V * C), *out = ZF(N * C), *dout = ZF(N * C), *dwte = ZF((size_t)V * C);
        randn(wte, (size_t)V * C, 50, 1.0f); randn(dout, N * C, 51, 1.0f);
        encoder_forward(out, tok, wte, N, C);
        encoder_backward(dwte, dout, tok, N, C);
        put(&w, T_EXACT, "input", OPD_I32, tok, SHAPE(N), "encoder.tokens");
        put_f32(&w, T_EXACT, "input", wte, SHAPE(V, C), "encoder.wte");
        put_f32(&w, T_EXACT, "input", dout, SHAPE(N, C), "encoder.dout");
        put_f32(&w, T_EXACT, "encoder_forward (a copy)", out, SHAPE(N, C), "encoder.out");
        put_f32(&w, T_ELEM, "encoder_backward (rows added in token order)", dwte, SHAPE(V, C), "encoder.dwte");
        free(wte); free(out); free(dout); free(dwte);
    }
    { /* cross-entropy, token mean over the mask */
        const int B = 2, T = 5, V = prod ? Vm : 13;
        float *logits = ZF((size_t)B * T * V), *dl = ZF((size_t)B * T * V);
        float mask[10] = {1, 1, 1, 0, 1, 0, 0, 1, 1, 1};
        int tgt[10];
        randn(logits, (size_t)B * T * V, 60, 2.0f);
        for (int i = 0; i < B * T; i++) tgt[i] = (i * 5 + 2) % V;
        float loss = opd_cross_entropy(logits, tgt, mask, B, T, V, dl);
        put_f32(&w, T_EXACT, "input", logits, SHAPE(B, T, V), "cross_entropy.logits");
        put(&w, T_EXACT, "input", OPD_I32, tgt, SHAPE(B, T), "cross_entropy.targets");
        put_f32(&w, T_EXACT, "input", mask, SHAPE(B, T), "cross_entropy.mask");
        put_f32(&w, T_SOFTMAX, "opd_cross_entropy", &loss, SHAPE(1), "cross_entropy.loss");
        put_f32(&w, T_SOFTMAX, "opd_cross_entropy", dl, SHAPE(B, T, V), "cross_entropy.dlogits");
        free(logits); free(dl);
    }
    { /* log-softmax rows; one far from 0 needs the max shift */
        const int R = 4, V = prod ? Vm : 13;
        float *x = ZF((size_t)R * V), *out = ZF((size_t)R * V), lse[4];
        randn(x, (size_t)R * V, 70, 3.0f);
        for (int i = 0; i < V; i++) x[2 * V + i] += 100.0f, x[3 * V + i] -= 80.0f;
        for (int r = 0; r < R; r++) lse[r] = opd_log_softmax(out + (size_t)r * V, x + (size_t)r * V, V);
        put_f32(&w, T_EXACT, "input", x, SHAPE(R, V), "log_softmax.logits");
        put_f32(&w, T_SOFTMAX, "opd_log_softmax", out, SHAPE(R, V), "log_softmax.out");
        put_f32(&w, T_SOFTMAX, "opd_log_softmax (log-sum-exp)", lse, SHAPE(R), "log_softmax.lse");
        free(x); free(out);
    }
    { /* Philox4x32-10 words, stored as I32 bit patterns of the uint32s */
        enum { R = 8 };
        uint32_t ctr[R * 4], key[R * 2], out[R * 4];
        float uni[R], nrm[R];
        for (int i = 0; i < R; i++) {
            uint32_t c[4] = {(uint32_t)i, 0xffffffffu - i, 0xdeadbeefu ^ (i << 8), (uint32_t)i << 28};
            uint32_t k[2] = {0x12345678u + 0x01010101u * i, 0xcafef00du * (i + 1)};
            if (i == 0) { c[0] = c[1] = c[2] = c[3] = 0; k[0] = k[1] = 0; }
            memcpy(ctr + 4 * i, c, sizeof c);
            memcpy(key + 2 * i, k, sizeof k);
            opd_philox4x32_10(c, k, out + 4 * i);
            uni[i] = opd_uniform(42 + i, i, 2 * i, 3 * i, i & 3);
            nrm[i] = opd_normal(42 + i, i, 2 * i, 3 * i);
        }
        put(&w, T_EXACT, "input (uint32 bits)", OPD_I32, ctr, SHAPE(R, 4), "philox.counter");
        put(&w, T_EXACT, "input (uint32 bits)", OPD_I32, key, SHAPE(R, 2), "philox.key");
        put(&w, T_EXACT, "opd_philox4x32_10 (uint32 bits)", OPD_I32, out, SHAPE(R, 4), "philox.out");
        put_f32(&w, T_EXACT, "opd_uniform(seed 42+i, a i, b 2i, c 3i, word i%4): top 24 bits / 2^24",
                uni, SHAPE(R), "philox.uniform");
        put_f32(&w, T_ELEM, "opd_normal(seed 42+i, a i, b 2i, c 3i): Box-Muller in double (libm log, cos)",
                nrm, SHAPE(R), "philox.normal");
    }
    { /* the sampler: temperature / top-k / top-p / greedy on fixed logits */
        enum { R = 5, NC = 5 };
        const int V = prod ? Vm : 16;
        const float cfgs[NC * 3] = {1, 0, 1,  0.7f, 5, 1,  1, 0, 0.8f,  0, 0, 1,  1.3f, 3, 0.9f};
        float *logits = ZF((size_t)R * V), lp[NC * R], *scratch = ZF(2 * (size_t)V);
        int tok[NC * R];
        randn(logits, (size_t)R * V, 80, 2.0f);
        for (int c = 0; c < NC; c++) {
            opd_sampler_config sc = {.temperature = cfgs[3 * c], .top_k = (int)cfgs[3 * c + 1],
                                     .top_p = cfgs[3 * c + 2]};
            for (int r = 0; r < R; r++)
                tok[c * R + r] = opd_sample_token(logits + (size_t)r * V, V, &sc, 77, (uint32_t)c, (uint32_t)r, 5,
                                                  &lp[c * R + r], scratch);
        }
        put_f32(&w, T_EXACT, "input", logits, SHAPE(R, V), "sample.logits");
        put_f32(&w, T_EXACT, "input: (temperature, top_k, top_p) per config", cfgs, SHAPE(NC, 3), "sample.configs");
        put(&w, T_EXACT, "opd_sample_token(seed 77, step config, seq row, pos 5)", OPD_I32, tok,
            SHAPE(NC, R), "sample.tokens");
        put_f32(&w, T_SOFTMAX, "opd_sample_token: log softmax(logits)[token] at temperature 1",
                lp, SHAPE(NC, R), "sample.logprobs");
        free(logits); free(scratch);
    }
#undef ZF

    int rc = -1;
    if (!w.err) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, w.file);
        rc = opd_st_write(&w.st, path);
    }
    opd_st_free(&w.st);
    return rc;
}

static int dump_json(void *user, void *fp) {
    return json_dumpf((json_t *)user, (FILE *)fp, JSON_INDENT(1) | JSON_PRESERVE_ORDER |
                      JSON_REAL_PRECISION(6)) == 0 ? 0 : -1;
}

int opd_golden_write(const char *dir) { return opd_golden_write_shape(dir, NULL, 0); }

int opd_golden_write_shape(const char *dir, const opd_config *prod, int keep_backend) {
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return opd_set_error("%s: not a directory", dir);
    /* the golden numbers are the reference's own gemm (the same bits on every
     * CPU, ISA path and thread count); OpenBLAS and oneDNN round otherwise */
    opd_matmul_backend saved = opd_matmul_get_backend();
    if (!keep_backend) opd_matmul_set_backend(OPD_MATMUL_OWN);
    json_t *root = json_object(), *classes = json_object(), *entries = json_array();
    json_object_set_new(root, "format", json_string("opd golden manifest v1"));
    json_object_set_new(root, "generator", json_string(prod ? "opd golden write --config CONFIG DIR" : "opd golden write DIR"));
    json_object_set_new(root, "rule", json_string(
        "element ok when d == 0 or d <= max_abs or d <= max_rel*|ref| or ulp <= max_ulp; "
        "tensor passes when every element is ok and sum d^2 / sum ref^2 <= nmse; all zero = bit-exact"));
    for (int c = 0; c < T_COUNT; c++)
        json_object_set_new(classes, tol_classes[c].name,
                            json_pack("{s:f, s:f, s:f, s:f, s:f, s:s}",
                                      "abs_fixed", tol_classes[c].abs_fixed,
                                      "abs_times_max_ref", tol_classes[c].abs_scaled,
                                      "max_rel", tol_classes[c].max_rel,
                                      "max_ulp", tol_classes[c].max_ulp,
                                      "nmse", tol_classes[c].nmse, "why", tol_classes[c].why));
    json_object_set_new(root, "classes", classes);
    json_object_set(root, "tensors", entries);
    int rc = write_step(dir, entries, prod);
    if (rc == 0) rc = write_layers(dir, entries, prod);
    if (rc == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, OPD_GOLDEN_MANIFEST);
        rc = opd_atomic_write_cb(path, dump_json, root);
        if (rc != 0 && !*opd_last_error()) opd_set_error("%s: cannot write the manifest", path);
    }
    json_decref(entries);
    json_decref(root);
    opd_matmul_set_backend(saved);
    return rc;
}
