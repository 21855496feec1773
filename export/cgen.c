/* The text side of the C generator: printf into a growing buffer and
 * literals that read back to exactly the stored values. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void cg_printf(kd_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        kd_buf_put(b, small, (size_t)n);
        return;
    }
    char *big = kd_malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    kd_buf_put(b, big, (size_t)n);
    kd_free(big);
}

/* The shortest %.Ng (N = 1..9) that strtof reads back as v: 9 digits always
 * round-trip a float; most weights need 7 or 8. */
static void float_text(float v, char *s, size_t n)
{
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(s, n, "%.*g", prec, (double)v);
        if (strtof(s, NULL) == v)
            break;
    }
    if (!strchr(s, '.') && !strchr(s, 'e'))
        strncat(s, ".", n - strlen(s) - 1); /* "1" -> "1.": a floating literal */
    strncat(s, "f", n - strlen(s) - 1);
}

void cg_float(cg *g, kd_buf *b, float v, const char *what)
{
    if (!isfinite(v)) {
        if (!g->bad)
            snprintf(g->bad_what, sizeof g->bad_what, "%s holds %g", what, (double)v);
        g->bad = 1;
        kd_buf_put(b, "0", 1);
        return;
    }
    if (v == 0.0f && !signbit(v)) {
        kd_buf_put(b, "0", 1);
        return;
    }
    char s[48];
    float_text(v, s, sizeof s);
    kd_buf_put(b, s, strlen(s));
}

/* Line breaks every few values keep the file readable and diffs small. */
static void array_sep(kd_buf *b, size_t i, size_t n, size_t per_line)
{
    if (i + 1 == n)
        return;
    kd_buf_put(b, (i + 1) % per_line ? ", " : ",\n    ", (i + 1) % per_line ? 2 : 6);
}

void cg_floats(cg *g, const char *name, const float *v, size_t n, const char *what)
{
    if (n == 0) { /* C has no empty arrays */
        cg_printf(&g->data, "static const float %s[1] = {0};\n", name);
        return;
    }
    cg_printf(&g->data, "static const float %s[%zu] = {\n    ", name, n);
    for (size_t i = 0; i < n; i++) {
        cg_float(g, &g->data, v[i], what);
        array_sep(&g->data, i, n, 8);
    }
    cg_printf(&g->data, "\n};\n");
}

void cg_ints(cg *g, cg_int_type t, const char *name, const void *v, size_t n)
{
    static const char *const ctype[] = {"int8_t", "uint8_t", "uint16_t", "int32_t", "uint32_t"};
    if (n == 0) {
        cg_printf(&g->data, "static const %s %s[1] = {0};\n", ctype[t], name);
        return;
    }
    cg_printf(&g->data, "static const %s %s[%zu] = {\n    ", ctype[t], name, n);
    for (size_t i = 0; i < n; i++) {
        char s[24];
        switch (t) {
        case CG_I8: snprintf(s, sizeof s, "%d", ((const int8_t *)v)[i]); break;
        case CG_U8: snprintf(s, sizeof s, "%u", ((const uint8_t *)v)[i]); break;
        case CG_U16: snprintf(s, sizeof s, "%u", ((const uint16_t *)v)[i]); break;
        case CG_U32: snprintf(s, sizeof s, "%luu", (unsigned long)((const uint32_t *)v)[i]); break;
        default: { /* INT32_MIN has no literal: write it as an expression */
            int32_t x = ((const int32_t *)v)[i];
            if (x == INT32_MIN)
                snprintf(s, sizeof s, "(-2147483647 - 1)");
            else
                snprintf(s, sizeof s, "%ld", (long)x);
        }
        }
        kd_buf_put(&g->data, s, strlen(s));
        array_sep(&g->data, i, n, t == CG_I32 || t == CG_U32 ? 12 : 24);
    }
    cg_printf(&g->data, "\n};\n");
}
