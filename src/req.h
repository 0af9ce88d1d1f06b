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
#include "http_defaults.h"
#include "loop.h"
#include "metrics.h"
#include "transport.h"

struct batch;
struct vu;

/* What request_opts.c keeps of a request's options beyond the basics. */
struct req_more {
    struct buf store;               /* the strings the treq points into (credentials, paths, part data) */
    struct buf parts;               /* the treq's struct tpart[] */
    char tags[TAGS_MAX];            /* the request's own tags, a tag-set key */
    size_t tags_len;
    int expect[MAX_EXPECT], nexpect;  /* the statuses that count as a success; 0: the run's */
    int expect_fn;                  /* a function of the response deciding it (registry ref), else LUA_NOREF */
    bool verdict;                   /* what expect_fn said of the last response */
};

#define MAX_RETRY_STATUS 16
#define NAME_MAX_LEN 256

struct req {
    struct treq q;                  /* what the script asked */
    /* What goes out when it is not q itself: a redirect's request, or q
     * with the Cookie header made of the script's cookies and the jar's.
     * Its URL and header lines are its own buffers. */
    struct treq *hop;               /* NULL until a request needs one */
    const struct treq *sent;        /* q or hop: the request in flight or answered last */
    size_t hop_base_len;            /* hop's header lines before its Cookie header */
    struct tres res;
    const struct transport_ops *tp;
    struct txfer *x;                /* tp's transfer, reused request after request */
    struct txfer *xs[TRANSPORTS];   /* one per transport, made on its first request */
    unsigned char kind;             /* tp's index (TRANSPORT_CURL, TRANSPORT_LEAN) */
    struct agent *ag;               /* whose request it is now */
    struct shard *shard;            /* where it last started (a retry goes there again) */
    struct tctx *ctx;
    struct req *next_all, *next_free;
    struct vu *vu;                  /* waiting VU; NULL for a blocking call */
    struct batch *batch;
    bool finished;
    char method_buf[16];
    struct buf body;                /* q.body points here */
    struct req_more *more;          /* request_opts.c's; NULL until a request needs it */
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

/* Whether the options at opts (0: none) give files: the body is then
 * multipart, the form's fields among its parts (no url-encoded body). */
bool req_opts_multipart(lua_State *L, int opts);
/* The options of request_opts.c (compression, auth, files, TLS,
 * http_version, tags, expect), read after the headers are built and before
 * the transport prepares; opts: the options table's index (0: none), form:
 * the form's when it goes into the multipart body (else 0). */
void req_opts_configure(lua_State *L, struct req *r, const char *fn, int opts, int form);
void req_opts_init(struct req *r);
void req_opts_free(struct req *r);
/* Runs the request's expect function, if any, on the response it got (an
 * error in it is the request's error); before its sample is recorded. */
void req_opts_judge(struct req *r);
/* Whether status counts as a success (http_req_failed): expect, else
 * options.expect, else status 100-399. */
bool req_opts_expected(const struct req *r, long status);
/* The tag-set key of the request's own tags (len 0: none). */
const char *req_opts_tags(const struct req *r, size_t *len);

/* Pushes a tide.response holding a copy of what r received. */
void response_push(lua_State *L, struct req *r);
/* Registers the tide.response metatable. */
void response_open(lua_State *L);

#define DEFAULT_TIMEOUT_MS 60000L
#define USER_AGENT "User-Agent: tide/" TIDE_VERSION
#define DEFAULT_REDIRECTS 10L

#endif
