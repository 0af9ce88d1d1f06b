#ifndef TIDE_CTX_H
#define TIDE_CTX_H
#include <lua.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "http_defaults.h"
#include "live.h"
#include "loop.h"

struct dreg;
struct metrics;
struct once;
struct req;
struct shard;       /* the transport's (shard.h) */
struct tjar;        /* the transport's (transport.h) */

/* Whose cookies a request carries: a virtual user, or the caller of a
 * blocking call (setup, teardown, the prompt). */
/* tide.http's transports (http.c): libcurl, and the lean HTTP/1.1 one. */
enum { TRANSPORT_CURL, TRANSPORT_LEAN, TRANSPORTS };

struct agent {
    struct req *req;    /* its own request and transfer, made on first use */
    /* A jar per transport, made when its requests are shared (a batch,
     * HTTP/2) or the user's cookies move between transports; until then
     * its own transfer holds them. */
    struct tjar *jars[TRANSPORTS];
    unsigned char kind; /* the transport whose jar (or own transfer) has the cookies as they are now */
    bool started;       /* kind is set */
};

/* One per Lua state (per engine thread, plus the main thread's). Stored as
 * the first upvalue of every tide C function. */
struct tctx {
    lua_State *L;
    struct loop *loop;
    struct shard **shards;
    unsigned nshards;
    struct metrics *metrics;
    struct live live;           /* per-second counts for points and progress */
    struct agent agent;         /* for calls made outside a virtual user */
    struct req *pool;           /* idle requests for batches */
    struct req *all;            /* every request made, for cleanup */
    size_t max_body;
    struct http_defaults http;  /* the run's defaults for every request */
    int untagged;               /* the tag set of no tags + 1 (0: not interned yet): the engine counters' */
    size_t buffer_size;         /* the transport's receive buffer per transfer; 0 = its default */
    bool in_load;               /* a loop is running VUs: blocking calls are refused */
    int (*interrupts)(void);    /* Ctrl-C presses, for blocking calls */
    int cancel_fd;              /* readable after a press (block.c); -1: none */
    int interrupts_before;      /* presses already dealt with (by the load phase) */
    struct once *once;          /* shared by all threads of the run: tide.once */
    struct dreg *data;          /* tide.data's files: made by the main thread's state on first use */
    bool data_borrowed;         /* engine threads: data is the main thread's, to find in, never to add to */
    /* the Lua guard (guard.c) */
    size_t mem_used, mem_limit; /* bytes the state holds; its limit for script code (0: none) */
    bool mem_refused;           /* the limit refused an allocation */
    bool in_script;             /* a scenario's own code runs: the limit and the stop hook apply */
    const _Atomic int *stop_level; /* engine threads: the run's stop level (2: cut now) */
    /* engine threads: offered every hook call first; true when L was a
     * virtual user's, which it may have suspended (vu_hook) */
    bool (*preempt)(lua_State *L, bool cut);
};


static inline struct tctx *tctx_get(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

#endif
