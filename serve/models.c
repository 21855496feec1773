/* Which models to serve: .kdm files and run directories, named the way the
 * run's results name them. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "internal.h"

typedef struct {
    serve_source *v;
    int n, cap;
} src_list;

static int push(src_list *l, const char *name, const char *path, kd_err *e)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name))
            return kd_err_set(e, KD_ECONFIG, "two models are named \"%s\" (%s and %s)", name,
                              l->v[i].path, path);
    if (strlen(name) >= SERVE_NAME_MAX || strlen(path) >= sizeof l->v[0].path)
        return kd_err_set(e, KD_ECONFIG, "%s: name or path too long", path);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        serve_source *p = kd_realloc(l->v, (size_t)cap * sizeof *p);
        if (!p)
            return kd_err_set(e, KD_ENOMEM, "out of memory");
        l->v = p;
        l->cap = cap;
    }
    serve_source *s = &l->v[l->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->accuracy = -1;
    return KD_OK;
}

static int is_kdm(const char *f)
{
    size_t n = strlen(f);
    return n > 4 && !strcmp(f + n - 4, ".kdm");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Length of name without a "-seedN" suffix (N digits), or strlen(name). */
static size_t seed_base(const char *name, unsigned long long *seed)
{
    *seed = 0;
    for (const char *p = strstr(name, "-seed"); p; p = strstr(p + 1, "-seed"))
        if (p[5] && strspn(p + 5, "0123456789") == strlen(p + 5)) {
            *seed = strtoull(p + 5, NULL, 10);
            return (size_t)(p - name);
        }
    return strlen(name);
}

/* Model files in serving order: names without a seed first, then by base
 * name and numeric seed (so seed 2 comes before seed 10). */
static int cmp_model(const void *a, const void *b)
{
    char *const x = *(char *const *)a, *const y = *(char *const *)b;
    unsigned long long sx, sy;
    size_t bx = seed_base(x, &sx), by = seed_base(y, &sy);
    int hx = bx < strlen(x), hy = by < strlen(y);
    if (hx != hy)
        return hx - hy;
    int c = strncmp(x, y, bx < by ? bx : by);
    if (c || bx != by)
        return c ? c : (bx < by ? -1 : 1);
    return (sx > sy) - (sx < sy);
}

/* The .kdm files of dir (names without .kdm) in serving order: *names
 * (kd_free each and the array). */
static int list_kdm(const char *dir, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_kdm(de->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = kd_realloc(*names, (size_t)cap * sizeof *p);
            if (!p)
                break;
            *names = p;
        }
        if (!((*names)[*n] = kd_strdup(de->d_name)))
            break;
        (*names)[*n][strlen(de->d_name) - 4] = 0; /* without .kdm */
        ++*n;
    }
    closedir(d);
    if (*n)
        qsort(*names, (size_t)*n, sizeof **names, cmp_model);
    return *n;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        kd_free(names[i]);
    kd_free(names);
}

/* Models in dir (prefix + file name without .kdm), a "-seedN" suffix dropped
 * when that name is free: the first seed of a model takes the plain name. */
static int add_folder(src_list *l, const char *dir, const char *prefix, kd_err *e)
{
    char **names;
    int n, rc = KD_OK;
    list_kdm(dir, &names, &n);
    for (int i = 0; i < n && rc == KD_OK; i++) {
        char name[SERVE_NAME_MAX * 2], path[2048];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        snprintf(path, sizeof path, "%s/%s.kdm", dir, names[i]);
        unsigned long long seed;
        size_t base = seed_base(name, &seed);
        int taken = base == strlen(name);
        for (int k = 0; k < l->n && !taken; k++)
            taken = strlen(l->v[k].name) == base && !strncmp(l->v[k].name, name, base);
        if (!taken)
            name[base] = 0;
        rc = push(l, name, path, e);
    }
    free_names(names, n);
    return rc;
}

/* Accuracies from dir/results.json ({"rows": [{"name", "accuracy"}, ...]}), if any. */
static void read_accuracy(src_list *l, int from, const char *dir)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/results.json", dir);
    uint8_t *text;
    size_t len;
    kd_err e;
    if (kd_read_file(path, 64u << 20, &text, &len, &e) != KD_OK)
        return;
    cJSON *j = cJSON_ParseWithLength((const char *)text, len);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "rows"), *row;
    cJSON_ArrayForEach(row, rows) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(row, "name");
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(row, "accuracy");
        if (!cJSON_IsString(name) || !cJSON_IsNumber(acc))
            continue;
        /* a variant's file (and so its served name) has '_' for its '/' */
        char flat[SERVE_NAME_MAX];
        snprintf(flat, sizeof flat, "%s", name->valuestring);
        for (char *c = flat; *c; c++)
            *c = *c == '/' ? '_' : *c;
        for (int i = from; i < l->n; i++)
            if (!strcmp(l->v[i].name, name->valuestring) || !strcmp(l->v[i].name, flat))
                l->v[i].accuracy = acc->valuedouble;
    }
    cJSON_Delete(j);
    kd_free(text);
}

static int add_run_dir(src_list *l, const char *dir, kd_err *e)
{
    int from = l->n, rc = KD_OK;
    char path[2048];
    snprintf(path, sizeof path, "%s/teacher.kdm", dir);
    if (kd_file_size(path) >= 0)
        rc = push(l, "teacher", path, e);
    snprintf(path, sizeof path, "%s/students", dir);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        char **subs = NULL;
        int ns = 0, cap = 0;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.') {
                if (ns == cap) {
                    cap = cap ? 2 * cap : 8;
                    char **p = kd_realloc(subs, (size_t)cap * sizeof *p);
                    if (!p)
                        break;
                    subs = p;
                }
                if ((subs[ns] = kd_strdup(de->d_name)))
                    ns++;
            }
        closedir(d);
        if (ns)
            qsort(subs, (size_t)ns, sizeof *subs, cmp_str);
        for (int i = 0; i < ns && rc == KD_OK; i++) {
            char sub[2048], prefix[SERVE_NAME_MAX];
            snprintf(sub, sizeof sub, "%s/students/%s", dir, subs[i]);
            snprintf(prefix, sizeof prefix, "%s/", subs[i]);
            rc = add_folder(l, sub, prefix, e);
        }
        free_names(subs, ns);
    }
    snprintf(path, sizeof path, "%s/compressed", dir);
    if (rc == KD_OK)
        rc = add_folder(l, path, "", e);
    if (rc == KD_OK && l->n == from)
        rc = kd_err_set(e, KD_ECONFIG, "%s: a folder with no model (teacher.kdm, students/, "
                                       "compressed/)", dir);
    if (rc == KD_OK)
        read_accuracy(l, from, dir);
    return rc;
}

int serve_sources(const char *const *args, int nargs, serve_source **out, int *n, kd_err *e)
{
    src_list l = {0};
    int rc = KD_OK;
    for (int i = 0; i < nargs && rc == KD_OK; i++) {
        struct stat st;
        if (stat(args[i], &st) != 0)
            rc = kd_err_set(e, KD_ECONFIG, "%s: no such file or folder", args[i]);
        else if (S_ISDIR(st.st_mode))
            rc = add_run_dir(&l, args[i], e);
        else if (is_kdm(args[i])) {
            const char *base = strrchr(args[i], '/');
            base = base ? base + 1 : args[i];
            char name[SERVE_NAME_MAX];
            snprintf(name, sizeof name, "%.*s", (int)(strlen(base) - 4), base);
            rc = push(&l, name, args[i], e);
        } else
            rc = kd_err_set(e, KD_ECONFIG, "%s: neither a .kdm model file nor a run folder",
                            args[i]);
    }
    if (rc != KD_OK) {
        kd_free(l.v);
        return rc;
    }
    *out = l.v;
    *n = l.n;
    return KD_OK;
}
