/* Secrets out of messages: the password of a URL or DSN, wherever the
 * message repeats it. */
#include "redact.h"

#include <stdio.h>
#include <string.h>

/* Where the password of a DSN starts and how long it is (URI userinfo or
 * password=...); false when it has none. */
static bool password_span(const char *dsn, size_t *at, size_t *len)
{
    const char *scheme = strstr(dsn, "://");
    if (scheme) {
        const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?#");
        const char *last_at = NULL, *colon = NULL;
        for (const char *p = auth; p < end; p++)
            if (*p == '@')
                last_at = p;
        for (const char *p = auth; last_at && p < last_at && !colon; p++)
            if (*p == ':')
                colon = p;
        if (!colon)
            return false;
        *at = (size_t)(colon + 1 - dsn);
        *len = (size_t)(last_at - colon - 1);
        return true;
    }
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

