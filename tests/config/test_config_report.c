/* config, the `report:` section's ladders: named, ordered lists of result
 * rows; each mistake (unknown row, a row twice, fewer than two rows, a
 * duplicate name) at FILE:LINE:COL with a did-you-mean; dump and reload;
 * check and run refuse the same ladder before anything trains. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "../kdtest.h"

#define BASE                                                                                 \
    "name: x\n"                                                                              \
    "teacher:\n"                                                                             \
    "  layers: [{type: flatten}, {type: dense, units: 32}, {type: relu},\n"                  \
    "           {type: dense, units: 10}]\n"                                                 \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"                                           \
    "students:\n"                                                                            \
    "  - name: st\n"                                                                         \
    "    layers: [{type: flatten}, {type: dense, units: 16}, {type: relu},\n"                \
    "             {type: dense, units: 10}]\n"                                               \
    "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"                                         \
    "compress:\n"                                                                            \
    "  - {name: pruned, source: teacher, passes: [{type: prune, sparsity: [0.5, 0.9]}]}\n"   \
    "  - {name: shared, source: teacher, passes: [{type: prune, sparsity: 0.9},\n"           \
    "                                             {type: cluster, clusters: 4}]}\n"
/* report starts at line 15 */

static int load(const char *yaml, exp_spec *s, kd_err *e)
{
    memset(e, 0, sizeof *e);
    return config_load_string("c.yaml", yaml, strlen(yaml), NULL, 0, s, e);
}

START_TEST(ladders_read_and_dumped)
{
    exp_spec *s = calloc(1, sizeof *s), *t = calloc(1, sizeof *t);
    kd_err e;
    ck_assert_int_eq(load(BASE, s, &e), KD_OK);
    ck_assert_int_eq(s->report.nladders, 0);
    const char *y = BASE "report:\n  plots: false\n  ladders:\n"
                         "    - name: Deep Compression\n"
                         "      rows: [teacher, pruned/s0.9, shared]\n"
                         "    - {name: \"students' ladder\", rows: [st/distilled, st/scratch]}\n";
    int rc = load(y, s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    const cfg_report *r = &s->report;
    ck_assert_int_eq(r->nladders, 2);
    ck_assert_str_eq(r->ladders[0].name, "Deep Compression");
    ck_assert_int_eq(r->ladders[0].nrows, 3);
    ck_assert_str_eq(r->ladders[0].rows[0], "teacher");
    ck_assert_str_eq(r->ladders[0].rows[1], "pruned/s0.9");
    ck_assert_str_eq(r->ladders[0].rows[2], "shared");
    ck_assert_int_eq(r->ladders[0].pos.line, 18);
    ck_assert_int_eq(r->ladders[0].pos.col, 7);
    ck_assert_str_eq(r->ladders[1].name, "students' ladder");
    ck_assert_str_eq(r->ladders[1].rows[0], "st/distilled"); /* any order the config gives */
    ck_assert_int_eq(r->plots, 0);
    /* dump and reload: the same section */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_int_eq(config_dump(s, f), KD_OK);
    fclose(f);
    rc = config_load_string("d.yaml", text, len, NULL, 0, t, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s\n%s", e.line, e.col, e.msg, text);
    for (int i = 0; i < 2; i++)
        t->report.ladders[i].pos = s->report.ladders[i].pos;
    ck_assert_int_eq(memcmp(&t->report, &s->report, sizeof s->report), 0);
    free(text);
    /* --set can give a ladder too */
    const char *ovr[] = {"report.ladders=[{name: L, rows: [shared, teacher]}]"};
    rc = config_load_string("c.yaml", BASE, strlen(BASE), ovr, 1, s, &e);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(s->report.nladders, 1);
    ck_assert_str_eq(s->report.ladders[0].rows[0], "shared");
    free(s);
    free(t);
}
END_TEST

/* Each mistake: its position, the key's dotted path, a did-you-mean. */
START_TEST(ladder_errors)
{
    static const struct {
        const char *yaml, *want;
        int line, col;
    } cases[] = {
        {"report: {ladders: [{name: L, rows: [teacher, pruned/s0.99]}]}\n",
         "report.ladders[0].rows[1]: no row \"pruned/s0.99\" in this run (did you mean "
         "\"pruned/s0.9\"?", 15, 46},
        {"report:\n  ladders:\n    - name: L\n      rows: [teacher, shraed]\n",
         "did you mean \"shared\"", 18, 23},
        {"report: {ladders: [{name: L, rows: [teacher, st/kd]}]}\n",
         "no row \"st/kd\"", 15, 46},
        {"report: {ladders: [{name: L, rows: [teacher, shared, teacher]}]}\n",
         "report.ladders[0].rows[2]: \"teacher\" is already step 1", 15, 54},
        {"report: {ladders: [{name: L, rows: [teacher]}]}\n",
         "report.ladders[0].rows: expected a list of 2 to 16 row names", 15, 36},
        {"report: {ladders: [{name: L, rows: []}]}\n", "2 to 16", 15, 36},
        {"report: {ladders: [{name: L, rows: teacher}]}\n", "2 to 16", 15, 36},
        {"report: {ladders: [{name: L}]}\n", "report.ladders[0].rows: required key", 15, 20},
        {"report: {ladders: [{rows: [teacher, shared]}]}\n", "report.ladders[0].name", 15, 20},
        {"report: {ladders: [{name: \"\", rows: [teacher, shared]}]}\n", "must not be empty",
         15, 27},
        {"report: {ladders: [{name: L, rows: [teacher, shared]},\n"
         "                   {name: L, rows: [shared, teacher]}]}\n",
         "report.ladders[1].name: \"L\" is already the name of report.ladders[0]", 16, 27},
        {"report: {ladders: [{name: L, row: [teacher, shared]}]}\n",
         "did you mean \"rows\"", 15, 30},
        {"report: {ladder: []}\n", "did you mean \"ladders\"", 15, 10},
        {"report: {ladders: {name: L}}\n", "report.ladders: expected a list", 15, 19},
        {"report: {ladders: [teacher]}\n", "report.ladders[0]: expected a mapping", 15, 20},
        {"report: {ladders: [{name: L, rows: [teacher, [shared]]}]}\n",
         "report.ladders[0].rows[1]: expected a row name", 15, 46},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char y[4096];
        snprintf(y, sizeof y, "%s%s", BASE, cases[i].yaml);
        exp_spec *s = calloc(1, sizeof *s);
        kd_err e;
        ck_assert_int_eq(load(y, s, &e), KD_ECONFIG);
        ck_assert_msg(strstr(e.msg, cases[i].want) && e.line == cases[i].line &&
                          e.col == cases[i].col,
                      "case %zu: %d:%d %s", i, e.line, e.col, e.msg);
        ck_assert_str_eq(e.file, "c.yaml");
        free(s);
    }
}
END_TEST

/* kdbench check and kdbench run refuse the same ladder, at the same place,
 * before any data is read: exit 2, no run folder. */
START_TEST(ladder_check_and_run_refuse)
{
    char dir[256], path[512], out[4096];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/x.yaml", dir);
    char y[4096];
    int n = snprintf(y, sizeof y, "%sreport:\n  ladders:\n    - name: L\n"
                     "      rows: [teacher, pruned/s0.9, sharde]\n", BASE);
    kdt_write(path, y, (size_t)n);
    const char *want = "x.yaml:18:36: report.ladders[0].rows[2]: no row \"sharde\"";
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check %s", path), 2);
    ck_assert_msg(strstr(out, want) && strstr(out, "did you mean \"shared\""), "%s", out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run %s --out %s/run --quiet", path, dir), 2);
    ck_assert_msg(strstr(out, want), "%s", out);
    snprintf(path, sizeof path, "%s/run", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

Suite *suite_config_report(void)
{
    Suite *s = suite_create("config_report");
    TCase *t = tcase_create("ladders");
    tcase_add_test(t, ladders_read_and_dumped);
    tcase_add_test(t, ladder_errors);
    tcase_add_test(t, ladder_check_and_run_refuse);
    suite_add_tcase(s, t);
    return s;
}
