/* The `compress:` variants (one pipeline item each, sweeps expanded) and
 * `sensitivity:` back as YAML that config_load reads to the same spec. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dump ------------------------------------------------------------------------ */
static void dump_source(FILE *f, const exp_spec *s, cfg_source_kind k, int student, int scratch,
                        const char *file)
{
    char buf[CFG_PATH_MAX + 80];
    if (k == CFG_SRC_TEACHER)
        snprintf(buf, sizeof buf, "teacher");
    else if (k == CFG_SRC_STUDENT)
        snprintf(buf, sizeof buf, "%s/%s", s->students[student].name,
                 scratch ? "scratch" : "distilled");
    else
        snprintf(buf, sizeof buf, "%s", file);
    cfg_put_str(f, buf);
}

static void dump_overrides(FILE *f, const cfg_pass *p, int quant)
{
    if (!p->noverrides)
        return;
    fputs(", overrides: [", f);
    for (int i = 0; i < p->noverrides; i++) {
        fprintf(f, "%s{layer: ", i ? ", " : "");
        cfg_put_str(f, p->overrides[i].pattern);
        if (quant) {
            fprintf(f, ", bits: %d}", p->overrides[i].bits);
            continue;
        }
        fputs(", sparsity: ", f);
        cfg_put_float(f, p->overrides[i].sparsity);
        fputc('}', f);
    }
    fputc(']', f);
}

static void dump_training(FILE *f, const cfg_pass *p)
{
    fprintf(f, ", epochs: %d, lr: ", p->epochs);
    cfg_put_float(f, p->lr);
    fprintf(f, ", batch_size: %d, distill: %s, temperature: ", p->batch_size,
            p->distill ? "true" : "false");
    cfg_put_float(f, p->temperature);
    fputs(", alpha: ", f);
    cfg_put_float(f, p->alpha);
}

static void dump_quant(FILE *f, const cfg_pass *p)
{
    fprintf(f, ", bits: %d", p->bits);
    if (p->kind == CFG_PASS_QUANTIZE)
        fprintf(f, ", mode: %s", p->dynamic ? "dynamic" : "static");
    fprintf(f, ", per_channel: %s", p->per_channel ? "true" : "false");
    if (p->kind == CFG_PASS_QUANTIZE) {
        fprintf(f, ", calibration: %s, percentile: ", p->percentile_calib ? "percentile" : "minmax");
        cfg_put_float(f, p->percentile);
        fprintf(f, ", calib_batches: %d", p->calib_batches);
        int four = p->bits == 4; /* an expanded int8 variant of bits: [8, 4] rounds nothing */
        for (int i = 0; i < p->noverrides; i++)
            four |= p->overrides[i].bits == 4;
        fprintf(f, ", rounding: %s", p->gptq && four ? "gptq" : "nearest");
        if (p->gptq && four) {
            fputs(", damp: ", f);
            cfg_put_float(f, p->damp);
            fprintf(f, ", act_order: %s", p->act_order ? "true" : "false");
        }
        if (p->bits <= 4)
            fprintf(f, ", bias_correction: %s", p->bias_correction ? "true" : "false");
        if (p->sparse_static)
            fputs(", sparse_activations: int8", f);
    }
    fprintf(f, ", group: %d", p->group);
    dump_overrides(f, p, 1);
    if (p->kind == CFG_PASS_QAT)
        dump_training(f, p);
}

static void dump_pass(FILE *f, const cfg_pass *p)
{
    fprintf(f, "      - {type: %s", cfg_pass_names[p->kind]);
    if (p->kind == CFG_PASS_CLUSTER) {
        static const char *const inits[] = {"linear", "kmeans++", "density"};
        fprintf(f, ", clusters: %d, init: %s, coding: %s", p->clusters, inits[p->cluster_init],
                p->cluster_raw ? "none" : "huffman");
        if (p->epochs > 0)
            dump_training(f, p);
    } else if (p->kind >= CFG_PASS_QUANTIZE) {
        dump_quant(f, p);
    } else if (p->kind == CFG_PASS_PRUNE) {
        fprintf(f, ", method: %s, scope: %s", cfg_method_names[p->method], p->global ? "global" : "layer");
        if (p->method != CFG_PRUNE_MAGNITUDE)
            fprintf(f, ", norm: l%d", p->norm);
        fputs(", sparsity: ", f);
        cfg_put_float(f, p->sparsity);
        if (p->method == CFG_PRUNE_MAGNITUDE && p->block > 1)
            fprintf(f, ", block: %d", p->block);
        fprintf(f, ", schedule: %s", p->agp ? "agp" : "oneshot");
        dump_overrides(f, p, 0);
        if (p->agp) {
            fputs(", initial_sparsity: ", f);
            cfg_put_float(f, p->initial_sparsity);
            fprintf(f, ", ramp_epochs: %d", p->ramp_epochs);
        }
    }
    if (p->kind == CFG_PASS_FINETUNE || (p->kind == CFG_PASS_PRUNE && p->agp))
        dump_training(f, p);
    fputs("}\n", f);
}

/* p's YAML in a heap string (NULL when out of memory). */
static char *pass_text(const cfg_pass *p)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    dump_pass(f, p);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

int cfg_pass_same(const cfg_pass *a, const cfg_pass *b)
{
    char *ta = pass_text(a), *tb = pass_text(b);
    int same = ta && tb && !strcmp(ta, tb);
    free(ta);
    free(tb);
    return same;
}

void cfg_dump_compress(const exp_spec *s, FILE *f)
{
    if (s->nvariants)
        fputs("compress:              # one item per variant (sweeps expanded)\n", f);
    for (int i = 0; i < s->nvariants; i++) {
        const cfg_variant *v = &s->variants[i];
        fputs("  - name: ", f);
        cfg_put_str(f, v->name);
        fputs("\n    source: ", f);
        dump_source(f, s, v->source_kind, v->source_student, v->source_scratch, v->source_path);
        static const char *const store_names[] = {"fastest", "smallest", "latency"};
        fprintf(f, "\n    store: %s\n", store_names[v->store]);
        /* only when not the default [seed], so a dump still follows --set seed= */
        if (v->nseeds != 1 || v->seeds[0] != s->seed) {
            fputs("    seeds: [", f);
            for (int k = 0; k < v->nseeds; k++)
                fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)v->seeds[k]);
            fputs("]\n", f);
        }
        fputs("    passes:\n", f);
        for (int k = 0; k < v->npasses; k++)
            dump_pass(f, &v->passes[k]);
    }
    const cfg_sensitivity *t = &s->sensitivity;
    if (!t->on)
        return;
    fputs("sensitivity:\n  source: ", f);
    dump_source(f, s, t->source_kind, t->source_student, t->source_scratch, t->source_path);
    fputs("\n  sparsities: [", f);
    for (int i = 0; i < t->nsparsities; i++) {
        if (i)
            fputs(", ", f);
        cfg_put_float(f, t->sparsities[i]);
    }
    fputs("]\n", f);
}
