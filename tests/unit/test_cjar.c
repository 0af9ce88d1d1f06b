/* Unit tests for src/cjar.c: each rule of the jar at a fixed time, then the
 * same Set-Cookie headers through libcurl itself (a loopback server answers
 * libcurl's requests with them) and through cjar, comparing the Cookie
 * header libcurl sent with cjar_header's and libcurl's jar with cjar's, and
 * carrying each jar into the other in Netscape lines. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "loopback.h"
#include "cjar.h"

#define NOW 1700000000

static struct turl parts(const char *url)
{
    struct turl u;
    if (!CHECK(turl_parse(url, strlen(url), &u)))
        u = (struct turl){0};
    return u;
}

static void set(struct cjar *j, const char *url, const char *value)
{
    struct turl u = parts(url);
    CHECK(cjar_store(j, value, strlen(value), url, &u, NOW));
}

static bool header_is(struct cjar *j, const char *url, const char *want)
{
    struct turl u = parts(url);
    struct buf b = {0};
    bool ok = cjar_header(j, &b, url, &u, NOW) && b.len == strlen(want) &&
              (b.len == 0 || memcmp(b.data, want, b.len) == 0);
    if (!ok)
        fprintf(stderr, "  %s: Cookie [%.*s], want [%s]\n", url, (int)b.len, b.data ? b.data : "", want);
    buf_free(&b);
    return ok;
}

static bool export_is(const struct cjar *j, const char *want)
{
    struct buf b = {0};
    bool ok = cjar_export(j, &b) && b.len == strlen(want) && (b.len == 0 || memcmp(b.data, want, b.len) == 0);
    if (!ok)
        fprintf(stderr, "  export [%.*s], want [%s]\n", (int)b.len, b.data ? b.data : "", want);
    buf_free(&b);
    return ok;
}

/* ---------------- each rule ---------------- */

static void test_defaults(void)
{
    struct cjar *j = cjar_new();
    CHECK(cjar_empty(j) && header_is(j, "http://example.com/", ""));
    set(j, "http://example.com/a/b/c?x=/y/", "sid=abc");
    CHECK(!cjar_empty(j));
    CHECK(export_is(j, "example.com\tFALSE\t/a/b/\tFALSE\t0\tsid\tabc\n"));
    CHECK(header_is(j, "http://example.com/a/b/x", "sid=abc"));
    CHECK(header_is(j, "http://EXAMPLE.com/a/b", "sid=abc"));        /* matched without the trailing '/' */
    CHECK(header_is(j, "http://example.com/a/bx", ""));
    CHECK(header_is(j, "http://example.com/a", ""));
    CHECK(header_is(j, "http://www.example.com/a/b/", ""));           /* host-only */
    set(j, "http://example.com", "root=1");
    set(j, "http://example.com/file.html", "root=2");                 /* same path "/": replaced */
    CHECK(export_is(j, "example.com\tFALSE\t/a/b/\tFALSE\t0\tsid\tabc\nexample.com\tFALSE\t/\tFALSE\t0\troot\t2\n"));
    cjar_clear(j);
    CHECK(cjar_empty(j) && export_is(j, ""));
    cjar_free(j);
}

static void test_values(void)
{
    struct cjar *j = cjar_new();
    set(j, "http://h.test/", "q=\"a b\"");
    set(j, "http://h.test/", "  sp  =  v v  ; Path=/");
    set(j, "http://h.test/", "e=");
    set(j, "http://h.test/", "=x; named=no");                          /* a pair without a name is skipped */
    set(j, "http://h.test/", "novalue");                               /* refused */
    set(j, "http://h.test/", "tab=a\tb");                              /* refused */
    set(j, "http://h.test/", "ctl=a\x01z");                            /* refused */
    set(j, "http://h.test/", "ok=1; Path=/; Foo=bar\tbaz");           /* a tab anywhere: refused */
    CHECK(header_is(j, "http://h.test/", "named=no; sp=v v; e=; q=\"a b\""));  /* longer names, newer first */
    cjar_free(j);
}

static void test_expiry(void)
{
    struct cjar *j = cjar_new();
    set(j, "http://h.test/", "a=1; Expires=Fri, 01 Jan 2038 00:00:00 GMT");
    set(j, "http://h.test/", "b=2; Max-Age=3600; Expires=Fri, 01 Jan 2038 00:00:00 GMT");
    set(j, "http://h.test/", "c=3; Expires=Fri, 01 Jan 2038 00:00:00 GMT; Max-Age=60");
    set(j, "http://h.test/", "d=4; Expires=soon");                     /* unreadable: a session cookie */
    set(j, "http://h.test/", "f=6; Max-Age=99999999999999999999");    /* too large: for ever */
    set(j, "http://h.test/", "g=7; Max-Age=\"120\"");
    CHECK(export_is(j, "h.test\tFALSE\t/\tFALSE\t2145916800\ta\t1\n"
                       "h.test\tFALSE\t/\tFALSE\t1700003600\tb\t2\n"
                       "h.test\tFALSE\t/\tFALSE\t1700000060\tc\t3\n"
                       "h.test\tFALSE\t/\tFALSE\t0\td\t4\n"
                       "h.test\tFALSE\t/\tFALSE\t9223372036854775807\tf\t6\n"
                       "h.test\tFALSE\t/\tFALSE\t1700000120\tg\t7\n"));
    set(j, "http://h.test/", "a=; Max-Age=0");
    set(j, "http://h.test/", "b=; Max-Age=-1");
    set(j, "http://h.test/", "c=; Max-Age=soon");                      /* not a number: expired */
    set(j, "http://h.test/", "d=; Expires=Wed, 09 Jun 2021 10:18:14 GMT");
    set(j, "http://h.test/", "x=1; Expires=Wed, 09 Jun 2021 10:18:14 GMT"); /* born expired: not kept */
    CHECK(header_is(j, "http://h.test/", "g=7; f=6"));
    struct turl u = parts("http://h.test/");
    struct buf b = {0};
    CHECK(cjar_header(j, &b, "http://h.test/", &u, 1700000121) && b.len == 3); /* g has expired since */
    buf_free(&b);
    cjar_free(j);
}

static void test_domains(void)
{
    struct cjar *j = cjar_new();
    const char *url = "http://www.example.com/";
    set(j, url, "d1=1; Domain=example.com");
    set(j, url, "d2=2; Domain=.example.com");
    set(j, url, "d3=3; Domain=www.example.com");
    set(j, url, "d4=4; Domain=other.com");                              /* does not cover the host */
    set(j, url, "d5=5; Domain=com");                                    /* a public suffix */
    set(j, url, "d6=6; Domain=ample.com");
    set(j, url, "d7=7; Domain=example.com; Domain=other.com");          /* any bad one refuses */
    CHECK(export_is(j, ".example.com\tTRUE\t/\tFALSE\t0\td1\t1\n.example.com\tTRUE\t/\tFALSE\t0\td2\t2\n"
                       ".www.example.com\tTRUE\t/\tFALSE\t0\td3\t3\n"));
    CHECK(header_is(j, "http://a.b.example.com/", "d2=2; d1=1"));
    CHECK(header_is(j, "http://example.com/", "d2=2; d1=1"));
    CHECK(header_is(j, "http://xexample.com/", ""));
    CHECK(header_is(j, "http://www.example.com/", "d3=3; d2=2; d1=1")); /* longer domains first */
    cjar_clear(j);
    set(j, "http://127.0.0.1:8080/", "i1=1; Domain=127.0.0.1");        /* an address: host-only */
    set(j, "http://127.0.0.1:8080/", "i2=2; Domain=0.0.1");
    set(j, "http://[::1]/", "i3=3");
    CHECK(export_is(j, "127.0.0.1\tFALSE\t/\tFALSE\t0\ti1\t1\n::1\tFALSE\t/\tFALSE\t0\ti3\t3\n"));
    CHECK(header_is(j, "http://127.0.0.1/", "i1=1") && header_is(j, "http://[::1]:99/", "i3=3"));
    cjar_free(j);
}

static void test_paths(void)
{
    struct cjar *j = cjar_new();
    const char *url = "http://h.test/x/y";
    set(j, url, "p1=1; Path=/api");
    set(j, url, "p2=2; Path=/api/");
    set(j, url, "p3=3; Path=api");                                      /* not from '/': matched as "/" */
    set(j, url, "p4=4; Path=\"/q\"");
    set(j, url, "p5=5; Path=");
    CHECK(export_is(j, "h.test\tFALSE\t/api\tFALSE\t0\tp1\t1\nh.test\tFALSE\t/api/\tFALSE\t0\tp2\t2\n"
                       "h.test\tFALSE\tapi\tFALSE\t0\tp3\t3\nh.test\tFALSE\t\"/q\"\tFALSE\t0\tp4\t4\n"
                       "h.test\tFALSE\t\tFALSE\t0\tp5\t5\n"));
    CHECK(header_is(j, "http://h.test/api", "p2=2; p1=1; p3=3; p5=5"));
    CHECK(header_is(j, "http://h.test/api/v?a", "p2=2; p1=1; p3=3; p5=5"));
    CHECK(header_is(j, "http://h.test/apix", "p3=3; p5=5"));
    CHECK(header_is(j, "http://h.test/API", "p3=3; p5=5"));             /* paths match case-sensitively */
    CHECK(header_is(j, "http://h.test/q/", "p4=4; p3=3; p5=5"));
    cjar_clear(j);
    CHECK(cjar_import(j, "h.test\tFALSE\t\tFALSE\t0\tp5\t5", NOW) == CJAR_OK); /* as libcurl writes Path= */
    CHECK(export_is(j, "h.test\tFALSE\t\tFALSE\t0\tp5\t5\n") && header_is(j, "http://h.test/x", "p5=5"));
    cjar_free(j);
}

static void test_secure_httponly(void)
{
    struct cjar *j = cjar_new();
    set(j, "http://example.com/", "s1=1; Secure");                     /* refused over plain http */
    set(j, "http://example.com/", "s2=2; Secure=yes");                 /* not the flag: a plain cookie */
    set(j, "https://example.com/", "s3=3; secure");
    set(j, "http://localhost:8080/", "s4=4; Secure");
    set(j, "http://127.0.0.1/", "s5=5; Secure; HttpOnly; SameSite=Strict");
    set(j, "http://[::1]/", "s6=6; secure=; httponly=");
    CHECK(export_is(j, "example.com\tFALSE\t/\tFALSE\t0\ts2\t2\nexample.com\tFALSE\t/\tTRUE\t0\ts3\t3\n"
                       "localhost\tFALSE\t/\tTRUE\t0\ts4\t4\n#HttpOnly_127.0.0.1\tFALSE\t/\tTRUE\t0\ts5\t5\n"
                       "#HttpOnly_::1\tFALSE\t/\tTRUE\t0\ts6\t6\n"));
    CHECK(header_is(j, "http://example.com/", "s2=2"));
    CHECK(header_is(j, "https://example.com/", "s3=3; s2=2"));
    CHECK(header_is(j, "http://LOCALHOST/", "s4=4"));
    /* over plain http, a non-secure cookie may not overlay a secure one */
    set(j, "http://example.com/", "s3=plain");
    set(j, "http://example.com/", "s3=plain; Path=/sub");
    CHECK(header_is(j, "https://example.com/sub", "s3=3; s2=2"));
    set(j, "https://example.com/", "s3=new");
    CHECK(header_is(j, "https://example.com/", "s3=new; s2=2"));
    cjar_free(j);
}

static void test_prefixes(void)
{
    struct cjar *j = cjar_new();
    const char *url = "http://localhost/x/y";
    set(j, url, "__Secure-a=1");                                        /* not secure */
    set(j, url, "__Secure-b=2; Secure");
    set(j, url, "__Host-c=3; Secure; Path=/");
    set(j, url, "__Host-d=4; Secure; Path=/; Domain=localhost");        /* a domain */
    set(j, url, "__Host-e=5; Secure");                                  /* path /x/ */
    set(j, url, "__host-f=6; Secure; Path=/");
    CHECK(header_is(j, "http://localhost/x/", "__Secure-b=2; __host-f=6; __Host-c=3"));
    CHECK(cjar_import(j, "localhost\tFALSE\t/\tFALSE\t0\t__Secure-g\t7", NOW) == CJAR_REFUSED);
    cjar_free(j);
}

static void test_replacing(void)
{
    struct cjar *j = cjar_new();
    set(j, "http://h.test/", "r=1");
    set(j, "http://h.test/", "other=0");
    set(j, "http://h.test/", "R=2; HttpOnly");                          /* names compare case-insensitively */
    CHECK(export_is(j, "#HttpOnly_h.test\tFALSE\t/\tFALSE\t0\tR\t2\nh.test\tFALSE\t/\tFALSE\t0\tother\t0\n"));
    set(j, "http://h.test/", "r=3; Path=/x");                           /* another path: another cookie */
    set(j, "http://h.test/", "r=4; Domain=h.test");                     /* a domain cookie: another one */
    CHECK(header_is(j, "http://h.test/x", "r=3; other=0; r=4; R=2"));
    set(j, "http://h.test/", "r=5; Path=/x/");                          /* /x/ is /x */
    CHECK(header_is(j, "http://h.test/x", "r=5; other=0; r=4; R=2"));
    cjar_free(j);
}

static void test_order(void)
{
    struct cjar *j = cjar_new();
    set(j, "http://a.example.com/", "zz=1; Domain=example.com");
    set(j, "http://a.example.com/", "y=2");
    set(j, "http://a.example.com/", "x=3; Path=/p");
    set(j, "http://a.example.com/", "w=4");
    set(j, "http://a.example.com/", "vv=5");
    /* longer paths, then longer domains, longer names, newer first */
    CHECK(header_is(j, "http://a.example.com/p", "x=3; vv=5; w=4; y=2; zz=1"));
    cjar_free(j);
}

static void test_limits(void)
{
    static char v[9000];
    struct cjar *j = cjar_new();
    /* name + value up to 4096 bytes, each under 4095 */
    memcpy(v, "ab=", 3);
    memset(v + 3, 'v', 4094);
    struct turl u = parts("http://h.test/");
    CHECK(cjar_store(j, v, 3 + 4094, "http://h.test/", &u, NOW) && !cjar_empty(j));
    cjar_clear(j);
    memset(v + 3, 'v', 4095);
    CHECK(cjar_store(j, v, 3 + 4095, "http://h.test/", &u, NOW) && cjar_empty(j));
    memcpy(v, "abc=", 4);
    memset(v + 4, 'v', 4094);
    CHECK(cjar_store(j, v, 4 + 4094, "http://h.test/", &u, NOW) && cjar_empty(j));
    /* the whole header: 5000 bytes with "Set-Cookie:"'s space and CRLF */
    memset(v, 'x', sizeof v);
    memcpy(v, "a=b; c=", 7);
    memcpy(v + 2500, "; d=", 4);
    CHECK(cjar_store(j, v, 4997, "http://h.test/", &u, NOW) && !cjar_empty(j));
    cjar_clear(j);
    CHECK(cjar_store(j, v, 4998, "http://h.test/", &u, NOW) && cjar_empty(j));
    /* 50 Set-Cookie headers a response */
    unsigned taken = 0;
    char pair[16];
    for (int i = 0; i < 60; i++) {
        int n = snprintf(pair, sizeof pair, "c%d=%d", i, i);
        CHECK(cjar_store_counted(j, pair, (size_t)n, "http://h.test/", &u, NOW, &taken));
    }
    struct buf b = {0};
    CHECK(cjar_export(j, &b));
    size_t lines = 0;
    for (size_t i = 0; i < b.len; i++)
        lines += b.data[i] == '\n';
    CHECK(lines == CJAR_MAX_SET && taken == CJAR_MAX_SET);
    /* 150 cookies a request at most */
    for (int i = 60; i < 200; i++) {
        int n = snprintf(pair, sizeof pair, "c%d=%d", i, i);
        CHECK(cjar_store(j, pair, (size_t)n, "http://h.test/", &u, NOW));
    }
    b.len = 0;
    CHECK(cjar_header(j, &b, "http://h.test/", &u, NOW));
    size_t sent = b.len > 0;
    for (size_t i = 0; i < b.len; i++)
        sent += b.data[i] == ';';
    CHECK(sent == 150);
    /* none that takes the head past 8190 bytes: out's length counts */
    b.len = 0;
    memset(v, 'h', 8100);
    CHECK(buf_append(&b, v, 8100) && cjar_header(j, &b, "http://h.test/", &u, NOW));
    CHECK(b.len > 8100 && b.len < 8190);
    buf_free(&b);
    cjar_free(j);
}

static void test_import(void)
{
    struct cjar *j = cjar_new();
    CHECK(cjar_import(j, "#HttpOnly_.example.com\tTRUE\t/api\tTRUE\t2000000000\tsid\tabc", NOW) == CJAR_OK);
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\t0\tempty\t", NOW) == CJAR_OK);
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\t0\tnotab", NOW) == CJAR_OK);
    CHECK(cjar_import(j, "h.test\tFALSE\tFALSE\t0\tnopath\tv\r\n", NOW) == CJAR_OK);
    CHECK(cjar_import(j, "# Netscape HTTP Cookie File", NOW) == CJAR_REFUSED);
    CHECK(cjar_import(j, "", NOW) == CJAR_REFUSED);
    CHECK(cjar_import(j, "h.test\tFALSE\t/", NOW) == CJAR_REFUSED);
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\tsoon\tn\tv", NOW) == CJAR_REFUSED);
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\t-1\tn\tv", NOW) == CJAR_REFUSED);
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\t0\tn\tv\textra", NOW) == CJAR_REFUSED);
    CHECK(export_is(j, "#HttpOnly_.example.com\tTRUE\t/api\tTRUE\t2000000000\tsid\tabc\n"
                       "h.test\tFALSE\t/\tFALSE\t0\tempty\t\nh.test\tFALSE\t/\tFALSE\t0\tnotab\t\n"
                       "h.test\tFALSE\t/\tFALSE\t0\tnopath\tv\n"));
    CHECK(header_is(j, "https://www.example.com/api/x", "sid=abc"));
    CHECK(header_is(j, "http://www.example.com/api/x", ""));          /* secure */
    CHECK(cjar_import(j, ".example.com\tTRUE\t/api\tFALSE\t2000000001\tSID\tnew", NOW) == CJAR_OK);
    CHECK(header_is(j, "http://www.example.com/api", "SID=new"));
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\t1\tempty\t", NOW) == CJAR_OK); /* in the past: removed */
    CHECK(cjar_import(j, "h.test\tFALSE\t/\tFALSE\t1\tnever\tseen", NOW) == CJAR_OK);
    CHECK(header_is(j, "http://h.test/", "nopath=v; notab="));
    cjar_free(j);
}

/* What a Cookie header costs a request: an empty jar, and a user's ten cookies. */
static void measure_header(void)
{
    struct cjar *j = cjar_new();
    const char *url = "http://api.example.com/v1/items?page=2";
    struct turl u = parts(url);
    struct buf b = {0};
    for (int round = 0; round < 2; round++) {
        struct timespec t0, t1;
        const int n = 200000;
        bool ok = true;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < n; i++) {
            b.len = 0;
            ok &= cjar_header(j, &b, url, &u, NOW);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* what was timed gave the right header: none, then the five cookies of /v1 */
        CHECK(ok);
        if (round == 0)
            CHECK(b.len == 0);
        else
            CHECK(b.len == strlen("cookie1=value1; cookie3=value3; cookie5=value5; cookie7=value7; cookie9=value9") &&
                  memmem(b.data, b.len, "cookie9=value9", 14) && !memmem(b.data, b.len, "cookie0", 7));
        double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n;
        printf("cjar_header with %zu cookies: %.0f ns\n", round ? (size_t)10 : (size_t)0, ns);
        for (int c = 0; c < 10 && round == 0; c++) {
            char pair[32];
            int len = snprintf(pair, sizeof pair, "cookie%d=value%d; Path=/v%d", c, c, c % 2);
            CHECK(cjar_store(j, pair, (size_t)len, url, &u, NOW));
        }
    }
    buf_free(&b);
    cjar_free(j);
}

/* ---------------- against libcurl: a loopback server ---------------- */

struct server {
    int fd;
    unsigned port;
    pthread_t tid;
    pthread_mutex_t lock;
    char *response;             /* the next responses' head */
    char head[1 << 16];         /* the last request's head */
};

static void *serve(void *ud)
{
    struct server *s = ud;
    int c;
    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        char in[sizeof s->head];
        size_t have = 0;
        ssize_t n;
        while (have < sizeof in - 1 && (n = read(c, in + have, sizeof in - 1 - have)) > 0) {
            have += (size_t)n;
            in[have] = '\0';
            if (strstr(in, "\r\n\r\n"))
                break;
        }
        pthread_mutex_lock(&s->lock);
        memcpy(s->head, in, have);
        s->head[have] = '\0';
        const char *out = s->response ? s->response : "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        size_t left = strlen(out);
        while (left > 0 && (n = write(c, out, left)) > 0)
            out += n, left -= (size_t)n;
        pthread_mutex_unlock(&s->lock);
        close(c);
    }
    return NULL;
}

static bool server_start(struct server *s)
{
    pthread_mutex_init(&s->lock, NULL);
    return loopback_listen(&s->fd, &s->port) && pthread_create(&s->tid, NULL, serve, s) == 0;
}

static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->tid, NULL);
    free(s->response);
}

/* The next responses set cookies (NULL-terminated). */
static void server_sets(struct server *s, const char *const *cookies)
{
    struct buf b = {0};
    const char *top = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n";
    buf_append(&b, top, strlen(top));
    for (; cookies && *cookies; cookies++)
        buf_append(&b, "Set-Cookie: ", 12), buf_append(&b, *cookies, strlen(*cookies)), buf_append(&b, "\r\n", 2);
    buf_append(&b, "\r\n", 3);
    pthread_mutex_lock(&s->lock);
    free(s->response);
    s->response = b.data;
    pthread_mutex_unlock(&s->lock);
}

/* Whatever the URL's host, libcurl talks to 127.0.0.1 alone. */
static curl_socket_t loopback_only(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)ud;
    (void)purpose;
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->addr;
    if (a->family != AF_INET || in->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype, a->protocol);
}

static CURL *easy_for(const struct server *s, struct curl_slist **connect_to)
{
    char map[64];
    snprintf(map, sizeof map, "::127.0.0.1:%u", s->port);
    *connect_to = curl_slist_append(NULL, map);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, *connect_to);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, loopback_only);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    return e;
}

/* ---------------- comparing jars ---------------- */

struct lines {
    char **v;
    size_t n;
};

/* The line without its expiry: what lines are sorted and compared by. */
static void line_key(const char *line, char *key, size_t cap, long long *expires)
{
    const char *f = line;
    for (int i = 0; i < 4 && f; i++)
        f = strchr(f, '\t') ? strchr(f, '\t') + 1 : NULL;
    *expires = f ? strtoll(f, NULL, 10) : -1;
    const char *after = f ? strchr(f, '\t') : NULL;
    snprintf(key, cap, "%.*s|%s", f ? (int)(f - line) : (int)strlen(line), line, after ? after : "");
}

static int by_key(const void *a, const void *b)
{
    char ka[8192], kb[8192];
    long long ea, eb;
    line_key(*(char *const *)a, ka, sizeof ka, &ea);
    line_key(*(char *const *)b, kb, sizeof kb, &eb);
    return strcmp(ka, kb);
}

static void lines_add(struct lines *l, const char *s, size_t n)
{
    l->v = realloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n] = strndup(s, n);
    l->n++;
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (struct lines){0};
}

/* libcurl's jar, without what expired (it keeps a deleted cookie until its next look). */
static struct lines curl_lines(CURL *e, int64_t now)
{
    struct lines l = {0};
    struct curl_slist *list = NULL;
    CHECK(curl_easy_getinfo(e, CURLINFO_COOKIELIST, &list) == CURLE_OK);
    for (struct curl_slist *c = list; c; c = c->next) {
        char key[8192];
        long long ex;
        line_key(c->data, key, sizeof key, &ex);
        if (ex == 0 || ex >= now)
            lines_add(&l, c->data, strlen(c->data));
    }
    curl_slist_free_all(list);
    qsort(l.v, l.n, sizeof *l.v, by_key);
    return l;
}

static struct lines cjar_lines(const struct cjar *j)
{
    struct lines l = {0};
    struct buf b = {0};
    CHECK(cjar_export(j, &b));
    for (size_t at = 0; at < b.len;) {
        const char *nl = memchr(b.data + at, '\n', b.len - at);
        if (!CHECK(nl != NULL))
            break;
        lines_add(&l, b.data + at, (size_t)(nl - b.data - at));
        at = (size_t)(nl - b.data) + 1;
    }
    buf_free(&b);
    qsort(l.v, l.n, sizeof *l.v, by_key);
    return l;
}

/* The same cookies; expiries may differ by the second libcurl read its clock in. */
static bool same_lines(const struct lines *a, const struct lines *b, long long slack, const char *what)
{
    bool ok = a->n == b->n;
    for (size_t i = 0; ok && i < a->n; i++) {
        char ka[8192], kb[8192];
        long long ea, eb;
        line_key(a->v[i], ka, sizeof ka, &ea);
        line_key(b->v[i], kb, sizeof kb, &eb);
        ok = strcmp(ka, kb) == 0 && (ea == eb || (ea > 0 && eb > 0 && llabs(ea - eb) <= slack));
    }
    if (!CHECK(ok)) {
        fprintf(stderr, "  %s: jars differ\n", what);
        for (size_t i = 0; i < a->n; i++)
            fprintf(stderr, "    libcurl: %s\n", a->v[i]);
        for (size_t i = 0; i < b->n; i++)
            fprintf(stderr, "    cjar:    %s\n", b->v[i]);
    }
    return ok;
}

/* ---------------- the differential cases ---------------- */

#define SET(...) ((const char *const[]){__VA_ARGS__, NULL})

struct step {
    const char *url;            /* a request, its response setting set; NULL: import set as Netscape lines */
    const char *const *set;
};

struct dcase {
    const char *what;
    struct step steps[8];       /* up to one with neither */
    const char *probe[8];       /* URLs asked afterwards, NULL-terminated */
    int kept;                   /* cookies libcurl keeps in the end, when not 0 (-1: none) */
};

static const struct dcase cases[] = {
    {"default domain and path",
     {{"http://example.com/a/b/c?x=/y/", SET("sid=abc")}, {"http://example.com/", SET("root=1")}},
     {"http://example.com/a/b/x", "http://example.com/a/b", "http://example.com/a/bx", "http://www.example.com/a/b/",
      "http://example.com/a"}, 2},
    {"values",
     {{"http://h.test/",
       SET("q=\"a b\"", "  sp  =  v v  ; Path=/", "e=", "=x; named=no", "novalue", "tab=a\tb", "ctl=a\x01z",
           "ok=1; Path=/; Foo=bar\tbaz", "n;=1", " lead=1")}},
     {"http://h.test/"}, 5},
    {"paths",
     {{"http://h.test/x/y",
       SET("p1=1; Path=/api", "p2=2; Path=/api/", "p3=3; Path=api", "p4=4; Path=\"/q\"", "p5=5; Path=",
           "p6=6; path=/API", "p7=7; Path=/api/v; Path=/b")}},
     {"http://h.test/api", "http://h.test/api/v?a", "http://h.test/apix", "http://h.test/API/x", "http://h.test/q/",
      "http://h.test/b/c", "http://h.test/x/"}, 7},
    {"domains",
     {{"http://www.example.com/",
       SET("d1=1; Domain=example.com", "d2=2; Domain=.example.com", "d3=3; Domain=www.example.com",
           "d4=4; Domain=other.com", "d5=5; Domain=com", "d6=6; Domain=ample.com",
           "d7=7; Domain=example.com; Domain=other.com", "d8=8; Domain=", "d9=9; Domain=.",
           "d10=10; Domain=EXAMPLE.com")}},
     {"http://a.b.example.com/", "http://example.com/", "http://xexample.com/", "http://www.example.com/",
      "http://other.com/"}, 5},
    {"a host in capitals",
     {{"http://WWW.Example.COM/", SET("c1=1; Domain=example.com", "c2=2", "c3=3; Domain=Example.COM")}},
     {"http://www.example.com/", "http://a.example.com/"}, 3},
    {"local names",
     {{"http://localhost/", SET("l1=1; Domain=localhost", "l2=2")},
      {"http://a.localhost/", SET("l3=3; Domain=localhost", "l4=4; Domain=a.localhost")},
      {"http://internal/", SET("l5=5", "l6=6; Domain=internal")}},
     {"http://localhost/", "http://a.localhost/", "http://b.a.localhost/", "http://internal/"}, 5},
    {"addresses",
     {{"http://127.0.0.1/", SET("i1=1; Domain=127.0.0.1", "i2=2; Domain=0.0.1", "i3=3", "i4=4; Domain=.127.0.0.1")},
      {"http://[::1]/", SET("i5=5", "i6=6; Domain=::1")}, {"http://10.0.0.1/", SET("i7=7; Secure")}},
     {"http://127.0.0.1/", "http://localhost/", "http://[::1]/x", "http://10.0.0.1/"}, 5},
    {"secure contexts",
     {{"http://example.com/", SET("s1=1; Secure", "s2=2; secure=", "s3=3; Secure=yes")},
      {"http://localhost/", SET("s4=4; Secure")},
      {"http://LocalHost/", SET("s5=5; Secure")},
      {"http://127.0.0.1/", SET("s6=6; Secure; HttpOnly")},
      {"http://[::1]/", SET("s7=7; Secure")},
      {"http://a.localhost/", SET("s8=8; Secure")}},
     {"http://example.com/", "http://localhost/", "http://127.0.0.1/", "http://[::1]/"}, 5},
    {"httponly and samesite",
     {{"http://h.test/",
       SET("h1=1; HttpOnly", "h2=2; httponly; SameSite=Strict", "h3=3; HttpOnly=1", "h4=4; SameSite=None")}},
     {"http://h.test/"}, 4},
    {"expiry",
     {{"http://h.test/",
       SET("e1=1; Expires=Fri, 01 Jan 2038 00:00:00 GMT", "e2=2; Max-Age=3600",
           "e3=3; Max-Age=100; Expires=Fri, 01 Jan 2038 00:00:00 GMT",
           "e4=4; Expires=Fri, 01 Jan 2038 00:00:00 GMT; Max-Age=60", "e5=5; Expires=garbage",
           "e6=6; Max-Age=abc", "e7=7; Expires=Thu, 01 Jan 1960 00:00:00 GMT", "e8=8; Max-Age=99999999999999999999",
           "e9=9; Max-Age=\"120\"", "e10=10; expires=Sunday, 06-Nov-2044 08:49:37 GMT", "e11=11; Max-Age=",
           "e12=12; Max-Age=+30", "e13=13; Max-Age=20x", "e14=14; Expires=Thu, 01 Jan 1970 00:00:00 GMT")}},
     {"http://h.test/"}, 11},
    {"replacing",
     {{"http://h.test/", SET("r=1", "other=0", "R=2; HttpOnly")},
      {"http://h.test/", SET("r=3; Path=/x", "r=4; Domain=h.test", "other=5; Path=/")},
      {"http://h.test/y", SET("r=6; Path=/x/", "other=7; Domain=.h.test")}},
     {"http://h.test/x", "http://h.test/", "http://a.h.test/"}, 5},
    {"deleting",
     {{"http://a.example.com/", SET("k=1", "m=2; Domain=example.com", "n=3", "o=4", "p=5; Path=/p")},
      {"http://a.example.com/",
       SET("k=; Max-Age=0", "m=; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:01 GMT", "n=; Max-Age=-5",
           "o=; Domain=example.com; Max-Age=0", "p=; Max-Age=0")}},
     {"http://a.example.com/", "http://a.example.com/p"}, 2},
    {"order",
     {{"http://a.example.com/", SET("zz=1; Domain=example.com", "y=2", "x=3; Path=/p", "w=4", "vv=5")},
      {"http://a.example.com/p/q", SET("u=6", "t=7; Path=/")}},
     {"http://a.example.com/p", "http://a.example.com/p/q/r"}, 7},
    {"prefixes",
     {{"http://localhost/x/y",
       SET("__Secure-a=1", "__Secure-b=2; Secure", "__Host-c=3; Secure; Path=/",
           "__Host-d=4; Secure; Path=/; Domain=localhost", "__Host-e=5; Secure", "__host-f=6; Secure; Path=/",
           "__SECURE-g=7; secure", "__Host-h=8; Path=/")}},
     {"http://localhost/x/"}, 4},
    {"a secure cookie over plain http",
     {{NULL, SET("example.com\tFALSE\t/\tTRUE\t0\ts\t1", ".example.com\tTRUE\t/login\tTRUE\t0\tt\t1")},
      {"http://example.com/", SET("s=2", "s=3; Path=/sub", "u=4", "t=5; Domain=example.com; Path=/login/en",
                                  "t=6; Domain=example.com; Path=/loginhelp", "t=7; Path=/login")}},
     {"http://example.com/", "http://example.com/loginhelp", "http://example.com/login/en"}, 3},
    {"imported lines",
     {{NULL, SET("#HttpOnly_.example.com\tTRUE\t/api\tTRUE\t2000000000\tsid\tabc",
                 "h.test\tFALSE\t/\tFALSE\t0\tempty\t",
                 "h.test\tFALSE\t/\tFALSE\t0\tnotab", "h.test\tFALSE\tFALSE\t0\tnopath\tv",
                 "# Netscape HTTP Cookie File", "h.test\tFALSE\t/\tFALSE\tsoon\tn\tv",
                 "h.test\tFALSE\t/\tFALSE\t0\tn\tv\textra", ".h.test\tTRUE\t/\tFALSE\t0\tEMPTY\tx",
                 "h.test\tFALSE\t/\tFALSE\t1\tgone\tv", "localhost\tFALSE\t/\tFALSE\t0\t__Host-x\tv")},
      {"http://h.test/", SET("empty=set")}},
     {"http://h.test/", "http://www.example.com/api/x"}, 5},
};

/* One request through libcurl, and the Cookie header cjar gives for it. */
static void request(struct server *s, CURL *e, struct cjar *j, const char *url, const char *const *cookies,
                    const char *what)
{
    struct turl u = parts(url);
    server_sets(s, cookies);
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (!CHECK(curl_easy_perform(e) == CURLE_OK)) {
        fprintf(stderr, "  %s: %s failed\n", what, url);
        return;
    }
    pthread_mutex_lock(&s->lock);
    const char *ck = strstr(s->head, "\r\nCookie: ");
    size_t at = ck ? (size_t)(ck - s->head) + 10 : strlen(s->head) - 2;
    struct buf b = {0};
    buf_append(&b, s->head, at);
    if (!ck)
        buf_append(&b, "Cookie: ", 8);   /* the head so far counts towards libcurl's cap */
    size_t mark = b.len;
    const char *sent = ck ? ck + 10 : "";
    size_t sent_len = ck ? strcspn(sent, "\r") : 0;
    bool same = cjar_header(j, &b, url, &u, time(NULL)) && b.len - mark == sent_len &&
                memcmp(b.data + mark, sent, sent_len) == 0;
    if (!CHECK(same))
        fprintf(stderr, "  %s: %s: libcurl sent [%.*s], cjar [%.*s]\n", what, url, (int)sent_len, sent,
                (int)(b.len - mark), b.data + mark);
    pthread_mutex_unlock(&s->lock);
    buf_free(&b);
    unsigned taken = 0;
    for (; cookies && *cookies; cookies++)
        CHECK(cjar_store_counted(j, *cookies, strlen(*cookies), url, &u, time(NULL), &taken));
}

/* lines into a fresh libcurl handle, and what it has then */
static struct lines curl_reads(const struct server *s, const struct lines *in)
{
    struct curl_slist *map;
    CURL *e = easy_for(s, &map);
    for (size_t i = 0; i < in->n; i++)
        curl_easy_setopt(e, CURLOPT_COOKIELIST, in->v[i]);
    struct lines out = curl_lines(e, time(NULL));
    curl_easy_cleanup(e);
    curl_slist_free_all(map);
    return out;
}

/* libcurl's jar into a fresh cjar and back: the same lines; cjar's into a
 * fresh libcurl handle: the same lines. */
static void round_trips(const struct server *s, const struct lines *from_curl, const struct lines *from_cjar,
                        const char *what)
{
    struct cjar *j = cjar_new();
    for (size_t i = 0; i < from_curl->n; i++)
        CHECK(cjar_import(j, from_curl->v[i], time(NULL)) == CJAR_OK);
    struct lines back = cjar_lines(j);
    if (!same_lines(from_curl, &back, 0, what))
        fprintf(stderr, "  (libcurl -> cjar_import -> cjar_export)\n");
    lines_free(&back);
    cjar_free(j);

    /* libcurl reads an empty path it wrote as "/": cjar's lines must come
     * over as libcurl's own do */
    struct lines in_curl = curl_reads(s, from_cjar), own = curl_reads(s, from_curl);
    if (!same_lines(&own, &in_curl, 0, what))
        fprintf(stderr, "  (cjar_export -> CURLOPT_COOKIELIST -> CURLINFO_COOKIELIST)\n");
    lines_free(&in_curl);
    lines_free(&own);
}

static void run_case(struct server *s, const struct dcase *c)
{
    struct curl_slist *map;
    CURL *e = easy_for(s, &map);
    struct cjar *j = cjar_new();
    for (const struct step *st = c->steps; st->url || st->set; st++) {
        if (st->url) {
            request(s, e, j, st->url, st->set, c->what);
            continue;
        }
        for (const char *const *l = st->set; *l; l++) {
            curl_easy_setopt(e, CURLOPT_COOKIELIST, *l);
            CHECK(cjar_import(j, *l, time(NULL)) != CJAR_NOMEM);
        }
    }
    for (const char *const *p = c->probe; *p; p++)
        request(s, e, j, *p, NULL, c->what);
    struct lines a = curl_lines(e, time(NULL)), b = cjar_lines(j);
    if (c->kept && !CHECK(a.n == (size_t)(c->kept < 0 ? 0 : c->kept)))
        fprintf(stderr, "  %s: libcurl keeps %zu cookies, the case expects %d\n", c->what, a.n, c->kept);
    if (same_lines(&a, &b, 2, c->what))
        round_trips(s, &a, &b, c->what);
    lines_free(&a);
    lines_free(&b);
    cjar_free(j);
    curl_easy_cleanup(e);
    curl_slist_free_all(map);
}

/* Cases made at run time: sizes at libcurl's limits, many cookies. */
static void run_sized_cases(struct server *s)
{
    static char big[8][6000];
    const char *fits[] = {big[0], big[1], big[2], big[3], big[4], NULL};
    memcpy(big[0], "ab=", 3), memset(big[0] + 3, 'v', 4094);           /* 4096 in all: kept */
    memcpy(big[1], "cd=", 3), memset(big[1] + 3, 'v', 4095);           /* value of 4095: refused */
    memcpy(big[2], "efg=", 4), memset(big[2] + 4, 'v', 4094);          /* 4097 in all: refused */
    memset(big[3], 'x', 4997), memcpy(big[3], "h=b; c=", 7), memcpy(big[3] + 2500, "; d=", 4);
    memset(big[4], 'x', 4998), memcpy(big[4], "i=b; c=", 7), memcpy(big[4] + 2500, "; d=", 4);
    struct dcase c = {.what = "sizes", .steps = {{"http://h.test/", fits}}, .probe = {"http://h.test/"}, .kept = 2};
    run_case(s, &c);

    static char many[200][32];
    static const char *sets[3][81];
    for (int i = 0; i < 200; i++)
        snprintf(many[i], sizeof many[i], "c%03d=%d", i, i);
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 80; i++)
            sets[r][i] = many[(r * 80 + i) % 200];
        sets[r][80] = NULL;
    }
    struct dcase m = {.what = "many cookies",
                      .steps = {{"http://h.test/", sets[0]}, {"http://h.test/", sets[1]}, {"http://h.test/", sets[2]}},
                      .probe = {"http://h.test/"}, .kept = 140}; /* 50 a response */
    run_case(s, &m);

    static char huge[3][4000];
    const char *hs[] = {huge[0], huge[1], huge[2], NULL};
    for (int i = 0; i < 3; i++) {
        memset(huge[i], 'a' + i, 3000);
        memcpy(huge[i], "h0=", 3);
        huge[i][1] = (char)('0' + i);
        huge[i][3000] = '\0';
    }
    struct dcase h = {.what = "a long Cookie header", .steps = {{"http://h.test/", hs}}, .probe = {"http://h.test/"},
                      .kept = 3};
    run_case(s, &h);
}

static void test_against_libcurl(void)
{
    struct server s = {0};
    if (!CHECK(server_start(&s)))
        return;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(&s, &cases[i]);
    run_sized_cases(&s);
    curl_global_cleanup();
    server_stop(&s);
}

int main(void)
{
    test_defaults();
    test_values();
    test_expiry();
    test_domains();
    test_paths();
    test_secure_httponly();
    test_prefixes();
    test_replacing();
    test_order();
    test_limits();
    test_import();
    test_against_libcurl();
    measure_header();
    return check_report("test_cjar");
}
