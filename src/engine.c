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

/* libcurl 7.88 slows down as one multi handle holds more connections:
 * a few hundred users per multi keeps each call cheap. */
#define VUS_PER_SHARD 250
#define TRACEBACKS_SHOWN 5

static struct engine *engine_of_timer(struct timer *t, size_t offset)
{
    return (struct engine *)((char *)t - offset);
}

static void cut_all(struct engine *e)
{
    for (unsigned i = 0; i < e->nvus; i++)
        vu_cut(&e->vus[i]);
}

static void on_grace_end(struct timer *t)
{
    cut_all(engine_of_timer(t, offsetof(struct engine, grace_timer)));
}

/* No new iterations; running ones get graceful_stop to finish. */
static void begin_stop(struct engine *e)
{
    if (e->stopping)
        return;
    e->stopping = true;
    uint64_t grace = seconds_to_ns(e->run->opt->graceful_stop);
    timer_start(e->ctx.loop, &e->grace_timer, loop_refresh_now(e->ctx.loop) + grace);
}

static void on_end(struct timer *t)
{
    begin_stop(engine_of_timer(t, offsetof(struct engine, end_timer)));
}

static void check_stop_level(struct engine *e)
{
    int level = atomic_load_explicit(&e->run->stop_level, memory_order_relaxed);
    if (level >= 1)
        begin_stop(e);
    if (level >= 2)
        cut_all(e);
}

static void on_poke(void *ud)
{
    check_stop_level(ud);
}

void engine_poke(struct engine *e)
{
    loop_wake(loop_wake_fd(e->ctx.loop));
}

static int untagged(struct engine *e)
{
    return metrics_tagset(e->ctx.metrics, "", 0);
}

bool engine_take_iteration(struct engine *e, struct vu *vu)
{
    if (e->stopping)
        return false;
    const struct options *o = e->run->opt;
    switch (o->executor) {
    case EXEC_PER_VU_ITERATIONS:
        return vu->iteration < (uint64_t)o->iterations;
    case EXEC_SHARED_ITERATIONS:
        return atomic_fetch_add_explicit(&e->run->shared_next, 1, memory_order_relaxed) <
               (uint64_t)o->iterations;
    case EXEC_CONSTANT_VUS:
        return loop_now(e->ctx.loop) < e->run->start_ns + seconds_to_ns(o->duration);
    default:
        return false;
    }
}

void engine_iteration_done(struct engine *e, struct vu *vu, bool ok, uint64_t end_ns)
{
    int tag = untagged(e);
    metrics_add(e->ctx.metrics, M_ITERATIONS, tag, 1);
    metrics_add(e->ctx.metrics, M_ITERATION_DURATION, tag, (double)(end_ns - vu->iter_start_ns) / 1e3);
    if (!ok)
        metrics_add(e->ctx.metrics, M_ITERATION_ERRORS, tag, 1);
}

void engine_vu_finished(struct engine *e, struct vu *vu, bool interrupted)
{
    (void)vu;
    e->live--;
    metrics_add(e->ctx.metrics, M_VUS, untagged(e), e->live);
    if (interrupted)
        metrics_add(e->ctx.metrics, M_ITERATIONS_INTERRUPTED, untagged(e), 1);
}

void engine_report_error(struct engine *e, struct vu *vu, const char *traceback)
{
    unsigned n = atomic_fetch_add(&e->run->tracebacks, 1);
    if (n < TRACEBACKS_SHOWN)
        fprintf(stderr, "tide: VU %u, iteration %llu failed: %s\n", vu->id,
                (unsigned long long)vu->iteration, traceback);
    else if (n == TRACEBACKS_SHOWN)
        fprintf(stderr, "tide: more iterations failed; they are counted in iteration_errors\n");
}

/* ---- preparing the thread's state ---- */

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
    return true;
}

static bool make_vus(struct engine *e, lua_State *L)
{
    if (!(e->vus = calloc(e->nvus, sizeof *e->vus)))
        return fail(e, "out of memory");
    push_env(L, e->run->env);
    int env = lua_gettop(L);
    for (unsigned i = 0; i < e->nvus; i++) {
        struct vu *vu = &e->vus[i];
        if (!vu_init(vu, e, &e->ctx, e->first_vu + i, e->ctx.shards[i / VUS_PER_SHARD]))
            return fail(e, "out of memory");
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, vu->id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, e->run->opt->target);
        lua_setfield(L, -2, "target");
        lua_pushvalue(L, env);
        lua_setfield(L, -2, "env");
        vu->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    return true;
}

static bool prepare(struct engine *e)
{
    lua_State *L = luaL_newstate();
    unsigned nshards = (e->nvus + VUS_PER_SHARD - 1) / VUS_PER_SHARD;
    if (!L || !tctx_init(&e->ctx, L, nshards ? nshards : 1)) {
        if (L)
            lua_close(L);
        e->ctx.L = NULL;
        return fail(e, "out of memory");
    }
    e->ctx.max_body = e->run->opt->max_body;
    tctx_open_libs(L, &e->ctx);
    if (scenario_load(L, e->run->scenario_path, e->error, sizeof e->error) != 0)
        return false;
    lua_getfield(L, -1, "run");
    e->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return load_data(e, L) && make_vus(e, L);
}

static void run_load(struct engine *e)
{
    struct loop *l = e->ctx.loop;
    e->ctx.in_load = true;
    e->started = true;
    e->live = e->nvus;
    e->end_timer.fire = on_end;
    e->grace_timer.fire = on_grace_end;
    loop_on_wake(l, on_poke, e);
    loop_refresh_now(l);
    timer_start(l, &e->end_timer, e->run->start_ns + seconds_to_ns(e->run->opt->duration));
    metrics_add(e->ctx.metrics, M_VUS, untagged(e), e->nvus);
    metrics_add(e->ctx.metrics, M_VUS_MAX, untagged(e), e->nvus);
    check_stop_level(e);
    for (unsigned i = 0; i < e->nvus && !e->stopping; i++)
        vu_start(&e->vus[i]);
    for (unsigned i = 0; i < e->nvus && e->stopping; i++)
        if (!e->vus[i].finished && !e->vus[i].waiting)
            vu_start(&e->vus[i]); /* never started: finishes at once */
    while (e->live > 0) {
        loop_run_once(l, NS_PER_SEC);
        check_stop_level(e);
    }
    timer_stop(l, &e->end_timer);
    timer_stop(l, &e->grace_timer);
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
    for (unsigned i = 0; e->vus && i < e->nvus; i++)
        agent_free(&e->ctx, &e->vus[i].agent);
    free(e->vus);
    e->vus = NULL;
    tctx_free(&e->ctx);
}
