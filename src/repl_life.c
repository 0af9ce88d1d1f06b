/* A scenario's life at the prompt: S, setup(), teardown(), and the globals. */
#include "repl_life.h"
#include "load.h"
#include "options.h"
#include "state.h"
#include "xmalloc.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct repl_life *life_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* The scenario module on the stack; raises when the prompt has none. */
static void push_module(lua_State *L, struct repl_life *life, const char *what)
{
    if (life->mod_ref == LUA_NOREF)
        luaL_error(L, "%s: no scenario: start the prompt with tide repl SCENARIO", what);
    lua_rawgeti(L, LUA_REGISTRYINDEX, life->mod_ref);
}

/* The most users the scenario's options may run (ctx.vus); 1 when they do not parse. */
static long long scenario_vus(lua_State *L, int mod)
{
    struct options *o = xcalloc(1, sizeof *o);
    char err[OPTIONS_ERR];
    options_init(o);
    lua_getfield(L, mod, "options");
    bool ok = lua_isnil(L, -1) || options_from_lua(L, lua_gettop(L), o, err);
    lua_pop(L, 1);
    long long vus = ok && options_finish(o, 1, err) ? options_total_vus(o) : 1;
    free(o);
    return vus;
}

/* ctx for setup and teardown, as `tide run` gives it: target, env, vus. */
static void push_ctx(lua_State *L, struct repl_life *life, int mod)
{
    lua_createtable(L, 0, 3);
    if (life->target[0]) {
        lua_pushstring(L, life->target);
        lua_setfield(L, -2, "target");
    }
    lua_getglobal(L, "env");
    lua_setfield(L, -2, "env");
    lua_pushinteger(L, scenario_vus(L, mod));
    lua_setfield(L, -2, "vus");
}

/* Calls S[name](ctx, data?), leaving its first result. */
static void call_hook(lua_State *L, struct repl_life *life, const char *name, bool with_data)
{
    push_module(L, life, name);
    int mod = lua_gettop(L);
    if (lua_getfield(L, mod, name) != LUA_TFUNCTION)
        luaL_error(L, "%s(): the scenario %s has no %s function", name, life->path, name);
    push_ctx(L, life, mod);
    if (with_data)
        lua_getglobal(L, "data");
    lua_call(L, with_data ? 2 : 1, 1);
}

static int l_setup(lua_State *L)
{
    struct repl_life *life = life_of(L);
    if (life->has_data)
        fprintf(stderr, "tide: setup() again: its result replaces `data` (the previous data was not torn down)\n");
    call_hook(L, life, "setup", false);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "data");
    life->has_data = true;
    return 1;
}

static int l_teardown(lua_State *L)
{
    struct repl_life *life = life_of(L);
    call_hook(L, life, "teardown", true);
    life->has_data = false;
    return 0;
}

static void set_function(lua_State *L, struct repl_life *life, const char *name, lua_CFunction fn)
{
    lua_pushlightuserdata(L, life);
    lua_pushcclosure(L, fn, 1);
    lua_setglobal(L, name);
}

static int load_scenario(lua_State *L, struct repl_life *life)
{
    char err[4096];
    if (!scenario_resolve(life->cli->scenario, life->path, sizeof life->path)) {
        fprintf(stderr, "tide repl: no scenario '%s' (looked for a file, scenarios/NAME.lua, "
                        "$TIDE_PATH and the built-in ones)\n", life->cli->scenario);
        return EXIT_USAGE;
    }
    int rc = scenario_read(life->path, &life->source, err, sizeof err)
                 ? scenario_run_source(L, &life->source, err, sizeof err) : EXIT_SCRIPT;
    if (rc) {
        fprintf(stderr, "tide repl: %s%s\n", rc == EXIT_SCRIPT ? "scenario failed to load: " : "", err);
        return rc;
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, "S");
    int mod = lua_gettop(L);
    if (!life->target[0] && lua_getfield(L, mod, "options") == LUA_TTABLE &&
        lua_getfield(L, -1, "target") == LUA_TSTRING)
        snprintf(life->target, sizeof life->target, "%s", lua_tostring(L, -1));
    lua_settop(L, 0);
    return 0;
}

/* tide, http, celery, pg, json, metrics, check, target and env. */
static int install_globals(lua_State *L, struct repl_life *life)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.repl");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return fprintf(stderr, "tide repl: %s\n", lua_tostring(L, -1)), EXIT_SCRIPT;
    lua_getfield(L, -1, "install");
    lua_pushglobaltable(L);
    life->target[0] ? (void)lua_pushstring(L, life->target) : lua_pushnil(L);
    state_push_env(L, life->env);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK)
        return fprintf(stderr, "tide repl: %s\n", lua_tostring(L, -1)), EXIT_SCRIPT;
    lua_settop(L, 0);
    return 0;
}

struct repl_life *life_open(lua_State *L, struct tctx *ctx, const struct repl_cli *cli,
                            const struct signals *sig, int *rc)
{
    struct repl_life *life = xcalloc(1, sizeof *life);
    *life = (struct repl_life){.L = L, .ctx = ctx, .cli = cli, .sig = sig, .mod_ref = LUA_NOREF,
                               .bg_ref = LUA_NOREF,
                               .env = load_env(cli->env, cli->nenv)};
    if (cli->target)
        snprintf(life->target, sizeof life->target, "%s", cli->target);
    *rc = cli->scenario ? load_scenario(L, life) : 0;
    if (!*rc && cli->scenario) {
        lua_getglobal(L, "S");
        life->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (!*rc)
        *rc = install_globals(L, life);
    if (*rc) {
        life_close(life);
        return NULL;
    }
    set_function(L, life, "setup", l_setup);
    set_function(L, life, "teardown", l_teardown);
    life_open_loads(L);
    set_function(L, life, "run", life_run);
    set_function(L, life, "start", life_start);
    return life;
}

void life_close(struct repl_life *life)
{
    if (!life)
        return;
    life_stop_background(life->L, life);
    if (life->has_data)
        fprintf(stderr, "tide: leaving with the data of setup() not torn down (teardown() was not called "
                        "after it; tide does not run it unasked)\n");
    scenario_source_free(&life->source);
    free(life->env);
    free(life);
}
