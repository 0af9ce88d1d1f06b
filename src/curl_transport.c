/* The libcurl transport: a treq onto a reused easy handle, the handle onto
 * a shard's multi handle (shard.c), and what libcurl reports back into a
 * tres. Everything tide.http knows of libcurl is here and in shard.c. */
#include "curl_transport.h"
#include "clock.h"
#include "curl_xfer.h"
#include "shard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The longest header line tide.http builds ("Name: value"), NUL included. */

struct tjar {
    CURLSH *share;
    CURL *io;                       /* on the share, to read and change it outside transfers */
};

struct txfer {
    struct xfer x;                  /* first: shard.c hands this back */
    const struct tcalls *calls;
    void *ud;
    const struct treq *q;           /* the request prepared last */
    struct tres *res;               /* where the attempt in flight reports */
    CURLU *cu;                      /* the URL parsed once, reused while it repeats */
    struct curl_slist *headers;     /* made from headers_key */
    struct buf headers_key;         /* the header lines the list was made from */
    bool headers_expect;            /* ... with "Expect:" added (a body) */
    bool headers_multipart;         /* ... for a multipart body (its own Content-Type) */
    struct tjar *jar;               /* the share the handle is on; NULL: its own cookies */
    bool off_jar;                   /* left jar for this transfer: treq.own_cookies */
    long timeout_ms;                /* what the handle has now */
    struct xopts *more;             /* what set_more gave the handle (auth, TLS, ...); NULL: libcurl's defaults */
    bool no_decode;                 /* the handle sends no Accept-Encoding (compression = false) */
    enum terr fail;                 /* tide's own reason, over libcurl's code */
    uint64_t sent_ns;               /* when the request last went out */
    bool sent;                      /* a request went out and no answer began yet */
    bool head_done;                 /* a final (non-1xx) response head ended */
    bool interim;                   /* the head being read is a 1xx */
    char errbuf[CURL_ERROR_SIZE];
};

static enum terr set_more(struct txfer *x, const struct treq *q);
static void free_more(struct txfer *x);
static const char *proto_of(CURL *e);

/* ---------------- libcurl's callbacks ---------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct txfer *x = ud;
    const struct treq *q = x->q;
    size_t len = size * n;
    if (q->discard || buf_append_capped(&x->res->body, p, len, q->max_body, &x->res->truncated))
        return len;
    x->fail = TERR_NOMEM;
    return 0;
}

/* Parses the status code of a status line ("HTTP/1.1 200 OK"); -1 if none. */
static long status_of(const char *p, size_t len)
{
    const char *sp = memchr(p, ' ', len);
    if (!sp || (size_t)(sp - p) + 4 > len)
        return -1;
    long code = 0;
    for (int i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9')
            return -1;
        code = code * 10 + (sp[i] - '0');
    }
    return code;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct txfer *x = ud;
    struct buf *head = &x->res->head;
    size_t len = size * n;
    x->sent = false; /* the server answered: a later request on this transfer is a redirect */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        head->len = 0; /* a redirect or 100-continue: keep the last response's */
        x->interim = status_of(p, len) / 100 == 1;
    } else if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n')) {
        x->head_done = !x->interim;
    }
    if (head->len + len > MAX_HEAD_BYTES) {
        x->fail = TERR_HEAD_TOO_LARGE;
        return 0;
    }
    if (buf_append(head, p, len))
        return len;
    x->fail = TERR_NOMEM;
    return 0;
}

/* Called as each request goes out, on a new or a reused connection. libcurl
 * silently re-sends a request whose kept-alive connection died before any
 * answer came; the server may have read the first one. An idempotent request
 * may go again, the lost attempt reported as a sample of its own; any other
 * is not re-sent. */
static int on_prereq(void *ud, char *conn_ip, char *local_ip, int conn_port, int local_port)
{
    (void)conn_ip, (void)local_ip, (void)conn_port, (void)local_port;
    struct txfer *x = ud;
    uint64_t now = clock_now_ns();
    if (x->sent) {
        if (!x->q->idempotent) {
            x->fail = TERR_RESET;
            return CURL_PREREQFUNC_ABORT;
        }
        x->res->resets++;
        x->calls->resent(x->ud, x->sent_ns, now);
    }
    x->sent = true;
    x->sent_ns = now;
    return CURL_PREREQFUNC_OK;
}

/* ---------------- what libcurl reported ---------------- */

static enum terr error_of(CURLcode rc, long os_errno)
{
    switch (rc) {
    case CURLE_OK: return TERR_NONE;
    case CURLE_COULDNT_CONNECT:
        return os_errno == ECONNREFUSED ? TERR_REFUSED
             : os_errno == ENETUNREACH || os_errno == EHOSTUNREACH ? TERR_UNREACHABLE
             : TERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return TERR_TIMEOUT;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return os_errno == ECONNRESET || os_errno == EPIPE ? TERR_RESET
             : rc == CURLE_RECV_ERROR ? TERR_RECV : TERR_SEND;
    case CURLE_GOT_NOTHING: return TERR_EMPTY_REPLY;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return TERR_MALFORMED;
    case CURLE_PARTIAL_FILE: return TERR_TRUNCATED;
    case CURLE_COULDNT_RESOLVE_HOST: return TERR_DNS;
    case CURLE_TOO_MANY_REDIRECTS: return TERR_REDIRECTS;
    case CURLE_URL_MALFORMAT: return TERR_BAD_URL;
    case CURLE_PEER_FAILED_VERIFICATION: return TERR_CERT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return TERR_TLS;
    /* a write error tide's callback did not cause (x->fail): libcurl's
     * decoder refused bytes past the end of a compressed stream */
    case CURLE_WRITE_ERROR: return TERR_MALFORMED;
    case CURLE_OUT_OF_MEMORY: return TERR_NOMEM;
    default: return TERR_OTHER;
    }
}

/* curl 7.88 stops at one header line over 100 KB with CURLE_OUT_OF_MEMORY
 * (no message), and at a head over 300 KB with "Too large response headers". */
static bool head_overflow(const struct txfer *x, CURLcode rc)
{
    return (rc == CURLE_OUT_OF_MEMORY && !x->head_done) ||
           (rc == CURLE_RECV_ERROR && strstr(x->errbuf, "response headers"));
}

static void classify(struct txfer *x, CURLcode rc)
{
    struct tres *res = x->res;
    res->detail = NULL;
    if (x->fail) {
        res->err = x->fail;
    } else if (head_overflow(x, rc)) {
        res->err = TERR_HEAD_TOO_LARGE;
    } else if (rc == CURLE_OK && !x->head_done) { /* the connection ended inside the head */
        res->err = TERR_MALFORMED;
    } else {
        long os_errno = 0;
        if (rc != CURLE_OK)
            curl_easy_getinfo(x->x.easy, CURLINFO_OS_ERRNO, &os_errno);
        res->err = error_of(rc, os_errno);
        if (res->err == TERR_OTHER)
            res->detail = curl_easy_strerror(rc);
    }
    if (res->err == TERR_HEAD_TOO_LARGE)
        res->head.len = 0; /* a head cut anywhere: no header of it is shown */
}

static uint64_t us_between(curl_off_t from, curl_off_t to)
{
    return to > from ? (uint64_t)(to - from) : 0;
}

static void collect(struct txfer *x, CURLcode rc)
{
    CURL *e = x->x.easy;
    struct tres *res = x->res;
    curl_off_t dns = 0, conn = 0, tls = 0, start = 0, total = 0, sent = 0, recv = 0;
    long status = 0, hdr = 0, reqsize = 0;
    char *url = NULL;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    res->status = x->head_done ? status : 0; /* no final answer: a 100 Continue alone is no status */
    curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &dns);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &conn);
    curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &tls);
    curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &start);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &sent);
    curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &recv);
    curl_easy_getinfo(e, CURLINFO_HEADER_SIZE, &hdr);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url);
    /* libcurl 7.88 takes its pretransfer time late on reused connections, so
     * measure from the moment the connection was ready (0 when reused): k6's
     * http_req_duration, i.e. sending + waiting + receiving. */
    curl_off_t ready = tls ? tls : conn;
    res->t = (struct ttimes){
        .dns = us_between(0, dns),
        .connect = conn ? us_between(dns, conn) : 0,
        .tls = tls ? us_between(conn, tls) : 0,
        .waiting = start ? us_between(ready, start) : 0,
        .duration = us_between(ready, total),
        .total = us_between(0, total),
    };
    /* libcurl 7.88 sends a body under 64 KB (its MAX_INITIAL_POST_SIZE) in
     * one buffer with the head and counts it in both REQUEST_SIZE and
     * SIZE_UPLOAD: on the wire it went once */
    bool with_head = x->q->has_body && !x->q->nmultipart && x->q->body_len < (64u << 10);
    res->bytes_sent = (uint64_t)reqsize + (sent > 0 && !with_head ? (uint64_t)sent : 0);
    res->bytes_received = (uint64_t)(hdr + (recv > 0 ? recv : 0));
    res->url = url;
    res->proto = res->status ? proto_of(e) : NULL;
    res->location = NULL;
    if (status >= 300 && status < 400) /* made absolute by libcurl, which no longer follows it */
        curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &res->location);
    classify(x, rc);
}

static void back_on_jar(struct txfer *x);

static void on_done(struct xfer *xf, CURLcode rc)
{
    struct txfer *x = (struct txfer *)xf;
    collect(x, rc);
    back_on_jar(x);
    x->calls->done(x->ud);
}

/* ---------------- the operations ---------------- */

static void xfer_free(struct txfer *x)
{
    if (!x)
        return;
    shard_remove(&x->x);
    curl_easy_cleanup(x->x.easy);
    curl_slist_free_all(x->headers);
    curl_url_cleanup(x->cu);
    buf_free(&x->headers_key);
    free_more(x);
    free(x);
}

static struct txfer *xfer_new(struct loop *l, const struct tcalls *calls, void *ud, size_t buffer_size)
{
    struct txfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->calls = calls;
    x->ud = ud;
    x->x.done = on_done;
    x->timeout_ms = -1; /* none set yet: the first prepare sets it */
    if (!(x->x.easy = curl_easy_init()) || !(x->cu = curl_url())) {
        xfer_free(x);
        return NULL;
    }
    CURL *e = x->x.easy;
    shard_prepare_easy(&x->x, l);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
    /* no proxy from the environment: load goes straight to the target, and
     * libcurl would otherwise read six variables on every request */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* compression on, as treq.decode is by default */
    if (buffer_size)
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)buffer_size);
    return x;
}

static enum terr set_url(struct txfer *x, const struct treq *q)
{
    /* parsed once here: libcurl would parse and re-render the text on every request */
    if (curl_url_set(x->cu, CURLUPART_URL, q->url.data, 0) != CURLUE_OK)
        return TERR_BAD_URL;
    curl_easy_setopt(x->x.easy, CURLOPT_URL, q->url.data);
    curl_easy_setopt(x->x.easy, CURLOPT_CURLU, x->cu);
    return TERR_NONE;
}

/* The header list from q's lines, in libcurl's terms: "Name:" (no value)
 * sends no such header, as it does; an empty value goes as "Name;". With a
 * body, "Expect:" (no 100-continue round trip, it would be in every POST's
 * latency) and, unless a line names one, no Content-Type: libcurl would add
 * application/x-www-form-urlencoded to any body. The User-Agent is one of
 * the lines: libcurl takes a header line for far less per request than
 * CURLOPT_USERAGENT. */
static struct curl_slist *header_list(const struct treq *q)
{
    struct curl_slist *list = NULL;
    const char *p = q->headers.data, *end = p + q->headers.len;
    bool has_type = false;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        char line[HEADER_LINE_MAX];
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        has_type |= strncasecmp(line, "content-type:", 13) == 0;
        if (n >= 2 && line[n - 2] == ':' && line[n - 1] == ' ')
            line[n - 2] = ';', line[n - 1] = '\0';
        struct curl_slist *l = curl_slist_append(list, line);
        if (!l)
            goto fail;
        list = l;
        p = eol ? eol + 2 : end;
    }
    for (int i = 0; q->has_body && i < 2; i++) {
        if (i == 1 && (has_type || q->nmultipart))
            break;
        struct curl_slist *l = curl_slist_append(list, i == 0 ? "Expect:" : "Content-Type:");
        if (!l)
            goto fail;
        list = l;
    }
    return list;
fail:
    curl_slist_free_all(list);
    return NULL;
}

/* A user sending the same headers again keeps the list it has. */
static bool set_headers(struct txfer *x, const struct treq *q)
{
    if (x->headers && x->headers_expect == q->has_body && x->headers_multipart == (q->nmultipart > 0) &&
        x->headers_key.len == q->headers.len &&
        (q->headers.len == 0 || memcmp(x->headers_key.data, q->headers.data, q->headers.len) == 0))
        return true;
    struct curl_slist *list = header_list(q);
    if (!list)
        return false;
    x->headers_key.len = 0;
    if (!buf_append(&x->headers_key, q->headers.data, q->headers.len)) {
        curl_slist_free_all(list);
        return false;
    }
    curl_easy_setopt(x->x.easy, CURLOPT_HTTPHEADER, list);
    curl_slist_free_all(x->headers);
    x->headers = list;
    x->headers_expect = q->has_body;
    x->headers_multipart = q->nmultipart > 0;
    return true;
}

static void set_method(struct txfer *x, const struct treq *q)
{
    CURL *e = x->x.easy;
    bool head = q->kind == TM_HEAD, post = q->kind == TM_POST;
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    if (q->has_body || post) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (head)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    /* a body makes libcurl say POST: any other method with one is named */
    bool custom = !post && (q->has_body || (!head && q->kind != TM_GET));
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, custom ? q->method : NULL);
}

static void set_limits(struct txfer *x, const struct treq *q)
{
    if (q->timeout_ms != x->timeout_ms)
        curl_easy_setopt(x->x.easy, CURLOPT_TIMEOUT_MS, x->timeout_ms = q->timeout_ms);
}

static void set_jar(struct txfer *x, struct tjar *j)
{
    if (x->jar == j)
        return;
    curl_easy_setopt(x->x.easy, CURLOPT_SHARE, j ? j->share : NULL);
    x->jar = j;
}

/* ---------------- compression, auth, multipart, TLS, HTTP version ---------------- */

/* What the handle was given last, so a user repeating a request sets nothing again. */
struct xopts {
    bool set;                       /* anything was set at all */
    bool insecure;
    enum tauth auth;
    enum thttp version;
    bool tls_url;                   /* the version was chosen for an https:// URL */
    char *user, *password, *ca, *cert, *key;   /* copies of what the handle has (NULL: none) */
    char *ca_default;               /* libcurl's own CA bundle, put back when a request names none */
    curl_mime *mime;                /* the multipart body the handle has */
};

/* A new handle decodes (xfer_new); "": every coding this libcurl decodes
 * (gzip, deflate, br, zstd as built). */
static void set_decode(struct txfer *x, const struct treq *q)
{
    if (x->no_decode == !q->decode)
        return;
    curl_easy_setopt(x->x.easy, CURLOPT_ACCEPT_ENCODING, q->decode ? "" : NULL);
    x->no_decode = !q->decode;
}

/* A request naming none of auth, TLS settings, an HTTP version or files. */
static bool at_defaults(const struct treq *q)
{
    return q->auth == TAUTH_NONE && q->version == THTTP_DEFAULT && !q->tls.insecure && !q->tls.ca &&
           !q->tls.cert && !q->tls.key && !q->nmultipart;
}

static bool same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Gives the handle a string option unless it has that value already. */
static bool set_text(struct txfer *x, CURLoption opt, char **have, const char *v)
{
    if (same_text(*have, v))
        return true;
    char *copy = v ? strdup(v) : NULL;
    if (v && !copy)
        return false;
    curl_easy_setopt(x->x.easy, opt, v);
    free(*have);
    *have = copy;
    return true;
}

static bool set_auth(struct txfer *x, const struct treq *q)
{
    struct xopts *m = x->more;
    if (q->auth != m->auth) {
        curl_easy_setopt(x->x.easy, CURLOPT_HTTPAUTH, q->auth == TAUTH_DIGEST ? CURLAUTH_DIGEST : CURLAUTH_BASIC);
        m->auth = q->auth;
    }
    bool on = q->auth != TAUTH_NONE;
    return set_text(x, CURLOPT_USERNAME, &m->user, on ? q->user : NULL) &&
           set_text(x, CURLOPT_PASSWORD, &m->password, on ? q->password : NULL);
}

static bool set_tls(struct txfer *x, const struct treq *q)
{
    struct xopts *m = x->more;
    if (!m->set || m->insecure != q->tls.insecure) {
        curl_easy_setopt(x->x.easy, CURLOPT_SSL_VERIFYPEER, q->tls.insecure ? 0L : 1L);
        curl_easy_setopt(x->x.easy, CURLOPT_SSL_VERIFYHOST, q->tls.insecure ? 0L : 2L);
        m->insecure = q->tls.insecure;
    }
    const char *ca = q->tls.ca ? q->tls.ca : m->ca_default;
    return set_text(x, CURLOPT_CAINFO, &m->ca, ca) && set_text(x, CURLOPT_SSLCERT, &m->cert, q->tls.cert) &&
           set_text(x, CURLOPT_SSLKEY, &m->key, q->tls.key);
}

/* libcurl before 8.0.0 cannot reuse a connection it opened with HTTP/2
 * prior knowledge: the next request on it fails with "Error in the HTTP2
 * framing layer" (curl issue 10634, fixed in 8.0.0). With such a libcurl
 * each h2c request takes a connection of its own. */
static bool h2c_reuse_broken(void)
{
    return curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
}

/* HTTP/2 over TLS is negotiated (ALPN); over http:// it is spoken from the
 * first byte (prior knowledge, h2c), as no upgrade round trip would be in
 * every first request's latency. PIPEWAIT lets a user's concurrent requests
 * wait for the one connection they can share rather than open more. */
static void set_version(struct txfer *x, const struct treq *q)
{
    struct xopts *m = x->more;
    bool tls = q->parts.tls || strncasecmp(q->url.data, "https:", 6) == 0;
    if (m->set && m->version == q->version && m->tls_url == tls)
        return;
    CURL *e = x->x.easy;
    bool h2 = q->version == THTTP_2, h2c = h2 && !tls;
    long v = q->version == THTTP_1_1 ? CURL_HTTP_VERSION_1_1
           : h2 ? (tls ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
           : CURL_HTTP_VERSION_2TLS;
    bool once = h2c && h2c_reuse_broken();
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, v);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, h2 && !once ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, once ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, once ? 1L : 0L);
    m->version = q->version;
    m->tls_url = tls;
}

static void drop_mime(struct txfer *x)
{
    if (!x->more->mime)
        return;
    curl_easy_setopt(x->x.easy, CURLOPT_MIMEPOST, NULL);
    curl_mime_free(x->more->mime);
    x->more->mime = NULL;
}

/* A multipart body is made again for every request that has one: its
 * parts are copied (files are read as it goes out). */
static bool set_mime(struct txfer *x, const struct treq *q)
{
    if (!q->nmultipart)
        return true;
    curl_mime *mime = curl_mime_init(x->x.easy);
    bool ok = mime != NULL;
    for (size_t i = 0; ok && i < q->nmultipart; i++) {
        const struct tpart *p = &q->multipart[i];
        curl_mimepart *part = curl_mime_addpart(mime);
        ok = part && curl_mime_name(part, p->name) == CURLE_OK &&
             (p->data ? curl_mime_data(part, p->data, p->data_len) : curl_mime_filedata(part, p->path)) == CURLE_OK &&
             curl_mime_filename(part, p->filename) == CURLE_OK &&
             (!p->content_type || curl_mime_type(part, p->content_type) == CURLE_OK);
    }
    if (!ok) {
        curl_mime_free(mime);
        return false;
    }
    curl_easy_setopt(x->x.easy, CURLOPT_MIMEPOST, mime);
    x->more->mime = mime;
    return true;
}

/* What set_more keeps, made on a transfer's first request. */
static struct xopts *new_more(CURL *e)
{
    struct xopts *m = calloc(1, sizeof *m);
    char *ca = NULL;
    curl_easy_getinfo(e, CURLINFO_CAINFO, &ca);
    if (m && ca && !(m->ca_default = strdup(ca))) {
        free(m);
        return NULL;
    }
    if (m && ca && !(m->ca = strdup(ca))) {
        free(m->ca_default);
        free(m);
        return NULL;
    }
    return m;
}

static enum terr set_more(struct txfer *x, const struct treq *q)
{
    set_decode(x, q);
    if (!x->more && at_defaults(q)) /* most users: no copies to keep */
        return TERR_NONE;
    if (!x->more && !(x->more = new_more(x->x.easy)))
        return TERR_NOMEM;
    set_version(x, q);
    bool ok = set_auth(x, q) && set_tls(x, q) && set_mime(x, q);
    x->more->set = true;
    return ok ? TERR_NONE : TERR_NOMEM;
}

static void free_more(struct txfer *x)
{
    struct xopts *m = x->more;
    if (!m)
        return;
    curl_mime_free(m->mime);
    free(m->user);
    free(m->password);
    free(m->ca);
    free(m->ca_default);
    free(m->cert);
    free(m->key);
    free(m);
}

static const char *proto_of(CURL *e)
{
    long v = 0;
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &v);
    return v == CURL_HTTP_VERSION_1_0 ? "HTTP/1.0" : v == CURL_HTTP_VERSION_1_1 ? "HTTP/1.1"
         : v == CURL_HTTP_VERSION_2_0 ? "HTTP/2" : v == CURL_HTTP_VERSION_3 ? "HTTP/3" : NULL;
}

/* treq.own_cookies. libcurl puts the jar's cookies in a Cookie header of
 * its own, beside any the request carries, and has no switch to leave them
 * out of one request: so the handle steps off the share for the transfer.
 * As the transfer starts, libcurl loads the handle's COOKIEFILE list again
 * (the "" set in xfer_new; adding to it here would grow it every time),
 * which gives a handle with no cookies an empty engine of its own: it
 * catches what the response sets. The unit test checks that it does. */
static void step_off_jar(struct txfer *x)
{
    curl_easy_setopt(x->x.easy, CURLOPT_SHARE, NULL);
    x->off_jar = true;
}

/* After such a transfer: back on the share, with what the response set
 * (a cookie it expired goes over expired, and so removes the jar's). */
static void back_on_jar(struct txfer *x)
{
    if (!x->off_jar)
        return;
    CURL *e = x->x.easy;
    struct curl_slist *set = NULL;
    curl_easy_getinfo(e, CURLINFO_COOKIELIST, &set);
    curl_easy_setopt(e, CURLOPT_SHARE, x->jar->share); /* frees the transfer's own engine */
    x->off_jar = false;
    for (struct curl_slist *c = set; c; c = c->next) /* see jar_new: through the jar's own handle */
        curl_easy_setopt(x->jar->io, CURLOPT_COOKIELIST, c->data);
    curl_slist_free_all(set);
}

static enum terr prepare(struct txfer *x, const struct treq *q)
{
    x->q = q;
    back_on_jar(x); /* a transfer that did not start */
    set_jar(x, q->jar);
    if (q->own_cookies && q->jar)
        step_off_jar(x);
    if (!set_headers(x, q))
        return TERR_NOMEM;
    if (x->more)
        drop_mime(x);
    set_method(x, q);
    set_limits(x, q);
    return set_more(x, q);
}

static bool start(struct txfer *x, struct shard *s, struct tres *res)
{
    *res = (struct tres){.head = res->head, .body = res->body};
    res->head.len = res->body.len = 0;
    x->res = res;
    x->fail = TERR_NONE;
    x->sent = x->head_done = x->interim = false;
    x->errbuf[0] = '\0';
    return shard_add(s, &x->x);
}

static void cancel(struct txfer *x)
{
    shard_remove(&x->x);
    back_on_jar(x);
}

static bool busy(const struct txfer *x)
{
    return x->x.active;
}

/* The jar owner had alone is carried over into the share. */
static void jar_free(struct tjar *j);

static struct tjar *jar_new(struct txfer *owner)
{
    struct tjar *j = calloc(1, sizeof *j);
    if (!j || !(j->share = curl_share_init()) || !(j->io = curl_easy_init())) {
        jar_free(j);
        return NULL;
    }
    curl_share_setopt(j->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    curl_share_setopt(j->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_easy_setopt(j->io, CURLOPT_SHARE, j->share);
    if (!owner)
        return j;
    struct curl_slist *cookies = NULL;
    curl_easy_getinfo(owner->x.easy, CURLINFO_COOKIELIST, &cookies);
    set_jar(owner, j);
    /* through the jar's own handle: libcurl 7.88 refuses cookies added on a
     * handle whose last response already set 50 (its per-response limit) */
    for (struct curl_slist *c = cookies; c; c = c->next)
        curl_easy_setopt(j->io, CURLOPT_COOKIELIST, c->data);
    curl_slist_free_all(cookies);
    return j;
}

static void jar_leave(struct txfer *x, struct tjar *j)
{
    if (x && j && x->jar == j) {
        back_on_jar(x);
        set_jar(x, NULL);
    }
}

static void jar_free(struct tjar *j)
{
    if (!j)
        return;
    curl_easy_cleanup(j->io); /* it leaves the share first */
    if (j->share)
        curl_share_cleanup(j->share);
    free(j);
}

static bool jar_export(struct tjar *j, struct buf *out)
{
    struct curl_slist *lines = NULL;
    if (curl_easy_getinfo(j->io, CURLINFO_COOKIELIST, &lines) != CURLE_OK)
        return false;
    bool ok = true;
    for (struct curl_slist *c = lines; ok && c; c = c->next)
        ok = buf_append(out, c->data, strlen(c->data)) && buf_append(out, "\n", 1);
    curl_slist_free_all(lines);
    return ok;
}

static bool jar_import(struct tjar *j, const char *line)
{
    return curl_easy_setopt(j->io, CURLOPT_COOKIELIST, line) == CURLE_OK;
}

static void jar_clear(struct tjar *j)
{
    curl_easy_setopt(j->io, CURLOPT_COOKIELIST, "ALL");
}

const struct transport_ops curl_transport = {
    .name = "curl",
    .xfer_new = xfer_new,
    .xfer_free = xfer_free,
    .set_url = set_url,
    .prepare = prepare,
    .start = start,
    .cancel = cancel,
    .busy = busy,
    .jar_new = jar_new,
    .jar_leave = jar_leave,
    .jar_free = jar_free,
    .jar_export = jar_export,
    .jar_import = jar_import,
    .jar_clear = jar_clear,
};
