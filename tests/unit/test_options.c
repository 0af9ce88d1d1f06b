/* Duration parsing and option validation: the messages users see for bad input. */
#include "check.h"
#include "duration.h"
#include "options.h"
#include "redact.h"

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

/* Numbers that overflow, are not finite, or are written in ways strtod
 * takes but people do not mean (hex, inf, nan) are not durations. */
static void test_duration_limits(void)
{
    double s = -1;
    CHECK(duration_parse("8760h", &s) && s == DURATION_MAX_S);
    CHECK(duration_parse("1e3", &s) && s == 1000);
    CHECK(duration_parse("2e3ms", &s) && s == 2);
    const char *bad[] = {"8760h1s", "99999999999h", "1e300", "1e309", "1e309s", "1e300h", "0x10",
                         "0x10s", "infs", "nans", "1e", "+5s", " 5s", "1e3e3", NULL};
    for (int i = 0; bad[i]; i++) {
        s = 42;
        if (!CHECK(!duration_parse(bad[i], &s)))
            fprintf(stderr, "  accepted '%s' as %g s\n", bad[i], s);
        CHECK(s == 42);
    }
    double v;
    const char *end;
    CHECK(decimal_prefix("12.5KB", &v, &end) && v == 12.5 && strcmp(end, "KB") == 0);
    CHECK(!decimal_prefix("0x1p3", &v, &end) && !decimal_prefix("-1", &v, &end));
    CHECK(!decimal_prefix(".", &v, &end) && !decimal_prefix("1e999", &v, &end));
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

/* Every number has a range, and the message names the value and the range. */
static void test_cli_ranges(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    options_init(&o);
    CHECK(o.lua_memory == 1ull << 30);
    CHECK(options_set_cli(&o, "lua-memory", "256MB", err) && o.lua_memory == 256000000);
    CHECK(options_set_cli(&o, "lua-memory", "1MiB", err) && o.lua_memory == 1048576);
    CHECK(options_set_cli(&o, "max-body", "1TiB", err) && o.max_body == 1ull << 40);
    static const struct { const char *key, *value, *range; } bad[] = {
        {"duration", "99999999999h", "8760h"},
        {"duration", "1e300", "8760h"},
        {"graceful-stop", "9000h", "8760h"},
        {"start-time", "inf", "8760h"},
        {"max-body", "99999999999999999999", "1TiB"},
        {"max-body", "1e300", "1TiB"},
        {"max-body", "0x10", "1TiB"},
        {"max-body", "0.5", "1 byte"},
        {"lua-memory", "1KB", "1MiB"},
        {"lua-memory", "2TiB", "1TiB"},
        {"vus", "1000001", "1000000"},
        {"vus", "99999999999999999999", "1000000"},
        {"iterations", "9007199254740993", "9007199254740992"},
        {"threads", "1025", "1024"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i].value);
        bool rejected = !options_set_cli(&o, bad[i].key, bad[i].value, err);
        if (!CHECK(rejected && strstr(err, bad[i].key) && strstr(err, quoted) && strstr(err, bad[i].range)))
            fprintf(stderr, "  --%s %s: %s\n", bad[i].key, bad[i].value, rejected ? err : "accepted");
    }
    CHECK(o.lua_memory == 1048576 && o.max_body == 1ull << 40);
}

/* A malformed target is echoed without its secret: a password, or a token
 * standing as the user name. */
static void test_target_redacted(void)
{
    struct options o;
    char err[OPTIONS_ERR], out[256];
    options_init(&o);
    CHECK(!options_set_cli(&o, "target", "http://user:SECRET@127.0.0.1:99999", err) &&
          !strstr(err, "SECRET") && strstr(err, "http://user:***@127.0.0.1:99999"));
    CHECK(!options_set_cli(&o, "target", "http://TOKEN@127.0.0.1:99999", err) &&
          !strstr(err, "TOKEN") && strstr(err, "http://***@127.0.0.1:99999"));
    redact_url("https://TOKEN:@h/x", out, sizeof out);
    CHECK(strcmp(out, "https://***:@h/x") == 0);
    redact_url("postgresql://postgres@h/db", out, sizeof out); /* a role name is no secret */
    CHECK(strcmp(out, "postgresql://postgres@h/db") == 0);
    redact_url("postgresql://u:pw@h/db", out, sizeof out);
    CHECK(strcmp(out, "postgresql://u:***@h/db") == 0);
    redact_password("GET http://TOKEN@h/ failed: TOKEN rejected", "http://TOKEN@h/", out, sizeof out);
    CHECK(strcmp(out, "GET http://***@h/ failed: *** rejected") == 0);
    redact_password("no secret here", "http://h/", out, sizeof out);
    CHECK(strcmp(out, "no secret here") == 0);
    /* every URL and DSN in a text, as Lua's tide.redact sees them */
    redact_text("pg:postgresql://u:pw@h/db#1 and 'http://TOK@h/x' failed", out, sizeof out);
    CHECK(strcmp(out, "pg:postgresql://u:***@h/db#1 and 'http://***@h/x' failed") == 0);
    redact_text("host=h password='a b' user=u; postgresql://h/db?password=x&sslmode=off", out, sizeof out);
    CHECK(strcmp(out, "host=h password=*** user=u; postgresql://h/db?password=***&sslmode=off") == 0);
    redact_text("postgresql://postgres@h/db, http://h/p@x, password", out, sizeof out);
    CHECK(strcmp(out, "postgresql://postgres@h/db, http://h/p@x, password") == 0);
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
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{duration = '-1s', target = 3}}}", &o, err) &&
          strstr(err, "stages[1].duration") && strstr(err, "-1s"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{target = 3}}}", &o, err) &&
          strstr(err, "stages[1].duration"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {}}", &o, err) && strstr(err, "stages"));

    CHECK(finished("return {executor = 'constant-arrival-rate', rate = 200, duration = '5s', "
                   "pre_allocated_vus = 10, max_vus = 50}", &o, err));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 0, duration = 5}", &o, err) &&
          strstr(err, "options.rate") && strstr(err, "'0'"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 5, duration = 5, "
                    "pre_allocated_vus = 10, max_vus = 2}", &o, err) && strstr(err, "max_vus"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 5, duraton = 5}", &o, err) &&
          strstr(err, "options.duraton") && strstr(err, "unknown"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 5, duration = 5, vus = 3}", &o, err) &&
          strstr(err, "options.vus") && strstr(err, "constant-arrival-rate"));
}

/* Rates and stage targets have ceilings, and the schedule stays countable. */
static void test_rate_limits(void)
{
    struct options o;
    char err[OPTIONS_ERR];
    CHECK(finished("return {executor = 'constant-arrival-rate', rate = 1e9, duration = '1s'}", &o, err));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 1e300, duration = '1s'}", &o, err) &&
          strstr(err, "options.rate") && strstr(err, "1e+300 per 1s") && strstr(err, "1e9 iterations per second"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 2, time_unit = '1ns', duration = 1}",
                    &o, err) && strstr(err, "options.rate") && strstr(err, "per 1e-06ms"));
    CHECK(!finished("return {executor = 'constant-arrival-rate', rate = 1e9, duration = '8000h'}", &o, err) &&
          strstr(err, "2^53"));
    CHECK(!finished("return {executor = 'ramping-arrival-rate', stages = {{duration = 1, target = 2e9}}}",
                    &o, err) && strstr(err, "options.stages[1].target") && strstr(err, "2e+09 per 1s"));
    CHECK(!finished("return {executor = 'ramping-arrival-rate', start_rate = 1e12, stages = {{duration = 1, "
                    "target = 1}}}", &o, err) && strstr(err, "options.start_rate"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{duration = 1, target = 1e300}}}", &o, err) &&
          strstr(err, "options.stages[1].target") && strstr(err, "1000000"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{duration = 1, target = 0/0}}}", &o, err) &&
          strstr(err, "options.stages[1].target") && strstr(err, "nan"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{duration = 1e300, target = 1}}}", &o, err) &&
          strstr(err, "options.stages[1].duration") && strstr(err, "8760h"));
    CHECK(!finished("return {executor = 'ramping-vus', stages = {{duration = '5000h', target = 1}, "
                    "{duration = '5000h', target = 1}}}", &o, err) && strstr(err, "options.stages") &&
          strstr(err, "in all"));
    CHECK(!finished("return {executor = 'per-vu-iterations', vus = 1000000, iterations = 1e15}", &o, err) &&
          strstr(err, "options.iterations") && strstr(err, "2^53"));
    CHECK(!lua_options("return {max_body = 1e300}", &o, err) && strstr(err, "options.max_body") &&
          strstr(err, "1TiB"));
    CHECK(!lua_options("return {lua_memory = '512KB'}", &o, err) && strstr(err, "options.lua_memory") &&
          strstr(err, "'512KB'") && strstr(err, "1MiB"));
    CHECK(lua_options("return {lua_memory = '64MB'}", &o, err) && o.lua_memory == 64000000);
    CHECK(!lua_options("return {threads = 1e300}", &o, err) && strstr(err, "options.threads"));
    CHECK(!lua_options("return {target = 'http://u:SECRET@h:99999'}", &o, err) && !strstr(err, "SECRET"));
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
    test_duration_limits();
    test_cli_options();
    test_cli_ranges();
    test_target_redacted();
    test_lua_options();
    test_finish();
    test_load_shapes();
    test_rate_limits();
    test_scenarios();
    test_max_names();
    return check_report("options");
}
