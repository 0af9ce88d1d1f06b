#ifndef TIDE_TRANSPORT_H
#define TIDE_TRANSPORT_H
/* How a request travels, seen from tide.http: a curl-free request (treq) in,
 * a curl-free result (tres) out, and a small table of operations
 * (transport_ops) between them, as wrk's `struct sock` is for its
 * transports. libcurl is one transport (curl_transport.c); another plugs in
 * by filling the same table, without touching the bindings or the metrics.
 *
 * A transfer (txfer) carries one request at a time and is reused for the
 * next one of the same user, so a transport may keep what did not change
 * (a parsed URL, a header list, a connection) from one request to the next.
 * The transport calls back through tcalls; it never includes the layers
 * above it (metrics, scheduling, bindings). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "loop.h"

/* More response head than any real service sends; every transport stops there
 * with TERR_HEAD_TOO_LARGE (libcurl itself stops at 300 KB). */
#define MAX_HEAD_BYTES (256u << 10)

struct shard;   /* a transport's per-thread share of users (libcurl: a multi handle) */
struct txfer;   /* one request at a time, made by the transport */
struct tjar;    /* a cookie jar several transfers share (made by the transport; libcurl's
                 * also holds their connections, so one user's transfers share them) */

/* Why a transfer failed; TERR_NONE when a response came (whatever its status). */
enum terr {
    TERR_NONE,
    TERR_REFUSED,           /* "connection refused" */
    TERR_CONNECT,           /* "connect failed" */
    TERR_UNREACHABLE,       /* "host unreachable" */
    TERR_DNS,               /* "dns lookup failed" */
    TERR_TIMEOUT,           /* "timeout" */
    TERR_RESET,             /* "connection reset" */
    TERR_EMPTY_REPLY,       /* "empty reply" */
    TERR_MALFORMED,         /* "malformed response" */
    TERR_TRUNCATED,         /* "truncated response": the body ended early */
    TERR_HEAD_TOO_LARGE,    /* "headers too large" */
    TERR_REDIRECTS,         /* "too many redirects" */
    TERR_TLS,               /* "tls error" */
    TERR_CERT,              /* "certificate rejected": the server's, by verification */
    TERR_BAD_URL,           /* "malformed URL" */
    TERR_NOMEM,             /* "out of memory" */
    TERR_SEND,              /* "send failed" */
    TERR_RECV,              /* "receive failed" */
    TERR_OTHER,             /* the transport's own words, in tres.detail */
    TERR_COUNT
};

/* The short text tide shows for e (response.error, the `error` tag); for
 * TERR_OTHER, detail (static text from the transport). NULL for TERR_NONE. */
const char *terr_name(enum terr e, const char *detail);

enum tmethod { TM_GET, TM_HEAD, TM_POST, TM_PUT, TM_PATCH, TM_DELETE, TM_OPTIONS, TM_OTHER };

/* Where a URL's parts sit in its text (offsets into treq.url.data). */
struct turl {
    size_t scheme_len;          /* "http" or "https", at 0 */
    size_t host, host_len;      /* without the brackets of an IPv6 address */
    size_t path;                /* path and query, "" (= "/") when absent; ends at the fragment */
    size_t path_len;
    unsigned port;              /* the given port, else 80 or 443 */
    bool tls;                   /* https */
};

/* Splits url (text of url_len bytes) into u; false when it is not an
 * http(s)://host[:port][/path] URL. Only locates the parts: checking every
 * character is the transport's (libcurl's parser is stricter). */
bool turl_parse(const char *url, size_t url_len, struct turl *u);

/* The longest header line a request carries, "Name: value" and a NUL. */
#define HEADER_LINE_MAX 8192

/* Credentials a request carries (treq.auth). */
enum tauth { TAUTH_NONE, TAUTH_BASIC, TAUTH_DIGEST };

/* The HTTP version a request asks for (treq.version). */
enum thttp {
    THTTP_DEFAULT,              /* HTTP/2 over TLS when the server offers it (ALPN), else HTTP/1.1 */
    THTTP_1_1,                  /* HTTP/1.1 only */
    THTTP_2,                    /* HTTP/2: by ALPN over TLS, with prior knowledge (h2c) over http:// */
};

/* One part of a multipart/form-data body (treq.multipart): a form field, or a
 * file given by its content (data) or by a path read as the request goes out. */
struct tpart {
    const char *name;           /* the field's name */
    const char *data;           /* data_len bytes; NULL: read from path */
    size_t data_len;
    const char *path;           /* a readable file (checked before the request was made) */
    const char *filename;       /* NULL: a plain field, no filename */
    const char *content_type;   /* NULL: none for a field; for a file, the transport's guess */
};

/* How a TLS connection is checked (treq.tls). Strings are paths to PEM files. */
struct ttls {
    bool insecure;              /* accept any certificate for any name */
    const char *ca;             /* the CAs to trust; NULL: the system's */
    const char *cert, *key;     /* a client certificate and its key; NULL: none */
};

/* What to send. Lives in the binding's memory for the whole transfer;
 * the transport reads it, never copies what it does not have to.
 *
 * A transport must honour every field, or never be chosen for a request
 * that sets one it cannot: auth, multipart, tls, version and decode all have
 * to show the same on the wire and in tres whichever transport carries the
 * request (a plain-HTTP/1.1 transport may well take only requests with
 * auth none or basic, no multipart body and version default or 1.1). */
struct treq {
    const char *method;         /* upper case, NUL-terminated */
    enum tmethod kind;
    bool idempotent;            /* may go again after a connection died unanswered */
    struct buf url;             /* NUL-terminated (len counts the NUL) */
    struct turl parts;          /* all 0 when turl_parse could not split what the transport took */
    struct buf headers;         /* "Name: value\r\n" lines, the User-Agent among them */
    bool has_body;              /* a body was given (a POST without one sends an empty one) */
    const char *body;           /* body_len bytes, never NULL */
    size_t body_len;
    long timeout_ms;            /* the whole transfer */
    size_t max_body;            /* body bytes kept; the rest is read and dropped */
    bool discard;               /* keep no body at all */
    struct tjar *jar;           /* shared cookies; NULL: the transfer's own */
    /* Compression: send Accept-Encoding with every coding the transport can
     * decode, and decode the body (tres.body, max_body count decoded
     * bytes; tres.bytes_received counts what came on the wire). false: no
     * Accept-Encoding from the transport and the body as received (the
     * script may name its own Accept-Encoding among the headers). */
    bool decode;
    enum tauth auth;            /* with user and password (NUL-terminated) */
    const char *user, *password;
    const struct tpart *multipart;  /* nmultipart > 0: a multipart/form-data body instead of body */
    size_t nmultipart;
    struct ttls tls;            /* for https:// URLs (redirects included) */
    enum thttp version;
    /* The headers carry the whole Cookie header (the script's cookies and the
     * jar's merged), or none when the script said so: add none of the jar's
     * cookies to this request, but keep in the jar what its response sets.
     * Only with a jar. */
    bool own_cookies;
};

/* Microseconds from the transfer's start, or durations (µs) of its phases. */
struct ttimes {
    uint64_t dns;               /* name lookup done (from the start) */
    uint64_t connect;           /* TCP connect (0 on a reused connection) */
    uint64_t tls;               /* TLS handshake (0 without one) */
    uint64_t waiting;           /* request out, first response byte in */
    uint64_t duration;          /* sending + waiting + receiving: k6's http_req_duration */
    uint64_t total;             /* from the start to the end, lookup and connect included */
};

/* What came back from one request. A transport does one hop: a redirect is
 * a response like any other, its Location reported, and the binding decides
 * whether and how to follow it. Its buffers are the binding's and are
 * reused: the transport empties them when a transfer starts. */
struct tres {
    long status;                /* the final response's, 0 when none came */
    struct buf head;            /* the final response's head as received */
    struct buf body;            /* at most treq.max_body bytes of it */
    bool truncated;             /* body bytes were dropped (max_body) */
    enum terr err;
    const char *detail;         /* TERR_OTHER: the transport's text */
    const char *url;            /* the URL asked; NULL: treq.url. Valid until the next start */
    /* A 3xx's Location, made absolute against the URL asked; NULL when
     * none. Valid until the next start. */
    const char *location;
    struct ttimes t;
    uint64_t bytes_sent, bytes_received;   /* on the wire, heads included */
    unsigned resets;            /* attempts that died unanswered and were sent again */
    const char *proto;          /* the final response's protocol ("HTTP/1.1", "HTTP/2"); NULL: none */
};

/* How a transport reports back to whoever started the transfer (ud). */
struct tcalls {
    /* The attempt sent at sent_ns died unanswered on a kept-alive
     * connection and an idempotent request goes again (now_ns): the lost
     * attempt is a sample of its own. */
    void (*resent)(void *ud, uint64_t sent_ns, uint64_t now_ns);
    /* The transfer ended; its tres is complete. */
    void (*done)(void *ud);
};

struct transport_ops {
    const char *name;
    /* A transfer on loop l; buffer_size: receive buffer hint (0: the transport's own). */
    struct txfer *(*xfer_new)(struct loop *l, const struct tcalls *calls, void *ud, size_t buffer_size);
    void (*xfer_free)(struct txfer *x);
    /* Takes q's URL (after it changed): TERR_BAD_URL when it cannot be sent. */
    enum terr (*set_url)(struct txfer *x, const struct treq *q);
    /* Takes the rest of q (what changed since the last request); TERR_NOMEM
     * when it could not. q must stay put until the transfer ends. */
    enum terr (*prepare)(struct txfer *x, const struct treq *q);
    /* Sends the prepared request (again, for a retry) on shard s; results go to res. */
    bool (*start)(struct txfer *x, struct shard *s, struct tres *res);
    /* Stops a transfer in flight without calling back; nothing when idle. */
    void (*cancel)(struct txfer *x);
    bool (*busy)(const struct txfer *x);
    /* A jar for several transfers, holding the cookies owner (may be NULL)
     * has now; owner uses it from then on. */
    struct tjar *(*jar_new)(struct txfer *owner);
    /* x stops using j if it does; a jar is freed after all its transfers left it. */
    void (*jar_leave)(struct txfer *x, struct tjar *j);
    void (*jar_free)(struct tjar *j);
    /* The jar in Netscape cookie-file lines, each ending in '\n':
     * domain, TRUE/FALSE (subdomains too), path, TRUE/FALSE (secure), expiry
     * (Unix time, 0: the session's), name, value, tab-separated; the domain
     * prefixed with "#HttpOnly_" for an HttpOnly cookie. Expired cookies may
     * be among them. Appended to out; false when out of memory. */
    bool (*jar_export)(struct tjar *j, struct buf *out);
    /* Adds one cookie given as such a line (without the '\n'), replacing one
     * of the same domain, path and name; an expiry in the past removes it. */
    bool (*jar_import)(struct tjar *j, const char *line);
    void (*jar_clear)(struct tjar *j);
};


#endif
