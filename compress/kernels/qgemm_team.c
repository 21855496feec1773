/* One int8 product split across an nn_team by panels of rows.
 *
 * Why: at batch 1 the int8 MLP is bound by where its weights live.  Split by
 * panels, each core streams the same rows on every call, so each core's L2
 * keeps its own share (2.4 MB of int8 weights do not fit one 2 MB L2, half of
 * them do).  At batch 256 it simply doubles the arithmetic. */
#include "internal.h"

typedef struct {
    qgemm_isa isa;
    const qgemm_packed *w;
    const int8_t *x;
    int nx;
    const qgemm_epi *ep;
    void *y;
} team_job;

/* Part `part` of nparts: an even split of the panels in order. */
static void team_part(void *arg, int part, int nparts)
{
    const team_job *j = arg;
    int np = j->w->mp / 16;
    int pb = (int)((long)np * part / nparts), pe = (int)((long)np * (part + 1) / nparts);
    if (pb < pe)
        qgemm_run_part(j->isa, j->w, j->x, j->nx, j->ep, j->y, pb, pe);
}

void qgemm_team_run(nn_team *t, qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
                    const qgemm_epi *ep, void *y)
{
    if (nn_team_size(t) == 1) {
        qgemm_run(isa, w, x, n, ep, y);
        return;
    }
    team_job j = {.isa = isa, .w = w, .x = x, .nx = n, .ep = ep, .y = y};
    nn_team_run(t, team_part, &j);
}
