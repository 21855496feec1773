/* config, compress pipelines: sweeps expand into named variants, sources
 * resolve, every mistake is reported at its position naming the key, and
 * the expanded variants dump and reload to the same text. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../kdtest.h"

static int load(const char *yaml, exp_spec *s, kd_err *e)
{
    memset(e, 0, sizeof *e);
    return config_load_string("c.yaml", yaml, strlen(yaml), NULL, 0, s, e);
}

#define BASE                                                                                 \
    "name: x\n"                                                                              \
    "teacher:\n"                                                                             \
    "  layers: [{type: flatten}, {type: dense, units: 64}, {type: relu},\n"                  \
    "           {type: dense, units: 32}, {type: relu}, {type: dense, units: 10}]\n"         \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"                                           \
    "students:\n"                                                                            \
    "  - name: st\n"                                                                         \
    "    layers: [{type: flatten}, {type: dense, units: 16}, {type: relu},\n"                \
    "             {type: dense, units: 10}]\n"                                               \
    "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"                                         \
    "compress:\n"
/* pipelines start at line 12 */

START_TEST(sweeps_and_sources)
{
    exp_spec s;
    kd_err e;
    const char *y = BASE "  - name: p\n"
                         "    source: teacher\n"
                         "    passes:\n"
                         "      - {type: prune, scope: global, sparsity: [0.5, 0.9], schedule: agp, "
                         "epochs: 2, overrides: [{layer: \"dense3\", sparsity: 0.2}]}\n"
                         "      - {type: finetune, epochs: 1, distill: true}\n"
                         "  - name: n\n"
                         "    source: st/scratch\n"
                         "    passes: [{type: prune, method: neurons, norm: l2, sparsity: 0.5}]\n"
                         "  - name: f\n"
                         "    source: runs/a/teacher.kdm\n"
                         "    passes: [{type: prune, sparsity: 0.8, block: 8}]\n"
                         "sensitivity: {source: st, sparsities: [0.5, 0.75]}\n";
    int rc = load(y, &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    ck_assert_int_eq(s.nvariants, 4);
    ck_assert_str_eq(s.variants[0].name, "p/s0.5");
    ck_assert_str_eq(s.variants[1].name, "p/s0.9");
    ck_assert_str_eq(s.variants[1].pipeline, "p");
    ck_assert_float_eq(s.variants[1].passes[0].sparsity, 0.9f);
    ck_assert_int_eq(s.variants[1].passes[0].global, 1);
    ck_assert_int_eq(s.variants[1].passes[0].agp, 1);
    ck_assert_int_eq(s.variants[1].passes[0].noverrides, 1);
    ck_assert_int_eq(s.variants[1].passes[1].kind, CFG_PASS_FINETUNE);
    ck_assert_int_eq(s.variants[1].passes[1].distill, 1);
    ck_assert_float_eq(s.variants[1].passes[1].lr, 0.01f);
    ck_assert_str_eq(s.variants[2].name, "n");
    ck_assert_int_eq(s.variants[2].source_kind, CFG_SRC_STUDENT);
    ck_assert_int_eq(s.variants[2].source_scratch, 1);
    ck_assert_int_eq(s.variants[2].passes[0].method, CFG_PRUNE_NEURONS);
    ck_assert_int_eq(s.variants[2].passes[0].norm, 2);
    ck_assert_int_eq(s.variants[3].source_kind, CFG_SRC_FILE);
    ck_assert_str_eq(s.variants[3].source_path, "runs/a/teacher.kdm");
    ck_assert_int_eq(s.variants[3].passes[0].block, 8);
    ck_assert_int_eq(s.variants[1].passes[0].block, 1); /* single weights by default */
    ck_assert_int_eq(s.sensitivity.on, 1);
    ck_assert_int_eq(s.sensitivity.source_kind, CFG_SRC_STUDENT);
    ck_assert_int_eq(s.sensitivity.nsparsities, 2);
    /* the dump lists each variant; it reloads to the same text */
    char *a = NULL, *b = NULL;
    size_t na, nb;
    FILE *f = open_memstream(&a, &na);
    config_dump(&s, f);
    fclose(f);
    exp_spec t;
    rc = config_load_string("d.yaml", a, na, NULL, 0, &t, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s\n%s", e.line, e.col, e.msg, a);
    ck_assert_int_eq(t.nvariants, 4);
    ck_assert_str_eq(t.variants[1].name, "p/s0.9");
    f = open_memstream(&b, &nb);
    config_dump(&t, f);
    fclose(f);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
}
END_TEST

typedef struct {
    const char *tail;
    int line, col;
    const char *needle;
} bad_case;

#define P "  - name: p\n    source: teacher\n"
static const bad_case bad[] = {
    {P "    passes: [{type: prune, sparsity: 1}]\n", 14, 38, "sparsity: must be < 1"},
    {P "    passes: [{type: prune, sparsity: [0.5, 1.5]}]\n", 14, 44, "sparsity[1]: must be < 1"},
    {P "    passes: [{type: prune, sparsity: -0.1}]\n", 14, 38, "must be >= 0"},
    {P "    passes: [{type: prune, sparsity: 0.5, overrides: [{layer: \"conv*\", sparsity: 0.1}]}]\n",
     14, 63, "\"conv*\" matches no layer"},
    {P "    passes: [{type: prune, method: filters, sparsity: 0.5}]\n", 14, 14,
     "filters pruning does not apply to this model"},
    {P "    passes: [{type: prune, method: neurons, scope: global, sparsity: 0.5}]\n", 14, 52,
     "layer-wise and one-shot"},
    {P "    passes: [{type: prune, sparsity: 0.5, schedule: agp}]\n", 14, 14,
     "epochs: required key is missing"},
    {P "    passes: [{type: prune, sparsity: 0.5, epochs: 3}]\n", 14, 51,
     "only prune passes with schedule: agp train"},
    {P "    passes: [{type: prune, sparsity: 0.5, block: 0}]\n", 14, 50, "block: must be >= 1"},
    {P "    passes: [{type: prune, sparsity: 0.5, block: 65}]\n", 14, 50, "block: must be <= 64"},
    {P "    passes: [{type: prune, method: neurons, sparsity: 0.5, block: 8}]\n", 14, 67, "block is for magnitude pruning"},
    {P "    passes: [{type: quantise}]\n", 14, 21, "unknown value \"quantise\" (did you mean \"quantize\"?"},
    {P "    passes: [{type: finetune}]\n", 14, 14, "epochs: required key is missing"},
    /* gptq rounding: its value, 4-bit layers only, damp only with it and in (0, 1] */
    {P "    passes: [{type: quantize, bits: 4, rounding: gptx}]\n", 14, 50, "did you mean \"gptq\""},
    {P "    passes: [{type: quantize, bits: 8, rounding: gptq}]\n", 14, 50,
     "no layer 4 bits"},
    {P "    passes: [{type: quantize, bits: 4, damp: 0.1}]\n", 14, 46,
     "damp is a setting of rounding: gptq"},
    {P "    passes: [{type: quantize, bits: 4, rounding: gptq, damp: 0}]\n", 14, 62,
     "damp: must be > 0"},
    {P "    passes: [{type: qat, bits: 4, epochs: 1, rounding: gptq}]\n", 14, 46,
     "unknown key"},
    {P "    passes: [{type: quantize, bits: 4, act_order: false}]\n", 14, 51,
     "act_order is a setting of rounding: gptq"},
    /* low bits: 8, 4, 3 or 2; bias correction only where some layer gets <= 4 bits */
    {P "    passes: [{type: quantize, bits: 5}]\n", 14, 37, "5 bits is not supported (8, 4, 3 or 2)"},
    {P "    passes: [{type: qat, bits: [2, 1], epochs: 1}]\n", 14, 36, "bits[1]: 1 bits is not supported"},
    {P "    passes: [{type: quantize, bits: 8, bias_correction: true}]\n", 14, 57,
     "bias correction applies to 4-, 3- and 2-bit weights"},
    /* sparse_activations: fp32 or int8 */
    {P "    passes: [{type: quantize, sparse_activations: int4}]\n", 14, 51,
     "did you mean \"int8\""},
    {P "    passes: [{type: quantize, bits: 2, rounding: gptq}]\n", 14, 50, "no layer 4 bits"},
    {P "    passes: [{type: qat, bits: 2, epochs: 1, bias_correction: true}]\n", 14, 46,
     "unknown key"},
    /* cluster: its count, its init, final, its keys */
    {P "    passes: [{type: cluster, clusters: 1}]\n", 14, 40, "clusters: must be >= 2"},
    {P "    passes: [{type: cluster, clusters: 300}]\n", 14, 40, "clusters: must be <= 256"},
    {P "    passes: [{type: cluster, init: kmeans}]\n", 14, 36, "did you mean \"kmeans++\""},
    {P "    passes: [{type: cluster}, {type: finetune, epochs: 1}]\n", 14, 31,
     "a quantized or clustered model is final"},
    {P "    passes: [{type: cluster, bits: 4}]\n", 14, 30, "unknown key for pass type cluster"},
    {P "    passes: [{type: cluster, epochs: 0}]\n", 14, 38, "epochs: must be >= 1"},
    {P "    passes: [{type: finetune, epochs: 1, lr: 0}]\n", 14, 46, "lr: must be > 0"},
    {P "    passes: []\n", 14, 13, "expected a list of 1 to 8 passes"},
    {"  - name: p\n    source: nobody\n    passes: [{type: prune, sparsity: 0.5}]\n", 13, 13,
     "no model is named \"nobody\""},
    {"  - name: a b\n    source: teacher\n    passes: [{type: prune, sparsity: 0.5}]\n", 12, 11,
     "may use only"},
    {P "    passes: [{type: prune, sparsity: 0.5}]\n" P
       "    passes: [{type: prune, sparsity: 0.5}]\n",
     15, 11, "the variant \"p\" is already defined"},
    {P "    passes: [{type: prune, sparsity: 0.5}]\nsensitivity: {source: teacher}\n", 15, 14,
     "sensitivity.sparsities: required key is missing"},
    /* seeds: the students' rules, at the compress entry's position */
    {P "    seeds: 3\n    passes: [{type: prune, sparsity: 0.5}]\n", 14, 12,
     "compress[0].seeds: expected a list of 1 to 16 seeds"},
    {P "    seeds: [1, 2, 1]\n    passes: [{type: prune, sparsity: 0.5}]\n", 14, 19,
     "compress[0].seeds[2]: seed 1 is listed twice"},
    {P "    seeds: [1, -2]\n    passes: [{type: prune, sparsity: 0.5}]\n", 14, 16,
     "compress[0].seeds[1]: must be >= 0"},
    {P "    seeds: []\n    passes: [{type: prune, sparsity: 0.5}]\n", 14, 12,
     "compress[0].seeds: expected a list of 1 to 16 seeds"},
    {P "    seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n"
       "    passes: [{type: prune, sparsity: 0.5}]\n", 14, 12,
     "compress[0].seeds: expected a list of 1 to 16 seeds"},
    {P "    seeds: [x]\n    passes: [{type: prune, sparsity: 0.5}]\n", 14, 13,
     "compress[0].seeds[0]: expected an integer"},
    /* p's second seed would be saved as p-seed2.kdm, the file of p-seed2 */
    {P "    seeds: [1, 2]\n    passes: [{type: prune, sparsity: 0.5}]\n"
       "  - name: p-seed2\n    source: teacher\n    passes: [{type: prune, sparsity: 0.5}]\n",
     16, 11, "would share a model file"},
};

START_TEST(compress_errors)
{
    const bad_case *b = &bad[_i];
    char y[4096];
    snprintf(y, sizeof y, "%s%s", BASE, b->tail);
    exp_spec s;
    kd_err e;
    int rc = load(y, &s, &e);
    ck_assert_msg(rc == KD_ECONFIG, "case %d: rc %d (%s)", _i, rc, e.msg);
    ck_assert_msg(e.line == b->line && e.col == b->col && strstr(e.msg, b->needle),
                  "case %d: got %d:%d \"%s\"; want %d:%d \"%s\"", _i, e.line, e.col, e.msg,
                  b->line, b->col, b->needle);
}
END_TEST

START_TEST(quantize_passes)
{
    exp_spec s, t;
    kd_err e;
    const char *y = BASE "  - name: q\n"
                         "    source: teacher\n"
                         "    passes:\n"
                         "      - {type: prune, sparsity: 0.9}\n"
                         "      - {type: quantize, bits: [8, 4], calibration: percentile,\n"
                         "         overrides: [{layer: dense1, bits: 32}]}\n"
                         "  - name: qat\n"
                         "    source: st\n"
                         "    passes: [{type: qat, bits: 4, epochs: 2}]\n"
                         "  - name: dyn\n"
                         "    source: teacher\n"
                         "    passes: [{type: quantize, mode: dynamic, per_channel: false}]\n"
                         "  - name: g\n"
                         "    source: teacher\n"
                         "    passes: [{type: quantize, bits: 4, rounding: gptq, damp: 0.05}]\n"
                         "  - name: g2\n"
                         "    source: teacher\n"
                         "    passes: [{type: quantize, bits: [8, 4], rounding: gptq}]\n"
                         "  - name: cl\n"
                         "    source: teacher\n"
                         "    passes: [{type: prune, sparsity: 0.9},\n"
                         "             {type: cluster, clusters: 32, init: density, epochs: 2}]\n";
    int rc = load(y, &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    ck_assert_int_eq(s.nvariants, 8);
    ck_assert_int_eq(s.variants[7].passes[1].kind, CFG_PASS_CLUSTER);
    ck_assert_int_eq(s.variants[7].passes[1].clusters, 32);
    ck_assert_int_eq(s.variants[7].passes[1].cluster_init, 2);
    ck_assert_int_eq(s.variants[7].passes[1].epochs, 2);
    ck_assert_str_eq(s.variants[6].name, "g2/int4");
    ck_assert_int_eq(s.variants[6].passes[0].gptq, 1);
    ck_assert_int_eq(s.variants[4].passes[0].gptq, 1);
    ck_assert_float_eq(s.variants[4].passes[0].damp, 0.05f);
    ck_assert_int_eq(s.variants[4].passes[0].act_order, 1); /* the default */
    ck_assert_int_eq(s.variants[1].passes[1].gptq, 0);
    ck_assert_str_eq(s.variants[0].name, "q/int8");
    ck_assert_str_eq(s.variants[1].name, "q/int4");
    ck_assert_int_eq(s.variants[1].passes[1].bits, 4);
    ck_assert_int_eq(s.variants[1].passes[1].percentile_calib, 1);
    ck_assert_float_eq(s.variants[1].passes[1].percentile, 99.99f);
    ck_assert_int_eq(s.variants[1].passes[1].overrides[0].bits, 32);
    ck_assert_int_eq(s.variants[2].passes[0].kind, CFG_PASS_QAT);
    ck_assert_float_eq(s.variants[2].passes[0].lr, 0.001f);
    ck_assert_int_eq(s.variants[3].passes[0].dynamic, 1);
    ck_assert_int_eq(s.variants[3].passes[0].per_channel, 0);
    char *a = NULL;
    size_t na;
    FILE *f = open_memstream(&a, &na);
    config_dump(&s, f);
    fclose(f);
    rc = config_load_string("d.yaml", a, na, NULL, 0, &t, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s\n%s", e.line, e.col, e.msg, a);
    ck_assert_int_eq(t.nvariants, 8);
    ck_assert_int_eq(t.variants[7].passes[1].clusters, 32);
    ck_assert_int_eq(t.variants[7].passes[1].cluster_init, 2);
    ck_assert_int_eq(t.variants[7].passes[1].epochs, 2);
    ck_assert_int_eq(t.variants[6].passes[0].gptq, 1);
    ck_assert_int_eq(t.variants[5].passes[0].gptq, 0); /* g2/int8 rounds nothing */
    ck_assert_int_eq(t.variants[1].passes[1].bits, 4);
    ck_assert_int_eq(t.variants[4].passes[0].gptq, 1);
    ck_assert_float_eq(t.variants[4].passes[0].damp, 0.05f);
    free(a);
    const char *after = BASE P "    passes: [{type: quantize}, {type: finetune, epochs: 1}]\n";
    ck_assert_int_eq(load(after, &s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "a quantized or clustered model is final"));
    const char *bits = BASE P "    passes: [{type: quantize, bits: 7}]\n";
    ck_assert_int_eq(load(bits, &s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "7 bits is not supported"));
    /* 2 and 3 bits, bias correction: parsed, and dumped so that they reload */
    const char *low = BASE P "    passes: [{type: quantize, bits: [3, 2], bias_correction: true}]\n"
                      "  - name: l\n    source: st/distilled\n"
                      "    passes: [{type: qat, bits: 2, epochs: 1, distill: true}]\n";
    ck_assert_msg(load(low, &s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s.nvariants, 3);
    ck_assert_int_eq(s.variants[0].passes[0].bits, 3);
    ck_assert_int_eq(s.variants[1].passes[0].bits, 2);
    ck_assert_int_eq(s.variants[1].passes[0].bias_correction, 1);
    ck_assert_int_eq(s.variants[2].passes[0].bits, 2);
    char *dump = NULL;
    size_t dn = 0;
    FILE *df = open_memstream(&dump, &dn);
    config_dump(&s, df);
    fclose(df);
    ck_assert_msg(strstr(dump, "bits: 2, mode: static") && strstr(dump, "bias_correction: true"),
                  "%s", dump);
    ck_assert_msg(load(dump, &t, &e) == KD_OK, "%s\n%s", e.msg, dump);
    ck_assert_int_eq(t.variants[1].passes[0].bias_correction, 1);
    free(dump);
    /* sparse_activations: int8 is dumped and reloads, static or dynamic; fp32
     * (the default) is not written */
    const char *sa = BASE P "    passes: [{type: quantize, sparse_activations: int8}]\n"
                     "  - name: f\n    source: teacher\n"
                     "    passes: [{type: quantize, sparse_activations: fp32}]\n"
                     "  - name: g\n    source: teacher\n"
                     "    passes: [{type: quantize, mode: dynamic, sparse_activations: int8}]\n";
    ck_assert_msg(load(sa, &s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s.variants[0].passes[0].sparse_static, 1);
    ck_assert_int_eq(s.variants[1].passes[0].sparse_static, 0);
    ck_assert_int_eq(s.variants[2].passes[0].sparse_static, 1);
    ck_assert_int_eq(s.variants[2].passes[0].dynamic, 1);
    df = open_memstream(&dump, &dn);
    config_dump(&s, df);
    fclose(df);
    const char *at = strstr(dump, "sparse_activations: int8");
    ck_assert_msg(at && strstr(at + 1, "sparse_activations: int8"), "%s", dump);
    ck_assert_msg(!strstr(strstr(at + 1, "sparse_activations") + 1, "sparse_activations"), "%s",
                  dump);
    ck_assert_msg(load(dump, &t, &e) == KD_OK, "%s\n%s", e.msg, dump);
    ck_assert_int_eq(t.variants[0].passes[0].sparse_static, 1);
    ck_assert_int_eq(t.variants[1].passes[0].sparse_static, 0);
    ck_assert_int_eq(t.variants[2].passes[0].sparse_static, 1);
    ck_assert_int_eq(t.variants[2].passes[0].dynamic, 1);
    free(dump);
    const char *cal = BASE P "    passes: [{type: quantize, calib_batches: 9999}]\n";
    ck_assert_int_eq(load(cal, &s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "more than the 422"));
    const char *ov = BASE P "    passes: [{type: quantize, overrides: [{layer: \"conv*\", bits: 8}]}]\n";
    ck_assert_int_eq(load(ov, &s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "matches no dense layer"));
}
END_TEST

/* cfg_pass_same: equal passes written differently (key order, defaults
 * spelled out, other lines) are the same; any value that differs is not. */
START_TEST(pass_same)
{
    exp_spec s;
    kd_err e;
    const char *y = BASE
        "  - {name: a, source: teacher, passes: [{type: prune, sparsity: 0.5},\n"
        "     {type: finetune, epochs: 2, lr: 0.01}]}\n"
        "  - name: b\n"
        "    source: teacher\n"
        "    passes:\n"
        "      - {sparsity: 0.5, type: prune, scope: layer, schedule: oneshot}\n"
        "      - {type: finetune, lr: 0.01, epochs: 2, batch_size: 128}\n"
        "  - {name: c, source: teacher, passes: [{type: prune, sparsity: 0.5, block: 2},\n"
        "     {type: finetune, epochs: 2, lr: 0.02}]}\n"
        "  - {name: d, source: teacher, passes: [{type: prune, sparsity: 0.5},\n"
        "     {type: finetune, epochs: 2, lr: 0.01, distill: true}]}\n";
    ck_assert_msg(load(y, &s, &e) == KD_OK, "%s", e.msg);
    const cfg_variant *v = s.variants;
    ck_assert_int_eq(s.nvariants, 4);
    ck_assert(cfg_pass_same(&v[0].passes[0], &v[1].passes[0]));
    ck_assert(cfg_pass_same(&v[0].passes[1], &v[1].passes[1]));
    ck_assert(!cfg_pass_same(&v[0].passes[0], &v[2].passes[0])); /* block */
    ck_assert(!cfg_pass_same(&v[0].passes[1], &v[2].passes[1])); /* lr */
    ck_assert(cfg_pass_same(&v[0].passes[0], &v[3].passes[0]));
    ck_assert(!cfg_pass_same(&v[0].passes[1], &v[3].passes[1])); /* distill */
    ck_assert(!cfg_pass_same(&v[0].passes[0], &v[0].passes[1])); /* kind */
}
END_TEST

/* seeds: default [seed]; a sweep's variants inherit the list; the dump
 * prints it only when it is not the default and reloads to the same spec. */
START_TEST(compress_seeds)
{
    exp_spec s, t;
    kd_err e;
    const char *y = "seed: 7\n" BASE "  - name: p\n"
                    "    source: teacher\n"
                    "    seeds: [3, 1, 2]\n"
                    "    passes: [{type: prune, sparsity: [0.5, 0.8]}, {type: finetune, epochs: 1}]\n"
                    "  - name: one\n"
                    "    source: teacher\n"
                    "    passes: [{type: prune, sparsity: 0.5}]\n"
                    "  - name: other\n"
                    "    source: teacher\n"
                    "    seeds: [9]\n"
                    "    passes: [{type: quantize, bits: [8, 4]}]\n";
    int rc = load(y, &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    ck_assert_int_eq(s.nvariants, 5);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(s.variants[i].nseeds, 3);
        ck_assert_uint_eq(s.variants[i].seeds[0], 3);
        ck_assert_uint_eq(s.variants[i].seeds[2], 2);
    }
    ck_assert_int_eq(s.variants[2].nseeds, 1);
    ck_assert_uint_eq(s.variants[2].seeds[0], 7); /* the experiment's seed */
    ck_assert_int_eq(s.variants[4].nseeds, 1);
    ck_assert_uint_eq(s.variants[4].seeds[0], 9);
    char *a = NULL, *b = NULL;
    size_t na, nb;
    FILE *f = open_memstream(&a, &na);
    ck_assert_int_eq(config_dump(&s, f), KD_OK);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(a, "    seeds: [3, 1, 2]\n"));
    ck_assert_ptr_nonnull(strstr(a, "    seeds: [9]\n"));
    /* "one" keeps the default, so the dump has no seeds key for it */
    const char *one = strstr(a, "name: \"one\"");
    ck_assert_ptr_nonnull(one);
    ck_assert_ptr_null(strstr(strstr(one, "passes:"), "seeds: [7]"));
    rc = config_load_string("d.yaml", a, na, NULL, 0, &t, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s\n%s", e.line, e.col, e.msg, a);
    ck_assert_int_eq(t.nvariants, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(t.variants[i].nseeds, s.variants[i].nseeds);
        for (int k = 0; k < s.variants[i].nseeds; k++)
            ck_assert_uint_eq(t.variants[i].seeds[k], s.variants[i].seeds[k]);
    }
    f = open_memstream(&b, &nb);
    config_dump(&t, f);
    fclose(f);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    /* an override may set them */
    const char *ovr[] = {"compress[1].seeds=[4, 5]"};
    rc = config_load_string("o.yaml", y, strlen(y), ovr, 1, &s, &e);
    ck_assert_msg(rc == KD_OK, "%s:%d:%d %s", e.file, e.line, e.col, e.msg);
    ck_assert_int_eq(s.variants[2].nseeds, 2);
    ck_assert_uint_eq(s.variants[2].seeds[1], 5);
}
END_TEST

START_TEST(report_section)
{
    exp_spec s;
    kd_err e;
    const char *y = BASE "  - name: p\n    source: teacher\n    passes: [{type: prune, sparsity: 0}]\n"
                         "report: {format: md, plots: false, timeout: 5}\n";
    ck_assert_msg(load(y, &s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s.report.format, 1);
    ck_assert_int_eq(s.report.plots, 0);
    ck_assert_float_eq(s.report.timeout, 5.0f);
    const char *bad_fmt = BASE "  - name: p\n    source: teacher\n    passes: [{type: prune, "
                               "sparsity: 0}]\nreport: {format: pdf}\n";
    ck_assert_int_eq(load(bad_fmt, &s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "report.format"));
}
END_TEST

Suite *suite_config_compress(void)
{
    Suite *s = suite_create("config_compress");
    TCase *t = tcase_create("config_compress");
    tcase_add_test(t, sweeps_and_sources);
    tcase_add_loop_test(t, compress_errors, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(t, report_section);
    tcase_add_test(t, quantize_passes);
    tcase_add_test(t, compress_seeds);
    tcase_add_test(t, pass_same);
    suite_add_tcase(s, t);
    return s;
}
