#ifndef TIDE_CRYPTO_LUA_H
#define TIDE_CRYPTO_LUA_H
#include <lua.h>

/* Adds b64encode, b64decode, hmac, sha256, uuid and random_string to the
 * table on top of the stack (the tide module). */
void crypto_lua_add(lua_State *L);

#endif
