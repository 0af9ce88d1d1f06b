/* Hands numbers to lua/tide/summary.lua and asks it about thresholds. */
#include "report.h"
#include "hist.h"
#include "hist_lua.h"
#include "live.h"
#include "metrics.h"
#include "options.h"
#include "exitcodes.h"
#include "scenario.h"

#include <lauxlib.h>
#include <stdio.h>
#include <unistd.h>

static void set_number(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* { {t, reqs, failed, iterations, errors, dropped, vus, p50, p95, p99, hist}, ... }:
 * one per second; hist is the second's http_req_duration, packed, so that
 * documents merge their seconds exactly. */
static void push_points(lua_State *L, const struct points *pts)
{
    static const char *const names[SECOND_PERCENTILES] = {"p50", "p95", "p99"};
    lua_createtable(L, (int)pts->nsecs, 0);
    for (size_t i = 0; i < pts->nsecs; i++) {
        const struct second *p = &pts->secs[i];
        lua_createtable(L, 0, 10);
        set_number(L, "t", p->sec);
        set_number(L, "reqs", (double)p->reqs);
        set_number(L, "failed", (double)p->failed);
        set_number(L, "iterations", (double)p->iterations);
        set_number(L, "errors", (double)p->errors);
        set_number(L, "dropped", (double)p->dropped);
        set_number(L, "vus", (double)p->vus);
        struct hist *h = second_hist(p);
        for (unsigned k = 0; k < SECOND_PERCENTILES; k++)
            set_number(L, names[k], hist_percentile(h, second_percentiles[k]) / 1e3);
        hist_lua_push_packed(L, h); /* raises only on Lua's out of memory: then h leaks, once */
        hist_free(h);
        lua_setfield(L, -2, "hist");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* { {name, executor, vus, iterations, duration, rate, ...}, ... } */
static void push_scenarios(lua_State *L, const struct options *o)
{
    lua_createtable(L, o->nscen, 0);
    for (int i = 0; i < o->nscen; i++) {
        const struct scen *sc = &o->scen[i];
        lua_createtable(L, 0, 8);
        lua_pushstring(L, sc->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, executor_name(sc->executor));
        lua_setfield(L, -2, "executor");
        lua_pushinteger(L, scen_max_vus(sc));
        lua_setfield(L, -2, "vus");
        lua_pushinteger(L, sc->iterations);
        lua_setfield(L, -2, "iterations");
        set_number(L, "duration", sc->duration);
        set_number(L, "rate", sc->rate / sc->time_unit);
        set_number(L, "start_time", sc->start_time);
        lua_pushinteger(L, sc->nstages);
        lua_setfield(L, -2, "stages");
        lua_rawseti(L, -2, i + 1);
    }
}

/* options.thresholds of the scenario module (a registry ref), or nil. */
static void push_thresholds(lua_State *L, int scenario_ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, scenario_ref);
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "options");
    else
        lua_pushnil(L);
    if (lua_istable(L, -1))
        lua_getfield(L, -1, "thresholds");
    else
        lua_pushnil(L);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* Calls tide.summary[fn] on the nargs values on top; leaves nres results. */
static bool call_summary(lua_State *L, const char *fn, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, scenario_traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.summary");
    if (lua_pcall(L, 1, 1, -3) == LUA_OK) {
        lua_getfield(L, -1, fn);
        lua_remove(L, -2);
        lua_rotate(L, base + 1, 2); /* handler and function below the arguments */
        if (lua_pcall(L, nargs, nres, base + 1) == LUA_OK) {
            lua_remove(L, base + 1);
            return true;
        }
    }
    fprintf(stderr, "tide: %s\n", lua_tostring(L, -1));
    lua_settop(L, base);
    return false;
}

int report_check_thresholds(lua_State *L, int scenario_ref, const struct metrics *defined)
{
    push_thresholds(L, scenario_ref);
    metrics_push(L, defined);
    if (!call_summary(L, "validate", 2, 1))
        return EXIT_SCRIPT;
    int rc = 0;
    if (!lua_isnil(L, -1)) {
        fprintf(stderr, "tide run: %s\n", lua_tostring(L, -1));
        rc = EXIT_USAGE;
    }
    lua_pop(L, 1);
    return rc;
}

bool report_can_abort(lua_State *L, int scenario_ref, const struct metrics *defined)
{
    push_thresholds(L, scenario_ref);
    metrics_push(L, defined);
    if (!call_summary(L, "can_abort", 2, 1))
        return false;
    bool yes = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return yes;
}

bool report_abort_check(lua_State *L, int scenario_ref, const struct metrics *m, double elapsed, char *buf, size_t len)
{
    push_thresholds(L, scenario_ref);
    metrics_push(L, m);
    lua_pushnumber(L, elapsed);
    if (!call_summary(L, "abort_check", 3, 1))
        return false;
    bool failed = lua_isstring(L, -1);
    if (failed)
        snprintf(buf, len, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return failed;
}

static void push_report(lua_State *L, int scenario_ref, const struct report_in *in)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    lua_createtable(L, 0, 16);
    lua_pushstring(L, in->run_id);
    lua_setfield(L, -2, "run_id");
    set_number(L, "started", in->started);
    set_number(L, "finished", in->finished);
    lua_pushinteger(L, in->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, host);
    lua_setfield(L, -2, "host");
    metrics_hand_over(L, in->results);
    lua_setfield(L, -2, "metrics");
    set_number(L, "elapsed", in->elapsed);
    lua_pushstring(L, in->path);
    lua_setfield(L, -2, "scenario");
    push_scenarios(L, in->opt);
    lua_setfield(L, -2, "scenarios");
    push_points(L, in->points);
    lua_setfield(L, -2, "points");
    lua_pushinteger(L, in->opt->threads);
    lua_setfield(L, -2, "threads");
    if (in->opt->segments) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, (lua_Integer)in->opt->segment + 1);
        lua_setfield(L, -2, "index");
        lua_pushinteger(L, in->opt->segments);
        lua_setfield(L, -2, "count");
        lua_setfield(L, -2, "segment");
    }
    lua_pushstring(L, in->opt->target);
    lua_setfield(L, -2, "target");
    lua_pushboolean(L, in->interrupted);
    lua_setfield(L, -2, "interrupted");
    if (in->aborted) {
        lua_pushstring(L, in->aborted);
        lua_setfield(L, -2, "aborted");
    }
    lua_pushliteral(L, TIDE_VERSION);
    lua_setfield(L, -2, "version");
    push_thresholds(L, scenario_ref);
    lua_setfield(L, -2, "thresholds");
}

static void set_string(lua_State *L, const char *k, const char *v)
{
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

int report_finish(lua_State *L, int scenario_ref, const struct report_in *in, const struct outputs *out, int *store)
{
    push_report(L, scenario_ref, in);
    lua_createtable(L, 0, 6);
    lua_pushboolean(L, out->quiet);
    lua_setfield(L, -2, "quiet");
    set_string(L, "json", out->json);
    set_string(L, "csv", out->csv);
    set_string(L, "html", out->html);
    set_string(L, "pg", out->pg);
    *store = 0;
    if (!call_summary(L, "finish", 2, 2)) {
        *store = EXIT_STORE;
        return EXIT_FAILED;
    }
    int verdict = (int)lua_tointeger(L, -2);
    *store = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return verdict;
}

int report_document(lua_State *L, int scenario_ref, const struct report_in *in)
{
    push_report(L, scenario_ref, in);
    if (!call_summary(L, "document", 1, 2))
        return -1;
    int verdict = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return verdict;
}
