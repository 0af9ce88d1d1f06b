#ifndef TIDE_DATA_LUA_H
#define TIDE_DATA_LUA_H
#include <lua.h>

/* Pushes the tide.data table (csv, json). Expects upvalue 1 = ctx, as the
 * tide module's functions have. */
void data_lua_open(lua_State *L);

#endif
