/* Greedy placement of point labels in a scatter plot: each label goes to the
 * candidate position (right, left, above, below ...) that overlaps least with
 * the labels already placed, the points and the plot border. */
#include <math.h>

#include "internal.h"

typedef rep_box box;

static double overlap(box a, box b)
{
    double w = fmin(a.x1, b.x1) - fmax(a.x0, b.x0), h = fmin(a.y1, b.y1) - fmax(a.y0, b.y0);
    return w > 0 && h > 0 ? w * h : 0;
}

static double outside(box a)
{
    box in = {0, 0, 1, 1};
    return (a.x1 - a.x0) * (a.y1 - a.y0) - overlap(a, in);
}

/* candidate k for a label of size w x h beside point (x, y); align as in the header */
static box candidate(int k, double x, double y, double w, double h, double gap, int *align)
{
    static const int al[8] = {1, -1, 1, 1, -1, -1, 0, 0};
    static const double dy[8] = {0, 0, 1, -1, 1, -1, 1.2, -1.2};
    double cy = y + dy[k] * (h * 0.5 + gap * 0.6);
    double x0 = al[k] == 1 ? x + gap : al[k] == -1 ? x - gap - w : x - w / 2;
    *align = al[k];
    return (box){x0, cy - h / 2, x0 + w, cy + h / 2};
}

void rep_place_labels(const double *px, const double *py, const int *len, int n, double cw,
                      double ch, const rep_box *obst, int nobst, double *lx, double *ly,
                      int *align)
{
    box placed[REP_DOC_MAXPTS];
    double gap = cw * 1.2;
    for (int i = 0; i < n && i < REP_DOC_MAXPTS; i++) {
        double best = INFINITY, w = len[i] * cw;
        for (int k = 0; k < 8; k++) {
            int a;
            box b = candidate(k, px[i], py[i], w, ch, gap, &a);
            double cost = 4 * outside(b) + 1e-6 * k; /* ties: the first candidate */
            for (int j = 0; j < i; j++)
                cost += overlap(b, placed[j]);
            for (int j = 0; j < nobst; j++)
                cost += 2 * overlap(b, obst[j]);
            if (cost < best) {
                best = cost;
                placed[i] = b;
                align[i] = a;
                ly[i] = (b.y0 + b.y1) / 2;
                lx[i] = a == 1 ? b.x0 : a == -1 ? b.x1 : (b.x0 + b.x1) / 2;
            }
        }
    }
}
