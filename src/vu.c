#include "vu.h"
#include "exec.h"

#include <lauxlib.h>
#include <stdio.h>

/* Makes the coroutine and the `vu` table (lazily, on the first iteration). */
static bool vu_ready(struct vu *vu)
{
    if (vu->co)
        return true;
    lua_State *L = vu->ctx->L;
    vu->co = lua_newthread(L);
    *(struct vu **)lua_getextraspace(vu->co) = vu;
    vu->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    vu->table_ref = exec_vu_table(vu->ex, vu);
    return vu->co_ref != LUA_REFNIL;
}

int vu_suspend(lua_State *L, struct vu *vu, void (*cancel)(struct vu *), void *what)
{
    vu->cancel = cancel;
    vu->wait = what;
    vu->waiting = true;
    return lua_yield(L, 0);
}

/* Pushes fn(vu, data) onto the coroutine's empty stack. */
static int push_iteration(struct vu *vu)
{
    lua_State *co = vu->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, exec_fn_ref(vu->ex));
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->table_ref);
    lua_pushinteger(co, (lua_Integer)vu->iteration);
    lua_setfield(co, -2, "iteration");
    lua_rawgeti(co, LUA_REGISTRYINDEX, exec_data_ref(vu->ex));
    return 2;
}

/* An iteration ended in an error: keep the traceback, reset the coroutine. */
static void iteration_failed(struct vu *vu, int status)
{
    lua_State *co = vu->co;
    const char *msg = lua_tostring(co, -1);
    if (status == LUA_YIELD)
        msg = "coroutine.yield() in a virtual user's iteration: use tide.sleep or http calls, "
              "which suspend the user themselves";
    luaL_traceback(co, co, msg ? msg : "(error object is not a string)", 0);
    exec_report_error(vu->ex, vu, lua_tostring(co, -1));
    lua_resetthread(co);
}

/* Resumes; when the iteration ends without suspending, accounts for it.
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
    vu->running = false;
    vu->iteration++;
    exec_iteration_done(vu->ex, vu, ok, loop_refresh_now(vu->ctx->loop));
    return false;
}

/* Iterations back to back until one suspends or the executor says stop. */
static void run_iterations(struct vu *vu, uint64_t sched_ns)
{
    do {
        uint64_t now = loop_refresh_now(vu->ctx->loop);
        vu->sched_ns = sched_ns;
        vu->lag_us = now > sched_ns ? (now - sched_ns) / 1000 : 0;
        vu->running = true;
        if (resume(vu, push_iteration(vu)))
            return;
    } while (exec_next(vu->ex, vu, &sched_ns));
}

void vu_begin(struct vu *vu, uint64_t sched_ns)
{
    if (!vu_ready(vu)) {
        exec_report_error(vu->ex, vu, "out of memory");
        return;
    }
    run_iterations(vu, sched_ns);
}

void vu_wake(struct vu *vu, int nargs)
{
    uint64_t sched;
    vu->cancel = NULL;
    vu->wait = NULL;
    if (!resume(vu, nargs) && exec_next(vu->ex, vu, &sched))
        run_iterations(vu, sched);
}

void vu_cut(struct vu *vu)
{
    if (!vu->running)
        return;
    if (vu->cancel)
        vu->cancel(vu);
    vu->cancel = NULL;
    vu->wait = NULL;
    vu->running = false;
    lua_resetthread(vu->co);
    lua_settop(vu->co, 0);
    exec_iteration_cut(vu->ex, vu);
}
