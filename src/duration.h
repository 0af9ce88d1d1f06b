#ifndef TIDE_DURATION_H
#define TIDE_DURATION_H
#include <stdbool.h>
#include <lua.h>

/* The longest duration tide takes anywhere (a run, a sleep, a timeout): a
 * year, far beyond any load test, and small enough that nanosecond clock
 * arithmetic on it cannot overflow. */
#define DURATION_MAX_S (365.0 * 86400)
#define DURATION_MAX_TEXT "8760h (365 days)"

/* Parses "250ms", "2s", "1m30s", "1h", "1.5s", "500us" or a bare number of
 * seconds. Negative, empty, malformed text, or more than DURATION_MAX_S
 * gives false. */
bool duration_parse(const char *text, double *seconds);

/* A plain decimal number at s ("12", "1.5", "2e3"): no sign, no hex, no
 * inf or nan, which strtod would take. *end is set past it. */
bool decimal_prefix(const char *s, double *v, const char **end);

/* A duration given to Lua as a number (seconds) or a string as above.
 * Returns false (and leaves *seconds) for other types or malformed strings. */
bool duration_from_lua(lua_State *L, int idx, double *seconds);

/* luaL_check-style: raises "bad argument #arg to 'fn' (duration expected ...)". */
double duration_check(lua_State *L, int arg);

/* Formats a duration compactly ("1m30s", "250ms") into buf. */
const char *duration_format(double seconds, char *buf, unsigned len);

#endif
