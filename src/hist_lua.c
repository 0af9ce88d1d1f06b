#include "hist_lua.h"

#include <lauxlib.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hist.h"
#include "vhist.h"

#define HIST_MT "tide.hist"

/* Userdata holds a pointer, not the struct, so ownership can be handed over
 * (hist_lua_push) and the box can exist before the histogram does: the box is
 * created first, so a failing allocation never leaks a histogram.  It holds
 * a µs histogram or a value histogram (vhist.h), at most one: the methods
 * are the same for both, so Lua code reads a trend without asking which. */
typedef struct {
    struct hist *us;
    struct vhist *values;
} hist_box;

/* ---- encode ---------------------------------------------------------- */

/* Counts and sums are uint64; only absurd ones exceed int64 and become floats. */
static void push_u64(lua_State *L, uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, (lua_Number)v);
}

struct slot_writer {
    lua_State *L;
    lua_Integer n;
};

static void count_slot(void *ud, uint32_t index, uint64_t count)
{
    (void)index, (void)count;
    ++*(lua_Integer *)ud;
}

static void write_slot(void *ud, uint32_t index, uint64_t count)
{
    struct slot_writer *w = ud;
    lua_pushinteger(w->L, index);
    lua_rawseti(w->L, -2, ++w->n);
    push_u64(w->L, count);
    lua_rawseti(w->L, -2, ++w->n);
}

static void set_u64(lua_State *L, const char *key, uint64_t v)
{
    push_u64(L, v);
    lua_setfield(L, -2, key);
}

void hist_lua_encode(lua_State *L, const struct hist *h)
{
    luaL_checkstack(L, 3, "tide.hist encode");
    lua_createtable(L, 0, 8);
    lua_pushliteral(L, "us");
    lua_setfield(L, -2, "unit");
    set_u64(L, "count", hist_count(h));
    set_u64(L, "min", hist_min(h));
    set_u64(L, "max", hist_max(h));
    set_u64(L, "sum", hist_sum(h));
    uint64_t hi, lo;
    char sumsq[48];
    hist_sumsq_words(h, &hi, &lo);
    lua_pushlstring(L, sumsq, hist_u128_format(hi, lo, sumsq, sizeof sumsq));
    lua_setfield(L, -2, "sumsq");
    set_u64(L, "clamped", hist_clamped(h));

    lua_Integer used = 0;
    hist_foreach(h, count_slot, &used);
    lua_createtable(L, (int)(2 * used), 0);
    struct slot_writer w = { L, 0 };
    hist_foreach(h, write_slot, &w);
    lua_setfield(L, -2, "slots");
}

static void set_number(lua_State *L, const char *key, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, key);
}

/* { unit = "value", count, min, max, sum, sum_lo, sumsq, sumsq_lo, clamped,
 * slots }: the sums as double-doubles, so a merge of documents adds them
 * exactly as a merge in memory does. */
void hist_lua_encode_values(lua_State *L, const struct vhist *h)
{
    luaL_checkstack(L, 3, "tide.hist encode");
    lua_createtable(L, 0, 10);
    lua_pushliteral(L, "value");
    lua_setfield(L, -2, "unit");
    set_u64(L, "count", vhist_count(h));
    set_number(L, "min", vhist_min(h));
    set_number(L, "max", vhist_max(h));
    double sum[2], sumsq[2];
    vhist_sums(h, sum, sumsq);
    set_number(L, "sum", sum[0]);
    set_number(L, "sum_lo", sum[1]);
    set_number(L, "sumsq", sumsq[0]);
    set_number(L, "sumsq_lo", sumsq[1]);
    set_u64(L, "clamped", vhist_clamped(h));

    lua_Integer used = 0;
    vhist_foreach(h, count_slot, &used);
    lua_createtable(L, (int)(2 * used), 0);
    struct slot_writer w = { L, 0 };
    vhist_foreach(h, write_slot, &w);
    lua_setfield(L, -2, "slots");
}

/* ---- decode ---------------------------------------------------------- */

/* Accepts integers and integral floats in [0, 2^64). */
static bool to_u64(lua_State *L, int idx, uint64_t *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        return false;
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        *out = (uint64_t)i;
        return i >= 0;
    }
    lua_Number d = lua_tonumber(L, idx);
    if (!(d >= 0 && d < 0x1p64 && d == floor(d)))
        return false;
    *out = (uint64_t)d;
    return true;
}

struct header {
    bool values; /* unit "value": the v* fields; else "us" */
    uint64_t count, min, max, sum, clamped;
    uint64_t sumsq_hi, sumsq_lo;
    double sumsq_double; /* tide-results/1 wrote sumsq as a number; else -1 */
    double vmin, vmax, vsum[2], vsumsq[2];
};

/* Raw access so metamethods of a hostile table cannot raise or run code. */
static int raw_field(lua_State *L, int t, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

static bool field_u64(lua_State *L, int t, const char *key, uint64_t *out)
{
    raw_field(L, t, key);
    bool ok = to_u64(L, -1, out);
    lua_pop(L, 1);
    return ok;
}

/* The exact decimal text tide writes, or a number as tide-results/1 wrote. */
static const char *read_sumsq(lua_State *L, int t, struct header *hd)
{
    int type = raw_field(L, t, "sumsq");
    size_t len = 0;
    const char *s = type == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    hd->sumsq_double = type == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    bool ok = s ? hist_u128_parse(s, len, &hd->sumsq_hi, &hd->sumsq_lo)
                : hd->sumsq_double >= 0 && isfinite(hd->sumsq_double);
    lua_pop(L, 1);
    return ok ? NULL : "sumsq must be a non-negative integer (as decimal text) or number";
}

/* A finite number; an optional one may be absent (then 0). */
static bool field_number(lua_State *L, int t, const char *key, double *out, bool optional)
{
    int type = raw_field(L, t, key);
    *out = type == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    return type == LUA_TNUMBER ? isfinite(*out) : optional && type == LUA_TNIL;
}

/* A value histogram's figures: doubles, the sums with their remainders. */
static const char *read_value_header(lua_State *L, int t, struct header *hd)
{
    if (!field_u64(L, t, "count", &hd->count))
        return "count must be a non-negative integer";
    if (!field_u64(L, t, "clamped", &hd->clamped))
        return "clamped must be a non-negative integer";
    if (!field_number(L, t, "min", &hd->vmin, false) || !field_number(L, t, "max", &hd->vmax, false))
        return "min and max must be finite numbers";
    if (!field_number(L, t, "sum", &hd->vsum[0], false) || !field_number(L, t, "sum_lo", &hd->vsum[1], true))
        return "sum and sum_lo must be finite numbers";
    if (!field_number(L, t, "sumsq", &hd->vsumsq[0], false) ||
        !field_number(L, t, "sumsq_lo", &hd->vsumsq[1], true))
        return "sumsq and sumsq_lo must be finite numbers";
    return NULL;
}

/* "us" or "value"; else NULL. */
static const char *read_unit(lua_State *L, int t)
{
    raw_field(L, t, "unit");
    const char *u = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    u = strcmp(u, "us") == 0 ? "us" : strcmp(u, "value") == 0 ? "value" : NULL;
    lua_pop(L, 1);
    return u;
}

static const char *read_header(lua_State *L, int t, struct header *hd)
{
    const char *unit = read_unit(L, t);
    if (!unit)
        return "unit must be \"us\" (times) or \"value\"";
    hd->values = unit[0] == 'v';
    if (hd->values)
        return read_value_header(L, t, hd);
    if (!field_u64(L, t, "count", &hd->count))
        return "count must be a non-negative integer";
    if (!field_u64(L, t, "min", &hd->min) || !field_u64(L, t, "max", &hd->max))
        return "min and max must be non-negative integers";
    if (!field_u64(L, t, "sum", &hd->sum))
        return "sum must be a non-negative integer";
    if (!field_u64(L, t, "clamped", &hd->clamped))
        return "clamped must be a non-negative integer";
    return read_sumsq(L, t, hd);
}

/* What reading the slots found: their total and the extreme non-empty
 * indexes (UINT64_MAX/0 when there are none). */
struct slot_reader {
    uint64_t prev, total, first, last;
    lua_Integer n;
    uint32_t nslots;
    struct hist *us;        /* where the slots go: one of these, or */
    struct vhist *values;   /* neither when only checking */
};

/* One index, count pair, into the reader's histogram. */
static const char *take_slot(struct slot_reader *r, uint64_t index, uint64_t count)
{
    if (index >= r->nslots)
        return "slot index out of range";
    if (r->n > 0 && index <= r->prev)
        return "slot indexes must be strictly ascending";
    if (__builtin_add_overflow(r->total, count, &r->total))
        return "slot counts overflow";
    if (r->us)
        hist_add_slot(r->us, (uint32_t)index, count);
    if (r->values)
        vhist_add_slot(r->values, (uint32_t)index, count);
    if (count && r->first == UINT64_MAX)
        r->first = index;
    if (count)
        r->last = index;
    r->prev = index;
    r->n++;
    return NULL;
}

/* Reads the pair at slots[2k-1], slots[2k]; slots table is at the top. */
static bool read_pair(lua_State *L, lua_Integer k, uint64_t *index, uint64_t *count)
{
    lua_rawgeti(L, -1, 2 * k - 1);
    lua_rawgeti(L, -2, 2 * k);
    bool ok = to_u64(L, -2, index) && to_u64(L, -1, count);
    lua_pop(L, 2);
    return ok;
}

static const char *read_slot_table(lua_State *L, struct slot_reader *r)
{
    lua_Integer npairs = (lua_Integer)(lua_rawlen(L, -1) / 2);
    if (lua_rawlen(L, -1) % 2)
        return "slots must hold index, count pairs (odd length: truncated?)";
    uint64_t index, count;
    for (lua_Integer k = 1; k <= npairs; k++) {
        if (!read_pair(L, k, &index, &count))
            return "slots entries must be non-negative integers";
        const char *err = take_slot(r, index, count);
        if (err)
            return err;
    }
    return NULL;
}

/* A token of packed slots that is not plain digits: an integral float. */
static bool packed_float(const char *s, const char *end, uint64_t *out)
{
    char tok[40];
    size_t n = (size_t)(end - s);
    if (n >= sizeof tok)
        return false;
    memcpy(tok, s, n);
    tok[n] = '\0';
    char *e;
    double d = strtod(tok, &e);
    if (*e || !(d >= 0 && d < 0x1p64 && d == floor(d)))
        return false;
    *out = (uint64_t)d;
    return true;
}

/* The next number of packed slots ("12,3, 40,1") at *p: an integer, or an
 * integral float as JSON may write it. False on anything else, or on a
 * comma with nothing after it. */
static bool packed_u64(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p, *t;
    while (s < end && *s == ' ')
        s++;
    uint64_t v = 0;
    bool overflow = false;
    for (t = s; t < end && *t >= '0' && *t <= '9'; t++)
        overflow |= __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*t - '0'), &v);
    if (t < end && *t != ',' && *t != ' ') {
        while (t < end && *t != ',' && *t != ' ')
            t++;
        if (!packed_float(s, t, &v))
            return false;
    } else if (t == s || overflow) {
        return false;
    }
    while (t < end && *t == ' ')
        t++;
    if (t < end && *t++ != ',')
        return false;
    *p = t;
    *out = v;
    return !(t == end && t[-1] == ',');
}

static const char *read_slot_string(const char *s, size_t len, struct slot_reader *r)
{
    const char *p = s, *end = s + len;
    while (p < end && *p == ' ')
        p++;
    uint64_t index, count;
    while (p < end) {
        if (!packed_u64(&p, end, &index))
            return "slots entries must be non-negative integers";
        if (p == end)
            return "slots must hold index, count pairs (odd length: truncated?)";
        if (!packed_u64(&p, end, &count))
            return "slots entries must be non-negative integers";
        const char *err = take_slot(r, index, count);
        if (err)
            return err;
    }
    return NULL;
}

/* Reads the slots at the top of the stack (a table, or the packed string of
 * hist.read_json) into r's histogram, or only checks them when it has none. */
static const char *read_slots(lua_State *L, struct slot_reader *r)
{
    r->first = UINT64_MAX;
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        return read_slot_string(s, len, r);
    }
    return read_slot_table(L, r);
}

static const char *check_consistency(const struct header *hd, const struct slot_reader *r)
{
    if (r->total != hd->count)
        return "slot counts do not sum to count";
    if (hd->clamped > hd->count || (hd->clamped && hd->max != HIST_MAX_US))
        return "clamped inconsistent with count/max";
    if (hd->count && (hd->min > hd->max || hd->max > HIST_MAX_US))
        return "min/max out of range";
    if (hd->count && (hist_slot_of(hd->min) != r->first || hist_slot_of(hd->max) != r->last))
        return "min/max do not match the first/last slots";
    return NULL;
}

static const char *check_value_consistency(const struct header *hd, const struct slot_reader *r)
{
    if (r->total != hd->count)
        return "slot counts do not sum to count";
    if (hd->clamped > hd->count)
        return "clamped inconsistent with count";
    if (hd->count && hd->vmin > hd->vmax)
        return "min/max out of range";
    if (hd->count && (vhist_slot_of(hd->vmin) != r->first || vhist_slot_of(hd->vmax) != r->last))
        return "min/max do not match the first/last slots";
    return NULL;
}

static const char *decode_values_into(lua_State *L, struct vhist *h, const struct header *hd)
{
    struct slot_reader r = {.nslots = vhist_slots(), .values = h};
    const char *err = read_slots(L, &r);
    if (!err)
        err = check_value_consistency(hd, &r);
    if (!err && h && hd->count && !vhist_set_stats(h, hd->vmin, hd->vmax, hd->vsum, hd->vsumsq, hd->clamped))
        err = "sumsq must not be negative";
    return err;
}

static const char *decode_into(lua_State *L, struct hist *h, const struct header *hd)
{
    struct slot_reader r = {.nslots = hist_slots(), .us = h};
    const char *err = read_slots(L, &r);
    if (!err)
        err = check_consistency(hd, &r);
    if (!err && h && hd->count) {
        hist_set_stats(h, hd->min, hd->max, hd->sum, hd->sumsq_hi, hd->sumsq_lo);
        if (hd->sumsq_double >= 0)
            hist_set_sumsq_double(h, hd->sumsq_double);
        hist_set_clamped(h, hd->clamped);
    }
    return err;
}

/* Validates the header and leaves the slots table on the stack. */
static const char *read_input(lua_State *L, int t, struct header *hd)
{
    if (lua_type(L, t) != LUA_TTABLE)
        return "histogram must be a table";
    if (!lua_checkstack(L, 4))
        return "Lua stack overflow";
    const char *err = read_header(L, t, hd);
    if (err)
        return err;
    int slots = raw_field(L, t, "slots");
    if (slots != LUA_TTABLE && slots != LUA_TSTRING)
        return "slots must be a table";
    return NULL;
}

const char *hist_lua_decode_any(lua_State *L, int idx, struct hist **us, struct vhist **values)
{
    int top = lua_gettop(L);
    struct header hd;
    *us = NULL;
    *values = NULL;
    /* Everything that may allocate on the Lua side (and so raise) happens
     * before the histogram exists, so it cannot leak. */
    const char *err = read_input(L, lua_absindex(L, idx), &hd);
    if (!err && hd.values) {
        *values = vhist_new();
        if ((err = decode_values_into(L, *values, &hd))) {
            vhist_free(*values);
            *values = NULL;
        }
    } else if (!err) {
        *us = hist_new();
        if ((err = decode_into(L, *us, &hd))) {
            hist_free(*us);
            *us = NULL;
        }
    }
    lua_settop(L, top);
    return err;
}

struct hist *hist_lua_decode(lua_State *L, int idx, const char **err)
{
    struct hist *h;
    struct vhist *v;
    *err = hist_lua_decode_any(L, idx, &h, &v);
    if (v) {
        vhist_free(v);
        *err = "unit must be \"us\"";
    }
    return h;
}

/* ---- userdata -------------------------------------------------------- */

static hist_box *new_box(lua_State *L);

/* The live box at idx: raises unless it is a tide.hist not yet freed. */
static hist_box *check_box(lua_State *L, int idx)
{
    hist_box *box = luaL_checkudata(L, idx, HIST_MT);
    if (!box->us && !box->values)
        luaL_argerror(L, idx, "tide.hist already freed");
    return box;
}

struct hist *hist_lua_check(lua_State *L, int idx)
{
    hist_box *box = check_box(L, idx);
    if (!box->us)
        luaL_argerror(L, idx, "a tide.hist of microseconds expected, got one of values");
    return box->us;
}

void hist_lua_check_any(lua_State *L, int idx, struct hist **us, struct vhist **values)
{
    hist_box *box = check_box(L, idx);
    *us = box->us;
    *values = box->values;
}

static int box_new_protected(lua_State *L)
{
    hist_box *box = new_box(L);
    box->us = lua_touserdata(L, 1);
    box->values = lua_touserdata(L, 2);
    return 1;
}

static void free_both(struct hist *us, struct vhist *values)
{
    hist_free(us);
    vhist_free(values);
}

static void push_owned(lua_State *L, struct hist *us, struct vhist *values)
{
    /* Protected so that the histogram is freed rather than leaked if Lua
     * runs out of memory: ownership passes to us on entry either way. */
    if (!lua_checkstack(L, 3)) {
        free_both(us, values);
        luaL_error(L, "tide.hist: stack overflow");
    }
    lua_pushcfunction(L, box_new_protected);
    lua_pushlightuserdata(L, us);
    lua_pushlightuserdata(L, values);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        free_both(us, values);
        lua_error(L);
    }
}

void hist_lua_push(lua_State *L, struct hist *h) { push_owned(L, h, NULL); }

void hist_lua_push_values(lua_State *L, struct vhist *h) { push_owned(L, NULL, h); }

/* Microseconds: integers as they are, floats rounded to the nearest µs;
 * anything past 2^63 is far beyond HIST_MAX_US and clamps anyway. */
static uint64_t check_us(lua_State *L, int arg)
{
    if (lua_isinteger(L, arg)) {
        lua_Integer v = lua_tointeger(L, arg);
        luaL_argcheck(L, v >= 0, arg, "latency must be >= 0");
        return (uint64_t)v;
    }
    lua_Number d = luaL_checknumber(L, arg);
    luaL_argcheck(L, d >= 0, arg, "latency must be >= 0");
    return d >= 0x1p63 ? UINT64_MAX : (uint64_t)(d + 0.5);
}

static int l_record(lua_State *L)
{
    hist_box *box = check_box(L, 1);
    lua_Integer n = luaL_optinteger(L, 3, 1);
    if (box->values) {
        lua_Number v = luaL_checknumber(L, 2);
        luaL_argcheck(L, isfinite(v), 2, "value must be a finite number");
        luaL_argcheck(L, n >= 0, 3, "count must be >= 0");
        vhist_record_n(box->values, v, (uint64_t)n);
        return 0;
    }
    uint64_t us = check_us(L, 2);
    luaL_argcheck(L, n >= 0, 3, "count must be >= 0");
    hist_record_n(box->us, us, (uint64_t)n);
    return 0;
}

static int l_count(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    push_u64(L, b->us ? hist_count(b->us) : vhist_count(b->values));
    return 1;
}

static int l_min(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    if (b->us)
        push_u64(L, hist_min(b->us));
    else
        lua_pushnumber(L, vhist_min(b->values));
    return 1;
}

static int l_max(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    if (b->us)
        push_u64(L, hist_max(b->us));
    else
        lua_pushnumber(L, vhist_max(b->values));
    return 1;
}

static int l_sum(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    if (b->us)
        push_u64(L, hist_sum(b->us));
    else
        lua_pushnumber(L, vhist_sum(b->values));
    return 1;
}

static int l_mean(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    lua_pushnumber(L, b->us ? hist_mean(b->us) : vhist_mean(b->values));
    return 1;
}

static int l_stdev(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    lua_pushnumber(L, b->us ? hist_stdev(b->us) : vhist_stdev(b->values));
    return 1;
}

static int l_clamped(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    push_u64(L, b->us ? hist_clamped(b->us) : vhist_clamped(b->values));
    return 1;
}

/* h:unit(): "us" (a time trend's microseconds) or "value". */
static int l_unit(lua_State *L)
{
    lua_pushstring(L, check_box(L, 1)->us ? "us" : "value");
    return 1;
}

static int l_percentile(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    lua_Number p = luaL_checknumber(L, 2);
    luaL_argcheck(L, p >= 0 && p <= 100, 2, "percentile must be in [0, 100]");
    lua_pushnumber(L, b->us ? hist_percentile(b->us, p) : vhist_percentile(b->values, p));
    return 1;
}

/* dst:merge(src). Values never become microseconds: a µs histogram merged
 * with values becomes a value histogram (an empty hist.new() taking a
 * trend's series, or a document from before value histograms). */
static int l_merge(lua_State *L)
{
    hist_box *dst = check_box(L, 1), *src = check_box(L, 2);
    if (dst->us && src->us) {
        hist_merge(dst->us, src->us);
    } else {
        if (dst->us) {
            struct vhist *v = vhist_new();
            vhist_merge_us(v, dst->us);
            hist_free(dst->us);
            dst->us = NULL;
            dst->values = v;
        }
        if (src->us)
            vhist_merge_us(dst->values, src->us);
        else
            vhist_merge(dst->values, src->values);
    }
    lua_settop(L, 1);
    return 1;
}

/* ---- packed form, as base64 text for JSON ----------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void push_base64(lua_State *L, const unsigned char *p, size_t n)
{
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (n + 2) / 3 * 4);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    luaL_pushresultsize(&b, o);
}

static int b64_value(char c)
{
    const char *at = c ? strchr(B64, c) : NULL;
    return at ? (int)(at - B64) : -1;
}

/* Decodes into out (at least len/4*3 bytes); the decoded length, or -1. */
static long from_base64(const char *s, size_t len, unsigned char *out)
{
    if (len % 4)
        return -1;
    long o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
        if (pad && i + 4 != len)
            return -1;
        int v[4];
        for (int k = 0; k < 4 - pad; k++)
            if ((v[k] = b64_value(s[i + k])) < 0)
                return -1;
        for (int k = 4 - pad; k < 4; k++)
            v[k] = 0;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)w;
    }
    return o;
}

void hist_lua_push_packed(lua_State *L, const struct hist *h)
{
    unsigned char *p = lua_newuserdatauv(L, hist_pack_bound(h), 0); /* Lua's: nothing leaks if it raises */
    push_base64(L, p, hist_pack_to(h, p));
    lua_remove(L, -2);
}

/* h:pack(): the packed form (hist.h) as base64 text. */
static int l_pack(lua_State *L)
{
    hist_lua_push_packed(L, hist_lua_check(L, 1));
    return 1;
}

/* hist.unpack(text): the histogram h:pack() gave. */
static int l_unpack(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    hist_box *box = new_box(L);
    unsigned char *buf = lua_newuserdatauv(L, len / 4 * 3 + 1, 0);
    long n = from_base64(s, len, buf);
    if (n < 0 || !(box->us = hist_unpack(buf, (size_t)n)))
        return luaL_argerror(L, 1, "not a packed tide.hist");
    lua_pop(L, 1);
    return 1;
}

/* hist.slot_range(i): the lowest value slot i holds and its width, in µs:
 * the layout is hist.c's alone. */
static int l_slot_range(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 1);
    luaL_argcheck(L, i >= 0 && i < (lua_Integer)hist_slots(), 1, "slot index out of range");
    uint64_t lo, width;
    hist_slot_range((uint32_t)i, &lo, &width);
    push_u64(L, lo);
    push_u64(L, width);
    return 2;
}

static int l_encode(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    if (b->us)
        hist_lua_encode(L, b->us);
    else
        hist_lua_encode_values(L, b->values);
    return 1;
}

static int l_clone(lua_State *L)
{
    hist_box *b = check_box(L, 1);
    hist_box *c = new_box(L);
    if (b->us)
        c->us = hist_clone(b->us);
    else
        c->values = vhist_clone(b->values);
    return 1;
}

static void box_free(hist_box *box)
{
    free_both(box->us, box->values);
    box->us = NULL;
    box->values = NULL;
}

static int l_gc(lua_State *L)
{
    box_free(lua_touserdata(L, 1));
    return 0;
}

/* h:free(): gives the buckets back now. The collector sees only the box, so
 * code that makes thousands of histograms frees each when done with it. */
static int l_free(lua_State *L)
{
    box_free(luaL_checkudata(L, 1, HIST_MT));
    return 0;
}

static int l_tostring(lua_State *L)
{
    hist_box *box = luaL_checkudata(L, 1, HIST_MT);
    if (!box->us && !box->values)
        return lua_pushliteral(L, "tide.hist: freed"), 1;
    if (box->values) {
        struct vhist *v = box->values;
        lua_pushfstring(L, "tide.hist: values count=%I min=%f p50=%f p99=%f max=%f",
                        (lua_Integer)vhist_count(v), (lua_Number)vhist_min(v),
                        (lua_Number)vhist_percentile(v, 50), (lua_Number)vhist_percentile(v, 99),
                        (lua_Number)vhist_max(v));
        return 1;
    }
    struct hist *h = box->us;
    lua_pushfstring(L, "tide.hist: count=%I min=%I p50=%f p99=%f max=%I",
                    (lua_Integer)hist_count(h), (lua_Integer)hist_min(h),
                    (lua_Number)hist_percentile(h, 50), (lua_Number)hist_percentile(h, 99),
                    (lua_Integer)hist_max(h));
    return 1;
}

static const luaL_Reg methods[] = {
    { "record", l_record }, { "count", l_count },   { "min", l_min },
    { "max", l_max },       { "mean", l_mean },     { "stdev", l_stdev },
    { "sum", l_sum },       { "percentile", l_percentile },
    { "merge", l_merge },   { "encode", l_encode }, { "clone", l_clone },
    { "free", l_free },     { "pack", l_pack },     { "clamped", l_clamped },
    { "unit", l_unit },     { NULL, NULL },
};

/* hist.check(tbl): true, or nil and what is wrong with the table form;
 * nothing is allocated, so thousands of histograms check in little memory. */
static int l_check(lua_State *L)
{
    int top = lua_gettop(L);
    struct header hd;
    const char *err = read_input(L, 1, &hd);
    if (!err)
        err = hd.values ? decode_values_into(L, NULL, &hd) : decode_into(L, NULL, &hd);
    lua_settop(L, top);
    if (!err)
        return lua_pushboolean(L, 1), 1;
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* In a JSON text, turns every array that is the value of a key "slots" and
 * holds only numbers into a string of those numbers, in place: '[' and ']'
 * become '"', white space inside becomes ' '. */
static void pack_slots(char *s, size_t n)
{
    static bool allowed[256];
    if (!allowed['0']) /* same values from any thread: a benign race */
        for (const char *a = "0123456789,.eE+- \t\r\n"; *a; a++)
            allowed[(unsigned char)*a] = true;
    bool in_string = false, escaped = false, after_key = false;
    size_t last_start = 0, last_len = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false, last_len = i - last_start;
            continue;
        }
        if (c == '"') {
            in_string = true, last_start = i + 1, after_key = false;
        } else if (c == ':') {
            after_key = last_len == 5 && memcmp(s + last_start, "slots", 5) == 0;
        } else if (c == '[' && after_key) {
            size_t j = i + 1;
            while (j < n && allowed[(unsigned char)s[j]])
                j++;
            if (j < n && s[j] == ']') {
                s[i] = s[j] = '"';
                for (size_t k = i + 1; k < j; k++)
                    if (s[k] == '\t' || s[k] == '\r' || s[k] == '\n')
                        s[k] = ' ';
                i = j;
            }
            after_key = false;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            after_key = false;
        }
    }
}

/* hist.read_json(path): the file's text with every histogram's slots packed
 * into a string (see pack_slots), which hist.decode and hist.check read:
 * cjson makes a Lua table of numbers about three times the size of their
 * text, a string the same size. Or nil and the reason. */
static int l_read_json(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        int e = !f ? errno : S_ISDIR(st.st_mode) ? EISDIR : errno;
        if (f)
            fclose(f);
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: %s", path, strerror(e));
        return 2;
    }
    /* a regular file is read into a buffer of its size; a pipe grows one */
    size_t want = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : LUAL_BUFFERSIZE;
    luaL_Buffer b;
    luaL_buffinitsize(L, &b, want);
    size_t got;
    do {
        char *p = luaL_prepbuffsize(&b, want);
        got = fread(p, 1, want, f);
        luaL_addsize(&b, got);
    } while (got == want);
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        luaL_pushfail(L);
        lua_pushfstring(L, "%s: read error", path);
        return 2;
    }
    pack_slots(luaL_buffaddr(&b), luaL_bufflen(&b));
    luaL_pushresult(&b);
    lua_gc(L, LUA_GCCOLLECT); /* the buffer, as big as the file, goes now */
    return 1;
}

static const luaL_Reg metamethods[] = {
    { "__gc", l_gc },   { "__tostring", l_tostring },
    { "__len", l_count }, { NULL, NULL },
};

/* Created on first use by any entry point, so hist_lua_push works even if
 * the module was never required. */
static void push_metatable(lua_State *L)
{
    if (!luaL_newmetatable(L, HIST_MT))
        return;
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
}

static hist_box *new_box(lua_State *L)
{
    hist_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->us = NULL;
    box->values = NULL;
    push_metatable(L);
    lua_setmetatable(L, -2);
    return box;
}

/* hist.new([unit]): "us" (the default) or "value". */
static int l_new(lua_State *L)
{
    static const char *const units[] = {"us", "value", NULL};
    int unit = luaL_checkoption(L, 1, "us", units);
    hist_box *box = new_box(L);
    if (unit)
        box->values = vhist_new();
    else
        box->us = hist_new();
    return 1;
}

static int l_decode(lua_State *L)
{
    hist_box *box = new_box(L);
    const char *err = hist_lua_decode_any(L, 1, &box->us, &box->values);
    if (err)
        luaL_error(L, "tide.hist.decode: %s", err);
    return 1;
}

int luaopen_tide_hist(lua_State *L)
{
    static const luaL_Reg module[] = {
        { "new", l_new }, { "decode", l_decode }, { "check", l_check },
        { "read_json", l_read_json }, { "unpack", l_unpack }, { "slot_range", l_slot_range },
        { NULL, NULL },
    };
    push_metatable(L);
    lua_pop(L, 1);
    luaL_newlib(L, module);
    return 1;
}
