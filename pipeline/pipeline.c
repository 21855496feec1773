/* The experiment runner: run directory, shared stage helpers (curves,
 * metrics, checkpoints, rows), the stages in order, the result files. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "../compress/kernels/cpu.h"

void pl_path(const run_ctx *r, const char *name, char *buf, size_t n)
{
    int k = snprintf(buf, n, "%s/%s", r->dir, name);
    assert(k >= 0 && (size_t)k < n);
    (void)k;
}

int pl_pathf(kd_err *e, char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < n)
        return KD_OK;
    return kd_err_set(e, KD_ERUNTIME, "path too long (over %zu bytes): %.80s...", n - 1, buf);
}

int pl_cancelled(const run_ctx *r, kd_err *e)
{
    if (r->o->cancel && *r->o->cancel)
        return kd_err_set(e, KD_ECANCELED, "interrupted; resume with --resume");
    return KD_OK;
}

int pl_curve_add(run_ctx *r, const char *model, uint64_t seed)
{
    pl_curve *c = kd_realloc(r->curves, (size_t)(r->ncurves + 1) * sizeof *c);
    if (!c)
        return -1;
    r->curves = c;
    c += r->ncurves;
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "%s", model);
    c->seed = seed;
    return r->ncurves++;
}

int pl_curve_copy(run_ctx *r, const char *from, uint64_t seed, const char *to, kd_err *e)
{
    int src = -1;
    for (int i = 0; i < r->ncurves && src < 0; i++)
        if (r->curves[i].seed == seed && !strcmp(r->curves[i].model, from))
            src = i;
    if (src < 0)
        return KD_OK;
    int n = r->curves[src].n, c = pl_curve_add(r, to, seed); /* may move r->curves */
    train_epoch *h = c >= 0 ? kd_malloc((size_t)(n + 1) * sizeof *h) : NULL;
    if (!h)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    memcpy(h, r->curves[src].hist, (size_t)n * sizeof *h);
    r->curves[c].hist = h;
    r->curves[c].n = n;
    return KD_OK;
}

/* Copies st's history into curve i. */
static int curve_set(run_ctx *r, int i, const train_state *st)
{
    pl_curve *c = &r->curves[i];
    train_epoch *h = kd_realloc(c->hist, (size_t)(st->epochs_done + 1) * sizeof *h);
    if (!h)
        return KD_ENOMEM;
    memcpy(h, st->history, (size_t)st->epochs_done * sizeof *h);
    c->hist = h;
    c->n = st->epochs_done;
    return KD_OK;
}

int pl_write_metrics(run_ctx *r, kd_err *e)
{
    kd_buf b = {0};
    for (int c = 0; c < r->ncurves; c++) {
        for (int i = 0; i < r->curves[c].n; i++) {
            const train_epoch *h = &r->curves[c].hist[i];
            rep_bprintf(&b, "{\"model\": ");
            rep_json_str(&b, r->curves[c].model);
            rep_bprintf(&b, ", \"seed\": %llu, \"epoch\": %d",
                        (unsigned long long)r->curves[c].seed, h->epoch);
            /* a diverged epoch's NaN or inf is written as null: still JSON */
            const char *keys[] = {"loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                                  "samples_per_s"};
            const double v[] = {h->loss, h->train_acc, h->val_loss, h->val_acc,
                                h->lr,   h->seconds,   h->samples_per_s};
            for (int k = 0; k < 7; k++) {
                rep_bprintf(&b, ", \"%s\": ", keys[k]);
                rep_json_num(&b, v[k]);
            }
            rep_bprintf(&b, "}\n");
        }
    }
    char path[PL_PATH];
    pl_path(r, "metrics.jsonl", path, sizeof path);
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}

int pl_curve_record(run_ctx *r, const train_state *st, kd_err *e)
{
    if (curve_set(r, r->curve, st) != KD_OK)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    return pl_write_metrics(r, e);
}

int pl_on_epoch(void *ctx, const train_state *st, const train_epoch *ep, kd_err *e)
{
    run_ctx *r = ctx;
    kd_logf(&r->log,
            "%s epoch %d: loss %.4f train %.2f%% val %.2f%% lr %.4g %.1f s (%.0f samples/s)",
            r->curves[r->curve].model, ep->epoch, ep->loss, 100 * ep->train_acc,
            100 * ep->val_acc, ep->lr, ep->seconds, ep->samples_per_s);
    pl_curve *cv = &r->curves[r->curve];
    int first_bad = 1;
    for (int i = 0; i + 1 < st->epochs_done; i++)
        first_bad &= isfinite(st->history[i].loss) != 0;
    if (!isfinite(ep->loss) && first_bad)
        pl_warn(r, "%s (seed %llu): training diverged at epoch %d (loss %g); its numbers from "
                "here on are not meaningful — lower the learning rate",
                cv->model, (unsigned long long)cv->seed, ep->epoch, ep->loss);
    int rc = pl_curve_record(r, st, e);
    if (rc == KD_OK && r->adapter_state) {
        r->adapter_state->epochs_done = st->epochs_done;
        r->adapter_state->history = st->history;
        r->adapter_state->seconds = st->seconds;
        rc = train_checkpoint_save(r->adapter_state, r->adapter_ckpt, e);
        r->adapter_state->history = NULL;
    }
    /* the checkpoint is written last: a kill between the two leaves metrics
     * one epoch ahead, and a resume rewrites them from the checkpoint */
    if (rc != KD_OK || !r->ckpt_path)
        return rc;
    return train_checkpoint_save(st, r->ckpt_path, e);
}

static int same_architecture(const nn_model *a, const nn_model *b)
{
    if (a->nlayers != b->nlayers || a->nparams != b->nparams || a->nbuffers != b->nbuffers)
        return 0;
    for (int i = 0; i < a->nlayers; i++) {
        nn_layer_spec x = a->layers[i].spec, y = b->layers[i].spec;
        if (x.kind != y.kind || x.units != y.units || x.filters != y.filters ||
            x.kernel != y.kernel || x.stride != y.stride || x.pad != y.pad || x.rate != y.rate)
            return 0;
    }
    return 1;
}

int pl_start_state(run_ctx *r, const cfg_model *cm, const train_opts *to, uint64_t seed,
                   int resume, train_state *st, int *resumed, kd_err *e)
{
    *resumed = 0;
    nn_model *fresh = teacher_build(cm, r->spec->data.shape, seed, e);
    if (!fresh)
        return e->code;
    if (resume && access(r->ckpt_path, F_OK) == 0) {
        int rc = train_checkpoint_load(r->ckpt_path, to, st, e);
        if (rc == KD_OK && !same_architecture(st->model, fresh)) {
            nn_model_free(st->model);
            train_state_free(st);
            rc = kd_err_at(e, KD_ECONFIG, r->ckpt_path, 0, 0,
                           "the checkpoint's architecture differs from the config; run "
                           "without --resume to start over");
        }
        nn_model_free(fresh);
        if (rc == KD_OK) {
            *resumed = 1;
            kd_logf(&r->log, "resuming from %s after epoch %d", r->ckpt_path, st->epochs_done);
        }
        return rc;
    }
    if (r->o->resume)
        kd_logf(&r->log, "no checkpoint at %s: starting from scratch", r->ckpt_path);
    return train_state_init(st, fresh, to, e) == KD_OK ? KD_OK
                                                        : (nn_model_free(fresh), KD_ENOMEM);
}

void pl_row_from(rep_row *row, const measure_result *m, double train_s)
{
    row->params = (long long)m->params;
    row->nonzero_params = (long long)m->nonzero_params;
    row->size_bytes = m->size_bytes;
    row->accuracy = m->accuracy;
    row->latency_us_b1_p50 = m->latency_us_b1_p50;
    row->latency_us_b1_p99 = m->latency_us_b1_p99;
    row->throughput_b256 = m->throughput_b256;
    row->train_seconds = train_s;
    row->macs = m->macs;
    /* how the latency was measured: threads kept at batch 1, the one-thread
     * figure, the spread between repeats, the host's load and kernel path */
    rep_row_num(row, "threads_b1", m->threads_b1);
    rep_row_num(row, "latency_us_b1_p50_1t", m->latency_us_b1_p50_1t);
    rep_row_num(row, "latency_b1_spread", m->latency_b1_spread);
    rep_row_num(row, "host_load", m->host_load);
    rep_row_str(row, "isa", kernels_isa_label());
}

rep_row *pl_row_add(run_ctx *r, const char *name, const char *role)
{
    if (r->nrows >= PL_MAX_ROWS)
        return NULL;
    rep_row *row = &r->rows[r->nrows++];
    rep_row_init(row, name, role);
    return row;
}

/* RUN_DIR/report/: tables always; a plot that fails is one log line. */
static int write_report(run_ctx *r, kd_err *e)
{
    const cfg_report *c = &r->spec->report;
    rep_report_opts ro = {.format = c->format, .plots = c->plots, .timeout_s = c->timeout,
                          .stop = r->o->cancel}; /* a signal stops the plot too */
    rep_warnings w = {0};
    int rc = rep_report_write(r->dir, &ro, &w, e);
    if (rc != KD_OK && pl_cancelled(r, e) != KD_OK) /* a signal stopped the plot */
        rc = e->code;
    for (int i = 0; i < w.n; i++)
        kd_logf(&r->log, "report: %s", w.msg[i]);
    if (rc == KD_OK)
        kd_logf(&r->log, "report: %s/report/report.%s", r->dir, c->format == 1 ? "md" : "html");
    return rc;
}

/* A failed run says why in run.log too (cli prints it on stderr). */
static void log_error(run_ctx *r, const kd_err *e)
{
    char buf[PL_PATH];
    if (!r->log.file && r->lock_fd >= 0) { /* the folder is ours, its log not yet open */
        pl_path(r, "run.log", buf, sizeof buf);
        r->log.file = fopen(buf, "a");
    }
    if (!r->log.file)
        return;
    if (e->code == KD_ECANCELED)
        fprintf(r->log.file, "%s\n", e->msg);
    else
        fprintf(r->log.file, "error: %s\n", kd_err_str(e, buf, sizeof buf));
    fflush(r->log.file);
}

/* results.json and results.csv, with the config's ladders (report.ladders) */
static int write_results(run_ctx *r, kd_err *e)
{
    _Static_assert(CFG_MAX_LADDERS == REP_MAX_LADDERS && CFG_LADDER_STEPS == REP_LADDER_STEPS,
                   "one limit for ladders");
    const cfg_report *c = &r->spec->report;
    rep_ladder *l = kd_calloc(REP_MAX_LADDERS, sizeof *l);
    if (!l)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (int i = 0; i < c->nladders; i++) {
        snprintf(l[i].name, sizeof l[i].name, "%s", c->ladders[i].name);
        for (int k = 0; k < c->ladders[i].nrows; k++)
            snprintf(l[i].step[k], sizeof l[i].step[k], "%s", c->ladders[i].rows[k]);
        l[i].nsteps = c->ladders[i].nrows;
    }
    int rc = rep_write_results_ladders(r->dir, r->spec->name, r->rows, r->nrows, l, c->nladders,
                                       e);
    kd_free(l);
    return rc;
}

int pipeline_run(const exp_spec *spec, const pipeline_opts *o, kd_err *e)
{
    if (dist_rank(o->dist) != 0) /* another rank: runs the jobs rank 0 hands it */
        return pl_spread_worker(spec, o, e);
    run_ctx r = {.spec = spec, .o = o, .lock_fd = -1};
    pl_rank_times me = {.start = pl_proc_start()};
    r.tl.origin = me.start;
    r.tl.nranks = dist_size(o->dist);
    r.threads = nn_set_threads(spec->threads);
    int rc = (r.tl.ranks = kd_calloc((size_t)r.tl.nranks, sizeof *r.tl.ranks))
                 ? pipeline_load_data(&spec->data, spec->seed, &r.train, &r.val, &r.test, e)
                 : kd_err_set(e, KD_ENOMEM, "out of memory");
    me.data = pl_wall();
    if (rc == KD_OK && (rc = pl_cancelled(&r, e)) == KD_OK &&
        (rc = pl_open_run_dir(&r, e)) == KD_OK) {
        kd_logf(&r.log, "kdbench run %s: %d train, %d validation, %d test samples; %d threads; %s",
                spec->name, r.train.n, r.val.n, r.test.n, r.threads, nn_blas_info());
        r.tl.ranks[0] = me;
        pl_tl_mark(&r, 0, me.start, "process started");
        pl_tl_mark(&r, 0, me.data, "data loaded (%.3f s)", me.data - me.start);
        if ((rc = pl_stages_plan(&r, e)) == KD_OK)
            rc = pl_stage_teacher(&r, e);
        r.tl.ranks[0].teacher = pl_wall();
        pl_tl_mark(&r, 0, r.tl.ranks[0].teacher, "teacher in hand");
    }
    if (rc != KD_OK) /* ranks waiting to train the teacher with this one are told */
        pl_dp_fail(&r, rc);
    rc = pl_spread_jobs(&r, rc, e); /* MPI: every job on whichever rank is free */
    if (rc == KD_OK) /* on MPI ranks measured in the job phase, unless it did not run */
        rc = pl_stage_teacher_row(&r, e);
    if (rc == KD_OK && spec->nstudents && (rc = pl_cancelled(&r, e)) == KD_OK)
        rc = pl_stage_students(&r, e);
    if (rc == KD_OK && (spec->nvariants || spec->sensitivity.on) &&
        (rc = pl_cancelled(&r, e)) == KD_OK)
        rc = pl_stage_compress(&r, e);
    if (rc == KD_OK && (rc = pl_cancelled(&r, e)) == KD_OK)
        rc = write_results(&r, e);
    if (rc == KD_OK)
        kd_logf(&r.log, "results: %s/results.json, %s/results.csv", r.dir, r.dir);
    if (rc == KD_OK && spec->serve.loadtest && (rc = pl_cancelled(&r, e)) == KD_OK)
        rc = pl_stage_serving(&r, e);
    if (rc == KD_OK) {
        pl_stage_begin(&r, "report");
        rc = write_report(&r, e);
    }
    if (rc == KD_OK) /* a signal during the report: the results are whole, the report may not be */
        rc = pl_cancelled(&r, e);
    pl_spread_stop(&r, rc);
    if (rc == KD_OK)
        pl_tl_summary(&r, pl_wall());
    kd_free(r.tl.ranks);
    if (rc != KD_OK)
        log_error(&r, e);
    pl_jobs_free(&r);
    nn_model_free(r.teacher);
    kd_afree(r.tlogits);
    kd_free(r.job_work);
    for (int i = 0; i < r.ncurves; i++)
        kd_free(r.curves[i].hist);
    kd_free(r.curves);
    if (r.log.file)
        fclose(r.log.file);
    kd_dir_unlock(r.lock_fd);
    data_set_free(&r.train);
    data_set_free(&r.val);
    data_set_free(&r.test);
    return rc;
}
