/* run{} (and start{}) at the prompt: a load on the run API with the
 * scenario's functions (or an inline one), the kept `data` and options
 * over the scenario's, watched to its end into a result. */
#include "repl_load.h"
#include "load.h"
#include "metrics.h"
#include "once.h"
#include "options.h"
#include "report.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int job_gc(lua_State *L)
{
    struct load_job *job = luaL_checkudata(L, 1, LOAD_MT);
    runner_free(job->runner);
    job->runner = NULL;
    if (job->mod_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, job->mod_ref);
    job->mod_ref = LUA_NOREF;
    return 0;
}

static struct load_job *new_job(lua_State *L)
{
    struct load_job *job = lua_newuserdatauv(L, sizeof *job, 4);
    memset(job, 0, sizeof *job);
    job->mod_ref = LUA_NOREF;
    luaL_setmetatable(L, LOAD_MT);
    return job;
}

/* require("tide.repl")[fn] on the stack. */
static void push_repl_fn(lua_State *L, const char *fn)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.repl");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
}

/* fn = function(vu, data) ... end: the synthetic scenario it travels in. */
static void plan_inline(lua_State *L, struct repl_life *life, struct load_job *job, int args, int j)
{
    push_repl_fn(L, "inline_source");
    lua_getfield(L, args, "fn");
    life->target[0] ? (void)lua_pushstring(L, life->target) : lua_pushnil(L);
    lua_newtable(L);
    for (int i = 0; i < life->cli->nenv; i++) {
        const char *kv = life->cli->env[i], *eq = strchr(kv, '=');
        lua_pushlstring(L, kv, (size_t)(eq - kv));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    lua_call(L, 3, 1);
    size_t len;
    job->inline_src.text = lua_tolstring(L, -1, &len);
    job->inline_src.len = len;
    snprintf(job->inline_src.chunkname, sizeof job->inline_src.chunkname, "=(repl)");
    lua_setiuservalue(L, j, 1);
    job->src = &job->inline_src;
    job->path = "(repl)";
}

/* The scenario's options under the table's; --target and --threads where
 * the table does not say. Leaves { options = merged } at the top. */
static void merge_options(lua_State *L, struct repl_life *life, int args)
{
    push_repl_fn(L, "merge_options");
    if (life->mod_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, life->mod_ref);
        lua_getfield(L, -1, "options");
        lua_remove(L, -2);
    } else {
        lua_pushnil(L);
    }
    lua_pushvalue(L, args);
    lua_call(L, 2, 1);
    int merged = lua_gettop(L);
    if (life->cli->target && lua_getfield(L, args, "target") == LUA_TNIL) {
        lua_pushstring(L, life->cli->target);
        lua_setfield(L, merged, "target");
    }
    if (life->cli->threads && lua_getfield(L, args, "threads") == LUA_TNIL) {
        lua_stringtonumber(L, life->cli->threads);
        lua_setfield(L, merged, "threads");
    }
    lua_settop(L, merged);
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "options");
}

static void read_options(lua_State *L, struct repl_life *life, struct load_job *job, int j)
{
    char err[OPTIONS_ERR];
    int mod = lua_gettop(L);
    lua_getfield(L, mod, "options");
    options_init(&job->opt);
    if (!options_from_lua(L, lua_gettop(L), &job->opt, err) ||
        !options_finish(&job->opt, (unsigned)sysconf(_SC_NPROCESSORS_ONLN), err))
        luaL_error(L, "run{}: %s", err);
    lua_pop(L, 1);
    once_limit_names(life->ctx->once, job->opt.max_names);
    lua_pushvalue(L, mod);
    job->mod_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setiuservalue(L, j, 3);
    int line = job->opt.target[0] || job->src != &life->source ? 0 : scenario_target_line(job->src);
    if (line)
        luaL_error(L, "run{}: %s:%d reads .target, but no target was given: start the prompt with "
                      "--target URL, or give run{ target = URL }", job->path, line);
}

/* Every exec names a function of the scenario (inline: only `run`). */
static void check_exec(lua_State *L, struct repl_life *life, struct load_job *job)
{
    for (int i = 0; i < job->opt.nscen; i++) {
        const char *exec = job->opt.scen[i].exec;
        int t = LUA_TNIL;
        if (job->src == &life->source) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, life->mod_ref);
            t = lua_getfield(L, -1, exec);
            lua_pop(L, 2);
        } else if (strcmp(exec, "run") == 0) {
            t = LUA_TFUNCTION;
        }
        if (t != LUA_TFUNCTION)
            luaL_error(L, "run{}: exec: %s has no function '%s'", job->path, exec);
    }
    if (report_check_thresholds(L, job->mod_ref, life->ctx->metrics))
        luaL_error(L, "run{}: the thresholds are wrong (said above)");
    char fds[256];
    if (!load_check_fds(&job->opt, fds, sizeof fds))
        luaL_error(L, "run{}: %s", fds);
}

/* Global `data` as JSON for the engine threads (user value 2), or nothing. */
static void data_json(lua_State *L, int j)
{
    if (lua_getglobal(L, "data") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        luaL_error(L, "run{}: data cannot be copied to the engine threads as JSON: %s", lua_tostring(L, -1));
    lua_setiuservalue(L, j, 2);
    lua_pop(L, 2);
}

/* Plans the load of run{args}; raises on bad input. Leaves the job on the stack. */
static struct load_job *plan(lua_State *L, struct repl_life *life, int args)
{
    struct load_job *job = new_job(L);
    job->life = life;
    int j = lua_gettop(L);
    if (lua_getfield(L, args, "fn") != LUA_TNIL) {
        plan_inline(L, life, job, args, j);
    } else if (life->mod_ref != LUA_NOREF) {
        job->src = &life->source;
        job->path = life->path;
    } else {
        luaL_error(L, "run{}: no scenario: give fn = function(vu, data) ... end, or start the prompt "
                      "with tide repl SCENARIO");
    }
    lua_settop(L, j);
    merge_options(L, life, args);
    read_options(L, life, job, j);
    lua_settop(L, j);
    check_exec(L, life, job);
    data_json(L, j);
    load_run_id(job->run_id, sizeof job->run_id);
    return job;
}

static void to_stderr(void *ud, enum sink_kind kind, const char *text)
{
    (void)ud, (void)kind;
    fprintf(stderr, "tide: %s\n", text);
}

static const struct sink messages = {.message = to_stderr};

/* The finished load as a result object (tide.result) on the stack. */
static void push_result(lua_State *L, struct load_job *job, const struct load_watch *w)
{
    struct metrics *results = metrics_new();
    struct run_result res = {0};
    bool ok = runner_finish(job->runner, results, &res);
    int status = w->interrupted ? EXIT_INTERRUPTED : ok ? 0 : EXIT_SCRIPT;
    struct report_in in = {.run_id = job->run_id, .started = res.started, .finished = res.finished,
                           .status = status, .path = job->path, .opt = &job->opt,
                           .points = runner_points(job->runner), .results = results,
                           .elapsed = res.elapsed, .interrupted = w->interrupted > 0,
                           .aborted = w->aborted[0] ? w->aborted : NULL};
    int verdict = report_document(L, job->mod_ref, &in);
    metrics_free(results);
    runner_free(job->runner);
    job->runner = NULL;
    if (verdict < 0)
        luaL_error(L, "run{}: the results could not be put together (said above)");
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.result");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 1);
}

struct load_job *load_background(lua_State *L, struct repl_life *life)
{
    if (life->bg_ref == LUA_NOREF)
        return NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, life->bg_ref);
    struct load_job *job = lua_touserdata(L, -1);
    lua_pop(L, 1); /* the registry keeps it */
    return job && job->runner ? job : NULL;
}

struct load_job *load_begin(lua_State *L, struct repl_life *life, const char *what, bool snapshots_allowed)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (load_background(L, life))
        luaL_error(L, "%s: a background load is running: h:stop() or h:wait() first", what);
    struct load_job *job = plan(L, life, 1);
    bool snapshots = snapshots_allowed && report_can_abort(L, job->mod_ref, life->ctx->metrics);
    job->snapshots = snapshots;
    lua_getiuservalue(L, -1, 2);
    size_t json_len = 0;
    const char *json = lua_tolstring(L, -1, &json_len);
    lua_pop(L, 1); /* the job's user value keeps it */
    struct run_plan p = {.opt = &job->opt, .source = job->src, .setup_json = json, .setup_json_len = json_len,
                         .env = life->env, .once = life->ctx->once, .snapshots = snapshots};
    char err[4096];
    if (!(job->runner = runner_start(&p, &messages, err, sizeof err)))
        luaL_error(L, "%s: %s", what, err);
    return job;
}

void load_end(lua_State *L, int idx)
{
    struct load_job *job = lua_touserdata(L, idx);
    struct repl_life *life = job->life;
    if (!job->runner) {
        lua_getiuservalue(L, idx, 4);
        return;
    }
    struct load_watch w = {.L = L, .scenario_ref = job->mod_ref, .opt = &job->opt, .sig = life->sig,
                           .presses_before = life->sig->interrupts(), .progress_every = 10};
    bool was = life->ctx->in_script;
    life->ctx->in_script = false; /* the watch's Lua calls are tide's, not the script's */
    load_watch(&w, job->runner, job->snapshots);
    life->ctx->in_script = was;
    life->ctx->interrupts_before = life->sig->interrupts(); /* the load dealt with its Ctrl-Cs */
    push_result(L, job, &w);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 4);
}

int life_run(lua_State *L)
{
    load_begin(L, lua_touserdata(L, lua_upvalueindex(1)), "run{}", true);
    load_end(L, lua_gettop(L));
    return 1;
}

void load_open(lua_State *L, const luaL_Reg *methods, lua_CFunction tostring)
{
    luaL_newmetatable(L, LOAD_MT);
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
