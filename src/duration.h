#ifndef TIDE_DURATION_H
#define TIDE_DURATION_H
#include <stdbool.h>
#include <lua.h>

/* Parses "250ms", "2s", "1m30s", "1h", "1.5s", "500us" or a bare number of
 * seconds. Negative, empty or malformed text gives false. */
bool duration_parse(const char *text, double *seconds);

/* A duration given to Lua as a number (seconds) or a string as above.
 * Returns false (and leaves *seconds) for other types or malformed strings. */
bool duration_from_lua(lua_State *L, int idx, double *seconds);

/* luaL_check-style: raises "bad argument #arg to 'fn' (duration expected ...)". */
double duration_check(lua_State *L, int arg);

/* Formats a duration compactly ("1m30s", "250ms") into buf. */
const char *duration_format(double seconds, char *buf, unsigned len);

#endif
