#ifndef TIDE_REQ_H
#define TIDE_REQ_H
/* Internal to tide.http (http.c, request.c, response.c): one request of one
 * user, reused for its next request. request.c fills its treq, a transport
 * (transport.h) carries it, and its tres holds what came back: nothing here
 * knows which transport that was. */
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "ctx.h"
#include "loop.h"
#include "transport.h"

struct batch;
struct vu;

#define MAX_RETRY_STATUS 16
#define NAME_MAX_LEN 256

struct req {
    struct treq q;                  /* what the script asked */
    /* What goes out when it is not q itself: a redirect's request, or q
     * with the Cookie header made of the script's cookies and the jar's.
     * Its URL and header lines are its own buffers. */
    struct treq hop;
    const struct treq *sent;        /* q or hop: the request in flight or answered last */
    size_t hop_base_len;            /* hop's header lines before its Cookie header */
    struct tres res;
    const struct transport_ops *tp;
    struct txfer *x;                /* tp's transfer, reused request after request */
    struct shard *shard;            /* where it last started (a retry goes there again) */
    struct tctx *ctx;
    struct req *next_all, *next_free;
    struct vu *vu;                  /* waiting VU; NULL for a blocking call */
    struct batch *batch;
    bool finished;
    char method_buf[16];
    struct buf body;                /* q.body points here */
    char name[NAME_MAX_LEN];
    int retry_status[MAX_RETRY_STATUS], nretry, retry_max, attempts;
    uint64_t retry_every_ns;
    struct timer retry_timer;
    char tagkey[NAME_MAX_LEN + 96];
    size_t tagkey_len;
    int tagset;
    double timings[5];              /* dns, connect, tls, waiting, total: ms */
    /* redirects, followed here hop by hop (http.c) */
    long redirects;                 /* at most this many followed; 0: none */
    int hops;                       /* followed so far in this attempt */
    uint64_t chain_us;              /* this attempt's time so far, its hops' together */
    bool named;                     /* the script named it: every hop has that name */
    bool renamed;                   /* a hop took another name */
    bool moved;                     /* the transfer holds a hop's URL, not q's */
    bool dirty;                     /* the transfer was prepared with hop, not q */
    /* the script's cookies (request.c): sent in one header with the jar's */
    struct buf cookie;              /* its pairs, "a=1; b=2" */
    bool cookie_own;                /* the script gave cookies: http.c makes the Cookie header */
    bool cookie_header;             /* ... as a Cookie header (sent even when empty) */
    bool cookie_jar;                /* the jar's go too (not after Cookie = false) */
    bool hop_cookies;               /* the script's still go (not past another origin) */
    struct buf jar_lines;           /* the jar exported, to merge with them */
};

/* Sets up r from (url, opts) at the given stack indexes; raises on bad input
 * before anything is sent. fn names the calling function in messages. */
void req_configure(lua_State *L, struct req *r, const char *fn, const char *method, int url_idx, int opts_idx);
/* r->name from url: its path without query or fragment. */
void req_default_name(struct req *r, const char *url);
/* The method as a static string (GET, POST...) or copied into r->method_buf. */
const char *req_method(lua_State *L, struct req *r, const char *m);

/* Pushes a tide.response holding a copy of what r received. */
void response_push(lua_State *L, struct req *r);
/* Registers the tide.response metatable. */
void response_open(lua_State *L);

#define DEFAULT_TIMEOUT_MS 60000L
#define USER_AGENT "User-Agent: tide/" TIDE_VERSION
#define DEFAULT_REDIRECTS 10L

#endif
