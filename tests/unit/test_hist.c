/* Unit tests for src/hist.c and src/hist_lua.c. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hist.h"
#include "hist_lua.h"

int luaopen_cjson(lua_State *L);

#define N 100003 /* not round, so ceil() in the rank matters */

/* Percentiles as permille, so the exact rank is integer arithmetic that is
 * independent of how hist.c rounds p/100*count. */
static const unsigned permille[] = { 0, 10, 100, 500, 900, 950, 990, 999, 1000 };
#define NPERMILLE (sizeof permille / sizeof permille[0])

/* splitmix64: fixed seed, so every run sees the same data. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd_unit(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1p-53; }

/* ---- data sets --------------------------------------------------------- */

typedef size_t (*gen_fn)(uint64_t *v, uint64_t *seed);

static size_t gen_uniform(uint64_t *v, uint64_t *seed)
{
    for (size_t i = 0; i < N; i++)
        v[i] = 1 + rnd(seed) % 1000000;
    return N;
}

static size_t gen_loguniform(uint64_t *v, uint64_t *seed)
{
    for (size_t i = 0; i < N; i++) {
        double x = exp(rnd_unit(seed) * log(3.6e9));
        v[i] = x < 1 ? 1 : x > (double)HIST_MAX_US ? HIST_MAX_US : (uint64_t)x;
    }
    return N;
}

static size_t gen_identical(uint64_t *v, uint64_t *seed)
{
    (void)seed;
    for (size_t i = 0; i < N; i++)
        v[i] = 123457;
    return N;
}

static size_t gen_clusters(uint64_t *v, uint64_t *seed)
{
    for (size_t i = 0; i < N; i++)
        v[i] = i % 3 ? 150 + rnd(seed) % 10 : 2500000000ull + rnd(seed) % 100000;
    return N;
}

/* 2^k-1, 2^k, 2^k+1 for every octave plus the range ends: the values most
 * likely to expose an off-by-one in the slot index. */
static size_t gen_boundaries(uint64_t *v, uint64_t *seed)
{
    uint64_t b[3 * 32 + 4];
    size_t nb = 0;
    for (unsigned k = 1; k < 32; k++)
        for (int d = -1; d <= 1; d++)
            b[nb++] = (1ull << k) + (uint64_t)(int64_t)d;
    b[nb++] = 0;
    b[nb++] = HIST_MAX_US - 1;
    b[nb++] = HIST_MAX_US;
    for (size_t i = 0; i < N; i++)
        v[i] = b[rnd(seed) % nb];
    return N;
}

static size_t gen_single(uint64_t *v, uint64_t *seed)
{
    (void)seed;
    v[0] = 777777;
    return 1;
}

static size_t gen_pow2(uint64_t *v, uint64_t *seed)
{
    for (size_t i = 0; i < N; i++)
        v[i] = 1ull << (rnd(seed) % 32);
    return N;
}

static size_t gen_extremes(uint64_t *v, uint64_t *seed)
{
    for (size_t i = 0; i < N; i++)
        v[i] = rnd(seed) % 100 ? 1 : HIST_MAX_US;
    return N;
}

static size_t gen_narrow(uint64_t *v, uint64_t *seed)
{
    for (size_t i = 0; i < N; i++)
        v[i] = 1000 + rnd(seed) % 4001;
    return N;
}

static const struct {
    const char *name;
    gen_fn gen;
} datasets[] = {
    { "uniform", gen_uniform },   { "loguniform", gen_loguniform },
    { "identical", gen_identical }, { "clusters", gen_clusters },
    { "boundaries", gen_boundaries }, { "single", gen_single },
    { "pow2", gen_pow2 },         { "extremes", gen_extremes },
    { "narrow", gen_narrow },
};
#define NDATASETS (sizeof datasets / sizeof datasets[0])

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static struct hist *hist_of(const uint64_t *v, size_t n)
{
    struct hist *h = hist_new();
    CHECK(h != NULL);
    for (size_t i = 0; i < n; i++)
        hist_record(h, v[i]);
    return h;
}

/* ---- percentiles and stats --------------------------------------------- */

static void check_stats(const char *name, const struct hist *h, const uint64_t *sorted, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += sorted[i];
    long double mean = (long double)sum / n, var = 0;
    for (size_t i = 0; i < n; i++)
        var += ((long double)sorted[i] - mean) * ((long double)sorted[i] - mean);
    double sd = n > 1 ? (double)sqrtl(var / n) : 0;
    if (!(CHECK(hist_count(h) == n) & CHECK(hist_sum(h) == sum) &
          CHECK(hist_min(h) == sorted[0]) & CHECK(hist_max(h) == sorted[n - 1]) &
          CHECK(hist_mean(h) == (double)sum / (double)n) & CHECK_NEAR(hist_stdev(h), sd, 1e-9)))
        fprintf(stderr, "  data set %s\n", name);
}

static void check_percentiles(const char *name, const struct hist *h, const uint64_t *sorted,
                              size_t n)
{
    for (size_t i = 0; i < NPERMILLE; i++) {
        uint64_t rank = (permille[i] * n + 999) / 1000;
        double exact = (double)sorted[rank ? rank - 1 : 0];
        double got = hist_percentile(h, permille[i] / 10.0);
        if (!CHECK_NEAR(got, exact, 0.001))
            fprintf(stderr, "  data set %s, p%g\n", name, permille[i] / 10.0);
        /* The design promises half a slot: 1/2048 relative. */
        if (!CHECK(fabs(got - exact) <= exact / 2048))
            fprintf(stderr, "  data set %s, p%g: %.1f vs %.1f\n", name, permille[i] / 10.0,
                    got, exact);
    }
    CHECK(hist_percentile(h, 0) == (double)sorted[0]);
    CHECK(hist_percentile(h, 100) == (double)sorted[n - 1]);
}

static void test_datasets(uint64_t *v)
{
    uint64_t seed = 42;
    for (size_t d = 0; d < NDATASETS; d++) {
        size_t n = datasets[d].gen(v, &seed);
        struct hist *h = hist_of(v, n);
        qsort(v, n, sizeof *v, cmp_u64);
        check_stats(datasets[d].name, h, v, n);
        check_percentiles(datasets[d].name, h, v, n);
        CHECK(hist_clamped(h) == 0);
        hist_free(h);
    }
}

/* Decimal p whose p/100*count is a whole number must give exactly that rank,
 * although most such p are not exact in binary.  Values 1..2000, 50 of
 * each, sit in unit-width slots, so the rank is visible in the value. */
static void test_rank(void)
{
    struct hist *h = hist_new();
    for (uint64_t v = 1; v <= 2000; v++)
        hist_record_n(h, v, 50);
    unsigned bad = 0;
    for (unsigned j = 1; j < 10000; j++) /* p = 0.01 .. 99.99, rank = 10 j */
        bad += hist_percentile(h, j / 100.0) != (double)((j + 4) / 5);
    CHECK(bad == 0);
    hist_free(h);
}

/* ---- slot layout ------------------------------------------------------- */

static void test_layout(void)
{
    CHECK(hist_slots() == 2048 + 20 * 1024 + (HIST_MAX_US >> 21) - 1024 + 1);
    CHECK(hist_slot_of(0) == 0);
    CHECK(hist_slot_of(2047) == 2047);
    CHECK(hist_slot_of(2048) == 2048 && hist_slot_of(2049) == 2048);
    CHECK(hist_slot_of(4095) == 3071 && hist_slot_of(4096) == 3072);
    CHECK(hist_slot_of(HIST_MAX_US) == hist_slots() - 1);
    CHECK(hist_slot_of(HIST_MAX_US + 1) == hist_slots() - 1);
    CHECK(hist_slot_of(UINT64_MAX) == hist_slots() - 1);
    /* Contiguous: consecutive values never skip a slot. */
    unsigned bad = 0;
    for (uint64_t v = 0; v < (1u << 22); v++)
        bad += hist_slot_of(v + 1) - hist_slot_of(v) > 1;
    for (unsigned k = 22; k < 32; k++)
        for (uint64_t v = (1ull << k) - 5000; v < (1ull << k) + 5000; v++)
            bad += hist_slot_of(v + 1) - hist_slot_of(v) > 1;
    CHECK(bad == 0);
}

/* Every value's slot midpoint (p50 of a lone slot, no stats to clamp to) is
 * within half a slot of it. */
static void test_resolution(void)
{
    uint64_t seed = 7;
    struct hist *h = hist_new();
    unsigned bad = 0;
    for (unsigned i = 0; i < 200000; i++) {
        uint64_t v = i < 100000 ? i : rnd(&seed) % (HIST_MAX_US + 1);
        hist_reset(h);
        hist_add_slot(h, hist_slot_of(v), 1);
        double mid = hist_percentile(h, 50);
        bad += fabs(mid - (double)v) > (double)v / 2048;
    }
    CHECK(bad == 0);
    hist_free(h);
}

/* ---- merge --------------------------------------------------------------- */

struct slots {
    uint32_t index[1 << 15];
    uint64_t count[1 << 15];
    size_t n;
};

static void collect(void *ud, uint32_t index, uint64_t count)
{
    struct slots *s = ud;
    if (s->n < sizeof s->index / sizeof s->index[0]) {
        s->index[s->n] = index;
        s->count[s->n] = count;
    }
    s->n++;
}

static struct slots sa, sb; /* too big for the stack */

static bool same_slots(const struct hist *a, const struct hist *b)
{
    sa.n = sb.n = 0;
    hist_foreach(a, collect, &sa);
    hist_foreach(b, collect, &sb);
    return sa.n == sb.n && !memcmp(sa.index, sb.index, sa.n * sizeof sa.index[0]) &&
           !memcmp(sa.count, sb.count, sa.n * sizeof sa.count[0]);
}

static void check_same(const struct hist *a, const struct hist *b, double stdev_rel)
{
    CHECK(same_slots(a, b));
    CHECK(hist_count(a) == hist_count(b));
    CHECK(hist_min(a) == hist_min(b));
    CHECK(hist_max(a) == hist_max(b));
    CHECK(hist_sum(a) == hist_sum(b));
    CHECK(hist_clamped(a) == hist_clamped(b));
    CHECK_NEAR(hist_stdev(a), hist_stdev(b), stdev_rel);
    uint64_t ahi, alo, bhi, blo;
    hist_sumsq_words(a, &ahi, &alo);
    hist_sumsq_words(b, &bhi, &blo);
    CHECK(ahi == bhi && alo == blo);
    for (size_t i = 0; i < NPERMILLE; i++)
        CHECK(hist_percentile(a, permille[i] / 10.0) == hist_percentile(b, permille[i] / 10.0));
}

static void test_merge(uint64_t *v)
{
    uint64_t seed = 99;
    size_t na = gen_uniform(v, &seed);
    v[na - 1] = HIST_MAX_US + 12345; /* a clamped value travels too */
    struct hist *a = hist_of(v, na), *all = hist_of(v, na);
    size_t nb = gen_loguniform(v, &seed);
    struct hist *b = hist_of(v, nb);
    for (size_t i = 0; i < nb; i++)
        hist_record(all, v[i]);

    struct hist *m = hist_clone(a);
    hist_merge(m, b);
    check_same(m, all, 0);
    CHECK(hist_clamped(m) == 1);

    struct hist *e = hist_new(), *into_empty = hist_new();
    hist_merge(into_empty, a);
    check_same(into_empty, a, 0);
    hist_merge(m, e); /* empty source changes nothing */
    check_same(m, all, 0);
    hist_merge(e, e);
    CHECK(hist_count(e) == 0 && hist_min(e) == 0);

    hist_merge(m, m); /* self-merge doubles */
    CHECK(hist_count(m) == 2 * hist_count(all) && hist_sum(m) == 2 * hist_sum(all));
    CHECK(hist_percentile(m, 50) == hist_percentile(all, 50));
    hist_free(m), hist_free(e), hist_free(into_empty);
    hist_free(a), hist_free(b), hist_free(all);
}

/* ---- clamping, record_n, reset, memory ------------------------------------ */

static void test_clamp(void)
{
    struct hist *h = hist_new();
    hist_record(h, HIST_MAX_US);
    hist_record(h, HIST_MAX_US + 1);
    hist_record(h, UINT64_MAX);
    hist_record_n(h, UINT64_MAX, 5);
    CHECK(hist_count(h) == 8 && hist_clamped(h) == 7);
    CHECK(hist_max(h) == HIST_MAX_US && hist_min(h) == HIST_MAX_US);
    CHECK(hist_sum(h) == 8 * HIST_MAX_US);
    CHECK(hist_percentile(h, 100) == (double)HIST_MAX_US);
    CHECK(hist_percentile(h, 50) == (double)HIST_MAX_US);
    CHECK(hist_stdev(h) == 0);
    hist_free(h);
}

static void count_slot(void *ud, uint32_t index, uint64_t count)
{
    (void)index;
    (void)count;
    (*(unsigned *)ud)++;
}

static void test_record_n_reset(void)
{
    struct hist *h = hist_new();
    size_t empty = hist_memory(h);
    hist_record_n(h, 500, 0);
    CHECK(hist_count(h) == 0 && hist_min(h) == 0);
    CHECK(hist_mean(h) == 0 && hist_stdev(h) == 0 && hist_percentile(h, 50) == 0);
    hist_record_n(h, 500, 3);
    hist_record(h, 900);
    CHECK(hist_count(h) == 4 && hist_sum(h) == 2400 && hist_mean(h) == 600);
    CHECK_NEAR(hist_stdev(h), sqrt(30000.0), 1e-12);
    hist_reset(h);
    CHECK(hist_count(h) == 0 && hist_sum(h) == 0 && hist_memory(h) == empty);
    hist_record(h, 70);
    CHECK(hist_min(h) == 70 && hist_max(h) == 70);
    CHECK(!hist_add_slot(h, hist_slots(), 1) && hist_add_slot(h, hist_slots() - 1, 1));
    /* clear: empty as after reset, but the chunks stay for the next fill */
    hist_record(h, 5000000);
    hist_record(h, 3);
    size_t full = hist_memory(h);
    hist_clear(h);
    CHECK(hist_count(h) == 0 && hist_sum(h) == 0 && hist_sumsq(h) == 0 && hist_clamped(h) == 0);
    CHECK(hist_min(h) == 0 && hist_max(h) == 0 && hist_percentile(h, 99) == 0 && hist_memory(h) == full);
    unsigned slots = 0;
    hist_foreach(h, count_slot, &slots);
    CHECK(slots == 0);
    hist_record(h, 70);
    CHECK(hist_count(h) == 1 && hist_min(h) == 70 && hist_max(h) == 70);
    CHECK(hist_percentile(h, 50) == 70 && hist_memory(h) == full);
    hist_free(h);
    hist_free(NULL);
}

static void test_memory(void)
{
    uint64_t seed = 5;
    struct hist *h = hist_new();
    size_t empty = hist_memory(h);
    for (unsigned i = 0; i < N; i++)
        hist_record(h, 1000 + rnd(&seed) % 4001);
    size_t narrow = hist_memory(h);
    CHECK(narrow < 40 * 1024);
    for (unsigned i = 0; i < N; i++)
        hist_record(h, 1 + rnd(&seed) % HIST_MAX_US);
    printf("hist memory: empty %zu B, values in [1ms,5ms] %zu B, full range %zu B\n", empty,
           narrow, hist_memory(h));
    hist_free(h);
}

/* ---- Lua: encode / decode / JSON ------------------------------------------ */

static lua_State *new_lua(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "cjson", luaopen_cjson, 1);
    luaL_requiref(L, "tide.hist", luaopen_tide_hist, 0);
    lua_pop(L, 2);
    return L;
}

/* Replaces the table on top of the stack with cjson.decode(cjson.encode(t)). */
static void json_roundtrip(lua_State *L)
{
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 1);
    lua_getfield(L, -2, "decode");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

static void check_roundtrip(lua_State *L, const struct hist *h)
{
    int top = lua_gettop(L);
    const char *err = "unset";
    hist_lua_encode(L, h);
    struct hist *d = hist_lua_decode(L, -1, &err);
    if (CHECK(d != NULL) && CHECK(err == NULL))
        check_same(h, d, 1e-12);
    hist_free(d);

    json_roundtrip(L);
    CHECK(lua_type(L, -1) == LUA_TTABLE);
    d = hist_lua_decode(L, -1, &err);
    if (!CHECK(d != NULL))
        fprintf(stderr, "  decode: %s\n", err);
    else
        check_same(h, d, 0); /* sumsq travels as decimal text: exact */
    hist_free(d);
    lua_settop(L, top);
}

static void test_roundtrip(uint64_t *v)
{
    lua_State *L = new_lua();
    uint64_t seed = 3;
    struct hist *h = hist_new();
    check_roundtrip(L, h); /* empty */
    hist_record(h, 777);
    check_roundtrip(L, h); /* single */
    for (size_t d = 0; d < NDATASETS; d++) {
        size_t n = datasets[d].gen(v, &seed);
        for (size_t i = 0; i < n; i++)
            hist_record(h, v[i]);
        hist_record(h, HIST_MAX_US * 2);
        check_roundtrip(L, h);
        hist_reset(h);
    }
    hist_free(h);
    lua_close(L);
}

/* ---- the packed form and 128-bit text ----------------------------------- */

static void check_pack(const struct hist *h)
{
    unsigned char *p;
    size_t n = hist_pack(h, &p);
    CHECK(n <= hist_pack_bound(h));
    struct hist *u = hist_unpack(p, n);
    if (CHECK(u != NULL))
        check_same(h, u, 0);
    /* every proper prefix that cuts a varint or a pair is refused */
    struct hist *cut = n > 1 ? hist_unpack(p, n - 1) : NULL;
    CHECK(!cut || hist_count(cut) < hist_count(h) || hist_count(h) == 0);
    hist_free(cut);
    hist_free(u);
    free(p);
}

static void test_pack(uint64_t *v)
{
    uint64_t seed = 17;
    struct hist *h = hist_new();
    check_pack(h); /* empty */
    hist_record(h, 0);
    check_pack(h);
    for (size_t d = 0; d < NDATASETS; d++) {
        size_t n = datasets[d].gen(v, &seed);
        for (size_t i = 0; i < n; i++)
            hist_record(h, v[i]);
        hist_record(h, HIST_MAX_US * 3);
        check_pack(h);
        hist_reset(h);
    }
    /* a typical second: a few hundred distinct latencies, a few hundred bytes */
    for (uint64_t i = 0; i < 2000; i++)
        hist_record(h, 20000 + (i * 7919) % 20000);
    unsigned char *p;
    size_t n = hist_pack(h, &p);
    CHECK(n < 2500);
    free(p);
    hist_free(h);
    static const unsigned char bad[][8] = {
        { 0x80 },                                   /* unfinished varint */
        { 0, 0, 0, 0, 0, 0, 5 },                    /* index without a count */
        { 0, 5, 5, 5, 25, 0, 5, 0 },                /* a zero count */
        { 0, 5, 5, 5, 25, 0, 0xff, 0x7f },          /* index beyond the last slot */
    };
    static const size_t badlen[] = { 1, 7, 8, 8 };
    for (size_t i = 0; i < sizeof badlen / sizeof badlen[0]; i++)
        CHECK(hist_unpack(bad[i], badlen[i]) == NULL);
}

static void test_u128_text(void)
{
    char buf[48];
    uint64_t hi, lo;
    CHECK(hist_u128_format(0, 0, buf, sizeof buf) == 1 && strcmp(buf, "0") == 0);
    CHECK(hist_u128_format(~0ull, ~0ull, buf, sizeof buf) == 39 &&
          strcmp(buf, "340282366920938463463374607431768211455") == 0);
    CHECK(hist_u128_parse(buf, strlen(buf), &hi, &lo) && hi == ~0ull && lo == ~0ull);
    CHECK(!hist_u128_parse("340282366920938463463374607431768211456", 39, &hi, &lo));
    CHECK(hist_u128_parse("18446744073709551616", 20, &hi, &lo) && hi == 1 && lo == 0);
    CHECK(!hist_u128_parse("", 0, &hi, &lo) && !hist_u128_parse("12a", 3, &hi, &lo) &&
          !hist_u128_parse("-1", 2, &hi, &lo));
    CHECK(hist_u128_format(1, 0, buf, 5) == 0);
}

/* Values 5, 5, 3000: slot of 3000 is 2048 + (3000 - 2048) / 2 = 2524. */
#define GOOD "unit='us', count=3, min=5, max=3000, sum=3010, sumsq=9000050, clamped=0"

static const struct {
    const char *why, *lua;
} malformed[] = {
    { "not a table", "return 42" },
    { "missing slots", "return {" GOOD "}" },
    { "slots not a table", "return {" GOOD ", slots='5,2'}" },
    { "odd length", "return {" GOOD ", slots={5, 2, 2524}}" },
    { "index out of range", "return {" GOOD ", slots={5, 2, 23221, 1}}" },
    { "index negative", "return {" GOOD ", slots={-5, 2, 2524, 1}}" },
    { "count mismatch", "return {" GOOD ", slots={5, 2, 2524, 2}}" },
    { "negative count", "return {" GOOD ", slots={5, -2, 2524, 1}}" },
    { "fractional count", "return {" GOOD ", slots={5, 1.5, 2524, 1}}" },
    { "string count", "return {" GOOD ", slots={5, '2', 2524, 1}}" },
    { "hole", "return {" GOOD ", slots={5, 2, nil, 1}}" },
    { "descending", "return {" GOOD ", slots={2524, 1, 5, 2}}" },
    { "duplicate", "return {" GOOD ", slots={5, 1, 5, 1, 2524, 1}}" },
    { "unit ms", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.unit = 'ms' return t" },
    { "no unit", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.unit = nil return t" },
    { "no count", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.count = nil return t" },
    { "no sumsq", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.sumsq = nil return t" },
    { "min off slot", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.min = 6 return t" },
    { "max off slot", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.max = 9000 return t" },
    { "min > max", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.min = 3001 return t" },
    { "clamped > count", "local t = {" GOOD ", slots={5, 2, 2524, 1}} t.clamped = 4 return t" },
};

static void test_malformed(void)
{
    lua_State *L = new_lua();
    const char *err = NULL;
    CHECK(luaL_dostring(L, "return {" GOOD ", slots={5, 2, 2524, 1}}") == LUA_OK);
    struct hist *h = hist_lua_decode(L, -1, &err);
    CHECK(h && hist_count(h) == 3 && hist_percentile(h, 100) == 3000 && err == NULL);
    hist_free(h);
    lua_pop(L, 1);
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        if (!CHECK(luaL_dostring(L, malformed[i].lua) == LUA_OK))
            continue;
        int top = lua_gettop(L);
        err = NULL;
        h = hist_lua_decode(L, -1, &err);
        if (!(CHECK(h == NULL) & CHECK(err != NULL) & CHECK(lua_gettop(L) == top)))
            fprintf(stderr, "  case: %s\n", malformed[i].why);
        hist_free(h);
        lua_pop(L, 1);
    }
    lua_close(L);
}

/* The Lua-visible API, exercised from Lua itself. */
static const char lua_api_test[] =
    "local H = require 'tide.hist'\n"
    "local h = H.new()\n"
    "for i = 1, 1000 do h:record(i) end\n"
    "h:record(2.4)\n" /* rounds to 2 */
    "assert(h:count() == 1001 and #h == 1001 and math.type(h:count()) == 'integer')\n"
    "assert(h:min() == 1 and h:max() == 1000 and h:sum() == 500502)\n"
    "assert(h:percentile(0) == 1 and h:percentile(100) == 1000 and h:percentile(50) == 500)\n"
    "assert(math.abs(h:mean() - 500502 / 1001) < 1e-9 and h:stdev() > 288)\n"
    "h:record(10, 5) assert(h:count() == 1006)\n"
    "local ok, e = pcall(h.percentile, h, 101)\n"
    "assert(not ok and e:find('percentile must be in', 1, true), e)\n"
    "ok, e = pcall(h.record, h, -1) assert(not ok and e:find('latency must be >= 0'), e)\n"
    "ok, e = pcall(h.record, h, 1, -1) assert(not ok and e:find('count must be >= 0'), e)\n"
    "ok, e = pcall(h.merge, h, {}) assert(not ok and e:find('tide.hist expected'), e)\n"
    "local g = h:clone() assert(g:count() == h:count())\n"
    "assert(g:merge(h) == g and g:count() == 2 * h:count())\n"
    "local t = h:encode() assert(t.unit == 'us' and #t.slots % 2 == 0)\n"
    "local d = H.decode(cjson.decode(cjson.encode(t)))\n"
    "assert(d:count() == h:count() and d:percentile(99) == h:percentile(99))\n"
    "assert(tostring(h):match('^tide%.hist: count=1006 .*p50='), tostring(h))\n"
    "ok, e = pcall(H.decode, {unit = 'ms'})\n"
    "assert(not ok and e:find('^tide%.hist%.decode: unit'), e)\n"
    "ok, e = pcall(H.decode, 5) assert(not ok and e:find('^tide%.hist%.decode: '), e)\n"
    "local u = H.unpack(h:pack()) assert(u:count() == h:count() and u:sum() == h:sum())\n"
    "assert(u:percentile(99) == h:percentile(99) and u:stdev() == h:stdev())\n"
    "ok, e = pcall(H.unpack, 'not base64!') assert(not ok and e:find('not a packed'), e)\n"
    "local lo, w = H.slot_range(2048) assert(lo == 2048 and w == 2, lo)\n"
    "lo, w = H.slot_range(5) assert(lo == 5 and w == 1)\n"
    "assert(type(t.sumsq) == 'string')\n"
    "local c = pushed() assert(c:count() == 2 and c:max() == 3000)\n"
    "return true\n";

static int l_pushed(lua_State *L)
{
    struct hist *h = hist_new();
    hist_record(h, 5);
    hist_record(h, 3000);
    hist_lua_push(L, h);
    return 1;
}

static void test_lua_api(void)
{
    lua_State *L = new_lua();
    lua_register(L, "pushed", l_pushed);
    if (!CHECK(luaL_dostring(L, lua_api_test) == LUA_OK))
        fprintf(stderr, "  %s\n", lua_tostring(L, -1));
    lua_close(L);
}

/* hist_lua_push owns h even when Lua cannot allocate the userdata. */
static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)osize;
    if (!nsize) {
        free(ptr);
        return NULL;
    }
    return *(bool *)ud && nsize > osize ? NULL : realloc(ptr, nsize);
}

static int push_without_memory(lua_State *L)
{
    bool *fail = lua_touserdata(L, 1);
    struct hist *h = hist_new();
    hist_record(h, 1234);
    *fail = true;
    hist_lua_push(L, h);
    return 1;
}

static void test_push_oom(void)
{
    bool fail = false;
    lua_State *L = lua_newstate(failing_alloc, &fail);
    luaL_openlibs(L);
    lua_pushcfunction(L, push_without_memory);
    lua_pushlightuserdata(L, &fail);
    CHECK(lua_pcall(L, 1, 1, 0) != LUA_OK);
    fail = false;
    CHECK(strstr(lua_tostring(L, -1), "not enough memory") != NULL);
    lua_close(L); /* a leak of h shows under ASan / valgrind */
}

struct coarse_tally {
    uint64_t n;
    uint64_t sum_index;
};

static void coarse_count(void *ud, uint32_t index, uint64_t count)
{
    struct coarse_tally *s = ud;
    s->n++;
    s->sum_index += (uint64_t)index * count;
}

/* Coarse seconds: fewer slots, exact stats, percentiles within 1/64, and
 * coarsening commutes with merging (merged seconds stay exact). */
static void test_coarsen(void)
{
    struct hist *a = hist_new(), *b = hist_new(), *ab = hist_new(), *full = hist_new();
    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t v = 40 + (i * 7919) % 3000000;
        hist_record(i % 2 ? a : b, v);
        hist_record(full, v);
    }
    hist_merge(ab, a);
    hist_merge(ab, b);
    struct coarse_tally before = {0}, after = {0};
    hist_foreach(ab, coarse_count, &before);
    hist_coarsen(a, 6);
    hist_coarsen(b, 6);
    hist_coarsen(ab, 6);
    hist_foreach(ab, coarse_count, &after);
    CHECK(after.n < before.n / 4);
    CHECK(hist_count(ab) == hist_count(full) && hist_min(ab) == hist_min(full) &&
          hist_max(ab) == hist_max(full) && hist_sum(ab) == hist_sum(full));
    for (double p = 1; p < 100; p += 7)
        CHECK_NEAR(hist_percentile(ab, p), hist_percentile(full, p), 1.0 / 64);
    struct hist *merged = hist_new();
    hist_merge(merged, a);
    hist_merge(merged, b);
    struct coarse_tally m = {0};
    hist_foreach(merged, coarse_count, &m);
    CHECK(m.n == after.n && m.sum_index == after.sum_index);
    hist_free(a);
    hist_free(b);
    hist_free(ab);
    hist_free(full);
    hist_free(merged);
}

int main(void)
{
    test_coarsen();
    uint64_t *v = malloc(N * sizeof *v);
    if (!v)
        return 2;
    test_layout();
    test_resolution();
    test_datasets(v);
    test_rank();
    test_merge(v);
    test_clamp();
    test_record_n_reset();
    test_memory();
    test_roundtrip(v);
    test_pack(v);
    test_u128_text();
    test_malformed();
    test_lua_api();
    test_push_oom();
    free(v);
    return check_report("test_hist");
}
