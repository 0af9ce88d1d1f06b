#include "pg.h"
#include "block.h"
#include "clock.h"
#include "ctx.h"
#include "redact.h"

#include <errno.h>
#include <lauxlib.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MT "tide.pg.connection"
#define MAX_PARAMS 256

/* Unless the DSN (or PGCONNECT_TIMEOUT / PGOPTIONS) says otherwise. */
#define DEFAULT_CONNECT_TIMEOUT_S 10
#define DEFAULT_STATEMENT_TIMEOUT "60s"
#define DEFAULT_STATEMENT_TIMEOUT_MS 60000.0
/* The server cancels a statement at statement_timeout and says so; tide gives
 * up on its own only this much later, when the server has gone silent. */
#define GRACE_S 5
/* How often a wait looks at the Ctrl-C count (a signal usually wakes it sooner). */
#define POLL_SLICE_MS 1000

/* Postgres type OIDs converted to Lua values (pg_type.dat). */
enum { OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26,
       OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

struct conn {
    PGconn *pg;
    double statement_ms;        /* the session's statement_timeout; 0 = none, < 0 = not known */
    const char *closed_by;      /* why tide closed it, for later calls; NULL = by the script */
};

static struct conn *check_conn(lua_State *L)
{
    struct conn *c = luaL_checkudata(L, 1, CONN_MT);
    if (!c->pg) {
        if (c->closed_by)
            luaL_error(L, "pg: connection is closed (after %s)", c->closed_by);
        luaL_error(L, "pg: connection is closed");
    }
    return c;
}

/* libpq's messages should not carry the password, but a DSN it echoes
 * back might: blank out every occurrence of it. */
static const char *conninfo_value(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, keyword) == 0 && o->val && *o->val)
            return o->val;
    return NULL;
}

/* "relation already exists, skipping" and the like are not the user's business. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* ---------------- waiting on the server, with a deadline and Ctrl-C ---------------- */

enum outcome { DONE, TIMED_OUT, INTERRUPTED, LOST, COPY_MODE };

struct waiter {
    const struct tctx *ctx;     /* its Ctrl-C count; NULL-safe */
    uint64_t deadline;          /* monotonic ns; 0 = none */
};

static bool interrupted(const struct tctx *ctx)
{
    return ctx && block_cancelled(ctx);
}

static struct waiter waiter_for(const struct tctx *ctx, double seconds)
{
    struct waiter w = {.ctx = ctx};
    if (seconds > 0)
        w.deadline = clock_now_ns() + seconds_to_ns(seconds);
    return w;
}

/* Until fd is ready for events, the deadline passes or Ctrl-C is pressed. */
static enum outcome wait_socket(const struct waiter *w, int fd, short events)
{
    if (fd < 0)
        return LOST;
    for (;;) {
        if (interrupted(w->ctx))
            return INTERRUPTED;
        int ms = POLL_SLICE_MS;
        if (w->deadline) {
            uint64_t now = clock_now_ns();
            if (now >= w->deadline)
                return TIMED_OUT;
            uint64_t left = (w->deadline - now + NS_PER_MS - 1) / NS_PER_MS;
            if (left < (uint64_t)ms)
                ms = (int)left;
        }
        /* the cancel eventfd wakes the wait at a Ctrl-C; the count decides */
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = w->ctx ? w->ctx->cancel_fd : -1, .events = POLLIN}};
        int rc = poll(p, 2, ms);
        if (rc > 0 && p[0].revents)
            return DONE;
        uint64_t presses;
        if (rc > 0 && p[1].revents && read(p[1].fd, &presses, sizeof presses) < 0) {
            /* drained by another wait already */
        }
        if (rc < 0 && errno != EINTR)
            return LOST;
    }
}

/* ---------------- connecting ---------------- */

/* A duration as PostgreSQL reads statement_timeout: a number with one of
 * its units, milliseconds when there is none. */
static bool parse_pg_ms(const char *s, double *ms)
{
    static const struct { const char *unit; double ms; } units[] = {
        {"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"min", 60e3}, {"h", 3600e3}, {"d", 86400e3}, {"", 1},
    };
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0)
        return false;
    size_t len = strcspn(end, " \t\n\r'\"\\");
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].unit) == len && strncmp(end, units[i].unit, len) == 0) {
            *ms = v * units[i].ms;
            return true;
        }
    return false;
}

/* statement_timeout as set in libpq's options ("-c statement_timeout=5s",
 * "--statement-timeout=5s"; the last one counts, as for the server): true
 * when set, *ms < 0 when tide cannot read the value. */
static bool options_statement_ms(const char *options, double *ms)
{
    bool found = false;
    for (const char *p = options; p && *p; p++) {
        if (strncmp(p, "statement_timeout=", 18) != 0 && strncmp(p, "statement-timeout=", 18) != 0)
            continue;
        found = true;
        if (!parse_pg_ms(p + 18, ms))
            *ms = -1;
    }
    return found;
}

/* How the connection is made: the DSN as given, plus client_encoding and,
 * when neither the DSN nor PGOPTIONS sets one, tide's statement_timeout. */
struct plan {
    double connect_s;           /* 0 = no limit */
    double statement_ms;
    char options[2048];
};

static bool plan_connect(const PQconninfoOption *parsed, struct plan *p)
{
    const char *ct = conninfo_value(parsed, "connect_timeout");
    if (!ct)
        ct = getenv("PGCONNECT_TIMEOUT");
    p->connect_s = ct && *ct ? strtod(ct, NULL) : DEFAULT_CONNECT_TIMEOUT_S;
    if (!isfinite(p->connect_s) || p->connect_s < 0)
        p->connect_s = 0;
    const char *opts = conninfo_value(parsed, "options");
    if (!opts)
        opts = getenv("PGOPTIONS");
    if (options_statement_ms(opts, &p->statement_ms)) {
        int n = snprintf(p->options, sizeof p->options, "%s", opts);
        return n >= 0 && (size_t)n < sizeof p->options;
    }
    p->statement_ms = DEFAULT_STATEMENT_TIMEOUT_MS;
    int n = snprintf(p->options, sizeof p->options, "%s%s-c statement_timeout=%s", opts ? opts : "",
                     opts ? " " : "", DEFAULT_STATEMENT_TIMEOUT);
    return n >= 0 && (size_t)n < sizeof p->options;
}

/* libpq's connect_timeout is ignored by PQconnectPoll: tide keeps it. */
static enum outcome connect_poll(PGconn *pg, const struct waiter *w)
{
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            return LOST;
        enum outcome o = wait_socket(w, PQsocket(pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        if (o != DONE)
            return o;
        st = PQconnectPoll(pg);
    }
    return DONE;
}

static int connect_failed(lua_State *L, struct conn *c, enum outcome o, double limit_s, const char *dsn)
{
    char msg[1024];
    const char *host = c->pg ? PQhost(c->pg) : NULL, *port = c->pg ? PQport(c->pg) : NULL;
    if (o == TIMED_OUT)
        snprintf(msg, sizeof msg, "timeout: no connection to %s:%s within %gs (connect_timeout; set "
                 "connect_timeout=SECONDS in the DSN, 0 for no limit)", host ? host : "?", port ? port : "?",
                 limit_s);
    else if (o == INTERRUPTED)
        snprintf(msg, sizeof msg, "interrupted while connecting to %s:%s", host ? host : "?", port ? port : "?");
    else
        snprintf(msg, sizeof msg, "%s", c->pg ? PQerrorMessage(c->pg) : "out of memory");
    PQfinish(c->pg);
    c->pg = NULL;
    char clean[1200];
    redact_password(msg, dsn, clean, sizeof clean);
    return luaL_error(L, "pg.connect: %s", clean);
}

static int l_connect(lua_State *L)
{
    struct tctx *ctx = tctx_get(L);
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
    struct plan plan;
    bool planned = plan_connect(parsed, &plan);
    PQconninfoFree(parsed);
    if (!planned)
        return luaL_error(L, "pg.connect: the DSN's options are too long");
    struct conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    *c = (struct conn){.statement_ms = plan.statement_ms};
    luaL_setmetatable(L, CONN_MT);
    /* later keywords override what the expanded DSN says */
    const char *const keys[] = {"dbname", "client_encoding", "options", NULL};
    const char *const vals[] = {dsn, "UTF8", plan.options, NULL};
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD)
        return connect_failed(L, c, LOST, 0, dsn);
    struct waiter w = waiter_for(ctx, plan.connect_s);
    enum outcome o = connect_poll(c->pg, &w);
    if (o != DONE)
        return connect_failed(L, c, o, plan.connect_s, dsn);
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    if (PQsetnonblocking(c->pg, 1) != 0)
        return connect_failed(L, c, LOST, 0, dsn);
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

/* ---------------- statements ---------------- */

/* How long one call may wait for the server: its statement_timeout and a
 * grace, so that the server's own cancel (a clear SQLSTATE 57014) comes
 * first; 0 = no limit (statement_timeout 0, or a value tide cannot read). */
static double call_limit_s(const struct conn *c)
{
    return c->statement_ms > 0 ? c->statement_ms / 1e3 + GRACE_S : 0;
}

/* Sends what is queued and reads every result of the call; keeps the first
 * error (as PQexec does), else the last result. */
static enum outcome await_result(PGconn *pg, const struct waiter *w, PGresult **out)
{
    *out = NULL;
    int f;
    while ((f = PQflush(pg)) == 1) {
        enum outcome o = wait_socket(w, PQsocket(pg), POLLIN | POLLOUT);
        if (o != DONE)
            return o;
        if (!PQconsumeInput(pg))
            return LOST;
    }
    if (f < 0)
        return LOST;
    for (;;) {
        while (PQisBusy(pg)) {
            enum outcome o = wait_socket(w, PQsocket(pg), POLLIN);
            if (o == DONE && !PQconsumeInput(pg))
                o = LOST;
            if (o != DONE) {
                PQclear(*out);
                *out = NULL;
                return o;
            }
        }
        PGresult *r = PQgetResult(pg);
        if (!r)
            return DONE;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            PQclear(*out);
            *out = NULL;
            return COPY_MODE;
        }
        if (*out && PQresultStatus(*out) == PGRES_FATAL_ERROR) {
            PQclear(r);
        } else {
            PQclear(*out);
            *out = r;
        }
    }
}

static enum outcome send_and_wait(lua_State *L, struct conn *c, int sent, PGresult **res)
{
    *res = NULL;
    if (!sent)
        return LOST;
    struct waiter w = waiter_for(tctx_get(L), call_limit_s(c));
    return await_result(c->pg, &w, res);
}

static void close_after(struct conn *c, enum outcome o)
{
    static const char *const why[] = {[TIMED_OUT] = "a timeout", [INTERRUPTED] = "an interrupt",
                                      [COPY_MODE] = "an unsupported COPY"};
    PQfinish(c->pg);
    c->pg = NULL;
    c->closed_by = why[o];
}

static const char *trimmed(lua_State *L, const char *msg)
{
    size_t len = strlen(msg);
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
        len--;
    return lua_pushlstring(L, msg, len);
}

/* A call that got no result. Past a timeout, an interrupt or a COPY the
 * protocol is mid-statement: the connection is closed (which also rolls
 * back an open transaction on the server). */
static void call_failed(lua_State *L, struct conn *c, const char *what, enum outcome o)
{
    if (o == LOST)
        luaL_error(L, "pg: %s: %s", what, trimmed(L, PQerrorMessage(c->pg)));
    char why[160];
    snprintf(why, sizeof why, "no answer from the server within %gs (statement_timeout %gs + %ds)",
             call_limit_s(c), c->statement_ms / 1e3, GRACE_S);
    close_after(c, o);
    if (o == TIMED_OUT)
        luaL_error(L, "pg: %s: timeout: %s; the connection is closed", what, why);
    if (o == INTERRUPTED)
        luaL_error(L, "pg: %s: interrupted; the connection is closed", what);
    luaL_error(L, "pg: %s: COPY is not supported; the connection is closed", what);
}

/* For a statement the server cancelled at statement_timeout: which limit,
 * and where to change it. */
static const char *timeout_hint(lua_State *L, const struct conn *c, const char *state, const char *msg)
{
    if (strcmp(state, "57014") != 0 || !strstr(msg, "statement timeout"))
        return "";
    if (c->statement_ms < 0)
        return "; statement_timeout comes from the DSN's options";
    char hint[160];
    snprintf(hint, sizeof hint, "; statement_timeout is %gs: set options='-c statement_timeout=...' in the "
             "DSN, 0 for no limit", c->statement_ms / 1e3);
    return lua_pushstring(L, hint);
}

/* Raises the server's error of a failed call (res is cleared). */
static void result_failed(lua_State *L, struct conn *c, const char *what, PGresult *res)
{
    const char *field = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char state[8];
    snprintf(state, sizeof state, "%s", field ? field : "");
    const char *msg = trimmed(L, res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
    PQclear(res);
    luaL_error(L, "pg: %s: %s (SQLSTATE %s%s)", what, msg, state[0] ? state : "none",
               timeout_hint(L, c, state, msg));
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
    PGresult *res;
    enum outcome o = send_and_wait(L, c, PQsendQueryParams(c->pg, sql, n, NULL, values, NULL, NULL, 0), &res);
    if (o != DONE)
        call_failed(L, c, what, o);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        result_failed(L, c, what, res);
    return res;
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
    PGresult *res;
    enum outcome o = send_and_wait(L, c, PQsendQuery(c->pg, sql), &res);
    if (o != DONE)
        call_failed(L, c, sql, o);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        result_failed(L, c, sql, res);
    PQclear(res);
}

/* After an error in a transaction: never raises (the first error is the one to report). */
static void rollback_quietly(lua_State *L, struct conn *c)
{
    PGresult *res;
    enum outcome o = send_and_wait(L, c, PQsendQuery(c->pg, "ROLLBACK"), &res);
    PQclear(res);
    if (o != DONE && o != LOST)
        close_after(c, o);
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
            rollback_quietly(L, c);
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

/* Every function has the state's context as upvalue 1 (Ctrl-C count). */
int luaopen_tide_pg(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"query", l_query}, {"exec", l_exec}, {"transaction", l_transaction},
        {"close", l_close}, {NULL, NULL},
    };
    if (luaL_newmetatable(L, CONN_MT)) {
        luaL_newlibtable(L, methods);
        lua_pushvalue(L, lua_upvalueindex(1));
        luaL_setfuncs(L, methods, 1);
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
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushcclosure(L, l_connect, 1);
    lua_setfield(L, -2, "connect");
    return 1;
}
