#include "scenario.h"
#include "embedded.h"
#include "guard.h"
#include "xmalloc.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int exists(const char *p)
{
    return access(p, R_OK) == 0;
}

int scenario_resolve(const char *arg, char *path, size_t len)
{
    if (exists(arg) && (strchr(arg, '/') || strstr(arg, ".lua"))) {
        snprintf(path, len, "%s", arg);
        return 1;
    }
    snprintf(path, len, "scenarios/%s.lua", arg);
    if (!strchr(arg, '/') && exists(path))
        return 1;
    const char *tp = getenv("TIDE_PATH");
    while (tp && *tp && !strchr(arg, '/')) {
        size_t n = strcspn(tp, ":");
        snprintf(path, len, "%.*s/%s.lua", (int)n, tp, arg);
        if (n && exists(path))
            return 1;
        tp += n + (tp[n] == ':');
    }
    char key[256];
    snprintf(key, sizeof key, "scenario:%s", arg);
    if (embedded_find(key)) {
        snprintf(path, len, "builtin:%s", arg);
        return 1;
    }
    return 0;
}

int scenario_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* A file's whole text, malloc'd; NULL (errno set) when unreadable. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            text = xrealloc(text, cap = cap ? cap * 2 : 65536);
        }
        size_t got = fread(text + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    bool ok = text && !ferror(f) && feof(f);
    fclose(f);
    if (!ok) {
        free(text);
        return NULL;
    }
    *len = n;
    return text;
}

bool scenario_read(const char *path, struct scenario_source *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(path, "builtin:", 8) == 0) {
        char key[256];
        snprintf(key, sizeof key, "scenario:%s", path + 8);
        const struct embedded_file *f = embedded_find(key);
        if (!f) {
            snprintf(err, errlen, "%s: no such built-in scenario", path);
            return false;
        }
        snprintf(out->chunkname, sizeof out->chunkname, "@%s", f->path);
        out->text = f->src;
        out->len = f->len;
        return true;
    }
    char *text = read_file(path, &out->len);
    if (!text) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return false;
    }
    snprintf(out->chunkname, sizeof out->chunkname, "@%s", path);
    out->text = out->owned = text;
    return true;
}

void scenario_source_free(struct scenario_source *src)
{
    free(src->owned);
    memset(src, 0, sizeof *src);
}

static int shape_error(char *err, size_t errlen, const char *path, const char *what)
{
    snprintf(err, errlen, "%s: %s", path, what);
    return 2;
}

static const char *bad_field(lua_State *L, int mod)
{
    static const struct { const char *name; int type; } fields[] = {
        {"run", LUA_TFUNCTION}, {"setup", LUA_TFUNCTION}, {"teardown", LUA_TFUNCTION},
        {"options", LUA_TTABLE}, {"description", LUA_TSTRING},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int t = lua_getfield(L, mod, fields[i].name);
        lua_pop(L, 1);
        if (t == fields[i].type || t == LUA_TNIL) /* which functions must exist: run.c asks */
            continue;
        return lua_pushfstring(L, "'%s' must be a %s, got %s", fields[i].name,
                               lua_typename(L, fields[i].type), lua_typename(L, t));
    }
    return NULL;
}

/* Hands Lua the text as luaL_loadfile would read the file: a UTF-8 BOM
 * and a first line starting with '#' (a shebang) skipped, its newline kept
 * so that line numbers stay true. */
struct chunk_reader {
    const char *text;
    size_t len;
    int step;
};

static const char *read_chunk(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    struct chunk_reader *r = ud;
    if (r->step++ == 0) {
        if (r->len >= 3 && memcmp(r->text, "\xEF\xBB\xBF", 3) == 0) {
            r->text += 3;
            r->len -= 3;
        }
        if (r->len && r->text[0] == '#') {
            const char *nl = memchr(r->text, '\n', r->len);
            size_t skip = nl ? (size_t)(nl - r->text) : r->len;
            r->text += skip;
            r->len -= skip;
        }
    }
    *size = r->len;
    r->len = 0;
    return *size ? r->text : NULL;
}

/* A scenario's own modules sit next to it: `require "helpers"` finds
 * DIR/helpers.lua before package.path's entries, whatever the working
 * directory. Built-in scenarios have no directory of their own. */
static void search_beside(lua_State *L, const char *path)
{
    if (strncmp(path, "builtin:", 8) == 0) {
        lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, SCENARIO_DIR_KEY);
        return;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    /* tide.data and tide.http open files relative to it (data_lua.c, request_opts.c) */
    lua_pushstring(L, dir);
    lua_setfield(L, LUA_REGISTRYINDEX, SCENARIO_DIR_KEY);
    if (lua_getglobal(L, "package") != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

int scenario_run_source(lua_State *L, const struct scenario_source *src, char *err, size_t errlen)
{
    const char *path = src->chunkname + 1;
    search_beside(L, path);
    lua_pushcfunction(L, scenario_traceback);
    int h = lua_gettop(L);
    struct chunk_reader reader = {src->text, src->len, 0};
    if (lua_load(L, read_chunk, &reader, src->chunkname, "t") != LUA_OK ||
        guard_pcall(L, 0, 1, h) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, h - 1);
        return 3;
    }
    lua_remove(L, h);
    if (!lua_istable(L, -1)) {
        const char *t = luaL_typename(L, -1);
        lua_pop(L, 1);
        char what[128];
        snprintf(what, sizeof what, "the scenario must return a table with run = function, got %s", t);
        return shape_error(err, errlen, path, what);
    }
    const char *bad = bad_field(L, lua_gettop(L));
    if (bad) {
        int rc = shape_error(err, errlen, path, bad);
        lua_pop(L, 2);
        return rc;
    }
    return 0;
}

int scenario_load(lua_State *L, const char *path, char *err, size_t errlen)
{
    struct scenario_source src;
    if (!scenario_read(path, &src, err, errlen))
        return 3;
    int rc = scenario_run_source(L, &src, err, errlen);
    scenario_source_free(&src);
    return rc;
}

/* Skips a long bracket [[...]] / [==[...]==] starting at p (at '['); NULL if p is none. */
static const char *skip_long(const char *p, const char *end, int *line)
{
    const char *q = p + 1;
    int level = 0;
    while (q < end && *q == '=')
        q++, level++;
    if (q >= end || *q != '[')
        return NULL;
    for (q++; q < end; q++) {
        if (*q == '\n')
            (*line)++;
        if (*q != ']')
            continue;
        const char *r = q + 1;
        int l = 0;
        while (r < end && *r == '=')
            r++, l++;
        if (l == level && r < end && *r == ']')
            return r + 1;
    }
    return end;
}

static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int scenario_target_line(const struct scenario_source *src)
{
    const char *p = src->text, *end = src->text + src->len;
    int line = 1;
    while (p < end) {
        char c = *p;
        if (c == '\n') {
            line++, p++;
        } else if (c == '-' && p + 1 < end && p[1] == '-') {
            const char *after = p[2] == '[' ? skip_long(p + 2, end, &line) : NULL;
            if (after)
                p = after;
            else
                while (p < end && *p != '\n')
                    p++;
        } else if (c == '"' || c == '\'') {
            for (p++; p < end && *p != c && *p != '\n'; p++)
                if (*p == '\\' && p + 1 < end)
                    p++;
            p++;
        } else if (c == '[' && (p + 1 < end && (p[1] == '[' || p[1] == '='))) {
            const char *after = skip_long(p, end, &line);
            p = after ? after : p + 1;
        } else if (c == '.' && p > src->text && ident_char(p[-1]) && end - p >= 7 &&
                   memcmp(p + 1, "target", 6) == 0 && (p + 7 == end || !ident_char(p[7]))) {
            return line;
        } else {
            p++;
        }
    }
    return 0;
}
