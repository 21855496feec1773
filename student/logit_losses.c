/* The logit losses after Hinton's KD: DKD (Zhao et al. CVPR 2022), DIST
 * (Huang et al. NeurIPS 2022) and logit standardization (Sun et al. CVPR
 * 2024), and the one entry point that composes a method from them.  Each
 * loss is a mean (or the papers' normalisation) over the batch, written in
 * double, with its gradient w.r.t. the student's logits. */
#include <math.h>
#include <string.h>

#include "student.h"

#define ZSCORE_EPS 1e-7  /* Sun et al.'s code: (z - mean) / (1e-7 + std) */
#define PEARSON_EPS 1e-8 /* DIST's code: <a,b> / (|a| |b| + 1e-8) */

/* log-sum-exp of z[j]/T over j != skip (skip < 0: over all k). */
static double lse_t(const float *z, int k, double T, int skip)
{
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < k; j++)
        if (j != skip && z[j] / T > mx)
            mx = z[j] / T;
    for (int j = 0; j < k; j++)
        if (j != skip)
            sum += exp(z[j] / T - mx);
    return mx + log(sum);
}

/* ---- logit standardization ------------------------------------------------ */
void student_zscore(const float *z, int n, int k, float *zs)
{
    for (int i = 0; i < n; i++) {
        const float *r = z + (size_t)i * k;
        double m = 0, v = 0;
        for (int j = 0; j < k; j++)
            m += r[j];
        m /= k;
        for (int j = 0; j < k; j++)
            v += (r[j] - m) * (r[j] - m);
        double sd = k > 1 ? sqrt(v / (k - 1)) : 0; /* torch.std: unbiased */
        for (int j = 0; j < k; j++)
            zs[(size_t)i * k + j] = (float)((r[j] - m) / (sd + ZSCORE_EPS));
    }
}

/* With u = z - mean and sd = sqrt(sum u^2 / (k-1)):
 *   dz_i = (g_i - mean g) / (sd + eps) - u_i (sum_j g_j u_j) / ((k-1) sd (sd + eps)^2). */
void student_zscore_backward(const float *z, float *g, int n, int k)
{
    for (int i = 0; i < n; i++) {
        const float *r = z + (size_t)i * k;
        float *gi = g + (size_t)i * k;
        double m = 0, v = 0, gm = 0, gu = 0;
        for (int j = 0; j < k; j++)
            m += r[j];
        m /= k;
        for (int j = 0; j < k; j++) {
            v += (r[j] - m) * (r[j] - m);
            gm += gi[j];
            gu += gi[j] * (r[j] - m);
        }
        gm /= k;
        double sd = k > 1 ? sqrt(v / (k - 1)) : 0, d = sd + ZSCORE_EPS;
        double c = sd > 0 ? gu / ((k - 1) * sd * d * d) : 0;
        for (int j = 0; j < k; j++)
            gi[j] = (float)((gi[j] - gm) / d - (r[j] - m) * c);
    }
}

/* ---- DKD -------------------------------------------------------------------- */
/* One row: returns alpha TCKD + beta NCKD (without T^2) and, when d is not
 * NULL, its gradient w.r.t. s/T (T^2/T and 1/n are applied by the caller). */
static double dkd_row(const float *s, const float *t, int y, int k, double T, double alpha,
                      double beta, float *d, double scale)
{
    double ls = lse_t(s, k, T, -1), lt = lse_t(t, k, T, -1);
    double ns = lse_t(s, k, T, y), nt = lse_t(t, k, T, y); /* over the non-target classes */
    /* binary (target, rest) distributions, from log-sum-exps: stable */
    double lbs_t = s[y] / T - ls, lbs_o = ns - ls, lbt_t = t[y] / T - lt, lbt_o = nt - lt;
    double bt_t = exp(lbt_t), bt_o = exp(lbt_o), bs_t = exp(lbs_t);
    double tckd = (bt_t > 0 ? bt_t * (lbt_t - lbs_t) : 0) + (bt_o > 0 ? bt_o * (lbt_o - lbs_o) : 0);
    double nckd = 0;
    for (int j = 0; j < k; j++) {
        if (j == y)
            continue;
        double lps = s[j] / T - ns, lpt = t[j] / T - nt, pt = exp(lpt);
        if (pt > 0)
            nckd += pt * (lpt - lps);
        if (d) /* TCKD: phat_S,j (b_T,t - b_S,t); NCKD: phat_S,j - phat_T,j */
            d[j] = (float)(scale * (alpha * exp(lps) * (bt_t - bs_t) + beta * (exp(lps) - pt)));
    }
    if (d)
        d[y] = (float)(scale * alpha * (bs_t - bt_t));
    return alpha * tckd + beta * nckd;
}

float student_dkd_loss(const float *s, const float *t, const uint8_t *y, int n, int k, float T,
                       float alpha, float beta, float *ds)
{
    if (k < 2) { /* no non-target class: nothing to decouple */
        if (ds)
            memset(ds, 0, (size_t)n * k * sizeof *ds);
        return 0;
    }
    double total = 0, scale = (double)T / n; /* T^2 * (1/T from s/T) / n */
    for (int i = 0; i < n; i++)
        total += dkd_row(s + (size_t)i * k, t + (size_t)i * k, y[i], k, T, alpha, beta,
                         ds ? ds + (size_t)i * k : NULL, scale);
    return (float)((double)T * T * total / n);
}

/* ---- DIST ------------------------------------------------------------------- */
/* Pearson correlation of a and b (m values at a stride); adds
 * -scale * d rho / d a into g (centering is a no-op on this gradient: both
 * centered vectors sum to zero).  Returns rho. */
static double pearson(const float *a, const float *b, int m, size_t stride, double scale, float *g)
{
    double ma = 0, mb = 0, c = 0, aa = 0, bb = 0;
    for (int j = 0; j < m; j++) {
        ma += a[j * stride];
        mb += b[j * stride];
    }
    ma /= m;
    mb /= m;
    for (int j = 0; j < m; j++) {
        double u = a[j * stride] - ma, v = b[j * stride] - mb;
        c += u * v;
        aa += u * u;
        bb += v * v;
    }
    double na = sqrt(aa), nb = sqrt(bb), nn = na * nb + PEARSON_EPS;
    if (g)
        for (int j = 0; j < m; j++) {
            double u = a[j * stride] - ma, v = b[j * stride] - mb;
            double dr = v / nn - (na > 0 ? c * nb * u / (na * nn * nn) : 0);
            g[j * stride] -= (float)(scale * dr);
        }
    return c / nn;
}

static void softmax_rows(const float *z, int n, int k, float T, float *p)
{
    for (int i = 0; i < n; i++) {
        double l = lse_t(z + (size_t)i * k, k, T, -1);
        for (int j = 0; j < k; j++)
            p[(size_t)i * k + j] = (float)exp(z[(size_t)i * k + j] / (double)T - l);
    }
}

float student_dist_loss(const float *s, const float *t, int n, int k, float T, float beta,
                        float gamma, float *ds, float *work)
{
    const size_t nk = (size_t)n * k;
    float *ys = work, *yt = work + nk, *g = ds ? work + 2 * nk : NULL;
    const double T2 = (double)T * T;
    softmax_rows(s, n, k, T, ys);
    softmax_rows(t, n, k, T, yt);
    if (g)
        memset(g, 0, nk * sizeof *g);
    double inter = 0, intra = 0;
    for (int i = 0; i < n; i++) /* across classes, per sample */
        inter += 1 - pearson(ys + (size_t)i * k, yt + (size_t)i * k, k, 1, T2 * beta / n,
                             g ? g + (size_t)i * k : NULL);
    for (int j = 0; j < k; j++) /* across the batch, per class */
        intra += 1 - pearson(ys + j, yt + j, n, (size_t)k, T2 * gamma / k, g ? g + j : NULL);
    if (ds) /* through softmax(s/T): p_j (g_j - sum p g) / T */
        for (int i = 0; i < n; i++) {
            const float *p = ys + (size_t)i * k, *gi = g + (size_t)i * k;
            double pg = 0;
            for (int j = 0; j < k; j++)
                pg += (double)p[j] * gi[j];
            for (int j = 0; j < k; j++)
                ds[(size_t)i * k + j] = (float)(p[j] * (gi[j] - pg) / T);
        }
    return (float)(T2 * (beta * inter / n + gamma * intra / k));
}

/* ---- one method ------------------------------------------------------------- */
size_t student_logit_work(int n, int k) { return 6 * (size_t)n * k; }

float student_dkd_weight(const student_distill_opts *o, int epoch)
{
    if (o->warmup <= 0 || epoch >= o->warmup)
        return 1.0f;
    return (float)(epoch > 0 ? epoch : 1) / (float)o->warmup;
}

float student_logit_loss(const student_distill_opts *o, int epoch, const float *s,
                         const float *t, const uint8_t *y, int n, int k, float *ds, float *work)
{
    if (o->method == STUDENT_KD && !o->standardize) /* Hinton KD, exactly as before */
        return student_kd_loss(s, t, y, n, k, o->temperature, o->alpha, ds);
    const size_t nk = (size_t)n * k;
    const float *ss = s, *ts = t;
    float *g = ds ? work + 2 * nk : NULL;
    if (o->standardize) {
        student_zscore(s, n, k, work);
        student_zscore(t, n, k, work + nk);
        ss = work;
        ts = work + nk;
    }
    double soft, w_soft = 1, w_ce = 1;
    if (o->method == STUDENT_KD) {
        soft = student_kd_loss(ss, ts, y, n, k, o->temperature, 1.0f, g); /* the KL term alone */
        w_soft = o->alpha;
        w_ce = 1 - o->alpha;
    } else if (o->method == STUDENT_DKD) {
        soft = student_dkd_loss(ss, ts, y, n, k, o->temperature, o->alpha, o->beta, g);
        w_soft = student_dkd_weight(o, epoch);
    } else {
        soft = student_dist_loss(ss, ts, n, k, o->temperature, o->beta, o->gamma, g,
                                 work + 3 * nk);
    }
    double ce = nn_softmax_xent(s, y, n, k, ds); /* ds = d CE */
    if (ds) {
        if (o->standardize)
            student_zscore_backward(s, g, n, k);
        for (size_t i = 0; i < nk; i++)
            ds[i] = (float)(w_ce * ds[i] + w_soft * g[i]);
    }
    return (float)(w_soft * soft + w_ce * ce);
}
