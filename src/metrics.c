#include "metrics.h"
#include "hist.h"
#include "hist_lua.h"
#include "once.h"
#include "vhist.h"
#include "xmalloc.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct series {
    union {
        struct { double sum; uint64_t n; } counter;
        struct { double value, min, max; uint64_t at; bool set; } gauge; /* at: wall clock, ns */
        struct { uint64_t passes, total; } rate;
        /* a time trend's µs histogram, or any other trend's values */
        struct { struct hist *us; struct vhist *values; } trend;
    } u;
};

struct metric {
    char *name;
    enum metric_type type;
    enum metric_contains contains;
    struct series **by_tag;     /* indexed by tag set id */
    size_t ntags;
};

struct tagset {
    char *key;
    size_t len;
    uint64_t hash;
};

struct metrics {
    struct metric *metrics;
    size_t nmetrics;
    struct tagset *tags;
    size_t ntags, tags_cap;
    int *table;                 /* open addressing: tag set id + 1 */
    size_t table_cap;
};

static const char *next_pair(const char **p, const char *end, size_t *klen, size_t *len);

static const struct { const char *name; enum metric_type t; enum metric_contains c; } builtin[] = {
    [M_HTTP_REQS] = {"http_reqs", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_HTTP_REQ_DURATION] = {"http_req_duration", METRIC_TREND, CONTAINS_TIME},
    [M_HTTP_REQ_WAITING] = {"http_req_waiting", METRIC_TREND, CONTAINS_TIME},
    [M_HTTP_REQ_CONNECTING] = {"http_req_connecting", METRIC_TREND, CONTAINS_TIME},
    [M_HTTP_REQ_TLS] = {"http_req_tls_handshaking", METRIC_TREND, CONTAINS_TIME},
    [M_HTTP_REQ_FAILED] = {"http_req_failed", METRIC_RATE, CONTAINS_DEFAULT},
    [M_HTTP_BODY_TRUNCATED] = {"http_body_truncated", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_HTTP_REQS_CURL] = {"http_reqs_curl", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_HTTP_REQS_LEAN] = {"http_reqs_lean", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_DATA_SENT] = {"data_sent", METRIC_COUNTER, CONTAINS_DATA},
    [M_DATA_RECEIVED] = {"data_received", METRIC_COUNTER, CONTAINS_DATA},
    [M_ITERATIONS] = {"iterations", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_ITERATION_DURATION] = {"iteration_duration", METRIC_TREND, CONTAINS_TIME},
    [M_ITERATION_ERRORS] = {"iteration_errors", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_ITERATIONS_INTERRUPTED] = {"iterations_interrupted", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_VUS] = {"vus", METRIC_GAUGE, CONTAINS_DEFAULT},
    [M_VUS_MAX] = {"vus_max", METRIC_GAUGE, CONTAINS_DEFAULT},
    [M_DROPPED_ITERATIONS] = {"dropped_iterations", METRIC_COUNTER, CONTAINS_DEFAULT},
    [M_GROUP_DURATION] = {"group_duration", METRIC_TREND, CONTAINS_TIME},
    [M_ITERATION_START_DELAY] = {"iteration_start_delay", METRIC_TREND, CONTAINS_TIME},
};

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof *m);
    for (int i = 0; i < M_BUILTIN_COUNT; i++)
        if (metrics_define(m, builtin[i].name, builtin[i].t, builtin[i].c) != i) {
            metrics_free(m);
            return NULL;
        }
    return m;
}

static void series_free(struct series *s, enum metric_type t)
{
    if (s && t == METRIC_TREND) {
        hist_free(s->u.trend.us);
        vhist_free(s->u.trend.values);
    }
    free(s);
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nmetrics; i++) {
        struct metric *mt = &m->metrics[i];
        for (size_t j = 0; j < mt->ntags; j++)
            series_free(mt->by_tag[j], mt->type);
        free(mt->by_tag);
        free(mt->name);
    }
    for (size_t i = 0; i < m->ntags; i++)
        free(m->tags[i].key);
    free(m->metrics);
    free(m->tags);
    free(m->table);
    free(m);
}

const char *metrics_builtin_name(int i)
{
    return i >= 0 && i < M_BUILTIN_COUNT ? builtin[i].name : NULL;
}

enum metric_contains metrics_contains_of(const struct metrics *m, int id)
{
    return m->metrics[id].contains;
}

int metrics_find(const struct metrics *m, const char *name)
{
    for (size_t i = 0; i < m->nmetrics; i++)
        if (strcmp(m->metrics[i].name, name) == 0)
            return (int)i;
    return -1;
}

int metrics_define(struct metrics *m, const char *name, enum metric_type t, enum metric_contains c)
{
    int id = metrics_find(m, name);
    if (id >= 0)
        return m->metrics[id].type == t ? id : -1;
    m->metrics = xrealloc(m->metrics, (m->nmetrics + 1) * sizeof *m->metrics);
    struct metric *mt = &m->metrics[m->nmetrics];
    memset(mt, 0, sizeof *mt);
    mt->name = xstrdup(name);
    mt->type = t;
    mt->contains = c;
    return (int)m->nmetrics++;
}

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return h;
}

static void table_grow(struct metrics *m)
{
    size_t cap = m->table_cap ? m->table_cap * 2 : 64;
    int *t = xcalloc(cap, sizeof *t);
    for (size_t i = 0; i < m->ntags; i++) {
        size_t j = m->tags[i].hash & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = (int)i + 1;
    }
    free(m->table);
    m->table = t;
    m->table_cap = cap;
}

static int tagset_insert(struct metrics *m, const char *key, size_t len, uint64_t h, size_t slot)
{
    if (m->ntags == m->tags_cap) {
        m->tags_cap = m->tags_cap ? m->tags_cap * 2 : 16;
        m->tags = xrealloc(m->tags, m->tags_cap * sizeof *m->tags);
    }
    char *copy = xmalloc(len + 1);
    memcpy(copy, key, len);
    copy[len] = '\0';
    m->tags[m->ntags] = (struct tagset){copy, len, h};
    m->table[slot] = (int)m->ntags + 1;
    return (int)m->ntags++;
}

/* The id of an interned key, or -1 with *slot where it would go. */
static int tagset_find(const struct metrics *m, const char *key, size_t len, uint64_t h, size_t *slot)
{
    size_t j = h & (m->table_cap - 1);
    while (m->table[j]) {
        const struct tagset *t = &m->tags[m->table[j] - 1];
        if (t->hash == h && t->len == len && memcmp(t->key, key, len) == 0)
            return m->table[j] - 1;
        j = (j + 1) & (m->table_cap - 1);
    }
    *slot = j;
    return -1;
}

int metrics_tagset(struct metrics *m, const char *key, size_t len)
{
    if ((m->ntags + 1) * 2 > m->table_cap)
        table_grow(m);
    uint64_t h = hash_key(key, len);
    size_t slot;
    int id = tagset_find(m, key, len, h, &slot);
    return id >= 0 ? id : tagset_insert(m, key, len, h, slot);
}

/* The value of tag k in a canonical key, or NULL. */
static const char *tag_value(const char *key, size_t len, const char *k, size_t *vlen)
{
    const char *p = key, *end = key + len, *pair;
    size_t klen, plen, want = strlen(k);
    while ((pair = next_pair(&p, end, &klen, &plen)))
        if (klen == want && klen < plen && memcmp(pair, k, klen) == 0) {
            *vlen = plen - klen - 1;
            return pair + klen + 1;
        }
    return NULL;
}

/* The key with its name's value replaced by "(other)"; 0 when it does not fit. */
static size_t other_key(const char *key, size_t len, const char *value, size_t vlen, char *out, size_t cap)
{
    size_t before = (size_t)(value - key), after = len - before - vlen;
    size_t olen = sizeof METRICS_NAME_OTHER - 1;
    if (before + olen + after > cap)
        return 0;
    memcpy(out, key, before);
    memcpy(out + before, METRICS_NAME_OTHER, olen);
    memcpy(out + before + olen, value + vlen, after);
    return before + olen + after;
}

int metrics_tagset_named(struct metrics *m, struct once *run, const char *key, size_t len)
{
    if ((m->ntags + 1) * 2 > m->table_cap)
        table_grow(m);
    uint64_t h = hash_key(key, len);
    size_t slot, vlen;
    int id = tagset_find(m, key, len, h, &slot);
    if (id >= 0)
        return id;
    /* only a key new to this thread asks the run whether its name is admitted */
    const char *v = run ? tag_value(key, len, "name", &vlen) : NULL;
    if (!v || once_name(run, v, vlen))
        return tagset_insert(m, key, len, h, slot);
    char other[TAGKEY_OTHER_MAX];
    size_t n = other_key(key, len, v, vlen, other, sizeof other);
    return n ? metrics_tagset(m, other, n) : -1;
}

static struct series *series_get(struct metric *mt, int tagset)
{
    if ((size_t)tagset >= mt->ntags) {
        size_t n = mt->ntags ? mt->ntags : 8;
        while (n <= (size_t)tagset)
            n *= 2;
        struct series **g = xrealloc(mt->by_tag, n * sizeof *g);
        memset(g + mt->ntags, 0, (n - mt->ntags) * sizeof *g);
        mt->by_tag = g;
        mt->ntags = n;
    }
    struct series *s = mt->by_tag[tagset];
    if (s)
        return s;
    s = xcalloc(1, sizeof *s);
    if (mt->type == METRIC_TREND && mt->contains == CONTAINS_TIME)
        s->u.trend.us = hist_new();
    else if (mt->type == METRIC_TREND)
        s->u.trend.values = vhist_new();
    return mt->by_tag[tagset] = s;
}

/* Wall-clock time: gauges from several hosts order by it when merged. */
static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void series_add(struct series *s, enum metric_type t, double v)
{
    switch (t) {
    case METRIC_COUNTER:
        s->u.counter.sum += v;
        s->u.counter.n++;
        break;
    case METRIC_GAUGE:
        if (!s->u.gauge.set || v < s->u.gauge.min)
            s->u.gauge.min = v;
        if (!s->u.gauge.set || v > s->u.gauge.max)
            s->u.gauge.max = v;
        s->u.gauge.value = v;
        s->u.gauge.at = wall_ns();
        s->u.gauge.set = true;
        break;
    case METRIC_RATE:
        s->u.rate.passes += v != 0;
        s->u.rate.total++;
        break;
    case METRIC_TREND:
        if (__builtin_expect(s->u.trend.us != NULL, 1))
            hist_record(s->u.trend.us, v <= 0 ? 0 : (uint64_t)llround(v));
        else
            vhist_record(s->u.trend.values, v); /* NaN and infinities: refused by the caller */
        break;
    }
}

void metrics_add(struct metrics *m, int metric, int tagset, double value)
{
    if (metric < 0 || tagset < 0)
        return;
    struct metric *mt = &m->metrics[metric];
    series_add(series_get(mt, tagset), mt->type, value);
}

/* The VU gauges: each thread owns a share of the users, so they add up. */
static void gauge_sum(struct series *d, const struct series *s)
{
    d->u.gauge.value += s->u.gauge.value;
    d->u.gauge.min = d->u.gauge.set ? d->u.gauge.min + s->u.gauge.min : s->u.gauge.min;
    d->u.gauge.max = d->u.gauge.set ? d->u.gauge.max + s->u.gauge.max : s->u.gauge.max;
}

/* A scenario's own gauges: the last value set anywhere, the extremes of all. */
static void gauge_latest(struct series *d, const struct series *s)
{
    if (!d->u.gauge.set || s->u.gauge.at >= d->u.gauge.at) {
        d->u.gauge.value = s->u.gauge.value;
        d->u.gauge.at = s->u.gauge.at;
    }
    d->u.gauge.min = d->u.gauge.set && d->u.gauge.min < s->u.gauge.min ? d->u.gauge.min : s->u.gauge.min;
    d->u.gauge.max = d->u.gauge.set && d->u.gauge.max > s->u.gauge.max ? d->u.gauge.max : s->u.gauge.max;
}

/* Values never become microseconds; microseconds (a non-time trend of a
 * document from before value histograms) become values. */
static bool trend_merge(struct series *d, const struct series *s)
{
    if (s->u.trend.values && d->u.trend.values)
        vhist_merge(d->u.trend.values, s->u.trend.values);
    else if (s->u.trend.us && d->u.trend.values)
        vhist_merge_us(d->u.trend.values, s->u.trend.us);
    else if (s->u.trend.us && d->u.trend.us)
        hist_merge(d->u.trend.us, s->u.trend.us);
    else
        return !s->u.trend.values;
    return true;
}

static bool series_merge(struct series *d, const struct series *s, enum metric_type t, bool builtin)
{
    switch (t) {
    case METRIC_COUNTER:
        d->u.counter.sum += s->u.counter.sum;
        d->u.counter.n += s->u.counter.n;
        break;
    case METRIC_GAUGE:
        if (!s->u.gauge.set)
            break;
        (builtin ? gauge_sum : gauge_latest)(d, s);
        d->u.gauge.set = true;
        break;
    case METRIC_RATE:
        d->u.rate.passes += s->u.rate.passes;
        d->u.rate.total += s->u.rate.total;
        break;
    case METRIC_TREND:
        return trend_merge(d, s);
    }
    return true;
}

static bool merge_from(struct metrics *dst, const struct metrics *src, size_t first)
{
    for (size_t i = first; i < src->nmetrics; i++) {
        const struct metric *sm = &src->metrics[i];
        int id = metrics_define(dst, sm->name, sm->type, sm->contains);
        if (id < 0)
            return false;
        for (size_t j = 0; j < sm->ntags; j++) {
            if (!sm->by_tag[j])
                continue;
            int tag = metrics_tagset(dst, src->tags[j].key, src->tags[j].len);
            struct series *d = series_get(&dst->metrics[id], tag);
            if (!series_merge(d, sm->by_tag[j], sm->type, i < M_BUILTIN_COUNT))
                return false;
        }
    }
    return true;
}

bool metrics_put(struct metrics *m, int metric, int tagset, const struct metrics_value *v)
{
    if (metric < 0 || (size_t)metric >= m->nmetrics || tagset < 0)
        return true;
    struct metric *mt = &m->metrics[metric];
    struct series one = {0};
    switch (mt->type) {
    case METRIC_COUNTER:
        one.u.counter.sum = v->value;
        one.u.counter.n = v->count;
        break;
    case METRIC_GAUGE:
        one.u.gauge.value = v->value;
        one.u.gauge.min = v->min;
        one.u.gauge.max = v->max;
        one.u.gauge.at = v->at;
        one.u.gauge.set = true;
        break;
    case METRIC_RATE:
        one.u.rate.passes = v->passes;
        one.u.rate.total = v->total;
        break;
    case METRIC_TREND:
        if (!v->hist && !v->values)
            return true;
        one.u.trend.us = v->hist;
        one.u.trend.values = v->values;
        break;
    }
    return series_merge(series_get(mt, tagset), &one, mt->type, metric < M_BUILTIN_COUNT);
}

bool metrics_merge(struct metrics *dst, const struct metrics *src)
{
    return merge_from(dst, src, 0);
}

bool metrics_merge_custom(struct metrics *dst, const struct metrics *src)
{
    return merge_from(dst, src, M_BUILTIN_COUNT);
}

/* The next "k\x1fv" pair of a key at *p (NULL at the end); *klen is the key's length. */
static const char *next_pair(const char **p, const char *end, size_t *klen, size_t *len)
{
    if (*p >= end)
        return NULL;
    const char *start = *p, *sep = memchr(start, TAG_SEP, (size_t)(end - start));
    const char *kv = memchr(start, TAG_KV, (size_t)((sep ? sep : end) - start));
    *len = (size_t)((sep ? sep : end) - start);
    *klen = kv ? (size_t)(kv - start) : *len;
    *p = sep ? sep + 1 : end;
    return start;
}

static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

size_t metrics_tagkey_merge(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t cap)
{
    const char *pa = a, *pb = b, *ea = a + alen, *eb = b + blen;
    size_t ak = 0, al = 0, bk = 0, bl = 0, n = 0;
    const char *x = next_pair(&pa, ea, &ak, &al), *y = next_pair(&pb, eb, &bk, &bl);
    while (x || y) {
        int c = !x ? 1 : !y ? -1 : key_cmp(x, ak, y, bk);
        const char *take = c < 0 ? x : y;
        size_t len = c < 0 ? al : bl;
        if (n + len + 1 > cap)
            return 0;
        if (n)
            out[n++] = TAG_SEP;
        memcpy(out + n, take, len);
        n += len;
        if (c <= 0)
            x = next_pair(&pa, ea, &ak, &al);
        if (c >= 0) /* equal keys: b wins, a's pair is dropped */
            y = next_pair(&pb, eb, &bk, &bl);
    }
    return n;
}

static void push_tags(lua_State *L, const struct tagset *t)
{
    lua_newtable(L);
    const char *p = t->key, *end = t->key + t->len;
    while (p < end) {
        const char *kv = memchr(p, TAG_KV, (size_t)(end - p));
        const char *sep = memchr(p, TAG_SEP, (size_t)(end - p));
        if (!sep)
            sep = end;
        if (kv && kv < sep) {
            lua_pushlstring(L, p, (size_t)(kv - p));
            lua_pushlstring(L, kv + 1, (size_t)(sep - kv - 1));
            lua_rawset(L, -3);
        }
        p = sep + 1;
    }
}

static void push_series(lua_State *L, struct series *s, enum metric_type t, bool move)
{
    switch (t) {
    case METRIC_COUNTER:
        lua_pushnumber(L, s->u.counter.sum);
        lua_setfield(L, -2, "value");
        lua_pushinteger(L, (lua_Integer)s->u.counter.n);
        lua_setfield(L, -2, "count");
        break;
    case METRIC_GAUGE:
        lua_pushnumber(L, s->u.gauge.value);
        lua_setfield(L, -2, "value");
        lua_pushnumber(L, s->u.gauge.min);
        lua_setfield(L, -2, "min");
        lua_pushnumber(L, s->u.gauge.max);
        lua_setfield(L, -2, "max");
        lua_pushnumber(L, (double)s->u.gauge.at / 1e9); /* seconds since the epoch */
        lua_setfield(L, -2, "at");
        break;
    case METRIC_RATE:
        lua_pushinteger(L, (lua_Integer)s->u.rate.passes);
        lua_setfield(L, -2, "passes");
        lua_pushinteger(L, (lua_Integer)s->u.rate.total);
        lua_setfield(L, -2, "total");
        break;
    case METRIC_TREND:
        if (s->u.trend.values) {
            struct vhist *h = move ? s->u.trend.values : vhist_clone(s->u.trend.values);
            if (move)
                s->u.trend.values = NULL; /* Lua owns it now, even if pushing it fails */
            hist_lua_push_values(L, h);
        } else {
            struct hist *h = move ? s->u.trend.us : hist_clone(s->u.trend.us);
            if (move)
                s->u.trend.us = NULL;
            hist_lua_push(L, h);
        }
        lua_setfield(L, -2, "hist");
        break;
    }
}

static const char *const type_names[] = {"counter", "gauge", "rate", "trend"};
static const char *const contains_names[] = {"default", "time", "data"};

static int index_of(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

int metrics_type_named(const char *name) { return index_of(type_names, 4, name); }
int metrics_contains_named(const char *name) { return index_of(contains_names, 3, name); }

static void push_all(lua_State *L, const struct metrics *m, bool move)
{
    lua_createtable(L, 0, (int)m->nmetrics);
    for (size_t i = 0; i < m->nmetrics; i++) {
        const struct metric *mt = &m->metrics[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, type_names[mt->type]);
        lua_setfield(L, -2, "type");
        lua_pushstring(L, contains_names[mt->contains]);
        lua_setfield(L, -2, "contains");
        lua_newtable(L);
        int n = 0;
        for (size_t j = 0; j < mt->ntags; j++) {
            if (!mt->by_tag[j])
                continue;
            lua_newtable(L);
            push_tags(L, &m->tags[j]);
            lua_setfield(L, -2, "tags");
            push_series(L, mt->by_tag[j], mt->type, move);
            lua_rawseti(L, -2, ++n);
        }
        lua_setfield(L, -2, "series");
        lua_setfield(L, -2, mt->name);
    }
}

void metrics_push(lua_State *L, const struct metrics *m)
{
    push_all(L, m, false);
}

void metrics_hand_over(lua_State *L, struct metrics *m)
{
    push_all(L, m, true);
}
