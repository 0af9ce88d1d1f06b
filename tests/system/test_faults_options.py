"""Options at and past their limits: numbers that overflow or are absurd are
exit 2 naming the value and the allowed range; arrival rates far beyond what
one process can start end on time and count the rest as dropped, exactly;
a malformed target is echoed without its secret; a threshold whose aggregate
does not fit its metric is exit 2 before any load."""

import signal
import time

import pytest

from conftest import TIDE

OK_SCENARIO = """
return { run = function(vu) end }
"""


def counts(res):
    """(iterations, dropped_iterations, iterations_interrupted) from the JSON results."""
    return res.count("iterations"), res.count("dropped_iterations"), res.count("iterations_interrupted")


# ------------------------------------------------- numbers from the command line

@pytest.mark.parametrize("args, named", [
    (("--duration", "99999999999h"), ("'99999999999h'", "8760h")),
    (("--duration", "1e300"), ("'1e300'", "8760h")),
    (("--duration", "inf"), ("'inf'", "8760h")),
    (("--graceful-stop", "1e300"), ("--graceful-stop", "'1e300'", "8760h")),
    (("--max-body", "99999999999999999999"), ("--max-body", "'99999999999999999999'", "1TiB")),
    (("--max-body", "1e300"), ("'1e300'", "1TiB")),
    (("--max-body", "0x10"), ("'0x10'",)),
    (("--iterations", "99999999999999999"), ("'99999999999999999'", "9007199254740992")),
    (("--lua-memory", "1KB"), ("--lua-memory", "'1KB'", "1MiB")),
    (("--lua-memory", "2TiB"), ("'2TiB'", "1TiB")),
    (("--progress", "nan"), ("--progress", "'nan'", "86400")),
], ids=["duration-hours-overflow", "duration-1e300", "duration-inf", "graceful-stop-1e300",
        "max-body-overflow", "max-body-1e300", "max-body-hex", "iterations-beyond-2^53",
        "lua-memory-too-small", "lua-memory-too-big", "progress-nan"])
def test_cli_value_out_of_range(run_tide, args, named):
    res = run_tide(OK_SCENARIO, *args, timeout=20)
    assert res.rc == 2, str(res)
    for n in named:
        assert n in res.stderr, f"the message should name {n}\n{res}"
    assert res.json is None, f"results written for a run that never started\n{res}"


def test_lua_memory_is_a_run_option(tide, run_tide):
    res = tide.exec([TIDE, "run", "--help"])
    assert res.rc == 0 and "--lua-memory" in res.stdout, str(res)
    res = run_tide(OK_SCENARIO, "--lua-memory", "256MB")
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 1, str(res)


# ------------------------------------------- numbers from the options table

@pytest.mark.parametrize("options, named", [
    ('max_body = 1e300', ("options.max_body", "1TiB")),
    ('max_body = "99999999999999999999"', ("options.max_body", "'99999999999999999999'", "1TiB")),
    ('lua_memory = 1024', ("options.lua_memory", "'1024'", "1MiB")),
    ('duration = 1e300', ("options.duration", "8760h")),
    ('duration = "99999999999h"', ("options.duration", "'99999999999h'", "8760h")),
    ('vus = 1, duration = "1s", graceful_stop = 1/0', ("options.graceful_stop", "'inf'", "8760h")),
    ('start_time = 1e300, iterations = 1', ("options.start_time", "8760h")),
    ('executor = "constant-arrival-rate", rate = 10, duration = "1s", time_unit = 1e300',
     ("options.time_unit", "8760h")),
    ('executor = "constant-arrival-rate", rate = 1e9, time_unit = "1us", duration = "1s"',
     ("options.rate", "1e+09 per", "1e9 iterations per second")),
    ('executor = "ramping-vus", stages = { { duration = "1s", target = 1e300 } }',
     ("options.stages[1].target", "1000000")),
    ('executor = "ramping-vus", stages = { { duration = 1e300, target = 1 } }',
     ("options.stages[1].duration", "8760h")),
    ('executor = "ramping-arrival-rate", stages = { { duration = "1s", target = 1e300 } }',
     ("options.stages[1].target", "1e+300 per 1s", "1e9 iterations per second")),
    ('executor = "ramping-arrival-rate", start_rate = 1e300, stages = { { duration = "1s", target = 1 } }',
     ("options.start_rate", "1e+300", "1e9 iterations per second")),
    ('executor = "per-vu-iterations", vus = 1000000, iterations = 1e15', ("options.iterations", "2^53")),
], ids=["max-body-1e300", "max-body-overflow", "lua-memory-1KiB", "duration-1e300", "duration-hours-overflow",
        "graceful-stop-inf", "start-time-1e300", "time-unit-1e300", "rate-per-microsecond",
        "ramping-vus-target", "stage-duration", "ramping-arrival-target", "start-rate",
        "per-vu-iterations-total"])
def test_scenario_option_out_of_range(run_tide, options, named):
    res = run_tide("return { options = { %s }, run = function(vu) end }\n" % options, timeout=20)
    assert res.rc == 2, str(res)
    for n in named:
        assert n in res.stderr, f"the message should name {n}\n{res}"
    assert res.json is None, f"results written for a run that never started\n{res}"


def test_absurd_rate_is_exit_2_at_once(run_tide):
    res = run_tide("""
return {
  options = { executor = "constant-arrival-rate", rate = 1e300, duration = "1s", pre_allocated_vus = 2 },
  run = function(vu) end,
}
""", timeout=20)
    assert res.rc == 2, str(res)
    assert "options.rate" in res.stderr and "1e+300" in res.stderr, str(res)
    assert "at most 1e9 iterations per second" in res.stderr, f"the message should say the limit\n{res}"
    assert res.elapsed < 5, f"took {res.elapsed:.1f}s to refuse the rate\n{res}"


def test_sleep_beyond_any_duration_raises(run_tide):
    """tide.sleep(1e300) is an error in the iteration, not a sleep past the
    end of time (the timer's nanoseconds would overflow)."""
    res = run_tide("""
local tide = require "tide"
return { run = function(vu) tide.sleep(1e300) end }
""", timeout=20)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 1, str(res)
    assert "8760h" in res.stderr and "1e+300" in res.stderr, str(res)
    assert res.elapsed < 10, str(res)


# ------------------------------------------------------- huge arrival rates

# No-op iterations: at a billion a second the users are always free, so the
# process starts what it can and the rest are dropped when the run ends.
HUGE_RATES = {
    "constant": ("""
return {
  options = { executor = "constant-arrival-rate", rate = 1e9, duration = "1s", pre_allocated_vus = 2 },
  run = function(vu) end,
}
""", 10 ** 9),
    # 1e8/s rising to 1e9/s over 0.5 s, then to 3e8/s over 0.5 s: 2.75e8 + 3.25e8
    "ramping-2-threads": ("""
return {
  options = {
    executor = "ramping-arrival-rate", start_rate = 1e8, threads = 2, pre_allocated_vus = 4,
    stages = { { duration = "0.5s", target = 1e9 }, { duration = "0.5s", target = 3e8 } },
  },
  run = function(vu) end,
}
""", 6 * 10 ** 8),
    # busy users: every arrival while all 3 sleep is dropped at once
    "busy-users": ("""
local tide = require "tide"
return {
  options = { executor = "constant-arrival-rate", rate = 1e9, duration = "1s", pre_allocated_vus = 3,
              threads = 2 },
  run = function(vu) tide.sleep(0.05) end,
}
""", 10 ** 9),
}


@pytest.mark.parametrize("name", sorted(HUGE_RATES))
def test_huge_rate_ends_on_time_counts_exactly(run_tide, name):
    scenario, arrivals = HUGE_RATES[name]
    res = run_tide(scenario, "--quiet", timeout=60)
    assert res.rc == 0, str(res)
    assert res.elapsed < 8, f"a 1 s run took {res.elapsed:.1f}s\n{res}"
    it, dropped, cut = counts(res)
    assert it > 0 and dropped > 0, f"iterations {it}, dropped {dropped}\n{res}"
    assert it + dropped + cut == arrivals, \
        f"iterations {it} + dropped {dropped} + interrupted {cut} = {it + dropped + cut}, " \
        f"the schedule had {arrivals}\n{res}"


def test_huge_rate_stops_on_sigterm(tide):
    run = tide.start("""
return {
  options = { executor = "constant-arrival-rate", rate = 1e9, duration = "1h", pre_allocated_vus = 2 },
  run = function(vu) end,
}
""", "--quiet")
    time.sleep(1.5)
    assert run.proc.poll() is None, "tide ended before it was told to"
    run.signal(signal.SIGTERM)
    t0 = time.monotonic()
    res = run.finish(timeout=20)
    assert res.rc == 130, str(res)
    assert time.monotonic() - t0 < 5, f"took {time.monotonic() - t0:.1f}s to stop after SIGTERM\n{res}"
    it, dropped, cut = counts(res)
    ran_ms = res.json["state"]["testRunDurationMs"]
    # every arrival due until the stop was started or dropped: about a billion a second
    assert 0.9e6 * ran_ms <= it + dropped + cut <= 1e6 * ran_ms + 1, \
        f"{it} + {dropped} + {cut} arrivals in {ran_ms:.0f} ms at 1e9/s\n{res}"


# ------------------------------------------------- secrets in echoed targets

@pytest.mark.parametrize("target, secret, shown", [
    ("http://user:SECRET@127.0.0.1:99999", "SECRET", "http://user:***@127.0.0.1:99999"),
    ("http://TOKEN1234@127.0.0.1:99999", "TOKEN1234", "http://***@127.0.0.1:99999"),
    ("https://TOKEN1234:@127.0.0.1:99999/x", "TOKEN1234", "https://***:@127.0.0.1:99999/x"),
], ids=["password", "token-as-user", "token-empty-password"])
def test_malformed_target_echoed_without_secret(run_tide, target, secret, shown):
    for where in ("cli", "options"):
        if where == "cli":
            res = run_tide(OK_SCENARIO, "--target", target)
        else:
            res = run_tide('return { options = { target = "%s" }, run = function() end }\n' % target)
        assert res.rc == 2, str(res)
        assert secret not in res.stderr, f"{where}: the secret was echoed\n{res}"
        assert shown in res.stderr, f"{where}: the message should show {shown}\n{res}"


def test_token_as_user_redacted_everywhere(run_tide, access_log, tmp_path):
    """A token standing as the target's user name never reaches stderr, the
    summary or the results: in an iteration's error, in an error naming the
    request's URL, and in the results document."""
    token = "tok3n" + "Q" * 20
    target = access_log.url.replace("http://", f"http://{token}@")
    html = tmp_path / "report.html"
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 2 },
  run = function(vu)
    if vu.iteration == 0 then error("could not reach " .. vu.target) end
    http.get(vu.target .. "/"):json()   -- nginx's page is not JSON: the error names the URL
  end,
}
""", "--target", target, "--out", f"html={html}")
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 2, str(res)
    assert "could not reach http://***@" in res.stderr, str(res)
    for where, text in (("stderr", res.stderr), ("stdout", res.stdout),
                        ("json", res.json_path.read_text()), ("html", html.read_text())):
        assert token not in text, f"the token reached {where}\n{res}"


def test_token_as_user_redacted_in_lua_errors(run_tide, access_log):
    """tide.celery names the status URL in its errors: without the token."""
    token = "tok3n" + "Z" * 20
    target = access_log.url.replace("http://", f"http://{token}@")
    res = run_tide("""
local celery = require "tide.celery"
return {
  setup = function(ctx) celery.poll(ctx.target .. "/no-such-status", { every = "0.01s", max = 2 }) end,
  run = function() end,
}
""", "--target", target)
    assert res.rc == 3, str(res)
    assert "celery.poll: http://***@" in res.stderr, str(res)
    assert token not in res.stderr, f"the token was echoed\n{res}"


# ---------------------------------- thresholds whose aggregate misses the metric

MISFIT = """
local http = require "tide.http"
local check = require "tide.check"
local metrics = require "tide.metrics"
local orders = metrics.counter("orders")
local basket = metrics.trend("basket_time", "time")
local depth = metrics.gauge("queue_depth")
local ok = metrics.rate("order_ok")
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 2, thresholds = { %s } },
  run = function(vu)
    local r = http.get(vu.target .. "/")
    check(r, { ["is 200"] = r.status == 200 })
    orders:add(1); basket:add(3); depth:add(2); ok:add(true)
  end,
}
"""


@pytest.mark.parametrize("threshold, named", [
    ('iterations = "p(95) < 5"', ("iterations", "p(95) < 5", "counter", "count, rate")),
    ('http_req_duration = "rate < 1"', ("http_req_duration", "rate < 1", "trend", "p(N)")),
    ('http_reqs = "avg < 3"', ("http_reqs", "avg < 3", "counter")),
    ('vus = "count < 3"', ("vus", "count < 3", "gauge", "value, min, max")),
    ('["checks{check:is 200}"] = "avg > 0.5"', ("checks{check:is 200}", "avg > 0.5", "rate")),
    ('orders = "p(99) < 1"', ("orders", "p(99) < 1", "counter")),
    ('basket_time = "value > 1"', ("basket_time", "value > 1", "trend")),
    ('queue_depth = "rate > 0"', ("queue_depth", "rate > 0", "gauge")),
    ('order_ok = "max < 1"', ("order_ok", "max < 1", "rate")),
    ('http_req_failed = { "rate < 0.5", "value < 1" }', ("http_req_failed", "value < 1", "rate")),
], ids=["counter-percentile", "trend-rate", "counter-avg", "gauge-count", "rate-avg", "custom-counter",
        "custom-trend-value", "custom-gauge-rate", "custom-rate-max", "second-of-a-list"])
def test_threshold_aggregate_misfit_exit_2_before_load(run_tide, access_log, threshold, named):
    res = run_tide(MISFIT % threshold, "--target", access_log.url)
    assert res.rc == 2, str(res)
    for n in named:
        assert n in res.stderr, f"stderr does not name {n!r}\n{res}"
    assert access_log.wait_log(settle=0.3) == [], f"requests reached the server\n{res}"
    assert res.json is None, f"results written for a run that never started\n{res}"


def test_threshold_aggregates_that_fit_still_run(run_tide, access_log):
    res = run_tide(MISFIT % """
      iterations = { "count == 2", "rate > 0" }, http_req_duration = { "p(95) < 5s", "med < 5s", "avg < 5s", "count == 2" },
      vus = { "value >= 0", "max <= 1", "min >= 0" }, ["checks{check:is 200}"] = "rate == 1",
      orders = "count == 2", basket_time = "max < 10", queue_depth = "value > 0", order_ok = "rate == 1",
    """, "--target", access_log.url)
    assert res.rc == 0, str(res)
