/* The split arithmetic (split.c): users shared over threads, their ids,
 * ramp targets and arrival times. Scenarios are plain structs here: the
 * arithmetic needs no options parser, no Lua and no clock. */
#include "check.h"
#include "options.h"
#include "split.h"

#include <string.h>

static struct scen scen_of(enum executor e)
{
    struct scen s;
    memset(&s, 0, sizeof s);
    s.executor = e;
    s.duration = -1;
    return s;
}

static void add_stage(struct scen *s, double duration, double target)
{
    s->stages[s->nstages++] = (struct stage){duration, target};
    s->duration = s->duration < 0 ? duration : s->duration + duration;
}

/* Shares differ by at most one, the first threads take the remainder, and
 * they add up to the total whatever the numbers. */
static void test_shares(void)
{
    CHECK(split_share(10, 3, 0) == 4 && split_share(10, 3, 1) == 3 && split_share(10, 3, 2) == 3);
    CHECK(split_share(2, 4, 0) == 1 && split_share(2, 4, 1) == 1 && split_share(2, 4, 2) == 0 &&
          split_share(2, 4, 3) == 0);
    CHECK(split_share(0, 3, 0) == 0 && split_share(7, 1, 0) == 7);
    CHECK(split_share(1000000, 1024, 1023) == 976 && split_share(1000000, 1024, 0) == 977);
    for (long long total = 0; total < 200; total += 7)
        for (unsigned threads = 1; threads <= 17; threads++) {
            long long sum = 0;
            unsigned lo = ~0u, hi = 0;
            for (unsigned t = 0; t < threads; t++) {
                unsigned n = split_share(total, threads, t);
                sum += n;
                lo = n < lo ? n : lo;
                hi = n > hi ? n : hi;
                if (t)
                    CHECK(n <= split_share(total, threads, t - 1));
            }
            if (!CHECK(sum == total && hi - lo <= 1))
                fprintf(stderr, "  %lld over %u threads: sum %lld, %u..%u\n", total, threads, sum, lo, hi);
        }
}

/* Ids run 1..N over every scenario and thread, each exactly once. */
static void test_first_ids(void)
{
    struct options o;
    memset(&o, 0, sizeof o);
    o.nscen = 3;
    o.scen[0] = scen_of(EXEC_CONSTANT_VUS);
    o.scen[0].vus = 5;
    o.scen[1] = scen_of(EXEC_CONSTANT_ARRIVAL_RATE);
    o.scen[1].max_vus = 7;
    o.scen[2] = scen_of(EXEC_PER_VU_ITERATIONS);
    o.scen[2].vus = 2;
    enum { THREADS = 3, TOTAL = 14 };
    int seen[TOTAL + 2] = {0};
    for (unsigned s = 0; s < 3; s++)
        for (unsigned t = 0; t < THREADS; t++) {
            struct share sh = split_thread(&o, THREADS, t);
            unsigned first = split_first_id(&o, s, &sh);
            unsigned n = split_part(scen_max_vus(&o.scen[s]), &sh);
            for (unsigned id = first; id < first + n; id++)
                if (CHECK(id >= 1 && id <= TOTAL))
                    seen[id]++;
        }
    for (int id = 1; id <= TOTAL; id++)
        if (!CHECK(seen[id] == 1))
            fprintf(stderr, "  id %d handed out %d times\n", id, seen[id]);
    struct share t0 = split_thread(&o, THREADS, 0), t1 = split_thread(&o, THREADS, 1);
    CHECK(split_first_id(&o, 0, &t0) == 1 && split_first_id(&o, 0, &t1) == 3);
    CHECK(split_first_id(&o, 1, &t0) == 6 && split_first_id(&o, 2, &t1) == 14);
}

/* Segments, then threads within each: every id exactly once whatever the
 * thread counts of the segments (hosts differ), a segment's users and ids
 * the same whatever its threads, and arrivals each taken once. */
static void test_segments(void)
{
    struct options o;
    memset(&o, 0, sizeof o);
    o.nscen = 2;
    o.scen[0] = scen_of(EXEC_CONSTANT_VUS);
    o.scen[0].vus = 10;
    o.scen[1] = scen_of(EXEC_PER_VU_ITERATIONS);
    o.scen[1].vus = 7;
    enum { SEGS = 3, TOTAL = 17 };
    int seen[TOTAL + 2] = {0};
    o.segments = SEGS;
    for (unsigned seg = 0; seg < SEGS; seg++) {
        o.segment = seg;
        unsigned threads = seg + 1; /* segment 1 one thread, segment 2 two, ... */
        for (unsigned s = 0; s < 2; s++) {
            long long in_seg = 0;
            for (unsigned t = 0; t < threads; t++) {
                struct share sh = split_thread(&o, threads, t);
                unsigned first = split_first_id(&o, s, &sh), n = split_part(scen_max_vus(&o.scen[s]), &sh);
                in_seg += n;
                for (unsigned id = first; id < first + n; id++)
                    if (CHECK(id >= 1 && id <= TOTAL))
                        seen[id]++;
            }
            CHECK(in_seg == split_count(scen_max_vus(&o.scen[s]), SEGS, seg));
        }
    }
    for (int id = 1; id <= TOTAL; id++)
        if (!CHECK(seen[id] == 1))
            fprintf(stderr, "  id %d handed out %d times over segments\n", id, seen[id]);
    /* 10 users over 3 segments: 4, 3, 3; ids 1-4, 5-7, 8-10 */
    o.segment = 1;
    struct share one = split_thread(&o, 1, 0);
    CHECK(split_part(10, &one) == 3 && split_first_id(&o, 0, &one) == 5 && split_first_id(&o, 1, &one) == 14);
    CHECK(split_scen_first_id(&o, 1) == 11);
    /* a ramp's target splits so that the segments' sum is the target at every value */
    for (long long g = 0; g <= 40; g++) {
        long long sum = 0;
        for (unsigned seg = 0; seg < SEGS; seg++)
            for (unsigned t = 0; t < 2; t++) {
                struct share sh = {.seg = seg, .segs = SEGS, .thread = t, .threads = 2};
                sum += split_part(g, &sh);
            }
        CHECK(sum == g);
    }
    /* arrivals 0..99: each taken by exactly one (segment, thread) */
    int taken[100] = {0};
    for (unsigned seg = 0; seg < SEGS; seg++)
        for (unsigned t = 0; t < 4; t++) {
            struct share sh = {.seg = seg, .segs = SEGS, .thread = t, .threads = 4};
            for (unsigned k = split_arrival_offset(&sh); k < 100; k += split_arrival_stride(&sh))
                taken[k]++;
        }
    for (int k = 0; k < 100; k++)
        CHECK(taken[k] == 1);
    /* a pool of 5 iterations for 2 users over 3 segments: the third has no user, so no iterations */
    long long before, pool_sum = 0;
    for (unsigned seg = 0; seg < SEGS; seg++) {
        struct share sh = {.seg = seg, .segs = SEGS, .threads = 1};
        long long n = split_pool(5, 2, &sh, &before);
        CHECK(before == pool_sum && (seg < 2 ? n > 0 : n == 0));
        pool_sum += n;
    }
    CHECK(pool_sum == 5);
    /* counts past 2^32 split exactly too */
    long long big = 9007199254740991LL, sum = 0;
    for (unsigned seg = 0; seg < 7; seg++) {
        CHECK(split_before(big, 7, seg) == sum);
        sum += split_count(big, 7, seg);
    }
    CHECK(sum == big && split_before(big, 7, 7) == big);
}

static void test_ramp_targets(void)
{
    struct scen s = scen_of(EXEC_RAMPING_VUS);
    s.start_vus = 2;
    add_stage(&s, 10, 10);
    add_stage(&s, 5, 0);
    CHECK(ramp_target(&s, 0) == 2 && ramp_target(&s, 5) == 6);
    CHECK(ramp_target(&s, 10) == 10 && ramp_target(&s, 12.5) == 5);
    CHECK(ramp_target(&s, 15) == 0 && ramp_target(&s, 99) == 0);
    /* floor, with a hair of slack for values that land on an integer */
    CHECK(ramp_target(&s, 1.24) == 2 && ramp_target(&s, 1.25) == 3);
    /* a hold stage, then a ramp that ends on a plateau held forever after */
    struct scen h = scen_of(EXEC_RAMPING_VUS);
    add_stage(&h, 3, 4);
    add_stage(&h, 2, 4);
    add_stage(&h, 1, 7);
    CHECK(ramp_target(&h, 0) == 0 && ramp_target(&h, 3) == 4 && ramp_target(&h, 4.9) == 4);
    CHECK(ramp_target(&h, 5.5) == 5 && ramp_target(&h, 6) == 7 && ramp_target(&h, 600) == 7);
    /* never above the largest target, never below the smallest, along the way */
    for (double t = 0; t < 20; t += 0.01) {
        unsigned n = ramp_target(&s, t);
        CHECK(n <= 10);
    }
}

static void test_constant_arrivals(void)
{
    struct scen s = scen_of(EXEC_CONSTANT_ARRIVAL_RATE);
    s.rate = 200;
    s.duration = 5;
    CHECK(arrival_offset(&s, 0) == 0 && arrival_offset(&s, 999) < 5);
    CHECK_NEAR(arrival_offset(&s, 100), 0.5, 1e-12);
    CHECK(arrival_offset(&s, 1000) < 0);
    CHECK_NEAR(arrivals_by(&s, 2.5), 500, 1e-12);
    CHECK_NEAR(arrivals_by(&s, 99), 1000, 1e-12);
    /* time_unit: 3 per 2 s over 4 s is 6 */
    s.rate = 3;
    s.time_unit = 2;
    s.duration = 4;
    CHECK_NEAR(arrival_offset(&s, 1), 2.0 / 3, 1e-12);
    CHECK(arrival_offset(&s, 5) < 4 && arrival_offset(&s, 6) < 0);
    CHECK_NEAR(arrivals_by(&s, 4), 6, 1e-12);

    s.rate = 1e9;
    s.time_unit = 0;
    s.duration = 1;
    CHECK_NEAR(arrivals_by(&s, 0.5), 5e8, 1e-12);
    CHECK_NEAR(arrivals_by(&s, 99), 1e9, 1e-12);
    CHECK(arrival_offset(&s, 999999999) >= 0 && arrival_offset(&s, 1000000000) < 0);
}

static void test_ramping_arrivals(void)
{
    /* ramping from 0 to 10/s over 10 s then 10/s for 10 s: 50 + 100 iterations */
    struct scen s = scen_of(EXEC_RAMPING_ARRIVAL_RATE);
    add_stage(&s, 10, 10);
    add_stage(&s, 10, 10);
    CHECK(arrival_offset(&s, 149) > 19 && arrival_offset(&s, 149) < 20);
    CHECK(arrival_offset(&s, 150) < 0);
    CHECK_NEAR(arrival_offset(&s, 50), 10, 1e-9);
    CHECK_NEAR(arrival_offset(&s, 8), 4, 1e-9); /* t^2/2 = 8 */
    CHECK_NEAR(arrivals_by(&s, 20), 150, 1e-12);

    /* 5/s up to 15/s over 10 s (100), then down to 0 over 5 s (37.5) */
    struct scen r = scen_of(EXEC_RAMPING_ARRIVAL_RATE);
    r.start_rate = 10;
    r.time_unit = 2;
    add_stage(&r, 10, 30);
    add_stage(&r, 5, 0);
    CHECK_NEAR(arrivals_by(&r, 10), 100, 1e-12);
    CHECK_NEAR(arrivals_by(&r, 15), 137.5, 1e-12);
    CHECK_NEAR(arrivals_by(&r, 5), 5 * 5 + 0.5 * 5 * 5, 1e-12);
    CHECK_NEAR(arrivals_by(&r, 1000), 137.5, 1e-12);
    /* arrivals_by, the integral of the rate, agrees with arrival_offset: the
     * arrivals due by t are those whose offset is at most t */
    double prev = -1;
    for (uint64_t k = 0; k < 138; k++) {
        double t = arrival_offset(&r, k);
        CHECK(t >= 0 && t > prev && arrivals_by(&r, t) >= (double)k - 1e-6 &&
              arrivals_by(&r, t) <= (double)k + 1e-6);
        prev = t;
    }
    CHECK(arrival_offset(&r, 138) < 0);

    /* a flat stage at a start rate: no division by a zero slope */
    struct scen f = scen_of(EXEC_RAMPING_ARRIVAL_RATE);
    f.start_rate = 4;
    add_stage(&f, 2, 4);
    CHECK_NEAR(arrival_offset(&f, 3), 0.75, 1e-12);
    CHECK(arrival_offset(&f, 7) < 2 && arrival_offset(&f, 8) < 0);
}

int main(void)
{
    test_shares();
    test_first_ids();
    test_segments();
    test_ramp_targets();
    test_constant_arrivals();
    test_ramping_arrivals();
    return check_report("split");
}
