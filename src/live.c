#include "live.h"
#include "hist.h"
#include "metrics.h"
#include "xmalloc.h"

#include <stdlib.h>
#include <string.h>

const double second_percentiles[SECOND_PERCENTILES] = {50, 95, 99};

bool live_init(struct live *lv)
{
    memset(lv, 0, sizeof *lv);
    lv->duration = hist_new();
    return true;
}

void live_free(struct live *lv)
{
    hist_free(lv->duration);
    lv->duration = NULL;
}

/* A histogram main has emptied, else a new one: once warm, the hand-over
 * allocates nothing (allocations and frees across threads, every second,
 * made glibc's heap creep). */
static struct hist *next_hist(struct points *pts)
{
    pthread_mutex_lock(&pts->lock);
    struct hist *h = pts->nspare ? pts->spare[--pts->nspare] : NULL;
    pthread_mutex_unlock(&pts->lock);
    return h ? h : hist_new();
}

void live_tick(struct live *lv, struct points *pts, unsigned sec, uint64_t vus)
{
    struct hist *fresh = next_hist(pts);
    struct point p = {.sec = sec, .reqs = lv->reqs, .failed = lv->failed,
                      .iterations = lv->iterations, .errors = lv->errors,
                      .dropped = lv->dropped, .vus = vus, .duration = lv->duration};
    lv->duration = fresh;
    lv->reqs = lv->failed = lv->iterations = lv->errors = lv->dropped = 0;
    pthread_mutex_lock(&pts->lock);
    if (pts->nqueue == pts->capqueue) {
        pts->capqueue = pts->capqueue ? pts->capqueue * 2 : 64;
        pts->queue = xrealloc(pts->queue, pts->capqueue * sizeof *pts->queue);
    }
    pts->queue[pts->nqueue++] = p;
    pthread_mutex_unlock(&pts->lock);
}

/* Main side: a histogram it is done with goes back to the threads. */
static void recycle(struct points *pts, struct hist *h)
{
    if (!h)
        return;
    hist_clear(h);
    pthread_mutex_lock(&pts->lock);
    bool kept = pts->nspare < pts->capspare;
    if (kept)
        pts->spare[pts->nspare++] = h;
    pthread_mutex_unlock(&pts->lock);
    if (!kept)
        hist_free(h);
}

bool points_init(struct points *pts, unsigned threads)
{
    memset(pts, 0, sizeof *pts);
    pts->threads = threads;
    pthread_mutex_init(&pts->lock, NULL);
    pts->snaps = xcalloc(threads, sizeof *pts->snaps);
    pts->capspare = 2 * threads + 2; /* each thread's next, and seconds in flight */
    pts->spare = xcalloc(pts->capspare, sizeof *pts->spare);
    pts->total = hist_new();
    return true;
}

void points_free(struct points *pts)
{
    for (size_t i = 0; i < pts->nqueue; i++)
        hist_free(pts->queue[i].duration);
    for (size_t i = 0; i < pts->nsecs; i++) {
        hist_free(pts->secs[i].pending);
        free(pts->secs[i].packed);
    }
    for (unsigned i = 0; i < pts->nspare; i++)
        hist_free(pts->spare[i]);
    free(pts->spare);
    free(pts->queue);
    free(pts->secs);
    hist_free(pts->total);
    for (unsigned i = 0; pts->snaps && i < pts->threads; i++)
        metrics_free(pts->snaps[i]);
    free(pts->snaps);
    pthread_mutex_destroy(&pts->lock);
}

void points_snapshot(struct points *pts, unsigned thread, const struct metrics *m)
{
    struct metrics *copy = metrics_new();
    if (!metrics_merge(copy, m)) {
        metrics_free(copy);
        return;
    }
    pthread_mutex_lock(&pts->lock);
    struct metrics *old = pts->snaps[thread];
    pts->snaps[thread] = copy;
    pthread_mutex_unlock(&pts->lock);
    metrics_free(old);
}

struct metrics *points_merged_snapshots(struct points *pts)
{
    struct metrics *all = metrics_new();
    bool any = false;
    pthread_mutex_lock(&pts->lock);
    for (unsigned i = 0; i < pts->threads; i++)
        if (pts->snaps[i]) {
            any = true;
            metrics_merge(all, pts->snaps[i]);
        }
    pthread_mutex_unlock(&pts->lock);
    if (!any) {
        metrics_free(all);
        return NULL;
    }
    return all;
}

static void grow_secs(struct points *pts, unsigned sec)
{
    if (sec < pts->nsecs)
        return;
    if (sec >= pts->capsecs) {
        size_t cap = pts->capsecs ? pts->capsecs * 2 : 64;
        while (cap <= sec)
            cap *= 2;
        pts->secs = xrealloc(pts->secs, cap * sizeof *pts->secs);
        pts->capsecs = cap;
    }
    for (size_t i = pts->nsecs; i <= sec; i++)
        pts->secs[i] = (struct second){.sec = (unsigned)i};
    pts->nsecs = (size_t)sec + 1;
}

/* Every thread handed the second over: its packed histogram is all it keeps. */
static void complete(struct points *pts, struct second *d)
{
    if (d->pending) {
        hist_coarsen(d->pending, SECOND_BITS);
        d->npacked = hist_pack(d->pending, &d->packed);
    }
    recycle(pts, d->pending);
    d->pending = NULL;
    pts->npending--;
}

/* Takes p's histogram: kept as the second's own, merged into it, or freed. */
static void merge_durations(struct points *pts, struct second *d, struct hist *h)
{
    if (d->reported == 1) {
        d->pending = h;         /* the first thread's; merge the others into it */
        pts->npending++;
        return;
    }
    if (d->pending)
        hist_merge(d->pending, h);
    recycle(pts, h);
}

static void merge_point(struct points *pts, struct point *p)
{
    hist_merge(pts->total, p->duration);
    pts->reqs += p->reqs;
    pts->failed += p->failed;
    pts->iterations += p->iterations;
    grow_secs(pts, p->sec);
    struct second *d = &pts->secs[p->sec];
    d->reqs += p->reqs;
    d->failed += p->failed;
    d->iterations += p->iterations;
    d->errors += p->errors;
    d->dropped += p->dropped;
    d->vus += p->vus;
    d->reported++;
    merge_durations(pts, d, p->duration);
    if (d->reported == pts->threads)
        complete(pts, d);
}

struct hist *second_hist(const struct second *s)
{
    if (s->pending)
        return hist_clone(s->pending);
    struct hist *h = s->packed ? hist_unpack(s->packed, s->npacked) : NULL;
    return h ? h : hist_new();
}

double second_percentile(const struct second *s, unsigned k)
{
    if (s->pending)
        return hist_percentile(s->pending, second_percentiles[k]);
    struct hist *h = second_hist(s);
    double v = hist_percentile(h, second_percentiles[k]);
    hist_free(h);
    return v;
}

size_t points_memory(const struct points *pts)
{
    size_t bytes = pts->capsecs * sizeof *pts->secs;
    for (size_t i = 0; i < pts->nsecs; i++)
        bytes += pts->secs[i].npacked;
    return bytes;
}

void points_collect(struct points *pts)
{
    pthread_mutex_lock(&pts->lock);
    struct point *q = pts->queue;
    size_t n = pts->nqueue;
    pts->queue = NULL;
    pts->nqueue = pts->capqueue = 0;
    pthread_mutex_unlock(&pts->lock);
    for (size_t i = 0; i < n; i++)
        merge_point(pts, &q[i]);
    free(q);
}

/* The newest second every thread has handed over, or NULL. */
static const struct second *last_complete(const struct points *pts)
{
    for (size_t i = pts->nsecs; i-- > 0;)
        if (pts->secs[i].reported >= pts->threads)
            return &pts->secs[i];
    return NULL;
}

static void fmt_ms(char *buf, size_t len, double us)
{
    if (us >= 1e6)
        snprintf(buf, len, "%.2fs", us / 1e6);
    else
        snprintf(buf, len, "%.2fms", us / 1e3);
}

void progress_show(struct progress *pr, const struct points *pts, double elapsed, bool final)
{
    if (!pr->out)
        return;
    if (final) {
        if (pr->tty)
            fprintf(pr->out, "\r\033[K");
        fflush(pr->out);
        return;
    }
    if (elapsed - pr->last < (pr->tty ? 1.0 : pr->every))
        return;
    pr->last = elapsed;
    const struct second *p = last_complete(pts);
    char where[64], p95[32];
    if (pr->total > 0)
        snprintf(where, sizeof where, "%.0fs/%.0fs", elapsed, pr->total);
    else
        snprintf(where, sizeof where, "%llu/%llu iterations", (unsigned long long)pts->iterations,
                 (unsigned long long)pr->iterations_total);
    fmt_ms(p95, sizeof p95, hist_percentile(pts->total, 95));
    fprintf(pr->out, "%s  %s  vus %llu  %llu req/s  failed %.2f%%  p95 %s%s", pr->tty ? "\r\033[K" : "",
            where, (unsigned long long)(p ? p->vus : 0), (unsigned long long)(p ? p->reqs : 0),
            pts->reqs ? 100.0 * (double)pts->failed / (double)pts->reqs : 0.0, p95, pr->tty ? "" : "\n");
    fflush(pr->out);
}
