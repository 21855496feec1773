/* env.json: the machine and build a run was measured on. */
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "reports.h"

static void cpu_model(char *out, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    out[0] = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon || strncmp(line, "model name", 10) != 0)
            continue;
        char *v = colon + 1;
        v += strspn(v, " \t");
        v[strcspn(v, "\n")] = 0;
        snprintf(out, n, "%s", v);
        break;
    }
    fclose(f);
}

void rep_env_detect(rep_env *env)
{
    memset(env, 0, sizeof *env);
    cpu_model(env->cpu, sizeof env->cpu);
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    env->cores = c > 0 ? (int)c : 0;
#ifdef __VERSION__
    snprintf(env->compiler, sizeof env->compiler, "%s%s",
#ifdef __clang__
             "clang ",
#else
             "gcc ",
#endif
             __VERSION__);
#endif
#ifdef KD_GIT_COMMIT
    snprintf(env->git, sizeof env->git, "%s", KD_GIT_COMMIT);
    snprintf(env->version, sizeof env->version, "%s", KD_VERSION);
#endif
    snprintf(env->libs, sizeof env->libs, "zlib %s", zlibVersion());
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(env->os, sizeof env->os, "%.40s %.60s %.20s", u.sysname, u.release, u.machine);
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(env->date, sizeof env->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void member(kd_buf *b, const char *key, const char *v, int last)
{
    rep_bprintf(b, "  \"%s\": ", key);
    rep_json_str(b, v);
    rep_bprintf(b, last ? "\n" : ",\n");
}

int rep_write_env(const char *dir, const rep_env *env, kd_err *e)
{
    kd_buf b = {0};
    char path[4096];
    rep_bprintf(&b, "{\n");
    member(&b, "cpu", env->cpu, 0);
    rep_bprintf(&b, "  \"cores\": %d,\n  \"threads\": %d,\n", env->cores, env->threads);
    member(&b, "blas", env->blas, 0);
    member(&b, "libs", env->libs, 0);
    member(&b, "version", env->version, 0);
    member(&b, "git", env->git, 0);
    member(&b, "compiler", env->compiler, 0);
    member(&b, "os", env->os, 0);
    member(&b, "date", env->date, 1);
    rep_bprintf(&b, "}\n");
    snprintf(path, sizeof path, "%s/env.json", dir);
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}

static void get_str(const rep_json *j, const char *key, char *out, size_t n)
{
    int k = rep_json_get(j, 0, key);
    if (k >= 0 && j->nodes[k].type == REP_JSTR)
        snprintf(out, n, "%s", j->nodes[k].str);
}

static int get_int(const rep_json *j, const char *key)
{
    int k = rep_json_get(j, 0, key);
    double v = k >= 0 && j->nodes[k].type == REP_JNUM ? j->nodes[k].num : 0;
    return v >= 0 && v <= 1e9 ? (int)v : 0; /* (int) of a number out of range is undefined */
}

int rep_read_env(const char *path, rep_env *env, kd_err *e)
{
    uint8_t *text;
    size_t len;
    rep_json j;
    memset(env, 0, sizeof *env);
    int rc = kd_read_file(path, 1 << 20, &text, &len, e);
    if (rc != KD_OK)
        return rc;
    rc = rep_json_parse((const char *)text, len, path, &j, e);
    kd_free(text);
    if (rc != KD_OK)
        return rc;
    if (j.nodes[0].type != REP_JOBJ) {
        rep_json_free(&j);
        return kd_err_at(e, KD_EFORMAT, path, 1, 1, "env: not a JSON object");
    }
    get_str(&j, "cpu", env->cpu, sizeof env->cpu);
    env->cores = get_int(&j, "cores");
    env->threads = get_int(&j, "threads");
    get_str(&j, "blas", env->blas, sizeof env->blas);
    get_str(&j, "libs", env->libs, sizeof env->libs);
    get_str(&j, "version", env->version, sizeof env->version);
    get_str(&j, "git", env->git, sizeof env->git);
    get_str(&j, "compiler", env->compiler, sizeof env->compiler);
    get_str(&j, "os", env->os, sizeof env->os);
    get_str(&j, "date", env->date, sizeof env->date);
    rep_json_free(&j);
    return KD_OK;
}
