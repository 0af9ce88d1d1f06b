#include "scenario.h"
#include "embedded.h"
#include "guard.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int exists(const char *p)
{
    return access(p, R_OK) == 0;
}

int scenario_resolve(const char *arg, char *path, size_t len)
{
    if (exists(arg) && (strchr(arg, '/') || strstr(arg, ".lua"))) {
        snprintf(path, len, "%s", arg);
        return 1;
    }
    snprintf(path, len, "scenarios/%s.lua", arg);
    if (!strchr(arg, '/') && exists(path))
        return 1;
    const char *tp = getenv("TIDE_PATH");
    while (tp && *tp && !strchr(arg, '/')) {
        size_t n = strcspn(tp, ":");
        snprintf(path, len, "%.*s/%s.lua", (int)n, tp, arg);
        if (n && exists(path))
            return 1;
        tp += n + (tp[n] == ':');
    }
    char key[256];
    snprintf(key, sizeof key, "scenario:%s", arg);
    if (embedded_find(key)) {
        snprintf(path, len, "builtin:%s", arg);
        return 1;
    }
    return 0;
}

int scenario_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int load_chunk(lua_State *L, const char *path)
{
    if (strncmp(path, "builtin:", 8) != 0)
        return luaL_loadfile(L, path);
    char key[256];
    snprintf(key, sizeof key, "scenario:%s", path + 8);
    const struct embedded_file *f = embedded_find(key);
    lua_pushfstring(L, "@%s", f->path);
    int rc = luaL_loadbuffer(L, f->src, f->len, lua_tostring(L, -1));
    lua_remove(L, -2);
    return rc;
}

static int shape_error(char *err, size_t errlen, const char *path, const char *what)
{
    snprintf(err, errlen, "%s: %s", path, what);
    return 2;
}

static const char *bad_field(lua_State *L, int mod)
{
    static const struct { const char *name; int type; } fields[] = {
        {"run", LUA_TFUNCTION}, {"setup", LUA_TFUNCTION}, {"teardown", LUA_TFUNCTION},
        {"options", LUA_TTABLE}, {"description", LUA_TSTRING},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int t = lua_getfield(L, mod, fields[i].name);
        lua_pop(L, 1);
        if (t == fields[i].type || t == LUA_TNIL) /* which functions must exist: run.c asks */
            continue;
        return lua_pushfstring(L, "'%s' must be a %s, got %s", fields[i].name,
                               lua_typename(L, fields[i].type), lua_typename(L, t));
    }
    return NULL;
}

int scenario_load(lua_State *L, const char *path, char *err, size_t errlen)
{
    lua_pushcfunction(L, scenario_traceback);
    int h = lua_gettop(L);
    if (load_chunk(L, path) != LUA_OK || guard_pcall(L, 0, 1, h) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, h - 1);
        return 3;
    }
    lua_remove(L, h);
    if (!lua_istable(L, -1)) {
        const char *t = luaL_typename(L, -1);
        lua_pop(L, 1);
        char what[128];
        snprintf(what, sizeof what, "the scenario must return a table with run = function, got %s", t);
        return shape_error(err, errlen, path, what);
    }
    const char *bad = bad_field(L, lua_gettop(L));
    if (bad) {
        int rc = shape_error(err, errlen, path, bad);
        lua_pop(L, 2);
        return rc;
    }
    return 0;
}
