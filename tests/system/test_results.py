"""Results that last: --out pg/json/csv, tide db, tide report, tide compare.

A dedicated, empty PostgreSQL 15 (pg_server.PgServer) runs for this module
on 127.0.0.1 with password authentication; each test that needs an empty
database gets a fresh one (fresh_db). Load goes to the session's nginx, to a
small status server of ours (PENDING twice, then SUCCESS, for tide.celery)
and to slow_server.SlowServer (/fast and /sleep?ms=N)."""

import decimal
import json
import math
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import TIDE
from httpserver import LOOPBACK, QuietHandler, ServerThread
from pg_server import PASSWORD
from slow_server import SlowServer

SECRETS = ("target-secret", PASSWORD, "tok-secret-123", "bearer-secret-456", "cookie-secret-789")


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def dsn(pg):
    """DSN of a new, empty database (role tide, password PASSWORD)."""
    return pg.fresh_db()


@pytest.fixture(autouse=True)
def no_github_run_id(monkeypatch):
    """Run ids are ours (--run-id) or generated, never the CI's."""
    monkeypatch.delenv("GITHUB_RUN_ID", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


class TaskServer(ServerThread):
    """GET /start -> {"id": ID}; GET /status/ID -> PENDING for the first two
    polls of ID, then SUCCESS. Anything else: 404. Answers are JSON."""

    def __init__(self):
        self.lock = threading.Lock()
        self.polls = {}
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/start":
                    self._send(200, {"id": uuid.uuid4().hex})
                elif path.startswith("/status/"):
                    task = path[len("/status/"):]
                    with outer.lock:
                        n = outer.polls[task] = outer.polls.get(task, 0) + 1
                    self._send(200, {"state": "PENDING" if n <= 2 else "SUCCESS",
                                     "output": None if n <= 2 else task})
                else:
                    self._send(404, {"error": "not found"})

        super().__init__(Handler, name="task-server")


@pytest.fixture(scope="module")
def tasks(request):
    server = TaskServer().start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module")
def slow(request):
    server = SlowServer().start()
    request.addfinalizer(server.stop)
    return server


# ------------------------------------------------------------------- helpers


def cli(tide, *args, timeout=60, env=None):
    """`tide ARGS...` (report, compare, db) in the test's tmp dir."""
    return tide.exec([TIDE, *map(str, args)], timeout=timeout, env=env)


def no_crash(res):
    assert res.rc is not None and res.rc >= 0, f"tide died of a signal\n{res}"
    assert "stack traceback" not in res.stderr, f"a Lua traceback instead of a message\n{res}"


def rows(pg, dsn, sql, params=None):
    return pg.query(dsn, sql, params)


def scalar(pg, dsn, sql, params=None):
    r = pg.query(dsn, sql, params)
    assert len(r) == 1 and len(r[0]) == 1, f"{sql!r} returned {r!r}"
    return r[0][0]


def request_lines(stdout):
    """The request table of a summary: the header line and the rows after it."""
    lines = stdout.splitlines()
    for i, l in enumerate(lines):
        if l.split()[:2] == ["request", "reqs"]:
            out = []
            for r in lines[i:]:
                if not r.strip():
                    break
                out.append(r)
            return out
    return []


def header_run_id(stdout):
    m = re.search(r"\brun (\S+)", stdout.splitlines()[0] if stdout else "")
    return m.group(1) if m else None


def ms_text(x):
    """text.lua's ms(): how the summary prints a time in ms."""
    if x >= 1e3:
        return "%.2fs" % (x / 1e3)
    if x >= 1:
        return "%.2fms" % x
    return "%dµs" % math.floor(x * 1e3 + 0.5)


# histogram layout (src/hist.c): slot i < 2048 holds the value i; above, slot
# i is in octave k = i//1024 - 1 with sub-slot sub = i%1024 + 1024, values
# [sub << k, (sub + 1) << k); reported as the midpoint of the integers in it.
def slot_mid(i):
    if i < 2048:
        return float(i)
    k = (i - 2048) // 1024 + 1
    sub = (i - 2048) % 1024 + 1024
    return (sub << k) + ((1 << k) - 1) / 2


def slots(h):
    s = h["slots"]
    assert len(s) % 2 == 0, f"odd slots list: {s[:10]}..."
    return {s[j]: s[j + 1] for j in range(0, len(s), 2)}


def percentile_us(counts, lo, hi, p):
    total = sum(counts.values())
    rank = max(1, min(total, -(-p * total // 100)))  # ceil(p/100 * total), exact
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            return min(max(slot_mid(i), lo), hi)
    raise AssertionError("counts and rank disagree")


def hist_stdev_us(h):
    n = h["count"]
    if n < 2:
        return 0.0
    var = int(h["sumsq"]) / n - (h["sum"] / n) ** 2  # exact decimal text since tide-results/2
    return math.sqrt(max(var, 0.0))


def tide_json(path):
    with open(path) as f:
        doc = json.load(f)
    assert doc.get("format") == "tide-results/2", f"{path}: not a tide results document: {list(doc)}"
    return doc


TWO_NAMES = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 15 },
  run = function(vu)
    http.get(vu.target .. "/")
    http.get(vu.target .. "/json")
  end,
}
"""

SIMPLE = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 5 },
  run = function(vu) http.get(vu.target .. "/") end,
}
"""


# ------------------------------------------------- 1. schemas and a second run


def test_out_pg_creates_schemas_and_each_run_adds_rows(tide, run_tide, nginx, pg, dsn):
    assert scalar(pg, dsn, "SELECT count(*) FROM information_schema.schemata "
                           "WHERE schema_name IN ('analytics', 'tide')") == 0
    csv_path = tide.tmp / "first.csv"
    first = run_tide(TWO_NAMES, "--target", nginx.url, "--out", f"pg={dsn}", "--out", f"csv={csv_path}")
    assert first.rc == 0, str(first)

    schemas = {r[0] for r in rows(pg, dsn, "SELECT schema_name FROM information_schema.schemata")}
    assert {"analytics", "tide"} <= schemas, f"schemas after the first run: {sorted(schemas)}\n{first}"
    tables = {(r[0], r[1]) for r in rows(pg, dsn, "SELECT table_schema, table_name FROM information_schema.tables "
                                                  "WHERE table_schema IN ('analytics', 'tide')")}
    assert tables == {("analytics", "load_testing"), ("tide", "runs"), ("tide", "metrics"), ("tide", "points")}, tables

    # the old tool's table, exactly
    cols = rows(pg, dsn, "SELECT column_name, data_type FROM information_schema.columns "
                         "WHERE table_schema = 'analytics' AND table_name = 'load_testing' ORDER BY ordinal_position")
    assert cols == [("run_id", "text"), ("num_users", "integer"),
                    ("avg_container_time", "numeric"), ("max_container_time", "numeric"),
                    ("std_container_time", "numeric"), ("avg_web_time", "numeric"),
                    ("max_web_time", "numeric"), ("std_web_time", "numeric")], cols
    pk = rows(pg, dsn, """SELECT a.attname FROM pg_index i
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                          WHERE i.indrelid = 'analytics.load_testing'::regclass AND i.indisprimary""")
    assert pk == [("run_id",)], pk

    def columns(table):
        return {r[0] for r in rows(pg, dsn, "SELECT column_name FROM information_schema.columns "
                                            "WHERE table_schema = 'tide' AND table_name = %s", (table,))}
    assert columns("runs") >= {"run_id", "scenario", "options", "target", "started_at", "finished_at",
                               "exit_code", "host", "tide_version", "duration_s", "summary"}
    assert columns("metrics") >= {"run_id", "key", "metric", "tags", "type", "contains", "values",
                                  "histogram", "thresholds"}
    assert columns("points") >= {"run_id", "t", "metric", "count", "rate", "p50", "p95", "p99", "vus"}

    # what the first run stored agrees with its JSON
    doc = first.json
    run_id = doc["run_id"]
    assert run_id and header_run_id(first.stdout) == run_id, str(first)
    stored = rows(pg, dsn, "SELECT run_id, exit_code, tide_version FROM tide.runs")
    assert stored == [(run_id, 0, doc["tide"]["version"])], stored
    key = "http_req_duration{name:/}"
    m = rows(pg, dsn, "SELECT metric, tags, type, \"values\", histogram FROM tide.metrics "
                      "WHERE run_id = %s AND key = %s", (run_id, key))
    assert len(m) == 1, f"no tide.metrics row for {key}"
    metric, tags, typ, values, hist = m[0]
    assert (metric, tags, typ) == ("http_req_duration", {"name": "/"}, "trend"), m[0]
    assert values["count"] == 30 and hist["count"] == 30, m[0]
    reqs = doc["metrics"]["http_reqs"]["values"]["count"]
    assert reqs == 60, str(first)
    point_reqs = scalar(pg, dsn, "SELECT sum(count) FROM tide.points WHERE run_id = %s AND metric = 'http_reqs'",
                        (run_id,))
    assert point_reqs == reqs, f"tide.points http_reqs add up to {point_reqs}, the run made {reqs}"
    # the CSV: its header, and per-second rows that add up too
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "timestamp,elapsed_s,metric_name,aggregate,metric_value", lines[:2]
    csv_reqs = sum(float(l.split(",")[4]) for l in lines[1:] if l.split(",")[2:4] == ["http_reqs", "count"])
    assert csv_reqs == reqs, f"CSV http_reqs rows add up to {csv_reqs}, the run made {reqs}"
    for k in ("points", "run_id", "started", "finished", "exit_code"):
        assert k in doc, f"JSON has no {k!r}"
    assert doc["exit_code"] == 0 and doc["points"], doc["points"]

    # started/finished and the per-second points, as the JSON has them
    started, finished = rows(pg, dsn, "SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                                      "to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                                      "FROM tide.runs WHERE run_id = %s", (run_id,))[0]
    assert (started, finished) == (doc["started"], doc["finished"]), (started, finished, doc["started"], doc["finished"])
    pts = rows(pg, dsn, "SELECT t, p50, p95, p99 FROM tide.points WHERE run_id = %s AND metric = 'http_req_duration' "
                        "ORDER BY t", (run_id,))
    assert pts == [(p["t"], p.get("p50"), p.get("p95"), p.get("p99")) for p in doc["points"]], (pts, doc["points"])

    # the second run: --out pg alone takes $DATABASE_URL
    second = run_tide(TWO_NAMES, "--target", nginx.url, "--out", "pg", env={"DATABASE_URL": dsn})
    assert second.rc == 0, str(second)
    assert PASSWORD not in second.stdout + second.stderr, str(second)
    assert second.json["run_id"] != run_id, "two runs got the same generated run id"
    assert scalar(pg, dsn, "SELECT count(*) FROM tide.runs") == 2
    assert scalar(pg, dsn, "SELECT count(*) FROM analytics.load_testing") == 2
    ids = {r[0] for r in rows(pg, dsn, "SELECT run_id FROM analytics.load_testing")}
    assert ids == {run_id, second.json["run_id"]}, ids


# --------------------------------------------- 2. the old tool's row, in seconds


CELERY = """
local http = require "tide.http"
local celery = require "tide.celery"
return {
  options = { executor = "per-vu-iterations", vus = 3, iterations = 4 },
  run = function(vu)
    local r = http.get(vu.target .. "/start", { name = "start" })
    assert(r.status == 200, "start: HTTP " .. tostring(r.status))
    local res = celery.poll(vu.target .. "/status/" .. r:json().id, { every = 0.02 })
    assert(res.state == "SUCCESS", "task ended " .. tostring(res.state))
  end,
}
"""


def test_legacy_row_matches_the_run(tide, run_tide, tasks, pg, dsn):
    res = run_tide(CELERY, "--target", tasks.url, "--out", f"pg={dsn}", "--run-id", "legacy-1")
    assert res.rc == 0, str(res)
    assert res.json["run_id"] == "legacy-1"
    web, container = res.metric("http_req_duration"), res.metric("celery_task_duration")
    assert web["values"]["count"] == 12 * 4, f"12 starts + 36 polls expected\n{res}"
    assert container["values"]["count"] == 12, str(res)

    got = rows(pg, dsn, "SELECT num_users, avg_web_time, max_web_time, std_web_time, avg_container_time, "
                        "max_container_time, std_container_time FROM analytics.load_testing WHERE run_id = %s",
               ("legacy-1",))
    assert len(got) == 1, got
    num_users, *secs = got[0]
    assert all(s is not None for s in secs), f"NULLs in the legacy row: {got[0]}"
    secs = [float(s) for s in secs]
    want = [web["values"]["avg"] / 1e3, web["values"]["max"] / 1e3, hist_stdev_us(web["histogram"]) / 1e6,
            container["values"]["avg"] / 1e3, container["values"]["max"] / 1e3,
            hist_stdev_us(container["histogram"]) / 1e6]
    assert num_users == 3, got[0]
    names = ["avg_web_time", "max_web_time", "std_web_time", "avg_container_time", "max_container_time",
             "std_container_time"]
    for name, g, w in zip(names, secs, want):
        assert abs(g - w) <= 1e-6, f"{name}: stored {g} s, the run's JSON says {w} s"
    # sanity: container time (3 polls, 20 ms apart) is longer than one request
    assert secs[3] > secs[0] and secs[3] >= 0.035, secs

    # read back, the summary shows the same old tool's figures and celery lines
    rep = cli(tide, "report", f"pg:{dsn}#legacy-1")
    assert rep.rc == 0, str(rep)

    def section(text):
        lines = text.splitlines()
        start = next((i for i, l in enumerate(lines) if "old tool's figures" in l), None)
        assert start is not None, f"no old tool's figures in\n{text}"
        return lines[start:start + 3] + [l for l in lines if l.strip().startswith("celery_")]
    assert section(rep.stdout) == section(res.stdout), f"--- run:\n{res.stdout}\n--- report:\n{rep.stdout}"


# -------------------------------- 3. tide report pg:DSN#RUN prints the same table


def test_report_from_pg_prints_the_same_summary(tide, run_tide, nginx, pg, dsn):
    res = run_tide(TWO_NAMES, "--target", nginx.url, "--out", f"pg={dsn}", "--run-id", "again-1")
    assert res.rc == 0, str(res)
    original = request_lines(res.stdout)
    assert len(original) == 4, f"expected a header, /, /json and total rows\n{res}"

    # a single JSON file: the summary printed again, identical
    from_file = cli(tide, "report", res.json_path)
    assert from_file.rc == 0, str(from_file)
    assert from_file.stdout == res.stdout, \
        f"tide report FILE does not print what tide run printed\n--- run:\n{res.stdout}\n--- report:\n{from_file.stdout}"

    back = tide.tmp / "back.json"
    from_pg = cli(tide, "report", f"pg:{dsn}#again-1", "--json", back)
    assert from_pg.rc == 0, str(from_pg)
    assert request_lines(from_pg.stdout) == original, \
        f"request table differs\n--- run:\n{res.stdout}\n--- report pg:\n{from_pg.stdout}"
    assert header_run_id(from_pg.stdout) == "again-1", from_pg.stdout
    assert PASSWORD not in from_pg.stdout + from_pg.stderr

    doc = tide_json(back)
    for key, m in res.metrics.items():
        assert key in doc["metrics"], f"{key} missing after the round trip through PostgreSQL"
        if m["type"] == "trend":
            assert doc["metrics"][key]["values"] == m["values"], (key, m["values"], doc["metrics"][key]["values"])
            assert doc["metrics"][key]["histogram"] == m["histogram"], key
        elif m["type"] == "counter":
            assert doc["metrics"][key]["values"]["count"] == m["values"]["count"], key


# --------------------------------------- 4. merged reports: exact percentiles


ONE_PATH = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 20 },
  run = function(vu) http.get(vu.target .. vu.env.PATH) end,
}
"""


def test_report_merges_histograms_exactly(tide, run_tide, nginx):
    a = run_tide(ONE_PATH, "--target", nginx.url, "--env", "PATH=/")
    # fewer of the slow ones: the union's median then lies among the fast
    # requests, far from the average of the two medians
    b = run_tide(ONE_PATH, "--target", nginx.url, "--env", "PATH=/big", "--iterations", "10")
    assert a.rc == 0, str(a)
    assert b.rc == 0, str(b)
    merged_path = tide.tmp / "merged.json"
    rep = cli(tide, "report", a.json_path, b.json_path, "--json", merged_path)
    assert rep.rc == 0, str(rep)
    merged = tide_json(merged_path)

    ha, hb = a.metric("http_req_duration")["histogram"], b.metric("http_req_duration")["histogram"]
    union = slots(ha)
    for i, c in slots(hb).items():
        union[i] = union.get(i, 0) + c
    lo, hi = min(ha["min"], hb["min"]), max(ha["max"], hb["max"])
    md = merged["metrics"]["http_req_duration"]
    assert (ha["count"], hb["count"]) == (40, 20)
    assert md["values"]["count"] == 60, md["values"]
    assert md["histogram"]["count"] == 60 and slots(md["histogram"]) == union, "merged histogram is not the sum"
    want = {}
    for p, k in ((50, "med"), (90, "p(90)"), (95, "p(95)"), (99, "p(99)")):
        want[k] = percentile_us(union, lo, hi, p) / 1e3
        assert md["values"][k] == pytest.approx(want[k], abs=1e-9), \
            f"merged {k}: {md['values'][k]} ms, union of the samples gives {want[k]} ms"
    assert md["values"]["max"] == pytest.approx(hi / 1e3, abs=1e-9)
    assert md["values"]["avg"] == pytest.approx((ha["sum"] + hb["sum"]) / 60 / 1e3, abs=1e-9)
    # the point of merging histograms: this differs from averaging percentiles
    avg_p50 = (a.metric("http_req_duration")["values"]["med"] + b.metric("http_req_duration")["values"]["med"]) / 2
    assert want["med"] != pytest.approx(avg_p50, rel=0.01), "test data too uniform to tell"

    for name in ("http_reqs", "iterations", "data_received", "data_sent"):
        assert merged["metrics"][name]["values"]["count"] == a.count(name) + b.count(name), name
    failed = merged["metrics"]["http_req_failed"]["values"]
    assert failed["passes"] + failed["fails"] == 60, failed
    # printed: the total row carries the union's percentiles
    table = request_lines(rep.stdout)
    total = next((l.split() for l in table if l.split()[0] == "total"), None)
    assert total, f"no total row in the merged report\n{rep}"
    assert total[1] == "60", total
    assert (total[6], total[8], total[9]) == (ms_text(want["med"]), ms_text(want["p(95)"]), ms_text(want["p(99)"])), \
        f"total row {total}, union percentiles {want}"
    assert "2 runs merged" in rep.stdout, rep.stdout


def test_report_merges_runs_from_pg_like_files(tide, run_tide, nginx, pg, dsn):
    a = run_tide(ONE_PATH, "--target", nginx.url, "--env", "PATH=/", "--out", f"pg={dsn}", "--run-id", "m-a")
    b = run_tide(ONE_PATH, "--target", nginx.url, "--env", "PATH=/big", "--out", f"pg={dsn}", "--run-id", "m-b")
    assert a.rc == 0 and b.rc == 0, f"{a}\n{b}"
    files, dbs = tide.tmp / "files.json", tide.tmp / "dbs.json"
    r1 = cli(tide, "report", a.json_path, b.json_path, "--json", files)
    r2 = cli(tide, "report", f"pg:{dsn}#m-a", f"pg:{dsn}#m-b", "--json", dbs)
    assert r1.rc == 0, str(r1)
    assert r2.rc == 0, str(r2)
    assert request_lines(r2.stdout) == request_lines(r1.stdout), f"--- files:\n{r1.stdout}\n--- pg:\n{r2.stdout}"
    mf, md = tide_json(files)["metrics"], tide_json(dbs)["metrics"]
    for key in ("http_req_duration", "http_req_duration{name:/}", "http_req_duration{name:/big}", "iteration_duration"):
        assert md[key]["values"] == mf[key]["values"], (key, mf[key]["values"], md[key]["values"])
        assert md[key]["histogram"] == mf[key]["histogram"], key
    for key in ("http_reqs", "iterations", "data_received"):
        assert md[key]["values"]["count"] == mf[key]["values"]["count"] == a.count(key) + b.count(key), key


# ---------------------------------------------- 5. the database is down: a file


def test_database_down_writes_fallback_file_then_import(tide, run_tide, nginx, pg, dsn):
    run_id = "fallback-" + uuid.uuid4().hex[:8]
    pg.stop()
    try:
        res = run_tide(SIMPLE, "--target", nginx.url, "--out", f"pg={dsn}", "--run-id", run_id, json_out=False)
    finally:
        pg.start()
    fallback = f"tide-results-{run_id}.json"
    assert res.rc == 4, f"results not stored where asked: expected exit 4\n{res}"
    assert fallback in res.stderr, f"stderr does not name {fallback}\n{res}"
    assert PASSWORD not in res.stdout + res.stderr, f"the DSN password leaked\n{res}"
    path = tide.tmp / fallback
    assert path.is_file(), f"{fallback} not in the working directory {tide.tmp}\n{res}"
    doc = tide_json(path)
    assert doc["run_id"] == run_id and doc["metrics"]["http_reqs"]["values"]["count"] == 10, doc.get("run_id")
    assert PASSWORD not in path.read_text()

    imp = cli(tide, "db", "import", dsn, path)
    assert imp.rc == 0, str(imp)
    listed = cli(tide, "db", "runs", dsn)
    assert listed.rc == 0, str(listed)
    assert run_id in listed.stdout, str(listed)
    assert scalar(pg, dsn, "SELECT count(*) FROM analytics.load_testing WHERE run_id = %s", (run_id,)) == 1

    again = cli(tide, "db", "import", dsn, path)
    assert again.rc == 4, f"importing the same run twice: expected exit 4\n{again}"
    assert "already stored" in again.stderr, str(again)
    assert scalar(pg, dsn, "SELECT count(*) FROM tide.runs") == 1
    for r in (imp, listed, again):
        assert PASSWORD not in r.stdout + r.stderr, str(r)


def test_failure_at_save_time_stores_nothing_and_falls_back(tide, run_tide, nginx, pg, dsn):
    """The database answers, but an insert fails half-way (a tide.points table
    of the wrong shape): one transaction, so nothing of the run is stored;
    the whole results go to the fallback file, exit 4."""
    pg.query(dsn, "CREATE SCHEMA tide")
    pg.query(dsn, "CREATE TABLE tide.points (run_id text, t integer, metric text, count float8, rate float8, "
                  "p50 float8, p95 float8, p99 float8, vus integer, extra text NOT NULL)")
    res = run_tide(SIMPLE, "--target", nginx.url, "--out", f"pg={dsn}", "--run-id", "half-1")
    assert res.rc == 4, f"the insert into tide.points fails: expected exit 4\n{res}"
    assert "tide-results-half-1.json" in res.stderr, str(res)
    assert PASSWORD not in res.stdout + res.stderr, str(res)
    assert res.json is not None and res.json["run_id"] == "half-1", "--out json is written all the same"
    for table in ("tide.runs", "tide.metrics", "tide.points", "analytics.load_testing"):
        # rolled back whole: the tables it created are gone too, or empty
        if scalar(pg, dsn, "SELECT to_regclass(%s) IS NOT NULL", (table,)):
            n = scalar(pg, dsn, f"SELECT count(*) FROM {table}")
            assert n == 0, f"{n} rows of the failed save left in {table}: not one transaction"
    fallback = tide.tmp / "tide-results-half-1.json"
    assert tide_json(fallback)["metrics"]["http_reqs"]["values"]["count"] == 10
    pg.query(dsn, "DROP TABLE tide.points")
    imp = cli(tide, "db", "import", dsn, fallback)
    assert imp.rc == 0, str(imp)
    assert scalar(pg, dsn, "SELECT count(*) FROM tide.points WHERE run_id = 'half-1'") > 0
    assert scalar(pg, dsn, "SELECT count(*) FROM analytics.load_testing WHERE run_id = 'half-1'") == 1


def test_existing_legacy_table_is_kept(run_tide, nginx, pg, dsn):
    """A database the old tool wrote to: its table and rows stay, tide adds its own."""
    pg.query(dsn, "CREATE SCHEMA analytics")
    pg.query(dsn, "CREATE TABLE analytics.load_testing (run_id text primary key, num_users integer, "
                  "avg_container_time numeric, max_container_time numeric, std_container_time numeric, "
                  "avg_web_time numeric, max_web_time numeric, std_web_time numeric)")
    pg.query(dsn, "INSERT INTO analytics.load_testing VALUES ('old-tool-1', 50, 1.5, 3.25, 0.5, 0.2, 0.9, 0.1)")
    res = run_tide(SIMPLE, "--target", nginx.url, "--out", f"pg={dsn}", "--run-id", "new-1", json_out=False)
    assert res.rc == 0, str(res)
    got = rows(pg, dsn, "SELECT run_id, num_users, avg_web_time IS NOT NULL FROM analytics.load_testing ORDER BY run_id")
    assert got == [("new-1", 2, True), ("old-tool-1", 50, True)], got
    assert scalar(pg, dsn, "SELECT avg_container_time FROM analytics.load_testing WHERE run_id = 'old-tool-1'") == \
        decimal.Decimal("1.5")


# ------------------------------------------------ 6. Ctrl-C: every output written


def test_sigint_still_writes_every_output(tide, nginx, pg, dsn):
    csv_path = tide.tmp / "int.csv"
    run = tide.start("""
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "constant-vus", vus = 2, duration = "5s" },
  run = function(vu) http.get(vu.target .. "/"); tide.sleep(0.01) end,
}
""", "--target", nginx.url, "--out", f"pg={dsn}", "--out", f"csv={csv_path}", "--run-id", "interrupted-1")
    time.sleep(1.0)
    run.signal(signal.SIGINT)
    res = run.finish(timeout=30)
    assert res.rc == 130, str(res)
    assert res.json is not None, f"no JSON written after Ctrl-C\n{res}"
    assert res.json["exit_code"] == 130 and res.json["state"]["interrupted"] is True, \
        (res.json["exit_code"], res.json["state"])
    assert res.json["state"]["testRunDurationMs"] < 4000, res.json["state"]
    assert res.count("http_reqs") > 0
    lines = csv_path.read_text().splitlines() if csv_path.exists() else []
    assert lines and lines[0] == "timestamp,elapsed_s,metric_name,aggregate,metric_value", f"CSV: {lines[:3]}\n{res}"
    assert len(lines) > 1, f"CSV has no rows\n{res}"
    stored = rows(pg, dsn, "SELECT exit_code FROM tide.runs WHERE run_id = 'interrupted-1'")
    assert stored == [(130,)], f"tide.runs: {stored}\n{res}"
    assert scalar(pg, dsn, "SELECT count(*) FROM analytics.load_testing WHERE run_id = 'interrupted-1'") == 1


# ----------------------------------------- 7. abort_on_fail: outputs written too


def test_abort_on_fail_still_writes_outputs(tide, slow, pg, dsn):
    csv_path = tide.tmp / "abort.csv"
    res = tide.run("""
local http = require "tide.http"
return {
  options = {
    executor = "constant-vus", vus = 2, duration = "20s",
    thresholds = {
      http_req_duration = { { threshold = "p(95) < 1ms", abort_on_fail = true, delay_abort_eval = "1s" } },
    },
  },
  run = function(vu) http.get(vu.target .. "/sleep?ms=50") end,
}
""", "--target", slow.url, "--out", f"pg={dsn}", "--out", f"csv={csv_path}", "--run-id", "aborted-1", timeout=30)
    assert res.rc == 1, str(res)
    assert res.json is not None, f"no JSON after the abort\n{res}"
    assert res.json["exit_code"] == 1, res.json["exit_code"]
    assert res.json.get("aborted"), f"JSON does not say the run was aborted\n{res}"
    assert res.json["state"]["testRunDurationMs"] < 10000, res.json["state"]
    assert csv_path.exists() and csv_path.read_text().startswith("timestamp,"), f"no CSV\n{res}"
    assert rows(pg, dsn, "SELECT exit_code FROM tide.runs WHERE run_id = 'aborted-1'") == [(1,)], str(res)
    thr = scalar(pg, dsn, "SELECT thresholds FROM tide.metrics WHERE run_id = 'aborted-1' AND key = 'http_req_duration'")
    assert thr == {"p(95) < 1ms": {"ok": False}}, thr


# --------------------------------------------------------------- 8. secrets


SECRET_SCENARIO = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 3 },
  run = function(vu)
    http.get(vu.target .. "/echo", { bearer = "bearer-secret-456",
      headers = { Cookie = "sid=cookie-secret-789", ["X-Api-Token"] = vu.env.API_TOKEN } })
    http.get(vu.target .. "/")
  end,
}
"""


def test_secrets_are_never_stored_or_printed(tide, run_tide, access_log, pg, dsn):
    port = access_log.port
    csv_path = tide.tmp / "secrets.csv"
    res = run_tide(SECRET_SCENARIO, "--target", f"http://user:target-secret@{LOOPBACK}:{port}",
                   "--out", f"pg={dsn}", "--out", f"csv={csv_path}", "--env", "API_TOKEN=tok-secret-123",
                   "--run-id", "secrets-1")
    assert res.rc == 0, str(res)
    # the scenario did send them (so not finding them below means something)
    log = access_log.wait_log(count=12)
    assert any("bearer-secret-456" in e.authorization for e in log), log
    assert any("cookie-secret-789" in e.cookie for e in log), log

    db_name = dsn.rsplit("/", 1)[1]
    places = {
        "stdout": res.stdout, "stderr": res.stderr,
        "JSON": Path(res.json_path).read_text(), "CSV": csv_path.read_text(),
        "pg_dump": pg.dump(db_name),
    }
    assert "secrets-1" in places["pg_dump"], "pg_dump shows no stored run"
    for where, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} found in the {where}\n{text[:3000]}"
    if "target http" in res.stdout:
        assert f"http://user:***@{LOOPBACK}:{port}" in res.stdout, res.stdout
    target = scalar(pg, dsn, "SELECT target FROM tide.runs WHERE run_id = 'secrets-1'")
    assert target in (None, "", f"http://user:***@{LOOPBACK}:{port}"), target

    # reading it back shows nothing more
    rep = cli(tide, "report", f"pg:{dsn}#secrets-1")
    assert rep.rc == 0, str(rep)
    runs = cli(tide, "db", "runs", dsn)
    assert runs.rc == 0, str(runs)
    for r in (rep, runs):
        for secret in SECRETS:
            assert secret not in r.stdout + r.stderr, f"{secret!r} in\n{r}"


def test_response_json_error_names_the_request_without_password(run_tide, nginx):
    """r:json() on a body that is not JSON: a clear error, which must not
    show the --target password either."""
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    local ok, err = pcall(function() return http.get(vu.target .. "/"):json() end)
    print("JSON-ERROR: " .. tostring(err))
  end,
}
""", "--target", f"http://user:target-secret@{LOOPBACK}:{nginx.port}")
    assert res.rc == 0, str(res)
    line = next((l for l in res.stdout.splitlines() if l.startswith("JSON-ERROR: ")), "")
    assert "not JSON" in line, f"r:json() on a text body: unclear error {line!r}\n{res}"
    assert "target-secret" not in res.stdout + res.stderr, f"the target's password is in the message\n{res}"


def test_celery_poll_error_does_not_echo_the_target_password(run_tide, nginx):
    """celery.poll's error for a status URL answering 404 goes to stderr:
    without the --target password."""
    res = run_tide("""
local celery = require "tide.celery"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu) celery.poll(vu.target .. "/no-such-task", { every = 0.01 }) end,
}
""", "--target", f"http://user:target-secret@{LOOPBACK}:{nginx.port}")
    assert res.rc == 0, str(res)
    assert "404" in res.stderr, f"celery.poll's error for the 404 is not on stderr\n{res}"
    for where, text in (("stdout", res.stdout), ("stderr", res.stderr), ("JSON", Path(res.json_path).read_text())):
        assert "target-secret" not in text, f"the target's password is in tide's {where}\n{res}"


# --------------------------------------------------------------- 9. compare


# 200 requests: enough for compare to judge p95 (ten samples above it)
API = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 100 },
  run = function(vu) http.get(vu.target .. vu.env.API_PATH, { name = "api" }) end,
}
"""


def compare_row(stdout, label, aspect):
    for l in stdout.splitlines():
        parts = l.split()
        if parts[:2] == [label, aspect] or (label == "http (all)" and parts[:3] == ["http", "(all)", aspect]):
            return l
    return None


def test_compare_flags_regressions(tide, run_tide, slow):
    scenario = tide.write(API, "api.lua")
    fast = run_tide(scenario, "--target", slow.url, "--env", "API_PATH=/fast", "--run-id", "fast-1")
    slow20 = run_tide(scenario, "--target", slow.url, "--env", "API_PATH=/sleep?ms=20", "--run-id", "slow-20")
    slow50 = run_tide(scenario, "--target", slow.url, "--env", "API_PATH=/sleep?ms=50", "--run-id", "slow-50")
    for r in (fast, slow20, slow50):
        assert r.rc == 0, str(r)

    worse = cli(tide, "compare", fast.json_path, slow50.json_path)
    assert worse.rc == 1, f"50 ms against a fast base: expected exit 1\n{worse}"
    for aspect in ("p50", "p95"):
        row = compare_row(worse.stdout, "api", aspect)
        assert row and "✗ worse" in row, f"api {aspect} row: {row!r}\n{worse}"
        row = compare_row(worse.stdout, "http (all)", aspect)
        assert row and "✗ worse" in row, f"http (all) {aspect} row: {row!r}\n{worse}"
    for aspect in ("errors", "p99"):
        row = compare_row(worse.stdout, "api", aspect)
        assert row, f"no api {aspect} row\n{worse}"
    p50 = compare_row(worse.stdout, "api", "p50")
    assert re.search(r"\+\d+(\.\d+)?%", p50), f"no change in % on the p50 row: {p50!r}"
    base_ms = fast.metric("http_req_duration{name:api}")["values"]["med"]
    cur_ms = slow50.metric("http_req_duration{name:api}")["values"]["med"]
    shown = [float(x) for x in re.findall(r"([\d.]+)ms", p50)]
    # two decimals of the same number: 285 µs can print as 0.28 or 0.29 (binary rounding)
    assert len(shown) == 2 and abs(shown[0] - base_ms) <= 0.006 and abs(shown[1] - cur_ms) <= 0.006, \
        f"p50 row {p50!r}: base {base_ms}, current {cur_ms}"
    assert "✗ worse" in compare_row(worse.stdout, "http (all)", "req/s"), "fewer req/s (50 ms per request) is worse"
    assert "✗ worse" not in compare_row(worse.stdout, "api", "errors"), "no errors on either side"

    same = cli(tide, "compare", fast.json_path, fast.json_path)
    assert same.rc == 0, str(same)
    assert "✗" not in same.stdout, str(same)

    # 20 ms -> 50 ms: worse at the default 10 %, within 1000 %
    mid = cli(tide, "compare", slow20.json_path, slow50.json_path)
    assert mid.rc == 1, str(mid)
    assert "✗ worse" in (compare_row(mid.stdout, "api", "p50") or ""), str(mid)
    tolerant = cli(tide, "compare", slow20.json_path, slow50.json_path, "--tolerance", "1000%")
    assert tolerant.rc == 0, str(tolerant)
    assert "✗ worse" not in tolerant.stdout, str(tolerant)
    # better is not worse
    better = cli(tide, "compare", slow50.json_path, fast.json_path)
    assert better.rc == 0, str(better)


def test_compare_covers_other_trends(tide, run_tide, tasks):
    scenario = tide.write(CELERY, "tasks.lua")
    a = run_tide(scenario, "--target", tasks.url)
    b = run_tide(scenario, "--target", tasks.url)
    assert a.rc == 0 and b.rc == 0, f"{a}\n{b}"
    cmp = cli(tide, "compare", a.json_path, b.json_path, "--tolerance", "100000%")
    assert cmp.rc == 0, str(cmp)
    for label in ("celery_task_duration", "start", "status"):
        for aspect in ("p50", "p95", "p99"):
            assert compare_row(cmp.stdout, label, aspect), f"no {label} {aspect} row\n{cmp}"
    assert compare_row(cmp.stdout, "http (all)", "req/s"), str(cmp)
    # iteration_duration sums what is compared already: only when asked for
    assert not compare_row(cmp.stdout, "iteration_duration", "p50"), str(cmp)
    asked = cli(tide, "compare", a.json_path, b.json_path, "--tolerance", "100000%",
                "--metric", "iteration_duration")
    assert asked.rc == 0 and compare_row(asked.stdout, "iteration_duration", "p95"), str(asked)


def test_compare_flags_more_errors(tide, run_tide, nginx):
    scenario = tide.write(API, "api.lua")
    ok = run_tide(scenario, "--target", nginx.url, "--env", "API_PATH=/")
    failing = run_tide(scenario, "--target", nginx.url, "--env", "API_PATH=/503")
    assert ok.rc == 0 and failing.rc == 0, f"{ok}\n{failing}"
    assert failing.metric("http_req_failed")["values"]["rate"] == 1
    cmp = cli(tide, "compare", ok.json_path, failing.json_path, "--tolerance", "100000%")
    assert cmp.rc == 1, f"0% -> 100% errors is worse at any tolerance\n{cmp}"
    row = compare_row(cmp.stdout, "api", "errors")
    assert row and "✗ worse" in row and "100.00%" in row, f"api errors row: {row!r}\n{cmp}"
    back = cli(tide, "compare", failing.json_path, ok.json_path, "--tolerance", "100000%")
    assert back.rc == 0, str(back)


def test_compare_without_common_metrics_is_exit_2(tide, run_tide, nginx):
    res = run_tide(SIMPLE, "--target", nginx.url)
    assert res.rc == 0, str(res)
    docs = []
    for name in ("only_a", "only_b"):
        doc = json.loads(Path(res.json_path).read_text())
        doc["metrics"] = {name: doc["metrics"]["iteration_duration"]}
        path = tide.tmp / f"{name}.json"
        path.write_text(json.dumps(doc))
        docs.append(path)
    cmp = cli(tide, "compare", *docs)
    no_crash(cmp)
    assert cmp.rc == 2, f"no metric in common: expected exit 2\n{cmp}"
    assert "common" in cmp.stderr, str(cmp)
    # each of them is a valid document on its own
    for p in docs:
        assert cli(tide, "report", p).rc == 0


# ------------------------------------------------------ 10. latest, latest~1


def test_latest_and_previous_of_same_scenario(tide, run_tide, nginx, pg, dsn):
    a = tide.write(SIMPLE, "alpha.lua")
    b = tide.write(SIMPLE.replace("iterations = 5", "iterations = 4"), "beta.lua")
    # run ids sort against time: the order must come from when they ran
    for scenario, run_id in ((a, "run-c"), (b, "run-b"), (a, "run-a")):
        r = run_tide(scenario, "--target", nginx.url, "--out", f"pg={dsn}", "--run-id", run_id, json_out=False)
        assert r.rc == 0, str(r)
        time.sleep(1.1)   # started_at differs by at least a second
    latest = cli(tide, "report", f"pg:{dsn}#latest")
    assert latest.rc == 0, str(latest)
    assert header_run_id(latest.stdout) == "run-a", f"#latest should be run-a (newest)\n{latest}"
    prev = cli(tide, "report", f"pg:{dsn}#latest~1")
    assert prev.rc == 0, str(prev)
    assert header_run_id(prev.stdout) == "run-c", \
        f"#latest~1 should be run-c (the previous run of alpha.lua, not beta's run-b)\n{prev}"
    none = cli(tide, "report", f"pg:{dsn}#latest~2")
    no_crash(none)
    assert none.rc == 2 and PASSWORD not in none.stdout + none.stderr, str(none)
    # compare the newest with the one before, as CI would
    cmp = cli(tide, "compare", f"pg:{dsn}#latest~1", f"pg:{dsn}#latest", "--tolerance", "100000%")
    assert cmp.rc == 0, str(cmp)
    assert "run-c" in cmp.stdout and "run-a" in cmp.stdout, str(cmp)


# ------------------------------------------------------- 11. tide db init/runs


def test_db_init_and_runs(tide, run_tide, nginx, pg, dsn):
    init = cli(tide, "db", "init", dsn)
    assert init.rc == 0, str(init)
    assert PASSWORD not in init.stdout + init.stderr, str(init)
    tables = {(r[0], r[1]) for r in rows(pg, dsn, "SELECT table_schema, table_name FROM information_schema.tables "
                                                  "WHERE table_schema IN ('analytics', 'tide')")}
    assert tables == {("analytics", "load_testing"), ("tide", "runs"), ("tide", "metrics"), ("tide", "points")}, tables
    assert scalar(pg, dsn, "SELECT count(*) FROM tide.runs") == 0
    again = cli(tide, "db", "init", dsn)
    assert again.rc == 0, f"db init is idempotent\n{again}"

    latency = tide.write(SIMPLE, "latency.lua")
    other = tide.write(SIMPLE, "other.lua")
    for scenario, run_id in ((latency, "lat-1"), (other, "oth-1"), (latency, "lat-2")):
        r = run_tide(scenario, "--target", nginx.url, "--out", f"pg={dsn}", "--run-id", run_id, json_out=False)
        assert r.rc == 0, str(r)
        time.sleep(1.1)

    one = cli(tide, "db", "runs", dsn, "--scenario", "latency", "--last", "1")
    assert one.rc == 0, str(one)
    body = [l for l in one.stdout.splitlines()[1:] if l.strip()]
    assert len(body) == 1 and body[0].split()[0] == "lat-2", f"expected just lat-2\n{one}"
    cols = body[0].split()
    assert cols[-2] == "10", f"reqs column: {cols}"            # 2 VUs x 5 iterations
    assert re.fullmatch(r"\d+(\.\d+)?(µs|ms|s)", cols[-1]), cols  # a duration: "1.27ms"
    assert one.stdout.splitlines()[0].split()[:2] == ["run_id", "scenario"], one.stdout

    both = cli(tide, "db", "runs", dsn, "--scenario", "latency")
    assert both.rc == 0, str(both)
    ids = [l.split()[0] for l in both.stdout.splitlines()[1:] if l.strip()]
    assert ids == ["lat-2", "lat-1"], f"{ids}\n{both}"
    everything = cli(tide, "db", "runs", dsn)
    ids = [l.split()[0] for l in everything.stdout.splitlines()[1:] if l.strip()]
    assert ids == ["lat-2", "oth-1", "lat-1"], f"{ids}\n{everything}"
    for r in (one, both, everything):
        assert PASSWORD not in r.stdout + r.stderr, str(r)


# ------------------------------------------------- per-second points everywhere


def test_points_per_second_in_json_csv_and_pg(tide, run_tide, nginx, pg, dsn):
    csv_path = tide.tmp / "points.csv"
    res = run_tide("""
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "constant-vus", vus = 2, duration = "3s" },
  run = function(vu) http.get(vu.target .. "/"); tide.sleep(0.02) end,
}
""", "--target", nginx.url, "--out", f"csv={csv_path}", "--out", f"pg={dsn}", "--run-id", "points-1")
    assert res.rc == 0, str(res)
    points = res.json["points"]
    ts = [p["t"] for p in points]
    assert ts == list(range(len(ts))) and 3 <= len(ts) <= 4, f"points t: {ts}"
    reqs = res.count("http_reqs")
    assert sum(p["reqs"] for p in points) == reqs, (points, reqs)
    assert all(p["reqs"] > 0 for p in points[:3]), points

    lines = csv_path.read_text().splitlines()
    assert lines[0] == "timestamp,elapsed_s,metric_name,aggregate,metric_value"
    seen = {}
    for l in lines[1:]:
        ts_, el, name, agg, val = l.split(",")
        key = (int(el), name, agg)
        assert key not in seen, f"two CSV rows for {key}"
        seen[key] = float(val)
    assert {k[0] for k in seen} == {t + 1 for t in ts}, sorted({k[0] for k in seen})
    for t in ts:
        for name, agg in (("http_reqs", "count"), ("http_req_duration", "p95"), ("vus", "value")):
            assert (t + 1, name, agg) in seen, f"no CSV row for second {t + 1} {name} {agg}"
    assert sum(v for (el, n, a), v in seen.items() if (n, a) == ("http_reqs", "count")) == reqs

    db = rows(pg, dsn, "SELECT t, count FROM tide.points WHERE run_id = 'points-1' AND metric = 'http_reqs' ORDER BY t")
    assert db == [(p["t"], p["reqs"]) for p in points], (db, points)


# --------------------------------------------------------------- 12. bad input


@pytest.mark.parametrize("out, says", [
    ("bogus=x.json", "unknown output"),
    ("json=", "needs a file name"),
    ("csv=/proc/x/y.csv", "/proc/x/y.csv"),
    ("pg=postgresql://u:bad-dsn-pw@[::1", "DSN"),
    ("pg=postgresql://u:pw@[::1", "DSN"),
    ("pg", "DATABASE_URL"),
    ("json=.", "."),
    ("csv=/tmp/", "/tmp/"),
])
def test_bad_out_is_exit_2(tide, nginx, out, says):
    cmd, _, _ = tide.command(SIMPLE, ["--target", nginx.url, "--out", out], json_out=False)
    res = tide.exec(cmd, timeout=30)
    no_crash(res)
    assert res.rc == 2, f"--out {out}: expected exit 2\n{res}"
    assert says in res.stderr, f"--out {out}: the reason ({says!r}) is not on stderr\n{res}"
    assert "bad-dsn-pw" not in res.stdout + res.stderr, f"DSN password echoed\n{res}"
    assert "u:pw@" not in res.stdout + res.stderr, f"DSN password echoed\n{res}"
    assert "request  reqs" not in res.stdout, f"the run went ahead\n{res}"


def test_bad_report_sources_are_exit_2(tide, run_tide, nginx):
    good = run_tide(SIMPLE, "--target", nginx.url)
    assert good.rc == 0, str(good)
    text = Path(good.json_path).read_bytes()
    cases = {
        "plain.txt": (b"this is not json at all\n", "not JSON"),
        "truncated.json": (text[:100], "truncated"),
        "foreign.json": (b'{"a":1}', "not a tide results document"),
        "empty.json": (b"", "not JSON"),
    }
    odd = json.loads(text)
    odd["metrics"]["http_req_duration"]["histogram"]["slots"].pop()
    cases["odd-slots.json"] = (json.dumps(odd).encode(), "http_req_duration")
    for name, (data, says) in cases.items():
        p = tide.tmp / name
        p.write_bytes(data)
        res = cli(tide, "report", p)
        no_crash(res)
        assert res.rc == 2, f"tide report {name}: expected exit 2\n{res}"
        assert says in res.stderr and name in res.stderr, f"tide report {name}: unclear message\n{res}"
        cmp = cli(tide, "compare", good.json_path, p)
        no_crash(cmp)
        assert cmp.rc == 2, f"tide compare GOOD {name}: expected exit 2\n{cmp}"
    missing = cli(tide, "report", tide.tmp / "no-such.json")
    no_crash(missing)
    assert missing.rc == 2 and "no-such.json" in missing.stderr, str(missing)
    bad_pg = cli(tide, "report", "pg:postgresql://u:bad-dsn-pw@[::1#latest")
    no_crash(bad_pg)
    assert bad_pg.rc == 2 and "bad-dsn-pw" not in bad_pg.stdout + bad_pg.stderr, str(bad_pg)
    imp = cli(tide, "db", "import", "postgresql://tide:x@127.0.0.1:1/none", tide.tmp / "foreign.json")
    no_crash(imp)
    assert imp.rc == 2 and "not a tide results document" in imp.stderr, f"tide db import of a foreign JSON\n{imp}"


def test_bad_compare_and_db_arguments_are_exit_2(tide, run_tide, nginx):
    good = run_tide(SIMPLE, "--target", nginx.url)
    assert good.rc == 0, str(good)
    for args, says in (
        (("compare", good.json_path), "usage"),
        (("compare", good.json_path, good.json_path, "--tolerance", "lots"), "--tolerance"),
        (("report",), "usage"),
        (("db",), "usage"),
        (("db", "import"), "usage"),
        (("db", "runs", "postgresql://tide:bad-dsn-pw@127.0.0.1:1/x", "--last", "0"), "--last"),
    ):
        res = cli(tide, *args)
        no_crash(res)
        assert res.rc == 2, f"tide {' '.join(map(str, args))}: expected exit 2\n{res}"
        assert says in res.stderr, f"tide {' '.join(map(str, args))}: {says!r} not on stderr\n{res}"
        assert "bad-dsn-pw" not in res.stdout + res.stderr, str(res)


def test_report_of_unknown_pg_run_is_exit_2(tide, pg, dsn):
    init = cli(tide, "db", "init", dsn)
    assert init.rc == 0, str(init)
    for ref in ("no-such-run", "latest", "latest~1"):
        res = cli(tide, "report", f"pg:{dsn}#{ref}")
        no_crash(res)
        assert res.rc == 2, f"pg:DSN#{ref} on an empty database: expected exit 2\n{res}"
        assert res.stderr.strip() and PASSWORD not in res.stdout + res.stderr, str(res)
