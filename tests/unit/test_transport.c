/* Unit tests for the transport seam (src/transport.h): URL parts, error
 * names, and a transport's table of operations driven by hand against a
 * small HTTP/1.1 server on loopback, as tide.http drives it. The checks take
 * the table as an argument, so a second transport runs the same ones. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "loopback.h"
#include "curl_transport.h"
#include "loop.h"
#include "shard.h"
#include "transport.h"

/* ---------------- URL parts ---------------- */

static int part_is(const char *url, size_t off, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(url + off, want, len) == 0;
}

static void test_url_parts(void)
{
    struct turl u;
    const char *a = "http://example.com:8080/a/b?x=1#frag";
    CHECK(turl_parse(a, strlen(a), &u));
    CHECK(!u.tls && u.port == 8080 && u.scheme_len == 4);
    CHECK(part_is(a, u.host, u.host_len, "example.com"));
    CHECK(part_is(a, u.path, u.path_len, "/a/b?x=1"));

    const char *b = "HTTPS://user:pw@[::1]/";
    CHECK(turl_parse(b, strlen(b), &u));
    CHECK(u.tls && u.port == 443 && part_is(b, u.host, u.host_len, "::1"));
    CHECK(part_is(b, u.path, u.path_len, "/"));

    const char *c = "http://h?q";
    CHECK(turl_parse(c, strlen(c), &u));
    CHECK(u.port == 80 && part_is(c, u.host, u.host_len, "h") && part_is(c, u.path, u.path_len, "?q"));

    const char *bad[] = {"ftp://h/", "http://", "http://:80/", "http://h:0/", "http://h:99999/",
                         "http://h:8x/", "http://[::1/", "http://[::1]x/", "localhost:80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (!CHECK(!turl_parse(bad[i], strlen(bad[i]), &u)))
            fprintf(stderr, "  accepted %s\n", bad[i]);
}

static void test_error_names(void)
{
    CHECK(terr_name(TERR_NONE, NULL) == NULL);
    for (int e = TERR_NONE + 1; e < TERR_COUNT; e++)
        if (!CHECK(terr_name((enum terr)e, NULL) != NULL))
            fprintf(stderr, "  no name for error %d\n", e);
    CHECK(strcmp(terr_name(TERR_RESET, NULL), "connection reset") == 0);
    CHECK(strcmp(terr_name(TERR_OTHER, "its own words"), "its own words") == 0);
}

/* ---------------- a loopback server ---------------- */

struct server {
    int fd;
    unsigned port;
    pthread_t tid;
    char last[4096];            /* the last request's head and body */
};

static const char big_body[] = "0123456789abcdef";

static void respond(int c, const char *req)
{
    char out[8192];
    int n;
    if (strncmp(req, "GET /big ", 9) == 0) {
        char body[4096];
        for (size_t i = 0; i < sizeof body; i++)
            body[i] = big_body[i % 16];
        n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof body);
        memcpy(out + n, body, sizeof body);
        n += (int)sizeof body;
    } else if (strncmp(req, "GET /cut ", 9) == 0) {
        n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
        if (write(c, out, (size_t)n) < 0)
            return;
        shutdown(c, SHUT_RDWR);
        return;
    } else if (strncmp(req, "GET /redirect ", 14) == 0) {
        n = snprintf(out, sizeof out, "HTTP/1.1 302 Found\r\nLocation: ../hello?x=1\r\nContent-Length: 0\r\n\r\n");
    } else if (strncmp(req, "GET /setcookie ", 15) == 0) {
        n = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nSet-Cookie: s=1; Path=/\r\nContent-Length: 0\r\n\r\n");
    } else {
        n = snprintf(out, sizeof out, "HTTP/1.1 201 Created\r\nX-Test: yes\r\nContent-Length: 5\r\n\r\nhello");
    }
    if (write(c, out, (size_t)n) < 0)
        return;
}

struct conn {
    struct server *s;
    int fd;
};

/* Requests one after another on one connection. */
static void *serve_conn(void *ud)
{
    struct conn *k = ud;
    struct server *s = k->s;
    int c = k->fd;
    free(k);
    char buf[4096];
    size_t have = 0;
    ssize_t n;
    while ((n = read(c, buf + have, sizeof buf - 1 - have)) > 0) {
        have += (size_t)n;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        const char *cl = strcasestr(buf, "content-length:");
        size_t body = cl && cl < end ? (size_t)atoi(cl + 15) : 0;
        size_t need = (size_t)(end + 4 - buf) + body;
        if (have < need)
            continue;
        memcpy(s->last, buf, need); /* the client waits for the answer before reading it */
        s->last[need] = '\0';
        respond(c, buf);
        memmove(buf, buf + need, have - need);
        have -= need;
    }
    close(c);
    return NULL;
}

/* Connections side by side: a client may leave one idle and open another
 * (a handle moving onto a share with its own connection pool). */
static void *serve(void *ud)
{
    struct server *s = ud;
    int c;
    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        struct conn *k = malloc(sizeof *k);
        pthread_t t;
        if (!k) {
            close(c);
            continue;
        }
        *k = (struct conn){s, c};
        if (pthread_create(&t, NULL, serve_conn, k) != 0) {
            free(k);
            close(c);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static bool server_start(struct server *s)
{
    return loopback_listen(&s->fd, &s->port) && pthread_create(&s->tid, NULL, serve, s) == 0;
}

static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->tid, NULL);
}

/* A port nothing listens on: bound, then closed. */
static unsigned closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---------------- driving a transport ---------------- */

struct client {
    const struct transport_ops *tp;
    struct loop *loop;
    struct shard *shard;
    struct txfer *x;
    struct treq q;
    struct tres res;
    bool done;
    unsigned resent;
};

static void on_done(void *ud)
{
    ((struct client *)ud)->done = true;
}

static void on_resent(void *ud, uint64_t sent_ns, uint64_t now_ns)
{
    (void)sent_ns, (void)now_ns;
    ((struct client *)ud)->resent++;
}

static const struct tcalls calls = {.resent = on_resent, .done = on_done};

static void set_text(struct buf *b, const char *s, bool nul)
{
    b->len = 0;
    buf_append(b, s, strlen(s) + nul);
}

/* One request through the table as tide.http makes it; false if it did not start. */
static bool fetch(struct client *c, const char *method, enum tmethod kind, const char *url,
                  const char *headers, const char *body)
{
    struct treq *q = &c->q;
    set_text(&q->url, url, true);
    if (c->tp->set_url(c->x, q) != TERR_NONE)
        return false;
    turl_parse(q->url.data, q->url.len - 1, &q->parts);
    set_text(&q->headers, headers, false);
    q->method = method;
    q->kind = kind;
    q->idempotent = kind != TM_POST;
    q->has_body = body != NULL;
    q->body = body ? body : "";
    q->body_len = body ? strlen(body) : 0;
    q->timeout_ms = 5000;
    if (!q->max_body)
        q->max_body = 1 << 20;
    if (c->tp->prepare(c->x, q) != TERR_NONE || !c->tp->start(c->x, c->shard, &c->res))
        return false;
    c->done = false;
    loop_run_until(c->loop, &c->done);
    return true;
}

static bool has(const struct buf *b, const char *s)
{
    return b->len && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

static bool exported(const struct transport_ops *tp, struct tjar *j, const char *text)
{
    struct buf b = {0};
    bool ok = tp->jar_export(j, &b) && buf_append(&b, "", 1) && strstr(b.data, text) != NULL;
    buf_free(&b);
    return ok;
}

static size_t count(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* A jar: lines in and out, its cookies on requests, and a request that
 * carries its own Cookie header (own_cookies) getting none of the jar's
 * while the jar still keeps what its response set. */
static void check_jar(const struct transport_ops *tp, struct client *c, unsigned port, const char *last)
{
    char url[128];
    struct tjar *j = tp->jar_new(NULL);
    if (!CHECK(j))
        return;
    CHECK(tp->jar_import(j, "127.0.0.1\tFALSE\t/\tFALSE\t0\tjar\t1"));
    CHECK(exported(tp, j, "127.0.0.1\tFALSE\t/\tFALSE\t0\tjar\t1\n"));
    c->q.jar = j;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hello", port);
    CHECK(fetch(c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL));
    if (!CHECK(strstr(last, "\r\nCookie: jar=1\r\n")))
        fprintf(stderr, "  %s: jar cookie\n%s", tp->name, last);

    c->q.own_cookies = true;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/setcookie", port);
    CHECK(fetch(c, "GET", TM_GET, url, "User-Agent: unit\r\nCookie: mine=2\r\n", NULL));
    if (!CHECK(count(last, "Cookie:") == 1 && strstr(last, "\r\nCookie: mine=2\r\n")))
        fprintf(stderr, "  %s: own cookies sent\n%s", tp->name, last);
    CHECK(exported(tp, j, "\ts\t1\n") && exported(tp, j, "\tjar\t1\n"));
    c->q.own_cookies = false;

    snprintf(url, sizeof url, "http://127.0.0.1:%u/hello", port);
    CHECK(fetch(c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL));
    CHECK(count(last, "Cookie:") == 1 && strstr(last, "s=1") && strstr(last, "jar=1"));
    tp->jar_clear(j);
    CHECK(!exported(tp, j, "jar"));
    CHECK(fetch(c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL) && !strstr(last, "Cookie:"));
    tp->jar_leave(c->x, j);
    tp->jar_free(j);
    c->q.jar = NULL;
}

static void check_transport(const struct transport_ops *tp)
{
    struct server srv = {0};
    if (!CHECK(server_start(&srv)))
        return;
    struct client c = {.tp = tp, .loop = loop_new()};
    c.shard = shard_new(c.loop);
    c.x = tp->xfer_new(c.loop, &calls, &c, 0);
    if (!CHECK(c.loop && c.shard && c.x))
        return;
    char url[128];

    snprintf(url, sizeof url, "http://127.0.0.1:%u/hello", srv.port);
    CHECK(fetch(&c, "GET", TM_GET, url, "User-Agent: unit\r\nX-One: 1\r\n", NULL));
    CHECK(c.res.err == TERR_NONE && c.res.status == 201);
    CHECK(has(&c.res.head, "X-Test: yes") && c.res.body.len == 5 && memcmp(c.res.body.data, "hello", 5) == 0);
    CHECK(strstr(srv.last, "GET /hello HTTP/1.1\r\n") && strstr(srv.last, "X-One: 1\r\n"));
    CHECK(c.res.bytes_sent > 30 && c.res.bytes_received == c.res.head.len + 5);
    CHECK(c.res.t.total >= c.res.t.duration && !c.res.truncated);

    /* the same user, other headers and a body: what went out follows the request */
    CHECK(fetch(&c, "POST", TM_POST, url, "User-Agent: unit\r\nX-Two: 2\r\n", "a=1"));
    CHECK(c.res.err == TERR_NONE && c.res.status == 201);
    CHECK(strstr(srv.last, "POST /hello") && strstr(srv.last, "X-Two: 2\r\n") && !strstr(srv.last, "X-One"));
    CHECK(strstr(srv.last, "\r\n\r\na=1") && !strstr(srv.last, "Expect"));
    CHECK(c.res.t.connect == 0); /* the kept-alive connection */

    CHECK(fetch(&c, "PATCH", TM_OTHER, url, "User-Agent: unit\r\n", NULL));
    CHECK(strstr(srv.last, "PATCH /hello") && strstr(srv.last, "User-Agent: unit\r\n"));

    /* a body over max_body is read to its end and kept up to it */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/big", srv.port);
    c.q.max_body = 100;
    CHECK(fetch(&c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL));
    CHECK(c.res.err == TERR_NONE && c.res.truncated && c.res.body.len == 100);
    CHECK(c.res.bytes_received == c.res.head.len + 4096);
    c.q.max_body = 0;

    snprintf(url, sizeof url, "http://127.0.0.1:%u/cut", srv.port);
    CHECK(fetch(&c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL));
    if (!CHECK(c.res.err == TERR_TRUNCATED))
        fprintf(stderr, "  %s: cut body gave %s\n", tp->name, terr_name(c.res.err, c.res.detail));

    snprintf(url, sizeof url, "http://127.0.0.1:%u/", closed_port());
    CHECK(fetch(&c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL));
    if (!CHECK(c.res.err == TERR_REFUSED && c.res.status == 0))
        fprintf(stderr, "  %s: closed port gave %s\n", tp->name, terr_name(c.res.err, c.res.detail));

    /* one hop: a redirect comes back with its Location made absolute, not followed */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/redirect", srv.port);
    CHECK(fetch(&c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL));
    CHECK(c.res.err == TERR_NONE && c.res.status == 302 && strstr(srv.last, "GET /redirect "));
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hello?x=1", srv.port);
    if (!CHECK(c.res.location && strcmp(c.res.location, url) == 0))
        fprintf(stderr, "  %s: location %s\n", tp->name, c.res.location ? c.res.location : "(none)");
    CHECK(fetch(&c, "GET", TM_GET, url, "User-Agent: unit\r\n", NULL) && c.res.location == NULL);

    check_jar(tp, &c, srv.port, srv.last);

    set_text(&c.q.url, "http://exa mple.com/", true);
    CHECK(tp->set_url(c.x, &c.q) == TERR_BAD_URL);
    CHECK(c.resent == 0 && !tp->busy(c.x));

    tp->xfer_free(c.x);
    shard_free(c.shard);
    loop_free(c.loop);
    buf_free(&c.q.url);
    buf_free(&c.q.headers);
    buf_free(&c.res.head);
    buf_free(&c.res.body);
    server_stop(&srv);
}

int main(void)
{
    test_url_parts();
    test_error_names();
    check_transport(&curl_transport);
    return check_report("transport");
}
