"""tide.http sends what the script says: the method it names, with or
without a body; no Content-Type the script did not ask for; a header set to
"" sent empty, one set to false not sent. Checked on what the server read."""

import pytest

from httpserver import RecordingServer


@pytest.fixture
def recorder(request):
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    return server


def run_one(run_tide, server, call):
    res = run_tide(f"""
local http = require "tide.http"
return {{
  options = {{ executor = "per-vu-iterations", vus = 1, iterations = 1 }},
  run = function(vu) local r = {call}; assert(r.status == 200, tostring(r.status) .. " " .. tostring(r.error)) end,
}}
""", "--target", server.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    assert len(server.seen) == 1, server.seen
    return server.seen[0]


@pytest.mark.parametrize("call, method, body", [
    ('http.get(vu.target .. "/x", { json = { a = 1 } })', "GET", b'{"a":1}'),
    ('http.get(vu.target .. "/x", { body = "raw" })', "GET", b"raw"),
    ('http.request("GET", vu.target .. "/x", { body = "raw" })', "GET", b"raw"),
    ('http.delete(vu.target .. "/x", { body = "gone" })', "DELETE", b"gone"),
    ('http.request("PURGE", vu.target .. "/x", { body = "p" })', "PURGE", b"p"),
    ('http.options(vu.target .. "/x", { body = "o" })', "OPTIONS", b"o"),
    ('http.put(vu.target .. "/x", { body = "p" })', "PUT", b"p"),
    ('http.post(vu.target .. "/x", { body = "p" })', "POST", b"p"),
    ('http.post(vu.target .. "/x")', "POST", b""),
])
def test_the_method_named_is_the_method_sent(run_tide, recorder, call, method, body):
    got_method, _, _, got_body = run_one(run_tide, recorder, call)
    assert (got_method, got_body) == (method, body)


@pytest.mark.parametrize("opts, content_type", [
    ('{ body = "raw bytes" }', None),
    ('{ body = "a=1", headers = { ["Content-Type"] = "text/csv" } }', "text/csv"),
    ('{ form = { a = "1 2" } }', "application/x-www-form-urlencoded"),
    ('{ json = { a = 1 } }', "application/json"),
    ('{ json = { a = 1 }, headers = { ["content-type"] = "application/vnd.x+json" } }', "application/vnd.x+json"),
])
def test_content_type_only_when_asked(run_tide, recorder, opts, content_type):
    _, _, headers, _ = run_one(run_tide, recorder, f'http.post(vu.target .. "/x", {opts})')
    got = {k.lower(): v for k, v in headers.items()}.get("content-type")
    assert got == content_type, headers


def test_empty_header_sent_false_header_not(run_tide, recorder):
    _, _, headers, _ = run_one(run_tide, recorder,
                               'http.get(vu.target .. "/x", { headers = { ["X-Empty"] = "", Accept = false } })')
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower.get("x-empty") == "", headers
    assert "accept" not in lower, headers


@pytest.mark.parametrize("opts, key", [
    ("{ query = { a = { b = 1 } } }", "'a'"),
    ("{ query = { list = { 1, { 2 } } } }", "'list'"),
    ("{ form = { user = { name = 'x' } } }", "'user'"),
    ("{ form = { f = function() end } }", "'f'"),
])
def test_nested_tables_in_query_or_form_are_an_error(run_tide, recorder, opts, key):
    res = run_tide(f"""
local http = require "tide.http"
return {{
  options = {{ executor = "per-vu-iterations", vus = 1, iterations = 1 }},
  run = function(vu) http.post(vu.target .. "/x", {opts}) end,
}}
""", "--target", recorder.url)
    assert res.rc == 0 and res.count("iteration_errors") == 1, str(res)
    assert key in res.stderr and "nested tables" in res.stderr, str(res)
    assert recorder.seen == [], recorder.seen


def test_lists_in_query_repeat_the_key(run_tide, recorder):
    _, path, _, body = run_one(run_tide, recorder,
                               'http.post(vu.target .. "/x", { query = { id = { 1, 2 } }, form = { ok = true } })')
    assert path == "/x?id=1&id=2" and body == b"ok=true", (path, body)


def test_httpbin_reads_the_method_body_and_headers_the_script_gave(run_tide, httpbin):
    """The same, read back by a third-party server (httpbin's /anything echo)."""
    res = run_tide("""
local http = require "tide.http"
local json = require "cjson"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    local r = http.get(vu.target .. "/anything?q=1", { json = { id = 1234567890123456 },
      headers = { ["X-Empty"] = "", ["X-Kept"] = "k" } })
    assert(r.status == 200, tostring(r.status))
    local seen = r:json()
    assert(seen.method == "GET", seen.method)
    assert(seen.data == '{"id":1234567890123456}', seen.data)
    assert(seen.json.id == 1234567890123456 and math.type(seen.json.id) == "integer")
    assert(seen.headers["X-Empty"] == "", tostring(seen.headers["X-Empty"]))
    assert(seen.headers["X-Kept"] == "k")
    assert(seen.headers["Content-Type"] == "application/json")
    assert(seen.args.q == "1")
    r = http.request("DELETE", vu.target .. "/anything", { body = "gone" })
    seen = r:json()
    assert(seen.method == "DELETE" and seen.data == "gone", seen.method .. " " .. seen.data)
    assert(seen.headers["Content-Type"] == nil, tostring(seen.headers["Content-Type"]))
  end,
}
""", "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
