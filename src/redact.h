#ifndef TIDE_REDACT_H
#define TIDE_REDACT_H
#include <stdbool.h>
#include <stddef.h>

/* Copies text to out with the password of secret_of (a URL with
 * user:password@, or a DSN with password=...) replaced by *** wherever it
 * appears; text unchanged when secret_of has no password. */
void redact_password(const char *text, const char *secret_of, char *out, size_t len);

#endif
