/* dist_mpi.c — the transport of ref/opd_dist.h over MPI (./configure
 * --with-mpi). Floats are only ever added by opd_dist_tree_combine, in the
 * tree's order with MPI_Send / MPI_Recv, and copied by MPI_Bcast: no
 * MPI_Reduce or MPI_Allreduce on them (MPI assumes those associative).
 * Integers are summed by MPI_Allreduce, exactly in any order. */
#include "config.h"
#include "opd.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_on;            /* MPI_Init was called */
static int g_rank, g_size = 1;

void opd_dist_init(int *argc, char ***argv) {
    /* only under a launcher: a plain ./opd stays one process without MPI */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_SIZE")) return;
    MPI_Init(argc, argv);
    /* an error in any call stops the job: no rank waits forever */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_on = 1;
}

void opd_dist_finalize(void) {
    if (g_on) MPI_Finalize();
    g_on = 0;
}

int opd_dist_rank(void) { return g_rank; }
int opd_dist_size(void) { return g_size; }
int opd_dist_have_mpi(void) { return 1; }

void opd_dist_abort(int rc) {
    fflush(stdout);
    fflush(stderr);
    if (g_on && g_size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    exit(rc);
}

/* MPI counts are int: large buffers go in chunks */
#define CHUNK ((size_t)1 << 28)

static void send_floats(const float *p, size_t n, int to) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Send(p + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, to, 1, MPI_COMM_WORLD);
}

static void recv_floats(float *p, size_t n, int from) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Recv(p + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, from, 1, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
}

void opd_dist_tree_combine(float *g, size_t n, double *d, int nd) {
    if (g_size == 1) return;
    float *right = opd_malloc((n ? n : 1) * sizeof *right);
    double *dr = opd_malloc((size_t)(nd ? nd : 1) * sizeof *dr);
    /* level j: ranks r and r + 2^j hold adjacent subtrees, r's on the left */
    for (int step = 1; step < g_size; step *= 2) {
        if (g_rank % (2 * step) == 0) {
            recv_floats(right, n, g_rank + step);
            MPI_Recv(dr, nd, MPI_DOUBLE, g_rank + step, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            for (size_t i = 0; i < n; i++) g[i] = g[i] + right[i];
            for (int j = 0; j < nd; j++) d[j] = d[j] + dr[j];
        } else {
            send_floats(g, n, g_rank - step);
            MPI_Send(d, nd, MPI_DOUBLE, g_rank - step, 2, MPI_COMM_WORLD);
            break;
        }
    }
    free(right);
    free(dr);
    /* the root's sum, bit for bit, to every rank */
    opd_dist_bcast(g, n * sizeof *g);
    opd_dist_bcast(d, (size_t)nd * sizeof *d);
}

void opd_dist_sum_long(long *v, int n) {
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
}

void opd_dist_max_long(long *v, int n) {
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
}

/* a max is exact in any order */
void opd_dist_max_double(double *v, int n) {
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

void opd_dist_bcast(void *buf, size_t bytes) {
    if (g_size == 1) return;
    char *p = buf;
    for (size_t o = 0; o < bytes; o += CHUNK)
        MPI_Bcast(p + o, (int)(bytes - o < CHUNK ? bytes - o : CHUNK), MPI_BYTE, 0, MPI_COMM_WORLD);
}
