/* "did you mean": the nearest of a few candidate words. */
#include <string.h>

#include "util.h"

/* Optimal string alignment distance (edits and adjacent swaps), capped inputs. */
static int edit_distance(const char *a, const char *b)
{
    enum { M = 32 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= M || m >= M)
        return M;
    int d[M + 1][M + 1];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            v = d[i][j - 1] + 1 < v ? d[i][j - 1] + 1 : v;
            v = d[i - 1][j - 1] + cost < v ? d[i - 1][j - 1] + cost : v;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

const char *kd_suggest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = 3; /* at most two edits, and fewer than the candidate's length */
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, cands[i]);
        if (d < bd && d < (int)strlen(cands[i])) {
            bd = d;
            best = cands[i];
        }
    }
    return best;
}
