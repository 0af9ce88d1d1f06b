#ifndef TIDE_CURL_TRANSPORT_H
#define TIDE_CURL_TRANSPORT_H
#include "transport.h"

/* Requests on libcurl easy handles, on the shards' multi handles (shard.c):
 * every scheme, TLS, redirects and cookies libcurl handles. */
extern const struct transport_ops curl_transport;

#endif
