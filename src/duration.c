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

bool duration_parse(const char *text, double *seconds)
{
    const char *p = text;
    double total = 0;
    if (!p || !*p)
        return false;
    char *end;
    double bare = strtod(p, &end);
    if (*end == '\0' && end != p && isfinite(bare) && bare >= 0 && p[0] != '-') {
        *seconds = bare;
        return true;
    }
    while (*p) {
        if (!(*p >= '0' && *p <= '9') && *p != '.')
            return false;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v))
            return false;
        p = end;
        double scale = unit_scale(&p);
        if (scale == 0)
            return false;
        total += v * scale;
    }
    *seconds = total;
    return true;
}

bool duration_from_lua(lua_State *L, int idx, double *seconds)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double v = lua_tonumber(L, idx);
        if (!isfinite(v) || v < 0)
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
        const char *got = lua_type(L, arg) == LUA_TSTRING
            ? lua_pushfstring(L, "duration expected, got '%s'", lua_tostring(L, arg))
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
