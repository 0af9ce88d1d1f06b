#include "vu.h"
#include "engine.h"

#include <lauxlib.h>
#include <stdio.h>

bool vu_init(struct vu *vu, struct engine *eng, struct tctx *ctx, unsigned id, struct shard *shard)
{
    lua_State *L = ctx->L;
    vu->eng = eng;
    vu->ctx = ctx;
    vu->id = id;
    vu->shard = shard;
    vu->co = lua_newthread(L);
    *(struct vu **)lua_getextraspace(vu->co) = vu;
    vu->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return vu->co_ref != LUA_REFNIL;
}

void vu_release(struct vu *vu)
{
    if (vu->co_ref > 0)
        luaL_unref(vu->ctx->L, LUA_REGISTRYINDEX, vu->co_ref);
    vu->co_ref = 0;
}

int vu_suspend(lua_State *L, struct vu *vu, void (*cancel)(struct vu *), void *what)
{
    vu->cancel = cancel;
    vu->wait = what;
    vu->waiting = true;
    return lua_yield(L, 0);
}

/* Pushes run(vu, data) onto the coroutine's empty stack. */
static int push_iteration(struct vu *vu)
{
    lua_State *co = vu->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->eng->run_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->table_ref);
    lua_pushinteger(co, (lua_Integer)vu->iteration);
    lua_setfield(co, -2, "iteration");
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->eng->data_ref);
    return 2;
}

/* An iteration ended in an error: keep the traceback, reset the coroutine. */
static void iteration_failed(struct vu *vu, int status)
{
    lua_State *co = vu->co;
    const char *msg = lua_tostring(co, -1);
    if (status == LUA_YIELD)
        msg = "coroutine.yield() in a virtual user's run(): use tide.sleep or http calls, "
              "which suspend the user themselves";
    luaL_traceback(co, co, msg ? msg : "(error object is not a string)", 0);
    engine_report_error(vu->eng, vu, lua_tostring(co, -1));
    lua_resetthread(co);
}

/* Resumes and, when the iteration ends without suspending, accounts for it.
 * Returns true when the VU is suspended (waiting on a request or timer). */
static bool resume(struct vu *vu, int nargs)
{
    int nres;
    vu->waiting = false;
    int status = lua_resume(vu->co, NULL, nargs, &nres);
    if (status == LUA_YIELD && vu->waiting)
        return true;
    bool ok = status == LUA_OK;
    if (ok)
        lua_settop(vu->co, 0);
    else
        iteration_failed(vu, status);
    engine_iteration_done(vu->eng, vu, ok, loop_refresh_now(vu->ctx->loop));
    return false;
}

static void run_iterations(struct vu *vu)
{
    while (engine_take_iteration(vu->eng, vu)) {
        vu->iter_start_ns = loop_refresh_now(vu->ctx->loop);
        if (resume(vu, push_iteration(vu)))
            return;
        vu->iteration++;
    }
    vu->finished = true;
    engine_vu_finished(vu->eng, vu, false);
}

void vu_start(struct vu *vu)
{
    run_iterations(vu);
}

void vu_wake(struct vu *vu, int nargs)
{
    vu->cancel = NULL;
    vu->wait = NULL;
    if (resume(vu, nargs))
        return;
    vu->iteration++;
    run_iterations(vu);
}

void vu_cut(struct vu *vu)
{
    if (vu->finished)
        return;
    if (vu->cancel)
        vu->cancel(vu);
    vu->cancel = NULL;
    vu->wait = NULL;
    lua_resetthread(vu->co);
    vu->finished = true;
    engine_vu_finished(vu->eng, vu, true);
}
