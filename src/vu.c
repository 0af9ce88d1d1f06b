#include "vu.h"
#include "clock.h"
#include "guard.h"

#include <lauxlib.h>
#include <stdio.h>

/* How long a user keeps its thread before the loop gets a turn: other
 * users' starts, answers and timers wait no longer than this (plus the
 * hook's period) behind one that computes or fails without yielding. */
#define TURN_NS (2 * NS_PER_MS)

/* Makes the coroutine and the `vu` table (lazily, on the first iteration). */
static bool vu_ready(struct vu *vu)
{
    if (vu->co)
        return true;
    lua_State *L = vu->ctx->L;
    vu->co = lua_newthread(L);
    *(struct vu **)lua_getextraspace(vu->co) = vu;
    vu->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    vu->table_ref = vu->host->table(vu);
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
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->fn_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->table_ref);
    lua_pushinteger(co, (lua_Integer)vu->iteration);
    lua_setfield(co, -2, "iteration");
    lua_pushinteger(co, (lua_Integer)vu->iteration_global);
    lua_setfield(co, -2, "iteration_global");
    lua_rawgeti(co, LUA_REGISTRYINDEX, vu->data_ref);
    return 2;
}

struct traceback_args {
    lua_State *co;
    const char *msg;
};

static int build_traceback(lua_State *L)
{
    const struct traceback_args *a = lua_touserdata(L, 1);
    luaL_traceback(L, a->co, a->msg, 0);
    return 1;
}

/* An iteration ended in an error: report it with a traceback, reset the
 * coroutine. The traceback is made in a protected call under the memory
 * limit: a state out of memory reports the bare message instead. */
static void iteration_failed(struct vu *vu, int status)
{
    lua_State *co = vu->co, *L = vu->ctx->L;
    const char *msg = lua_tostring(co, -1);
    char oom[160];
    if (status == LUA_YIELD)
        msg = "coroutine.yield() in a virtual user's iteration: use tide.sleep or http calls, "
              "which suspend the user themselves";
    if (status == LUA_ERRMEM && guard_took_limit(vu->ctx)) {
        snprintf(oom, sizeof oom, "out of memory: this thread's Lua state reached its limit of %zu MB "
                 "(--lua-memory)", vu->ctx->mem_limit >> 20);
        msg = oom;
    }
    struct traceback_args a = {co, msg ? msg : "(error object is not a string)"};
    bool traced = false;
    if (status != LUA_ERRMEM && lua_checkstack(L, 2)) {
        lua_pushcfunction(L, build_traceback);
        lua_pushlightuserdata(L, &a);
        traced = guard_pcall(L, 1, 1, 0) == LUA_OK;
        if (!traced)
            lua_pop(L, 1);
    }
    vu->host->failed(vu, traced ? lua_tostring(L, -1) : a.msg);
    if (traced)
        lua_pop(L, 1);
    lua_resetthread(co);
    if (status == LUA_ERRMEM)
        lua_gc(L, LUA_GCCOLLECT, 0); /* what the failed iteration held goes now */
}

/* Resumes; when the iteration ends without suspending, accounts for it.
 * Returns true when the VU is suspended (waiting on a request or timer). */
static bool resume(struct vu *vu, int nargs)
{
    int nres;
    vu->waiting = false;
    bool was = guard_enter(vu->ctx);
    int status = lua_resume(vu->co, NULL, nargs, &nres);
    guard_leave(vu->ctx, was);
    if (status == LUA_YIELD && vu->waiting)
        return true;
    bool ok = status == LUA_OK;
    if (ok)
        lua_settop(vu->co, 0);
    else
        iteration_failed(vu, status);
    vu->running = false;
    vu->iteration++;
    vu->host->done(vu, ok, loop_refresh_now(vu->ctx->loop));
    return false;
}

static bool turn_over(struct vu *vu, uint64_t now)
{
    return now - vu->turn_ns > TURN_NS;
}

static void run_iterations(struct vu *vu, uint64_t sched_ns);

static void on_next_turn(struct timer *t)
{
    struct vu *vu = (struct vu *)((char *)t - offsetof(struct vu, timer));
    uint64_t sched;
    vu->turn_ns = loop_refresh_now(vu->ctx->loop);
    if (vu->host->next(vu, &sched))
        run_iterations(vu, sched);
}

/* After an iteration ended without suspending: true, with the next one's
 * schedule, when it may start now; once the user's turn is over, the loop
 * runs first and the executor is asked afterwards (a stop may come). */
static bool next_now(struct vu *vu, uint64_t *sched_ns)
{
    uint64_t now = loop_refresh_now(vu->ctx->loop);
    if (turn_over(vu, now)) {
        vu->timer.fire = on_next_turn;
        timer_start(vu->ctx->loop, &vu->timer, now);
        return false;
    }
    return vu->host->next(vu, sched_ns);
}

/* Iterations back to back until one suspends, the executor says stop, or
 * the user's turn is over. */
static void run_iterations(struct vu *vu, uint64_t sched_ns)
{
    do {
        uint64_t now = loop_refresh_now(vu->ctx->loop);
        vu->sched_ns = sched_ns;
        vu->lag_us = now > sched_ns ? (now - sched_ns) / 1000 : 0;
        vu->running = true;
        if (resume(vu, push_iteration(vu)))
            return;
    } while (next_now(vu, &sched_ns));
}

void vu_begin(struct vu *vu, uint64_t sched_ns)
{
    if (!vu_ready(vu)) {
        vu->host->failed(vu, "out of memory");
        return;
    }
    vu->turn_ns = loop_refresh_now(vu->ctx->loop);
    run_iterations(vu, sched_ns);
}

void vu_wake(struct vu *vu, int nargs)
{
    uint64_t sched;
    vu->cancel = NULL;
    vu->wait = NULL;
    vu->turn_ns = loop_refresh_now(vu->ctx->loop);
    if (!resume(vu, nargs) && next_now(vu, &sched))
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
    vu->host->cut(vu);
}

static void on_turn_back(struct timer *t)
{
    vu_wake((struct vu *)((char *)t - offsetof(struct vu, timer)), 0);
}

static void cancel_turn(struct vu *vu)
{
    timer_stop(vu->ctx->loop, &vu->timer);
}

bool vu_hook(lua_State *L, bool cut)
{
    struct vu *vu = vu_current(L);
    if (!vu || vu->co != L)
        return false;
    uint64_t now = loop_refresh_now(vu->ctx->loop);
    if (!cut && !turn_over(vu, now))
        return true;
    if (!lua_isyieldable(L)) { /* inside a C call (a sort's comparator...): only a cut gets in */
        if (cut)
            luaL_error(L, "interrupted");
        return true;
    }
    /* back after the loop's due work; a cut finds it suspended and ends it */
    vu->timer.fire = on_turn_back;
    timer_start(vu->ctx->loop, &vu->timer, now);
    vu_suspend(L, vu, cancel_turn, NULL);
    return true;
}
