"""tide.pg against a PostgreSQL that stops answering.

A "black hole" (servers.BlackholeServer: a loopback listener that accepts
and never says a word) stands in for a database that hangs at connect; a
real PostgreSQL whose backend process is stopped (SIGSTOP) for one that
hangs mid-session; a real PostgreSQL for statements longer than their
statement_timeout. In every case tide must end in bounded time with a clear
message, exit with its documented code, and honour Ctrl-C and SIGTERM while
it waits."""

import json
import os
import signal
import time

import pytest

from pg_server import PASSWORD

SETUP_CONNECT = """
local pg = require "tide.pg"
return {
  setup = function(ctx)
    local db = pg.connect(ctx.env.DSN)
    print("connected: " .. tostring(db))
  end,
  run = function() end,
}
"""

NO_LOAD = """
return {
  options = { executor = "shared-iterations", vus = 1, iterations = 3 },
  run = function() end,
}
"""


@pytest.fixture(autouse=True)
def no_github_run_id(monkeypatch):
    monkeypatch.delenv("GITHUB_RUN_ID", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("PGOPTIONS", raising=False)


def hole_dsn(blackhole, query=""):
    return f"postgresql://tide:{PASSWORD}@127.0.0.1:{blackhole.port}/tidedb{query}"


def wait_accepted(server, before, timeout=10):
    """Waits until the black hole has accepted a connection after `before`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.lock:
            if server.accepted > before:
                return
        time.sleep(0.02)
    pytest.fail("tide never connected to the black hole")


def no_secret(res):
    assert PASSWORD not in res.stdout + res.stderr, f"the DSN password leaked\n{res}"


# ------------------------------------------------------ connect in setup


def test_connect_to_a_server_that_never_answers_times_out_by_default(run_tide, blackhole):
    """No connect_timeout in the DSN: tide's default (10 s) ends the wait."""
    res = run_tide(SETUP_CONNECT, "--env", f"DSN={hole_dsn(blackhole)}", timeout=40, json_out=False)
    assert res.rc == 3, f"a failed connect in setup is a script failure (exit 3)\n{res}"
    assert "pg.connect: timeout" in res.stderr, str(res)
    assert f"127.0.0.1:{blackhole.port}" in res.stderr, f"the message names the server\n{res}"
    assert "connect_timeout" in res.stderr, f"the message says how to change the limit\n{res}"
    assert 9 <= res.elapsed < 20, f"default connect timeout is 10 s, took {res.elapsed:.1f}s\n{res}"
    no_secret(res)


def test_connect_timeout_in_the_dsn_wins(run_tide, blackhole):
    for query in ("?connect_timeout=1", ""):
        dsn = hole_dsn(blackhole, query) if query else \
            f"host=127.0.0.1 port={blackhole.port} dbname=x user=tide password={PASSWORD} connect_timeout=1"
        res = run_tide(SETUP_CONNECT, "--env", f"DSN={dsn}", timeout=30, json_out=False)
        assert res.rc == 3, str(res)
        assert "pg.connect: timeout" in res.stderr and "within 1s" in res.stderr, str(res)
        assert res.elapsed < 5, f"connect_timeout=1 took {res.elapsed:.1f}s\n{res}"
        no_secret(res)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_a_hanging_connect_in_setup(tide, blackhole, sig):
    """connect_timeout=0 waits without limit; Ctrl-C / SIGTERM still ends it."""
    before = blackhole.accepted
    running = tide.start(SETUP_CONNECT, "--env", f"DSN={hole_dsn(blackhole, '?connect_timeout=0')}",
                         json_out=False)
    wait_accepted(blackhole, before)
    time.sleep(0.3)
    t0 = time.monotonic()
    running.signal(sig)
    res = running.finish(timeout=10)
    took = time.monotonic() - t0
    assert res.rc == 130, f"interrupted in setup: exit 130\n{res}"
    assert took < 3, f"tide took {took:.1f}s to stop after {sig.name}\n{res}"
    assert "interrupted" in res.stderr, str(res)
    no_secret(res)


# ----------------------------------------------------------- at save time


def fallback_doc(tide, run_id):
    path = tide.tmp / f"tide-results-{run_id}.json"
    assert path.is_file(), f"{path.name} not written"
    with open(path) as f:
        doc = json.load(f)
    assert doc["run_id"] == run_id
    assert doc["metrics"]["iterations"]["values"]["count"] == 3
    assert PASSWORD not in path.read_text()
    return doc


def test_storing_to_a_server_that_never_answers_falls_back_to_a_file(tide, run_tide, blackhole):
    """As for an unreachable database: the file, exit 4 (after the default
    connect_timeout of 10 s)."""
    res = run_tide(NO_LOAD, "--out", f"pg={hole_dsn(blackhole)}", "--run-id", "hole-1", timeout=40, json_out=False)
    assert res.rc == 4, f"results not stored where asked: exit 4\n{res}"
    assert "pg.connect: timeout" in res.stderr, str(res)
    assert "tide-results-hole-1.json" in res.stderr, str(res)
    assert res.elapsed < 20, f"the default connect_timeout (10 s) at save time took {res.elapsed:.1f}s\n{res}"
    fallback_doc(tide, "hole-1")
    no_secret(res)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_at_save_time_writes_the_fallback_file(tide, blackhole, sig):
    """No limit on the connect (connect_timeout=0): a signal stops the wait,
    the results go to the file, exit 4."""
    before = blackhole.accepted
    run_id = f"hole-{sig.name}"
    running = tide.start(NO_LOAD, "--out", f"pg={hole_dsn(blackhole, '?connect_timeout=0')}", "--run-id", run_id,
                         json_out=False)
    wait_accepted(blackhole, before)
    time.sleep(0.3)
    t0 = time.monotonic()
    running.signal(sig)
    res = running.finish(timeout=10)
    took = time.monotonic() - t0
    assert res.rc == 4, f"results not stored where asked: exit 4\n{res}"
    assert took < 3, f"tide took {took:.1f}s to stop after {sig.name}\n{res}"
    assert "interrupted" in res.stderr and f"tide-results-{run_id}.json" in res.stderr, str(res)
    fallback_doc(tide, run_id)
    no_secret(res)


# --------------------------------------------- a real server that stops


STOPPED_BACKEND = """
local pg, tide = require "tide.pg", require "tide"
return {
  setup = function(ctx)
    local db = pg.connect(ctx.env.DSN)
    local pid = db:query("SELECT pg_backend_pid() AS pid")[1].pid
    local f = assert(io.open(ctx.env.PIDFILE, "w"))
    f:write(tostring(pid))
    f:close()
    tide.sleep(1)                        -- the test stops the backend meanwhile
    local t0 = tide.now()
    local ok, err = pcall(db.query, db, "SELECT 1 AS one")
    print(("after %.1fs: %s"):format(tide.now() - t0, tostring(err)))
    assert(not ok, "a stopped backend answered")
    print("closed: " .. tostring(db))
    local ok2, err2 = pcall(db.query, db, "SELECT 1 AS one")
    print("again: " .. tostring(err2))
    error(err, 0)
  end,
  run = function() end,
}
"""


def test_backend_that_stops_answering_mid_session(tide, pg):
    """The server accepted the session and then went silent (its backend is
    SIGSTOPped): statement_timeout cannot fire on the server, so tide's own
    deadline (statement_timeout + 5 s) ends the call and closes the connection."""
    pidfile = tide.tmp / "backend.pid"
    dsn = pg.dsn() + "?options=-c%20statement_timeout%3D1s"
    running = tide.start(STOPPED_BACKEND, "--env", f"DSN={dsn}", "--env", f"PIDFILE={pidfile}", json_out=False)
    deadline = time.monotonic() + 15
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        res = running.finish(timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert res.rc == 3, str(res)
    assert "pg: query: timeout: no answer from the server within 6s" in res.stderr, str(res)
    assert "statement_timeout" in res.stderr, str(res)
    assert "closed: tide.pg.connection: closed" in res.stdout, str(res)
    assert "connection is closed" in res.stdout, str(res)
    no_secret(res)


# ------------------------------------------------- statement_timeout itself


STATEMENT = """
local pg, tide = require "tide.pg", require "tide"
return {
  setup = function(ctx)
    local db = pg.connect(ctx.env.DSN)
    print("statement_timeout=" .. db:query("SHOW statement_timeout")[1].statement_timeout)
    if ctx.env.SLEEP then
      local t0 = tide.now()
      local ok, err = pcall(db.query, db, "SELECT pg_sleep($1)", tonumber(ctx.env.SLEEP))
      print(("slept %.1fs: %s"):format(tide.now() - t0, tostring(err)))
      assert(not ok)
      -- the connection is still good after the server cancelled the statement
      print("then: " .. db:query("SELECT 41 + 1 AS n")[1].n)
    end
  end,
  run = function() end,
}
"""


def test_default_statement_timeout_is_set_unless_the_dsn_gives_one(run_tide, pg):
    cases = [
        (pg.dsn(), "1min"),  # tide's default: 60 s
        (pg.dsn() + "?options=-c%20statement_timeout%3D0", "0"),
        (f"host=127.0.0.1 port={pg.port} dbname=tidedb user=tide password={PASSWORD} "
         "options='-c work_mem=8MB -c statement_timeout=250ms'", "250ms"),
    ]
    for dsn, want in cases:
        res = run_tide(STATEMENT, "--env", f"DSN={dsn}", json_out=False)
        assert res.rc == 0, str(res)
        assert f"statement_timeout={want}\n" in res.stdout, f"DSN {dsn}: expected {want}\n{res}"


def test_statement_longer_than_statement_timeout_fails_clearly(run_tide, pg):
    dsn = pg.dsn() + "?options=-c%20statement_timeout%3D1s"
    res = run_tide(STATEMENT, "--env", f"DSN={dsn}", "--env", "SLEEP=5", timeout=30, json_out=False)
    assert res.rc == 0, str(res)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("slept ")), "")
    assert "canceling statement due to statement timeout" in line and "SQLSTATE 57014" in line, str(res)
    assert "statement_timeout is 1s" in line, f"the message says which limit and where to set it\n{res}"
    assert float(line.split()[1].rstrip("s:")) < 3, f"the server's timeout ended it\n{res}"
    assert "then: 42" in res.stdout, str(res)
