#ifndef TIDE_METRICS_LUA_H
#define TIDE_METRICS_LUA_H
#include <lua.h>
#include <stddef.h>

/* tide.metrics: custom counters, gauges, rates and trends recorded into the
 * calling thread's registry. Expects upvalue 1 = ctx. */
int luaopen_tide_metrics(lua_State *L);

/* Builds the canonical tag-set key of the table at idx (NULL/nil: no tags)
 * into buf; raises on non-string tags. Returns the key length. */
size_t metrics_lua_tagkey(lua_State *L, int idx, char *buf, size_t len);

#endif
