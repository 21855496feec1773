/* Per-model counters and histograms, and their Prometheus text exposition. */
#include <string.h>

#include "../reports/reports.h"
#include "internal.h"

/* seconds; the last bucket is +Inf */
static const double lat_le[SERVE_LAT_NB - 1] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                0.005,  0.01,    0.025,  0.05,  0.1,
                                                0.25,   0.5,     1.0};
static const double batch_le[SERVE_BATCH_NB - 1] = {1, 2, 4, 8, 16, 32, 64, 128};

static void hist_add(serve_hist *h, const double *le, int nb, double v)
{
    int i = 0;
    while (i < nb - 1 && v > le[i])
        i++;
    h->le[i]++;
    h->n++;
    h->sum += v;
}

void serve_metrics_init(serve_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void serve_metrics_destroy(serve_metrics *m) { pthread_mutex_destroy(&m->mu); }

void serve_metrics_request(serve_metrics *m, int failed, double seconds)
{
    pthread_mutex_lock(&m->mu);
    m->requests++;
    m->failures += failed != 0;
    hist_add(&m->request_s, lat_le, SERVE_LAT_NB, seconds);
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_batch(serve_metrics *m, const double *queue_s, int njobs, int rows,
                         double compute_s)
{
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < njobs; i++)
        hist_add(&m->queue_s, lat_le, SERVE_LAT_NB, queue_s[i]);
    hist_add(&m->compute_s, lat_le, SERVE_LAT_NB, compute_s);
    hist_add(&m->batch_rows, batch_le, SERVE_BATCH_NB, rows);
    pthread_mutex_unlock(&m->mu);
}

void serve_metrics_shadow(serve_metrics *m, int rows, int agree)
{
    pthread_mutex_lock(&m->mu);
    m->shadow_runs += (uint64_t)rows;
    m->shadow_agree += (uint64_t)agree;
    pthread_mutex_unlock(&m->mu);
}

/* ---- exposition ---------------------------------------------------------------- */

/* Label values escape \ " and newline (the format's rule). */
static void label(kd_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            rep_bprintf(b, "\\%c", *v);
        else if (*v == '\n')
            rep_bprintf(b, "\\n");
        else
            kd_buf_put(b, v, 1);
    }
}

static void hist_text(kd_buf *b, const char *metric, const char *model, const serve_hist *h,
                      const double *le, int nb)
{
    uint64_t cum = 0;
    for (int i = 0; i < nb; i++) {
        cum += h->le[i];
        rep_bprintf(b, "%s_bucket{model=\"", metric);
        label(b, model);
        if (i < nb - 1)
            rep_bprintf(b, "\",le=\"%g\"} %llu\n", le[i], (unsigned long long)cum);
        else
            rep_bprintf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    rep_bprintf(b, "%s_sum{model=\"", metric);
    label(b, model);
    rep_bprintf(b, "\"} %.9g\n%s_count{model=\"", h->sum, metric);
    label(b, model);
    rep_bprintf(b, "\"} %llu\n", (unsigned long long)h->n);
}

static void counter(kd_buf *b, const char *metric, const char *model, double v)
{
    rep_bprintf(b, "%s{model=\"", metric);
    label(b, model);
    rep_bprintf(b, "\"} %.17g\n", v);
}

void serve_metrics_text(kd_buf *b, const serve_metrics_row *rows, int n)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"kdbench_requests_total", "counter", "Requests answered, per model."},
        {"kdbench_request_failures_total", "counter", "Requests answered with a non-2xx status."},
        {"kdbench_model_bytes", "gauge", "Size of the model file on disk."},
        {"kdbench_shadow_rows_total", "counter", "Rows also run on the shadow model."},
        {"kdbench_shadow_agreement", "gauge",
         "Share of shadowed rows whose class equals the shadow model's."},
        {"kdbench_request_seconds", "histogram", "Request latency, parse to answer."},
        {"kdbench_queue_seconds", "histogram", "Time a request waited for its batch."},
        {"kdbench_compute_seconds", "histogram", "Time of one batched forward."},
        {"kdbench_batch_rows", "histogram", "Rows per batched forward."},
    };
    for (int f = 0; f < (int)(sizeof fam / sizeof fam[0]); f++) {
        rep_bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
                    fam[f].type);
        for (int i = 0; i < n; i++) {
            serve_metrics *m = rows[i].m;
            pthread_mutex_lock(&m->mu);
            const char *fn = fam[f].name, *mn = rows[i].name;
            switch (f) {
            case 0: counter(b, fn, mn, (double)m->requests); break;
            case 1: counter(b, fn, mn, (double)m->failures); break;
            case 2: counter(b, fn, mn, (double)rows[i].bytes); break;
            case 3: counter(b, fn, mn, (double)m->shadow_runs); break;
            case 4:
                if (m->shadow_runs)
                    counter(b, fn, mn, (double)m->shadow_agree / (double)m->shadow_runs);
                break;
            case 5: hist_text(b, fn, mn, &m->request_s, lat_le, SERVE_LAT_NB); break;
            case 6: hist_text(b, fn, mn, &m->queue_s, lat_le, SERVE_LAT_NB); break;
            case 7: hist_text(b, fn, mn, &m->compute_s, lat_le, SERVE_LAT_NB); break;
            default: hist_text(b, fn, mn, &m->batch_rows, batch_le, SERVE_BATCH_NB);
            }
            pthread_mutex_unlock(&m->mu);
        }
    }
}
