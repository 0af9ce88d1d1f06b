/* tide.http: turning (url, opts) from Lua into a request (treq) its transport takes. */
#include "clock.h"
#include "cookies.h"
#include "duration.h"
#include "redact.h"
#include "req.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>


struct opts {
    int headers, query, json, form, retry, cookies;  /* stack indexes, 0 = absent */
    const char *body, *bearer, *name;
    size_t body_len, bearer_len;
    double timeout;
    lua_Integer redirects;
    bool discard;
};

/* In the order of enum tmethod. */
static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};

const char *req_method(lua_State *L, struct req *r, const char *m)
{
    for (int i = 0; method_names[i]; i++)
        if (strcasecmp(m, method_names[i]) == 0)
            return method_names[i];
    size_t n = strlen(m);
    if (n == 0 || n >= sizeof r->method_buf)
        luaL_error(L, "http.request: bad method '%s'", m);
    for (size_t i = 0; i < n; i++)
        if (!((m[i] >= 'A' && m[i] <= 'Z') || (m[i] >= 'a' && m[i] <= 'z') || m[i] == '-'))
            luaL_error(L, "http.request: bad method '%s'", m);
    memcpy(r->method_buf, m, n + 1);
    return r->method_buf;
}

static enum tmethod method_kind(const char *m)
{
    for (int i = 0; method_names[i]; i++)
        if (m == method_names[i])
            return (enum tmethod)i;
    return TM_OTHER;
}

/* Whether re-sending cannot change what the server does (RFC 9110 9.2.2). */
static bool idempotent(enum tmethod k)
{
    return k == TM_GET || k == TM_HEAD || k == TM_PUT || k == TM_DELETE || k == TM_OPTIONS;
}

static const char *const opt_names[] = {"headers", "query", "body", "json", "form", "bearer",
                                        "timeout", "redirects", "name", "retry", "discard",
                                        /* read by request_opts.c */
                                        "compression", "auth", "files", "insecure", "ca", "cert", "key",
                                        "http_version", "tags", "expect",
                                        /* read by http.c */
                                        "cookies", NULL};

static void opt_fail(lua_State *L, const char *fn, const char *key, const char *want, int idx)
{
    luaL_error(L, "http.%s: option '%s': %s expected, got %s", fn, key, want, luaL_typename(L, idx));
}

static void unknown_opt(lua_State *L, const char *fn, const char *key)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; opt_names[i]; i++) {
        luaL_addstring(&b, i ? ", " : "");
        luaL_addstring(&b, opt_names[i]);
    }
    luaL_pushresult(&b);
    luaL_error(L, "http.%s: unknown option '%s' (valid: %s)", fn, key, lua_tostring(L, -1));
}

static void reject_unknown_opts(lua_State *L, int idx, const char *fn)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        int i = 0;
        while (opt_names[i] && strcmp(opt_names[i], key) != 0)
            i++;
        if (!opt_names[i])
            unknown_opt(L, fn, key);
    }
}

/* Pushes opts[key]; returns its index if it is a table, 0 if nil; raises otherwise. */
static int table_opt(lua_State *L, int idx, const char *fn, const char *key)
{
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL)
        return 0;
    if (t != LUA_TTABLE)
        opt_fail(L, fn, key, "table", -1);
    return lua_gettop(L);
}

static const char *string_opt(lua_State *L, int idx, const char *fn, const char *key, size_t *len)
{
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TNIL)
        return NULL;
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        opt_fail(L, fn, key, "string", -1);
    return lua_tolstring(L, -1, len);
}

/* Leaves the option values on the stack; *o holds their indexes. */
static void read_opts(lua_State *L, int idx, const char *fn, struct opts *o)
{
    *o = (struct opts){.timeout = DEFAULT_TIMEOUT_MS / 1000.0, .redirects = DEFAULT_REDIRECTS};
    if (idx == 0 || lua_isnoneornil(L, idx))
        return;
    if (!lua_istable(L, idx))
        luaL_error(L, "http.%s: options must be a table, got %s", fn, luaL_typename(L, idx));
    reject_unknown_opts(L, idx, fn);
    o->headers = table_opt(L, idx, fn, "headers");
    o->query = table_opt(L, idx, fn, "query");
    o->form = table_opt(L, idx, fn, "form");
    o->retry = table_opt(L, idx, fn, "retry");
    o->cookies = table_opt(L, idx, fn, "cookies");
    if (lua_getfield(L, idx, "json") != LUA_TNIL)
        o->json = lua_gettop(L);
    o->body = string_opt(L, idx, fn, "body", &o->body_len);
    o->bearer = string_opt(L, idx, fn, "bearer", &o->bearer_len);
    o->name = string_opt(L, idx, fn, "name", NULL);
    if (lua_getfield(L, idx, "timeout") != LUA_TNIL &&
        (!duration_from_lua(L, -1, &o->timeout) || o->timeout <= 0))
        opt_fail(L, fn, "timeout", "positive duration", -1);
    if (lua_getfield(L, idx, "redirects") != LUA_TNIL &&
        (!lua_isinteger(L, -1) || (o->redirects = lua_tointeger(L, -1)) < 0))
        opt_fail(L, fn, "redirects", "non-negative integer", -1);
    lua_getfield(L, idx, "discard");
    o->discard = lua_toboolean(L, -1);
    if (!!o->body + !!o->json + !!o->form > 1)
        luaL_error(L, "http.%s: options 'body', 'json' and 'form' exclude each other", fn);
}

static bool has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The default metric name: the URL's path without query or fragment. */
void req_default_name(struct req *r, const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    size_t n = p ? strcspn(p, "?#") : 0;
    if (n == 0) {
        p = "/";
        n = 1;
    }
    if (n >= sizeof r->name)
        n = sizeof r->name - 1;
    memcpy(r->name, p, n);
    r->name[n] = '\0';
}

/* Percent-encodes all but RFC 3986's unreserved characters, as %XX in upper case. */
static bool append_escaped(struct buf *b, lua_State *L, int idx)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_tolstring(L, idx, &len);
    bool ok = buf_reserve(b, 3 * len);
    for (size_t i = 0; ok && i < len; i++) {
        unsigned char c = s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            b->data[b->len++] = (char)c;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = hex[c >> 4];
            b->data[b->len++] = hex[c & 15];
        }
    }
    lua_pop(L, 1);
    return ok;
}

static bool scalar(lua_State *L, int idx)
{
    int t = lua_type(L, idx);
    return t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN;
}

/* A value is a string, number or boolean, or a list of them (the key then
 * repeats); anything else would be dropped or sent as "table: 0x...". */
static void check_form_value(lua_State *L, const char *fn, const char *opt, int key, int val)
{
    if (!scalar(L, key))
        luaL_error(L, "http.%s: option '%s': keys must be strings, got %s", fn, opt, luaL_typename(L, key));
    if (scalar(L, val))
        return;
    bool list = lua_istable(L, val);
    lua_Integer n = list ? luaL_len(L, val) : 0;
    for (lua_Integer i = 1; list && i <= n; i++, lua_pop(L, 1))
        list = lua_geti(L, val, i) != LUA_TNIL && scalar(L, -1);
    if (list) {
        lua_pushnil(L); /* and nothing but 1..n */
        for (lua_Integer count = 0; list && lua_next(L, val); lua_pop(L, 1))
            list = ++count <= n && lua_isinteger(L, -2);
    }
    if (!list)
        luaL_error(L, "http.%s: option '%s': the value of '%s' must be a string, number, boolean "
                      "or a list of them (nested tables cannot be URL-encoded), got %s",
                   fn, opt, lua_tostring(L, key), luaL_typename(L, val));
}

/* Appends k=v&k=v (array values repeat the key) to b. */
static bool append_urlencoded(struct buf *b, lua_State *L, int t, bool first, const char *fn, const char *opt)
{
    bool ok = true;
    lua_pushnil(L);
    while (ok && lua_next(L, t)) {
        int key = lua_gettop(L) - 1, val = lua_gettop(L);
        check_form_value(L, fn, opt, key, val);
        int n = lua_istable(L, val) ? (int)luaL_len(L, val) : 1;
        for (int i = 1; ok && i <= n; i++) {
            if (lua_istable(L, val))
                lua_geti(L, val, i);
            else
                lua_pushvalue(L, val);
            ok = (first || buf_append(b, "&", 1)) && append_escaped(b, L, key) &&
                 buf_append(b, "=", 1) && append_escaped(b, L, -1);
            first = false;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return ok;
}

static bool table_empty(lua_State *L, int t)
{
    lua_pushnil(L);
    if (!lua_next(L, t))
        return true;
    lua_pop(L, 2);
    return false;
}

/* Raises naming the URL, without the password it may carry. */
static void bad_url(lua_State *L, const char *fn, const char *url, const char *why)
{
    char clean[2048];
    redact_password(url, url, clean, sizeof clean);
    luaL_error(L, "http.%s: malformed URL '%s'%s", fn, clean, why);
}

static void set_url(lua_State *L, struct req *r, const char *fn, const char *url, int query)
{
    if (!has_prefix_ci(url, "http://") && !has_prefix_ci(url, "https://"))
        bad_url(L, fn, url, " (expected http:// or https://)");
    size_t len = strlen(url);
    struct buf *u = &r->q.url;
    if (query && table_empty(L, query))
        query = 0;
    if (!query && u->len == len + 1 && memcmp(u->data, url, len) == 0)
        return; /* the transport parsed this URL already: skip that when it repeats */
    u->len = 0;
    bool ok = buf_append(u, url, len);
    if (ok && query)
        ok = buf_append(u, strchr(url, '?') ? "&" : "?", 1) && append_urlencoded(u, L, query, true, fn, "query");
    if (!ok || !buf_append(u, "", 1))
        luaL_error(L, "out of memory");
    if (r->tp->set_url(r->x, &r->q) != TERR_NONE) {
        u->len = 0;
        bad_url(L, fn, url, "");
    }
    if (!turl_parse(u->data, u->len - 1, &r->q.parts)) /* the transport's parser took more */
        r->q.parts = (struct turl){0};
}

/* Appends "name: value\r\n" to the request's header lines. */
static bool add_header(struct buf *lines, const char *name, size_t nlen, const char *val, size_t vlen)
{
    if (nlen + vlen + 3 > HEADER_LINE_MAX || !buf_reserve(lines, nlen + vlen + 4))
        return false;
    buf_append(lines, name, nlen);
    buf_append(lines, ": ", 2);
    buf_append(lines, val, vlen);
    buf_append(lines, "\r\n", 2);
    return true;
}

/* A header line with CR, LF or NUL in it would put other lines on the wire. */
static bool bad_header_text(const char *s, size_t len, bool name)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\0' || (name && (c == ':' || c <= ' ' || c == 127)))
            return true;
    }
    return name && len == 0;
}

static void refuse_header(lua_State *L, const char *fn, const char *what, const char *name, size_t len)
{
    size_t shown = 0;
    while (shown < len && shown < 64 && (unsigned char)name[shown] >= ' ' && name[shown] != 127)
        shown++;
    char msg[256];
    snprintf(msg, sizeof msg, "http.%s: %s '%.*s' holds CR, LF, NUL or another control character "
             "(it would end the header line on the wire)", fn, what, (int)shown, name);
    luaL_error(L, "%s", msg);
}

/* The header lines: the user's headers, then what bearer/json imply and the
 * User-Agent, unless the user set them. */
static void build_headers(lua_State *L, struct buf *list, const char *fn, const struct opts *o)
{
    bool has_type = false, has_auth = false, has_agent = false, ok = true;
    list->len = 0;
    if (o->headers) {
        lua_pushnil(L);
        while (ok && lua_next(L, o->headers)) {
            bool drop = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING || (!drop && !lua_isstring(L, -1)))
                luaL_error(L, "http.%s: option 'headers': string keys and string values (or false "
                              "to send no such header) expected", fn);
            size_t nlen, vlen = 0;
            const char *n = lua_tolstring(L, -2, &nlen), *v = drop ? "" : lua_tolstring(L, -1, &vlen);
            if (bad_header_text(n, nlen, true))
                refuse_header(L, fn, "header name", n, nlen);
            if (bad_header_text(v, vlen, false))
                refuse_header(L, fn, "value of header", n, nlen);
            has_type |= strcasecmp(n, "content-type") == 0;
            has_auth |= strcasecmp(n, "authorization") == 0;
            has_agent |= strcasecmp(n, "user-agent") == 0;
            /* "Name:" with nothing after the colon: send no such header at all */
            ok = drop ? buf_append(list, n, nlen) && buf_append(list, ":\r\n", 3)
                      : add_header(list, n, nlen, v, vlen);
            lua_pop(L, 1);
        }
    }
    if (o->bearer && bad_header_text(o->bearer, o->bearer_len, false))
        refuse_header(L, fn, "option", "bearer", 6);
    if (ok && o->bearer && !has_auth) {
        char v[4096];
        int n = snprintf(v, sizeof v, "Bearer %s", o->bearer);
        ok = n > 0 && (size_t)n < sizeof v && add_header(list, "Authorization", 13, v, (size_t)n);
    }
    if (ok && o->json && !has_type)
        ok = add_header(list, "Content-Type", 12, "application/json", 16);
    if (ok && o->form && !has_type)
        ok = add_header(list, "Content-Type", 12, "application/x-www-form-urlencoded", 33);
    if (ok && !has_agent)
        ok = buf_append(list, USER_AGENT "\r\n", sizeof USER_AGENT + 1);
    if (!ok)
        luaL_error(L, "http.%s: header too long or out of memory", fn);
}

/* A Cookie header the script gives leaves the header lines: its pairs go
 * into r->cookie, for http.c to send in one header with the jar's (libcurl
 * would send the jar's in a second one). "Cookie:" (false) sends no cookies,
 * the jar's neither. */
static void take_cookie_header(lua_State *L, struct req *r, const char *fn)
{
    struct buf *h = &r->q.headers;
    r->cookie.len = 0;
    r->cookie_own = r->cookie_header = false;
    r->cookie_jar = true;
    size_t in = 0, out = 0;
    while (in < h->len) {
        const char *line = h->data + in, *eol = memchr(line, '\r', h->len - in);
        size_t n = eol ? (size_t)(eol - line) + 2 : h->len - in;
        in += n;
        if (n < 9 || strncasecmp(line, "cookie:", 7) != 0) {
            memmove(h->data + out, line, n);
            out += n;
            continue;
        }
        r->cookie_own = true;
        if (n == 9) { /* "Cookie:\r\n": false */
            r->cookie_jar = false;
            continue;
        }
        r->cookie_header = true;
        if (!(r->cookie.len == 0 || buf_append(&r->cookie, "; ", 2)) || !buf_append(&r->cookie, line + 8, n - 10))
            luaL_error(L, "http.%s: out of memory", fn);
    }
    h->len = out;
}

/* Keeps the pairs of r->cookie (a Cookie header's) that table t does not
 * name: written after the old text, then moved down over it. */
static bool drop_named_pairs(lua_State *L, struct req *r, int t)
{
    struct buf *c = &r->cookie;
    size_t old = c->len, in = 0;
    if (old == 0)
        return true;
    while (in < old) {
        size_t at = in, n = 0;
        while (at < old && (c->data[at] == ' ' || c->data[at] == '\t'))
            at++;
        while (at + n < old && c->data[at + n] != ';')
            n++;
        in = at + n + 1;
        const char *eq = memchr(c->data + at, '=', n);
        lua_pushlstring(L, c->data + at, eq ? (size_t)(eq - (c->data + at)) : n);
        bool named = lua_rawget(L, t) != LUA_TNIL;
        lua_pop(L, 1);
        if (named || n == 0)
            continue;
        if ((c->len > old && !buf_append(c, "; ", 2)) || !buf_reserve(c, n))
            return false;
        memcpy(c->data + c->len, c->data + at, n); /* after buf_reserve: data may have moved */
        c->len += n;
    }
    memmove(c->data, c->data + old, c->len - old);
    c->len -= old;
    return true;
}

/* cookies = { name = value }: this request's, as a Cookie header's are, and
 * winning over a Cookie header's of the same name. */
static void add_cookie_opt(lua_State *L, struct req *r, const char *fn, int t)
{
    if (!t)
        return;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
            luaL_error(L, "http.%s: option 'cookies': string names and string values expected", fn);
        size_t nlen, vlen;
        const char *n = lua_tolstring(L, -2, &nlen), *v = lua_tolstring(L, -1, &vlen), *why;
        if ((why = cookie_bad_name(n, nlen)) || (why = cookie_bad_value(v, vlen)))
            luaL_error(L, "http.%s: option 'cookies': cookie '%s' %s", fn, n, why);
        lua_pop(L, 1);
    }
    bool ok = drop_named_pairs(L, r, t);
    lua_pushnil(L);
    while (ok && lua_next(L, t)) {
        size_t nlen, vlen;
        const char *n = lua_tolstring(L, -2, &nlen), *v = lua_tolstring(L, -1, &vlen);
        ok = (r->cookie.len == 0 || buf_append(&r->cookie, "; ", 2)) && buf_append(&r->cookie, n, nlen) &&
             buf_append(&r->cookie, "=", 1) && buf_append(&r->cookie, v, vlen);
        lua_pop(L, 1);
    }
    if (!ok)
        luaL_error(L, "http.%s: out of memory", fn);
    r->cookie_own = true;
}

static bool set_body(lua_State *L, struct req *r, const char *fn, const struct opts *o)
{
    r->body.len = 0;
    if (o->body)
        return buf_append(&r->body, o->body, o->body_len);
    if (o->form)
        return append_urlencoded(&r->body, L, o->form, true, fn, "form");
    if (!o->json)
        return true;
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, o->json);
    lua_call(L, 1, 1);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    bool ok = buf_append(&r->body, s, len);
    lua_pop(L, 3);
    return ok;
}

static void set_method(struct treq *q, const char *m, bool has_body, const struct buf *body)
{
    q->method = m;
    q->kind = method_kind(m);
    q->idempotent = idempotent(q->kind);
    q->has_body = has_body;
    q->body = body->len ? body->data : "";
    q->body_len = body->len;
}

static void set_retry(lua_State *L, struct req *r, const char *fn, int t)
{
    r->nretry = 0;
    r->retry_max = 1;
    r->attempts = 0;
    if (!t)
        return;
    double every = 0.5;
    int st = lua_getfield(L, t, "status");
    if (st == LUA_TNUMBER) {
        r->retry_status[r->nretry++] = (int)lua_tointeger(L, -1);
    } else if (st == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n && r->nretry < MAX_RETRY_STATUS; i++, lua_pop(L, 1))
            if (lua_geti(L, -1, i) != LUA_TNUMBER || !lua_isinteger(L, -1))
                luaL_error(L, "http.%s: option 'retry': status must list integers", fn);
            else
                r->retry_status[r->nretry++] = (int)lua_tointeger(L, -1);
    } else {
        luaL_error(L, "http.%s: option 'retry': 'status' (integer or list) expected", fn);
    }
    if (lua_getfield(L, t, "every") != LUA_TNIL && !duration_from_lua(L, -1, &every))
        luaL_error(L, "http.%s: option 'retry': 'every' must be a duration", fn);
    lua_Integer max = 3;
    if (lua_getfield(L, t, "max") != LUA_TNIL && (!lua_isinteger(L, -1) || (max = lua_tointeger(L, -1)) < 1))
        luaL_error(L, "http.%s: option 'retry': 'max' must be a positive integer (attempts)", fn);
    lua_pop(L, 3);
    r->retry_max = max > 1000000 ? 1000000 : (int)max;
    r->retry_every_ns = seconds_to_ns(every);
}

/* Sets up r from (url, opts) at the given stack indexes. Raises on bad input,
 * before anything is sent. */
void req_configure(lua_State *L, struct req *r, const char *fn, const char *method, int url_idx, int opts_idx)
{
    luaL_checkstack(L, 24, "http options");
    const char *url = luaL_checkstring(L, url_idx);
    struct opts o;
    read_opts(L, opts_idx, fn, &o);
    set_url(L, r, fn, url, o.query);
    if (o.name) {
        snprintf(r->name, sizeof r->name, "%s", o.name);
    } else {
        req_default_name(r, url);
    }
    set_retry(L, r, fn, o.retry);
    int multipart_form = 0;
    bool multipart = req_opts_multipart(L, opts_idx);
    if (multipart) /* the form's fields go into the multipart body */
        multipart_form = o.form, o.form = 0;
    if (!set_body(L, r, fn, &o))
        luaL_error(L, "out of memory");
    bool has_body = o.body || o.json || o.form || multipart;
    build_headers(L, &r->q.headers, fn, &o);
    take_cookie_header(L, r, fn);
    add_cookie_opt(L, r, fn, o.cookies);
    set_method(&r->q, method, has_body, &r->body);
    r->q.timeout_ms = (long)(o.timeout * 1000 + 0.5);
    r->redirects = (long)o.redirects;
    r->named = o.name != NULL;
    r->q.max_body = r->ctx->max_body;
    r->q.discard = o.discard;
    req_opts_configure(L, r, fn, opts_idx ? lua_absindex(L, opts_idx) : 0, multipart_form);
    /* the transport is chosen and given q by http.c (req_ready) */
}
