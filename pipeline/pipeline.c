/* The experiment runner: run directory, stages in order, checkpoints, results. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../measure/measure.h"
#include "../reports/reports.h"
#include "../teacher/teacher.h"
#include "pipeline.h"

#define MAX_CURVES 64

/* Everything one run holds; lives on pipeline_run's stack. */
typedef struct {
    const exp_spec *spec;
    const pipeline_opts *o;
    char dir[3000];
    kd_log log;
    data_set train, val, test;
    /* per-model training curves, rewritten into metrics.jsonl after each epoch */
    struct {
        char model[96];
        const train_state *st;
    } curves[MAX_CURVES];
    int ncurves;
    rep_row rows[MAX_CURVES];
    int nrows;
    const char *ckpt_path; /* of the model in training */
} run_ctx;

static void path_in(const run_ctx *r, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", r->dir, name);
}

static int write_metrics(run_ctx *r, kd_err *e)
{
    kd_buf b = {0};
    for (int c = 0; c < r->ncurves; c++) {
        const train_state *st = r->curves[c].st;
        for (int i = 0; i < st->epochs_done; i++) {
            const train_epoch *h = &st->history[i];
            rep_bprintf(&b, "{\"model\": ");
            rep_json_str(&b, r->curves[c].model);
            rep_bprintf(&b,
                        ", \"epoch\": %d, \"loss\": %.6g, \"train_acc\": %.6g, "
                        "\"val_loss\": %.6g, \"val_acc\": %.6g, \"lr\": %.6g, "
                        "\"seconds\": %.4g, \"samples_per_s\": %.6g}\n",
                        h->epoch, h->loss, h->train_acc, h->val_loss, h->val_acc, h->lr,
                        h->seconds, h->samples_per_s);
        }
    }
    char path[3100];
    path_in(r, "metrics.jsonl", path, sizeof path);
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}

static int on_epoch(void *ctx, const train_state *st, const train_epoch *ep, kd_err *e)
{
    run_ctx *r = ctx;
    kd_logf(&r->log,
            "%s epoch %d: loss %.4f train %.2f%% val %.2f%% lr %.4g %.1f s (%.0f samples/s)",
            r->curves[r->ncurves - 1].model, ep->epoch, ep->loss, 100 * ep->train_acc,
            100 * ep->val_acc, ep->lr, ep->seconds, ep->samples_per_s);
    int rc = write_metrics(r, e);
    /* the checkpoint is written last: a kill between the two leaves metrics
     * one epoch ahead, and a resume rewrites them from the checkpoint */
    return rc != KD_OK ? rc : train_checkpoint_save(st, r->ckpt_path, e);
}

static int same_architecture(const nn_model *a, const nn_model *b)
{
    if (a->nlayers != b->nlayers || a->nparams != b->nparams || a->nbuffers != b->nbuffers)
        return 0;
    for (int i = 0; i < a->nlayers; i++) {
        nn_layer_spec x = a->layers[i].spec, y = b->layers[i].spec;
        if (x.kind != y.kind || x.units != y.units || x.filters != y.filters ||
            x.kernel != y.kernel || x.stride != y.stride || x.pad != y.pad || x.rate != y.rate)
            return 0;
    }
    return 1;
}

/* A fresh state, or the one in the checkpoint when resuming. */
static int start_state(run_ctx *r, const cfg_model *cm, const train_opts *to, train_state *st,
                       kd_err *e)
{
    nn_model *fresh = teacher_build(cm, r->spec->data.shape, r->spec->seed, e);
    if (!fresh)
        return e->code;
    if (r->o->resume && access(r->ckpt_path, F_OK) == 0) {
        int rc = train_checkpoint_load(r->ckpt_path, to, st, e);
        if (rc == KD_OK && !same_architecture(st->model, fresh)) {
            nn_model_free(st->model);
            train_state_free(st);
            rc = kd_err_at(e, KD_ECONFIG, r->ckpt_path, 0, 0,
                           "the checkpoint's architecture differs from the config; run "
                           "without --resume to start over");
        }
        nn_model_free(fresh);
        if (rc == KD_OK)
            kd_logf(&r->log, "resuming from %s after epoch %d", r->ckpt_path, st->epochs_done);
        return rc;
    }
    if (r->o->resume)
        kd_logf(&r->log, "no checkpoint at %s: starting from scratch", r->ckpt_path);
    return train_state_init(st, fresh, to, e) == KD_OK ? KD_OK
                                                        : (nn_model_free(fresh), KD_ENOMEM);
}

static void row_from(rep_row *row, const measure_result *m, double train_s)
{
    row->params = (long long)m->params;
    row->nonzero_params = (long long)m->nonzero_params;
    row->size_bytes = m->size_bytes;
    row->accuracy = m->accuracy;
    row->latency_us_b1_p50 = m->latency_us_b1_p50;
    row->latency_us_b1_p99 = m->latency_us_b1_p99;
    row->throughput_b256 = m->throughput_b256;
    row->train_seconds = train_s;
    row->macs = m->macs;
}

static int stage_teacher(run_ctx *r, train_state *st, kd_err *e)
{
    const cfg_model *cm = &r->spec->teacher;
    train_opts to = teacher_train_opts(cm, r->spec->seed);
    char ckpt[3100], model_path[3100];
    path_in(r, "teacher.ckpt", ckpt, sizeof ckpt);
    path_in(r, "teacher.kdm", model_path, sizeof model_path);
    r->ckpt_path = ckpt;
    int rc = start_state(r, cm, &to, st, e);
    if (rc != KD_OK)
        return rc;
    snprintf(r->curves[r->ncurves].model, sizeof r->curves[0].model, "teacher");
    r->curves[r->ncurves++].st = st;
    kd_logf(&r->log, "teacher: %d layers, %zu parameters, %.3g MMACs/sample", st->model->nlayers,
            st->model->nparams, nn_model_macs(st->model) / 1e6);
    train_hooks h = {.on_epoch = on_epoch, .cb_ctx = r, .progress = r->o->progress,
                     .quiet = r->o->quiet, .label = "teacher"};
    if ((rc = train_fit(st, &to, &r->train, &r->val, &h, e)) != KD_OK)
        return rc;
    if ((rc = write_metrics(r, e)) != KD_OK || (rc = nn_model_save(st->model, model_path, e)))
        return rc;
    measure_result mr;
    if ((rc = measure_model(st->model, &r->test, model_path, NULL, &mr, e)) != KD_OK)
        return rc;
    rep_row *row = &r->rows[r->nrows++];
    rep_row_init(row, "teacher", "teacher");
    row_from(row, &mr, st->seconds);
    rep_row_num(row, "epochs", st->epochs_done);
    rep_row_str(row, "format", "fp32");
    rep_row_num(row, "weight_bits", 32);
    kd_logf(&r->log,
            "teacher: test accuracy %.2f%%, %lld bytes, batch-1 latency p50 %.1f us p99 %.1f "
            "us, batch-256 %.0f samples/s, trained %.1f s",
            100 * mr.accuracy, mr.size_bytes, mr.latency_us_b1_p50, mr.latency_us_b1_p99,
            mr.throughput_b256, st->seconds);
    return KD_OK;
}

static int write_config(run_ctx *r, kd_err *e)
{
    char *text = NULL, path[3100];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    config_dump(r->spec, f);
    fclose(f);
    path_in(r, "config.yaml", path, sizeof path);
    int rc = kd_write_atomic(path, text, len, e);
    free(text);
    return rc;
}

static int open_run_dir(run_ctx *r, kd_err *e)
{
    if (r->o->out_dir)
        snprintf(r->dir, sizeof r->dir, "%s", r->o->out_dir);
    else
        snprintf(r->dir, sizeof r->dir, "runs/%s", r->spec->name);
    int rc = kd_mkdirs(r->dir, e);
    if (rc != KD_OK)
        return rc;
    char path[3100];
    path_in(r, "run.log", path, sizeof path);
    r->log.file = fopen(path, r->o->resume ? "a" : "w");
    if (!r->log.file)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
    r->log.echo = r->o->quiet ? NULL : r->o->progress;
    return write_config(r, e);
}

int pipeline_run(const exp_spec *spec, const pipeline_opts *o, kd_err *e)
{
    run_ctx r = {.spec = spec, .o = o};
    train_state teacher = {0};
    int threads = nn_set_threads(spec->threads);
    int rc = pipeline_load_data(&spec->data, spec->seed, &r.train, &r.val, &r.test, e);
    if (rc == KD_OK && (rc = open_run_dir(&r, e)) == KD_OK) {
        kd_logf(&r.log, "kdbench run %s: %d train, %d validation, %d test samples; %d threads; %s",
                spec->name, r.train.n, r.val.n, r.test.n, threads, nn_blas_info());
        rc = stage_teacher(&r, &teacher, e);
    }
    if (rc == KD_OK)
        rc = rep_write_results(r.dir, spec->name, r.rows, r.nrows, e);
    if (rc == KD_OK)
        kd_logf(&r.log, "results: %s/results.json, %s/results.csv", r.dir, r.dir);
    nn_model_free(teacher.model);
    train_state_free(&teacher);
    if (r.log.file)
        fclose(r.log.file);
    data_set_free(&r.train);
    data_set_free(&r.val);
    data_set_free(&r.test);
    return rc;
}
