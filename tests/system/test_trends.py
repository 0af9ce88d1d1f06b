"""Trends that are not times keep their values (issue 11 item 7).

A custom trend without the "time" flag used to be stored as whole
microseconds: 0.01 .. 1.00 reported median 1 and min 0, negatives became 0,
values past 3.6e9 were capped silently. Here a real load (requests to the
session's nginx, several users on two threads) records fractions, negatives
around zero and values of 1e12, and the summary, the JSON results, the
thresholds and `tide report`'s merges show the values themselves."""

import json
import subprocess

from conftest import TIDE

USERS, ITERATIONS = 4, 25

# value(vu, i) for vu 1..USERS, i 0..ITERATIONS-1 is 1..100 once each; BASE
# shifts the users so that two processes of USERS/2 each split the same set.
SCENARIO = """
local http, metrics = require "tide.http", require "tide.metrics"
local ratio = metrics.trend("ratio")
local signed = metrics.trend("signed")
local huge = metrics.trend("huge")
local took = metrics.trend("took", "time")
local long = metrics.trend("long", "time")

return {
  options = {
    executor = "per-vu-iterations", vus = tonumber(os.getenv("TIDE_TEST_VUS")), iterations = %(iterations)d,
    thresholds = {
      ratio = { "p(95) < 0.96", "p(95) > 0.94", "med == 0.5", "min == 0.01", "max == 1",
                "p(95) < 0.5" },
      signed = { "min == -5", "max == 5", "med == 0" },
      huge = { "p(50) > 0.999e12", "p(50) < 1.001e12" },
    },
  },
  run = function(vu)
    local n = (vu.id + tonumber(vu.env.BASE) - 1) * %(iterations)d + vu.iteration + 1 -- 1..100
    ratio:add(n / 100, { part = n %% 2 == 0 and "even" or "odd" })
    if n <= 11 then signed:add(n - 6) end                                         -- -5 .. 5
    if n <= 10 then huge:add(1e12) end                                            -- ten times
    if n == 100 then huge:add(1e20) end                                            -- past the range
    took:add(n / 10)                                                               -- ms, as before
    if n == 100 then long:add(5e6) elseif n <= 2 then long:add(1000) end           -- 5e6 ms > 1 h
    http.get(vu.target .. "/")
  end,
}
"""


def run(tide, nginx, scenario, base, vus):
    res = tide.run(scenario, "--target", nginx.url, "--threads", "2", "--env", f"BASE={base}",
                   timeout=120, env={"TIDE_TEST_VUS": str(vus)})
    assert res.rc == 1 and res.json is not None, res  # only "p(95) < 0.5" fails
    return res


def verdicts(doc):
    return {(r["key"], r["text"]): (r["ok"], r["observed"]) for r in doc["threshold_results"]}


def test_fractions_negatives_and_huge_values_keep_their_values(tide, nginx):
    scenario = tide.write(SCENARIO % {"iterations": ITERATIONS})
    res = run(tide, nginx, scenario, 0, USERS)
    m = res.json["metrics"]

    ratio = m["ratio"]["values"]
    assert ratio["count"] == 100
    assert ratio["min"] == 0.01 and ratio["max"] == 1
    assert abs(ratio["avg"] - 0.505) < 1e-12
    assert abs(ratio["med"] - 0.5) <= 0.0005 and ratio["med"] == 0.5
    assert ratio["p(95)"] == 0.95 and ratio["p(90)"] == 0.9 and ratio["p(99)"] == 0.99
    assert "clamped" not in ratio
    hist = m["ratio"]["histogram"]
    assert hist["unit"] == "value" and hist["count"] == 100 and hist["clamped"] == 0
    assert abs(hist["sum"] + hist["sum_lo"] - 50.5) < 1e-12

    signed = m["signed"]["values"]
    assert (signed["count"], signed["min"], signed["max"], signed["med"], signed["avg"]) == (11, -5, 5, 0, 0)

    huge = m["huge"]["values"]
    assert huge["count"] == 11 and huge["min"] == 1e12
    assert abs(huge["med"] - 1e12) <= 1e12 / 1000
    assert huge["clamped"] == 1 and m["huge"]["histogram"]["clamped"] == 1
    assert huge["max"] == 2 ** 60  # 1e20 is recorded at the edge of the range, and counted

    # time trends are as they were: ms in the values, µs in the histogram
    took = m["took"]
    assert took["histogram"]["unit"] == "us" and took["histogram"]["min"] == 100
    assert took["values"]["min"] == 0.1 and took["values"]["max"] == 10
    assert "clamped" not in took["values"]
    # a time past the time histogram's hour is clamped there, and counted
    long = m["long"]
    assert long["values"]["count"] == 3 and long["values"]["clamped"] == 1, long
    assert long["values"]["max"] == 3600 * 1000 and long["histogram"]["clamped"] == 1

    # thresholds judge the values themselves
    v = verdicts(res.json)
    assert v[("ratio", "p(95) < 0.96")] == (True, 0.95)
    assert v[("ratio", "p(95) > 0.94")] == (True, 0.95)
    assert v[("ratio", "p(95) < 0.5")] == (False, 0.95)
    for text in ("med == 0.5", "min == 0.01", "max == 1"):
        assert v[("ratio", text)][0] is True, text
    for text in ("min == -5", "max == 5", "med == 0"):
        assert v[("signed", text)][0] is True, text
    assert v[("huge", "p(50) > 0.999e12")][0] and v[("huge", "p(50) < 1.001e12")][0]

    # the summary
    lines = {l.split()[0]: l for l in res.stdout.splitlines() if l.startswith("  ") and l.split()}
    assert "min 0.01  avg 0.505  med 0.5  p95 0.95  max 1  (100)" in lines["ratio"], res.stdout
    assert "min -5  avg 0  med 0  p95 5  max 5  (11)" in lines["signed"], res.stdout
    assert "clamped 1" in lines["huge"] and "min 1e+12" in lines["huge"], res.stdout
    assert "observed 0.95" in res.stdout
    assert "clamped 1 past 1h" in lines["long"] and "clamped" not in lines["took"], res.stdout

    # the HTML report shows the same figures
    html = tide.tmp / "report.html"
    rep = subprocess.run([TIDE, "report", str(res.json_path), "--html", str(html)],
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    page = html.read_text()
    assert "huge (1 clamped)" in page and "long (1 clamped)" in page
    assert ">0.505<" in page and ">0.95<" in page and ">-5<" in page


def test_nan_and_infinity_are_refused_with_the_value_named(tide):
    res = tide.run("""
local ratio = require("tide.metrics").trend("ratio")
return { options = { vus = 1, iterations = 1 },
  run = function() ratio:add(0.5) ratio:add(0/0) end }
""", timeout=30)
    assert "a trend's value must be a finite number, got" in res.stderr + res.stdout, res
    assert res.json["metrics"]["ratio"]["values"]["count"] == 1
    assert res.json["metrics"]["iteration_errors"]["values"]["count"] == 1


def registry_hists(doc, name):
    """Each series' histogram; the sums' remainders (sum_lo, sumsq_lo: what
    rounding the double sums left out, ~1e-16 of them) may differ in their
    own last bits with the order of adding fractions, so they are rounded."""
    out = {}
    for s in doc["registry"][name]["series"]:
        h = dict(s["hist"])
        for k in ("sum", "sumsq"):
            h[k + "_lo"] = round(h[k + "_lo"] / max(abs(h[k]), 1e-300), 26)
        out[json.dumps(s["tags"], sort_keys=True)] = h
    return out


def test_two_documents_merge_into_the_one_run(tide, nginx):
    scenario = tide.write(SCENARIO % {"iterations": ITERATIONS})
    one = run(tide, nginx, scenario, 0, USERS)
    parts = [run(tide, nginx, scenario, base, USERS // 2) for base in (0, USERS // 2)]
    merged_path = tide.tmp / "merged.json"
    rep = subprocess.run([TIDE, "report", *[str(p.json_path) for p in parts], "--json", str(merged_path)],
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    merged = json.loads(merged_path.read_text())
    assert merged["merged"] == 2

    for name in ("ratio", "signed", "huge"):
        # bucket by bucket, with the exact extremes and sums
        assert registry_hists(merged, name) == registry_hists(one.json, name), name
        for key in [k for k in one.json["metrics"] if k == name or k.startswith(name + "{")]:
            want, got = one.json["metrics"][key], merged["metrics"][key]
            for stat in ("count", "min", "max", "med", "p(90)", "p(95)", "p(99)", "clamped"):
                assert got["values"].get(stat) == want["values"].get(stat), (key, stat)
            assert got["histogram"]["slots"] == want["histogram"]["slots"], key
    assert verdicts(merged) == verdicts(one.json)
    assert merged["metrics"]["ratio"]["values"]["med"] == 0.5
    # the merged document prints the same lines again
    lines = [l for l in rep.stdout.splitlines() if l.strip().startswith(("ratio ", "signed ", "huge "))]
    assert len(lines) == 3 and all(l in one.stdout for l in lines), rep.stdout


def as_written_before(doc):
    """The document with every non-time trend as tide wrote it before value
    histograms: whole microsecond units in a "us" histogram (here: ratio
    scaled to 1..100, which the old code could hold exactly)."""
    def us_hist(values):
        values = sorted(values)
        slots = []
        for v in values:
            if slots and slots[-2] == v:
                slots[-1] += 1
            else:
                slots += [v, 1]
        return {"unit": "us", "count": len(values), "min": values[0], "max": values[-1], "sum": sum(values),
                "sumsq": str(sum(v * v for v in values)), "clamped": 0, "slots": slots}
    old = json.loads(json.dumps(doc))
    h = us_hist(list(range(1, 101)))
    old["metrics"] = {k: m for k, m in old["metrics"].items() if k in ("ratio", "took", "http_reqs")}
    old["metrics"]["ratio"]["histogram"] = h
    old["registry"] = {k: m for k, m in old["registry"].items() if k in ("ratio", "took", "http_reqs")}
    old["registry"]["ratio"]["series"] = [{"tags": {}, "hist": h}]
    old["threshold_results"] = []
    return old


def test_documents_from_before_still_read_and_merge(tide, nginx):
    scenario = tide.write(SCENARIO % {"iterations": ITERATIONS})
    new = run(tide, nginx, scenario, 0, USERS)
    old_path = tide.tmp / "old.json"
    old_path.write_text(json.dumps(as_written_before(new.json)))

    alone = subprocess.run([TIDE, "report", str(old_path)], capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0, alone.stderr
    assert "min 1  avg 50.5  med 50  p95 95  max 100  (100)" in alone.stdout, alone.stdout

    out = tide.tmp / "both.json"
    rep = subprocess.run([TIDE, "report", str(old_path), str(new.json_path), "--json", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode in (0, 1), rep.stderr
    doc = json.loads(out.read_text())
    ratio = doc["metrics"]["ratio"]
    assert ratio["histogram"]["unit"] == "value" and ratio["values"]["count"] == 200
    assert ratio["values"]["min"] == 0.01 and ratio["values"]["max"] == 100
    assert ratio["values"]["med"] == 1  # 0.01..1.00 and 1..100: the 100th of 200 is 1
    assert abs(ratio["values"]["avg"] - (50.5 + 5050) / 200) < 1e-9
    took = doc["metrics"]["took"]
    assert took["histogram"]["unit"] == "us" and took["values"]["count"] == 200
