"""Load shapes and what is judged of a run: arrival-rate and ramping executors,
open-model timing, several scenarios, graceful stop, thresholds, checks,
custom metrics, groups, progress lines, `tide list` and bad options.

Run with Debian's interpreter:
    TIDE=/path/to/tide /usr/bin/python3 -m pytest -q tests/system/test_shapes.py
"""

import re
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import slow_server  # noqa: E402
from conftest import TIDE  # noqa: E402


@pytest.fixture(scope="module")
def slow(request):
    """Our own slow HTTP server (see slow_server.py), stopped at the end."""
    server = slow_server.SlowServer().start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture
def slow_fresh(slow):
    slow.reset()
    return slow


def values(res, key):
    m = res.metrics
    assert key in m, f"metric {key!r} missing from the JSON output (has: {sorted(m)})\n{res}"
    return m[key]["values"]


def wait_for(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


ARRIVAL = """
local http = require "tide.http"
return {
  options = %s,
  run = function(vu)
    local r = http.get(vu.target .. "%s")
    if r.status ~= 200 then error(("GET answered %%s %%s"):format(r.status, r.error)) end
  end,
}
"""


# ---------------------------------------------------------------- 1-3 arrival rate


def assert_schedule_kept(res, expected, slack):
    """Every scheduled iteration either ran or was dropped; then none dropped
    (max_vus leaves room for the client machine being busy for a while)."""
    its, dropped = res.count("iterations"), res.count("dropped_iterations")
    assert abs(its + dropped - expected) <= slack, \
        f"iterations {its} + dropped {dropped} = {its + dropped}, expected {expected} ± {slack}\n{res}"
    assert dropped == 0, (f"{dropped} iterations dropped (no free VU) although max_vus is ample: "
                          f"tide fell behind its schedule (is the machine overloaded?)\n{res}")


def test_constant_arrival_rate_200_per_s(run_tide, access_log):
    res = run_tide(ARRIVAL % ('{ executor = "constant-arrival-rate", rate = 200, duration = "5s", '
                              'pre_allocated_vus = 20, max_vus = 200 }', "/"),
                   "--target", access_log.url, timeout=30)
    assert res.rc == 0, str(res)
    assert_schedule_kept(res, 1000, 10)
    n = res.count("http_reqs")
    assert abs(n - 1000) <= 10, f"tide counted {n} requests, expected 1000 ± 10 (200/s × 5s)\n{res}"
    lines = access_log.wait_log(n)
    assert abs(len(lines) - 1000) <= 10, f"nginx logged {len(lines)} requests, expected 1000 ± 10\n{res}"
    assert len(lines) == n, f"tide counted {n}, nginx logged {len(lines)}\n{res}"
    assert res.count("dropped_iterations") == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    ms = res.json["state"]["testRunDurationMs"]
    assert 4800 <= ms <= 6500, f"testRunDurationMs {ms}, expected about 5000\n{res}"
    pts = res.json["points"]
    keys = {"t", "reqs", "failed", "iterations", "errors", "dropped", "vus", "p50", "p95", "p99"}
    assert pts and all(keys <= set(p) for p in pts), f"points {pts[:2]}\n{res}"
    assert [p["t"] for p in pts] == list(range(len(pts))), f"points t: {[p['t'] for p in pts]}\n{res}"
    assert sum(p["reqs"] for p in pts) == n, f"points' reqs add up to {sum(p['reqs'] for p in pts)}, not {n}\n{res}"
    full = [p["reqs"] for p in pts[:5]]
    assert all(180 <= r <= 220 for r in full), f"requests per second {full}, expected about 200 each\n{res}"


def test_constant_arrival_rate_2000_per_s(run_tide, access_log):
    res = run_tide(ARRIVAL % ('{ executor = "constant-arrival-rate", rate = 2000, duration = "5s", '
                              'pre_allocated_vus = 50, max_vus = 600 }', "/"),
                   "--target", access_log.url, timeout=40)
    assert res.rc == 0, str(res)
    assert_schedule_kept(res, 10000, 100)
    n = res.count("http_reqs")
    assert abs(n - 10000) <= 100, f"tide counted {n} requests, expected 10000 ± 1% (2000/s × 5s)\n{res}"
    lines = access_log.wait_log(n, timeout=10)
    assert abs(len(lines) - 10000) <= 100, f"nginx logged {len(lines)} requests, expected 10000 ± 1%\n{res}"
    assert len(lines) == n, f"tide counted {n}, nginx logged {len(lines)}\n{res}"
    assert res.count("dropped_iterations") == 0, str(res)


def test_dropped_iterations_when_max_vus_too_small(run_tide, slow_fresh):
    res = run_tide(ARRIVAL % ('{ executor = "constant-arrival-rate", rate = 50, duration = "3s", '
                              'pre_allocated_vus = 5, max_vus = 5 }', "/sleep?ms=500"),
                   "--target", slow_fresh.url, timeout=30)
    assert res.rc == 0, str(res)
    dropped = res.count("dropped_iterations")
    its = res.count("iterations")
    assert dropped > 0, f"5 VUs cannot start 50 iterations/s of 500 ms: some must be dropped\n{res}"
    assert abs(its + dropped - 150) <= 3, \
        f"iterations {its} + dropped {dropped} = {its + dropped}, expected 150 ± 3 (50/s × 3s)\n{res}"
    # 5 VUs × 2 iterations/s × 3 s (+ the ones running at the end, which finish)
    assert 25 <= its <= 40, f"{its} iterations from 5 VUs doing 500 ms iterations for 3 s\n{res}"
    assert res.metric("dropped_iterations")["type"] == "counter", str(res)
    pts = res.json.get("points")
    assert pts, f"no points in the JSON\n{res}"
    assert sum(p["dropped"] for p in pts) == dropped, \
        f"points' dropped add up to {sum(p['dropped'] for p in pts)}, the counter says {dropped}\n{res}"
    served = [h for h in slow_fresh.hits_snapshot() if h[1] == "/sleep"]
    assert len(served) == its, f"server saw {len(served)} requests, tide counted {its} iterations\n{res}"


# ---------------------------------------------------------------- 4 open-model timing


FIRST_SECOND = """
local http = require "tide.http"
local tide = require "tide"
local t0 = tide.now()
local busy_done = false
return {
  options = %s,
  run = function(vu)
    %s
    local r1 = http.get(vu.target .. "/fast", { name = "first" })
    local r2 = http.get(vu.target .. "/fast", { name = "second" })
    if r1.status ~= 200 or r2.status ~= 200 then
      error(("statuses %%s %%s (%%s %%s)"):format(r1.status, r2.status, r1.error, r2.error))
    end
  end,
}
"""


def test_stall_shows_in_open_model_numbers(tide, slow_fresh):
    opts = ('{ executor = "constant-arrival-rate", rate = 100, duration = "4s", '
            'pre_allocated_vus = 20, max_vus = 200 }')
    run = tide.start(FIRST_SECOND % (opts, ""), "--target", slow_fresh.url)
    try:
        assert wait_for(lambda: slow_fresh.hits_snapshot(), 10), "tide sent no request within 10 s"
        first = slow_fresh.hits_snapshot()[0][0]
        time.sleep(max(0.0, first + 1.5 - time.monotonic()))
        with urllib.request.urlopen(slow_fresh.url + "/stall?s=1", timeout=5) as r:
            assert r.status == 200
    finally:
        res = run.finish(timeout=30)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert res.count("dropped_iterations") == 0, str(res)
    its = res.count("iterations")
    assert abs(its - 400) <= 4, f"{its} iterations, expected 400 (100/s × 4s)\n{res}"
    it_p99 = values(res, "iteration_duration")["p(99)"]
    first_p99 = values(res, "http_req_duration{name:first}")["p(99)"]
    second = values(res, "http_req_duration{name:second}")
    assert it_p99 >= 700, f"iteration_duration p99 {it_p99:.1f} ms: the 1 s stall does not show\n{res}"
    assert first_p99 >= 700, f"http_req_duration{{name:first}} p99 {first_p99:.1f} ms: the stall does not show\n{res}"
    assert second["p(99)"] < 100, \
        f"http_req_duration{{name:second}} p99 {second['p(99)']:.1f} ms: the second request was not delayed\n{res}"
    assert second["count"] == its, str(res)


def test_lag_charged_to_first_request(run_tide, slow_fresh):
    """The engine thread is blocked for 0.5 s (a busy loop in one iteration,
    inside a C call where tide cannot suspend the user for the others): the
    iterations due meanwhile start late. Their lag is charged to
    iteration_duration and to their first request, not to the second."""
    opts = ('{ executor = "constant-arrival-rate", rate = 100, duration = "3s", '
            'pre_allocated_vus = 20, max_vus = 200 }')
    busy = ("if not busy_done and tide.now() - t0 >= 1 then busy_done = true; "
            "string.gsub('x', 'x', function() local b = tide.now(); while tide.now() - b < 0.5 do end end) end")
    res = run_tide(FIRST_SECOND % (opts, busy), "--target", slow_fresh.url, "--threads", "1", timeout=30)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    its = res.count("iterations")
    assert abs(its - 300) <= 3, f"{its} iterations, expected 300 (100/s × 3s)\n{res}"
    assert res.count("dropped_iterations") == 0, str(res)
    it_p99 = values(res, "iteration_duration")["p(99)"]
    first = values(res, "http_req_duration{name:first}")
    waiting = values(res, "http_req_waiting{name:first}")
    second = values(res, "http_req_duration{name:second}")
    # ~50 iterations were due during the 0.5 s block, lags spread over 0..500 ms
    assert it_p99 >= 400, f"iteration_duration p99 {it_p99:.1f} ms: the 0.5 s lag is not charged\n{res}"
    assert first["p(99)"] >= 400, f"http_req_duration{{name:first}} p99 {first['p(99)']:.1f} ms: lag not charged\n{res}"
    assert waiting["p(99)"] >= 400, f"http_req_waiting{{name:first}} p99 {waiting['p(99)']:.1f} ms: lag not charged\n{res}"
    assert second["p(99)"] < 100, f"http_req_duration{{name:second}} p99 {second['p(99)']:.1f} ms: lag charged twice\n{res}"


# ---------------------------------------------------------------- 5 ramping-vus


def ramp_plan(t, start, stages):
    frm = start
    for dur, target in stages:
        if t <= dur:
            return frm + (target - frm) * t / dur
        t -= dur
        frm = target
    return frm


def test_ramping_vus_follows_stages(run_tide, access_log):
    stages = [(2, 10), (2, 10), (2, 0)]
    res = run_tide("""
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "ramping-vus", start_vus = 0,
              stages = { {duration = "2s", target = 10}, {duration = "2s", target = 10},
                         {duration = "2s", target = 0} } },
  run = function(vu)
    tide.sleep(0.05)
    local r = http.get(vu.target .. "/")
    if r.status ~= 200 then error("status " .. tostring(r.status)) end
  end,
}
""", "--target", access_log.url, timeout=60)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert res.count("iterations_interrupted") == 0, str(res)
    threads = res.json["tide"]["threads"]
    pts = res.json["points"]
    assert len(pts) >= 6, f"{len(pts)} points for a 6 s run\n{res}"
    ms = res.json["state"]["testRunDurationMs"]
    assert 5900 <= ms <= 7500, f"testRunDurationMs {ms}, expected about 6000\n{res}"
    # point t covers second [t, t+1); its vus are sampled at its end, t+1
    bad = []
    for p in pts[:6]:
        plan = ramp_plan(p["t"] + 1, 0, stages)
        if abs(p["vus"] - plan) > 1:
            bad.append((p["t"], p["vus"], plan))
    assert not bad, (f"(t, sampled vus, plan at t+1) off by more than 1 with {threads} threads: {bad}\n"
                     f"points: {[(p['t'], p['vus']) for p in pts]}\n{res}")
    assert values(res, "vus_max")["value"] == 10, f"vus_max {values(res, 'vus_max')}\n{res}"
    assert max(p["vus"] for p in pts) == 10, f"points: {[(p['t'], p['vus']) for p in pts]}\n{res}"
    reqs = res.count("http_reqs")
    # the area under the plan: 10 + 20 + 10 VU-seconds, each VU ~ 15-20 iterations/s
    assert reqs > 200, f"{reqs} requests\n{res}"


def test_ramping_vus_gauge_reaches_peak(run_tide):
    """4 users run together for 0.7 s: the `vus` gauge's max must say 4."""
    res = run_tide("""
local tide = require "tide"
return {
  options = { executor = "ramping-vus", start_vus = 0,
              stages = { {duration = "0.3s", target = 4}, {duration = "0.7s", target = 4} } },
  run = function(vu) tide.sleep(0.05) end,
}
""", "--threads", "1", timeout=20)
    assert res.rc == 0, str(res)
    assert res.count("iterations") > 40, str(res)
    assert values(res, "vus_max")["value"] == 4, str(res)
    v = values(res, "vus")
    assert v["max"] == 4, f"vus gauge {v}: 4 VUs ran at once for 0.7 s, expected max 4\n{res}"


# ---------------------------------------------------------------- 6 graceful stop

LONG_ITERATION = """
local tide = require "tide"
return {
  options = { executor = "constant-vus", vus = 2, duration = "1s" %s },
  run = function(vu) tide.sleep(3) end,
}
"""


def test_graceful_stop_cuts_long_iterations(run_tide):
    res = run_tide(LONG_ITERATION % ', graceful_stop = "0.5s"', timeout=20)
    assert res.rc == 0, str(res)
    assert res.elapsed < 2.5, f"run took {res.elapsed:.2f}s; duration 1s + graceful_stop 0.5s\n{res}"
    ms = res.json["state"]["testRunDurationMs"]
    assert 1400 <= ms <= 2000, f"testRunDurationMs {ms}, expected about 1500\n{res}"
    assert res.count("iterations_interrupted") == 2, str(res)
    assert res.count("iterations") == 0, str(res)


def test_graceful_stop_default_lets_iterations_finish(run_tide):
    res = run_tide(LONG_ITERATION % "", timeout=20)
    assert res.rc == 0, str(res)
    ms = res.json["state"]["testRunDurationMs"]
    assert 2900 <= ms <= 4000, f"testRunDurationMs {ms}, expected about 3000\n{res}"
    assert res.count("iterations") == 2, str(res)
    assert res.count("iterations_interrupted") == 0, str(res)


# ---------------------------------------------------------------- 7 several scenarios


def test_two_scenarios_in_one_file(run_tide, slow_fresh):
    res = run_tide("""
local http = require "tide.http"
local tide = require "tide"
return {
  options = {
    scenarios = {
      browse = { executor = "constant-vus", vus = 2, duration = "2s", exec = "browse",
                 tags = { kind = "b" } },
      buy = { executor = "per-vu-iterations", vus = 1, iterations = 5, exec = "buy",
              start_time = "1s" },
    },
    thresholds = {
      ["http_reqs{scenario:buy}"] = "count == 5",
      ["iterations{scenario:buy}"] = "count == 5",
      ["http_reqs{scenario:browse,kind:b}"] = "count > 0",
      ["http_reqs{scenario:buy,kind:b}"] = "count == 0",
    },
  },
  browse = function(vu)
    if vu.scenario ~= "browse" then error("vu.scenario = " .. tostring(vu.scenario)) end
    local r = http.get(vu.target .. "/browse")
    if r.status ~= 200 then error("status " .. tostring(r.status)) end
    tide.sleep(0.1)
  end,
  buy = function(vu)
    local r = http.get(vu.target .. "/buy")
    if r.status ~= 200 then error("status " .. tostring(r.status)) end
  end,
  run = function() error("module.run must not be called") end,
}
""", "--target", slow_fresh.url, timeout=30)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    hits = slow_fresh.hits_snapshot()
    browse = [t for t, p in hits if p == "/browse"]
    buy = [t for t, p in hits if p == "/buy"]
    others = [p for _, p in hits if p not in ("/browse", "/buy")]
    assert not others, f"unexpected paths {others}\n{res}"
    assert len(buy) == 5, f"server saw {len(buy)} /buy requests, expected 5\n{res}"
    assert 10 <= len(browse) <= 60, f"server saw {len(browse)} /browse requests\n{res}"
    assert values(res, "http_reqs{name:/buy}")["count"] == 5, str(res)
    assert values(res, "http_reqs{name:/browse}")["count"] == len(browse), str(res)
    assert res.count("http_reqs") == len(browse) + 5, str(res)
    start = min(browse)
    assert min(buy) - start >= 0.95, \
        f"buy's first request came {min(buy) - start:.3f}s after browse's first; start_time is 1s\n{res}"
    assert min(buy) - start < 2.0, f"buy started {min(buy) - start:.3f}s in\n{res}"
    assert max(browse) - start < 2.3, f"browse went on for {max(browse) - start:.3f}s (duration 2s)\n{res}"
    # the scenario tags, seen through the thresholds' sub-metrics
    assert values(res, "http_reqs{scenario:buy}")["count"] == 5, str(res)
    assert values(res, "iterations{scenario:buy}")["count"] == 5, str(res)
    assert values(res, "http_reqs{scenario:browse,kind:b}")["count"] == len(browse), str(res)
    assert values(res, "http_reqs{scenario:buy,kind:b}")["count"] == 0, str(res)


# ---------------------------------------------------------------- 8 thresholds

THRESHOLDS = """
local http = require "tide.http"
local check = require "tide.check"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 5, thresholds = %s },
  run = function(vu)
    local r = http.get(vu.target .. "/")
    check(r, { ["is 200"] = function(r) return r.status == 200 end })
    local r2 = http.get(vu.target .. "/503")
    check(r2, { ["status 200"] = r2.status == 200 })
  end,
}
"""


def test_thresholds_pass_exit_0(run_tide, access_log):
    res = run_tide(THRESHOLDS % """{
      http_req_duration = "p(95) < 5s",
      http_reqs = { "count == 20", "count > 1" },
      ["http_req_duration{name:/}"] = { "p(99) < 5000ms", "max < 5s" },
      ["http_req_failed{name:/}"] = "rate == 0",
      ["http_req_failed{name:/503}"] = "rate == 1",
      ["checks{check:is 200}"] = "rate == 1",
      ["checks{check:status 200}"] = "rate == 0",
      iterations = "count == 10",
    }""", "--target", access_log.url)
    assert res.rc == 0, str(res)
    m = res.metrics
    for key, expr in [("http_req_duration", "p(95) < 5s"), ("http_reqs", "count == 20"),
                      ("http_reqs", "count > 1"), ("http_req_duration{name:/}", "max < 5s"),
                      ("http_req_failed{name:/503}", "rate == 1"), ("checks{check:is 200}", "rate == 1"),
                      ("checks{check:status 200}", "rate == 0"), ("iterations", "count == 10")]:
        assert key in m, f"{key} missing from the JSON\n{res}"
        th = m[key].get("thresholds", {})
        assert th.get(expr) == {"ok": True}, f"{key}: thresholds {th}, expected {expr!r} ok\n{res}"
    assert m["checks{check:is 200}"]["values"]["passes"] == 10, str(res)
    assert m["checks{check:status 200}"]["values"]["fails"] == 10, str(res)
    assert "✓ http_req_duration: p(95) < 5s" in res.stdout, str(res)
    assert "✗" not in res.stdout.split("thresholds")[-1].split("checks")[0], str(res)


def test_threshold_fails_exit_1(run_tide, access_log):
    res = run_tide(THRESHOLDS % """{
      http_req_duration = "p(95) < 0.001ms",
      ["checks{check:is 200}"] = "rate == 1",
      ["checks{check:status 200}"] = "rate > 0.5",
    }""", "--target", access_log.url)
    assert res.rc == 1, str(res)
    p95 = values(res, "http_req_duration")["p(95)"]
    line = [l for l in res.stdout.splitlines() if "http_req_duration: p(95) < 0.001ms" in l]
    assert line, f"no summary line for the failing threshold\n{res}"
    assert "✗" in line[0], f"failing threshold not marked ✗: {line[0]!r}\n{res}"
    assert re.search(r"observed [\d.]+(µs|ms|s)\)", line[0]), \
        f"observed value (with its unit) not shown: {line[0]!r}\n{res}"
    shown = float(line[0].split("observed")[-1].strip(" ()").replace("ms", "").replace("µs", ""))
    assert shown > 0, line[0]
    th = res.metrics["http_req_duration"]["thresholds"]
    assert th["p(95) < 0.001ms"] == {"ok": False}, f"{th}\n{res}"
    ok_line = [l for l in res.stdout.splitlines() if "checks{check:is 200}: rate == 1" in l]
    bad_line = [l for l in res.stdout.splitlines() if "checks{check:status 200}: rate > 0.5" in l]
    assert ok_line and "✓" in ok_line[0], f"{ok_line}\n{res}"
    assert bad_line and "✗" in bad_line[0], f"{bad_line}\n{res}"
    assert res.metrics["checks{check:status 200}"]["thresholds"]["rate > 0.5"] == {"ok": False}, str(res)
    assert p95 > 0.001, str(res)
    assert len(access_log.wait_log(20)) == 20, str(res)


@pytest.mark.parametrize("thresholds, needle", [
    ('{ http_req_duraton = "p(95) < 200ms" }', "http_req_duraton"),
    ('{ ["http_req_duraton{name:/}"] = "p(95) < 200ms" }', "http_req_duraton"),
    ('{ http_req_duration = "p95 < 200" }', "p95 < 200"),
    ('{ http_req_duration = "avg <<< 3" }', "avg <<< 3"),
    ('{ http_req_duration = { "p(95) < 1s", "median < 2s" } }', "median"),
    ('{ http_req_duration = "p(95) < 200 parsecs" }', "parsecs"),
], ids=["typo", "typo-submetric", "p95", "triple-lt", "unknown-aggregate", "bad-unit"])
def test_bad_thresholds_exit_2_before_load(run_tide, access_log, thresholds, needle):
    res = run_tide(THRESHOLDS % thresholds, "--target", access_log.url)
    assert res.rc == 2, str(res)
    assert needle in res.stderr, f"stderr does not name {needle!r}\n{res}"
    assert access_log.wait_log(settle=0.3) == [], f"requests reached the server\n{res}"
    assert res.json is None, f"results written for a run that never started\n{res}"


# ---------------------------------------------------------------- 9 abort_on_fail


def test_abort_on_fail_stops_run(tide, slow_fresh, tmp_path):
    marker = tmp_path / "teardown-ran"
    run = tide.start("""
local http = require "tide.http"
return {
  options = {
    executor = "constant-vus", vus = 2, duration = "20s",
    thresholds = {
      http_req_duration = { { threshold = "p(95) < 1ms", abort_on_fail = true, delay_abort_eval = "1s" } },
    },
  },
  run = function(vu) http.get(vu.target .. "/sleep?ms=50") end,
  teardown = function(ctx)
    local f = assert(io.open(ctx.env.MARKER, "w")); f:write("ok"); f:close()
  end,
}
""", "--target", slow_fresh.url, "--env", f"MARKER={marker}")
    deadline = time.monotonic() + 8
    while run.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    still_running = run.proc.poll() is None
    if still_running:
        run.proc.kill()
    res = run.finish(timeout=10)
    assert not still_running, \
        f"abort_on_fail did not stop the run: still running after 8 s of a 20 s run (killed)\n{res}"
    assert res.rc == 1, str(res)
    assert marker.exists() and marker.read_text() == "ok", f"teardown did not run\n{res}"
    assert res.json is not None, f"no JSON written\n{res}"
    assert res.metrics["http_req_duration"]["thresholds"]["p(95) < 1ms"] == {"ok": False}, str(res)
    ms = res.json["state"]["testRunDurationMs"]
    assert 950 <= ms < 5000, f"testRunDurationMs {ms}: expected an abort after delay_abort_eval (1s)\n{res}"
    assert "✗" in res.stdout, str(res)


# ---------------------------------------------------------------- 10 progress


PROGRESS = """
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "constant-vus", vus = 1, duration = "3s" },
  run = function(vu) http.get(vu.target .. "/"); tide.sleep(0.05) end,
}
"""


def progress_lines(text):
    return [l for l in text.splitlines() if "vus" in l and "req/s" in l]


def test_progress_lines_on_stderr(run_tide, nginx):
    res = run_tide(PROGRESS, "--target", nginx.url, "--progress", "1", timeout=20)
    assert res.rc == 0, str(res)
    lines = progress_lines(res.stderr)
    assert len(lines) >= 2, f"{len(lines)} progress lines on stderr, expected ≥ 2 at --progress 1 over 3 s\n{res}"
    assert not progress_lines(res.stdout), f"progress on stdout\n{res}"
    for l in lines:
        assert "\r" not in l and "\033" not in l, f"terminal control codes off a terminal: {l!r}"
        assert "failed" in l and "p95" in l and "/3s" in l, f"progress line {l!r}"
    # the last line may come after the load ended (vus 0, 0 req/s)
    busy = [l for l in lines if "vus 1 " in l and " 0 req/s" not in l]
    assert busy, f"no progress line shows the running VU and its requests: {lines}\n{res}"


def test_progress_quiet(run_tide, nginx):
    res = run_tide(PROGRESS, "--target", nginx.url, "--progress", "1", "--quiet", timeout=20)
    assert res.rc == 0, str(res)
    assert progress_lines(res.stderr) == [], f"--quiet still printed progress\n{res}"
    assert res.stdout == "", str(res)


# ---------------------------------------------------------------- 11 checks, custom metrics


CHECKS_METRICS = """
local http = require "tide.http"
local check = require "tide.check"
local metrics = require "tide.metrics"
local orders = metrics.counter("orders")
local level = metrics.gauge("level")
local even = metrics.rate("even_iteration")
local size = metrics.trend("basket_size")
local wait = metrics.trend("queue_wait", "time")
return {
  options = { executor = "per-vu-iterations", vus = 4, iterations = 25, threads = 2 },
  run = function(vu)
    local r = http.get(vu.target .. "/")
    check(r, {
      ["is 200"] = function(r) return r.status == 200 end,
      ["never"] = false,
      ["explodes"] = function(r) error("kaboom-check") end,
    })
    orders:add(2, { shop = "a" })
    level:add(vu.id)
    even:add(vu.iteration % 2 == 0)
    size:add(vu.iteration)
    wait:add(250)
  end,
}
"""


def run_checks_metrics(run_tide, url):
    """4 VUs × 25 iterations on 2 engine threads (VUs 1-2 on one, 3-4 on the other)."""
    res = run_tide(CHECKS_METRICS, "--target", url, "--threads", "2")
    assert res.rc == 0, str(res)
    assert res.json["tide"]["threads"] == 2, str(res)
    assert res.count("iterations") == 100, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    return res


def test_custom_metrics_add_up_across_threads(run_tide, nginx):
    res = run_checks_metrics(run_tide, nginx.url)
    o = values(res, "orders")
    assert o["count"] == 200, f"orders: {o}, expected 4 VUs × 25 × add(2) = 200\n{res}"
    assert res.metrics["orders"]["type"] == "counter", str(res)
    e = values(res, "even_iteration")
    assert (e["passes"], e["fails"]) == (52, 48), f"even_iteration {e}, expected 52 passes 48 fails\n{res}"
    assert abs(e["rate"] - 0.52) < 1e-9, f"even_iteration {e}\n{res}"
    s = values(res, "basket_size")
    assert s["count"] == 100 and s["min"] == 0 and s["max"] == 24, f"basket_size {s}\n{res}"
    assert abs(s["avg"] - 12) < 0.05, f"basket_size {s}\n{res}"
    w = values(res, "queue_wait")
    assert w["count"] == 100 and abs(w["avg"] - 250) < 1 and abs(w["max"] - 250) < 1, \
        f"queue_wait (a time trend, ms in, ms out) {w}\n{res}"
    for name in ("orders", "level", "even_iteration", "basket_size", "queue_wait"):
        assert name in res.stdout, f"custom metric {name} not in the summary\n{res}"
    line = [l for l in res.stdout.splitlines() if l.strip().startswith("orders")]
    assert line and "200" in line[0], f"summary line for orders: {line}\n{res}"


def test_custom_gauge_across_threads(run_tide, nginx):
    """A gauge is the last value set, with the min and max of all values set
    (k6): merging threads must not add their minima and maxima."""
    res = run_checks_metrics(run_tide, nginx.url)
    g = values(res, "level")
    assert res.metrics["level"]["type"] == "gauge", str(res)
    assert (g["min"], g["max"]) == (1, 4), \
        f"gauge level set to vu.id (1..4): min/max {g['min']}/{g['max']}, expected 1/4\n{res}"
    assert g["value"] in (1, 2, 3, 4), f"gauge level value {g['value']}, expected one of the values set\n{res}"


def test_checks_across_threads(run_tide, nginx):
    res = run_checks_metrics(run_tide, nginx.url)
    c = values(res, "checks")
    assert (c["passes"], c["fails"]) == (100, 200), f"checks {c}, expected 100 passes, 200 fails\n{res}"
    out = res.stdout
    ok = [l for l in out.splitlines() if "is 200" in l]
    assert ok and "✓" in ok[0] and "100" in ok[0], f"{ok}\n{res}"
    never = [l for l in out.splitlines() if "never" in l]
    assert never and "✗" in never[0] and "100 failed" in never[0], f"{never}\n{res}"
    explodes = [l for l in out.splitlines() if "explodes" in l and ("✓" in l or "✗" in l)]
    assert explodes and "✗" in explodes[0] and "0 passed, 100 failed" in explodes[0], f"{explodes}\n{res}"


def test_raising_check_reported_once(run_tide, nginx):
    res = run_checks_metrics(run_tide, nginx.url)
    raised = [l for l in res.stderr.splitlines() if "kaboom-check" in l]
    assert len(raised) == 1, \
        f"the raising check's error printed {len(raised)} times on stderr, expected once: {raised}\n{res}"
    assert "explodes" in raised[0], raised


# ---------------------------------------------------------------- 12 tide list


def test_list_and_did_you_mean(tide, tmp_path):
    sdir = tmp_path / "scenarios"
    sdir.mkdir()
    (sdir / "checkout.lua").write_text("""
return { description = "walks through the checkout",
         options = { executor = "constant-vus", vus = 7, duration = "45s" },
         run = function() end }
""")
    (sdir / "homepage.lua").write_text("""
return { description = "only the front page",
         options = { executor = "per-vu-iterations", vus = 3, iterations = 4 },
         run = function() end }
""")
    res = tide.exec([TIDE, "list"])
    assert res.rc == 0, str(res)
    lines = res.stdout.splitlines()
    co = [l for l in lines if "checkout" in l]
    hp = [l for l in lines if "homepage" in l]
    assert len(co) == 1 and "walks through the checkout" in co[0], f"{co}\n{res}"
    assert "constant-vus" in co[0] and "7" in co[0], f"{co}\n{res}"
    assert len(hp) == 1 and "only the front page" in hp[0], f"{hp}\n{res}"
    assert "per-vu-iterations" in hp[0] and "3" in hp[0], f"{hp}\n{res}"

    other = tmp_path / "more"
    other.mkdir()
    (other / "soak.lua").write_text('return { description = "long and slow", run = function() end }')
    res = tide.exec([TIDE, "list"], env={"TIDE_PATH": str(other)})
    assert res.rc == 0, str(res)
    soak = [l for l in res.stdout.splitlines() if "soak" in l]
    assert soak and "long and slow" in soak[0], str(res)
    assert any("checkout" in l for l in res.stdout.splitlines()), str(res)

    res = tide.exec([TIDE, "run", "chekout"])
    assert res.rc == 2, str(res)
    assert "did you mean" in res.stderr and "checkout" in res.stderr, str(res)
    assert "homepage" not in res.stderr, f"a far name suggested\n{res}"


# ---------------------------------------------------------------- 13 tide.group


def test_group_tags_and_duration(run_tide, access_log):
    res = run_tide("""
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 3,
              thresholds = {
                ["http_reqs{group:::login}"] = "count == 6",
                ["http_reqs{group:::login::inner}"] = "count == 6",
                ["group_duration{group:::login}"] = "count == 6",
                ["group_duration{group:::login::inner}"] = "count == 6",
              } },
  run = function(vu)
    tide.group("login", function()
      http.get(vu.target .. "/", { name = "in-login" })
      tide.group("inner", function()
        http.get(vu.target .. "/json", { name = "in-inner" })
      end)
    end)
    http.get(vu.target .. "/echo", { name = "outside" })
  end,
}
""", "--target", access_log.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert res.count("http_reqs") == 18, str(res)
    assert values(res, "http_reqs{group:::login}")["count"] == 6, str(res)
    assert values(res, "http_reqs{group:::login::inner}")["count"] == 6, str(res)
    gd = values(res, "group_duration{group:::login}")
    assert gd["count"] == 6 and gd["min"] >= values(res, "group_duration{group:::login::inner}")["min"], str(res)
    assert res.metrics["group_duration"]["type"] == "trend", str(res)


# ---------------------------------------------------------------- 14 bad input


@pytest.mark.parametrize("options, needles", [
    ('{ executor = "ramping-vus", stages = { {duration = "-2s", target = 3} } }',
     ["options.stages[1].duration", "-2s"]),
    ('{ executor = "ramping-vus", stages = { {duration = -2, target = 3} } }',
     ["options.stages[1].duration", "-2"]),
    ('{ executor = "ramping-vus", stages = { {duration = "1s", target = 2}, {target = 3} } }',
     ["options.stages[2].duration"]),
    ('{ executor = "ramping-arrival-rate", stages = { {target = 3} }, max_vus = 2 }',
     ["options.stages[1].duration"]),
    ('{ executor = "constant-arrival-rate", rate = 0, duration = "1s" }', ["options.rate", "0"]),
    ('{ executor = "constant-arrival-rate", rate = 10, duration = "1s", pre_allocated_vus = 10, max_vus = 5 }',
     ["options.max_vus", "5", "10"]),
    ('{ executor = "constant-vus", vus = 2, duraton = "1s" }', ["options.duraton: unknown option"]),
    ('{ executor = "constant-arrival-rate", rate = 10, duration = "1s", vus = 3 }',
     ["options.vus: does not apply to constant-arrival-rate"]),
    ('{ vus = 2, scenarios = { a = { executor = "constant-vus", vus = 1, duration = "1s" } } }',
     ["options.vus"]),
    ('{ scenarios = { a = { executor = "constant-arrival-rate", rate = 0, duration = "1s" } } }',
     ["options.scenarios.a.rate", "0"]),
], ids=["stage-negative-string", "stage-negative-number", "stage-missing-duration",
        "arrival-stage-missing-duration", "rate-zero", "max-vus-below-prealloc", "typo-duraton",
        "vus-not-for-arrival", "top-level-with-scenarios", "named-rate-zero"])
def test_bad_input_exit_2(run_tide, access_log, options, needles):
    res = run_tide(ARRIVAL % (options, "/"), "--target", access_log.url)
    assert res.rc == 2, str(res)
    for n in needles:
        assert n in res.stderr, f"stderr does not contain {n!r}\n{res}"
    assert access_log.wait_log(settle=0.2) == [], f"requests reached the server\n{res}"
