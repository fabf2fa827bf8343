/* block.c — the two halves of a transformer block (see block.h): the wiring
 * of Qwen2's decoder layer, written once for the full forward and the
 * decode step. */
#include "block.h"

static void add_inplace(float *y, const float *x, size_t n) {
#pragma omp parallel for if (n >= OPD_OMP_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void block_attention_inputs(const opd_model *m, int l, const float *x, const int *pos,
                            int N, opd_block_bufs *o) {
    const opd_config *c = &m->cfg;
    const opd_params *p = &m->params;
    int C = c->d_model, NH = c->n_heads, hd = C / NH, qd = NH * hd, kvd = c->n_kv_heads * hd;
    rmsnorm_forward(o->ln1, o->ln1_rstd, x, p->ln1_w + (size_t)l * C, N, C, c->rms_eps);
    matmul_forward(o->q, o->ln1, p->wq + (size_t)l * qd * C, p->bq ? p->bq + (size_t)l * qd : NULL, N, C, qd);
    matmul_forward(o->k, o->ln1, p->wk + (size_t)l * kvd * C, p->bk ? p->bk + (size_t)l * kvd : NULL, N, C, kvd);
    matmul_forward(o->v, o->ln1, p->wv + (size_t)l * kvd * C, p->bv ? p->bv + (size_t)l * kvd : NULL, N, C, kvd);
    rope_forward(o->q, pos, N, NH, hd, c->rope_theta);
    rope_forward(o->k, pos, N, c->n_kv_heads, hd, c->rope_theta);
}

void block_output(const opd_model *m, int l, const float *x, int N, opd_block_bufs *o) {
    const opd_config *c = &m->cfg;
    const opd_params *p = &m->params;
    int C = c->d_model, F = c->d_ff, qd = c->n_heads * (C / c->n_heads);
    // h = x + Wo atty
    matmul_forward(o->res_mid, o->atty, p->wo + (size_t)l * C * qd, NULL, N, qd, C);
    add_inplace(o->res_mid, x, (size_t)N * C);
    // out = h + Wdown (silu(Wgate n2(h)) * Wup n2(h))
    rmsnorm_forward(o->ln2, o->ln2_rstd, o->res_mid, p->ln2_w + (size_t)l * C, N, C, c->rms_eps);
    matmul_forward(o->gate, o->ln2, p->w_gate + (size_t)l * F * C, NULL, N, C, F);
    matmul_forward(o->up, o->ln2, p->w_up + (size_t)l * F * C, NULL, N, C, F);
    swiglu_forward(o->swiglu, o->gate, o->up, N, F);
    matmul_forward(o->res_out, o->swiglu, p->w_down + (size_t)l * C * F, NULL, N, F, C);
    add_inplace(o->res_out, o->res_mid, (size_t)N * C);
}
