#ifndef TIDE_REQ_H
#define TIDE_REQ_H
/* Internal to tide.http (http.c, request.c, response.c): one request on one
 * curl easy handle, reused for the next request of the same user. */
#include <curl/curl.h>
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "ctx.h"
#include "loop.h"
#include "shard.h"

struct batch;
struct vu;

#define MAX_RETRY_STATUS 16
#define NAME_MAX_LEN 256

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
    struct curl_slist *headers;     /* this request's own, NULL when it has none */
    struct curl_slist *agent;       /* just the User-Agent line, the list when there are none */
    CURLU *cu;                      /* the URL parsed once, reused while it repeats */
    char name[NAME_MAX_LEN];
    bool discard, truncated;
    long timeout_ms, redirects;     /* what the handle has now */
    int retry_status[MAX_RETRY_STATUS], nretry, retry_max, attempts;
    uint64_t retry_every_ns;
    struct timer retry_timer;
    long status;
    CURLcode code;
    const char *fail;               /* tide's own reason, over the curl code's */
    uint64_t sent_ns;               /* when the request last went out */
    bool sent;                      /* a request went out and no answer began yet */
    bool head_done;                 /* a final (non-1xx) response head ended */
    bool interim;                   /* the head being read is a 1xx */
    char errbuf[CURL_ERROR_SIZE];
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
/* A short reason for a transport error, NULL when the transfer worked. */
const char *req_error(const struct req *r);
/* Whether re-sending r cannot change what the server does (RFC 9110 9.2.2). */
bool req_idempotent(const struct req *r);

/* Pushes a tide.response holding a copy of what r received. */
void response_push(lua_State *L, struct req *r);
/* Registers the tide.response metatable. */
void response_open(lua_State *L);

#define DEFAULT_TIMEOUT_MS 60000L
#define USER_AGENT "User-Agent: tide/" TIDE_VERSION
#define DEFAULT_REDIRECTS 10L
/* More response head than any real service sends; curl itself stops at 300 KB. */
#define MAX_HEAD_BYTES (256u << 10)

#endif
