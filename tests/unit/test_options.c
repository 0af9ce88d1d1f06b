/* Duration parsing and option validation: the messages users see for bad input. */
#include "check.h"
#include "duration.h"
#include "exec.h"
#include "options.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

static void test_durations(void)
{
    double s = -1;
    CHECK(duration_parse("250ms", &s) && s == 0.25);
    CHECK(duration_parse("2s", &s) && s == 2);
    CHECK(duration_parse("1m30s", &s) && s == 90);
    CHECK(duration_parse("1h", &s) && s == 3600);
    CHECK(duration_parse("1.5s", &s) && s == 1.5);
    CHECK(duration_parse("500us", &s) && s > 0.000499 && s < 0.000501);
    CHECK(duration_parse("30", &s) && s == 30);
    CHECK(duration_parse("0", &s) && s == 0);
    const char *bad[] = {"", "-5s", "-1", "5x", "s", "1m-3s", "abc", "1..2s", "nan", "inf", NULL};
    for (int i = 0; bad[i]; i++) {
        s = 42;
        CHECK(!duration_parse(bad[i], &s));
        CHECK(s == 42);
    }
}

static void test_cli_options(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    options_init(&o);
    struct scen *s = &o.scen[0];
    CHECK(options_set_cli(&o, "vus", "50", err) && s->vus == 50);
    CHECK(options_set_cli(&o, "duration", "1m30s", err) && s->duration == 90);
    CHECK(options_set_cli(&o, "executor", "constant-vus", err) && s->executor == EXEC_CONSTANT_VUS);
    CHECK(options_set_cli(&o, "target", "http://127.0.0.1:8080/x", err));
    CHECK(options_set_cli(&o, "max-body", "1KB", err) && o.max_body == 1000);
    CHECK(options_set_cli(&o, "graceful-stop", "0s", err) && s->graceful_stop == 0);

    CHECK(!options_set_cli(&o, "vus", "0", err) && strstr(err, "--vus") && strstr(err, "'0'"));
    CHECK(!options_set_cli(&o, "vus", "12x", err) && strstr(err, "'12x'"));
    CHECK(!options_set_cli(&o, "duration", "-5s", err) && strstr(err, "'-5s'"));
    CHECK(!options_set_cli(&o, "duration", "0s", err));
    CHECK(!options_set_cli(&o, "target", "notaurl", err) && strstr(err, "'notaurl'"));
    CHECK(!options_set_cli(&o, "target", "ftp://host/", err));
    CHECK(!options_set_cli(&o, "executor", "ramping", err) && strstr(err, "constant-vus"));
    CHECK(!options_set_cli(&o, "duraton", "5s", err) && strstr(err, "duraton") && strstr(err, "unknown"));
}

static bool lua_options(const char *chunk, struct options *o, char *err)
{
    lua_State *L = luaL_newstate();
    options_init(o);
    bool ok = luaL_dostring(L, chunk) == LUA_OK && options_from_lua(L, -1, o, err);
    lua_close(L);
    return ok;
}

static void test_lua_options(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    CHECK(lua_options("return {vus = 10, duration = '30s', executor = 'constant-vus'}", &o, err));
    CHECK(o.scen[0].vus == 10 && o.scen[0].duration == 30 && o.scen[0].executor == EXEC_CONSTANT_VUS);
    CHECK(lua_options("return {duration = 90}", &o, err) && o.scen[0].duration == 90);
    CHECK(!lua_options("return {vus = 'ten'}", &o, err) && strstr(err, "options.vus") && strstr(err, "string"));
    CHECK(!lua_options("return {vus = 2.5}", &o, err) && strstr(err, "options.vus") && strstr(err, "integer"));
    CHECK(!lua_options("return {vus = -3}", &o, err) && strstr(err, "'-3'"));
    CHECK(!lua_options("return {duraton = '5s'}", &o, err) && strstr(err, "options.duraton"));
    CHECK(!lua_options("return {duration = true}", &o, err) && strstr(err, "boolean"));
    CHECK(!lua_options("return {[1] = 'x'}", &o, err) && strstr(err, "keys must be strings"));
}

static bool finished(const char *chunk, struct options *o, char *err)
{
    return lua_options(chunk, o, err) && options_finish(o, 2, err);
}

static void test_finish(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    CHECK(finished("return {}", &o, err));
    struct scen *s = &o.scen[0];
    CHECK(s->executor == EXEC_SHARED_ITERATIONS && s->vus == 1 && s->iterations == 1 && o.threads == 1);
    CHECK(finished("return {vus = 10, duration = 5}", &o, err));
    CHECK(s->executor == EXEC_CONSTANT_VUS && o.threads == 2);
    CHECK(!finished("return {executor = 'constant-vus'}", &o, err) && strstr(err, "duration"));
    CHECK(finished("return {vus = 10, iterations = 3}", &o, err) && s->vus == 3 && o.threads == 2);
    CHECK(!finished("return {executor = 'constant-vus', vus = 2, duration = 1, iterations = 4}", &o, err) &&
          strstr(err, "options.iterations") && strstr(err, "does not apply to constant-vus"));
}

static void test_load_shapes(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    CHECK(finished("return {executor = 'ramping-vus', start_vus = 2, stages = {"
                   "{duration = '10s', target = 10}, {duration = 5, target = 0}}}", &o, err));
    CHECK(o.scen[0].duration == 15 && scen_max_vus(&o.scen[0]) == 10);
    CHECK(ramp_target(&o.scen[0], 0) == 2 && ramp_target(&o.scen[0], 5) == 6);
    CHECK(ramp_target(&o.scen[0], 10) == 10 && ramp_target(&o.scen[0], 12.5) == 5);
    CHECK(ramp_target(&o.scen[0], 99) == 0);
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{duration = '-1s', target = 3}}}", &o, err) &&
          strstr(err, "stages[1].duration") && strstr(err, "-1s"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{target = 3}}}", &o, err) &&
          strstr(err, "stages[1].duration"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {}}", &o, err) && strstr(err, "stages"));

    CHECK(finished("return {executor = 'constant-arrival-rate', rate = 200, duration = '5s', "
                   "pre_allocated_vus = 10, max_vus = 50}", &o, err));
    CHECK(arrival_offset(&o.scen[0], 0) == 0 && arrival_offset(&o.scen[0], 999) < 5);
    CHECK(arrival_offset(&o.scen[0], 1000) < 0);
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 0, duration = 5}", &o, err) &&
          strstr(err, "options.rate") && strstr(err, "'0'"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 5, duration = 5, "
                    "pre_allocated_vus = 10, max_vus = 2}", &o, err) && strstr(err, "max_vus"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 5, duraton = 5}", &o, err) &&
          strstr(err, "options.duraton") && strstr(err, "unknown"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 5, duration = 5, vus = 3}", &o, err) &&
          strstr(err, "options.vus") && strstr(err, "constant-arrival-rate"));

    /* ramping from 0 to 10/s over 10 s then 10/s for 10 s: 50 + 100 iterations */
    CHECK(finished("return {executor = 'ramping-arrival-rate', stages = {"
                   "{duration = 10, target = 10}, {duration = 10, target = 10}}, max_vus = 5}", &o, err));
    CHECK(arrival_offset(&o.scen[0], 149) > 19 && arrival_offset(&o.scen[0], 149) < 20);
    CHECK(arrival_offset(&o.scen[0], 150) < 0);
    CHECK_NEAR(arrival_offset(&o.scen[0], 50), 10, 1e-9);
}

static void test_scenarios(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    CHECK(finished("return {tags = {team = 'x'}, scenarios = {"
                   "browse = {executor = 'constant-vus', vus = 2, duration = 1, exec = 'browse'},"
                   "buy = {executor = 'per-vu-iterations', vus = 3, start_time = '1s', tags = {kind = 'b'}}}}",
                   &o, err));
    CHECK(o.nscen == 2 && o.named && options_total_vus(&o) == 5);
    CHECK(!finished("return {vus = 3, scenarios = {a = {executor = 'constant-vus', duration = 1}}}", &o, err) &&
          strstr(err, "options.vus"));
    CHECK(!finished("return {scenarios = {a = {executor = 'constant-vus', duraton = 1}}}", &o, err) &&
          strstr(err, "options.scenarios.a.duraton"));
}

static void test_max_names(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    options_init(&o);
    CHECK(o.max_names == 10000);
    CHECK(options_set_cli(&o, "max-names", "50", err) && o.max_names == 50);
    CHECK(!options_set_cli(&o, "max-names", "0", err) && strstr(err, "--max-names") && strstr(err, "'0'"));
    CHECK(!options_set_cli(&o, "max-names", "10000001", err));
    CHECK(lua_options("return {max_names = 20}", &o, err) && o.max_names == 20);
    CHECK(!lua_options("return {max_names = 2.5}", &o, err) && strstr(err, "options.max_names"));
    CHECK(!lua_options("return {max_names = 'lots'}", &o, err) && strstr(err, "options.max_names"));
}

int main(void)
{
    test_durations();
    test_cli_options();
    test_lua_options();
    test_finish();
    test_load_shapes();
    test_scenarios();
    test_max_names();
    return check_report("options");
}
