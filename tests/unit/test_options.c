/* Duration parsing and option validation: the messages users see for bad input. */
#include "check.h"
#include "duration.h"
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
    CHECK(options_set_cli(&o, "vus", "50", err) && o.vus == 50);
    CHECK(options_set_cli(&o, "duration", "1m30s", err) && o.duration == 90);
    CHECK(options_set_cli(&o, "executor", "constant-vus", err) && o.executor == EXEC_CONSTANT_VUS);
    CHECK(options_set_cli(&o, "target", "http://127.0.0.1:8080/x", err));
    CHECK(options_set_cli(&o, "max-body", "1KB", err) && o.max_body == 1000);
    CHECK(options_set_cli(&o, "graceful-stop", "0s", err) && o.graceful_stop == 0);

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
    CHECK(o.vus == 10 && o.duration == 30 && o.executor == EXEC_CONSTANT_VUS);
    CHECK(lua_options("return {duration = 90}", &o, err) && o.duration == 90);
    CHECK(!lua_options("return {vus = 'ten'}", &o, err) && strstr(err, "options.vus") && strstr(err, "string"));
    CHECK(!lua_options("return {vus = 2.5}", &o, err) && strstr(err, "options.vus") && strstr(err, "integer"));
    CHECK(!lua_options("return {vus = -3}", &o, err) && strstr(err, "'-3'"));
    CHECK(!lua_options("return {duraton = '5s'}", &o, err) && strstr(err, "options.duraton"));
    CHECK(!lua_options("return {duration = true}", &o, err) && strstr(err, "boolean"));
    CHECK(!lua_options("return {[1] = 'x'}", &o, err) && strstr(err, "keys must be strings"));
}

static void test_finish(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    options_init(&o);
    CHECK(options_finish(&o, 2, err));
    CHECK(o.executor == EXEC_SHARED_ITERATIONS && o.vus == 1 && o.iterations == 1 && o.threads == 1);

    options_init(&o);
    o.vus = 10;
    o.duration = 5;
    CHECK(options_finish(&o, 2, err) && o.executor == EXEC_CONSTANT_VUS && o.threads == 2);

    options_init(&o);
    o.executor = EXEC_CONSTANT_VUS;
    CHECK(!options_finish(&o, 2, err) && strstr(err, "duration"));

    options_init(&o);
    o.executor = EXEC_SHARED_ITERATIONS;
    o.vus = 10;
    o.iterations = 3;
    CHECK(options_finish(&o, 4, err) && o.vus == 3 && o.threads == 3);
}

int main(void)
{
    test_durations();
    test_cli_options();
    test_lua_options();
    test_finish();
    return check_report("options");
}
