/* A cookie jar that behaves as libcurl 7.88's (cjar.h). The rules follow
 * what lib/cookie.c and lib/http.c of that version do, step by step where
 * a user could see the difference; tests/unit/test_cjar.c checks them
 * against the libcurl tide links with. */
#include "cjar.h"
#include "cookies.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_MAX_BYTES 5000     /* libcurl's MAX_COOKIE_LINE */
#define PAIR_MAX_BYTES 4096     /* MAX_NAME: name + value; each under 4095 */
#define SEND_MAX 150            /* MAX_COOKIE_SEND_AMOUNT */
#define HEAD_MAX 8190           /* MAX_COOKIE_HEADER_LEN */
#define IMPORT_MAX 8000000      /* CURL_MAX_INPUT_LENGTH, for CURLOPT_COOKIELIST */

enum { PREFIX_SECURE = 1, PREFIX_HOST = 2 };

struct span {
    const char *p;
    size_t n;
};

struct cookie {
    char *mem;                  /* one block: the strings below, each NUL-terminated */
    struct span domain;         /* without the leading dot of a Domain attribute */
    struct span path;           /* as given, or the default path: what the export shows */
    struct span spath;          /* path as matched: no quotes, no trailing '/' */
    struct span name, value;
    int64_t expires;            /* Unix time; 0: the session's */
    uint64_t created;           /* kept when a cookie is replaced */
    unsigned char bucket;       /* libcurl's hash of the domain */
    bool tailmatch, secure, httponly;
};

struct cjar {
    struct cookie *c;           /* oldest first */
    size_t n, cap;
    uint64_t clock;
};

/* A cookie being read, its text still in the caller's line. */
struct draft {
    struct span domain, path, name, value;
    int64_t expires;
    unsigned prefix;
    bool tailmatch, secure, httponly;
};

/* ---------------- small text helpers ---------------- */

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static bool c_space(char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

static struct span span_of(const char *s)
{
    return (struct span){s, strlen(s)};
}

static bool span_ieq(struct span a, struct span b)
{
    return a.n == b.n && strncasecmp(a.p, b.p, a.n) == 0;
}

static bool span_is(struct span a, const char *word)
{
    return span_ieq(a, span_of(word));
}

static bool span_starts_i(struct span a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.n >= n && strncasecmp(a.p, prefix, n) == 0;
}

static size_t span_not(const char *p, const char *end, const char *stop)
{
    const char *s = p;
    while (s < end && !strchr(stop, *s))
        s++;
    return (size_t)(s - p);
}

static struct span trim_blanks(struct span s)
{
    while (s.n && blank(s.p[s.n - 1]))
        s.n--;
    while (s.n && blank(s.p[0]))
        s.p++, s.n--;
    return s;
}

/* libcurl's Curl_host_is_ipnum: an address inet_pton reads. */
static bool is_ip(struct span host)
{
    char z[64];
    unsigned char addr[16];
    if (host.n == 0 || host.n >= sizeof z)
        return false;
    memcpy(z, host.p, host.n);
    z[host.n] = '\0';
    return inet_pton(AF_INET, z, addr) == 1 || inet_pton(AF_INET6, z, addr) == 1;
}

/* Whether domain covers host: equal, or host ends in "." + domain. */
static bool tailmatch(struct span domain, struct span host)
{
    if (host.n < domain.n || strncasecmp(domain.p, host.p + host.n - domain.n, domain.n) != 0)
        return false;
    return host.n == domain.n || host.p[host.n - domain.n - 1] == '.';
}

/* The bucket of libcurl's cookie hash table a domain's cookies are in: a
 * hash of its last two labels (bucket 0 for an address). libcurl looks
 * for a request's cookies in its host's bucket alone, so a cookie for a
 * one-label domain ("localhost") does not go to its subdomains. */
static unsigned char bucket(struct span domain, bool ip)
{
    if (ip)
        return 0;
    const char *p = domain.p, *last = memrchr(p, '.', domain.n);
    size_t n = domain.n;
    const char *first = last ? memrchr(p, '.', (size_t)(last - p)) : NULL;
    if (first) {
        n -= (size_t)(first + 1 - p);
        p = first + 1;
    }
    size_t h = 5381;
    for (size_t i = 0; i < n; i++) {
        char up = p[i] >= 'a' && p[i] <= 'z' ? (char)(p[i] - 'a' + 'A') : p[i];
        h += h << 5;
        h ^= (size_t)up; /* a byte over 0x7f widens as libcurl's does */
    }
    return (unsigned char)(h % 256);
}

/* Where libcurl sends and takes secure cookies. */
static bool secure_context(struct span host, const struct turl *u)
{
    return u->tls || span_is(host, "localhost") || (host.n == 9 && memcmp(host.p, "127.0.0.1", 9) == 0) ||
           (host.n == 3 && memcmp(host.p, "::1", 3) == 0);
}

/* libcurl's sanitize_cookie_path: the path matched and compared. */
static struct span sanitized(struct span path)
{
    if (path.n && path.p[0] == '"')
        path.p++, path.n--;
    if (path.n && path.p[path.n - 1] == '"')
        path.n--;
    if (path.n == 0 || path.p[0] != '/')
        return span_of("");   /* "/" without its trailing '/' */
    if (path.p[path.n - 1] == '/')
        path.n--;
    return path;
}

/* The request's path as libcurl has it: up to the query, "/" when empty. */
static struct span request_path(const char *url, const struct turl *u)
{
    struct span p = {url + u->path, u->path_len};
    const char *q = memchr(p.p, '?', p.n);
    if (q)
        p.n = (size_t)(q - p.p);
    return p.n && p.p[0] == '/' ? p : span_of("/");
}

static bool expired(int64_t expires, int64_t now)
{
    return expires != 0 && expires < now;
}

/* curlx_strtoofft: 0 read (digits after blanks and an optional '+', the
 * rest ignored), 1 not a number (or negative), 2 too large. */
static int read_offt(struct span s, int64_t *v)
{
    while (s.n && blank(s.p[0]))
        s.p++, s.n--;
    if (s.n == 0 || s.p[0] == '-' || c_space(s.p[0]))
        return 1;
    size_t i = s.p[0] == '+';
    if (i == s.n || s.p[i] < '0' || s.p[i] > '9')
        return 1;
    int64_t x = 0;
    for (; i < s.n && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
        int digit = s.p[i] - '0';
        if (x > (INT64_MAX - digit) / 10)
            return 2;
        x = x * 10 + digit;
    }
    *v = x;
    return 0;
}

/* ---------------- the jar's array ---------------- */

static void drop_at(struct cjar *j, size_t i)
{
    free(j->c[i].mem);
    memmove(&j->c[i], &j->c[i + 1], (j->n - i - 1) * sizeof *j->c);
    j->n--;
}

static void remove_expired(struct cjar *j, int64_t now)
{
    for (size_t i = j->n; i-- > 0;)
        if (expired(j->c[i].expires, now))
            drop_at(j, i);
}

static char *put(char *at, struct span s, struct span *where)
{
    memcpy(at, s.p, s.n);
    at[s.n] = '\0';
    *where = (struct span){at, s.n};
    return at + s.n + 1;
}

/* d as a cookie with strings of its own. */
static bool make_cookie(const struct draft *d, struct cookie *c)
{
    struct span spath = sanitized(d->path);
    char *m = malloc(d->domain.n + d->path.n + spath.n + d->name.n + d->value.n + 5);
    if (!m)
        return false;
    *c = (struct cookie){.mem = m, .expires = d->expires, .bucket = bucket(d->domain, is_ip(d->domain)),
                         .tailmatch = d->tailmatch, .secure = d->secure, .httponly = d->httponly};
    m = put(m, d->domain, &c->domain);
    m = put(m, d->path, &c->path);
    m = put(m, spath, &c->spath);
    m = put(m, d->name, &c->name);
    put(m, d->value, &c->value);
    return true;
}

/* Over plain http a non-secure cookie may not take the place of a secure
 * one of the same name and domain whose first path segment it shares. */
static bool overlays_secure(const struct cjar *j, const struct draft *d, struct span spath)
{
    for (size_t i = 0; i < j->n; i++) {
        const struct cookie *c = &j->c[i];
        if (!c->secure || !span_ieq(c->name, d->name) || !span_ieq(c->domain, d->domain))
            continue;
        size_t first = c->spath.n;
        const char *sep = c->spath.n > 1 ? memchr(c->spath.p + 1, '/', c->spath.n - 1) : NULL;
        if (sep)
            first = (size_t)(sep - c->spath.p);
        if (spath.n >= first && strncasecmp(c->spath.p, spath.p, first) == 0)
            return true;
    }
    return false;
}

static bool prefix_allows(const struct draft *d)
{
    if ((d->prefix & PREFIX_SECURE) && !d->secure)
        return false;
    if (d->prefix & PREFIX_HOST)
        return d->secure && d->path.n == 1 && d->path.p[0] == '/' && !d->tailmatch;
    return true;
}

/* Keeps d (the rules that need the jar): replaces the cookie of the same
 * name, domain and path, removes it when d has expired. secure: the
 * context d came from. CJAR_REFUSED when a rule refused it. */
static enum cjar_import keep(struct cjar *j, const struct draft *d, bool secure, int64_t now)
{
    if (!prefix_allows(d))
        return CJAR_REFUSED;
    remove_expired(j, now);
    struct span spath = sanitized(d->path);
    if (!secure && !d->secure && overlays_secure(j, d, spath))
        return CJAR_REFUSED;
    size_t i = 0;
    for (; i < j->n; i++) {
        const struct cookie *c = &j->c[i];
        if (span_ieq(c->name, d->name) && span_ieq(c->domain, d->domain) && c->tailmatch == d->tailmatch &&
            span_ieq(c->spath, spath))
            break;
    }
    if (expired(d->expires, now)) {
        if (i < j->n)
            drop_at(j, i);
        return CJAR_OK;
    }
    struct cookie c;
    if (i == j->n && j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 4;
        struct cookie *more = realloc(j->c, cap * sizeof *more);
        if (!more)
            return CJAR_NOMEM;
        j->c = more;
        j->cap = cap;
    }
    if (!make_cookie(d, &c))
        return CJAR_NOMEM;
    if (i < j->n) {
        c.created = j->c[i].created;
        free(j->c[i].mem);
    } else {
        c.created = ++j->clock;
        j->n++;
    }
    j->c[i] = c;
    return CJAR_OK;
}

/* ---------------- a Set-Cookie header ---------------- */

/* One "name=value" or "word" of a Set-Cookie value, read as libcurl's
 * sscanf("%4095[^;\t\r\n=] =%4095[^;\r\n]") does, then trimmed. */
struct pair {
    struct span name, value;
    size_t raw_name, raw_value;  /* before trimming: what the size limits count */
    bool sep;                    /* an '=' right after the name */
};

static bool read_pair(const char *p, const char *end, struct pair *pr)
{
    size_t n = span_not(p, end, ";\t\r\n=");
    if (n == 0)
        return false;
    const char *q = p + n, *v = q;
    size_t vn = 0;
    pr->sep = q < end && *q == '=';
    while (q < end && c_space(*q))
        q++;
    if (q < end && *q == '=') {
        v = q + 1;
        vn = span_not(v, end, ";\r\n");
    }
    pr->raw_name = n;
    pr->raw_value = vn;
    pr->name = (struct span){p, n};
    while (pr->name.n && blank(pr->name.p[pr->name.n - 1]))
        pr->name.n--;
    pr->value = trim_blanks((struct span){v, vn});
    return true;
}

static bool control_octets(struct span s)
{
    for (size_t i = 0; i < s.n; i++)
        if (((unsigned char)s.p[i] < 0x20 && s.p[i] != '\t') || s.p[i] == 0x7f)
            return true;
    return false;
}

struct attrs {
    struct span max_age, expires;
    bool has_max_age, has_expires, has_domain, has_path, bad;
};

/* An attribute after the name=value pair; false: the cookie is refused. */
static bool read_attr(const struct pair *pr, struct draft *d, struct attrs *a, struct span host, bool host_ip,
                      bool secure)
{
    if (pr->value.n == 0) {
        if (span_is(pr->name, "secure")) {
            if (!secure)
                return false;
            d->secure = true;
            return true;
        }
        if (span_is(pr->name, "httponly")) {
            d->httponly = true;
            return true;
        }
        if (!pr->sep)
            return true;
    }
    struct span v = pr->value;
    if (span_is(pr->name, "path")) {
        d->path = v;
        a->has_path = true;
    } else if (span_is(pr->name, "domain") && v.n) {
        if (v.p[0] == '.')
            v.p++, v.n--;
        bool ok = host_ip ? v.n == host.n && memcmp(v.p, host.p, v.n) == 0 : tailmatch(v, host);
        if (ok) {
            d->domain = v;
            a->has_domain = true;
            d->tailmatch |= !host_ip;
        } else {
            a->bad = true; /* libcurl reads on, then refuses */
        }
    } else if (span_is(pr->name, "max-age")) {
        a->max_age = v;
        a->has_max_age = true;
    } else if (span_is(pr->name, "expires")) {
        a->expires = v;
        a->has_expires = true;
    }
    return true;
}

/* Reads every pair of a Set-Cookie value into d; false: refused. */
static bool read_pairs(const char *p, const char *end, struct draft *d, struct attrs *a, struct span host,
                       bool host_ip, bool secure)
{
    bool named = false;
    while (p < end && blank(*p))
        p++;
    for (;;) {
        struct pair pr;
        if (read_pair(p, end, &pr)) {
            if (pr.raw_name >= PAIR_MAX_BYTES - 1 || pr.raw_value >= PAIR_MAX_BYTES - 1 ||
                pr.raw_name + pr.raw_value > PAIR_MAX_BYTES || memchr(pr.value.p, '\t', pr.value.n))
                return false;
            /* libcurl looks for the prefixes in every pair's name */
            if (pr.name.n > 3 && span_starts_i(pr.name, "__Secure-"))
                d->prefix |= PREFIX_SECURE;
            else if (pr.name.n > 3 && span_starts_i(pr.name, "__Host-"))
                d->prefix |= PREFIX_HOST;
            if (!named) {
                if (!pr.sep || control_octets(pr.name) || control_octets(pr.value))
                    return false;
                d->name = pr.name;
                d->value = pr.value;
                named = true;
            } else if (!read_attr(&pr, d, a, host, host_ip, secure)) {
                return false;
            }
        }
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi)
            break;
        for (p = semi + 1; p < end && blank(*p); p++)
            ;
        if (p == end)
            break;
    }
    return named && !a->bad;
}

static int64_t max_age_expiry(struct span s, int64_t now)
{
    int64_t v = 0;
    if (s.n && s.p[0] == '"')
        s.p++, s.n--;
    switch (read_offt(s, &v)) {
    case 2:
        return INT64_MAX;
    case 1:
        return 1; /* not a number: expired */
    default:
        if (v == 0)
            return 1;
        return INT64_MAX - now < v ? INT64_MAX : now + v;
    }
}

/* libcurl's date parser; 0 (a session cookie) when it cannot read it or it
 * is before 1970, 1 for 1970's first second. */
static int64_t expires_expiry(struct span s)
{
    char z[PAIR_MAX_BYTES];
    memcpy(z, s.p, s.n); /* under 4095 bytes: read_pairs checked */
    z[s.n] = '\0';
    time_t t = curl_getdate(z, NULL);
    return t == 0 ? 1 : t < 0 ? 0 : (int64_t)t;
}

/* The directory of the request's path, its last '/' included. */
static struct span default_path(const char *url, const struct turl *u)
{
    struct span p = request_path(url, u);
    while (p.n > 1 && p.p[p.n - 1] != '/')
        p.n--;
    return p;
}

/* libpsl's psl_is_cookie_domain_acceptable with only its "*" rule, on
 * lower-cased names of under 256 bytes as Debian's libcurl 7.88 asks it
 * (the fix of CVE-2023-46218): a Domain must be the host, or longer than
 * the host's last label. */
static bool suffix_allows(struct span host, struct span domain)
{
    if (host.n >= 256 || domain.n >= 256)
        return false;
    if (span_ieq(host, domain))
        return true;
    if (domain.n >= host.n || strncasecmp(host.p + host.n - domain.n, domain.p, domain.n) != 0 ||
        host.p[host.n - domain.n - 1] != '.')
        return false;
    size_t last = 0;
    while (last < host.n && host.p[host.n - last - 1] != '.')
        last++;
    return domain.n > last;
}

bool cjar_store_counted(struct cjar *j, const char *value, size_t len, const char *url, const struct turl *u,
                        int64_t now, unsigned *taken)
{
    if (taken && *taken >= CJAR_MAX_SET)
        return true;
    len = strnlen(value, len);          /* libcurl reads a C string */
    if (len + 3 > LINE_MAX_BYTES)       /* it counts " " and CRLF after "Set-Cookie:" */
        return true;
    struct span host = {url + u->host, u->host_len};
    bool host_ip = is_ip(host), secure = secure_context(host, u);
    struct draft d = {0};
    struct attrs a = {0};
    if (!read_pairs(value, value + len, &d, &a, host, host_ip, secure))
        return true;
    if (a.has_max_age)
        d.expires = max_age_expiry(a.max_age, now);
    else if (a.has_expires)
        d.expires = expires_expiry(a.expires);
    if (!a.has_domain)
        d.domain = host;
    if (!a.has_path)
        d.path = default_path(url, u);
    if (taken)
        ++*taken;
    if (!is_ip(d.domain) && !suffix_allows(host, d.domain))
        return true;
    return keep(j, &d, secure, now) != CJAR_NOMEM;
}

bool cjar_store(struct cjar *j, const char *value, size_t len, const char *url, const struct turl *u, int64_t now)
{
    return cjar_store_counted(j, value, len, url, u, now, NULL);
}

/* ---------------- the Cookie header ---------------- */

static bool goes_to(const struct cookie *c, struct span host, bool host_ip, bool secure, struct span path,
                    unsigned char host_bucket)
{
    if (c->bucket != host_bucket || (c->secure && !secure))
        return false;
    bool domain_ok = c->tailmatch && !host_ip ? tailmatch(c->domain, host) : span_ieq(host, c->domain);
    return domain_ok && cookie_path_matches(path.p, path.n, c->spath.p, c->spath.n);
}

/* libcurl's cookie_sort: whether a goes before b (the newer of equals). */
static bool sends_before(const struct cookie *a, const struct cookie *b)
{
    if (a->path.n != b->path.n)
        return a->path.n > b->path.n;
    if (a->domain.n != b->domain.n)
        return a->domain.n > b->domain.n;
    if (a->name.n != b->name.n)
        return a->name.n > b->name.n;
    return a->created > b->created;
}

bool cjar_header(struct cjar *j, struct buf *out, const char *url, const struct turl *u, int64_t now)
{
    if (j->n == 0)
        return true;
    remove_expired(j, now);
    struct span host = {url + u->host, u->host_len}, path = request_path(url, u);
    bool host_ip = is_ip(host), secure = secure_context(host, u);
    unsigned char host_bucket = bucket(host, host_ip);
    const struct cookie *pick[SEND_MAX];
    size_t n = 0;
    for (size_t i = 0; i < j->n && n < SEND_MAX; i++) {
        const struct cookie *c = &j->c[i];
        if (!goes_to(c, host, host_ip, secure, path, host_bucket))
            continue;
        size_t k = n++;
        for (; k > 0 && sends_before(c, pick[k - 1]); k--)
            pick[k] = pick[k - 1];
        pick[k] = c;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cookie *c = pick[i];
        if (out->len + c->name.n + c->value.n + 1 >= HEAD_MAX)
            break;
        if ((i && !buf_append(out, "; ", 2)) || !buf_append(out, c->name.p, c->name.n) || !buf_append(out, "=", 1) ||
            !buf_append(out, c->value.p, c->value.n))
            return false;
    }
    return true;
}

/* ---------------- Netscape lines ---------------- */

static bool append_int(struct buf *out, int64_t v)
{
    char d[24];
    size_t i = sizeof d;
    uint64_t x = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        d[--i] = (char)('0' + x % 10);
    while (x /= 10);
    if (v < 0)
        d[--i] = '-';
    return buf_append(out, d + i, sizeof d - i);
}

static bool export_one(const struct cookie *c, struct buf *out)
{
    bool dot = c->tailmatch && (c->domain.n == 0 || c->domain.p[0] != '.');
    return (!c->httponly || buf_append(out, "#HttpOnly_", 10)) && (!dot || buf_append(out, ".", 1)) &&
           buf_append(out, c->domain.p, c->domain.n) &&
           buf_append(out, c->tailmatch ? "\tTRUE\t" : "\tFALSE\t", c->tailmatch ? 6 : 7) &&
           buf_append(out, c->path.p, c->path.n) &&
           buf_append(out, c->secure ? "\tTRUE\t" : "\tFALSE\t", c->secure ? 6 : 7) && append_int(out, c->expires) &&
           buf_append(out, "\t", 1) && buf_append(out, c->name.p, c->name.n) && buf_append(out, "\t", 1) &&
           buf_append(out, c->value.p, c->value.n) && buf_append(out, "\n", 1);
}

bool cjar_export(const struct cjar *j, struct buf *out)
{
    for (size_t i = 0; i < j->n; i++)
        if (!export_one(&j->c[i], out))
            return false;
    return true;
}

/* The next tab-separated field, empty ones skipped (strtok_r). */
static bool next_field(const char **p, const char *end, struct span *f)
{
    while (*p < end && **p == '\t')
        ++*p;
    if (*p == end)
        return false;
    f->p = *p;
    f->n = span_not(*p, end, "\t");
    *p += f->n;
    return true;
}

static bool span_eq(struct span a, const char *word)
{
    return a.n == strlen(word) && memcmp(a.p, word, a.n) == 0;
}

/* libcurl writes an empty path for "Path=" and reads such a line back as
 * one without a path ("/"). Kept empty here, so that libcurl's jar comes
 * over as it is; it matches as "/" does. Where the path field starts, when
 * it is empty and the two before it are not. */
static const char *empty_path(const char *p, const char *end)
{
    const char *t1 = memchr(p, '\t', (size_t)(end - p));
    const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(end - t1 - 1)) : NULL;
    return t1 && t1 > p && t2 && t2 > t1 + 1 && t2 + 1 < end && t2[1] == '\t' ? t2 + 1 : NULL;
}

/* The fields of a line as libcurl's Curl_cookie_add reads them: a path
 * field that reads TRUE or FALSE is the secure flag of a line without one. */
static bool read_line(const char *p, const char *end, struct draft *d)
{
    struct span f;
    int fields = 0;
    const char *no_path = empty_path(p, end);
    for (; next_field(&p, end, &f); fields++) {
        if (fields == 2 && no_path && f.p > no_path) {
            d->path = (struct span){no_path, 0};
            fields++;
        }
        switch (fields) {
        case 0:
            if (f.n && f.p[0] == '.')
                f.p++, f.n--;
            d->domain = f;
            break;
        case 1:
            d->tailmatch = span_is(f, "TRUE");
            break;
        case 2:
            if (!span_eq(f, "TRUE") && !span_eq(f, "FALSE")) {
                d->path = f;
                break;
            }
            d->path = span_of("/");
            fields++;
            /* fall through */
        case 3:
            d->secure = span_is(f, "TRUE");
            break;
        case 4:
            if (read_offt(f, &d->expires) != 0)
                return false;
            break;
        case 5:
            d->name = f;
            if (span_starts_i(f, "__Secure-"))
                d->prefix |= PREFIX_SECURE;
            else if (span_starts_i(f, "__Host-"))
                d->prefix |= PREFIX_HOST;
            break;
        case 6:
            d->value = f;
            break;
        }
    }
    if (fields == 6) {
        d->value = span_of("");
        fields++;
    }
    return fields == 7;
}

enum cjar_import cjar_import(struct cjar *j, const char *line, int64_t now)
{
    size_t len = strlen(line);
    struct draft d = {0};
    if (len > IMPORT_MAX)
        return CJAR_REFUSED;
    if (len >= 10 && memcmp(line, "#HttpOnly_", 10) == 0) {
        d.httponly = true;
        line += 10;
        len -= 10;
    }
    if (len && line[0] == '#')
        return CJAR_REFUSED;
    len = span_not(line, line + len, "\r\n");
    if (!read_line(line, line + len, &d))
        return CJAR_REFUSED;
    return keep(j, &d, true, now);
}

/* ---------------- the jar ---------------- */

struct cjar *cjar_new(void)
{
    return calloc(1, sizeof(struct cjar));
}

void cjar_clear(struct cjar *j)
{
    for (size_t i = 0; i < j->n; i++)
        free(j->c[i].mem);
    j->n = 0;
}

void cjar_free(struct cjar *j)
{
    if (!j)
        return;
    cjar_clear(j);
    free(j->c);
    free(j);
}

bool cjar_empty(const struct cjar *j)
{
    return j->n == 0;
}
