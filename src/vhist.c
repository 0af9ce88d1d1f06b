#include "vhist.h"
#include "hist.h"
#include "xmalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB_BITS 10 /* as hist.c: 1024 slots per octave */
#define SUB_COUNT (1u << SUB_BITS)
#define NMAG ((uint32_t)(VHIST_MAX_EXP - VHIST_MIN_EXP) * SUB_COUNT) /* slots per sign */
#define ZERO NMAG                                                   /* the slot of 0 */
#define NSLOTS (2 * NMAG + 1)
#define NCHUNKS ((NSLOTS - 1) / SUB_COUNT + 1)
#define CHUNK_BYTES (SUB_COUNT * sizeof(uint64_t))

/* A double-double: hi is the sum rounded, lo what rounding left out. */
struct dd {
    double hi, lo;
};

struct vhist {
    uint64_t count, clamped;
    double min, max;
    struct dd sum, sumsq;
    /* Made on first use: a value trend never recorded costs no table, one
     * that spans a few octaves a few chunks. */
    uint64_t **chunk;
};

/* ---- double-double arithmetic (Knuth's two-sum, fma two-product) ------ */

static struct dd two_sum(double a, double b)
{
    double s = a + b, bb = s - a;
    return (struct dd){s, (a - (s - bb)) + (b - bb)};
}

static struct dd dd_add(struct dd x, struct dd y)
{
    struct dd s = two_sum(x.hi, y.hi);
    s.lo += x.lo + y.lo;
    return two_sum(s.hi, s.lo); /* canonical: equal sums have equal bits */
}

/* x*y exactly as a double-double (x*y finite). */
static struct dd two_prod(double x, double y)
{
    double p = x * y;
    return (struct dd){p, fma(x, y, -p)};
}

static struct dd dd_mul(struct dd x, double n)
{
    struct dd p = two_prod(x.hi, n);
    p.lo += x.lo * n;
    return two_sum(p.hi, p.lo);
}

static struct dd dd_mul_dd(struct dd x, struct dd y)
{
    struct dd p = two_prod(x.hi, y.hi);
    p.lo += x.hi * y.lo + x.lo * y.hi;
    return two_sum(p.hi, p.lo);
}

/* ---- slots ------------------------------------------------------------ */

/* The magnitude slot of a in [2^MIN_EXP, 2^MAX_EXP): its octave and the top
 * mantissa bits, read off the IEEE 754 bits (a is normal in that range). */
static uint32_t mag_index(double a)
{
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    int exp = (int)(bits >> 52) - 1023;
    uint32_t sub = (uint32_t)(bits >> (52 - SUB_BITS)) & (SUB_COUNT - 1);
    return (uint32_t)(exp - VHIST_MIN_EXP) * SUB_COUNT + sub;
}

static const double RANGE_LO = 0x1p-40, RANGE_HI = 0x1p60;
_Static_assert(VHIST_MIN_EXP == -40 && VHIST_MAX_EXP == 60, "RANGE_LO/HI follow the exponents");

/* v with its magnitude brought into the range (0 stays 0); *out says so. */
static double clamp(double v, bool *out)
{
    double a = fabs(v);
    *out = a != 0 && (a < RANGE_LO || a >= RANGE_HI);
    if (!*out)
        return v;
    return copysign(a < RANGE_LO ? RANGE_LO : RANGE_HI, v);
}

/* For an in-range v: RANGE_HI itself (a clamped value) goes in the top slot. */
static uint32_t slot_index(double v)
{
    if (v == 0)
        return ZERO;
    double a = fabs(v);
    uint32_t m = a >= RANGE_HI ? NMAG - 1 : mag_index(a);
    return v < 0 ? NMAG - 1 - m : NMAG + 1 + m;
}

uint32_t vhist_slots(void) { return NSLOTS; }

uint32_t vhist_slot_of(double v)
{
    bool out;
    return slot_index(clamp(v, &out));
}

void vhist_slot_range(uint32_t index, double *lo, double *hi)
{
    if (index == ZERO || index >= NSLOTS) {
        *lo = *hi = 0;
        return;
    }
    uint32_t m = index < ZERO ? NMAG - 1 - index : index - NMAG - 1;
    int exp = (int)(m / SUB_COUNT) + VHIST_MIN_EXP;
    double a = ldexp(1.0 + (double)(m % SUB_COUNT) / SUB_COUNT, exp);
    double b = ldexp(1.0 + (double)(m % SUB_COUNT + 1) / SUB_COUNT, exp);
    *lo = index < ZERO ? -b : a;
    *hi = index < ZERO ? -a : b;
}

/* ---- life ------------------------------------------------------------- */

struct vhist *vhist_new(void)
{
    return xcalloc(1, sizeof(struct vhist));
}

void vhist_free(struct vhist *h)
{
    if (!h)
        return;
    for (uint32_t c = 0; h->chunk && c < NCHUNKS; c++)
        free(h->chunk[c]);
    free(h->chunk);
    free(h);
}

static uint64_t *chunk_of(struct vhist *h, uint32_t index)
{
    if (!h->chunk)
        h->chunk = xcalloc(NCHUNKS, sizeof *h->chunk);
    uint32_t c = index / SUB_COUNT;
    if (!h->chunk[c])
        h->chunk[c] = xcalloc(SUB_COUNT, sizeof(uint64_t));
    return h->chunk[c];
}

static void add_stats(struct vhist *h, double min, double max, struct dd sum, struct dd sumsq,
                      uint64_t n, uint64_t clamped)
{
    h->min = !h->count || min < h->min ? min : h->min;
    h->max = !h->count || max > h->max ? max : h->max;
    h->count += n;
    h->sum = dd_add(h->sum, sum);
    h->sumsq = dd_add(h->sumsq, sumsq);
    h->clamped += clamped;
}

bool vhist_record_n(struct vhist *h, double v, uint64_t n)
{
    if (!isfinite(v))
        return false;
    if (!n)
        return true;
    bool out;
    v = clamp(v, &out);
    uint32_t i = slot_index(v);
    chunk_of(h, i)[i % SUB_COUNT] += n;
    double dn = (double)n;
    struct dd sum = n == 1 ? (struct dd){v, 0} : two_prod(v, dn);
    struct dd sq = two_prod(v, v);
    add_stats(h, v, v, sum, n == 1 ? sq : dd_mul(sq, dn), n, out ? n : 0);
    return true;
}

bool vhist_record(struct vhist *h, double v) { return vhist_record_n(h, v, 1); }

void vhist_merge(struct vhist *dst, const struct vhist *src)
{
    if (!src->count)
        return;
    for (uint32_t c = 0; src->chunk && c < NCHUNKS; c++) {
        const uint64_t *s = src->chunk[c];
        if (!s)
            continue;
        uint64_t *d = chunk_of(dst, c * SUB_COUNT);
        for (uint32_t j = 0; j < SUB_COUNT; j++)
            d[j] += s[j];
    }
    /* src's figures first: when dst == src they must not have changed yet */
    struct dd sum = src->sum, sumsq = src->sumsq;
    add_stats(dst, src->min, src->max, sum, sumsq, src->count, src->clamped);
}

static void copy_us_slot(void *ud, uint32_t index, uint64_t count)
{
    struct vhist *h = ud;
    uint64_t lo, width;
    hist_slot_range(index, &lo, &width);
    uint32_t i = slot_index((double)lo + (double)(width - 1) / 2);
    chunk_of(h, i)[i % SUB_COUNT] += count;
}

/* A 128-bit unsigned integer (as two words) as a double-double: exact up
 * to 106 significant bits. */
static struct dd dd_from_words(uint64_t hi, uint64_t lo)
{
    struct dd top = two_prod((double)hi, 0x1p64);
    struct dd low = two_sum((double)(lo >> 32) * 0x1p32, (double)(lo & 0xffffffffu));
    return dd_add(top, low);
}

void vhist_merge_us(struct vhist *dst, const struct hist *src)
{
    uint64_t n = hist_count(src);
    if (!n)
        return;
    hist_foreach(src, copy_us_slot, dst);
    uint64_t hi, lo;
    hist_sumsq_words(src, &hi, &lo);
    add_stats(dst, (double)hist_min(src), (double)hist_max(src), dd_from_words(0, hist_sum(src)),
              dd_from_words(hi, lo), n, hist_clamped(src));
}

struct vhist *vhist_clone(const struct vhist *h)
{
    struct vhist *c = vhist_new();
    vhist_merge(c, h);
    return c;
}

/* ---- figures ---------------------------------------------------------- */

uint64_t vhist_count(const struct vhist *h) { return h->count; }
double vhist_min(const struct vhist *h) { return h->count ? h->min : 0; }
double vhist_max(const struct vhist *h) { return h->count ? h->max : 0; }
double vhist_sum(const struct vhist *h) { return h->sum.hi; }
uint64_t vhist_clamped(const struct vhist *h) { return h->clamped; }

void vhist_sums(const struct vhist *h, double sum[2], double sumsq[2])
{
    sum[0] = h->sum.hi, sum[1] = h->sum.lo;
    sumsq[0] = h->sumsq.hi, sumsq[1] = h->sumsq.lo;
}

double vhist_mean(const struct vhist *h)
{
    if (!h->count)
        return 0;
    /* (hi + lo) / n rounded once: the mean of 0.1, 0.2, 0.3 is 0.2 */
    double n = (double)h->count, q = h->sum.hi / n;
    struct dd back = two_prod(q, n);
    return q + ((h->sum.hi - back.hi) - back.lo + h->sum.lo) / n;
}

/* (n*sumsq - sum^2) / n^2 in double-double.  What is left below the
 * sums' own rounding (about n * 2^-104 of the mean squared) is that
 * rounding, not spread: constant data gives exactly 0. */
double vhist_stdev(const struct vhist *h)
{
    if (h->count < 2)
        return 0;
    double n = (double)h->count;
    struct dd a = dd_mul(h->sumsq, n), b = dd_mul_dd(h->sum, h->sum);
    struct dd d = dd_add(a, (struct dd){-b.hi, -b.lo});
    double var = (d.hi + d.lo) / n / n, mean = h->sum.hi / n;
    return var > mean * mean * n * 0x1p-100 ? sqrt(var) : 0;
}

static uint32_t slot_at_rank(const struct vhist *h, uint64_t rank)
{
    uint64_t seen = 0;
    for (uint32_t c = 0; h->chunk && c < NCHUNKS; c++) {
        const uint64_t *s = h->chunk[c];
        for (uint32_t j = 0; s && j < SUB_COUNT; j++) {
            seen += s[j];
            if (seen >= rank)
                return c * SUB_COUNT + j;
        }
    }
    return NSLOTS - 1; /* only if counts and slots disagree */
}

/* The value with the fewest significant digits near the middle of [a, b].
 * Every value in a slot is as good an answer as its midpoint (each is
 * within the slot's width, 1/1024, of the truth), and values people record
 * are mostly short decimals: 0.95 reads as 0.95, not 0.949951171875, and a
 * threshold p(95) < 0.95 on data whose p95 is 0.95 fails as it should. */
static double short_decimal(double a, double b)
{
    double mid = a + (b - a) / 2;
    char text[32];
    for (int digits = 1; digits < 17; digits++) {
        snprintf(text, sizeof text, "%.*e", digits - 1, mid);
        double c = strtod(text, NULL);
        if (c >= a && c <= b)
            return c;
    }
    return mid;
}

double vhist_percentile(const struct vhist *h, double p)
{
    if (!h->count)
        return 0;
    if (!(p > 0))
        return h->min;
    if (p >= 100)
        return h->max;
    double lo, hi;
    vhist_slot_range(slot_at_rank(h, hist_percentile_rank(p, h->count)), &lo, &hi);
    return short_decimal(lo < h->min ? h->min : lo, hi > h->max ? h->max : hi);
}

size_t vhist_memory(const struct vhist *h)
{
    size_t bytes = sizeof *h + (h->chunk ? NCHUNKS * sizeof *h->chunk : 0);
    for (uint32_t c = 0; h->chunk && c < NCHUNKS; c++)
        bytes += h->chunk[c] ? CHUNK_BYTES : 0;
    return bytes;
}

/* ---- serialisation ---------------------------------------------------- */

void vhist_foreach(const struct vhist *h, vhist_slot_fn fn, void *ud)
{
    for (uint32_t c = 0; h->chunk && c < NCHUNKS; c++) {
        const uint64_t *s = h->chunk[c];
        for (uint32_t j = 0; s && j < SUB_COUNT; j++)
            if (s[j])
                fn(ud, c * SUB_COUNT + j, s[j]);
    }
}

bool vhist_add_slot(struct vhist *h, uint32_t index, uint64_t count)
{
    if (index >= NSLOTS)
        return false;
    if (count) {
        chunk_of(h, index)[index % SUB_COUNT] += count;
        h->count += count;
    }
    return true;
}

bool vhist_set_stats(struct vhist *h, double min, double max, const double sum[2],
                     const double sumsq[2], uint64_t clamped)
{
    if (!isfinite(min) || !isfinite(max) || !(min <= max) || !isfinite(sum[0]) ||
        !isfinite(sum[1]) || !isfinite(sumsq[0]) || !isfinite(sumsq[1]) || sumsq[0] < 0)
        return false;
    h->min = min;
    h->max = max;
    h->sum = two_sum(sum[0], sum[1]);
    h->sumsq = two_sum(sumsq[0], sumsq[1]);
    h->clamped = clamped;
    return true;
}
