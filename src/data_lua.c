/* tide.data: test data loaded once on the main thread and read by every
 * user of every thread through read-only proxies over the one C copy. */
#include "data_lua.h"
#include "ctx.h"
#include "data.h"
#include "scenario.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROXY "tide.data"
#define PATH_MAX_LEN 4096

enum pkind { P_CSV, P_ROW, P_JSON };

/* What a Lua value of tide.data points at: immutable, shared, never freed
 * before the states that hold proxies are closed. */
struct proxy {
    const struct dstore *st;
    enum pkind kind;
    size_t row;                 /* P_ROW */
    const struct dval *v;       /* P_JSON: an array or an object */
};

static void push_proxy(lua_State *L, const struct dstore *st, enum pkind kind, size_t row, const struct dval *v)
{
    struct proxy *p = lua_newuserdatauv(L, sizeof *p, 0);
    *p = (struct proxy){st, kind, row, v};
    luaL_setmetatable(L, PROXY);
}

static void push_val(lua_State *L, const struct dstore *st, const struct dval *v)
{
    switch (v->kind) {
    case D_NULL:
        lua_pushlightuserdata(L, NULL); /* json.null, as r:json() gives it */
        break;
    case D_BOOL:
        lua_pushboolean(L, v->u.b);
        break;
    case D_INT:
        lua_pushinteger(L, (lua_Integer)v->u.i);
        break;
    case D_NUM:
        lua_pushnumber(L, v->u.n);
        break;
    case D_STR:
        lua_pushlstring(L, v->u.s, v->len);
        break;
    default:
        push_proxy(L, st, P_JSON, 0, v);
    }
}

/* An integer key (a number with an integer value, not a numeric string). */
static bool int_key(lua_State *L, int idx, lua_Integer *k)
{
    int isint = 0;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return false;
    *k = lua_tointegerx(L, idx, &isint);
    return isint;
}

static void push_cell(lua_State *L, const struct dcsv *c, size_t i)
{
    size_t len;
    const char *s = data_csv_cell(c, i, &len);
    lua_pushlstring(L, s, len);
}

/* How many integer keys (1..n) the proxy has. */
static size_t count(const struct proxy *p)
{
    size_t first, n;
    switch (p->kind) {
    case P_CSV:
        return p->st->csv.nrows;
    case P_ROW:
        data_csv_row(&p->st->csv, p->row, &first, &n);
        return n;
    default:
        return p->v->kind == D_ARRAY ? p->v->len : 0;
    }
}

/* Pushes element k (1-based) of an array-like proxy; k in range. */
static void push_item(lua_State *L, const struct proxy *p, size_t k)
{
    size_t first, n;
    switch (p->kind) {
    case P_CSV:
        push_proxy(L, p->st, P_ROW, k - 1, NULL);
        break;
    case P_ROW:
        data_csv_row(&p->st->csv, p->row, &first, &n);
        push_cell(L, &p->st->csv, first + k - 1);
        break;
    default:
        push_val(L, p->st, &p->v->u.items[k - 1]);
    }
}

static int l_index(lua_State *L)
{
    const struct proxy *p = luaL_checkudata(L, 1, PROXY);
    lua_Integer k;
    if (int_key(L, 2, &k)) {
        if (k >= 1 && (size_t)k <= count(p))
            push_item(L, p, (size_t)k);
        else
            lua_pushnil(L);
        return 1;
    }
    size_t len;
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
    if (key && p->kind == P_ROW) {
        long f = data_csv_field(&p->st->csv, key, len);
        size_t first, n;
        data_csv_row(&p->st->csv, p->row, &first, &n);
        if (f >= 0)
            push_cell(L, &p->st->csv, first + (size_t)f);
        else
            lua_pushnil(L);
        return 1;
    }
    const struct dpair *pair = key && p->kind == P_JSON && p->v->kind == D_OBJECT
                                   ? data_find_pair(p->v, key, len) : NULL;
    if (pair)
        push_val(L, p->st, &pair->val);
    else
        lua_pushnil(L);
    return 1;
}

static int l_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)count(luaL_checkudata(L, 1, PROXY)));
    return 1;
}

/* The next key after the one at idx (nil: the first), as an index from 0;
 * for keyed proxies (a CSV row with a header, a JSON object). */
static size_t next_keyed(lua_State *L, const struct proxy *p, int idx)
{
    if (lua_isnil(L, idx))
        return 0;
    size_t len;
    const char *key = luaL_checklstring(L, idx, &len);
    if (p->kind == P_ROW) {
        long f = data_csv_field(&p->st->csv, key, len);
        return f < 0 ? p->st->csv.nfields : (size_t)f + 1;
    }
    const struct dpair *pair = data_find_pair(p->v, key, len);
    return pair ? (size_t)(pair - p->v->u.pairs) + 1 : p->v->len;
}

static bool keyed(const struct proxy *p)
{
    return (p->kind == P_ROW && p->st->csv.nfields) || (p->kind == P_JSON && p->v->kind == D_OBJECT);
}

/* pairs(): in order, integers 1..n, or the header's fields, or an object's keys (sorted). */
static int l_next(lua_State *L)
{
    const struct proxy *p = luaL_checkudata(L, 1, PROXY);
    lua_settop(L, 2);
    if (!keyed(p)) {
        lua_Integer k = lua_isnil(L, 2) ? 0 : luaL_checkinteger(L, 2);
        if (k < 0 || (size_t)k >= count(p))
            return 0;
        lua_pushinteger(L, k + 1);
        push_item(L, p, (size_t)k + 1);
        return 2;
    }
    size_t i = next_keyed(L, p, 2);
    if (p->kind == P_ROW) {
        if (i >= p->st->csv.nfields)
            return 0;
        size_t first, n;
        data_csv_row(&p->st->csv, p->row, &first, &n);
        push_cell(L, &p->st->csv, i);
        push_cell(L, &p->st->csv, first + i);
        return 2;
    }
    if (i >= p->v->len)
        return 0;
    lua_pushlstring(L, p->v->u.pairs[i].key, p->v->u.pairs[i].klen);
    push_val(L, p->st, &p->v->u.pairs[i].val);
    return 2;
}

static int l_pairs(lua_State *L)
{
    luaL_checkudata(L, 1, PROXY);
    lua_pushcfunction(L, l_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int l_newindex(lua_State *L)
{
    const struct proxy *p = luaL_checkudata(L, 1, PROXY);
    return luaL_error(L, "tide.data: %s is read-only (one copy shared by every user); copy what you "
                         "change into a table of your own", p->st->path);
}

static int l_tostring(lua_State *L)
{
    const struct proxy *p = luaL_checkudata(L, 1, PROXY);
    if (p->kind == P_CSV)
        lua_pushfstring(L, "tide.data.csv: %I rows of %s", (lua_Integer)p->st->csv.nrows, p->st->path);
    else if (p->kind == P_ROW)
        lua_pushfstring(L, "tide.data.csv: row %I of %s", (lua_Integer)p->row + 1, p->st->path);
    else
        lua_pushfstring(L, "tide.data.json: %s of %I from %s", p->v->kind == D_ARRAY ? "array" : "object",
                        (lua_Integer)p->v->len, p->st->path);
    return 1;
}

/* ---------------- loading ---------------- */

/* A relative path is relative to the scenario file's directory. */
static void resolve(lua_State *L, const char *fn, const char *path, char *out, size_t len)
{
    lua_getfield(L, LUA_REGISTRYINDEX, SCENARIO_DIR_KEY);
    const char *dir = lua_tostring(L, -1);
    int n = path[0] == '/' || !dir ? snprintf(out, len, "%s", path) : snprintf(out, len, "%s/%s", dir, path);
    lua_pop(L, 1);
    if (n < 0 || (size_t)n >= len)
        luaL_error(L, "%s: path too long: %s", fn, path);
}

typedef struct dstore *(*loader)(lua_State *L, const char *fn, const char *path, const void *opts);

/* The store for key: found in the run's registry, or (main thread only)
 * loaded and registered there. */
static const struct dstore *obtain(lua_State *L, const char *fn, const char *key, const char *path,
                                   loader load, const void *opts)
{
    struct tctx *ctx = tctx_get(L);
    const struct dstore *st = dreg_find(ctx->data, key);
    if (st)
        return st;
    if (ctx->data_borrowed)
        luaL_error(L, "%s: %s was not loaded before the load started: call %s at the top level of the "
                      "scenario file (or in setup), where the main thread loads it once for every user",
                   fn, path, fn);
    struct dstore *s = load(L, fn, path, opts);
    if (!ctx->data)
        ctx->data = dreg_new();
    return dreg_add(ctx->data, key, path, s);
}

static char *read_or_raise(lua_State *L, const char *fn, const char *path, size_t *len)
{
    char *text = data_read_file(path, len);
    if (!text)
        luaL_error(L, "%s: cannot read %s: %s", fn, path, strerror(errno));
    return text;
}

static struct dstore *load_csv(lua_State *L, const char *fn, const char *path, const void *opts)
{
    size_t len;
    char *text = read_or_raise(L, fn, path, &len);
    char err[PATH_MAX_LEN + 256];
    struct dstore *s = data_csv_parse(text, len, opts, path, err, sizeof err);
    if (!s)
        luaL_error(L, "%s: %s", fn, err);
    return s;
}

static void csv_options(lua_State *L, struct csv_opts *o)
{
    if (lua_isnoneornil(L, 2))
        return;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "header") == 0) {
            luaL_argexpected(L, lua_isboolean(L, -1), 2, "header = true or false");
            o->header = lua_toboolean(L, -1);
        } else if (strcmp(k, "separator") == 0) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (lua_type(L, -1) != LUA_TSTRING || n != 1 || *s == '"' || *s == '\r' || *s == '\n')
                luaL_error(L, "tide.data.csv: separator must be one character other than a quote or "
                              "a line break, got %s", luaL_tolstring(L, -1, NULL));
            o->sep = *s;
        } else {
            luaL_error(L, "tide.data.csv: unknown option '%s' (valid: header, separator)", k);
        }
        lua_pop(L, 1);
    }
}

static int l_csv(lua_State *L)
{
    const char *arg = luaL_checkstring(L, 1);
    struct csv_opts o = {.header = true, .sep = ','};
    csv_options(L, &o);
    char path[PATH_MAX_LEN], key[PATH_MAX_LEN + 32];
    resolve(L, "tide.data.csv", arg, path, sizeof path);
    snprintf(key, sizeof key, "csv:%d:%02x:%s", o.header, (unsigned char)o.sep, path);
    push_proxy(L, obtain(L, "tide.data.csv", key, path, load_csv, &o), P_CSV, 0, NULL);
    return 1;
}

/* ---- JSON: decoded by cjson (tide's numbers), copied into the store ---- */

static void convert(lua_State *L, int idx, struct dstore *s, struct dval *out);

static void convert_array(lua_State *L, int idx, struct dstore *s, struct dval *out)
{
    size_t n = lua_rawlen(L, idx);
    struct dval *items = data_alloc(s, (n ? n : 1) * sizeof *items);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        convert(L, lua_gettop(L), s, &items[i]);
        lua_pop(L, 1);
    }
    *out = (struct dval){.kind = D_ARRAY, .len = n, .u.items = items};
}

static void convert_object(lua_State *L, int idx, struct dstore *s, struct dval *out, size_t n)
{
    struct dpair *pairs = data_alloc(s, (n ? n : 1) * sizeof *pairs);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        const char *k = lua_tolstring(L, -2, &klen); /* cjson's object keys are strings */
        pairs[i].key = data_strdup(s, k, klen);
        pairs[i].klen = klen;
        convert(L, lua_gettop(L), s, &pairs[i].val);
        lua_pop(L, 1);
        i++;
    }
    data_sort_pairs(pairs, n); /* cjson kept one of any repeated key */
    *out = (struct dval){.kind = D_OBJECT, .len = n, .u.pairs = pairs};
}

static void convert_table(lua_State *L, int idx, struct dstore *s, struct dval *out)
{
    size_t n = 0;
    bool array = false;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        array = array || lua_type(L, -2) == LUA_TNUMBER;
        n++;
        lua_pop(L, 1);
    }
    if (array || n == 0)
        convert_array(L, idx, s, out);
    else
        convert_object(L, idx, s, out, n);
}

static void convert(lua_State *L, int idx, struct dstore *s, struct dval *out)
{
    luaL_checkstack(L, 4, "tide.data.json: nested too deep");
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        *out = (struct dval){.kind = D_BOOL, .u.b = lua_toboolean(L, idx)};
        break;
    case LUA_TNUMBER:
        *out = lua_isinteger(L, idx) ? (struct dval){.kind = D_INT, .u.i = lua_tointeger(L, idx)}
                                     : (struct dval){.kind = D_NUM, .u.n = lua_tonumber(L, idx)};
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *str = lua_tolstring(L, idx, &len);
        *out = (struct dval){.kind = D_STR, .len = len, .u.s = data_strdup(s, str, len)};
        break;
    }
    case LUA_TTABLE:
        convert_table(L, idx, s, out);
        break;
    default:
        *out = (struct dval){.kind = D_NULL};
    }
}

/* "... at character 123": the line of that character. */
static size_t error_line(const char *msg, const char *text, size_t len)
{
    const char *at = msg ? strstr(msg, "at character ") : NULL;
    if (!at)
        return 0;
    size_t ch = strtoul(at + 13, NULL, 10), line = 1;
    for (size_t i = 0; i + 1 < ch && i < len; i++)
        line += text[i] == '\n';
    return line;
}

static struct dstore *load_json(lua_State *L, const char *fn, const char *path, const void *opts)
{
    (void)opts;
    size_t len;
    char *text = read_or_raise(L, fn, path, &len);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "decode");
    lua_pushlstring(L, text, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        size_t line = error_line(msg, text, len);
        free(text);
        if (line)
            luaL_error(L, "%s: %s:%d: not JSON: %s", fn, path, (int)line, msg);
        luaL_error(L, "%s: %s: not JSON: %s", fn, path, msg ? msg : "?");
    }
    free(text);
    struct dstore *s = data_json_new();
    convert(L, lua_gettop(L), s, &s->root);
    lua_pop(L, 3);
    return s;
}

static int l_json(lua_State *L)
{
    const char *arg = luaL_checkstring(L, 1);
    char path[PATH_MAX_LEN], key[PATH_MAX_LEN + 32];
    resolve(L, "tide.data.json", arg, path, sizeof path);
    snprintf(key, sizeof key, "json:%s", path);
    const struct dstore *st = obtain(L, "tide.data.json", key, path, load_json, NULL);
    push_val(L, st, &st->root);
    return 1;
}

void data_lua_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__index", l_index}, {"__len", l_len}, {"__pairs", l_pairs},
        {"__newindex", l_newindex}, {"__tostring", l_tostring}, {NULL, NULL},
    };
    static const luaL_Reg fns[] = {{"csv", l_csv}, {"json", l_json}, {NULL, NULL}};
    if (luaL_newmetatable(L, PROXY))
        luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
}
