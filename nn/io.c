/* Model files: "KDBM", version, architecture, tensors, compressed payloads,
 * CRC32 trailer.  The loader trusts nothing: the checksum first, then every
 * count against the bytes that are really there, before any large allocation. */
#include <math.h>
#include <string.h>

#include "nn.h"

#define MAX_LAYERS 4096
#define MAX_DIM (1 << 20)
/* values per input sample: bounds every activation size (no layer grows a
 * sample by more than conv2d's own limit), so batch * size cannot overflow */
#define MAX_INPUT ((uint64_t)1 << 26)

static void put_spec(kd_buf *b, const nn_layer_spec *s)
{
    kd_buf_u32(b, (uint32_t)s->kind);
    kd_buf_str(b, s->name);
    kd_buf_u32(b, (uint32_t)s->units);
    kd_buf_u32(b, (uint32_t)s->filters);
    kd_buf_u32(b, (uint32_t)s->kernel);
    kd_buf_u32(b, (uint32_t)s->stride);
    kd_buf_u32(b, (uint32_t)s->pad);
    kd_buf_f32(b, s->rate);
    kd_buf_f32(b, s->eps);
    kd_buf_f32(b, s->momentum);
    kd_buf_u32(b, (uint32_t)s->init);
}

/* Per compressed layer: u64 length, then the payload its ops->save writes. */
static void put_payloads(const nn_model *m, kd_buf *b)
{
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (!l->ops->save)
            continue;
        size_t at = b->len;
        kd_buf_u64(b, 0);
        l->ops->save(l, b);
        if (!b->failed) {
            uint64_t n = b->len - at - 8;
            memcpy(b->p + at, &n, 8);
        }
    }
}

void nn_model_serialize(const nn_model *m, kd_buf *b)
{
    kd_buf_put(b, NN_MODEL_MAGIC, 4);
    kd_buf_u32(b, NN_MODEL_VERSION);
    kd_buf_u32(b, (uint32_t)m->in.c);
    kd_buf_u32(b, (uint32_t)m->in.h);
    kd_buf_u32(b, (uint32_t)m->in.w);
    kd_buf_f32(b, m->in_mean);
    kd_buf_f32(b, m->in_std);
    kd_buf_u32(b, (uint32_t)m->nlayers);
    for (int i = 0; i < m->nlayers; i++) {
        put_spec(b, &m->layers[i].spec);
        kd_buf_str(b, m->layers[i].ops->name);
    }
    kd_buf_u64(b, m->nparams);
    kd_buf_u64(b, m->nbuffers);
    kd_buf_put(b, m->params, m->nparams * sizeof(float));
    kd_buf_put(b, m->buffers, m->nbuffers * sizeof(float));
    put_payloads(m, b);
}

static int in_range(uint32_t v, uint32_t hi) { return v <= hi; }

static int get_spec(kd_rd *r, nn_layer_spec *s, int i, kd_err *e)
{
    memset(s, 0, sizeof *s);
    uint32_t kind = kd_rd_u32(r);
    kd_rd_str(r, s->name, sizeof s->name);
    uint32_t v[5];
    for (int j = 0; j < 5; j++)
        v[j] = kd_rd_u32(r);
    s->rate = kd_rd_f32(r);
    s->eps = kd_rd_f32(r);
    s->momentum = kd_rd_f32(r);
    uint32_t init = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated in layer %d", i);
    if (kind >= NN_KIND_COUNT || init > NN_INIT_XAVIER)
        return kd_err_set(e, KD_EFORMAT, "layer %d has an unknown kind or initialiser", i);
    if (!isfinite(s->rate) || !isfinite(s->eps) || !isfinite(s->momentum))
        return kd_err_set(e, KD_EFORMAT, "layer %d (%s) has a non-finite rate, eps or momentum",
                          i, s->name);
    for (int j = 0; j < 5; j++)
        if (!in_range(v[j], MAX_DIM))
            return kd_err_set(e, KD_EFORMAT, "layer %d has an out-of-range size", i);
    s->kind = (nn_kind)kind;
    s->units = (int)v[0];
    s->filters = (int)v[1];
    s->kernel = (int)v[2];
    s->stride = (int)v[3];
    s->pad = (int)v[4];
    s->init = (nn_init)init;
    return KD_OK;
}

/* The ops named name for a layer of the given kind: nn's own kind (then the
 * name must be that kind's), or one of the caller's compressed kinds. */
static int resolve_ops(nn_layer_spec *s, const char *name, const nn_layer_ops *const *kinds,
                       int nkinds, int i, kd_err *e)
{
    const nn_layer_ops *own = nn_layer_ops_of(s->kind);
    s->ops = NULL;
    if (strcmp(name, own->name) == 0)
        return KD_OK;
    for (int k = 0; k < nkinds; k++)
        if (kinds[k] && strcmp(name, kinds[k]->name) == 0) {
            s->ops = kinds[k];
            return KD_OK;
        }
    nn_kind other;
    if (nn_kind_from_name(name, &other) == 0)
        return kd_err_set(e, KD_EFORMAT, "layer %d: kind \"%s\" does not match its spec", i,
                          name);
    return kd_err_set(e, KD_EFORMAT,
                      "layer %d has kind \"%s\", which this reader does not know "
                      "(a compressed kind: load it with compress's kinds)", i, name);
}

/* Parameter counts the specs imply, computed without allocating them. */
static int implied_sizes(nn_shape in, const nn_layer_spec *specs, int n, size_t *np, size_t *nb,
                         kd_err *e)
{
    *np = *nb = 0;
    for (int i = 0; i < n; i++) {
        nn_layer l = {.spec = specs[i], .in = in};
        l.ops = specs[i].ops ? specs[i].ops : nn_layer_ops_of(specs[i].kind);
        if (l.ops->setup(&l, e) != KD_OK) {
            kd_err_prefix(e, "layer %d", i);
            if (e) /* the setup's message, but a bad file, not a bad config */
                e->code = KD_EFORMAT;
            return KD_EFORMAT;
        }
        *np += l.nw + l.nb;
        *nb += l.nbuf;
        in = l.out;
    }
    return KD_OK;
}

/* Specs of nl layers, each followed (version >= 2) by its ops name. */
static int get_specs(kd_rd *r, uint32_t ver, nn_layer_spec *specs, uint32_t nl,
                     const nn_layer_ops *const *kinds, int nkinds, kd_err *e)
{
    for (uint32_t i = 0; i < nl; i++) {
        if (get_spec(r, &specs[i], (int)i, e) != KD_OK)
            return KD_EFORMAT;
        if (ver < 2)
            continue;
        char name[64];
        if (kd_rd_str(r, name, sizeof name) != 0)
            return kd_err_set(e, KD_EFORMAT, "truncated or overlong kind name in layer %u", i);
        if (resolve_ops(&specs[i], name, kinds, nkinds, (int)i, e) != KD_OK)
            return KD_EFORMAT;
    }
    return KD_OK;
}

/* One length-prefixed payload per compressed layer, each parsed from a reader
 * bounded to exactly its bytes and required to consume all of them. */
static int get_payloads(kd_rd *r, nn_model *m, kd_err *e)
{
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        if (!l->ops->load)
            continue;
        uint64_t n = kd_rd_u64(r);
        if (!r->ok || n > r->len - r->pos)
            return kd_err_set(e, KD_EFORMAT, "layer %d: truncated %s payload", i, l->ops->name);
        kd_rd sub = {.p = r->p + r->pos, .len = (size_t)n, .ok = 1};
        r->pos += (size_t)n;
        if (l->ops->load(l, &sub, e) != KD_OK) {
            kd_err_prefix(e, "layer %d (%s)", i, l->ops->name);
            return KD_EFORMAT;
        }
        if (!sub.ok || sub.pos != sub.len)
            return kd_err_set(e, KD_EFORMAT, "layer %d: %s payload has %zu stray bytes", i,
                              l->ops->name, sub.len - sub.pos);
    }
    return KD_OK;
}

/* Index of the first non-finite value of v[0..n), or n. */
static size_t first_nonfinite(const float *v, size_t n)
{
    size_t i = 0;
    while (i < n && isfinite(v[i]))
        i++;
    return i;
}

/* A NaN or infinity in a weight, bias or running statistic makes every
 * output NaN (a CRC protects bytes, not meaning): refused, naming the layer. */
static int check_finite(const nn_model *m, kd_err *e)
{
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        const struct { const float *v; size_t n; const char *what; } t[] = {
            {l->w, l->nw, "weight"}, {l->b, l->nb, "bias"}, {l->buf, l->nbuf, "buffer"}};
        for (int k = 0; k < 3; k++) {
            size_t j = t[k].v ? first_nonfinite(t[k].v, t[k].n) : t[k].n;
            if (j < t[k].n)
                return kd_err_set(e, KD_EFORMAT, "layer %d (%s): non-finite %s %zu (%g)", i,
                                  l->spec.name, t[k].what, j, (double)t[k].v[j]);
        }
    }
    return KD_OK;
}

/* The tensors after the specs: counts, parameters, buffers, payloads. */
static nn_model *get_body(kd_rd *r, uint32_t ver, nn_shape in, const nn_layer_spec *specs,
                          uint32_t nl, kd_err *e)
{
    size_t np, nb;
    uint64_t fnp = kd_rd_u64(r), fnb = kd_rd_u64(r);
    if (implied_sizes(in, specs, (int)nl, &np, &nb, e) != KD_OK)
        return NULL;
    if (!r->ok || fnp != np || fnb != nb) {
        kd_err_set(e, KD_EFORMAT, "parameter count in the file does not match its layers");
        return NULL;
    }
    if ((np + nb) > (r->len - r->pos) / sizeof(float)) {
        kd_err_set(e, KD_EFORMAT, "truncated: %zu parameters promised, fewer present", np + nb);
        return NULL;
    }
    nn_model *m = nn_model_new(in, specs, (int)nl, NULL, e);
    if (!m) {
        if (e && e->code != KD_ENOMEM) /* e.g. two layers of one name: a bad file */
            e->code = KD_EFORMAT;
        return NULL;
    }
    kd_rd_get(r, m->params, np * sizeof(float));
    kd_rd_get(r, m->buffers, nb * sizeof(float));
    if (check_finite(m, e) != KD_OK || (ver >= 2 && get_payloads(r, m, e) != KD_OK)) {
        nn_model_free(m);
        return NULL;
    }
    return m;
}

nn_model *nn_model_deserialize_with(kd_rd *r, const nn_layer_ops *const *kinds, int nkinds,
                                    kd_err *e)
{
    char magic[4];
    kd_rd_get(r, magic, 4);
    uint32_t ver = kd_rd_u32(r);
    if (!r->ok || memcmp(magic, NN_MODEL_MAGIC, 4) != 0) {
        kd_err_set(e, KD_EFORMAT, "not a kdbench model file (bad magic)");
        return NULL;
    }
    if (ver < 1 || ver > NN_MODEL_VERSION) {
        kd_err_set(e, KD_EFORMAT, "model file version %u; this build reads versions 1 to %u",
                   ver, NN_MODEL_VERSION);
        return NULL;
    }
    uint32_t c = kd_rd_u32(r), h = kd_rd_u32(r), w = kd_rd_u32(r);
    float mean = kd_rd_f32(r), sd = kd_rd_f32(r);
    uint32_t nl = kd_rd_u32(r);
    if (!r->ok || !in_range(c, MAX_DIM) || !in_range(h, MAX_DIM) || !in_range(w, MAX_DIM) ||
        (uint64_t)c * h * w > MAX_INPUT || nl < 1 || nl > MAX_LAYERS) {
        kd_err_set(e, KD_EFORMAT, "bad model header (truncated or out-of-range sizes)");
        return NULL;
    }
    if (!(sd > 0) || !isfinite(sd) || !isfinite(mean)) {
        kd_err_set(e, KD_EFORMAT, "bad input normalisation (mean %g, std %g)", (double)mean,
                   (double)sd);
        return NULL;
    }
    nn_layer_spec *specs = kd_calloc(nl, sizeof *specs);
    if (!specs) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    nn_model *m = NULL;
    if (get_specs(r, ver, specs, nl, kinds, nkinds, e) == KD_OK &&
        (m = get_body(r, ver, (nn_shape){(int)c, (int)h, (int)w}, specs, nl, e))) {
        m->in_mean = mean;
        m->in_std = sd;
    }
    kd_free(specs);
    return m;
}

nn_model *nn_model_deserialize(kd_rd *r, kd_err *e)
{
    return nn_model_deserialize_with(r, NULL, 0, e);
}

int nn_model_save(const nn_model *m, const char *path, kd_err *e)
{
    kd_buf b = {0};
    nn_model_serialize(m, &b);
    kd_buf_u32(&b, kd_crc32(0, b.p, b.len));
    int rc = b.failed ? kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}

nn_model *nn_model_load_with(const char *path, const nn_layer_ops *const *kinds, int nkinds,
                             kd_err *e)
{
    uint8_t *p;
    size_t n;
    if (kd_read_file(path, (size_t)1 << 32, &p, &n, e) != KD_OK)
        return NULL;
    nn_model *m = NULL;
    uint32_t crc;
    if (n < 12) {
        kd_err_at(e, KD_EFORMAT, path, 0, 0, "truncated model file (%zu bytes)", n);
    } else if (memcpy(&crc, p + n - 4, 4), crc != kd_crc32(0, p, n - 4)) {
        kd_err_at(e, KD_EFORMAT, path, 0, 0,
                  memcmp(p, NN_MODEL_MAGIC, 4) ? "not a kdbench model file (bad magic)"
                                               : "checksum mismatch: the file is truncated or corrupt");
    } else {
        kd_rd r = {.p = p, .len = n - 4, .ok = 1};
        m = nn_model_deserialize_with(&r, kinds, nkinds, e);
        if (m && r.pos != r.len) {
            kd_err_set(e, KD_EFORMAT, "%zu unexpected bytes after the model", r.len - r.pos);
            nn_model_free(m);
            m = NULL;
        }
        if (!m) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e ? e->msg : "");
            /* keep out-of-memory apart from a bad file */
            kd_err_at(e, e && e->code == KD_ENOMEM ? KD_ENOMEM : KD_EFORMAT, path, 0, 0, "%s",
                      msg);
        }
    }
    kd_free(p);
    return m;
}

nn_model *nn_model_load(const char *path, kd_err *e)
{
    return nn_model_load_with(path, NULL, 0, e);
}
