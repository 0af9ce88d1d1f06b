#include "luacmd.h"
#include "state.h"
#include "exitcodes.h"
#include "scenario.h"

#include <lauxlib.h>
#include <stdio.h>

static int run_command(lua_State *L, const char *name, int argc, char **argv)
{
    lua_pushcfunction(L, scenario_traceback);
    int h = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.commands");
    if (lua_pcall(L, 1, 1, h) != LUA_OK) {
        fprintf(stderr, "tide: %s\n", lua_tostring(L, -1));
        return EXIT_SCRIPT;
    }
    lua_getfield(L, -1, name);
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    /* no traceback: a raised message is the user's bad input, said plainly */
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        if (lua_istable(L, -1))
            lua_getfield(L, -1, "usage");
        fprintf(stderr, "tide %s: %s\n", name, lua_isstring(L, -1) ? lua_tostring(L, -1) : "failed");
        return EXIT_USAGE;
    }
    return (int)luaL_optinteger(L, -1, 0);
}

int cmd_lua(const char *name, int argc, char **argv)
{
    struct tctx ctx;
    lua_State *L = tctx_open(&ctx, 1);
    if (!L) {
        fprintf(stderr, "tide: out of memory\n");
        return EXIT_SCRIPT;
    }
    int rc = run_command(L, name, argc, argv);
    tctx_close(&ctx);
    return rc;
}
