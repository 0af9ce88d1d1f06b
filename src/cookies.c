/* Cookies as RFC 6265 sends them, over Netscape cookie-file lines (cookies.h). */
#include "cookies.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------- one jar line ---------------- */

static bool field_is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(s, word, len) == 0;
}

static bool parse_int64(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;
    bool neg = len > 0 && s[0] == '-';
    size_t i = neg;
    if (i == len)
        return false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

bool cookie_parse_line(const char *line, size_t len, struct jar_cookie *c)
{
    *c = (struct jar_cookie){0};
    if (len >= 10 && memcmp(line, "#HttpOnly_", 10) == 0) {
        c->http_only = true;
        line += 10;
        len -= 10;
    } else if (len == 0 || line[0] == '#') {
        return false;
    }
    const char *f[7];
    size_t flen[7], n = 0;
    const char *p = line, *end = line + len;
    while (n < 7) {
        const char *tab = n < 6 ? memchr(p, '\t', (size_t)(end - p)) : NULL;
        f[n] = p;
        flen[n] = (size_t)((tab ? tab : end) - p);
        n++;
        if (!tab)
            break;
        p = tab + 1;
    }
    if (n == 6) { /* a cookie with an empty value may lose its last tab */
        f[6] = end;
        flen[6] = 0;
    } else if (n != 7) {
        return false;
    }
    if (flen[0] && f[0][0] == '.')
        f[0]++, flen[0]--;
    c->domain = f[0], c->domain_len = flen[0];
    c->subdomains = field_is(f[1], flen[1], "TRUE");
    c->path = f[2], c->path_len = flen[2];
    c->secure = field_is(f[3], flen[3], "TRUE");
    c->name = f[5], c->name_len = flen[5];
    c->value = f[6], c->value_len = flen[6];
    return c->domain_len > 0 && c->name_len > 0 && parse_int64(f[4], flen[4], &c->expires);
}

/* ---------------- matching a URL ---------------- */

static bool is_ip(const char *host, size_t len)
{
    if (memchr(host, ':', len))
        return true;
    for (size_t i = 0; i < len; i++)
        if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
            return false;
    return len > 0;
}

/* RFC 6265 5.1.3; host-only cookies (and any on an IP address) match exactly. */
static bool domain_matches(const char *host, size_t hlen, const char *domain, size_t dlen, bool subdomains)
{
    if (hlen == dlen)
        return strncasecmp(host, domain, hlen) == 0;
    if (!subdomains || hlen < dlen + 1 || is_ip(host, hlen))
        return false;
    return host[hlen - dlen - 1] == '.' && strncasecmp(host + hlen - dlen, domain, dlen) == 0;
}

/* The request's path for cookies: up to the query, "/" when empty. */
static void request_path(const char *url, const struct turl *u, const char **path, size_t *len)
{
    const char *p = url + u->path;
    size_t n = u->path_len;
    const char *q = memchr(p, '?', n);
    if (q)
        n = (size_t)(q - p);
    if (n == 0 || p[0] != '/') {
        p = "/";
        n = 1;
    }
    *path = p;
    *len = n;
}

bool cookie_path_matches(const char *req, size_t rlen, const char *cpath, size_t clen)
{
    if (clen >= 2 && cpath[0] == '"' && cpath[clen - 1] == '"')
        cpath++, clen -= 2;
    if (clen > 1 && cpath[clen - 1] == '/')
        clen--;
    if (clen <= 1)
        return true;
    if (rlen < clen || memcmp(req, cpath, clen) != 0)
        return false;
    return rlen == clen || req[clen] == '/';
}

static bool loopback(const char *host, size_t len)
{
    return field_is(host, len, "localhost") || field_is(host, len, "127.0.0.1") || field_is(host, len, "::1");
}

bool cookie_matches(const struct jar_cookie *c, const char *url, const struct turl *u, int64_t now)
{
    const char *host = url + u->host, *path;
    size_t plen;
    if (c->expires != 0 && c->expires <= now)
        return false;
    if (c->secure && !u->tls && !loopback(host, u->host_len))
        return false;
    if (!domain_matches(host, u->host_len, c->domain, c->domain_len, c->subdomains))
        return false;
    request_path(url, u, &path, &plen);
    return cookie_path_matches(path, plen, c->path, c->path_len);
}

bool cookies_for_url(const char *lines, size_t len, const char *url, const struct turl *u, int64_t now,
                     cookie_fn fn, void *ud)
{
    struct jar_cookie *all = NULL, c;
    size_t n = 0, cap = 0;
    const char *p = lines, *end = lines + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        if (cookie_parse_line(p, (size_t)(eol - p), &c) && cookie_matches(&c, url, u, now)) {
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                struct jar_cookie *more = realloc(all, cap * sizeof *all);
                if (!more) {
                    free(all);
                    return false;
                }
                all = more;
            }
            /* longer paths first, the jar's order kept among equals (RFC 6265 5.4) */
            size_t i = n++;
            for (; i > 0 && all[i - 1].path_len < c.path_len; i--)
                all[i] = all[i - 1];
            all[i] = c;
        }
        p = eol + (nl != NULL);
    }
    for (size_t i = 0; i < n && fn(ud, &all[i]); i++)
        ;
    free(all);
    return true;
}

/* ---------------- one Cookie header ---------------- */

static bool space(char ch)
{
    return ch == ' ' || ch == '\t';
}

bool cookie_pairs_have(const char *pairs, size_t len, const char *name, size_t name_len)
{
    const char *p = pairs, *end = pairs + len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi ? semi : end;
        size_t n = (size_t)(pe - p);
        while (n && space(*p))
            p++, n--;
        const char *eq = memchr(p, '=', n);
        const char *ne = eq ? eq : p + n;
        while (ne > p && space(ne[-1]))
            ne--;
        if ((size_t)(ne - p) == name_len && memcmp(p, name, name_len) == 0)
            return true;
        p = pe + (semi != NULL);
    }
    return false;
}

struct merge {
    struct buf *out;
    const char *pairs;
    size_t pairs_len;
    bool first, ok;
};

static bool merge_one(void *ud, const struct jar_cookie *c)
{
    struct merge *m = ud;
    if (cookie_pairs_have(m->pairs, m->pairs_len, c->name, c->name_len))
        return true; /* the script's wins */
    m->ok = (m->first || buf_append(m->out, "; ", 2)) && buf_append(m->out, c->name, c->name_len) &&
            buf_append(m->out, "=", 1) && buf_append(m->out, c->value, c->value_len);
    m->first = false;
    return m->ok;
}

bool cookie_header(struct buf *out, const char *pairs, size_t pairs_len, const char *lines, size_t lines_len,
                   const char *url, const struct turl *u, int64_t now)
{
    while (pairs_len && space(pairs[pairs_len - 1]))
        pairs_len--;
    while (pairs_len && (space(pairs[0]) || pairs[0] == ';'))
        pairs++, pairs_len--;
    struct merge m = {.out = out, .pairs = pairs, .pairs_len = pairs_len, .first = pairs_len == 0, .ok = true};
    if (!buf_append(out, pairs, pairs_len))
        return false;
    return cookies_for_url(lines, lines_len, url, u, now, merge_one, &m) && m.ok;
}

/* ---------------- a cookie a script sets ---------------- */

static bool control(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

const char *cookie_bad_name(const char *name, size_t len)
{
    if (len == 0)
        return "is empty";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (control(ch) || ch == ' ' || strchr("=;,", ch))
            return "holds '=', ';', ',', a space or a control character";
    }
    return NULL;
}

const char *cookie_bad_value(const char *value, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)value[i];
        if (control(ch) || ch == ';')
            return "holds ';' or a control character";
    }
    return NULL;
}

/* Domain, path: text that goes into a tab-separated line. */
static bool plain_text(const char *s)
{
    for (; *s; s++)
        if (control((unsigned char)*s) || *s == ' ' || *s == ';')
            return false;
    return true;
}

/* RFC 6265 5.1.4: the URL's path up to its last '/', "/" when that is the first. */
static void default_path(const char *url, const struct turl *u, const char **path, size_t *len)
{
    request_path(url, u, path, len);
    const char *last = *path + *len;
    while (last > *path && last[-1] != '/')
        last--;
    *len = last - *path > 1 ? (size_t)(last - *path) - 1 : 1;
}

const char *cookie_line(struct buf *out, const char *url, const struct turl *u, const struct cookie_set *c)
{
    const char *why;
    if ((why = cookie_bad_name(c->name, strlen(c->name))))
        return "the name holds '=', ';', ',', a space or a control character, or is empty";
    if ((why = cookie_bad_value(c->value, strlen(c->value))))
        return "the value holds ';' or a control character";
    const char *host = url + u->host, *domain = host, *path;
    size_t dlen = u->host_len, plen;
    bool subdomains = false;
    if (c->domain) {
        domain = c->domain[0] == '.' ? c->domain + 1 : c->domain;
        dlen = strlen(domain);
        if (dlen == 0 || !plain_text(domain))
            return "the domain is empty or holds a space, ';' or a control character";
        if (!domain_matches(host, u->host_len, domain, dlen, true))
            return "the domain does not cover the URL's host";
        /* on an IP address, a Domain attribute makes a host-only cookie */
        subdomains = !is_ip(host, u->host_len);
    }
    if (c->path) {
        path = c->path;
        plen = strlen(path);
        if (path[0] != '/' || !plain_text(path))
            return "the path must start with '/' and hold no space, ';' or control character";
    } else {
        default_path(url, u, &path, &plen);
    }
    char expires[24];
    int elen = snprintf(expires, sizeof expires, "%lld", (long long)c->expires);
    bool ok = (!c->http_only || buf_append(out, "#HttpOnly_", 10)) && (!subdomains || buf_append(out, ".", 1)) &&
              buf_append(out, domain, dlen) && buf_append(out, subdomains ? "\tTRUE\t" : "\tFALSE\t", subdomains ? 6 : 7) &&
              buf_append(out, path, plen) && buf_append(out, c->secure ? "\tTRUE\t" : "\tFALSE\t", c->secure ? 6 : 7) &&
              buf_append(out, expires, (size_t)elen) && buf_append(out, "\t", 1) &&
              buf_append(out, c->name, strlen(c->name)) && buf_append(out, "\t", 1) &&
              buf_append(out, c->value, strlen(c->value)) && buf_append(out, "", 1);
    return ok ? NULL : "out of memory";
}
