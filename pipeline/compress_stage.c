/* The compress stage: every variant is its source model (teacher, a student,
 * or a model file) put through its passes in order — magnitude pruning
 * (one-shot, or gradual on the AGP schedule while fine-tuning), structured
 * neuron/filter pruning (a physically smaller model), fine-tuning with the
 * masks held (optionally distilled from the teacher) — then stored in the
 * format that is fastest per layer (CSR where measured faster), saved, and
 * measured like every other model; passes another variant already ran are
 * taken from it (pass_share.c).  Also the sensitivity analysis. */
#include <string.h>
#include <unistd.h>

#include "../compress/compress.h"
#include "../student/student.h"
#include "internal.h"

/* ---- sources ------------------------------------------------------------------ */
/* A new copy of the source model; a model file must fit the data. */
static nn_model *load_source(run_ctx *r, cfg_source_kind kind, int student, int scratch,
                             const char *file, cfg_pos pos, const char *what, kd_err *e)
{
    if (kind == CFG_SRC_TEACHER)
        return nn_model_clone(r->teacher, e);
    char path[PL_PATH + 256];
    int bad;
    if (kind == CFG_SRC_STUDENT) {
        const cfg_student *cs = &r->spec->students[student];
        bad = pl_pathf(e, path, sizeof path, "%s/students/%s/%s-seed%llu.kdm", r->dir, cs->name,
                       scratch ? "scratch" : cs->modes[0].name, /* the first distilled mode */
                       (unsigned long long)cs->seeds[0]);
    } else {
        bad = pl_pathf(e, path, sizeof path, "%s", file);
    }
    if (bad)
        return NULL;
    nn_model *m = compress_model_load(path, e);
    if (!m) {
        if (kind == CFG_SRC_FILE && e->code == KD_EIO)
            kd_err_at(e, KD_ECONFIG, r->spec->file, pos.line, pos.col, "%s.source: %s", what,
                      e->msg);
        return NULL;
    }
    if (nn_shape_size(m->in) != nn_shape_size(r->train.shape) || m->nclasses < r->train.nclasses) {
        kd_err_at(e, KD_ECONFIG, r->spec->file, pos.line, pos.col,
                  "%s.source: %s takes %zu inputs and gives %d classes; the data has %zu and %d",
                  what, path, nn_shape_size(m->in), m->nclasses, nn_shape_size(r->train.shape),
                  r->train.nclasses);
        nn_model_free(m);
        return NULL;
    }
    return m;
}

/* ---- passes ------------------------------------------------------------------- */
typedef struct {
    run_ctx *r;
    const cfg_variant *v;
    uint64_t seed;        /* one of v->seeds: orders fine-tuning batches, seeds the distiller */
    int k;                /* the seed's index */
    nn_model *m;          /* owned; replaced by structured pruning */
    compress_mask *mask;  /* over m's parameters; NULL until a magnitude pass */
    compress_override ov[CFG_MAX_OVERRIDES];
    char passes[256];     /* readable: prune(global,0.90,agp)+finetune(3) */
    int sparse;           /* a magnitude pass ran: convert to CSR where faster */
    int quantized;        /* a quantize, qat or cluster pass ran */
    compress_tie *tie;    /* a cluster pass's shared values while it fine-tunes them */
    char kept_dense[160]; /* pruned layers left dense by the storage choice, and why */
    pl_prefix *pre;       /* passes shared with other variants (NULL: none) */
} variant_run;

compress_prune_spec pl_prune_spec(const cfg_pass *p, compress_override *ov)
{
    for (int i = 0; i < p->noverrides; i++) {
        snprintf(ov[i].pattern, sizeof ov[i].pattern, "%s", p->overrides[i].pattern);
        ov[i].sparsity = p->overrides[i].sparsity;
    }
    return (compress_prune_spec){.scope = p->global ? COMPRESS_GLOBAL : COMPRESS_LAYERWISE,
                                 .sparsity = p->sparsity, .block = p->block, .overrides = ov,
                                 .noverrides = p->noverrides};
}

/* Fine-tuning: the mask (and a cluster pass's shared values) held after
 * every step; distillation optional. */
typedef struct {
    compress_mask *mask;
    compress_tie *tie;
    train_hooks inner; /* the distiller's hooks, if any */
} fine_ctx;

static int fine_step(void *ctx, nn_model *m, float lr, kd_err *e)
{
    fine_ctx *f = ctx;
    int rc = f->inner.on_step ? f->inner.on_step(f->inner.step_ctx, m, lr, e) : KD_OK;
    if (f->mask)
        compress_mask_apply(f->mask, m);
    if (f->tie)
        compress_tie_apply(f->tie, m);
    return rc;
}

static int run_training(variant_run *u, const cfg_pass *p, kd_err *e)
{
    run_ctx *r = u->r;
    train_opts to = {.epochs = p->epochs, .batch_size = p->batch_size, .seed = u->seed};
    to.opt = (nn_opt_spec){.kind = NN_OPT_SGD, .lr = p->lr, .momentum = 0.9f, .nesterov = 1};
    to.sched = (nn_sched_spec){.kind = NN_SCHED_COSINE};
    student_distiller *d = NULL;
    fine_ctx f = {.mask = u->mask, .tie = u->tie};
    train_hooks h = {.on_epoch = pl_on_epoch, .cb_ctx = r, .progress = r->o->progress,
                     .quiet = r->o->quiet, .cancel = r->o->cancel, .label = r->stage_label};
    if (p->distill) {
        const float *tl = pl_teacher_logits(r, e);
        student_distill_opts dopt = {.temperature = p->temperature, .alpha = p->alpha,
                                     .student_tap = -1, .teacher_tap = -1};
        if (!tl || !(d = student_distiller_new(u->m, r->teacher, tl, &r->train, &dopt, &to.opt,
                                               to.batch_size, to.seed, e)))
            return e->code;
        student_distiller_hooks(d, &f.inner);
        h.loss = f.inner.loss;
        h.loss_ctx = f.inner.loss_ctx;
    }
    int rc = KD_OK;
    r->ckpt_path = NULL; /* fine-tuning restarts with its variant after a kill */
    char curve[160];
    snprintf(curve, sizeof curve, "%s [pass %d]", u->v->name, (int)(p - u->v->passes) + 1);
    if ((r->curve = pl_curve_add(r, curve, u->seed)) < 0) /* one line per seed */
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK && p->kind == CFG_PASS_PRUNE) {
        compress_agp_spec g = {.prune = pl_prune_spec(p, u->ov), .initial_sparsity = p->initial_sparsity,
                               .prune_epochs = p->ramp_epochs};
        h.on_step = f.inner.on_step;
        h.step_ctx = f.inner.step_ctx;
        rc = compress_prune_gradual(u->m, &g, &to, &r->train, &r->val, &h, u->mask, e);
    } else if (rc == KD_OK) {
        train_state st;
        h.on_step = fine_step;
        h.step_ctx = &f;
        if ((rc = train_state_init(&st, u->m, &to, e)) == KD_OK)
            rc = train_fit(&st, &to, &r->train, &r->val, &h, e);
        train_state_free(&st);
    }
    student_distiller_free(d);
    return rc;
}

/* ",block8" for a prune pass in blocks of 8 rows, "" for single weights. */
static const char *block_str(const cfg_pass *p, char *buf, size_t n)
{
    if (p->block <= 1)
        return "";
    snprintf(buf, n, ",block%d", p->block);
    return buf;
}

/* The passes, readable: prune(global,0.90,agp,3)+finetune(2,distill);
 * prune(layer,0.90,oneshot,block8) for blocks of rows. */
static void describe(const cfg_variant *v, char *buf, size_t n)
{
    static const char *const method[] = {"magnitude", "neurons", "filters"};
    char blk[24];
    buf[0] = 0;
    for (int i = 0; i < v->npasses; i++) {
        const cfg_pass *p = &v->passes[i];
        size_t k = strlen(buf);
        if (k + 2 >= n)
            return;
        const char *sep = k ? "+" : "";
        if (p->kind == CFG_PASS_FINETUNE)
            snprintf(buf + k, n - k, "%sfinetune(%d%s)", sep, p->epochs, p->distill ? ",distill" : "");
        else if (p->kind == CFG_PASS_CLUSTER)
            snprintf(buf + k, n - k, "%scluster(%d%s%s)", sep, p->clusters,
                     p->epochs > 0 ? ",finetuned" : "", p->cluster_raw ? ",uncoded" : "");
        else if (p->kind >= CFG_PASS_QUANTIZE)
            snprintf(buf + k, n - k, "%s%s(int%d%s%s%s)", sep,
                     p->kind == CFG_PASS_QAT ? "qat" : "quantize", p->bits,
                     p->bits == 8 ? (p->dynamic ? ",dynamic" : ",static")
                     : p->kind == CFG_PASS_QAT && p->bits < 4 ? ",weights,lsq" : ",weights",
                     p->kind == CFG_PASS_QAT ? "" : p->bits <= 4 ? (p->bias_correction ? ",bc" : "") :
                     p->dynamic ? "" : p->percentile_calib ? ",percentile" : ",minmax",
                     p->sparse_static ? ",sparse-int8" : "");
        else if (p->method != CFG_PRUNE_MAGNITUDE)
            snprintf(buf + k, n - k, "%sprune(%s,l%d,%.2f)", sep, method[p->method], p->norm,
                     (double)p->sparsity);
        else if (p->agp)
            snprintf(buf + k, n - k, "%sprune(%s,%.2f,agp,%d%s)", sep,
                     p->global ? "global" : "layer", (double)p->sparsity, p->epochs,
                     block_str(p, blk, sizeof blk));
        else
            snprintf(buf + k, n - k, "%sprune(%s,%.2f,oneshot%s)", sep,
                     p->global ? "global" : "layer", (double)p->sparsity,
                     block_str(p, blk, sizeof blk));
    }
}

/* CSR where measured faster (after magnitude pruning), once. */
static int to_sparse(variant_run *u, kd_err *e)
{
    static const compress_sparse_policy policy[] = {
        COMPRESS_SPARSE_MEASURE, COMPRESS_SPARSE_SMALLER, COMPRESS_SPARSE_LATENCY};
    compress_sparse_opts so = {.policy = policy[u->v->store]};
    compress_choice *ch = kd_calloc((size_t)u->m->nlayers, sizeof *ch);
    nn_model *stored = ch ? compress_to_sparse(u->m, &so, ch, e) : NULL;
    if (!stored) {
        kd_free(ch);
        return ch ? e->code : kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    /* every pruned layer's storage and why, in the log; the ones left dense
     * also in the row, so a prune is never undone without a word */
    u->kept_dense[0] = 0;
    for (int i = 0; i < u->m->nlayers; i++) {
        const compress_choice *c = &ch[i];
        if (c->sparsity <= 0 || !c->why[0])
            continue;
        const char *name = u->m->layers[i].spec.name;
        kd_logf(&u->r->log, "%s: layer %s (%.0f%% zeros): %s", u->v->name, name,
                100 * c->sparsity, c->why);
        if (!c->converted && c->sparsity >= 0.5) {
            size_t k = strlen(u->kept_dense);
            snprintf(u->kept_dense + k, sizeof u->kept_dense - k, "%s%s (%.0f%%): %s",
                     k ? "; " : "", name, 100 * c->sparsity, c->why + strlen("kept dense: "));
        }
    }
    kd_free(ch);
    nn_model_free(u->m);
    u->m = stored;
    u->sparse = 0;
    return KD_OK;
}

compress_quant_spec pl_quant_spec(const cfg_pass *p, compress_qoverride *qo)
{
    for (int i = 0; i < p->noverrides; i++) {
        snprintf(qo[i].pattern, sizeof qo[i].pattern, "%s", p->overrides[i].pattern);
        qo[i].bits = p->overrides[i].bits;
    }
    return (compress_quant_spec){
        .mode = p->bits <= 4 ? COMPRESS_Q_INT4 : p->dynamic ? COMPRESS_Q_DYNAMIC8 : COMPRESS_Q_STATIC8,
        .wbits = p->bits <= 4 ? p->bits : 0, .bias_correction = p->bias_correction,
        .per_channel = p->per_channel,
        .calib = p->percentile_calib ? COMPRESS_CALIB_PERCENTILE : COMPRESS_CALIB_MINMAX,
        .percentile = p->percentile, .calib_batches = p->calib_batches, .group = p->group,
        .rounding = p->gptq ? COMPRESS_ROUND_GPTQ : COMPRESS_ROUND_NEAREST, .damp = p->damp,
        .act_order = p->act_order, .sparse_static = p->sparse_static,
        .overrides = qo, .noverrides = p->noverrides};
}

/* quantize: the model (sparse layers first, so they become csr-int8) into
 * integer kinds; qat: fake-quantized fine-tuning first (masks held), then the
 * same conversion with the learned activation ranges. */
static int run_quantize(variant_run *u, const cfg_pass *p, kd_err *e)
{
    compress_qoverride qo[CFG_MAX_OVERRIDES];
    compress_quant_spec qs = pl_quant_spec(p, qo);
    int rc = KD_OK;
    if (p->bits < 4) /* int2/int3 are dense: a pruned layer's zeros are one of its levels */
        u->sparse = 0;
    if (p->kind == CFG_PASS_QUANTIZE && u->sparse && (rc = to_sparse(u, e)) != KD_OK)
        return rc;
    if (p->kind == CFG_PASS_QAT) {
        nn_model *fq = p->bits < 4 ? compress_lsq_prepare(u->m, &qs, e) /* learned steps */
                                   : compress_qat_prepare(u->m, &qs, e);
        if (!fq)
            return e->code;
        nn_model_free(u->m);
        u->m = fq;
        if (u->mask && u->mask->n != fq->nparams) {
            compress_mask_free(u->mask);
            u->mask = NULL;
        }
        u->sparse = 0;
        if ((rc = run_training(u, p, e)) != KD_OK)
            return rc;
    }
    nn_model *q = compress_quantize(u->m, &qs, &u->r->train, e);
    if (!q)
        return e->code;
    nn_model_free(u->m);
    u->m = q;
    u->quantized = 1;
    return KD_OK;
}

/* cluster: the model (masked dense or fp32) into shared-weight CSR layers; final. */
static int run_cluster(variant_run *u, const cfg_pass *p, kd_err *e)
{
    compress_cluster_spec cs = {.clusters = p->clusters, .init = (cluster_init)p->cluster_init,
                                .seed = u->seed, .uncoded = p->cluster_raw};
    if (p->epochs > 0) { /* the shared values fine-tuned, the assignments held */
        if (!(u->tie = compress_tie_new(u->m, &cs, e)))
            return e->code;
        int rc = run_training(u, p, e);
        compress_tie_free(u->tie);
        u->tie = NULL;
        if (rc != KD_OK)
            return rc;
    }
    nn_model *q = compress_cluster(u->m, &cs, e);
    if (!q)
        return e->code;
    nn_model_free(u->m);
    u->m = q;
    u->sparse = 0; /* stored as shared CSR already */
    u->quantized = 1;
    return KD_OK;
}

static int run_pass(variant_run *u, const cfg_pass *p, kd_err *e)
{
    if (p->kind == CFG_PASS_CLUSTER)
        return run_cluster(u, p, e);
    if (p->kind == CFG_PASS_QUANTIZE || p->kind == CFG_PASS_QAT)
        return run_quantize(u, p, e);
    if (p->kind == CFG_PASS_FINETUNE) {
        return run_training(u, p, e);
    }
    compress_prune_spec s = pl_prune_spec(p, u->ov);
    if (p->method != CFG_PRUNE_MAGNITUDE) {
        nn_model *m2 = compress_prune_structured(
            u->m, &s, p->method == CFG_PRUNE_NEURONS ? COMPRESS_NEURONS : COMPRESS_FILTERS,
            p->norm == 2 ? COMPRESS_NORM_L2 : COMPRESS_NORM_L1, e);
        if (!m2)
            return e->code;
        nn_model_free(u->m);
        u->m = m2;
        compress_mask_free(u->mask); /* a new model: a new mask when one is needed */
        u->mask = NULL;
        return KD_OK;
    }
    u->sparse = 1;
    if (!u->mask && !(u->mask = compress_mask_new(u->m, e)))
        return e->code;
    if (p->agp)
        return run_training(u, p, e);
    return compress_prune_magnitude(u->m, &s, u->mask, e);
}

/* ---- one variant ------------------------------------------------------------------ */
/* The layers' storage formats, e.g. "csr-fp32+fp32" (distinct, in order). */
static void formats_of(const nn_model *m, char *buf, size_t n)
{
    buf[0] = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const char *f = nn_layer_format(&m->layers[i]);
        int seen = !strcmp(f, "-");
        for (int j = 0; j < i && !seen; j++) /* whole names: "fp32" is not in "csr-fp32" */
            seen = !strcmp(nn_layer_format(&m->layers[j]), f);
        size_t k = strlen(buf);
        if (!seen)
            snprintf(buf + k, n - k, "%s%s", k ? "+" : "", f);
    }
}

/* The variant's row, measured on the first seed's model m (at path); acc[1..n)
 * are the other seeds' test accuracies.  With several seeds the accuracy is
 * their mean, as for students. */
static int add_variant_row(variant_run *u, nn_model *m, const char *path, double *acc,
                           kd_err *e)
{
    measure_result mr;
    int rc = KD_OK;
    if (!pl_job_measured(u->r, PL_JOB_VARIANT, (int)(u->v - u->r->spec->variants), 0, &mr))
        rc = measure_model(m, &u->r->test, path, NULL, &mr, e); /* else measured on its rank */
    rep_row *row = rc == KD_OK ? pl_row_add(u->r, u->v->name, "compressed") : NULL;
    if (!row)
        return rc != KD_OK ? rc : kd_err_set(e, KD_ERUNTIME, "too many result rows");
    pl_row_from(row, &mr, -1);
    const int n = u->v->nseeds;
    double mean, sd;
    acc[0] = mr.accuracy; /* the same evaluation as run_variant's */
    pl_mean_std(acc, n, &mean, &sd);
    row->accuracy = mean;
    char src[CFG_PATH_MAX + 80], fmt[64];
    const cfg_variant *v = u->v;
    if (v->source_kind == CFG_SRC_TEACHER)
        snprintf(src, sizeof src, "teacher");
    else if (v->source_kind == CFG_SRC_STUDENT)
        snprintf(src, sizeof src, "%s/%s", u->r->spec->students[v->source_student].name,
                 v->source_scratch ? "scratch"
                                   : u->r->spec->students[v->source_student].modes[0].name);
    else
        snprintf(src, sizeof src, "%s", v->source_path);
    formats_of(m, fmt, sizeof fmt);
    rep_row_str(row, "source", src);
    rep_row_str(row, "passes", u->passes);
    rep_row_num(row, "sparsity", mr.params ? 1.0 - (double)mr.nonzero_params / mr.params : 0);
    rep_row_str(row, "format", fmt);
    if (u->kept_dense[0])
        rep_row_str(row, "kept_dense", u->kept_dense);
    /* shared weights: bits per kept weight as stored (the file over the non-zeros),
     * since indices and gaps are entropy-coded to a fraction of a byte */
    if (strstr(fmt, "shared") && mr.nonzero_params)
        rep_row_num(row, "weight_bits", 8.0 * (double)mr.size_bytes / (double)mr.nonzero_params);
    else
        rep_row_num(row, "weight_bits", compress_model_weight_bits(m));
    char spread[64] = ""; /* single-seed rows stay as they were */
    if (n > 1) {
        rep_row_num(row, "seeds", n);
        rep_row_num(row, "accuracy_std", sd);
        pl_row_seed_lists(row, v->seeds, acc, n);
        snprintf(spread, sizeof spread, " ± %.2f over %d seeds", 100 * sd, n);
    }
    kd_logf(&u->r->log,
            "%s: %s, test accuracy %.2f%%%s, %lld bytes, %s, batch-1 latency p50 %.1f us, "
            "batch-256 %.0f samples/s",
            v->name, u->passes, 100 * mean, spread, mr.size_bytes, fmt, mr.latency_us_b1_p50,
            mr.throughput_b256);
    return KD_OK;
}

/* The file of a variant: compressed/<name with '/' as '_'>.kdm, and for
 * seeds after the first (k > 0) compressed/<name>-seed<N>.kdm. */
void pl_variant_file(const cfg_variant *v, int k, char *buf, size_t n)
{
    char name[sizeof v->name];
    snprintf(name, sizeof name, "%s", v->name);
    for (char *p = name; *p; p++)
        *p = *p == '/' ? '_' : *p;
    if (k > 0)
        snprintf(buf, n, "compressed/%s-seed%llu.kdm", name, (unsigned long long)v->seeds[k]);
    else
        snprintf(buf, n, "compressed/%s.kdm", name);
}

static int variant_path(const run_ctx *r, const cfg_variant *v, int k, char *buf, size_t n,
                        kd_err *e)
{
    char rel[sizeof v->name + 64];
    pl_variant_file(v, k, rel, sizeof rel);
    return pl_pathf(e, buf, n, "%s/%s", r->dir, rel);
}

/* Starts u from the passes it shares with the variant that made u->pre
 * (*from = how many; 0 when none). */
static int take_prefix(variant_run *u, const char *label, const char *what, int *from, kd_err *e)
{
    const pl_prefix *p = u->pre;
    const cfg_variant *v = u->v;
    *from = 0;
    if (!pl_prefix_fits(p, v, u->seed))
        return KD_OK;
    if (!p->m && !(u->m = load_source(u->r, v->source_kind, v->source_student, v->source_scratch,
                                      v->source_path, v->source_pos, what, e)))
        return e->code; /* kept weights only: they go back into the source */
    int rc = pl_prefix_take(u->r, p, v, u->seed, label, &u->m, &u->mask, &u->sparse, e);
    if (rc == KD_OK)
        *from = p->npasses;
    return rc;
}

/* One seed: the passes from a fresh copy of the source, saved at path; or,
 * resuming, the model a killed run already saved there. */
static int run_seed(variant_run *u, const char *path, const char *what, kd_err *e)
{
    run_ctx *r = u->r;
    const cfg_variant *v = u->v;
    char label[128];
    if (v->nseeds > 1)
        snprintf(label, sizeof label, "%s seed %llu", v->name, (unsigned long long)u->seed);
    else
        snprintf(label, sizeof label, "%s", v->name);
    pl_stage_begin(r, "%s", label);
    int ran = pl_job_delivered(r, PL_JOB_VARIANT, (int)(v - r->spec->variants), u->k, u->k);
    if ((r->o->resume || ran >= 0) && access(path, R_OK) == 0 &&
        (u->m = compress_model_load(path, e))) {
        if (ran >= 0)
            kd_logf(&r->log, "%s: computed on rank %d", label, ran);
        else
            kd_logf(&r->log, "%s: kept from the interrupted run (%s)", label, path);
        /* its fine-tuning curves, where one process writes them */
        return ran >= 0 ? pl_job_take_curves(r, PL_JOB_VARIANT, (int)(v - r->spec->variants),
                                             0, u->k, e)
                        : KD_OK;
    }
    int from = 0, rc = KD_OK;
    if ((rc = take_prefix(u, label, what, &from, e)) != KD_OK)
        return rc;
    if (!from && !(u->m = load_source(r, v->source_kind, v->source_student, v->source_scratch,
                                      v->source_path, v->source_pos, what, e)))
        return e->code;
    int grads = 0; /* post-training quantization alone never needs gradients */
    for (int i = 0; i < v->npasses; i++)
        grads |= v->passes[i].kind != CFG_PASS_QUANTIZE;
    if (!grads)
        nn_model_drop_grads(u->m);
    int keep = u->pre ? pl_prefix_wanted(r->spec, v, u->seed) : 0;
    for (int i = from; rc == KD_OK && i < v->npasses; i++)
        if ((rc = run_pass(u, &v->passes[i], e)) == KD_OK && i + 1 == keep)
            rc = pl_prefix_keep(u->pre, v, u->seed, keep, u->m, u->mask, u->sparse, e);
    if (rc == KD_OK && u->sparse)
        rc = to_sparse(u, e);
    if (rc == KD_OK)
        rc = nn_model_save(u->m, path, e);
    return rc;
}

/* Every seed of a variant from the same source; the first seed's model is
 * the variant's (kept in *out for the stage's files), the others give only
 * their test accuracy. */
static int run_variant(run_ctx *r, const cfg_variant *v, pl_prefix *pre, nn_model **out,
                       kd_err *e)
{
    char path[PL_PATH + 128], what[64];
    snprintf(what, sizeof what, "compress (%s)", v->pipeline);
    double acc[CFG_MAX_SEEDS] = {0};
    variant_run u0 = {.r = r, .v = v, .seed = v->seeds[0], .pre = pre};
    describe(v, u0.passes, sizeof u0.passes);
    int rc = KD_OK;
    for (int k = 0; rc == KD_OK && k < v->nseeds; k++) {
        variant_run uk = {.r = r, .v = v, .seed = v->seeds[k], .k = k, .pre = pre};
        variant_run *u = k ? &uk : &u0;
        if ((rc = variant_path(r, v, k, path, sizeof path, e)) == KD_OK)
            rc = run_seed(u, path, what, e);
        compress_mask_free(u->mask); /* needed only while the passes run */
        u->mask = NULL;
        /* a single seed's accuracy comes with its row, as before; a seed
         * evaluated on another rank (MPI) came back with its accuracy */
        pl_job_outcome jo;
        int index = (int)(v - r->spec->variants), there =
            rc == KD_OK && pl_job_outcome_of(r, PL_JOB_VARIANT, index, 0, k, &jo);
        if (there)
            acc[k] = jo.acc;
        if (rc == KD_OK && v->nseeds > 1 &&
            (there || (rc = train_evaluate(u->m, &r->test, 256, NULL, &acc[k], e)) == KD_OK))
            kd_logf(&r->log, "%s seed %llu: test accuracy %.2f%%", v->name,
                    (unsigned long long)u->seed, 100 * acc[k]);
        if (k)
            nn_model_free(uk.m);
    }
    if (rc == KD_OK && (rc = variant_path(r, v, 0, path, sizeof path, e)) == KD_OK)
        rc = add_variant_row(&u0, u0.m, path, acc, e);
    if (rc == KD_OK)
        *out = u0.m;
    else
        nn_model_free(u0.m);
    return rc;
}

int pl_variant_job(run_ctx *r, int index, int k, pl_job_outcome *out, kd_err *e)
{
    const cfg_variant *v = &r->spec->variants[index];
    char path[PL_PATH + 128], what[64];
    snprintf(what, sizeof what, "compress (%s)", v->pipeline);
    variant_run u = {.r = r, .v = v, .seed = v->seeds[k], .k = k};
    describe(v, u.passes, sizeof u.passes);
    int rc = pl_pathf(e, path, sizeof path, "%s/compressed", r->dir);
    if (rc == KD_OK && (rc = kd_mkdirs(path, e)) == KD_OK &&
        (rc = variant_path(r, v, k, path, sizeof path, e)) == KD_OK)
        rc = run_seed(&u, path, what, e);
    /* with several seeds each one's accuracy, evaluated here rather than on rank 0 */
    if (rc == KD_OK && v->nseeds > 1 &&
        (rc = train_evaluate(u.m, &r->test, 256, NULL, &out->acc, e)) == KD_OK)
        out->ok = 1;
    compress_mask_free(u.mask);
    nn_model_free(u.m);
    return rc;
}

/* ---- the stage ---------------------------------------------------------------------- */
static int sensitivity(run_ctx *r, kd_err *e)
{
    int ran = pl_job_delivered(r, PL_JOB_SENSITIVITY, 0, 0, 0);
    if (ran >= 0) {
        kd_logf(&r->log, "sensitivity: computed on rank %d -> %s/sensitivity.csv", ran, r->dir);
        return KD_OK;
    }
    const cfg_sensitivity *t = &r->spec->sensitivity;
    nn_model *m = load_source(r, t->source_kind, t->source_student, t->source_scratch,
                              t->source_path, t->source_pos, "sensitivity", e);
    if (!m)
        return e->code;
    const data_set *d = r->val.n ? &r->val : &r->test; /* choose on validation, not test */
    compress_sens_row *rows = NULL;
    int n = 0, rc = compress_sensitivity(m, d, t->sparsities, t->nsparsities, &rows, &n, e);
    if (rc == KD_OK)
        rc = compress_write_sensitivity_csv(r->dir, rows, n, e);
    if (rc == KD_OK)
        kd_logf(&r->log, "sensitivity: %d layer x sparsity points on the %s set -> %s/sensitivity.csv",
                n, r->val.n ? "validation" : "test", r->dir);
    kd_free(rows);
    nn_model_free(m);
    return rc;
}

int pl_sensitivity_job(run_ctx *r, kd_err *e)
{
    pl_stage_begin(r, "sensitivity");
    return sensitivity(r, e);
}

/* Each variant's rows of sparsity.csv and weights_hist.csv are taken as soon
 * as it is made and measured, and the model freed: the run holds one
 * variant at a time, not all of them (issue 12: peak memory). */
int pl_stage_compress(run_ctx *r, kd_err *e)
{
    const exp_spec *s = r->spec;
    char dir[PL_PATH + 16];
    compress_tables t = {0};
    pl_prefix pre = {0};
    int rc = pl_pathf(e, dir, sizeof dir, "%s/compressed", r->dir);
    if (rc == KD_OK && s->nvariants && (rc = kd_mkdirs(dir, e)) == KD_OK &&
        (rc = compress_tables_init(&t, 40, e)) == KD_OK)
        rc = compress_tables_add(&t, "teacher", r->teacher, e);
    for (int i = 0; rc == KD_OK && i < s->nvariants; i++) {
        nn_model *m = NULL;
        if ((rc = pl_cancelled(r, e)) == KD_OK &&
            (rc = run_variant(r, &s->variants[i], &pre, &m, e)) == KD_OK)
            rc = compress_tables_add(&t, s->variants[i].name, m, e);
        nn_model_free(m);
    }
    pl_prefix_clear(&pre);
    if (rc == KD_OK && s->nvariants)
        rc = compress_tables_write(&t, r->dir, e);
    compress_tables_free(&t);
    if (rc == KD_OK && s->sensitivity.on) {
        pl_stage_begin(r, "sensitivity");
        rc = sensitivity(r, e);
    }
    return rc;
}
