#ifndef TIDE_GUARD_H
#define TIDE_GUARD_H
#include <lua.h>
#include <stdbool.h>

struct tctx;

/* What keeps a Lua state in bounds while a scenario's own code runs: a
 * memory limit, and a count hook through which a stop (or the loop's other
 * work) reaches Lua code that never yields. */

/* Puts L's allocations under ctx's account and installs the hook (coroutines
 * inherit it). Call once, right after the state is made. The account has no
 * limit until ctx->mem_limit is set (a run sets options.lua_memory). */
void guard_install(lua_State *L, struct tctx *ctx);
/* The context whose account L is on. */
struct tctx *guard_ctx(lua_State *L);

/* lua_pcall for a scenario's own code (load, setup, teardown): the memory
 * limit applies, and a Ctrl-C or a cut raises "interrupted" inside it. */
int guard_pcall(lua_State *L, int nargs, int nres, int msgh);
/* Marks the start and end of script code run otherwise (lua_resume). */
bool guard_enter(struct tctx *ctx);
void guard_leave(struct tctx *ctx, bool was);

/* True when the code running now must stop: the run is being cut, or a
 * Ctrl-C came in a blocking phase. */
bool guard_cut(const struct tctx *ctx);
/* True when the limit refused an allocation since the last call. */
bool guard_took_limit(struct tctx *ctx);

#endif
