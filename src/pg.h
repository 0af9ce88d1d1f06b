#ifndef TIDE_PG_H
#define TIDE_PG_H
#include <lua.h>

/* tide.pg: a libpq binding for setup, teardown, checks and the prompt.
 * Parameterised queries only (PQexecParams): values are never spliced into
 * SQL. Calls block the calling thread, inside a virtual user too. */
int luaopen_tide_pg(lua_State *L);

#endif
