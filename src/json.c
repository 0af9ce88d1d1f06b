/* JSON numbers as Lua 5.4 has them. lua-cjson 2.1.0 (Debian's) writes every
 * number with 14 significant digits and reads every number as a float, so
 * an id of 1234567890123456 went out as 1.2345678901235e+15 and "/items/" ..
 * id read back as "/items/7.0". tide keeps cjson for the parsing and the
 * writing, and fixes the numbers around it: integers are written exactly
 * and floats in the shortest form that reads back the same; whole numbers
 * read back as integers. */
#include "json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cjson refuses deeper values itself; past this tide leaves them to it. */
#define MAX_DEPTH 1000
/* What a number is written as inside the string cjson writes, to be put back bare. */
#define MARK "\x01tide-num:"
#define MARK_WRITTEN "\"\\u0001tide-num:"

/* The number's text when cjson's 14 digits would not read back as it; NULL
 * when cjson writes it right. */
static const char *exact_text(lua_State *L, int idx, char *buf, size_t len)
{
    if (lua_isinteger(L, idx)) {
        lua_Integer n = lua_tointeger(L, idx);
        if (n > -100000000000000LL && n < 100000000000000LL)
            return NULL;
        snprintf(buf, len, "%lld", (long long)n);
        return buf;
    }
    double d = lua_tonumber(L, idx);
    if (!isfinite(d))
        return NULL; /* cjson's own error */
    snprintf(buf, len, "%.14g", d);
    if (strtod(buf, NULL) == d)
        return NULL;
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, len, "%.*g", digits, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return buf;
}

/* Whether some number in the value at idx needs tide's help. */
static bool needs_marks(lua_State *L, int idx, int depth)
{
    char buf[64];
    if (lua_type(L, idx) == LUA_TNUMBER)
        return exact_text(L, idx, buf, sizeof buf) != NULL;
    if (lua_type(L, idx) != LUA_TTABLE || depth > MAX_DEPTH || !lua_checkstack(L, 3))
        return false;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (needs_marks(L, -1, depth + 1)) {
            lua_pop(L, 2);
            return true;
        }
        lua_pop(L, 1);
    }
    return false;
}

/* Pushes a copy of the value at idx with such numbers as marked strings. */
static void push_marked(lua_State *L, int idx, int depth)
{
    char buf[64];
    const char *text;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER && (text = exact_text(L, idx, buf, sizeof buf))) {
        lua_pushfstring(L, MARK "%s", text);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE || depth > MAX_DEPTH) {
        lua_pushvalue(L, idx);
        return;
    }
    luaL_checkstack(L, 4, "json.encode: value too deep");
    lua_newtable(L);
    if (lua_getmetatable(L, idx)) /* cjson's array marker, if any, stays */
        lua_setmetatable(L, -2);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        push_marked(L, -2, depth + 1);
        lua_rawset(L, -5);
        lua_pop(L, 1);
    }
}

/* The encoded text with every "\u0001tide-num:N" written as the bare N. */
static void push_unmarked(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *end = s + len, *mark;
    size_t mlen = strlen(MARK_WRITTEN);
    while ((mark = memmem(s, (size_t)(end - s), MARK_WRITTEN, mlen))) {
        luaL_addlstring(&b, s, (size_t)(mark - s));
        const char *num = mark + mlen, *close = memchr(num, '"', (size_t)(end - num));
        if (!close)
            close = end;
        luaL_addlstring(&b, num, (size_t)(close - num));
        s = close < end ? close + 1 : end;
    }
    luaL_addlstring(&b, s, (size_t)(end - s));
    luaL_pushresult(&b);
}

static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    bool marks = needs_marks(L, 1, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    if (marks)
        push_marked(L, 1, 0);
    else
        lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (!marks)
        return 1;
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    push_unmarked(L, s, len);
    return 1;
}

/* Whole floats within 2^53 become integers, in place. */
static void integers_back(lua_State *L, int idx, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 3))
        return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            double d = lua_tonumber(L, -1);
            if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, (lua_Integer)d);
                lua_rawset(L, idx);
            }
        } else if (lua_type(L, -1) == LUA_TTABLE) {
            integers_back(L, -1, depth + 1);
        }
        lua_pop(L, 1);
    }
}

static int json_decode(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
        integers_back(L, -1, 0);
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        double d = lua_tonumber(L, -1);
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
            lua_pop(L, 1);
            lua_pushinteger(L, (lua_Integer)d);
        }
    }
    return 1;
}

void json_fix_numbers(lua_State *L, int cjson_idx)
{
    cjson_idx = lua_absindex(L, cjson_idx);
    lua_getfield(L, cjson_idx, "encode");
    lua_pushcclosure(L, json_encode, 1);
    lua_setfield(L, cjson_idx, "encode");
    lua_getfield(L, cjson_idx, "decode");
    lua_pushcclosure(L, json_decode, 1);
    lua_setfield(L, cjson_idx, "decode");
}
