"""tide.celery: polling Celery-style status endpoints.

Odd status endpoints come from a small HTTP server of our own on 127.0.0.1
(StatusServer below, an httpserver.ServerThread); the real thing is the demo
service (tests/webserver)."""

import re
import signal
import threading
import time

import pytest

from demo_stack import normal_stack  # noqa: F401
from httpserver import QuietHandler, ServerThread


class StatusServer(ServerThread):
    """Status endpoints, all GET /<kind>/<task id>:

    /pending/ID     always 200 {"state": "PENDING", "output": null}
    /text/ID        200 with an HTML body (not JSON)
    /missing/ID     404 {"error": "no such task"}
    /flaky/ID       503 for the first two polls of ID, then {"state": "SUCCESS", "output": 42}
    /custom/ID      {"status": "done", "result": "x"}
    /slow/ID        PENDING until 2 s after the first poll of ID, then {"state": "SUCCESS", "output": ID}

    .hits[path] counts requests per path; for /slow it keeps how many tasks
    were being waited for at once (first poll seen, SUCCESS not yet sent)."""

    SLOW_SECONDS = 2.0

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = {}
        self.slow_first = {}
        self.slow_done = set()
        self.waiting = 0
        self.max_waiting = 0
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                parts = path.strip("/").split("/")
                kind = parts[0]
                task = parts[1] if len(parts) > 1 else ""
                with outer.lock:
                    n = outer.hits[path] = outer.hits.get(path, 0) + 1
                if kind == "pending":
                    self._send(200, {"state": "PENDING", "output": None})
                elif kind == "text":
                    self._send(200, "<html><body>task page</body></html>", "text/html")
                elif kind == "missing":
                    self._send(404, {"error": "no such task"})
                elif kind == "flaky":
                    if n <= 2:
                        self._send(503, {"error": "busy"})
                    else:
                        self._send(200, {"state": "SUCCESS", "output": 42})
                elif kind == "custom":
                    self._send(200, {"status": "done", "result": "x"})
                elif kind == "slow":
                    now = time.monotonic()
                    with outer.lock:
                        first = outer.slow_first.get(task)
                        if first is None:
                            first = outer.slow_first[task] = now
                            outer.waiting += 1
                            outer.max_waiting = max(outer.max_waiting, outer.waiting)
                        done = now - first >= outer.SLOW_SECONDS
                        if done and task not in outer.slow_done:
                            outer.slow_done.add(task)
                            outer.waiting -= 1
                    if done:
                        self._send(200, {"state": "SUCCESS", "output": task})
                    else:
                        self._send(200, {"state": "PENDING", "output": None})
                else:
                    self._send(404, {"error": "unknown path"})

        super().__init__(Handler, name="status-server")

    def hits_for(self, path):
        with self.lock:
            return self.hits.get(path, 0)


@pytest.fixture(scope="module")
def status_server(request):
    server = StatusServer()
    request.addfinalizer(server.stop)
    return server.start()


def ok(res, iterations=1):
    """The run had `iterations` iterations and none failed (the scenarios
    assert with error())."""
    assert res.rc == 0, str(res)
    assert res.count("iterations") == iterations, str(res)
    assert res.count("iteration_errors") == 0, str(res)


# ----------------------------------------------------------- own endpoints


def test_poll_gives_up_after_max_polls_and_timeout(run_tide, status_server):
    res = run_tide("""
local celery = require "tide.celery"
local tide = require "tide"
return {
  run = function(vu)
    local t0 = tide.now()
    local r = celery.poll(vu.target .. "/pending/max5", { max = 5, every = "50ms", name = "maxed" })
    local took = tide.now() - t0
    if r.state ~= "TIMEOUT" then error("max: state " .. tostring(r.state)) end
    if r.polls ~= 5 then error("max: polls " .. tostring(r.polls)) end
    if r.output ~= nil then error("max: output " .. tostring(r.output)) end
    if took > 1 then error(("max: took %.3fs"):format(took)) end
    if took < 0.19 then error(("max: took %.3fs, 4 waits of 50ms expected"):format(took)) end
    if math.abs(r.elapsed - took) > 0.05 then error(("max: elapsed %.3f, measured %.3f"):format(r.elapsed, took)) end

    t0 = tide.now()
    r = celery.poll(vu.target .. "/pending/t300", { timeout = "300ms", every = "100ms", name = "timed" })
    took = tide.now() - t0
    if r.state ~= "TIMEOUT" then error("timeout: state " .. tostring(r.state)) end
    if took > 0.6 then error(("timeout: took %.3fs"):format(took)) end
    if took < 0.19 then error(("timeout: gave up after %.3fs"):format(took)) end
    if r.polls < 3 or r.polls > 4 then error("timeout: polls " .. tostring(r.polls)) end
    print(("TIMEOUT_POLLS=%d"):format(r.polls))
  end,
}
""", "--target", status_server.url)
    ok(res)
    assert status_server.hits_for("/pending/max5") == 5, str(res)
    timed = int(re.search(r"TIMEOUT_POLLS=(\d+)", res.stdout).group(1))
    assert status_server.hits_for("/pending/t300") == timed, str(res)
    failed = res.metric("celery_task_failed")["values"]
    assert failed["passes"] == 2 and failed["fails"] == 0, str(res)
    assert res.count("celery_polls") == 5 + timed, str(res)
    assert res.count("celery_task_duration") == 2, str(res)


@pytest.mark.parametrize("path, reason", [("/text/abc", "JSON"), ("/missing/abc", "404")],
                         ids=["non-json-body", "http-404"])
def test_bad_status_answer_fails_the_iteration(run_tide, status_server, path, reason):
    url = f"{status_server.url}{path}"
    res = run_tide("""
local celery = require "tide.celery"
return {
  run = function(vu) celery.poll(vu.env.URL, { every = "50ms", max = 3 }) end,
}
""", "--env", f"URL={url}")
    assert res.count("iterations") == 1, str(res)
    assert res.count("iteration_errors") == 1, str(res)
    assert url in res.stderr, str(res)
    assert reason in res.stderr, str(res)
    assert status_server.hits_for(path) == 1, str(res)


def test_503_is_polled_again(run_tide, status_server):
    res = run_tide("""
local celery = require "tide.celery"
return {
  run = function(vu)
    local r = celery.poll(vu.target .. "/flaky/t1", { every = "50ms", max = 10 })
    if r.state ~= "SUCCESS" then error("state " .. tostring(r.state)) end
    if r.output ~= 42 then error("output " .. tostring(r.output)) end
    if r.polls ~= 3 then error("polls " .. tostring(r.polls)) end
  end,
}
""", "--target", status_server.url)
    ok(res)
    assert status_server.hits_for("/flaky/t1") == 3, str(res)
    assert res.count("celery_polls") == 3, str(res)
    failed = res.metric("celery_task_failed")["values"]
    assert failed["passes"] == 0 and failed["fails"] == 1, str(res)


def test_custom_state_and_output_fields(run_tide, status_server):
    res = run_tide("""
local celery = require "tide.celery"
return {
  run = function(vu)
    local r = celery.poll(vu.target .. "/custom/t1", {
      state_field = "status", output_field = "result", terminal = { "done" }, every = "50ms", max = 3 })
    if r.state ~= "done" then error("state " .. tostring(r.state)) end
    if r.output ~= "x" then error("output " .. tostring(r.output)) end
    if r.polls ~= 1 then error("polls " .. tostring(r.polls)) end
  end,
}
""", "--target", status_server.url)
    ok(res)
    assert status_server.hits_for("/custom/t1") == 1, str(res)
    failed = res.metric("celery_task_failed")["values"]
    assert failed["passes"] == 0 and failed["fails"] == 1, str(res)


def test_many_pollers_wait_on_timers(run_tide, status_server):
    vus = 500
    res = run_tide("""
local celery = require "tide.celery"
local check = require "tide.check"
return {
  options = { executor = "per-vu-iterations", iterations = 1 },
  run = function(vu)
    local r = celery.poll(vu.target .. "/slow/vu" .. vu.id, { every = "0.5s", max = 20 })
    check(r, { ["task succeeded"] = r.state == "SUCCESS" and r.output == "vu" .. vu.id })
    if r.state ~= "SUCCESS" then error("state " .. tostring(r.state) .. " after " .. r.polls .. " polls") end
  end,
}
""", "--target", status_server.url, "--threads", "1", "--vus", str(vus), timeout=60)
    ok(res, iterations=vus)
    assert res.elapsed < 10, f"{vus} pollers took {res.elapsed:.1f}s\n{res}"
    checks = res.metric("checks")["values"]
    assert checks["passes"] == vus and checks["fails"] == 0, str(res)
    failed = res.metric("celery_task_failed")["values"]
    assert failed["passes"] == 0 and failed["fails"] == vus, str(res)
    polls = res.count("celery_polls")
    # SUCCESS is answered from 2 s after the first poll: the 5th poll (4 waits of 0.5 s)
    assert vus * 5 <= polls <= vus * 6, f"{polls} polls\n{res}"
    with status_server.lock:
        waiting_at_once = status_server.max_waiting
    print(f"\n{vus} pollers on one thread: {waiting_at_once} tasks waited for at once, "
          f"{polls} polls, {res.elapsed:.2f}s")
    assert waiting_at_once >= vus * 0.9, f"only {waiting_at_once} pollers were waiting at once\n{res}"


def test_wait_all_in_teardown_after_ctrl_c(tide, status_server):
    """Teardown runs after the first Ctrl-C, and its polling (requests and
    waits between rounds) must not be cut short by that same Ctrl-C."""
    run = tide.start("""
local celery = require "tide.celery"
local tide = require "tide"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 1 },
  run = function() tide.sleep(3) end,
  teardown = function(ctx)
    local urls = { ctx.target .. "/flaky/td1", ctx.target .. "/flaky/td2", ctx.target .. "/custom/td3" }
    local r = celery.wait_all(urls, { every = "100ms", max = 10 })
    local got = {}
    for i, res in ipairs(r) do
      local out = type(res.output) == "number" and ("%g"):format(res.output) or tostring(res.output)
      got[i] = ("%s/%s/%d"):format(res.state, out, res.polls)
    end
    print("TEARDOWN_RESULTS " .. table.concat(got, " "))
  end,
}
""", "--target", status_server.url)
    time.sleep(1.0)
    assert run.proc.poll() is None, f"tide ended before SIGINT\n{run.finish(5)}"
    run.signal(signal.SIGINT)
    res = run.finish(timeout=15)
    assert res.rc == 130, str(res)
    assert "teardown failed" not in res.stderr, str(res)
    # /custom answers {"status": ...}: no "state" field, so never terminal here
    assert "TEARDOWN_RESULTS SUCCESS/42/3 SUCCESS/42/3 TIMEOUT/nil/10" in res.stdout, str(res)


# ----------------------------------------------------------- the demo stack


def test_wait_all_from_setup(run_tide, normal_stack):
    res = run_tide("""
local http = require "tide.http"
local celery = require "tide.celery"
local N = 10
local function user(n) return "wait_all_user_" .. n end

local function login(ctx)
  local r = http.post(ctx.target .. "/admin/login",
    { json = { username = ctx.env.ADMIN_USER, password = ctx.env.ADMIN_PASSWORD } })
  if r.status ~= 200 then error("login: HTTP " .. r.status .. " " .. r.body) end
  return r:json().access_token
end

return {
  setup = function(ctx)
    local token = login(ctx)
    local urls = {}
    for n = 1, N do
      local r = http.post(ctx.target .. "/account/register", { bearer = token,
        json = { username = user(n), password = "pw", name = "wait_all " .. n } })
      if r.status ~= 200 then error("register: HTTP " .. r.status .. " " .. r.body) end
    end
    for n = 1, N do
      local r = http.post(ctx.target .. "/aws_container/assign_container", { bearer = token,
        json = { username = user(n) }, retry = { status = { 503 }, every = "0.5s", max = 20 } })
      if r.status ~= 202 then error("assign: HTTP " .. r.status .. " " .. r.body) end
      urls[n] = ctx.target .. "/status/" .. r:json().ID
    end
    local results = celery.wait_all(urls, { bearer = token, every = "0.2s", max = 300 })
    if #results ~= N then error("wait_all returned " .. #results .. " results") end
    local seen = {}
    for n, res in ipairs(results) do
      if res.state ~= "SUCCESS" then
        error(("task %d: state %s, output %s"):format(n, tostring(res.state), tostring(res.output)))
      end
      if type(res.output) ~= "string" or not res.output:match("^container%-%d+$") then
        error(("task %d: output %s"):format(n, tostring(res.output)))
      end
      if seen[res.output] then error(res.output .. " given twice") end
      seen[res.output] = true
      if type(res.polls) ~= "number" or res.polls < 1 then error(("task %d: polls %s"):format(n, tostring(res.polls))) end
      if type(res.elapsed) ~= "number" or res.elapsed <= 0 or res.elapsed > 60 then
        error(("task %d: elapsed %s"):format(n, tostring(res.elapsed)))
      end
    end
    -- results come back in the order of the URLs: each task's output is
    -- the container of the user it was asked for
    for n, res in ipairs(results) do
      local r = http.get(ctx.target .. "/account/" .. user(n), { bearer = token })
      if r.status ~= 200 then error("account: HTTP " .. r.status) end
      if r:json().container ~= res.output then
        error(("result %d: %s, but %s holds %s"):format(n, res.output, user(n), tostring(r:json().container)))
      end
    end
    print("WAIT_ALL_OK " .. N)
    return { token = token }
  end,
  run = function() end,
  teardown = function(ctx, data)
    for n = 1, N do
      http.delete(ctx.target .. "/account/" .. user(n), { bearer = data.token })
    end
  end,
}
""", *normal_stack.tide_args(), timeout=120)
    assert res.rc == 0, str(res)
    assert "WAIT_ALL_OK 10" in res.stdout, str(res)
    assert normal_stack.scalar("SELECT count(*) FROM assignments WHERE username LIKE 'wait\\_all\\_user\\_%'") == 10
    assert normal_stack.scalar("SELECT count(*) FROM users WHERE username LIKE 'wait\\_all\\_user\\_%'") == 0, \
        str(res)
