#include "http.h"
#include "buf.h"
#include "clock.h"
#include "duration.h"
#include "metrics.h"
#include "exec.h"
#include "hist.h"
#include "vu.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <strings.h>

#define MAX_RETRY_STATUS 16
#define NAME_MAX_LEN 256
#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_REDIRECTS 10L

struct batch;

struct req {
    struct xfer x;
    struct tctx *ctx;
    struct req *next_all, *next_free;
    struct vu *vu;                  /* waiting VU; NULL for a blocking call */
    struct batch *batch;
    bool finished;
    const char *method;
    char method_buf[16];
    struct buf url, body, head, resp;
    struct curl_slist *headers;
    char name[NAME_MAX_LEN];
    bool discard, truncated;
    long timeout_ms, redirects;     /* what the handle has now */
    int retry_status[MAX_RETRY_STATUS], nretry, retry_max, attempts;
    uint64_t retry_every_ns;
    struct timer retry_timer;
    long status;
    CURLcode code;
    char errbuf[CURL_ERROR_SIZE];
    char tagkey[NAME_MAX_LEN + 96];
    size_t tagkey_len;
    int tagset;
    double timings[5];              /* dns, connect, tls, waiting, total: ms */
};

struct batch {
    struct tctx *ctx;
    struct vu *vu;
    unsigned n, pending;
    bool done, released;
    struct req *reqs[];
};

/* ---------------- handles ---------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n, keep = len;
    if (r->discard)
        return len;
    size_t room = r->ctx->max_body > r->resp.len ? r->ctx->max_body - r->resp.len : 0;
    if (keep > room) {
        keep = room;
        r->truncated = true;
    }
    return (keep == 0 || buf_append(&r->resp, p, keep)) ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
        r->head.len = 0; /* a redirect or 100-continue: keep the last response's */
    return buf_append(&r->head, p, len) ? len : 0;
}

static void on_done(struct xfer *x, CURLcode rc);
static void on_retry_timer(struct timer *t);

static struct req *req_new(struct tctx *ctx)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r || !(r->x.easy = curl_easy_init())) {
        free(r);
        return NULL;
    }
    r->ctx = ctx;
    r->x.done = on_done;
    r->retry_timer.fire = on_retry_timer;
    r->tagset = -1;
    r->timeout_ms = DEFAULT_TIMEOUT_MS;
    r->redirects = DEFAULT_REDIRECTS;
    CURL *e = r->x.easy;
    shard_prepare_easy(&r->x, ctx->loop);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
    /* no proxy from the environment: load goes straight to the target, and
     * libcurl would otherwise read six variables on every request */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "tide/" TIDE_VERSION);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, DEFAULT_REDIRECTS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS);
    r->next_all = ctx->all;
    ctx->all = r;
    return r;
}

static void req_destroy(struct req *r)
{
    shard_remove(&r->x);
    timer_stop(r->ctx->loop, &r->retry_timer);
    curl_easy_cleanup(r->x.easy);
    curl_slist_free_all(r->headers);
    buf_free(&r->url);
    buf_free(&r->body);
    buf_free(&r->head);
    buf_free(&r->resp);
    free(r);
}

void http_free_all(struct tctx *ctx)
{
    for (struct req *r = ctx->all, *next; r; r = next) {
        next = r->next_all;
        req_destroy(r);
    }
    ctx->all = ctx->pool = NULL;
}

static struct req *agent_req(lua_State *L, struct tctx *ctx, struct agent *ag)
{
    if (!ag->req && !(ag->req = req_new(ctx)))
        luaL_error(L, "out of memory (curl handle)");
    return ag->req;
}

/* Batch handles join the agent's cookie jar through a curl share. The jar the
 * agent's own handle had is carried over when the share is first made. */
static bool agent_share(struct agent *ag)
{
    if (ag->share)
        return true;
    if (!(ag->share = curl_share_init()))
        return false;
    curl_share_setopt(ag->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    if (!ag->req)
        return true;
    struct curl_slist *jar = NULL;
    curl_easy_getinfo(ag->req->x.easy, CURLINFO_COOKIELIST, &jar);
    curl_easy_setopt(ag->req->x.easy, CURLOPT_SHARE, ag->share);
    for (struct curl_slist *c = jar; c; c = c->next)
        curl_easy_setopt(ag->req->x.easy, CURLOPT_COOKIELIST, c->data);
    curl_slist_free_all(jar);
    return true;
}

void agent_free(struct tctx *ctx, struct agent *ag)
{
    (void)ctx;
    if (ag->share) {
        /* detach every handle first: a share in use cannot be freed */
        for (struct req *r = ctx->all; r; r = r->next_all)
            curl_easy_setopt(r->x.easy, CURLOPT_SHARE, NULL);
        curl_share_cleanup(ag->share);
    }
    *ag = (struct agent){0};
}

static struct req *pool_get(lua_State *L, struct tctx *ctx, struct agent *ag)
{
    struct req *r = ctx->pool;
    if (r)
        ctx->pool = r->next_free;
    else if (!(r = req_new(ctx)))
        luaL_error(L, "out of memory (curl handle)");
    if (!agent_share(ag))
        luaL_error(L, "out of memory (curl share)");
    curl_easy_setopt(r->x.easy, CURLOPT_SHARE, ag->share);
    return r;
}

static void pool_put(struct tctx *ctx, struct req *r)
{
    r->next_free = ctx->pool;
    ctx->pool = r;
}

/* ---------------- building a request from Lua ---------------- */

struct opts {
    int headers, query, json, form, retry;  /* stack indexes, 0 = absent */
    const char *body, *bearer, *name;
    size_t body_len;
    double timeout;
    lua_Integer redirects;
    bool discard;
};

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};

static const char *check_method(lua_State *L, struct req *r, const char *m)
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

static const char *const opt_names[] = {"headers", "query", "body", "json", "form", "bearer",
                                        "timeout", "redirects", "name", "retry", "discard", NULL};

static void opt_fail(lua_State *L, const char *fn, const char *key, const char *want, int idx)
{
    luaL_error(L, "http.%s: option '%s': %s expected, got %s", fn, key, want, luaL_typename(L, idx));
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
            luaL_error(L, "http.%s: unknown option '%s' (valid: headers, query, body, json, form, "
                          "bearer, timeout, redirects, name, retry, discard)", fn, key);
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
    if (lua_getfield(L, idx, "json") != LUA_TNIL)
        o->json = lua_gettop(L);
    o->body = string_opt(L, idx, fn, "body", &o->body_len);
    o->bearer = string_opt(L, idx, fn, "bearer", NULL);
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
static void default_name(struct req *r, const char *url)
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

static bool append_escaped(struct buf *b, CURL *e, lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_tolstring(L, idx, &len);
    char *esc = curl_easy_escape(e, s, (int)len);
    lua_pop(L, 1);
    bool ok = esc && buf_append(b, esc, strlen(esc));
    curl_free(esc);
    return ok;
}

/* Appends k=v&k=v (array values repeat the key) to b. */
static bool append_urlencoded(struct buf *b, CURL *e, lua_State *L, int t, bool first)
{
    bool ok = true;
    lua_pushnil(L);
    while (ok && lua_next(L, t)) {
        int key = lua_gettop(L) - 1, val = lua_gettop(L);
        int n = lua_istable(L, val) ? (int)luaL_len(L, val) : 1;
        for (int i = 1; ok && i <= n; i++) {
            if (lua_istable(L, val))
                lua_geti(L, val, i);
            else
                lua_pushvalue(L, val);
            ok = (first || buf_append(b, "&", 1)) && append_escaped(b, e, L, key) &&
                 buf_append(b, "=", 1) && append_escaped(b, e, L, -1);
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

static void set_url(lua_State *L, struct req *r, const char *fn, const char *url, int query)
{
    if (!has_prefix_ci(url, "http://") && !has_prefix_ci(url, "https://"))
        luaL_error(L, "http.%s: malformed URL '%s' (expected http:// or https://)", fn, url);
    size_t len = strlen(url);
    if (query && table_empty(L, query))
        query = 0;
    if (!query && r->url.len == len + 1 && memcmp(r->url.data, url, len) == 0)
        return; /* curl copies every URL it is given: skip that when it repeats */
    r->url.len = 0;
    bool ok = buf_append(&r->url, url, len);
    if (ok && query)
        ok = buf_append(&r->url, strchr(url, '?') ? "&" : "?", 1) &&
             append_urlencoded(&r->url, r->x.easy, L, query, true);
    if (!ok || !buf_append(&r->url, "", 1))
        luaL_error(L, "out of memory");
    curl_easy_setopt(r->x.easy, CURLOPT_URL, r->url.data);
}

static bool add_header(struct curl_slist **list, const char *name, size_t nlen, const char *val, size_t vlen)
{
    char line[8192];
    if (nlen + vlen + 3 > sizeof line)
        return false;
    memcpy(line, name, nlen);
    memcpy(line + nlen, ": ", 2);
    memcpy(line + nlen + 2, val, vlen);
    line[nlen + 2 + vlen] = '\0';
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l)
        *list = l;
    return l != NULL;
}

/* Builds the header list: the user's headers, then what bearer/json/body imply
 * unless the user set them. Returns NULL when there is nothing to send. */
static struct curl_slist *build_headers(lua_State *L, const char *fn, const struct opts *o, bool body)
{
    struct curl_slist *list = NULL;
    bool has_type = false, has_auth = false, ok = true;
    if (o->headers) {
        lua_pushnil(L);
        while (ok && lua_next(L, o->headers)) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
                curl_slist_free_all(list);
                luaL_error(L, "http.%s: option 'headers': string keys and values expected", fn);
            }
            size_t nlen, vlen;
            const char *n = lua_tolstring(L, -2, &nlen), *v = lua_tolstring(L, -1, &vlen);
            has_type |= strcasecmp(n, "content-type") == 0;
            has_auth |= strcasecmp(n, "authorization") == 0;
            ok = add_header(&list, n, nlen, v, vlen);
            lua_pop(L, 1);
        }
    }
    if (ok && o->bearer && !has_auth) {
        char v[4096];
        int n = snprintf(v, sizeof v, "Bearer %s", o->bearer);
        ok = n > 0 && (size_t)n < sizeof v && add_header(&list, "Authorization", 13, v, (size_t)n);
    }
    if (ok && o->json && !has_type)
        ok = add_header(&list, "Content-Type", 12, "application/json", 16);
    if (ok && body) /* no 100-continue round trip: it would be in every POST's latency */
        ok = (list = curl_slist_append(list, "Expect:")) != NULL;
    if (!ok) {
        curl_slist_free_all(list);
        luaL_error(L, "http.%s: header too long or out of memory", fn);
    }
    return list;
}

static bool set_body(lua_State *L, struct req *r, const struct opts *o)
{
    r->body.len = 0;
    if (o->body)
        return buf_append(&r->body, o->body, o->body_len);
    if (o->form)
        return append_urlencoded(&r->body, r->x.easy, L, o->form, true);
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

static void set_method(struct req *r, const char *m, bool has_body)
{
    CURL *e = r->x.easy;
    bool head = m == method_names[1], post = m == method_names[2];
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    if (has_body || post) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.len ? r->body.data : "");
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (head)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    bool custom = !head && !post && m != method_names[0];
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, custom ? m : NULL);
    r->method = m;
}

static void set_limits(struct req *r, const struct opts *o)
{
    long ms = (long)(o->timeout * 1000 + 0.5);
    if (ms != r->timeout_ms)
        curl_easy_setopt(r->x.easy, CURLOPT_TIMEOUT_MS, r->timeout_ms = ms);
    if (o->redirects != r->redirects) {
        r->redirects = (long)o->redirects;
        curl_easy_setopt(r->x.easy, CURLOPT_FOLLOWLOCATION, r->redirects > 0 ? 1L : 0L);
        curl_easy_setopt(r->x.easy, CURLOPT_MAXREDIRS, r->redirects);
    }
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
static void configure(lua_State *L, struct req *r, const char *fn, const char *method, int url_idx, int opts_idx)
{
    luaL_checkstack(L, 24, "http options");
    const char *url = luaL_checkstring(L, url_idx);
    struct opts o;
    read_opts(L, opts_idx, fn, &o);
    set_url(L, r, fn, url, o.query);
    if (o.name) {
        snprintf(r->name, sizeof r->name, "%s", o.name);
    } else {
        default_name(r, url);
    }
    set_retry(L, r, fn, o.retry);
    if (!set_body(L, r, &o))
        luaL_error(L, "out of memory");
    bool has_body = o.body || o.json || o.form;
    struct curl_slist *h = (o.headers || o.bearer || has_body) ? build_headers(L, fn, &o, has_body) : NULL;
    if (h || r->headers) {
        curl_slist_free_all(r->headers);
        r->headers = h;
        curl_easy_setopt(r->x.easy, CURLOPT_HTTPHEADER, h);
    }
    set_method(r, method, has_body);
    set_limits(r, &o);
    r->discard = o.discard;
}

/* ---------------- running and finishing ---------------- */

static bool launch(struct req *r, struct shard *s)
{
    r->head.len = r->resp.len = 0;
    r->truncated = r->finished = false;
    r->errbuf[0] = '\0';
    r->attempts++;
    return shard_add(s, &r->x);
}

static const char *transport_error(CURLcode rc, long os_errno)
{
    switch (rc) {
    case CURLE_OK: return NULL;
    case CURLE_COULDNT_CONNECT:
        return os_errno == ECONNREFUSED ? "connection refused"
             : os_errno == ENETUNREACH || os_errno == EHOSTUNREACH ? "host unreachable"
             : "connect failed";
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return os_errno == ECONNRESET || os_errno == EPIPE ? "connection reset"
             : rc == CURLE_RECV_ERROR ? "receive failed" : "send failed";
    case CURLE_GOT_NOTHING: return "empty reply";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return "malformed response";
    case CURLE_PARTIAL_FILE: return "truncated response";
    case CURLE_COULDNT_RESOLVE_HOST: return "dns lookup failed";
    case CURLE_TOO_MANY_REDIRECTS: return "too many redirects";
    case CURLE_URL_MALFORMAT: return "malformed URL";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return "tls error";
    case CURLE_WRITE_ERROR:
    case CURLE_OUT_OF_MEMORY: return "out of memory";
    default: return curl_easy_strerror(rc);
    }
}

static const char *req_error(const struct req *r)
{
    long os_errno = 0;
    if (r->code != CURLE_OK)
        curl_easy_getinfo(r->x.easy, CURLINFO_OS_ERRNO, &os_errno);
    return transport_error(r->code, os_errno);
}

static size_t put_tag(char *dst, const char *k, const char *v, bool last)
{
    size_t kl = strlen(k), vl = strlen(v);
    memcpy(dst, k, kl);
    dst[kl] = TAG_KV;
    memcpy(dst + kl + 1, v, vl);
    if (!last)
        dst[kl + 1 + vl] = TAG_SEP;
    return kl + 1 + vl + !last;
}

/* Interns this request's tag set; the last key is cached so a VU hitting the
 * same endpoint skips the hash table. */
static int req_tagset(struct req *r, const char *err)
{
    char own[sizeof r->tagkey], key[sizeof r->tagkey + TAGS_MAX], status[16];
    size_t n = 0;
    snprintf(status, sizeof status, "%ld", r->status);
    if (err)
        n += put_tag(own, "error", err, false);
    if (r->vu && r->vu->group_len)
        n += put_tag(own + n, "group", r->vu->group, false);
    n += put_tag(own + n, "method", r->method, false);
    n += put_tag(own + n, "name", r->name, false);
    n += put_tag(own + n, "status", status, true);
    const struct scen *sc = r->vu ? r->vu->ex->scen : NULL;
    if (sc && sc->tags_len)
        n = metrics_tagkey_merge(sc->tags, sc->tags_len, own, n, key, sizeof key);
    else
        memcpy(key, own, n);
    if (r->tagset >= 0 && n == r->tagkey_len && memcmp(key, r->tagkey, n) == 0)
        return r->tagset;
    if (n <= sizeof r->tagkey) {
        memcpy(r->tagkey, key, n);
        r->tagkey_len = n;
    }
    return r->tagset = metrics_tagset(r->ctx->metrics, key, n);
}

static double us_between(curl_off_t from, curl_off_t to)
{
    return to > from ? (double)(to - from) : 0;
}

static void record(struct req *r)
{
    CURL *e = r->x.easy;
    curl_off_t dns = 0, conn = 0, tls = 0, start = 0, total = 0, sent = 0, recv = 0;
    long hdr = 0, reqsize = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &dns);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &conn);
    curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &tls);
    curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &start);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &sent);
    curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &recv);
    curl_easy_getinfo(e, CURLINFO_HEADER_SIZE, &hdr);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
    /* libcurl 7.88 takes its pretransfer time late on reused connections, so
     * measure from the moment the connection was ready (0 when reused): k6's
     * http_req_duration, i.e. sending + waiting + receiving. */
    curl_off_t ready = tls ? tls : conn;
    double connecting = conn ? us_between(dns, conn) : 0, tls_us = tls ? us_between(conn, tls) : 0;
    double waiting = start ? us_between(ready, start) : 0;
    double duration = us_between(ready, total);
    if (r->vu && r->vu->lag_us) { /* open model: the first request waited for its start too */
        duration += (double)r->vu->lag_us;
        waiting += (double)r->vu->lag_us;
        r->vu->lag_us = 0;
    }
    r->timings[0] = (double)dns / 1e3;
    r->timings[1] = connecting / 1e3;
    r->timings[2] = tls_us / 1e3;
    r->timings[3] = waiting / 1e3;
    r->timings[4] = (double)total / 1e3;

    const char *err = req_error(r);
    int tag = req_tagset(r, err);
    struct metrics *m = r->ctx->metrics;
    bool failed = err || r->status >= 400 || r->status < 100;
    struct live *lv = &r->ctx->live;
    lv->reqs++;
    lv->failed += failed;
    hist_record(lv->duration, (uint64_t)duration);
    metrics_add(m, M_HTTP_REQS, tag, 1);
    metrics_add(m, M_HTTP_REQ_DURATION, tag, duration);
    metrics_add(m, M_HTTP_REQ_WAITING, tag, waiting);
    metrics_add(m, M_HTTP_REQ_CONNECTING, tag, connecting);
    metrics_add(m, M_HTTP_REQ_TLS, tag, tls_us);
    metrics_add(m, M_HTTP_REQ_FAILED, tag, failed);
    metrics_add(m, M_DATA_SENT, tag, (double)(reqsize + sent));
    metrics_add(m, M_DATA_RECEIVED, tag, (double)(hdr + recv));
    if (r->truncated)
        metrics_add(m, M_HTTP_BODY_TRUNCATED, tag, 1);
}

static bool wants_retry(const struct req *r)
{
    if (r->code != CURLE_OK || r->attempts >= r->retry_max)
        return false;
    for (int i = 0; i < r->nretry; i++)
        if (r->retry_status[i] == r->status)
            return true;
    return false;
}

static void batch_one_done(struct batch *b);
static void push_response(lua_State *L, struct req *r);

static void finish(struct req *r)
{
    r->finished = true;
    if (r->batch) {
        batch_one_done(r->batch);
    } else if (r->vu) {
        push_response(r->vu->co, r);
        vu_wake(r->vu, 1);
    }
}

static void on_done(struct xfer *x, CURLcode rc)
{
    struct req *r = (struct req *)x;
    r->code = rc;
    record(r);
    if (wants_retry(r))
        timer_start(r->ctx->loop, &r->retry_timer, loop_now(r->ctx->loop) + r->retry_every_ns);
    else
        finish(r);
}

static void on_retry_timer(struct timer *t)
{
    struct req *r = (struct req *)((char *)t - offsetof(struct req, retry_timer));
    if (!launch(r, r->x.shard)) {
        r->code = CURLE_OUT_OF_MEMORY;
        finish(r);
    }
}

/* ---------------- responses ---------------- */

#define RESPONSE_MT "tide.response"

/* Status, timings and the raw bytes, copied once; the body string and the
 * header table are made only if the script asks (user values 1 and 2). */
struct response {
    long status;
    const char *error;          /* static text */
    bool truncated;
    double timings[5];
    const char *method;         /* static, or points into data */
    size_t url_len, head_len, body_len;
    char data[];                /* url, head, body */
};

static void push_response(lua_State *L, struct req *r)
{
    const char *url = NULL; /* after redirects */
    curl_easy_getinfo(r->x.easy, CURLINFO_EFFECTIVE_URL, &url);
    if (!url)
        url = r->url.len ? r->url.data : "";
    size_t ulen = strlen(url);
    struct response *p = lua_newuserdatauv(L, sizeof *p + ulen + r->head.len + r->resp.len + 16, 2);
    p->status = r->status;
    p->error = req_error(r);
    p->truncated = r->truncated;
    memcpy(p->timings, r->timings, sizeof p->timings);
    p->url_len = ulen;
    p->head_len = r->head.len;
    p->body_len = r->resp.len;
    char *d = p->data;
    memcpy(d, url, ulen);
    memcpy(d + ulen, r->head.data, r->head.len);
    memcpy(d + ulen + r->head.len, r->resp.data, r->resp.len);
    char *m = d + ulen + r->head.len + r->resp.len;
    snprintf(m, 16, "%s", r->method);
    p->method = m;
    luaL_setmetatable(L, RESPONSE_MT);
}

static struct response *check_response(lua_State *L)
{
    return luaL_checkudata(L, 1, RESPONSE_MT);
}

static void push_body(lua_State *L, struct response *p)
{
    if (lua_getiuservalue(L, 1, 1) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    lua_pushlstring(L, p->data + p->url_len + p->head_len, p->body_len);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
}

static int headers_index(lua_State *L)
{
    size_t n;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
    char lower[256];
    if (!k || n >= sizeof lower)
        return 0;
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)((k[i] >= 'A' && k[i] <= 'Z') ? k[i] + 32 : k[i]);
    lua_pushlstring(L, lower, n);
    lua_rawget(L, 1);
    return 1;
}

/* Header names are stored lower-case; lookups of any case find them. */
static void push_headers(lua_State *L, struct response *p)
{
    if (lua_getiuservalue(L, 1, 2) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    const char *s = p->data + p->url_len, *end = s + p->head_len;
    while (s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *colon = memchr(s, ':', (size_t)((eol ? eol : end) - s));
        const char *next = eol ? eol + 1 : end;
        if (colon) {
            char name[256];
            size_t n = (size_t)(colon - s) < sizeof name - 1 ? (size_t)(colon - s) : sizeof name - 1;
            for (size_t i = 0; i < n; i++)
                name[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
            const char *v = colon + 1, *ve = eol ? eol : end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            lua_pushlstring(L, name, n);
            if (lua_rawget(L, -2) == LUA_TSTRING) { /* repeated header: join like HTTP does */
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_concat(L, 3);
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
            }
            lua_pushlstring(L, name, n);
            lua_insert(L, -2);
            lua_rawset(L, -3);
        }
        s = next;
    }
    lua_newtable(L);
    lua_pushcfunction(L, headers_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2);
}

static void push_timings(lua_State *L, const struct response *p)
{
    static const char *const names[] = {"dns", "connect", "tls", "waiting", "total"};
    lua_createtable(L, 0, 5);
    for (int i = 0; i < 5; i++) {
        lua_pushnumber(L, p->timings[i]);
        lua_setfield(L, -2, names[i]);
    }
}

static int response_json(lua_State *L)
{
    struct response *p = check_response(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "decode");
    push_body(L, p);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return luaL_error(L, "response:json(): body of %s %.*s is not JSON (%s)", p->method,
                          (int)p->url_len, p->data, lua_tostring(L, -1));
    return 1;
}

static int response_index(lua_State *L)
{
    struct response *p = check_response(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "status") == 0)
        lua_pushinteger(L, p->status);
    else if (strcmp(k, "body") == 0)
        push_body(L, p);
    else if (strcmp(k, "headers") == 0)
        push_headers(L, p);
    else if (strcmp(k, "error") == 0)
        p->error ? (void)lua_pushstring(L, p->error) : lua_pushnil(L);
    else if (strcmp(k, "json") == 0)
        lua_pushcfunction(L, response_json);
    else if (strcmp(k, "timings") == 0)
        push_timings(L, p);
    else if (strcmp(k, "url") == 0)
        lua_pushlstring(L, p->data, p->url_len);
    else if (strcmp(k, "truncated") == 0)
        lua_pushboolean(L, p->truncated);
    else if (strcmp(k, "ok") == 0)
        lua_pushboolean(L, !p->error && p->status >= 200 && p->status < 400);
    else
        lua_pushnil(L);
    return 1;
}

static int response_tostring(lua_State *L)
{
    struct response *p = check_response(L);
    lua_pushfstring(L, "tide.response: %s %s -> %d%s%s", p->method,
                    lua_pushlstring(L, p->data, p->url_len), (int)p->status,
                    p->error ? " " : "", p->error ? p->error : "");
    return 1;
}

/* ---------------- the Lua API ---------------- */

/* Runs the private loop until done; false when Ctrl-C came first. */
static bool wait_blocking(struct tctx *ctx, const bool *done)
{
    while (!*done) {
        loop_run_once(ctx->loop, NS_PER_SEC / 10);
        if (ctx->interrupts && ctx->interrupts() > ctx->interrupts_before)
            return false;
    }
    return true;
}

static void abandon(struct req *r)
{
    shard_remove(&r->x);
    timer_stop(r->ctx->loop, &r->retry_timer);
}

static void cancel_one(struct vu *vu)
{
    abandon(vu->wait);
}

static struct agent *caller_agent(lua_State *L, struct tctx *ctx, struct vu *vu, const char *fn)
{
    if (vu)
        return &vu->agent;
    if (ctx->in_load)
        luaL_error(L, "http.%s: called outside a virtual user's own coroutine during load "
                      "(requests cannot run in a nested coroutine)", fn);
    return &ctx->agent;
}

static int do_request(lua_State *L, const char *fn, const char *method, int url_idx, int opts_idx)
{
    struct tctx *ctx = tctx_get(L);
    struct vu *vu = vu_current(L);
    struct agent *ag = caller_agent(L, ctx, vu, fn);
    struct req *r = agent_req(L, ctx, ag);
    if (r->x.active || timer_armed(&r->retry_timer))
        return luaL_error(L, "http.%s: this user already has a request in flight", fn);
    configure(L, r, fn, check_method(L, r, method), url_idx, opts_idx);
    r->vu = vu;
    r->batch = NULL;
    if (!launch(r, vu ? vu->shard : ctx->shards[0]))
        return luaL_error(L, "http.%s: could not start the transfer", fn);
    if (vu)
        return vu_suspend(L, vu, cancel_one, r);
    if (!wait_blocking(ctx, &r->finished)) {
        abandon(r);
        return luaL_error(L, "http.%s: interrupted", fn);
    }
    push_response(L, r);
    return 1;
}

#define METHOD_FN(lname, m)                                                   \
    static int l_##lname(lua_State *L) { return do_request(L, #lname, m, 1, 2); }
METHOD_FN(get, "GET")
METHOD_FN(head, "HEAD")
METHOD_FN(post, "POST")
METHOD_FN(put, "PUT")
METHOD_FN(patch, "PATCH")
METHOD_FN(delete, "DELETE")
METHOD_FN(options, "OPTIONS")

static int l_request(lua_State *L)
{
    return do_request(L, "request", luaL_checkstring(L, 1), 2, 3);
}

/* ---------------- batch ---------------- */

#define BATCH_MT "tide.batch"

static void batch_release(struct batch *b)
{
    if (b->released)
        return;
    b->released = true;
    for (unsigned i = 0; i < b->n; i++) {
        abandon(b->reqs[i]);
        b->reqs[i]->batch = NULL;
        pool_put(b->ctx, b->reqs[i]);
    }
}

static int batch_gc(lua_State *L)
{
    batch_release(luaL_checkudata(L, 1, BATCH_MT));
    return 0;
}

static void push_batch_result(lua_State *L, struct batch *b)
{
    lua_createtable(L, (int)b->n, 0);
    for (unsigned i = 0; i < b->n; i++) {
        push_response(L, b->reqs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* A suspended VU's batch is anchored in the registry, keyed by its address. */
static void batch_unanchor(struct batch *b)
{
    lua_pushnil(b->ctx->L);
    lua_rawsetp(b->ctx->L, LUA_REGISTRYINDEX, b);
}

static void batch_one_done(struct batch *b)
{
    if (--b->pending > 0)
        return;
    b->done = true;
    struct vu *vu = b->vu;
    if (!vu)
        return;
    push_batch_result(vu->co, b);
    batch_release(b);
    batch_unanchor(b);
    vu_wake(vu, 1);
}

static void cancel_batch(struct vu *vu)
{
    struct batch *b = vu->wait;
    batch_release(b);
    batch_unanchor(b);
}

static void batch_configure(lua_State *L, struct req *r, lua_Integer i, int item)
{
    if (lua_type(L, item) == LUA_TSTRING) {
        configure(L, r, "batch", "GET", item, 0);
        return;
    }
    if (!lua_istable(L, item))
        luaL_error(L, "http.batch: request #%d must be a URL or {method, url, opts}", (int)i);
    lua_geti(L, item, 1);
    lua_geti(L, item, 2);
    lua_geti(L, item, 3);
    if (lua_type(L, -3) != LUA_TSTRING || lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "http.batch: request #%d must be {method, url, opts}", (int)i);
    int method = lua_gettop(L) - 2;
    configure(L, r, "batch", check_method(L, r, lua_tostring(L, method)), method + 1, method + 2);
}

static int l_batch(lua_State *L)
{
    struct tctx *ctx = tctx_get(L);
    struct vu *vu = vu_current(L);
    struct agent *ag = caller_agent(L, ctx, vu, "batch");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 100000, 1, "between 0 and 100000 requests expected");
    struct batch *b = lua_newuserdatauv(L, sizeof *b + (size_t)n * sizeof(struct req *), 0);
    *b = (struct batch){.ctx = ctx, .vu = vu};
    luaL_setmetatable(L, BATCH_MT);
    int bidx = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        struct req *r = pool_get(L, ctx, ag);
        b->reqs[b->n++] = r;
        r->batch = b;
        r->vu = vu;
        lua_geti(L, 1, i);
        batch_configure(L, r, i, lua_gettop(L));
        lua_settop(L, bidx);
    }
    struct shard *s = vu ? vu->shard : ctx->shards[0];
    b->pending = b->n;
    for (unsigned i = 0; i < b->n; i++)
        if (!launch(b->reqs[i], s)) {
            batch_release(b);
            return luaL_error(L, "http.batch: could not start transfer #%d", (int)i + 1);
        }
    if (b->n == 0) {
        lua_newtable(L);
        return 1;
    }
    if (vu) {
        lua_pushvalue(L, bidx);
        lua_rawsetp(L, LUA_REGISTRYINDEX, b);
        return vu_suspend(L, vu, cancel_batch, b);
    }
    if (!wait_blocking(ctx, &b->done)) {
        batch_release(b);
        return luaL_error(L, "http.batch: interrupted");
    }
    push_batch_result(L, b);
    batch_release(b);
    return 1;
}

int luaopen_tide_http(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"get", l_get}, {"head", l_head}, {"post", l_post}, {"put", l_put},
        {"patch", l_patch}, {"delete", l_delete}, {"options", l_options},
        {"request", l_request}, {"batch", l_batch}, {NULL, NULL},
    };
    luaL_newmetatable(L, RESPONSE_MT);
    lua_pushcfunction(L, response_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, response_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newmetatable(L, BATCH_MT);
    lua_pushcfunction(L, batch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 2);
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    return 1;
}
