"""tide.pg: PostgreSQL from scenarios (the demo stack's database).

Each test works in a scratch schema of its own (SCHEMA in the scenario's
env; the Lua code sets search_path to it), dropped afterwards. The
scenarios assert with error(): an error in setup makes tide exit 3 with the
message on stderr, and every scenario prints a marker when all its
assertions held."""

import uuid

import pytest

from demo_stack import normal_stack  # noqa: F401
from servers import free_port

PASSWORD = "demo-password"

PRELUDE = """
local pg = require "tide.pg"
local function eq(what, got, want)
  if got ~= want then
    error(("%s: got %s (%s), expected %s (%s)"):format(what, tostring(got), math.type(got) or type(got),
      tostring(want), math.type(want) or type(want)), 2)
  end
end
local function connect(ctx)
  local db = pg.connect(ctx.env.DATABASE_URL)
  db:exec("SET search_path TO " .. ctx.env.SCHEMA)
  return db
end
"""


@pytest.fixture
def schema(normal_stack):
    name = "t_" + uuid.uuid4().hex[:12]
    normal_stack.execute(f"CREATE SCHEMA {name}")
    yield name
    normal_stack.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def pg_run(run_tide, normal_stack, schema):
    """pg_run(lua_body_returning_scenario_table, *args) with PRELUDE in front
    and DATABASE_URL / SCHEMA in the env."""
    def run(body, *args, **kw):
        return run_tide(PRELUDE + body, "--env", f"DATABASE_URL={normal_stack.database_url}",
                        "--env", f"SCHEMA={schema}", *args, **kw)
    return run


def passed(res, marker):
    assert res.rc == 0, str(res)
    assert marker in res.stdout, str(res)


# ------------------------------------------------------------------- types


def test_types_come_back_as_lua_types(pg_run):
    res = pg_run("""
return {
  setup = function(ctx)
    local db <close> = connect(ctx)
    db:exec("SET TIME ZONE 'UTC'")
    local rows = db:query([[
      SELECT 1::int2 AS i2, (-32768)::int2 AS i2min, (-2147483648)::int4 AS i4, 9007199254740993::int8 AS i8,
             (-9223372036854775808)::int8 AS i8min, 9223372036854775807::int8 AS i8max,
             1.5::float4 AS f4, 2.25::float8 AS f8, -0.125::float8 AS f8neg, 12.345::numeric AS num,
             true AS t, false AS f, 'héllo ''quoted''' AS txt, ''::text AS empty, NULL::int AS nul,
             NULL::text AS nultext, '{"a": [1, 2]}'::jsonb AS j, '2024-01-02 03:04:05+00'::timestamptz AS ts]])
    eq("rows", #rows, 1)
    local r = rows[1]
    eq("math.type(i2)", math.type(r.i2), "integer"); eq("i2", r.i2, 1)
    eq("math.type(i2min)", math.type(r.i2min), "integer"); eq("i2min", r.i2min, -32768)
    eq("math.type(i4)", math.type(r.i4), "integer"); eq("i4", r.i4, -2147483648)
    eq("math.type(i8)", math.type(r.i8), "integer"); eq("i8", r.i8, 9007199254740993)
    eq("i8min", r.i8min, math.mininteger); eq("i8max", r.i8max, math.maxinteger)
    eq("math.type(f4)", math.type(r.f4), "float"); eq("f4", r.f4, 1.5)
    eq("math.type(f8)", math.type(r.f8), "float"); eq("f8", r.f8, 2.25)
    eq("f8neg", r.f8neg, -0.125)
    eq("type(num)", type(r.num), "number"); eq("num", r.num, 12.345)
    eq("t", r.t, true); eq("f", r.f, false)
    eq("txt", r.txt, "héllo 'quoted'"); eq("empty", r.empty, "")
    eq("nul", r.nul, nil); eq("nultext", r.nultext, nil)
    eq("type(j)", type(r.j), "string"); eq("j", r.j, '{"a": [1, 2]}')
    eq("type(ts)", type(r.ts), "string"); eq("ts", r.ts, "2024-01-02 03:04:05+00")

    -- the same through a table: stored with parameters, read back
    db:exec([[CREATE TABLE typed (i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, num numeric, b bool,
                                  txt text, j jsonb, ts timestamptz)]])
    eq("insert", db:exec("INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
      7, 123456, 9007199254740993, "0.5", "1e-3", "3.5", true, "a\\tb", '{"k": "v"}',
      "2024-06-30 23:59:59+00"), 1)
    eq("insert nulls", db:exec("INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
      nil, nil, nil, nil, nil, nil, nil, nil, nil, nil), 1)
    rows = db:query("SELECT * FROM typed ORDER BY i2 NULLS LAST")
    eq("rows", #rows, 2)
    r = rows[1]
    eq("math.type(i2)", math.type(r.i2), "integer"); eq("i2", r.i2, 7)
    eq("math.type(i4)", math.type(r.i4), "integer"); eq("i4", r.i4, 123456)
    eq("i8", r.i8, 9007199254740993)
    eq("math.type(f4)", math.type(r.f4), "float"); eq("f4", r.f4, 0.5)
    eq("math.type(f8)", math.type(r.f8), "float"); eq("f8", r.f8, 0.001)
    eq("num", r.num, 3.5)
    eq("b", r.b, true); eq("txt", r.txt, "a\\tb"); eq("j", r.j, '{"k": "v"}')
    eq("ts", r.ts, "2024-06-30 23:59:59+00")
    for _, col in ipairs { "i2", "i4", "i8", "f4", "f8", "num", "b", "txt", "j", "ts" } do
      eq("NULL " .. col, rows[2][col], nil)
    end
    -- no rows: an empty list
    rows = db:query("SELECT * FROM typed WHERE false")
    eq("type(empty result)", type(rows), "table"); eq("#empty result", #rows, 0)
    print("TYPES_OK")
  end,
  run = function() end,
}
""")
    passed(res, "TYPES_OK")


def test_integral_float8_is_a_lua_float(pg_run):
    """float4/float8 are floats even when the value is integral (SELECT
    3::float8 must not come back as the Lua integer 3)."""
    res = pg_run("""
return {
  setup = function(ctx)
    local db <close> = connect(ctx)
    local r = db:query("SELECT 3::float8 AS f8, 4::float4 AS f4, 1e15::float8 AS big")[1]
    eq("math.type(3::float8)", math.type(r.f8), "float"); eq("f8", r.f8, 3.0)
    eq("math.type(4::float4)", math.type(r.f4), "float"); eq("f4", r.f4, 4.0)
    eq("math.type(1e15::float8)", math.type(r.big), "float")
    print("FLOATS_OK")
  end,
  run = function() end,
}
""")
    passed(res, "FLOATS_OK")


# -------------------------------------------------------------- parameters


def test_parameters_are_sent_as_data(pg_run, normal_stack, schema):
    evil = "x'); DROP TABLE t; --"
    res = pg_run("""
return {
  setup = function(ctx)
    local db <close> = connect(ctx)
    db:exec("CREATE TABLE t (id serial PRIMARY KEY, txt text, b bool, i int8, n int4)")
    local quoted = [[it's "quoted" \\ back\\slash; $1 ?]]
    eq("insert", db:exec("INSERT INTO t (txt, b, i, n) VALUES ($1, $2, $3, $4)", quoted, true, 42, nil), 1)
    eq("insert", db:exec("INSERT INTO t (txt, b, i, n) VALUES ($1, $2, $3, $4)", ctx.env.EVIL, false,
      math.maxinteger, -7), 1)
    eq("insert", db:exec("INSERT INTO t (txt, b, i, n) VALUES ($1, $2, $3, $4)", nil, nil, math.mininteger, 0), 1)
    local rows = db:query("SELECT txt, b, i, n FROM t ORDER BY id")
    eq("rows", #rows, 3)
    eq("txt 1", rows[1].txt, quoted); eq("b 1", rows[1].b, true); eq("i 1", rows[1].i, 42); eq("n 1", rows[1].n, nil)
    eq("txt 2", rows[2].txt, ctx.env.EVIL); eq("b 2", rows[2].b, false)
    eq("i 2", rows[2].i, math.maxinteger); eq("n 2", rows[2].n, -7)
    eq("txt 3", rows[3].txt, nil); eq("b 3", rows[3].b, nil); eq("i 3", rows[3].i, math.mininteger)
    -- parameters in WHERE, and nil compares as NULL
    eq("where", #db:query("SELECT id FROM t WHERE txt = $1", ctx.env.EVIL), 1)
    eq("where b", #db:query("SELECT id FROM t WHERE b = $1 AND i = $2", true, 42), 1)
    eq("is null", db:query("SELECT $1::text IS NULL AS isnull", nil)[1].isnull, true)
    eq("echo", db:query("SELECT $1::text AS s", ctx.env.EVIL)[1].s, ctx.env.EVIL)
    -- the table is still there
    eq("to_regclass", db:query("SELECT to_regclass('t')::text AS r")[1].r, "t")
    -- a table cannot be sent
    local ok, err = pcall(db.query, db, "SELECT $1::text", {})
    eq("table parameter rejected", ok, false)
    if not tostring(err):find("$1", 1, true) then error("table parameter: " .. tostring(err)) end
    print("PARAMS_OK")
  end,
  run = function() end,
}
""", "--env", f"EVIL={evil}")
    passed(res, "PARAMS_OK")
    rows = normal_stack.query(f"SELECT txt FROM {schema}.t ORDER BY id")
    assert rows == [('it\'s "quoted" \\ back\\slash; $1 ?',), (evil,), (None,)], rows


def test_float_parameters(pg_run):
    res = pg_run("""
return {
  setup = function(ctx)
    local db <close> = connect(ctx)
    for _, v in ipairs { 1.25, 0.1, -2.5e-300, 1e300, 3.0, 2^53 + 0.0, 1 / 3 } do
      local r = db:query("SELECT $1::float8 AS f, $1::text AS s", v)[1]
      eq(("float8 round trip of %.17g (sent as %s)"):format(v, r.s), r.f, v)
    end
    eq("numeric", db:query("SELECT $1::numeric * 2 AS n", 0.75)[1].n, 1.5)
    print("FLOAT_PARAMS_OK")
  end,
  run = function() end,
}
""")
    passed(res, "FLOAT_PARAMS_OK")


# ------------------------------------------------------ exec, transactions


def test_exec_and_transactions(pg_run, normal_stack, schema):
    res = pg_run("""
return {
  setup = function(ctx)
    local db <close> = connect(ctx)
    local other <close> = connect(ctx)
    eq("create", db:exec("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL)"), 0)
    eq("insert 5", db:exec("INSERT INTO acc SELECT g, 0 FROM generate_series(1, 5) g"), 5)
    eq("update 3", db:exec("UPDATE acc SET v = v + 1 WHERE id <= $1", 3), 3)
    eq("update none", db:exec("UPDATE acc SET v = 1 WHERE id > 100"), 0)
    eq("delete 1", db:exec("DELETE FROM acc WHERE id = $1", 5), 1)
    eq("select via exec", db:exec("SELECT * FROM acc"), 4)

    -- commit: visible to another connection, fn's results returned
    local a, b = db:transaction(function(tx)
      eq("tx is the connection", tx, db)
      tx:exec("INSERT INTO acc VALUES (10, 10)")
      tx:exec("UPDATE acc SET v = 100 WHERE id = 1")
      return "done", 2
    end)
    eq("transaction result 1", a, "done"); eq("transaction result 2", b, 2)
    eq("committed (other connection)", other:query("SELECT count(*) AS n FROM acc")[1].n, 5)
    eq("committed update", other:query("SELECT v FROM acc WHERE id = 1")[1].v, 100)

    -- error() inside: rolled back, the error comes out unchanged
    local ok, err = pcall(db.transaction, db, function(tx)
      tx:exec("INSERT INTO acc VALUES (11, 11)")
      tx:exec("UPDATE acc SET v = -1")
      error("boom in the transaction", 0)
    end)
    eq("error propagates", ok, false)
    eq("error message", err, "boom in the transaction")
    eq("rolled back (same connection)", db:query("SELECT count(*) AS n FROM acc")[1].n, 5)
    eq("rolled back (other connection)", other:query("SELECT count(*) AS n FROM acc")[1].n, 5)
    eq("update rolled back", db:query("SELECT v FROM acc WHERE id = 1")[1].v, 100)

    -- a server error inside: rolled back too, with the server's message
    ok, err = pcall(db.transaction, db, function(tx)
      tx:exec("INSERT INTO acc VALUES (12, 12)")
      tx:exec("INSERT INTO acc VALUES (1, 1)")   -- duplicate key
    end)
    eq("server error propagates", ok, false)
    if not tostring(err):find("duplicate key", 1, true) then error("tx server error: " .. tostring(err)) end
    eq("rolled back after server error", db:query("SELECT count(*) AS n FROM acc WHERE id = 12")[1].n, 0)

    -- error objects (tables) come out as they went in
    local obj = { code = 7 }
    ok, err = pcall(db.transaction, db, function() error(obj) end)
    eq("error object", err, obj)

    -- the connection is usable afterwards, outside any transaction
    eq("usable", db:exec("INSERT INTO acc VALUES (20, 20)"), 1)
    eq("autocommit after tx", other:query("SELECT count(*) AS n FROM acc WHERE id = 20")[1].n, 1)
    print("TX_OK")
  end,
  run = function() end,
}
""")
    passed(res, "TX_OK")
    rows = normal_stack.query(f"SELECT id, v FROM {schema}.acc ORDER BY id")
    assert rows == [(1, 100), (2, 1), (3, 1), (4, 0), (10, 10), (20, 20)], rows


# ------------------------------------------------------------------ errors


def test_server_errors_carry_sqlstate(pg_run):
    res = pg_run("""
return {
  setup = function(ctx)
    local db <close> = connect(ctx)
    local ok, err = pcall(db.query, db, "SELEC 1")
    eq("syntax error raises", ok, false)
    err = tostring(err)
    if not err:find("pg: query:", 1, true) or not err:find("SQLSTATE 42601", 1, true)
       or not err:find("syntax error", 1, true) then
      error("syntax error message: " .. err)
    end
    db:exec("CREATE TABLE u (k text PRIMARY KEY)")
    db:exec("INSERT INTO u VALUES ($1)", "a")
    ok, err = pcall(db.exec, db, "INSERT INTO u VALUES ($1)", "a")
    eq("unique violation raises", ok, false)
    err = tostring(err)
    if not err:find("pg: exec:", 1, true) or not err:find("SQLSTATE 23505", 1, true)
       or not err:find("duplicate key", 1, true) then
      error("unique violation message: " .. err)
    end
    ok, err = pcall(db.query, db, "SELECT * FROM no_such_table")
    if ok or not tostring(err):find("SQLSTATE 42P01", 1, true) then error("undefined table: " .. tostring(err)) end
    -- still usable
    eq("after errors", db:query("SELECT count(*) AS n FROM u")[1].n, 1)
    -- a closed connection says so
    db:close()
    ok, err = pcall(db.query, db, "SELECT 1")
    if ok or not tostring(err):find("closed", 1, true) then error("closed connection: " .. tostring(err)) end
    db:close()   -- twice is fine
    print("ERRORS_OK")
  end,
  run = function() end,
}
""")
    passed(res, "ERRORS_OK")


CONNECT = """
local pg = require "tide.pg"
return {
  setup = function(ctx) pg.connect(ctx.env.DSN) end,
  run = function() end,
}
"""


def _connect_fails(run_tide, dsn, secret, *expect):
    res = run_tide(CONNECT, "--env", f"DSN={dsn}", timeout=30)
    assert res.rc == 3, str(res)
    assert "pg.connect" in res.stderr, str(res)
    for text in expect:
        assert text in res.stderr, f"{text!r} missing\n{res}"
    assert secret not in res.stderr and secret not in res.stdout, f"the password {secret!r} leaked\n{res}"
    return res


def test_connect_refused_hides_password(run_tide):
    port = free_port()
    _connect_fails(run_tide, f"postgresql://demo:{PASSWORD}@127.0.0.1:{port}/demo", PASSWORD,
                   "Connection refused", str(port))


def test_connect_wrong_password_hides_password(run_tide, normal_stack):
    host_port = normal_stack.database_url.split("@", 1)[1].split("/", 1)[0]
    secret = "wrong-secret-pw"
    _connect_fails(run_tide, f"postgresql://demo:{secret}@{host_port}/demo", secret,
                   "password authentication failed")


def test_connect_keyword_dsn_wrong_password_hides_password(run_tide, normal_stack):
    host, port = normal_stack.database_url.split("@", 1)[1].split("/", 1)[0].split(":")
    secret = "wrong-secret-kw"
    _connect_fails(run_tide, f"host={host} port={port} dbname=demo user=demo password={secret}", secret,
                   "password authentication failed")


@pytest.mark.parametrize("dsn", [
    "host=127.0.0.1 port",                                          # keyword form, no '='
    f"postgresql://demo:{PASSWORD}@[127.0.0.1/demo",               # URI, unclosed IPv6 bracket
    f"postgresql://demo:{PASSWORD}@127.0.0.1:5432/demo?bogus=1",   # URI, unknown parameter
], ids=["keyword-missing-equals", "uri-unclosed-bracket", "uri-unknown-parameter"])
def test_malformed_dsn(run_tide, dsn):
    _connect_fails(run_tide, dsn, PASSWORD, "malformed DSN")


# --------------------------------------------------- connections' lifetime


def test_close_and_garbage_collection_release_connections(pg_run):
    # max_connections is 200 in the demo stack: 300 connections that were
    # never closed by hand must be closed by <close> / the garbage collector
    res = pg_run("""
local function backends(db)
  return db:query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = 'demo' AND usename = 'demo'")[1].n
end
return {
  setup = function(ctx)
    local watch <close> = connect(ctx)
    local before = backends(watch)
    for i = 1, 150 do
      local db <close> = pg.connect(ctx.env.DATABASE_URL)
      eq("query " .. i, db:query("SELECT $1::int AS i", i)[1].i, i)
    end
    for i = 1, 150 do
      pg.connect(ctx.env.DATABASE_URL)
      if i % 20 == 0 then collectgarbage() collectgarbage() end
    end
    collectgarbage() collectgarbage()
    -- the server notices closed connections asynchronously: wait a little
    local n
    for _ = 1, 50 do
      n = backends(watch)
      if n <= before then break end
      require("tide").sleep(0.1)
    end
    if n > before then error(("%d connections open, %d before"):format(n, before)) end
    print("LIFETIME_OK")
  end,
  run = function() end,
}
""")
    passed(res, "LIFETIME_OK")


# ------------------------------------------------------------ inside VUs


def test_pg_in_virtual_users(pg_run, normal_stack, schema):
    normal_stack.execute(f"CREATE TABLE {schema}.hits (vu int NOT NULL, at timestamptz DEFAULT now())")
    res = pg_run("""
local check = require "tide.check"
return {
  options = { executor = "per-vu-iterations", vus = 4, iterations = 10,
              thresholds = { ["checks{check:row inserted}"] = "rate == 1" } },
  run = function(vu)
    local db <close> = connect(vu)
    local n = db:exec("INSERT INTO hits (vu) VALUES ($1)", vu.id)
    check(n, { ["row inserted"] = n == 1 })
  end,
  teardown = function(ctx)
    local db <close> = connect(ctx)
    local rows = db:query("SELECT vu, count(*) AS n FROM hits GROUP BY vu ORDER BY vu")
    eq("vus", #rows, 4)
    for i, r in ipairs(rows) do eq("vu", r.vu, i); eq("rows of vu " .. i, r.n, 10) end
    print("VU_ROWS_OK")
  end,
}
""", "--threads", "2")
    passed(res, "VU_ROWS_OK")
    assert res.count("iterations") == 40, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert normal_stack.scalar(f"SELECT count(*) FROM {schema}.hits") == 40
    assert normal_stack.query(f"SELECT vu, count(*) FROM {schema}.hits GROUP BY vu ORDER BY vu") == \
        [(1, 10), (2, 10), (3, 10), (4, 10)]
