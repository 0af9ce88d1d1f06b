/* Unit tests for src/cookies.c: jar lines, RFC 6265 matching, the one
 * Cookie header, and the lines http.set_cookie makes. */
#include <string.h>

#include "check.h"
#include "cookies.h"

static struct turl parts(const char *url)
{
    struct turl u;
    if (!turl_parse(url, strlen(url), &u))
        u = (struct turl){0};
    return u;
}

static bool matches(const char *line, const char *url, int64_t now)
{
    struct jar_cookie c;
    struct turl u = parts(url);
    return cookie_parse_line(line, strlen(line), &c) && cookie_matches(&c, url, &u, now);
}

static void test_lines(void)
{
    struct jar_cookie c;
    const char *a = "#HttpOnly_.example.com\tTRUE\t/api\tTRUE\t1700000000\tsid\tabc";
    CHECK(cookie_parse_line(a, strlen(a), &c));
    CHECK(c.http_only && c.subdomains && c.secure && c.expires == 1700000000);
    CHECK(c.domain_len == 11 && memcmp(c.domain, "example.com", 11) == 0);
    CHECK(c.path_len == 4 && c.name_len == 3 && c.value_len == 3 && memcmp(c.value, "abc", 3) == 0);
    const char *empty = "h\tFALSE\t/\tFALSE\t0\tn\t";
    CHECK(cookie_parse_line(empty, strlen(empty), &c) && c.value_len == 0 && !c.subdomains);
    const char *no_tab = "h\tFALSE\t/\tFALSE\t0\tn";
    CHECK(cookie_parse_line(no_tab, strlen(no_tab), &c) && c.name_len == 1 && c.value_len == 0);
    const char *bad[] = {"", "# a comment", "h\tFALSE\t/", "h\tFALSE\t/\tFALSE\tsoon\tn\tv"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!cookie_parse_line(bad[i], strlen(bad[i]), &c));
}

static void test_matching(void)
{
    const char *host_only = "api.example.com\tFALSE\t/v1\tFALSE\t0\ta\t1";
    CHECK(matches(host_only, "http://api.example.com/v1", 0));
    CHECK(matches(host_only, "http://API.example.com/v1/users?x=/", 0));
    CHECK(!matches(host_only, "http://api.example.com/v10", 0));   /* not a path boundary */
    CHECK(!matches(host_only, "http://api.example.com/", 0));
    CHECK(!matches(host_only, "http://www.api.example.com/v1", 0)); /* host-only */
    const char *wide = ".example.com\tTRUE\t/\tFALSE\t0\tb\t2";
    CHECK(matches(wide, "http://example.com/", 0) && matches(wide, "http://a.b.example.com/x", 0));
    CHECK(!matches(wide, "http://notexample.com/", 0));
    const char *secure = "127.0.0.1\tFALSE\t/\tTRUE\t0\ts\t3";
    CHECK(matches(secure, "http://127.0.0.1:8080/", 0));         /* loopback is a secure context */
    const char *secure_far = "example.com\tFALSE\t/\tTRUE\t0\ts\t3";
    CHECK(matches(secure_far, "https://example.com/", 0) && !matches(secure_far, "http://example.com/", 0));
    const char *expiring = "example.com\tFALSE\t/\tFALSE\t100\te\t4";
    CHECK(matches(expiring, "http://example.com/", 99) && !matches(expiring, "http://example.com/", 100));
    const char *ip_domain = "0.0.1\tTRUE\t/\tFALSE\t0\ti\t5";
    CHECK(!matches(ip_domain, "http://127.0.0.1/", 0));             /* no subdomains of an address */
}

static void test_header(void)
{
    const char *jar = "h\tFALSE\t/\tFALSE\t0\tsid\tjar\n"
                      "h\tFALSE\t/a/b\tFALSE\t0\tdeep\t1\n"
                      "h\tFALSE\t/\tFALSE\t0\tkeep\t2\n"
                      "other\tFALSE\t/\tFALSE\t0\tfar\t3\n";
    const char *url = "http://h/a/b/c";
    struct turl u = parts(url);
    struct buf out = {0};
    CHECK(cookie_header(&out, " sid=mine; x=1 ", 15, jar, strlen(jar), url, &u, 0));
    CHECK(out.len == strlen("sid=mine; x=1; deep=1; keep=2") &&
          memcmp(out.data, "sid=mine; x=1; deep=1; keep=2", out.len) == 0);
    out.len = 0;
    CHECK(cookie_header(&out, "", 0, jar, strlen(jar), "http://h/", &(struct turl){0}, 0) && out.len == 0);
    u = parts("http://h/");
    CHECK(cookie_header(&out, NULL, 0, jar, strlen(jar), "http://h/", &u, 0));
    CHECK(out.len == strlen("sid=jar; keep=2") && memcmp(out.data, "sid=jar; keep=2", out.len) == 0);
    buf_free(&out);
    CHECK(cookie_pairs_have("a=1; b = 2;c", 12, "b", 1) && cookie_pairs_have("a=1; b = 2;c", 12, "c", 1));
    CHECK(!cookie_pairs_have("a=1; bb=2", 9, "b", 1));
}

static bool line_is(const char *url, struct cookie_set c, const char *want)
{
    struct buf out = {0};
    struct turl u = parts(url);
    const char *why = cookie_line(&out, url, &u, &c);
    bool ok = !why && strcmp(out.data, want) == 0;
    if (!ok)
        fprintf(stderr, "  %s: got %s\n", url, why ? why : out.data);
    buf_free(&out);
    return ok;
}

static const char *line_error(const char *url, struct cookie_set c)
{
    struct buf out = {0};
    struct turl u = parts(url);
    const char *why = cookie_line(&out, url, &u, &c);
    buf_free(&out);
    return why;
}

static void test_set_lines(void)
{
    CHECK(line_is("http://h/a/b/c?q", (struct cookie_set){.name = "n", .value = "v"},
                  "h\tFALSE\t/a/b\tFALSE\t0\tn\tv"));
    CHECK(line_is("http://h", (struct cookie_set){.name = "n", .value = ""}, "h\tFALSE\t/\tFALSE\t0\tn\t"));
    CHECK(line_is("https://api.example.com/x",
                  (struct cookie_set){.name = "n", .value = "v", .domain = ".Example.com", .path = "/p",
                                      .secure = true, .http_only = true, .expires = 42},
                  "#HttpOnly_.Example.com\tTRUE\t/p\tTRUE\t42\tn\tv"));
    CHECK(line_is("http://127.0.0.1:1/", (struct cookie_set){.name = "n", .value = "v", .domain = "127.0.0.1"},
                  "127.0.0.1\tFALSE\t/\tFALSE\t0\tn\tv"));
    CHECK(line_error("http://h/", (struct cookie_set){.name = "", .value = "v"}));
    CHECK(line_error("http://h/", (struct cookie_set){.name = "a=b", .value = "v"}));
    CHECK(line_error("http://h/", (struct cookie_set){.name = "n", .value = "a\tb"}));
    CHECK(line_error("http://h/", (struct cookie_set){.name = "n", .value = "v", .domain = "x.h"}));
    CHECK(line_error("http://ah/", (struct cookie_set){.name = "n", .value = "v", .domain = "h"}));
    CHECK(line_error("http://h/", (struct cookie_set){.name = "n", .value = "v", .path = "p"}));
}

int main(void)
{
    test_lines();
    test_matching();
    test_header();
    test_set_lines();
    return check_report("cookies");
}
