"""Every run can be stopped: Lua code that never yields, a scenario that fails
before its first request, Ctrl-C in setup and teardown, os.exit, and a user
that runs out of memory. Each case ends in bounded time with its documented
exit code, and a load that ran still writes its outputs."""

import signal
import time

BUSY = """
return {
  options = { executor = "constant-vus", vus = 2, duration = "%(duration)s", graceful_stop = "%(grace)s" },
  run = function(vu)
    local n = 0
    while true do n = n + 1 end
  end,
}
"""


def test_busy_iterations_end_at_graceful_stop(run_tide):
    res = run_tide(BUSY % {"duration": "1s", "grace": "1s"}, "--threads", "1", timeout=20)
    assert res.rc == 0, str(res)
    assert 1.5 < res.elapsed < 6, f"1s + 1s graceful_stop took {res.elapsed:.1f}s\n{res}"
    assert res.count("iterations_interrupted") == 2, str(res)
    assert res.json is not None


def test_second_sigint_cuts_busy_iterations(tide):
    run = tide.start(BUSY % {"duration": "10m", "grace": "30s"}, "--threads", "2")
    time.sleep(1.0)
    run.signal(signal.SIGINT)
    time.sleep(0.3)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=15)
    assert res.rc == 130, str(res)
    assert time.monotonic() - sent < 3, str(res)
    assert res.count("iterations_interrupted") == 2, str(res)
    assert "iterations" in res.stdout, f"no summary\n{res}"


def test_sigterm_cuts_busy_iterations_after_graceful_stop(tide):
    run = tide.start(BUSY % {"duration": "10m", "grace": "1s"}, "--threads", "1")
    time.sleep(1.0)
    sent = time.monotonic()
    run.signal(signal.SIGTERM)
    res = run.finish(timeout=15)
    took = time.monotonic() - sent
    assert res.rc == 130, str(res)
    assert 0.8 < took < 4, f"SIGTERM with graceful_stop 1s took {took:.1f}s\n{res}"
    assert res.json is not None and res.json["state"]["interrupted"] is True, str(res)


def test_typo_before_first_request_stops_on_sigint(tide, nginx):
    run = tide.start("""
local http = require "tide.http"
return {
  options = { executor = "constant-vus", vus = 3, duration = "10m" },
  run = function(vu) http.get(vu.taget .. "/") end,
}
""", "--target", nginx.url)
    time.sleep(1.0)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=15)
    assert res.rc == 130, str(res)
    assert time.monotonic() - sent < 3, str(res)
    assert res.count("iteration_errors") > 0, str(res)
    assert "attempt to concatenate a nil value (field 'taget')" in res.stderr, str(res)


def test_busy_user_does_not_hold_up_the_others(run_tide, access_log):
    res = run_tide("""
local http = require "tide.http"
return {
  options = { scenarios = {
    busy = { executor = "constant-vus", vus = 1, duration = "2s", exec = "busy", graceful_stop = "0s" },
    hits = { executor = "constant-arrival-rate", rate = 50, duration = "2s", pre_allocated_vus = 5, exec = "hit" },
  } },
  busy = function() while true do end end,
  hit = function(vu) http.get(vu.target .. "/") end,
}
""", "--target", access_log.url, "--threads", "1", timeout=30)
    assert res.rc == 0, str(res)
    # the busy user has one core to itself; a machine busy with other work
    # may still hold up a few arrivals, but not the whole schedule
    started, dropped = res.count("http_reqs"), res.count("dropped_iterations")
    assert started + dropped == 100 and dropped <= 5, str(res)
    assert len(access_log.wait_log(started)) == started
    delay = res.metric("iteration_start_delay")["values"]
    assert delay["p(90)"] < 20, f"arrivals waited behind the busy user: {delay}\n{res}"


def test_sigint_in_busy_setup_exits_130(tide):
    run = tide.start("""
return {
  setup = function() while true do end end,
  run = function() end,
}
""")
    time.sleep(1.0)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=10)
    assert res.rc == 130, str(res)
    assert time.monotonic() - sent < 3, str(res)
    assert "interrupted" in res.stderr, str(res)


TEARDOWN = """
local tide = require "tide"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function() end,
  teardown = function() %s end,
}
"""


def test_sigint_in_teardown_is_130_with_outputs(tide):
    for body in ('tide.sleep("30s")', "while true do end"):
        run = tide.start(TEARDOWN % body)
        time.sleep(1.0)
        sent = time.monotonic()
        run.signal(signal.SIGINT)
        res = run.finish(timeout=10)
        assert res.rc == 130, f"teardown `{body}`\n{res}"
        assert time.monotonic() - sent < 3, str(res)
        assert res.json is not None and res.json["state"]["interrupted"] is True, str(res)
        assert res.count("iterations") == 1, str(res)


def test_os_exit_in_setup_is_a_script_error(run_tide):
    res = run_tide("""
return {
  setup = function() os.exit(0) end,
  run = function() end,
}
""")
    assert res.rc == 3, str(res)
    assert "os.exit" in res.stderr, str(res)


def test_os_exit_in_an_iteration_fails_that_iteration(run_tide):
    res = run_tide("""
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 3 },
  run = function() os.exit(7) end,
}
""")
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 3, str(res)
    assert "os.exit" in res.stderr, str(res)


def test_out_of_memory_fails_the_iteration_not_the_process(run_tide):
    res = run_tide("""
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 2, lua_memory = "64MB" },
  run = function(vu)
    local t = {}
    while true do t[#t + 1] = ("x"):rep(1000) .. #t end
  end,
}
""", "--threads", "1", timeout=60)
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 2 and res.count("iteration_errors") == 2, str(res)
    assert "out of memory" in res.stderr and "--lua-memory" in res.stderr, str(res)
    assert "PANIC" not in res.stderr, str(res)
