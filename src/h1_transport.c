/* The lean HTTP/1.1 transport (h1_transport.h): a treq written with one
 * writev on a kept-alive non-blocking socket watched by the thread's loop,
 * the response read into the loop's scratch buffer and parsed by
 * http_parser. What a user sees is libcurl's behaviour: the same request
 * bytes in the same order, the same errors, the same accounting of an
 * attempt lost on a kept-alive connection (README, "HTTP engines"). */
#include "h1_transport.h"
#include "cjar.h"
#include "clock.h"
#include "decode.h"
#include "dns_cache.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (64u << 10)
#define MAX_HEADER_LINE (100u << 10)   /* libcurl 7.88 refuses one longer header line */
#define MAX_IDLE 64                    /* idle connections a jar keeps */

/* One TCP connection to host:port. */
struct hconn {
    int fd;
    unsigned port;
    bool used;                      /* it carried a request: a reused connection now */
    bool dead;                      /* while idle, the server closed it (or wrote): not used again */
    struct loop *loop;
    struct hconn *next;             /* in a jar's idle list */
    char host[];                    /* the URL's host (no brackets), NUL-terminated */
};

/* A user's cookies and its idle connections, shared by its transfers. */
struct tjar {
    struct loop *loop;              /* the idle connections' (their owner's thread) */
    struct cjar *cookies;
    struct hconn *idle;
    unsigned nidle;
};

enum phase { P_IDLE, P_CONNECTING, P_SENDING, P_READING };
enum stop { STOP_NONE, STOP_HEAD, STOP_MESSAGE };

struct txfer {
    struct loop *loop;
    const struct tcalls *calls;
    void *ud;
    const struct treq *q;
    struct tres *res;
    struct tjar *jar;               /* q's jar while a transfer runs */
    struct cjar *cookies;           /* the transfer's own, without a jar */
    struct hconn *conn;             /* in use; between requests, kept here without a jar */
    enum phase phase;
    /* the URL (set_url) */
    CURLU *cu;
    struct buf target;              /* path and query as they go on the request line */
    struct buf host;                /* the host, NUL-terminated, brackets off */
    struct buf host_line;           /* "Host: ...\r\n" */
    unsigned port;
    char *location;                 /* tres.location (curl_free) */
    /* the address: a literal's, or the names a lookup gave */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool named;                     /* the host is a name: its addresses are in the thread's cache */
    unsigned next_addr;             /* the name's address to try next */
    const char *detail;             /* TERR_OTHER's words */
    /* the header lines (prepare) */
    struct buf lines_key;           /* q's lines, auth and decode they were made for */
    struct buf fixed;               /* Authorization, Accept, Accept-Encoding: before the cookies */
    struct buf custom;              /* q's own lines as they go */
    bool custom_length;             /* q names its own Content-Length */
    bool custom_cookie;             /* ... a Cookie header (removed or given) */
    /* the transfer in flight */
    struct buf out;                 /* the request head */
    size_t out_done;                /* of head and body */
    http_parser parser;
    enum stop stop;                 /* where the parser paused */
    bool in_head, head_done, answered, resent;
    bool in_start;                  /* inside start: an end is reported from the loop */
    unsigned set_cookies;           /* the response's Set-Cookie lines so far: libcurl takes 50 */
    unsigned char trailer;          /* in a trailer: 0 none yet, 1 its name, 2 its value last */
    bool excess;                    /* bytes after the response: the connection goes */
    struct decoder *dec;
    bool decoding;
    struct timer timeout, later;
    enum terr fail;
    uint64_t t0, t_dns, t_conn, t_ready, t_first, t_sent;
};

static const http_parser_settings parser_settings;
static void lost(struct txfer *x, enum terr e);

static pthread_once_t header_size_once = PTHREAD_ONCE_INIT;

static void set_header_size(void)
{
    http_parser_set_max_header_size(MAX_HEAD_BYTES); /* 80 KB by default; tide's limit holds */
}

/* ---------------- which requests ---------------- */

static bool line_named(const char *line, size_t n, const char *name, size_t nlen)
{
    return n > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0;
}

bool h1_carries(const struct treq *q)
{
    const struct turl *u = &q->parts;
    if (u->tls || u->scheme_len != 4 || !u->host_len || q->version == THTTP_2 || q->auth == TAUTH_DIGEST ||
        q->nmultipart)
        return false;
    const char *at = memchr(q->url.data + 7, '@', u->host - 7); /* user:password@: libcurl's auth */
    if (at)
        return false;
    const char *p = q->headers.data, *end = p + q->headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if ((p[0] | 0x20) == 't' || (p[0] | 0x20) == 'e')
            if (line_named(p, n, "transfer-encoding", 17) || line_named(p, n, "expect", 6))
                return false;
        p += n + 2;
    }
    return true;
}

/* ---------------- connections ---------------- */

static void conn_close(struct txfer *x, struct hconn *c)
{
    if (!c)
        return;
    close(c->fd);
    loop_forget(x->loop, c->fd);
    free(c);
}

static bool conn_for(const struct hconn *c, const struct txfer *x)
{
    return c->port == x->port && strcmp(c->host, x->host.data) == 0;
}

/* An idle kept-alive connection stays in epoll: an event on it means the
 * server closed it (or wrote out of turn), and it is not used again, as
 * libcurl checks before reuse; this costs no system call per request. */
static void on_idle(void *ud, int fd, uint32_t events)
{
    (void)events;
    struct hconn *c = ud;
    c->dead = true;
    loop_unwatch(c->loop, fd); /* level-triggered: the loop drops it from epoll on its next event */
}

static bool conn_alive(const struct hconn *c)
{
    return !c->dead;
}

static struct hconn *take_idle(struct txfer *x)
{
    if (!x->jar) {
        struct hconn *c = x->conn;
        if (c && (!conn_for(c, x) || !conn_alive(c))) {
            conn_close(x, c);
            c = x->conn = NULL;
        }
        return c;
    }
    for (struct hconn **p = &x->jar->idle; *p;) {
        struct hconn *c = *p;
        if (!conn_for(c, x)) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        x->jar->nidle--;
        if (conn_alive(c))
            return c;
        conn_close(x, c);
    }
    return NULL;
}

/* After the response: the connection stays for the next request, or goes. */
static void conn_release(struct txfer *x, bool keep)
{
    struct hconn *c = x->conn;
    if (!c)
        return;
    if (!keep || !loop_watch(x->loop, c->fd, EPOLLIN, on_idle, c)) {
        conn_close(x, c);
        x->conn = NULL;
        return;
    }
    c->used = true;
    if (!x->jar)
        return;
    x->conn = NULL;
    if (x->jar->nidle >= MAX_IDLE) {
        conn_close(x, c);
        return;
    }
    c->next = x->jar->idle;
    x->jar->loop = x->loop;
    x->jar->idle = c;
    x->jar->nidle++;
}

static struct hconn *conn_new(struct txfer *x)
{
    size_t n = x->host.len;
    struct hconn *c = malloc(sizeof *c + n);
    if (!c)
        return NULL;
    c->fd = -1;
    c->port = x->port;
    c->used = c->dead = false;
    c->loop = x->loop;
    c->next = NULL;
    memcpy(c->host, x->host.data, n);
    return c;
}

/* ---------------- the address ---------------- */

static bool literal_address(struct txfer *x)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&x->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&x->addr;
    memset(&x->addr, 0, sizeof x->addr);
    if (inet_pton(AF_INET, x->host.data, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)x->port);
        x->addr_len = sizeof *v4;
        return true;
    }
    if (inet_pton(AF_INET6, x->host.data, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)x->port);
        x->addr_len = sizeof *v6;
        return true;
    }
    return false;
}

/* The address to connect to: a literal's at once (dns 0), a name's from the
 * thread's cache, looked up on a miss (dns_cache.h). */
static enum terr resolve(struct txfer *x)
{
    x->next_addr = 0;
    x->named = !literal_address(x);
    if (!x->named)
        return TERR_NONE;
    bool nomem;
    const struct dns_entry *e = dns_lookup(x->loop, x->host.data, x->port, loop_now(x->loop), &nomem);
    return e ? TERR_NONE : nomem ? TERR_NOMEM : TERR_DNS;
}

/* The name's next address into x->addr; false when none is left. The
 * entry is looked up again each time: it may have been renewed meanwhile. */
static bool next_named_address(struct txfer *x)
{
    bool nomem;
    const struct dns_entry *e = dns_lookup(x->loop, x->host.data, x->port, loop_now(x->loop), &nomem);
    if (!e || x->next_addr >= e->n)
        return false;
    memcpy(&x->addr, &e->addr[x->next_addr], e->len[x->next_addr]);
    x->addr_len = e->len[x->next_addr++];
    return true;
}

static enum terr connect_error(int e)
{
    return e == ECONNREFUSED ? TERR_REFUSED : e == ENETUNREACH || e == EHOSTUNREACH ? TERR_UNREACHABLE
         : e == ETIMEDOUT ? TERR_TIMEOUT : TERR_CONNECT;
}

static void on_socket(void *ud, int fd, uint32_t events);

/* Starts connecting to the address to try next; false with x->fail set
 * when none is left. */
static bool connect_next(struct txfer *x)
{
    for (;;) {
        const struct sockaddr *sa = (const struct sockaddr *)&x->addr;
        if (x->named && !next_named_address(x))
            return false; /* every address of the name failed: x->fail says how the last did */
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            x->fail = errno == EMFILE || errno == ENFILE ? TERR_OTHER : TERR_CONNECT;
            x->detail = "too many open files";
            return false;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        x->conn->fd = fd;
        if (connect(fd, sa, x->addr_len) == 0 || errno == EINPROGRESS) {
            x->phase = P_CONNECTING;
            return loop_watch(x->loop, fd, EPOLLOUT, on_socket, x) || (x->fail = TERR_NOMEM, false);
        }
        x->fail = connect_error(errno);
        close(fd);
        x->conn->fd = -1;
        if (!x->named)
            return false;
    }
}

/* ---------------- the request ---------------- */

static bool append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* "Authorization: Basic base64(user:password)\r\n", as libcurl sends it. */
static bool basic_auth_line(struct buf *b, const char *user, const char *password)
{
    size_t ul = strlen(user), pl = strlen(password), n = ul + 1 + pl;
    char *plain = malloc(n + 1), *enc = malloc(4 * ((n + 2) / 3) + 1);
    bool ok = plain && enc;
    if (ok) {
        memcpy(plain, user, ul);
        plain[ul] = ':';
        memcpy(plain + ul + 1, password, pl);
        int m = EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)plain, (int)n);
        ok = append_str(b, "Authorization: Basic ") && buf_append(b, enc, (size_t)m) && buf_append(b, "\r\n", 2);
    }
    free(plain);
    free(enc);
    return ok;
}

/* q's own lines as libcurl sends them: "Name:" (nothing after) removes a
 * header and is not sent; "Name: " (empty) goes as "Name:". Notes which
 * of libcurl's own headers they replace. */
static bool custom_lines(struct txfer *x, const struct treq *q, bool *accept, bool *encoding, bool *auth,
                         bool *host)
{
    const char *p = q->headers.data, *end = p + q->headers.len;
    x->custom.len = 0;
    x->custom_length = x->custom_cookie = false;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        const char *colon = memchr(p, ':', n);
        size_t nlen = colon ? (size_t)(colon - p) : n;
        bool removal = colon && (size_t)(colon - p) + 1 == n;
        *accept |= line_named(p, n, "accept", 6);
        *encoding |= line_named(p, n, "accept-encoding", 15);
        *auth |= line_named(p, n, "authorization", 13);
        x->custom_length |= line_named(p, n, "content-length", 14);
        x->custom_cookie |= line_named(p, n, "cookie", 6);
        if (line_named(p, n, "host", 4)) {
            *host = true;
            if (!removal && !(buf_append(&x->host_line, p, n) && buf_append(&x->host_line, "\r\n", 2)))
                return false;
        } else if (!removal) {
            bool empty = n == nlen + 2 && p[nlen + 1] == ' ';
            if (!buf_append(&x->custom, p, empty ? nlen + 1 : n) || !buf_append(&x->custom, "\r\n", 2))
                return false;
        }
        p += n + 2;
    }
    return true;
}

static bool default_host_line(struct txfer *x)
{
    x->host_line.len = 0;
    bool v6 = memchr(x->host.data, ':', x->host.len) != NULL;
    char port[16] = "";
    if (x->port != 80)
        snprintf(port, sizeof port, ":%u", x->port);
    return append_str(&x->host_line, v6 ? "Host: [" : "Host: ") && buf_append(&x->host_line, x->host.data, x->host.len - 1) &&
           append_str(&x->host_line, v6 ? "]" : "") && append_str(&x->host_line, port) &&
           buf_append(&x->host_line, "\r\n", 2);
}

/* The key the header lines were made for: q's lines, then what else changes them. */
/* The key the lines are made from: q's header lines, a flags byte, and
 * with Basic auth the credentials (NUL after each). */
static bool key_append(struct buf *k, const struct treq *q, char flags)
{
    bool basic = q->auth == TAUTH_BASIC;
    return buf_append(k, q->headers.data, q->headers.len) && buf_append(k, &flags, 1) &&
           (!basic || (buf_append(k, q->user, strlen(q->user) + 1) &&
                       buf_append(k, q->password, strlen(q->password) + 1)));
}

static bool lines_same(const struct txfer *x, const struct treq *q, char flags)
{
    size_t n = q->headers.len;
    const char *k = x->lines_key.data, *end = k + x->lines_key.len;
    if (x->lines_key.len < n + 1 || k[n] != flags || (n && memcmp(k, q->headers.data, n) != 0))
        return false;
    k += n + 1;
    if (q->auth != TAUTH_BASIC)
        return k == end;
    size_t ul = strlen(q->user) + 1, pl = strlen(q->password) + 1;
    return (size_t)(end - k) == ul + pl && memcmp(k, q->user, ul) == 0 && memcmp(k + ul, q->password, pl) == 0;
}

static bool build_lines(struct txfer *x, const struct treq *q)
{
    bool basic = q->auth == TAUTH_BASIC;
    char flags = (char)('0' + (q->decode ? 1 : 0) + (basic ? 2 : 0));
    if (lines_same(x, q, flags)) /* a user repeating its request: nothing to make again */
        return true;
    bool accept = false, encoding = false, auth = false, host = false;
    if (!default_host_line(x))
        return false;
    size_t default_host = x->host_line.len;
    if (!custom_lines(x, q, &accept, &encoding, &auth, &host))
        return false;
    if (host) /* the script's Host line (or none) instead of libcurl's */
        memmove(x->host_line.data, x->host_line.data + default_host, x->host_line.len -= default_host);
    x->fixed.len = 0;
    bool ok = (!basic || auth || basic_auth_line(&x->fixed, q->user, q->password)) &&
              (accept || append_str(&x->fixed, "Accept: */*\r\n")) &&
              (!q->decode || encoding || append_str(&x->fixed, "Accept-Encoding: " DECODE_ACCEPT "\r\n"));
    x->lines_key.len = 0;
    return ok && key_append(&x->lines_key, q, flags);
}

static bool append_decimal(struct buf *b, uint64_t v)
{
    char rev[24];
    int n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (!buf_reserve(b, (size_t)n))
        return false;
    while (n)
        b->data[b->len++] = rev[--n];
    return true;
}

static struct cjar *cookies_of(struct txfer *x)
{
    return x->jar ? x->jar->cookies : x->cookies;
}

/* The request head: request line, Host, libcurl's own headers, the jar's
 * cookies, the script's lines, Content-Length, in libcurl's order. */
static bool build_head(struct txfer *x)
{
    const struct treq *q = x->q;
    struct buf *o = &x->out;
    o->len = 0;
    bool ok = append_str(o, q->method) && buf_append(o, " ", 1) && buf_append(o, x->target.data, x->target.len) &&
              buf_append(o, " HTTP/1.1\r\n", 11) && buf_append(o, x->host_line.data, x->host_line.len) &&
              buf_append(o, x->fixed.data, x->fixed.len);
    struct cjar *jar = cookies_of(x);
    if (ok && jar && !q->own_cookies && !cjar_empty(jar)) {
        size_t at = o->len;
        ok = buf_append(o, "Cookie: ", 8) && cjar_header(jar, o, q->url.data, &q->parts, (int64_t)time(NULL));
        if (ok && o->len == at + 8)
            o->len = at; /* none of them goes to this URL */
        else if (ok)
            ok = buf_append(o, "\r\n", 2);
    }
    ok = ok && buf_append(o, x->custom.data, x->custom.len);
    if (ok && (q->has_body || q->kind == TM_POST) && !x->custom_length)
        ok = buf_append(o, "Content-Length: ", 16) && append_decimal(o, q->body_len) && buf_append(o, "\r\n", 2);
    return ok && buf_append(o, "\r\n", 2);
}

/* ---------------- finishing ---------------- */

static uint64_t us(uint64_t from, uint64_t to)
{
    return to > from && from ? (to - from) / 1000 : 0;
}

static bool fail_later(struct txfer *x, enum terr e);

static void finish(struct txfer *x, enum terr e)
{
    if (x->in_start) { /* the binding hears of it once start returned */
        fail_later(x, e);
        return;
    }
    struct tres *res = x->res;
    uint64_t now = clock_now_ns();
    timer_stop(x->loop, &x->timeout);
    timer_stop(x->loop, &x->later);
    if (x->decoding) {
        decoder_end(x->dec); /* a stream cut short is no error: libcurl 7.88 keeps what it decoded */
        decoder_trim(x->dec); /* the libraries' windows back: a user holds none between requests */
        x->decoding = false;
    }
    bool keep = e == TERR_NONE && !x->excess && http_should_keep_alive(&x->parser);
    conn_release(x, keep);
    x->phase = P_IDLE;
    res->err = e;
    res->detail = e == TERR_OTHER ? x->detail : NULL;
    if (!x->head_done)
        res->status = 0;
    if (e == TERR_HEAD_TOO_LARGE)
        res->head.len = 0; /* a head cut anywhere: no header of it is shown */
    uint64_t ready = x->t_ready ? x->t_ready : now;
    res->t = (struct ttimes){
        .dns = us(x->t0, x->t_dns),
        .connect = x->t_conn ? us(x->t_dns, x->t_conn) : 0,
        .waiting = x->t_first ? us(ready, x->t_first) : 0,
        .duration = us(ready, now),
        .total = us(x->t0, now),
    };
    res->proto = res->status ? (x->parser.http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1") : NULL;
    x->calls->done(x->ud);
}

static void on_later(struct timer *t)
{
    struct txfer *x = (struct txfer *)((char *)t - offsetof(struct txfer, later));
    finish(x, x->fail);
}

/* A failure found inside start: reported from the loop, as libcurl would. */
static bool fail_later(struct txfer *x, enum terr e)
{
    x->fail = e;
    timer_start(x->loop, &x->later, loop_now(x->loop));
    return true;
}

static void on_timeout(struct timer *t)
{
    struct txfer *x = (struct txfer *)((char *)t - offsetof(struct txfer, timeout));
    finish(x, TERR_TIMEOUT);
}

/* ---------------- sending ---------------- */

static void start_reading(struct txfer *x)
{
    http_parser_init(&x->parser, HTTP_RESPONSE);
    x->parser.data = x;
    x->stop = STOP_NONE;
    x->in_head = true;
    x->head_done = x->answered = x->excess = false;
    x->trailer = 0;
    x->set_cookies = 0;
}

/* Writes what is left of head and body; watches for the answer when all went. */
static void send_some(struct txfer *x)
{
    const struct treq *q = x->q;
    int fd = x->conn->fd;
    for (;;) {
        struct iovec v[2];
        int n = 0;
        size_t done = x->out_done, head = x->out.len;
        if (done < head)
            v[n++] = (struct iovec){x->out.data + done, head - done};
        size_t body_done = done > head ? done - head : 0;
        if (q->body_len > body_done)
            v[n++] = (struct iovec){(char *)q->body + body_done, q->body_len - body_done};
        if (n == 0)
            break;
        ssize_t w = writev(fd, v, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!loop_watch(x->loop, fd, EPOLLOUT | EPOLLIN, on_socket, x))
                finish(x, TERR_NOMEM);
            return;
        }
        if (w < 0) {
            lost(x, errno == EPIPE || errno == ECONNRESET ? TERR_RESET : TERR_SEND);
            return;
        }
        x->out_done += (size_t)w;
        x->res->bytes_sent += (uint64_t)w;
    }
    x->phase = P_READING;
    if (!loop_watch(x->loop, fd, EPOLLIN, on_socket, x))
        finish(x, TERR_NOMEM);
}

static void send_request(struct txfer *x)
{
    start_reading(x);
    x->t_sent = clock_now_ns();
    x->out_done = 0;
    x->phase = P_SENDING;
    if (!x->t_ready)
        x->t_ready = x->t_sent;
    send_some(x);
}

/* A connection for the request: an idle one of the user's to this host, or a new one. */
static void open_or_reuse(struct txfer *x)
{
    struct hconn *c = take_idle(x);
    if (c) {
        x->conn = c;
        x->t_dns = x->t0;
        send_request(x);
        return;
    }
    enum terr e = resolve(x);
    x->t_dns = clock_now_ns();
    if (e != TERR_NONE) {
        fail_later(x, e);
        return;
    }
    if (!(x->conn = conn_new(x))) {
        fail_later(x, TERR_NOMEM);
        return;
    }
    if (!connect_next(x)) {
        free(x->conn);
        x->conn = NULL;
        fail_later(x, x->fail);
    }
}

/* The attempt died before any answer: on a kept-alive connection an
 * idempotent request goes once more on a new one, the lost attempt a sample
 * of its own (the server may have read it); anything else fails. */
static void lost(struct txfer *x, enum terr e)
{
    bool reused = x->conn->used;
    conn_release(x, false);
    if (x->answered || !reused) {
        finish(x, x->answered ? TERR_TRUNCATED : e);
        return;
    }
    if (!x->q->idempotent || x->resent) {
        finish(x, TERR_RESET);
        return;
    }
    uint64_t now = clock_now_ns();
    x->resent = true;
    x->res->resets++;
    x->calls->resent(x->ud, x->t_sent, now);
    x->t_ready = 0;
    x->phase = P_IDLE;
    open_or_reuse(x);
}

/* ---------------- receiving ---------------- */


/* A Content-Encoding (or Transfer-Encoding) line of a response with a body. */
static void add_coding(struct txfer *x, const char *v, size_t vlen, bool transfer)
{
    long status = x->res->status;
    if (x->q->kind == TM_HEAD || status == 204 || status == 304)
        return; /* no body to decode: libcurl reads no coding either */
    if (!x->dec && !(x->dec = decoder_new())) {
        x->fail = TERR_NOMEM;
        return;
    }
    if (!x->decoding)
        decoder_begin(x->dec);
    x->decoding = true;
    enum dec_status d = decoder_add(x->dec, v, vlen, transfer);
    if (d != DEC_OK) { /* libcurl gives up on such a head before its status counts */
        x->fail = d == DEC_NOMEM ? TERR_NOMEM : TERR_MALFORMED;
        x->head_done = false;
    }
}

static void take_header(struct txfer *x, const char *name, size_t nlen, const char *v, size_t vlen)
{
    const struct treq *q = x->q;
    struct tres *res = x->res;
    if (nlen == 10 && strncasecmp(name, "set-cookie", 10) == 0) {
        struct cjar *jar = cookies_of(x);
        if (!jar && !x->jar)
            jar = x->cookies = cjar_new();
        if (!jar || !cjar_store_counted(jar, v, vlen, q->url.data, &q->parts, (int64_t)time(NULL), &x->set_cookies))
            x->fail = TERR_NOMEM;
    } else if (nlen == 8 && strncasecmp(name, "location", 8) == 0 && res->status / 100 == 3 && !res->location) {
        CURLU *to = curl_url_dup(x->cu);
        char *loc = strndup(v, vlen), *abs = NULL;
        if (to && loc && curl_url_set(to, CURLUPART_URL, loc, CURLU_URLENCODE | CURLU_ALLOW_SPACE) == CURLUE_OK &&
            curl_url_get(to, CURLUPART_URL, &abs, 0) == CURLUE_OK) {
            curl_free(x->location);
            res->location = x->location = abs;
        }
        free(loc);
        curl_url_cleanup(to);
    } else if (nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0 && q->decode) {
        add_coding(x, v, vlen, false);
    } else if (nlen == 17 && strncasecmp(name, "transfer-encoding", 17) == 0 &&
               !(vlen == 7 && strncasecmp(v, "chunked", 7) == 0)) {
        add_coding(x, v, vlen, true); /* libcurl decodes "gzip, chunked" even without compression */
    }
}

/* The final head's fields, in one pass: a line longer than libcurl takes
 * fails the response; Set-Cookie, Location and codings are taken. */
static bool read_fields(struct txfer *x)
{
    const char *p = x->res->head.data, *end = p + x->res->head.len;
    for (bool status_line = true; p < end; status_line = false) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        size_t line = n && p[n - 1] == '\r' ? n - 1 : n;
        const char *colon = status_line ? NULL : memchr(p, ':', line);
        if (n > MAX_HEADER_LINE) {
            x->fail = TERR_HEAD_TOO_LARGE;
            x->head_done = false; /* refused whole, as libcurl refuses it: no status */
            return false;
        }
        if (colon) {
            const char *v = colon + 1, *vend = p + line;
            while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            take_header(x, p, (size_t)(colon - p), v, (size_t)(vend - v));
        }
        p += n + 1;
    }
    return x->fail == TERR_NONE;
}

static int on_message_begin(http_parser *p)
{
    struct txfer *x = p->data;
    x->in_head = true;
    x->res->head.len = 0; /* after a 1xx: the final response's head */
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct txfer *x = p->data;
    x->stop = STOP_HEAD;
    http_parser_pause(p, 1);
    unsigned status = p->status_code;
    bool interim = status / 100 == 1 && status != 101;
    /* no body for HEAD, 204 and 304 whatever they say (libcurl ignores one) */
    return !interim && (x->q->kind == TM_HEAD || status == 204 || status == 304);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct txfer *x = p->data;
    const struct treq *q = x->q;
    struct tres *res = x->res;
    res->bytes_received += len;
    if (x->decoding && decoder_active(x->dec)) { /* a discarded body is checked all the same, as by libcurl */
        enum dec_status d = decoder_feed(x->dec, at, len, q->discard ? NULL : &res->body, q->max_body,
                                         &res->truncated);
        if (d != DEC_OK)
            x->fail = d == DEC_NOMEM ? TERR_NOMEM : TERR_MALFORMED;
        return x->fail != TERR_NONE;
    }
    if (q->discard)
        return 0;
    if (!buf_append_capped(&res->body, at, len, q->max_body, &res->truncated))
        x->fail = TERR_NOMEM;
    return x->fail != TERR_NONE;
}

/* A chunked body's trailer fields: libcurl hands them to the header
 * callback, so they join the head (r.headers) as lines of their own. The
 * head's fields are read from the head itself (head_lines). */
static int on_trailer_part(http_parser *p, const char *at, size_t len, bool value)
{
    struct txfer *x = p->data;
    if (!x->head_done)
        return 0;
    struct buf *h = &x->res->head;
    const char *sep = value ? (x->trailer == 1 ? ": " : "") : (x->trailer == 2 ? "\r\n" : "");
    x->trailer = value ? 2 : 1;
    if (h->len + len + 4 > MAX_HEAD_BYTES)
        x->fail = TERR_HEAD_TOO_LARGE;
    else if (!buf_append(h, sep, strlen(sep)) || !buf_append(h, at, len))
        x->fail = TERR_NOMEM;
    return x->fail != TERR_NONE;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    return on_trailer_part(p, at, len, false);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    return on_trailer_part(p, at, len, true);
}

static int on_message_complete(http_parser *p)
{
    struct txfer *x = p->data;
    if (x->trailer && !buf_append(&x->res->head, "\r\n\r\n", 4))
        x->fail = TERR_NOMEM;
    x->trailer = 0;
    x->stop = STOP_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_message_complete = on_message_complete,
};

/* The head of a response just ended (len bytes of it in this read). */
static bool head_ended(struct txfer *x)
{
    struct tres *res = x->res;
    x->in_head = false;
    unsigned status = x->parser.status_code;
    if (status / 100 == 1 && status != 101)
        return true; /* an interim response: the final one follows */
    x->head_done = true;
    res->status = status;
    return read_fields(x);
}

static bool head_append(struct txfer *x, const char *p, size_t n)
{
    struct tres *res = x->res;
    res->bytes_received += n;
    if (res->head.len + n > MAX_HEAD_BYTES) {
        x->fail = TERR_HEAD_TOO_LARGE;
        return false;
    }
    if (!buf_append(&res->head, p, n)) {
        x->fail = TERR_NOMEM;
        return false;
    }
    return true;
}

static enum terr parse_error(struct txfer *x)
{
    if (x->fail != TERR_NONE)
        return x->fail;
    return HTTP_PARSER_ERRNO(&x->parser) == HPE_HEADER_OVERFLOW ? TERR_HEAD_TOO_LARGE : TERR_MALFORMED;
}

/* Feeds what came in to the parser; true when the response is complete
 * (or failed: x->fail). */
static bool feed(struct txfer *x, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        size_t n = http_parser_execute(&x->parser, &parser_settings, data + off, len - off);
        enum http_errno e = HTTP_PARSER_ERRNO(&x->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            x->fail = parse_error(x);
            return true;
        }
        if (x->in_head && !head_append(x, data + off, e == HPE_PAUSED && x->stop == STOP_HEAD ? n + 1 : n))
            return true;
        off += n;
        if (e != HPE_PAUSED)
            continue;
        http_parser_pause(&x->parser, 0);
        enum stop s = x->stop;
        x->stop = STOP_NONE;
        if (s == STOP_HEAD) {
            if (!head_ended(x))
                return true;
        } else if (s == STOP_MESSAGE && x->head_done) {
            x->excess = off < len;
            return true;
        }
    }
    return false;
}

/* The server closed the connection: the end of a body read to the close,
 * or a response cut short. */
static enum terr at_eof(struct txfer *x)
{
    if (!x->answered)
        return TERR_EMPTY_REPLY;
    if (!x->head_done)
        return TERR_MALFORMED;
    http_parser_execute(&x->parser, &parser_settings, NULL, 0);
    if (x->fail != TERR_NONE)
        return x->fail;
    if (x->stop == STOP_MESSAGE)
        return TERR_NONE;
    return TERR_TRUNCATED;
}

static void read_some(struct txfer *x)
{
    char *scratch = loop_scratch(x->loop, READ_CHUNK);
    if (!scratch) {
        finish(x, TERR_NOMEM);
        return;
    }
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = recv(x->conn->fd, scratch, READ_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 || n == 0) {
            if (!x->answered) {
                lost(x, n == 0 ? TERR_EMPTY_REPLY : errno == ECONNRESET ? TERR_RESET : TERR_RECV);
                return;
            }
            finish(x, n == 0 ? at_eof(x) : errno == ECONNRESET ? TERR_RESET : TERR_RECV);
            return;
        }
        if (!x->answered) {
            x->answered = true;
            x->t_first = clock_now_ns();
        }
        if (feed(x, scratch, (size_t)n)) {
            finish(x, x->fail);
            return;
        }
    }
}

static void on_socket(void *ud, int fd, uint32_t events)
{
    struct txfer *x = ud;
    if (x->phase == P_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0 && !(events & (EPOLLERR | EPOLLHUP))) {
            x->t_conn = clock_now_ns();
            send_request(x);
            return;
        }
        x->fail = connect_error(err ? err : ECONNREFUSED);
        close(fd);
        loop_forget(x->loop, fd);
        x->conn->fd = -1;
        if (!x->named || !connect_next(x)) {
            free(x->conn);
            x->conn = NULL;
            finish(x, x->fail);
        }
        return;
    }
    /* after anything that may end the transfer, x is the binding's again:
     * its next request may already have started on it */
    if (x->phase == P_SENDING) {
        if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
            send_some(x);
            return;
        }
        x->phase = P_READING; /* answered (or gone) before the body went: read what came */
    }
    if (x->phase == P_READING)
        read_some(x);
}

/* ---------------- the operations ---------------- */

static void cancel(struct txfer *x)
{
    if (x->phase == P_IDLE && !timer_armed(&x->later))
        return;
    timer_stop(x->loop, &x->timeout);
    timer_stop(x->loop, &x->later);
    if (x->conn) {
        loop_unwatch(x->loop, x->conn->fd);
        if (x->conn->fd >= 0)
            conn_close(x, x->conn);
        else
            free(x->conn);
        x->conn = NULL;
    }
    x->decoding = false;
    x->phase = P_IDLE;
}

static void xfer_free(struct txfer *x)
{
    if (!x)
        return;
    cancel(x);
    if (x->conn)
        conn_close(x, x->conn);
    cjar_free(x->cookies);
    decoder_free(x->dec);
    curl_url_cleanup(x->cu);
    curl_free(x->location);
    struct buf *bufs[] = {&x->target, &x->host, &x->host_line, &x->lines_key,
                          &x->fixed, &x->custom, &x->out};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        buf_free(bufs[i]);
    free(x);
}

static struct txfer *xfer_new(struct loop *l, const struct tcalls *calls, void *ud, size_t buffer_size)
{
    (void)buffer_size; /* reads go into the loop's one buffer */
    pthread_once(&header_size_once, set_header_size);
    struct txfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->loop = l;
    x->calls = calls;
    x->ud = ud;
    x->timeout.fire = on_timeout;
    x->later.fire = on_later;
    if (!(x->cu = curl_url())) {
        free(x);
        return NULL;
    }
    return x;
}

/* The URL as libcurl reads it (the same check, the same dot segments
 * removed), kept as host, port and request target. */
static enum terr set_url(struct txfer *x, const struct treq *q)
{
    char *host = NULL, *path = NULL, *query = NULL, *port = NULL;
    enum terr e = TERR_BAD_URL;
    if (curl_url_set(x->cu, CURLUPART_URL, q->url.data, 0) != CURLUE_OK ||
        curl_url_get(x->cu, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(x->cu, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    curl_url_get(x->cu, CURLUPART_QUERY, &query, 0);
    curl_url_get(x->cu, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    size_t hl = strlen(host);
    const char *h = host;
    if (hl >= 2 && h[0] == '[') { /* an IPv6 address: the brackets go on the Host line only */
        h++;
        hl -= 2;
        const char *zone = memchr(h, '%', hl);
        if (zone)
            hl = (size_t)(zone - h);
    }
    x->host.len = x->target.len = 0;
    x->port = port ? (unsigned)strtoul(port, NULL, 10) : 80;
    e = buf_append(&x->host, h, hl) && buf_append(&x->host, "", 1) &&
        append_str(&x->target, *path ? path : "/") &&
        (!query || (buf_append(&x->target, "?", 1) && append_str(&x->target, query))) ? TERR_NONE : TERR_NOMEM;
    x->lines_key.len = 0; /* the Host line changes with the URL */
out:
    curl_free(host);
    curl_free(path);
    curl_free(query);
    curl_free(port);
    return e;
}

static enum terr prepare(struct txfer *x, const struct treq *q)
{
    x->q = q;
    return build_lines(x, q) ? TERR_NONE : TERR_NOMEM;
}

static bool start(struct txfer *x, struct shard *s, struct tres *res)
{
    (void)s;
    *res = (struct tres){.head = res->head, .body = res->body};
    res->head.len = res->body.len = 0;
    x->res = res;
    x->jar = x->q->jar;
    x->fail = TERR_NONE;
    x->resent = x->answered = x->head_done = x->decoding = false;

    x->t0 = clock_now_ns();
    x->t_dns = x->t_conn = x->t_ready = x->t_first = 0;
    if (x->conn && x->jar) { /* kept from before the user had a jar */
        conn_release(x, true);
    }
    if (!build_head(x))
        return false;
    timer_start(x->loop, &x->timeout, loop_now(x->loop) + (uint64_t)x->q->timeout_ms * NS_PER_MS);
    x->in_start = true;
    open_or_reuse(x);
    x->in_start = false;
    return true;
}

static bool busy(const struct txfer *x)
{
    return x->phase != P_IDLE || timer_armed(&x->later);
}

/* ---------------- jars ---------------- */

static void jar_free(struct tjar *j)
{
    if (!j)
        return;
    for (struct hconn *c = j->idle, *next; c; c = next) {
        next = c->next;
        close(c->fd);
        loop_forget(j->loop, c->fd);
        free(c);
    }
    cjar_free(j->cookies);
    free(j);
}

static struct tjar *jar_new(struct txfer *owner)
{
    struct tjar *j = calloc(1, sizeof *j);
    if (!j || !(j->cookies = cjar_new())) {
        free(j);
        return NULL;
    }
    if (owner && owner->cookies) { /* what the owner had alone goes into the jar */
        cjar_free(j->cookies);
        j->cookies = owner->cookies;
        owner->cookies = NULL;
    }
    return j;
}

static void jar_leave(struct txfer *x, struct tjar *j)
{
    if (x && x->jar == j)
        x->jar = NULL;
}

static bool jar_export(struct tjar *j, struct buf *out)
{
    return cjar_export(j->cookies, out);
}

static bool jar_import(struct tjar *j, const char *line)
{
    return cjar_import(j->cookies, line, (int64_t)time(NULL)) != CJAR_NOMEM; /* libcurl too takes any line */
}

static void jar_clear(struct tjar *j)
{
    cjar_clear(j->cookies);
}

const struct transport_ops h1_transport = {
    .name = "lean",
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
