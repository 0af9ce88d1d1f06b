"""setup → run → teardown, the environment, and stopping with Ctrl-C."""

import signal
import time


def test_setup_data_reaches_run_and_teardown(run_tide, access_log, tmp_path):
    marker = tmp_path / "teardown.txt"
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 3, iterations = 2 },
  setup = function(ctx)
    if ctx.vus ~= 3 then error("ctx.vus = " .. tostring(ctx.vus)) end
    if ctx.target ~= ctx.env.EXPECT_TARGET then error("ctx.target = " .. tostring(ctx.target)) end
    return { token = "t0k", list = { 1, 2, 3 } }
  end,
  run = function(vu, data)
    if type(data) ~= "table" then error("data is a " .. type(data)) end
    local r = http.get(vu.target .. "/echo", { bearer = data.token })
    if r.body ~= "GET /echo Bearer t0k " then error(("echo body %q"):format(r.body)) end
    if #data.list ~= 3 then error("data.list has " .. #data.list) end
  end,
  teardown = function(ctx, data)
    local f = assert(io.open(ctx.env.MARKER, "w"))
    f:write(data.token, " ", #data.list)
    f:close()
  end,
}
""", "--target", access_log.url, "--env", f"MARKER={marker}", "--env", f"EXPECT_TARGET={access_log.url}")
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert res.count("http_reqs") == 6, str(res)
    assert marker.exists(), f"teardown did not run\n{res}"
    assert marker.read_text() == "t0k 3", str(res)
    lines = access_log.wait_log(6)
    assert [l.authorization for l in lines] == ["Bearer t0k"] * 6, lines


def test_env_from_cli_and_process(run_tide, nginx):
    res = run_tide("""
local function check_env(where, env)
  local want = { GREETING = "hi", EQ = "a=b", TIDE_TEST_PROC = "from-process" }
  for k, v in pairs(want) do
    if env[k] ~= v then error(("%s.env.%s = %s, expected %s"):format(where, k, tostring(env[k]), v)) end
  end
end
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 1 },
  setup = function(ctx) check_env("ctx", ctx.env) end,
  run = function(vu) check_env("vu", vu.env) end,
  teardown = function(ctx) check_env("ctx (teardown)", ctx.env) end,
}
""", "--env", "GREETING=hi", "--env", "EQ=a=b", env={"TIDE_TEST_PROC": "from-process"})
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 2, str(res)
    assert res.count("iteration_errors") == 0, str(res)


def test_env_cli_overrides_process(run_tide):
    res = run_tide("""
return {
  setup = function(ctx)
    if ctx.env.TIDE_TEST_X ~= "cli" then error("ctx.env.TIDE_TEST_X = " .. tostring(ctx.env.TIDE_TEST_X)) end
  end,
  run = function(vu)
    if vu.env.TIDE_TEST_X ~= "cli" then error("vu.env.TIDE_TEST_X = " .. tostring(vu.env.TIDE_TEST_X)) end
  end,
}
""", "--env", "TIDE_TEST_X=first", "--env", "TIDE_TEST_X=cli", env={"TIDE_TEST_X": "process"})
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 1, str(res)
    assert res.count("iteration_errors") == 0, str(res)


def test_error_in_setup_starts_no_load(run_tide, access_log, tmp_path):
    marker = tmp_path / "teardown.txt"
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 5, iterations = 10 },
  setup = function(ctx) error("setup exploded") end,
  run = function(vu) http.get(vu.target .. "/") end,
  teardown = function(ctx) io.open(ctx.env.MARKER, "w"):close() end,
}
""", "--target", access_log.url, "--env", f"MARKER={marker}")
    assert res.rc == 3, str(res)
    assert "setup exploded" in res.stderr, str(res)
    assert access_log.wait_log(settle=0.5) == [], f"load started after setup failed\n{res}"
    assert res.json is None, f"setup failed: no load, so no results document (README, exit 3)\n{res}"


def test_error_in_teardown_still_writes_results(run_tide, nginx):
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 3 },
  run = function(vu) http.get(vu.target .. "/") end,
  teardown = function(ctx) error("teardown exploded") end,
}
""", "--target", nginx.url)
    assert res.rc == 3, str(res)
    assert "teardown exploded" in res.stderr, str(res)
    assert res.json is not None, f"JSON output not written\n{res}"
    assert res.count("http_reqs") == 6, str(res)
    assert "iterations" in res.stdout, f"summary not printed\n{res}"


SLOW_LOOP = """
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "constant-vus", vus = 5, duration = "30s" },
  run = function(vu)
    local r = http.get(vu.target .. "/")
    if r.status ~= 200 then error("GET / " .. tostring(r.status)) end
    tide.sleep(%s)
  end,
  teardown = function(ctx)
    local f = assert(io.open(ctx.env.MARKER, "w"))
    f:write("teardown ran")
    f:close()
  end,
}
"""


def test_sigint_stops_gracefully(tide, nginx, tmp_path):
    marker = tmp_path / "teardown.txt"
    run = tide.start(SLOW_LOOP % '"0.2s"', "--target", nginx.url, "--env", f"MARKER={marker}")
    time.sleep(1.5)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=15)
    took = time.monotonic() - sent
    assert res.rc == 130, str(res)
    assert took < 5, f"tide took {took:.1f}s to stop after SIGINT\n{res}"
    assert "iterations" in res.stdout, f"no summary after SIGINT\n{res}"
    assert res.json is not None, f"JSON not written after SIGINT\n{res}"
    assert res.count("iterations") > 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert res.json["state"]["testRunDurationMs"] < 5000, str(res)
    assert marker.exists(), f"teardown did not run after SIGINT\n{res}"


def test_sigint_graceful_stop_cuts_long_iterations(tide, nginx, tmp_path):
    marker = tmp_path / "teardown.txt"
    run = tide.start(SLOW_LOOP % '"20s"', "--target", nginx.url, "--env", f"MARKER={marker}",
                     "--graceful-stop", "1s")
    time.sleep(1.0)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=15)
    took = time.monotonic() - sent
    assert res.rc == 130, str(res)
    assert 0.8 <= took < 4, f"with --graceful-stop 1s, tide stopped {took:.1f}s after SIGINT\n{res}"
    assert res.json is not None, f"JSON not written after SIGINT\n{res}"
    assert res.count("iterations_interrupted") == 5, str(res)
    assert res.count("http_reqs") == 5, str(res)
    assert marker.exists(), f"teardown did not run after SIGINT\n{res}"


def test_second_sigint_stops_now(tide, nginx, tmp_path):
    marker = tmp_path / "teardown.txt"
    run = tide.start(SLOW_LOOP % '"20s"', "--target", nginx.url, "--env", f"MARKER={marker}")
    time.sleep(1.0)
    run.signal(signal.SIGINT)
    time.sleep(0.5)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=15)
    took = time.monotonic() - sent
    assert res.rc == 130, str(res)
    assert took < 3, f"tide took {took:.1f}s to stop after a second SIGINT\n{res}"
    assert res.json is not None, f"JSON not written after SIGINT\n{res}"
    assert res.count("iterations_interrupted") == 5, str(res)
    assert "iterations" in res.stdout, str(res)
