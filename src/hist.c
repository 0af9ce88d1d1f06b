#include "hist.h"
#include "xmalloc.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sum of squares is kept as an exact 128-bit integer: it keeps floating point
 * off the record path, makes merges exact, and lets stdev of near-constant
 * data come out as exactly 0 instead of cancellation noise.  (v <= 3.6e9, so
 * v*v fits in 64 bits.) */
__extension__ typedef unsigned __int128 u128;

#define SUB_BITS 10 /* 1024 slots per octave: 1/1024 relative resolution */
#define SUB_COUNT (1u << SUB_BITS)
#define MAX_SHIFT 21 /* octave (slot width 2^21) holding HIST_MAX_US */
#define NSLOTS (((uint32_t)MAX_SHIFT << SUB_BITS) + (uint32_t)(HIST_MAX_US >> MAX_SHIFT) + 1)
/* Chunks are 1024 slots so that bucket 0 (2048 unit slots) is split in two:
 * latencies >= 1 ms never pay for the sub-millisecond half. */
#define NCHUNKS ((NSLOTS - 1) / SUB_COUNT + 1)
#define CHUNK_BYTES (SUB_COUNT * sizeof(uint64_t))

_Static_assert((HIST_MAX_US >> MAX_SHIFT) >= SUB_COUNT &&
               (HIST_MAX_US >> MAX_SHIFT) < 2 * SUB_COUNT,
               "MAX_SHIFT must be the octave containing HIST_MAX_US");

struct hist {
    uint64_t count, min, max, sum, clamped;
    u128 sumsq;
    uint64_t *chunk[NCHUNKS];
};

/* For v < 2048 the shift is 0 and the index is v itself; above, the top 11
 * bits of v select the slot within its octave. */
static inline uint32_t slot_index(uint64_t v)
{
    unsigned shift = (unsigned)(63 - __builtin_clzll(v | SUB_COUNT)) - SUB_BITS;
    return (uint32_t)(((uint64_t)shift << SUB_BITS) + (v >> shift));
}

static uint64_t slot_low(uint32_t index, unsigned *shift)
{
    uint32_t c = index >> SUB_BITS;
    *shift = c ? c - 1 : 0;
    uint64_t sub = c ? (index & (SUB_COUNT - 1)) | SUB_COUNT : index;
    return sub << *shift;
}

/* Midpoint of the integers in the slot: exact for unit-width slots. */
static double slot_mid(uint32_t index)
{
    unsigned shift;
    uint64_t lo = slot_low(index, &shift);
    return (double)lo + (double)((1ull << shift) - 1) / 2.0;
}

uint32_t hist_slots(void) { return NSLOTS; }

void hist_slot_range(uint32_t index, uint64_t *lo, uint64_t *width)
{
    unsigned shift;
    *lo = slot_low(index, &shift);
    *width = 1ull << shift;
}

uint32_t hist_slot_of(uint64_t us)
{
    return slot_index(us > HIST_MAX_US ? HIST_MAX_US : us);
}

struct hist *hist_new(void)
{
    struct hist *h = xcalloc(1, sizeof *h);
    h->min = UINT64_MAX;
    return h;
}

static void free_chunks(struct hist *h)
{
    for (uint32_t c = 0; c < NCHUNKS; c++) {
        free(h->chunk[c]);
        h->chunk[c] = NULL;
    }
}

void hist_free(struct hist *h)
{
    if (!h)
        return;
    free_chunks(h);
    free(h);
}

void hist_reset(struct hist *h)
{
    free_chunks(h);
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_clear(struct hist *h)
{
    for (uint32_t c = 0; c < NCHUNKS; c++)
        if (h->chunk[c])
            memset(h->chunk[c], 0, CHUNK_BYTES);
    h->count = h->max = h->sum = h->clamped = 0;
    h->sumsq = 0;
    h->min = UINT64_MAX;
}

/* Kept out of line so the record path stays small. */
static __attribute__((noinline, cold)) uint64_t *chunk_alloc(struct hist *h, uint32_t c)
{
    return h->chunk[c] = xcalloc(SUB_COUNT, sizeof(uint64_t));
}

static inline void record(struct hist *h, uint64_t v, uint64_t n)
{
    if (__builtin_expect(v > HIST_MAX_US, 0)) {
        h->clamped += n;
        v = HIST_MAX_US;
    }
    uint32_t i = slot_index(v);
    uint64_t *c = h->chunk[i >> SUB_BITS];
    if (__builtin_expect(!c, 0))
        c = chunk_alloc(h, i >> SUB_BITS);
    c[i & (SUB_COUNT - 1)] += n;
    h->count += n;
    h->sum += v * n;
    h->sumsq += (u128)(v * v) * n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_record(struct hist *h, uint64_t us)
{
    record(h, us, 1);
}

void hist_record_n(struct hist *h, uint64_t us, uint64_t n)
{
    if (n)
        record(h, us, n);
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (uint32_t c = 0; c < NCHUNKS; c++)
        if (src->chunk[c] && !dst->chunk[c])
            chunk_alloc(dst, c);
    for (uint32_t c = 0; c < NCHUNKS; c++) {
        const uint64_t *s = src->chunk[c];
        for (uint32_t j = 0; s && j < SUB_COUNT; j++)
            dst->chunk[c][j] += s[j];
    }
    if (src->count) {
        dst->min = src->min < dst->min ? src->min : dst->min;
        dst->max = src->max > dst->max ? src->max : dst->max;
    }
    dst->count += src->count;
    dst->sum += src->sum;
    dst->sumsq += src->sumsq;
    dst->clamped += src->clamped;
}

struct hist *hist_clone(const struct hist *h)
{
    struct hist *c = hist_new();
    hist_merge(c, h);
    return c;
}

uint64_t hist_count(const struct hist *h) { return h->count; }
uint64_t hist_min(const struct hist *h) { return h->count ? h->min : 0; }
uint64_t hist_max(const struct hist *h) { return h->count ? h->max : 0; }
uint64_t hist_sum(const struct hist *h) { return h->sum; }
double hist_sumsq(const struct hist *h) { return (double)h->sumsq; }

void hist_sumsq_words(const struct hist *h, uint64_t *hi, uint64_t *lo)
{
    *hi = (uint64_t)(h->sumsq >> 64);
    *lo = (uint64_t)h->sumsq;
}
uint64_t hist_clamped(const struct hist *h) { return h->clamped; }

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

/* n*sumsq - sum^2 is exact in 128 bits up to ~5e9 values; past that (or
 * after a sum wrapped) fall back to long double, which is still close. */
double hist_stdev(const struct hist *h)
{
    if (h->count < 2)
        return 0.0;
    u128 n = h->count, s = h->sum;
    long double var;
    if (h->sumsq <= ~(u128)0 / n && n * h->sumsq >= s * s)
        var = (long double)(n * h->sumsq - s * s) / (long double)n / (long double)n;
    else
        var = ((long double)h->sumsq - (long double)s * (long double)s / (long double)n) /
              (long double)n;
    return var > 0 ? (double)sqrtl(var) : 0.0;
}

/* ceil(p/100*count), forgiving the few ulps by which the binary p exceeds
 * the decimal the caller meant. */
static uint64_t percentile_rank(double p, uint64_t count)
{
    double x = p / 100.0 * (double)count;
    double r = ceil(x - x * 8 * DBL_EPSILON);
    if (r < 1)
        return 1;
    return r >= (double)count ? count : (uint64_t)r;
}

uint64_t hist_percentile_rank(double p, uint64_t count)
{
    return percentile_rank(p, count);
}

static uint32_t slot_at_rank(const struct hist *h, uint64_t rank)
{
    uint64_t seen = 0;
    for (uint32_t c = 0; c < NCHUNKS; c++) {
        const uint64_t *s = h->chunk[c];
        for (uint32_t j = 0; s && j < SUB_COUNT; j++) {
            seen += s[j];
            if (seen >= rank)
                return (c << SUB_BITS) | j;
        }
    }
    return NSLOTS - 1; /* only if counts and slots disagree */
}

double hist_percentile(const struct hist *h, double p)
{
    if (!h->count)
        return 0.0;
    if (!(p > 0))
        return (double)hist_min(h);
    if (p >= 100)
        return (double)hist_max(h);
    double v = slot_mid(slot_at_rank(h, percentile_rank(p, h->count)));
    if (h->min <= h->max) /* not so for slots added without stats */
        v = v < (double)h->min ? (double)h->min : v > (double)h->max ? (double)h->max : v;
    return v;
}

size_t hist_memory(const struct hist *h)
{
    size_t bytes = sizeof *h;
    for (uint32_t c = 0; c < NCHUNKS; c++)
        bytes += h->chunk[c] ? CHUNK_BYTES : 0;
    return bytes;
}

void hist_coarsen(struct hist *h, unsigned bits)
{
    if (bits < 1 || bits >= SUB_BITS)
        return;
    for (uint32_t c = 0; c < NCHUNKS; c++) {
        uint64_t *chunk = h->chunk[c];
        for (uint32_t i = 0; chunk && i < SUB_COUNT; i++) {
            uint32_t index = c * SUB_COUNT + i;
            if (!chunk[i] || index >= NSLOTS)
                continue;
            unsigned shift;
            uint64_t lo = slot_low(index, &shift);
            unsigned len = (unsigned)(64 - __builtin_clzll(lo | 1));
            if (len <= bits)
                continue; /* already exact to `bits` digits */
            uint64_t width = 1ull << (len - bits), base = lo & ~(width - 1);
            /* the coarse bucket's middle: within half a bucket of every value in it */
            uint32_t target = slot_index(base + width / 2);
            if (target == index)
                continue;
            chunk[target - c * SUB_COUNT] += chunk[i]; /* same octave, so the same chunk */
            chunk[i] = 0;
        }
    }
}

void hist_foreach(const struct hist *h, hist_slot_fn fn, void *ud)
{
    for (uint32_t c = 0; c < NCHUNKS; c++) {
        const uint64_t *s = h->chunk[c];
        for (uint32_t j = 0; s && j < SUB_COUNT; j++)
            if (s[j])
                fn(ud, (c << SUB_BITS) | j, s[j]);
    }
}

bool hist_add_slot(struct hist *h, uint32_t index, uint64_t count)
{
    if (index >= NSLOTS)
        return false;
    if (!count)
        return true;
    uint32_t c = index >> SUB_BITS;
    if (!h->chunk[c])
        chunk_alloc(h, c);
    h->chunk[c][index & (SUB_COUNT - 1)] += count;
    h->count += count;
    return true;
}

/* Saturating: a tide-results/1 sumsq is a double and may be anything. */
static u128 u128_from_double(double d)
{
    if (!(d > 0))
        return 0;
    if (d >= 0x1p128)
        return ~(u128)0;
    return (u128)d;
}

void hist_set_stats(struct hist *h, uint64_t min, uint64_t max, uint64_t sum, uint64_t sumsq_hi,
                    uint64_t sumsq_lo)
{
    h->min = min;
    h->max = max;
    h->sum = sum;
    h->sumsq = (u128)sumsq_hi << 64 | sumsq_lo;
}

void hist_set_sumsq_double(struct hist *h, double sumsq) { h->sumsq = u128_from_double(sumsq); }

void hist_set_clamped(struct hist *h, uint64_t clamped) { h->clamped = clamped; }

size_t hist_u128_format(uint64_t hi, uint64_t lo, char *buf, size_t len)
{
    char digits[40];
    size_t n = 0;
    u128 v = (u128)hi << 64 | lo;
    do {
        digits[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    if (n + 1 > len)
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = digits[n - 1 - i];
    buf[n] = '\0';
    return n;
}

bool hist_u128_parse(const char *s, size_t len, uint64_t *hi, uint64_t *lo)
{
    u128 v = 0, max = ~(u128)0;
    if (len == 0 || len > 39)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *hi = (uint64_t)(v >> 64);
    *lo = (uint64_t)v;
    return true;
}

/* ---- packed form ------------------------------------------------------
 * A histogram as LEB128 varints: clamped, min, max, sum, sumsq low word,
 * sumsq high word, then (index gap, count) pairs of the non-empty slots in
 * ascending order (the first gap is the index itself, later ones count
 * from the slot after the previous). A second of requests at a few
 * hundred distinct latencies packs into a few hundred bytes. */

#define VARINT_MAX 10

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static bool get_varint(const unsigned char **p, const unsigned char *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char b = *(*p)++;
        if (shift == 63 && b > 1)
            return false;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static size_t used_slots(const struct hist *h)
{
    size_t n = 0;
    for (uint32_t c = 0; c < NCHUNKS; c++)
        for (uint32_t j = 0; h->chunk[c] && j < SUB_COUNT; j++)
            n += h->chunk[c][j] != 0;
    return n;
}

size_t hist_pack_bound(const struct hist *h)
{
    return (6 + 2 * used_slots(h)) * VARINT_MAX;
}

size_t hist_pack_to(const struct hist *h, unsigned char *p)
{
    unsigned char *q = p;
    uint64_t fields[6] = {h->clamped, hist_min(h), hist_max(h), h->sum, (uint64_t)h->sumsq,
                          (uint64_t)(h->sumsq >> 64)};
    for (int i = 0; i < 6; i++)
        q += put_varint(q, fields[i]);
    uint32_t next = 0;
    for (uint32_t c = 0; c < NCHUNKS; c++)
        for (uint32_t j = 0; h->chunk[c] && j < SUB_COUNT; j++)
            if (h->chunk[c][j]) {
                uint32_t i = (c << SUB_BITS) | j;
                q += put_varint(q, i - next);
                q += put_varint(q, h->chunk[c][j]);
                next = i + 1;
            }
    return (size_t)(q - p);
}

size_t hist_pack(const struct hist *h, unsigned char **out)
{
    unsigned char *p = xmalloc(hist_pack_bound(h));
    size_t n = hist_pack_to(h, p);
    *out = xrealloc(p, n ? n : 1);
    return n;
}

struct hist *hist_unpack(const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n;
    uint64_t f[6], gap, count;
    for (int i = 0; i < 6; i++)
        if (!get_varint(&p, end, &f[i]))
            return NULL;
    struct hist *h = hist_new();
    uint64_t next = 0;
    while (p < end) {
        if (!get_varint(&p, end, &gap) || !get_varint(&p, end, &count) || !count ||
            gap >= NSLOTS - next || h->count + count < h->count) {
            hist_free(h);
            return NULL;
        }
        hist_add_slot(h, (uint32_t)(next + gap), count);
        next += gap + 1;
    }
    if (h->count)
        hist_set_stats(h, f[1], f[2], f[3], f[5], f[4]);
    hist_set_clamped(h, f[0]);
    return h;
}
