#include "http.h"
#include "block.h"
#include "buf.h"
#include "clock.h"
#include "duration.h"
#include "metrics.h"
#include "hist.h"
#include "vu.h"

#include <lauxlib.h>
#include <stdio.h>
#include <strings.h>

#include "req.h"

struct batch {
    struct tctx *ctx;
    struct vu *vu;
    unsigned n, pending;
    bool done, released;
    struct req *reqs[];
};

/* ---------------- handles ---------------- */

static void on_resent(void *ud, uint64_t sent_ns, uint64_t now_ns);
static void on_done(void *ud);
static void on_retry_timer(struct timer *t);

static const struct tcalls req_calls = {.resent = on_resent, .done = on_done};

static struct req *req_new(struct tctx *ctx)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->tp = transport_default; /* per request: another transport plugs in here */
    if (!(r->x = r->tp->xfer_new(ctx->loop, &req_calls, r, ctx->buffer_size))) {
        free(r);
        return NULL;
    }
    r->ctx = ctx;
    req_opts_init(r);
    r->retry_timer.fire = on_retry_timer;
    r->tagset = -1;
    r->next_all = ctx->all;
    ctx->all = r;
    return r;
}

static void req_destroy(struct req *r)
{
    r->tp->xfer_free(r->x);
    req_opts_free(r);
    timer_stop(r->ctx->loop, &r->retry_timer);
    buf_free(&r->q.url);
    buf_free(&r->q.headers);
    buf_free(&r->body);
    buf_free(&r->res.head);
    buf_free(&r->res.body);
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
        luaL_error(L, "out of memory (transfer)");
    ag->req->q.jar = ag->jar;
    return ag->req;
}

/* Batch requests join the agent's cookie jar, shared between transfers. The
 * cookies the agent's own transfer had are carried over when the jar is made. */
static bool agent_jar(struct agent *ag)
{
    if (!ag->jar)
        ag->jar = transport_default->jar_new(ag->req ? ag->req->x : NULL);
    return ag->jar != NULL;
}

void agent_free(struct tctx *ctx, struct agent *ag)
{
    if (ag->jar) {
        /* every transfer leaves it first: a jar in use cannot be freed */
        for (struct req *r = ctx->all; r; r = r->next_all)
            r->tp->jar_leave(r->x, ag->jar);
        transport_default->jar_free(ag->jar);
    }
    *ag = (struct agent){0};
}

static struct req *pool_get(lua_State *L, struct tctx *ctx, struct agent *ag)
{
    struct req *r = ctx->pool;
    if (r)
        ctx->pool = r->next_free;
    else if (!(r = req_new(ctx)))
        luaL_error(L, "out of memory (transfer)");
    if (!agent_jar(ag))
        luaL_error(L, "out of memory (cookie jar)");
    r->q.jar = ag->jar;
    return r;
}

static void pool_put(struct tctx *ctx, struct req *r)
{
    r->next_free = ctx->pool;
    ctx->pool = r;
}

/* ---------------- running and finishing ---------------- */

static bool launch(struct req *r, struct shard *s)
{
    r->finished = false;
    r->attempts++;
    r->shard = s;
    return r->tp->start(r->x, s, &r->res);
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

/* The status as decimal text: snprintf would be the dearest call on this path. */
static void format_status(char out[24], long status)
{
    char rev[24];
    int n = 0;
    unsigned long v = status < 0 ? 0 : (unsigned long)status;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
}

/* The scenario's tags with the request's own over them (tags = {...}). */
static const char *request_tags(struct req *r, char *merged, size_t cap, size_t *len)
{
    size_t own_len, vu_len = r->vu ? r->vu->tags_len : 0;
    const char *own = req_opts_tags(r, &own_len);
    if (!own_len) {
        *len = vu_len;
        return vu_len ? r->vu->tags : "";
    }
    if (!vu_len) {
        *len = own_len;
        return own;
    }
    *len = metrics_tagkey_merge(r->vu->tags, vu_len, own, own_len, merged, cap);
    return merged;
}

/* Interns this request's tag set; the last key is cached so a VU hitting the
 * same endpoint skips the hash table. */
static int req_tagset(struct req *r, long status_code, const char *err)
{
    char own[sizeof r->tagkey], key[sizeof r->tagkey + 2 * TAGS_MAX], status[24];
    size_t n = 0;
    format_status(status, status_code);
    if (err)
        n += put_tag(own, "error", err, false);
    if (r->vu && r->vu->group_len)
        n += put_tag(own + n, "group", r->vu->group, false);
    n += put_tag(own + n, "method", r->q.method, false);
    n += put_tag(own + n, "name", r->name, false);
    n += put_tag(own + n, "status", status, true);
    char merged[TAGS_MAX * 2];
    size_t base_len;
    const char *base = request_tags(r, merged, sizeof merged, &base_len);
    if (base_len)
        n = metrics_tagkey_merge(base, base_len, own, n, key, sizeof key);
    else
        memcpy(key, own, n);
    if (r->tagset >= 0 && n == r->tagkey_len && memcmp(key, r->tagkey, n) == 0)
        return r->tagset;
    if (n <= sizeof r->tagkey) {
        memcpy(r->tagkey, key, n);
        r->tagkey_len = n;
    }
    return r->tagset = metrics_tagset_named(r->ctx->metrics, r->ctx->once, key, n);
}

/* What one attempt cost: µs, and bytes each way. */
struct sample {
    double duration, waiting, connecting, tls;
    double sent, received;
};

static void add_sample(struct req *r, long status, const char *err, struct sample *sm)
{
    if (r->vu && r->vu->lag_us) { /* open model: the first request waited for its start too */
        sm->duration += (double)r->vu->lag_us;
        sm->waiting += (double)r->vu->lag_us;
        r->vu->lag_us = 0;
    }
    int tag = req_tagset(r, status, err);
    struct metrics *m = r->ctx->metrics;
    bool failed = err || !req_opts_expected(r, status);
    struct live *lv = &r->ctx->live;
    lv->reqs++;
    lv->failed += failed;
    hist_record(lv->duration, (uint64_t)sm->duration);
    metrics_add(m, M_HTTP_REQS, tag, 1);
    metrics_add(m, M_HTTP_REQ_DURATION, tag, sm->duration);
    metrics_add(m, M_HTTP_REQ_WAITING, tag, sm->waiting);
    metrics_add(m, M_HTTP_REQ_CONNECTING, tag, sm->connecting);
    metrics_add(m, M_HTTP_REQ_TLS, tag, sm->tls);
    metrics_add(m, M_HTTP_REQ_FAILED, tag, failed);
    metrics_add(m, M_DATA_SENT, tag, sm->sent);
    metrics_add(m, M_DATA_RECEIVED, tag, sm->received);
}

/* The attempt the transport is about to re-send went out and was never answered. */
static void on_resent(void *ud, uint64_t sent_ns, uint64_t now_ns)
{
    struct req *r = ud;
    struct sample sm = {.duration = now_ns > sent_ns ? (double)(now_ns - sent_ns) / 1e3 : 0};
    add_sample(r, 0, terr_name(TERR_RESET, NULL), &sm);
}

static void record(struct req *r)
{
    const struct tres *res = &r->res;
    struct sample sm = {
        .connecting = (double)res->t.connect,
        .tls = (double)res->t.tls,
        .waiting = (double)res->t.waiting,
        .duration = (double)res->t.duration,
        .sent = (double)res->bytes_sent,
        .received = (double)res->bytes_received,
    };
    r->timings[0] = (double)res->t.dns / 1e3;
    r->timings[1] = sm.connecting / 1e3;
    r->timings[2] = sm.tls / 1e3;
    r->timings[3] = (sm.waiting + (double)(r->vu ? r->vu->lag_us : 0)) / 1e3;
    r->timings[4] = (double)res->t.total / 1e3;
    req_opts_judge(r);
    add_sample(r, res->status, terr_name(res->err, res->detail), &sm);
    if (res->truncated)
        metrics_add(r->ctx->metrics, M_HTTP_BODY_TRUNCATED, r->tagset, 1);
}

static bool wants_retry(const struct req *r)
{
    if (r->res.err != TERR_NONE || r->attempts >= r->retry_max)
        return false;
    for (int i = 0; i < r->nretry; i++)
        if (r->retry_status[i] == r->res.status)
            return true;
    return false;
}

static void batch_one_done(struct batch *b);

static void finish(struct req *r)
{
    r->finished = true;
    if (r->batch) {
        batch_one_done(r->batch);
    } else if (r->vu) {
        response_push(r->vu->co, r);
        vu_wake(r->vu, 1);
    }
}

static void on_done(void *ud)
{
    struct req *r = ud;
    record(r);
    if (wants_retry(r))
        timer_start(r->ctx->loop, &r->retry_timer, loop_now(r->ctx->loop) + r->retry_every_ns);
    else
        finish(r);
}

static void on_retry_timer(struct timer *t)
{
    struct req *r = (struct req *)((char *)t - offsetof(struct req, retry_timer));
    if (!launch(r, r->shard)) {
        r->res.err = TERR_NOMEM;
        finish(r);
    }
}


/* ---------------- the Lua API ---------------- */

static void abandon(struct req *r)
{
    r->tp->cancel(r->x);
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

/* HTTP/2 multiplexes requests that share a connection cache: a user whose
 * request may speak it (asked for, or offered over TLS) gets a cache of its
 * own, kept with its cookies, so that it never rides another user's connection. */
static void own_connections(lua_State *L, struct agent *ag, struct req *r)
{
    bool h2 = r->q.version == THTTP_2 || (r->q.version == THTTP_DEFAULT && r->q.parts.tls);
    if (ag->jar || !h2)
        return;
    if (!agent_jar(ag))
        luaL_error(L, "out of memory (cookie jar)");
    r->q.jar = ag->jar;
}

static int do_request(lua_State *L, const char *fn, const char *method, int url_idx, int opts_idx)
{
    struct tctx *ctx = tctx_get(L);
    struct vu *vu = vu_current(L);
    struct agent *ag = caller_agent(L, ctx, vu, fn);
    struct req *r = agent_req(L, ctx, ag);
    if (r->tp->busy(r->x) || timer_armed(&r->retry_timer))
        return luaL_error(L, "http.%s: this user already has a request in flight", fn);
    req_configure(L, r, fn, req_method(L, r, method), url_idx, opts_idx);
    own_connections(L, ag, r);
    r->vu = vu;
    r->batch = NULL;
    if (!launch(r, vu ? vu->shard : ctx->shards[0]))
        return luaL_error(L, "http.%s: could not start the transfer", fn);
    if (vu)
        return vu_suspend(L, vu, cancel_one, r);
    if (!block_until(ctx, &r->finished)) {
        abandon(r);
        return luaL_error(L, "http.%s: interrupted", fn);
    }
    response_push(L, r);
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
        response_push(L, b->reqs[i]);
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
        req_configure(L, r, "batch", "GET", item, 0);
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
    req_configure(L, r, "batch", req_method(L, r, lua_tostring(L, method)), method + 1, method + 2);
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
    if (!block_until(ctx, &b->done)) {
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
    response_open(L);
    luaL_newmetatable(L, BATCH_MT);
    lua_pushcfunction(L, batch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newlibtable(L, fns);
    lua_pushvalue(L, lua_upvalueindex(1));
    luaL_setfuncs(L, fns, 1);
    return 1;
}
