/* When each rank did what, as "timeline" lines in run.log: the process
 * began, its data loaded, its teacher in hand, each job's start and end (on
 * the rank that ran it), and at the end a summary of where an MPI run's
 * time went against the ideal (its serial parts plus the jobs' work shared
 * evenly over the ranks).  Times are wall-clock seconds since rank 0's
 * process began: the ranks of one node share that clock; across nodes it is
 * as close as their clocks are synchronised (NTP: milliseconds). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

double pl_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The wall-clock time this process was started (exec'd): its start time in
 * clock ticks since boot (/proc/self/stat, field 22) against CLOCK_BOOTTIME.
 * Falls back to now where /proc is not there. */
double pl_proc_start(void)
{
    double now = pl_wall();
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ticks = 0;
    /* after ") ": state is field 3, starttime field 22 */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                            "%*d %*d %*d %llu", &ticks) != 1)
        return now;
    struct timespec bt;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0 || clock_gettime(CLOCK_BOOTTIME, &bt) != 0)
        return now;
    double age = (double)bt.tv_sec + (double)bt.tv_nsec * 1e-9 - (double)ticks / (double)hz;
    return age >= 0 && age < 1e6 ? now - age : now;
}

void pl_tl_mark(run_ctx *r, int rank, double wall, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    kd_logf(&r->log, "timeline %+8.3f s [rank %d] %s", wall - r->tl.origin, rank, what);
}

/* The setup marks of rank k > 0, from its first message. */
void pl_tl_setup(run_ctx *r, int k, const pl_rank_times *t)
{
    if (!r->tl.ranks || k < 0 || k >= r->tl.nranks || r->tl.ranks[k].start)
        return;
    pl_rank_times *x = &r->tl.ranks[k];
    x->start = t->start;
    x->data = t->data;
    x->teacher = t->teacher;
    pl_tl_mark(r, k, t->start, "process started");
    pl_tl_mark(r, k, t->data, "data loaded (%.3f s)", t->data - t->start);
    pl_tl_mark(r, k, t->teacher, "teacher in hand");
}

void pl_tl_job(run_ctx *r, int k, int job, double start, double secs)
{
    if (!r->tl.ranks || k < 0 || k >= r->tl.nranks)
        return;
    pl_rank_times *x = &r->tl.ranks[k];
    char name[160];
    pl_job_name(r, &r->jobs[job], name, sizeof name);
    pl_tl_mark(r, k, start, "job %d/%d %s: %.3f s, until %+.3f s", job + 1, r->npj, name, secs,
               start + secs - r->tl.origin);
    x->busy += secs;
    x->njobs++;
    if (!x->first || start < x->first)
        x->first = start;
    if (start + secs > x->last)
        x->last = start + secs;
}

/* Rank 0, at the end of a run: where the time went. */
void pl_tl_summary(run_ctx *r, double end)
{
    pl_timeline *t = &r->tl;
    const double o = t->origin;
    pl_tl_mark(r, 0, end, "run done");
    if (!t->ranks || !t->phase0 || !t->phase1)
        return;
    double work = 0, span = t->phase1 - t->phase0;
    for (int k = 0; k < t->nranks; k++)
        work += t->ranks[k].busy;
    double before = t->phase0 - o, after = end - t->phase1;
    double ideal = before + work / t->nranks + after;
    kd_logf(&r->log, "timeline summary: %.3f s from rank 0's start: %.3f s before the jobs "
            "(rank 0: data %.3f s, teacher %.3f s), %.3f s of jobs, %.3f s after them "
            "(rows, results, report)", end - o, before, t->ranks[0].data - o,
            t->ranks[0].teacher - t->ranks[0].data, span, after);
    for (int k = 0; k < t->nranks; k++) {
        const pl_rank_times *x = &t->ranks[k];
        char row[64] = "";
        if (k == 0 && t->teacher_row > 0)
            snprintf(row, sizeof row, " (%.3f s of it measuring the teacher)", t->teacher_row);
        kd_logf(&r->log, "timeline summary: rank %d: %d jobs, %.3f s busy of the %.3f s job "
                "phase (%.0f%%); first job at %+.3f s, %.3f s before it%s, %.3f s idle after "
                "its last, %.3f s between jobs (hand-out and delivery)",
                k, x->njobs, x->busy, span, span > 0 ? 100 * x->busy / span : 0,
                x->first ? x->first - o : 0, x->first ? x->first - t->phase0 : span, row,
                x->last ? t->phase1 - x->last : 0,
                x->first ? (x->last - x->first) - x->busy : 0);
    }
    kd_logf(&r->log, "timeline summary: ideal %.3f s (serial %.3f s + %.3f s of job work / %d "
            "ranks); lost %.3f s in the job phase", ideal, before + after, work, t->nranks,
            span - work / t->nranks);
}
