#ifndef TIDE_STATE_H
#define TIDE_STATE_H
#include <lua.h>

#include "ctx.h"

/* A new Lua state with every tide module (http, core, cjson, ...) and its
 * context (loop, metrics, nshards transport shards); NULL when out of
 * memory, with nothing left to free. */
lua_State *tctx_open(struct tctx *ctx, unsigned nshards);
/* lua_close, then tctx_free. */
void tctx_close(struct tctx *ctx);
/* Call after lua_close: the state's objects may still hold handles. */
void tctx_free(struct tctx *ctx);
/* Pushes a table of a "KEY=VALUE" list (later entries win): ctx.env, vu.env. */
void state_push_env(lua_State *L, char *const *env);

#endif
