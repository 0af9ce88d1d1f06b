#ifndef TIDE_H1_TRANSPORT_H
#define TIDE_H1_TRANSPORT_H
/* The lean transport: plain-HTTP/1.1 requests over keep-alive sockets of its
 * own, on the thread's loop, responses read by http_parser (README, "HTTP
 * engines"). It carries only what it can carry exactly as libcurl does;
 * h1_carries says which requests those are, and tide.http sends the rest
 * through libcurl. */
#include <stdbool.h>

#include "transport.h"

extern const struct transport_ops h1_transport;

/* Whether q can go through h1_transport with the behaviour libcurl would
 * give it: http://, HTTP/1.1, no Digest auth, no multipart body, and no
 * header line asking for what only libcurl does (Transfer-Encoding, Expect). */
bool h1_carries(const struct treq *q);

#endif
