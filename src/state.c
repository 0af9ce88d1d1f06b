/* A Lua state with tide's modules, and the context its C functions share. */
#include "state.h"
#include "core.h"
#include "data.h"
#include "embedded.h"
#include "guard.h"
#include "hist_lua.h"
#include "http.h"
#include "json.h"
#include "metrics.h"
#include "metrics_lua.h"
#include "options.h"
#include "pg.h"
#include "shard.h"
#include "vu.h"
#include "xmalloc.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

int luaopen_cjson(lua_State *L);

static int luaopen_tide_json(lua_State *L)
{
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    return 1;
}

/* package.searchers entry for the Lua modules compiled into the binary. */
static int search_embedded(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const struct embedded_file *f = embedded_find(name);
    if (!f) {
        lua_pushfstring(L, "no module '%s' built into tide", name);
        return 1;
    }
    lua_pushfstring(L, "@%s", f->path);
    if (luaL_loadbuffer(L, f->src, f->len, lua_tostring(L, -1)) != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, f->path);
    return 2;
}

static void preload(lua_State *L, const char *name, lua_CFunction fn, struct tctx *ctx)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushlightuserdata(L, ctx);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* os.exit would end tide with the script's code: no summary, no outputs, and
 * an exit code outside the contract CI relies on. */
static int l_no_exit(lua_State *L)
{
    return luaL_error(L, "os.exit is not available in tide: raise an error to fail the script "
                         "(exit 3), or use thresholds and checks to fail the run (exit 1)");
}

static void open_libs(lua_State *L, struct tctx *ctx)
{
    luaL_openlibs(L);
    lua_getglobal(L, "os");
    lua_pushcfunction(L, l_no_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
    *(struct vu **)lua_getextraspace(L) = NULL;
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    json_fix_numbers(L, -1);
    lua_pop(L, 1);
    preload(L, "tide", luaopen_tide, ctx);
    preload(L, "tide.http", luaopen_tide_http, ctx);
    preload(L, "tide.json", luaopen_tide_json, ctx);
    preload(L, "tide.hist", luaopen_tide_hist, ctx);
    preload(L, "tide.metrics", luaopen_tide_metrics, ctx);
    preload(L, "tide.pg", luaopen_tide_pg, ctx);
    /* embedded modules come right after preload, before the file system */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    for (lua_Integer i = luaL_len(L, -1) + 1; i > 2; i--) {
        lua_geti(L, -1, i - 1);
        lua_seti(L, -2, i);
    }
    lua_pushcfunction(L, search_embedded);
    lua_seti(L, -2, 2);
    lua_pop(L, 2);
}

static bool init(struct tctx *ctx, lua_State *L, unsigned nshards)
{
    ctx->L = L;
    ctx->cancel_fd = -1;
    ctx->max_body = DEFAULT_MAX_BODY;
    if (!(ctx->loop = loop_new()) || !(ctx->metrics = metrics_new()) || !live_init(&ctx->live) ||
        !(ctx->shards = xcalloc(nshards, sizeof *ctx->shards)))
        return false;
    for (unsigned i = 0; i < nshards; i++)
        if (!(ctx->shards[ctx->nshards++] = shard_new(ctx->loop)))
            return false;
    return true;
}

lua_State *tctx_open(struct tctx *ctx, unsigned nshards)
{
    memset(ctx, 0, sizeof *ctx);
    lua_State *L = luaL_newstate();
    if (!L || !init(ctx, L, nshards)) {
        if (L)
            lua_close(L);
        tctx_free(ctx);
        return NULL;
    }
    guard_install(L, ctx);
    open_libs(L, ctx);
    return L;
}

void tctx_close(struct tctx *ctx)
{
    if (ctx->L)
        lua_close(ctx->L);
    tctx_free(ctx);
}

/* Call after lua_close: the state's objects may still hold handles. */
void tctx_free(struct tctx *ctx)
{
    http_free_all(ctx);
    agent_free(ctx, &ctx->agent);
    for (unsigned i = 0; i < ctx->nshards; i++)
        shard_free(ctx->shards[i]);
    free(ctx->shards);
    metrics_free(ctx->metrics);
    live_free(&ctx->live);
    loop_free(ctx->loop);
    if (!ctx->data_borrowed)
        dreg_free(ctx->data);
    memset(ctx, 0, sizeof *ctx);
}

void state_push_env(lua_State *L, char *const *env)
{
    lua_newtable(L);
    for (char *const *p = env; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (!eq)
            continue;
        lua_pushlstring(L, *p, (size_t)(eq - *p));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
}
