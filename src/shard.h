#ifndef TIDE_SHARD_H
#define TIDE_SHARD_H
#include <curl/curl.h>
#include <stdbool.h>

#include "loop.h"

/* A curl multi handle driven by a loop. libcurl 7.88's cost per request grows
 * with the connections one multi holds, so a thread runs several shards,
 * each with a bounded set of users, all on the thread's one epoll. */
struct shard;

/* A transfer in flight; set as CURLOPT_PRIVATE of its easy handle. */
struct xfer {
    CURL *easy;
    struct shard *shard;
    bool active;
    void (*done)(struct xfer *x, CURLcode result);
};

struct shard *shard_new(struct loop *l);
void shard_free(struct shard *s);

/* Prepares an easy handle to live on shards: socket open/close hooks, private. */
void shard_prepare_easy(struct xfer *x, struct loop *l);

bool shard_add(struct shard *s, struct xfer *x);
void shard_remove(struct xfer *x);

#endif
