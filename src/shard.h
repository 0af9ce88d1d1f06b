#ifndef TIDE_SHARD_H
#define TIDE_SHARD_H
#include "loop.h"

/* A curl multi handle driven by a loop. libcurl 7.88's cost per request grows
 * with the connections one multi holds, so a thread runs several shards,
 * each with a bounded set of users, all on the thread's one epoll. Opaque
 * above the curl transport: a user is handed its shard, the transport uses it. */
struct shard;

struct shard *shard_new(struct loop *l);
void shard_free(struct shard *s);

#endif
