/* config, distillation methods: `distill: {method: ...}` (one mode, row
 * "distilled") and `distill: {modes: [...]}` (rows per mode), each method's
 * defaults, every mistake at its line and column, and the dump round trip. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../kdtest.h"

#define HEAD "name: x\nseed: 5\n"
#define TEACHER                                                                              \
    "teacher:\n"                                                                             \
    "  layers: [{type: flatten}, {type: dense, units: 32}, {type: relu},\n"                 \
    "           {type: dense, units: 10}]\n"                                                 \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"
/* lines 1-2 HEAD, 3-6 TEACHER, students start at line 7; the tail at line 12 */
#define STUDENT_HEAD                                                                         \
    "students:\n"                                                                            \
    "  - name: s1\n"                                                                         \
    "    layers: [{type: flatten}, {type: dense, units: 16}, {type: relu},\n"                \
    "             {type: dense, units: 10}]\n"                                               \
    "    train: {epochs: 2, optimizer: {lr: 0.1}}\n"
#define TAIL_LINE 12

static int load(const char *tail, exp_spec *s, kd_err *e)
{
    char y[4096];
    snprintf(y, sizeof y, "%s%s", HEAD TEACHER STUDENT_HEAD, tail);
    memset(e, 0, sizeof *e);
    return config_load_string("s.yaml", y, strlen(y), NULL, 0, s, e);
}

START_TEST(one_method_defaults)
{
    exp_spec s;
    kd_err e;
    ck_assert_msg(load("    distill: {method: dkd}\n", &s, &e) == KD_OK, "%s", e.msg);
    const cfg_student *st = &s.students[0];
    ck_assert_int_eq(st->nmodes, 1);
    ck_assert_int_eq(st->listed, 0);
    ck_assert_str_eq(st->modes[0].name, "distilled"); /* no list: the row keeps its name */
    ck_assert_int_eq(st->modes[0].method, CFG_METHOD_DKD);
    ck_assert_float_eq(st->modes[0].alpha, 1.0f);
    ck_assert_float_eq(st->modes[0].beta, 1.0f); /* not 8: see config/distill.c */
    ck_assert_float_eq(st->modes[0].temperature, 4.0f);
    ck_assert_int_eq(st->modes[0].warmup, 0);
    ck_assert_msg(load("    distill: {method: dist, gamma: 2}\n", &s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(st->modes[0].method, CFG_METHOD_DIST);
    ck_assert_float_eq(st->modes[0].temperature, 1.0f);
    ck_assert_float_eq(st->modes[0].beta, 1.0f);
    ck_assert_float_eq(st->modes[0].gamma, 2.0f);
    /* no distill key at all: one kd mode, Hinton's defaults, row "distilled" */
    ck_assert_msg(load("", &s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(st->nmodes, 1);
    ck_assert_int_eq(st->modes[0].method, CFG_METHOD_KD);
    ck_assert_float_eq(st->modes[0].alpha, 0.9f);
    ck_assert_str_eq(st->modes[0].name, "distilled");
}
END_TEST

START_TEST(modes_list)
{
    exp_spec s;
    kd_err e;
    int rc = load("    distill:\n"
                  "      modes:\n"
                  "        - kd\n"
                  "        - {method: dkd, beta: 4, warmup: 3}\n"
                  "        - dist\n"
                  "        - {method: kd, standardize: true, temperature: 2}\n"
                  "        - {method: dkd, standardize: true, name: dkd_ls}\n"
                  "      hint: {student: relu1, teacher: relu1}\n",
                  &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    const cfg_student *st = &s.students[0];
    ck_assert_int_eq(st->nmodes, 5);
    ck_assert_int_eq(st->listed, 1);
    const char *names[] = {"kd", "dkd", "dist", "kd-std", "dkd_ls"};
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(st->modes[i].name, names[i]);
    ck_assert_float_eq(st->modes[0].alpha, 0.9f);
    ck_assert_float_eq(st->modes[1].beta, 4.0f);
    ck_assert_int_eq(st->modes[1].warmup, 3);
    ck_assert_float_eq(st->modes[2].gamma, 1.0f);
    ck_assert_int_eq(st->modes[3].standardize, 1);
    ck_assert_float_eq(st->modes[3].temperature, 2.0f);
    ck_assert_int_eq(st->modes[4].method, CFG_METHOD_DKD);
    ck_assert_str_eq(st->hint.student, "relu1");
    ck_assert_int_eq(st->modes[1].pos.line, TAIL_LINE + 3);
}
END_TEST

typedef struct {
    const char *tail; /* from line TAIL_LINE */
    int dline;        /* line of the error within the tail */
    const char *at;   /* the error's column: where this text starts on that line */
    const char *needle;
} bad_case;

static const bad_case bad[] = {
    {"    distill: {method: dkdd}\n", 0, "dkdd",
     "students[0].distill.method: unknown method \"dkdd\" (did you mean \"dkd\""},
    {"    distill: {method: 3}\n", 0, "3", "unknown method"},
    {"    distill: {method: dkd, beta: -1}\n", 0, "-1", "students[0].distill.beta"},
    {"    distill: {method: dist, gamma: -0.5}\n", 0, "-0.5", "students[0].distill.gamma"},
    {"    distill: {method: dist, beta: -2}\n", 0, "-2", "students[0].distill.beta"},
    {"    distill: {method: dkd, warmup: -1}\n", 0, "-1", "students[0].distill.warmup"},
    {"    distill: {method: dkd, alpha: -1}\n", 0, "-1", "students[0].distill.alpha"},
    {"    distill: {beta: 2}\n", 0, "beta", "distill.beta: not a parameter of method kd"},
    {"    distill: {method: dist, standardize: true}\n", 0, "standardize",
     "not a parameter of method dist (it takes method, temperature, beta, gamma; standardize "
     "belongs to dkd)"},
    {"    distill: {method: dkd, gamma: 1}\n", 0, "gamma", "gamma belongs to dist"},
    {"    distill: {method: kd, warmup: 2}\n", 0, "warmup", "not a parameter of method kd"},
    {"    distill: {standardise: true}\n", 0, "standardise", "did you mean \"standardize\""},
    {"    distill: {modes: [kd, dkdd]}\n", 0, "dkdd",
     "students[0].distill.modes[1]: unknown method \"dkdd\" (did you mean \"dkd\""},
    {"    distill:\n      modes:\n        - {method: dist, alpha: 0.5}\n", 2, "alpha",
     "students[0].distill.modes[0].alpha: not a parameter of method dist"},
    {"    distill:\n      modes:\n        - dkd\n        - {method: dkd, warmup: 2}\n", 3, "{",
     "a second mode named \"dkd\" (modes[0]); give one a `name:`"},
    {"    distill: {method: dkd, modes: [kd]}\n", 0, "method",
     "students[0].distill.method: with `modes:`"},
    {"    distill: {modes: []}\n", 0, "[]", "students[0].distill.modes: expected a list"},
    {"    distill: {modes: [kd, dkd, dist, kd, dkd, dist, kd]}\n", 0, "[kd",
     "students[0].distill.modes: expected a list of 1 to 6"},
    {"    distill: {modes: [{method: kd, name: scratch}]}\n", 0, "scratch", "not \"scratch\""},
    {"    distill: {modes: [{metod: kd}]}\n", 0, "metod", "did you mean \"method\""},
    {"    distill: {modes: [{method: kd, beta: 0}]}\n", 0, "beta",
     "modes[0].beta: not a parameter of method kd"},
    {"    distill: {modes: [[kd]]}\n", 0, "[kd]", "expected a method name or a mapping"},
    {"    distill: {modes: [{method: dkd, beta: -8}]}\n", 0, "-8",
     "students[0].distill.modes[0].beta"},
};

START_TEST(distill_errors)
{
    const bad_case *b = &bad[_i];
    exp_spec s;
    kd_err e;
    int rc = load(b->tail, &s, &e);
    const char *line = b->tail;
    for (int i = 0; i < b->dline; i++)
        line = strchr(line, '\n') + 1;
    int col = (int)(strstr(line, b->at) - line) + 1;
    ck_assert_msg(rc == KD_ECONFIG, "case %d: rc %d (%s)", _i, rc, e.msg);
    ck_assert_msg(e.line == TAIL_LINE + b->dline && e.col == col && strstr(e.msg, b->needle),
                  "case %d: got %d:%d \"%s\"; want %d:%d \"%s\"", _i, e.line, e.col, e.msg,
                  TAIL_LINE + b->dline, col, b->needle);
}
END_TEST

/* Teacher assistants: a student names one above it as its teacher. */
#define SECOND(extra)                                                                        \
    "  - name: s2\n" extra "    layers: [{type: flatten}, {type: dense, units: 10}]\n"       \
    "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"

START_TEST(teacher_assistant)
{
    exp_spec s;
    kd_err e;
    ck_assert_msg(load(SECOND("    teacher: s1\n"), &s, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s.students[0].teacher_student, -1);
    ck_assert_int_eq(s.students[1].teacher_student, 0);
    ck_assert_int_eq(s.students[1].teacher_pos.line, TAIL_LINE + 1);
    /* a student defined later: a chain runs in file order, so no cycle */
    int rc = load("    teacher: s2\n" SECOND(""), &s, &e);
    ck_assert_int_eq(rc, KD_ECONFIG);
    ck_assert_msg(e.line == TAIL_LINE && e.col == 14 && strstr(e.msg, "\"s2\" is defined later "
                  "(students[1])"), "%d:%d %s", e.line, e.col, e.msg);
    /* itself */
    rc = load("    teacher: s1\n", &s, &e);
    ck_assert_int_eq(rc, KD_ECONFIG);
    ck_assert_msg(e.line == TAIL_LINE && e.col == 14 && strstr(e.msg, "students[0].teacher: "
                  "\"s1\" names this student itself"), "%d:%d %s", e.line, e.col, e.msg);
    /* a cycle (s1 -> s2 -> s1): its first edge points below, so it is refused there */
    rc = load("    teacher: s2\n" SECOND("    teacher: s1\n"), &s, &e);
    ck_assert_int_eq(rc, KD_ECONFIG);
    ck_assert_msg(e.line == TAIL_LINE && e.col == 14 && strstr(e.msg, "\"s2\" is defined later"),
                  "%d:%d %s", e.line, e.col, e.msg);
    /* a misspelt name: the students above are suggested */
    rc = load(SECOND("    teacher: s11\n"), &s, &e);
    ck_assert_int_eq(rc, KD_ECONFIG);
    ck_assert_msg(e.line == TAIL_LINE + 1 && e.col == 14 && strstr(e.msg, "did you mean \"s1\""),
                  "%d:%d %s", e.line, e.col, e.msg);
    /* hint layers name the experiment's teacher: not with a student teacher */
    rc = load("  - name: s2\n    teacher: s1\n"
              "    layers: [{type: flatten}, {type: dense, units: 8}, {type: relu},\n"
              "             {type: dense, units: 10}]\n"
              "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"
              "    distill: {hint: {student: relu1, teacher: relu1}}\n", &s, &e);
    ck_assert_msg(rc == KD_ECONFIG && e.line == TAIL_LINE + 1 && strstr(e.msg, "distill.hint"),
                  "%d:%d %s", e.line, e.col, e.msg);
}
END_TEST

static char *dump_str(const exp_spec *s)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ck_assert_int_eq(config_dump(s, f), KD_OK);
    fclose(f);
    return buf;
}

START_TEST(dump_round_trip)
{
    const char *tails[] = {
        "    distill: {modes: [kd, {method: dkd, beta: 4, warmup: 3, standardize: true}, dist, "
        "{method: dist, name: d2, gamma: 0.5, temperature: 2}]}\n",
        "    distill: {method: dkd, alpha: 0.5, standardize: true}\n",
        "    distill: {method: dist}\n",
        "    distill: {temperature: 3, alpha: 0.7}\n",
        SECOND("    teacher: s1\n    distill: {modes: [dkd]}\n"),
    };
    for (int i = 0; i < 5; i++) {
        exp_spec a, b;
        kd_err e;
        ck_assert_msg(load(tails[i], &a, &e) == KD_OK, "%s", e.msg);
        char *text = dump_str(&a);
        int rc = config_load_string("dump.yaml", text, strlen(text), NULL, 0, &b, &e);
        ck_assert_msg(rc == KD_OK, "reload: %d:%d %s\n%s", e.line, e.col, e.msg, text);
        const cfg_student *x = &a.students[0], *y = &b.students[0];
        ck_assert_int_eq(x->nmodes, y->nmodes);
        ck_assert_int_eq(x->listed, y->listed);
        ck_assert_int_eq(a.students[a.nstudents - 1].teacher_student,
                         b.students[b.nstudents - 1].teacher_student);
        for (int m = 0; m < x->nmodes; m++) {
            ck_assert_str_eq(x->modes[m].name, y->modes[m].name);
            ck_assert_int_eq(x->modes[m].method, y->modes[m].method);
            ck_assert_float_eq(x->modes[m].temperature, y->modes[m].temperature);
            ck_assert_float_eq(x->modes[m].alpha, y->modes[m].alpha);
            ck_assert_float_eq(x->modes[m].beta, y->modes[m].beta);
            ck_assert_float_eq(x->modes[m].gamma, y->modes[m].gamma);
            ck_assert_int_eq(x->modes[m].warmup, y->modes[m].warmup);
            ck_assert_int_eq(x->modes[m].standardize, y->modes[m].standardize);
        }
        char *again = dump_str(&b);
        ck_assert_str_eq(text, again);
        /* a plain kd student dumps the two keys it always had (the run key of
         * existing runs does not change) */
        if (i == 3)
            ck_assert_msg(strstr(text, "distill: {temperature: 3, alpha: 0.7}\n"), "%s", text);
        free(text);
        free(again);
    }
}
END_TEST

Suite *suite_config_distill(void)
{
    Suite *s = suite_create("config_distill");
    TCase *t = tcase_create("core");
    tcase_add_test(t, one_method_defaults);
    tcase_add_test(t, modes_list);
    tcase_add_loop_test(t, distill_errors, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(t, teacher_assistant);
    tcase_add_test(t, dump_round_trip);
    suite_add_tcase(s, t);
    return s;
}
