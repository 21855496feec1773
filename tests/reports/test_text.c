/* reports/text.c: the escapers every file-derived string leaves reports
 * through, byte for byte. */
#include <check.h>
#include <string.h>

#include "../../reports/internal.h"

typedef void (*escaper)(kd_buf *b, const char *s);

static void expect(escaper f, const char *in, const char *want)
{
    kd_buf b = {0};
    f(&b, in);
    kd_buf_put(&b, "", 1);
    ck_assert(!b.failed);
    ck_assert_msg(!strcmp((const char *)b.p, want), "\"%s\" -> \"%s\", want \"%s\"", in,
                  (const char *)b.p, want);
    kd_buf_free(&b);
}

START_TEST(text_unsafe_classes)
{
    for (unsigned c = 0; c < 0x20; c++)
        ck_assert(rep_text_unsafe(c));
    for (unsigned c = 0x7F; c <= 0x9F; c++) /* DEL, C1: NEL (0x85), CSI (0x9B) */
        ck_assert(rep_text_unsafe(c));
    ck_assert(rep_text_unsafe(0x2028) && rep_text_unsafe(0x2029) && rep_text_unsafe(0x202E) &&
              rep_text_unsafe(0x2066) && rep_text_unsafe(0xFEFF) && rep_text_unsafe(REP_TEXT_BAD));
    ck_assert(!rep_text_unsafe(' ') && !rep_text_unsafe('~') && !rep_text_unsafe(0xA0) &&
              !rep_text_unsafe(0xE9) && !rep_text_unsafe(0x2019) && !rep_text_unsafe(0x1F600));
}
END_TEST

START_TEST(text_gnuplot)
{
    expect(rep_gp_str, "plain", "'plain'");
    expect(rep_gp_str, "", "''");
    /* no ' inside the literal at all, whatever the name holds */
    expect(rep_gp_str, "a'b", "'a\xE2\x80\x99" "b'");
    expect(rep_gp_str, "''", "'\xE2\x80\x99\xE2\x80\x99'");
    expect(rep_gp_str, "x\nsystem('id')\n", "'x?system(\xE2\x80\x99id\xE2\x80\x99)?'");
    expect(rep_gp_str, "a\rb\x7f" "c\xC2\x85" "d\xE2\x80\xA8" "e\xE2\x80\xA9", "'a?b?c?d?e?'");
    expect(rep_gp_str, "`id` \"$(id)\" \\ @m", "'`id` \"$(id)\" \\ @m'");
    expect(rep_gp_str, "caf\xC3\xA9", "'caf\xC3\xA9'");
    /* invalid UTF-8: an overlong '/', a lone continuation, a cut sequence */
    expect(rep_gp_str, "\xC0\xAF|\x80|\xE2\x80", "'?\?|?|?\?'");
    expect(rep_dat_str, "a \"b\"\n#c", "\"a 'b'?#c\"");
}
END_TEST

START_TEST(text_markdown_html_csv)
{
    expect(rep_md_esc, "a|b", "a\\|b");
    expect(rep_md_esc, "`x` <b>*y*_z_[l](u)~&$\\", "\\`x\\` \\<b\\>\\*y\\*\\_z\\_\\[l\\](u)\\~\\&\\$\\\\");
    expect(rep_md_esc, "l1\nl2\r\x1b[31m", "l1?l2?\?\\[31m");
    expect(rep_md_esc, "mlp-32/int8 (90.5%)", "mlp-32/int8 (90.5%)");
    expect(rep_html_esc, "<a href=\"x\">'&'</a>\n", "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;?");
    expect(rep_csv_str, "plain", "plain");
    expect(rep_csv_str, "a,b", "\"a,b\"");
    expect(rep_csv_str, "say \"hi\"", "\"say \"\"hi\"\"\"");
    expect(rep_csv_str, "a\rb", "\"a\rb\"");
    expect(rep_csv_str, "a,\"b\"\n", "\"a,\"\"b\"\"\n\"");
    expect(rep_text_put, "a\x1b]0;t\x07\xC2\x9B" "b", "a?]0;t??b");
}
END_TEST

START_TEST(text_clean_cuts_between_characters)
{
    char out[8];
    ck_assert_uint_eq(rep_text_clean(out, sizeof out, "abc\xC3\xA9\xC3\xA9\xC3\xA9"), 7);
    ck_assert_str_eq(out, "abc\xC3\xA9\xC3\xA9");
    ck_assert_uint_eq(rep_text_clean(out, sizeof out, "abcdef\xC3\xA9"), 6); /* not half of é */
    ck_assert_str_eq(out, "abcdef");
    ck_assert_uint_eq(rep_text_clean(out, sizeof out, "\n\xC2\x85\xE2\x80\xA8"), 3);
    ck_assert_str_eq(out, "???");
    ck_assert_uint_eq(rep_text_clean(out, 1, "abc"), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

Suite *suite_reports_text(void)
{
    Suite *s = suite_create("reports_text");
    TCase *t = tcase_create("text");
    tcase_add_test(t, text_unsafe_classes);
    tcase_add_test(t, text_gnuplot);
    tcase_add_test(t, text_markdown_html_csv);
    tcase_add_test(t, text_clean_cuts_between_characters);
    suite_add_tcase(s, t);
    return s;
}
