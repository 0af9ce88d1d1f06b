"""Compression: tide asks for what its libcurl decodes and decodes it;
r.body is the decoded body, data_received the bytes on the wire; it is off
with compression = false (request option), options.compression = false and
--no-compression, and a script's own Accept-Encoding is sent as given with
the body left as received. Checked on what httpbin, nginx and a recording
server saw."""

import gzip
import json

import pytest

from httpserver import RecordingServer

ALL_CODINGS = {"gzip", "deflate", "br", "zstd"}   # this libcurl: zlib, brotli, zstd (curl --version)


@pytest.fixture
def recorder(request):
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    return server


def one_iteration(body, options=""):
    return f"""
local http = require "tide.http"
return {{
  options = {{ executor = "per-vu-iterations", vus = 1, iterations = 1, {options} }},
  run = function(vu)
{body}
  end,
}}
"""


def test_decoded_by_default_but_not_when_the_script_names_its_accept_encoding(run_tide, httpbin, tmp_path):
    res = run_tide(one_iteration("""
    for _, coding in ipairs { "gzip", "deflate", "brotli" } do
      local r = http.get(vu.target .. "/" .. coding)
      assert(r.status == 200, coding .. ": " .. tostring(r.status))
      local j = r:json()   -- raised on a compressed body before
      assert(j.gzipped or j.deflated or j.brotli, coding .. ": " .. r.body)
      print("asked " .. coding .. ": " .. j.headers["Accept-Encoding"])
    end
    -- the script's own Accept-Encoding: sent as given, the body left as it came
    local r = http.get(vu.target .. "/gzip", { headers = { ["Accept-Encoding"] = "gzip" } })
    assert(r.status == 200)
    assert(r.headers["content-encoding"] == "gzip", tostring(r.headers["content-encoding"]))
    local f = assert(io.open("body.gz", "wb")); f:write(r.body); f:close()
"""), "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    asked = [l.split(": ", 1)[1] for l in res.stdout.splitlines() if l.startswith("asked ")]
    assert len(asked) == 3, res.stdout
    for a in asked:
        assert {c.strip() for c in a.split(",")} == ALL_CODINGS, a
    raw = (tmp_path / "body.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b", raw[:20]
    sent = json.loads(gzip.decompress(raw))
    assert sent["headers"]["Accept-Encoding"] == "gzip", sent


@pytest.mark.parametrize("how", ["request", "options", "flag"])
def test_off_sends_no_accept_encoding(run_tide, recorder, how):
    opts = "{ compression = false }" if how == "request" else "{}"
    options = "compression = false" if how == "options" else ""
    args = ["--no-compression"] if how == "flag" else []
    res = run_tide(one_iteration(f"""
    local r = http.get(vu.target .. "/x", {opts})
    assert(r.status == 200)
""", options), "--target", recorder.url, *args)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    headers = {k.lower(): v for k, v in recorder.seen[0][2].items()}
    assert "accept-encoding" not in headers, headers


def test_on_sends_every_coding_and_request_option_wins_over_run_option(run_tide, recorder):
    res = run_tide(one_iteration("""
    http.get(vu.target .. "/default")
    http.get(vu.target .. "/on", { compression = true })
""", "compression = false"), "--target", recorder.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    got = {seen[1]: {k.lower(): v for k, v in seen[2].items()}.get("accept-encoding") for seen in recorder.seen}
    assert got["/default"] is None, got
    assert {c.strip() for c in got["/on"].split(",")} == ALL_CODINGS, got


def test_bad_option_value(run_tide, recorder):
    res = run_tide(one_iteration('http.get(vu.target .. "/x", { compression = "no" })'), "--target", recorder.url)
    assert "option 'compression': true or false expected, got string" in res.stderr + res.stdout, str(res)
    res = run_tide(one_iteration("", 'compression = "no"'), "--target", recorder.url)
    assert res.rc == 2 and "options.compression: expected true or false" in res.stderr, str(res)


def test_data_received_counts_the_wire_and_max_body_the_decoded_body(run_tide, nginx_tls):
    """nginx gzips a 1 MB text file to ~53 kB: data_received is what nginx
    sent ($bytes_sent), r.body the whole decoded file; max_body cuts the
    decoded body."""
    text = (nginx_tls.tmp / "www" / "text.txt").read_bytes()
    nginx_tls.reset_log()
    res = run_tide(one_iteration(f"""
    local r = http.get(vu.target .. "/text.txt")
    assert(r.status == 200 and r.headers["content-encoding"] == "gzip")
    assert(#r.body == {len(text)}, #r.body)
    assert(not r.truncated)
"""), "--target", nginx_tls.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    [entry] = nginx_tls.wait_log(1)
    assert {c.strip() for c in entry.accept_encoding.split(",")} == ALL_CODINGS, entry.accept_encoding
    received = res.count("data_received")
    assert entry.bytes_sent < len(text) / 10, entry
    # the head and the body as nginx wrote them; libcurl does not count chunk framing
    assert entry.bytes_sent * 0.98 <= received <= entry.bytes_sent, (received, entry)

    res = run_tide(one_iteration("""
    local r = http.get(vu.target .. "/text.txt")
    assert(#r.body == 100000 and r.truncated, #r.body)
    assert(r.body:sub(1, 8) == "line 0: ", r.body:sub(1, 8))
"""), "--target", nginx_tls.url, "--max-body", "100000")
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
