/* The `tide` module: sleep, now, duration, group, once, json. */
#include "core.h"
#include "block.h"
#include "clock.h"
#include "crypto_lua.h"
#include "ctx.h"
#include "data_lua.h"
#include "duration.h"
#include "metrics.h"
#include "once.h"
#include "redact.h"
#include "options.h"
#include "vu.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

int luaopen_cjson(lua_State *L);

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
    if (!block_until(ctx, &w.done)) {
        timer_stop(ctx->loop, &w.t);
        return luaL_error(L, "tide.sleep: interrupted");
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
        char tag[sizeof vu->group + 8], key[sizeof tag + TAGS_MAX];
        int n = snprintf(tag, sizeof tag, "group%c%s", TAG_KV, vu->group);
        size_t len = metrics_tagkey_merge(vu->tags, vu->tags_len, tag, (size_t)n, key, sizeof key);
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

/* tide.redact(text): text with the secrets of every URL and DSN in it blanked. */
static int l_redact(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    char small[4096];
    char *out = n < sizeof small / 2 ? small : lua_newuserdatauv(L, 2 * n + 16, 0);
    redact_text(text, out, n < sizeof small / 2 ? sizeof small : 2 * n + 16);
    lua_pushstring(L, out);
    return 1;
}

static int l_duration(lua_State *L)
{
    lua_pushnumber(L, duration_check(L, 1));
    return 1;
}

int luaopen_tide(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"sleep", l_sleep}, {"now", l_now}, {"duration", l_duration}, {"group", l_group}, {"once", l_once}, {"redact", l_redact},
        {NULL, NULL},
    };
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    lua_pushliteral(L, TIDE_VERSION);
    lua_setfield(L, -2, "version");
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_setfield(L, -2, "json");
    data_lua_open(L);
    lua_setfield(L, -2, "data");
    crypto_lua_add(L);
    return 1;
}

