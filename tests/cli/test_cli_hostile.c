/* The hostile run directory (issue 10): `kdbench report` and `kdbench compare`
 * on run directories whose model, variant and layer names hold every ASCII
 * control byte, quotes, backslashes, gnuplot and shell syntax, NEL and
 * U+2028/U+2029.  Nothing read from a file may reach a gnuplot script except
 * as an escaped string: no file appears outside report/, no process is left,
 * no quoted string in a script spans a line.  Also: gnuplot's output lands
 * atomically, an interrupted report leaves no gnuplot behind, compare on an
 * empty results file says so. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../reports/reports.h"
#include "../kdtest.h"

#define NPAY 16
#define PAYLEN 200

static void put(const char *dir, const char *name, const char *text)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kdt_write(path, text, strlen(text));
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The names.  t: the test's folder (outside the run directory), where the
 * touch targets would land; slash-free payloads climb there with cd so the
 * part of a name before '/' (a training-curves group) is hostile too. */
static int payloads(const char *t, const char *tag, char p[NPAY][PAYLEN])
{
    int n = 0;
    char ctl[64];
    int k = 0;
    ctl[k++] = 'C';
    for (int c = 1; c < 32; c++)
        ctl[k++] = (char)c;
    ctl[k++] = 127;
    ctl[k] = 0;
    snprintf(p[n++], PAYLEN, "%s", ctl);
    snprintf(p[n++], PAYLEN, "%s\nsystem 'touch %s/PWNED_a'\n", tag, t);
    snprintf(p[n++], PAYLEN, "%s\n!touch %s/PWNED_b\n#", tag, t);
    snprintf(p[n++], PAYLEN, "%s'\nsystem(\"touch %s/PWNED_c\")\n'", tag, t);
    snprintf(p[n++], PAYLEN, "%s`touch %s/PWNED_d`", tag, t);
    snprintf(p[n++], PAYLEN, "%s$(touch %s/PWNED_e)", tag, t);
    snprintf(p[n++], PAYLEN, "%s\"; system \"touch %s/PWNED_f\"; \"", tag, t);
    snprintf(p[n++], PAYLEN, "%s\\\nsystem 'touch %s/PWNED_g'", tag, t);
    snprintf(p[n++], PAYLEN, "%s\r!touch %s/PWNED_h\r", tag, t);
    snprintf(p[n++], PAYLEN, "%s\xc2\x85system 'touch %s/PWNED_i'\xe2\x80\xa8!touch %s/PWNED_j"
             "\xe2\x80\xa9x", tag, t, t);
    snprintf(p[n++], PAYLEN, "%s\nsystem 'cd ..;cd ..;cd ..;touch PWNED_k'\n", tag);
    snprintf(p[n++], PAYLEN, "%s\n!cd ..;cd ..;cd ..;touch PWNED_l\n", tag);
    snprintf(p[n++], PAYLEN, "%s\nsystem(\"touch /tmp/kdbench-pwned-%ld\")\n", tag,
             (long)getpid());
    snprintf(p[n++], PAYLEN, "%s | `x` <b>&amp; *y* _z_ [l](u) \\ ; %%s %%n {/Symbol a} @m", tag);
    snprintf(p[n++], PAYLEN, "%s''\\'\"\"\\\";", tag);
    snprintf(p[n++], PAYLEN, "%s\x1b[31mred\x1b]0;title\x07", tag);
    return n;
}

/* a CSV field: quoted, quotes doubled, newlines as \r (lines split on \n) */
static void csv_field(char *buf, size_t n, const char *s)
{
    size_t o = 0;
    buf[o++] = '"';
    for (; *s && o + 3 < n; s++) {
        if (*s == '"')
            buf[o++] = '"';
        buf[o++] = *s == '\n' ? '\r' : *s;
    }
    buf[o++] = '"';
    buf[o] = 0;
}

static void write_run(const char *dir, const char *t)
{
    char p[NPAY][PAYLEN];
    int n = payloads(t, "r", p);
    rep_row rows[NPAY + 1];
    static const char *const roles[3] = {"teacher", "student", "compressed"};
    for (int i = 0; i < n; i++) {
        rep_row_init(&rows[i], p[i], roles[i % 3]);
        rows[i].params = 1000 + i;
        rows[i].nonzero_params = 900;
        rows[i].size_bytes = 4000 * (i + 1);
        rows[i].accuracy = 0.5 + 0.02 * i;
        rows[i].latency_us_b1_p50 = 10 + i;
        rows[i].latency_us_b1_p99 = 20 + i;
        rows[i].throughput_b256 = 1000;
        rep_row_str(&rows[i], "source", p[(i + 1) % n]);
        rep_row_str(&rows[i], "k|`<b>\n!x", p[(i + 2) % n]); /* a hostile column name */
    }
    /* ladders with hostile names through hostile rows (issue 17): a name
     * reaches the plot's key, the Ladders table and its heading */
    static const char *const lnames[3] = {
        "L\x01\x1b[31m\x7f'\nsystem 'cd ..;cd ..;cd ..;touch PWNED_m'\n",
        "| `x` <b>&amp; *y* _z_ \\ {/Symbol a} @m $(touch PWNED_n)",
        "\xc2\x85!cd ..;cd ..;cd ..;touch PWNED_o\xe2\x80\xa8\"; \";'"};
    rep_ladder lad[3];
    memset(lad, 0, sizeof lad);
    for (int l = 0; l < 3; l++) {
        snprintf(lad[l].name, sizeof lad[l].name, "%s", lnames[l]);
        ck_assert_uint_eq(strlen(lad[l].name), strlen(lnames[l])); /* not cut */
        for (int k = 0; k < 4; k++) /* rows named by every payload, out of size order */
            snprintf(lad[l].step[k], sizeof lad[l].step[k], "%s", rows[(l + 5 * k) % n].name);
        lad[l].nsteps = 4;
    }
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results_ladders(dir, p[1], rows, n, lad, 3, &e), 0);
    rep_env env;
    memset(&env, 0, sizeof env);
    snprintf(env.cpu, sizeof env.cpu, "%.100s", p[1]);
    snprintf(env.blas, sizeof env.blas, "%.100s", p[2]);
    snprintf(env.os, sizeof env.os, "%.100s", p[0]);
    ck_assert_int_eq(rep_write_env(dir, &env, &e), 0);
    /* metrics.jsonl: each name alone, and as a scratch/distilled pair */
    kd_buf m = {0};
    for (int i = 0; i < n; i++)
        for (int v = 0; v < 3; v++)
            for (int ep = 1; ep <= 3; ep++) {
                char model[PAYLEN + 16];
                snprintf(model, sizeof model, "%.*s%s", PAYLEN, p[i],
                         v == 0 ? "" : v == 1 ? "/scratch" : "/distilled");
                rep_bprintf(&m, "{\"model\": ");
                rep_json_str(&m, model);
                rep_bprintf(&m, ", \"epoch\": %d, \"loss\": %.2f, \"train_acc\": 0.%d, "
                                "\"val_loss\": 0.5, \"val_acc\": 0.%d}\n", ep, 1.0 / ep, 5 + ep,
                            4 + ep);
            }
    kd_buf_put(&m, "", 1);
    ck_assert(!m.failed);
    put(dir, "metrics.jsonl", (const char *)m.p);
    kd_buf_free(&m);
    /* the CSVs: every name as a variant and as a layer */
    kd_buf sp = {0}, se = {0}, wh = {0};
    rep_bprintf(&sp, "variant,layer,params,nonzero\n");
    rep_bprintf(&se, "layer,sparsity,accuracy\n");
    rep_bprintf(&wh, "variant,layer,bin_lo,bin_hi,count\n");
    for (int i = 0; i < n; i++) {
        char a[2 * PAYLEN], b[2 * PAYLEN];
        csv_field(a, sizeof a, p[i]);
        csv_field(b, sizeof b, p[(i + 3) % n]);
        rep_bprintf(&sp, "%s,%s,100,%d\n", a, b, 10 + i);
        rep_bprintf(&se, "%s,0,0.9\n%s,0.5,0.8\n", a, a);
        rep_bprintf(&wh, "%s,%s,-0.1,0,5\n%s,%s,0,0.1,7\n", a, b, a, b);
    }
    kd_buf_put(&sp, "", 1);
    kd_buf_put(&se, "", 1);
    kd_buf_put(&wh, "", 1);
    ck_assert(!sp.failed && !se.failed && !wh.failed);
    put(dir, "sparsity.csv", (const char *)sp.p);
    put(dir, "sensitivity.csv", (const char *)se.p);
    put(dir, "weights_hist.csv", (const char *)wh.p);
    kd_buf_free(&sp);
    kd_buf_free(&se);
    kd_buf_free(&wh);
}

/* ---- the directory tree before and after ------------------------------------ */

static kd_buf *tree_acc; /* nftw has no user pointer */

static int tree_add(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    kd_buf_put(tree_acc, path, strlen(path) + 1);
    return 0;
}

static void tree(const char *root, kd_buf *out)
{
    memset(out, 0, sizeof *out);
    tree_acc = out;
    ck_assert_int_eq(nftw(root, tree_add, 16, FTW_PHYS), 0);
    ck_assert(!out->failed);
}

static int in_tree(const kd_buf *b, const char *path)
{
    for (size_t o = 0; o < b->len; o += strlen((const char *)b->p + o) + 1)
        if (!strcmp((const char *)b->p + o, path))
            return 1;
    return 0;
}

/* every path in after that is not in before lies under allowed/ */
static void only_new_under(const kd_buf *before, const kd_buf *after, const char *allowed)
{
    size_t al = strlen(allowed);
    for (size_t o = 0; o < after->len; o += strlen((const char *)after->p + o) + 1) {
        const char *p = (const char *)after->p + o;
        if (!in_tree(before, p))
            ck_assert_msg(!strncmp(p, allowed, al) && (p[al] == '/' || !p[al]),
                          "file created outside %s: %s", allowed, p);
    }
}

static char *slurp(const char *path)
{
    uint8_t *p;
    size_t n;
    kd_err e;
    ck_assert_msg(kd_read_file(path, 64 << 20, &p, &n, &e) == 0, "cannot read %s", path);
    char *s = kd_malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, p, n);
    s[n] = 0;
    kd_free(p);
    return s;
}

/* ---- the scripts ------------------------------------------------------------- */

/* No quoted string spans a line or holds a control byte; outside strings
 * (comments included) no trace of a payload. */
static void check_script(const char *path)
{
    uint8_t *text;
    size_t n;
    kd_err e;
    ck_assert_int_eq(kd_read_file(path, 16 << 20, &text, &n, &e), 0);
    char q = 0;
    size_t line = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = text[i];
        if (q) {
            ck_assert_msg(c >= 0x20 && c != 0x7f, "%s:%zu: control byte 0x%02x in a string",
                          path, line, c);
            ck_assert_msg(!(c == 0xc2 && i + 1 < n && text[i + 1] == 0x85) &&
                              !(c == 0xe2 && i + 2 < n && text[i + 1] == 0x80 &&
                                (text[i + 2] == 0xa8 || text[i + 2] == 0xa9)),
                          "%s:%zu: NEL/U+2028/U+2029 in a string", path, line);
            ck_assert_msg(!(q == '"' && c == '`'), "%s:%zu: backquote in a \"string\"", path,
                          line);
            if (c == (unsigned char)q) {
                if (q == '\'' && i + 1 < n && text[i + 1] == '\'')
                    i++; /* '' inside '...' */
                else
                    q = 0;
            } else if (q == '"' && c == '\\') {
                i++;
            }
            continue;
        }
        if (c == '\n') {
            line++;
        } else if (c == '\'' || c == '"') {
            q = (char)c;
        } else if (c == '#') { /* a comment to the end of the line */
            size_t k = i;
            while (k < n && text[k] != '\n')
                k++;
            /* a plot's file stem may come from a name, as [A-Za-z0-9_-] */
            ck_assert_msg(!memmem(text + i, k - i, "touch ", 6) &&
                              !memchr(text + i, '\'', k - i) && !memchr(text + i, '`', k - i) &&
                              !memchr(text + i, '$', k - i),
                          "%s:%zu: file-derived text in a comment", path, line);
            i = k - 1;
        } else {
            ck_assert_msg(c != 0x0d && c != '`', "%s:%zu: 0x%02x outside a string", path, line,
                          c);
            ck_assert_msg(strncmp((const char *)text + i, "touch", 5) &&
                              strncmp((const char *)text + i, "PWNED", 5),
                          "%s:%zu: text from a name outside a string", path, line);
        }
    }
    ck_assert_msg(!q, "%s: unterminated string", path);
    kd_free(text);
}

static int check_scripts(const char *plots)
{
    DIR *d = opendir(plots);
    ck_assert_ptr_nonnull(d);
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", plots, de->d_name);
        if (l > 3 && !strcmp(de->d_name + l - 3, ".gp")) {
            check_script(path);
            count++;
        }
        /* every name in the .dat files on one line: no line breaks inside "..." */
        if (l > 4 && !strcmp(de->d_name + l - 4, ".dat")) {
            char *s = slurp(path);
            int inq = 0;
            for (char *c = s; *c; c++) {
                if (!inq && *c == '#' && (c == s || c[-1] == '\n')) { /* a comment line */
                    while (c[1] && c[1] != '\n' && c[1] != '\r')
                        c++;
                    continue;
                }
                if (*c == '"')
                    inq = !inq;
                ck_assert_msg(!(inq && (*c == '\n' || *c == '\r')), "%s: a line break in a label",
                              path);
                if (*c == '\n')
                    inq = 0;
            }
            kd_free(s);
        }
    }
    closedir(d);
    return count;
}

/* report.md: no control byte but the line ends, no raw HTML or code span,
 * and every row of a table has the columns of its header */
static void check_md(const char *path)
{
    char *s = slurp(path);
    int header_pipes = -1;
    for (char *line = s; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        int pipes = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            ck_assert_msg(c >= 0x20 && c != 0x7f, "%s: control byte 0x%02x", path, c);
            ck_assert_msg(!(c == 0xc2 && (unsigned char)line[i + 1] == 0x85) &&
                              !(c == 0xe2 && (unsigned char)line[i + 1] == 0x80 &&
                                ((unsigned char)line[i + 2] == 0xa8 ||
                                 (unsigned char)line[i + 2] == 0xa9)),
                          "%s: NEL/U+2028/U+2029", path);
            if (c == '\\') {
                i++;
                continue;
            }
            ck_assert_msg(c != '<' && c != '`', "%s: raw %c in \"%.*s\"", path, c, len > 300 ? 300 : (int)len,
                          line);
            pipes += c == '|';
        }
        if (len && line[0] == '|') {
            if (header_pipes < 0)
                header_pipes = pipes;
            ck_assert_msg(pipes == header_pipes, "%s: a table row with %d cells, not %d: %.*s",
                          path, pipes - 1, header_pipes - 1, len > 300 ? 300 : (int)len, line);
        } else {
            header_pipes = -1;
        }
        line += len + (end != NULL);
    }
    kd_free(s);
}

static int count_in(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* the accuracy-vs-size script draws want ladder lines (titled: a key entry each) */
static void ladders_drawn(const char *plots, int want)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/acc_size.gp", plots);
    char *gp = slurp(path);
    ck_assert_int_eq(count_in(gp, "with linespoints lw 2.5 pt 6 ps 2.2 lc rgb '#"), want);
    kd_free(gp);
}

/* no process still works in the test's folder */
static void no_process_in(const char *t)
{
    DIR *d = opendir("/proc");
    ck_assert_ptr_nonnull(d);
    struct dirent *de;
    size_t tl = strlen(t);
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char link[300], cwd[4096];
        snprintf(link, sizeof link, "/proc/%s/cwd", de->d_name);
        ssize_t k = readlink(link, cwd, sizeof cwd - 1);
        if (k <= 0)
            continue;
        cwd[k] = 0;
        ck_assert_msg(strncmp(cwd, t, tl), "process %s still runs in %s", de->d_name, cwd);
    }
    closedir(d);
}

static int have_gnuplot(void)
{
    return system("gnuplot --version >/dev/null 2>&1") == 0;
}

START_TEST(hostile_run_directory)
{
    char t[256], run[400], run2[400], rep[500], plots[800], cmp[600], out[65536];
    kdt_tmpdir(t, sizeof t);
    snprintf(run, sizeof run, "%s/run", t);
    snprintf(run2, sizeof run2, "%s/run2\nx", t); /* a hostile source label too */
    snprintf(rep, sizeof rep, "%s/report", run);
    snprintf(plots, sizeof plots, "%s/plots", rep);
    snprintf(cmp, sizeof cmp, "%s/cmp", rep);
    ck_assert_int_eq(mkdir(run, 0755), 0);
    write_run(run, t);
    ck_assert_int_eq(mkdir(run2, 0755), 0);
    write_run(run2, t);
    char tmp_target[100];
    snprintf(tmp_target, sizeof tmp_target, "/tmp/kdbench-pwned-%ld", (long)getpid());
    unlink(tmp_target);
    if (!have_gnuplot())
        fprintf(stderr, "hostile_run_directory: gnuplot not found; scripts checked, not run\n");

    kd_buf before, after;
    tree(t, &before);
    int rc = kdt_kdbench(out, sizeof out, "report '%s' --timeout 20", run);
    ck_assert_msg(rc == 0, "report exit %d: %.300s", rc, out);
    /* every plot drawn: the escaped names are valid gnuplot */
    ck_assert_msg(!have_gnuplot() || !strstr(out, "warning"), "%.600s", out);
    rc = kdt_kdbench(out, sizeof out, "compare '%s' --out '%s' --baseline nope", run, cmp);
    ck_assert_msg(rc == 2, "compare --baseline nope exit %d: %.300s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare '%s' --out '%s'", run, cmp);
    ck_assert_msg(rc == 0, "compare exit %d: %.300s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare '%s' \"$(printf '%%s/run2\\nx' '%s')\" --out '%s'",
                     run, t, cmp);
    ck_assert_msg(rc == 0, "compare of two runs exit %d: %.300s", rc, out);
    char csv[65536];
    rc = kdt_kdbench(csv, sizeof csv, "compare '%s' --csv --no-plots --out '%s'", run, cmp);
    ck_assert_msg(rc == 0, "compare --csv exit %d: %.300s", rc, csv);
    tree(t, &after);

    only_new_under(&before, &after, rep);
    ck_assert_msg(!exists(tmp_target), "%s was created", tmp_target);
    no_process_in(t);
    for (const char *c = out; *c; c++) /* the terminal sees no escape sequence */
        ck_assert_msg(*c != 0x1b && *c != 0x07, "a control byte reached the terminal: %.300s", out);
    for (const char *c = csv; *c; c++)
        ck_assert_msg(*c != 0x1b && *c != 0x07 && *c != '\r', "a control byte in the CSV: %.300s",
                      csv);
    ck_assert_int_ge(check_scripts(plots), 4);
    ladders_drawn(plots, 3);
    snprintf(plots, sizeof plots, "%s/plots", cmp);
    ck_assert_int_ge(check_scripts(plots), 1);
    ladders_drawn(plots, 3);
    char md[700];
    snprintf(md, sizeof md, "%s/report.md", rep);
    check_md(md);
    char *text = slurp(md); /* the Ladders section is there to be checked */
    ck_assert_ptr_nonnull(strstr(text, "## Ladders"));
    ck_assert_int_ge(count_in(text, "| Step | Variant |"), 3);
    kd_free(text);
    snprintf(md, sizeof md, "%s/compare.md", cmp);
    check_md(md);
    if (have_gnuplot()) { /* the names did not stop the plots */
        snprintf(md, sizeof md, "%s/plots/acc_size.svg", rep);
        ck_assert_msg(kd_file_size(md) > 1000, "no %s", md);
        snprintf(md, sizeof md, "%s/plots/sensitivity.svg", rep);
        ck_assert_msg(kd_file_size(md) > 1000, "no %s", md);
    }
    kd_buf_free(&before);
    kd_buf_free(&after);
}
END_TEST

/* a plain run directory: two rows, nothing hostile */
static void plain_run(const char *dir)
{
    rep_row rows[2];
    rep_row_init(&rows[0], "teacher", "teacher");
    rep_row_init(&rows[1], "teacher/int8", "compressed");
    for (int i = 0; i < 2; i++) {
        rows[i].size_bytes = 100000 / (1 + 3 * i);
        rows[i].accuracy = 0.9 - 0.01 * i;
        rows[i].latency_us_b1_p50 = 50 - 20 * i;
        rows[i].latency_us_b1_p99 = 70 - 20 * i;
    }
    kd_err e = {0};
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(rep_write_results(dir, "plain", rows, 2, &e), 0);
}

static void fake_gnuplot(const char *path, const char *body)
{
    char text[1500];
    snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    kdt_write(path, text, strlen(text));
    ck_assert_int_eq(chmod(path, 0755), 0);
}

/* names in dir containing what, or ending in ext */
static int count_files(const char *dir, const char *what, const char *ext)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name), k = ext ? strlen(ext) : 0;
        n += (what && strstr(de->d_name, what)) ||
             (ext && l > k && !strcmp(de->d_name + l - k, ext));
    }
    closedir(d);
    return n;
}

/* gnuplot that writes its files and then fails (a full disk): no plot lands,
 * no temp file stays */
START_TEST(hostile_gnuplot_fails_atomically)
{
    char t[256], run[300], gp[300], plots[400], out[16384];
    if (!have_gnuplot())
        KDT_SKIP("gnuplot not found");
    kdt_tmpdir(t, sizeof t);
    snprintf(run, sizeof run, "%s/run", t);
    snprintf(gp, sizeof gp, "%s/gp-fails", t);
    snprintf(plots, sizeof plots, "%s/report/plots", run);
    plain_run(run);
    fake_gnuplot(gp, "gnuplot \"$@\"\nexit 1");
    int rc = kdt_kdbench(out, sizeof out, "report %s --gnuplot %s", run, gp);
    ck_assert_msg(rc == 0, "%.300s", out);
    ck_assert_ptr_nonnull(strstr(out, "not drawn"));
    ck_assert_int_eq(count_files(plots, NULL, ".svg"), 0);
    ck_assert_int_eq(count_files(plots, NULL, ".png"), 0);
    ck_assert_int_eq(count_files(plots, ".tmp", NULL), 0);
    /* exits 0 after a short write (gnuplot does not always notice a full
     * disk): the cut files are not taken */
    fake_gnuplot(gp, "gnuplot \"$@\"\nfor f in *.tmp.*; do truncate -s 300 \"$f\"; done\nexit 0");
    rc = kdt_kdbench(out, sizeof out, "report %s --gnuplot %s", run, gp);
    ck_assert_msg(rc == 0 && strstr(out, "not drawn"), "%.300s", out);
    ck_assert_int_eq(count_files(plots, NULL, ".svg"), 0);
    ck_assert_int_eq(count_files(plots, NULL, ".png"), 0);
    ck_assert_int_eq(count_files(plots, ".tmp", NULL), 0);
    /* exits 0 but writes nothing: not drawn either */
    fake_gnuplot(gp, "exit 0");
    rc = kdt_kdbench(out, sizeof out, "report %s --gnuplot %s", run, gp);
    ck_assert_msg(rc == 0 && strstr(out, "not drawn"), "%.300s", out);
    /* the real one: the plots land under their names */
    rc = kdt_kdbench(out, sizeof out, "report %s", run);
    ck_assert_msg(rc == 0, "%.300s", out);
    ck_assert_int_eq(count_files(plots, NULL, ".svg"), 2);
    ck_assert_int_eq(count_files(plots, ".tmp", NULL), 0);
}
END_TEST

static int gone(pid_t pid)
{
    char path[64], stat[256] = "";
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t k = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[k] = 0;
    const char *paren = strrchr(stat, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* a report killed while gnuplot runs leaves no gnuplot and no temp file */
START_TEST(hostile_report_interrupted)
{
    static const int sigs[2] = {SIGTERM, SIGKILL};
    char t[256], run[300], gp[300], pidf[300], plots[400], body[1200];
    kdt_tmpdir(t, sizeof t);
    snprintf(run, sizeof run, "%s/run", t);
    snprintf(gp, sizeof gp, "%s/gp-sleeps", t);
    snprintf(pidf, sizeof pidf, "%s/gp.pid", t);
    snprintf(plots, sizeof plots, "%s/report/plots", run);
    plain_run(run);
    snprintf(body, sizeof body, "echo $$ > %s.tmp && mv %s.tmp %s\nexec sleep 60", pidf, pidf,
             pidf);
    fake_gnuplot(gp, body);
    for (int s = 0; s < 2; s++) {
        unlink(pidf);
        pid_t kd = fork();
        ck_assert_int_ge(kd, 0);
        if (kd == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 1);
            dup2(null, 2);
            execl(kdt_bin(), kdt_bin(), "report", run, "--gnuplot", gp, (char *)NULL);
            _exit(127);
        }
        long gpid = 0;
        for (int i = 0; i < 200 && !gpid; i++) {
            sleep_ms(50);
            FILE *f = fopen(pidf, "r");
            if (f) {
                ck_assert_int_eq(fscanf(f, "%ld", &gpid), 1);
                fclose(f);
            }
        }
        ck_assert_msg(gpid > 0, "the fake gnuplot never started");
        kill(kd, sigs[s]);
        int st = 0, done = 0;
        for (int i = 0; i < 200 && !done; i++) {
            done = waitpid(kd, &st, WNOHANG) == kd;
            if (!done)
                sleep_ms(50);
        }
        if (!done) {
            kill(kd, SIGKILL);
            waitpid(kd, &st, 0);
        }
        ck_assert_msg(done, "kdbench report did not end on signal %d", sigs[s]);
        if (sigs[s] == SIGTERM)
            ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 143,
                          "SIGTERM: not exit 143 (status %d)", st);
        int dead = 0;
        for (int i = 0; i < 100 && !dead; i++) {
            dead = gone((pid_t)gpid);
            if (!dead)
                sleep_ms(50);
        }
        if (!dead)
            kill((pid_t)gpid, SIGKILL);
        ck_assert_msg(dead, "gnuplot (pid %ld) survived signal %d to kdbench report", gpid,
                      sigs[s]);
        if (sigs[s] == SIGTERM)
            ck_assert_int_eq(count_files(plots, ".tmp", NULL), 0);
    }
}
END_TEST

/* compare on a results file with no rows */
START_TEST(hostile_compare_no_rows)
{
    char t[256], run[300], out[8192];
    kdt_tmpdir(t, sizeof t);
    snprintf(run, sizeof run, "%s/empty", t);
    ck_assert_int_eq(mkdir(run, 0755), 0);
    put(run, "results.json", "{\"experiment\": \"x\", \"rows\": []}\n");
    int rc = kdt_kdbench(out, sizeof out, "compare %s --out %s/cmp", run, t);
    ck_assert_msg(rc == 1, "exit %d: %.300s", rc, out);
    ck_assert_msg(!strstr(out, "(null)"), "%.300s", out);
    ck_assert_msg(strstr(out, "no variants"), "%.300s", out);
    rc = kdt_kdbench(out, sizeof out, "compare %s --baseline teacher --out %s/cmp", run, t);
    ck_assert_msg(rc == 1 && strstr(out, "no variants"), "exit %d: %.300s", rc, out);
}
END_TEST

/* NEL and the Unicode line/paragraph separators count as control characters */
START_TEST(hostile_set_line_separators)
{
    /* printf octal escapes (sh's printf has no \\x) */
    static const char *const seps[4] = {"\\302\\205", "\\342\\200\\250", "\\342\\200\\251",
                                        "\\302\\233"};
    char out[8192];
    for (int i = 0; i < 4; i++) {
        int rc = kdt_kdbench(out, sizeof out,
                             "check experiments/quick.yaml --set \"name=$(printf 'a%sb')\"",
                             seps[i]);
        ck_assert_msg(rc == 2 && strstr(out, "control characters"), "%s: exit %d: %s", seps[i],
                      rc, out);
    }
}
END_TEST

Suite *suite_cli_hostile(void)
{
    Suite *s = suite_create("cli_hostile");
    TCase *t = tcase_create("hostile");
    tcase_set_timeout(t, 240);
    tcase_add_test(t, hostile_run_directory);
    tcase_add_test(t, hostile_gnuplot_fails_atomically);
    tcase_add_test(t, hostile_report_interrupted);
    tcase_add_test(t, hostile_compare_no_rows);
    tcase_add_test(t, hostile_set_line_separators);
    suite_add_tcase(s, t);
    return s;
}
