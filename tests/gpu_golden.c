/* gpu_golden.c — see gpu_golden.h. Each golden input goes to the device as
 * stored, each result comes back under the golden name with the golden
 * shape, and whatever the CUDA path does not compute is copied from the
 * reference (inputs; Philox words and normals, which have no GPU kernel;
 * the schedules, host code shared with the CPU) and named on the log. */
#include "gpu_golden.h"

#include <stdlib.h>
#include <string.h>

#include "opd.h"

/* The candidate file being built, and the device buffers of one section. */
typedef struct {
    opd_cuda *cu;
    opd_safetensors ref, out;
    void *dev[64];
    int ndev;
    int err;                 /* a step failed: the message is in opd_last_error() */
} harness;

static void fail_if(harness *h, int rc) {
    if (rc != 0) h->err = 1;
}

static const opd_st_tensor *ref_tensor(harness *h, const char *name) {
    const opd_st_tensor *t = opd_st_find(&h->ref, name);
    if (!t && !h->err) {
        opd_set_error("gpu_golden: the golden file has no tensor '%s'", name);
        h->err = 1;
    }
    return t;
}

static void *dev_zeros(harness *h, size_t nbytes) {
    void *d = NULL;
    if (h->err) return NULL;
    if (h->ndev == (int)(sizeof h->dev / sizeof h->dev[0])) {
        opd_set_error("gpu_golden: more than %d device buffers in one section", h->ndev);
        h->err = 1;
        return NULL;
    }
    fail_if(h, opd_cuda_alloc(h->cu, &d, nbytes));
    if (d) h->dev[h->ndev++] = d;
    return d;
}

/* a device copy of the golden tensor `name` */
static void *to_device(harness *h, const char *name) {
    const opd_st_tensor *t = ref_tensor(h, name);
    if (!t) return NULL;
    void *d = dev_zeros(h, t->nbytes);
    if (d) fail_if(h, opd_cuda_upload(h->cu, d, t->data, t->nbytes));
    return d;
}

static void free_section(harness *h) {
    for (int i = 0; i < h->ndev; i++) opd_cuda_free(h->dev[i]);
    h->ndev = 0;
}

/* host data shaped like the golden tensor `name` into the candidate */
static void put_host(harness *h, const char *name, const void *data) {
    const opd_st_tensor *t = ref_tensor(h, name);
    if (!t || h->err) return;
    fail_if(h, opd_st_add(&h->out, name, t->dtype, t->ndim, t->shape, data));
}

/* device data shaped like the golden tensor `name` into the candidate */
static void put_device(harness *h, const char *name, const void *dptr) {
    const opd_st_tensor *t = ref_tensor(h, name);
    if (!t || h->err) return;
    void *host = opd_malloc(t->nbytes ? t->nbytes : 1);
    fail_if(h, opd_cuda_download(h->cu, host, dptr, t->nbytes));
    put_host(h, name, host);
    free(host);
}

static int64_t dim(harness *h, const char *name, int i) {
    const opd_st_tensor *t = ref_tensor(h, name);
    return t && i < t->ndim ? t->shape[i] : 0;
}

/* Every golden tensor the candidate lacks, copied from the reference; the
 * names of copied outputs (not inputs) are printed, so nobody mistakes them
 * for a kernel's result. */
static void copy_rest(harness *h, const char *const *not_inputs, FILE *log) {
    int ncopied = 0;
    for (int i = 0; i < h->ref.n && !h->err; i++) {
        const opd_st_tensor *t = &h->ref.t[i];
        if (opd_st_find(&h->out, t->name)) continue;
        fail_if(h, opd_st_add(&h->out, t->name, t->dtype, t->ndim, t->shape, t->data));
        ncopied++;
        for (int k = 0; not_inputs[k]; k++)
            if (!strncmp(t->name, not_inputs[k], strlen(not_inputs[k])) && log)
                fprintf(log, "  %s: the reference's value (no GPU computation)\n", t->name);
    }
    if (log) fprintf(log, "  %d tensors copied from the reference (inputs and the above), %d computed\n",
                     ncopied, h->out.n - ncopied);
}

static int finish(harness *h, const char *out_path) {
    free_section(h);
    int rc = h->err ? -1 : opd_st_write(&h->out, out_path);
    opd_st_free(&h->ref);
    opd_st_free(&h->out);
    return rc;
}

/* ------------------------------------------------------------- layers */
static void layers_matmul(harness *h) {
    int N = dim(h, "matmul.inp", 0), C = dim(h, "matmul.inp", 1), OC = dim(h, "matmul.weight", 0);
    float *inp = to_device(h, "matmul.inp"), *w = to_device(h, "matmul.weight");
    float *b = to_device(h, "matmul.bias"), *dout = to_device(h, "matmul.dout");
    float *out = dev_zeros(h, (size_t)N * OC * 4), *dinp = dev_zeros(h, (size_t)N * C * 4);
    float *dw = dev_zeros(h, (size_t)OC * C * 4), *db = dev_zeros(h, (size_t)OC * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_matmul_forward(h->cu, out, inp, w, b, N, C, OC));
    fail_if(h, opd_cuda_matmul_backward(h->cu, dinp, dw, db, dout, inp, w, N, C, OC));
    put_device(h, "matmul.out", out);
    put_device(h, "matmul.dinp", dinp);
    put_device(h, "matmul.dweight", dw);
    put_device(h, "matmul.dbias", db);
}

static void layers_rmsnorm(harness *h) {
    int N = dim(h, "rmsnorm.inp", 0), C = dim(h, "rmsnorm.inp", 1);
    float *inp = to_device(h, "rmsnorm.inp"), *w = to_device(h, "rmsnorm.weight");
    float *dout = to_device(h, "rmsnorm.dout");
    float *out = dev_zeros(h, (size_t)N * C * 4), *rstd = dev_zeros(h, (size_t)N * 4);
    float *dinp = dev_zeros(h, (size_t)N * C * 4), *dw = dev_zeros(h, (size_t)C * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_rmsnorm_forward(h->cu, out, rstd, inp, w, N, C, 1e-6f));
    fail_if(h, opd_cuda_rmsnorm_backward(h->cu, dinp, dw, dout, inp, w, rstd, N, C));
    put_device(h, "rmsnorm.out", out);
    put_device(h, "rmsnorm.rstd", rstd);
    put_device(h, "rmsnorm.dinp", dinp);
    put_device(h, "rmsnorm.dweight", dw);
}

static void layers_rope(harness *h) {
    int N = dim(h, "rope.x", 0), nh = dim(h, "rope.x", 1), hd = dim(h, "rope.x", 2);
    float *x = to_device(h, "rope.x"), *dx = to_device(h, "rope.dout");   /* rotated in place */
    int *pos = to_device(h, "rope.pos");
    if (h->err) return;
    fail_if(h, opd_cuda_rope_forward(h->cu, x, pos, N, nh, hd, 10000.0f));
    fail_if(h, opd_cuda_rope_backward(h->cu, dx, pos, N, nh, hd, 10000.0f));
    put_device(h, "rope.out", x);
    put_device(h, "rope.dinp", dx);
}

static void layers_attention(harness *h) {
    int B = dim(h, "attention.q", 0), T = dim(h, "attention.q", 1);
    int NH = dim(h, "attention.att", 1), qd = dim(h, "attention.q", 2), kvd = dim(h, "attention.k", 2);
    int hd = NH ? qd / NH : 0, NKV = hd ? kvd / hd : 0;
    float *q = to_device(h, "attention.q"), *k = to_device(h, "attention.k");
    float *v = to_device(h, "attention.v"), *dout = to_device(h, "attention.dout");
    int *pad = to_device(h, "attention.pad");
    size_t na = (size_t)B * NH * T * T;
    float *out = dev_zeros(h, (size_t)B * T * qd * 4), *att = dev_zeros(h, na * 4);
    float *datt = dev_zeros(h, na * 4), *dq = dev_zeros(h, (size_t)B * T * qd * 4);
    float *dk = dev_zeros(h, (size_t)B * T * kvd * 4), *dv = dev_zeros(h, (size_t)B * T * kvd * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_attention_forward(h->cu, out, att, q, k, v, pad, B, T, NH, NKV, hd));
    fail_if(h, opd_cuda_attention_backward(h->cu, dq, dk, dv, datt, dout, q, k, v, att,
                                           B, T, NH, NKV, hd));
    put_device(h, "attention.att", att);
    put_device(h, "attention.out", out);
    put_device(h, "attention.dq", dq);
    put_device(h, "attention.dk", dk);
    put_device(h, "attention.dv", dv);
}

static void layers_swiglu(harness *h) {
    int N = dim(h, "swiglu.gate", 0), F = dim(h, "swiglu.gate", 1);
    float *g = to_device(h, "swiglu.gate"), *u = to_device(h, "swiglu.up");
    float *dout = to_device(h, "swiglu.dout");
    float *out = dev_zeros(h, (size_t)N * F * 4), *dg = dev_zeros(h, (size_t)N * F * 4);
    float *du = dev_zeros(h, (size_t)N * F * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_swiglu_forward(h->cu, out, g, u, N, F));
    fail_if(h, opd_cuda_swiglu_backward(h->cu, dg, du, dout, g, u, N, F));
    put_device(h, "swiglu.out", out);
    put_device(h, "swiglu.dgate", dg);
    put_device(h, "swiglu.dup", du);
}

static void layers_encoder(harness *h) {
    int N = dim(h, "encoder.tokens", 0), V = dim(h, "encoder.wte", 0), C = dim(h, "encoder.wte", 1);
    int *tok = to_device(h, "encoder.tokens");
    float *wte = to_device(h, "encoder.wte"), *dout = to_device(h, "encoder.dout");
    float *out = dev_zeros(h, (size_t)N * C * 4), *dwte = dev_zeros(h, (size_t)V * C * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_encoder_forward(h->cu, out, tok, wte, N, C));
    fail_if(h, opd_cuda_encoder_backward(h->cu, dwte, dout, tok, N, C));
    put_device(h, "encoder.out", out);
    put_device(h, "encoder.dwte", dwte);
}

static void layers_losses(harness *h) {
    int B = dim(h, "cross_entropy.logits", 0), T = dim(h, "cross_entropy.logits", 1);
    int V = dim(h, "cross_entropy.logits", 2);
    float *logits = to_device(h, "cross_entropy.logits"), *mask = to_device(h, "cross_entropy.mask");
    int *tgt = to_device(h, "cross_entropy.targets");
    float *dl = dev_zeros(h, (size_t)B * T * V * 4), loss = 0.0f;
    int R = dim(h, "log_softmax.logits", 0), VL = dim(h, "log_softmax.logits", 1);
    float *x = to_device(h, "log_softmax.logits");
    float *out = dev_zeros(h, (size_t)R * VL * 4), *lse = dev_zeros(h, (size_t)R * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_cross_entropy(h->cu, &loss, logits, tgt, mask, B, T, V, dl));
    put_host(h, "cross_entropy.loss", &loss);
    put_device(h, "cross_entropy.dlogits", dl);
    fail_if(h, opd_cuda_log_softmax(h->cu, out, lse, x, R, VL));
    put_device(h, "log_softmax.out", out);
    put_device(h, "log_softmax.lse", lse);
}

/* The draws of write_layers in golden/write.c: uniform i is opd_uniform(42 + i,
 * i, 2i, 3i, i % 4); the sampler's key is (77, config, row, 5). */
static void layers_sampling(harness *h) {
    int R = dim(h, "philox.uniform", 0);
    float *u = dev_zeros(h, (size_t)R * 4);
    int NC = dim(h, "sample.configs", 0), SR = dim(h, "sample.logits", 0), V = dim(h, "sample.logits", 1);
    float *logits = to_device(h, "sample.logits");
    int *tok = dev_zeros(h, (size_t)NC * SR * sizeof(int));
    float *lp = dev_zeros(h, (size_t)NC * SR * 4);
    uint32_t *seq = dev_zeros(h, (size_t)SR * 4), *pos = dev_zeros(h, (size_t)SR * 4);
    const opd_st_tensor *cfgs = ref_tensor(h, "sample.configs");
    if (h->err) return;
    for (int i = 0; i < R; i++)
        fail_if(h, opd_cuda_uniform(h->cu, u + i, 1, 42 + i, i, 2 * i, 3 * i, i & 3));
    put_device(h, "philox.uniform", u);
    uint32_t hseq[64], hpos[64];
    if (SR > 64) { opd_set_error("gpu_golden: %d sampler rows > 64", SR); h->err = 1; return; }
    for (int r = 0; r < SR; r++) { hseq[r] = r; hpos[r] = 5; }
    fail_if(h, opd_cuda_upload(h->cu, seq, hseq, SR * 4));
    fail_if(h, opd_cuda_upload(h->cu, pos, hpos, SR * 4));
    const float *cf = cfgs->data;
    for (int c = 0; c < NC && !h->err; c++) {
        opd_sampler_config sc = {.temperature = cf[3 * c], .top_k = (int)cf[3 * c + 1], .top_p = cf[3 * c + 2]};
        fail_if(h, opd_cuda_sample_tokens(h->cu, tok + c * SR, lp + c * SR, logits, SR, V, &sc, 77,
                                          (uint32_t)c, seq, pos));
    }
    put_device(h, "sample.tokens", tok);
    put_device(h, "sample.logprobs", lp);
}

int gpu_golden_layers(opd_cuda *cu, const char *golden_path, const char *out_path, FILE *log) {
    harness h = {.cu = cu};
    opd_st_init(&h.out);
    opd_st_init(&h.ref);
    if (opd_st_read(golden_path, &h.ref) != 0) return -1;
    void (*sections[])(harness *) = {layers_matmul, layers_rmsnorm, layers_rope, layers_attention,
                                     layers_swiglu, layers_encoder, layers_losses, layers_sampling};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0] && !h.err; i++) {
        sections[i](&h);
        free_section(&h);
    }
    static const char *const not_inputs[] = {"philox.out", "philox.normal", NULL};
    if (log) fprintf(log, "%s through the opd_cuda_* kernels:\n", golden_path);
    if (!h.err) copy_rest(&h, not_inputs, log);
    return finish(&h, out_path);
}

/* --------------------------------------------------------------- step */
static int meta_int(harness *h, const char *key) {
    const char *v = opd_st_get_meta(&h->ref, key);
    if (!v && !h->err) {
        opd_set_error("gpu_golden: the golden step has no metadata '%s'", key);
        h->err = 1;
    }
    return v ? atoi(v) : 0;
}

/* metadata "<who>.<field>" of the golden step (golden/write.c's cfg_meta) */
static const char *meta_field(harness *h, const char *who, const char *field) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", who, field);
    const char *v = opd_st_get_meta(&h->ref, key);
    if (!v && !h->err) {
        opd_set_error("gpu_golden: the golden step has no metadata '%s'", key);
        h->err = 1;
    }
    return v ? v : "0";
}

static void config_from_meta(harness *h, const char *who, opd_config *c) {
    opd_config_default(c);
    c->vocab_size = atoi(meta_field(h, who, "vocab_size"));
    c->d_model = atoi(meta_field(h, who, "d_model"));
    c->n_layers = atoi(meta_field(h, who, "n_layers"));
    c->n_heads = atoi(meta_field(h, who, "n_heads"));
    c->n_kv_heads = atoi(meta_field(h, who, "n_kv_heads"));
    c->d_ff = atoi(meta_field(h, who, "d_ff"));
    c->max_seq_len = atoi(meta_field(h, who, "max_seq_len"));
    c->qkv_bias = atoi(meta_field(h, who, "qkv_bias"));
    c->tie_embeddings = atoi(meta_field(h, who, "tie_embeddings"));
    c->rope_theta = (float)atof(meta_field(h, who, "rope_theta"));
    c->rms_eps = (float)atof(meta_field(h, who, "rms_eps"));
}

/* A host model holding the golden weights `prefix`<hf name>. */
static void load_weights(harness *h, opd_model *m, const opd_config *cfg, const char *prefix) {
    if (h->err || opd_model_init(m, cfg) != 0) { h->err = 1; return; }
    int nt = opd_param_tensor_count(cfg);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(cfg, ts);
    char name[160];
    for (int i = 0; i < nt && !h->err; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, ts[i].name);
        const opd_st_tensor *t = ref_tensor(h, name);
        if (t && t->nbytes == ts[i].numel * sizeof(float))
            memcpy(m->params_mem + ts[i].offset, t->data, t->nbytes);
        else if (t) { opd_set_error("gpu_golden: %s has %zu bytes, want %zu", name, t->nbytes,
                                    ts[i].numel * sizeof(float)); h->err = 1; }
    }
    free(ts);
}

/* Every named parameter tensor of the device buffer `dmem` (cfg's layout). */
static void put_params(harness *h, const opd_config *cfg, const float *dmem, const char *prefix) {
    if (h->err) return;
    size_t n = opd_param_count(cfg);
    float *host = opd_malloc(n * sizeof(float));
    fail_if(h, opd_cuda_download(h->cu, host, dmem, n * sizeof(float)));
    int nt = opd_param_tensor_count(cfg);
    opd_tensor_info *ts = opd_calloc(nt, sizeof *ts);
    opd_param_tensors(cfg, ts);
    char name[160];
    for (int i = 0; i < nt; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, ts[i].name);
        put_host(h, name, host + ts[i].offset);
    }
    free(ts);
    free(host);
}

/* put_acts of golden/write.c: every activation of the last forward of m, read
 * from the device with the CPU's (L, B, S, X) packing. */
static void put_acts(harness *h, const char *who, const opd_cuda_model *m) {
    const opd_config *c = &m->cfg;
    const opd_acts *a = &m->acts;
    size_t B = m->B, S = m->S, N = B * S;
    size_t C = c->d_model, F = c->d_ff, NH = c->n_heads;
    size_t hd = C / NH, qd = NH * hd, kvd = c->n_kv_heads * hd;
    char name[160];
    snprintf(name, sizeof name, "%s.encoded", who);
    put_device(h, name, a->encoded);
    for (int l = 0; l < c->n_layers; l++) {
        const struct { const char *n; const float *base; size_t width; } rows[] = {
            {"ln1", a->ln1, C}, {"ln1_rstd", a->ln1_rstd, 1}, {"q", a->q, qd}, {"k", a->k, kvd},
            {"v", a->v, kvd}, {"atty", a->atty, qd}, {"res_mid", a->res_mid, C}, {"ln2", a->ln2, C},
            {"ln2_rstd", a->ln2_rstd, 1}, {"gate", a->gate, F}, {"up", a->up, F},
            {"swiglu", a->swiglu, F}, {"res_out", a->res_out, C},
        };
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            snprintf(name, sizeof name, "%s.layers.%d.%s", who, l, rows[i].n);
            put_device(h, name, rows[i].base + (size_t)l * N * rows[i].width);
        }
        snprintf(name, sizeof name, "%s.layers.%d.att", who, l);
        put_device(h, name, a->att + (size_t)l * B * NH * S * S);
    }
    snprintf(name, sizeof name, "%s.lnf", who);
    put_device(h, name, a->lnf);
    snprintf(name, sizeof name, "%s.lnf_rstd", who);
    put_device(h, name, a->lnf_rstd);
    snprintf(name, sizeof name, "%s.logits", who);
    put_device(h, name, a->logits);
    snprintf(name, sizeof name, "%s.pos", who);
    put_device(h, name, a->pos);
}

/* step.{teacher,student}_logprobs: log-softmax of the step's (B, trained_len, V)
 * logits on the device, picked at y on the host. */
static void put_logprobs(harness *h, const char *name, const float *dlogits, const int *y,
                         int BH, int V) {
    float *lsm = dev_zeros(h, (size_t)BH * V * 4);
    if (h->err) return;
    fail_if(h, opd_cuda_log_softmax(h->cu, lsm, NULL, dlogits, BH, V));
    float *host = opd_malloc((size_t)BH * V * 4), *lp = opd_malloc((size_t)BH * 4);
    fail_if(h, opd_cuda_download(h->cu, host, lsm, (size_t)BH * V * 4));
    for (int i = 0; i < BH; i++) lp[i] = host[(size_t)i * V + y[i]];
    put_host(h, name, lp);
    free(host);
    free(lp);
}

/* The rollout, the scored tokens and the forward activations: the same for
 * every loss kind (same weights, same keys), recorded after the first. */
static void put_step_common(harness *h, const opd_cuda_step_work *w, opd_cuda_model *ds,
                            opd_cuda_model *dt, int B, int P, int H, int trained_len, int V) {
    const opd_rollout *r = &w->roll;
    int S = P + trained_len - 1;
    put_host(h, "rollout.tokens", r->tokens);
    put_host(h, "rollout.mask", r->mask);
    put_host(h, "rollout.sampler_logprobs", r->logprobs);
    put_host(h, "rollout.length", r->length);
    put_host(h, "rollout.truncated", r->truncated);
    put_device(h, "step.tokens", w->tokens);
    put_device(h, "step.y", w->y);
    put_device(h, "step.mask", w->mask);
    int *y = opd_malloc((size_t)B * trained_len * sizeof(int));
    fail_if(h, opd_cuda_download(h->cu, y, w->y, (size_t)B * trained_len * sizeof(int)));
    put_logprobs(h, "step.teacher_logprobs", w->t_logits, y, B * trained_len, V);
    put_logprobs(h, "step.student_logprobs", w->s_logits, y, B * trained_len, V);
    free(y);
    put_acts(h, "student", ds);   /* the step's own student forward */
    if (!h->err) fail_if(h, opd_cuda_model_forward(h->cu, dt, w->tokens, w->pad, B, S));
    if (!h->err) put_acts(h, "teacher", dt);
    (void)H;
}

/* One opd_cuda_distill_step from the golden weights (host s) with a fresh
 * AdamW of config oc; the device optimizer is kept in *keep (if not NULL). */
static void run_step(harness *h, const opd_model *s, opd_cuda_model *ds, opd_cuda_model *dt,
                     const opd_optim_config *oc, const opd_distill_config *dc, const int *prompts,
                     const int *pad, const void *ids, int B, int P, long k, opd_cuda_step_work *w,
                     opd_cuda_adamw *keep, opd_step_stats *st) {
    memset(st, 0, sizeof *st);
    if (h->err) return;
    opd_adamw hopt;
    opd_adamw_init(&hopt, oc, s->num_params);
    opd_cuda_adamw opt;
    memset(&opt, 0, sizeof opt);
    fail_if(h, opd_cuda_model_upload(h->cu, ds, s));
    if (!h->err) fail_if(h, opd_cuda_adamw_init(h->cu, &opt, &hopt));
    if (!h->err) fail_if(h, opd_cuda_distill_step(h->cu, ds, dt, &opt, dc, prompts, pad, ids, B, P, k, w, st));
    opd_adamw_free(&hopt);
    if (keep) *keep = opt;
    else opd_cuda_adamw_free(&opt);
}

int gpu_golden_step(opd_cuda *cu, const char *golden_path, const char *out_path, FILE *log) {
    harness h = {.cu = cu};
    opd_st_init(&h.out);
    opd_st_init(&h.ref);
    if (opd_st_read(golden_path, &h.ref) != 0) return -1;
    opd_config sc, tc;
    config_from_meta(&h, "student", &sc);
    config_from_meta(&h, "teacher", &tc);
    opd_model s, t;
    memset(&s, 0, sizeof s);
    memset(&t, 0, sizeof t);
    load_weights(&h, &s, &sc, "student.");
    load_weights(&h, &t, &tc, "teacher.");
    int B = dim(&h, "input.prompts", 0), P = dim(&h, "input.prompts", 1);
    int H = meta_int(&h, "step.horizon"), V = sc.vocab_size;
    const opd_st_tensor *prompts = ref_tensor(&h, "input.prompts"), *pad = ref_tensor(&h, "input.pad");
    const opd_st_tensor *ids = ref_tensor(&h, "input.seq_ids");

    /* the golden step's settings (golden/README.md, write_step in golden/write.c) */
    opd_distill_config dc;
    opd_distill_config_default(&dc, H > 0 ? H : 1);
    dc.rollout.eos_id = meta_int(&h, "step.eos_id");
    dc.rollout.pad_id = meta_int(&h, "step.pad_id");
    dc.rollout.seed = (uint64_t)meta_int(&h, "step.seed");
    long k = meta_int(&h, "step.k");

    opd_cuda_model ds, dt;
    memset(&ds, 0, sizeof ds);
    memset(&dt, 0, sizeof dt);
    opd_cuda_step_work w;
    memset(&w, 0, sizeof w);
    if (!h.err) fail_if(&h, opd_cuda_model_init(cu, &ds, &s));
    if (!h.err) fail_if(&h, opd_cuda_model_init(cu, &dt, &t));
    if (!h.err) put_params(&h, &sc, ds.params_mem, "student.");   /* the upload, read back */
    if (!h.err) put_params(&h, &tc, dt.params_mem, "teacher.");
    for (int kind = OPD_LOSS_RKL_SAMPLED; kind <= OPD_LOSS_RKL_SEQ && !h.err; kind++) {
        opd_loss_config *lc = &dc.loss;
        opd_loss_config_default(lc);
        lc->kind = (opd_loss_kind)kind;
        lc->beta = 0.5f;
        lc->topk = 4;
        lc->gamma = kind == OPD_LOSS_RKL_SEQ ? 0.9f : 0.0f;
        const char *ln = opd_loss_name(lc->kind);
        char name[160];
        /* The golden gradients are those before clipping, which the step
         * scales in place: a first run with the clip off gives them (the
         * gradient does not depend on the optimizer), the second, with the
         * golden AdamW, everything else. Both from the golden weights. */
        opd_optim_config oc;
        opd_optim_config_default(&oc);
        oc.grad_clip = 0.0f;
        opd_step_stats st;
        run_step(&h, &s, &ds, &dt, &oc, &dc, prompts->data, pad->data, ids->data, B, P, k, &w, NULL, &st);
        snprintf(name, sizeof name, "loss.%s.student.grad.", ln);
        put_params(&h, &sc, ds.grads_mem, name);
        opd_optim_config_default(&oc);
        opd_cuda_adamw opt;
        memset(&opt, 0, sizeof opt);
        run_step(&h, &s, &ds, &dt, &oc, &dc, prompts->data, pad->data, ids->data, B, P, k, &w, &opt, &st);
        if (!h.err && log)
            fprintf(log, "  step with loss %-8s: H=%d trained_len=%d tokens=%ld loss %.6g grad_norm %.6g\n",
                    ln, st.horizon, st.trained_len, st.tokens, st.loss, st.grad_norm);
        int trained_len = st.trained_len;
        if (!h.err && kind == OPD_LOSS_RKL_SAMPLED) put_step_common(&h, &w, &ds, &dt, B, P, H, trained_len, V);
        snprintf(name, sizeof name, "loss.%s.value", ln);
        put_host(&h, name, &st.loss);
        snprintf(name, sizeof name, "loss.%s.per_token", ln);
        put_device(&h, name, w.per_token);
        snprintf(name, sizeof name, "loss.%s.rkl", ln);
        put_device(&h, name, w.rkl);
        snprintf(name, sizeof name, "loss.%s.dlogits", ln);
        put_device(&h, name, w.dlogits_h);
        snprintf(name, sizeof name, "loss.%s.grad_norm", ln);
        put_host(&h, name, &st.grad_norm);
        snprintf(name, sizeof name, "loss.%s.student.updated.", ln);
        put_params(&h, &sc, ds.params_mem, name);
        snprintf(name, sizeof name, "loss.%s.adamw.m.", ln);
        put_params(&h, &sc, opt.m, name);
        snprintf(name, sizeof name, "loss.%s.adamw.v.", ln);
        put_params(&h, &sc, opt.v, name);
        opd_cuda_adamw_free(&opt);
    }
    static const char *const not_inputs[] = {"schedule.", NULL};
    if (log) fprintf(log, "%s through opd_cuda_distill_step:\n", golden_path);
    if (!h.err) copy_rest(&h, not_inputs, log);
    opd_cuda_step_work_free(&w);
    opd_cuda_model_free(&ds);
    opd_cuda_model_free(&dt);
    if (s.params_mem) opd_model_free(&s);
    if (t.params_mem) opd_model_free(&t);
    return finish(&h, out_path);
}
