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

/* Memory comes from xmalloc: out of memory aborts (see xmalloc.h). */
struct hist *hist_new(void);
void hist_free(struct hist *h); /* NULL ok */

/* Values above HIST_MAX_US are recorded as HIST_MAX_US (also in min/max/sum)
 * and counted by hist_clamped().  n == 0 records nothing. */
void hist_record(struct hist *h, uint64_t us);
void hist_record_n(struct hist *h, uint64_t us, uint64_t n);

/* Exact: adds slot counts and stats.  dst == src is allowed (doubles dst). */
void hist_merge(struct hist *dst, const struct hist *src);
struct hist *hist_clone(const struct hist *h);
void hist_reset(struct hist *h); /* back to empty; releases chunks */
void hist_clear(struct hist *h); /* back to empty; keeps its chunks, to be refilled without allocating */
/* Keeps `bits` significant bits of each value: every count moves to the
 * middle of its coarse bucket (2^-bits of the value wide), so slots are
 * fewer and the packed form smaller; count, min, max, sum and sumsq stay
 * exact, and coarsening then merging equals merging then coarsening. */
void hist_coarsen(struct hist *h, unsigned bits);

uint64_t hist_count(const struct hist *h);
uint64_t hist_min(const struct hist *h); /* 0 when empty */
uint64_t hist_max(const struct hist *h); /* 0 when empty */
double hist_mean(const struct hist *h); /* sum/count; 0 when empty */
double hist_stdev(const struct hist *h); /* population; 0 when count < 2 */
uint64_t hist_sum(const struct hist *h); /* wraps past 2^64 (~5e9 h) */
double hist_sumsq(const struct hist *h); /* sum of squares, rounded */
/* The exact sum of squares, a 128-bit integer, as two words. */
void hist_sumsq_words(const struct hist *h, uint64_t *hi, uint64_t *lo);
/* A 128-bit integer as decimal text (0 if buf is too small, 40 is enough),
 * and back (false unless 1..39 digits that fit). JSON as tide writes it
 * holds 14 significant digits, so an exact sumsq travels as text. */
size_t hist_u128_format(uint64_t hi, uint64_t lo, char *buf, size_t len);
bool hist_u128_parse(const char *s, size_t len, uint64_t *hi, uint64_t *lo);
uint64_t hist_clamped(const struct hist *h);

/* Value at rank ceil(p/100*count) (at least 1), reported as the midpoint of
 * its slot clamped to [min, max]; p <= 0 (or NaN) gives min, p >= 100 max,
 * an empty histogram 0.  p is taken as the decimal the caller wrote, so
 * 99.9 of 100000 is rank 99900 despite 99.9 not being exact in binary. */
double hist_percentile(const struct hist *h, double p);
/* That rank, ceil(p/100*count) within [1, count]: vhist.c ranks the same. */
uint64_t hist_percentile_rank(double p, uint64_t count);

size_t hist_memory(const struct hist *h); /* bytes held, for RSS accounting */

/* Serialisation: visits non-empty slots in ascending index order. */
typedef void (*hist_slot_fn)(void *ud, uint32_t index, uint64_t count);
void hist_foreach(const struct hist *h, hist_slot_fn fn, void *ud);

/* Adds count to slot index and to the total count, but not to min/max/sum/
 * sumsq: restore those with hist_set_stats (and hist_set_clamped).  False if
 * index >= hist_slots() (then nothing changes). */
bool hist_add_slot(struct hist *h, uint32_t index, uint64_t count);
void hist_set_stats(struct hist *h, uint64_t min, uint64_t max, uint64_t sum,
                    uint64_t sumsq_hi, uint64_t sumsq_lo);
/* A tide-results/1 document's sumsq, which went through a double. */
void hist_set_sumsq_double(struct hist *h, double sumsq);
void hist_set_clamped(struct hist *h, uint64_t clamped);

/* The packed form (varints: stats, then gaps and counts of the non-empty
 * slots): what a finished second of a run keeps, a few hundred bytes where
 * the histogram holds tens of KB. *out is xmalloc'd, the caller frees it.
 * hist_unpack gives a new histogram, or NULL when p is not such a form. */
size_t hist_pack(const struct hist *h, unsigned char **out);
/* The same into a buffer of at least hist_pack_bound(h) bytes. */
size_t hist_pack_bound(const struct hist *h);
size_t hist_pack_to(const struct hist *h, unsigned char *p);
struct hist *hist_unpack(const unsigned char *p, size_t n);

/* Number of valid slot indexes: one past the slot holding HIST_MAX_US. */
uint32_t hist_slots(void);
/* The slot a value is recorded in (after clamping), for tests and tools. */
uint32_t hist_slot_of(uint64_t us);
/* The lowest value slot index holds, and how many values it holds. */
void hist_slot_range(uint32_t index, uint64_t *lo, uint64_t *width);

#endif
