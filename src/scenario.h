#ifndef TIDE_SCENARIO_H
#define TIDE_SCENARIO_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

/* Finds SCENARIO: an existing path, else scenarios/NAME.lua, else NAME.lua in
 * each $TIDE_PATH directory, else a scenario built into the binary
 * ("builtin:NAME"). Returns false when nothing matches. */
int scenario_resolve(const char *arg, char *path, size_t len);

/* A scenario's source text, read once and loaded by every thread's state. */
struct scenario_source {
    char chunkname[4096];       /* "@path", as Lua names chunks */
    const char *text;
    size_t len;
    char *owned;                /* what scenario_source_free frees */
};

/* Reads the scenario at path (a file, or "builtin:NAME"); false with a
 * message in err when it cannot be read. */
bool scenario_read(const char *path, struct scenario_source *out, char *err, size_t errlen);
void scenario_source_free(struct scenario_source *src);
/* Runs the scenario's text and leaves its module table on the stack.
 * Returns 0, or an exit code (3: the script failed, 2: wrong shape) with a
 * message in err. */
int scenario_run_source(lua_State *L, const struct scenario_source *src, char *err, size_t errlen);

/* The first line where the scenario reads a `.target` field (vu.target,
 * ctx.target) outside comments and strings; 0 when it never does. */
int scenario_target_line(const struct scenario_source *src);

/* scenario_read, then scenario_run_source.
 * Returns 0, or an exit code (3: the script failed, 2: wrong shape) with a
 * message in err. */
int scenario_load(lua_State *L, const char *path, char *err, size_t errlen);

/* The Lua registry field holding the directory of the scenario a state
 * loaded (absent for a built-in one): where tide.data finds relative paths. */
#define SCENARIO_DIR_KEY "tide.scenario_dir"

/* xpcall-style message handler adding a traceback. */
int scenario_traceback(lua_State *L);

#endif
