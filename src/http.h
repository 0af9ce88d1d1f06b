#ifndef TIDE_HTTP_H
#define TIDE_HTTP_H
#include <lua.h>

#include "ctx.h"

/* tide.http: requests on a transport (transport.h), yielding inside a
 * virtual user and blocking (on a private loop) elsewhere. Expects upvalue 1 = ctx. */
int luaopen_tide_http(lua_State *L);

/* Frees every request and transfer the context made (after its shards are idle). */
void http_free_all(struct tctx *ctx);
/* Frees an agent's shared cookie jar (its requests are freed with the context's). */
void agent_free(struct tctx *ctx, struct agent *ag);

#endif
