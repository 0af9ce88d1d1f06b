#ifndef TIDE_REPORT_H
#define TIDE_REPORT_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

struct metrics;
struct options;
struct points;

/* The bridge to lua/tide/summary.lua: thresholds before and during the run,
 * the summary and the outputs after it. `mod` is the scenario module's index. */

struct report_in {
    const char *path;
    const struct options *opt;
    const struct points *points;
    const struct metrics *results;
    double elapsed;
    bool interrupted;
    const char *aborted;        /* the threshold that stopped the run, or NULL */
};

/* 0, or the exit code for thresholds that are malformed or name a metric
 * nothing in the scenario defines (`defined`: the main state's registry). */
int report_check_thresholds(lua_State *L, int mod, const struct metrics *defined);
/* Whether some threshold has abort_on_fail. */
bool report_can_abort(lua_State *L, int mod, const struct metrics *defined);
/* True (and the threshold in buf) when an aborting threshold fails on m. */
bool report_abort_check(lua_State *L, int mod, const struct metrics *m, double elapsed, char *buf, size_t len);
/* Prints the summary and writes the outputs; returns the exit code they imply. */
int report_finish(lua_State *L, int mod, const struct report_in *in, bool quiet, const char *json_out);

#endif
