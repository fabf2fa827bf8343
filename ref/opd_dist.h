/* opd_dist.h — a step over micro-batches, and data parallelism over ranks
 * (ref/SPEC.md section 9, "Ranks"; README "Running with MPI").
 * Part of the public API; include "opd.h".
 *
 * A step's global batch of B sequences is M = B / mb micro-batches of mb
 * sequences; micro-batch m is sequences m*mb .. (m+1)*mb - 1. Each one is
 * rolled out, scored and back-propagated on its own, with the loss divided
 * by the whole step's normaliser (an integer count, combined before any
 * backward). The step's gradient is the fixed balanced-halving tree over
 * the M partial gradients (opd_grad_tree_sum), so its bits depend on mb,
 * never on the number of ranks or threads. With M = 1 the step is
 * opd_distill_step bit for bit.
 *
 * Ranks: rank r of R holds the contiguous run of M/R micro-batches
 * r*M/R .. (r+1)*M/R - 1. With R a power of two dividing M that run is a
 * subtree of the tree; the rank sums it locally and the ranks add the top
 * log2(R) levels pairwise in the same order (opd_dist_tree_combine). */
#ifndef OPD_API_DIST_H
#define OPD_API_DIST_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------- the transport
 * ref/dist.c is the single process (rank 0 of 1); ref/dist_mpi.c, built
 * with ./configure --with-mpi, is MPI. Nothing here reduces floats in an
 * order MPI chooses. */
/* MPI_Init when the process was started by mpirun (else nothing: a plain
 * ./opd is one rank even in an MPI build). Errors are fatal (the job
 * stops, no rank waits forever). */
void opd_dist_init(int *argc, char ***argv);
void opd_dist_finalize(void);
int opd_dist_rank(void);
int opd_dist_size(void);
int opd_dist_have_mpi(void);
/* Stop every rank with exit code rc (MPI_Abort); exit(rc) on one rank. */
void opd_dist_abort(int rc) __attribute__((noreturn));
/* The top log2(R) levels of the tree: at level j rank r (a multiple of
 * 2^(j+1)) receives r + 2^j's g (n floats) and d (nd doubles) and adds
 * them as own + received (left + right); rank 0 then broadcasts the sum.
 * Every rank ends with the same bits. R must be a power of two. */
void opd_dist_tree_combine(float *g, size_t n, double *d, int nd);
/* v (n) = the sum / max over ranks, exactly (integers; max of doubles). */
void opd_dist_sum_long(long *v, int n);
void opd_dist_max_long(long *v, int n);
void opd_dist_max_double(double *v, int n);
/* rank 0's bytes to every rank */
void opd_dist_bcast(void *buf, size_t bytes);

/* ---------------------------------------------------- micro-batches */
/* 0 when R ranks can run a batch of B in micro-batches of mb (mb | B, R = 1,
 * or R a power of two dividing M = B / mb); else -1 with the reason. */
int opd_dist_check(int B, int mb, int R);

/* The balanced-halving tree over leaves lo .. lo+n-1:
 *   tree(lo, n) = n == 1 ? leaf(lo)
 *               : tree(lo, ceil(n/2)) + tree(lo + ceil(n/2), floor(n/2))
 * elementwise in fp32 (left + right), with nd doubles of statistics carried
 * the same way. leaf(ctx, m, g, d) writes micro-batch m's gradient g (np)
 * and statistics d (nd). Leaves are computed left to right; the memory is
 * one gradient buffer per tree level below the root, ceil(log2 n) of them
 * (scratch), plus g. Returns 0, or the first leaf's non-zero return. */
typedef int (*opd_leaf_fn)(void *ctx, int m, float *g, double *d);
int opd_grad_tree_sum(float *g, double *d, int lo, int n, size_t np, int nd,
                      opd_leaf_fn leaf, void *ctx, float **scratch, double *dscratch);
/* ceil(log2 n): the scratch buffers opd_grad_tree_sum needs for n leaves */
int opd_grad_tree_depth(int n);

/* Work of the micro-batch step, kept across steps. */
typedef struct {
    opd_step_work w;           /* one micro-batch's buffers */
    opd_step_batch *mbs;       /* (M / R) compacted rollouts of this rank */
    int n_mbs;
    float *g, **scratch;       /* the tree's buffers (num_params each) */
    int n_scratch;
    size_t np;
} opd_mb_work;
void opd_mb_work_free(opd_mb_work *w);

/* One OPD step over micro-batches of mb sequences, on this rank's run of
 * them, combined over the ranks (opd_dist_size()); then every rank runs the
 * same clip + AdamW. st: loss, KL and counts of the whole step; seconds the
 * max over ranks; sec_combine the ranks' combination; peak_rss_kb the max
 * and peak_rss_kb_sum the sum over ranks. mb == B on one rank is
 * opd_distill_step. */
int opd_distill_step_mb(opd_model *student, opd_model *teacher, opd_adamw *opt,
                        const opd_distill_config *c, const int *prompts,
                        const int *pad, const uint32_t *seq_ids, int B, int P, int mb,
                        long k, opd_mb_work *w, opd_step_stats *st);
/* The step's gradient only, left in student->grads_mem (st filled but for
 * grad_norm, lr and sec_optim): opd_distill_step_mb without the update. */
int opd_distill_grad_mb(opd_model *student, opd_model *teacher,
                        const opd_distill_config *c, const int *prompts,
                        const int *pad, const uint32_t *seq_ids, int B, int P, int mb,
                        long k, opd_mb_work *w, opd_step_stats *st);
/* opd_sft_step over micro-batches of mb rows of the (B, S) batch, which
 * every rank holds whole (its token count is the normaliser); mb == B is
 * opd_sft_step bit for bit. */
int opd_sft_step_mb(opd_model *m, opd_adamw *opt, const int *tokens, const int *pad,
                    const float *loss_mask, int B, int S, int mb, float *loss, float *grad_norm);

#ifdef __cplusplus
}
#endif
#endif /* OPD_API_DIST_H */
