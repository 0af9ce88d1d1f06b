#include "pg.h"
#include "redact.h"

#include <lauxlib.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MT "tide.pg.connection"
#define MAX_PARAMS 256

/* Postgres type OIDs converted to Lua values (pg_type.dat). */
enum { OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26,
       OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

struct conn {
    PGconn *pg;
};

static struct conn *check_conn(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (!c->pg)
        luaL_error(L, "pg: connection is closed");
    return c;
}

/* libpq's messages should not carry the password, but a DSN it echoes
 * back might: blank out every occurrence of it. */
static const char *scrub(lua_State *L, const char *msg, const char *password)
{
    if (!password || !*password)
        return lua_pushstring(L, msg);
    return luaL_gsub(L, msg, password, "***");
}

static const char *dsn_password(lua_State *L, const char *dsn)
{
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    const char *pw = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val)
            pw = lua_pushstring(L, o->val);
    PQconninfoFree(opts);
    return pw;
}

/* "relation already exists, skipping" and the like are not the user's business. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int l_connect(lua_State *L)
{
    const char *dsn = luaL_checkstring(L, 1);
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(dsn, &perr);
    if (!parsed) {
        lua_pushstring(L, perr ? perr : "out of memory");
        PQfreemem(perr);
        char clean[2048];
        redact_password(lua_tostring(L, -1), dsn, clean, sizeof clean);
        return luaL_error(L, "pg.connect: malformed DSN: %s", clean);
    }
    PQconninfoFree(parsed);
    const char *pw = dsn_password(L, dsn);
    struct conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->pg = NULL;
    luaL_setmetatable(L, CONN_MT);
    c->pg = PQconnectdb(dsn);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        const char *msg = c->pg ? PQerrorMessage(c->pg) : "out of memory";
        scrub(L, msg, pw);
        PQfinish(c->pg);
        c->pg = NULL;
        return luaL_error(L, "pg.connect: %s", lua_tostring(L, -1));
    }
    PQsetClientEncoding(c->pg, "UTF8");
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    return 1;
}

static const char *param_text(lua_State *L, int idx, int n)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return NULL;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER: {
        char buf[64];
        if (lua_isinteger(L, idx))
            snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, idx));
        else
            snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, idx)); /* every digit */
        lua_pushstring(L, buf);
        lua_replace(L, idx);
        return lua_tostring(L, idx);
    }
    case LUA_TSTRING:
        return lua_tostring(L, idx);
    default:
        luaL_error(L, "pg: parameter $%d: %s cannot be sent (nil, boolean, number or string)",
                   n, luaL_typename(L, idx));
        return NULL;
    }
}

/* Runs sql with the Lua arguments from first on as $1..$n. */
static PGresult *run(lua_State *L, struct conn *c, const char *what, int first)
{
    const char *sql = luaL_checkstring(L, first - 1);
    int n = lua_gettop(L) - first + 1;
    if (n > MAX_PARAMS)
        luaL_error(L, "pg: %s: at most %d parameters", what, MAX_PARAMS);
    const char *values[MAX_PARAMS];
    for (int i = 0; i < n; i++)
        values[i] = param_text(L, first + i, i + 1);
    PGresult *res = PQexecParams(c->pg, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    const char *field = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char state[8];
    snprintf(state, sizeof state, "%s", field ? field : "");
    lua_pushstring(L, res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
    PQclear(res);
    const char *msg = lua_tostring(L, -1);
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    luaL_error(L, "pg: %s: %s (SQLSTATE %s)", what, lua_pushlstring(L, msg, len), state[0] ? state : "none");
    return NULL;
}

static void push_value(lua_State *L, PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        lua_pushnil(L);
        return;
    }
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID:
        lua_pushinteger(L, strtoll(v, NULL, 10));
        return;
    case OID_FLOAT4: case OID_FLOAT8: case OID_NUMERIC:
        lua_pushnumber(L, strtod(v, NULL)); /* a float even when whole; NaN and Infinity too */
        return;
    default:
        lua_pushlstring(L, v, (size_t)PQgetlength(res, row, col));
    }
}

static void push_rows(lua_State *L, PGresult *res)
{
    int rows = PQntuples(res), cols = PQnfields(res);
    lua_createtable(L, rows, 0);
    for (int r = 0; r < rows; r++) {
        lua_createtable(L, 0, cols);
        for (int c = 0; c < cols; c++) {
            push_value(L, res, r, c);
            lua_setfield(L, -2, PQfname(res, c));
        }
        lua_rawseti(L, -2, r + 1);
    }
}

/* Results are copied into Lua before anything can raise, so no PGresult leaks. */
static int l_query(lua_State *L)
{
    struct conn *c = check_conn(L);
    PGresult *res = run(L, c, "query", 3);
    lua_checkstack(L, 8);
    push_rows(L, res);
    PQclear(res);
    return 1;
}

static int l_exec(lua_State *L)
{
    struct conn *c = check_conn(L);
    PGresult *res = run(L, c, "exec", 3);
    const char *n = PQcmdTuples(res);
    lua_pushinteger(L, *n ? strtoll(n, NULL, 10) : 0);
    PQclear(res);
    return 1;
}

static void simple(lua_State *L, struct conn *c, const char *sql)
{
    PGresult *res = PQexec(c->pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok)
        luaL_error(L, "pg: %s failed: %s", sql, PQerrorMessage(c->pg));
}

/* conn:transaction(fn): BEGIN; fn(conn); COMMIT — or ROLLBACK and re-raise. */
static int l_transaction(lua_State *L)
{
    struct conn *c = check_conn(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    simple(L, c, "BEGIN");
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
        if (c->pg)
            PQclear(PQexec(c->pg, "ROLLBACK"));
        return lua_error(L);
    }
    simple(L, c, "COMMIT");
    return lua_gettop(L) - 2;
}

static int l_close(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    PQfinish(c->pg);
    c->pg = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (c->pg)
        lua_pushfstring(L, "tide.pg.connection: %s@%s:%s/%s", PQuser(c->pg), PQhost(c->pg),
                        PQport(c->pg), PQdb(c->pg));
    else
        lua_pushliteral(L, "tide.pg.connection: closed");
    return 1;
}

int luaopen_tide_pg(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"query", l_query}, {"exec", l_exec}, {"transaction", l_transaction},
        {"close", l_close}, {NULL, NULL},
    };
    if (luaL_newmetatable(L, CONN_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_connect);
    lua_setfield(L, -2, "connect");
    return 1;
}
