#ifndef TIDE_HIST_H
#define TIDE_HIST_H
/* Log-linear latency histogram (HdrHistogram-style) of unsigned microseconds.
 *
 * Slot layout: values below 2048 get one slot each; above that, octave
 * [1024<<k, 2048<<k) is split into 1024 slots of width 2^k, so a value is
 * known to within 1/1024 of itself (the reported slot midpoint is within
 * ~0.05%).  Global slot indexes run 0 .. hist_slots()-1 in value order and
 * are stable: they are what the serialised form stores.
 *
 * Counts live in 1024-slot chunks allocated on first use, so a histogram of
 * latencies spanning a few octaves costs tens of KB rather than ~185 KB.
 * Not thread-safe: one writer per histogram, merge to aggregate. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_MAX_US 3600000000ULL /* 1 h; larger values are clamped to this */

struct hist; /* opaque */

struct hist *hist_new(void); /* NULL on out-of-memory */
void hist_free(struct hist *h); /* NULL ok */

/* Values above HIST_MAX_US are recorded as HIST_MAX_US (also in min/max/sum)
 * and counted by hist_clamped().  False only when a chunk allocation fails,
 * in which case nothing is recorded.  n == 0 records nothing. */
bool hist_record(struct hist *h, uint64_t us);
bool hist_record_n(struct hist *h, uint64_t us, uint64_t n);

/* Exact: adds slot counts and stats.  On OOM returns false and leaves dst's
 * counts and stats unchanged.  dst == src is allowed (doubles dst). */
bool hist_merge(struct hist *dst, const struct hist *src);
struct hist *hist_clone(const struct hist *h); /* NULL on OOM */
void hist_reset(struct hist *h); /* back to empty; releases chunks */
void hist_clear(struct hist *h); /* back to empty; keeps its chunks, to be refilled without allocating */

uint64_t hist_count(const struct hist *h);
uint64_t hist_min(const struct hist *h); /* 0 when empty */
uint64_t hist_max(const struct hist *h); /* 0 when empty */
double hist_mean(const struct hist *h); /* sum/count; 0 when empty */
double hist_stdev(const struct hist *h); /* population; 0 when count < 2 */
uint64_t hist_sum(const struct hist *h); /* wraps past 2^64 (~5e9 h) */
double hist_sumsq(const struct hist *h); /* sum of squares, for serialising */
uint64_t hist_clamped(const struct hist *h);

/* Value at rank ceil(p/100*count) (at least 1), reported as the midpoint of
 * its slot clamped to [min, max]; p <= 0 (or NaN) gives min, p >= 100 max,
 * an empty histogram 0.  p is taken as the decimal the caller wrote, so
 * 99.9 of 100000 is rank 99900 despite 99.9 not being exact in binary. */
double hist_percentile(const struct hist *h, double p);

size_t hist_memory(const struct hist *h); /* bytes held, for RSS accounting */

/* Serialisation: visits non-empty slots in ascending index order. */
typedef void (*hist_slot_fn)(void *ud, uint32_t index, uint64_t count);
void hist_foreach(const struct hist *h, hist_slot_fn fn, void *ud);

/* Adds count to slot index and to the total count, but not to min/max/sum/
 * sumsq: restore those with hist_set_stats (and hist_set_clamped).  False if
 * index >= hist_slots() or on OOM (then nothing changes). */
bool hist_add_slot(struct hist *h, uint32_t index, uint64_t count);
void hist_set_stats(struct hist *h, uint64_t min, uint64_t max, uint64_t sum,
                    double sumsq);
void hist_set_clamped(struct hist *h, uint64_t clamped);

/* Number of valid slot indexes: one past the slot holding HIST_MAX_US. */
uint32_t hist_slots(void);
/* The slot a value is recorded in (after clamping), for tests and tools. */
uint32_t hist_slot_of(uint64_t us);

#endif
