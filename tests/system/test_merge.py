"""One metrics algebra: documents merge into exactly what one process records.

A workload whose recorded values depend only on the user (vu.id, offset by
--env BASE so that three processes have disjoint users) and the iteration
runs once in one process and once as three processes with a third of the
users each; `tide report --json` merges the three documents, and every
metric and tag set of the merged registry equals the one-process registry:
histogram buckets, count, min, max, sum, sumsq, percentiles, counters,
rates, gauge extremes, and the threshold verdicts. Requests go to the
session's nginx."""

import json
import subprocess

from conftest import TIDE

USERS, ITERATIONS = 6, 5

SCENARIO = """
local http, check, metrics = require "tide.http", require "tide.check", require "tide.metrics"
local work = metrics.trend("work")
local took = metrics.trend("took", "time")
local items = metrics.counter("items")
local good = metrics.rate("good")
local level = metrics.gauge("level")

return {
  options = {
    executor = "per-vu-iterations", vus = tonumber(os.getenv("TIDE_TEST_VUS")), iterations = %(iterations)d,
    thresholds = {
      work = { "p(90) < 5000", "max < 100" },
      ["took{kind:odd}"] = "p(99) < 2000ms",
      items = "count > 10",
      good = "rate > 0.5",
      level = "max < 1000",
      ["checks{parity:even}"] = "rate > 0.99",
      http_reqs = "count == %(requests)d",
    },
  },
  run = function(vu)
    local id = vu.id + tonumber(vu.env.BASE)
    local i = vu.iteration
    local v = id * 997 + i * 131
    local kind = v %% 2 == 0 and "even" or "odd"
    work:add(v %% 4999 + id, { kind = kind })
    work:add(v * 1000003 %% 3600000007)
    took:add((v %% 1777) / 7, { kind = kind })
    items:add(id + i, { kind = kind })
    good:add(v %% 3 ~= 0, { kind = kind })
    level:add(id * 10 + i)
    check(v, { ["small"] = v %% 5 ~= 0, ["odd"] = v %% 2 == 1 }, { parity = kind })
    http.get(vu.target .. (i %% 2 == 0 and "/" or "/index.html"), { name = "page" .. (id %% 3) })
  end,
}
"""


def run_part(tide, nginx, scenario, base, vus):
    res = tide.run(scenario, "--target", nginx.url, "--threads", "2", "--env", f"BASE={base}",
                   timeout=120, env={"TIDE_TEST_VUS": str(vus)})
    assert res.rc in (0, 1) and res.json is not None, res
    return res


def registry_view(doc):
    """Every series of the registry by (metric, tags), with the histogram's
    exact figures; a gauge's last value depends on timing, its extremes don't."""
    out = {}
    for name, m in doc["registry"].items():
        for s in m["series"]:
            key = (name, json.dumps(s["tags"], sort_keys=True))
            v = {k: x for k, x in s.items() if k not in ("tags", "at", "hist")}
            if m["type"] == "gauge":
                v.pop("value")
            if "hist" in s:
                v["hist"] = s["hist"]
            assert key not in out, f"series {key} twice"
            out[key] = v
    return out


def trend_values(doc):
    return {k: m["values"] for k, m in doc["metrics"].items() if m["type"] in ("trend", "counter", "rate")
            and not k.startswith(("iteration_duration", "http_req_", "group_duration", "iteration_start"))
            and k != "data_received" and k != "data_sent"}


TIMED = ("http_req_", "iteration_duration", "iteration_start_delay", "data_", "vus")


def test_three_disjoint_processes_merge_into_the_one_process_record(tide, nginx):
    requests = USERS * ITERATIONS
    scenario = tide.write(SCENARIO % {"iterations": ITERATIONS, "requests": requests})
    one = run_part(tide, nginx, scenario, 0, USERS)
    parts = [run_part(tide, nginx, scenario, k * USERS // 3, USERS // 3) for k in range(3)]
    merged_path = tide.tmp / "merged.json"
    cmd = [TIDE, "report", *[str(p.json_path) for p in parts], "--json", str(merged_path)]
    rep = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    merged = json.loads(merged_path.read_text())
    assert merged["format"] == "tide-results/2" and merged["merged"] == 3

    want, got = registry_view(one.json), registry_view(merged)
    # timings of real requests differ between runs: their counts must not
    for key in list(want):
        if key[0].startswith(TIMED):
            w, g = want.pop(key), got.pop(key, None)
            assert g is not None, f"{key} missing from the merged registry"
            if "hist" in w:
                assert g["hist"]["count"] == w["hist"]["count"], key
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))
    for key in want:
        assert got[key] == want[key], f"{key}: merged {got[key]} != one process {want[key]}"
    print(len(want), "series compared")
    assert any(k[0] == "work" for k in want) and any(k[0] == "checks" for k in want)
    assert want[("http_reqs", json.dumps({"method": "GET", "name": "page0", "status": "200"},
                                          sort_keys=True))]["count"] > 0

    # the document's figures, percentiles among them, come out the same
    w, g = trend_values(one.json), trend_values(merged)
    for key in w:
        vals = {k: x for k, x in w[key].items() if k != "rate" or one.json["metrics"][key]["type"] == "rate"}
        got_vals = {k: x for k, x in g[key].items() if k in vals}
        assert got_vals == vals, f"{key}: merged {g[key]} != one process {w[key]}"

    # per-second histograms travel packed and merge: every second keeps one
    for doc in (one.json, merged):
        assert doc["points"] and all(isinstance(p.get("hist"), str) and "p95" in p for p in doc["points"])
        assert sum(p["reqs"] for p in doc["points"]) == requests

    verdicts = lambda doc: sorted((r["key"], r["text"], r["ok"], r["observed"]) for r in doc["threshold_results"])
    assert verdicts(merged) == verdicts(one.json)
    assert len(one.json["threshold_results"]) == 8
    assert {r["ok"] for r in one.json["threshold_results"]} == {True, False}


def as_results_1(doc):
    """A document as tide-results/1 wrote it: no registry, sumsq a number,
    seconds with percentiles only."""
    doc = dict(doc, format="tide-results/1")
    doc.pop("registry")
    for m in doc["metrics"].values():
        if "histogram" in m:
            m["histogram"]["sumsq"] = float(int(m["histogram"]["sumsq"]))
    for p in doc["points"]:
        p.pop("hist")
    return doc


def test_results_1_documents_still_load_and_merge(tide, nginx):
    requests = 2 * ITERATIONS
    scenario = tide.write(SCENARIO % {"iterations": ITERATIONS, "requests": requests})
    parts = [run_part(tide, nginx, scenario, k, 1) for k in range(2)]
    paths = []
    for i, p in enumerate(parts):
        path = tide.tmp / f"old{i}.json"
        path.write_text(json.dumps(as_results_1(p.json)))
        paths.append(str(path))
    out = tide.tmp / "old-merged.json"
    rep = subprocess.run([TIDE, "report", *paths, "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    merged = json.loads(out.read_text())
    assert merged["metrics"]["http_reqs"]["values"]["count"] == requests
    work = [p.json["metrics"]["work"]["histogram"] for p in parts]
    assert merged["metrics"]["work"]["histogram"]["count"] == sum(h["count"] for h in work)
    assert merged["metrics"]["work"]["values"]["max"] == max(h["max"] for h in work)
    results = {r["key"] + " " + r["text"]: r for r in merged["threshold_results"]}
    assert results["http_reqs count == %d" % requests]["ok"] is True
    assert results["work max < 100"]["ok"] is False
