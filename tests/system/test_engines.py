"""The two HTTP engines (issue 15): how one is chosen (--http-engine,
options.http_engine, TIDE_HTTP_ENGINE), and a differential test that sends
the same scenario through both against a corpus of misbehaving loopback
servers (misbehave.MisbehavingServer) and compares what tide reports.

Each case runs twice, each time against a fresh server: with
`--http-engine curl` (libcurl for every request) and with the default
(`auto`: the lean HTTP/1.1 transport for plain http:// requests). Compared:
per request (one per iteration) the status, the error reason, the body's
length and SHA-256, r.truncated and the response headers; the run's counts
(http_reqs, failed requests, iterations, data_sent, data_received where a
response came whole); the requests the server read. Every case also checks
an expected outcome written here from the README's rules, so a change that
made both engines wrong the same way would fail too. Where libcurl and the
accounting rules (README, "Every request the server may have read is one
sample") disagreed, the rules are what is expected here: such cases are
named in their `note`."""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import TIDE
from misbehave import BODY, MisbehavingServer

SCENARIO = """
local http = require "tide.http"
local tide = require "tide"

local function headers_of(r)
  local out = {}
  for k, v in pairs(r.headers or {}) do
    out[#out + 1] = k:lower() .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v))
  end
  table.sort(out)
  return table.concat(out, "|")
end

return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = %(iterations)d },
  run = function(vu)
    local r = http.request("%(method)s", vu.target .. "/x", { timeout = "%(timeout)s" %(body)s })
    local body = r.body or ""
    io.stderr:write(string.format("OUTCOME\\t%%d\\t%%d\\t%%s\\t%%d\\t%%s\\t%%s\\t%%s\\n", vu.iteration_global,
      r.status, tostring(r.error), #body, tide.sha256(body), tostring(r.truncated), headers_of(r)))
    %(pause)s
  end,
}
"""


class Case:
    """One misbehaving server and what a request to it must come to.

    status, error: every request's (error None: no error); body: the
    expected body (bytes) or None (not checked); read: the requests the
    server must have read (default: one per iteration); reqs: http_reqs
    (default: read); failed: failed requests (default: iterations when
    error is set, else 0); whole: a response came whole, so the byte counts
    are defined and must agree; same_connections: both engines must open as
    many connections (kept alive where the server lets them)."""

    def __init__(self, id, mode, method="GET", iterations=3, timeout="5s", pause=None, status=200, error=None,
                 body=None, read=None, reqs=None, failed=None, whole=None, outcomes=None, note="",
                 same_connections=True, **params):
        self.id, self.mode, self.method, self.params = id, mode, method, params
        self.iterations, self.timeout, self.pause = iterations, timeout, pause
        self.status, self.error, self.body = status, error, body
        self.read = iterations if read is None else read
        self.reqs = self.read if reqs is None else reqs
        self.failed = (iterations if error else 0) if failed is None else failed
        self.whole = error is None if whole is None else whole
        self.outcomes = outcomes  # a function (outcomes) -> None that checks them itself, instead of status/error
        self.note = note
        self.same_connections = same_connections


CASES = [
    Case("ok", "ok", body=b"ok"),
    Case("cut-mid-headers", "cut-headers", error={"malformed response", "empty reply"}, status=0,
         note="the connection ends inside the head"),
    Case("cut-mid-body", "cut-body", error={"truncated response"}, body=b"0123456789", whole=True,
         note="Content-Length 100, 10 bytes, then close: the 10 bytes are the body, the bytes count"),
    Case("chunked-extensions-trailers", "chunked-trailers", body=b"hello world" + b"z" * 26),
    Case("split-one-byte", "split", piece=1, body=BODY),
    Case("split-seven-bytes", "split", piece=7, body=BODY),
    Case("continue-then-200", "continue-ok", body=BODY),
    Case("http10-until-close", "http10", body=BODY * 50),
    Case("headers-1MB", "huge-headers", iterations=2, status=0, error={"headers too large"}),
    Case("length-longer-than-body", "cut-body", method="POST", error={"truncated response"}, body=b"0123456789",
         whole=True),
    Case("length-shorter-than-sent", "short-length", body=b"01234", same_connections=False,
         note="Content-Length 5, 10 bytes sent: the body is 5 bytes and the rest is not the next answer "
              "(libcurl closes the connection; keeping it and dropping the bytes would do as well)"),
    # bytes after a response that has no body: libcurl drops them and keeps
    # the connection; closing it would do as well (the outcomes must agree)
    Case("204-with-stray-body", "no-body", code=204, status=204, body=b"", same_connections=False),
    Case("304-with-stray-body", "no-body", code=304, status=304, body=b"", same_connections=False),
    Case("HEAD-with-stray-body", "no-body", method="HEAD", code=200, status=200, body=b"", same_connections=False),
    Case("connection-close-each", "close-each", body=BODY),
    Case("idle-close-after-2-GET", "idle-close", n=2, iterations=5, pause='tide.sleep("100ms")', body=BODY,
         note="the server closes after 2 answers; the next request finds the connection closed "
              "before it is sent and opens a fresh one: nothing fails"),
    Case("idle-close-after-2-POST", "idle-close", n=2, method="POST", iterations=5, pause='tide.sleep("100ms")',
         body=BODY),
    Case("close-after-2-GET", "close-after", n=2, iterations=4, body=BODY,
         read=5, reqs=5, failed=1, whole=True,
         note="the 3rd GET goes out on the kept-alive connection, which the server closes after "
              "reading it: resent once on a fresh connection, the lost attempt a failed sample of its own"),
    Case("close-after-2-POST", "close-after", n=2, method="POST", iterations=4, read=4, reqs=4, failed=1,
         whole=False, same_connections=False,
         note="a POST is never re-sent: the 3rd fails (connection reset or empty reply), the 4th "
              "goes out on a fresh connection. libcurl opens the connection for the re-send before "
              "tide stops it (CURLOPT_PREREQFUNCTION runs once connected): one connection more, "
              "never used; the lean engine opens none"),
    Case("reset-second-GET", "reset-second", iterations=4, read=7, reqs=7, failed=3, whole=False),
    Case("reset-second-POST", "reset-second", method="POST", iterations=4, read=4, reqs=4, failed=2, whole=False,
         same_connections=False, note="as close-after-2-POST: libcurl opens a connection it never uses"),
    Case("gzip-transfer-coding", "raw", name="gzip-transfer-coding", iterations=2,
         body=b"decoded by both engines\n" * 4, same_connections=False,
         note="Transfer-Encoding: gzip, chunked: the body decoded whatever the request's compression"),
    Case("garbage-status-line", "garbage", status=0, error={"malformed response"}),
    Case("stall", "never", iterations=2, timeout="300ms", status=0, error={"timeout"}),
]

# Answers RFC 9112 calls invalid that libcurl 7.88 takes (or reports in its
# own words, shown): the rules win (README: "malformed response"), so only
# the default engine's run is held to them, once the lean engine serves it.
RULE_CASES = [
    Case("cr-in-header-name", "raw", name="cr-in-header-name", iterations=2, status=0,
         error={"malformed response"}, note="libcurl: 'A libcurl function was given a bad argument'"),
    Case("two-content-lengths", "raw", name="two-lengths", iterations=2, status=0, error={"malformed response"},
         note="libcurl: 200, takes the last (4), no error"),
    Case("content-length-overflow", "raw", name="length-overflow", iterations=2, status=0,
         error={"malformed response"}, note="libcurl: 200, reads until close, no error"),
    Case("chunk-size-overflow", "raw", name="chunk-size-overflow", iterations=2, status=200,
         error={"malformed response"},
         note="libcurl: 200 and 'receive failed'; the head was sound, so its status stands, as for a cut body"),
    Case("chunked-and-content-length", "raw", name="chunked-and-length", iterations=2, status=0,
         error={"malformed response"}, note="libcurl: 200 and 'receive failed'"),
]


def close_after_outcomes(case, outs):
    """A close-after or reset-second run: most requests succeed, a POST
    whose connection died fails, a GET is resent (and succeeds)."""
    if case.method == "GET":
        assert all(o["status"] == 200 and o["error"] == "nil" for o in outs), outs
    else:
        bad = [o for o in outs if o["error"] != "nil"]
        assert len(bad) == case.failed, outs
        assert all(o["error"] in ("connection reset", "empty reply") and o["status"] == 0 for o in bad), outs


for c in CASES:
    if c.mode in ("close-after", "reset-second"):
        c.outcomes = close_after_outcomes


# ------------------------------------------------------------------ helpers

OUTCOME = re.compile(r"^OUTCOME\t(\d+)\t(\d+)\t([^\t]*)\t(\d+)\t([0-9a-f]+)\t(\w+)\t(.*)$", re.M)


def outcomes_of(res):
    outs = [{"iteration": int(m[1]), "status": int(m[2]), "error": m[3], "length": int(m[4]), "sha256": m[5],
             "truncated": m[6], "headers": m[7]} for m in OUTCOME.finditer(res.stderr)]
    return sorted(outs, key=lambda o: o["iteration"])


def failed_count(res):
    failed = res.json["metrics"].get("http_req_failed")
    return 0 if failed is None else round(failed["values"]["rate"] * res.count("http_reqs"))


def figures(res, server):
    seen = server.stats()
    return {"http_reqs": res.count("http_reqs"), "failed": failed_count(res), "iterations": res.count("iterations"),
            "data_sent": res.count("data_sent"), "data_received": res.count("data_received"),
            "server_read": seen["read"], "server_methods": seen["methods"], "connections": seen["connections"]}


def run_case(run_tide, case, engine_args):
    server = MisbehavingServer(case.mode, **case.params).start()
    try:
        body = ", body = 'payload'" if case.method in ("POST", "PUT") else ""
        text = SCENARIO % {"iterations": case.iterations, "method": case.method, "timeout": case.timeout,
                           "body": body, "pause": case.pause or ""}
        # the default is the default: not whatever TIDE_HTTP_ENGINE the suite runs under
        res = run_tide(text, "--target", server.url, *engine_args, timeout=60, env={"TIDE_HTTP_ENGINE": ""})
        assert res.rc == 0, str(res)
        assert res.count("iteration_errors") == 0, str(res)
        time.sleep(0.05)  # the server's handler counts a request as the client may already be done
        return res, outcomes_of(res), figures(res, server)
    finally:
        server.stop()


def engines_of(res):
    """Which engine carried how many requests: the results always say (a run that made none says nothing)."""
    assert res.json and "http_engines" in res.json, f"no http_engines in the results\n{res}"
    return res.json["http_engines"]


# -------------------------------------------------------- the differential


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_both_engines_agree_on_a_misbehaving_server(run_tide, case):
    curl, curl_outs, curl_fig = run_case(run_tide, case, ["--http-engine", "curl"])
    auto, auto_outs, auto_fig = run_case(run_tide, case, [])
    context = f"case {case.id} ({case.note})\n--- curl: {curl_fig}\n{curl}\n--- auto: {auto_fig}\n{auto}"

    # what the README's rules say, checked on the libcurl run (the reference) ...
    assert len(curl_outs) == case.iterations, context
    if case.outcomes:
        case.outcomes(case, curl_outs)
    else:
        for o in curl_outs:
            assert o["status"] == case.status, context
            assert (o["error"] in case.error) if case.error else o["error"] == "nil", context
            if case.body is not None:
                assert o["length"] == len(case.body), context
    assert curl_fig["server_read"] == case.read, context
    assert curl_fig["http_reqs"] == case.reqs, context
    assert curl_fig["failed"] == case.failed, context
    if case.method == "POST":
        assert curl_fig["server_methods"].get("POST", 0) == case.read, context

    # ... and the same from the default engine, request by request
    assert auto_outs == curl_outs, context
    for key in ("http_reqs", "failed", "iterations", "server_read", "server_methods"):
        assert auto_fig[key] == curl_fig[key], f"{key} differs\n{context}"
    if case.same_connections:
        assert auto_fig["connections"] == curl_fig["connections"], f"connections differ\n{context}"
    if case.whole:
        for key in ("data_sent", "data_received"):
            assert auto_fig[key] == curl_fig[key], f"{key} differs\n{context}"

    # each run carried by its own engine
    assert engines_of(curl)["lean"] == 0 and engines_of(auto)["curl"] == 0, context
    assert engines_of(auto)["lean"] == engines_of(curl)["curl"] == auto_fig["http_reqs"], context


@pytest.mark.parametrize("case", RULE_CASES, ids=[c.id for c in RULE_CASES])
def test_the_default_engine_follows_the_rules_where_libcurl_does_not(run_tide, case):
    curl, curl_outs, curl_fig = run_case(run_tide, case, ["--http-engine", "curl"])
    auto, auto_outs, auto_fig = run_case(run_tide, case, [])
    context = f"case {case.id} (libcurl's way: {case.note})\n--- curl: {curl_outs}\n--- auto: {auto_fig}\n{auto}"
    # counted alike whatever the reason: every request the server read is a failed sample
    assert curl_fig["server_read"] == auto_fig["server_read"] == auto_fig["http_reqs"] == case.iterations, context
    assert engines_of(auto) == {"lean": auto_fig["http_reqs"], "curl": 0}, case.note
    assert [(o["status"], o["error"]) for o in auto_outs] == [(case.status, e) for e in sorted(case.error)] * \
        case.iterations, context
    assert auto_fig["failed"] == case.iterations, context


def test_auto_is_served_by_the_lean_engine(run_tide):
    """The default sends plain-HTTP/1.1 requests through the lean engine,
    --http-engine curl none: the results' http_engines counts say so."""
    curl, _, curl_fig = run_case(run_tide, Case("ok", "ok", iterations=5), ["--http-engine", "curl"])
    auto, _, auto_fig = run_case(run_tide, Case("ok", "ok", iterations=5), [])
    assert engines_of(auto) == {"lean": 5, "curl": 0}, str(auto)
    assert engines_of(curl) == {"lean": 0, "curl": 5}, str(curl)


# --------------------------------------------------------- choosing one


ONE_GET = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 2 %(extra)s },
  run = function(vu) http.get(vu.target .. "/x") end,
}
"""


@pytest.fixture
def ok_server(request):
    server = MisbehavingServer("ok").start()
    request.addfinalizer(server.stop)
    return server


def test_bad_engine_values_are_named(run_tide, ok_server):
    res = run_tide(ONE_GET % {"extra": ""}, "--target", ok_server.url, "--http-engine", "lean")
    assert res.rc == 2 and "--http-engine: must be auto or curl (got 'lean')" in res.stderr, str(res)
    res = run_tide(ONE_GET % {"extra": ', http_engine = "fast"'}, "--target", ok_server.url)
    assert res.rc == 2 and "options.http_engine: must be auto or curl (got 'fast')" in res.stderr, str(res)
    res = run_tide(ONE_GET % {"extra": ", http_engine = true"}, "--target", ok_server.url)
    assert res.rc == 2 and 'options.http_engine: expected "auto" or "curl"' in res.stderr, str(res)
    res = run_tide(ONE_GET % {"extra": ""}, "--target", ok_server.url, env={"TIDE_HTTP_ENGINE": "libcurl"})
    assert res.rc == 2 and "TIDE_HTTP_ENGINE: must be auto or curl (got 'libcurl')" in res.stderr, str(res)
    assert ok_server.stats()["read"] == 0, "a run with a bad engine sent requests"


@pytest.mark.parametrize("args, extra, env, curl", [
    (["--http-engine", "curl"], "", None, True),
    (["--http-engine=auto"], ', http_engine = "curl"', None, False),     # the flag over the option
    ([], ', http_engine = "curl"', {"TIDE_HTTP_ENGINE": "auto"}, True),  # the option over the variable
    ([], ', http_engine = "auto"', {"TIDE_HTTP_ENGINE": "curl"}, False),
    ([], "", {"TIDE_HTTP_ENGINE": "curl"}, True),
    ([], "", {"TIDE_HTTP_ENGINE": ""}, False),                            # empty: unset
], ids=["flag", "flag-over-option", "option-over-env", "option-auto-over-env", "env", "empty-env"])
def test_the_engine_is_chosen_flag_then_option_then_env(run_tide, ok_server, args, extra, env, curl):
    res = run_tide(ONE_GET % {"extra": extra}, "--target", ok_server.url, *args, env=env)
    assert res.rc == 0 and res.count("http_reqs") == 2, str(res)
    assert (engines_of(res)["lean"] == 0) == curl, str(res)


def test_workers_get_the_engine(tide, ok_server, sshd):
    """--http-engine travels to --workers as a flag; TIDE_HTTP_ENGINE in the
    job, since ssh does not carry the environment."""
    path = tide.write(ONE_GET % {"extra": ""})
    res = tide.run(path, "--target", ok_server.url, "--workers", "2", "--via", "local", "--http-engine", "curl",
                   "--vus", "2", "--iterations", "4", timeout=90)
    assert res.rc == 0 and res.count("http_reqs") == 8, str(res)
    ssh_env = {"TIDE_SSH_CONFIG": str(sshd.config), "TIDE_REMOTE_BIN": TIDE, "TIDE_HTTP_ENGINE": "curl"}
    res2 = tide.run(path, "--target", ok_server.url, "--workers", "2", "--via", f"ssh:{sshd.host}",
                    "--vus", "2", "--iterations", "4", env=ssh_env, timeout=120)
    assert res2.rc == 0 and res2.count("http_reqs") == 8, str(res2)
    assert engines_of(res)["lean"] == 0 and engines_of(res2)["lean"] == 0, f"{res}\n{res2}"


def test_a_worker_takes_the_jobs_engine_variable(tmp_path):
    """The job's http_engine_env is the worker's TIDE_HTTP_ENGINE: a bad one
    is named as the coordinator would name its own."""
    job = {"source": ONE_GET % {"extra": ""}, "path": str(tmp_path / "s.lua"), "segment": [1, 1],
           "data_json": "null", "start_at": 0, "run_id": "engine-job", "env": [],
           "options": [["target", "http://127.0.0.1:9"]], "http_engine_env": "bogus"}
    env = {k: v for k, v in os.environ.items() if k != "TIDE_HTTP_ENGINE"}
    proc = subprocess.run([TIDE, "worker"], input=json.dumps(job) + "\n", capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "TIDE_HTTP_ENGINE: must be auto or curl (got 'bogus')" in proc.stderr, proc.stderr
