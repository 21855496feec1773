/* The teacher stage: train it (resumable, cached across runs by a hash of
 * its resolved config and data), or load a saved one; measure it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The cache key: everything that decides the trained teacher's bytes — the
 * resolved data and teacher sections, the seed and the thread count — and
 * nothing else (the run's name and students do not matter). */
static int cache_key(const run_ctx *r, uint64_t *key, kd_err *e)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int rc = config_dump_teacher(r->spec, r->threads, f);
    fprintf(f, "kdbench teacher cache v1\n");
    fclose(f);
    *key = fnv1a(0xcbf29ce484222325ull, text, len);
    free(text);
    return rc == KD_OK ? KD_OK : kd_err_set(e, rc, "cannot form the teacher cache key");
}

static int copy_file(const char *from, const char *to, kd_err *e)
{
    uint8_t *p;
    size_t n;
    int rc = kd_read_file(from, (size_t)1 << 34, &p, &n, e);
    if (rc == KD_OK) {
        rc = kd_write_atomic(to, p, n, e);
        kd_free(p);
    }
    return rc;
}

/* A cached teacher checkpoint is copied into the run, which then resumes
 * from it (a complete one trains no further epoch). */
static int from_cache(run_ctx *r, const char *cached, const char *ckpt, int *hit)
{
    *hit = 0;
    if (r->o->resume && access(ckpt, F_OK) == 0)
        return KD_OK;
    if (access(cached, R_OK) != 0) {
        kd_logf(&r->log, "teacher: not in the cache (%s); training", cached);
        return KD_OK;
    }
    kd_err e2;
    if (copy_file(cached, ckpt, &e2) != KD_OK) {
        char buf[1200];
        kd_logf(&r->log, "teacher cache: %s; training instead", kd_err_str(&e2, buf, sizeof buf));
        return KD_OK;
    }
    *hit = 1;
    kd_logf(&r->log, "teacher: found in the cache (%s); not retrained", cached);
    return KD_OK;
}

static void to_cache(run_ctx *r, const char *cached, const char *ckpt)
{
    kd_err e2;
    char buf[1200];
    if (kd_mkdirs(r->spec->cache_dir, &e2) != KD_OK || copy_file(ckpt, cached, &e2) != KD_OK)
        kd_logf(&r->log, "teacher cache not written: %s", kd_err_str(&e2, buf, sizeof buf));
    else
        kd_logf(&r->log, "teacher cached as %s", cached);
}

static int add_teacher_row(run_ctx *r, nn_model *m, const char *model_path, double train_s,
                           int epochs, kd_err *e)
{
    measure_result mr;
    int rc = measure_model(m, &r->test, model_path, NULL, &mr, e);
    if (rc != KD_OK)
        return rc;
    rep_row *row = pl_row_add(r, "teacher", "teacher");
    pl_row_from(row, &mr, train_s);
    if (epochs > 0)
        rep_row_num(row, "epochs", epochs);
    rep_row_str(row, "format", "fp32");
    rep_row_num(row, "weight_bits", 32);
    char trained[48] = "loaded, not trained";
    if (train_s >= 0)
        snprintf(trained, sizeof trained, "trained %.1f s", train_s);
    kd_logf(&r->log,
            "teacher: test accuracy %.2f%%, %lld bytes, batch-1 latency p50 %.1f us p99 %.1f "
            "us, batch-256 %.0f samples/s, %s",
            100 * mr.accuracy, mr.size_bytes, mr.latency_us_b1_p50, mr.latency_us_b1_p99,
            mr.throughput_b256, trained);
    return KD_OK;
}

int pl_check_teacher_hints(const exp_spec *s, const nn_model *m, kd_err *e)
{
    for (int i = 0; i < s->nstudents; i++) {
        const cfg_hint *h = &s->students[i].hint;
        char why[256];
        int t = h->student[0] ? nn_model_find(m, h->teacher) : 0;
        if (t < 0)
            return kd_err_at(e, KD_ECONFIG, s->file, h->teacher_pos.line, h->teacher_pos.col,
                             "students[%d].distill.hint.teacher: the saved teacher has no layer "
                             "\"%s\"",
                             i, h->teacher);
        if (h->student[0] && nn_model_tap_check(m, t, why, sizeof why) != KD_OK)
            return kd_err_at(e, KD_ECONFIG, s->file, h->teacher_pos.line, h->teacher_pos.col,
                             "students[%d].distill.hint.teacher: %s", i, why);
    }
    return KD_OK;
}

/* A saved teacher: it must fit the data and every student's hint. */
static int load_teacher(run_ctx *r, kd_err *e)
{
    const cfg_model *cm = &r->spec->teacher;
    const char *file = r->spec->file;
    nn_model *m = nn_model_load(cm->model_path, e);
    if (!m)
        return e->code == KD_EIO ? kd_err_at(e, KD_ECONFIG, file, cm->model_pos.line,
                                             cm->model_pos.col, "teacher.model: %s", e->msg)
                                 : e->code;
    r->teacher = m;
    if (nn_shape_size(m->in) != nn_shape_size(r->train.shape) || m->nclasses != r->train.nclasses)
        return kd_err_at(e, KD_ECONFIG, file, cm->model_pos.line, cm->model_pos.col,
                         "teacher.model: %s takes %zu inputs and gives %d classes; the data has "
                         "%zu and %d", cm->model_path, nn_shape_size(m->in), m->nclasses,
                         nn_shape_size(r->train.shape), r->train.nclasses);
    int rc = pl_check_teacher_hints(r->spec, m, e);
    if (rc != KD_OK)
        return rc;
    kd_logf(&r->log, "teacher: loaded %s (%d layers, %zu parameters); not trained",
            cm->model_path, m->nlayers, m->nparams);
    return add_teacher_row(r, m, cm->model_path, -1, 0, e);
}

int pl_stage_teacher(run_ctx *r, kd_err *e)
{
    const cfg_model *cm = &r->spec->teacher;
    if (cm->model_path[0])
        return load_teacher(r, e);
    train_opts to = teacher_train_opts(cm, r->spec->seed);
    char ckpt[PL_PATH], model_path[PL_PATH], cached[PL_PATH + 64];
    pl_path(r, "teacher.ckpt", ckpt, sizeof ckpt);
    pl_path(r, "teacher.kdm", model_path, sizeof model_path);
    uint64_t key = 0;
    int rc = cache_key(r, &key, e), hit = 0, resumed = 0;
    if (rc != KD_OK)
        return rc;
    snprintf(cached, sizeof cached, "%s/teacher-%016llx.ckpt", r->spec->cache_dir,
             (unsigned long long)key);
    if (r->spec->cache_dir[0])
        from_cache(r, cached, ckpt, &hit);
    r->ckpt_path = ckpt;
    train_state st = {0};
    if ((rc = pl_start_state(r, cm, &to, r->spec->seed, r->o->resume || hit, &st, &resumed, e)))
        return rc;
    r->teacher = st.model;
    if ((r->curve = pl_curve_add(r, "teacher", r->spec->seed)) < 0) {
        train_state_free(&st);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    kd_logf(&r->log, "teacher: %d layers, %zu parameters, %.3g MMACs/sample", st.model->nlayers,
            st.model->nparams, nn_model_macs(st.model) / 1e6);
    int trained = st.epochs_done < to.epochs;
    train_hooks h = {.on_epoch = pl_on_epoch, .cb_ctx = r, .progress = r->o->progress,
                     .quiet = r->o->quiet, .label = "teacher"};
    rc = train_fit(&st, &to, &r->train, &r->val, &h, e);
    if (rc == KD_OK && !trained) /* the curve comes from the checkpoint */
        rc = pl_curve_record(r, &st, e);
    if (rc == KD_OK && trained && !hit && r->spec->cache_dir[0])
        to_cache(r, cached, ckpt);
    if (rc == KD_OK && (rc = nn_model_save(st.model, model_path, e)) == KD_OK)
        rc = add_teacher_row(r, st.model, model_path, st.seconds, st.epochs_done, e);
    train_state_free(&st);
    return rc;
}
