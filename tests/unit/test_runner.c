/* Unit tests for the run API (src/runner.c): a load planned from a scenario
 * given as source text, started, watched, changed and stopped while it runs,
 * then finished into merged metrics. The scenarios sleep instead of making
 * requests, so no server is needed; the clock is real, the waits short. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"
#include "once.h"
#include "options.h"
#include "runner.h"
#include "state.h"

struct said {
    int errors;
    char last[512];
};

static void collect(void *ud, enum sink_kind kind, const char *text)
{
    struct said *s = ud;
    s->errors += kind == SINK_ERROR;
    snprintf(s->last, sizeof s->last, "%s", text);
}

/* The scenario's options, read the way `tide run` reads them. */
static bool plan_options(const char *src, struct options *o, unsigned threads)
{
    char err[OPTIONS_ERR];
    struct tctx ctx;
    lua_State *L = tctx_open(&ctx, 1);
    bool ok = L && luaL_dostring(L, src) == LUA_OK && lua_istable(L, -1);
    options_init(o);
    if (ok) {
        lua_getfield(L, -1, "options");
        ok = options_from_lua(L, -1, o, err);
    }
    tctx_close(&ctx);
    if (ok)
        o->threads = threads;
    return ok && options_finish(o, threads, err);
}

/* A counter's total over its tag sets, read as the report reads it. */
static double count_of(const struct metrics *m, const char *name)
{
    lua_State *L = luaL_newstate();
    metrics_push(L, m);
    double total = 0;
    if (lua_getfield(L, -1, name) == LUA_TTABLE && lua_getfield(L, -1, "series") == LUA_TTABLE) {
        for (lua_Integer i = 1; lua_geti(L, -1, i) == LUA_TTABLE; i++) {
            lua_getfield(L, -1, "value");
            total += lua_tonumber(L, -1);
            lua_pop(L, 2);
        }
    }
    lua_close(L);
    return total;
}

struct load {
    struct options opt;
    struct scenario_source src;
    struct once *once;
    struct said said;
    struct sink sink;
    struct runner *r;
};

static bool start(struct load *l, const char *text, unsigned threads)
{
    memset(l, 0, sizeof *l);
    if (!CHECK(plan_options(text, &l->opt, threads)))
        return false;
    snprintf(l->src.chunkname, sizeof l->src.chunkname, "@test_runner");
    l->src.text = text;
    l->src.len = strlen(text);
    l->once = once_new();
    l->sink = (struct sink){.message = collect, .ud = &l->said};
    static char *const env[] = {"A=1", NULL};
    struct run_plan plan = {.opt = &l->opt, .source = &l->src, .env = env, .once = l->once};
    char err[512];
    l->r = runner_start(&plan, &l->sink, err, sizeof err);
    if (!CHECK(l->r != NULL))
        fprintf(stderr, "  runner_start: %s\n", err);
    return l->r != NULL;
}

static void finish(struct load *l, struct metrics *into)
{
    struct run_result res;
    CHECK(runner_finish(l->r, into, &res));
    CHECK(res.elapsed > 0 && res.finished >= res.started);
    runner_free(l->r);
    once_free(l->once);
}

static bool wait_seconds(struct runner *r, double s)
{
    double until = runner_elapsed(r) + s;
    while (runner_elapsed(r) < until)
        if (runner_wait(r, 10))
            return true;
    return false;
}

static const char ITERATIONS[] =
    "local tide = require 'tide'\n"
    "return { options = { executor = 'per-vu-iterations', vus = 4, iterations = 3 },\n"
    "  run = function(vu) assert(vu.env.A == '1'); tide.sleep(0.001) end }\n";

/* A load from source text runs to its end by itself, over two threads. */
static void test_runs_to_its_end(void)
{
    struct load l;
    if (!start(&l, ITERATIONS, 2))
        return;
    int turns = 0;
    while (!runner_wait(l.r, 50) && turns++ < 200) {
    }
    struct metrics *m = metrics_new();
    finish(&l, m);
    CHECK(count_of(m, "iterations") == 12);
    CHECK(count_of(m, "iteration_errors") == 0);
    CHECK(l.said.errors == 0);
    metrics_free(m);
}

static const char LOOPING[] =
    "local tide = require 'tide'\n"
    "return { options = { executor = 'constant-vus', vus = 6, duration = '20s', graceful_stop = '1s' },\n"
    "  run = function(vu) tide.sleep(0.02) end }\n";

/* set_vus changes how many users loop; stop(1) ends the load long before
 * its duration, with nothing cut (the sleeps are shorter than graceful_stop). */
static void test_set_vus_and_stop(void)
{
    struct load l;
    if (!start(&l, LOOPING, 2))
        return;
    char err[256];
    CHECK(!runner_set_vus(l.r, "default", 7, err, sizeof err) && strstr(err, "0..6"));
    CHECK(!runner_set_vus(l.r, "nope", 1, err, sizeof err));
    CHECK(!wait_seconds(l.r, 0.5));
    CHECK(runner_set_vus(l.r, "default", 1, err, sizeof err));
    CHECK(!wait_seconds(l.r, 0.3)); /* the others leave after their iteration */
    struct metrics *before = runner_snapshot(l.r);
    CHECK(!wait_seconds(l.r, 0.5));
    runner_stop(l.r, 1);
    int turns = 0;
    while (!runner_wait(l.r, 50) && turns++ < 100) {
    }
    CHECK(runner_elapsed(l.r) < 5);
    struct metrics *m = metrics_new();
    finish(&l, m);
    double its = count_of(m, "iterations");
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "set_vus: %.0f iterations\n", its);
    /* 6 users for 0.5 s, then 1 user: about 150 + 25 iterations */
    CHECK(its > 80 && its < 260);
    CHECK(count_of(m, "iterations_interrupted") == 0);
    metrics_free(before);
    metrics_free(m);
}

static const char BROKEN[] =
    "local n = 0\n"
    "return { options = { executor = 'per-vu-iterations', vus = 1, iterations = 2 },\n"
    "  run = function(vu) error('boom') end }\n";

/* Failed iterations are said through the sink, not printed. */
static void test_failures_go_to_the_sink(void)
{
    struct load l;
    if (!start(&l, BROKEN, 1))
        return;
    int turns = 0;
    while (!runner_wait(l.r, 50) && turns++ < 100) {
    }
    struct metrics *m = metrics_new();
    finish(&l, m);
    CHECK(count_of(m, "iteration_errors") == 2);
    CHECK(l.said.errors == 2 && strstr(l.said.last, "boom"));
    metrics_free(m);
}

/* A scenario that fails in a thread's state fails runner_start, which
 * leaves nothing running. */
static void test_start_fails_cleanly(void)
{
    static const char text[] =
        "return { options = { executor = 'per-vu-iterations', vus = 2, iterations = 1 },\n"
        "  run = function() end, exec_missing = 1 }\n";
    struct options o;
    CHECK(plan_options(text, &o, 2));
    struct scenario_source src = {.chunkname = "@broken"};
    static const char bad[] = "error('no load here')";
    src.text = bad;
    src.len = sizeof bad - 1;
    struct once *once = once_new();
    struct run_plan plan = {.opt = &o, .source = &src, .once = once};
    struct said said = {0};
    struct sink sink = {.message = collect, .ud = &said};
    char err[512] = "";
    struct runner *r = runner_start(&plan, &sink, err, sizeof err);
    CHECK(r == NULL && strstr(err, "no load here"));
    once_free(once);
}

int main(void)
{
    test_runs_to_its_end();
    test_set_vus_and_stop();
    test_failures_go_to_the_sink();
    test_start_fails_cleanly();
    return check_report("runner");
}
