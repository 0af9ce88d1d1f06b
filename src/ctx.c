#include "ctx.h"
#include "clock.h"
#include "duration.h"
#include "embedded.h"
#include "exec.h"
#include "guard.h"
#include "hist_lua.h"
#include "http.h"
#include "metrics.h"
#include "metrics_lua.h"
#include "once.h"
#include "pg.h"
#include "vu.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

int luaopen_cjson(lua_State *L);

#define DEFAULT_MAX_BODY (64u << 20)

const struct embedded_file *embedded_find(const char *name)
{
    for (const struct embedded_file *f = embedded_files; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

/* ---- tide core module: sleep, now ---- */

static void sleep_fire(struct timer *t)
{
    vu_wake((struct vu *)((char *)t - offsetof(struct vu, timer)), 0);
}

static void sleep_cancel(struct vu *vu)
{
    timer_stop(vu->ctx->loop, &vu->timer);
}

struct wake_flag {
    struct timer t;
    bool done;
};

static void flag_fire(struct timer *t)
{
    ((struct wake_flag *)t)->done = true;
}

static int l_sleep(lua_State *L)
{
    struct tctx *ctx = tctx_get(L);
    double s = duration_check(L, 1);
    struct vu *vu = vu_current(L);
    if (vu) {
        vu->timer.fire = sleep_fire;
        timer_start(ctx->loop, &vu->timer, loop_refresh_now(ctx->loop) + seconds_to_ns(s));
        return vu_suspend(L, vu, sleep_cancel, NULL);
    }
    if (ctx->in_load)
        return luaL_error(L, "tide.sleep: called in a nested coroutine during load");
    struct wake_flag w = {.t.fire = flag_fire};
    timer_start(ctx->loop, &w.t, loop_refresh_now(ctx->loop) + seconds_to_ns(s));
    while (!w.done) {
        loop_run_once(ctx->loop, NS_PER_SEC / 10);
        if (ctx->interrupts && ctx->interrupts() > ctx->interrupts_before) {
            timer_stop(ctx->loop, &w.t);
            return luaL_error(L, "tide.sleep: interrupted");
        }
    }
    return 0;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (double)clock_now_ns() / 1e9);
    return 1;
}

/* Records how long the group took, tagged with its path, and leaves it. */
static int group_done(lua_State *L, int status, lua_KContext outer_len)
{
    struct vu *vu = vu_current(L);
    uint64_t start = (uint64_t)lua_tointeger(L, 3);
    if (vu) {
        struct exec *ex = vu->ex;
        char tag[sizeof vu->group + 8], key[sizeof tag + TAGS_MAX];
        int n = snprintf(tag, sizeof tag, "group%c%s", TAG_KV, vu->group);
        size_t len = metrics_tagkey_merge(ex->scen->tags, ex->scen->tags_len, tag, (size_t)n, key, sizeof key);
        uint64_t now = loop_refresh_now(vu->ctx->loop);
        metrics_add(vu->ctx->metrics, M_GROUP_DURATION, metrics_tagset(vu->ctx->metrics, key, len),
                    (double)(now - start) / 1e3);
        vu->group_len = (size_t)outer_len;
        vu->group[vu->group_len] = '\0';
    }
    if (status != LUA_OK && status != LUA_YIELD)
        return lua_error(L);
    return lua_gettop(L) - 3;
}

/* tide.group(name, fn): fn's requests carry the group tag; its time is group_duration. */
static int l_group(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    struct vu *vu = vu_current(L);
    size_t outer = vu ? vu->group_len : 0;
    if (vu) {
        int n = snprintf(vu->group + outer, sizeof vu->group - outer, "::%s", name);
        if (n < 0 || (size_t)n >= sizeof vu->group - outer)
            return luaL_error(L, "tide.group: group path too long");
        vu->group_len += (size_t)n;
    }
    lua_pushinteger(L, vu ? (lua_Integer)loop_refresh_now(vu->ctx->loop) : 0);
    lua_pushvalue(L, 2);
    return group_done(L, lua_pcallk(L, 0, LUA_MULTRET, 0, (lua_KContext)outer, group_done), (lua_KContext)outer);
}

/* tide.once(key): true the first time key is seen in this run, on any thread. */
static int l_once(lua_State *L)
{
    lua_pushboolean(L, once_first(tctx_get(L)->once, luaL_checkstring(L, 1)));
    return 1;
}

static int l_duration(lua_State *L)
{
    lua_pushnumber(L, duration_check(L, 1));
    return 1;
}

static int luaopen_tide(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"sleep", l_sleep}, {"now", l_now}, {"duration", l_duration}, {"group", l_group}, {"once", l_once},
        {NULL, NULL},
    };
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    lua_pushliteral(L, TIDE_VERSION);
    lua_setfield(L, -2, "version");
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_setfield(L, -2, "json");
    return 1;
}

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
    ctx->max_body = DEFAULT_MAX_BODY;
    if (!(ctx->loop = loop_new()) || !(ctx->metrics = metrics_new()) || !live_init(&ctx->live) ||
        !(ctx->shards = calloc(nshards, sizeof *ctx->shards)))
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
    memset(ctx, 0, sizeof *ctx);
}
