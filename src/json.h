#ifndef TIDE_JSON_H
#define TIDE_JSON_H
#include <lua.h>

/* Replaces encode and decode of the cjson module table at idx with
 * versions that keep Lua 5.4's numbers: integers written exactly, floats in
 * the shortest text that reads back the same, whole numbers read back as
 * integers (up to 2^53; JSON has only doubles beyond). */
void json_fix_numbers(lua_State *L, int cjson_idx);

#endif
