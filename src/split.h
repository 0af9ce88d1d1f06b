#ifndef TIDE_SPLIT_H
#define TIDE_SPLIT_H
#include <stdint.h>

#include "options.h"

/* Thread `thread`'s share of `total` users over `threads` threads: the
 * shares differ by at most one and add up to total. */
unsigned split_share(long long total, unsigned threads, unsigned thread);
/* The same for counts that may pass 2^32 (iterations), and what the parts
 * before `part` take together (so part `part` starts after them). */
long long split_count(long long total, unsigned parts, unsigned part);
long long split_before(long long total, unsigned parts, unsigned part);

/* Which part of a scenario one engine thread runs: segment `seg` of `segs`
 * (--segment; 0 of 1 when the run is whole), then thread `thread` of that
 * segment's `threads`. Segments are split first and threads within a
 * segment, so a segment's share never depends on how many threads it (or
 * any other segment, on another host) has. */
struct share {
    unsigned seg, segs, thread, threads;
};

/* The share of engine thread `thread` of `threads` in a run with options o. */
struct share split_thread(const struct options *o, unsigned threads, unsigned thread);
/* How many VUs this process (its segment) may use in all scenarios, and
 * the thread count cut down to it (at least one thread). */
long long split_segment_vus(const struct options *o);
void split_fit_threads(struct options *o);

/* This thread's part of `total` (users, a ramp's target, set_vus): the
 * segment's share of total, then the thread's share of that. Over all
 * segments and threads the parts add up to total, at every value of it. */
unsigned split_part(long long total, const struct share *sh);
/* The segment's part of `total`, whatever its threads. */
long long split_segment(long long total, const struct share *sh);
/* shared-iterations: the segment's part of a pool of `total` iterations
 * that `users` users share, and in *before what the segments before it
 * take. Segments split it as they split users, except that segments left
 * without a user (fewer users than segments) take none: their part would
 * never run. */
long long split_pool(long long total, long long users, const struct share *sh, long long *before);
/* Arrival-rate executors: global arrival k of the scenario's schedule is
 * this thread's when k % stride == offset. Segment seg takes every
 * arrival k = seg (mod segs) and its threads take turns over those. */
unsigned split_arrival_offset(const struct share *sh);
unsigned split_arrival_stride(const struct share *sh);

/* VU ids: scenario scen's part on this thread starts at this id. Ids run
 * 1..N over all scenarios, segments and threads, each exactly once: a
 * scenario's block of ids, in it the segment's block, in that the thread's. */
unsigned split_first_id(const struct options *o, unsigned scen, const struct share *sh);
/* The first id of scenario scen over the whole run (all segments). */
unsigned split_scen_first_id(const struct options *o, unsigned scen);

/* The integral of the arrival rate over the first t seconds of the
 * scenario (t past its end counts up to the end). */
double arrivals_by(const struct scen *s, double t);
/* Seconds from the scenario's start to global arrival k, or < 0 past the end. */
double arrival_offset(const struct scen *s, uint64_t k);
/* Users a ramping-vus scenario should run t seconds after its start. */
unsigned ramp_target(const struct scen *s, double t);

#endif
