#ifndef TIDE_CJAR_H
#define TIDE_CJAR_H
/* A cookie jar of tide's own, for a transport without libcurl: it stores
 * what Set-Cookie headers say and gives the Cookie header a request carries,
 * as libcurl 7.88's cookie engine does (lib/cookie.c, the Debian build with
 * libpsl), and converts to and from libcurl's jar in Netscape cookie-file
 * lines, so one user's cookies can move between the two transports.
 *
 * libcurl's rules kept here, beside RFC 6265 5.2-5.4:
 * - a Set-Cookie value of more than 5000 bytes with "Set-Cookie:"'s space
 *   and CRLF, a name or value of 4095 bytes or more, or name + value over
 *   4096 bytes is refused, as is a value with a tab or control character;
 * - a value keeps its quotes; a Max-Age that is not a number deletes;
 *   an Expires libcurl cannot parse, or one before 1970, makes a session
 *   cookie; Max-Age wins over Expires;
 * - Secure is refused unless the response came over https or from
 *   localhost, 127.0.0.1 or ::1 ("secure context"); over plain http a
 *   non-secure cookie may not overlay a secure one of the same name and
 *   domain; __Secure- and __Host- names need what their prefix says;
 * - a Domain must cover the host (on an IP address: be it); without the
 *   public-suffix list a Domain must be longer than the host's last label
 *   (libpsl's "*" rule; multi-label suffixes such as co.uk are not known);
 * - names compare case-insensitively for replacement, paths are kept as
 *   given ("/a/b/" by default for /a/b/c) and matched without their
 *   trailing '/';
 * - at most 150 cookies go in one request, and none that would take the
 *   request head past 8190 bytes (out's length counts as the head so far);
 * - a cookie for a one-label domain ("localhost", Domain=internal) goes to
 *   that host only, not its subdomains: libcurl looks for a host's cookies
 *   in the bucket of its last two labels;
 * - no limit on cookies per domain or per jar (7.88 had none).
 * The caller caps Set-Cookie headers per response (CJAR_MAX_SET). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "transport.h"

/* Set-Cookie headers libcurl takes from one response; the rest are ignored. */
#define CJAR_MAX_SET 50

struct cjar;

struct cjar *cjar_new(void);
void cjar_free(struct cjar *j);

/* Stores what one Set-Cookie header value (value, len bytes; no
 * "Set-Cookie:", no CRLF) says, for a response to url (its parts u) at Unix
 * time now. A cookie the rules refuse is ignored. False only when out of
 * memory. */
bool cjar_store(struct cjar *j, const char *value, size_t len, const char *url, const struct turl *u, int64_t now);

/* cjar_store counting the response's cookies in *taken (0 at each response's
 * start): past CJAR_MAX_SET the rest are ignored, as libcurl does. */
bool cjar_store_counted(struct cjar *j, const char *value, size_t len, const char *url, const struct turl *u,
                        int64_t now, unsigned *taken);

/* Appends to out the value of the Cookie header for a request to url
 * ("a=1; b=2"), nothing when no cookie goes: longer paths first, then longer
 * domains, longer names, newer cookies (libcurl's order). Drops expired
 * cookies. out->len counts as the request head before the cookies (libcurl's
 * 8190-byte cap): build into the request buffer after "Cookie: " and take
 * the header back out when nothing was appended. False: out of memory. */
bool cjar_header(struct cjar *j, struct buf *out, const char *url, const struct turl *u, int64_t now);

/* No cookie at all: a request needs no Cookie header. */
bool cjar_empty(const struct cjar *j);

/* The jar in libcurl's Netscape lines (transport.h, jar_export), each ending
 * in '\n', oldest first; appended to out. False: out of memory. */
bool cjar_export(const struct cjar *j, struct buf *out);

enum cjar_import {
    CJAR_OK,            /* stored, replaced, or removed (an expiry before now) */
    CJAR_REFUSED,       /* not a cookie line, or one libcurl refuses too (a __Host- one not secure...) */
    CJAR_NOMEM,
};

/* One Netscape line (no '\n' needed; one is cut there), read as libcurl
 * reads it: replaces the cookie of the same domain, path and name; an expiry
 * before now removes it. */
enum cjar_import cjar_import(struct cjar *j, const char *line, int64_t now);

void cjar_clear(struct cjar *j);

#endif
