/* One distilled training: the loss hook (soft targets from precomputed
 * teacher logits, plus an optional hint) and the step hook (the adapter's
 * optimiser follows the student's learning rate). */
#include <assert.h>
#include <string.h>

#include "student.h"

#define MAX_CLASSES 256

struct student_distiller {
    student_distill_opts o;
    nn_model *student, *teacher; /* borrowed */
    const float *tlogits;        /* borrowed, tr->n x k */
    const data_set *tr;          /* borrowed */
    float *tbatch;               /* k x batch gathered teacher logits */
    float *work;                 /* student_logit_work(batch, k) floats */
    int epoch;                   /* 1-based, from the begin_epoch hook */
    int cap;                     /* batch capacity of the scratch buffers */
    /* hint */
    nn_model *adapter;
    nn_optim *aopt;
    float *tx, *da, *dtap;       /* teacher input batch, adapter output grad, student tap grad */
};

static int ensure_cap(student_distiller *d, int n)
{
    if (n <= d->cap)
        return KD_OK;
    const int k = d->student->nclasses;
    kd_afree(d->tbatch);
    kd_afree(d->work);
    d->tbatch = kd_afloat((size_t)n * k);
    d->work = kd_afloat(student_logit_work(n, k));
    if (!d->tbatch || !d->work)
        return KD_ENOMEM;
    if (d->adapter) {
        kd_afree(d->tx);
        kd_afree(d->da);
        kd_afree(d->dtap);
        const nn_layer *sl = &d->student->layers[d->o.student_tap];
        d->tx = kd_afloat((size_t)n * nn_shape_size(d->teacher->in));
        d->da = kd_afloat((size_t)n * nn_shape_size(d->adapter->layers[0].out));
        d->dtap = kd_afloat((size_t)n * nn_shape_size(sl->out));
        if (!d->tx || !d->da || !d->dtap || nn_model_reserve(d->teacher, n, NULL) != KD_OK ||
            nn_model_reserve(d->adapter, n, NULL) != KD_OK)
            return KD_ENOMEM;
    }
    d->cap = n;
    return KD_OK;
}

/* The hint term for the batch just forwarded through the student: teacher
 * forward (eval) to its tap, adapter forward and backward; fills d->dtap. */
static float hint_term(student_distiller *d, const int *idx, int n)
{
    nn_model *s = d->student, *t = d->teacher, *a = d->adapter;
    data_batch(d->tr, idx, n, t->in_mean, t->in_std, d->tx, NULL);
    nn_ctx ev = {.train = 0};
    nn_model_forward(t, d->tx, n, &ev);
    const float *tf = t->act[d->o.teacher_tap + 1];
    const float *sf = s->act[d->o.student_tap + 1];
    nn_ctx tr = {.train = 1};
    const float *af = nn_model_forward(a, sf, n, &tr);
    size_t count = (size_t)n * nn_shape_size(t->layers[d->o.teacher_tap].out);
    float loss = student_hint_loss(af, tf, count, d->o.hint_weight, d->da);
    nn_model_zero_grad(a);
    nn_model_backward_ex(a, d->da, -1, NULL, d->dtap, n, &tr);
    return loss;
}

static float distill_loss(void *ctx, const float *logits, const uint8_t *labels, const int *idx,
                          int n, int k, float *dlogits)
{
    student_distiller *d = ctx;
    assert(n <= d->cap); /* the training batch student_distiller_new was given */
    for (int i = 0; i < n; i++)
        memcpy(d->tbatch + (size_t)i * k, d->tlogits + (size_t)idx[i] * k, (size_t)k * sizeof(float));
    float loss = student_logit_loss(&d->o, d->epoch, logits, d->tbatch, labels, n, k, dlogits,
                                    d->work);
    if (d->adapter)
        loss += hint_term(d, idx, n);
    return loss;
}

static void distill_begin_epoch(void *ctx, int epoch)
{
    ((student_distiller *)ctx)->epoch = epoch;
}

static int distill_step(void *ctx, nn_model *m, float lr, kd_err *e)
{
    (void)m;
    (void)e;
    student_distiller *d = ctx;
    if (d->adapter)
        nn_optim_step(d->aopt, d->adapter, lr);
    return KD_OK;
}

static int build_adapter(student_distiller *d, const nn_opt_spec *opt, uint64_t seed, kd_err *e)
{
    nn_shape from = d->student->layers[d->o.student_tap].out;
    nn_shape to = d->teacher->layers[d->o.teacher_tap].out;
    nn_layer_spec spec;
    int rc = nn_adapter_spec(from, to, &spec, e);
    if (rc != KD_OK)
        return rc;
    snprintf(spec.name, sizeof spec.name, "adapter");
    if (!(d->adapter = nn_model_new(from, &spec, 1, NULL, e)))
        return e->code;
    nn_model_init(d->adapter, seed ^ 0xada7u);
    return (d->aopt = nn_optim_new(opt, d->adapter->nparams, e)) ? KD_OK : KD_ENOMEM;
}

student_distiller *student_distiller_new(nn_model *student, nn_model *teacher,
                                         const float *tlogits, const data_set *tr,
                                         const student_distill_opts *o, const nn_opt_spec *opt,
                                         int batch, uint64_t seed, kd_err *e)
{
    if (student->nclasses != teacher->nclasses || student->nclasses > MAX_CLASSES) {
        kd_err_set(e, KD_ECONFIG, "the student has %d outputs and the teacher %d (at most %d)",
                   student->nclasses, teacher->nclasses, MAX_CLASSES);
        return NULL;
    }
    student_distiller *d = kd_calloc(1, sizeof *d);
    if (!d) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    *d = (student_distiller){.o = *o, .student = student, .teacher = teacher,
                             .tlogits = tlogits, .tr = tr, .epoch = 1};
    char why[256];
    int rc = KD_OK;
    if (o->student_tap >= 0) {
        if (nn_model_tap_check(student, o->student_tap, why, sizeof why) != KD_OK ||
            nn_model_tap_check(teacher, o->teacher_tap, why, sizeof why) != KD_OK)
            rc = kd_err_set(e, KD_ECONFIG, "hint: %s", why);
        else
            rc = build_adapter(d, opt, seed, e);
    }
    if (rc == KD_OK && ensure_cap(d, batch) != KD_OK)
        rc = kd_err_set(e, KD_ENOMEM, "out of memory for distillation");
    if (rc != KD_OK) {
        student_distiller_free(d);
        return NULL;
    }
    return d;
}

void student_distiller_free(student_distiller *d)
{
    if (!d)
        return;
    kd_afree(d->tbatch);
    kd_afree(d->work);
    kd_afree(d->tx);
    kd_afree(d->da);
    kd_afree(d->dtap);
    nn_model_free(d->adapter);
    nn_optim_free(d->aopt);
    kd_free(d);
}

void student_distiller_hooks(student_distiller *d, train_hooks *h)
{
    h->loss = distill_loss;
    h->loss_ctx = d;
    h->begin_epoch = distill_begin_epoch;
    h->on_step = distill_step;
    h->step_ctx = d;
    if (d->adapter) {
        h->tap = d->o.student_tap;
        h->dtap = d->dtap;
    }
}

nn_model *student_distiller_adapter(student_distiller *d) { return d->adapter; }
nn_optim *student_distiller_adapter_opt(student_distiller *d) { return d->aopt; }
