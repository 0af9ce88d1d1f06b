#ifndef TIDE_COOKIES_H
#define TIDE_COOKIES_H
/* Cookies as RFC 6265 sends them, over a jar a transport exports as
 * Netscape cookie-file lines (transport.h, jar_export): which of its
 * cookies go to a URL, the one Cookie header a request carries when the
 * script gives cookies of its own, and the line for a cookie a script sets.
 * Plain text in and out: no transport, no Lua. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "transport.h"

/* One cookie of a jar line; the strings point into the line (not NUL-terminated). */
struct jar_cookie {
    const char *domain, *path, *name, *value;
    size_t domain_len, path_len, name_len, value_len;
    bool subdomains;            /* the domain's subdomains too (a Domain attribute) */
    bool secure, http_only;
    int64_t expires;            /* Unix time; 0: until the session ends */
};

/* The cookie on one line (without its '\n'); false for a comment, a blank
 * or a malformed line. */
bool cookie_parse_line(const char *line, size_t len, struct jar_cookie *c);

/* Whether c goes with a request to url (its parts u) at Unix time now:
 * domain, path and expiry match, and a secure cookie only over https or to
 * a loopback host (localhost, 127.0.0.1, ::1), as libcurl and browsers do. */
bool cookie_matches(const struct jar_cookie *c, const char *url, const struct turl *u, int64_t now);

/* Whether a cookie of path cpath goes to request path req, as libcurl 7.88
 * matches it (RFC 6265 5.1.4 on the path without quotes or a trailing '/':
 * Path=/a/b/ goes to /a/b). */
bool cookie_path_matches(const char *req, size_t rlen, const char *cpath, size_t clen);

/* Calls fn for each cookie of lines (a jar's export, '\n'-separated) that
 * goes to url, in the order a request sends them (longer paths first);
 * stops when fn returns false. False when out of memory. */
typedef bool (*cookie_fn)(void *ud, const struct jar_cookie *c);
bool cookies_for_url(const char *lines, size_t len, const char *url, const struct turl *u, int64_t now,
                     cookie_fn fn, void *ud);

/* Whether pairs (a Cookie header's value: "a=1; b=2") has a cookie called name. */
bool cookie_pairs_have(const char *pairs, size_t len, const char *name, size_t name_len);

/* Appends to out the value of the one Cookie header of a request to url:
 * the script's pairs, then the jar's cookies (lines) for url whose names the
 * script's pairs do not have. False when out of memory. */
bool cookie_header(struct buf *out, const char *pairs, size_t pairs_len, const char *lines, size_t lines_len,
                   const char *url, const struct turl *u, int64_t now);

/* Why name or value cannot be a cookie's (NULL: it can): a name is an
 * RFC 6265 token; a value has no ';', space, comma, quote, backslash or
 * control character. */
const char *cookie_bad_name(const char *name, size_t len);
const char *cookie_bad_value(const char *value, size_t len);

/* A cookie a script sets for a URL. */
struct cookie_set {
    const char *name, *value;
    const char *domain;         /* NULL: the URL's host alone */
    const char *path;           /* NULL: the URL's directory (RFC 6265 5.1.4) */
    bool secure, http_only;
    int64_t expires;            /* Unix time; 0: until the session ends; in the past: removes it */
};

/* Appends to out the jar line (no '\n') of c, set for url; NULL on success,
 * else what is wrong with it (static text, out of memory included). */
const char *cookie_line(struct buf *out, const char *url, const struct turl *u, const struct cookie_set *c);

#endif
