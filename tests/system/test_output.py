"""The JSON results (--out json=FILE) and the summary on stdout."""

import re
import subprocess

from conftest import TIDE

SCENARIO = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 10 },
  run = function(vu)
    http.get(vu.target .. "/")
    http.get(vu.target .. "/json")
  end,
}
"""

TREND_KEYS = {"count", "avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"}


def test_json_shape(run_tide, nginx):
    res = run_tide(SCENARIO, "--target", nginx.url)
    assert res.rc == 0, str(res)
    j = res.json
    assert set(j) >= {"metrics", "state", "tide"}, j.keys()
    assert j["state"]["testRunDurationMs"] > 0
    m = j["metrics"]
    expected_types = {
        "http_reqs": "counter", "http_req_duration": "trend", "http_req_waiting": "trend",
        "http_req_connecting": "trend", "http_req_failed": "rate", "data_sent": "counter",
        "data_received": "counter", "iterations": "counter", "iteration_duration": "trend",
        "vus": "gauge", "vus_max": "gauge",
    }
    for name, typ in expected_types.items():
        assert name in m, f"metric {name} missing (has {sorted(m)})"
        assert m[name]["type"] == typ, f"{name}: type {m[name]['type']}, expected {typ}"
        assert "values" in m[name] and "contains" in m[name], (name, m[name])
    for name, v in m.items():
        if v["type"] == "trend":
            assert TREND_KEYS <= set(v["values"]), (name, v["values"])
            assert "histogram" in v, f"trend {name} has no histogram"
            vals = v["values"]
            assert vals["min"] <= vals["med"] <= vals["p(90)"] <= vals["p(95)"] <= vals["p(99)"] <= vals["max"], (name, vals)
        elif v["type"] == "counter":
            assert {"count", "rate"} <= set(v["values"]), (name, v["values"])
        elif v["type"] == "rate":
            assert {"rate", "passes", "fails"} <= set(v["values"]), (name, v["values"])
    assert m["http_reqs"]["values"]["count"] == 40
    assert m["http_reqs{name:/}"]["values"]["count"] == 20
    assert m["http_reqs{name:/json}"]["values"]["count"] == 20
    assert m["http_req_duration{name:/json}"]["values"]["count"] == 20
    assert m["http_req_duration"]["values"]["count"] == 40
    assert m["iterations"]["values"]["count"] == 20
    assert m["iteration_duration"]["values"]["count"] == 20
    assert m["data_sent"]["values"]["count"] > 0 and m["data_received"]["values"]["count"] > 0
    assert m["http_req_failed"]["values"]["rate"] == 0
    assert m["http_req_duration"]["contains"] == "time"
    d = m["http_req_duration"]["values"]
    assert 0 < d["avg"] < 1000, f"http_req_duration should be in ms: {d}"
    rate = m["http_reqs"]["values"]["rate"]
    expect = 40 / (j["state"]["testRunDurationMs"] / 1000)
    assert abs(rate - expect) <= 0.05 * expect, f"http_reqs rate {rate}, expected about {expect}"
    for absent in ("iteration_errors", "iterations_interrupted", "http_body_truncated"):
        assert absent not in m, f"{absent} has no samples and should be absent"


def test_summary_table(run_tide, nginx):
    res = run_tide(SCENARIO, "--target", nginx.url)
    assert res.rc == 0, str(res)
    out = res.stdout
    header = next((l for l in out.splitlines() if "reqs" in l and "p95" in l), None)
    assert header, f"no request table in the summary\n{res}"
    for col in ("reqs", "req/s", "failed", "min", "avg", "med", "p90", "p95", "p99", "max"):
        assert col in header, f"column {col} missing from {header!r}"
    rows = {l.split()[0]: l.split() for l in out.splitlines() if l.strip()}
    assert rows.get("/", [None, None])[1] == "20", f"row for / should show 20 reqs\n{res}"
    assert rows.get("/json", [None, None])[1] == "20", f"row for /json should show 20 reqs\n{res}"
    assert "failures" not in out, f"no request failed, yet there is a failures section\n{res}"
    assert re.search(r"iterations\s+20\b", out), str(res)


def test_json_unwritable_path(tide, nginx, tmp_path):
    scenario = tide.write(SCENARIO)
    res = tide.exec([str(a) for a in (
        tide.command(scenario, [], json_out=False)[0] +
        ["--target", nginx.url, "--out", f"json={tmp_path}/no/such/dir/out.json"])])
    assert res.rc == 2, f"results cannot be stored there: expected exit 2 (checked before the load)\n{res}"
    assert "no/such/dir/out.json" in res.stderr, str(res)


def test_names_with_commas_survive_the_document(run_tide, nginx, tmp_path):
    """Request and check names may hold commas: sub-metric keys, thresholds and
    `tide report` must keep them whole."""
    res = run_tide("""
local http, check = require "tide.http", require "tide.check"
return {
  options = { vus = 2, iterations = 6,
              thresholds = { ["checks{check:ok, really}"] = "rate == 1",
                             ["http_reqs{name:/a,b}"] = "count == 6" } },
  run = function(vu)
    local r = http.get(vu.target .. "/", { name = "/a,b" })
    check(r, { ["ok, really"] = r.status == 200 })
  end,
}
""", "--target", nginx.url)
    assert res.rc == 0, str(res)
    assert res.metric("http_reqs{name:/a,b}")["values"]["count"] == 6, str(res)
    rows = [l.split() for l in res.stdout.splitlines() if l.strip().startswith("/a,b")]
    assert rows and rows[0][1] == "6", f"no row for /a,b with 6 requests\n{res}"
    assert "✓ ok, really" in res.stdout, str(res)
    report = subprocess.run([TIDE, "report", str(res.json_path)], capture_output=True, text=True, timeout=30)
    assert report.returncode == 0, report.stderr
    assert report.stdout == res.stdout, f"tide report differs from the run's summary:\n{report.stdout}"
