"""The corpus of misbehaving servers: every attempt the server may have read is
counted once, a response cut short is a failure with a reason people can
read, and nothing the script did not ask for is re-sent.

Each test compares tide's figures with what the server itself read
(misbehave.MisbehavingServer counts requests and resets)."""

import re

import pytest

from misbehave import MisbehavingServer


@pytest.fixture
def misbehaving(request):
    started = []

    def make(mode, **params):
        server = MisbehavingServer(mode, **params).start()
        started.append(server)
        return server

    request.addfinalizer(lambda: [s.stop() for s in started])
    return make


LOOP = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = %(vus)d, iterations = %(iterations)d },
  run = function(vu)
    local r = http.%(method)s(vu.target .. "/x", %(opts)s)
    if r.error == nil and r.status ~= 200 then error("status " .. r.status .. " without an error") end
  end,
}
"""


def run_loop(run_tide, server, method="post", vus=1, iterations=4, opts="{ body = 'payload' }", timeout=60):
    text = LOOP % {"vus": vus, "iterations": iterations, "method": method, "opts": opts}
    res = run_tide(text, "--target", server.url, timeout=timeout)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    return res


def failed_count(res):
    failed = res.metric("http_req_failed")["values"]
    return round(failed["rate"] * res.count("http_reqs"))


def failures_listed(res, reason, name="/x"):
    """The count the summary's failures section gives for (name, reason)."""
    m = re.search(r"^\s*(\d+)\s+%s\s+%s\s*$" % (re.escape(name), re.escape(reason)), res.stdout, re.M)
    return int(m.group(1)) if m else 0


def test_post_on_reset_keepalive_is_not_resent(run_tide, misbehaving):
    server = misbehaving("reset-second")
    res = run_loop(run_tide, server, method="post")
    seen = server.stats()
    assert seen["methods"].get("POST") == 4, f"the server read {seen}: a POST was re-sent\n{res}"
    assert seen["reset"] == 2, seen
    assert res.count("http_reqs") == seen["read"], f"server read {seen['read']}\n{res}"
    assert failed_count(res) == seen["reset"], f"server reset {seen['reset']}\n{res}"
    assert failures_listed(res, "connection reset") == 2, str(res)


def test_get_resend_on_fresh_connection_is_its_own_sample(run_tide, misbehaving):
    server = misbehaving("reset-second")
    res = run_loop(run_tide, server, method="get", opts="nil")
    seen = server.stats()
    # a GET whose kept-alive connection died is re-sent once on a fresh one,
    # like browsers do; the attempt the server reset is a sample of its own
    assert seen["reset"] == 3, seen
    assert seen["read"] == 7, seen
    assert res.count("http_reqs") == seen["read"], f"server read {seen}\n{res}"
    assert failed_count(res) == seen["reset"], f"server reset {seen['reset']}\n{res}"
    assert failures_listed(res, "connection reset") == 3, str(res)


def test_ten_percent_resets_at_fifty_users_counted_exactly(run_tide, misbehaving):
    server = misbehaving("reset-pct", pct=10)
    res = run_loop(run_tide, server, method="post", vus=50, iterations=40)
    seen = server.stats()
    assert seen["methods"].get("POST") == 2000, f"POSTs were re-sent: {seen}"
    assert res.count("http_reqs") == seen["read"] == 2000, f"server: {seen}\n{res}"
    assert failed_count(res) == seen["reset"], f"server: {seen}\n{res}"
    assert seen["reset"] == 200, seen


def test_reset_of_the_nth_request(run_tide, misbehaving):
    server = misbehaving("reset-nth", n=3)
    res = run_loop(run_tide, server, method="put", iterations=5)
    seen = server.stats()
    assert res.count("http_reqs") == seen["read"], f"server: {seen}\n{res}"
    assert failed_count(res) == seen["reset"] == 1, f"server: {seen}\n{res}"


CUT = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 2 },
  run = function(vu)
    local r = http.get(vu.target .. "/x", { timeout = "%(timeout)s" })
    local want = { %(want)s }
    local ok = false
    for _, w in ipairs(want) do ok = ok or r.error == w end
    if not ok then error("r.error = " .. tostring(r.error) .. ", expected " .. table.concat(want, " or ")) end
    if r.status ~= %(status)d then error("r.status = " .. r.status) end
    if r.ok then error("r.ok on a failure") end
  end,
}
"""


@pytest.mark.parametrize("mode, errors, status, timeout", [
    ("cut-headers", ["malformed response", "empty reply"], 0, "5s"),
    ("continue", ["timeout"], 0, "500ms"),
    ("cut-body", ["truncated response"], 200, "5s"),
    ("garbage", ["malformed response"], 0, "5s"),
    ("never", ["timeout"], 0, "300ms"),
    ("slow", ["timeout"], 0, "1500ms"),
    ("endless-chunked", ["timeout", "body too large"], 200, "1s"),
    ("huge-headers", ["headers too large"], 0, "5s"),
    ("huge-header-line", ["headers too large"], 0, "5s"),
])
def test_broken_answers_fail_with_a_reason(run_tide, misbehaving, mode, errors, status, timeout):
    server = misbehaving(mode)
    want = ", ".join(f'"{e}"' for e in errors)
    res = run_tide(CUT % {"timeout": timeout, "want": want, "status": status}, "--target", server.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, f"r.error/r.status not as expected\n{res}"
    assert res.count("http_reqs") == server.stats()["read"] == 2, f"server: {server.stats()}\n{res}"
    assert failed_count(res) == 2, str(res)
    assert any(e in res.stdout for e in errors), f"the summary does not give the reason {errors}\n{res}"


@pytest.mark.parametrize("opts, what", [
    ("{ headers = { ['X-A'] = 'a\\r\\nX-Injected: 1' } }", "X-A"),
    ("{ headers = { ['X-A'] = 'a\\nb' } }", "X-A"),
    ("{ headers = { ['X-B\\r\\nX-C'] = 'v' } }", "X-B"),
    ("{ headers = { ['X-Z'] = 'a\\0b' } }", "X-Z"),
    ("{ bearer = 'tok\\r\\nX-Injected: 1' }", "bearer"),
])
def test_crlf_in_headers_refused(run_tide, misbehaving, opts, what):
    server = misbehaving("ok")
    res = run_tide(f"""
local http = require "tide.http"
return {{
  options = {{ executor = "per-vu-iterations", vus = 1, iterations = 1 }},
  run = function(vu) http.get(vu.target .. "/x", {opts}) end,
}}
""", "--target", server.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 1, str(res)
    assert server.stats()["read"] == 0, f"a request with CR/LF went out: {server.stats()}"
    assert what in res.stderr and ("CR" in res.stderr or "control" in res.stderr), str(res)
