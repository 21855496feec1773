/* The accuracy-vs-size Pareto front. */
#include "reports.h"

static int measured(double size, double acc)
{
    return size > 0 && acc >= 0;
}

/* a dominates b: no larger, no less accurate, and strictly better in one */
static int dominates(double sa, double aa, double sb, double ab)
{
    return sa <= sb && aa >= ab && (sa < sb || aa > ab);
}

int rep_pareto(const double *size, const double *acc, int n, int *on_front)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        on_front[i] = measured(size[i], acc[i]);
        for (int j = 0; j < n && on_front[i]; j++)
            if (j != i && measured(size[j], acc[j]) &&
                dominates(size[j], acc[j], size[i], acc[i]))
                on_front[i] = 0;
        count += on_front[i];
    }
    return count;
}
