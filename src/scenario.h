#ifndef TIDE_SCENARIO_H
#define TIDE_SCENARIO_H
#include <lua.h>
#include <stddef.h>

/* Finds SCENARIO: an existing path, else scenarios/NAME.lua, else NAME.lua in
 * each $TIDE_PATH directory, else a scenario built into the binary
 * ("builtin:NAME"). Returns false when nothing matches. */
int scenario_resolve(const char *arg, char *path, size_t len);

/* Runs the scenario chunk and leaves its module table on the stack.
 * Returns 0, or an exit code (3: the script failed, 2: wrong shape) with a
 * message in err. */
int scenario_load(lua_State *L, const char *path, char *err, size_t errlen);

/* xpcall-style message handler adding a traceback. */
int scenario_traceback(lua_State *L);

#endif
