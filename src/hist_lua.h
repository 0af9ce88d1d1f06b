#ifndef TIDE_HIST_LUA_H
#define TIDE_HIST_LUA_H
/* Lua binding of hist.h: userdata "tide.hist" and its sparse table form
 *   { unit = "us", count = N, min = .., max = .., sum = .., sumsq = ..,
 *     clamped = .., slots = { i1, c1, i2, c2, ... } }
 * with only non-empty slots, ascending index.  The table is what goes to
 * JSON files and PostgreSQL, so its shape is a stable format. */
#include <lua.h>

struct hist;

/* Module table: new(), decode(tbl). */
int luaopen_tide_hist(lua_State *L);

/* Pushes a userdata that takes ownership of h (freed by __gc).  h is freed
 * even if pushing raises a memory error. */
void hist_lua_push(lua_State *L, struct hist *h);

/* luaL_checkudata-style: raises unless idx is a live tide.hist. */
struct hist *hist_lua_check(lua_State *L, int idx);

/* Pushes the sparse table form of h. */
void hist_lua_encode(lua_State *L, const struct hist *h);

/* Pushes h's packed form (hist_pack) as the base64 text h:pack() gives and
 * hist.unpack reads: how a results document carries a second's histogram. */
void hist_lua_push_packed(lua_State *L, const struct hist *h);

/* Builds a new histogram from the table form at idx (integral floats are
 * accepted, as cjson decodes every number to a float).  On bad input
 * returns NULL and sets *err to a static message; never raises (short of a
 * Lua memory error) and leaves the stack as it was. */
struct hist *hist_lua_decode(lua_State *L, int idx, const char **err);

#endif
