#ifndef TIDE_REPORT_H
#define TIDE_REPORT_H
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct metrics;
struct options;
struct points;

/* The bridge to lua/tide/summary.lua: thresholds before and during the run,
 * the summary and the outputs after it. `scenario_ref` is a registry
 * reference to the scenario module (luaL_ref), so callers keep no stack layout. */

/* Where --out sends the results. */
struct outputs {
    const char *json, *csv, *html;
    char pg[2048];              /* DSN; "" for none */
    char run_id[128];
    bool quiet;
};

struct report_in {
    const char *run_id;
    double started, finished;   /* wall clock, seconds since the epoch */
    int status;                 /* 0, or what the run already knows: 3 script failed, 130 interrupted */
    const char *path;
    const struct options *opt;
    const struct points *points;
    struct metrics *results;    /* its trends' histograms move to Lua: read it no more */
    double elapsed;
    bool interrupted;
    const char *aborted;        /* the threshold that stopped the run, or NULL */
};

/* 0, or the exit code for thresholds that are malformed or name a metric
 * nothing in the scenario defines (`defined`: the main state's registry). */
int report_check_thresholds(lua_State *L, int scenario_ref, const struct metrics *defined);
/* Whether some threshold has abort_on_fail. */
bool report_can_abort(lua_State *L, int scenario_ref, const struct metrics *defined);
/* True (and the threshold in buf) when an aborting threshold fails on m. */
bool report_abort_check(lua_State *L, int scenario_ref, const struct metrics *m, double elapsed, char *buf, size_t len);
/* Prints the summary and writes the outputs. Returns the verdict (0, or 1
 * when a threshold failed) and sets *store to 4 when an output could not be
 * written where asked (0 otherwise). */
int report_finish(lua_State *L, int scenario_ref, const struct report_in *in, const struct outputs *out, int *store);
/* Pushes the results document (what --out json writes) without printing or
 * writing anything; returns the verdict (0, or 1 when a threshold failed),
 * or -1 with nothing pushed when the summary code failed (said on stderr). */
int report_document(lua_State *L, int scenario_ref, const struct report_in *in);

#endif
