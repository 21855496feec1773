/* config: a full experiment lands in the spec with its defaults; every kind of
 * mistake is reported at its exact line and column naming the key; --set
 * overrides; dump round trip; the shipped experiments load. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../kdtest.h"

static int load_ovr(const char *yaml, const char *const *ovr, int n, exp_spec *s, kd_err *e)
{
    memset(e, 0, sizeof *e);
    return config_load_string("t.yaml", yaml, strlen(yaml), ovr, n, s, e);
}

static int load(const char *yaml, exp_spec *s, kd_err *e)
{
    return load_ovr(yaml, NULL, 0, s, e);
}

static void expect_ok(const char *yaml, exp_spec *s)
{
    kd_err e;
    int rc = load(yaml, s, &e);
    ck_assert_msg(rc == KD_OK, "unexpected error %d at %d:%d: %s", rc, e.line, e.col, e.msg);
}

static const char FULL[] = "name: fashion_mlp\n"        /* 1 */
                           "seed: 7\n"                  /* 2 */
                           "threads: 2\n"               /* 3 */
                           "data:\n"                    /* 4 */
                           "  dataset: fashion-mnist\n" /* 5 */
                           "  dir: /tmp/fm\n"           /* 6 */
                           "  shape: [1, 28, 28]\n"     /* 7 */
                           "  val_fraction: 0.2\n"      /* 8 */
                           "  train_subset: 1000\n"     /* 9 */
                           "  test_subset: 500\n"       /* 10 */
                           "teacher:\n"                 /* 11 */
                           "  layers:\n"                /* 12 */
                           "    - {type: flatten}\n"    /* 13 */
                           "    - {type: dense, units: 64, name: fc1, init: xavier}\n"
                           "    - {type: relu}\n"               /* 15 */
                           "    - {type: dropout, rate: 0.5}\n" /* 16 */
                           "    - {type: dense, units: 10}\n"   /* 17 */
                           "  train:\n"                         /* 18 */
                           "    epochs: 20\n"                   /* 19 */
                           "    batch_size: 64\n"               /* 20 */
                           "    optimizer: {kind: sgd, lr: 0.05, momentum: 0.8, nesterov: true, "
                           "weight_decay: 5e-4}\n" /* 21 */
                           "    schedule: {kind: cosine, warmup_epochs: 1.5, min_lr: 0.001}\n";

/* The smallest valid experiment: everything else is a default. */
static const char MIN[] = "name: m\n"
                          "teacher:\n"
                          "  layers:\n"
                          "    - {type: flatten}\n"
                          "    - {type: dense, units: 10}\n"
                          "  train:\n"
                          "    epochs: 1\n"
                          "    optimizer: {lr: 0.1}\n";

/* ---- valid input ---------------------------------------------------------------- */
START_TEST(test_full)
{
    exp_spec s;
    expect_ok(FULL, &s);
    ck_assert_str_eq(s.file, "t.yaml");
    ck_assert_str_eq(s.name, "fashion_mlp");
    ck_assert_uint_eq(s.seed, 7);
    ck_assert_int_eq(s.threads, 2);
    ck_assert_int_eq(s.data.kind, CFG_DATA_FASHION);
    ck_assert_str_eq(s.data.dir, "/tmp/fm");
    ck_assert_int_eq(s.data.shape.c, 1);
    ck_assert_int_eq(s.data.shape.h, 28);
    ck_assert_int_eq(s.data.shape.w, 28);
    ck_assert_float_eq(s.data.val_fraction, 0.2f);
    ck_assert_int_eq(s.data.train_subset, 1000);
    ck_assert_int_eq(s.data.test_subset, 500);
    ck_assert_int_eq(s.data.pos.line, 4);
    ck_assert_int_eq(s.data.pos.col, 1);
    ck_assert_int_eq(s.data.shape_pos.line, 7);
    ck_assert_int_eq(s.data.shape_pos.col, 10);
    ck_assert_int_eq(s.teacher.pos.line, 11);
    ck_assert_int_eq(s.teacher.nlayers, 5);
    ck_assert_int_eq(s.teacher.layer_pos[1].line, 14);
    ck_assert_int_eq(s.teacher.layer_pos[1].col, 7);
    const nn_layer_spec *l = s.teacher.layers;
    ck_assert_int_eq(l[0].kind, NN_FLATTEN);
    ck_assert_int_eq(l[1].kind, NN_DENSE);
    ck_assert_int_eq(l[1].units, 64);
    ck_assert_str_eq(l[1].name, "fc1");
    ck_assert_int_eq(l[1].init, NN_INIT_XAVIER);
    ck_assert_int_eq(l[2].kind, NN_RELU);
    ck_assert_int_eq(l[3].kind, NN_DROPOUT);
    ck_assert_float_eq(l[3].rate, 0.5f);
    ck_assert_int_eq(l[4].units, 10);
    ck_assert_str_eq(l[4].name, "");
    ck_assert_int_eq(l[4].init, NN_INIT_AUTO);
    const cfg_train *t = &s.teacher.train;
    ck_assert_int_eq(t->pos.line, 18);
    ck_assert_int_eq(t->epochs, 20);
    ck_assert_int_eq(t->batch_size, 64);
    ck_assert_int_eq(t->opt.kind, NN_OPT_SGD);
    ck_assert_float_eq(t->opt.lr, 0.05f);
    ck_assert_float_eq(t->opt.momentum, 0.8f);
    ck_assert_int_eq(t->opt.nesterov, 1);
    ck_assert_float_eq(t->opt.weight_decay, 5e-4f);
    ck_assert_int_eq(t->sched.kind, NN_SCHED_COSINE);
    ck_assert_float_eq(t->sched.warmup_epochs, 1.5f);
    ck_assert_float_eq(t->sched.min_lr, 0.001f);
}
END_TEST

START_TEST(test_defaults)
{
    exp_spec s;
    expect_ok(MIN, &s);
    ck_assert_uint_eq(s.seed, 1);
    ck_assert_int_eq(s.threads, 0);
    ck_assert_int_eq(s.data.kind, CFG_DATA_FASHION);
    ck_assert_str_eq(s.data.dir, "/usr/share/datasets/fashion-mnist");
    ck_assert_int_eq(s.data.shape.c, 1);
    ck_assert_int_eq(s.data.shape.h, 28);
    ck_assert_int_eq(s.data.shape.w, 28);
    ck_assert_float_eq(s.data.val_fraction, 0.1f);
    ck_assert_int_eq(s.data.train_subset, 0);
    ck_assert_int_eq(s.data.test_subset, 0);
    ck_assert_int_eq(s.data.pos.line, 0);
    const cfg_train *t = &s.teacher.train;
    ck_assert_int_eq(t->batch_size, 128);
    ck_assert_int_eq(t->opt.kind, NN_OPT_SGD);
    ck_assert_float_eq(t->opt.momentum, 0.9f);
    ck_assert_int_eq(t->opt.nesterov, 0);
    ck_assert_float_eq(t->opt.weight_decay, 0);
    ck_assert_int_eq(t->sched.kind, NN_SCHED_CONSTANT);
    ck_assert_float_eq(t->sched.warmup_epochs, 0);
}
END_TEST

START_TEST(test_conv_defaults)
{
    exp_spec s;
    expect_ok("name: c\n"
              "teacher:\n"
              "  layers:\n"
              "    - {type: conv2d, filters: 4, kernel: 3}\n"
              "    - {type: batchnorm}\n"
              "    - {type: relu}\n"
              "    - {type: maxpool2d, kernel: 2}\n"
              "    - {type: conv2d, filters: 2, kernel: 3, stride: 2, pad: 1, init: he}\n"
              "    - {type: batchnorm, eps: 0.001, momentum: 1}\n"
              "    - {type: flatten}\n"
              "    - {type: dense, units: 10}\n"
              "  train:\n"
              "    epochs: 1\n"
              "    optimizer: {kind: adamw, lr: 0.001}\n"
              "    schedule: {kind: step, step_epochs: 3}\n",
              &s);
    const nn_layer_spec *l = s.teacher.layers;
    ck_assert_int_eq(l[0].kind, NN_CONV2D);
    ck_assert_int_eq(l[0].stride, 1);
    ck_assert_int_eq(l[0].pad, 0);
    ck_assert_float_eq(l[1].eps, 1e-5f);
    ck_assert_float_eq(l[1].momentum, 0.1f);
    ck_assert_int_eq(l[3].kind, NN_MAXPOOL2D);
    ck_assert_int_eq(l[3].stride, 2);
    ck_assert_int_eq(l[4].stride, 2);
    ck_assert_int_eq(l[4].pad, 1);
    ck_assert_int_eq(l[4].init, NN_INIT_HE);
    ck_assert_float_eq(l[5].eps, 0.001f);
    ck_assert_float_eq(l[5].momentum, 1);
    const cfg_train *t = &s.teacher.train;
    ck_assert_int_eq(t->opt.kind, NN_OPT_ADAMW);
    ck_assert_float_eq(t->opt.beta1, 0.9f);
    ck_assert_float_eq(t->opt.beta2, 0.999f);
    ck_assert_float_eq(t->opt.eps, 1e-8f);
    ck_assert_float_eq(t->opt.momentum, 0);
    ck_assert_int_eq(t->sched.kind, NN_SCHED_STEP);
    ck_assert_int_eq(t->sched.step_epochs, 3);
    ck_assert_float_eq(t->sched.gamma, 0.1f);
}
END_TEST

START_TEST(test_idx_csv)
{
    exp_spec s;
    /* the class count (5 here) is only known once the files are read */
    expect_ok("name: i\n"
              "data: {dataset: idx, train_images: a, train_labels: b, test_images: c,\n"
              "       test_labels: d, shape: [1, 8, 8]}\n"
              "teacher:\n"
              "  layers: [{type: dense, units: 5}]\n"
              "  train: {epochs: 2, optimizer: {lr: 0.1}}\n",
              &s);
    ck_assert_int_eq(s.data.kind, CFG_DATA_IDX);
    ck_assert_str_eq(s.data.train_images, "a");
    ck_assert_str_eq(s.data.test_labels, "d");
    ck_assert_str_eq(s.data.dir, "");
    ck_assert_int_eq(s.data.shape.h, 8);
    expect_ok("name: c\n"
              "data: {dataset: csv, train_csv: tr.csv, test_csv: \"te st.csv\", shape: [4, 1, 1]}\n"
              "teacher:\n"
              "  layers: [{type: dense, units: 3}]\n"
              "  train: {epochs: 2, optimizer: {lr: 0.1}}\n",
              &s);
    ck_assert_int_eq(s.data.kind, CFG_DATA_CSV);
    ck_assert_str_eq(s.data.test_csv, "te st.csv");
    ck_assert_int_eq(s.data.shape.c, 4);
}
END_TEST

/* ---- errors: exact position and the key's dotted path ------------------------------ */
typedef struct {
    const char *yaml;
    int line, col;
    const char *needle; /* must appear in the message */
} bad_case;

#define HEAD "name: x\n"
#define LAYERS "teacher:\n  layers: [{type: flatten}, {type: dense, units: 10}]\n"
#define TRAIN "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"

static const bad_case bad[] = {
    /* unknown keys, with a suggestion */
    {HEAD "sed: 1\n" LAYERS TRAIN, 2, 1, "sed: unknown key (did you mean \"seed\"?)"},
    {HEAD "data:\n  shap: [1, 28, 28]\n" LAYERS TRAIN, 3, 3,
     "data.shap: unknown key for dataset fashion-mnist (did you mean \"shape\"?)"},
    {HEAD "data: {dataset: idx, dir: x}\n" LAYERS TRAIN, 2, 22,
     "data.dir: unknown key for dataset idx"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1, beta1: 0.9}}\n", 4, 43,
     "teacher.train.optimizer.beta1: unknown key for optimizer kind sgd"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1}, schedule: {min_lr: 0}}\n", 4, 55,
     "teacher.train.schedule.min_lr: unknown key for schedule kind constant"},
    {HEAD "teacher:\n  layers:\n    - {type: relu, units: 3}\n" TRAIN, 4, 20,
     "teacher.layers[0].units: unknown key for layer type relu"},
    /* wrong types */
    {HEAD LAYERS "  train:\n    epochs: ten\n    optimizer: {lr: 0.1}\n", 5, 13,
     "teacher.train.epochs: expected an integer, got \"ten\""},
    {HEAD LAYERS "  train:\n    epochs: 1.5\n    optimizer: {lr: 0.1}\n", 5, 13,
     "teacher.train.epochs: expected an integer, got \"1.5\""},
    {HEAD LAYERS "  train:\n    epochs: \"10\"\n    optimizer: {lr: 0.1}\n", 5, 13,
     "teacher.train.epochs: expected an integer, got the quoted string"},
    {HEAD LAYERS "  train:\n    epochs:\n    optimizer: {lr: 0.1}\n", 5, 12,
     "teacher.train.epochs: has no value"},
    {HEAD LAYERS "  train:\n    epochs: [1]\n    optimizer: {lr: 0.1}\n", 5, 13,
     "teacher.train.epochs: expected an integer, got a list"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1, nesterov: yes}}\n", 4, 53,
     "teacher.train.optimizer.nesterov: expected true or false, got \"yes\""},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: abc}}\n", 4, 38,
     "teacher.train.optimizer.lr: expected a number"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: .nan}}\n", 4, 38,
     "teacher.train.optimizer.lr: must be a finite number"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: -.inf}}\n", 4, 38, "finite"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 1e999}}\n", 4, 38, "too large"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0x10}}\n", 4, 38, "expected a number"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: 0.1}\n", 4, 33,
     "teacher.train.optimizer: expected a mapping"},
    {HEAD "teacher: [1]\n", 2, 10, "teacher: expected a mapping, got a list"},
    {"name: [a]\n" LAYERS TRAIN, 1, 7, "name: expected a string, got a list"},
    /* out of range */
    {HEAD "teacher:\n  layers:\n    - {type: flatten}\n    - {type: dense, units: 0}\n" TRAIN, 5,
     28, "teacher.layers[1].units: must be >= 1"},
    {HEAD LAYERS "  train: {epochs: 0, optimizer: {lr: 0.1}}\n", 4, 19,
     "teacher.train.epochs: must be >= 1"},
    {HEAD LAYERS "  train: {epochs: 10001, optimizer: {lr: 0.1}}\n", 4, 19,
     "teacher.train.epochs: must be <= 10000"},
    {HEAD LAYERS "  train: {epochs: 99999999999999999999, optimizer: {lr: 0.1}}\n", 4, 19,
     "teacher.train.epochs: must be"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0}}\n", 4, 38,
     "teacher.train.optimizer.lr: must be > 0"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1, momentum: 1}}\n", 4, 53,
     "teacher.train.optimizer.momentum: must be < 1"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1, momentum: 0.9999999999}}\n", 4, 53,
     "momentum: must be < 1"},
    {HEAD "data: {val_fraction: 0.95}\n" LAYERS TRAIN, 2, 22, "data.val_fraction: must be <= 0.9"},
    {HEAD "seed: -1\n" LAYERS TRAIN, 2, 7, "seed: must be >= 0"},
    {HEAD "threads: 257\n" LAYERS TRAIN, 2, 10, "threads: must be <= 256"},
    {HEAD "teacher:\n  layers: [{type: flatten}, {type: dropout, rate: 1}, "
          "{type: dense, units: 10}]\n" TRAIN,
     3, 51, "teacher.layers[1].rate: must be < 1"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1},\n"
                 "          schedule: {kind: step, step_epochs: 2, gamma: 0}}\n",
     5, 57, "teacher.train.schedule.gamma: must be > 0"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1},\n"
                 "          schedule: {kind: cosine, min_lr: 0.5}}\n",
     5, 44, "teacher.train.schedule.min_lr: 0.5 is above the optimizer's lr"},
    {HEAD "data: {shape: [3, 32, 32]}\n" LAYERS TRAIN, 2, 15, "data.shape: fashion-mnist"},
    {HEAD "data: {shape: [1, 28]}\n" LAYERS TRAIN, 2, 15, "data.shape: expected a list of three"},
    {HEAD "data: {shape: [1, 0, 784]}\n" LAYERS TRAIN, 2, 19, "data.shape[1]: must be >= 1"},
    {HEAD "data: {dataset: cifar}\n" LAYERS TRAIN, 2, 17,
     "data.dataset: unknown value \"cifar\" (one of: fashion-mnist, idx, csv)"},
    {HEAD "data: {dir: \"\"}\n" LAYERS TRAIN, 2, 13, "data.dir: must not be empty"},
    {"name: a b\n" LAYERS TRAIN, 1, 7, "name: \"a b\" may use only"},
    {"name: ..\n" LAYERS TRAIN, 1, 7, "name: \"..\" cannot name a run folder"},
    {"name: null\n" LAYERS TRAIN, 1, 7, "name: has no value"},
    /* missing keys: at the enclosing mapping */
    {"seed: 1\n" LAYERS TRAIN, 1, 1, "name: required key is missing"},
    {HEAD "seed: 2\n", 1, 1, "teacher: required key is missing"},
    {HEAD LAYERS "  train:\n    batch_size: 8\n    optimizer: {lr: 0.1}\n", 5, 5,
     "teacher.train.epochs: required key is missing"},
    {HEAD LAYERS "  train: {epochs: 1}\n", 4, 10, "teacher.train.optimizer: required key"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {kind: sgd}}\n", 4, 33,
     "teacher.train.optimizer.lr: required key is missing"},
    {HEAD "teacher:\n" TRAIN, 3, 3, "teacher.layers: required key is missing"},
    {HEAD LAYERS, 3, 3, "teacher.train: required key is missing"},
    {HEAD "data: {dataset: idx, shape: [1, 2, 2]}\n" LAYERS TRAIN, 2, 7,
     "data.train_images: required key is missing"},
    {HEAD "data: {dataset: csv, train_csv: a, test_csv: b}\n" LAYERS TRAIN, 2, 7,
     "data.shape: required key is missing"},
    {HEAD "teacher:\n  layers: [{units: 3}]\n" TRAIN, 3, 12,
     "teacher.layers[0].type: required key is missing"},
    {HEAD "teacher:\n  layers: [{type: conv2d, kernel: 3}]\n" TRAIN, 3, 12,
     "teacher.layers[0].filters: required key is missing"},
    {HEAD "teacher:\n  layers: [{type: maxpool2d}]\n" TRAIN, 3, 12,
     "teacher.layers[0].kernel: required key is missing"},
    {HEAD LAYERS "  train: {epochs: 1, optimizer: {lr: 0.1}, schedule: {kind: step}}\n", 4, 54,
     "teacher.train.schedule.step_epochs: required key is missing"},
    /* duplicates */
    {HEAD "seed: 1\nseed: 2\n" LAYERS TRAIN, 3, 1, "seed: duplicate key (first at line 2)"},
    {HEAD "teacher:\n  layers:\n    - {type: flatten, name: a}\n"
          "    - {type: dense, units: 10, name: a}\n" TRAIN,
     5, 38, "teacher.layers[1].name: \"a\" is already the name of teacher.layers[0]"},
    /* layer list */
    {HEAD "teacher:\n  layers: [{type: dnse, units: 10}]\n" TRAIN, 3, 19,
     "teacher.layers[0].type: unknown value \"dnse\" (did you mean \"dense\"?"},
    {HEAD "teacher:\n  layers:\n    - relu\n" TRAIN, 4, 7, "teacher.layers[0]: expected a mapping"},
    {HEAD "teacher:\n  layers: []\n" TRAIN, 3, 11, "teacher.layers: must have 1 to 64 layers"},
    {HEAD "teacher:\n  layers: {type: relu}\n" TRAIN, 3, 11,
     "teacher.layers: expected a list of layers"},
    {HEAD "teacher:\n  layers: [{type: flatten, name: \"a b\"}, {type: dense, units: 10}]\n" TRAIN,
     3, 34, "teacher.layers[0].name: \"a b\" may use only"},
    /* shapes that do not chain, re-reported from nn at the layer */
    {HEAD "teacher:\n  layers:\n    - {type: flatten}\n    - {type: dense, units: 12}\n" TRAIN, 5,
     7, "teacher.layers[1]: the model ends with 12 outputs but fashion-mnist has 10"},
    {HEAD
     "teacher:\n  layers:\n    - {type: flatten}\n    - {type: dense, units: 9, name: dense2}\n"
     "    - {type: relu}\n    - {type: dense, units: 10}\n" TRAIN,
     7, 7, "teacher.layers[3]: name \"dense2\" is used twice"},
    {HEAD "teacher:\n  layers:\n    - {type: maxpool2d, kernel: 28}\n"
          "    - {type: conv2d, filters: 10, kernel: 3}\n" TRAIN,
     5, 7, "teacher.layers[1]"},
    {HEAD "teacher:\n  layers:\n    - {type: flatten}\n    - {type: dense, units: 65536}\n"
          "    - {type: dense, units: 65536}\n    - {type: dense, units: 10}\n" TRAIN,
     6, 7, "teacher.layers[2]: the model would have more than"},
    /* the document itself */
    {"", 1, 1, "empty document"},
    {"# only a comment\n", 1, 1, "empty document"},
    {"- a\n- b\n", 1, 1, "the document must be a mapping"},
    {"just text\n", 1, 1, "the document must be a mapping"},
    {HEAD "---\nname: y\n", 2, 1, "more than one YAML document"},
    {HEAD "teacher:\n  layers: [1, 2\n", 4, 1, "YAML syntax error"},
    {HEAD "seed: 1\n  bad: 2\n", 3, 6, "YAML syntax error: mapping values are not allowed"},
    {HEAD "\tseed: 1\n", 2, 1, "YAML syntax error"},
    {HEAD "seed: &s 1\n", 2, 7, "anchors and aliases are not supported"},
    {HEAD "seed: *s\n", 2, 7, "aliases are not supported"},
    {HEAD "seed: !!int 3\n", 2, 7, "tag \"tag:yaml.org,2002:int\" is not supported"},
    {HEAD "? [a]\n: b\n", 2, 3, "a mapping key must be a plain scalar"},
};

START_TEST(test_errors)
{
    const bad_case *b = &bad[_i];
    exp_spec s;
    kd_err e;
    int rc = load(b->yaml, &s, &e);
    ck_assert_msg(rc == KD_ECONFIG, "case %d: rc %d (%s)", _i, rc, e.msg);
    ck_assert_str_eq(e.file, "t.yaml");
    ck_assert_msg(e.line == b->line && e.col == b->col && strstr(e.msg, b->needle),
                  "case %d: got %d:%d \"%s\"; want %d:%d \"%s\"", _i, e.line, e.col, e.msg, b->line,
                  b->col, b->needle);
    ck_assert_str_eq(s.name, ""); /* the spec is cleared on failure */
}
END_TEST

START_TEST(test_null_err)
{
    exp_spec s;
    ck_assert_int_eq(config_load_string("t", "- x\n", 4, NULL, 0, &s, NULL), KD_ECONFIG);
}
END_TEST

/* ---- overrides ------------------------------------------------------------------- */
START_TEST(test_override_ok)
{
    const char *ovr[] = {"seed=3",
                         "seed=4",
                         "teacher.train.epochs=5",
                         "teacher.layers.1.units=32",
                         "teacher.layers[1].name=hidden",
                         "teacher.layers.2={type: relu}",
                         "data.shape=[1, 28, 28]",
                         "data.dir=/x/y z#not a comment",
                         "teacher.train.optimizer={kind: adamw, lr: 0.01}",
                         "teacher.train.schedule.min_lr=",
                         "teacher.train.schedule.min_lr=0.0001",
                         "name=\"renamed\""};
    exp_spec s;
    kd_err e;
    int rc = load_ovr(FULL, ovr, (int)(sizeof ovr / sizeof *ovr), &s, &e);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_uint_eq(s.seed, 4);
    ck_assert_int_eq(s.teacher.train.epochs, 5);
    ck_assert_int_eq(s.teacher.layers[1].units, 32);
    ck_assert_str_eq(s.teacher.layers[1].name, "hidden");
    ck_assert_int_eq(s.teacher.layers[2].kind, NN_RELU);
    ck_assert_str_eq(s.data.dir, "/x/y z#not a comment");
    ck_assert_int_eq(s.teacher.train.opt.kind, NN_OPT_ADAMW);
    ck_assert_float_eq(s.teacher.train.opt.lr, 0.01f);
    ck_assert_float_eq(s.teacher.train.sched.min_lr, 0.0001f);
    ck_assert_str_eq(s.name, "renamed");
    ck_assert_int_eq(s.teacher.layer_pos[2].line, 0); /* from --set: no file position */
    ck_assert_int_eq(s.teacher.layer_pos[1].line, 14);

    /* an override can supply what the file lacks */
    const char *fix[] = {"teacher.train.epochs=2"};
    rc = load_ovr(HEAD LAYERS "  train: {optimizer: {lr: 0.1}}\n", fix, 1, &s, &e);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s.teacher.train.epochs, 2);

    /* ... including a whole section: report.plots=false without a report: */
    const char *sec[] = {"report.plots=false"};
    rc = load_ovr(FULL, sec, 1, &s, &e);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s.report.plots, 0);
}
END_TEST

typedef struct {
    const char *ovr;
    const char *msg; /* exact message, or a prefix when it ends with '*' */
} bad_override;

static const bad_override bad_ovr[] = {
    {"teacher.train.epochs=ten",
     "--set teacher.train.epochs=ten: teacher.train.epochs: expected an integer, got \"ten\""},
    {"teacher.train.epochs=", "--set teacher.train.epochs=: teacher.train.epochs: has no value*"},
    {"teacher.train.epoch=3",
     "--set teacher.train.epoch=3: teacher.train.epoch: unknown key (did you mean \"epochs\"?)"},
    {"teacher.trian.epochs=3",
     "--set teacher.trian.epochs=3: teacher.trian: unknown key (did you mean \"train\"?)"},
    {"student.train.epochs=3",
     "--set student.train.epochs=3: student: unknown key (did you mean \"students\"?)"},
    {"teacher.layers.x.y=3", "--set teacher.layers.x.y=3: teacher.layers.x: is inside a list*"},
    {"teacher.layers.9.units=3",
     "--set teacher.layers.9.units=3: teacher.layers[9]: index out of range (the list has 5 "
     "items)"},
    {"teacher.layers.x=3", "--set teacher.layers.x=3: teacher.layers.x: is inside a list*"},
    {"teacher.0=3", "--set teacher.0=3: teacher[0]: is inside a mapping*"},
    {"seed.x=3", "--set seed.x=3: seed.x: is inside a scalar value"},
    {"seed", "--set seed: expected KEY=VALUE*"},
    {"=3", "--set =3: expected KEY=VALUE*"},
    {"a..b=3", "--set a..b=3: expected KEY=VALUE*"},
    {"seed.=3", "--set seed.=3: expected KEY=VALUE*"},
    {"teacher.layers[x].units=3", "--set teacher.layers[x].units=3: expected KEY=VALUE*"},
    {"data.shape=[1, 28", "--set data.shape=[1, 28: YAML syntax error*"},
    {"data.shape=[3, 28, 28]", "--set data.shape=[3, 28, 28]: data.shape: fashion-mnist*"},
    {"data.dir=\xff", "--set data.dir=\xff: not valid UTF-8*"},
    {"name=a\tb", "--set name=a?b: not valid UTF-8*"},
    {"seed=&a 3", "--set seed=&a 3: seed: expected a non-negative integer, got \"&a 3\""},
    {"seed=\"&a\" *a", "--set seed=\"&a\" *a: YAML syntax error*"},
    {"seed=[&a 3]", "--set seed=[&a 3]: anchors and aliases are not supported"},
};

START_TEST(test_override_errors)
{
    const bad_override *b = &bad_ovr[_i];
    exp_spec s;
    kd_err e;
    int rc = load_ovr(FULL, &b->ovr, 1, &s, &e);
    ck_assert_msg(rc == KD_ECONFIG, "case %d: rc %d", _i, rc);
    ck_assert_str_eq(e.file, "--set");
    ck_assert_int_eq(e.line, 0);
    ck_assert_int_eq(e.col, 0);
    size_t n = strlen(b->msg);
    if (b->msg[n - 1] == '*')
        ck_assert_msg(strncmp(e.msg, b->msg, n - 1) == 0, "case %d: %s", _i, e.msg);
    else
        ck_assert_str_eq(e.msg, b->msg);
}
END_TEST

/* ---- dump round trip ---------------------------------------------------------------- */
static char *dump_str(const exp_spec *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(config_dump(s, f), KD_OK);
    fclose(f);
    return text;
}

static void assert_same_layer(const nn_layer_spec *a, const nn_layer_spec *b)
{
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->units, b->units);
    ck_assert_int_eq(a->filters, b->filters);
    ck_assert_int_eq(a->kernel, b->kernel);
    ck_assert_int_eq(a->stride, b->stride);
    ck_assert_int_eq(a->pad, b->pad);
    ck_assert(a->rate == b->rate && a->eps == b->eps && a->momentum == b->momentum);
    ck_assert_int_eq(a->init, b->init);
}

/* every field but the positions and the file name */
static void assert_same_spec(const exp_spec *a, const exp_spec *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_uint_eq(a->seed, b->seed);
    ck_assert_int_eq(a->threads, b->threads);
    const cfg_data *x = &a->data, *y = &b->data;
    ck_assert_int_eq(x->kind, y->kind);
    ck_assert_str_eq(x->dir, y->dir);
    ck_assert_str_eq(x->train_images, y->train_images);
    ck_assert_str_eq(x->train_labels, y->train_labels);
    ck_assert_str_eq(x->test_images, y->test_images);
    ck_assert_str_eq(x->test_labels, y->test_labels);
    ck_assert_str_eq(x->train_csv, y->train_csv);
    ck_assert_str_eq(x->test_csv, y->test_csv);
    ck_assert(x->shape.c == y->shape.c && x->shape.h == y->shape.h && x->shape.w == y->shape.w);
    ck_assert(x->val_fraction == y->val_fraction);
    ck_assert_int_eq(x->train_subset, y->train_subset);
    ck_assert_int_eq(x->test_subset, y->test_subset);
    ck_assert_int_eq(a->teacher.nlayers, b->teacher.nlayers);
    for (int i = 0; i < a->teacher.nlayers; i++)
        assert_same_layer(&a->teacher.layers[i], &b->teacher.layers[i]);
    const cfg_train *t = &a->teacher.train, *u = &b->teacher.train;
    ck_assert_int_eq(t->epochs, u->epochs);
    ck_assert_int_eq(t->batch_size, u->batch_size);
    ck_assert_int_eq(t->opt.kind, u->opt.kind);
    ck_assert(t->opt.lr == u->opt.lr && t->opt.momentum == u->opt.momentum &&
              t->opt.weight_decay == u->opt.weight_decay && t->opt.beta1 == u->opt.beta1 &&
              t->opt.beta2 == u->opt.beta2 && t->opt.eps == u->opt.eps);
    ck_assert_int_eq(t->opt.nesterov, u->opt.nesterov);
    ck_assert_int_eq(t->sched.kind, u->sched.kind);
    ck_assert(t->sched.warmup_epochs == u->sched.warmup_epochs &&
              t->sched.gamma == u->sched.gamma && t->sched.min_lr == u->sched.min_lr);
    ck_assert_int_eq(t->sched.step_epochs, u->sched.step_epochs);
}

static const char *const round_trip[] = {
    FULL,
    MIN,
    "name: \"null\"\nseed: 18446744073709551615\nthreads: 256\n"
    "data: {dataset: idx, train_images: \"/a \\\"q\\\" \\\\ \\t é 日本 \\x01\", train_labels: b,\n"
    "       test_images: c, test_labels: d, shape: [3, 4, 5], val_fraction: 0}\n"
    "teacher:\n"
    "  layers:\n"
    "    - {type: conv2d, filters: 3, kernel: 3, pad: 1, name: c.1-x_}\n"
    "    - {type: batchnorm, eps: 0.00123, momentum: 0.3333333}\n"
    "    - {type: maxpool2d, kernel: 2, stride: 1}\n"
    "    - {type: dropout, rate: 0.1}\n"
    "    - {type: dense, units: 7, init: xavier}\n"
    "  train:\n"
    "    epochs: 10000\n"
    "    optimizer: {kind: adamw, lr: 3e-4, beta1: 0.8, beta2: 0.99, eps: 1e-7, "
    "weight_decay: 0.01}\n"
    "    schedule: {kind: step, warmup_epochs: 0.25, step_epochs: 3, gamma: 0.5}\n",
    "name: c\ndata: {dataset: csv, train_csv: a.csv, test_csv: b.csv, shape: [10, 1, 1],\n"
    "       train_subset: 5, test_subset: 6}\n"
    "teacher:\n  layers: [{type: dense, units: 3}]\n"
    "  train: {epochs: 2, optimizer: {lr: 10, momentum: 0}}\n",
};

START_TEST(test_dump_round_trip)
{
    exp_spec a, b;
    kd_err e;
    expect_ok(round_trip[_i], &a);
    char *text = dump_str(&a);
    int rc = config_load_string("dump.yaml", text, strlen(text), NULL, 0, &b, &e);
    ck_assert_msg(rc == KD_OK, "reload: %d:%d %s\n%s", e.line, e.col, e.msg, text);
    assert_same_spec(&a, &b);
    char *again = dump_str(&b);
    ck_assert_str_eq(text, again);
    free(text);
    free(again);
}
END_TEST

/* ---- files ---------------------------------------------------------------------------- */
START_TEST(test_load_file)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/exp.yaml", dir);
    kdt_write(path, FULL, strlen(FULL));
    exp_spec s;
    kd_err e = {0};
    const char *ovr[] = {"threads=3"};
    ck_assert_int_eq(config_load(path, ovr, 1, &s, &e), KD_OK);
    ck_assert_str_eq(s.file, path);
    ck_assert_int_eq(s.threads, 3);
    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    ck_assert_int_eq(config_load(path, NULL, 0, &s, &e), KD_EIO);
    ck_assert_int_eq(config_load(dir, NULL, 0, &s, &e), KD_EIO); /* a folder */
}
END_TEST

/* Every shipped experiment loads (run from the repository root, as make does). */
START_TEST(test_experiments)
{
    DIR *d = opendir("experiments");
    if (!d)
        KDT_SKIP("experiments/ not found: not run from the source tree");
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".yaml") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "experiments/%s", de->d_name);
        exp_spec s;
        kd_err e = {0};
        int rc = config_load(path, NULL, 0, &s, &e);
        char buf[1200];
        ck_assert_msg(rc == KD_OK, "%s", kd_err_str(&e, buf, sizeof buf));
        n++;
    }
    closedir(d);
    (void)n;
}
END_TEST

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_full);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_conv_defaults);
    tcase_add_test(tc, test_idx_csv);
    tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof bad / sizeof *bad));
    tcase_add_test(tc, test_null_err);
    tcase_add_test(tc, test_override_ok);
    tcase_add_loop_test(tc, test_override_errors, 0, (int)(sizeof bad_ovr / sizeof *bad_ovr));
    tcase_add_loop_test(tc, test_dump_round_trip, 0, (int)(sizeof round_trip / sizeof *round_trip));
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_experiments);
    suite_add_tcase(s, tc);
    return s;
}
