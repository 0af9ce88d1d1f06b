/* What every transport shares: the names of its errors, a URL's parts. */
#include "transport.h"

#include <string.h>
#include <strings.h>

static const char *const terr_names[TERR_COUNT] = {
    [TERR_NONE] = NULL,
    [TERR_REFUSED] = "connection refused",
    [TERR_CONNECT] = "connect failed",
    [TERR_UNREACHABLE] = "host unreachable",
    [TERR_DNS] = "dns lookup failed",
    [TERR_TIMEOUT] = "timeout",
    [TERR_RESET] = "connection reset",
    [TERR_EMPTY_REPLY] = "empty reply",
    [TERR_MALFORMED] = "malformed response",
    [TERR_TRUNCATED] = "truncated response",
    [TERR_HEAD_TOO_LARGE] = "headers too large",
    [TERR_REDIRECTS] = "too many redirects",
    [TERR_TLS] = "tls error",
    [TERR_CERT] = "certificate rejected",
    [TERR_BAD_URL] = "malformed URL",
    [TERR_NOMEM] = "out of memory",
    [TERR_SEND] = "send failed",
    [TERR_RECV] = "receive failed",
    [TERR_OTHER] = NULL,
};

const char *terr_name(enum terr e, const char *detail)
{
    if (e == TERR_OTHER)
        return detail ? detail : "transport error";
    return (unsigned)e < TERR_COUNT ? terr_names[e] : "transport error";
}

static bool parse_port(const char *p, size_t n, unsigned *port)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = v;
    return true;
}

/* host:port after the scheme, up to end; userinfo@ skipped. */
static bool parse_authority(const char *url, size_t start, size_t end, struct turl *u)
{
    const char *at = memrchr(url + start, '@', end - start);
    size_t h = at ? (size_t)(at - url) + 1 : start;
    size_t port_at = end;
    if (h < end && url[h] == '[') {
        const char *close = memchr(url + h, ']', end - h);
        if (!close)
            return false;
        u->host = h + 1;
        u->host_len = (size_t)(close - url) - u->host;
        port_at = (size_t)(close - url) + 1;
        if (port_at < end && url[port_at] != ':')
            return false;
    } else {
        const char *colon = memchr(url + h, ':', end - h);
        u->host = h;
        port_at = colon ? (size_t)(colon - url) : end;
        u->host_len = port_at - h;
    }
    if (u->host_len == 0)
        return false;
    if (port_at < end)
        return parse_port(url + port_at + 1, end - port_at - 1, &u->port);
    return true;
}

bool turl_parse(const char *url, size_t url_len, struct turl *u)
{
    *u = (struct turl){0};
    if (url_len >= 7 && strncasecmp(url, "http://", 7) == 0) {
        u->scheme_len = 4;
        u->port = 80;
    } else if (url_len >= 8 && strncasecmp(url, "https://", 8) == 0) {
        u->scheme_len = 5;
        u->port = 443;
        u->tls = true;
    } else {
        return false;
    }
    size_t start = u->scheme_len + 3, end = start;
    while (end < url_len && url[end] != '/' && url[end] != '?' && url[end] != '#')
        end++;
    if (!parse_authority(url, start, end, u))
        return false;
    const char *hash = memchr(url + end, '#', url_len - end);
    u->path = end;
    u->path_len = (hash ? (size_t)(hash - url) : url_len) - end;
    return true;
}
