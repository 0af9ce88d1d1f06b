#ifndef TIDE_LIVE_H
#define TIDE_LIVE_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct hist;
struct metrics;

/* What a thread counts as it goes, for the per-second points and the
 * progress line. Only its own thread writes it; once a second the thread
 * hands a delta over (one lock per second, none per request). */
struct live {
    uint64_t reqs, failed, iterations, errors, dropped;
    struct hist *duration;      /* http_req_duration of the current second */
};

/* One second of one thread, or (merged) of the whole run. */
struct point {
    unsigned sec;               /* since the load started; 0 = the first second */
    uint64_t reqs, failed, iterations, errors, dropped, vus;
    struct hist *duration;
};

/* The hand-over queue and the merged seconds (owned by main). */
struct points {
    pthread_mutex_t lock;
    struct point *queue;
    size_t nqueue, capqueue;
    struct point *secs;         /* merged, index = sec */
    size_t nsecs;
    unsigned threads;
    unsigned *reported;         /* per sec: threads that handed it over */
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
