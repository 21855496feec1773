/* An experiment on MPI ranks.  Rank 0 owns the run directory: it trains (or
 * takes from the cache) the teacher, broadcasts it, then hands the jobs
 * (jobs.c) to whichever rank is free — itself included, on its main thread,
 * while a helper thread does all the MPI calls — in dependency order.  Each
 * job's files, curves and log lines come back in one message; rank 0 writes
 * the files where one process would, and the stages then run as in one
 * process, finding every job done (students.c, compress_stage.c), so
 * results.json, metrics.jsonl and the report are written by the same code.
 *
 * Protocol: a broadcast [i32 status][teacher model bytes]; then per job
 * JOB (0 -> k: job, resume, files) and DONE (k -> 0: job, status, error,
 * files, curves, log); at the end STOP (0 -> k: the run's status). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spread.h"

enum { TAG_JOB = 11, TAG_DONE = 12, TAG_STOP = 13 };

typedef struct {
    run_ctx *r;
    dist_comm *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int *busy;   /* per rank: its job, or -1 */
    int running, ndone;
    kd_err err;  /* the first failure (err.code != 0) */
    int failed_rank;
} spread;

/* ---- the job table (under s->mu) ---------------------------------------------- */
static int stopping(const spread *s)
{
    return s->err.code != KD_OK || (s->r->o->cancel && *s->r->o->cancel);
}

/* The ready job of highest priority (jobs.c), the first in the list on a tie. */
static int next_ready(const spread *s)
{
    if (stopping(s))
        return -1;
    const run_ctx *r = s->r;
    int best = -1;
    for (int i = 0; i < r->npj; i++)
        if (r->jobs[i].state == PL_JOB_TODO &&
            (r->jobs[i].dep < 0 || r->jobs[r->jobs[i].dep].state == PL_JOB_DONE) &&
            (best < 0 || r->jobs[i].prio > r->jobs[best].prio))
            best = i;
    return best;
}

static int phase_over(const spread *s)
{
    return s->ndone == s->r->npj || (stopping(s) && s->running == 0);
}

static void take(spread *s, int job, int rank)
{
    char name[160];
    s->r->jobs[job].state = PL_JOB_RUNNING;
    s->r->jobs[job].rank = rank;
    s->r->jobs[job].t0 = kd_now();
    s->busy[rank] = job;
    s->running++;
    pl_job_name(s->r, &s->r->jobs[job], name, sizeof name);
    kd_logf(&s->r->log, "[job %d/%d] %s: rank %d", job + 1, s->r->npj, name, rank);
}

/* ---- messages ------------------------------------------------------------------- */
/* JOB: the job, whether it resumes, its input files (its source model; with
 * --resume a student's own checkpoint, model and adapter found here). */
static void job_message(const run_ctx *r, int job, kd_buf *b)
{
    const pl_job *j = &r->jobs[job];
    char in[3][PL_PATH / 2], own[3][PL_PATH / 2], path[PL_PATH + PL_PATH / 2];
    const char *names[6];
    int n = 0, nin = pl_job_files(r, j, 0, in), resume = 0;
    for (int i = 0; i < nin; i++)
        names[n++] = in[i];
    if (r->o->resume && j->kind == PL_JOB_STUDENT) {
        int nown = pl_job_files(r, j, 1, own);
        for (int i = 0; i < nown; i++) {
            pl_path(r, own[i], path, sizeof path);
            if (access(path, R_OK) == 0) {
                names[n++] = own[i];
                resume = 1;
            }
        }
    }
    uint8_t *bytes[6] = {0};
    size_t len[6] = {0};
    int have = 0;
    kd_err ignore;
    for (int i = 0; i < n; i++) {
        pl_path(r, names[i], path, sizeof path);
        have += kd_read_file(path, (size_t)1 << 31, &bytes[i], &len[i], &ignore) == KD_OK;
    }
    kd_buf_u32(b, (uint32_t)job);
    kd_buf_u32(b, (uint32_t)resume);
    kd_buf_u32(b, (uint32_t)have);
    for (int i = 0; i < n; i++)
        if (bytes[i]) {
            pl_pack_file(b, names[i], bytes[i], len[i]);
            kd_free(bytes[i]);
        }
}

/* Appends a job's log text to run.log, each line as "[rank N] line". */
static void log_lines(run_ctx *r, int rank, const char *p, size_t n)
{
    if (!r->log.file)
        return;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        fprintf(r->log.file, "[rank %d] %.*s\n", rank, (int)k, p);
        p += k + (nl != NULL);
        n -= k + (nl != NULL);
    }
    fflush(r->log.file);
}

static int read_curves(kd_rd *rd, pl_job *j)
{
    int n = (int)kd_rd_u32(rd);
    if (!rd->ok || n < 0 || n > 4096 || !(j->curves = kd_calloc((size_t)n + 1, sizeof *j->curves)))
        return KD_EFORMAT;
    for (int c = 0; c < n; c++) {
        pl_curve *cv = &j->curves[c];
        kd_rd_str(rd, cv->model, sizeof cv->model);
        cv->seed = kd_rd_u64(rd);
        uint32_t h = kd_rd_u32(rd);
        if (!rd->ok || h > 100000 || !(cv->hist = kd_calloc((size_t)h + 1, sizeof *cv->hist)))
            return KD_EFORMAT;
        j->ncurves = c + 1;
        cv->n = (int)h;
        kd_rd_get(rd, cv->hist, h * sizeof *cv->hist);
    }
    return rd->ok ? KD_OK : KD_EFORMAT;
}

/* DONE from `rank`: the files into the run directory, the job marked done
 * (or the run failing with its error). */
static void deliver(spread *s, int rank, const uint8_t *p, size_t n)
{
    run_ctx *r = s->r;
    kd_rd rd = {.p = p, .len = n, .ok = 1};
    kd_err je = {0}, fe = {0};
    int job = (int)kd_rd_u32(&rd), rc = (int)kd_rd_u32(&rd);
    je.line = (int)kd_rd_u32(&rd);
    je.col = (int)kd_rd_u32(&rd);
    kd_rd_str(&rd, je.file, sizeof je.file);
    kd_rd_str(&rd, je.msg, sizeof je.msg);
    je.code = rc;
    int nfiles = (int)kd_rd_u32(&rd);
    int bad = !rd.ok || job < 0 || job >= r->npj || r->jobs[job].rank != rank;
    if (!bad && rc == KD_OK)
        bad = pl_unpack_files(&rd, r->dir, nfiles, &fe) != KD_OK;
    pthread_mutex_lock(&s->mu);
    pl_job *j = bad ? NULL : &r->jobs[job];
    /* a failed job's curves and figures are read past (its log lines matter) */
    pl_job failed = {0}, *into = j && rc == KD_OK ? j : &failed;
    if (j && read_curves(&rd, into) != KD_OK)
        bad = 1;
    if (j && !bad && (into->measured = (int)kd_rd_u32(&rd)) != 0)
        kd_rd_get(&rd, &into->mr, sizeof into->mr);
    if (j && !bad) {
        into->out.ok = (int)kd_rd_u32(&rd);
        into->out.epochs = (int)kd_rd_u32(&rd);
        kd_rd_get(&rd, &into->out.acc, sizeof into->out.acc);
        kd_rd_get(&rd, &into->out.train_s, sizeof into->out.train_s);
    }
    for (int c = 0; c < failed.ncurves; c++)
        kd_free(failed.curves[c].hist);
    kd_free(failed.curves);
    bad |= !rd.ok;
    uint64_t loglen = rd.ok ? kd_rd_u64(&rd) : 0;
    if (!bad && rd.ok && loglen <= rd.len - rd.pos)
        log_lines(r, rank, (const char *)rd.p + rd.pos, (size_t)loglen);
    rd.pos += rd.ok && loglen <= rd.len - rd.pos ? (size_t)loglen : 0;
    double times[5] = {0}; /* secs, job start, start, data, teacher (timeline.c) */
    if (rd.ok && !bad)
        kd_rd_get(&rd, times, sizeof times);
    bad |= !rd.ok;
    const double secs = times[0];
    if (bad && !s->err.code) {
        s->err = fe.code ? fe : je;
        if (!fe.code)
            kd_err_set(&s->err, KD_ERUNTIME, "MPI: a malformed result from rank %d", rank);
    } else if (!bad && rc != KD_OK && !s->err.code) {
        s->err = je;
        s->failed_rank = rank;
    }
    if (j && !bad) {
        pl_tl_setup(r, rank, &(pl_rank_times){.start = times[2], .data = times[3],
                                              .teacher = times[4]});
        pl_tl_job(r, rank, job, times[1], secs);
    }
    if (j && rc == KD_OK && !bad) { /* what the hand-out and the way back cost */
        double round = kd_now() - j->t0;
        kd_logf(&r->log, "[job %d/%d] done on rank %d: %.2f s there, %.2f s handed out to "
                "delivered (%.0f ms more), %zu bytes back", job + 1, r->npj, rank, secs, round,
                1e3 * (round - secs), n);
    }
    if (j)
        j->state = rc == KD_OK && !bad ? PL_JOB_DONE : PL_JOB_TODO;
    s->ndone += j && j->state == PL_JOB_DONE;
    if (rank >= 0 && s->busy[rank] >= 0) {
        s->busy[rank] = -1;
        s->running--;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- rank 0: the helper thread that talks to the other ranks ------------------- */
static void *coordinate(void *arg)
{
    spread *s = arg;
    const struct timespec nap = {0, 1000000};
    kd_err e = {0};
    pthread_mutex_lock(&s->mu);
    while (!phase_over(s)) {
        for (int k = 1; k < dist_size(s->d) && !e.code; k++) {
            int job = s->busy[k] < 0 ? next_ready(s) : -1;
            if (job < 0)
                continue;
            take(s, job, k);
            kd_buf b = {0};
            job_message(s->r, job, &b);
            if (b.failed)
                kd_err_set(&e, KD_ENOMEM, "out of memory for a job message");
            else
                dist_send(s->d, k, TAG_JOB, b.p, b.len, &e);
            kd_buf_free(&b);
        }
        int ready = 0, src = -1;
        pthread_mutex_unlock(&s->mu);
        if (!e.code)
            dist_probe(s->d, -1, TAG_DONE, &ready, &e);
        if (ready) {
            void *p;
            size_t n;
            if (dist_recv(s->d, -1, TAG_DONE, &p, &n, &src, NULL, &e) == KD_OK) {
                deliver(s, src, p, n);
                kd_free(p);
            }
        } else {
            nanosleep(&nap, NULL);
        }
        pthread_mutex_lock(&s->mu);
        if (e.code && !s->err.code) /* MPI itself failed: no rank can be waited for */
            s->err = e;
        if (e.code)
            break;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- rank 0: its own share of the jobs, on the main thread ---------------------- */
static void run_local(spread *s, pl_worker *w)
{
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int job = -1;
        while (!phase_over(s) && (job = next_ready(s)) < 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (phase_over(s) || job < 0)
            break;
        take(s, job, 0);
        kd_buf in = {0}, out = {0};
        job_message(s->r, job, &in);
        pthread_mutex_unlock(&s->mu);
        kd_rd rd = {.p = in.p, .len = in.len, .ok = 1};
        kd_rd_u32(&rd);
        int resume = (int)kd_rd_u32(&rd), nfiles = (int)kd_rd_u32(&rd);
        kd_err e = {0};
        if (in.failed || pl_unpack_files(&rd, w->r.dir, nfiles, &e) != KD_OK) {
            w->failed = in.failed ? (kd_err){.code = KD_ENOMEM, .msg = "out of memory"} : e;
        }
        pl_worker_run(w, s->r, job, resume, &out);
        if (!out.failed)
            deliver(s, 0, out.p, out.len);
        kd_buf_free(&in);
        kd_buf_free(&out);
        pthread_mutex_lock(&s->mu);
        if (out.failed) { /* never delivered: undo the take */
            if (!s->err.code)
                kd_err_set(&s->err, KD_ENOMEM, "out of memory for a job's result");
            s->r->jobs[job].state = PL_JOB_TODO;
            s->busy[0] = -1;
            s->running--;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- the phase ------------------------------------------------------------------ */
/* [i32 status][teacher model bytes] from rank 0 to all. */
static int bcast_teacher(run_ctx *r, pl_worker *w, int status, kd_err *e)
{
    kd_buf b = {0};
    uint8_t *model = NULL;
    size_t len = 0;
    char path[PL_PATH];
    if (status == KD_OK) {
        pl_path(&w->r, "teacher.kdm", path, sizeof path);
        if ((status = nn_model_save(r->teacher, path, e)) == KD_OK)
            status = kd_read_file(path, (size_t)1 << 31, &model, &len, e);
        unlink(path);
    }
    kd_buf_u32(&b, (uint32_t)status);
    kd_buf_put(&b, model, len);
    kd_free(model);
    if (b.failed) { /* the others still wait for the broadcast: send the failure */
        kd_buf_free(&b);
        status = kd_err_set(e, KD_ENOMEM, "out of memory for the teacher's broadcast");
        kd_buf_u32(&b, (uint32_t)status);
    }
    void *p = b.p;
    size_t n = b.len;
    kd_err be;
    int rc = dist_bcast(r->o->dist, &p, &n, 0, &be);
    kd_buf_free(&b);
    if (rc != KD_OK && status == KD_OK) {
        *e = be;
        return rc;
    }
    return status;
}

/* Variants a resumed run already saved are done before anything is handed
 * out (the compress stage keeps them, as in one process). */
static void mark_kept(run_ctx *r, spread *s)
{
    char own[3][PL_PATH / 2], path[PL_PATH + PL_PATH / 2];
    for (int i = 0; r->o->resume && i < r->npj; i++) {
        pl_job *j = &r->jobs[i];
        if (j->kind != PL_JOB_VARIANT)
            continue;
        pl_job_files(r, j, 1, own);
        pl_path(r, own[0], path, sizeof path);
        if (access(path, R_OK) == 0) {
            j->state = PL_JOB_DONE; /* rank -1: not delivered, the stage keeps it */
            s->ndone++;
        }
    }
}

int pl_spread_jobs(run_ctx *r, int rc, kd_err *e)
{
    dist_comm *d = r->o->dist;
    if (dist_size(d) < 2 || r->workers_gone)
        return rc;
    pl_worker w;
    if (rc == KD_OK)
        rc = pl_worker_open(&w, r->spec, r->o, 0, r, e);
    else
        memset(&w, 0, sizeof w);
    rc = bcast_teacher(r, &w, rc, e);
    r->workers_waiting = rc == KD_OK;
    spread s = {.r = r, .d = d, .failed_rank = -1};
    if (rc == KD_OK && (rc = pl_jobs_plan(r, e)) == KD_OK &&
        !(s.busy = kd_malloc((size_t)dist_size(d) * sizeof *s.busy)))
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    pthread_t helper;
    if (rc == KD_OK) {
        for (int k = 0; k < dist_size(d); k++)
            s.busy[k] = -1;
        mark_kept(r, &s);
        kd_logf(&r->log, "MPI: %d ranks; %d jobs (students x modes x seeds, variants x seeds, "
                "sensitivity) handed to whichever rank is free", dist_size(d), r->npj);
        pthread_mutex_init(&s.mu, NULL);
        pthread_cond_init(&s.cv, NULL);
        double t0 = kd_now();
        r->tl.phase0 = pl_wall();
        pl_tl_mark(r, 0, r->tl.phase0, "teacher sent; the job phase begins");
        if (pthread_create(&helper, NULL, coordinate, &s) != 0) {
            rc = kd_err_set(e, KD_ERUNTIME, "cannot start the MPI helper thread");
        } else {
            /* the teacher measured here while the other ranks start on jobs */
            kd_err te = {0};
            double m0 = pl_wall();
            int trc = pl_stage_teacher_row(r, &te);
            r->tl.teacher_row = pl_wall() - m0;
            if (trc != KD_OK) {
                pthread_mutex_lock(&s.mu);
                if (!s.err.code)
                    s.err = te;
                pthread_cond_broadcast(&s.cv);
                pthread_mutex_unlock(&s.mu);
            }
            run_local(&s, &w);
            pthread_join(helper, NULL);
        }
        r->tl.phase1 = pl_wall();
        pl_tl_mark(r, 0, r->tl.phase1, "the job phase ends");
        pthread_cond_destroy(&s.cv);
        pthread_mutex_destroy(&s.mu);
        if (rc == KD_OK && s.err.code) {
            *e = s.err;
            rc = e->code;
            if (s.failed_rank > 0 && rc != KD_ECANCELED) { /* say where it failed */
                size_t k = strlen(e->msg);
                if (k + 24 < sizeof e->msg)
                    snprintf(e->msg + k, sizeof e->msg - k, " (on rank %d)", s.failed_rank);
            }
        } else if (rc == KD_OK) {
            rc = pl_cancelled(r, e);
        }
        if (rc == KD_OK)
            kd_logf(&r->log, "MPI: the %d jobs done in %.1f s; rank 0 measures and writes the "
                    "results", r->npj, kd_now() - t0);
    }
    kd_free(s.busy);
    pl_worker_close(&w);
    return rc;
}

void pl_spread_stop(run_ctx *r, int rc)
{
    if (!r->workers_waiting)
        return;
    kd_buf b = {0};
    kd_buf_u32(&b, (uint32_t)rc);
    kd_err e;
    for (int k = 1; k < dist_size(r->o->dist); k++)
        dist_send(r->o->dist, k, TAG_STOP, b.p, b.len, &e);
    kd_buf_free(&b);
    r->workers_waiting = 0;
}

/* ---- every other rank ----------------------------------------------------------- */
static int worker_loop(pl_worker *w, const run_ctx *plan, dist_comm *d, kd_err *e)
{
    for (;;) {
        void *p;
        size_t n;
        int tag, rc = dist_recv(d, 0, -1, &p, &n, NULL, &tag, e);
        if (rc != KD_OK)
            return rc;
        kd_rd rd = {.p = p, .len = n, .ok = 1};
        int job = (int)kd_rd_u32(&rd);
        if (tag == TAG_STOP) { /* the run's status, as rank 0 saw it and reports it */
            kd_free(p);
            if (!rd.ok)
                return kd_err_set(e, KD_EFORMAT, "MPI: a malformed stop message");
            *e = (kd_err){.code = job};
            return job;
        }
        int resume = (int)kd_rd_u32(&rd), nfiles = (int)kd_rd_u32(&rd);
        kd_err fe = {0};
        if (!rd.ok || job < 0 || job >= plan->npj)
            rc = kd_err_set(e, KD_EFORMAT, "MPI: a malformed job message");
        else if (pl_unpack_files(&rd, w->r.dir, nfiles, &fe) != KD_OK && !w->failed.code)
            w->failed = fe;
        kd_free(p);
        if (rc != KD_OK)
            return rc;
        kd_buf out = {0};
        pl_worker_run(w, plan, job, resume, &out);
        if (out.failed)
            rc = kd_err_set(e, KD_ENOMEM, "out of memory for a job's result");
        else
            rc = dist_send(d, 0, TAG_DONE, out.p, out.len, e);
        kd_buf_free(&out);
        if (rc != KD_OK)
            return rc;
    }
}

int pl_spread_worker(const exp_spec *spec, const pipeline_opts *o, kd_err *e)
{
    dist_comm *d = o->dist;
    pl_worker w;
    kd_err we = {0};
    if (pl_worker_open(&w, spec, o, dist_rank(d), NULL, &we) != KD_OK)
        w.failed = we; /* answered to every job: rank 0 reports it */
    int rc = KD_OK;
    if (pl_dp_on(spec, d) && (rc = pl_dp_worker(&w, spec, d, e)) != KD_OK) {
        if (rc != KD_ECANCELED && e->msg[0]) {
            /* rank 0 waits in a reduce for this rank: say why, end them all
             * (MPI_Abort ends the process, so this rank prints it itself) */
            char buf[1200];
            fprintf(stderr, "kdbench (rank %d): %s\n", dist_rank(d), kd_err_str(e, buf, sizeof buf));
            dist_abort(d, 1);
        }
        if (rc != KD_ECANCELED) { /* rank 0 failed before training, and reports it */
            pl_worker_close(&w);
            return rc;
        }
        rc = KD_OK; /* stopped with rank 0 at the same batch: it says what follows */
    }
    void *p = NULL;
    size_t n = 0;
    if (rc == KD_OK)
        rc = dist_bcast(d, &p, &n, 0, e);
    kd_rd rd = {.p = p, .len = n, .ok = 1};
    int status = rc == KD_OK ? (int)kd_rd_u32(&rd) : rc;
    if (rc == KD_OK && !rd.ok)
        rc = kd_err_set(e, KD_EFORMAT, "MPI: a malformed teacher broadcast");
    else if (rc == KD_OK && status != KD_OK) /* rank 0 failed before the jobs and says why */
        *e = (kd_err){.code = rc = status};
    if (rc == KD_OK && !w.failed.code &&
        pl_worker_teacher(&w, rd.p + rd.pos, rd.len - rd.pos, &we) != KD_OK)
        w.failed = we;
    kd_free(p);
    run_ctx plan = {.spec = spec};
    if (rc == KD_OK && (rc = pl_jobs_plan(&plan, e)) == KD_OK)
        rc = worker_loop(&w, &plan, d, e);
    pl_jobs_free(&plan);
    pl_worker_close(&w);
    return rc;
}
