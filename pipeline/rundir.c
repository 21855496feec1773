/* The run directory: opening it (one writer at a time, a bounded path),
 * and the run key that lets --resume refuse a config that would not give
 * the bytes already in the folder.
 *
 * The run key (RUN_DIR/run.key) is the resolved config flattened to one
 * "dotted.key.path=value" line per key, plus the thread count in use and a
 * CRC of each loaded data set.  It is one key for the whole folder, not one
 * per checkpoint, because a resume reuses more than checkpoints: the
 * compressed models a killed run saved are picked up as they are, so a
 * changed compress section matters as much as a changed learning rate. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define KEY_DEPTH 16
#define KEY_MAX_BYTES (4u << 20)

/* ---- flattening the resolved YAML ------------------------------------------ */
typedef struct {
    int indent, items;
    char key[96];
} key_frame;

typedef struct {
    key_frame st[KEY_DEPTH];
    int sp;
    kd_buf *out;
} flattener;

static void put_path(flattener *f, const char *key, size_t klen)
{
    for (int i = 0; i < f->sp; i++) {
        kd_buf_put(f->out, f->st[i].key, strlen(f->st[i].key));
        kd_buf_put(f->out, ".", 1);
    }
    kd_buf_put(f->out, key, klen);
}

/* Length of s up to an unquoted " #" comment or the end, trailing blanks cut. */
static size_t value_len(const char *s, size_t n)
{
    int q = 0;
    size_t end = n;
    for (size_t i = 0; i < n; i++) {
        if (q && s[i] == '\\') {
            i++;
        } else if (s[i] == '"' || s[i] == '\'') {
            q = q == s[i] ? 0 : q ? q : s[i];
        } else if (!q && s[i] == '#' && (i == 0 || s[i - 1] == ' ')) {
            end = i;
            break;
        }
    }
    while (end > 0 && (s[end - 1] == ' ' || s[end - 1] == '\r'))
        end--;
    return end;
}

static void put_line(flattener *f, const char *key, size_t klen, const char *v, size_t vlen)
{
    put_path(f, key, klen);
    kd_buf_put(f->out, "=", 1);
    kd_buf_put(f->out, v, vlen);
    kd_buf_put(f->out, "\n", 1);
}

/* "{a: 1, b: {c: 2}, d: [1, 2]}" as prefix.a=1, prefix.b={c: 2}, prefix.d=[1, 2] */
static void put_flow_map(flattener *f, const char *prefix, const char *v, size_t n)
{
    char key[200];
    size_t i = 1, start = 1;
    int depth = 0, q = 0;
    for (; i < n; i++) {
        char c = v[i];
        if (q && c == '\\') {
            i++;
            continue;
        }
        if (c == '"')
            q = !q;
        if (q)
            continue;
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && depth > 0)
            depth--;
        else if ((c == ',' && depth == 0) || (c == '}' && depth == 0)) {
            const char *item = v + start;
            size_t len = i - start;
            while (len && *item == ' ')
                item++, len--;
            const char *colon = memchr(item, ':', len);
            if (colon) {
                int k = snprintf(key, sizeof key, "%s%s%.*s", prefix, *prefix ? "." : "",
                                 (int)(colon - item), item);
                size_t vo = (size_t)(colon + 1 - item);
                while (vo < len && item[vo] == ' ')
                    vo++;
                put_line(f, key, (size_t)k < sizeof key ? (size_t)k : sizeof key - 1, item + vo,
                         len - vo);
            }
            start = i + 1;
            if (c == '}')
                break;
        }
    }
}

/* One line of the dump. */
static void flatten_line(flattener *f, const char *line, size_t n)
{
    size_t ind = 0;
    while (ind < n && line[ind] == ' ')
        ind++;
    const char *c = line + ind;
    size_t len = value_len(c, n - ind);
    if (len == 0)
        return;
    while (f->sp > 0 && f->st[f->sp - 1].indent >= (int)ind)
        f->sp--;
    if (len >= 2 && c[0] == '-' && c[1] == ' ') { /* a list item: a frame named by its index */
        int idx = f->sp > 0 ? f->st[f->sp - 1].items++ : 0;
        if (f->sp == KEY_DEPTH)
            return;
        key_frame *k = &f->st[f->sp++];
        *k = (key_frame){.indent = (int)ind};
        snprintf(k->key, sizeof k->key, "%d", idx);
        c += 2, len -= 2, ind += 2;
        if (c[0] == '{') {
            put_flow_map(f, "", c, len);
            return;
        }
    }
    const char *colon = memchr(c, ':', len);
    if (!colon)
        return;
    size_t klen = (size_t)(colon - c), vo = klen + 1;
    while (vo < len && c[vo] == ' ')
        vo++;
    if (vo >= len) { /* "key:" opens a block */
        if (f->sp < KEY_DEPTH) {
            key_frame *k = &f->st[f->sp++];
            *k = (key_frame){.indent = (int)ind};
            snprintf(k->key, sizeof k->key, "%.*s", (int)klen, c);
        }
        return;
    }
    if (c[vo] == '{') {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "%.*s", (int)klen, c);
        put_flow_map(f, prefix, c + vo, len - vo);
    } else {
        put_line(f, c, klen, c + vo, len - vo);
    }
}

/* The run key of r (see the top of the file) into b. */
static int run_key(const run_ctx *r, kd_buf *b, kd_err *e)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&text, &len);
    if (!mf)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int rc = config_dump(r->spec, mf);
    fclose(mf);
    flattener f = {.out = b};
    for (size_t i = 0; rc == KD_OK && i < len;) {
        size_t k = i;
        while (k < len && text[k] != '\n')
            k++;
        flatten_line(&f, text + i, k - i);
        i = k + 1;
    }
    free(text);
    rep_bprintf(b, "threads_in_use=%d\n", r->threads);
    const data_set *sets[3] = {&r->train, &r->val, &r->test};
    static const char *const names[3] = {"train", "val", "test"};
    for (int i = 0; i < 3; i++) {
        rep_bprintf(b, "data_loaded.%s=%d samples, crc32 %08x\n", names[i], sets[i]->n,
                    (unsigned)pipeline_data_crc(sets[i]));
    }
    if (rc != KD_OK || b->failed)
        return kd_err_set(e, rc != KD_OK ? rc : KD_ENOMEM, "cannot form the run key");
    return KD_OK;
}

/* ---- comparing two keys ----------------------------------------------------- */
/* Keys a resume may change: they decide no byte of a checkpoint or model
 * (the output's name, the report's and the serving loadtest's settings). */
static int harmless(const char *path, size_t n)
{
    /* threads: the count in use is its own key (0 means all cores) */
    static const char *const names[] = {"name", "cache_dir", "report", "threads", "serve"};
    for (int i = 0; i < 5; i++) {
        size_t k = strlen(names[i]);
        if (n >= k && !strncmp(path, names[i], k) && (n == k || path[k] == '.'))
            return 1;
    }
    return 0;
}

/* The value of path in key text t (NUL-terminated), length in *vlen, or NULL. */
static const char *find_value(const char *t, const char *path, size_t plen, size_t *vlen)
{
    for (const char *l = t; *l;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n > plen && l[plen] == '=' && !strncmp(l, path, plen)) {
            *vlen = n - plen - 1;
            return l + plen + 1;
        }
        l += n + (end != NULL);
    }
    return NULL;
}

/* Appends to list the paths of a that b lacks or holds with another value. */
static int diff_into(const char *a, const char *b, int both, char *list, size_t n, int count)
{
    for (const char *l = a; *l;) {
        const char *end = strchr(l, '\n'), *eq = strchr(l, '=');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        if (eq && eq < l + len) {
            size_t plen = (size_t)(eq - l), vlen = 0;
            const char *v = find_value(b, l, plen, &vlen);
            int differs = !v ? 1 : both && (vlen != len - plen - 1 || memcmp(v, eq + 1, vlen));
            if (differs && !harmless(l, plen)) {
                size_t k = strlen(list);
                if (count < 12 && k + plen + 3 < n)
                    snprintf(list + k, n - k, "%s%.*s", k ? ", " : "", (int)plen, l);
                count++;
            }
        }
        l += len + (end != NULL);
    }
    return count;
}

int pl_key_diff(const char *old_key, const char *new_key, char *list, size_t n)
{
    list[0] = 0;
    int count = diff_into(new_key, old_key, 1, list, n, 0);
    /* keys only the old run had (a student or variant removed) */
    return diff_into(old_key, new_key, 0, list, n, count);
}

/* ---- opening the folder ---------------------------------------------------------- */
/* On --resume: the run key in the folder against this run's; a difference
 * in any key that decides bytes is a config error naming the keys. */
static int check_resume(run_ctx *r, const char *key, kd_err *e)
{
    char path[PL_PATH];
    pl_path(r, "run.key", path, sizeof path);
    uint8_t *old;
    size_t n;
    if (access(path, F_OK) != 0) {
        kd_logf(&r->log, "resume: no run.key in %s; the config could not be compared", r->dir);
        return KD_OK;
    }
    int rc = kd_read_file(path, KEY_MAX_BYTES, &old, &n, e);
    if (rc != KD_OK)
        return rc;
    char *t = kd_malloc(n + 1);
    if (!t) {
        kd_free(old);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    memcpy(t, old, n);
    t[n] = 0;
    kd_free(old);
    for (size_t i = 0; i < n; i++)
        if (t[i] == 0)
            t[i] = '\n'; /* a NUL would hide the rest */
    char list[600];
    int changed = pl_key_diff(t, key, list, sizeof list);
    kd_free(t);
    if (changed)
        return kd_err_set(e, KD_ECONFIG, "--resume: %d setting(s) differ from the run in %s, which decide what "
                          "it trained: %s%s; resume with the same config, or run without "
                          "--resume (or with another --out) to start over",
                          changed, r->dir, list, changed > 12 ? ", ..." : "");
    return KD_OK;
}

static int write_config(run_ctx *r, const kd_buf *key, kd_err *e)
{
    char *text = NULL, path[PL_PATH];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    config_dump(r->spec, f);
    fclose(f);
    pl_path(r, "config.yaml", path, sizeof path);
    int rc = kd_write_atomic(path, text, len, e);
    free(text);
    pl_path(r, "run.key", path, sizeof path);
    return rc == KD_OK ? kd_write_atomic(path, key->p, key->len - 1, e) : rc;
}

static int set_dir(run_ctx *r, kd_err *e)
{
    const char *out = r->o->out_dir;
    int n = out ? snprintf(r->dir, sizeof r->dir, "%s", out)
                : snprintf(r->dir, sizeof r->dir, "runs/%s", r->spec->name);
    if (n < 0 || (size_t)n >= sizeof r->dir)
        return kd_err_at(e, KD_ECONFIG, out ? "--out" : r->spec->file, 0, 0,
                         "the run folder's path has %d bytes; at most %zu are allowed (the "
                         "files inside it must stay within the system's path limit)",
                         n, sizeof r->dir - 1);
    return KD_OK;
}

/* A folder an earlier run wrote (its run.key or results.json). */
static int holds_run(const run_ctx *r)
{
    char path[PL_PATH];
    pl_path(r, "run.key", path, sizeof path);
    if (access(path, F_OK) == 0)
        return 1;
    pl_path(r, "results.json", path, sizeof path);
    return access(path, F_OK) == 0;
}

/* Without --resume, an earlier run in the folder is moved aside to DIR.N
 * (the first free N), never written over, and a fresh folder is locked in its
 * place; aside gets DIR.N ("" when there was nothing to move).  Called with
 * the folder locked, so a live run is never moved. */
static int move_earlier_run(run_ctx *r, char *aside, size_t n, kd_err *e)
{
    char base[PL_PATH];
    aside[0] = 0;
    if (r->o->resume || !holds_run(r))
        return KD_OK;
    size_t len = strlen(r->dir);
    while (len > 1 && r->dir[len - 1] == '/')
        len--;
    snprintf(base, sizeof base, "%.*s", (int)len, r->dir);
    for (int i = 1; i < 10000 && !aside[0]; i++)
        if (snprintf(aside, n, "%s.%d", base, i) >= (int)n || access(aside, F_OK) != 0)
            break;
        else
            aside[0] = 0;
    if (!aside[0] || rename(base, aside) != 0) {
        int err = aside[0] ? errno : EEXIST;
        aside[0] = 0;
        return kd_err_at(e, KD_EIO, base, 0, 0,
                         "holds an earlier run, which could not be moved aside (%s): continue it "
                         "with --resume, or choose another --out",
                         strerror(err));
    }
    int old = r->lock_fd, rc = kd_mkdirs(r->dir, e);
    if (rc == KD_OK)
        rc = kd_dir_lock(r->dir, &r->lock_fd, e);
    kd_dir_unlock(old); /* the earlier run's folder, now at aside */
    return rc;
}

int pl_open_run_dir(run_ctx *r, kd_err *e)
{
    char aside[PL_PATH];
    int rc = set_dir(r, e);
    if (rc == KD_OK)
        rc = kd_mkdirs(r->dir, e);
    if (rc == KD_OK)
        rc = kd_dir_lock(r->dir, &r->lock_fd, e);
    if (rc == KD_OK)
        rc = move_earlier_run(r, aside, sizeof aside, e);
    if (rc != KD_OK)
        return rc;
    kd_buf key = {0};
    if ((rc = run_key(r, &key, e)) == KD_OK)
        kd_buf_put(&key, "", 1); /* text from here on; written without the NUL */
    if (rc == KD_OK && key.failed)
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK && r->o->resume)
        rc = check_resume(r, (const char *)key.p, e);
    int removed = 0;
    if (rc == KD_OK && r->o->resume)
        rc = kd_remove_stale_tmp(r->dir, &removed, e);
    char path[PL_PATH];
    pl_path(r, "run.log", path, sizeof path);
    if (rc == KD_OK && !(r->log.file = fopen(path, r->o->resume ? "a" : "w")))
        rc = kd_err_at(e, KD_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
    r->log.echo = r->o->quiet ? NULL : r->o->progress;
    if (removed)
        kd_logf(&r->log, "resume: removed %d temporary file(s) of runs that no longer exist",
                removed);
    if (aside[0] && r->log.file)
        pl_warn(r, "%s held an earlier run: moved to %s, nothing of it overwritten (--resume "
                "continues a run in its own folder; remove %s when you no longer need it)",
                r->dir, aside, aside);
    rep_env env;
    rep_env_detect(&env);
    env.threads = r->threads;
    snprintf(env.blas, sizeof env.blas, "%s", nn_blas_info());
    if (rc == KD_OK)
        rc = rep_write_env(r->dir, &env, e);
    if (rc == KD_OK)
        rc = write_config(r, &key, e);
    kd_buf_free(&key);
    return rc;
}

void pl_warn(run_ctx *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kd_logf(&r->log, "%s", msg);
    if (r->o->quiet && r->o->progress) /* a warning is not progress: --quiet keeps it */
        fprintf(r->o->progress, "kdbench: %s\n", msg);
}
