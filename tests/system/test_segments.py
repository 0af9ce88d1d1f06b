"""Segments (--segment I/N): N runs of the same scenario, each with its share,
add up to exactly the unsegmented load, for every executor; vu.id stays
unique across the segments. The scenario names its user and iteration in
each request, so nginx's access log says who ran what."""

import collections

import pytest

COUNTED = """
local http = require "tide.http"
local tide = require "tide"
return {
  options = %s,
  run = function(vu)
    local r = http.get(("%%s/?id=%%d&it=%%d&seg=%%s"):format(vu.target, vu.id, vu.iteration_global,
                                                          vu.env.SEG or "all"))
    if r.status ~= 200 then error("GET / answered " .. tostring(r.status)) end
    %s
  end,
}
"""

N = 3


def run_segments(tide, access_log, options, sleep="", count=None, n=N, extra=()):
    """The scenario once whole and once as n segments (same --run-id): the
    results and the access log lines of each run, the whole one first."""
    path = tide.write(COUNTED % (options, sleep))
    runs = []
    for seg in [None] + list(range(1, n + 1)):
        access_log.reset_log()
        args = ["--target", access_log.url, "--run-id", "seg-test", *extra]
        if seg:
            args += ["--segment", f"{seg}/{n}", "--env", f"SEG={seg}"]
        res = tide.run(path, *args, timeout=60)
        assert res.rc == 0, str(res)
        reqs = res.count("http_reqs")
        lines = access_log.wait_log(reqs, settle=0.1)
        assert len(lines) == reqs, f"nginx logged {len(lines)}, tide counted {reqs}\n{res}"
        runs.append((res, lines))
    return runs[0], runs[1:]


def ids(lines):
    return {int(l.query["id"][0]) for l in lines}


def iterations_of(lines):
    return collections.Counter(int(l.query["it"][0]) for l in lines)


def check_ids_partition(whole_lines, segments, total):
    """Every id of 1..total in exactly one segment, the whole run's ids too."""
    seen = collections.Counter()
    for _res, lines in segments:
        for i in ids(lines):
            seen[i] += 1
    assert set(seen) <= set(range(1, total + 1)), sorted(seen)
    assert all(c == 1 for c in seen.values()), seen
    assert ids(whole_lines) <= set(range(1, total + 1))
    return seen


def test_per_vu_iterations_segments_add_up(tide, access_log):
    # 7 users x 5: 3 + 2 + 2 users, 35 iterations, ids 1..7 once each
    (whole, wl), segs = run_segments(tide, access_log, '{ executor = "per-vu-iterations", vus = 7, iterations = 5 }')
    assert whole.count("iterations") == 35
    assert [r.count("iterations") for r, _ in segs] == [15, 10, 10]
    assert sum(r.count("iterations") for r, _ in segs) == whole.count("iterations")
    seen = check_ids_partition(wl, segs, 7)
    assert set(seen) == ids(wl) == set(range(1, 8))
    assert [sorted(ids(l)) for _, l in segs] == [[1, 2, 3], [4, 5], [6, 7]]
    its = iterations_of(l for _, ls in segs for l in ls)
    assert set(its) == set(iterations_of(wl)) == set(range(1, 36)) and max(its.values()) == 1


def test_shared_iterations_segments_add_up(tide, access_log):
    # 100 iterations over 3 segments: 34 + 33 + 33, numbered 1..100 once each
    (whole, wl), segs = run_segments(tide, access_log, '{ executor = "shared-iterations", vus = 4, iterations = 100 }')
    assert whole.count("iterations") == 100
    assert [r.count("iterations") for r, _ in segs] == [34, 33, 33]
    check_ids_partition(wl, segs, 4)
    its = iterations_of(l for _, ls in segs for l in ls)
    assert sorted(its) == list(range(1, 101)) and max(its.values()) == 1
    assert sorted(iterations_of(segs[1][1])) == list(range(35, 68))


def test_shared_iterations_fewer_users_than_segments(tide, access_log):
    # 2 users and 5 iterations over 3 segments: 1, 1 and 0 users; 2 + 2 + 1 iterations
    (whole, wl), segs = run_segments(tide, access_log, '{ executor = "shared-iterations", vus = 2, iterations = 5 }')
    assert whole.count("iterations") == 5
    assert sum(r.count("iterations") for r, _ in segs) == 5
    seen = check_ids_partition(wl, segs, 2)
    assert set(seen) == {1, 2}


def test_constant_vus_segments_share_the_users(tide, access_log):
    (whole, wl), segs = run_segments(tide, access_log, '{ executor = "constant-vus", vus = 5, duration = "1s" }',
                                     sleep='tide.sleep("50ms")')
    seen = check_ids_partition(wl, segs, 5)
    assert set(seen) == ids(wl) == set(range(1, 6))
    assert [sorted(ids(l)) for _, l in segs] == [[1, 2], [3, 4], [5]]
    assert [r.metric("vus_max")["values"]["max"] for r, _ in segs] == [2, 2, 1]
    # vu.iteration_global stays unique across the segments
    its = iterations_of(l for _, ls in segs for l in ls)
    assert max(its.values()) == 1


def test_ramping_vus_stage_targets_split(tide, access_log):
    # a target of 10 over 3 segments: 4, 3 and 3 users at the peak
    opts = '{ executor = "ramping-vus", stages = { { duration = "0.6s", target = 10 }, { duration = "0.6s", target = 10 } } }'
    (whole, wl), segs = run_segments(tide, access_log, opts, sleep='tide.sleep("50ms")')
    assert [r.metric("vus")["values"]["max"] for r, _ in segs] == [4, 3, 3]
    assert whole.metric("vus")["values"]["max"] == 10
    seen = check_ids_partition(wl, segs, 10)
    assert set(seen) == ids(wl) == set(range(1, 11))
    assert [sorted(ids(l)) for _, l in segs] == [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]


@pytest.mark.parametrize("options,total", [
    ('{ executor = "constant-arrival-rate", rate = 50, duration = "2s", pre_allocated_vus = 4, max_vus = 7 }', 100),
    ('{ executor = "ramping-arrival-rate", start_rate = 10, stages = { { duration = "2s", target = 40 } }, '
     'pre_allocated_vus = 5, max_vus = 5 }', 50),
])
def test_arrival_rate_segments_take_every_nth_arrival(tide, access_log, options, total):
    (whole, wl), segs = run_segments(tide, access_log, options)
    started = [r.count("iterations") + r.count("dropped_iterations") for r, _ in segs]
    assert whole.count("iterations") + whole.count("dropped_iterations") == total
    assert sum(started) == total, started
    assert started == [total // N + (i < total % N) for i in range(N)], started
    # segment I takes arrivals k = I-1 (mod N): vu.iteration_global - 1
    for i, (_, lines) in enumerate(segs):
        assert all((k - 1) % N == i for k in iterations_of(lines)), (i, sorted(iterations_of(lines)))
    its = iterations_of(l for _, ls in segs for l in ls)
    assert max(its.values()) == 1
    check_ids_partition(wl, segs, int(options.split("max_vus = ")[1].split()[0]))


def test_named_scenarios_each_split(tide, access_log):
    opts = """{ scenarios = {
      a = { executor = "per-vu-iterations", vus = 4, iterations = 2 },
      b = { executor = "shared-iterations", vus = 2, iterations = 7, start_time = "0s" },
    } }"""
    (whole, wl), segs = run_segments(tide, access_log, opts)
    assert whole.count("iterations") == 15
    assert sum(r.count("iterations") for r, _ in segs) == 15
    seen = check_ids_partition(wl, segs, 6)
    assert set(seen) == ids(wl) == set(range(1, 7))


def test_segment_of_more_threads_keeps_its_share(tide, access_log):
    # the same segment on one or on two threads: the same users, the same ids
    path = tide.write(COUNTED % ('{ executor = "per-vu-iterations", vus = 11, iterations = 2 }', ""))
    got = []
    for threads in (1, 2):
        access_log.reset_log()
        res = tide.run(path, "--target", access_log.url, "--segment", "2/3", "--threads", threads)
        assert res.rc == 0, str(res)
        got.append(sorted(ids(access_log.wait_log(res.count("http_reqs"), settle=0.1))))
    assert got[0] == got[1] == [5, 6, 7, 8]


def test_summary_names_the_segment(run_tide, access_log):
    res = run_tide(COUNTED % ('{ vus = 2, iterations = 2 }', ""), "--target", access_log.url, "--segment", "2/4")
    assert res.rc == 0, str(res)
    assert "segment 2/4" in res.stdout.splitlines()[0], res.stdout


@pytest.mark.parametrize("bad", ["0/3", "4/3", "3", "a/b", "1/0", "-1/3", "1/3x", "", "1//3", "2/3/4", " 1/3"])
def test_bad_segment_is_a_usage_error(run_tide, bad):
    res = run_tide(COUNTED % ('{ vus = 1, iterations = 1 }', ""), "--target", "http://127.0.0.1:9",
                   "--segment", bad, json_out=False)
    assert res.rc == 2, str(res)
    assert f"'{bad}'" in res.stderr and "--segment" in res.stderr, res.stderr


# ------------------------------------------------------------------ --start-at

START_SCENARIO = """
local http = require "tide.http"
return {
  options = { vus = 1, iterations = 1 },
  setup = function(ctx) http.get(ctx.target .. "/?setup=1") end,
  run = function(vu) http.get(vu.target .. "/?load=1") end,
}
"""


def _iso(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.parametrize("form", ["rfc3339", "unix"])
def test_start_at_waits_until_the_time(tide, form):
    import time
    from httpserver import RecordingServer
    server = RecordingServer().start()
    try:
        at = time.time() + 2.0
        text = _iso(at) if form == "rfc3339" else f"{at:.3f}"
        path = tide.write(START_SCENARIO)
        run = tide.start(path, "--target", server.url, "--start-at", text)
        times = {}
        deadline = time.monotonic() + 20
        while len(times) < 2 and time.monotonic() < deadline:
            with server.lock:
                for _m, p, _h, _b in server.seen:
                    times.setdefault(p, time.time())
            time.sleep(0.005)
        res = run.finish(20)
        assert res.rc == 0, str(res)
        assert times["/?setup=1"] < at - 1, (times, at)  # setup ran before the wait
        assert abs(times["/?load=1"] - at) < 0.2, (times["/?load=1"] - at, str(res))
        assert "waiting" in res.stderr and text in res.stderr, res.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("when", ["2020-01-01T00:00:00Z", "1600000000", "1600000000.5"])
def test_start_at_in_the_past_is_a_usage_error(run_tide, when):
    res = run_tide(START_SCENARIO, "--target", "http://127.0.0.1:9", "--start-at", when, json_out=False)
    assert res.rc == 2, str(res)
    assert f"'{when}'" in res.stderr and "past" in res.stderr, res.stderr


@pytest.mark.parametrize("bad", ["tomorrow", "2026-13-01T00:00:00Z", "2026-12-04T22:30:00", "2026-12-04T22:30:00+01:00",
                                 "", "-5", "1e12"])
def test_start_at_bad_value_is_a_usage_error(run_tide, bad):
    res = run_tide(START_SCENARIO, "--target", "http://127.0.0.1:9", "--start-at", bad, json_out=False)
    assert res.rc == 2, str(res)
    assert f"'{bad}'" in res.stderr and "--start-at" in res.stderr, res.stderr


def test_ctrl_c_while_waiting_to_start(tide):
    import signal
    import time
    from httpserver import RecordingServer
    server = RecordingServer().start()
    try:
        path = tide.write(START_SCENARIO)
        run = tide.start(path, "--target", server.url, "--start-at", f"{time.time() + 30:.3f}")
        deadline = time.monotonic() + 10
        while not server.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        run.signal(signal.SIGINT)
        res = run.finish(10)
        assert res.rc == 130, str(res)
        assert res.elapsed < 8, str(res)
        assert [p for _m, p, _h, _b in server.seen] == ["/?setup=1"], server.seen
    finally:
        server.stop()


# ------------------------------------------------- setup once, teardown once

def _crud():
    from crud_server import CrudServer
    return CrudServer().start()


def _tide_cmd(tide, *args):
    from conftest import TIDE
    return tide.exec([TIDE, *map(str, args)], timeout=60)


def test_setup_once_segments_with_data_teardown_once(tide):
    import json
    from pathlib import Path
    example = Path(__file__).resolve().parents[2] / "scenarios" / "examples" / "api-crud.lua"
    crud = _crud()
    try:
        data = tide.tmp / "data.json"
        res = _tide_cmd(tide, "setup", example, "--target", crud.url, "--out-data", data)
        assert res.rc == 0, str(res)
        token = json.loads(data.read_text())["token"]
        assert token and crud.ops["register"] == crud.ops["login"] == 1 and len(crud.users) == 1
        total = 0
        for i in range(1, N + 1):
            r = tide.run(example, "--target", crud.url, "--vus", 5, "--iterations", 3, "--segment", f"{i}/{N}",
                         "--data", data, "--run-id", "crud-seg")
            assert r.rc == 0, str(r)
            total += r.count("iterations")
            assert r.json["run_id"] == "crud-seg" and r.json["segment"] == {"index": i, "count": N}
        assert total == 15 and crud.ops["create"] == crud.ops["delete"] == 15  # 5 users x 3, split 2+2+1
        # no segment registered, logged in or unregistered: setup and teardown ran elsewhere
        assert crud.ops["register"] == crud.ops["login"] == 1 and crud.ops["unregister"] == 0
        res = _tide_cmd(tide, "teardown", example, "--target", crud.url, "--data", data)
        assert res.rc == 0, str(res)
        assert crud.ops["unregister"] == 1 and crud.users == {}
    finally:
        crud.stop()


def test_setup_writes_json_to_stdout(tide):
    path = tide.write("""return { setup = function(ctx) return { n = 42, who = ctx.env.WHO, vus = ctx.vus } end,
                               run = function() end, options = { vus = 3, duration = "1s" } }""")
    res = _tide_cmd(tide, "setup", path, "--env", "WHO=me")
    assert res.rc == 0, str(res)
    import json
    assert json.loads(res.stdout) == {"n": 42, "who": "me", "vus": 3}


def test_setup_failure_is_exit_3(tide):
    path = tide.write('return { setup = function() error("no admin") end, run = function() end }')
    res = _tide_cmd(tide, "setup", path)
    assert res.rc == 3 and "no admin" in res.stderr, str(res)
    assert res.stdout == ""


def test_teardown_failure_is_exit_3_and_gets_the_data(tide):
    data = tide.tmp / "d.json"
    data.write_text('{"token": "abc"}')
    path = tide.write('return { teardown = function(ctx, data) error("token " .. data.token) end, run = function() end }')
    res = _tide_cmd(tide, "teardown", path, "--data", data)
    assert res.rc == 3 and "token abc" in res.stderr, str(res)


def test_run_with_data_skips_setup_and_teardown(tide, access_log):
    data = tide.tmp / "d.json"
    data.write_text('{"path": "/from-data"}')
    path = tide.write("""
local http = require "tide.http"
return {
  options = { vus = 2, iterations = 2 },
  setup = function(ctx) http.get(ctx.target .. "/setup") return { path = "/from-setup" } end,
  run = function(vu, data) http.get(vu.target .. data.path) end,
  teardown = function(ctx) http.get(ctx.target .. "/teardown") end,
}""")
    res = tide.run(path, "--target", access_log.url, "--data", data)
    assert res.rc == 0, str(res)
    assert sorted(l.path for l in access_log.wait_log(2)) == ["/from-data", "/from-data"]


@pytest.mark.parametrize("content", [None, "{not json", ""])
def test_bad_data_file_is_a_usage_error(tide, content):
    data = tide.tmp / "bad.json"
    if content is not None:
        data.write_text(content)
    path = tide.write('return { run = function() end, teardown = function() end }')
    for cmd in (["run", path, "--data", data], ["teardown", path, "--data", data]):
        res = _tide_cmd(tide, *cmd)
        assert res.rc == 2 and str(data) in res.stderr, str(res)


def test_teardown_needs_data(tide):
    path = tide.write('return { run = function() end, teardown = function() end }')
    res = _tide_cmd(tide, "teardown", path)
    assert res.rc == 2 and "--data" in res.stderr, str(res)


# ------------------------------------------------ segment and run id stored

OLD_SCHEMA = """
CREATE SCHEMA tide;
CREATE TABLE tide.runs (
  run_id text PRIMARY KEY, scenario text NOT NULL, options jsonb, target text,
  started_at timestamptz, finished_at timestamptz, exit_code integer, host text,
  tide_version text, duration_s double precision, summary jsonb NOT NULL);
CREATE TABLE tide.metrics (
  run_id text NOT NULL REFERENCES tide.runs ON DELETE CASCADE, key text NOT NULL,
  metric text NOT NULL, tags jsonb NOT NULL, type text NOT NULL, contains text,
  "values" jsonb NOT NULL, histogram jsonb, thresholds jsonb, PRIMARY KEY (run_id, key));
CREATE TABLE tide.points (
  run_id text NOT NULL REFERENCES tide.runs ON DELETE CASCADE, t integer NOT NULL,
  metric text NOT NULL, count double precision, rate double precision,
  p50 double precision, p95 double precision, p99 double precision, vus integer,
  PRIMARY KEY (run_id, t, metric));
INSERT INTO tide.runs (run_id, scenario, summary) VALUES ('old-run', 'old.lua', '{}');
INSERT INTO tide.metrics (run_id, key, metric, tags, type, "values")
  VALUES ('old-run', 'http_reqs', 'http_reqs', '{}', 'counter', '{"count": 7}');
"""


@pytest.mark.parametrize("existing", [False, True])
def test_segments_stored_under_one_run_id(tide, access_log, pg, existing):
    from pg_server import PgServer
    dsn = pg.fresh_db()
    if existing:  # a database made before segments: run_id was the key
        PgServer.query(dsn, OLD_SCHEMA)
    path = tide.write(COUNTED % ('{ executor = "per-vu-iterations", vus = 5, iterations = 2 }', ""))
    for i in range(1, N + 1):
        res = tide.run(path, "--target", access_log.url, "--segment", f"{i}/{N}", "--run-id", "pg-seg",
                       "--out", f"pg={dsn}")
        assert res.rc == 0, str(res)
        assert res.json["run_id"] == "pg-seg" and res.json["segment"] == {"index": i, "count": N}
    rows = PgServer.query(dsn, "SELECT segment, summary->'segment', summary->>'run_id' FROM tide.runs "
                               "WHERE run_id = 'pg-seg' ORDER BY segment")
    assert rows == [(f"{i}/{N}", {"index": i, "count": N}, "pg-seg") for i in range(1, N + 1)], rows
    counts = PgServer.query(dsn, """SELECT segment, ("values"->>'count')::int FROM tide.metrics
                                    WHERE run_id = 'pg-seg' AND key = 'iterations' ORDER BY segment""")
    assert counts == [("1/3", 4), ("2/3", 4), ("3/3", 2)], counts
    assert PgServer.query(dsn, "SELECT count(DISTINCT segment) FROM tide.points WHERE run_id = 'pg-seg'") == [(3,)]
    # no row per segment in the old tool's table: one per whole run, when merged
    assert PgServer.query(dsn, "SELECT count(*) FROM analytics.load_testing WHERE run_id = 'pg-seg'") == [(0,)]
    # the same segment again, or another count under the id: refused (results kept in a file, exit 4)
    for seg, why in (("2/3", "pg-seg segment 2/3 is already stored"), ("1/4", "segments of 3, not 4")):
        res = tide.run(path, "--target", access_log.url, "--segment", seg, "--run-id", "pg-seg", "--out", f"pg={dsn}")
        assert res.rc == 4 and why in res.stderr, str(res)
    # a whole run: segment NULL, the old tool's row, and its id once only
    res = tide.run(path, "--target", access_log.url, "--run-id", "pg-whole", "--out", f"pg={dsn}")
    assert res.rc == 0 and "segment" not in res.json, str(res)
    assert PgServer.query(dsn, "SELECT segment FROM tide.runs WHERE run_id = 'pg-whole'") == [(None,)]
    assert PgServer.query(dsn, "SELECT num_users FROM analytics.load_testing WHERE run_id = 'pg-whole'") == [(5,)]
    res = tide.run(path, "--target", access_log.url, "--run-id", "pg-whole", "--out", f"pg={dsn}")
    assert res.rc == 4 and "pg-whole is already stored" in res.stderr, str(res)
    res = tide.run(path, "--target", access_log.url, "--segment", "1/2", "--run-id", "pg-whole", "--out", f"pg={dsn}")
    assert res.rc == 4 and "pg-whole is already stored" in res.stderr, str(res)
    if existing:
        assert PgServer.query(dsn, "SELECT segment FROM tide.runs WHERE run_id = 'old-run'") == [(None,)]
    # a whole run still reads back by its id
    from conftest import TIDE
    rep = tide.exec([TIDE, "report", f"pg:{dsn}#pg-whole"])
    assert rep.rc == 0, str(rep)
