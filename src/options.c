#include "options.h"
#include "once.h"
#include "duration.h"
#include "metrics_lua.h"
#include "redact.h"

#include <curl/curl.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_LUA_MEMORY (1ull << 30)
#define MIN_LUA_MEMORY (1ull << 20)
#define MAX_SIZE (1ull << 40)           /* 1TiB: any larger is a typo, not a buffer */
#define DEFAULT_GRACE 30.0
#define DEFAULT_MAX_DURATION 600.0
#define MAX_VUS 1000000LL
#define MAX_THREADS 1024LL
/* Counts beyond 2^53 stop being exact in the doubles that metrics and Lua hold. */
#define MAX_EXACT (1LL << 53)
/* One arrival per nanosecond: the resolution of the timers that schedule
 * them. Far more than one process can start; the excess is counted in
 * dropped_iterations, which needs the schedule to be finite and countable. */
#define MAX_RATE_PER_S 1e9

static const char *const executors[] = {"shared-iterations", "per-vu-iterations", "constant-vus",
                                        "ramping-vus", "constant-arrival-rate",
                                        "ramping-arrival-rate", NULL};

enum kind { K_EXECUTOR, K_COUNT, K_DURATION, K_POSITIVE, K_NAME, K_STAGES, K_TAGS, K_ENV };

#define E(x) (1u << (x))
#define ITER (E(EXEC_SHARED_ITERATIONS) | E(EXEC_PER_VU_ITERATIONS))
#define ARRIVAL (E(EXEC_CONSTANT_ARRIVAL_RATE) | E(EXEC_RAMPING_ARRIVAL_RATE))
#define ALL (E(EXEC_COUNT) - 1)

/* Every key a scenario takes, and which executors use it. */
static const struct key {
    const char *name;
    enum kind kind;
    size_t off;
    unsigned executors;
} keys[] = {
    {"executor", K_EXECUTOR, offsetof(struct scen, executor), ALL},
    {"exec", K_NAME, offsetof(struct scen, exec), ALL},
    {"tags", K_TAGS, 0, ALL},
    {"env", K_ENV, 0, ALL},
    {"start_time", K_DURATION, offsetof(struct scen, start_time), ALL},
    {"graceful_stop", K_DURATION, offsetof(struct scen, graceful_stop), ALL},
    {"vus", K_COUNT, offsetof(struct scen, vus), ITER | E(EXEC_CONSTANT_VUS)},
    {"iterations", K_COUNT, offsetof(struct scen, iterations), ITER},
    {"duration", K_DURATION, offsetof(struct scen, duration),
     ITER | E(EXEC_CONSTANT_VUS) | E(EXEC_CONSTANT_ARRIVAL_RATE)},
    {"start_vus", K_COUNT, offsetof(struct scen, start_vus), E(EXEC_RAMPING_VUS)},
    {"stages", K_STAGES, 0, E(EXEC_RAMPING_VUS) | E(EXEC_RAMPING_ARRIVAL_RATE)},
    {"graceful_ramp_down", K_DURATION, offsetof(struct scen, graceful_ramp_down), E(EXEC_RAMPING_VUS)},
    {"rate", K_POSITIVE, offsetof(struct scen, rate), E(EXEC_CONSTANT_ARRIVAL_RATE)},
    {"start_rate", K_POSITIVE, offsetof(struct scen, start_rate), E(EXEC_RAMPING_ARRIVAL_RATE)},
    {"time_unit", K_DURATION, offsetof(struct scen, time_unit), ARRIVAL},
    {"pre_allocated_vus", K_COUNT, offsetof(struct scen, pre_allocated_vus), ARRIVAL},
    {"max_vus", K_COUNT, offsetof(struct scen, max_vus), ARRIVAL},
    {NULL, 0, 0, 0},
};

static const char *const global_keys[] = {"threads", "target", "max_body", "lua_memory", "max_names",
                                          "thresholds", "scenarios", "tags",
                                          "compression", "insecure", "ca", "cert", "key", "expect", "http_engine",
                                          NULL};

/* "auto" or "curl" into *curl; false for anything else. */
static bool parse_engine(const char *v, bool *curl)
{
    if (strcmp(v, "auto") == 0 || strcmp(v, "curl") == 0)
        return *curl = v[0] == 'c', true;
    return false;
}

/* TIDE_HTTP_ENGINE, the weakest of the three ways to choose the engine: the
 * scenario's options and the command line are applied over it. Empty counts
 * as unset; a bad value is left for options_finish to name. */
static void engine_from_env(struct http_defaults *h)
{
    const char *v = getenv(ENGINE_ENV);
    if (v && *v)
        parse_engine(v, &h->engine_curl);
}

static void scen_init(struct scen *s, const char *name)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->exec, sizeof s->exec, "run");
    s->executor = EXEC_NONE;
    s->duration = -1;
    s->graceful_stop = DEFAULT_GRACE;
    s->graceful_ramp_down = DEFAULT_GRACE;
    s->time_unit = 1;
    s->start_vus = -1;
    s->start_rate = -1;
}

void options_init(struct options *o)
{
    memset(o, 0, sizeof *o);
    o->nscen = 1;
    scen_init(&o->scen[0], "default");
    o->max_body = DEFAULT_MAX_BODY;
    o->lua_memory = DEFAULT_LUA_MEMORY;
    o->max_names = DEFAULT_MAX_NAMES;
    engine_from_env(&o->http);
}

const char *executor_name(enum executor e)
{
    return e >= 0 && e < EXEC_COUNT ? executors[e] : "none";
}

bool url_valid(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
              (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0) && *host;
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static bool fail(char *err, const char *prefix, const char *key, const char *msg, const char *value)
{
    char shown[160];
    if (value && strlen(value) >= sizeof shown) { /* a runaway value would bury the message */
        snprintf(shown, sizeof shown, "%.150s...", value);
        value = shown;
    }
    char flag[64];
    if (strcmp(prefix, "--") == 0 && strlen(key) < sizeof flag) { /* as typed: --graceful-stop */
        snprintf(flag, sizeof flag, "%s", key);
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;
        key = flag;
    }
    snprintf(err, OPTIONS_ERR, "%s%s: %s%s%s%s", prefix, key, msg, value ? " (got '" : "",
             value ? value : "", value ? "')" : "");
    return false;
}

static bool parse_count(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "65536", "64MB", "512KiB", "1.5GB": bytes from min to max. */
static bool parse_size(const char *s, size_t min, size_t max, size_t *out)
{
    static const struct { const char *suffix; double mul; } units[] = {
        {"", 1}, {"b", 1}, {"kb", 1e3}, {"k", 1024}, {"kib", 1024}, {"mb", 1e6}, {"m", 1048576},
        {"mib", 1048576}, {"gb", 1e9}, {"g", 1073741824}, {"gib", 1073741824},
        {"tb", 1e12}, {"t", 1099511627776.0}, {"tib", 1099511627776.0},
    };
    const char *end;
    double v;
    if (!decimal_prefix(s, &v, &end))
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0) {
            double bytes = floor(v * units[i].mul);
            if (bytes < (double)min || bytes > (double)max)
                return false;
            *out = (size_t)bytes;
            return true;
        }
    return false;
}

static const struct key *find_key(const char *name)
{
    for (const struct key *k = keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static bool set_executor(struct scen *s, const char *prefix, const char *v, char *err)
{
    for (int i = 0; executors[i]; i++)
        if (strcmp(v, executors[i]) == 0)
            return s->executor = (enum executor)i, true;
    return fail(err, prefix, "executor", "unknown executor (valid: shared-iterations, per-vu-iterations, "
                "constant-vus, ramping-vus, constant-arrival-rate, ramping-arrival-rate)", v);
}

/* The range a count key takes. */
static void count_range(const struct key *k, long long *min, long long *max)
{
    *min = strcmp(k->name, "start_vus") == 0 ? 0 : 1;
    *max = strcmp(k->name, "iterations") == 0 ? MAX_EXACT : MAX_VUS;
}

static bool set_count(struct scen *s, const char *prefix, const struct key *k, const char *v, char *err)
{
    long long n, min, max;
    count_range(k, &min, &max);
    if (!parse_count(v, min, max, &n)) {
        char msg[96];
        snprintf(msg, sizeof msg, "must be an integer from %lld to %lld", min, max);
        return fail(err, prefix, k->name, msg, v);
    }
    *(long long *)((char *)s + k->off) = n;
    return true;
}

/* duration and time_unit must be above 0; the others (start_time,
 * graceful_stop, graceful_ramp_down) may be 0. */
static bool set_duration(struct scen *s, const char *prefix, const struct key *k, const char *v, char *err)
{
    double d;
    bool positive = strcmp(k->name, "duration") == 0 || strcmp(k->name, "time_unit") == 0;
    if (!duration_parse(v, &d) || (positive && d <= 0))
        return fail(err, prefix, k->name, positive
                    ? "must be a duration above 0 and at most " DURATION_MAX_TEXT ", like 30s or 1m30s"
                    : "must be a duration from 0 to " DURATION_MAX_TEXT ", like 30s or 1m30s", v);
    *(double *)((char *)s + k->off) = d;
    return true;
}

/* rate and start_rate; how many per second is checked with time_unit, in finish. */
static bool set_rate(struct scen *s, const char *prefix, const struct key *k, const char *v, char *err)
{
    const char *end;
    double d;
    bool zero_ok = strcmp(k->name, "start_rate") == 0;
    if (!decimal_prefix(v, &d, &end) || *end || (d == 0 && !zero_ok))
        return fail(err, prefix, k->name, zero_ok ? "must be a number >= 0" : "must be a number > 0", v);
    *(double *)((char *)s + k->off) = d;
    return true;
}

/* A scalar scenario key given as text (from the command line or Lua). */
static bool set_scen_key(struct scen *s, const char *prefix, const struct key *k, const char *v, char *err)
{
    switch (k->kind) {
    case K_EXECUTOR:
        return set_executor(s, prefix, v, err);
    case K_COUNT:
        return set_count(s, prefix, k, v, err);
    case K_DURATION:
        return set_duration(s, prefix, k, v, err);
    case K_POSITIVE:
        return set_rate(s, prefix, k, v, err);
    case K_NAME:
        if (!*v || strlen(v) >= sizeof s->exec)
            return fail(err, prefix, k->name, "must be a function name", v);
        snprintf(s->exec, sizeof s->exec, "%s", v);
        return true;
    default:
        return fail(err, prefix, k->name, "expected a table", NULL);
    }
}

static bool set_target(struct options *o, const char *prefix, const char *key, const char *v, char *err)
{
    if (strlen(v) < sizeof o->target && url_valid(v)) {
        snprintf(o->target, sizeof o->target, "%s", v);
        return true;
    }
    size_t n = strlen(v) + 4;   /* the password, if any, never reaches the message */
    char *shown = malloc(n);
    if (shown)
        redact_url(v, shown, n);
    fail(err, prefix, key, "malformed URL (expected http:// or https://host...)", shown ? shown : "?");
    free(shown);
    return false;
}

/* "max-body" on the command line is max_body in Lua. */
static bool same_key(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (*a != *b && !((*a == '-' || *a == '_') && (*b == '-' || *b == '_')))
            return false;
    return *a == *b;
}

static size_t size_cap(void)
{
    return MAX_SIZE > SIZE_MAX ? SIZE_MAX : (size_t)MAX_SIZE;
}

static bool set_global(struct options *o, const char *prefix, const char *key, const char *v, char *err)
{
    long long n;
    if (same_key(key, "threads")) {
        if (!parse_count(v, 1, MAX_THREADS, &n))
            return fail(err, prefix, key, "must be an integer from 1 to 1024", v);
        return o->threads = (unsigned)n, true;
    }
    if (same_key(key, "target"))
        return set_target(o, prefix, key, v, err);
    if (same_key(key, "lua_memory"))
        return parse_size(v, MIN_LUA_MEMORY, size_cap(), &o->lua_memory)
            ? true : fail(err, prefix, key, "must be a size from 1MiB to 1TiB, like 256MB or 1GiB", v);
    return parse_size(v, 1, size_cap(), &o->max_body)
        ? true : fail(err, prefix, key, "must be a size from 1 byte to 1TiB, like 1048576, 64MB or 512KiB", v);
}

static bool is_global(const char *key)
{
    for (int i = 0; global_keys[i]; i++)
        if (strcmp(global_keys[i], key) == 0)
            return true;
    return false;
}

static bool unknown_key(char *err, const char *prefix, const char *key)
{
    return fail(err, prefix, key, "unknown option (valid: executor, vus, iterations, duration, "
                "graceful_stop, start_vus, stages, graceful_ramp_down, rate, start_rate, time_unit, "
                "pre_allocated_vus, max_vus, start_time, exec, tags, threads, target, max_body, "
                "lua_memory, max_names, thresholds, scenarios, compression, insecure, ca, cert, key, "
                "expect, http_engine, env (in scenarios.NAME))", NULL);
}

/* ---------------- tide.http's defaults: compression, TLS, expect ---------------- */

static bool parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        return *out = true, true;
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        return *out = false, true;
    return false;
}

/* A path given on the command line is made absolute now (requests resolve
 * relative paths against the scenario's directory); one from the scenario
 * is kept as written. */
static bool set_http_path(char *dst, const char *prefix, const char *key, const char *v, char *err)
{
    char abs[4096];
    bool cli = strcmp(prefix, "--") == 0;
    if (!*v)
        return fail(err, prefix, key, "expected a file name", NULL);
    if (cli && !realpath(v, abs)) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot read the file: %s", strerror(errno));
        return fail(err, prefix, key, msg, v);
    }
    const char *path = cli ? abs : v;
    size_t n = strlen(path);
    if (n >= HTTP_PATH_MAX)
        return fail(err, prefix, key, "path too long (at most 1023 bytes)", NULL);
    memcpy(dst, path, n + 1);
    return true;
}

/* compression, insecure, ca, cert, key, http_engine from the command line
 * (or a Lua value turned into text); false when key is none of them. */
static bool set_http_key(struct options *o, const char *prefix, const char *key, const char *v, char *err,
                         bool *known)
{
    struct http_defaults *h = &o->http;
    bool b;
    *known = true;
    if (same_key(key, "compression") || same_key(key, "insecure")) {
        if (!parse_bool(v, &b))
            return fail(err, prefix, key, "must be true or false", v);
        if (same_key(key, "compression"))
            h->no_compression = !b;
        else
            h->insecure = b;
        return true;
    }
    if (same_key(key, "http_engine"))
        return parse_engine(v, &h->engine_curl) ? true : fail(err, prefix, key, "must be auto or curl", v);
    char *path = same_key(key, "ca") ? h->ca : same_key(key, "cert") ? h->cert
               : same_key(key, "key") ? h->key : NULL;
    if (path)
        return set_http_path(path, prefix, key, v, err);
    *known = false;
    return false;
}

bool options_status_list(lua_State *L, int idx, int out[MAX_EXPECT], int *n)
{
    lua_Integer len = luaL_len(L, idx);
    bool ok = len >= 1 && len <= MAX_EXPECT;
    idx = lua_absindex(L, idx);
    *n = 0;
    for (lua_Integer i = 1; ok && i <= len; i++, lua_pop(L, 1)) {
        lua_Integer st = 0;
        ok = lua_geti(L, idx, i) == LUA_TNUMBER && lua_isinteger(L, -1) &&
             (st = lua_tointeger(L, -1)) >= 100 && st <= 999;
        out[(*n)++] = (int)st;
    }
    return ok;
}

/* options.expect: the statuses counted as a success in http_req_failed. */
static bool read_expect(lua_State *L, int idx, struct http_defaults *h, char *err)
{
    int t = lua_getfield(L, idx, "expect");
    bool ok = t == LUA_TNIL || (t == LUA_TTABLE && options_status_list(L, -1, h->expect, &h->nexpect));
    lua_settop(L, idx);
    return ok ? true : fail(err, "options.", "expect", "expected a list of 1 to 32 statuses (100 to 999), "
                            "like { 200, 404 }", NULL);
}

/* options.http_engine = "auto" | "curl": over TIDE_HTTP_ENGINE, under --http-engine. */
static bool read_engine(lua_State *L, int idx, struct options *o, char *err)
{
    int t = lua_getfield(L, idx, "http_engine");
    bool known, ok = t == LUA_TNIL;
    if (t == LUA_TSTRING)
        ok = set_http_key(o, "options.", "http_engine", lua_tostring(L, -1), err, &known);
    else if (!ok)
        fail(err, "options.", "http_engine", "expected \"auto\" or \"curl\"", NULL);
    lua_settop(L, idx);
    return ok;
}

static bool read_http(lua_State *L, int idx, struct options *o, char *err)
{
    static const char *const names[] = {"compression", "insecure", "ca", "cert", "key", NULL};
    int top = lua_gettop(L);
    for (int i = 0; names[i]; i++) {
        int t = lua_getfield(L, idx, names[i]);
        bool flag = i < 2, known, ok = t == LUA_TNIL;
        if (t == (flag ? LUA_TBOOLEAN : LUA_TSTRING))
            ok = set_http_key(o, "options.", names[i], flag ? (lua_toboolean(L, -1) ? "true" : "false")
                              : lua_tostring(L, -1), err, &known);
        else if (!ok)
            fail(err, "options.", names[i], flag ? "expected true or false" : "expected a file name", NULL);
        lua_settop(L, top);
        if (!ok)
            return false;
    }
    return read_expect(L, idx, &o->http, err) && read_engine(L, idx, o, err);
}

/* ---------------- max_names: request names with a series of their own ---------------- */

#define MAX_NAMES_LIMIT 10000000

static bool lua_text(lua_State *L, const char *prefix, const struct key *k, char *buf, size_t len, char *err);

static bool set_max_names(struct options *o, const char *prefix, const char *key, const char *v, char *err)
{
    long long n;
    if (!parse_count(v, 1, MAX_NAMES_LIMIT, &n))
        return fail(err, prefix, key, "must be an integer from 1 to 10000000", v);
    o->max_names = (size_t)n;
    return true;
}

static bool read_max_names(lua_State *L, int idx, struct options *o, char *err)
{
    static const struct key k = {"max_names", K_COUNT, 0, 0};
    char text[64];
    bool ok = lua_getfield(L, idx, "max_names") == LUA_TNIL ||
              (lua_text(L, "options.", &k, text, sizeof text, err) &&
               set_max_names(o, "options.", "max_names", text, err));
    lua_pop(L, 1);
    return ok;
}

bool options_set_cli(struct options *o, const char *key, const char *value, char *err)
{
    char k[64];
    snprintf(k, sizeof k, "%s", key);
    for (char *p = k; *p; p++)
        if (*p == '-')
            *p = '_';
    if (strcmp(k, "threads") == 0 || strcmp(k, "target") == 0 || strcmp(k, "max_body") == 0 ||
        strcmp(k, "lua_memory") == 0)
        return set_global(o, "--", key, value, err);
    if (strcmp(k, "max_names") == 0)
        return set_max_names(o, "--", key, value, err);
    bool http_key, ok = set_http_key(o, "--", k, value, err, &http_key);
    if (http_key)
        return ok;
    const struct key *d = find_key(k);
    if (!d || d->kind == K_STAGES || d->kind == K_TAGS || d->kind == K_ENV)
        return unknown_key(err, "--", key);
    if (o->named)
        return fail(err, "--", key, "the scenario defines options.scenarios; set it there", NULL);
    struct scen *s = &o->scen[0];
    s->given |= 1u << (d - keys);
    return set_scen_key(s, "--", d, value, err);
}

/* ---------------- from Lua ---------------- */

static bool lua_text(lua_State *L, const char *prefix, const struct key *k, char *buf, size_t len, char *err)
{
    int t = lua_type(L, -1);
    bool numeric = k->kind == K_COUNT || k->kind == K_POSITIVE;
    if (t == LUA_TNUMBER && k->kind == K_COUNT && !lua_isinteger(L, -1)) {
        double d = lua_tonumber(L, -1);
        if (d != floor(d))
            return snprintf(buf, len, "%g", d), fail(err, prefix, k->name, "must be an integer", buf);
    }
    if (t == LUA_TNUMBER) {
        lua_isinteger(L, -1) ? snprintf(buf, len, "%lld", (long long)lua_tointeger(L, -1))
                             : snprintf(buf, len, "%.17g", lua_tonumber(L, -1));
        return k->kind != K_EXECUTOR && k->kind != K_NAME ? true
               : fail(err, prefix, k->name, "expected a string, got number", NULL);
    }
    if (t == LUA_TSTRING && !numeric) {
        snprintf(buf, len, "%s", lua_tostring(L, -1));
        return true;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "expected %s, got %s", numeric ? "a number" : "a string", lua_typename(L, t));
    return fail(err, prefix, k->name, msg, NULL);
}

/* What a Lua value was, for a message: its text, or its type. */
static const char *shown_value(lua_State *L, int idx, char *buf, size_t len)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        lua_isinteger(L, idx) ? snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx))
                              : snprintf(buf, len, "%.17g", lua_tonumber(L, idx));
    else
        snprintf(buf, len, "%s", lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : luaL_typename(L, idx));
    return buf;
}

/* The target's upper bound depends on the executor (users or a rate): see check_stages. */
static bool read_stage(lua_State *L, struct stage *st, const char *prefix, int i, char *err)
{
    char where[96], shown[64];
    snprintf(where, sizeof where, "stages[%d]", i);
    if (!lua_istable(L, -1))
        return fail(err, prefix, where, "expected {duration = ..., target = ...}", NULL);
    lua_getfield(L, -1, "duration");
    bool ok = duration_from_lua(L, -1, &st->duration) && st->duration > 0;
    shown_value(L, -1, shown, sizeof shown);
    lua_pop(L, 1);
    if (!ok)
        return fail(err, prefix, strcat(where, ".duration"),
                    "must be a duration above 0 and at most " DURATION_MAX_TEXT, shown);
    lua_getfield(L, -1, "target");
    ok = lua_type(L, -1) == LUA_TNUMBER && (st->target = lua_tonumber(L, -1)) >= 0 && isfinite(st->target);
    shown_value(L, -1, shown, sizeof shown);
    lua_pop(L, 1);
    return ok ? true : fail(err, prefix, strcat(where, ".target"), "must be a number >= 0", shown);
}

static bool read_stages(lua_State *L, struct scen *s, const char *prefix, char *err)
{
    if (!lua_istable(L, -1))
        return fail(err, prefix, "stages", "expected a list of {duration = ..., target = ...}", NULL);
    lua_Integer n = luaL_len(L, -1);
    if (n < 1 || n > MAX_STAGES)
        return fail(err, prefix, "stages", "needs 1 to 64 stages", NULL);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        bool ok = read_stage(L, &s->stages[i - 1], prefix, (int)i, err);
        lua_pop(L, 1);
        if (!ok)
            return false;
    }
    s->nstages = (int)n;
    return true;
}

static bool merge_into(lua_State *L, int merged, int src, const char *prefix, char *err)
{
    if (!src || lua_isnil(L, src))
        return true;
    if (!lua_istable(L, src))
        return fail(err, prefix, "tags", "expected a table", NULL);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, merged);
    }
    return true;
}

/* The scenario's tag key: options.tags, then its own tags, then scenario=NAME. */
static bool read_tags(lua_State *L, struct scen *s, int global_tags, int own_tags, bool named,
                      const char *prefix, char *err)
{
    lua_newtable(L);
    int merged = lua_gettop(L);
    bool ok = merge_into(L, merged, global_tags, "options.", err) &&
              merge_into(L, merged, own_tags, prefix, err);
    if (ok && named) {
        lua_pushstring(L, s->name);
        lua_setfield(L, merged, "scenario");
    }
    const char *why = ok ? metrics_lua_tagkey(L, merged, s->tags, sizeof s->tags, &s->tags_len) : NULL;
    lua_settop(L, merged - 1);
    return ok && (why ? fail(err, prefix, "tags", why, NULL) : true);
}

/* options.scenarios.NAME.env: strings (or numbers) by name, packed as
 * "KEY=VALUE\0" for the engine threads, which lay them over --env. */
static bool read_env(lua_State *L, struct scen *s, const char *prefix, char *err)
{
    if (!lua_istable(L, -1))
        return fail(err, prefix, "env", "expected a table of KEY = \"value\"", NULL);
    int t = lua_gettop(L);
    size_t used = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t klen, vlen;
        int vt = lua_type(L, -1);
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
        if (!key || !klen || strchr(key, '=') || strlen(key) != klen)
            return lua_settop(L, t), fail(err, prefix, "env", "keys must be names (strings without '=')", NULL);
        lua_pushvalue(L, -1); /* a number becomes text on the copy, not under lua_next */
        const char *v = vt == LUA_TSTRING || vt == LUA_TNUMBER ? lua_tolstring(L, -1, &vlen) : NULL;
        char where[96];
        snprintf(where, sizeof where, "env.%.80s", key);
        if (!v || strlen(v) != vlen) {
            fail(err, prefix, where, vt == LUA_TSTRING ? "contains a NUL byte" : "must be a string",
                 v ? NULL : lua_typename(L, vt));
            return lua_settop(L, t), false;
        }
        int n = snprintf(s->env + used, sizeof s->env - used, "%s=%s", key, v);
        if (n < 0 || (size_t)n >= sizeof s->env - used)
            return lua_settop(L, t), fail(err, prefix, "env", "is too large (at most 4096 bytes of "
                                          "KEY=VALUE in a scenario)", NULL);
        used += (size_t)n + 1;
        lua_pop(L, 2);
    }
    s->env_len = used;
    return true;
}

/* Reads the scenario keys of the table on top of the stack. */
static bool read_scen(lua_State *L, struct scen *s, const char *prefix, bool top_level, char *err)
{
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        char text[2048];
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_settop(L, t);
            return fail(err, prefix, "", "keys must be strings", NULL);
        }
        const char *name = lua_tostring(L, -2);
        const struct key *k = find_key(name);
        bool ok = true;
        if (!k && !(top_level && is_global(name)))
            ok = unknown_key(err, prefix, name);
        else if (k && k->kind == K_STAGES)
            ok = read_stages(L, s, prefix, err);
        else if (k && k->kind == K_ENV)
            ok = top_level ? fail(err, prefix, "env", "goes in options.scenarios.NAME.env (for that "
                                  "scenario's users); for every user use --env KEY=VALUE", NULL)
                           : read_env(L, s, prefix, err);
        else if (k && k->kind != K_TAGS && k->kind != K_ENV)
            ok = lua_text(L, prefix, k, text, sizeof text, err) && set_scen_key(s, prefix, k, text, err);
        if (!ok) {
            lua_settop(L, t);
            return false;
        }
        if (k)
            s->given |= 1u << (k - keys);
        lua_pop(L, 1);
    }
    return true;
}

static bool read_globals(lua_State *L, int idx, struct options *o, char *err)
{
    if (!read_max_names(L, idx, o, err) || !read_http(L, idx, o, err))
        return false;
    /* sizes may be numbers of bytes, so integers then */
    static const char *const scalar[] = {"threads", "target", "max_body", "lua_memory"};
    for (int i = 0; i < 4; i++) {
        char text[sizeof o->target + 1];
        struct key k = {scalar[i], i == 0 ? K_COUNT : K_NAME, 0, 0};
        bool ok = true;
        int t = lua_getfield(L, idx, scalar[i]);
        if (t == LUA_TNUMBER && i >= 2)
            k.kind = K_COUNT;
        if (t == LUA_TSTRING && lua_rawlen(L, -1) >= sizeof o->target)
            ok = fail(err, "options.", scalar[i], "is too long (at most 2047 bytes)", NULL);
        else if (t != LUA_TNIL)
            ok = lua_text(L, "options.", &k, text, sizeof text, err) &&
                 set_global(o, "options.", scalar[i], text, err);
        lua_pop(L, 1);
        if (!ok)
            return false;
    }
    if (lua_getfield(L, idx, "thresholds") != LUA_TNIL && !lua_istable(L, -1))
        return lua_pop(L, 1), fail(err, "options.", "thresholds", "expected a table", NULL);
    lua_pop(L, 1);
    return true;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct scen *)a)->name, ((const struct scen *)b)->name);
}

static bool read_named(lua_State *L, int idx, struct options *o, char *err)
{
    int tbl = lua_gettop(L);
    o->named = true;
    o->nscen = 0;
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        char prefix[128];
        if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
            return lua_settop(L, tbl), fail(err, "options.", "scenarios", "expected name = {executor = ...} pairs", NULL);
        if (o->nscen == MAX_SCENARIOS)
            return lua_settop(L, tbl), fail(err, "options.", "scenarios", "at most 16 scenarios", NULL);
        struct scen *s = &o->scen[o->nscen++];
        scen_init(s, lua_tostring(L, -2));
        snprintf(prefix, sizeof prefix, "options.scenarios.%.60s.", s->name);
        lua_getfield(L, idx, "tags");
        int global_tags = lua_gettop(L);
        lua_pushvalue(L, -2);
        bool ok = read_scen(L, s, prefix, false, err);
        lua_getfield(L, -1, "tags");
        ok = ok && read_tags(L, s, global_tags, lua_gettop(L), true, prefix, err);
        lua_pop(L, 4);
        if (!ok)
            return lua_settop(L, tbl), false;
    }
    if (o->nscen == 0)
        return fail(err, "options.", "scenarios", "is empty", NULL);
    /* in name order, not the table's (its hash order differs from process to
     * process): the scenarios' blocks of vu.id must be the same in every
     * segment of a run, whichever host runs it */
    qsort(o->scen, (size_t)o->nscen, sizeof o->scen[0], by_name);
    return true;
}

bool options_from_lua(lua_State *L, int idx, struct options *o, char *err)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    bool ok = read_globals(L, idx, o, err);
    if (ok && lua_getfield(L, idx, "scenarios") != LUA_TNIL) {
        ok = lua_istable(L, -1) ? read_named(L, idx, o, err)
                                : fail(err, "options.", "scenarios", "expected a table", NULL);
        for (const struct key *k = keys; ok && k->name; k++)
            if (k->kind != K_TAGS && (lua_getfield(L, idx, k->name), !lua_isnil(L, -1)))
                ok = fail(err, "options.", k->name, "goes inside each of options.scenarios", NULL);
    } else if (ok) {
        lua_getfield(L, idx, "tags");
        int tags = lua_gettop(L);
        lua_pushvalue(L, idx);
        ok = read_scen(L, &o->scen[0], "options.", true, err) &&
             read_tags(L, &o->scen[0], tags, 0, false, "options.", err);
    }
    lua_settop(L, top);
    return ok;
}

/* ---------------- defaults and combinations ---------------- */

static double stages_total(const struct scen *s)
{
    double t = 0;
    for (int i = 0; i < s->nstages; i++)
        t += s->stages[i].duration;
    return t;
}

static enum executor default_executor(const struct scen *s)
{
    if (s->nstages)
        return EXEC_RAMPING_VUS;
    return s->iterations || s->duration < 0 ? EXEC_SHARED_ITERATIONS : EXEC_CONSTANT_VUS;
}

static bool check_keys(const struct scen *s, const char *prefix, char *err)
{
    for (const struct key *k = keys; k->name; k++) {
        if (!(s->given & (1u << (k - keys))) || (k->executors & E(s->executor)))
            continue;
        char msg[160];
        snprintf(msg, sizeof msg, "does not apply to %s", executor_name(s->executor));
        return fail(err, prefix, k->name, msg, NULL);
    }
    return true;
}

/* Arrivals per second at a rate given per time_unit. */
static double per_second(const struct scen *s, double rate)
{
    return rate / s->time_unit;
}

static bool check_rate(const struct scen *s, const char *prefix, const char *what, double rate, char *err)
{
    if (per_second(s, rate) <= MAX_RATE_PER_S)
        return true;
    char got[96], unit[32];
    snprintf(got, sizeof got, "%g per %s", rate, duration_format(s->time_unit, unit, sizeof unit));
    return fail(err, prefix, what, "is more than tide can schedule: at most 1e9 iterations per second "
                "in a scenario (one per nanosecond, the resolution of its timers)", got);
}

/* Every stage's target: users (ramping-vus) or a rate (ramping-arrival-rate). */
static bool check_stages(const struct scen *s, const char *prefix, char *err)
{
    for (int i = 0; i < s->nstages; i++) {
        char where[64], got[64];
        snprintf(where, sizeof where, "stages[%d].target", i + 1);
        double target = s->stages[i].target;
        if (s->executor == EXEC_RAMPING_VUS && target > (double)MAX_VUS) {
            snprintf(got, sizeof got, "%.17g", target);
            return fail(err, prefix, where, "must be a number of users from 0 to 1000000", got);
        }
        if (s->executor == EXEC_RAMPING_ARRIVAL_RATE && !check_rate(s, prefix, where, target, err))
            return false;
    }
    return true;
}

/* How many iterations an arrival-rate schedule starts in all. */
static double scheduled_arrivals(const struct scen *s)
{
    if (s->executor == EXEC_CONSTANT_ARRIVAL_RATE)
        return per_second(s, s->rate) * s->duration;
    double n = 0, from = s->start_rate;
    for (int i = 0; i < s->nstages; i++) {
        n += per_second(s, (from + s->stages[i].target) / 2) * s->stages[i].duration;
        from = s->stages[i].target;
    }
    return n;
}

static bool finish_arrival(struct scen *s, const char *prefix, char *err)
{
    if (s->executor == EXEC_CONSTANT_ARRIVAL_RATE && s->rate <= 0)
        return fail(err, prefix, "rate", "is required and must be > 0", NULL);
    if (s->executor == EXEC_CONSTANT_ARRIVAL_RATE && s->duration < 0)
        return fail(err, prefix, "duration", "is required for constant-arrival-rate", NULL);
    if (s->executor == EXEC_RAMPING_ARRIVAL_RATE && !s->nstages)
        return fail(err, prefix, "stages", "are required for ramping-arrival-rate", NULL);
    if (s->start_rate < 0)
        s->start_rate = 0;
    if (!check_rate(s, prefix, s->executor == EXEC_CONSTANT_ARRIVAL_RATE ? "rate" : "start_rate",
                    s->executor == EXEC_CONSTANT_ARRIVAL_RATE ? s->rate : s->start_rate, err))
        return false;
    if (!s->pre_allocated_vus)
        s->pre_allocated_vus = s->max_vus ? s->max_vus : 1;
    if (!s->max_vus)
        s->max_vus = s->pre_allocated_vus;
    if (s->max_vus < s->pre_allocated_vus) {
        char v[64];
        snprintf(v, sizeof v, "%lld < pre_allocated_vus %lld", s->max_vus, s->pre_allocated_vus);
        return fail(err, prefix, "max_vus", "must not be below pre_allocated_vus", v);
    }
    if (s->executor == EXEC_RAMPING_ARRIVAL_RATE)
        s->duration = stages_total(s);
    if (scheduled_arrivals(s) > (double)MAX_EXACT) {
        char v[64];
        snprintf(v, sizeof v, "%.6g iterations", scheduled_arrivals(s));
        return fail(err, prefix, s->executor == EXEC_CONSTANT_ARRIVAL_RATE ? "rate" : "stages",
                    "schedules more iterations than can be counted exactly (at most 2^53 in a scenario)", v);
    }
    return true;
}

static bool finish_scen(struct scen *s, const char *prefix, char *err)
{
    if (s->executor == EXEC_NONE)
        s->executor = default_executor(s);
    if (!check_keys(s, prefix, err) || !check_stages(s, prefix, err))
        return false;
    if (stages_total(s) > DURATION_MAX_S) {
        char v[64], d[32];
        snprintf(v, sizeof v, "%s in all", duration_format(stages_total(s), d, sizeof d));
        return fail(err, prefix, "stages", "must last at most " DURATION_MAX_TEXT " in all", v);
    }
    switch (s->executor) {
    case EXEC_CONSTANT_VUS:
        if (s->duration < 0)
            return fail(err, prefix, "duration", "is required for constant-vus", NULL);
        break;
    case EXEC_RAMPING_VUS:
        if (!s->nstages)
            return fail(err, prefix, "stages", "are required for ramping-vus", NULL);
        if (s->start_vus < 0)
            s->start_vus = 1;
        s->duration = stages_total(s);
        break;
    case EXEC_CONSTANT_ARRIVAL_RATE:
    case EXEC_RAMPING_ARRIVAL_RATE:
        return finish_arrival(s, prefix, err);
    default:
        if (!s->iterations)
            s->iterations = 1;
        if (s->duration < 0)
            s->duration = DEFAULT_MAX_DURATION;
        break;
    }
    if (!s->vus)
        s->vus = 1;
    if (s->executor == EXEC_PER_VU_ITERATIONS && (double)s->vus * (double)s->iterations > (double)MAX_EXACT) {
        char v[64];
        snprintf(v, sizeof v, "%lld users x %lld", s->vus, s->iterations);
        return fail(err, prefix, "iterations", "in all must be at most 2^53 (9007199254740992)", v);
    }
    if (s->executor == EXEC_SHARED_ITERATIONS && s->iterations < s->vus)
        s->vus = s->iterations; /* more users than iterations would only idle */
    return true;
}

long long scen_max_vus(const struct scen *s)
{
    switch (s->executor) {
    case EXEC_RAMPING_VUS: {
        double m = (double)s->start_vus;
        for (int i = 0; i < s->nstages; i++)
            m = fmax(m, s->stages[i].target);
        return (long long)ceil(m);
    }
    case EXEC_CONSTANT_ARRIVAL_RATE:
    case EXEC_RAMPING_ARRIVAL_RATE:
        return s->max_vus;
    default:
        return s->vus;
    }
}

double scen_end(const struct scen *s)
{
    double ramp = s->executor == EXEC_RAMPING_VUS ? s->graceful_ramp_down : 0;
    return s->start_time + s->duration + fmax(s->graceful_stop, ramp);
}

long long options_total_vus(const struct options *o)
{
    long long n = 0;
    for (int i = 0; i < o->nscen; i++)
        n += scen_max_vus(&o->scen[i]);
    return n;
}

bool options_finish(struct options *o, unsigned cores, char *err)
{
    const char *engine = getenv(ENGINE_ENV);
    bool curl;
    if (engine && *engine && !parse_engine(engine, &curl))
        return fail(err, "", ENGINE_ENV, "must be auto or curl", engine);
    for (int i = 0; i < o->nscen; i++) {
        char prefix[128] = "options.";
        if (o->named)
            snprintf(prefix, sizeof prefix, "options.scenarios.%.60s.", o->scen[i].name);
        if (!finish_scen(&o->scen[i], prefix, err))
            return false;
    }
    long long vus = options_total_vus(o);
    if (!o->threads)
        o->threads = cores ? cores : 1;
    if (vus > 0 && (long long)o->threads > vus)
        o->threads = (unsigned)vus;
    return true;
}
