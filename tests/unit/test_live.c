/* Unit tests for src/live.c: the per-second points keep percentiles, not
 * histograms, once every thread has handed a second over. */
#include <stdlib.h>

#include "check.h"
#include "hist.h"
#include "live.h"

#define THREADS 2
#define SECONDS 300

/* What thread t records in second s: a spread over many octaves, so a
 * histogram of one second would hold many chunks. */
static void record_second(struct live *lv, struct hist *ref, unsigned t, unsigned s)
{
    for (unsigned i = 0; i < 200; i++) {
        uint64_t us = 1 + ((uint64_t)(i * 7919u + s * 31u + t * 17u) % 2000000u);
        hist_record(lv->duration, us);
        hist_record(ref, us);
    }
    lv->reqs += 200;
}

static void test_complete_seconds_keep_no_histogram(void)
{
    struct points pts;
    struct live lv[THREADS];
    struct hist *ref[SECONDS];
    CHECK(points_init(&pts, THREADS));
    for (unsigned t = 0; t < THREADS; t++)
        CHECK(live_init(&lv[t]));
    for (unsigned s = 0; s < SECONDS; s++) {
        ref[s] = hist_new();
        for (unsigned t = 0; t < THREADS; t++) {
            record_second(&lv[t], ref[s], t, s);
            live_tick(&lv[t], &pts, s, 10);
        }
        if (s % 7 == 0)
            points_collect(&pts);
    }
    points_collect(&pts);
    CHECK(pts.nsecs == SECONDS);
    CHECK(pts.npending == 0);
    /* the emptied histograms wait for the threads' next seconds */
    CHECK(pts.nspare > 0 && pts.nspare <= pts.capspare);
    for (unsigned s = 0; s < SECONDS; s++) {
        const struct second *d = &pts.secs[s];
        CHECK(d->sec == s && d->reported == THREADS && d->reqs == 200 * THREADS && d->vus == 10 * THREADS);
        CHECK(d->pending == NULL);
        hist_coarsen(ref[s], SECOND_BITS); /* as a finished second keeps it */
        for (unsigned k = 0; k < SECOND_PERCENTILES; k++)
            CHECK(second_percentile(d, k) == hist_percentile(ref[s], second_percentiles[k]));
        hist_free(ref[s]);
    }
    for (unsigned t = 0; t < THREADS; t++)
        live_free(&lv[t]);
    points_free(&pts);
}

/* A thread that ended early never hands the later seconds over: they keep
 * their histogram, and their percentiles come from it. */
static void test_seconds_of_an_ended_thread(void)
{
    struct points pts;
    struct live lv[THREADS];
    CHECK(points_init(&pts, THREADS));
    for (unsigned t = 0; t < THREADS; t++)
        CHECK(live_init(&lv[t]));
    struct hist *ref = hist_new();
    for (unsigned s = 0; s < 5; s++) {
        for (unsigned t = 0; t < THREADS; t++) {
            if (t == 1 && s >= 3)
                continue;
            struct hist *scratch = hist_new();
            record_second(&lv[t], s == 4 ? ref : scratch, t, s);
            hist_free(scratch);
            live_tick(&lv[t], &pts, s, 1);
        }
    }
    points_collect(&pts);
    CHECK(pts.nsecs == 5 && pts.npending == 2);
    CHECK(pts.secs[2].pending == NULL && pts.secs[3].pending && pts.secs[4].pending);
    for (unsigned k = 0; k < SECOND_PERCENTILES; k++)
        CHECK(second_percentile(&pts.secs[4], k) == hist_percentile(ref, second_percentiles[k]));
    hist_free(ref);
    for (unsigned t = 0; t < THREADS; t++)
        live_free(&lv[t]);
    points_free(&pts);
}

/* A second without requests: percentiles 0. */
static void test_empty_second(void)
{
    struct points pts;
    struct live lv;
    CHECK(points_init(&pts, 1));
    CHECK(live_init(&lv));
    live_tick(&lv, &pts, 0, 0);
    points_collect(&pts);
    CHECK(pts.nsecs == 1 && pts.secs[0].pending == NULL);
    for (unsigned k = 0; k < SECOND_PERCENTILES; k++)
        CHECK(second_percentile(&pts.secs[0], k) == 0);
    live_free(&lv);
    points_free(&pts);
}

int main(void)
{
    test_complete_seconds_keep_no_histogram();
    test_seconds_of_an_ended_thread();
    test_empty_second();
    if (check_failures) {
        fprintf(stderr, "live: %d check(s) failed\n", check_failures);
        return 1;
    }
    puts("live: ok");
    return 0;
}
