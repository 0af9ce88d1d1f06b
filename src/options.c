#include "options.h"
#include "duration.h"

#include <curl/curl.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY (64ull << 20)
#define DEFAULT_GRACEFUL_STOP 30.0
#define DEFAULT_MAX_DURATION 600.0
#define MAX_VUS 1000000LL

static const char *const executors[] = {"shared-iterations", "per-vu-iterations", "constant-vus", NULL};
static const char *const valid_keys =
    "executor, vus, iterations, duration, graceful_stop, threads, target, max_body, thresholds";

void options_init(struct options *o)
{
    memset(o, 0, sizeof *o);
    o->executor = EXEC_NONE;
    o->duration = -1;
    o->graceful_stop = DEFAULT_GRACEFUL_STOP;
    o->max_body = DEFAULT_MAX_BODY;
}

const char *executor_name(enum executor e)
{
    return e >= 0 && e <= EXEC_CONSTANT_VUS ? executors[e] : "none";
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

static bool parse_size(const char *s, size_t *out)
{
    char *end;
    double v = strtod(s, &end);
    static const struct { const char *suffix; double mul; } units[] = {
        {"", 1}, {"b", 1}, {"kb", 1e3}, {"k", 1024}, {"kib", 1024}, {"mb", 1e6}, {"m", 1048576},
        {"mib", 1048576}, {"gb", 1e9}, {"g", 1073741824}, {"gib", 1073741824},
    };
    if (end == s || !isfinite(v) || v < 1)
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].suffix) == 0) {
            *out = (size_t)(v * units[i].mul);
            return true;
        }
    return false;
}

/* Every option passes through here as text, from Lua or the command line,
 * so both give the same messages. */
static bool set_option(struct options *o, const char *prefix, const char *key, const char *v, char *err)
{
    long long n;
    if (strcmp(key, "executor") == 0) {
        for (int i = 0; executors[i]; i++)
            if (strcmp(v, executors[i]) == 0)
                return o->executor = (enum executor)i, true;
        return fail(err, prefix, key, "unknown executor (valid: shared-iterations, "
                                      "per-vu-iterations, constant-vus)", v);
    }
    if (strcmp(key, "vus") == 0) {
        if (!parse_count(v, 1, MAX_VUS, &n))
            return fail(err, prefix, key, "must be an integer from 1 to 1000000", v);
        return o->vus = n, true;
    }
    if (strcmp(key, "iterations") == 0) {
        if (!parse_count(v, 1, (long long)1 << 53, &n))
            return fail(err, prefix, key, "must be a positive integer", v);
        return o->iterations = n, true;
    }
    if (strcmp(key, "threads") == 0) {
        if (!parse_count(v, 1, 1024, &n))
            return fail(err, prefix, key, "must be an integer from 1 to 1024", v);
        return o->threads = (unsigned)n, true;
    }
    if (strcmp(key, "duration") == 0 || strcmp(key, "graceful_stop") == 0) {
        double d;
        if (!duration_parse(v, &d) || (key[0] == 'd' && d <= 0))
            return fail(err, prefix, key, key[0] == 'd' ? "must be a positive duration like 30s or 1m30s"
                                                        : "must be a duration like 30s", v);
        *(key[0] == 'd' ? &o->duration : &o->graceful_stop) = d;
        return true;
    }
    if (strcmp(key, "target") == 0) {
        if (strlen(v) >= sizeof o->target || !url_valid(v))
            return fail(err, prefix, key, "malformed URL (expected http:// or https://host...)", v);
        snprintf(o->target, sizeof o->target, "%s", v);
        return true;
    }
    if (strcmp(key, "max_body") == 0 || strcmp(key, "max-body") == 0) {
        if (!parse_size(v, &o->max_body))
            return fail(err, prefix, key, "must be a size like 1048576, 64MB or 512KiB", v);
        return true;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "unknown option (valid: %s)", valid_keys);
    return fail(err, prefix, key, msg, NULL);
}

bool options_set_cli(struct options *o, const char *key, const char *value, char *err)
{
    char k[64];
    snprintf(k, sizeof k, "%s", key);
    for (char *p = k; *p; p++)
        if (*p == '-')
            *p = '_';
    return set_option(o, "--", strcmp(k, "max_body") == 0 ? "max-body" : k, value, err);
}

static bool lua_option_text(lua_State *L, const char *key, char *buf, size_t len, char *err)
{
    int t = lua_type(L, -1);
    bool numeric = strcmp(key, "vus") == 0 || strcmp(key, "iterations") == 0 || strcmp(key, "threads") == 0;
    if (t == LUA_TNUMBER && numeric && !lua_isinteger(L, -1)) {
        double d = lua_tonumber(L, -1);
        if (d != floor(d))
            return snprintf(buf, len, "%g", d), fail(err, "options.", key, "must be an integer", buf);
    }
    if (t == LUA_TNUMBER) {
        lua_isinteger(L, -1) ? snprintf(buf, len, "%lld", (long long)lua_tointeger(L, -1))
                             : snprintf(buf, len, "%.17g", lua_tonumber(L, -1));
        return true;
    }
    if (t == LUA_TSTRING && !numeric) {
        snprintf(buf, len, "%s", lua_tostring(L, -1));
        return true;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "expected %s, got %s", numeric ? "a number" : "a string",
             lua_typename(L, t));
    return fail(err, "options.", key, msg, NULL);
}

bool options_from_lua(lua_State *L, int idx, struct options *o, char *err)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char text[2048];
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            return fail(err, "options", "", "keys must be strings", NULL);
        }
        const char *key = lua_tostring(L, -2);
        if (strcmp(key, "thresholds") == 0) { /* checked by lua/tide/thresholds.lua */
            if (!lua_istable(L, -1)) {
                lua_pop(L, 2);
                return fail(err, "options.", key, "expected a table", NULL);
            }
            lua_pop(L, 1);
            continue;
        }
        if (!lua_option_text(L, key, text, sizeof text, err) || !set_option(o, "options.", key, text, err)) {
            lua_pop(L, 2);
            return false;
        }
        lua_pop(L, 1);
    }
    return true;
}

bool options_finish(struct options *o, unsigned cores, char *err)
{
    bool has_duration = o->duration >= 0;
    if (o->executor == EXEC_NONE)
        o->executor = o->iterations || !has_duration ? EXEC_SHARED_ITERATIONS : EXEC_CONSTANT_VUS;
    if (!o->vus)
        o->vus = 1;
    if (o->executor == EXEC_CONSTANT_VUS) {
        if (!has_duration)
            return fail(err, "", "constant-vus", "needs a duration (options.duration or --duration)", NULL);
        if (o->iterations)
            return fail(err, "", "constant-vus", "runs for a duration; 'iterations' does not apply", NULL);
    } else {
        if (!o->iterations)
            o->iterations = 1;
        if (o->executor == EXEC_SHARED_ITERATIONS && o->iterations < o->vus)
            o->vus = o->iterations; /* more users than iterations would only idle */
        if (!has_duration)
            o->duration = DEFAULT_MAX_DURATION;
    }
    if (!o->threads)
        o->threads = cores ? cores : 1;
    if ((long long)o->threads > o->vus)
        o->threads = (unsigned)o->vus;
    return true;
}
