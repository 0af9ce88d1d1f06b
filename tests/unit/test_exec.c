/* The executors (exec.c) driven on a fake clock: a real Lua state with
 * tide's modules (tctx_open), scenario functions that do nothing or
 * tide.sleep, and the loop's time moved from one due timer to the next, so
 * a ten-second schedule runs in microseconds and every count is exact. */
#include "check.h"
#include "clock.h"
#include "exec.h"
#include "http.h"
#include "loop.h"
#include "metrics.h"
#include "options.h"
#include "split.h"
#include "state.h"
#include "vu.h"

#include <lauxlib.h>
#include <string.h>

#define T0 (1000 * NS_PER_SEC) /* the run's start on the fake clock */
#define SEC(s) ((uint64_t)((s) * 1e9 + 0.5))

/* One engine thread's worth: a Lua state, its loop on a fake clock, one executor. */
struct rig {
    struct tctx ctx;
    lua_State *L;
    struct options o;
    struct exec ex;
    uint64_t clock;
    _Atomic uint64_t *shared;
    int done;
    uint64_t done_at;
    int failures;
    char traceback[512];
};

static uint64_t fake_clock(void *ud)
{
    return *(uint64_t *)ud;
}

static void on_done(void *ud)
{
    struct rig *r = ud;
    r->done++;
    r->done_at = loop_now(r->ctx.loop) - T0;
}

static void on_failed(void *ud, unsigned id, uint64_t iteration, const char *traceback)
{
    struct rig *r = ud;
    (void)id, (void)iteration;
    r->failures++;
    snprintf(r->traceback, sizeof r->traceback, "%s", traceback);
}

static int vu_table(void *ud, unsigned id, const char *scenario)
{
    lua_State *L = ((struct rig *)ud)->L;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, scenario);
    lua_setfield(L, -2, "scenario");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* options: a Lua table constructor; fn: a chunk returning the iteration's
 * function (`per_vu` counts iterations per user id in a global table). */
static bool rig_open(struct rig *r, const char *options, const char *fn, unsigned share_i,
                     unsigned share_n, _Atomic uint64_t *shared)
{
    memset(r, 0, sizeof *r);
    char err[OPTIONS_ERR] = "";
    r->L = tctx_open(&r->ctx, 1);
    if (!CHECK(r->L))
        return false;
    r->clock = T0 - SEC(0.5);
    loop_set_clock(r->ctx.loop, fake_clock, &r->clock);
    options_init(&r->o);
    bool ok = luaL_dostring(r->L, options) == LUA_OK && options_from_lua(r->L, -1, &r->o, err) &&
              options_finish(&r->o, 1, err);
    if (!CHECK(ok)) {
        fprintf(stderr, "  %s: %s\n", options, *err ? err : lua_tostring(r->L, -1));
        return false;
    }
    lua_settop(r->L, 0);
    CHECK(luaL_dostring(r->L, "per_vu = {}") == LUA_OK);
    if (!CHECK(luaL_dostring(r->L, fn) == LUA_OK && lua_isfunction(r->L, -1)))
        return false;
    r->shared = shared;
    const struct scen *s = &r->o.scen[0];
    struct share sh = split_thread(&r->o, share_n, share_i);
    struct exec_env env = {
        .ctx = &r->ctx, .scen = s, .shared_next = shared, .share = sh,
        .first_id = split_first_id(&r->o, 0, &sh),
        .cap = split_part(scen_max_vus(s), &sh),
        .fn_ref = luaL_ref(r->L, LUA_REGISTRYINDEX), .data_ref = LUA_REFNIL,
        .ud = r, .done = on_done, .failed = on_failed, .vu_table = vu_table,
    };
    if (!CHECK(exec_init(&r->ex, &env)))
        return false;
    exec_arm(&r->ex, T0);
    return true;
}

static void rig_close(struct rig *r)
{
    tctx_close(&r->ctx);
    exec_free(&r->ex);
}

/* Runs the loop from due timer to due timer up to T0 + t (or until the
 * executor is done when stop_when_done), then sets the clock to it. */
static void run_to(struct rig *r, double t, bool stop_when_done)
{
    /* t may be before the start: a negative double is no uint64_t */
    uint64_t until = t < 0 ? T0 - SEC(-t) : T0 + SEC(t);
    for (uint64_t due; (due = loop_next_due(r->ctx.loop)) <= until && !(stop_when_done && r->done);) {
        if (due > r->clock)
            r->clock = due;
        loop_run_once(r->ctx.loop, 0);
    }
    if (!(stop_when_done && r->done) && r->clock < until) {
        r->clock = until;
        loop_run_once(r->ctx.loop, 0);
    }
}

/* Runs until done, at most `limit` seconds of fake time. */
static void run_done(struct rig *r, double limit)
{
    run_to(r, limit, true);
}

/* A counter's value over all its series (0 when it has none). */
static double counter(struct rig *r, const char *name)
{
    lua_State *L = r->L;
    metrics_push(L, r->ctx.metrics);
    double sum = 0;
    if (lua_getfield(L, -1, name) == LUA_TTABLE && lua_getfield(L, -1, "series") == LUA_TTABLE) {
        for (lua_Integer i = 1; lua_geti(L, -1, i) == LUA_TTABLE; i++) {
            lua_getfield(L, -1, "value");
            sum += lua_tonumber(L, -1);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    return sum;
}

/* A trend's statistic (hist method `stat`) over its first series; -1 when none. */
static double trend(struct rig *r, const char *name, const char *stat)
{
    lua_State *L = r->L;
    metrics_push(L, r->ctx.metrics);
    double v = -1;
    if (lua_getfield(L, -1, name) == LUA_TTABLE && lua_getfield(L, -1, "series") == LUA_TTABLE &&
        lua_geti(L, -1, 1) == LUA_TTABLE && lua_getfield(L, -1, "hist") == LUA_TUSERDATA &&
        luaL_getmetafield(L, -1, "__index") == LUA_TTABLE && lua_getfield(L, -1, stat) == LUA_TFUNCTION) {
        lua_pushvalue(L, -3);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK)
            v = lua_tonumber(L, -1);
    }
    lua_settop(L, 0);
    return v;
}

/* Iterations user `id` ran (per_vu[id]). */
static long per_vu(struct rig *r, unsigned id)
{
    lua_getglobal(r->L, "per_vu");
    lua_geti(r->L, -1, id);
    long n = (long)lua_tointeger(r->L, -1);
    lua_settop(r->L, 0);
    return n;
}

#define NOOP "return function(vu) per_vu[vu.id] = (per_vu[vu.id] or 0) + 1 end"
#define SLEEP(s) "return function(vu) per_vu[vu.id] = (per_vu[vu.id] or 0) + 1; require('tide').sleep(" #s ") end"

static void test_per_vu_iterations(void)
{
    struct rig r;
    if (rig_open(&r, "return {executor = 'per-vu-iterations', vus = 3, iterations = 4}", NOOP, 0, 1, NULL)) {
        run_to(&r, -0.1, false);
        CHECK(!r.ex.started && r.done == 0 && counter(&r, "iterations") == 0);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == 0);
        CHECK(counter(&r, "iterations") == 12);
        for (unsigned id = 1; id <= 3; id++)
            CHECK(per_vu(&r, id) == 4);
        CHECK(r.failures == 0);
    }
    rig_close(&r);
    /* with a sleep, each user's iterations follow one another: 4 x 0.5 s */
    if (rig_open(&r, "return {executor = 'per-vu-iterations', vus = 2, iterations = 4}", SLEEP(0.5), 0, 1, NULL)) {
        run_to(&r, 1.2, false);
        CHECK(counter(&r, "iterations") == 4 && r.ex.running == 2); /* two each, the third asleep */
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(2) && counter(&r, "iterations") == 8);
    }
    rig_close(&r);
}

static void test_shared_iterations(void)
{
    struct rig r;
    _Atomic uint64_t next = 0;
    /* 10 iterations over 3 users asleep 1 s each: 4 rounds */
    if (rig_open(&r, "return {executor = 'shared-iterations', vus = 3, iterations = 10}", SLEEP(1), 0, 1, &next)) {
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(4) && counter(&r, "iterations") == 10);
        CHECK(per_vu(&r, 1) + per_vu(&r, 2) + per_vu(&r, 3) == 10);
        CHECK(per_vu(&r, 1) >= 3 && per_vu(&r, 2) >= 3 && per_vu(&r, 3) >= 3);
    }
    rig_close(&r);

    /* two threads share one pool: their iterations add up to it */
    struct rig a, b;
    next = 0;
    const char *opts = "return {executor = 'shared-iterations', vus = 5, iterations = 17}";
    if (rig_open(&a, opts, SLEEP(0.3), 0, 2, &next) && rig_open(&b, opts, SLEEP(0.7), 1, 2, &next)) {
        CHECK(a.ex.cap == 3 && b.ex.cap == 2);
        for (double t = 0; t <= 20 && !(a.done && b.done); t += 0.05) {
            run_to(&a, t, true);
            run_to(&b, t, true);
        }
        double na = counter(&a, "iterations"), nb = counter(&b, "iterations");
        if (!CHECK(a.done && b.done && na + nb == 17))
            fprintf(stderr, "  %g + %g iterations\n", na, nb);
        CHECK(na > nb); /* the faster thread took more of the pool */
        CHECK(per_vu(&b, 4) + per_vu(&b, 5) == nb && per_vu(&a, 4) == 0);
    }
    rig_close(&a);
    rig_close(&b);
}

static void test_constant_vus(void)
{
    struct rig r;
    /* 4 users asleep 1 s for 10 s: 10 iterations each, done at the end */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 4, duration = '10s'}", SLEEP(1), 0, 1, NULL)) {
        run_to(&r, 5.5, false);
        CHECK(r.ex.running == 4 && counter(&r, "iterations") == 20 && !r.done);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(10) && counter(&r, "iterations") == 40);
        CHECK(counter(&r, "iterations_interrupted") == 0);
    }
    rig_close(&r);
    /* the last iterations started at 9 s end at 12 s, within the graceful stop */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 2, duration = '10s'}", SLEEP(3), 0, 1, NULL)) {
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(12) && counter(&r, "iterations") == 8);
    }
    rig_close(&r);
    /* start_time delays the start */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 1, duration = '2s', start_time = '3s'}",
                 SLEEP(1), 0, 1, NULL)) {
        run_to(&r, 2.9, false);
        CHECK(counter(&r, "iterations") == 0 && r.ex.running == 0);
        run_done(&r, 60);
        CHECK(r.done_at == SEC(5) && counter(&r, "iterations") == 2);
    }
    rig_close(&r);
}

/* Past the end, running iterations get graceful_stop, then they are cut. */
static void test_graceful_stop_and_cut(void)
{
    struct rig r;
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 3, duration = '10s', graceful_stop = '1s'}",
                 SLEEP(3), 0, 1, NULL)) {
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(11));
        CHECK(counter(&r, "iterations") == 9 && counter(&r, "iterations_interrupted") == 3);
    }
    rig_close(&r);
    /* a stop (Ctrl-C once) at 1.5 s: no new iterations; the running ones are cut at 3.5 s */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 3, duration = '60s', graceful_stop = '2s'}",
                 SLEEP(10), 0, 1, NULL)) {
        run_to(&r, 1.5, false);
        exec_stop(&r.ex, 1);
        CHECK(!r.done && r.ex.running == 3);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(3.5));
        CHECK(counter(&r, "iterations") == 0 && counter(&r, "iterations_interrupted") == 3);
    }
    rig_close(&r);
    /* a stop whose iterations end within the grace: nothing interrupted */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 3, duration = '60s', graceful_stop = '2s'}",
                 SLEEP(1), 0, 1, NULL)) {
        run_to(&r, 1.5, false);
        exec_stop(&r.ex, 1);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(2));
        CHECK(counter(&r, "iterations") == 6 && counter(&r, "iterations_interrupted") == 0);
    }
    rig_close(&r);
    /* cut (Ctrl-C twice): done at once */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 3, duration = '60s'}", SLEEP(10), 0, 1, NULL)) {
        run_to(&r, 1.5, false);
        exec_stop(&r.ex, 2);
        CHECK(r.done == 1 && r.done_at == SEC(1.5) && r.ex.running == 0);
        CHECK(counter(&r, "iterations_interrupted") == 3);
        CHECK(loop_next_due(r.ctx.loop) == UINT64_MAX); /* no timer of the executor or its users left */
    }
    rig_close(&r);
    /* stopped before its start_time: simply over */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 2, duration = '5s', start_time = '10s'}",
                 SLEEP(1), 0, 1, NULL)) {
        run_to(&r, 1, false);
        exec_stop(&r.ex, 1);
        CHECK(r.done == 1 && counter(&r, "iterations") == 0);
    }
    rig_close(&r);
}

static void test_ramping_vus(void)
{
    struct rig r;
    const char *opts = "return {executor = 'ramping-vus', stages = {{duration = '4s', target = 8}, "
                       "{duration = '4s', target = 8}, {duration = '4s', target = 2}, {duration = '4s', target = 2}}}";
    if (rig_open(&r, opts, SLEEP(0.5), 0, 1, NULL)) {
        static const struct { double t; unsigned users; } want[] = {
            /* start_vus is 1 unless given, as in k6: 1 + 7 t / 4 */
            {0.001, 1}, {1.0, 2}, {2.0, 4}, {3.99, 7}, {4.0, 8}, {6.0, 8}, {7.99, 8}, {10.0, 5}, {13.0, 2}, {15.9, 2},
        };
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            if (want[i].t == 10.0) {
                /* ramping down: the 6th user, past the target since ~9.34 s, ends its iteration first */
                run_to(&r, 9.5, false);
                CHECK(r.ex.target == 5 && r.ex.running >= 5 && r.ex.running <= 6);
            }
            run_to(&r, want[i].t, false);
            if (!CHECK(r.ex.target == want[i].users && r.ex.running == want[i].users))
                fprintf(stderr, "  at %gs: target %u, running %u, want %u\n", want[i].t, r.ex.target,
                        r.ex.running, want[i].users);
        }
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at >= SEC(16) && r.done_at <= SEC(16.5));
        CHECK(counter(&r, "iterations_interrupted") == 0);
    }
    rig_close(&r);
    /* users ramped down in a long iteration are cut after graceful_ramp_down */
    if (rig_open(&r, "return {executor = 'ramping-vus', start_vus = 4, graceful_ramp_down = '1s', "
                 "stages = {{duration = '2s', target = 4}, {duration = '0.01s', target = 1}, "
                 "{duration = '5s', target = 1}}}", SLEEP(100), 0, 1, NULL)) {
        run_to(&r, 2.5, false);
        CHECK(r.ex.target == 1 && r.ex.running == 4);
        run_to(&r, 3.5, false);
        CHECK(r.ex.running == 1 && counter(&r, "iterations_interrupted") == 3);
    }
    rig_close(&r);
}

static void test_constant_arrival_rate(void)
{
    struct rig r;
    /* 10/s for 5 s with enough users: 50 iterations, none dropped, none late */
    if (rig_open(&r, "return {executor = 'constant-arrival-rate', rate = 10, duration = '5s', "
                 "pre_allocated_vus = 2, max_vus = 2}", SLEEP(0.15), 0, 1, NULL)) {
        run_to(&r, 2.05, false);
        CHECK(counter(&r, "iterations") == 20);
        run_done(&r, 60);
        CHECK(r.done == 1 && counter(&r, "iterations") == 50 && counter(&r, "dropped_iterations") == 0);
        CHECK(r.ex.made == 2);
    }
    rig_close(&r);
    /* 5 users busy 0.95 s each at 10/s: half the arrivals find no free user */
    if (rig_open(&r, "return {executor = 'constant-arrival-rate', rate = 10, duration = '5s', "
                 "pre_allocated_vus = 5, max_vus = 5}", SLEEP(0.95), 0, 1, NULL)) {
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(5.35));
        double it = counter(&r, "iterations"), dropped = counter(&r, "dropped_iterations");
        if (!CHECK(it == 25 && dropped == 25))
            fprintf(stderr, "  %g iterations, %g dropped\n", it, dropped);
    }
    rig_close(&r);
    /* two threads take turns through one schedule: 7 per 1 s for 2 s is 14 */
    struct rig a, b;
    const char *opts = "return {executor = 'constant-arrival-rate', rate = 7, duration = '2s', max_vus = 4}";
    if (rig_open(&a, opts, NOOP, 0, 2, NULL) && rig_open(&b, opts, NOOP, 1, 2, NULL)) {
        run_done(&a, 10);
        run_done(&b, 10);
        CHECK(counter(&a, "iterations") == 7 && counter(&b, "iterations") == 7);
        CHECK(counter(&a, "dropped_iterations") + counter(&b, "dropped_iterations") == 0);
    }
    rig_close(&a);
    rig_close(&b);
}

/* A loop that wakes late starts the arrivals it missed at once, each
 * measured from its schedule: the delay shows (no coordinated omission). */
static void test_late_arrivals(void)
{
    struct rig r;
    if (rig_open(&r, "return {executor = 'constant-arrival-rate', rate = 10, duration = '2s', max_vus = 20}",
                 NOOP, 0, 1, NULL)) {
        run_to(&r, 0, false);
        CHECK(counter(&r, "iterations") == 1 && trend(&r, "iteration_start_delay", "count") == 1);
        r.clock = T0 + SEC(1.0); /* stalled for a second: arrivals 1..10 are due */
        loop_run_once(r.ctx.loop, 0);
        CHECK(counter(&r, "iterations") == 11 && counter(&r, "dropped_iterations") == 0);
        CHECK(trend(&r, "iteration_start_delay", "count") == 11);
        CHECK(trend(&r, "iteration_start_delay", "min") == 0);
        CHECK_NEAR(trend(&r, "iteration_start_delay", "max"), 900000, 1e-3);
        CHECK_NEAR(trend(&r, "iteration_start_delay", "sum"), 4500000, 1e-3);
        run_done(&r, 10);
        CHECK(r.done == 1 && counter(&r, "iterations") == 20);
    }
    rig_close(&r);
}

static void test_ramping_arrival_rate(void)
{
    struct rig r;
    /* 0 to 10/s over 2 s (10), then 10/s for 2 s (20) */
    if (rig_open(&r, "return {executor = 'ramping-arrival-rate', max_vus = 1, stages = {"
                 "{duration = '2s', target = 10}, {duration = '2s', target = 10}}}", NOOP, 0, 1, NULL)) {
        run_to(&r, 1.999, false); /* arrival 10 is due at 2 s: sqrt(2 * 10 / 5) */
        CHECK(counter(&r, "iterations") == 10);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(4));
        CHECK(counter(&r, "iterations") == 30 && counter(&r, "dropped_iterations") == 0);
    }
    rig_close(&r);
    /* one user busy 1.5 s: of 30 arrivals it takes one in 15, the rest drop */
    if (rig_open(&r, "return {executor = 'ramping-arrival-rate', max_vus = 1, stages = {"
                 "{duration = '2s', target = 10}, {duration = '2s', target = 10}}}", SLEEP(1.5), 0, 1, NULL)) {
        run_done(&r, 60);
        double it = counter(&r, "iterations"), dropped = counter(&r, "dropped_iterations");
        if (!CHECK(it + dropped == 30 && it == 3))
            fprintf(stderr, "  %g iterations, %g dropped\n", it, dropped);
    }
    rig_close(&r);
    /* stopped half-way: what was due by then and not started is dropped */
    if (rig_open(&r, "return {executor = 'constant-arrival-rate', rate = 10, duration = '10s', "
                 "max_vus = 1}", SLEEP(100), 0, 1, NULL)) {
        run_to(&r, 2.05, false);
        exec_stop(&r.ex, 2);
        CHECK(r.done == 1 && counter(&r, "iterations_interrupted") == 1);
        CHECK(counter(&r, "dropped_iterations") == 20);
    }
    rig_close(&r);
}

/* constant-vus: loop with fewer users from now, then more again. */
static void test_set_vus(void)
{
    struct rig r;
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 4, duration = '10s'}", SLEEP(1), 0, 1, NULL)) {
        run_to(&r, 2.5, false);
        exec_set_vus(&r.ex, 2);
        CHECK(r.ex.running == 4); /* those past the count finish their iteration */
        run_to(&r, 3.5, false);
        CHECK(r.ex.running == 2);
        exec_set_vus(&r.ex, 9); /* at most cap */
        CHECK(r.ex.looping == 4 && r.ex.running == 4);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(10.5));
        /* users 1, 2: 0..9 s; users 3, 4: 0, 1, 2 s and 3.5 .. 9.5 s */
        CHECK(per_vu(&r, 1) == 10 && per_vu(&r, 2) == 10 && per_vu(&r, 3) == 10 && per_vu(&r, 4) == 10);
        CHECK(counter(&r, "iterations") == 40);
    }
    rig_close(&r);
    /* no user looping is not the end: the duration is */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 3, duration = '10s'}", SLEEP(1), 0, 1, NULL)) {
        run_to(&r, 2.5, false);
        exec_set_vus(&r.ex, 0);
        run_to(&r, 5, false);
        CHECK(r.ex.running == 0 && !r.done && counter(&r, "iterations") == 9);
        run_done(&r, 60);
        CHECK(r.done == 1 && r.done_at == SEC(10));
    }
    rig_close(&r);
    /* before the start: the start takes the new count */
    if (rig_open(&r, "return {executor = 'constant-vus', vus = 4, duration = '2s'}", SLEEP(1), 0, 1, NULL)) {
        exec_set_vus(&r.ex, 1);
        run_done(&r, 60);
        CHECK(counter(&r, "iterations") == 2 && per_vu(&r, 1) == 2 && per_vu(&r, 2) == 0);
    }
    rig_close(&r);
}

/* An iteration's error goes to env.failed with its traceback and is counted. */
static void test_failed_iterations(void)
{
    struct rig r;
    if (rig_open(&r, "return {executor = 'per-vu-iterations', vus = 2, iterations = 3}",
                 "return function(vu) error('boom in ' .. vu.id) end", 0, 1, NULL)) {
        run_done(&r, 60);
        CHECK(r.done == 1 && r.failures == 6 && strstr(r.traceback, "boom in "));
        CHECK(counter(&r, "iterations") == 6 && counter(&r, "iteration_errors") == 6);
    }
    rig_close(&r);
}

int main(void)
{
    test_per_vu_iterations();
    test_shared_iterations();
    test_constant_vus();
    test_graceful_stop_and_cut();
    test_ramping_vus();
    test_constant_arrival_rate();
    test_late_arrivals();
    test_ramping_arrival_rate();
    test_set_vus();
    test_failed_iterations();
    return check_report("exec");
}
