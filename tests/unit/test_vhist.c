/* Unit tests for src/vhist.c (the value histogram of non-time trends) and
 * its side of src/hist_lua.c. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hist.h"
#include "hist_lua.h"
#include "json.h"
#include "vhist.h"

int luaopen_cjson(lua_State *L);

static uint64_t rnd(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd_unit(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1p-53; }

/* A value of any sign over the whole range, sometimes zero or whole. */
static double rnd_value(uint64_t *s)
{
    uint64_t k = rnd(s) % 10;
    if (k == 0)
        return 0;
    double mag = exp2(VHIST_MIN_EXP + rnd_unit(s) * (VHIST_MAX_EXP - VHIST_MIN_EXP));
    if (k == 1)
        mag = floor(mag / 0x1p40); /* whole numbers up to 2^20 */
    return rnd(s) & 1 ? -mag : mag;
}

/* ---- layout ---------------------------------------------------------------- */

/* Slots run in value order, each value lies in its slot, and a slot is
 * 1/1024 of its values wide: the three significant digits promised. */
static void test_layout(void)
{
    CHECK(vhist_slots() == 2u * (VHIST_MAX_EXP - VHIST_MIN_EXP) * 1024 + 1);
    uint32_t zero = vhist_slot_of(0);
    CHECK(vhist_slot_of(-0.0) == zero);
    CHECK(vhist_slot_of(1e-300) == zero + 1 && vhist_slot_of(-1e-300) == zero - 1); /* clamped */
    CHECK(vhist_slot_of(1e300) == vhist_slots() - 1 && vhist_slot_of(-1e300) == 0);
    CHECK(vhist_slot_of(0x1p60) == vhist_slots() - 1);
    uint64_t seed = 11;
    unsigned bad_order = 0, bad_range = 0, bad_width = 0;
    double prev = -INFINITY;
    for (int i = 0; i < 200000; i++) {
        double v = rnd_value(&seed), lo, hi;
        uint32_t s = vhist_slot_of(v);
        vhist_slot_range(s, &lo, &hi);
        bad_range += v != 0 && !(v >= 0 ? lo <= v && v < hi : lo < v && v <= hi);
        bad_range += v == 0 && !(lo == 0 && hi == 0);
        bad_width += v != 0 && (hi - lo) > fabs(v) / 1024 * 1.0000001;
        /* order: of two values, the smaller's slot is not after the larger's */
        double a = prev < v ? prev : v, b = prev < v ? v : prev;
        bad_order += i > 0 && vhist_slot_of(a) > vhist_slot_of(b);
        prev = v;
    }
    CHECK(bad_order == 0);
    CHECK(bad_range == 0);
    CHECK(bad_width == 0);
    /* neighbouring slots touch: the top of one is the bottom of the next */
    unsigned gaps = 0;
    for (uint32_t s = zero + 1; s + 1 < vhist_slots(); s += 97) {
        double lo1, hi1, lo2, hi2;
        vhist_slot_range(s, &lo1, &hi1);
        vhist_slot_range(s + 1, &lo2, &hi2);
        gaps += hi1 != lo2;
        vhist_slot_range(2 * zero - s - 1, &lo2, &hi2); /* the mirror of s+1 is below the mirror of s */
        vhist_slot_range(2 * zero - s, &lo1, &hi1);
        gaps += hi2 != lo1;
    }
    CHECK(gaps == 0);
}

/* ---- figures ------------------------------------------------------------ */

/* The case: 0.01 .. 1.00 stored as whole units reported median 1
 * and min 0. */
static void test_fractions(void)
{
    struct vhist *h = vhist_new();
    for (int i = 1; i <= 100; i++)
        CHECK(vhist_record(h, i / 100.0));
    CHECK(vhist_count(h) == 100);
    CHECK(vhist_min(h) == 0.01 && vhist_max(h) == 1);
    CHECK(vhist_percentile(h, 50) == 0.5);
    CHECK(vhist_percentile(h, 95) == 0.95);
    CHECK(vhist_percentile(h, 99) == 0.99);
    CHECK(vhist_percentile(h, 0) == 0.01 && vhist_percentile(h, 100) == 1);
    CHECK_NEAR(vhist_mean(h), 0.505, 1e-15);
    CHECK_NEAR(vhist_sum(h), 50.5, 1e-15);
    CHECK_NEAR(vhist_stdev(h), sqrt(0.083325), 1e-12); /* population: (100^2-1)/12/100^2 */
    CHECK(vhist_clamped(h) == 0);
    vhist_free(h);
}

/* Every percentile is within a slot's width (1/1024) of the exact order
 * statistic, for values of every sign and size. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_percentiles_random(void)
{
    enum { N = 50001 };
    static double v[N];
    uint64_t seed = 5;
    struct vhist *h = vhist_new();
    for (int i = 0; i < N; i++) {
        v[i] = rnd_value(&seed);
        vhist_record(h, v[i]);
    }
    qsort(v, N, sizeof v[0], cmp_double);
    CHECK(vhist_min(h) == v[0] && vhist_max(h) == v[N - 1]);
    static const double ps[] = {0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        size_t rank = (size_t)ceil(ps[k] / 100 * N);
        double want = v[rank - 1], got = vhist_percentile(h, ps[k]);
        if (!CHECK(fabs(got - want) <= fabs(want) / 1024))
            fprintf(stderr, "  p(%g): %.17g, exact %.17g\n", ps[k], got, want);
    }
    CHECK(vhist_clamped(h) == 0);
    vhist_free(h);
}

static void test_signs_and_zero(void)
{
    struct vhist *h = vhist_new();
    for (int i = -5; i <= 5; i++)
        vhist_record(h, i);
    CHECK(vhist_min(h) == -5 && vhist_max(h) == 5);
    CHECK(vhist_percentile(h, 50) == 0); /* zero is exact */
    CHECK(vhist_percentile(h, 10) == -4 && vhist_percentile(h, 1) == -5);
    CHECK(vhist_percentile(h, 60) == 1);
    CHECK(vhist_mean(h) == 0 && vhist_sum(h) == 0);
    CHECK(vhist_stdev(h) == sqrt(10)); /* 110 / 11 */
    vhist_free(h);

    h = vhist_new();
    for (int i = 0; i < 1000; i++)
        vhist_record(h, 0.1); /* not exact in binary: still no cancellation noise */
    CHECK(vhist_stdev(h) == 0);
    CHECK(vhist_mean(h) == 0.1);
    vhist_free(h);
}

/* Past the range: recorded at its edge, counted; NaN and infinities refused. */
static void test_clamp(void)
{
    struct vhist *h = vhist_new();
    CHECK(vhist_record(h, 1e12));
    CHECK(vhist_clamped(h) == 0 && vhist_max(h) == 1e12);
    CHECK(fabs(vhist_percentile(h, 50) - 1e12) <= 1e12 / 1024);
    CHECK(vhist_record(h, 1e20) && vhist_record(h, -1e-20));
    CHECK(vhist_clamped(h) == 2);
    CHECK(vhist_max(h) == 0x1p60 && vhist_min(h) == -0x1p-40);
    CHECK(!vhist_record(h, NAN) && !vhist_record(h, INFINITY) && !vhist_record(h, -INFINITY));
    CHECK(vhist_count(h) == 3 && vhist_clamped(h) == 2);
    CHECK(vhist_record(h, 0) && vhist_clamped(h) == 2); /* zero is in range */
    CHECK(vhist_record_n(h, 1e30, 5) && vhist_clamped(h) == 7 && vhist_count(h) == 9);
    CHECK(isfinite(vhist_stdev(h)) && isfinite(vhist_mean(h)));
    vhist_free(h);
}

/* ---- merging ------------------------------------------------------------- */

struct slot_list {
    uint32_t index[4096];
    uint64_t count[4096];
    size_t n;
};

static void collect(void *ud, uint32_t index, uint64_t count)
{
    struct slot_list *s = ud;
    if (s->n < 4096) {
        s->index[s->n] = index;
        s->count[s->n] = count;
    }
    s->n++;
}

static bool same(const struct vhist *a, const struct vhist *b, bool same_sums)
{
    static struct slot_list sa, sb;
    sa.n = sb.n = 0;
    vhist_foreach(a, collect, &sa);
    vhist_foreach(b, collect, &sb);
    double sum_a[2], sq_a[2], sum_b[2], sq_b[2];
    vhist_sums(a, sum_a, sq_a);
    vhist_sums(b, sum_b, sq_b);
    bool ok = sa.n == sb.n && sa.n <= 4096 && memcmp(sa.index, sb.index, sa.n * sizeof sa.index[0]) == 0 &&
              memcmp(sa.count, sb.count, sa.n * sizeof sa.count[0]) == 0 &&
              vhist_count(a) == vhist_count(b) && vhist_min(a) == vhist_min(b) &&
              vhist_max(a) == vhist_max(b) && vhist_clamped(a) == vhist_clamped(b);
    for (int p = 1; p < 100; p++)
        ok = ok && vhist_percentile(a, p) == vhist_percentile(b, p);
    if (same_sums)
        ok = ok && memcmp(sum_a, sum_b, sizeof sum_a) == 0 && memcmp(sq_a, sq_b, sizeof sq_a) == 0;
    else
        ok = ok && fabs(sum_a[0] - sum_b[0]) <= 1e-12 * fabs(sum_a[0]) + 1e-300;
    return ok;
}

/* Three parts merged in any order are the one histogram: slots, counts,
 * extremes, percentiles; for whole numbers the sums bit for bit. */
static void test_merge(void)
{
    for (int whole = 0; whole < 2; whole++) {
        uint64_t seed = 99 + (uint64_t)whole;
        struct vhist *one = vhist_new(), *part[3] = {vhist_new(), vhist_new(), vhist_new()};
        for (int i = 0; i < 3000; i++) {
            double v = whole ? (double)((int64_t)(rnd(&seed) % 7200000001ull) - 3600000000) : rnd_value(&seed);
            vhist_record(one, v);
            vhist_record(part[i % 3], v);
        }
        struct vhist *abc = vhist_new(), *cba = vhist_new();
        for (int k = 0; k < 3; k++) {
            vhist_merge(abc, part[k]);
            vhist_merge(cba, part[2 - k]);
        }
        CHECK(same(one, abc, whole) && same(one, cba, whole));
        CHECK(same(abc, cba, whole));
        struct vhist *twice = vhist_clone(one);
        vhist_merge(twice, twice);
        CHECK(vhist_count(twice) == 2 * vhist_count(one) && vhist_percentile(twice, 50) == vhist_percentile(one, 50));
        vhist_free(twice);
        vhist_free(one), vhist_free(abc), vhist_free(cba);
        for (int k = 0; k < 3; k++)
            vhist_free(part[k]);
    }
}

/* A document from before value histograms holds a non-time trend in µs
 * slots (whole numbers): it merges in exactly in count, min, max, sum. */
static void test_merge_us(void)
{
    struct hist *us = hist_new();
    struct vhist *v = vhist_new(), *direct = vhist_new();
    for (uint64_t i = 1; i <= 5000; i++) {
        hist_record(us, i * 3);
        vhist_record(direct, (double)(i * 3));
    }
    vhist_merge_us(v, us);
    CHECK(vhist_count(v) == 5000 && vhist_min(v) == 3 && vhist_max(v) == 15000);
    CHECK(vhist_sum(v) == vhist_sum(direct) && vhist_mean(v) == vhist_mean(direct));
    CHECK_NEAR(vhist_stdev(v), vhist_stdev(direct), 1e-15);
    for (int p = 1; p < 100; p += 7)
        CHECK_NEAR(vhist_percentile(v, p), vhist_percentile(direct, p), 1.0 / 1024);
    hist_free(us);
    vhist_free(v);
    vhist_free(direct);
}

/* ---- Lua: table form, JSON round trip, methods --------------------------- */

static lua_State *new_lua(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 1);
    json_fix_numbers(L, -1); /* as tide writes JSON: every double exactly */
    luaL_requiref(L, "tide.hist", luaopen_tide_hist, 0);
    lua_pop(L, 2);
    return L;
}

static int l_pushed(lua_State *L)
{
    struct vhist *h = vhist_new();
    for (int i = -50; i <= 50; i++)
        vhist_record(h, i / 10.0);
    hist_lua_push_values(L, h);
    return 1;
}

static const char lua_api_test[] =
    "local H = require 'tide.hist'\n"
    "local h = H.new('value')\n"
    "assert(h:unit() == 'value' and H.new():unit() == 'us')\n"
    "for i = 1, 100 do h:record(i / 100) end\n"
    "h:record(-3) h:record(0) h:record(7, 4)\n"
    "assert(h:count() == 106 and #h == 106 and h:min() == -3 and h:max() == 7)\n"
    "assert(h:percentile(50) == 0.51, h:percentile(50))\n"
    "local ok, e = pcall(h.record, h, 0/0) assert(not ok and e:find('finite number'), e)\n"
    "ok, e = pcall(h.record, h, math.huge) assert(not ok and e:find('finite number'), e)\n"
    "ok, e = pcall(H.new, 'ms') assert(not ok and e:find('invalid option'), e)\n"
    "h:record(1e300) assert(h:clamped() == 1 and h:max() == 2^60)\n"
    /* the table form through JSON as tide writes it: the same histogram */
    "local t = h:encode()\n"
    "assert(t.unit == 'value' and t.clamped == 1 and type(t.sum_lo) == 'number')\n"
    "local text = cjson.encode(t)\n"
    "assert(H.check(cjson.decode(text)))\n"
    "local d = H.decode(cjson.decode(text))\n"
    "assert(cjson.encode(d:encode()) == text)\n"
    "for p = 1, 99 do assert(d:percentile(p) == h:percentile(p)) end\n"
    "assert(d:mean() == h:mean() and d:stdev() == h:stdev() and d:sum() == h:sum())\n"
    /* packed slots, as hist.read_json leaves them */
    "local packed = {} for k, v in pairs(t) do packed[k] = v end\n"
    "packed.slots = table.concat(t.slots, ',')\n"
    "assert(H.decode(packed):percentile(50) == h:percentile(50))\n"
    /* a µs histogram takes values by becoming one of values */
    "local u = H.new() u:record(5) u:record(15)\n"
    "assert(u:merge(h) == u and u:unit() == 'value' and u:count() == h:count() + 2)\n"
    "assert(u:min() == -3 and u:max() == 2^60)\n"
    "local v = H.new('value'):merge(H.decode({unit='us', count=2, min=5, max=15, sum=20,\n"
    "  sumsq='250', clamped=0, slots={5, 1, 15, 1}}))\n"
    "assert(v:unit() == 'value' and v:sum() == 20 and v:percentile(100) == 15)\n"
    "ok, e = pcall(h.pack, h) assert(not ok and e:find('microseconds expected'), e)\n"
    "local c = h:clone() h:free() assert(c:count() == 107)\n"
    "assert(tostring(c):match('^tide%.hist: values count=107'), tostring(c))\n"
    "local p = pushed() assert(p:unit() == 'value' and p:percentile(50) == 0 and p:min() == -5)\n"
    "return true\n";

static void test_lua_api(void)
{
    lua_State *L = new_lua();
    lua_register(L, "pushed", l_pushed);
    if (!CHECK(luaL_dostring(L, lua_api_test) == LUA_OK))
        fprintf(stderr, "  %s\n", lua_tostring(L, -1));
    lua_close(L);
}

/* Malformed value tables: refused with a reason, never a crash. */
#define GOOD "unit='value', count=2, min=-1.5, max=0.25, sum=-1.25, sum_lo=0, sumsq=2.3125, sumsq_lo=0, clamped=0"
static const struct {
    const char *name, *lua, *reason;
} bad_tables[] = {
    {"good", "return {" GOOD ", slots={%d, 1, %d, 1}}", NULL},
    {"unit", "local t = {" GOOD ", slots={}} t.unit = 'values' return t", "unit must be"},
    {"min not finite", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.min = 0/0 return t", "min and max"},
    {"sum missing", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.sum = nil return t", "sum and sum_lo"},
    {"sumsq text", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.sumsq = '2' return t", "sumsq and sumsq_lo"},
    {"count", "local t = {" GOOD ", slots={%d, 1, %d, 2}} return t", "do not sum to count"},
    {"min slot", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.min = -1.4 return t", "first/last"},
    {"min > max", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.min, t.max = 0.25, -1.5 return t", "min/max"},
    {"clamped", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.clamped = 3 return t", "clamped"},
    {"index", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.slots[3] = 1e7 return t", "out of range"},
    {"negative sumsq", "local t = {" GOOD ", slots={%d, 1, %d, 1}} t.sumsq = -1 return t", "sumsq"},
};

static void test_malformed(void)
{
    lua_State *L = new_lua();
    for (size_t i = 0; i < sizeof bad_tables / sizeof bad_tables[0]; i++) {
        char code[512];
        snprintf(code, sizeof code, bad_tables[i].lua, (int)vhist_slot_of(-1.5), (int)vhist_slot_of(0.25));
        if (!CHECK(luaL_dostring(L, code) == LUA_OK))
            continue;
        struct hist *us;
        struct vhist *v;
        const char *err = hist_lua_decode_any(L, -1, &us, &v);
        CHECK(us == NULL);
        if (!bad_tables[i].reason) {
            if (CHECK(err == NULL && v != NULL))
                CHECK(vhist_count(v) == 2 && vhist_percentile(v, 50) == -1.5 && vhist_mean(v) == -0.625);
        } else if (!CHECK(err && v == NULL && strstr(err, bad_tables[i].reason))) {
            fprintf(stderr, "  %s: %s\n", bad_tables[i].name, err ? err : "(accepted)");
        }
        vhist_free(v);
        lua_pop(L, 1);
    }
    lua_close(L);
}

int main(void)
{
    test_layout();
    test_fractions();
    test_percentiles_random();
    test_signs_and_zero();
    test_clamp();
    test_merge();
    test_merge_us();
    test_lua_api();
    test_malformed();
    return check_report("vhist");
}
