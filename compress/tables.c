/* sparsity.csv and weights_hist.csv accumulated one model at a time (the
 * run's compress stage frees each variant once its rows are in). */
#include <string.h>

#include "internal.h"

int compress_tables_init(compress_tables *t, int nbins, kd_err *e)
{
    memset(t, 0, sizeof *t);
    if (nbins < 1 || nbins > COMPRESS_HIST_MAX_BINS)
        return kd_err_set(e, KD_ECONFIG, "histogram of %d bins", nbins);
    if (!(t->cnt = kd_malloc((size_t)nbins * sizeof *t->cnt)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    t->nbins = nbins;
    kd_buf_put(&t->sparsity, COMPRESS_SPARSITY_HEADER, strlen(COMPRESS_SPARSITY_HEADER));
    kd_buf_put(&t->hist, COMPRESS_HIST_HEADER, strlen(COMPRESS_HIST_HEADER));
    return KD_OK;
}

int compress_tables_add(compress_tables *t, const char *variant, const nn_model *m, kd_err *e)
{
    compress_sparsity_rows(&t->sparsity, variant, m);
    return compress_weights_hist_rows(&t->hist, variant, m, t->nbins, t->cnt, e);
}

int compress_tables_write(compress_tables *t, const char *run_dir, kd_err *e)
{
    int rc = compress_write_table(run_dir, "sparsity.csv", &t->sparsity, e);
    if (rc == KD_OK)
        rc = compress_write_table(run_dir, "weights_hist.csv", &t->hist, e);
    return rc;
}

void compress_tables_free(compress_tables *t)
{
    kd_buf_free(&t->sparsity);
    kd_buf_free(&t->hist);
    kd_free(t->cnt);
    t->cnt = NULL;
}
