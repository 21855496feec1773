/* The run cut into jobs for MPI ranks: every student mode and seed, every
 * variant seed, the sensitivity sweep, each with the one job whose model it
 * starts from (a teacher assistant's student, a variant's source student).
 * The stages are unchanged: a job another rank ran left its files in the run
 * directory, and the stage picks them up where one process would train. */
#include <string.h>

#include "internal.h"

static const char *mode_name(const cfg_student *cs, int mode)
{
    return mode == 0 ? "scratch" : cs->modes[mode - 1].name;
}

static int find(const run_ctx *r, pl_job_kind kind, int index, int mode, int k)
{
    for (int i = 0; i < r->npj; i++) {
        const pl_job *j = &r->jobs[i];
        if (j->kind == kind && j->index == index && j->k == k &&
            (kind != PL_JOB_STUDENT || j->mode == mode))
            return i;
    }
    return -1;
}

/* The job that trains a source student's model (first seed; scratch or the
 * first distilled mode), or -1 for the teacher or a file. */
static int source_job(const run_ctx *r, cfg_source_kind kind, int student, int scratch)
{
    return kind == CFG_SRC_STUDENT ? find(r, PL_JOB_STUDENT, student, scratch ? 0 : 1, 0) : -1;
}

static void add(run_ctx *r, pl_job_kind kind, int index, int mode, int k, int dep)
{
    r->jobs[r->npj++] = (pl_job){.kind = kind, .index = index, .mode = mode, .k = k, .dep = dep,
                                 .rank = -1};
}

/* Each job's priority: its estimated cost (the stages' weight: MACs of its
 * training and measurement) plus the costliest chain of jobs that wait for
 * it.  Handing out the highest first starts long chains and long jobs early,
 * so the ranks do not wait on one long job at the end.  The weights are the
 * stages' list: the teacher, then the jobs in this order. */
static void prioritise(run_ctx *r)
{
    if (r->njobs < r->npj + 1)
        return; /* a worker's plan: no weights, no hand-out */
    for (int i = r->npj - 1; i >= 0; i--) { /* dependants come after their source */
        pl_job *j = &r->jobs[i];
        j->prio += r->job_work[i + 1];
        if (j->dep >= 0 && j->prio > r->jobs[j->dep].prio)
            r->jobs[j->dep].prio = j->prio; /* the longest chain below it, so far */
    }
}

int pl_jobs_plan(run_ctx *r, kd_err *e)
{
    const exp_spec *s = r->spec;
    int n = 1;
    for (int i = 0; i < s->nstudents; i++)
        n += (1 + s->students[i].nmodes) * s->students[i].nseeds;
    for (int i = 0; i < s->nvariants; i++)
        n += s->variants[i].nseeds;
    if (!(r->jobs = kd_calloc((size_t)n, sizeof *r->jobs)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (int i = 0; i < s->nstudents; i++) {
        const cfg_student *cs = &s->students[i];
        int dep = cs->teacher_student >= 0 ? find(r, PL_JOB_STUDENT, cs->teacher_student, 1, 0)
                                           : -1;
        for (int mode = 0; mode <= cs->nmodes; mode++)
            for (int k = 0; k < cs->nseeds; k++)
                add(r, PL_JOB_STUDENT, i, mode, k, dep);
    }
    for (int i = 0; i < s->nvariants; i++) {
        const cfg_variant *v = &s->variants[i];
        int dep = source_job(r, v->source_kind, v->source_student, v->source_scratch);
        for (int k = 0; k < v->nseeds; k++)
            add(r, PL_JOB_VARIANT, i, 0, k, dep);
    }
    if (s->sensitivity.on) {
        const cfg_sensitivity *t = &s->sensitivity;
        add(r, PL_JOB_SENSITIVITY, 0, 0, 0,
            source_job(r, t->source_kind, t->source_student, t->source_scratch));
    }
    prioritise(r);
    return KD_OK;
}

void pl_jobs_free(run_ctx *r)
{
    for (int i = 0; i < r->npj; i++) {
        for (int c = 0; c < r->jobs[i].ncurves; c++)
            kd_free(r->jobs[i].curves[c].hist);
        kd_free(r->jobs[i].curves);
    }
    kd_free(r->jobs);
    r->jobs = NULL;
    r->npj = 0;
}

int pl_job_delivered(const run_ctx *r, pl_job_kind kind, int index, int mode, int k)
{
    int i = r->jobs ? find(r, kind, index, mode, k) : -1;
    return i >= 0 && r->jobs[i].state == PL_JOB_DONE ? r->jobs[i].rank : -1;
}

int pl_job_measured(const run_ctx *r, pl_job_kind kind, int index, int mode, measure_result *mr)
{
    int i = r->jobs ? find(r, kind, index, mode, 0) : -1;
    if (i < 0 || r->jobs[i].state != PL_JOB_DONE || !r->jobs[i].measured)
        return 0;
    *mr = r->jobs[i].mr;
    return 1;
}

static void student_file(const run_ctx *r, int index, int mode, int k, const char *ext,
                         char *buf)
{
    const cfg_student *cs = &r->spec->students[index];
    snprintf(buf, PL_PATH / 2, "students/%s/%s-seed%llu%s", cs->name, mode_name(cs, mode),
             (unsigned long long)cs->seeds[k], ext);
}

int pl_job_files(const run_ctx *r, const pl_job *j, int own, char names[][PL_PATH / 2])
{
    if (!own) {
        if (j->dep < 0)
            return 0;
        const pl_job *d = &r->jobs[j->dep];
        student_file(r, d->index, d->mode, d->k, ".kdm", names[0]);
        return 1;
    }
    if (j->kind == PL_JOB_STUDENT) {
        student_file(r, j->index, j->mode, j->k, ".kdm", names[0]);
        student_file(r, j->index, j->mode, j->k, ".ckpt", names[1]);
        student_file(r, j->index, j->mode, j->k, ".adapter.ckpt", names[2]);
        return 3;
    }
    if (j->kind == PL_JOB_VARIANT) {
        pl_variant_file(&r->spec->variants[j->index], j->k, names[0], PL_PATH / 2);
        return 1;
    }
    snprintf(names[0], PL_PATH / 2, "sensitivity.csv");
    return 1;
}

int pl_job_run(run_ctx *r, const pl_job *j, pl_job_outcome *out, kd_err *e)
{
    *out = (pl_job_outcome){0};
    if (j->kind == PL_JOB_STUDENT)
        return pl_student_job(r, j->index, j->mode, j->k, out, e);
    if (j->kind == PL_JOB_VARIANT)
        return pl_variant_job(r, j->index, j->k, out, e);
    return pl_sensitivity_job(r, e);
}

int pl_job_outcome_of(const run_ctx *r, pl_job_kind kind, int index, int mode, int k,
                      pl_job_outcome *o)
{
    int i = r->jobs ? find(r, kind, index, mode, k) : -1;
    if (i < 0 || r->jobs[i].state != PL_JOB_DONE || r->jobs[i].rank < 0 || !r->jobs[i].out.ok)
        return 0;
    *o = r->jobs[i].out;
    return 1;
}

void pl_job_name(const run_ctx *r, const pl_job *j, char *buf, size_t n)
{
    if (j->kind == PL_JOB_STUDENT) {
        const cfg_student *cs = &r->spec->students[j->index];
        snprintf(buf, n, "%s/%s seed %llu", cs->name, mode_name(cs, j->mode),
                 (unsigned long long)cs->seeds[j->k]);
    } else if (j->kind == PL_JOB_VARIANT) {
        const cfg_variant *v = &r->spec->variants[j->index];
        snprintf(buf, n, "%s seed %llu", v->name, (unsigned long long)v->seeds[j->k]);
    } else {
        snprintf(buf, n, "sensitivity");
    }
}

int pl_job_take_curves(run_ctx *r, pl_job_kind kind, int index, int mode, int k, kd_err *e)
{
    int i = r->jobs ? find(r, kind, index, mode, k) : -1;
    if (i < 0)
        return KD_OK;
    pl_job *j = &r->jobs[i];
    pl_curve *c = kd_realloc(r->curves, (size_t)(r->ncurves + j->ncurves + 1) * sizeof *c);
    if (!c)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    r->curves = c;
    memcpy(c + r->ncurves, j->curves, (size_t)j->ncurves * sizeof *c);
    r->ncurves += j->ncurves;
    kd_free(j->curves); /* the histories now belong to the run's curves */
    j->curves = NULL;
    j->ncurves = 0;
    return pl_write_metrics(r, e);
}
