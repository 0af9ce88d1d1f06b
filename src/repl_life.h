#ifndef TIDE_REPL_LIFE_H
#define TIDE_REPL_LIFE_H
#include <lua.h>

#include "ctx.h"
#include "scenario.h"
#include "exitcodes.h"
#include "signals.h"

#define REPL_MAX_ENV 256

/* `tide repl`'s command line. */
struct repl_cli {
    const char *scenario;       /* NULL: a prompt without one */
    const char *target;         /* --target, or NULL */
    const char *threads;        /* --threads, or NULL */
    char *env[REPL_MAX_ENV];    /* --env KEY=VALUE */
    int nenv;
};

/* A scenario's life at the prompt: the globals S, setup(), teardown() and
 * run{} (on the run API), plus the modules, target and env every prompt has. */
struct repl_life {
    lua_State *L;
    struct tctx *ctx;           /* the main state's: blocking calls, Ctrl-C */
    const struct repl_cli *cli;
    const struct signals *sig;
    char path[4096];            /* the scenario's, or "" */
    struct scenario_source source; /* its text (.text NULL without one) */
    int mod_ref;                /* its module table, or LUA_NOREF */
    char **env;                 /* environ, then --env */
    char target[2048];          /* --target, else the scenario's options.target */
    bool has_data;              /* setup() ran, and teardown() not since */
    int bg_ref;                 /* start{}'s load until waited for, or LUA_NOREF */
};

/* Loads the scenario (when the command line names one) into L and defines
 * the globals. NULL, with the exit code in *rc and the reason printed, when
 * the scenario cannot be loaded. */
struct repl_life *life_open(lua_State *L, struct tctx *ctx, const struct repl_cli *cli,
                            const struct signals *sig, int *rc);
/* Says so when data from setup() was not torn down; frees life. */
void life_close(struct repl_life *life);

/* repl_load.c: run{...} (the load, watched until it ends; pushes the
 * result), start{...} (the load in the background; pushes its handle). */
int life_run(lua_State *L);
int life_start(lua_State *L);
/* The handles' metatable; call once before run/start. */
void life_open_loads(lua_State *L);
/* Cuts a background load short (the prompt ends). */
void life_stop_background(lua_State *L, struct repl_life *life);

#endif
