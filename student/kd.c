/* The distillation losses and the teacher's logits. */
#include <math.h>
#include <string.h>

#include "student.h"

/* softmax(z/T) of one row into p (k values); returns log-sum-exp of z/T. */
static double softmax_t(const float *z, int k, float T, double *p)
{
    double mx = z[0] / (double)T, sum = 0;
    for (int j = 1; j < k; j++)
        mx = z[j] / (double)T > mx ? z[j] / (double)T : mx;
    for (int j = 0; j < k; j++)
        sum += p[j] = exp(z[j] / (double)T - mx);
    for (int j = 0; j < k; j++)
        p[j] /= sum;
    return mx + log(sum);
}

float student_kd_loss(const float *s, const float *t, const uint8_t *y, int n, int k, float T,
                      float alpha, float *ds)
{
    double ps[256], pt[256], p1[256], total = 0;
    const double inv_n = 1.0 / n;
    for (int i = 0; i < n; i++) {
        const float *si = s + (size_t)i * k, *ti = t + (size_t)i * k;
        double lse_s = softmax_t(si, k, T, ps), lse_t = softmax_t(ti, k, T, pt);
        double kl = 0;
        for (int j = 0; j < k; j++)
            if (pt[j] > 0) /* log pt - log ps, both from log-sum-exp: stable */
                kl += pt[j] * ((ti[j] / (double)T - lse_t) - (si[j] / (double)T - lse_s));
        double lse1 = softmax_t(si, k, 1.0f, p1);
        double ce = lse1 - si[y[i]];
        total += alpha * (double)T * T * kl + (1 - alpha) * ce;
        if (!ds)
            continue;
        float *d = ds + (size_t)i * k;
        for (int j = 0; j < k; j++)
            d[j] = (float)((alpha * T * (ps[j] - pt[j]) +
                            (1 - alpha) * (p1[j] - (j == y[i]))) * inv_n);
    }
    return (float)(total * inv_n);
}

float student_hint_loss(const float *a, const float *t, size_t count, float weight, float *da)
{
    double total = 0, scale = count ? 2.0 * weight / (double)count : 0;
    for (size_t j = 0; j < count; j++) {
        double d = (double)a[j] - t[j];
        total += d * d;
        if (da)
            da[j] = (float)(scale * d);
    }
    return count ? (float)(weight * total / (double)count) : 0.0f;
}

float *student_teacher_logits(nn_model *teacher, const data_set *d, int batch, kd_err *e)
{
    const int k = teacher->nclasses;
    float *out = kd_afloat((size_t)d->n * k), *x = kd_afloat((size_t)batch * nn_shape_size(teacher->in));
    int *idx = kd_malloc((size_t)batch * sizeof *idx);
    if (!out || !x || !idx || nn_model_reserve(teacher, batch, e) != KD_OK) {
        kd_afree(out);
        kd_afree(x);
        kd_free(idx);
        kd_err_set(e, KD_ENOMEM, "out of memory for the teacher's logits");
        return NULL;
    }
    nn_ctx c = {.train = 0};
    for (int s = 0; s < d->n; s += batch) {
        int n = d->n - s < batch ? d->n - s : batch;
        for (int i = 0; i < n; i++)
            idx[i] = s + i;
        data_batch(d, idx, n, teacher->in_mean, teacher->in_std, x, NULL);
        const float *z = nn_model_forward(teacher, x, n, &c);
        memcpy(out + (size_t)s * k, z, (size_t)n * k * sizeof *out);
    }
    kd_afree(x);
    kd_free(idx);
    return out;
}
