#ifndef TIDE_METRICS_LUA_H
#define TIDE_METRICS_LUA_H
#include <lua.h>
#include <stddef.h>

/* tide.metrics: custom counters, gauges, rates and trends recorded into the
 * calling thread's registry. Expects upvalue 1 = ctx. */
int luaopen_tide_metrics(lua_State *L);

/* Builds the canonical tag-set key (sorted k\x1fv\x1e...) of the table at idx
 * (nil: no tags) into buf, its length in *out_len. Returns NULL, or why the
 * tags are unusable; never raises (short of out-of-memory). */
const char *metrics_lua_tagkey(lua_State *L, int idx, char *buf, size_t len, size_t *out_len);

#endif
