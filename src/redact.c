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
    redact_secret(text, secret, out, len);
}

void redact_secret(const char *text, const char *secret, char *out, size_t len)
{
    size_t n = 0, slen = secret ? strlen(secret) : 0;
    if (!len)
        return;
    for (const char *p = text; *p && n + 1 < len;) {
        if (slen && strncmp(p, secret, slen) == 0) {
            n += (size_t)snprintf(out + n, len - n, "***");
            n = n < len ? n : len - 1;
            p += slen;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
}

void redact_url(const char *url, char *out, size_t len)
{
    size_t at, n;
    if (password_span(url, &at, &n))
        snprintf(out, len, "%.*s***%s", (int)at, url, url + at + n);
    else
        snprintf(out, len, "%s", url);
}

static bool scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '.' || c == '-';
}

/* At p, a URL's credentials (scheme://user:secret@ or http(s)://TOKEN@):
 * how many bytes of p come before the secret and how long it is. */
static bool url_at(const char *start, const char *p, size_t *before, size_t *len)
{
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) || (p > start && scheme_char(p[-1])))
        return false;
    const char *q = p;
    while (scheme_char(*q))
        q++;
    if (strncmp(q, "://", 3) != 0)
        return false;
    char url[2048];
    size_t n = strcspn(p, " \t\r\n'\"<>()");
    if (n >= sizeof url)
        n = sizeof url - 1;
    memcpy(url, p, n);
    url[n] = '\0';
    size_t at;
    if (!url_secret_span(url, url + (q - p) + 3, &at, len) || *len == 0)
        return false;
    *before = at;
    return true;
}

/* At p, "password = VALUE" (a DSN's key, or a URI's query parameter). */
static bool password_at(const char *p, size_t *before, size_t *len)
{
    if (strncasecmp(p, "password", 8) != 0)
        return false;
    const char *v = p + 8;
    while (*v == ' ')
        v++;
    if (*v != '=')
        return false;
    v++;
    while (*v == ' ')
        v++;
    *before = (size_t)(v - p);
    *len = *v == '\'' ? strcspn(v + 1, "'") + 2 : strcspn(v, " \t\r\n&'\"");
    return *len > 0;
}

void redact_text(const char *text, char *out, size_t len)
{
    size_t n = 0, before, slen;
    const char *end = text + strlen(text);
    for (const char *p = text; *p && n + 1 < len;) {
        if (url_at(text, p, &before, &slen) || password_at(p, &before, &slen)) {
            n += (size_t)snprintf(out + n, len - n, "%.*s***", (int)before, p);
            p = (size_t)(end - p) > before + slen ? p + before + slen : end;
        } else {
            out[n++] = *p++;
        }
    }
    out[n < len ? n : len - 1] = '\0';
}
