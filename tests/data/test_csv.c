/* CSV reader: headers, CRLF, blank lines, shapes, subsets, and malformed
 * rows whose errors must name the right FILE:LINE (and column). */
#include <check.h>
#include <math.h>
#include <string.h>

#include "../../data/data.h"
#include "../kdtest.h"

static const char *fx_csv(char *path, size_t n, const char *text)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, n, "%s/set.csv", dir);
    kdt_write(path, text, strlen(text));
    return path;
}

static int load(const char *text, nn_shape shape, int max_n, data_set *d, kd_err *e,
                char *path, size_t np)
{
    fx_csv(path, np, text);
    return data_csv_load(path, shape, max_n, d, e);
}

START_TEST(test_header_crlf_blank)
{
    char path[300];
    data_set d;
    kd_err e = {0};
    const char *text = "label,a,b,c\r\n"
                       "0,1,2,3\r\n"
                       "\r\n"
                       "2, 0.5 ,-1e3,4\n"
                       "1,7,8,9.25\n"
                       "\n";
    int rc = load(text, (nn_shape){0, 0, 0}, 0, &d, &e, path, sizeof path);
    ck_assert_msg(rc == KD_OK, "%s:%d: %s", e.file, e.line, e.msg);
    ck_assert_int_eq(d.n, 3);
    ck_assert_int_eq(d.shape.c, 3);
    ck_assert_int_eq(d.shape.h, 1);
    ck_assert_int_eq(d.shape.w, 1);
    ck_assert_int_eq(d.nclasses, 3);
    ck_assert_ptr_null(d.x8);
    const float want[9] = {1, 2, 3, 0.5f, -1000, 4, 7, 8, 9.25f};
    for (int i = 0; i < 9; i++)
        ck_assert_float_eq(d.xf[i], want[i]);
    ck_assert_uint_eq(d.y[0], 0);
    ck_assert_uint_eq(d.y[1], 2);
    ck_assert_uint_eq(d.y[2], 1);
    data_set_free(&d);
}
END_TEST

START_TEST(test_no_header_shape)
{
    char path[300];
    data_set d;
    kd_err e = {0};
    const char *text = "0,1,2,3,4,5,6\n1,6,5,4,3,2,1"; /* no final newline */
    int rc = load(text, (nn_shape){1, 2, 3}, 0, &d, &e, path, sizeof path);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(d.n, 2);
    ck_assert_int_eq(d.shape.c, 1);
    ck_assert_int_eq(d.shape.h, 2);
    ck_assert_int_eq(d.shape.w, 3);
    ck_assert_int_eq(d.nclasses, 2); /* at least 2 */
    ck_assert_float_eq(d.xf[11], 1);
    data_set_free(&d);
}
END_TEST

/* A UTF-8 byte-order mark is not part of the first field: the first row is
 * data (not a header), with or without a header after the mark. */
START_TEST(test_utf8_bom)
{
    char path[300];
    data_set d;
    kd_err e = {0};
    int rc = load("\xEF\xBB\xBF" "3,1,2\n1,3,4\n", (nn_shape){0, 0, 0}, 0, &d, &e, path,
                  sizeof path);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(d.n, 2);
    ck_assert_uint_eq(d.y[0], 3);
    ck_assert_float_eq(d.xf[1], 2);
    data_set_free(&d);
    rc = load("\xEF\xBB\xBF" "label,a\r\n0,1\r\n", (nn_shape){0, 0, 0}, 0, &d, &e, path,
              sizeof path);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(d.n, 1);
    data_set_free(&d);
    /* a bad field on the first line: the column counts from after the mark */
    rc = load("\xEF\xBB\xBF" "1,x\n", (nn_shape){0, 0, 0}, 0, &d, &e, path, sizeof path);
    ck_assert_int_eq(rc, KD_EFORMAT);
    ck_assert_int_eq(e.line, 1);
    ck_assert_int_eq(e.col, 3);
    /* only the mark: no data */
    rc = load("\xEF\xBB\xBF", (nn_shape){0, 0, 0}, 0, &d, &e, path, sizeof path);
    ck_assert_int_eq(rc, KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "no data rows"));
}
END_TEST

START_TEST(test_max_n)
{
    char path[300];
    data_set d;
    kd_err e = {0};
    /* the row after the kept ones is never parsed */
    const char *text = "h,x\n4,1\n5,2\n6,3\n7,oops\n";
    int rc = load(text, (nn_shape){0, 0, 0}, 3, &d, &e, path, sizeof path);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    ck_assert_int_eq(d.n, 3);
    ck_assert_int_eq(d.nclasses, 7);
    ck_assert_float_eq(d.xf[2], 3);
    data_set_free(&d);
}
END_TEST

static const struct {
    const char *text;
    size_t len;     /* 0: strlen(text) */
    nn_shape shape; /* given to the loader; {0,0,0}: from the rows */
    int line, col;
    const char *msg;
} bad[] = {
    {"", 0, {0, 0, 0}, 0, 0, "no data rows"},
    {"label,a,b\n", 0, {0, 0, 0}, 0, 0, "no data rows"},
    {"\n\n\n", 0, {0, 0, 0}, 0, 0, "no data rows"},
    {"label,a,b\n0,1,2\n1,2,3\n2,3\n", 0, {0, 0, 0}, 4, 0, "row has 1 feature, line 2 has 2"},
    {"0,1,2\r\n1,2,3,4\r\n", 0, {0, 0, 0}, 2, 0, "row has 3 features"},
    {"0,1\n1,2\n2,abc\n", 0, {0, 0, 0}, 3, 3, "not a number"},
    {"0,1\n1,2x\n", 0, {0, 0, 0}, 2, 3, "not a number"},
    {"0,1,2\n1,2,\n", 0, {0, 0, 0}, 2, 5, "not a number"},
    {"0,1,,2\n", 0, {0, 0, 0}, 1, 5, "not a number"},
    {"0,1\n1,nan\n", 0, {0, 0, 0}, 2, 3, "NaN or infinite"},
    {"0,1\n1,-inf\n", 0, {0, 0, 0}, 2, 3, "NaN or infinite"},
    {"0,1\n1,1e999\n", 0, {0, 0, 0}, 2, 3, "out of float range"},
    {"0,1\n-1,2\n", 0, {0, 0, 0}, 2, 1, "not a non-negative integer"},
    {"0,1\n1.5,2\n", 0, {0, 0, 0}, 2, 1, "not a non-negative integer"},
    {"0,1\n256,2\n", 0, {0, 0, 0}, 2, 1, "larger than 255"},
    {"0,1\n99999999999,2\n", 0, {0, 0, 0}, 2, 1, "larger than 255"},
    {"label,x\n0,1\nlabel,x\n", 0, {0, 0, 0}, 3, 1, "not a non-negative integer"},
    {"3\n", 0, {0, 0, 0}, 1, 0, "at least one feature"},
    {"0,1\n1,2\0\n", 9, {0, 0, 0}, 2, 0, "NUL byte"},
    {"0,1\n\n\n1\n", 0, {0, 0, 0}, 4, 0, "row has 0 features"},
    {"0,1,2,3\n", 0, {2, 2, 1}, 1, 0, "shape 2x2x1 needs 4"},
};

START_TEST(test_bad)
{
    char path[300];
    data_set d;
    memset(&d, 0xab, sizeof d);
    kd_err e = {0};
    fx_csv(path, sizeof path, bad[_i].text);
    if (bad[_i].len) /* an embedded NUL: strlen would stop at it */
        kdt_write(path, bad[_i].text, bad[_i].len);
    int rc = data_csv_load(path, bad[_i].shape, 0, &d, &e);
    ck_assert_msg(rc == KD_EFORMAT, "case %d: rc %d", _i, rc);
    ck_assert_str_eq(e.file, path);
    ck_assert_msg(e.line == bad[_i].line, "case %d: line %d, want %d (%s)", _i, e.line,
                  bad[_i].line, e.msg);
    ck_assert_msg(e.col == bad[_i].col, "case %d: col %d, want %d (%s)", _i, e.col,
                  bad[_i].col, e.msg);
    ck_assert_msg(strstr(e.msg, bad[_i].msg), "case %d: '%s' lacks '%s'", _i, e.msg,
                  bad[_i].msg);
    ck_assert_int_eq(d.n, 0);
    ck_assert_ptr_null(d.xf);
    ck_assert_ptr_null(d.y);
}
END_TEST

START_TEST(test_missing)
{
    data_set d;
    kd_err e = {0};
    ck_assert_int_eq(data_csv_load("/nonexistent/kd.csv", (nn_shape){0, 0, 0}, 0, &d, &e),
                     KD_EIO);
    ck_assert_str_eq(e.file, "/nonexistent/kd.csv");
}
END_TEST

START_TEST(test_alloc_fail)
{
    char path[300];
    char text[64 * 1024];
    size_t k = 0;
    for (int i = 0; i < 3000; i++) /* enough rows for the arrays to grow */
        k += (size_t)snprintf(text + k, sizeof text - k, "%d,%d.5\n", i % 10, i);
    fx_csv(path, sizeof path, text);
    int rc = KD_ENOMEM;
    for (long n = 0; n < 200 && rc != KD_OK; n++) {
        data_set d;
        kd_err e = {0};
        kd_alloc_fail_after(n);
        rc = data_csv_load(path, (nn_shape){0, 0, 0}, 0, &d, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK) {
            ck_assert_int_eq(d.n, 3000);
            ck_assert_float_eq(d.xf[2999], 2999.5f);
            data_set_free(&d);
        } else {
            ck_assert_int_eq(rc, KD_ENOMEM);
            ck_assert_ptr_null(d.xf);
        }
    }
    ck_assert_int_eq(rc, KD_OK);
}
END_TEST

Suite *suite_data_csv(void)
{
    Suite *s = suite_create("data_csv");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_header_crlf_blank);
    tcase_add_test(tc, test_no_header_shape);
    tcase_add_test(tc, test_max_n);
    tcase_add_test(tc, test_utf8_bom);
    tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof bad / sizeof *bad));
    tcase_add_test(tc, test_missing);
    tcase_add_test(tc, test_alloc_fail);
    suite_add_tcase(s, tc);
    return s;
}
