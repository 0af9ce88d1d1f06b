#include "engine.h"
#include "clock.h"
#include "http.h"
#include "metrics.h"
#include "scenario.h"
#include "vu.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libcurl 7.88 walks a multi handle's connections on every request (to pick
 * one to reuse, and again on remove_handle): fewer users per multi, fewer
 * steps. Each multi costs ~45 KB of hash tables, so not fewer than this. */
#define VUS_PER_SHARD 50
/* With thousands of users in flight at once, libcurl's 16 KB receive buffer
 * per transfer dominates memory; 4 KB costs one more read per 4 KB of body. */
#define MANY_VUS 1000
#define SMALL_BUFFER 4096

unsigned engine_share(long long total, unsigned threads, unsigned thread)
{
    return (unsigned)(total / threads + ((long long)thread < total % threads));
}

unsigned engine_first_id(const struct options *o, unsigned threads, unsigned scen, unsigned thread)
{
    unsigned id = 1;
    for (unsigned s = 0; s < scen; s++)
        id += (unsigned)scen_max_vus(&o->scen[s]);
    for (unsigned t = 0; t < thread; t++)
        id += engine_share(scen_max_vus(&o->scen[scen]), threads, t);
    return id;
}

static void check_stop_level(struct engine *e)
{
    int level = atomic_load_explicit(&e->run->stop_level, memory_order_relaxed);
    for (unsigned i = 0; level && i < e->nexecs; i++)
        exec_stop(&e->execs[i], level);
}

static void on_poke(void *ud)
{
    check_stop_level(ud);
}

void engine_poke(struct engine *e)
{
    loop_wake(loop_wake_fd(e->ctx.loop));
}

/* ---- preparing the thread's state ---- */

static bool fail(struct engine *e, const char *msg)
{
    snprintf(e->error, sizeof e->error, "%s", msg);
    return false;
}

static void push_env(lua_State *L, char *const *env)
{
    lua_newtable(L);
    for (char *const *p = env; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (!eq)
            continue;
        lua_pushlstring(L, *p, (size_t)(eq - *p));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
}

static bool load_data(struct engine *e, lua_State *L)
{
    if (!e->run->setup_json) {
        lua_pushnil(L);
    } else {
        lua_getglobal(L, "require");
        lua_pushliteral(L, "cjson");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "decode");
        lua_pushlstring(L, e->run->setup_json, e->run->setup_json_len);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            return fail(e, lua_tostring(L, -1));
        lua_remove(L, -2);
    }
    e->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    push_env(L, e->run->env);
    e->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return true;
}

/* Every scenario's function must exist: module[exec]. */
static bool make_execs(struct engine *e, lua_State *L, int mod)
{
    const struct options *o = e->run->opt;
    unsigned n = e->run->threads;
    for (int s = 0; s < o->nscen; s++) {
        struct exec *ex = &e->execs[e->nexecs];
        unsigned cap = engine_share(scen_max_vus(&o->scen[s]), n, e->index);
        if (!exec_init(ex, e, (unsigned)s, e->index, n, engine_first_id(o, n, (unsigned)s, e->index), cap))
            return fail(e, "out of memory");
        e->nexecs++;
        if (lua_getfield(L, mod, o->scen[s].exec) != LUA_TFUNCTION) {
            snprintf(e->error, sizeof e->error, "scenario '%s' calls module.%s, which is not a function",
                     o->scen[s].name, o->scen[s].exec);
            return false;
        }
        ex->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return true;
}

static long long thread_vus(const struct engine *e)
{
    long long vus = 0;
    for (int s = 0; s < e->run->opt->nscen; s++)
        vus += engine_share(scen_max_vus(&e->run->opt->scen[s]), e->run->threads, e->index);
    return vus;
}

static unsigned shards_needed(const struct engine *e)
{
    long long vus = thread_vus(e);
    unsigned n = (unsigned)((vus + VUS_PER_SHARD - 1) / VUS_PER_SHARD);
    return n ? n : 1;
}

static bool prepare(struct engine *e)
{
    lua_State *L = tctx_open(&e->ctx, shards_needed(e));
    if (!L)
        return fail(e, "out of memory");
    e->ctx.max_body = e->run->opt->max_body;
    e->ctx.stop_level = &e->run->stop_level;
    e->ctx.mem_limit = e->run->opt->lua_memory;
    if (thread_vus(e) >= MANY_VUS)
        e->ctx.buffer_size = SMALL_BUFFER;
    lua_gc(L, LUA_GCGEN, 0, 0); /* many small short-lived objects: responses, tables */
    e->ctx.once = e->run->once;
    if (scenario_load(L, e->run->scenario_path, e->error, sizeof e->error) != 0)
        return false;
    int mod = lua_gettop(L);
    bool ok = load_data(e, L) && make_execs(e, L, mod);
    lua_settop(L, mod - 1);
    return ok;
}

static uint64_t active_vus(const struct engine *e)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < e->nexecs; i++)
        n += e->execs[i].running;
    return n;
}

/* Once a second: hand this second's counts to main. */
static void on_tick(struct timer *t)
{
    struct engine *e = (struct engine *)((char *)t - offsetof(struct engine, tick));
    live_tick(&e->ctx.live, e->run->points, e->sec++, active_vus(e));
    if (e->run->snapshots)
        points_snapshot(e->run->points, e->index, e->ctx.metrics);
    timer_start(e->ctx.loop, &e->tick, e->run->start_ns + (uint64_t)(e->sec + 1) * NS_PER_SEC);
}

static void run_load(struct engine *e)
{
    struct loop *l = e->ctx.loop;
    e->ctx.in_load = true;
    e->started = true;
    loop_on_wake(l, on_poke, e);
    for (unsigned i = 0; i < e->nexecs; i++)
        exec_arm(&e->execs[i], e->run->start_ns);
    e->tick.fire = on_tick;
    timer_start(l, &e->tick, e->run->start_ns + NS_PER_SEC);
    check_stop_level(e);
    while (e->execs_done < e->nexecs) {
        loop_run_once(l, NS_PER_SEC);
        check_stop_level(e);
    }
    timer_stop(l, &e->tick);
    live_tick(&e->ctx.live, e->run->points, e->sec, active_vus(e)); /* the last, partial second */
    e->ctx.in_load = false;
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    bool ok = prepare(e);
    if (!ok)
        atomic_fetch_add(&e->run->failed_threads, 1);
    pthread_barrier_wait(&e->run->barrier); /* everyone is ready (or failed) */
    pthread_barrier_wait(&e->run->barrier); /* main set start_ns, or decided to abort */
    if (ok && atomic_load(&e->run->failed_threads) == 0 && atomic_load(&e->run->stop_level) < 2)
        run_load(e);
    atomic_store(&e->done, true);
    return NULL;
}

bool engine_spawn(struct engine *e)
{
    return pthread_create(&e->tid, NULL, engine_main, e) == 0;
}

void engine_join(struct engine *e)
{
    pthread_join(e->tid, NULL);
}

void engine_free(struct engine *e)
{
    if (e->ctx.L)
        lua_close(e->ctx.L);
    e->ctx.L = NULL;
    http_free_all(&e->ctx);
    for (unsigned i = 0; i < e->nexecs; i++)
        exec_free(&e->execs[i]);
    tctx_free(&e->ctx);
}
