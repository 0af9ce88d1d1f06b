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
    struct treq q;
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
};

/* Sets up r from (url, opts) at the given stack indexes; raises on bad input
 * before anything is sent. fn names the calling function in messages. */
void req_configure(lua_State *L, struct req *r, const char *fn, const char *method, int url_idx, int opts_idx);
/* The method as a static string (GET, POST...) or copied into r->method_buf. */
const char *req_method(lua_State *L, struct req *r, const char *m);

/* The options of request_opts.c (compression, auth, files, TLS,
 * http_version, tags, expect), read after the headers are built and before
 * the transport prepares; opts: the options table's index (0: none). */
void req_opts_configure(lua_State *L, struct req *r, const char *fn, int opts);
void req_opts_free(struct req *r);

/* Pushes a tide.response holding a copy of what r received. */
void response_push(lua_State *L, struct req *r);
/* Registers the tide.response metatable. */
void response_open(lua_State *L);

#define DEFAULT_TIMEOUT_MS 60000L
#define USER_AGENT "User-Agent: tide/" TIDE_VERSION
#define DEFAULT_REDIRECTS 10L

#endif
