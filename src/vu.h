#ifndef TIDE_VU_H
#define TIDE_VU_H
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctx.h"
#include "loop.h"

struct vu;

/* What a VU asks of whoever runs it (its executor). */
struct vu_host {
    /* true, with the next iteration's schedule, when the VU runs another */
    bool (*next)(struct vu *vu, uint64_t *sched_ns);
    void (*done)(struct vu *vu, bool ok, uint64_t end_ns);     /* an iteration ended */
    void (*cut)(struct vu *vu);                                 /* an iteration was cut */
    void (*failed)(struct vu *vu, const char *traceback);       /* ...in an error */
    int (*table)(struct vu *vu);    /* a registry ref to its `vu` table (made once) */
};

/* A virtual user: a Lua coroutine that runs its scenario's function once per
 * iteration, suspended while its requests or sleeps are in flight. */
struct vu {
    const struct vu_host *host;
    void *owner;                /* the host's own */
    struct tctx *ctx;
    lua_State *co;              /* NULL until first used */
    int co_ref, table_ref;
    int fn_ref, data_ref;       /* registry refs: the function each iteration calls, its data */
    const char *tags;           /* the scenario's tag-set key, added to every sample */
    size_t tags_len;
    unsigned id;                /* 1..N across threads and scenarios */
    unsigned slot;              /* index in its executor's share */
    uint64_t iteration;         /* this VU's iterations started (0-based in Lua) */
    uint64_t iteration_global;  /* the running iteration's number in its scenario, all users and
                                   threads (1-based; the executor sets it) */
    uint64_t sched_ns;          /* when this iteration was due (open model: its schedule) */
    uint64_t lag_us;            /* start delay still to charge to the first request */
    uint64_t turn_ns;           /* when the loop last handed it the thread */
    struct shard *shard;
    struct agent agent;
    struct timer timer;         /* tide.sleep */
    struct timer cut_timer;     /* graceful ramp-down */
    void (*cancel)(struct vu *vu);  /* undoes what the VU waits on */
    void *wait;                 /* what it waits on, for cancel */
    struct vu *next_idle;
    char group[192];            /* tide.group path, "::outer::inner"; "" outside groups */
    size_t group_len;
    bool waiting;               /* suspended by tide itself, not a stray yield */
    bool running;               /* inside an iteration */
    bool retiring;              /* ramping down: last iteration */
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

/* Runs iterations, the first due at sched_ns, while the executor has more. */
void vu_begin(struct vu *vu, uint64_t sched_ns);
/* Stops the VU's iteration now, whatever it waits on; counts it as interrupted. */
void vu_cut(struct vu *vu);
/* For the count hook (tctx.preempt): false when L is not a VU's own
 * coroutine; else, when its turn is over or the run is being cut, suspends
 * it so the loop runs (then it must be the hook's last call). */
bool vu_hook(lua_State *L, bool cut);

#endif
