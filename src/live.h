#ifndef TIDE_LIVE_H
#define TIDE_LIVE_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct hist;

/* A finished second keeps its histogram at 1/64 resolution (percentiles
 * within 1%): at full resolution a busy second packs to 4-6 KB, over 20 MB
 * an hour; coarse, a few hundred bytes. The run's own histograms keep full
 * resolution. */
#define SECOND_BITS 6
struct metrics;

/* What a thread counts as it goes, for the per-second points and the
 * progress line. Only its own thread writes it; once a second the thread
 * hands a delta over (one lock per second, none per request). */
struct live {
    uint64_t reqs, failed, iterations, errors, dropped;
    struct hist *duration;      /* http_req_duration of the current second */
};

/* One second of one thread, as it hands it over. */
struct point {
    unsigned sec;               /* since the load started; 0 = the first second */
    uint64_t reqs, failed, iterations, errors, dropped, vus;
    struct hist *duration;
};

/* The http_req_duration percentiles kept per second (the points' p50, p95, p99). */
#define SECOND_PERCENTILES 3
extern const double second_percentiles[SECOND_PERCENTILES];

/* One second of the whole run. Its latency histogram is kept whole only
 * until every thread has handed the second over; then it is packed (hist.h:
 * varints of the non-empty slots, a few hundred bytes where the histogram
 * holds tens of KB) and goes back to the threads, so a long run grows by
 * its packed seconds only, and the document still has every second's
 * histogram to merge exactly. */
struct second {
    unsigned sec;
    uint64_t reqs, failed, iterations, errors, dropped, vus;
    unsigned reported;          /* threads that handed it over */
    struct hist *pending;       /* their durations while some are missing; then NULL */
    unsigned char *packed;      /* once complete: hist_pack of the second's durations */
    size_t npacked;
};

/* The hand-over queue and the merged seconds (owned by main). */
struct points {
    pthread_mutex_t lock;
    struct point *queue;
    size_t nqueue, capqueue;
    struct second *secs;        /* merged, index = sec */
    size_t nsecs, capsecs;
    size_t npending;            /* seconds still holding a histogram */
    struct hist **spare;        /* emptied hand-over histograms, for the threads' next seconds */
    unsigned nspare, capspare;
    unsigned threads;
    struct hist *total;         /* every duration so far, for "p95 so far" */
    struct metrics **snaps;     /* per thread: its registry as of its last tick (abort_on_fail) */
    uint64_t reqs, failed, iterations;
};

bool live_init(struct live *lv);
void live_free(struct live *lv);
/* Thread side: hands over [last tick, now) as second sec. */
void live_tick(struct live *lv, struct points *pts, unsigned sec, uint64_t vus);

bool points_init(struct points *pts, unsigned threads);
/* Thread side, once a second when thresholds may abort: a copy of its metrics. */
void points_snapshot(struct points *pts, unsigned thread, const struct metrics *m);
/* Main side: the merged copies (caller frees), NULL if none came yet. */
struct metrics *points_merged_snapshots(struct points *pts);
void points_free(struct points *pts);
/* Main side: merges what threads handed over. */
void points_collect(struct points *pts);
/* Percentile k (of second_percentiles) of a second's http_req_duration, in
 * µs: from its histogram while some thread has not handed it over (a thread
 * that ended early), else from its packed form. */
double second_percentile(const struct second *s, unsigned k);
/* A second's http_req_duration histogram (a new one: the caller frees it). */
struct hist *second_hist(const struct second *s);
/* Bytes the merged seconds hold, for the README's cost of a long run. */
size_t points_memory(const struct points *pts);

/* The progress line. */
struct progress {
    FILE *out;
    bool tty;
    double every;               /* seconds between lines when not a tty */
    double total;               /* seconds planned, 0 if iteration-bound */
    uint64_t iterations_total;  /* when iteration-bound */
    double last;
    size_t shown_secs;
};
void progress_show(struct progress *pr, const struct points *pts, double elapsed, bool final);

#endif
