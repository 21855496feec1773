/* The students stage: every student trained from scratch and distilled from
 * the teacher, with the same seed, data order and budget, once per seed; the
 * teacher's logits are computed once and reused by every distilled batch. */
#include <assert.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "../student/student.h"
#include "internal.h"

enum { SCRATCH = 0 }; /* mode i > 0 is the student's distilled mode i - 1 */

/* "scratch", or the distilled mode's name ("distilled" without a modes list) */
static const char *mode_name(const cfg_student *cs, int mode)
{
    return mode == SCRATCH ? "scratch" : cs->modes[mode - 1].name;
}

static student_distill_opts mode_opts(const cfg_distill_mode *m)
{
    static const student_method methods[] = {[CFG_METHOD_KD] = STUDENT_KD,
                                             [CFG_METHOD_DKD] = STUDENT_DKD,
                                             [CFG_METHOD_DIST] = STUDENT_DIST};
    return (student_distill_opts){.method = methods[m->method], .temperature = m->temperature,
                                  .alpha = m->alpha, .beta = m->beta, .gamma = m->gamma,
                                  .warmup = m->warmup, .standardize = m->standardize};
}

/* What one student and mode gather over its seeds. */
typedef struct {
    double acc[CFG_MAX_SEEDS];
    double train_s, epoch_s; /* sums over seeds */
    int epochs;
} seed_stats;

typedef struct {
    run_ctx *r;
    const cfg_student *cs;
    const float *tlogits;
    nn_model *teacher;        /* the run's teacher, or an assistant student's model */
    const char *teacher_name; /* "teacher" or "<student>/<mode>" */
    int mode, k; /* k: the seed's index */
    uint64_t seed;
    char base[PL_PATH + 64]; /* run_dir/students/<name>/<mode>-seed<N> */
} one_run;

static int hint_taps(const one_run *u, nn_model *s, student_distill_opts *o)
{
    o->student_tap = o->teacher_tap = -1;
    if (!u->cs->hint.student[0])
        return KD_OK;
    o->student_tap = nn_model_find(s, u->cs->hint.student);
    o->teacher_tap = nn_model_find(u->teacher, u->cs->hint.teacher);
    o->hint_weight = u->cs->hint.weight;
    return o->student_tap >= 0 && o->teacher_tap >= 0 ? KD_OK : KD_ECONFIG;
}

/* A resumed hint student needs its adapter at the same epoch; otherwise it
 * starts over (logged). */
static int restore_adapter(one_run *u, train_state *st, student_distiller *d, const char *path,
                           const train_opts *to)
{
    train_state as;
    kd_err e2;
    nn_model *a = student_distiller_adapter(d);
    if (st->epochs_done == 0)
        return KD_OK;
    if (access(path, R_OK) == 0 && train_checkpoint_load(path, to, &as, &e2) == KD_OK) {
        int ok = as.epochs_done == st->epochs_done && as.model->nparams == a->nparams;
        if (ok) {
            memcpy(a->params, as.model->params, a->nparams * sizeof(float));
            nn_optim *ao = student_distiller_adapter_opt(d);
            memcpy(ao->m, as.opt->m, ao->n * sizeof(float));
            if (ao->v)
                memcpy(ao->v, as.opt->v, ao->n * sizeof(float));
            ao->step = as.opt->step;
        }
        nn_model_free(as.model);
        train_state_free(&as);
        if (ok)
            return KD_OK;
    }
    kd_logf(&u->r->log, "%s: the adapter checkpoint does not match; training from epoch 0",
            u->base);
    return KD_EFORMAT;
}

/* A seed another rank trained and evaluated (MPI): its curve, accuracy and
 * times as that rank sent them, its model file already here; the first
 * seed's model (*out) loaded only when its row still has to measure it. */
static int took_delivered(one_run *u, const char *kdm, const char *name, const pl_job_outcome *jo,
                          nn_model **out, double *acc, seed_stats *ss, kd_err *e)
{
    run_ctx *r = u->r;
    const int index = (int)(u->cs - r->spec->students);
    measure_result mr;
    *out = NULL;
    int rc = pl_job_take_curves(r, PL_JOB_STUDENT, index, u->mode, u->k, e);
    if (rc == KD_OK && u->k == 0 && !pl_job_measured(r, PL_JOB_STUDENT, index, u->mode, &mr) &&
        !(*out = compress_model_load(kdm, e)))
        rc = e->code;
    if (rc != KD_OK)
        return rc;
    *acc = jo->acc;
    ss->train_s += jo->train_s;
    ss->epoch_s += jo->epochs ? jo->train_s / jo->epochs : 0;
    ss->epochs = jo->epochs;
    kd_logf(&r->log, "%s seed %llu: test accuracy %.2f%%, trained %.1f s (%.2f s/epoch)", name,
            (unsigned long long)u->seed, 100 * *acc, jo->train_s,
            jo->epochs ? jo->train_s / jo->epochs : 0);
    return KD_OK;
}

/* Trains (or resumes) one student in one mode with one seed; saves its
 * model file; returns its test accuracy in *acc and keeps the model in *out
 * (NULL when another rank trained it and its row needs no model). */
static int train_one(one_run *u, nn_model **out, double *acc, seed_stats *ss, kd_err *e)
{
    run_ctx *r = u->r;
    const cfg_student *cs = u->cs;
    train_opts to = teacher_train_opts(&cs->model, u->seed);
    char ckpt[PL_PATH + 96], actk[PL_PATH + 96], kdm[PL_PATH + 96], name[96];
    if (pl_pathf(e, ckpt, sizeof ckpt, "%s.ckpt", u->base) ||
        pl_pathf(e, actk, sizeof actk, "%s.adapter.ckpt", u->base) ||
        pl_pathf(e, kdm, sizeof kdm, "%s.kdm", u->base))
        return e->code;
    snprintf(name, sizeof name, "%s/%s", cs->name, mode_name(cs, u->mode));
    r->ckpt_path = ckpt;
    train_state st = {0};
    /* trained on another rank: its checkpoint and model are here, finished */
    const int index = (int)(cs - r->spec->students);
    int ran = pl_job_delivered(r, PL_JOB_STUDENT, index, u->mode, u->k);
    if (ran >= 0)
        kd_logf(&r->log, "%s seed %llu: trained on rank %d", name, (unsigned long long)u->seed,
                ran);
    pl_job_outcome jo;
    if (ran >= 0 && pl_job_outcome_of(r, PL_JOB_STUDENT, index, u->mode, u->k, &jo))
        return took_delivered(u, kdm, name, &jo, out, acc, ss, e);
    /* the run's teacher's logits, on first need (an assistant's come with it) */
    assert(u->tlogits || u->teacher == r->teacher);
    if (!u->tlogits && u->mode != SCRATCH && !(u->tlogits = pl_teacher_logits(r, e)))
        return e->code;
    int resumed, rc = pl_start_state(r, &cs->model, &to, u->seed, r->o->resume || ran >= 0, &st,
                                     &resumed, e);
    if (rc != KD_OK)
        return rc;
    student_distiller *d = NULL;
    train_state as = {0};
    train_hooks h = {.on_epoch = pl_on_epoch, .cb_ctx = r, .progress = r->o->progress,
                     .quiet = r->o->quiet, .cancel = r->o->cancel, .label = r->stage_label};
    if (u->mode != SCRATCH) {
        student_distill_opts dopt = mode_opts(&cs->modes[u->mode - 1]);
        if ((rc = hint_taps(u, st.model, &dopt)) != KD_OK)
            rc = kd_err_set(e, KD_ECONFIG, "%s: hint layers not found", name);
        else if (!(d = student_distiller_new(st.model, u->teacher, u->tlogits, &r->train, &dopt,
                                             &to.opt, to.batch_size, u->seed, e)))
            rc = e->code;
        if (rc == KD_OK && student_distiller_adapter(d)) {
            as = (train_state){.model = student_distiller_adapter(d),
                               .opt = student_distiller_adapter_opt(d)};
            r->adapter_state = &as;
            r->adapter_ckpt = actk;
            if (resumed && restore_adapter(u, &st, d, actk, &to) != KD_OK) {
                /* start this student over: fresh model, fresh adapter */
                nn_model_free(st.model);
                train_state_free(&st);
                student_distiller_free(d);
                r->adapter_state = NULL;
                unlink(ckpt);
                return train_one(u, out, acc, ss, e);
            }
        }
        if (rc == KD_OK)
            student_distiller_hooks(d, &h);
    }
    if (rc == KD_OK && (r->curve = pl_curve_add(r, name, u->seed)) < 0)
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK && (rc = train_fit(&st, &to, &r->train, &r->val, &h, e)) == KD_OK)
        rc = pl_curve_record(r, &st, e);
    r->adapter_state = NULL;
    student_distiller_free(d);
    if (rc == KD_OK && (rc = nn_model_save(st.model, kdm, e)) == KD_OK)
        rc = train_evaluate(st.model, &r->test, 256, NULL, acc, e);
    if (rc == KD_OK) {
        ss->train_s += st.seconds;
        ss->epoch_s += st.epochs_done ? st.seconds / st.epochs_done : 0;
        ss->epochs = st.epochs_done;
        kd_logf(&r->log, "%s seed %llu: test accuracy %.2f%%, trained %.1f s (%.2f s/epoch)",
                name, (unsigned long long)u->seed, 100 * *acc, st.seconds,
                st.epochs_done ? st.seconds / st.epochs_done : 0);
        *out = st.model;
    } else {
        nn_model_free(st.model);
    }
    train_state_free(&st);
    return rc;
}

void pl_mean_std(const double *x, int n, double *mean, double *std)
{
    double m = 0, v = 0;
    for (int i = 0; i < n; i++)
        m += x[i];
    m /= n;
    for (int i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = n > 1 ? sqrt(v / (n - 1)) : 0; /* sample standard deviation */
}

/* A distilled row's method and parameters; an unlisted kd mode writes the
 * temperature and alpha columns it always had, and no more. */
static void mode_fields(rep_row *row, const cfg_student *cs, const cfg_distill_mode *m)
{
    if (cs->listed || m->method != CFG_METHOD_KD)
        rep_row_str(row, "method", config_distill_method(m->method));
    rep_row_num(row, "temperature", m->temperature);
    if (m->method != CFG_METHOD_DIST)
        rep_row_num(row, "alpha", m->alpha);
    if (m->method != CFG_METHOD_KD)
        rep_row_num(row, "beta", m->beta);
    if (m->method == CFG_METHOD_DIST)
        rep_row_num(row, "gamma", m->gamma);
    if (m->method == CFG_METHOD_DKD)
        rep_row_num(row, "warmup", m->warmup);
    if (m->standardize)
        rep_row_num(row, "standardize", 1);
    if (cs->hint.student[0]) {
        char hint[80];
        snprintf(hint, sizeof hint, "%s->%s", cs->hint.student, cs->hint.teacher);
        rep_row_str(row, "hint", hint);
    }
}

/* The row of one student and mode: accuracy = mean over seeds; size and
 * speed measured on the first seed's model (every seed has the same shape). */
static int add_row(one_run *u, nn_model *m0, const seed_stats *ss, kd_err *e)
{
    const cfg_student *cs = u->cs;
    char name[96], kdm[PL_PATH + 128];
    snprintf(name, sizeof name, "%s/%s", cs->name, mode_name(cs, u->mode));
    measure_result mr;
    int rc = pl_pathf(e, kdm, sizeof kdm, "%s/students/%s/%s-seed%llu.kdm", u->r->dir, cs->name,
                      mode_name(cs, u->mode), (unsigned long long)cs->seeds[0]);
    if (rc == KD_OK && !pl_job_measured(u->r, PL_JOB_STUDENT, (int)(cs - u->r->spec->students),
                                        u->mode, &mr)) /* else measured on its rank */
        rc = measure_model(m0, &u->r->test, kdm, NULL, &mr, e);
    rep_row *row = rc == KD_OK ? pl_row_add(u->r, name, "student") : NULL;
    if (!row)
        return rc != KD_OK ? rc : kd_err_set(e, KD_ERUNTIME, "too many result rows");
    double mean, std;
    pl_mean_std(ss->acc, cs->nseeds, &mean, &std);
    pl_row_from(row, &mr, ss->train_s / cs->nseeds);
    row->accuracy = mean;
    rep_row_num(row, "epochs", ss->epochs);
    rep_row_str(row, "format", "fp32");
    rep_row_num(row, "weight_bits", 32);
    if (u->mode != SCRATCH) { /* a scratch student has no teacher */
        rep_row_str(row, "teacher", u->teacher_name);
        mode_fields(row, cs, &cs->modes[u->mode - 1]);
    }
    rep_row_num(row, "seeds", cs->nseeds);
    rep_row_num(row, "accuracy_std", std);
    rep_row_num(row, "epoch_seconds", ss->epoch_s / cs->nseeds);
    pl_row_seed_lists(row, cs->seeds, ss->acc, cs->nseeds);
    return KD_OK;
}

void pl_row_seed_lists(rep_row *row, const uint64_t *seeds, const double *acc, int n)
{
    char sl[160] = "", al[160] = "";
    for (int i = 0; i < n; i++) {
        size_t a = strlen(sl), b = strlen(al);
        snprintf(sl + a, sizeof sl - a, "%s%llu", i ? " " : "", (unsigned long long)seeds[i]);
        snprintf(al + b, sizeof al - b, "%s%.4f", i ? " " : "", acc[i]);
    }
    rep_row_str(row, "seed_list", sl);
    rep_row_str(row, "accuracy_per_seed", al);
}

/* One log line per distilled mode: its gain over the scratch twin against
 * the seeds' noise, and its epoch time against a scratch epoch. */
static void log_gains(run_ctx *r, const cfg_student *cs, const seed_stats *ss)
{
    double ms, ss_;
    pl_mean_std(ss[SCRATCH].acc, cs->nseeds, &ms, &ss_);
    for (int mode = 1; mode <= cs->nmodes; mode++) {
        double md, sd;
        pl_mean_std(ss[mode].acc, cs->nseeds, &md, &sd);
        double noise = ss_ > sd ? ss_ : sd, es = ss[SCRATCH].epoch_s / cs->nseeds;
        double ed = ss[mode].epoch_s / cs->nseeds;
        kd_logf(&r->log,
                "%s: scratch %.2f%% (sd %.2f), %s %.2f%% (sd %.2f) over %d seed(s): gain "
                "%+.2f points%s; epoch %.2f s scratch, %.2f s %s (%.2fx)",
                cs->name, 100 * ms, 100 * ss_, mode_name(cs, mode), 100 * md, 100 * sd,
                cs->nseeds, 100 * (md - ms),
                cs->nseeds < 2          ? ""
                : fabs(md - ms) <= noise ? ", within the noise"
                : md > ms                ? ", larger than the noise"
                                         : ", a loss larger than the noise",
                es, ed, mode_name(cs, mode), es > 0 ? ed / es : 0);
    }
}

/* The scratch twin, then each distilled mode, each once per seed: the same
 * seeds, hence the same initialisation, data order and budget. */
static int run_student(run_ctx *r, int index, const float *tlogits, nn_model *teacher,
                       const char *teacher_name, kd_err *e)
{
    const cfg_student *cs = &r->spec->students[index];
    seed_stats ss[1 + CFG_MAX_MODES];
    memset(ss, 0, sizeof ss);
    char dir[PL_PATH];
    int rc = pl_pathf(e, dir, sizeof dir, "%s/students/%s", r->dir, cs->name);
    if (rc == KD_OK)
        rc = kd_mkdirs(dir, e);
    for (int mode = SCRATCH; rc == KD_OK && mode <= cs->nmodes; mode++) {
        nn_model *first = NULL;
        for (int k = 0; rc == KD_OK && k < cs->nseeds; k++) {
            one_run u = {.r = r, .cs = cs, .tlogits = tlogits, .teacher = teacher,
                         .teacher_name = teacher_name, .mode = mode, .k = k,
                         .seed = cs->seeds[k]};
            nn_model *m = NULL;
            if (cs->nseeds > 1)
                pl_stage_begin(r, "%s/%s seed %llu", cs->name, mode_name(cs, mode),
                               (unsigned long long)cs->seeds[k]);
            else
                pl_stage_begin(r, "%s/%s", cs->name, mode_name(cs, mode));
            rc = pl_pathf(e, u.base, sizeof u.base, "%s/%s-seed%llu", dir, mode_name(cs, mode),
                          (unsigned long long)cs->seeds[k]);
            if (rc == KD_OK)
                rc = train_one(&u, &m, &ss[mode].acc[k], &ss[mode], e);
            if (k == 0)
                first = m;
            else
                nn_model_free(m);
        }
        one_run u = {.r = r, .cs = cs, .teacher = teacher, .teacher_name = teacher_name,
                     .mode = mode};
        if (rc == KD_OK)
            rc = add_row(&u, first, &ss[mode], e);
        nn_model_free(first);
    }
    if (rc == KD_OK)
        log_gains(r, cs, ss);
    return rc;
}

const float *pl_teacher_logits(run_ctx *r, kd_err *e)
{
    if (r->tlogits)
        return r->tlogits;
    double t0 = kd_now();
    if (!(r->tlogits = student_teacher_logits(r->teacher, &r->train, 256, e)))
        return NULL;
    nn_model_release(r->teacher); /* its batch-256 buffers: not needed until the next forward */
    kd_logf(&r->log,
            "distillation: the teacher's logits for %d training samples computed once in %.2f s "
            "and reused by every distilled batch",
            r->train.n, kd_now() - t0);
    return r->tlogits;
}

/* Every mode and seed of student i came back from a rank with its outcome. */
static int all_delivered(const run_ctx *r, int i)
{
    const cfg_student *cs = &r->spec->students[i];
    pl_job_outcome o;
    for (int mode = SCRATCH; mode <= cs->nmodes; mode++)
        for (int k = 0; k < cs->nseeds; k++)
            if (!pl_job_outcome_of(r, PL_JOB_STUDENT, i, mode, k, &o))
                return 0;
    return 1;
}

/* "<assistant>/<its first distilled mode>" into name[96]. */
static const char *assistant_name(const run_ctx *r, int index, char *name)
{
    const cfg_student *ta = &r->spec->students[r->spec->students[index].teacher_student];
    snprintf(name, 96, "%s/%s", ta->name, ta->modes[0].name);
    return name;
}

/* A student taught by an earlier student (a teacher assistant): that
 * student's first distilled mode, first seed, is the teacher (*m, its name
 * in name[96]); its logits on the training set (*tl, kd_afree) computed. */
static int load_assistant(run_ctx *r, int index, nn_model **m, float **tl, char *name,
                          kd_err *e)
{
    const cfg_student *cs = &r->spec->students[index];
    const cfg_student *ta = &r->spec->students[cs->teacher_student];
    char path[PL_PATH + 256];
    assistant_name(r, index, name);
    if (pl_pathf(e, path, sizeof path, "%s/students/%s/%s-seed%llu.kdm", r->dir, ta->name,
                 ta->modes[0].name, (unsigned long long)ta->seeds[0]))
        return e->code;
    if (!(*m = compress_model_load(path, e)))
        return e->code;
    double t0 = kd_now();
    if (!(*tl = student_teacher_logits(*m, &r->train, 256, e))) {
        nn_model_free(*m);
        *m = NULL;
        return e->code;
    }
    kd_logf(&r->log, "%s: taught by %s (a teacher assistant); its logits computed in %.2f s",
            cs->name, name, kd_now() - t0);
    return KD_OK;
}

static int run_assisted(run_ctx *r, int index, kd_err *e)
{
    nn_model *m = NULL;
    float *tl = NULL;
    char name[96];
    int rc = load_assistant(r, index, &m, &tl, name, e);
    if (rc == KD_OK)
        rc = run_student(r, index, tl, m, name, e);
    kd_afree(tl);
    nn_model_free(m);
    return rc;
}

int pl_student_job(run_ctx *r, int index, int mode, int k, pl_job_outcome *out, kd_err *e)
{
    const cfg_student *cs = &r->spec->students[index];
    one_run u = {.r = r, .cs = cs, .teacher = r->teacher, .teacher_name = "teacher",
                 .mode = mode, .k = k, .seed = cs->seeds[k]};
    nn_model *ta = NULL, *m = NULL;
    float *tal = NULL;
    char name[96], dir[PL_PATH];
    int rc = pl_pathf(e, dir, sizeof dir, "%s/students/%s", r->dir, cs->name);
    if (rc == KD_OK)
        rc = kd_mkdirs(dir, e);
    if (rc == KD_OK && cs->teacher_student >= 0 &&
        (rc = load_assistant(r, index, &ta, &tal, name, e)) == KD_OK) {
        u.teacher = ta;
        u.tlogits = tal;
        u.teacher_name = name;
    } /* else the run's teacher's logits, computed by train_one if the mode needs them */
    pl_stage_begin(r, "%s/%s seed %llu", cs->name, mode_name(cs, mode),
                   (unsigned long long)u.seed);
    seed_stats ss = {0};
    double acc;
    if (rc == KD_OK)
        rc = pl_pathf(e, u.base, sizeof u.base, "%s/%s-seed%llu", dir, mode_name(cs, mode),
                      (unsigned long long)u.seed);
    if (rc == KD_OK && (rc = train_one(&u, &m, &acc, &ss, e)) == KD_OK)
        *out = (pl_job_outcome){.acc = acc, .train_s = ss.train_s, .epochs = ss.epochs, .ok = 1};
    nn_model_free(m);
    nn_model_free(ta);
    kd_afree(tal);
    return rc;
}

int pl_stage_students(run_ctx *r, kd_err *e)
{
    if (r->train.nclasses > r->teacher->nclasses)
        return kd_err_set(e, KD_ERUNTIME, "the teacher gives %d classes, the data has %d",
                          r->teacher->nclasses, r->train.nclasses);
    for (int i = 0; i < r->spec->nstudents; i++)
        if (r->spec->students[i].hint.student[0])
            kd_logf(&r->log, "%s: its hint runs the teacher on each batch for its features",
                    r->spec->students[i].name);
    int rc = KD_OK;
    /* the teacher's (or an assistant's) logits only where a student trains
     * here: on MPI ranks every seed came back trained and evaluated */
    for (int i = 0; rc == KD_OK && i < r->spec->nstudents; i++) {
        const cfg_student *cs = &r->spec->students[i];
        char ta[96];
        if (cs->teacher_student < 0)
            rc = run_student(r, i, NULL, r->teacher, "teacher", e);
        else if (!all_delivered(r, i))
            rc = run_assisted(r, i, e);
        else
            rc = run_student(r, i, NULL, NULL, assistant_name(r, i, ta), e);
    }
    return rc;
}
