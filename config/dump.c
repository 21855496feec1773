/* The resolved spec back as YAML: every key with its effective value, in the
 * order of README.md (Config reference), layers one flow mapping per line.
 * config_load reads it back to an equal spec (tested). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Shortest %g that reads back (as config reads floats) to exactly v. */
void cfg_put_float(FILE *f, float v)
{
    char buf[40];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v) {
            fputs(buf, f);
            return;
        }
    }
    fprintf(f, "%.17g", (double)v);
}

/* YAML printable code points (others need an escape). */
static int printable(unsigned cp)
{
    return cp == 0x85 || (cp >= 0xA0 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD && cp != 0xFEFF) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

/* One UTF-8 sequence at p (valid: it passed libyaml or the override check). */
static unsigned utf8_next(const unsigned char **p)
{
    unsigned cp = **p, extra = cp >= 0xF0 ? 3 : cp >= 0xE0 ? 2 : cp >= 0xC0 ? 1 : 0;
    cp &= extra == 3 ? 0x07 : extra == 2 ? 0x0F : extra == 1 ? 0x1F : 0x7F;
    ++*p;
    for (unsigned k = 0; k < extra && (**p & 0xC0) == 0x80; k++, ++*p)
        cp = cp << 6 | (**p & 0x3F);
    return cp;
}

/* A double-quoted YAML string: any text survives the round trip. */
void cfg_put_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        if (*p < 0x80) {
            unsigned char ch = *p++;
            if (ch == '"' || ch == '\\')
                fprintf(f, "\\%c", ch);
            else if (ch < 0x20 || ch == 0x7F)
                fprintf(f, "\\x%02X", ch);
            else
                fputc(ch, f);
            continue;
        }
        const unsigned char *start = p;
        unsigned cp = utf8_next(&p);
        if (printable(cp))
            fwrite(start, 1, (size_t)(p - start), f);
        else if (cp <= 0xFFFF)
            fprintf(f, "\\u%04X", cp);
        else
            fprintf(f, "\\U%08X", cp);
    }
    fputc('"', f);
}

static void put_key_str(FILE *f, const char *indent, const char *key, const char *v)
{
    fprintf(f, "%s%s: ", indent, key);
    cfg_put_str(f, v);
    fputc('\n', f);
}

static void put_key_float(FILE *f, const char *sep, const char *key, float v)
{
    fprintf(f, "%s%s: ", sep, key);
    cfg_put_float(f, v);
}

static void dump_data(const cfg_data *d, FILE *f)
{
    static const char *const names[] = {"fashion-mnist", "idx", "csv"};
    fprintf(f, "data:\n  dataset: %s\n", names[d->kind]);
    if (d->kind == CFG_DATA_FASHION) {
        put_key_str(f, "  ", "dir", d->dir);
    } else if (d->kind == CFG_DATA_IDX) {
        put_key_str(f, "  ", "train_images", d->train_images);
        put_key_str(f, "  ", "train_labels", d->train_labels);
        put_key_str(f, "  ", "test_images", d->test_images);
        put_key_str(f, "  ", "test_labels", d->test_labels);
    } else {
        put_key_str(f, "  ", "train_csv", d->train_csv);
        put_key_str(f, "  ", "test_csv", d->test_csv);
    }
    fprintf(f, "  shape: [%d, %d, %d]\n", d->shape.c, d->shape.h, d->shape.w);
    put_key_float(f, "  ", "val_fraction", d->val_fraction);
    fprintf(f, "\n  train_subset: %d\n  test_subset: %d\n", d->train_subset, d->test_subset);
}

/* ind: the indentation of the model's own keys ("  " for the teacher). */
static void dump_layer(const nn_layer_spec *l, const char *ind, FILE *f)
{
    fprintf(f, "%s  - {type: %s", ind, nn_kind_name(l->kind));
    if (l->name[0]) {
        fputs(", name: ", f);
        cfg_put_str(f, l->name);
    }
    switch (l->kind) {
    case NN_DENSE:
        fprintf(f, ", units: %d, init: %s", l->units, cfg_init_names[l->init]);
        break;
    case NN_CONV2D:
        fprintf(f, ", filters: %d, kernel: %d, stride: %d, pad: %d, init: %s", l->filters,
                l->kernel, l->stride, l->pad, cfg_init_names[l->init]);
        break;
    case NN_MAXPOOL2D:
        fprintf(f, ", kernel: %d, stride: %d", l->kernel, l->stride);
        break;
    case NN_DROPOUT:
        put_key_float(f, ", ", "rate", l->rate);
        break;
    case NN_BATCHNORM:
        put_key_float(f, ", ", "eps", l->eps);
        put_key_float(f, ", ", "momentum", l->momentum);
        break;
    default:
        break;
    }
    fputs("}\n", f);
}

static void dump_train(const cfg_train *t, const char *ind, FILE *f)
{
    static const char *const sched[] = {"constant", "step", "cosine"};
    const nn_opt_spec *o = &t->opt;
    fprintf(f, "%strain:\n%s  epochs: %d\n%s  batch_size: %d\n", ind, ind, t->epochs, ind,
            t->batch_size);
    if (t->parallel) /* only when set: run keys without it stay as they were */
        fprintf(f, "%s  parallel: data\n%s  reduce: %s\n", ind, ind,
                t->reduce_fast ? "fast" : "ordered");
    fprintf(f, "%s  optimizer: {kind: %s", ind, o->kind == NN_OPT_ADAMW ? "adamw" : "sgd");
    put_key_float(f, ", ", "lr", o->lr);
    if (o->kind == NN_OPT_SGD) {
        put_key_float(f, ", ", "momentum", o->momentum);
        fprintf(f, ", nesterov: %s", o->nesterov ? "true" : "false");
        put_key_float(f, ", ", "weight_decay", o->weight_decay);
    } else {
        put_key_float(f, ", ", "weight_decay", o->weight_decay);
        put_key_float(f, ", ", "beta1", o->beta1);
        put_key_float(f, ", ", "beta2", o->beta2);
        put_key_float(f, ", ", "eps", o->eps);
    }
    const nn_sched_spec *s = &t->sched;
    fprintf(f, "}\n%s  schedule: {kind: %s", ind, sched[s->kind]);
    put_key_float(f, ", ", "warmup_epochs", s->warmup_epochs);
    if (s->kind == NN_SCHED_STEP) {
        fprintf(f, ", step_epochs: %d", s->step_epochs);
        put_key_float(f, ", ", "gamma", s->gamma);
    } else if (s->kind == NN_SCHED_COSINE) {
        put_key_float(f, ", ", "min_lr", s->min_lr);
    }
    fputs("}\n", f);
}

static void dump_model(const cfg_model *m, const char *ind, FILE *f)
{
    fprintf(f, "%slayers:\n", ind);
    for (int i = 0; i < m->nlayers; i++)
        dump_layer(&m->layers[i], ind, f);
    dump_train(&m->train, ind, f);
}

/* A mode's keys (its method's only); an unlisted kd mode writes exactly the
 * two keys it always had, so existing run keys do not change. */
static void dump_mode(const cfg_distill_mode *m, int named, FILE *f)
{
    if (m->method != CFG_METHOD_KD || named) {
        fprintf(f, "method: %s, ", cfg_distill_methods[m->method]);
        if (named) {
            fputs("name: ", f);
            cfg_put_str(f, m->name);
            fputs(", ", f);
        }
    }
    put_key_float(f, "", "temperature", m->temperature);
    if (m->method != CFG_METHOD_DIST)
        put_key_float(f, ", ", "alpha", m->alpha);
    if (m->method != CFG_METHOD_KD)
        put_key_float(f, ", ", "beta", m->beta);
    if (m->method == CFG_METHOD_DIST)
        put_key_float(f, ", ", "gamma", m->gamma);
    if (m->method == CFG_METHOD_DKD)
        fprintf(f, ", warmup: %d", m->warmup);
    if (m->standardize)
        fputs(", standardize: true", f);
}

static void dump_student(const cfg_student *s, const cfg_student *st_all, FILE *f)
{
    put_key_str(f, "  - ", "name", s->name);
    fputs("    seeds: [", f);
    for (int i = 0; i < s->nseeds; i++)
        fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)s->seeds[i]);
    fputc(']', f);
    if (s->teacher_student >= 0) {
        fputs("\n    teacher: ", f);
        cfg_put_str(f, st_all[s->teacher_student].name);
    }
    fputs("\n    distill: {", f);
    if (!s->listed) {
        dump_mode(&s->modes[0], 0, f);
    } else {
        fputs("modes: [", f);
        for (int i = 0; i < s->nmodes; i++) {
            fputs(i ? ", {" : "{", f);
            dump_mode(&s->modes[i], 1, f);
            fputc('}', f);
        }
        fputc(']', f);
    }
    if (s->hint.student[0]) {
        fputs(", hint: {student: ", f);
        cfg_put_str(f, s->hint.student);
        fputs(", teacher: ", f);
        cfg_put_str(f, s->hint.teacher);
        put_key_float(f, ", ", "weight", s->hint.weight);
        fputc('}', f);
    }
    fputs("}\n", f);
    dump_model(&s->model, "    ", f);
}

/* name .. teacher: everything a trained teacher depends on, and more */
static void dump_head(const exp_spec *s, FILE *f)
{
    fputs("# resolved experiment: every key with its effective value\n", f);
    put_key_str(f, "", "name", s->name);
    fprintf(f, "seed: %llu\nthreads: %d\n", (unsigned long long)s->seed, s->threads);
    put_key_str(f, "", "cache_dir", s->cache_dir);
    dump_data(&s->data, f);
    fputs("teacher:\n", f);
    if (s->teacher.onnx) {
        put_key_str(f, "  ", "onnx", s->teacher.model_path);
        put_key_float(f, "  ", "input_mean", s->teacher.input_mean);
        put_key_float(f, "\n  ", "input_std", s->teacher.input_std);
        fputc('\n', f);
    } else if (s->teacher.model_path[0])
        put_key_str(f, "  ", "model", s->teacher.model_path);
    else
        dump_model(&s->teacher, "  ", f);
}

int config_dump_teacher(const exp_spec *s, int threads, FILE *f)
{
    exp_spec *t = kd_malloc(sizeof *t);
    if (!t)
        return KD_ENOMEM;
    memcpy(t, s, sizeof *t);
    snprintf(t->name, sizeof t->name, "teacher");
    t->cache_dir[0] = 0;
    t->threads = threads;
    dump_head(t, f);
    kd_free(t);
    return ferror(f) ? KD_EIO : KD_OK;
}

int config_dump(const exp_spec *s, FILE *f)
{
    dump_head(s, f);
    if (s->nstudents)
        fputs("students:\n", f);
    for (int i = 0; i < s->nstudents; i++)
        dump_student(&s->students[i], s->students, f);
    cfg_dump_compress(s, f);
    cfg_dump_report(&s->report, f);
    cfg_dump_serve(&s->serve, f);
    return ferror(f) ? KD_EIO : KD_OK;
}
