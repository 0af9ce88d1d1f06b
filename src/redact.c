/* Secrets out of messages: the password of a URL or DSN, wherever the
 * message repeats it. */
#include "redact.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* An http(s) URL whose user name stands alone (http://TOKEN@host, or
 * TOKEN: with an empty password) carries a token there: that is its secret. */
static bool http_scheme(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* The secret of a URL's user info: its password, or a lone http(s) user
 * name. False when there is none. */
static bool url_secret_span(const char *url, const char *auth, size_t *at, size_t *len)
{
    const char *end = auth + strcspn(auth, "/?#");
    const char *last_at = NULL, *colon = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            last_at = p;
    for (const char *p = auth; last_at && p < last_at && !colon; p++)
        if (*p == ':')
            colon = p;
    if (colon && colon + 1 < last_at) {
        *at = (size_t)(colon + 1 - url);
        *len = (size_t)(last_at - colon - 1);
        return true;
    }
    if (!last_at || !http_scheme(url))
        return false;
    *at = (size_t)(auth - url);
    *len = (size_t)((colon ? colon : last_at) - auth);
    return *len > 0;
}

/* Where the secret of a DSN starts and how long it is (URI user info or
 * password=...); false when it has none. */
static bool password_span(const char *dsn, size_t *at, size_t *len)
{
    const char *scheme = strstr(dsn, "://");
    if (scheme)
        return url_secret_span(dsn, scheme + 3, at, len);
    const char *pw = strstr(dsn, "password");
    const char *eq = pw ? strchr(pw, '=') : NULL;
    if (!eq)
        return false;
    const char *val = eq + 1;
    while (*val == ' ')
        val++;
    *at = (size_t)(val - dsn);
    *len = *val == '\'' ? strcspn(val + 1, "'") + 2 : strcspn(val, " ");
    return true;
}

void redact_password(const char *text, const char *dsn, char *out, size_t len)
{
    size_t at, pwlen;
    char secret[1024];
    if (!password_span(dsn, &at, &pwlen) || pwlen == 0 || pwlen >= sizeof secret) {
        snprintf(out, len, "%s", text);
        return;
    }
    memcpy(secret, dsn + at, pwlen);
    secret[pwlen] = '\0';
    size_t n = 0;
    for (const char *p = text; *p && n + 1 < len;) {
        if (strncmp(p, secret, pwlen) == 0) {
            n += (size_t)snprintf(out + n, len - n, "***");
            p += pwlen;
        } else {
            out[n++] = *p++;
        }
    }
    out[n < len ? n : len - 1] = '\0';
}

void redact_url(const char *url, char *out, size_t len)
{
    size_t at, n;
    if (password_span(url, &at, &n))
        snprintf(out, len, "%.*s***%s", (int)at, url, url + at + n);
    else
        snprintf(out, len, "%s", url);
}
