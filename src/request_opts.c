/* tide.http's request options beyond the basics: compression, auth, files
 * (multipart), TLS, http_version, tags and expect. Read from the options
 * table into plain data (struct treq, struct req_more) that any transport
 * can honour; nothing here knows libcurl. */
#include "guard.h"
#include "metrics_lua.h"
#include "options.h"
#include "req.h"
#include "scenario.h" /* SCENARIO_DIR_KEY: where relative paths start (absent at the prompt) */

#include <errno.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>


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

/* Pushes opts[key]; returns its type (LUA_TNIL when there are no options). */
static int get_opt(lua_State *L, int opts, const char *key)
{
    if (!opts) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, opts, key);
}

/* ---------------- the request's own strings ---------------- */

/* Strings are stored as offsets + 1 (0: NULL) until every one is in:
 * appending may move the store. */
/* Most requests name none of these options and use no default that needs
 * it: a user's request then carries 8 bytes for them, not 700. */
static struct req_more *more_of(lua_State *L, struct req *r)
{
    if (!r->more) {
        r->more = calloc(1, sizeof *r->more);
        if (!r->more)
            luaL_error(L, "out of memory");
        r->more->expect_fn = LUA_NOREF;
    }
    return r->more;
}

static uintptr_t keep(lua_State *L, struct req *r, const char *s, size_t len)
{
    struct buf *b = &more_of(L, r)->store;
    uintptr_t off = b->len + 1;
    if (!buf_append(b, s, len) || !buf_append(b, "", 1))
        luaL_error(L, "out of memory");
    return off;
}

static const char *at(const struct req *r, uintptr_t off)
{
    return off ? r->more->store.data + off - 1 : NULL; /* off: keep made more */
}

/* A path as the transport opens it: relative to the scenario's directory.
 * A file that cannot be read is an error naming it, before anything is sent. */
static uintptr_t keep_path(lua_State *L, struct req *r, const char *fn, const char *opt, const char *path)
{
    char full[4096];
    const char *dir = NULL;
    if (path[0] != '/') {
        lua_getfield(L, LUA_REGISTRYINDEX, SCENARIO_DIR_KEY);
        dir = lua_tostring(L, -1); /* NULL at the prompt: the current directory */
    }
    int n = dir ? snprintf(full, sizeof full, "%s/%s", dir, path) : snprintf(full, sizeof full, "%s", path);
    if (path[0] != '/')
        lua_pop(L, 1);
    if (n < 0 || (size_t)n >= sizeof full)
        luaL_error(L, "http.%s: option '%s': path too long: '%s'", fn, opt, path);
    if (access(full, R_OK) != 0)
        luaL_error(L, "http.%s: option '%s': cannot read '%s'%s%s%s: %s", fn, opt, path,
                   dir ? " (" : "", dir ? full : "", dir ? ")" : "", strerror(errno));
    return keep(L, r, full, (size_t)n);
}

/* ---------------- compression ---------------- */

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

/* ---------------- auth ---------------- */

/* auth = { user, password [, "basic" | "digest"] } */
static void read_auth(lua_State *L, struct req *r, const char *fn, int opts, uintptr_t *user, uintptr_t *pass)
{
    r->q.auth = TAUTH_NONE;
    *user = *pass = 0;
    int t = get_opt(L, opts, "auth");
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    int a = lua_gettop(L);
    if (t != LUA_TTABLE || lua_geti(L, a, 1) != LUA_TSTRING || lua_geti(L, a, 2) != LUA_TSTRING)
        luaL_error(L, "http.%s: option 'auth': { user, password } or { user, password, \"digest\" } "
                      "expected (strings)", fn);
    size_t ulen, plen;
    const char *u = lua_tolstring(L, a + 1, &ulen), *p = lua_tolstring(L, a + 2, &plen);
    if (memchr(u, '\0', ulen) || memchr(p, '\0', plen) || memchr(u, ':', ulen))
        luaL_error(L, "http.%s: option 'auth': the user may not hold ':' or NUL, the password NUL", fn);
    r->q.auth = TAUTH_BASIC;
    if (lua_geti(L, a, 3) != LUA_TNIL) {
        const char *scheme = lua_tostring(L, -1);
        if (scheme && strcasecmp(scheme, "digest") == 0)
            r->q.auth = TAUTH_DIGEST;
        else if (!scheme || strcasecmp(scheme, "basic") != 0)
            luaL_error(L, "http.%s: option 'auth': the scheme (third item) must be \"basic\" or \"digest\"", fn);
    }
    *user = keep(L, r, u, ulen);
    *pass = keep(L, r, p, plen);
    lua_settop(L, a - 1);
}

/* ---------------- files: a multipart/form-data body ---------------- */

bool req_opts_multipart(lua_State *L, int opts)
{
    if (!opts || !lua_istable(L, opts))
        return false;
    bool files = lua_getfield(L, opts, "files") != LUA_TNIL;
    lua_pop(L, 1);
    return files;
}

static uintptr_t keep_value(lua_State *L, struct req *r, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return keep(L, r, s, len);
}

/* A string field of a file's table (nil: 0). */
static uintptr_t file_field(lua_State *L, struct req *r, const char *fn, int spec, const char *field,
                            const char *key)
{
    int t = lua_getfield(L, spec, field);
    uintptr_t v = 0;
    if (t == LUA_TSTRING)
        v = keep_value(L, r, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "http.%s: option 'files': '%s'.%s must be a string, got %s", fn, key, field,
                   luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

static void add_part(lua_State *L, struct req *r, const struct tpart *p)
{
    if (!buf_append(&more_of(L, r)->parts, p, sizeof *p))
        luaL_error(L, "out of memory");
}

/* files = { field = { path = ... } | { data = ..., filename = ..., content_type = ... } } */
static void add_file(lua_State *L, struct req *r, const char *fn, int key, int spec)
{
    const char *k = lua_type(L, key) == LUA_TSTRING ? lua_tostring(L, key) : NULL;
    if (!k || !lua_istable(L, spec))
        luaL_error(L, "http.%s: option 'files': field = { path = ... } or { data = ..., filename = ... } "
                      "expected, got %s = %s", fn, k ? k : luaL_typename(L, key), luaL_typename(L, spec));
    struct tpart p = {.name = (const char *)keep_value(L, r, key)};
    lua_getfield(L, spec, "path");
    lua_getfield(L, spec, "data");
    bool has_path = !lua_isnil(L, -2), has_data = !lua_isnil(L, -1);
    if (has_path == has_data || (has_path && lua_type(L, -2) != LUA_TSTRING) ||
        (has_data && lua_type(L, -1) != LUA_TSTRING))
        luaL_error(L, "http.%s: option 'files': '%s' needs a path or data (a string), one of the two", fn, k);
    if (has_data) {
        p.data = (const char *)keep_value(L, r, -1);
        p.data_len = lua_rawlen(L, -1);
    } else {
        p.path = (const char *)keep_path(L, r, fn, "files", lua_tostring(L, -2));
    }
    lua_pop(L, 2);
    p.filename = (const char *)file_field(L, r, fn, spec, "filename", k);
    p.content_type = (const char *)file_field(L, r, fn, spec, "content_type", k);
    if (!p.filename) { /* a file part always has a filename: the path's last part, or the field's */
        const char *from = has_path ? lua_tostring(L, (lua_getfield(L, spec, "path"), -1)) : k;
        const char *slash = strrchr(from, '/');
        p.filename = (const char *)keep(L, r, slash ? slash + 1 : from, strlen(slash ? slash + 1 : from));
        if (has_path)
            lua_pop(L, 1);
    }
    add_part(L, r, &p);
}

/* The form's fields become parts (lists repeat the field), then the files. */
static void add_form_fields(lua_State *L, struct req *r, const char *fn, int form)
{
    lua_pushnil(L);
    while (lua_next(L, form)) {
        int key = lua_gettop(L) - 1, val = lua_gettop(L);
        if (lua_type(L, key) != LUA_TSTRING)
            luaL_error(L, "http.%s: option 'form': keys must be strings", fn);
        int n = lua_istable(L, val) ? (int)luaL_len(L, val) : 1;
        for (int i = 1; i <= n; i++) {
            if (lua_istable(L, val))
                lua_geti(L, val, i);
            else
                lua_pushvalue(L, val);
            int t = lua_type(L, -1);
            if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
                luaL_error(L, "http.%s: option 'form': the value of '%s' must be a string, number, boolean "
                              "or a list of them, got %s", fn, lua_tostring(L, key), luaL_typename(L, -1));
            size_t len;
            const char *s = luaL_tolstring(L, -1, &len);
            struct tpart p = {.name = (const char *)keep_value(L, r, key), .data = (const char *)keep(L, r, s, len),
                              .data_len = len};
            add_part(L, r, &p);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
}

static void resolve_parts(struct req *r)
{
    struct tpart *p = r->more ? (struct tpart *)r->more->parts.data : NULL;
    size_t n = r->more ? r->more->parts.len / sizeof *p : 0;
    for (size_t i = 0; i < n; i++) {
        p[i].name = at(r, (uintptr_t)p[i].name);
        p[i].data = at(r, (uintptr_t)p[i].data);
        p[i].path = at(r, (uintptr_t)p[i].path);
        p[i].filename = at(r, (uintptr_t)p[i].filename);
        p[i].content_type = at(r, (uintptr_t)p[i].content_type);
    }
    r->q.multipart = n ? p : NULL;
    r->q.nmultipart = n;
}

static void read_files(lua_State *L, struct req *r, const char *fn, int opts, int form)
{
    if (r->more)
        r->more->parts.len = 0;
    if (get_opt(L, opts, "files") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    int files = lua_gettop(L);
    if (!lua_istable(L, files))
        bad_opt(L, fn, "files", "table", files);
    for (const char *other = "body"; other; other = strcmp(other, "body") == 0 ? "json" : NULL)
        if (lua_getfield(L, opts, other) != LUA_TNIL)
            luaL_error(L, "http.%s: options 'files' and '%s' exclude each other (use 'form' for fields)", fn, other);
        else
            lua_pop(L, 1);
    if (form)
        add_form_fields(L, r, fn, form);
    lua_pushnil(L);
    while (lua_next(L, files)) {
        add_file(L, r, fn, lua_gettop(L) - 1, lua_gettop(L));
        lua_pop(L, 1);
    }
    if (!r->more || r->more->parts.len == 0)
        luaL_error(L, "http.%s: option 'files' is empty", fn);
    lua_settop(L, files - 1);
}

/* ---------------- TLS ---------------- */

/* A TLS path option: the request's own, else the run's (dflt, "" for none). */
static uintptr_t tls_path(lua_State *L, struct req *r, const char *fn, int opts, const char *key, const char *dflt)
{
    int t = get_opt(L, opts, key);
    uintptr_t v = 0;
    if (t == LUA_TSTRING)
        v = keep_path(L, r, fn, key, lua_tostring(L, -1));
    else if (t != LUA_TNIL)
        bad_opt(L, fn, key, "file name", -1);
    else if (*dflt) /* absolute and readable: check_default_paths */
        v = keep(L, r, dflt, strlen(dflt));
    lua_pop(L, 1);
    return v;
}

/* The run's ca, cert and key, resolved against the scenario's directory and
 * checked once per thread, not at every request that takes them. */
static void check_default_paths(lua_State *L, struct req *r, const char *fn)
{
    struct http_defaults *h = &r->ctx->http;
    char *paths[] = {h->ca, h->cert, h->key};
    static const char *const keys[] = {"ca", "cert", "key"};
    size_t top = r->more ? r->more->store.len : 0;
    for (int i = 0; i < 3; i++) {
        if (!*paths[i])
            continue;
        const char *full = at(r, keep_path(L, r, fn, keys[i], paths[i])); /* raises when unreadable */
        if (strlen(full) >= HTTP_PATH_MAX)
            luaL_error(L, "http.%s: option '%s': path too long: '%s'", fn, keys[i], full);
        memmove(paths[i], full, strlen(full) + 1);
    }
    if (r->more)
        r->more->store.len = top;
    h->paths_checked = true;
}

static void read_tls(lua_State *L, struct req *r, const char *fn, int opts, uintptr_t path[3])
{
    const struct http_defaults *h = &r->ctx->http;
    if (!h->paths_checked)
        check_default_paths(L, r, fn);
    r->q.tls.insecure = bool_opt(L, opts, fn, "insecure", h->insecure);
    path[0] = tls_path(L, r, fn, opts, "ca", h->ca);
    path[1] = tls_path(L, r, fn, opts, "cert", h->cert);
    path[2] = tls_path(L, r, fn, opts, "key", h->key);
    if (path[2] && !path[1])
        luaL_error(L, "http.%s: option 'key' needs 'cert' (the client certificate it belongs to)", fn);
}

/* ---------------- http_version ---------------- */

static void read_version(lua_State *L, struct req *r, const char *fn, int opts)
{
    r->q.version = THTTP_DEFAULT;
    int t = get_opt(L, opts, "http_version");
    if (t != LUA_TNIL) {
        const char *v = t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tostring(L, -1) : "";
        if (strcmp(v, "1.1") == 0)
            r->q.version = THTTP_1_1;
        else if (strcmp(v, "2") == 0 || strcmp(v, "2.0") == 0)
            r->q.version = THTTP_2;
        else
            luaL_error(L, "http.%s: option 'http_version': \"1.1\" or \"2\" expected, got '%s'", fn,
                       t == LUA_TSTRING || t == LUA_TNUMBER ? v : luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}

/* ---------------- tags ---------------- */

/* Tags tide sets itself on every request sample. */
static const char *const reserved_tags[] = {"name", "method", "status", "error", "group", "scenario", NULL};

static void read_tags(lua_State *L, struct req *r, const char *fn, int opts)
{
    if (r->more)
        r->more->tags_len = 0;
    if (get_opt(L, opts, "tags") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        bad_opt(L, fn, "tags", "table", t);
    for (int i = 0; reserved_tags[i]; i++)
        if (lua_getfield(L, t, reserved_tags[i]) != LUA_TNIL)
            luaL_error(L, "http.%s: option 'tags': '%s' is a tag tide sets itself%s", fn, reserved_tags[i],
                       strcmp(reserved_tags[i], "name") == 0 ? " (use the option 'name')" : "");
        else
            lua_pop(L, 1);
    struct req_more *m = more_of(L, r);
    const char *why = metrics_lua_tagkey(L, t, m->tags, sizeof m->tags, &m->tags_len);
    if (why)
        luaL_error(L, "http.%s: option 'tags': %s", fn, why);
    lua_pop(L, 1);
}

const char *req_opts_tags(const struct req *r, size_t *len)
{
    *len = r->more ? r->more->tags_len : 0;
    return r->more ? r->more->tags : "";
}

/* ---------------- expect ---------------- */

static void read_expect(lua_State *L, struct req *r, const char *fn, int opts)
{
    struct req_more *m = r->more;
    if (m) {
        m->nexpect = 0;
        luaL_unref(L, LUA_REGISTRYINDEX, m->expect_fn); /* LUA_NOREF: nothing */
        m->expect_fn = LUA_NOREF;
    }
    int t = get_opt(L, opts, "expect");
    if (t == LUA_TFUNCTION) {
        more_of(L, r)->expect_fn = luaL_ref(L, LUA_REGISTRYINDEX);
        return;
    }
    if (t == LUA_TTABLE)
        m = more_of(L, r);
    bool ok = t == LUA_TNIL || (t == LUA_TTABLE && options_status_list(L, -1, m->expect, &m->nexpect));
    if (!ok)
        luaL_error(L, "http.%s: option 'expect': a list of 1 to 32 statuses (100 to 999), like { 200, 404 }, "
                      "or a function of the response expected", fn);
    lua_pop(L, 1);
}

static bool listed(const int *list, int n, long status)
{
    for (int i = 0; i < n; i++)
        if (list[i] == status)
            return true;
    return false;
}

bool req_opts_expected(const struct req *r, long status)
{
    const struct req_more *m = r->more;
    if (m && m->expect_fn != LUA_NOREF)
        return m->verdict;
    if (m && m->nexpect)
        return listed(m->expect, m->nexpect, status);
    const struct http_defaults *h = &r->ctx->http;
    if (h->nexpect)
        return listed(h->expect, h->nexpect, status);
    return status >= 100 && status < 400;
}

/* The function runs on the thread's main state (the user's coroutine is
 * suspended); an error in it, or in its result, fails the request. */
void req_opts_judge(struct req *r)
{
    struct req_more *m = r->more;
    if (!m || m->expect_fn == LUA_NOREF || r->res.err != TERR_NONE)
        return;
    lua_State *L = r->ctx->L;
    int top = lua_gettop(L);
    m->verdict = false;
    if (!lua_checkstack(L, 4)) {
        r->res.err = TERR_NOMEM;
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->expect_fn);
    response_push(L, r);
    /* no requests from inside: r is still being recorded (tide.http refuses
     * blocking calls while a load runs, which is what this is) */
    bool was_in_load = r->ctx->in_load;
    r->ctx->in_load = true;
    int rc = guard_pcall(L, 1, 1, 0);
    r->ctx->in_load = was_in_load;
    if (rc != LUA_OK || !lua_isboolean(L, -1)) {
        r->res.err = TERR_OTHER;
        r->res.detail = "expect function failed";
    } else {
        m->verdict = lua_toboolean(L, -1);
    }
    lua_settop(L, top);
}

/* ---------------- all of them ---------------- */

void req_opts_init(struct req *r)
{
    r->more = NULL;
}

/* Whether the options table names any option of this file: most requests
 * name none, and then the run's defaults apply without a lookup each. */
static bool names_any(lua_State *L, int opts)
{
    static const char *const mine[] = {"compression", "auth", "files", "insecure", "ca", "cert", "key",
                                       "http_version", "tags", "expect", NULL};
    bool found = false;
    lua_pushnil(L);
    while (!found && lua_next(L, opts)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        for (int i = 0; mine[i] && !found; i++)
            found = strcmp(k, mine[i]) == 0;
        lua_pop(L, 1);
    }
    if (found)
        lua_pop(L, 1);
    return found;
}

void req_opts_configure(lua_State *L, struct req *r, const char *fn, int opts, int form)
{
    if (opts && (!lua_istable(L, opts) || !names_any(L, opts)))
        opts = 0;
    if (r->more)
        r->more->store.len = 0;
    set_compression(L, r, fn, opts);
    uintptr_t user, pass, tls[3];
    read_auth(L, r, fn, opts, &user, &pass);
    read_files(L, r, fn, opts, form);
    read_tls(L, r, fn, opts, tls);
    read_version(L, r, fn, opts);
    read_tags(L, r, fn, opts);
    read_expect(L, r, fn, opts);
    /* every string is in: now they stay put */
    r->q.user = at(r, user);
    r->q.password = at(r, pass);
    r->q.tls.ca = at(r, tls[0]);
    r->q.tls.cert = at(r, tls[1]);
    r->q.tls.key = at(r, tls[2]);
    resolve_parts(r);
}

void req_opts_free(struct req *r)
{
    if (!r->more)
        return;
    buf_free(&r->more->store);
    buf_free(&r->more->parts);
    free(r->more);
    r->more = NULL;
}
