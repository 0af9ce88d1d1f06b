#ifndef TIDE_CURL_XFER_H
#define TIDE_CURL_XFER_H
/* Internal to the curl transport (shard.c, curl_transport.c): an easy
 * handle's transfer on a shard's multi handle. */
#include <curl/curl.h>
#include <stdbool.h>

#include "loop.h"
struct shard;

/* A transfer in flight; set as CURLOPT_PRIVATE of its easy handle. */
struct xfer {
    CURL *easy;
    struct shard *shard;
    bool active;
    void (*done)(struct xfer *x, CURLcode result);
};

/* Prepares an easy handle to live on shards: socket open/close hooks, private. */
void shard_prepare_easy(struct xfer *x, struct loop *l);

bool shard_add(struct shard *s, struct xfer *x);
void shard_remove(struct xfer *x);

#endif
