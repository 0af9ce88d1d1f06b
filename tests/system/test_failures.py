"""Transport errors, HTTP errors and errors in run(): counted, reported, never fatal."""

import os
import re

TRANSPORT = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 2 },
  run = function(vu)
    local r = http.get(vu.target .. "/x", %s)
    local want = { %s }
    local ok = false
    for _, w in ipairs(want) do ok = ok or r.error == w end
    if not ok then
      error(("r.error = %%s, expected one of: %%s"):format(tostring(r.error), table.concat(want, ", ")))
    end
    if r.status ~= 0 then error("r.status = " .. tostring(r.status) .. " on a transport error") end
    if r.ok ~= false then error("r.ok = " .. tostring(r.ok) .. " on a transport error") end
  end,
}
"""


def transport_case(run_tide, url, errors, opts="nil", timeout=30):
    want = ", ".join(f'"{e}"' for e in errors)
    res = run_tide(TRANSPORT % (opts, want), "--target", url, timeout=timeout)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, f"r.error was not what was expected\n{res}"
    assert res.count("http_reqs") == 2, str(res)
    failed = res.metric("http_req_failed")["values"]
    assert failed["rate"] == 1, f"transport errors must count as failed: {failed}\n{res}"
    assert "failures" in res.stdout, f"no failures section in the summary\n{res}"
    assert any(e in res.stdout for e in errors), f"the summary does not give the reason {errors}\n{res}"
    assert re.search(r"\b2\s+/x\s+(%s)" % "|".join(map(re.escape, errors)), res.stdout), \
        f"the failures section should count 2 for /x\n{res}"
    return res


def test_connection_refused(run_tide, refused_url):
    transport_case(run_tide, refused_url, ["connection refused"])


def test_timeout(run_tide, blackhole):
    res = transport_case(run_tide, blackhole.url, ["timeout"], opts='{ timeout = "300ms" }')
    assert res.elapsed < 5, f"two 300ms timeouts took {res.elapsed:.1f}s\n{res}"
    assert res.json["state"]["testRunDurationMs"] < 3000, str(res)


def test_connection_reset(run_tide, reset_server):
    transport_case(run_tide, reset_server.url, ["connection reset", "empty reply"])


def test_malformed_response(run_tide, garbage):
    transport_case(run_tide, garbage.url, ["malformed response"])


def test_http_errors_counted_failed_and_listed(run_tide, nginx):
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 5 },
  run = function(vu)
    http.get(vu.target .. "/")
    local r = http.get(vu.target .. "/503")
    if r.status ~= 503 or r.ok ~= false or r.error ~= nil then
      error(("503: status %s ok %s error %s"):format(r.status, tostring(r.ok), tostring(r.error)))
    end
  end,
}
""", "--target", nginx.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    m = res.metrics
    assert m["http_req_failed"]["values"]["rate"] == 0.5, str(res)
    assert m["http_req_failed{name:/503}"]["values"]["rate"] == 1, str(res)
    assert m["http_req_failed{name:/}"]["values"]["rate"] == 0, str(res)
    assert re.search(r"\b5\s+/503\s+HTTP 503", res.stdout), f"failures section should list 5 × /503 HTTP 503\n{res}"
    assert not re.search(r"^\s*\d+\s+/\s+", res.stdout.split("failures")[-1], re.M), \
        f"'/' had no failures but is listed\n{res}"
    rows = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    assert "/" in rows and "/503" in rows, f"the summary needs one row per request name\n{res}"


def test_iteration_errors_counted_and_reported(run_tide, nginx):
    text = """local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 5 },
  run = function(vu)
    http.get(vu.target .. "/")
    error("boom")
  end,
}
"""
    line = text.splitlines().index('    error("boom")') + 1
    res = run_tide(text, "--target", nginx.url, name="boom_scenario.lua")
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 10, str(res)
    assert res.count("iteration_errors") == 10, str(res)
    assert res.count("http_reqs") == 10, str(res)
    assert f"boom_scenario.lua:{line}:" in res.stderr, f"stderr should point at boom_scenario.lua:{line}:\n{res}"
    assert "boom" in res.stderr, str(res)
    shown = len(re.findall(rf"boom_scenario\.lua:{line}: boom", res.stderr))
    assert 1 <= shown <= 5, f"{shown} tracebacks printed, expected at most 5\n{res}"


def test_error_with_table_value_does_not_crash(run_tide, nginx):
    res = run_tide("""
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 3 },
  run = function(vu) error({ code = 42 }) end,
}
""", "--target", nginx.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 3, str(res)
    assert res.count("iterations") == 3, str(res)


def test_quiet_prints_no_summary(run_tide, nginx):
    res = run_tide("""
local http = require "tide.http"
return { run = function(vu) http.get(vu.target .. "/") end }
""", "--target", nginx.url, "--quiet")
    assert res.rc == 0, str(res)
    assert res.stdout == "", str(res)
    assert res.count("http_reqs") == 1, str(res)
    assert os.path.getsize(res.json_path) > 0
