#ifndef TIDE_CURL_TRANSPORT_H
#define TIDE_CURL_TRANSPORT_H
#include "transport.h"

/* Requests on libcurl easy handles, on the shards' multi handles (shard.c):
 * every scheme, TLS and cookies libcurl handles (one hop at a time: tide.http
 * follows redirects itself). */
extern const struct transport_ops curl_transport;

#endif
