#ifndef TIDE_REPL_LOAD_H
#define TIDE_REPL_LOAD_H
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>

#include "options.h"
#include "repl_life.h"
#include "runner.h"
#include "scenario.h"

#define LOAD_MT "tide.repl.load"

/* One load, as a userdata so that an error raised while it is planned
 * frees what it holds (__gc); start{} hands it out as the handle. User
 * values: 1 the inline source's text, 2 data as JSON, 3 { options = ... }
 * for the thresholds, 4 the result once the load ended. */
struct load_job {
    struct repl_life *life;
    struct options opt;
    struct scenario_source inline_src;
    const struct scenario_source *src;
    const char *path;
    int mod_ref;                /* user value 3, referenced for report.c */
    bool snapshots;             /* threads hand over metrics (abort_on_fail) */
    struct runner *runner;
    char run_id[128];
};

/* Plans and starts the load of run{}/start{} (argument 1: its table) and
 * leaves the job, a LOAD_MT userdata, on the stack; raises on bad input,
 * naming `what`. snapshots_allowed: abort_on_fail thresholds are watched. */
struct load_job *load_begin(lua_State *L, struct repl_life *life, const char *what, bool snapshots_allowed);
/* Watches the job at idx to its end (progress line, Ctrl-C) and pushes its
 * result, made once. */
void load_end(lua_State *L, int idx);
/* The background load (start{}) while it runs and was not waited for. */
struct load_job *load_background(lua_State *L, struct repl_life *life);
/* Makes the jobs' metatable, with start{}'s handle methods. */
void load_open(lua_State *L, const luaL_Reg *methods, lua_CFunction tostring);

#endif
