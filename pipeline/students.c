/* The students stage: every student trained from scratch and distilled from
 * the teacher, with the same seed, data order and budget, once per seed; the
 * teacher's logits are computed once and reused by every distilled batch. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "../student/student.h"
#include "internal.h"

enum { SCRATCH = 0, DISTILLED = 1 };
static const char *const mode_names[] = {"scratch", "distilled"};

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
    int mode;
    uint64_t seed;
    char base[PL_PATH + 64]; /* run_dir/students/<name>/<mode>-seed<N> */
} one_run;

static int hint_taps(const one_run *u, nn_model *s, student_distill_opts *o)
{
    o->student_tap = o->teacher_tap = -1;
    if (!u->cs->hint.student[0])
        return KD_OK;
    o->student_tap = nn_model_find(s, u->cs->hint.student);
    o->teacher_tap = nn_model_find(u->r->teacher, u->cs->hint.teacher);
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

/* Trains (or resumes) one student in one mode with one seed; saves its
 * model file; returns its test accuracy in *acc and keeps the model in *out. */
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
    snprintf(name, sizeof name, "%s/%s", cs->name, mode_names[u->mode]);
    r->ckpt_path = ckpt;
    train_state st = {0};
    int resumed, rc = pl_start_state(r, &cs->model, &to, u->seed, r->o->resume, &st, &resumed, e);
    if (rc != KD_OK)
        return rc;
    student_distiller *d = NULL;
    train_state as = {0};
    train_hooks h = {.on_epoch = pl_on_epoch, .cb_ctx = r, .progress = r->o->progress,
                     .quiet = r->o->quiet, .cancel = r->o->cancel, .label = r->stage_label};
    if (u->mode == DISTILLED) {
        student_distill_opts dopt = {.temperature = cs->temperature, .alpha = cs->alpha};
        if ((rc = hint_taps(u, st.model, &dopt)) != KD_OK)
            rc = kd_err_set(e, KD_ECONFIG, "%s: hint layers not found", name);
        else if (!(d = student_distiller_new(st.model, r->teacher, u->tlogits, &r->train, &dopt,
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

/* The row of one student and mode: accuracy = mean over seeds; size and
 * speed measured on the first seed's model (every seed has the same shape). */
static int add_row(one_run *u, nn_model *m0, const seed_stats *ss, kd_err *e)
{
    const cfg_student *cs = u->cs;
    char name[96], kdm[PL_PATH + 128];
    snprintf(name, sizeof name, "%s/%s", cs->name, mode_names[u->mode]);
    measure_result mr;
    int rc = pl_pathf(e, kdm, sizeof kdm, "%s/students/%s/%s-seed%llu.kdm", u->r->dir, cs->name,
                      mode_names[u->mode], (unsigned long long)cs->seeds[0]);
    if (rc == KD_OK)
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
    rep_row_str(row, "teacher", "teacher");
    if (u->mode == DISTILLED) {
        rep_row_num(row, "temperature", cs->temperature);
        rep_row_num(row, "alpha", cs->alpha);
        if (cs->hint.student[0]) {
            char hint[80];
            snprintf(hint, sizeof hint, "%s->%s", cs->hint.student, cs->hint.teacher);
            rep_row_str(row, "hint", hint);
        }
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

static int run_student(run_ctx *r, int index, const float *tlogits, kd_err *e)
{
    const cfg_student *cs = &r->spec->students[index];
    seed_stats ss[2];
    memset(ss, 0, sizeof ss);
    char dir[PL_PATH];
    int rc = pl_pathf(e, dir, sizeof dir, "%s/students/%s", r->dir, cs->name);
    if (rc == KD_OK)
        rc = kd_mkdirs(dir, e);
    for (int mode = SCRATCH; rc == KD_OK && mode <= DISTILLED; mode++) {
        nn_model *first = NULL;
        for (int k = 0; rc == KD_OK && k < cs->nseeds; k++) {
            one_run u = {.r = r, .cs = cs, .tlogits = tlogits, .mode = mode,
                         .seed = cs->seeds[k]};
            nn_model *m = NULL;
            if (cs->nseeds > 1)
                pl_stage_begin(r, "%s/%s seed %llu", cs->name, mode_names[mode],
                               (unsigned long long)cs->seeds[k]);
            else
                pl_stage_begin(r, "%s/%s", cs->name, mode_names[mode]);
            rc = pl_pathf(e, u.base, sizeof u.base, "%s/%s-seed%llu", dir, mode_names[mode],
                          (unsigned long long)cs->seeds[k]);
            if (rc == KD_OK)
                rc = train_one(&u, &m, &ss[mode].acc[k], &ss[mode], e);
            if (k == 0)
                first = m;
            else
                nn_model_free(m);
        }
        one_run u = {.r = r, .cs = cs, .mode = mode};
        if (rc == KD_OK)
            rc = add_row(&u, first, &ss[mode], e);
        nn_model_free(first);
    }
    if (rc != KD_OK)
        return rc;
    double ms, ss_, md, sd;
    pl_mean_std(ss[SCRATCH].acc, cs->nseeds, &ms, &ss_);
    pl_mean_std(ss[DISTILLED].acc, cs->nseeds, &md, &sd);
    double noise = ss_ > sd ? ss_ : sd;
    kd_logf(&r->log,
            "%s: scratch %.2f%% (sd %.2f), distilled %.2f%% (sd %.2f) over %d seed(s): gain "
            "%+.2f points%s; epoch %.2f s scratch, %.2f s distilled",
            cs->name, 100 * ms, 100 * ss_, 100 * md, 100 * sd, cs->nseeds, 100 * (md - ms),
            cs->nseeds < 2 ? "" : md - ms > noise ? ", larger than the noise" : ", within the noise",
            ss[SCRATCH].epoch_s / cs->nseeds, ss[DISTILLED].epoch_s / cs->nseeds);
    return KD_OK;
}

const float *pl_teacher_logits(run_ctx *r, kd_err *e)
{
    if (r->tlogits)
        return r->tlogits;
    double t0 = kd_now();
    if (!(r->tlogits = student_teacher_logits(r->teacher, &r->train, 256, e)))
        return NULL;
    kd_logf(&r->log,
            "distillation: the teacher's logits for %d training samples computed once in %.2f s "
            "and reused by every distilled batch",
            r->train.n, kd_now() - t0);
    return r->tlogits;
}

int pl_stage_students(run_ctx *r, kd_err *e)
{
    if (r->train.nclasses > r->teacher->nclasses)
        return kd_err_set(e, KD_ERUNTIME, "the teacher gives %d classes, the data has %d",
                          r->teacher->nclasses, r->train.nclasses);
    const float *tl = pl_teacher_logits(r, e);
    if (!tl)
        return e->code;
    for (int i = 0; i < r->spec->nstudents; i++)
        if (r->spec->students[i].hint.student[0])
            kd_logf(&r->log, "%s: its hint runs the teacher on each batch for its features",
                    r->spec->students[i].name);
    int rc = KD_OK;
    for (int i = 0; rc == KD_OK && i < r->spec->nstudents; i++)
        rc = run_student(r, i, tl, e);
    return rc;
}
