/* The run's jobs counted and weighed up front, so that each one starts with
 * "[k/N] what (about MM:SS left)": the teacher, every student mode and seed,
 * every variant seed, the sensitivity sweep and the report.  The weight of a
 * job is a rough cost in seconds at a nominal speed (MACs of its training,
 * evaluation and measurement, plus the fixed time of measuring and plotting);
 * the estimate left is the weights left scaled by how fast the done ones went,
 * so the nominal speed cancels out. */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

#define NOMINAL_MACS_S 2e9   /* MACs per second the weights assume */
#define MEASURE_FIXED_S 0.6  /* settling and timing loops of one measurement */
#define MEASURE_SAMPLES 9000 /* batch-1 repeats and batch-256 rounds, in samples */
#define SPARSE_FIXED_S 0.3   /* timing CSR against dense for the storage choice */
#define REPORT_S 2.0         /* the report with its plots */

static double macs_of_layers(const run_ctx *r, const cfg_model *m)
{
    int bad = -1;
    kd_err e;
    nn_model *s = nn_model_new_shapes(r->train.shape, m->layers, m->nlayers, &bad, &e);
    double macs = s ? nn_model_macs(s) : 0;
    nn_model_free(s);
    return macs;
}

static double macs_of_file(const char *path)
{
    kd_err e;
    nn_model *m = compress_model_load(path, &e);
    double macs = m ? nn_model_macs(m) : 0;
    nn_model_free(m);
    return macs;
}

static double work_train(const run_ctx *r, double macs, int epochs)
{
    /* forward and backward (about 3x a forward) on the training set, then validation */
    return epochs * macs * (3.0 * r->train.n + r->val.n) / NOMINAL_MACS_S;
}

static double work_measure(const run_ctx *r, double macs)
{
    return MEASURE_FIXED_S + macs * (r->test.n + MEASURE_SAMPLES) / NOMINAL_MACS_S;
}

static double source_macs(const run_ctx *r, cfg_source_kind kind, int student, const char *path,
                          double teacher)
{
    if (kind == CFG_SRC_STUDENT)
        return macs_of_layers(r, &r->spec->students[student].model);
    return kind == CFG_SRC_FILE ? macs_of_file(path) : teacher;
}

static double work_variant(const run_ctx *r, const cfg_variant *v, double macs, int first)
{
    double w = first ? work_measure(r, macs) : macs * r->test.n / NOMINAL_MACS_S;
    for (int i = 0; i < v->npasses; i++) {
        const cfg_pass *p = &v->passes[i];
        int trains = p->kind == CFG_PASS_FINETUNE || p->kind == CFG_PASS_QAT ||
                     (p->kind == CFG_PASS_PRUNE && p->agp) ||
                     (p->kind == CFG_PASS_CLUSTER && p->epochs > 0);
        if (trains)
            w += work_train(r, macs, p->epochs);
        if (p->kind == CFG_PASS_PRUNE)
            w += SPARSE_FIXED_S;
    }
    return w;
}

/* appends one job's weight (the list is sized in pl_stages_plan) */
static void add(run_ctx *r, double w)
{
    r->job_work[r->njobs++] = w > 0 ? w : 0.01;
}

int pl_stages_plan(run_ctx *r, kd_err *e)
{
    const exp_spec *s = r->spec;
    int n = 1 + 1 + (s->sensitivity.on ? 1 : 0) + (s->serve.loadtest ? 1 : 0);
    for (int i = 0; i < s->nstudents; i++)
        n += (1 + s->students[i].nmodes) * s->students[i].nseeds; /* scratch + each mode */
    for (int i = 0; i < s->nvariants; i++)
        n += s->variants[i].nseeds;
    if (!(r->job_work = kd_calloc((size_t)n, sizeof *r->job_work)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    double tm = s->teacher.model_path[0] ? macs_of_file(s->teacher.model_path)
                                         : macs_of_layers(r, &s->teacher);
    add(r, (s->teacher.model_path[0] ? 0 : work_train(r, tm, s->teacher.train.epochs)) +
               work_measure(r, tm));
    for (int i = 0; i < s->nstudents; i++) {
        const cfg_student *st = &s->students[i];
        double sm = macs_of_layers(r, &st->model);
        for (int k = 0; k < (1 + st->nmodes) * st->nseeds; k++)
            add(r, work_train(r, sm, st->model.train.epochs) +
                       (k % st->nseeds ? sm * r->test.n / NOMINAL_MACS_S : work_measure(r, sm)));
    }
    for (int i = 0; i < s->nvariants; i++) {
        const cfg_variant *v = &s->variants[i];
        double vm = source_macs(r, v->source_kind, v->source_student, v->source_path, tm);
        for (int k = 0; k < v->nseeds; k++)
            add(r, work_variant(r, v, vm, k == 0));
    }
    if (s->sensitivity.on) {
        const cfg_sensitivity *t = &s->sensitivity;
        double m = source_macs(r, t->source_kind, t->source_student, t->source_path, tm);
        add(r, 3.0 * t->nsparsities * m * (r->val.n ? r->val.n : r->test.n) / NOMINAL_MACS_S);
    }
    if (s->serve.loadtest) /* each cell: its seconds at most, plus starting the clients */
        add(r, (s->serve.nmodels ? s->serve.nmodels : 1 + s->nstudents * 2 + s->nvariants) *
                   s->serve.nconcurrency * (s->serve.batching == 2 ? 2 : 1) *
                   (s->serve.seconds + 0.05));
    add(r, s->report.plots ? REPORT_S : REPORT_S / 10);
    r->job = -1;
    r->jobs_t0 = kd_now();
    return KD_OK;
}

static void fmt_left(double s, char *buf, size_t n)
{
    if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else
        snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

const char *pl_stage_begin(run_ctx *r, const char *fmt, ...)
{
    char what[96], left[48] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (r->job + 1 < r->njobs)
        r->job++;
    /* what the last job freed goes back to the system before this one grows
     * (issue 12): glibc keeps freed heap pages otherwise, so the run's RSS
     * would stay at the largest job's and the next job's new pages (the
     * serving threads' arenas) would come on top */
    malloc_trim(0);
    double done = 0, rest = 0, el = kd_now() - r->jobs_t0;
    for (int i = 0; i < r->njobs; i++)
        *(i < r->job ? &done : &rest) += r->job_work[i];
    if (r->job > 0 && done > 0 && el > 0.5) {
        char t[24];
        fmt_left(rest * el / done, t, sizeof t);
        snprintf(left, sizeof left, " (about %s left)", t);
    }
    if (r->njobs == 0) /* a job on an MPI rank: its rank, not a count */
        snprintf(r->stage_label, sizeof r->stage_label, "[rank %d] %s", r->rank, what);
    else
        snprintf(r->stage_label, sizeof r->stage_label, "[%d/%d] %s", r->job + 1, r->njobs,
                 what);
    kd_logf(&r->log, "%s%s", r->njobs ? r->stage_label : what, left); /* a rank's lines carry it */
    if (r->tl.ranks) /* rank 0's run: each stage on the timeline too */
        pl_tl_mark(r, 0, pl_wall(), "%s", r->stage_label);
    return r->stage_label;
}

void pl_stage_rework(run_ctx *r, double seconds_left)
{
    if (r->job >= 0 && r->job < r->njobs)
        r->job_work[r->job] = seconds_left > 0 ? seconds_left : 0.01;
}

double pl_stage_measure_work(const run_ctx *r, const nn_model *m)
{
    return work_measure(r, nn_model_macs(m));
}
