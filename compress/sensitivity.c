/* Sensitivity analysis (each prunable layer pruned alone, accuracy per
 * sparsity) and the run-directory tables sensitivity.csv and sparsity.csv. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Accuracy of a copy of m whose layer i alone is magnitude-pruned to s. */
static int accuracy_at(const nn_model *m, int i, float s, const data_set *d, double *acc,
                       kd_err *e)
{
    compress_override ov = {.sparsity = s};
    snprintf(ov.pattern, sizeof ov.pattern, "%s", m->layers[i].spec.name);
    compress_prune_spec ps = {.scope = COMPRESS_LAYERWISE, .overrides = &ov, .noverrides = 1};
    nn_model *c = nn_model_clone(m, e);
    if (!c)
        return KD_ENOMEM;
    int rc = compress_prune_magnitude(c, &ps, NULL, e);
    if (rc == KD_OK)
        rc = train_evaluate(c, d, 256, NULL, acc, e);
    nn_model_free(c);
    return rc;
}

int compress_sensitivity(const nn_model *m, const data_set *d, const float *sparsities, int ns,
                         compress_sens_row **rows, int *nrows, kd_err *e)
{
    *rows = NULL;
    *nrows = 0;
    for (int j = 0; j < ns; j++)
        if (!(sparsities[j] >= 0 && sparsities[j] < 1))
            return kd_err_set(e, KD_ECONFIG, "sparsity %g is outside [0, 1)",
                              (double)sparsities[j]);
    int np = 0;
    for (int i = 0; i < m->nlayers; i++)
        np += compress_is_prunable(&m->layers[i]);
    compress_sens_row *r = kd_calloc((size_t)(np * ns) + 1, sizeof *r);
    if (!r)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int n = 0, rc = KD_OK;
    for (int i = 0; i < m->nlayers && rc == KD_OK; i++) {
        if (!compress_is_prunable(&m->layers[i]))
            continue;
        for (int j = 0; j < ns && rc == KD_OK; j++, n++) {
            snprintf(r[n].layer, sizeof r[n].layer, "%s", m->layers[i].spec.name);
            r[n].sparsity = sparsities[j];
            rc = accuracy_at(m, i, sparsities[j], d, &r[n].accuracy, e);
        }
    }
    if (rc != KD_OK) {
        kd_free(r);
        return rc;
    }
    *rows = r;
    *nrows = n;
    return KD_OK;
}

int compress_write_table(const char *dir, const char *name, kd_buf *b, kd_err *e)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return kd_err_set(e, KD_EIO, "path too long: %s/%s", dir, name);
    int rc = b->failed ? kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory")
                       : kd_write_atomic(path, b->p, b->len, e);
    kd_buf_free(b);
    return rc;
}

static void put_line(kd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_line(kd_buf *b, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    kd_buf_put(b, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

int compress_write_sensitivity_csv(const char *run_dir, const compress_sens_row *rows, int n,
                                   kd_err *e)
{
    kd_buf b = {0};
    put_line(&b, "layer,sparsity,accuracy\n");
    for (int i = 0; i < n; i++)
        put_line(&b, "%s,%.4f,%.6f\n", rows[i].layer, (double)rows[i].sparsity, rows[i].accuracy);
    return compress_write_table(run_dir, "sensitivity.csv", &b, e);
}

void compress_sparsity_rows(kd_buf *b, const char *variant, const nn_model *m)
{
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        size_t nz, np = nn_layer_params(l, &nz);
        if (np)
            put_line(b, "%s,%s,%zu,%zu\n", variant, l->spec.name, np, nz);
    }
}

int compress_write_sparsity_csv(const char *run_dir, const char *const *variants,
                                const nn_model *const *models, int n, kd_err *e)
{
    kd_buf b = {0};
    put_line(&b, COMPRESS_SPARSITY_HEADER);
    for (int v = 0; v < n; v++)
        compress_sparsity_rows(&b, variants[v], models[v]);
    return compress_write_table(run_dir, "sparsity.csv", &b, e);
}
