/* dist.c — a step over micro-batches and its fixed combination order
 * (ref/opd_dist.h): the balanced-halving tree, the micro-batch OPD and SFT
 * steps, and the single-process transport (rank 0 of 1) that
 * ref/dist_mpi.c replaces in an MPI build. */
#include "config.h"
#include "opd.h"
#include "adaptive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ single-process transport */
#ifndef OPD_HAVE_MPI
void opd_dist_init(int *argc, char ***argv) { (void)argc; (void)argv; }
void opd_dist_finalize(void) {}
int opd_dist_rank(void) { return 0; }
int opd_dist_size(void) { return 1; }
int opd_dist_have_mpi(void) { return 0; }
void opd_dist_abort(int rc) { exit(rc); }
void opd_dist_tree_combine(float *g, size_t n, double *d, int nd) { (void)g; (void)n; (void)d; (void)nd; }
void opd_dist_sum_long(long *v, int n) { (void)v; (void)n; }
void opd_dist_max_long(long *v, int n) { (void)v; (void)n; }
void opd_dist_max_double(double *v, int n) { (void)v; (void)n; }
void opd_dist_bcast(void *buf, size_t bytes) { (void)buf; (void)bytes; }
#endif

int opd_dist_check(int B, int mb, int R) {
    if (mb < 1 || mb > B || B % mb != 0)
        return opd_set_error("--micro-batch %d must divide the step's batch of %d sequences", mb, B);
    int M = B / mb;
    if (R == 1) return 0;
    if (R & (R - 1))
        return opd_set_error("%d ranks: the rank count must be a power of two (1, 2, 4, 8, ...) "
                             "so that each rank's micro-batches are a subtree of the fixed sum", R);
    if (M % R != 0)
        return opd_set_error("%d ranks do not divide the %d micro-batches of %d sequences "
                             "(batch %d / --micro-batch %d): use a --micro-batch that gives a "
                             "multiple of %d", R, M, mb, B, mb, R);
    return 0;
}

/* ------------------------------------------------------------- the tree */

int opd_grad_tree_depth(int n) {
    int d = 0;
    while ((1 << d) < n) d++;
    return d;
}

/* dst = dst + src (left + right), elementwise: the order is the tree's */
static void add_right(float *dst, const float *src, size_t n) {
    #pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) dst[i] = dst[i] + src[i];
}

int opd_grad_tree_sum(float *g, double *d, int lo, int n, size_t np, int nd,
                      opd_leaf_fn leaf, void *ctx, float **scratch, double *dscratch) {
    if (n == 1) return leaf(ctx, lo, g, d);
    int left = (n + 1) / 2;   /* ceil(n/2) leaves on the left, floor(n/2) on the right */
    int rc = opd_grad_tree_sum(g, d, lo, left, np, nd, leaf, ctx, scratch, dscratch);
    if (rc != 0) return rc;
    /* the right subtree into this level's buffer; its own levels below use
     * the next buffers (the left subtree is done with them) */
    rc = opd_grad_tree_sum(scratch[0], dscratch, lo + left, n - left, np, nd, leaf, ctx,
                           scratch + 1, dscratch + nd);
    if (rc != 0) return rc;
    add_right(g, scratch[0], np);
    for (int j = 0; j < nd; j++) d[j] = d[j] + dscratch[j];
    return 0;
}

void opd_mb_work_free(opd_mb_work *w) {
    opd_step_work_free(&w->w);
    for (int i = 0; i < w->n_mbs; i++) opd_step_batch_free(&w->mbs[i]);
    free(w->mbs);
    for (int i = 0; i < w->n_scratch; i++) free(w->scratch[i]);
    free(w->scratch);
    free(w->g);
    memset(w, 0, sizeof *w);
}

/* w's n batches and the tree's buffers for n leaves of np floats */
static void mb_work_reserve(opd_mb_work *w, int n, size_t np) {
    if (n > w->n_mbs) {
        w->mbs = realloc(w->mbs, (size_t)n * sizeof *w->mbs);
        if (!w->mbs) opd_dist_abort(3);
        memset(w->mbs + w->n_mbs, 0, (size_t)(n - w->n_mbs) * sizeof *w->mbs);
        w->n_mbs = n;
    }
    if (np != w->np) {
        for (int i = 0; i < w->n_scratch; i++) free(w->scratch[i]);
        free(w->scratch); free(w->g);
        w->scratch = NULL; w->g = NULL; w->n_scratch = 0;
        w->np = np;
    }
    if (!w->g) w->g = opd_malloc(np * sizeof(float));
    int depth = opd_grad_tree_depth(n);
    if (depth > w->n_scratch) {
        w->scratch = realloc(w->scratch, (size_t)depth * sizeof *w->scratch);
        if (!w->scratch) opd_dist_abort(3);
        for (int i = w->n_scratch; i < depth; i++) w->scratch[i] = opd_malloc(np * sizeof(float));
        w->n_scratch = depth;
    }
}

/* ------------------------------------------------------------- OPD step */

/* d of a leaf: the loss, then the reverse-KL sums (opd_step_kl_sums) */
#define D_LOSS 0
#define D_KL 1
#define N_D (1 + 1 + OPD_KL_BUCKETS)

typedef struct {
    opd_model *student, *teacher;
    const opd_distill_config *c;
    opd_mb_work *w;
    int first;                         /* this rank's first micro-batch */
    double norm;                       /* the whole step's normaliser */
    long kl_cnt[1 + OPD_KL_BUCKETS];   /* integers: their order does not matter */
    double sec_teacher, sec_student;
} distill_leaf_ctx;

/* micro-batch m's gradient: teacher score, student forward, loss with the
 * step's normaliser, backward; exactly the stages of opd_distill_step */
static int distill_leaf(void *ctx, int m, float *g, double *d) {
    distill_leaf_ctx *x = ctx;
    opd_step_work *w = &x->w->w;
    const opd_step_batch *sb = &x->w->mbs[m - x->first];
    const int V = x->student->cfg.vocab_size;
    opd_step_work_reserve(w, (size_t)sb->B * sb->trained_len, (size_t)sb->B * sb->S, V);
    double t0 = opd_time();
    opd_step_teacher_score(x->teacher, sb, x->c->teacher_temperature, w->t_logits);
    x->sec_teacher += opd_time() - t0;
    t0 = opd_time();
    opd_step_student_forward(x->student, sb, w->s_logits);
    memset(d, 0, N_D * sizeof *d);
    d[D_LOSS] = opd_step_loss_backward_norm(x->student, &x->c->loss, sb, w, x->norm);
    x->sec_student += opd_time() - t0;
    memcpy(g, x->student->grads_mem, x->student->num_params * sizeof(float));
    opd_step_kl_sums(sb, w->rkl, x->c->schedule.max_new_tokens, d + D_KL, x->kl_cnt);
    /* leaves run in micro-batch order: the sequences in batch order, as the
     * whole-batch step adds them */
    if (x->c->positions &&
        opd_position_diag_add(x->c->positions, w->s_logits, w->t_logits, w->rkl, sb->mask, sb->B,
                              sb->trained_len, V) != 0) return -1;
    return 0;
}

int opd_distill_grad_mb(opd_model *student, opd_model *teacher,
                        const opd_distill_config *c, const int *prompts,
                        const int *pad, const uint32_t *seq_ids, int B, int P, int mb,
                        long k, opd_mb_work *w, opd_step_stats *st) {
    const int V = student->cfg.vocab_size, R = opd_dist_size(), r = opd_dist_rank();
    if (teacher->cfg.vocab_size != V)
        return opd_set_error("teacher vocab %d != student vocab %d", teacher->cfg.vocab_size, V);
    if (opd_dist_check(B, mb, R) != 0) return -1;
    memset(st, 0, sizeof *st);
    st->step = k;
    const int n = B / mb / R, first = r * n;
    opd_model_alloc_grads(student);
    mb_work_reserve(w, n, student->num_params);
    if (opd_step_horizon(c, k, P, &student->cfg, &teacher->cfg, &st->horizon) != 0) return -1;

    /* 1. every rollout of this rank's run, compacted to its own trained_len;
     * their counts (integers) give the step's normaliser before any backward */
    double t0 = opd_time();
    long cnt[3] = {0, 0, 0};   /* tokens, truncated, the normaliser */
    long tl = 0;
    for (int i = 0; i < n; i++) {
        const int m = first + i;
        opd_step_stats s;
        memset(&s, 0, sizeof s);
        s.step = k;
        if (opd_step_rollout(student, c, k, prompts + (size_t)m * mb * P, pad + (size_t)m * mb,
                             seq_ids + (size_t)m * mb, mb, P, st->horizon, &w->w.roll) != 0 ||
            opd_step_compact(&w->w.roll, &w->mbs[i], &s) != 0) return -1;
        cnt[0] += s.tokens;
        cnt[1] += s.truncated;
        cnt[2] += (long)opd_loss_local_norm(c->loss.reduction, w->mbs[i].mask, mb, s.trained_len);
        if (s.trained_len > tl) tl = s.trained_len;
    }
    st->sec_rollout = opd_time() - t0;
    opd_dist_sum_long(cnt, 3);
    opd_dist_max_long(&tl, 1);
    st->tokens = cnt[0];
    st->truncated = (int)cnt[1];
    st->trained_len = (int)tl;

    /* 2. this rank's subtree of the gradient, then the ranks' top levels */
    distill_leaf_ctx x = {.student = student, .teacher = teacher, .c = c, .w = w,
                          .first = first, .norm = (double)cnt[2]};
    double d[N_D], *ds = opd_calloc((size_t)(w->n_scratch + 1) * N_D, sizeof *ds);
    int rc = opd_grad_tree_sum(w->g, d, first, n, student->num_params, N_D, distill_leaf, &x,
                               w->scratch, ds);
    free(ds);
    if (rc != 0) return -1;
    t0 = opd_time();
    opd_dist_tree_combine(w->g, student->num_params, d, N_D);
    opd_dist_sum_long(x.kl_cnt, 1 + OPD_KL_BUCKETS);
    if (c->positions && R > 1) {
        /* the ranks' sums, added in the tree's order like the gradient's */
        opd_position_diag *pd = c->positions;
        const int nb = pd->rkl.nbuckets;
        double *v = opd_malloc((size_t)4 * nb * sizeof *v);
        memcpy(v, pd->rkl.sum, nb * sizeof *v);
        memcpy(v + nb, pd->rkl.count, nb * sizeof *v);
        memcpy(v + 2 * nb, pd->overlap.sum, nb * sizeof *v);
        memcpy(v + 3 * nb, pd->overlap.count, nb * sizeof *v);
        opd_dist_tree_combine(NULL, 0, v, 4 * nb);
        opd_dist_bcast(v, (size_t)4 * nb * sizeof *v);
        memcpy(pd->rkl.sum, v, nb * sizeof *v);
        memcpy(pd->rkl.count, v + nb, nb * sizeof *v);
        memcpy(pd->overlap.sum, v + 2 * nb, nb * sizeof *v);
        memcpy(pd->overlap.count, v + 3 * nb, nb * sizeof *v);
        free(v);
    }
    st->sec_combine = opd_time() - t0;
    memcpy(student->grads_mem, w->g, student->num_params * sizeof(float));

    st->loss = (float)d[D_LOSS];
    opd_step_kl_means(d + D_KL, x.kl_cnt, st);
    st->sec_teacher = x.sec_teacher;
    st->sec_student = x.sec_student;
    return 0;
}

/* the per-phase seconds as the max over ranks, peak RSS max and summed */
static void gather_costs(opd_step_stats *st) {
    double sec[5] = {st->sec_rollout, st->sec_teacher, st->sec_student, st->sec_optim, st->sec_combine};
    opd_dist_max_double(sec, 5);
    st->sec_rollout = sec[0]; st->sec_teacher = sec[1]; st->sec_student = sec[2];
    st->sec_optim = sec[3]; st->sec_combine = sec[4];
    long rss = opd_peak_rss_kb(), rss_sum = rss;
    opd_dist_max_long(&rss, 1);
    opd_dist_sum_long(&rss_sum, 1);
    st->peak_rss_kb = rss;
    st->peak_rss_kb_sum = rss_sum;
}

int opd_distill_step_mb(opd_model *student, opd_model *teacher, opd_adamw *opt,
                        const opd_distill_config *c, const int *prompts,
                        const int *pad, const uint32_t *seq_ids, int B, int P, int mb,
                        long k, opd_mb_work *w, opd_step_stats *st) {
    if (opd_distill_grad_mb(student, teacher, c, prompts, pad, seq_ids, B, P, mb, k, w, st) != 0)
        return -1;
    /* every rank has the same gradient: the same clip + AdamW keeps the
     * weights identical everywhere */
    double t0 = opd_time();
    if (opd_step_update(student, opt, k, st) != 0) return -1;
    st->sec_optim = opd_time() - t0;
    gather_costs(st);
    return 0;
}

/* ------------------------------------------------------------- SFT step */

typedef struct {
    opd_model *m;
    const int *tokens, *pad;
    const float *loss_mask;
    int mb, S;
    double count;      /* the whole batch's masked-token count */
    int *targets;      /* (mb, S) */
    float *mask;       /* (mb, S) */
    float *dlogits;    /* (mb, S, V) */
} sft_leaf_ctx;

/* rows m*mb .. (m+1)*mb - 1, as opd_sft_step does the whole batch */
static int sft_leaf(void *ctx, int m, float *g, double *d) {
    sft_leaf_ctx *x = ctx;
    const int S = x->S, V = x->m->cfg.vocab_size;
    const int *tok = x->tokens + (size_t)m * x->mb * S;
    const float *lm = x->loss_mask + (size_t)m * x->mb * S;
    for (int b = 0; b < x->mb; b++)
        for (int t = 0; t < S; t++) {
            int i = b * S + t, last = t == S - 1;
            x->targets[i] = last ? 0 : tok[i + 1];
            x->mask[i] = last ? 0.0f : lm[i];
        }
    opd_model_forward(x->m, tok, x->pad + (size_t)m * x->mb, x->mb, S);
    d[0] = opd_cross_entropy_norm(x->m->acts.logits, x->targets, x->mask, x->mb, S, V, x->dlogits,
                                  x->count);
    opd_model_alloc_grads(x->m);
    opd_model_zero_grads(x->m);
    opd_model_backward(x->m, x->dlogits);
    memcpy(g, x->m->grads_mem, x->m->num_params * sizeof(float));
    return 0;
}

int opd_sft_step_mb(opd_model *m, opd_adamw *opt, const int *tokens, const int *pad,
                    const float *loss_mask, int B, int S, int mb, float *loss, float *grad_norm) {
    const int R = opd_dist_size(), r = opd_dist_rank(), V = m->cfg.vocab_size;
    if (opd_dist_check(B, mb, R) != 0) return -1;
    const int n = B / mb / R;
    /* every rank holds the whole batch: the count needs no message. The
     * mask is 0/1, so the count is an integer, whatever the order */
    double count = 0.0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < S - 1; t++) count += loss_mask[(size_t)b * S + t];
    opd_model_alloc_grads(m);
    opd_mb_work w;
    memset(&w, 0, sizeof w);
    mb_work_reserve(&w, n, m->num_params);
    sft_leaf_ctx x = {.m = m, .tokens = tokens, .pad = pad, .loss_mask = loss_mask, .mb = mb, .S = S,
                      .count = count};
    x.targets = opd_malloc(sizeof(int) * mb * S);
    x.mask = opd_malloc(sizeof(float) * mb * S);
    x.dlogits = opd_malloc(sizeof(float) * (size_t)mb * S * V);
    double d, *ds = opd_calloc((size_t)w.n_scratch + 1, sizeof *ds);
    opd_grad_tree_sum(w.g, &d, r * n, n, m->num_params, 1, sft_leaf, &x, w.scratch, ds);
    opd_dist_tree_combine(w.g, m->num_params, &d, 1);
    memcpy(m->grads_mem, w.g, m->num_params * sizeof(float));
    free(ds); free(x.targets); free(x.mask); free(x.dlogits);
    opd_mb_work_free(&w);
    *loss = (float)d;
    float gnorm = opd_grad_norm(m->grads_mem, m->num_params);
    if (!isfinite(*loss) || !isfinite(gnorm))
        return opd_set_error("SFT step: non-finite loss %g or gradient norm %g", *loss, gnorm);
    *grad_norm = opd_adamw_update(opt, m);
    return 0;
}
