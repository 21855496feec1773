/* A rank's side of an MPI run (spread.c hands out the jobs): a worker's
 * context — the data, the teacher, a private scratch folder laid out like a
 * run directory — and one job run in it, its files, curves and log lines
 * packed into one message for rank 0.  Rank 0 runs jobs through the same
 * code, on a context that borrows its data and teacher. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spread.h"

/* ---- log lines that carry the rank --------------------------------------- */
typedef struct {
    FILE *to;
    int rank, bol; /* at the beginning of a line */
} prefix_sink;

static ssize_t prefix_write(void *c, const char *buf, size_t n)
{
    prefix_sink *p = c;
    for (size_t i = 0; i < n; i++) {
        if (p->bol)
            fprintf(p->to, "[rank %d] ", p->rank);
        fputc(buf[i], p->to);
        p->bol = buf[i] == '\n';
    }
    if (n && buf[n - 1] == '\n')
        fflush(p->to);
    return (ssize_t)n;
}

static int prefix_close(void *c)
{
    kd_free(c);
    return 0;
}

/* A stream that writes to `to` with "[rank N] " before every line. */
static FILE *prefix_open(FILE *to, int rank)
{
    prefix_sink *p = kd_calloc(1, sizeof *p);
    if (!p)
        return NULL;
    *p = (prefix_sink){.to = to, .rank = rank, .bol = 1};
    cookie_io_functions_t io = {.write = prefix_write, .close = prefix_close};
    FILE *f = fopencookie(p, "w", io);
    if (!f)
        kd_free(p);
    else
        setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

/* ---- the worker's context --------------------------------------------------- */
int pl_worker_open(pl_worker *w, const exp_spec *spec, const pipeline_opts *o, int rank,
                   run_ctx *lend, kd_err *e)
{
    memset(w, 0, sizeof *w);
    w->opts = *o;
    w->opts.quiet = lend ? o->quiet : 1; /* the progress display stays on rank 0 */
    w->opts.out_dir = NULL;
    w->r = (run_ctx){.spec = spec, .o = &w->opts, .lock_fd = -1, .rank = rank};
    const char *tmp = getenv("TMPDIR");
    if (pl_pathf(e, w->r.dir, sizeof w->r.dir, "%s/kdbench-rank%d-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp", rank))
        return e->code;
    if (!mkdtemp(w->r.dir))
        return kd_err_set(e, KD_EIO, "%s: cannot create a scratch folder", w->r.dir);
    w->made = 1;
    if (!o->quiet)
        w->r.log.echo = w->echo = prefix_open(o->progress ? o->progress : stderr, rank);
    if (lend) {
        w->r.borrowed = 1;
        w->r.train = lend->train;
        w->r.val = lend->val;
        w->r.test = lend->test;
        w->r.teacher = lend->teacher;
        w->r.threads = lend->threads;
        if (lend->tl.ranks)
            w->t = lend->tl.ranks[0];
        return KD_OK;
    }
    w->r.threads = nn_set_threads(spec->threads);
    w->t.start = pl_proc_start();
    int rc = pipeline_load_data(&spec->data, spec->seed, &w->r.train, &w->r.val, &w->r.test, e);
    w->t.data = pl_wall();
    return rc;
}

int pl_worker_teacher(pl_worker *w, const void *bytes, size_t n, kd_err *e)
{
    char path[PL_PATH];
    pl_path(&w->r, "teacher.kdm", path, sizeof path);
    int rc = kd_write_atomic(path, bytes, n, e);
    if (rc == KD_OK && !(w->r.teacher = compress_model_load(path, e)))
        rc = e->code;
    unlink(path);
    w->t.teacher = pl_wall();
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void pl_worker_close(pl_worker *w)
{
    run_ctx *r = &w->r;
    if (!r->borrowed) {
        nn_model_free(r->teacher);
        data_set_free(&r->train);
        data_set_free(&r->val);
        data_set_free(&r->test);
    }
    kd_afree(r->tlogits);
    for (int i = 0; i < r->ncurves; i++)
        kd_free(r->curves[i].hist);
    kd_free(r->curves);
    if (w->echo)
        fclose(w->echo);
    if (w->made)
        nftw(r->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    memset(w, 0, sizeof *w);
}

/* ---- files in messages ------------------------------------------------------- */
void pl_pack_file(kd_buf *b, const char *name, const uint8_t *p, size_t n)
{
    kd_buf_str(b, name);
    kd_buf_u64(b, n);
    kd_buf_put(b, p, n);
}

int pl_unpack_files(kd_rd *rd, const char *dir, int count, kd_err *e)
{
    for (int i = 0; i < count; i++) {
        char name[PL_PATH / 2], path[PL_PATH + PL_PATH / 2];
        kd_rd_str(rd, name, sizeof name);
        uint64_t n = kd_rd_u64(rd);
        if (!rd->ok || n > rd->len - rd->pos || strstr(name, ".."))
            return kd_err_set(e, KD_EFORMAT, "MPI: a malformed file in a job message");
        int rc = pl_pathf(e, path, sizeof path, "%s/%s", dir, name);
        char *slash = rc == KD_OK ? strrchr(path, '/') : NULL;
        if (slash) {
            *slash = 0;
            rc = kd_mkdirs(path, e);
            *slash = '/';
        }
        if (rc == KD_OK)
            rc = kd_write_atomic(path, rd->p + rd->pos, (size_t)n, e);
        if (rc != KD_OK)
            return rc;
        rd->pos += (size_t)n;
    }
    return KD_OK;
}

/* ---- one job -------------------------------------------------------------------- */
/* The result message: job, status and error, own files, curves, measurement,
 * outcome, log text. */
static void pack_result(pl_worker *w, const pl_job *j, int job, int rc, const kd_err *e,
                        const measure_result *mr, const pl_job_outcome *o, const char *log,
                        size_t loglen, kd_buf *b)
{
    run_ctx *r = &w->r;
    kd_buf_u32(b, (uint32_t)job);
    kd_buf_u32(b, (uint32_t)rc);
    kd_buf_u32(b, (uint32_t)e->line);
    kd_buf_u32(b, (uint32_t)e->col);
    kd_buf_str(b, e->file);
    kd_buf_str(b, e->msg);
    char names[3][PL_PATH / 2], path[PL_PATH + PL_PATH / 2];
    int n = rc == KD_OK ? pl_job_files(r, j, 1, names) : 0, have = 0;
    uint8_t *bytes[3] = {0};
    size_t len[3] = {0};
    kd_err ignore;
    for (int i = 0; i < n; i++) {
        pl_path(r, names[i], path, sizeof path);
        if (access(path, R_OK) == 0 &&
            kd_read_file(path, (size_t)1 << 31, &bytes[i], &len[i], &ignore) == KD_OK)
            have++;
    }
    kd_buf_u32(b, (uint32_t)have);
    for (int i = 0; i < n; i++)
        if (bytes[i]) {
            pl_pack_file(b, names[i], bytes[i], len[i]);
            kd_free(bytes[i]);
            pl_path(r, names[i], path, sizeof path);
            unlink(path);
        }
    kd_buf_u32(b, (uint32_t)r->ncurves);
    for (int c = 0; c < r->ncurves; c++) {
        kd_buf_str(b, r->curves[c].model);
        kd_buf_u64(b, r->curves[c].seed);
        kd_buf_u32(b, (uint32_t)r->curves[c].n);
        kd_buf_put(b, r->curves[c].hist, (size_t)r->curves[c].n * sizeof(train_epoch));
        kd_free(r->curves[c].hist);
    }
    kd_free(r->curves);
    r->curves = NULL;
    r->ncurves = 0;
    kd_buf_u32(b, mr != NULL);
    if (mr)
        kd_buf_put(b, mr, sizeof *mr);
    kd_buf_u32(b, (uint32_t)o->ok);
    kd_buf_u32(b, (uint32_t)o->epochs);
    kd_buf_put(b, &o->acc, sizeof o->acc);
    kd_buf_put(b, &o->train_s, sizeof o->train_s);
    kd_buf_u64(b, loglen);
    kd_buf_put(b, log, loglen);
}

/* The job's model, loaded from its file and measured as its row is. */
static int measure_job(pl_worker *w, const pl_job *j, measure_result *mr, kd_err *e)
{
    char names[3][PL_PATH / 2], path[PL_PATH + PL_PATH / 2];
    pl_job_files(&w->r, j, 1, names); /* the model file comes first */
    pl_path(&w->r, names[0], path, sizeof path);
    nn_model *m = compress_model_load(path, e);
    int rc = m ? measure_model(m, &w->r.test, path, NULL, mr, e) : e->code;
    nn_model_free(m);
    return rc;
}

int pl_worker_run(pl_worker *w, const run_ctx *plan, int job, int resume, kd_buf *out)
{
    run_ctx *r = &w->r;
    const pl_job *j = &plan->jobs[job];
    kd_err e = {0};
    char *log = NULL, names[3][PL_PATH / 2], path[PL_PATH + PL_PATH / 2];
    size_t loglen = 0;
    w->opts.resume = resume;
    r->log.file = open_memstream(&log, &loglen);
    double t0 = kd_now(), wall0 = pl_wall();
    int rc = r->log.file ? KD_OK : kd_err_set(&e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK && w->failed.code) { /* this rank could not load its data or teacher */
        e = w->failed;
        rc = e.code;
    }
    pl_job_outcome jo = {0};
    if (rc == KD_OK)
        rc = pl_job_run(r, j, &jo, &e);
    /* a first seed's model is measured here too, so rank 0 does not measure
     * every model one after another */
    measure_result mr, *pm = NULL;
    if (rc == KD_OK && j->k == 0 && j->kind != PL_JOB_SENSITIVITY &&
        (rc = measure_job(w, j, &mr, &e)) == KD_OK)
        pm = &mr;
    if (r->log.file)
        fclose(r->log.file);
    r->log.file = NULL;
    pack_result(w, j, job, rc, &e, pm, &jo, log ? log : "", log ? loglen : 0, out);
    free(log);
    /* the timeline: how long the job took here, when it began, this rank's setup */
    const double times[] = {kd_now() - t0, wall0, w->t.start, w->t.data, w->t.teacher};
    kd_buf_put(out, times, sizeof times);
    /* the scratch folder keeps nothing between jobs */
    int n = pl_job_files(plan, j, 0, names);
    for (int i = 0; i < n; i++) {
        pl_path(r, names[i], path, sizeof path);
        unlink(path);
    }
    return out->failed ? KD_ENOMEM : KD_OK;
}
