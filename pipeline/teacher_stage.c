/* The teacher stage in the run: train it in the run directory (resumable,
 * through teacher/'s cache), or load a saved one (teacher_load); measure it
 * and add its row and curve (under MPI the row waits for pl_spread_jobs). */
#include <stdio.h>

#include "internal.h"

static int add_teacher_row(run_ctx *r, nn_model *m, const char *model_path, double train_s,
                           int epochs, kd_err *e)
{
    measure_result mr;
    int rc = measure_model(m, &r->test, model_path, NULL, &mr, e);
    nn_model_release(m); /* kept for the whole run: not its batch buffers (issue 12) */
    if (rc != KD_OK)
        return rc;
    rep_row *row = pl_row_add(r, "teacher", "teacher");
    pl_row_from(row, &mr, train_s);
    if (epochs > 0)
        rep_row_num(row, "epochs", epochs);
    rep_row_str(row, "format", "fp32");
    rep_row_num(row, "weight_bits", 32);
    char trained[48] = "loaded, not trained";
    if (train_s >= 0)
        snprintf(trained, sizeof trained, "trained %.1f s", train_s);
    kd_logf(&r->log,
            "teacher: test accuracy %.2f%%, %lld bytes, batch-1 latency p50 %.1f us p99 %.1f "
            "us, batch-256 %.0f samples/s, %s",
            100 * mr.accuracy, mr.size_bytes, mr.latency_us_b1_p50, mr.latency_us_b1_p99,
            mr.throughput_b256, trained);
    return KD_OK;
}

/* The teacher's row: measured now in one process; under MPI once the other
 * ranks have the teacher (pl_spread_jobs), so they start on jobs meanwhile. */
static int teacher_row(run_ctx *r, const char *model_path, double train_s, int epochs,
                       kd_err *e)
{
    snprintf(r->trow.path, sizeof r->trow.path, "%s", model_path);
    r->trow.train_s = train_s;
    r->trow.epochs = epochs;
    r->trow.pending = 1;
    return dist_size(r->o->dist) > 1 ? KD_OK : pl_stage_teacher_row(r, e);
}

int pl_stage_teacher_row(run_ctx *r, kd_err *e)
{
    if (!r->trow.pending)
        return KD_OK;
    r->trow.pending = 0;
    return add_teacher_row(r, r->teacher, r->trow.path, r->trow.train_s, r->trow.epochs, e);
}

/* A saved teacher (checked against the data and the students' hints), measured. */
static int load_teacher(run_ctx *r, kd_err *e)
{
    nn_model *m = teacher_load(r->spec, r->train.shape, r->train.nclasses, &r->log, e);
    if (!m)
        return e->code;
    nn_model_drop_grads(m); /* never trained here: only run, cloned and saved */
    r->teacher = m;
    return teacher_row(r, r->spec->teacher.model_path, -1, 0, e);
}

int pl_stage_teacher(run_ctx *r, kd_err *e)
{
    const cfg_model *cm = &r->spec->teacher;
    if (cm->model_path[0]) {
        pl_stage_begin(r, "teacher (from %s)", cm->model_path);
        return load_teacher(r, e);
    }
    pl_stage_begin(r, "teacher");
    train_opts to = teacher_train_opts(cm, r->spec->seed);
    char ckpt[PL_PATH], model_path[PL_PATH], cached[PL_PATH + 64];
    pl_path(r, "teacher.ckpt", ckpt, sizeof ckpt);
    pl_path(r, "teacher.kdm", model_path, sizeof model_path);
    int rc = teacher_cache_path(r->spec, r->threads, &r->train, &r->val, cached,
                                sizeof cached, e), hit = 0,
        resumed = 0;
    if (rc != KD_OK)
        return rc;
    /* a data-parallel teacher depends on the rank count, which the cache key
     * does not hold: trained afresh (and resumable) in the run directory */
    const int dp = pl_dp_on(r->spec, r->o->dist);
    if (cm->train.parallel && !dp)
        kd_logf(&r->log, "teacher: train.parallel: data takes effect under mpirun -np N (N > 1); "
                "training in this one process");
    if (r->spec->cache_dir[0] && !dp)
        hit = teacher_cache_fetch(cached, ckpt, r->o->resume, &r->log);
    r->ckpt_path = ckpt;
    train_state st = {0};
    if ((rc = pl_start_state(r, cm, &to, r->spec->seed, r->o->resume || hit, &st, &resumed, e)))
        return rc;
    r->teacher = st.model;
    if ((r->curve = pl_curve_add(r, "teacher", r->spec->seed)) < 0) {
        train_state_free(&st);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    kd_logf(&r->log, "teacher: %d layers, %zu parameters, %.3g MMACs/sample", st.model->nlayers,
            st.model->nparams, nn_model_macs(st.model) / 1e6);
    int trained = st.epochs_done < to.epochs;
    if (!trained) /* from the cache or a finished checkpoint: only measured */
        pl_stage_rework(r, pl_stage_measure_work(r, st.model));
    train_hooks h = {.on_epoch = pl_on_epoch, .cb_ctx = r, .progress = r->o->progress,
                     .quiet = r->o->quiet, .cancel = r->o->cancel, .label = r->stage_label};
    void *dpc = NULL;
    if (dp && (rc = pl_dp_start(r, &st, &h, &dpc, e)) != KD_OK) {
        train_state_free(&st);
        return rc;
    }
    rc = train_fit(&st, &to, &r->train, &r->val, &h, e);
    kd_free(dpc);
    if (dp && rc != KD_OK && rc != KD_ECANCELED)
        pl_dp_abort(r, e); /* the other ranks wait in the next reduce: end them all */
    if (dp && rc == KD_OK && trained && st.epochs_done > 0)
        kd_logf(&r->log, "teacher: data-parallel, last epoch %.0f samples/s over %d ranks, "
                "%.0f per rank", st.history[st.epochs_done - 1].samples_per_s,
                dist_size(r->o->dist),
                st.history[st.epochs_done - 1].samples_per_s / dist_size(r->o->dist));
    if (rc == KD_OK && !trained) /* the curve comes from the checkpoint */
        rc = pl_curve_record(r, &st, e);
    if (rc == KD_OK && trained && !hit && !dp && r->spec->cache_dir[0])
        teacher_cache_store(r->spec->cache_dir, cached, ckpt, &r->log);
    if (rc == KD_OK && (rc = nn_model_save(st.model, model_path, e)) == KD_OK)
        rc = teacher_row(r, model_path, st.seconds, st.epochs_done, e);
    train_state_free(&st);
    /* trained: from here on only run, cloned and saved, so its gradients
     * (as large as its weights) go (issue 12: peak memory) */
    nn_model_drop_grads(r->teacher);
    return rc;
}
