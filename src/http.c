#include "http.h"
#include "block.h"
#include "buf.h"
#include "clock.h"
#include "cookies.h"
#include "duration.h"
#include "metrics.h"
#include "redact.h"
#include "hist.h"
#include "h1_transport.h"
#include "curl_transport.h"
#include "vu.h"

#include <lauxlib.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

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

static const struct transport_ops *const transports[TRANSPORTS] = {
    [TRANSPORT_CURL] = &curl_transport,
    [TRANSPORT_LEAN] = &h1_transport,
};

/* The transport a run starts its users on. */
static unsigned first_kind(const struct tctx *ctx)
{
    return ctx->http.engine_curl ? TRANSPORT_CURL : TRANSPORT_LEAN;
}

static struct req *req_new(struct tctx *ctx)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = (unsigned char)first_kind(ctx);
    r->tp = transports[r->kind];
    if (!(r->x = r->xs[r->kind] = r->tp->xfer_new(ctx->loop, &req_calls, r, ctx->buffer_size))) {
        free(r);
        return NULL;
    }
    r->ctx = ctx;
    req_opts_init(r);
    r->sent = &r->q;
    r->retry_timer.fire = on_retry_timer;
    r->tagset = -1;
    r->next_all = ctx->all;
    ctx->all = r;
    return r;
}

static void req_destroy(struct req *r)
{
    for (unsigned k = 0; k < TRANSPORTS; k++)
        if (r->xs[k])
            transports[k]->xfer_free(r->xs[k]);
    req_opts_free(r);
    timer_stop(r->ctx->loop, &r->retry_timer);
    buf_free(&r->q.url);
    buf_free(&r->q.headers);
    buf_free(&r->body);
    buf_free(&r->res.head);
    buf_free(&r->res.body);
    if (r->hop) {
        buf_free(&r->hop->url);
        buf_free(&r->hop->headers);
        free(r->hop);
    }
    buf_free(&r->cookie);
    buf_free(&r->jar_lines);
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
    ag->req->ag = ag;
    return ag->req;
}

/* The agent's cookies, as they are now, into transport to's jar (both jars
 * made: the one of the transport they were on takes its own transfer's). */
static bool agent_move_cookies(struct agent *ag, unsigned to)
{
    unsigned from = ag->kind;
    struct req *own = ag->req;
    if (!ag->jars[from] && !(ag->jars[from] = transports[from]->jar_new(own ? own->xs[from] : NULL)))
        return false;
    struct buf lines = {0};
    bool ok = transports[from]->jar_export(ag->jars[from], &lines) && buf_append(&lines, "", 1);
    transports[to]->jar_clear(ag->jars[to]);
    for (char *line = lines.data, *nl; ok && line && *line; line = nl + 1) {
        if (!(nl = strchr(line, '\n')))
            break;
        *nl = '\0';
        ok = transports[to]->jar_import(ag->jars[to], line);
    }
    buf_free(&lines);
    ag->kind = (unsigned char)to;
    return ok;
}

/* Transport k's jar for the agent, holding its cookies as they are now: made
 * on first need (the cookies its own transfer of k had carried over), and
 * given the agent's cookies when they were on the other transport. */
static bool agent_jar(struct agent *ag, unsigned k)
{
    if (!ag->started) {
        ag->kind = (unsigned char)k;
        ag->started = true;
    }
    if (!ag->jars[k] && !(ag->jars[k] = transports[k]->jar_new(ag->req ? ag->req->xs[k] : NULL)))
        return false;
    return ag->kind == k || agent_move_cookies(ag, k);
}

void agent_free(struct tctx *ctx, struct agent *ag)
{
    for (unsigned k = 0; k < TRANSPORTS; k++) {
        if (!ag->jars[k])
            continue;
        /* every transfer leaves it first: a jar in use cannot be freed */
        for (struct req *r = ctx->all; r; r = r->next_all)
            if (r->xs[k])
                transports[k]->jar_leave(r->xs[k], ag->jars[k]);
        transports[k]->jar_free(ag->jars[k]);
    }
    *ag = (struct agent){0};
}

/* Chooses the transport for q (r->q or its hop): the lean one when the run
 * allows it and it carries q, libcurl otherwise; q takes the agent's jar
 * of that transport (the cookies brought over when the user switched).
 * True when r changed transports: its transfer needs q's URL and the rest
 * again (r->moved, r->dirty). Raises nothing; false in *ok when out of memory. */
static bool req_pick(struct req *r, struct treq *q, bool *ok)
{
    struct agent *ag = r->ag;
    unsigned k = !r->ctx->http.engine_curl && h1_carries(q) ? TRANSPORT_LEAN : TRANSPORT_CURL;
    bool switched = k != r->kind;
    *ok = true;
    if (switched) {
        if (!r->xs[k] && !(r->xs[k] = transports[k]->xfer_new(r->ctx->loop, &req_calls, r, r->ctx->buffer_size)))
            return *ok = false;
        r->kind = (unsigned char)k;
        r->tp = transports[k];
        r->x = r->xs[k];
        r->moved = r->dirty = true;
    }
    /* a batch's requests share the user's jar; its own request keeps its
     * cookies in its transfer until a jar is needed */
    bool shared = r != ag->req || ag->jars[k] || (ag->started && ag->kind != k);
    if (shared && !agent_jar(ag, k))
        *ok = false;
    else if (!ag->started)
        ag->kind = (unsigned char)k, ag->started = true;
    q->jar = ag->jars[k];
    return switched;
}

/* After req_configure: q's transport, and q handed to it. With cookies of
 * the script's, first_hop prepares q with its Cookie header added; on a
 * transport just switched to, it sends q's URL first. */
static void req_ready(lua_State *L, struct req *r, const char *fn)
{
    bool ok, switched = req_pick(r, &r->q, &ok);
    if (!ok || (!switched && !r->cookie_own && r->tp->prepare(r->x, &r->q) != TERR_NONE))
        luaL_error(L, "http.%s: out of memory", fn);
}

static struct req *pool_get(lua_State *L, struct tctx *ctx, struct agent *ag)
{
    struct req *r = ctx->pool;
    if (r)
        ctx->pool = r->next_free;
    else if (!(r = req_new(ctx)))
        luaL_error(L, "out of memory (transfer)");
    r->ag = ag;
    return r;
}

static void pool_put(struct tctx *ctx, struct req *r)
{
    r->next_free = ctx->pool;
    ctx->pool = r;
}

/* ---------------- what goes out: cookies and redirects ---------------- */

/* hop starts as q: its method, body, limits and jar, and copies of its URL
 * and header lines. */
static bool hop_from_q(struct req *r)
{
    if (!r->hop && !(r->hop = calloc(1, sizeof *r->hop))) /* most users never need one */
        return false;
    struct treq *h = r->hop;
    struct buf url = h->url, headers = h->headers;
    *h = r->q;
    h->url = url;
    h->headers = headers;
    h->url.len = h->headers.len = 0;
    h->own_cookies = false;
    r->hop_base_len = r->q.headers.len;
    return buf_append(&h->url, r->q.url.data, r->q.url.len) &&
           buf_append(&h->headers, r->q.headers.data, r->q.headers.len);
}

/* hop's Cookie header, when the script gave cookies: its pairs, then the
 * jar's for hop's URL whose names they do not have. The transport then
 * adds none of the jar's (it would in a second Cookie header). */
static enum terr add_cookie_header(struct req *r)
{
    struct treq *h = r->hop;
    struct buf *lines = &h->headers;
    lines->len = r->hop_base_len;
    h->own_cookies = false;
    bool pairs = r->hop_cookies; /* the script's pairs; Cookie = false holds past another origin too */
    if (!pairs && r->cookie_jar)
        return TERR_NONE; /* the jar's alone: the transport's */
    r->jar_lines.len = 0;
    if (r->cookie_jar && h->jar && !r->tp->jar_export(h->jar, &r->jar_lines))
        return TERR_NOMEM;
    h->own_cookies = !r->cookie_jar || r->jar_lines.len > 0;
    size_t at = lines->len;
    if (!buf_append(lines, "Cookie: ", 8) ||
        !cookie_header(lines, pairs ? r->cookie.data : NULL, pairs ? r->cookie.len : 0, r->jar_lines.data,
                       r->jar_lines.len, h->url.data, &h->parts, (int64_t)time(NULL)))
        return TERR_NOMEM;
    if (lines->len - at + 1 > HEADER_LINE_MAX) {
        lines->len = at;
        r->res.detail = "Cookie header over 8 KB";
        return TERR_OTHER;
    }
    if (lines->len == at + 8 && !(pairs && r->cookie_header)) { /* no cookie at all: no header */
        lines->len = at;
        return TERR_NONE;
    }
    return buf_append(lines, "\r\n", 2) ? TERR_NONE : TERR_NOMEM;
}

/* The request from its first URL (its first attempt or a retry): q, or hop
 * made from it when the script's cookies go in one header with the jar's. */
static enum terr first_hop(struct req *r)
{
    bool ok;
    req_pick(r, &r->q, &ok); /* after a redirect to another transport, q's again */
    if (!ok)
        return TERR_NOMEM;
    r->hops = 0;
    r->chain_us = 0;
    r->hop_cookies = r->cookie_own;
    r->sent = &r->q;
    if (r->renamed && !r->named) /* a retry: the hops took their own names */
        req_default_name(r, r->q.url.data);
    r->renamed = false;
    if (r->moved && r->tp->set_url(r->x, &r->q) != TERR_NONE)
        return TERR_BAD_URL;
    r->moved = false;
    if (!r->cookie_own) {
        if (r->dirty && r->tp->prepare(r->x, &r->q) != TERR_NONE)
            return TERR_NOMEM;
        r->dirty = false;
        return TERR_NONE;
    }
    if (!hop_from_q(r))
        return TERR_NOMEM;
    enum terr e = add_cookie_header(r);
    if (e != TERR_NONE)
        return e;
    r->sent = r->hop;
    r->dirty = true;
    return r->tp->prepare(r->x, r->hop);
}

static bool is_redirect(long status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static bool http_url(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* Whether the response just in is a redirect to follow. One past the
 * request's limits is not followed and says why: more redirects than
 * `redirects` allows, its `timeout` spent (it covers them all), or a
 * Location that is not http(s). */
static bool wants_redirect(struct req *r)
{
    struct tres *res = &r->res;
    r->chain_us += res->t.total;
    if (!res->location || res->err != TERR_NONE || r->redirects == 0 || !is_redirect(res->status))
        return false;
    if (r->hops >= r->redirects)
        res->err = TERR_REDIRECTS;
    else if (r->chain_us >= (uint64_t)r->q.timeout_ms * 1000)
        res->err = TERR_TIMEOUT;
    else if (!http_url(res->location))
        res->err = TERR_BAD_URL;
    else
        return true;
    return false;
}

/* The method a redirect makes of hop's, by the fetch standard (browsers;
 * k6 and requests agree for GET, HEAD and POST): 303 makes anything but
 * HEAD a GET, 301 and 302 a POST; any other stays as it was, body and all.
 * True when the body goes. */
static bool redirect_method(struct treq *h, long status)
{
    bool to_get = status == 303 ? h->kind != TM_HEAD : (status == 301 || status == 302) && h->kind == TM_POST;
    if (to_get) {
        h->method = "GET";
        h->kind = TM_GET;
        h->idempotent = true;
    }
    return status == 303 || to_get;
}

/* Removes the lines of hop's headers (before its Cookie header) whose names are listed. */
static void drop_headers(struct req *r, const char *const *names)
{
    struct buf *h = &r->hop->headers;
    size_t in = 0, out = 0, end = r->hop_base_len;
    while (in < end) {
        const char *line = h->data + in, *eol = memchr(line, '\r', end - in);
        size_t n = eol ? (size_t)(eol - line) + 2 : end - in;
        const char *colon = memchr(line, ':', n);
        size_t nlen = colon ? (size_t)(colon - line) : 0;
        bool drop = false;
        for (const char *const *name = names; *name && !drop; name++)
            drop = strlen(*name) == nlen && strncasecmp(line, *name, nlen) == 0;
        if (!drop) {
            memmove(h->data + out, line, n);
            out += n;
        }
        in += n;
    }
    h->len = r->hop_base_len = out;
}

/* Another scheme, host or port: credentials stay with the origin they were for. */
static bool same_origin(const char *a, const struct turl *ua, const char *b, const struct turl *ub)
{
    return ua->host_len && ua->host_len == ub->host_len && ua->tls == ub->tls && ua->port == ub->port &&
           strncasecmp(a + ua->host, b + ub->host, ua->host_len) == 0;
}

static const char *const origin_headers[] = {"authorization", "proxy-authorization", NULL};
static const char *const body_headers[] = {"content-type", "content-length", "content-encoding",
                                           "content-language", "content-location", "transfer-encoding", NULL};

/* Prepares hop as the request a redirect (status, to an absolute http(s)
 * location) asks for. Call after the response was recorded: its method
 * and name change. */
static enum terr redirect_to(struct req *r, const char *location, long status)
{
    if ((!r->hop || r->sent != r->hop) && !hop_from_q(r))
        return TERR_NOMEM;
    struct treq *h = r->hop;
    size_t len = strlen(location);
    struct turl to;
    if (!turl_parse(location, len, &to))
        to = (struct turl){0};
    bool cross = !same_origin(h->url.data, &h->parts, location, &to);
    h->url.len = 0;
    if (!buf_append(&h->url, location, len + 1))
        return TERR_NOMEM;
    h->parts = to;
    h->headers.len = r->hop_base_len;
    if (cross) {
        drop_headers(r, origin_headers);
        h->auth = TAUTH_NONE; /* `auth` credentials too, which the transport sends itself */
        h->user = h->password = NULL;
        r->hop_cookies = false; /* the script's cookies too; the jar's go by their domains */
    }
    if (redirect_method(h, status)) {
        h->has_body = false;
        h->body = "";
        h->body_len = 0;
        h->multipart = NULL;
        h->nmultipart = 0;
        drop_headers(r, body_headers);
    }
    uint64_t left_us = (uint64_t)r->q.timeout_ms * 1000 - r->chain_us; /* > 0: wants_redirect */
    h->timeout_ms = (long)((left_us + 999) / 1000);
    bool ok;
    req_pick(r, h, &ok);
    if (!ok)
        return TERR_NOMEM;
    if (r->tp->set_url(r->x, h) != TERR_NONE)
        return TERR_BAD_URL;
    r->moved = r->dirty = true;
    if (!r->named) {
        req_default_name(r, h->url.data);
        r->renamed = true;
    }
    enum terr e = add_cookie_header(r);
    if (e != TERR_NONE)
        return e;
    if (r->tp->prepare(r->x, h) != TERR_NONE)
        return TERR_NOMEM;
    r->hops++;
    return TERR_NONE;
}

/* ---------------- running and finishing ---------------- */

/* Sends the request from its first URL: its first attempt, or a retry. */
static enum terr launch(struct req *r, struct shard *s)
{
    r->finished = false;
    r->attempts++;
    r->shard = s;
    enum terr e = first_hop(r);
    if (e != TERR_NONE)
        return e;
    return r->tp->start(r->x, s, &r->res) ? TERR_NONE : TERR_NOMEM;
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
    n += put_tag(own + n, "method", r->sent->method, false);
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
    if (!r->ctx->untagged) /* bookkeeping: one series, not one per request name */
        r->ctx->untagged = metrics_tagset(m, "", 0) + 1;
    metrics_add(m, r->kind == TRANSPORT_LEAN ? M_HTTP_REQS_LEAN : M_HTTP_REQS_CURL, r->ctx->untagged - 1, 1);
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

/* The next hop of a redirect, after its response was recorded. */
static void follow(struct req *r)
{
    enum terr e = redirect_to(r, r->res.location, r->res.status);
    if (e == TERR_NONE) {
        r->sent = r->hop;
        if (r->tp->start(r->x, r->shard, &r->res))
            return;
        e = TERR_NOMEM;
    }
    r->res.err = e;
    finish(r);
}

static void on_done(void *ud)
{
    struct req *r = ud;
    bool redirect = wants_redirect(r);
    record(r);
    if (redirect)
        follow(r);
    else if (wants_retry(r))
        timer_start(r->ctx->loop, &r->retry_timer, loop_now(r->ctx->loop) + r->retry_every_ns);
    else
        finish(r);
}

static void on_retry_timer(struct timer *t)
{
    struct req *r = (struct req *)((char *)t - offsetof(struct req, retry_timer));
    enum terr e = launch(r, r->shard);
    if (e != TERR_NONE) {
        r->res.err = e;
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
    if (r->kind != TRANSPORT_CURL || ag->jars[TRANSPORT_CURL] || !h2)
        return;
    if (!agent_jar(ag, TRANSPORT_CURL))
        luaL_error(L, "out of memory (cookie jar)");
    r->q.jar = ag->jars[TRANSPORT_CURL];
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
    req_ready(L, r, fn);
    own_connections(L, ag, r);
    r->vu = vu;
    r->batch = NULL;
    if (r->cookie_own && !ag->jars[r->kind]) { /* the script's cookies go with the jar's: a jar to read */
        if (!agent_jar(ag, r->kind))
            return luaL_error(L, "http.%s: out of memory (cookie jar)", fn);
        r->q.jar = ag->jars[r->kind];
    }
    enum terr e = launch(r, vu ? vu->shard : ctx->shards[0]);
    if (e != TERR_NONE)
        return luaL_error(L, "http.%s: could not start the transfer (%s)", fn, terr_name(e, r->res.detail));
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
        req_ready(L, r, "batch");
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
    req_ready(L, r, "batch");
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
    for (unsigned i = 0; i < b->n; i++) {
        enum terr e = launch(b->reqs[i], s);
        if (e != TERR_NONE) {
            const char *why = terr_name(e, b->reqs[i]->res.detail);
            batch_release(b);
            return luaL_error(L, "http.batch: could not start transfer #%d (%s)", (int)i + 1, why);
        }
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

/* ---------------- the user's cookie jar ---------------- */

/* The jar holding the caller's cookies as they are now, and its transport. */
static struct tjar *caller_jar(lua_State *L, const char *fn, const struct transport_ops **tp)
{
    struct tctx *ctx = tctx_get(L);
    struct agent *ag = caller_agent(L, ctx, vu_current(L), fn);
    unsigned k = ag->started ? ag->kind : first_kind(ctx);
    if (!agent_jar(ag, k))
        luaL_error(L, "http.%s: out of memory (cookie jar)", fn);
    *tp = transports[k];
    return ag->jars[k];
}

/* The http(s) URL at idx, split into u; raises naming it otherwise. */
static const char *check_url(lua_State *L, int idx, const char *fn, struct turl *u)
{
    size_t len;
    const char *url = luaL_checklstring(L, idx, &len);
    if (!turl_parse(url, len, u)) {
        char clean[2048];
        redact_password(url, url, clean, sizeof clean);
        luaL_error(L, "http.%s: bad argument #%d: '%s' is not an http:// or https:// URL", fn, idx, clean);
    }
    return url;
}

/* name -> value into the table on top; of two with one name, the first sent (the longer path). */
static bool push_cookie(void *ud, const struct jar_cookie *c)
{
    lua_State *L = ud;
    lua_pushlstring(L, c->name, c->name_len);
    if (lua_rawget(L, -2) == LUA_TNIL) {
        lua_pushlstring(L, c->name, c->name_len);
        lua_pushlstring(L, c->value, c->value_len);
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    return true;
}

/* http.cookies(url): what the caller's jar would send to url, name -> value. */
static int l_cookies(lua_State *L)
{
    struct turl u;
    const char *url = check_url(L, 1, "cookies", &u);
    const struct transport_ops *tp;
    struct tjar *j = caller_jar(L, "cookies", &tp);
    struct buf lines = {0};
    bool ok = tp->jar_export(j, &lines);
    lua_pushlstring(L, lines.len ? lines.data : "", lines.len); /* Lua's from here: an error frees it */
    buf_free(&lines);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    lua_newtable(L);
    if (!ok || !cookies_for_url(text, len, url, &u, (int64_t)time(NULL), push_cookie, L))
        return luaL_error(L, "http.cookies: out of memory");
    return 1;
}

static const char *string_attr(lua_State *L, int t, const char *key)
{
    int type = lua_getfield(L, t, key);
    if (type != LUA_TNIL && type != LUA_TSTRING)
        luaL_error(L, "http.set_cookie: attribute '%s': string expected, got %s", key, luaL_typename(L, -1));
    return lua_tostring(L, -1);
}

static bool bool_attr(lua_State *L, int t, const char *key)
{
    int type = lua_getfield(L, t, key);
    if (type != LUA_TNIL && type != LUA_TBOOLEAN)
        luaL_error(L, "http.set_cookie: attribute '%s': boolean expected, got %s", key, luaL_typename(L, -1));
    return lua_toboolean(L, -1);
}

/* Reads -1 as seconds; false when absent. */
static bool number_attr(lua_State *L, int t, const char *key, int64_t *out)
{
    int type = lua_getfield(L, t, key);
    if (type == LUA_TNIL)
        return false;
    if (type != LUA_TNUMBER)
        luaL_error(L, "http.set_cookie: attribute '%s': number (seconds) expected, got %s", key, luaL_typename(L, -1));
    double v = lua_tonumber(L, -1);
    *out = v > 9e15 ? (int64_t)9e15 : v < -9e15 ? (int64_t)-9e15 : (int64_t)v;
    return true;
}

/* { domain, path, secure, http_only, expires (Unix time), max_age (seconds; wins, <= 0 removes) } */
static void read_cookie_attrs(lua_State *L, int t, struct cookie_set *c)
{
    static const char *const known[] = {"domain", "path", "secure", "http_only", "expires", "max_age", NULL};
    luaL_checktype(L, t, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        int i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            luaL_error(L, "http.set_cookie: unknown attribute '%s' (valid: domain, path, secure, http_only, "
                          "expires, max_age)", key);
    }
    c->domain = string_attr(L, t, "domain");
    c->path = string_attr(L, t, "path");
    c->secure = bool_attr(L, t, "secure");
    c->http_only = bool_attr(L, t, "http_only");
    int64_t v;
    if (number_attr(L, t, "expires", &v)) {
        if (v <= 0)
            luaL_error(L, "http.set_cookie: attribute 'expires': a Unix time (seconds) expected");
        c->expires = v;
    }
    if (number_attr(L, t, "max_age", &v))
        c->expires = v > 0 ? (int64_t)time(NULL) + v : 1; /* 1: long past, so the jar drops it */
}

/* http.set_cookie(url, name, value [, attrs]): into the caller's jar, as if url's response had set it. */
static int l_set_cookie(lua_State *L)
{
    struct turl u;
    const char *url = check_url(L, 1, "set_cookie", &u);
    size_t nlen, vlen;
    struct cookie_set c = {.name = luaL_checklstring(L, 2, &nlen), .value = luaL_checklstring(L, 3, &vlen)};
    if (nlen != strlen(c.name) || vlen != strlen(c.value))
        return luaL_error(L, "http.set_cookie: cookie name and value cannot hold NUL");
    if (!lua_isnoneornil(L, 4))
        read_cookie_attrs(L, 4, &c);
    const struct transport_ops *tp;
    struct tjar *j = caller_jar(L, "set_cookie", &tp);
    struct buf line = {0};
    const char *why = cookie_line(&line, url, &u, &c);
    if (!why && !tp->jar_import(j, line.data))
        why = "out of memory";
    buf_free(&line);
    if (why)
        return luaL_error(L, "http.set_cookie: cookie '%s': %s", c.name, why);
    return 0;
}

static int l_clear_cookies(lua_State *L)
{
    const struct transport_ops *tp;
    struct tjar *j = caller_jar(L, "clear_cookies", &tp);
    tp->jar_clear(j);
    return 0;
}

int luaopen_tide_http(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"get", l_get}, {"head", l_head}, {"post", l_post}, {"put", l_put},
        {"patch", l_patch}, {"delete", l_delete}, {"options", l_options},
        {"request", l_request}, {"batch", l_batch}, {"cookies", l_cookies},
        {"set_cookie", l_set_cookie}, {"clear_cookies", l_clear_cookies}, {NULL, NULL},
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
