"""A fuzz test of tide.http's response path (issue 15): a loopback server
(misbehave.FuzzingServer) answers every request with a random response,
valid or mutated, from a seeded generator, while tide runs a bounded load of
mixed requests through it, under each HTTP engine. Asserted: tide exits
normally (0 or 1), with no crash or sanitizer report, within its bound; and
every request the scenario made is accounted for by the README's rules
(every attempt the server may have read is a sample; only an idempotent
request is re-sent, once, its lost attempt a failed sample of its own).

The seed is random unless TIDE_FUZZ_SEED is set, and printed in every
failure: TIDE_FUZZ_SEED=N reproduces a run (the server's answers per
connection; the interleaving of users is the machine's). Run it under the
sanitizers with TIDE=$PWD/tide-asan."""

import os
import random

import pytest

from misbehave import FuzzingServer

VUS = 6
ITERATIONS = 25          # per user
PER_ITERATION = 3        # requests per iteration (a batch of 3 every 7th)
BOUND_S = 25             # the scenario's own limit (options.duration)
REQUEST_TIMEOUT = "1s"   # the server's stalls (1.5 s) outlast it

SCENARIO = """
local http = require "tide.http"
local metrics = require "tide.metrics"
local calls = metrics.counter("fuzz_calls")
local idempotent = metrics.counter("fuzz_idempotent")
local methods = { "GET", "HEAD", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "GET" }
local SAFE = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

local function opts_for(n, method)
  local o = { timeout = "%(timeout)s", redirects = 0, name = "/fuzz", discard = n %% 5 == 0,
              compression = n %% 3 ~= 0 }
  if method == "POST" or method == "PUT" or method == "PATCH" then o.body = string.rep("b", n %% 3000) end
  return o
end

return {
  options = { executor = "per-vu-iterations", vus = %(vus)d, iterations = %(iterations)d,
              duration = "%(bound)ds", graceful_stop = "2s", max_body = "100KB" },
  run = function(vu)
    local base = vu.iteration_global * %(per)d
    if vu.iteration_global %% 7 == 0 then
      local url = vu.target .. "/batch/" .. base
      http.batch{ { "GET", url, opts_for(base, "GET") }, { "GET", url, opts_for(base + 1, "GET") },
                  { "GET", url, opts_for(base + 2, "GET") } }
      calls:add(3)
      idempotent:add(3)
      return
    end
    for k = 0, %(per)d - 1 do
      local n = base + k
      local method = methods[n %% #methods + 1]
      http.request(method, vu.target .. "/f/" .. n, opts_for(n, method))
      calls:add(1)
      if SAFE[method] then idempotent:add(1) end
    end
  end,
}
"""

# the reasons a request sent on a connection the server had closed ends with
CLOSED_REASONS = ("connection reset", "empty reply", "send failed", "receive failed")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                   "Segmentation fault", "core dumped", "Assertion", "stack smashing")


# one seed for the module: both engines get the same answers
SEED = int(os.environ.get("TIDE_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))


@pytest.mark.parametrize("engine", ["auto", "curl"], ids=["engine-auto", "engine-curl"])
def test_random_responses_no_crash_no_hang_all_counted(run_tide, request, engine):
    seed = SEED
    server = FuzzingServer(seed).start()
    request.addfinalizer(server.stop)
    text = SCENARIO % {"vus": VUS, "iterations": ITERATIONS, "per": PER_ITERATION, "bound": BOUND_S,
                       "timeout": REQUEST_TIMEOUT}
    res = run_tide(text, "--target", server.url, "--http-engine", engine, "--threads", "2",
                   timeout=BOUND_S + 30)
    seen = server.stats()
    where = f"TIDE_FUZZ_SEED={seed} engine={engine} server read {seen['read']} on {seen['connections']} connections"
    print(where)

    assert res.rc in (0, 1), f"{where}\n{res}"
    marks = [m for m in SANITIZER_MARKS if m in res.stderr]
    assert not marks, f"{where}: {marks} in stderr\n{res}"
    assert res.elapsed < BOUND_S + 15, f"{where}: took {res.elapsed:.1f}s\n{res}"

    calls, idempotent = res.count("fuzz_calls"), res.count("fuzz_idempotent")
    reqs = res.count("http_reqs")
    closed = sum(f["count"] for f in res.json["failures"] if f["reason"] in CLOSED_REASONS)
    failures = {f["reason"]: f["count"] for f in res.json["failures"]}
    where += f"; calls {calls}, idempotent {idempotent}, http_reqs {reqs}, failures {failures}"
    print(where)

    # every iteration ran whole (http errors do not raise): no request lost on tide's side
    assert res.count("iterations") == VUS * ITERATIONS, f"{where}\n{res}"
    assert res.count("iteration_errors") == 0, f"{where}\n{res}"
    assert calls == VUS * ITERATIONS * PER_ITERATION, f"{where}\n{res}"
    # each call is one sample, plus at most one lost attempt of an idempotent
    # request that was re-sent, itself a failed sample (its connection closed)
    resent = reqs - calls
    assert 0 <= resent <= idempotent, f"{where}\n{res}"
    assert resent <= closed, f"{where}: {resent} re-sent attempts, {closed} failed on a closed connection\n{res}"
    # every request the server read is a sample; one it did not read went
    # out on a connection the server had closed
    assert seen["read"] <= reqs, f"{where}: the server read more requests than tide counted\n{res}"
    assert reqs - seen["read"] <= closed, f"{where}\n{res}"
