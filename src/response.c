/* tide.response: what a request received, copied once; the body string and
 * the header table are made only when the script asks. */
#include "redact.h"
#include "req.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>


#define RESPONSE_MT "tide.response"

/* Status, timings and the raw bytes, copied once; the body string and the
 * header table are made only if the script asks (user values 1 and 2). */
struct response {
    long status;
    int redirects;              /* followed to get here */
    const char *error;          /* static text */
    const char *proto;          /* static text, NULL: no response */
    bool truncated;
    double timings[5];
    const char *method;         /* static, or points into data */
    size_t url_len, head_len, body_len;
    char data[];                /* url, head, body */
};

/* Whether a URL has user[:password]@ before its host. */
static bool has_userinfo(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return false;
    p += 3;
    size_t n = strcspn(p, "/?#");
    return memchr(p, '@', n) != NULL;
}

void response_push(lua_State *L, struct req *r)
{
    const struct tres *res = &r->res;
    const struct buf *head = &res->head, *body = &res->body;
    const char *url = res->url; /* the last hop's */
    if (!url)
        url = r->sent->url.len ? r->sent->url.data : "";
    size_t ulen = strlen(url);
    bool secret = has_userinfo(url);   /* r.url never shows a password or token */
    size_t room = ulen + (secret ? 4 : 0);
    struct response *p = lua_newuserdatauv(L, sizeof *p + room + head->len + body->len + 16, 2);
    p->status = res->status;
    p->redirects = r->hops;
    p->error = terr_name(res->err, res->detail);
    p->truncated = res->truncated;
    p->proto = res->proto;
    memcpy(p->timings, r->timings, sizeof p->timings);
    p->head_len = head->len;
    p->body_len = body->len;
    char *d = p->data;
    if (secret) {
        redact_url(url, d, room);
        ulen = strlen(d);
    } else {
        memcpy(d, url, ulen);
    }
    p->url_len = ulen;
    if (head->len) /* an empty buffer may have no storage at all */
        memcpy(d + ulen, head->data, head->len);
    if (body->len)
        memcpy(d + ulen + head->len, body->data, body->len);
    char *m = d + ulen + head->len + body->len;
    size_t mlen = strnlen(r->sent->method, 15);
    memcpy(m, r->sent->method, mlen);
    m[mlen] = '\0';
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
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
        return 1;
    char url[2048], clean[2048];
    snprintf(url, sizeof url, "%.*s", (int)(p->url_len < sizeof url ? p->url_len : sizeof url - 1), p->data);
    redact_password(url, url, clean, sizeof clean);
    return luaL_error(L, "response:json(): the body of %s %s is not JSON (%s)", p->method, clean,
                      lua_tostring(L, -1));
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
    else if (strcmp(k, "method") == 0)
        lua_pushstring(L, p->method);
    else if (strcmp(k, "url") == 0)
        lua_pushlstring(L, p->data, p->url_len);
    else if (strcmp(k, "proto") == 0)
        p->proto ? (void)lua_pushstring(L, p->proto) : lua_pushnil(L);
    else if (strcmp(k, "redirects") == 0)
        lua_pushinteger(L, p->redirects);
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
void response_open(lua_State *L)
{
    luaL_newmetatable(L, RESPONSE_MT);
    lua_pushcfunction(L, response_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, response_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
