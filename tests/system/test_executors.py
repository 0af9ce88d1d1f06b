"""Executors: how many iterations and requests tide makes, and with how many users."""

GET_ROOT = """
local http = require "tide.http"
return {
  options = %s,
  run = function(vu)
    local r = http.get(vu.target .. "/")
    if r.status ~= 200 then
      error(("GET / answered %%s %%s"):format(r.status, r.error))
    end
  end,
}
"""


def test_per_vu_iterations_exact_counts(run_tide, access_log):
    res = run_tide(GET_ROOT % '{ executor = "per-vu-iterations", vus = 20, iterations = 50 }',
                   "--target", access_log.url)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 1000, str(res)
    assert res.metric("http_reqs{name:/}")["values"]["count"] == 1000, str(res)
    assert res.count("iterations") == 1000, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    lines = access_log.wait_log(1000)
    assert len(lines) == 1000, f"nginx logged {len(lines)} requests, expected 1000\n{res}"
    assert all(l.path == "/" and l.status == 200 for l in lines), lines[:5]


def test_shared_iterations_exact_counts(run_tide, access_log):
    res = run_tide(GET_ROOT % '{ executor = "shared-iterations", vus = 10, iterations = 333 }',
                   "--target", access_log.url)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 333, str(res)
    assert res.count("iterations") == 333, str(res)
    lines = access_log.wait_log(333)
    assert len(lines) == 333, f"nginx logged {len(lines)} requests, expected 333\n{res}"


def test_cli_options_override_scenario_options(run_tide, access_log):
    res = run_tide(GET_ROOT % '{ executor = "per-vu-iterations", vus = 20, iterations = 50 }',
                   "--target", access_log.url, "--executor", "shared-iterations",
                   "--vus", "3", "--iterations", "7")
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 7, str(res)
    assert res.count("iterations") == 7, str(res)
    assert len(access_log.wait_log(7)) == 7, str(res)


def test_constant_vus_duration_and_concurrency(run_tide, access_log):
    scenario = """
local http = require "tide.http"
local tide = require "tide"
return {
  options = { executor = "constant-vus", vus = 10, duration = "3s" },
  run = function(vu)
    local r = http.get(vu.target .. "/")
    if r.status ~= 200 then error("GET / answered " .. tostring(r.status)) end
    tide.sleep("20ms")
  end,
}
"""
    res = run_tide(scenario, "--target", access_log.url, timeout=30)
    assert res.rc == 0, str(res)
    ms = res.json["state"]["testRunDurationMs"]
    assert 2000 <= ms <= 4000, f"testRunDurationMs {ms}, expected 3000 ± 1000\n{res}"
    n = res.count("http_reqs")
    assert n > 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    lines = access_log.wait_log(n)
    assert len(lines) == n, f"tide counted {n} requests, nginx logged {len(lines)}\n{res}"
    conns = {l.connection for l in lines}
    assert len(conns) == 10, f"nginx saw {len(conns)} distinct connections, expected 10 (one per VU)\n{res}"


def test_vu_ids_unique_across_threads(run_tide, access_log):
    scenario = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", iterations = 1 },
  run = function(vu)
    local r = http.get(vu.target .. "/?id=" .. vu.id)
    if r.status ~= 200 then error("status " .. tostring(r.status)) end
  end,
}
"""
    res = run_tide(scenario, "--target", access_log.url, "--threads", "2", "--vus", "8")
    assert res.rc == 0, str(res)
    lines = access_log.wait_log(8)
    ids = [l.query.get("id", ["?"])[0] for l in lines]
    assert sorted(ids, key=lambda s: (len(s), s)) == [str(i) for i in range(1, 9)], \
        f"vu.id values seen by nginx: {ids}, expected each of 1..8 once\n{res}"


def test_vu_iteration_counts_from_zero(run_tide, access_log):
    scenario = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 3 },
  run = function(vu)
    http.get(vu.target .. "/?vu=" .. vu.id .. "&it=" .. vu.iteration)
  end,
}
"""
    res = run_tide(scenario, "--target", access_log.url)
    assert res.rc == 0, str(res)
    lines = access_log.wait_log(6)
    seen = sorted((l.query["vu"][0], l.query["it"][0]) for l in lines)
    expected = sorted((str(v), str(i)) for v in (1, 2) for i in range(3))
    assert seen == expected, f"(vu.id, vu.iteration) pairs {seen}, expected {expected}\n{res}"


def test_duration_caps_iteration_executors(run_tide):
    res = run_tide("""
local tide = require "tide"
return {
  options = { executor = "shared-iterations", vus = 4, iterations = 1000 },
  run = function(vu) tide.sleep("100ms") end,
}
""", "--duration", "1s", "--graceful-stop", "0s", timeout=20)
    assert res.rc == 0, str(res)
    assert res.elapsed < 4, f"--duration 1s should end the run after about 1s, took {res.elapsed:.1f}s\n{res}"
    n = res.count("iterations")
    assert 10 <= n < 1000, f"{n} iterations in 1s of 4 VUs sleeping 100ms\n{res}"


def test_vus_gauges(run_tide):
    res = run_tide("""
return { options = { executor = "per-vu-iterations", iterations = 2 }, run = function(vu) end }
""", "--vus", "8", "--threads", "2")
    assert res.rc == 0, str(res)
    m = res.metrics
    assert m["vus_max"]["type"] == "gauge", m["vus_max"]
    assert m["vus_max"]["values"]["value"] == 8, f"vus_max: {m['vus_max']}\n{res}"
    assert m["vus"]["values"]["max"] == 8, f"vus: {m['vus']}\n{res}"
    assert res.count("iterations") == 16, str(res)


def test_connections_kept_alive(run_tide, access_log):
    res = run_tide(GET_ROOT % '{ executor = "per-vu-iterations", vus = 3, iterations = 20 }',
                   "--target", access_log.url)
    assert res.rc == 0, str(res)
    lines = access_log.wait_log(60)
    assert len(lines) == 60, str(res)
    conns = {l.connection for l in lines}
    assert len(conns) == 3, f"3 VUs used {len(conns)} connections for 60 requests: keep-alive not used\n{res}"
