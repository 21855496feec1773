/* Error reports and the plain run log. */
#include "util.h"

#include <stdarg.h>
#include <string.h>

static int vset(kd_err *e, int code, const char *file, int line, int col, const char *fmt,
                va_list ap)
{
    if (!e)
        return code;
    /* formatted aside first: the arguments may be e's own file or message
     * (re-reporting an error at a config position) */
    char msg[sizeof e->msg], where[sizeof e->file];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(where, sizeof where, "%s", file ? file : "");
    e->code = code;
    memcpy(e->file, where, sizeof where);
    e->line = line;
    e->col = col;
    memcpy(e->msg, msg, sizeof msg);
    return code;
}

int kd_err_set(kd_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, NULL, 0, 0, fmt, ap);
    va_end(ap);
    return code;
}

int kd_err_at(kd_err *e, int code, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(e, code, file, line, col, fmt, ap);
    va_end(ap);
    return code;
}

void kd_err_prefix(kd_err *e, const char *fmt, ...)
{
    if (!e)
        return;
    char pre[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* truncation is acceptable here: keep as much of both as fits */
    size_t np = strlen(pre), cap = sizeof e->msg - 1;
    np = np > cap ? cap : np;
    memcpy(e->msg, pre, np);
    size_t k = np;
    for (const char *s = ": "; *s && k < cap; s++)
        e->msg[k++] = *s;
    size_t no = strlen(old);
    no = no > cap - k ? cap - k : no;
    memcpy(e->msg + k, old, no);
    e->msg[k + no] = 0;
}

const char *kd_err_str(const kd_err *e, char *buf, size_t n)
{
    if (!e->file[0])
        snprintf(buf, n, "%s", e->msg);
    else if (e->line > 0 && e->col > 0)
        snprintf(buf, n, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
    else if (e->line > 0)
        snprintf(buf, n, "%s:%d: %s", e->file, e->line, e->msg);
    else
        snprintf(buf, n, "%s: %s", e->file, e->msg);
    return buf;
}

void kd_logf(kd_log *l, const char *fmt, ...)
{
    if (!l)
        return;
    va_list ap;
    if (l->file) {
        va_start(ap, fmt);
        vfprintf(l->file, fmt, ap);
        va_end(ap);
        fputc('\n', l->file);
        fflush(l->file);
    }
    if (l->echo) {
        va_start(ap, fmt);
        vfprintf(l->echo, fmt, ap);
        va_end(ap);
        fputc('\n', l->echo);
    }
}
