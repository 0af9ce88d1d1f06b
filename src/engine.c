#include "engine.h"
#include "state.h"
#include "clock.h"
#include "http.h"
#include "metrics.h"
#include "redact.h"
#include "scenario.h"
#include "split.h"
#include "vu.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libcurl 7.88 walks a multi handle's connections on every request (to pick
 * one to reuse, and again on remove_handle): fewer users per multi, fewer
 * steps. Each multi costs ~45 KB of hash tables, so not fewer than this. */
#define VUS_PER_SHARD 50
/* With thousands of users in flight at once, libcurl's 16 KB receive buffer
 * per transfer dominates memory; 4 KB costs one more read per 4 KB of body. */
#define MANY_VUS 1000
#define SMALL_BUFFER 4096
/* Failed iterations whose traceback is printed; the rest are counted. */
#define TRACEBACKS_SHOWN 5

static void check_stop_level(struct engine *e)
{
    int level = atomic_load_explicit(&e->run->stop_level, memory_order_relaxed);
    for (unsigned i = 0; level && i < e->nexecs; i++)
        exec_stop(&e->execs[i], level);
}

/* constant-vus users changed while the load runs (runner_set_vus). */
static void check_vus_wanted(struct engine *e)
{
    struct share sh = split_thread(e->run->opt, e->run->threads, e->index);
    for (unsigned i = 0; i < e->nexecs; i++) {
        int want = atomic_load_explicit(&e->run->vus_wanted[i], memory_order_relaxed);
        if (want >= 0)
            exec_set_vus(&e->execs[i], split_part(want, &sh));
    }
}

static void on_poke(void *ud)
{
    check_vus_wanted(ud);
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
    state_push_env(L, e->run->env);
    e->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return true;
}

/* vu.env of a scenario with an env of its own: a table of --env (and the
 * process environment) with the scenario's pairs laid over it. */
static int scenario_env(struct engine *e, lua_State *L, const struct scen *sc)
{
    if (!sc->env_len)
        return e->env_ref;
    state_push_env(L, e->run->env);
    for (const char *p = sc->env; p < sc->env + sc->env_len; p += strlen(p) + 1) {
        const char *eq = strchr(p, '=');
        lua_pushlstring(L, p, (size_t)(eq - p));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ---- what executors are handed ---- */

static void on_exec_done(void *ud)
{
    ((struct engine *)ud)->execs_done++;
}

static void on_iteration_failed(void *ud, unsigned id, uint64_t iteration, const char *traceback)
{
    struct engine *e = ud;
    unsigned n = atomic_fetch_add(&e->run->tracebacks, 1);
    char clean[4096];
    if (n < TRACEBACKS_SHOWN) {
        redact_password(traceback, e->run->opt->target, clean, sizeof clean);
        sink_say(e->run->sink, SINK_ERROR, "VU %u, iteration %llu failed: %s", id,
                 (unsigned long long)iteration, clean);
    } else if (n == TRACEBACKS_SHOWN) {
        sink_say(e->run->sink, SINK_ERROR, "more iterations failed; they are counted in iteration_errors");
    }
}

/* The `vu` table a user's iterations get: id, target, env, scenario. */
static int make_vu_table(void *ud, unsigned id, const char *scenario)
{
    struct engine *e = ud;
    lua_State *L = e->ctx.L;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, e->run->opt->target);
    lua_setfield(L, -2, "target");
    int env_ref = e->env_ref;
    for (int s = 0; s < e->run->opt->nscen; s++)
        if (strcmp(e->run->opt->scen[s].name, scenario) == 0)
            env_ref = e->scen_env_ref[s];
    lua_rawgeti(L, LUA_REGISTRYINDEX, env_ref);
    lua_setfield(L, -2, "env");
    lua_pushstring(L, scenario);
    lua_setfield(L, -2, "scenario");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Every scenario's function must exist: module[exec]. */
static bool make_execs(struct engine *e, lua_State *L, int mod)
{
    const struct options *o = e->run->opt;
    struct share sh = split_thread(o, e->run->threads, e->index);
    for (int s = 0; s < o->nscen; s++) {
        if (lua_getfield(L, mod, o->scen[s].exec) != LUA_TFUNCTION) {
            snprintf(e->error, sizeof e->error, "scenario '%s' calls module.%s, which is not a function",
                     o->scen[s].name, o->scen[s].exec);
            return false;
        }
        e->scen_env_ref[s] = scenario_env(e, L, &o->scen[s]);
        struct exec_env env = {
            .ctx = &e->ctx, .scen = &o->scen[s], .shared_next = &e->run->shared_next[s],
            .share = sh,
            .first_id = split_first_id(o, (unsigned)s, &sh),
            .scen_first_id = split_scen_first_id(o, (unsigned)s),
            .cap = split_part(scen_max_vus(&o->scen[s]), &sh),
            .fn_ref = luaL_ref(L, LUA_REGISTRYINDEX), .data_ref = e->data_ref,
            .ud = e, .done = on_exec_done, .failed = on_iteration_failed, .vu_table = make_vu_table,
        };
        if (!exec_init(&e->execs[e->nexecs], &env))
            return fail(e, "out of memory");
        e->nexecs++;
    }
    return true;
}

static long long thread_vus(const struct engine *e)
{
    long long vus = 0;
    struct share sh = split_thread(e->run->opt, e->run->threads, e->index);
    for (int s = 0; s < e->run->opt->nscen; s++)
        vus += split_part(scen_max_vus(&e->run->opt->scen[s]), &sh);
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
    e->ctx.http = e->run->opt->http;
    e->ctx.stop_level = &e->run->stop_level;
    e->ctx.preempt = vu_hook;
    e->ctx.mem_limit = e->run->opt->lua_memory;
    if (thread_vus(e) >= MANY_VUS)
        e->ctx.buffer_size = SMALL_BUFFER;
    lua_gc(L, LUA_GCGEN, 0, 0); /* many small short-lived objects: responses, tables */
    e->ctx.once = e->run->once;
    e->ctx.data = e->run->data;
    e->ctx.data_borrowed = true;
    if (scenario_run_source(L, e->run->source, e->error, sizeof e->error) != 0)
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

static void drive_load(struct engine *e)
{
    struct loop *l = e->ctx.loop;
    e->ctx.in_load = true;
    e->started = true;
    loop_refresh_now(l); /* the gate may have held the thread a while (--start-at) */
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

/* Thread side: says it is ready; true when the gate opens for a start. */
static bool gate_pass(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->ready++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    bool go = !g->abort;
    pthread_mutex_unlock(&g->lock);
    return go;
}

bool gate_wait_ready(struct gate *g, unsigned spawned)
{
    pthread_mutex_lock(&g->lock);
    while (g->ready < spawned)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return true;
}

void gate_open(struct gate *g, bool abort)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    g->abort = abort;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    bool ok = prepare(e);
    if (!ok)
        atomic_fetch_add(&e->run->failed_threads, 1);
    if (gate_pass(&e->run->gate) && ok && atomic_load(&e->run->stop_level) < 2)
        drive_load(e);
    atomic_store(&e->done, true);
    uint64_t one = 1;
    if (write(e->run->done_fd, &one, sizeof one) < 0) {
        /* an eventfd write fails only when it overflows: the waiter polls `done` too */
    }
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
    for (unsigned i = 0; i < e->nexecs; i++) {
        for (unsigned v = 0; v < e->execs[i].cap; v++)
            agent_free(&e->ctx, &e->execs[i].vus[v].agent);
        exec_free(&e->execs[i]);
    }
    tctx_free(&e->ctx);
}
