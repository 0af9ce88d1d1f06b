/* start{} at the prompt: the load in the background, and its handle: live
 * figures, scale, stop, wait. */
#include "repl_load.h"
#include "hist.h"
#include "live.h"

#include <stdio.h>

int life_start(lua_State *L)
{
    struct repl_life *life = lua_touserdata(L, lua_upvalueindex(1));
    load_begin(L, life, "start{}", false);
    lua_pushvalue(L, -1);
    if (life->bg_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, life->bg_ref);
    life->bg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

static struct load_job *check_job(lua_State *L)
{
    return luaL_checkudata(L, 1, LOAD_MT);
}

/* The seconds every thread handed over: the latest one's users. */
static unsigned long long active_vus(const struct points *pts)
{
    for (size_t i = pts->nsecs; i > 0; i--)
        if (pts->secs[i - 1].reported >= pts->threads)
            return (unsigned long long)pts->secs[i - 1].vus;
    return 0;
}

/* h: the live figures so far. */
static int job_tostring(lua_State *L)
{
    struct load_job *job = check_job(L);
    if (!job->runner)
        return lua_pushliteral(L, "<load ended: h:wait() gives its result>"), 1;
    bool over = runner_wait(job->runner, 0);
    const struct points *pts = runner_points(job->runner);
    double elapsed = runner_elapsed(job->runner);
    char text[512];
    snprintf(text, sizeof text, "<load %s %.1fs: %llu requests (%.1f/s), %llu failed, %llu iterations, "
                                "p50 %.2f ms, p95 %.2f ms, %llu VUs>",
             over ? "ended after" : "running", elapsed, (unsigned long long)pts->reqs,
             elapsed > 0 ? (double)pts->reqs / elapsed : 0.0, (unsigned long long)pts->failed,
             (unsigned long long)pts->iterations, hist_percentile(pts->total, 50) / 1e3,
             hist_percentile(pts->total, 95) / 1e3, active_vus(pts));
    lua_pushstring(L, text);
    return 1;
}

/* h:scale(n [, scenario]): a constant-vus load loops with n of its users. */
static int job_scale(lua_State *L)
{
    struct load_job *job = check_job(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *scen = luaL_optstring(L, 3, job->opt.scen[0].name);
    char err[512];
    if (!job->runner)
        return luaL_error(L, "h:scale: the load has ended");
    if (!runner_set_vus(job->runner, scen, (long long)n, err, sizeof err))
        return luaL_error(L, "h:scale: %s", err);
    return 0;
}

static void forget_background(lua_State *L, struct load_job *job)
{
    struct repl_life *life = job->life;
    if (life->bg_ref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, life->bg_ref);
    bool same = lua_touserdata(L, -1) == job;
    lua_pop(L, 1);
    if (same) {
        luaL_unref(L, LUA_REGISTRYINDEX, life->bg_ref);
        life->bg_ref = LUA_NOREF;
    }
}

/* h:wait(): the result, once the load ends (Ctrl-C stops it as for run{}). */
static int job_wait(lua_State *L)
{
    struct load_job *job = check_job(L);
    load_end(L, 1);
    forget_background(L, job);
    return 1;
}

/* h:stop(): no new iterations, running ones get graceful_stop; the result. */
static int job_stop(lua_State *L)
{
    struct load_job *job = check_job(L);
    if (job->runner)
        runner_stop(job->runner, 1);
    return job_wait(L);
}

void life_open_loads(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"scale", job_scale}, {"stop", job_stop}, {"wait", job_wait}, {NULL, NULL},
    };
    load_open(L, methods, job_tostring);
}

void life_stop_background(lua_State *L, struct repl_life *life)
{
    struct load_job *job = load_background(L, life);
    if (!job)
        return;
    fprintf(stderr, "tide: the background load is cut short: the prompt ends\n");
    runner_free(job->runner);
    job->runner = NULL;
}
