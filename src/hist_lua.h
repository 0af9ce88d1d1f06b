#ifndef TIDE_HIST_LUA_H
#define TIDE_HIST_LUA_H
/* Lua binding of hist.h and vhist.h: userdata "tide.hist" (holding either;
 * the same methods read both) and its sparse table form
 *   { unit = "us", count = N, min = .., max = .., sum = .., sumsq = ..,
 *     clamped = .., slots = { i1, c1, i2, c2, ... } }
 * with only non-empty slots, ascending index; a value histogram's has
 *   unit = "value", min, max, sum, sumsq as numbers (doubles), sum_lo and
 *   sumsq_lo what rounding the sums left out, and vhist.c's slot indexes.
 * The table is what goes to JSON files and PostgreSQL, so its shape is a
 * stable format. */
#include <lua.h>

struct hist;
struct vhist;

/* Module table: new(), decode(tbl). */
int luaopen_tide_hist(lua_State *L);

/* Pushes a userdata that takes ownership of h (freed by __gc).  h is freed
 * even if pushing raises a memory error. */
void hist_lua_push(lua_State *L, struct hist *h);
void hist_lua_push_values(lua_State *L, struct vhist *h);

/* luaL_checkudata-style: raises unless idx is a live tide.hist. */
struct hist *hist_lua_check(lua_State *L, int idx);
/* The same for either kind: one of *us and *values is set, the other NULL. */
void hist_lua_check_any(lua_State *L, int idx, struct hist **us, struct vhist **values);

/* Pushes the sparse table form of h. */
void hist_lua_encode(lua_State *L, const struct hist *h);
void hist_lua_encode_values(lua_State *L, const struct vhist *h);

/* Pushes h's packed form (hist_pack) as the base64 text h:pack() gives and
 * hist.unpack reads: how a results document carries a second's histogram. */
void hist_lua_push_packed(lua_State *L, const struct hist *h);

/* Builds a new histogram from the table form at idx (integral floats are
 * accepted, as cjson decodes every number to a float).  On bad input
 * returns NULL and sets *err to a static message; never raises (short of a
 * Lua memory error) and leaves the stack as it was. */
struct hist *hist_lua_decode(lua_State *L, int idx, const char **err);
/* The same for either unit: NULL with one of *us and *values new, or the
 * reason (both NULL). */
const char *hist_lua_decode_any(lua_State *L, int idx, struct hist **us, struct vhist **values);

#endif
