#include "duration.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double unit_scale(const char **p)
{
    static const struct { const char *name; double scale; } units[] = {
        {"ms", 1e-3}, {"us", 1e-6}, {"µs", 1e-6}, {"ns", 1e-9},
        {"h", 3600}, {"m", 60}, {"s", 1},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        size_t n = strlen(units[i].name);
        if (strncmp(*p, units[i].name, n) == 0) {
            *p += n;
            return units[i].scale;
        }
    }
    return 0;
}

bool decimal_prefix(const char *s, double *v, const char **end)
{
    const char *p = s;
    size_t digits = strspn(p, "0123456789");
    p += digits;
    if (*p == '.') {
        size_t frac = strspn(p + 1, "0123456789");
        digits += frac;
        p += 1 + frac;
    }
    if (digits == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        const char *q = p + 1 + (p[1] == '+' || p[1] == '-');
        size_t exp = strspn(q, "0123456789");
        if (exp)
            p = q + exp;
    }
    char *stop;
    double d = strtod(s, &stop);
    if (stop != p || !isfinite(d))
        return false;
    *v = d;
    *end = p;
    return true;
}

bool duration_parse(const char *text, double *seconds)
{
    const char *p = text, *end;
    double total = 0, v;
    if (!p || !*p)
        return false;
    if (decimal_prefix(p, &v, &end) && *end == '\0') {
        total = v; /* a bare number: seconds */
        p = end;
    }
    while (*p) {
        if (!decimal_prefix(p, &v, &end))
            return false;
        p = end;
        double scale = unit_scale(&p);
        if (scale == 0)
            return false;
        total += v * scale;
    }
    if (!isfinite(total) || total > DURATION_MAX_S)
        return false;
    *seconds = total;
    return true;
}

bool duration_from_lua(lua_State *L, int idx, double *seconds)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double v = lua_tonumber(L, idx);
        if (!isfinite(v) || v < 0 || v > DURATION_MAX_S)
            return false;
        *seconds = v;
        return true;
    }
    if (lua_type(L, idx) == LUA_TSTRING)
        return duration_parse(lua_tostring(L, idx), seconds);
    return false;
}

double duration_check(lua_State *L, int arg)
{
    double s;
    if (!duration_from_lua(L, arg, &s)) {
        const char *got = lua_type(L, arg) == LUA_TSTRING || lua_type(L, arg) == LUA_TNUMBER
            ? lua_pushfstring(L, "duration from 0 to " DURATION_MAX_TEXT " expected, got '%s'",
                              lua_tostring(L, arg))
            : lua_pushfstring(L, "duration expected, got %s", luaL_typename(L, arg));
        luaL_argerror(L, arg, got);
    }
    return s;
}

const char *duration_format(double s, char *buf, unsigned len)
{
    if (s < 1)
        snprintf(buf, len, "%gms", s * 1e3);
    else if (s < 60)
        snprintf(buf, len, "%gs", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%gs", (int)(s / 60), fmod(s, 60));
    else
        snprintf(buf, len, "%dh%dm%gs", (int)(s / 3600), (int)fmod(s, 3600) / 60, fmod(s, 60));
    return buf;
}
