#ifndef TIDE_REDACT_H
#define TIDE_REDACT_H
#include <stdbool.h>
#include <stddef.h>

/* Copies text to out with the password of secret_of (a URL with
 * user:password@, or a DSN with password=...) replaced by *** wherever it
 * appears; text unchanged when secret_of has no password. An http(s) URL's
 * user name standing alone (http://TOKEN@host/) is a token, its secret too. */
void redact_password(const char *text, const char *secret_of, char *out, size_t len);

/* Copies text to out with every occurrence of secret (NULL or "": none)
 * replaced by ***, cut to len bytes. */
void redact_secret(const char *text, const char *secret, char *out, size_t len);

/* Copies a URL or DSN (well-formed or not) with its secret, as above,
 * replaced by ***, however long. out needs strlen(url) + 4 bytes. */
void redact_url(const char *url, char *out, size_t len);

/* Copies text to out with the secrets of every URL and DSN in it blanked:
 * the password of scheme://user:password@host, the token of
 * http(s)://TOKEN@host, and password=VALUE (DSN keys, URI query
 * parameters), each written as three asterisks. */
void redact_text(const char *text, char *out, size_t len);

#endif
