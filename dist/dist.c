/* dist: MPI behind a small interface (see dist.h).  KD_WITH_MPI is set by the
 * Makefile when Open MPI's pkg-config `ompi` is found and MPI is not 0. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"

int dist_launched(void)
{
    /* Open MPI's launcher sets the first; PMIx and other launchers the others */
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

#ifdef KD_WITH_MPI
#include <mpi.h>

struct dist_comm {
    int rank, size;
};

int dist_built_with_mpi(void) { return 1; }

static int mpi_fail(kd_err *e, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, msg, &n) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "code %d", rc);
    return kd_err_set(e, KD_ERUNTIME, "MPI: %s failed: %s", what, msg);
}

dist_comm *dist_open(int *argc, char ***argv, kd_err *e)
{
    e->code = KD_OK;
    if (!dist_launched())
        return NULL;
    /* a rank waiting in a collective yields its core instead of spinning:
     * rank 0's helper thread and ranks sharing cores leave them to the ranks
     * computing (measured on a loaded 2-core host: data-parallel epochs 2x
     * faster); the user's own setting wins */
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
    int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
        mpi_fail(e, rc, "MPI_Init_thread");
        return NULL;
    }
    /* errors come back as codes, so they reach kd_err instead of aborting */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    dist_comm *d = kd_calloc(1, sizeof *d);
    if (!d || provided < MPI_THREAD_SERIALIZED) {
        kd_free(d);
        kd_err_set(e, d ? KD_ERUNTIME : KD_ENOMEM,
                   d ? "MPI: this MPI library cannot be called from a helper thread "
                       "(MPI_THREAD_SERIALIZED not provided)"
                     : "out of memory");
        MPI_Finalize();
        return NULL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return d;
}

void dist_close(dist_comm *d)
{
    if (!d)
        return;
    kd_free(d);
    MPI_Finalize();
}

void dist_abort(dist_comm *d, int code)
{
    if (d)
        MPI_Abort(MPI_COMM_WORLD, code);
}

int dist_rank(const dist_comm *d) { return d ? d->rank : 0; }
int dist_size(const dist_comm *d) { return d ? d->size : 1; }

static int too_big(size_t n, kd_err *e)
{
    return n > INT_MAX ? kd_err_set(e, KD_ERUNTIME, "MPI: a message of %zu bytes (over 2 GiB)", n)
                       : KD_OK;
}

int dist_send(dist_comm *d, int to, int tag, const void *p, size_t n, kd_err *e)
{
    if (!d)
        return kd_err_set(e, KD_ERUNTIME, "MPI: send in a one-process run");
    if (too_big(n, e))
        return e->code;
    int rc = MPI_Send(p, (int)n, MPI_BYTE, to, tag, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Send");
}

int dist_recv(dist_comm *d, int from, int tag, void **p, size_t *n, int *src, int *tag_out,
              kd_err *e)
{
    if (!d)
        return kd_err_set(e, KD_ERUNTIME, "MPI: receive in a one-process run");
    MPI_Status s;
    int flag = 0, rc, count;
    /* Open MPI's blocking receive spins a core; a waiting rank 0 must leave
     * it to the rank computing beside it */
    const struct timespec nap = {0, 500000};
    while ((rc = MPI_Iprobe(from < 0 ? MPI_ANY_SOURCE : from, tag < 0 ? MPI_ANY_TAG : tag,
                            MPI_COMM_WORLD, &flag, &s)) == MPI_SUCCESS && !flag)
        nanosleep(&nap, NULL);
    if (rc != MPI_SUCCESS)
        return mpi_fail(e, rc, "MPI_Iprobe");
    MPI_Get_count(&s, MPI_BYTE, &count);
    void *buf = kd_malloc((size_t)count);
    if (!buf)
        return kd_err_set(e, KD_ENOMEM, "out of memory for a %d-byte message", count);
    rc = MPI_Recv(buf, count, MPI_BYTE, s.MPI_SOURCE, s.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        kd_free(buf);
        return mpi_fail(e, rc, "MPI_Recv");
    }
    *p = buf;
    *n = (size_t)count;
    if (src)
        *src = s.MPI_SOURCE;
    if (tag_out)
        *tag_out = s.MPI_TAG;
    return KD_OK;
}

int dist_probe(dist_comm *d, int from, int tag, int *ready, kd_err *e)
{
    *ready = 0;
    if (!d)
        return KD_OK;
    int rc = MPI_Iprobe(from < 0 ? MPI_ANY_SOURCE : from, tag < 0 ? MPI_ANY_TAG : tag,
                        MPI_COMM_WORLD, ready, MPI_STATUS_IGNORE);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Iprobe");
}

int dist_bcast(dist_comm *d, void **p, size_t *n, int root, kd_err *e)
{
    if (!d)
        return KD_OK;
    unsigned long long len = d->rank == root ? (unsigned long long)*n : 0;
    /* the length is where the others wait for root (its teacher, say):
     * tested with naps, as dist_recv does, rather than MPI_Bcast's spin */
    MPI_Request rq;
    const struct timespec nap = {0, 500000};
    int done = 0, rc = MPI_Ibcast(&len, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD, &rq);
    while (rc == MPI_SUCCESS && (rc = MPI_Test(&rq, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS &&
           !done)
        nanosleep(&nap, NULL);
    if (rc != MPI_SUCCESS)
        return mpi_fail(e, rc, "MPI_Ibcast");
    if (too_big((size_t)len, e))
        return e->code;
    if (d->rank != root) {
        *n = (size_t)len;
        if (!(*p = kd_malloc(*n)))
            return kd_err_set(e, KD_ENOMEM, "out of memory for a %zu-byte broadcast", *n);
    }
    rc = MPI_Bcast(*p, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Bcast");
}

int dist_bcast_floats(dist_comm *d, float *x, size_t n, int root, kd_err *e)
{
    if (!d)
        return KD_OK;
    if (too_big(n, e))
        return e->code;
    int rc = MPI_Bcast(x, (int)n, MPI_FLOAT, root, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Bcast");
}

int dist_sum_fast(dist_comm *d, float *x, size_t n, kd_err *e)
{
    if (!d || d->size == 1)
        return KD_OK;
    if (too_big(n, e))
        return e->code;
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Allreduce");
}

int dist_sum_ordered(dist_comm *d, float *x, size_t n, kd_err *e)
{
    if (!d || d->size == 1)
        return KD_OK;
    if (too_big(n * (size_t)d->size, e))
        return e->code;
    float *all = NULL;
    if (d->rank == 0 && !(all = kd_malloc(n * (size_t)d->size * sizeof *all)))
        return kd_err_set(e, KD_ENOMEM, "out of memory for the gradient gather");
    int rc = MPI_Gather(x, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS && d->rank == 0) {
        /* rank order, element by element: the sum rank 0 + 1 + ... every time */
        memcpy(x, all, n * sizeof *x);
        for (int r = 1; r < d->size; r++) {
            const float *y = all + (size_t)r * n;
            for (size_t i = 0; i < n; i++)
                x[i] += y[i];
        }
    }
    kd_free(all);
    if (rc != MPI_SUCCESS)
        return mpi_fail(e, rc, "MPI_Gather");
    rc = MPI_Bcast(x, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Bcast");
}

int dist_sum_int(dist_comm *d, int *x, kd_err *e)
{
    if (!d || d->size == 1)
        return KD_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Allreduce");
}

int dist_sum_double(dist_comm *d, double *x, size_t n, kd_err *e)
{
    if (!d || d->size == 1)
        return KD_OK;
    if (too_big(n, e))
        return e->code;
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Allreduce");
}

int dist_barrier(dist_comm *d, kd_err *e)
{
    if (!d)
        return KD_OK;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KD_OK : mpi_fail(e, rc, "MPI_Barrier");
}

#else /* ---- one process: no MPI ------------------------------------------------ */

int dist_built_with_mpi(void) { return 0; }

dist_comm *dist_open(int *argc, char ***argv, kd_err *e)
{
    (void)argc;
    (void)argv;
    e->code = KD_OK;
    const char *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (dist_launched() && !(size && !strcmp(size, "1")))
        kd_err_set(e, KD_ERUNTIME, "started by mpirun, but this kdbench was built without MPI "
                   "(install libopenmpi-dev and rebuild, or run it alone)");
    return NULL;
}

void dist_close(dist_comm *d) { (void)d; }
void dist_abort(dist_comm *d, int code) { (void)d; (void)code; }
int dist_rank(const dist_comm *d) { (void)d; return 0; }
int dist_size(const dist_comm *d) { (void)d; return 1; }

int dist_send(dist_comm *d, int to, int tag, const void *p, size_t n, kd_err *e)
{
    (void)d, (void)to, (void)tag, (void)p, (void)n;
    return kd_err_set(e, KD_ERUNTIME, "MPI: send in a one-process run");
}

int dist_recv(dist_comm *d, int from, int tag, void **p, size_t *n, int *src, int *tag_out,
              kd_err *e)
{
    (void)d, (void)from, (void)tag, (void)p, (void)n, (void)src, (void)tag_out;
    return kd_err_set(e, KD_ERUNTIME, "MPI: receive in a one-process run");
}

int dist_probe(dist_comm *d, int from, int tag, int *ready, kd_err *e)
{
    (void)d, (void)from, (void)tag, (void)e;
    *ready = 0;
    return KD_OK;
}

int dist_bcast(dist_comm *d, void **p, size_t *n, int root, kd_err *e)
{
    (void)d, (void)p, (void)n, (void)root, (void)e;
    return KD_OK;
}

int dist_bcast_floats(dist_comm *d, float *x, size_t n, int root, kd_err *e)
{
    (void)d, (void)x, (void)n, (void)root, (void)e;
    return KD_OK;
}

int dist_sum_fast(dist_comm *d, float *x, size_t n, kd_err *e)
{
    (void)d, (void)x, (void)n, (void)e;
    return KD_OK;
}

int dist_sum_ordered(dist_comm *d, float *x, size_t n, kd_err *e)
{
    (void)d, (void)x, (void)n, (void)e;
    return KD_OK;
}

int dist_sum_int(dist_comm *d, int *x, kd_err *e)
{
    (void)d, (void)x, (void)e;
    return KD_OK;
}

int dist_sum_double(dist_comm *d, double *x, size_t n, kd_err *e)
{
    (void)d, (void)x, (void)n, (void)e;
    return KD_OK;
}

int dist_barrier(dist_comm *d, kd_err *e)
{
    (void)d, (void)e;
    return KD_OK;
}
#endif
