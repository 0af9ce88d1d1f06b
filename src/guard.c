/* The Lua guard: a memory account per state, and the stop hook. */
#include "guard.h"
#include "ctx.h"

#include <lauxlib.h>
#include <stdlib.h>

/* VM instructions between two looks at the clock and the stop state: tens
 * of microseconds of Lua, and a cost per instruction the load never notices. */
#define HOOK_EVERY 10000

static void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct tctx *ctx = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        ctx->mem_used -= old;
        return NULL;
    }
    if (nsize > old && ctx->in_script && ctx->mem_limit && ctx->mem_used - old + nsize > ctx->mem_limit) {
        ctx->mem_refused = true;
        return NULL; /* Lua collects garbage and tries again before it raises */
    }
    void *p = realloc(ptr, nsize);
    if (p)
        ctx->mem_used = ctx->mem_used - old + nsize;
    return p;
}

bool guard_cut(const struct tctx *ctx)
{
    if (ctx->stop_level && atomic_load_explicit(ctx->stop_level, memory_order_relaxed) >= 2)
        return true;
    return ctx->interrupts && ctx->interrupts() > ctx->interrupts_before;
}

static void on_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct tctx *ctx = guard_ctx(L);
    bool cut = guard_cut(ctx);
    if (ctx->preempt && ctx->preempt(L, cut))
        return; /* it may have yielded: nothing may follow */
    if (ctx->in_script && cut)
        luaL_error(L, "interrupted");
}

void guard_install(lua_State *L, struct tctx *ctx)
{
    /* the blocks the state made so far are on the account from the start */
    ctx->mem_used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, guard_alloc, ctx);
    lua_sethook(L, on_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

struct tctx *guard_ctx(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

bool guard_enter(struct tctx *ctx)
{
    bool was = ctx->in_script;
    ctx->in_script = true;
    return was;
}

void guard_leave(struct tctx *ctx, bool was)
{
    ctx->in_script = was;
}

int guard_pcall(lua_State *L, int nargs, int nres, int msgh)
{
    struct tctx *ctx = guard_ctx(L);
    bool was = guard_enter(ctx);
    int rc = lua_pcall(L, nargs, nres, msgh);
    guard_leave(ctx, was);
    return rc;
}

bool guard_took_limit(struct tctx *ctx)
{
    bool took = ctx->mem_refused;
    ctx->mem_refused = false;
    return took;
}
