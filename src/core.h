#ifndef TIDE_CORE_H
#define TIDE_CORE_H
#include <lua.h>

/* The `tide` module: sleep, now, duration, group, once, json, version.
 * Expects upvalue 1 = ctx. */
int luaopen_tide(lua_State *L);

#endif
