/* Text read from a run directory on its way out.  Names come from files that
 * other people wrote, so every destination gets them through one escaper:
 * a gnuplot string literal, a gnuplot data-file label, a markdown cell or
 * line, HTML, CSV, or plain text for the terminal.  What is unsafe is decided
 * in one place (rep_text_unsafe) and replaced by '?' everywhere. */
#include <string.h>

#include "internal.h"

#define BAD REP_TEXT_BAD

/* One UTF-8 sequence at s (shortest form, no surrogates, <= U+10FFFF);
 * returns its length, or 1 with *cp = BAD for an invalid byte. */
static size_t next(const unsigned char *s, unsigned *cp)
{
    unsigned c = s[0], extra = c >= 0xF0 && c < 0xF5 ? 3 : c >= 0xE0 && c < 0xF0 ? 2
                               : c >= 0xC2 && c < 0xE0 ? 1 : 0;
    *cp = c;
    if (c < 0x80)
        return 1;
    *cp = BAD;
    if (!extra)
        return 1;
    unsigned v = c & (0x3F >> extra);
    for (unsigned k = 1; k <= extra; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 1;
        v = v << 6 | (s[k] & 0x3F);
    }
    if ((extra == 2 && (v < 0x800 || (v >= 0xD800 && v < 0xE000))) ||
        (extra == 3 && (v < 0x10000 || v > 0x10FFFF)))
        return 1;
    *cp = v;
    return extra + 1;
}

int rep_text_unsafe(unsigned cp)
{
    return cp == BAD || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) /* DEL, C1 with NEL */
           || cp == 0x2028 || cp == 0x2029                       /* line/paragraph sep. */
           || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) /* bidi */
           || cp == 0xFEFF;
}

/* Appends s to b: unsafe characters as '?', and an ASCII byte that map
 * (may be NULL) has a replacement for as that replacement. */
typedef const char *(*text_map)(char c);
static void put_mapped(kd_buf *b, const char *s, text_map map)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp;
        size_t k = next(p, &cp);
        const char *m = cp < 0x80 && map ? map((char)cp) : NULL;
        if (rep_text_unsafe(cp))
            kd_buf_put(b, "?", 1);
        else if (m)
            kd_buf_put(b, m, strlen(m));
        else
            kd_buf_put(b, p, k);
        p += k;
    }
}

size_t rep_text_clean(char *dst, size_t n, const char *src)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0;
    if (!n)
        return 0;
    while (*p) {
        unsigned cp;
        size_t k = next(p, &cp);
        int bad = rep_text_unsafe(cp);
        size_t w = bad ? 1 : k;
        if (o + w >= n) /* never half a character */
            break;
        if (bad)
            dst[o] = '?';
        else
            memcpy(dst + o, p, k);
        o += w;
        p += k;
    }
    dst[o] = 0;
    return o;
}

/* ---- gnuplot ------------------------------------------------------------------- */

static const char *gp_map(char c)
{
    return c == '\'' ? "\xE2\x80\x99" : NULL; /* U+2019 */
}

/* Single quotes: gnuplot expands nothing inside them (no backquote command,
 * no macro, no backslash escape); the only special character is the quote.
 * Its escape '' is not usable: gnuplot 5.4 ends the string early at ''''
 * or a leading '' ('a''''b' is a syntax error), so a quote is written as
 * the typographic ’ and the literal never holds a ' at all. */
void rep_gp_str(kd_buf *b, const char *s)
{
    kd_buf_put(b, "'", 1);
    put_mapped(b, s, gp_map);
    kd_buf_put(b, "'", 1);
}

static const char *dat_map(char c)
{
    return c == '"' ? "'" : NULL;
}

/* a data file has no escape for '"': it becomes ', and a label never spans lines */
void rep_dat_str(kd_buf *b, const char *s)
{
    kd_buf_put(b, "\"", 1);
    put_mapped(b, s, dat_map);
    kd_buf_put(b, "\"", 1);
}

/* ---- markdown, HTML -------------------------------------------------------------- */

static const char *md_map(char c)
{
    static const char special[] = "\\`*_[]<>|~&$";
    static const char *const esc[] = {"\\\\", "\\`", "\\*", "\\_", "\\[", "\\]", "\\<",
                                      "\\>",  "\\|", "\\~", "\\&", "\\$"};
    _Static_assert(sizeof esc / sizeof esc[0] == sizeof special - 1, "one escape each");
    const char *k = c ? strchr(special, c) : NULL;
    return k ? esc[k - special] : NULL;
}

/* a backslash before every character markdown could read as syntax (emphasis,
 * code, links, raw HTML, table cells, entities, math) */
void rep_md_esc(kd_buf *b, const char *s)
{
    put_mapped(b, s, md_map);
}

static const char *html_map(char c)
{
    return c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '"' ? "&quot;"
           : c == '\'' ? "&#39;" : NULL;
}

void rep_html_esc(kd_buf *b, const char *s)
{
    put_mapped(b, s, html_map);
}

/* ---- CSV, terminal ------------------------------------------------------------------ */

/* faithful (results.csv keeps every byte of a note); callers that print to
 * a terminal clean the text first */
void rep_csv_str(kd_buf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        kd_buf_put(b, s, strlen(s));
        return;
    }
    kd_buf_put(b, "\"", 1);
    for (; *s; s++) { /* a quote is doubled */
        if (*s == '"')
            kd_buf_put(b, "\"", 1);
        kd_buf_put(b, s, 1);
    }
    kd_buf_put(b, "\"", 1);
}

void rep_text_put(kd_buf *b, const char *s)
{
    put_mapped(b, s, NULL);
}
