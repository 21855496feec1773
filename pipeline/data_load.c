/* Resolving a config's data section to loaded sets. */
#include <stdio.h>
#include <string.h>

#include "pipeline.h"

static int load_pair(const cfg_data *d, int test, int max_n, data_set *out, kd_err *e)
{
    char img[CFG_PATH_MAX + 64], lab[CFG_PATH_MAX + 64];
    switch (d->kind) {
    case CFG_DATA_FASHION:
        /* cannot be cut: d->dir is shorter than CFG_PATH_MAX */
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", d->dir, test ? "t10k" : "train");
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", d->dir, test ? "t10k" : "train");
        return data_idx_load(img, lab, max_n, out, e);
    case CFG_DATA_IDX:
        return data_idx_load(test ? d->test_images : d->train_images,
                             test ? d->test_labels : d->train_labels, max_n, out, e);
    case CFG_DATA_CSV:
        return data_csv_load(test ? d->test_csv : d->train_csv, d->shape, max_n, out, e);
    }
    return kd_err_set(e, KD_ECONFIG, "unknown dataset kind");
}

static int check_shape(const cfg_data *d, const data_set *s, const char *what, kd_err *e)
{
    if (nn_shape_size(s->shape) != nn_shape_size(d->shape))
        return kd_err_set(e, KD_ECONFIG,
                          "%s data has samples of %dx%dx%d, the config says data.shape "
                          "[%d, %d, %d]",
                          what, s->shape.c, s->shape.h, s->shape.w, d->shape.c, d->shape.h,
                          d->shape.w);
    return KD_OK;
}

int pipeline_load_data(const cfg_data *d, uint64_t seed, data_set *train, data_set *val,
                       data_set *test, kd_err *e)
{
    data_set all = {0};
    memset(test, 0, sizeof *test);
    int rc = load_pair(d, 0, d->train_subset, &all, e);
    if (rc == KD_OK)
        rc = check_shape(d, &all, "training", e);
    if (rc == KD_OK)
        rc = load_pair(d, 1, d->test_subset, test, e);
    if (rc == KD_OK)
        rc = check_shape(d, test, "test", e);
    if (rc == KD_OK) {
        all.shape = test->shape = d->shape; /* e.g. CSV rows given an image shape */
        if (test->nclasses > all.nclasses)
            all.nclasses = test->nclasses;
        test->nclasses = all.nclasses;
        rc = data_split(&all, d->val_fraction, seed, train, val, e);
    }
    if (rc != KD_OK) {
        data_set_free(&all);
        data_set_free(test);
    }
    return rc;
}

/* n, shape and nclasses of one file (pair) of d, the pixels unread. */
static int peek_one(const cfg_data *d, int test, data_set *out, kd_err *e)
{
    int max_n = test ? d->test_subset : d->train_subset;
    char img[CFG_PATH_MAX + 64], lab[CFG_PATH_MAX + 64];
    switch (d->kind) {
    case CFG_DATA_FASHION:
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", d->dir, test ? "t10k" : "train");
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", d->dir, test ? "t10k" : "train");
        return data_idx_peek(img, lab, max_n, out, e);
    case CFG_DATA_IDX:
        return data_idx_peek(test ? d->test_images : d->train_images,
                             test ? d->test_labels : d->train_labels, max_n, out, e);
    case CFG_DATA_CSV: { /* labels and features share lines: the file is read */
        int rc =
            data_csv_load(test ? d->test_csv : d->train_csv, (nn_shape){0, 0, 0}, max_n, out, e);
        data_set keep = {.n = out->n, .shape = out->shape, .nclasses = out->nclasses};
        data_set_free(out);
        *out = keep;
        return rc;
    }
    }
    return kd_err_set(e, KD_ECONFIG, "unknown dataset kind");
}

int pipeline_data_facts(const cfg_data *d, cfg_data_facts *f, kd_err *e)
{
    data_set tr, te;
    memset(f, 0, sizeof *f);
    int rc = peek_one(d, 0, &tr, e);
    if (rc != KD_OK || (rc = peek_one(d, 1, &te, e)) != KD_OK)
        return rc;
    f->ntrain = tr.n - (int)((double)tr.n * d->val_fraction + 0.5); /* as data_split */
    f->nclasses = tr.nclasses > te.nclasses ? tr.nclasses : te.nclasses;
    f->train_values = nn_shape_size(tr.shape);
    f->test_values = nn_shape_size(te.shape);
    return KD_OK;
}

uint32_t pipeline_data_crc(const data_set *d)
{
    size_t nx = (size_t)d->n * nn_shape_size(d->shape);
    uint32_t crc = d->x8 ? kd_crc32(0, d->x8, nx) : d->xf ? kd_crc32(0, d->xf, nx * 4) : 0;
    return d->y ? kd_crc32(crc, d->y, (size_t)d->n) : crc;
}

int pipeline_load_eval_data(const char *dir, const char *images, const char *labels,
                            const char *csv, nn_shape shape, data_set *out, kd_err *e)
{
    char img[4200], lab[4200];
    memset(out, 0, sizeof *out);
    if (csv)
        return data_csv_load(csv, shape, 0, out, e);
    if (images && labels)
        return data_idx_load(images, labels, 0, out, e);
    if (snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", dir) >= (int)sizeof img ||
        snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", dir) >= (int)sizeof lab)
        return kd_err_at(e, KD_ECONFIG, "--dir", 0, 0, "the folder's path is too long (%zu bytes)",
                         strlen(dir));
    return data_idx_load(img, lab, 0, out, e);
}
