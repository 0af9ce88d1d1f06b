#ifndef TIDE_VU_H
#define TIDE_VU_H
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "loop.h"

struct engine;

/* A virtual user: a Lua coroutine that runs the scenario's run() over and
 * over, suspended while its requests or sleeps are in flight. */
struct vu {
    struct engine *eng;
    struct tctx *ctx;
    lua_State *co;
    int co_ref, table_ref;
    unsigned id;
    uint64_t iteration;         /* this VU's iterations started (0-based in Lua) */
    uint64_t iter_start_ns;
    struct shard *shard;
    struct agent agent;
    struct timer timer;         /* tide.sleep */
    void (*cancel)(struct vu *vu);  /* undoes what the VU waits on */
    void *wait;                 /* what it waits on, for cancel */
    bool waiting;               /* suspended by tide itself, not a stray yield */
    bool finished;
};

/* The VU running on L, or NULL outside a virtual user. */
static inline struct vu *vu_current(lua_State *L)
{
    return *(struct vu **)lua_getextraspace(L);
}

/* Suspends the running VU until vu_wake; call as `return vu_suspend(L, vu, cancel, what)`. */
int vu_suspend(lua_State *L, struct vu *vu, void (*cancel)(struct vu *), void *what);
/* Resumes the VU with nargs values already pushed on vu->co. */
void vu_wake(struct vu *vu, int nargs);

/* Makes the coroutine and the `vu` table; false on out-of-memory. */
bool vu_init(struct vu *vu, struct engine *eng, struct tctx *ctx, unsigned id, struct shard *shard);
/* Starts iterations until one suspends or the executor says stop. */
void vu_start(struct vu *vu);
/* Stops the VU now, whatever it waits on; counts the iteration as interrupted. */
void vu_cut(struct vu *vu);
void vu_release(struct vu *vu);

#endif
