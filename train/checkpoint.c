/* Checkpoints: the model plus what the optimiser and loop need to resume. */
#include <math.h>
#include <string.h>

#include "train.h"

#define CK_MAGIC "KDCK"
#define CK_VERSION 1u

int train_checkpoint_save(const train_state *st, const char *path, kd_err *e)
{
    kd_buf b = {0};
    kd_buf_put(&b, CK_MAGIC, 4);
    kd_buf_u32(&b, CK_VERSION);
    kd_buf_u32(&b, (uint32_t)st->epochs_done);
    kd_buf_put(&b, &st->seconds, sizeof st->seconds);
    kd_buf_u32(&b, (uint32_t)st->opt->spec.kind);
    kd_buf_u64(&b, (uint64_t)st->opt->step);
    kd_buf_u64(&b, st->opt->n);
    kd_buf_put(&b, st->opt->m, st->opt->n * sizeof(float));
    if (st->opt->v)
        kd_buf_put(&b, st->opt->v, st->opt->n * sizeof(float));
    kd_buf_put(&b, st->history, (size_t)st->epochs_done * sizeof *st->history);
    nn_model_serialize(st->model, &b);
    kd_buf_u32(&b, kd_crc32(0, b.p, b.len));
    int rc = b.failed ? kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}

/* The name of the layer that owns flat parameter j of m. */
static const char *param_layer(const nn_model *m, size_t j)
{
    for (int k = 0; k < m->nlayers; k++) {
        const nn_layer *l = &m->layers[k];
        const float *p = m->params + j;
        if ((l->w && p >= l->w && p < l->w + l->nw) || (l->b && p >= l->b && p < l->b + l->nb))
            return l->spec.name;
    }
    return "?";
}

/* The optimiser state (n floats per vector, unaligned in the file) must be
 * finite, and a second moment non-negative (its square root is taken): a
 * NaN there poisons every weight at the first step. */
static int check_moments(const uint8_t *mom, size_t n, int nvec, const nn_model *m, kd_err *e)
{
    for (size_t i = 0; i < n * (size_t)nvec; i++) {
        float v;
        memcpy(&v, mom + i * sizeof v, sizeof v);
        if (!isfinite(v) || (i >= n && v < 0.0f))
            return kd_err_set(e, KD_EFORMAT, "optimiser state of layer %s: %s moment %g at "
                              "parameter %zu", param_layer(m, i % n), i < n ? "first" : "second",
                              (double)v, i % n);
    }
    return KD_OK;
}

static int parse(kd_rd *r, const train_opts *o, train_state *st, kd_err *e)
{
    char magic[4];
    kd_rd_get(r, magic, 4);
    if (!r->ok || memcmp(magic, CK_MAGIC, 4) != 0 || kd_rd_u32(r) != CK_VERSION)
        return kd_err_set(e, KD_EFORMAT, "not a kdbench checkpoint (bad magic or version)");
    uint32_t done = kd_rd_u32(r);
    double secs = 0;
    kd_rd_get(r, &secs, sizeof secs);
    uint32_t kind = kd_rd_u32(r);
    uint64_t step = kd_rd_u64(r), n = kd_rd_u64(r);
    if (!r->ok || kind != (uint32_t)o->opt.kind || done > (uint32_t)o->epochs)
        return kd_err_set(e, KD_EFORMAT, "checkpoint does not match this configuration");
    if (!isfinite(secs) || secs < 0)
        return kd_err_set(e, KD_EFORMAT, "checkpoint: bad training time %g s", secs);
    int nvec = kind == NN_OPT_ADAMW ? 2 : 1;
    if (n > (r->len - r->pos) / sizeof(float) / (size_t)nvec)
        return kd_err_set(e, KD_EFORMAT, "truncated checkpoint");
    const uint8_t *mom = r->p + r->pos;
    kd_rd_get(r, NULL, n * sizeof(float) * (size_t)nvec);
    const uint8_t *hist = r->p + r->pos;
    if (kd_rd_get(r, NULL, (size_t)done * sizeof(train_epoch)) != 0)
        return kd_err_set(e, KD_EFORMAT, "truncated checkpoint");
    nn_model *m = nn_model_deserialize(r, e);
    if (!m) /* keep out-of-memory apart from a bad file */
        return e && e->code == KD_ENOMEM ? KD_ENOMEM : KD_EFORMAT;
    if (m->nparams != n || r->pos != r->len) {
        nn_model_free(m);
        return kd_err_set(e, KD_EFORMAT, "checkpoint sizes are inconsistent");
    }
    if (check_moments(mom, n, nvec, m, e) != KD_OK) {
        nn_model_free(m);
        return KD_EFORMAT;
    }
    if (train_state_init(st, m, o, e) != KD_OK) {
        nn_model_free(m);
        st->model = NULL;
        return KD_ENOMEM;
    }
    memcpy(st->opt->m, mom, n * sizeof(float));
    if (nvec == 2)
        memcpy(st->opt->v, mom + n * sizeof(float), n * sizeof(float));
    st->opt->step = (long)step;
    if (done && !(st->history = kd_malloc((size_t)done * sizeof(train_epoch)))) {
        train_state_free(st);
        nn_model_free(m);
        st->model = NULL;
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    memcpy(st->history, hist, (size_t)done * sizeof(train_epoch));
    st->epochs_done = (int)done;
    st->seconds = secs;
    return KD_OK;
}

int train_checkpoint_load(const char *path, const train_opts *o, train_state *st, kd_err *e)
{
    memset(st, 0, sizeof *st);
    uint8_t *p;
    size_t n;
    int rc = kd_read_file(path, (size_t)1 << 33, &p, &n, e);
    if (rc != KD_OK)
        return rc;
    uint32_t crc = 0;
    if (n >= 8)
        memcpy(&crc, p + n - 4, 4);
    if (n < 8 || crc != kd_crc32(0, p, n - 4)) {
        rc = kd_err_at(e, KD_EFORMAT, path, 0, 0, "checkpoint is truncated or corrupt");
    } else {
        kd_rd r = {.p = p, .len = n - 4, .ok = 1};
        rc = parse(&r, o, st, e);
        if (rc != KD_OK)
            kd_err_prefix(e, "%s", path);
    }
    kd_free(p);
    return rc;
}
