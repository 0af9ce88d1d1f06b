#ifndef TIDE_VHIST_H
#define TIDE_VHIST_H
/* Value histogram: the distribution of a trend that is not a time (a ratio,
 * a size, a score), signed doubles over a wide range.
 *
 * Why a type of its own rather than more slots in hist.c: the µs histogram
 * is the hot path of every request (integer slot arithmetic, integer sums, a
 * fixed chunk table inline) and its serialised slot indexes are a stable
 * format; values of any sign and magnitude need a float mapping, double
 * sums and a bigger, lazily made chunk table.  Keeping them apart leaves
 * the time path byte for byte as it was and either layout free to change.
 *
 * Slot layout: a magnitude in [2^VHIST_MIN_EXP, 2^VHIST_MAX_EXP) falls in
 * its binary octave, split into 1024 slots by the top 10 bits of its
 * mantissa, so a slot's midpoint is within 1/2048 of every value in it
 * (three significant digits and a bit).  Global indexes run in value order:
 * negatives (largest magnitude first), then one slot for exact zero, then
 * positives.  Magnitudes outside the range are recorded as its nearest edge
 * (also in min/max/sum) and counted by vhist_clamped(); NaN and infinities
 * are refused.
 *
 * Sums are double-doubles (a rounded double and its exact remainder): sums
 * of whole numbers below 2^106 are exact, so merges in any order give the
 * same bits, and the rest is within ~1e-32 relative.  Not thread-safe: one
 * writer per histogram, merge to aggregate. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHIST_MIN_EXP (-40) /* 2^-40 ≈ 9.09e-13: smallest magnitude kept as is */
#define VHIST_MAX_EXP 60    /* 2^60 ≈ 1.15e18: magnitudes from here on clamp */

struct vhist; /* opaque */
struct hist;

struct vhist *vhist_new(void);
void vhist_free(struct vhist *h); /* NULL ok */

/* False (nothing recorded) for NaN and infinities; n == 0 records nothing. */
bool vhist_record(struct vhist *h, double v);
bool vhist_record_n(struct vhist *h, double v, uint64_t n);

/* Exact: adds slot counts and stats.  dst == src is allowed. */
void vhist_merge(struct vhist *dst, const struct vhist *src);
/* Adds a µs histogram's counts, each as the midpoint of its slot (what a
 * non-time trend of a document written before value histograms holds:
 * whole numbers); count, min, max, sum and sumsq exactly. */
void vhist_merge_us(struct vhist *dst, const struct hist *src);
struct vhist *vhist_clone(const struct vhist *h);

uint64_t vhist_count(const struct vhist *h);
double vhist_min(const struct vhist *h); /* 0 when empty */
double vhist_max(const struct vhist *h); /* 0 when empty */
double vhist_sum(const struct vhist *h);
double vhist_mean(const struct vhist *h);  /* 0 when empty */
double vhist_stdev(const struct vhist *h); /* population; 0 when count < 2 */
uint64_t vhist_clamped(const struct vhist *h);
/* The sums as double-doubles: [0] the rounded value, [1] the remainder. */
void vhist_sums(const struct vhist *h, double sum[2], double sumsq[2]);

/* As hist_percentile: the midpoint of the slot at rank ceil(p/100*count),
 * clamped to [min, max]; p <= 0 gives min, p >= 100 max, empty 0. */
double vhist_percentile(const struct vhist *h, double p);

size_t vhist_memory(const struct vhist *h);

/* Serialisation: non-empty slots in ascending index order. */
typedef void (*vhist_slot_fn)(void *ud, uint32_t index, uint64_t count);
void vhist_foreach(const struct vhist *h, vhist_slot_fn fn, void *ud);
/* As hist_add_slot: count into slot index (and the total), not the stats. */
bool vhist_add_slot(struct vhist *h, uint32_t index, uint64_t count);
/* Restores the stats of a histogram read back; false (nothing changes)
 * unless every figure is finite and min <= max. */
bool vhist_set_stats(struct vhist *h, double min, double max, const double sum[2],
                     const double sumsq[2], uint64_t clamped);

uint32_t vhist_slots(void);
/* The slot v is recorded in (after clamping); v finite. */
uint32_t vhist_slot_of(double v);
/* The values slot index holds: [lo, hi) for positives, (lo, hi] for
 * negatives (lo < hi), [0, 0] for zero. */
void vhist_slot_range(uint32_t index, double *lo, double *hi);

#endif
