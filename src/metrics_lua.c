#include "metrics_lua.h"
#include "ctx.h"
#include "metrics.h"
#include "hist.h"
#include "hist_lua.h"
#include "vhist.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define METRIC_MT "tide.metric"
#define MAX_TAGS 32
#define TAGKEY_MAX 1024

struct metric_ref {
    struct tctx *ctx;
    int id;
    double scale;       /* time trends take ms from Lua, store µs */
    bool values;        /* a trend of values: NaN and infinities refused */
};

struct tag {
    const char *k, *v;
    size_t kl, vl;
};

static int tag_cmp(const void *a, const void *b)
{
    const struct tag *x = a, *y = b;
    size_t n = x->kl < y->kl ? x->kl : y->kl;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

/* Copies a string (or a number's text) into the scratch area; NULL when full. */
static const char *stash(lua_State *L, int idx, char *scratch, size_t *used, size_t *len)
{
    size_t n;
    lua_pushvalue(L, idx);                  /* tostring a copy: the table keeps its numbers */
    const char *s = lua_tolstring(L, -1, &n);
    char *dst = *used + n <= TAGKEY_MAX ? memcpy(scratch + *used, s, n) : NULL;
    *used += n;
    *len = n;
    lua_pop(L, 1);
    return dst;
}

/* Collects the pairs of the table at idx; NULL or a reason. */
static const char *collect_tags(lua_State *L, int idx, struct tag *tags, int *n, char *scratch)
{
    size_t used = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *why = lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)
            ? "tags must map strings to strings or numbers" : *n == MAX_TAGS ? "too many tags" : NULL;
        if (!why) {
            tags[*n].k = stash(L, -2, scratch, &used, &tags[*n].kl);
            tags[*n].v = stash(L, -1, scratch, &used, &tags[*n].vl);
            why = tags[*n].k && tags[*n].v ? NULL : "tags too long";
        }
        if (why) {
            lua_pop(L, 2);
            return why;
        }
        ++*n;
        lua_pop(L, 1);
    }
    return NULL;
}

const char *metrics_lua_tagkey(lua_State *L, int idx, char *buf, size_t len, size_t *out_len)
{
    struct tag tags[MAX_TAGS];
    char scratch[TAGKEY_MAX];
    int n = 0;
    *out_len = 0;
    if (lua_isnoneornil(L, idx))
        return NULL;
    if (!lua_istable(L, idx))
        return "tags must be a table";
    const char *why = collect_tags(L, lua_absindex(L, idx), tags, &n, scratch);
    if (why)
        return why;
    qsort(tags, (size_t)n, sizeof tags[0], tag_cmp);
    size_t out = 0;
    for (int i = 0; i < n; i++) {
        if (out + tags[i].kl + tags[i].vl + 2 > len)
            return "tags too long";
        memcpy(buf + out, tags[i].k, tags[i].kl);
        buf[out + tags[i].kl] = TAG_KV;
        memcpy(buf + out + tags[i].kl + 1, tags[i].v, tags[i].vl);
        out += tags[i].kl + tags[i].vl + 1;
        if (i + 1 < n)
            buf[out++] = TAG_SEP;
    }
    *out_len = out;
    return NULL;
}

static int metric_add(lua_State *L)
{
    struct metric_ref *m = luaL_checkudata(L, 1, METRIC_MT);
    double v = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : luaL_checknumber(L, 2);
    if (m->values && !isfinite(v))
        return luaL_argerror(L, 2, lua_pushfstring(L, "a trend's value must be a finite number, got %f", v));
    char key[TAGKEY_MAX];
    size_t n;
    const char *why = metrics_lua_tagkey(L, 3, key, sizeof key, &n);
    if (why)
        return luaL_argerror(L, 3, why);
    int tagset = metrics_tagset_named(m->ctx->metrics, m->ctx->once, key, n);
    metrics_add(m->ctx->metrics, m->id, tagset, v * m->scale);
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static int define(lua_State *L, enum metric_type t, const char *fn)
{
    struct tctx *ctx = tctx_get(L);
    const char *name = luaL_checkstring(L, 1);
    if (!valid_name(name))
        return luaL_error(L, "metrics.%s: bad metric name '%s' (letters, digits and _)", fn, name);
    bool time = t == METRIC_TREND && lua_toboolean(L, 2);
    enum metric_contains c = time ? CONTAINS_TIME : CONTAINS_DEFAULT;
    int id = metrics_define(ctx->metrics, name, t, c);
    /* a trend is a time or not for good: its histogram holds one or the other */
    if (id < 0 || (t == METRIC_TREND && metrics_contains_of(ctx->metrics, id) != c))
        return luaL_error(L, "metrics.%s: '%s' already exists as another kind of metric", fn, name);
    struct metric_ref *m = lua_newuserdatauv(L, sizeof *m, 0);
    *m = (struct metric_ref){ctx, id, time ? 1000.0 : 1.0, t == METRIC_TREND && !time};
    luaL_setmetatable(L, METRIC_MT);
    return 1;
}

static int l_counter(lua_State *L) { return define(L, METRIC_COUNTER, "counter"); }
static int l_gauge(lua_State *L) { return define(L, METRIC_GAUGE, "gauge"); }
static int l_rate(lua_State *L) { return define(L, METRIC_RATE, "rate"); }

static int l_trend(lua_State *L)
{
    if (!lua_isnoneornil(L, 2) && (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "time") != 0))
        return luaL_argerror(L, 2, "\"time\" or nothing expected");
    lua_pushboolean(L, !lua_isnoneornil(L, 2));
    lua_replace(L, 2);
    return define(L, METRIC_TREND, "trend");
}

/* ---- registries read back: tide.metrics.merge ------------------------- */

#define REGISTRY_MT "tide.registry"

/* The registry being merged lives in a userdata so that an error in the
 * middle (a malformed document) frees it. */
static int registry_gc(lua_State *L)
{
    struct metrics **box = lua_touserdata(L, 1);
    metrics_free(*box);
    *box = NULL;
    return 0;
}

static double num_field(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    return v;
}

static uint64_t count_field(lua_State *L, int t, const char *k)
{
    double v = num_field(L, t, k);
    return v > 0 && v < 0x1p64 ? (uint64_t)v : 0;
}

/* A series' trend into v: a tide.hist, or its table form (then owned:
 * *made says so). */
static void series_hist(lua_State *L, int t, const char *metric, struct metrics_value *v, bool *made)
{
    *made = false;
    lua_getfield(L, t, "hist");
    if (luaL_testudata(L, -1, "tide.hist")) {
        hist_lua_check_any(L, -1, &v->hist, &v->values);
    } else {
        const char *err = lua_istable(L, -1) ? hist_lua_decode_any(L, -1, &v->hist, &v->values) : "missing";
        if (err)
            luaL_error(L, "tide.metrics.merge: metric %s: hist: %s", metric, err);
        *made = true;
    }
    lua_pop(L, 1);
}

static void read_series(lua_State *L, int t, struct metrics *m, int id, const char *metric)
{
    char key[TAGKEY_MAX];
    size_t n;
    lua_getfield(L, t, "tags");
    const char *why = metrics_lua_tagkey(L, -1, key, sizeof key, &n);
    lua_pop(L, 1);
    if (why)
        luaL_error(L, "tide.metrics.merge: metric %s: %s", metric, why);
    struct metrics_value v = {
        .value = num_field(L, t, "value"), .min = num_field(L, t, "min"), .max = num_field(L, t, "max"),
        .count = count_field(L, t, "count"), .passes = count_field(L, t, "passes"),
        .total = count_field(L, t, "total"), .at = (uint64_t)(num_field(L, t, "at") * 1e9),
    };
    bool made = false;
    lua_getfield(L, t, "hist");
    bool trend = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (trend)
        series_hist(L, t, metric, &v, &made);
    bool ok = metrics_put(m, id, metrics_tagset(m, key, n), &v);
    if (made) {
        hist_free(v.hist);
        vhist_free(v.values);
    }
    if (!ok)
        luaL_error(L, "tide.metrics.merge: metric %s: a histogram of values in a time trend", metric);
}

/* One metric { type, contains, series = {...} } of a registry table. */
static void read_metric(lua_State *L, int t, struct metrics *m, const char *name)
{
    lua_getfield(L, t, "type");
    lua_getfield(L, t, "contains");
    int type = lua_isstring(L, -2) ? metrics_type_named(lua_tostring(L, -2)) : -1;
    int contains = lua_isstring(L, -1) ? metrics_contains_named(lua_tostring(L, -1)) : CONTAINS_DEFAULT;
    lua_pop(L, 2);
    if (type < 0 || contains < 0)
        luaL_error(L, "tide.metrics.merge: metric %s: bad type or contains", name);
    int id = metrics_define(m, name, (enum metric_type)type, (enum metric_contains)contains);
    if (id < 0)
        luaL_error(L, "tide.metrics.merge: metric %s: defined twice", name);
    lua_getfield(L, t, "series");
    int list = lua_gettop(L);
    for (lua_Integer i = 1; lua_istable(L, list) && lua_rawgeti(L, list, i) == LUA_TTABLE; i++) {
        read_series(L, lua_gettop(L), m, id, name);
        lua_pop(L, 1);
    }
    lua_settop(L, list - 1);
}

static void read_registry(lua_State *L, int t, struct metrics *m)
{
    luaL_checkstack(L, 8, "tide.metrics.merge");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
            luaL_error(L, "tide.metrics.merge: a registry maps metric names to tables");
        read_metric(L, lua_gettop(L), m, lua_tostring(L, -2));
        lua_pop(L, 1);
    }
}

/* tide.metrics.merge({registry, ...}): one registry (metrics_push's form)
 * that is what one process would have recorded, by metrics_merge. */
static int l_merge(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct metrics **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, REGISTRY_MT)) {
        lua_pushcfunction(L, registry_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    *box = metrics_new();
    for (lua_Integer i = 1; lua_rawgeti(L, 1, i) != LUA_TNIL; i++) {
        if (!lua_istable(L, -1))
            return luaL_argerror(L, 1, "a list of registries expected");
        struct metrics *one = metrics_new(); /* read apart, then merged: the rules see whole parts */
        struct metrics **tmp = lua_newuserdatauv(L, sizeof *tmp, 0);
        *tmp = one;
        luaL_setmetatable(L, REGISTRY_MT);
        read_registry(L, lua_gettop(L) - 1, one);
        if (!metrics_merge(*box, one))
            return luaL_error(L, "tide.metrics.merge: registry %d: a metric of another kind", (int)i);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    metrics_hand_over(L, *box);
    return 1;
}

/* { [name] = true } of the metrics tide records itself: the one list. */
static void push_builtin_names(lua_State *L)
{
    lua_createtable(L, 0, M_BUILTIN_COUNT);
    for (int i = 0; metrics_builtin_name(i); i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, metrics_builtin_name(i));
    }
}

int luaopen_tide_metrics(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"counter", l_counter}, {"gauge", l_gauge}, {"rate", l_rate}, {"trend", l_trend},
        {"merge", l_merge}, {NULL, NULL},
    };
    if (luaL_newmetatable(L, METRIC_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, metric_add);
        lua_setfield(L, -2, "add");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    push_builtin_names(L);
    lua_setfield(L, -2, "builtin");
    return 1;
}
