/* The teacher's cache across runs (a checkpoint named by a hash of the
 * resolved config and data) and loading a saved teacher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../onnx/import.h"
#include "teacher.h"

/* ---- the cache ------------------------------------------------------------------ */

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* CRC-32 of a set's samples and labels (a file rewritten in place keeps its
 * path but not its contents). */
static uint32_t set_crc(const data_set *d)
{
    uint32_t c = kd_crc32(0, &d->n, sizeof d->n);
    size_t px = (size_t)d->n * nn_shape_size(d->shape);
    if (d->x8)
        c = kd_crc32(c, d->x8, px);
    else if (d->xf)
        c = kd_crc32(c, d->xf, px * sizeof *d->xf);
    return d->y ? kd_crc32(c, d->y, (size_t)d->n) : c;
}

/* The cache key: everything that decides the trained teacher's bytes — the
 * resolved data and teacher sections, the training and validation samples
 * themselves, the seed and the thread count — and nothing else (the run's
 * name and students do not matter). */
static int cache_key(const exp_spec *spec, int threads, const data_set *train,
                     const data_set *val, uint64_t *key, kd_err *e)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int rc = config_dump_teacher(spec, threads, f);
    fprintf(f, "data crc %08x %08x\nkdbench teacher cache v2\n", set_crc(train), set_crc(val));
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

int teacher_cache_path(const exp_spec *spec, int threads, const data_set *train,
                       const data_set *val, char *buf, size_t n, kd_err *e)
{
    uint64_t key = 0;
    int rc = cache_key(spec, threads, train, val, &key, e);
    if (rc != KD_OK)
        return rc;
    int len = snprintf(buf, n, "%s/teacher-%016llx.ckpt", spec->cache_dir, (unsigned long long)key);
    if (len < 0 || (size_t)len >= n) /* a cut path would name another file */
        return kd_err_set(e, KD_ECONFIG, "cache_dir is too long (%zu bytes)", strlen(spec->cache_dir));
    return KD_OK;
}

int teacher_cache_fetch(const char *cached, const char *ckpt, int resume, kd_log *log)
{
    if (resume && access(ckpt, F_OK) == 0)
        return 0;
    if (access(cached, R_OK) != 0) {
        kd_logf(log, "teacher: not in the cache (%s); training", cached);
        return 0;
    }
    kd_err e2;
    if (copy_file(cached, ckpt, &e2) != KD_OK) {
        char buf[1200];
        kd_logf(log, "teacher cache: %s; training instead", kd_err_str(&e2, buf, sizeof buf));
        return 0;
    }
    kd_logf(log, "teacher: found in the cache (%s); not retrained", cached);
    return 1;
}

void teacher_cache_store(const char *cache_dir, const char *cached, const char *ckpt, kd_log *log)
{
    kd_err e2;
    char buf[1200];
    if (kd_mkdirs(cache_dir, &e2) != KD_OK || copy_file(ckpt, cached, &e2) != KD_OK)
        kd_logf(log, "teacher cache not written: %s", kd_err_str(&e2, buf, sizeof buf));
    else
        kd_logf(log, "teacher cached as %s", cached);
}

/* ---- a saved teacher ------------------------------------------------------------ */

int teacher_check_hints(const exp_spec *spec, const nn_model *m, kd_err *e)
{
    for (int i = 0; i < spec->nstudents; i++) {
        const cfg_hint *h = &spec->students[i].hint;
        char why[256];
        int t = h->student[0] ? nn_model_find(m, h->teacher) : 0;
        if (t < 0)
            return kd_err_at(e, KD_ECONFIG, spec->file, h->teacher_pos.line, h->teacher_pos.col,
                             "students[%d].distill.hint.teacher: the saved teacher has no layer "
                             "\"%s\"", i, h->teacher);
        if (h->student[0] && nn_model_tap_check(m, t, why, sizeof why) != KD_OK)
            return kd_err_at(e, KD_ECONFIG, spec->file, h->teacher_pos.line, h->teacher_pos.col,
                             "students[%d].distill.hint.teacher: %s", i, why);
    }
    return KD_OK;
}

/* A loaded teacher must fit the data and every student's hint. */
static int check_loaded(const exp_spec *spec, const nn_model *m, nn_shape in, int nclasses,
                        kd_err *e)
{
    const cfg_model *cm = &spec->teacher;
    if (nn_shape_size(m->in) != nn_shape_size(in) || m->nclasses != nclasses)
        return kd_err_at(e, KD_ECONFIG, spec->file, cm->model_pos.line, cm->model_pos.col,
                         "teacher.%s: %s takes %zu inputs (%dx%dx%d) and gives %d classes; the "
                         "data has %zu (%dx%dx%d) and %d", cm->onnx ? "onnx" : "model",
                         cm->model_path, nn_shape_size(m->in), m->in.c, m->in.h, m->in.w,
                         m->nclasses, nn_shape_size(in), in.c, in.h, in.w, nclasses);
    return teacher_check_hints(spec, m, e);
}

nn_model *teacher_file_load(const exp_spec *spec, kd_err *e)
{
    const cfg_model *cm = &spec->teacher;
    nn_model *m = cm->onnx ? onnx_import_file(cm->model_path, cm->input_mean, cm->input_std, e)
                           : nn_model_load(cm->model_path, e);
    if (!m && (e->code == KD_EIO || (cm->onnx && e->code != KD_ENOMEM)))
        kd_err_at(e, KD_ECONFIG, spec->file, cm->model_pos.line, cm->model_pos.col,
                  "teacher.%s: %s%s%s", cm->onnx ? "onnx" : "model",
                  cm->onnx ? cm->model_path : "", cm->onnx ? ": " : "", e->msg);
    return m;
}

/* A saved teacher: it must fit the data and every student's hint. */
nn_model *teacher_load(const exp_spec *spec, nn_shape in, int nclasses, kd_log *log, kd_err *e)
{
    const cfg_model *cm = &spec->teacher;
    nn_model *m = teacher_file_load(spec, e);
    if (!m)
        return NULL;
    if (check_loaded(spec, m, in, nclasses, e) != KD_OK) {
        nn_model_free(m);
        return NULL;
    }
    kd_logf(log, "teacher: %s %s (%d layers, %zu parameters); not trained",
            cm->onnx ? "imported" : "loaded", cm->model_path, m->nlayers, m->nparams);
    return m;
}
