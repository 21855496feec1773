/* kdbench compare: which test set each source was measured on (a run's
 * run.key, or the set a model file was just evaluated on), so that deltas
 * across different data are refused unless asked; and the candidates of an
 * ambiguous --baseline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pipeline/pipeline.h"
#include "compare.h"

/* value of "key=value" when line starts with key=, outer quotes removed */
static int key_value(const char *line, const char *key, char *out, size_t n)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0 || line[k] != '=')
        return 0;
    const char *v = line + k + 1;
    size_t len = strcspn(v, "\r\n");
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    snprintf(out, n, "%.*s", (int)len, v);
    return 1;
}

void cli_testset_of_run(const char *dir, cli_testset *t)
{
    char path[4200], line[4400], kind[32] = "", where[2048] = "", subset[32] = "0";
    memset(t, 0, sizeof *t);
    snprintf(path, sizeof path, "%s/run.key", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        unsigned crc;
        int n;
        key_value(line, "data.dataset", kind, sizeof kind);
        key_value(line, "data.test_subset", subset, sizeof subset);
        if (key_value(line, "data.dir", path, sizeof path))
            snprintf(where, sizeof where, "t10k in %.2000s", path);
        if (key_value(line, "data.test_images", path, sizeof path) ||
            key_value(line, "data.test_csv", path, sizeof path))
            snprintf(where, sizeof where, "%.2000s", path);
        if (sscanf(line, "data_loaded.test=%d samples, crc32 %x", &n, &crc) == 2) {
            t->known = 1;
            t->n = n;
            t->crc = crc;
        }
    }
    fclose(f);
    snprintf(t->name, sizeof t->name, "%s%s%.2000s%s%s", kind, kind[0] ? " " : "", where,
             strcmp(subset, "0") ? ", test_subset " : "", strcmp(subset, "0") ? subset : "");
}

void cli_testset_of_data(const data_set *d, const char *dir, const char *images, const char *csv,
                         cli_testset *t)
{
    memset(t, 0, sizeof *t);
    if (csv)
        snprintf(t->name, sizeof t->name, "%.2000s", csv);
    else if (images)
        snprintf(t->name, sizeof t->name, "%.2000s", images);
    else
        snprintf(t->name, sizeof t->name, "t10k in %.2000s", dir);
    t->known = 1;
    t->n = d->n;
    t->crc = pipeline_data_crc(d);
}

static int same_set(const cli_testset *a, const cli_testset *b)
{
    return a->n == b->n && a->crc == b->crc;
}

static void print_set(FILE *f, const char *src, const cli_testset *t)
{
    if (t->known)
        fprintf(f, "  %s: %s, %d samples, crc32 %08x\n", src, t->name[0] ? t->name : "?", t->n,
                (unsigned)t->crc);
    else
        fprintf(f, "  %s: not recorded (no data_loaded.test line in its run.key)\n", src);
}

int cli_testsets_check(const char *const *srcs, const cli_testset *sets, int n, int allow)
{
    int first = -1, differ = 0, unknown = 0;
    for (int i = 0; i < n; i++) {
        if (!sets[i].known) {
            unknown++;
            continue;
        }
        if (first < 0)
            first = i;
        else if (!same_set(&sets[first], &sets[i]))
            differ = 1;
    }
    if (differ) {
        fprintf(stderr, "kdbench compare: %s measured on different test sets:\n",
                allow ? "warning: the sources were" : "the sources were");
        for (int i = 0; i < n; i++)
            print_set(stderr, srcs[i], &sets[i]);
        if (!allow) {
            fprintf(stderr, "deltas across different test sets compare different data; "
                            "--allow-different-data compares them anyway\n");
            return KD_EXIT_USAGE;
        }
        fprintf(stderr, "deltas across these sources compare different data\n");
    } else if (unknown && n > 1) {
        for (int i = 0; i < n; i++)
            if (!sets[i].known)
                fprintf(stderr, "kdbench compare: warning: %s: its test set is not recorded "
                                "(no data_loaded.test line in its run.key); deltas assume the "
                                "same data\n", srcs[i]);
    }
    return 0;
}

/* s ends with "/suffix" */
static int ends_with_dir(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && s[a - b - 1] == '/' && !strcmp(s + a - b, suffix);
}

int cli_baseline_candidates(const rep_row *rows, int n, const char *name, char *list, size_t cap)
{
    int count = 0;
    size_t len = 0;
    list[0] = 0;
    for (int i = 0; i < n; i++) {
        if (!ends_with_dir(rows[i].name, name))
            continue;
        char shown[sizeof rows[0].name];
        rep_text_clean(shown, sizeof shown, rows[i].name);
        if (len < cap)
            len += (size_t)snprintf(list + len, cap - len, "%s%s", count ? ", " : "", shown);
        count++;
    }
    return count;
}
