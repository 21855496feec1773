/* config, students and saved teachers: defaults, every distillation mistake
 * at its line and column naming the key, and the dump round trip. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../kdtest.h"

static int load(const char *yaml, exp_spec *s, kd_err *e)
{
    memset(e, 0, sizeof *e);
    return config_load_string("s.yaml", yaml, strlen(yaml), NULL, 0, s, e);
}

#define HEAD "name: x\nseed: 5\n"
#define TEACHER                                                                              \
    "teacher:\n"                                                                             \
    "  layers:\n"                                                                            \
    "    - {type: conv2d, filters: 4, kernel: 3, pad: 1}\n"                                  \
    "    - {type: relu}\n"                                                                   \
    "    - {type: maxpool2d, kernel: 2}\n"                                                   \
    "    - {type: flatten}\n"                                                                \
    "    - {type: dense, units: 32}\n"                                                       \
    "    - {type: relu}\n"                                                                   \
    "    - {type: dropout, rate: 0.2}\n"                                                     \
    "    - {type: dense, units: 10}\n"                                                       \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"
/* lines 1-2 HEAD, 3-13 TEACHER, students start at line 14 */
#define STUDENT_HEAD                                                                         \
    "students:\n"                                                                            \
    "  - name: s1\n"                                                                         \
    "    layers: [{type: flatten}, {type: dense, units: 16}, {type: relu},\n"                \
    "             {type: dense, units: 10}]\n"                                               \
    "    train: {epochs: 2, optimizer: {lr: 0.1}}\n"

START_TEST(student_defaults)
{
    exp_spec s;
    kd_err e;
    int rc = load(HEAD TEACHER STUDENT_HEAD, &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    ck_assert_int_eq(s.nstudents, 1);
    ck_assert_str_eq(s.students[0].name, "s1");
    ck_assert_int_eq(s.students[0].nseeds, 1);
    ck_assert_uint_eq(s.students[0].seeds[0], 5); /* the experiment's seed */
    ck_assert_float_eq(s.students[0].modes[0].temperature, 4.0f);
    ck_assert_float_eq(s.students[0].modes[0].alpha, 0.9f);
    ck_assert_str_eq(s.students[0].hint.student, "");
    ck_assert_int_eq(s.students[0].model.nlayers, 4);
    ck_assert_int_eq(s.students[0].model.train.epochs, 2);
    ck_assert_str_eq(s.cache_dir, "runs/cache");
}
END_TEST

START_TEST(student_full)
{
    exp_spec s;
    kd_err e;
    const char *y = HEAD TEACHER STUDENT_HEAD
        "    seeds: [3, 1, 2]\n"
        "    distill: {temperature: 2.5, alpha: 0.25, hint: {student: relu1, teacher: drop1, "
        "weight: 0.5}}\n";
    int rc = load(y, &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    const cfg_student *st = &s.students[0];
    ck_assert_int_eq(st->nseeds, 3);
    ck_assert_uint_eq(st->seeds[0], 3);
    ck_assert_uint_eq(st->seeds[2], 2);
    ck_assert_float_eq(st->modes[0].temperature, 2.5f);
    ck_assert_float_eq(st->modes[0].alpha, 0.25f);
    ck_assert_str_eq(st->hint.student, "relu1");
    ck_assert_str_eq(st->hint.teacher, "drop1");
    ck_assert_float_eq(st->hint.weight, 0.5f);
}
END_TEST

typedef struct {
    const char *tail; /* appended to HEAD TEACHER STUDENT_HEAD (line 19 on) */
    int line, col;
    const char *needle;
} bad_case;

static const bad_case bad[] = {
    {"    distill: {temperature: 0}\n", 19, 28, "students[0].distill.temperature"},
    {"    distill: {temperature: -2}\n", 19, 28, "students[0].distill.temperature"},
    {"    distill: {alpha: 1.5}\n", 19, 22, "students[0].distill.alpha"},
    {"    distill: {alpha: -0.1}\n", 19, 22, "students[0].distill.alpha"},
    {"    distill: {temprature: 3}\n", 19, 15, "did you mean \"temperature\""},
    {"    distill: {hint: {student: nope, teacher: relu1}}\n", 19, 31,
     "students[0].distill.hint.student: no layer is named \"nope\""},
    {"    distill: {hint: {student: relu1, teacher: conv9}}\n", 19, 47,
     "students[0].distill.hint.teacher: no layer is named \"conv9\""},
    /* relu2 of the teacher is followed by an in-place dropout */
    {"    distill: {hint: {student: relu1, teacher: relu2}}\n", 19, 47,
     "changed in place by \"drop1\"; name \"drop1\" instead"},
    {"    distill: {hint: {student: dense2, teacher: relu2}}\n", 19, 31, "gives the logits"},
    {"    distill: {hint: {student: relu1}}\n", 19, 21,
     "students[0].distill.hint.teacher: required key is missing"},
    {"    seeds: [1, 1]\n", 19, 16, "seed 1 is listed twice"},
    {"    seeds: []\n", 19, 12, "students[0].seeds"},
    {"    seeds: [x]\n", 19, 13, "students[0].seeds[0]"},
    {"    teacher: t\n", 19, 14, "students[0].teacher: no student above is named \"t\""},
    {"    teacher: s1\n", 19, 14, "\"s1\" names this student itself"},
    {"    tacher: t\n", 19, 5, "students[0].tacher: unknown key for student (did you mean "
     "\"teacher\"?)"},
    {"  - name: s1\n    layers: [{type: dense, units: 10}]\n    train: {epochs: 1, optimizer: "
     "{lr: 1}}\n", 19, 11, "\"s1\" is already the name of students[0]"},
    {"  - name: s2\n    layers: [{type: dense, units: 7}]\n    train: {epochs: 1, optimizer: "
     "{lr: 1}}\n", 20, 14, "fashion-mnist has 10 classes"},
    {"  - name: s2\n    layers: [{type: dense, units: 10}]\n", 19, 5,
     "students[1].train: required key is missing"},
};

START_TEST(student_errors)
{
    const bad_case *b = &bad[_i];
    char y[4096];
    snprintf(y, sizeof y, "%s%s", HEAD TEACHER STUDENT_HEAD, b->tail);
    exp_spec s;
    kd_err e;
    int rc = load(y, &s, &e);
    ck_assert_msg(rc == KD_ECONFIG, "case %d: rc %d (%s)", _i, rc, e.msg);
    ck_assert_msg(e.line == b->line && e.col == b->col && strstr(e.msg, b->needle),
                  "case %d: got %d:%d \"%s\"; want %d:%d \"%s\"", _i, e.line, e.col, e.msg,
                  b->line, b->col, b->needle);
}
END_TEST

START_TEST(saved_teacher)
{
    exp_spec s;
    kd_err e;
    const char *ok = HEAD "teacher: {model: runs/t/teacher.kdm}\n" STUDENT_HEAD
                          "    distill: {hint: {student: relu1, teacher: anything}}\n";
    int rc = load(ok, &s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    ck_assert_str_eq(s.teacher.model_path, "runs/t/teacher.kdm");
    ck_assert_int_eq(s.teacher.nlayers, 0);
    ck_assert_int_eq(s.teacher.model_pos.line, 3);
    ck_assert_int_eq(s.students[0].hint.teacher_pos.line, 9);
    const char *both = HEAD "teacher:\n  model: a.kdm\n  layers: [{type: dense, units: 10}]\n";
    ck_assert_int_eq(load(both, &s, &e), KD_ECONFIG);
    ck_assert_int_eq(e.line, 5);
    ck_assert_ptr_nonnull(strstr(e.msg, "exclude each other"));
    ck_assert_int_eq(load(HEAD "teacher: {model: \"\"}\n", &s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "teacher.model"));
}
END_TEST

static char *dump_str(const exp_spec *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_int_eq(config_dump(s, f), KD_OK);
    fclose(f);
    return text;
}

START_TEST(dump_round_trip)
{
    const char *cases[] = {
        HEAD TEACHER STUDENT_HEAD "    seeds: [3, 1]\n"
                                  "    distill: {temperature: 2.5, alpha: 0.3, hint: {student: "
                                  "relu1, teacher: drop1, weight: 0.125}}\n"
                                  "  - name: second\n"
                                  "    layers: [{type: flatten}, {type: dense, units: 10}]\n"
                                  "    train: {epochs: 3, optimizer: {kind: adamw, lr: 0.01}}\n",
        HEAD "cache_dir: /tmp/c d\nteacher: {model: \"a b.kdm\"}\n" STUDENT_HEAD,
    };
    for (int i = 0; i < 2; i++) {
        exp_spec a, b;
        kd_err e;
        ck_assert_msg(load(cases[i], &a, &e) == KD_OK, "%s", e.msg);
        char *text = dump_str(&a);
        int rc = config_load_string("dump.yaml", text, strlen(text), NULL, 0, &b, &e);
        ck_assert_msg(rc == KD_OK, "reload: %d:%d %s\n%s", e.line, e.col, e.msg, text);
        ck_assert_int_eq(b.nstudents, a.nstudents);
        ck_assert_str_eq(b.cache_dir, a.cache_dir);
        ck_assert_str_eq(b.teacher.model_path, a.teacher.model_path);
        ck_assert_float_eq(b.students[0].hint.weight, a.students[0].hint.weight);
        ck_assert_uint_eq(b.students[0].seeds[0], a.students[0].seeds[0]);
        char *again = dump_str(&b);
        ck_assert_str_eq(text, again);
        free(text);
        free(again);
    }
}
END_TEST

START_TEST(override_student_key)
{
    exp_spec s;
    kd_err e = {0};
    const char *ovr[] = {"students.0.distill.alpha=0.5", "students[0].seeds=[7, 8]"};
    const char *y = HEAD TEACHER STUDENT_HEAD "    distill: {temperature: 3}\n";
    int rc = config_load_string("s.yaml", y, strlen(y), ovr, 2, &s, &e);
    ck_assert_msg(rc == KD_OK, "%s:%d:%d %s", e.file, e.line, e.col, e.msg);
    ck_assert_float_eq(s.students[0].modes[0].alpha, 0.5f);
    ck_assert_int_eq(s.students[0].nseeds, 2);
    const char *bad_ovr[] = {"students.0.distill.temperature=0"};
    ck_assert_int_eq(config_load_string("s.yaml", y, strlen(y), bad_ovr, 1, &s, &e), KD_ECONFIG);
    ck_assert_str_eq(e.file, "--set");
}
END_TEST

Suite *suite_config_students(void)
{
    Suite *s = suite_create("config_students");
    TCase *t = tcase_create("config_students");
    tcase_add_test(t, student_defaults);
    tcase_add_test(t, student_full);
    tcase_add_loop_test(t, student_errors, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(t, saved_teacher);
    tcase_add_test(t, dump_round_trip);
    tcase_add_test(t, override_student_key);
    suite_add_tcase(s, t);
    return s;
}
