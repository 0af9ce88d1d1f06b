"""Results that stay trustworthy at scale: many request names, bad documents
given to `tide db import`, and big results files given to `tide report`.

Load goes to the session's nginx; the database tests use a PostgreSQL of
their own (pg_server.PgServer), one fresh database per test."""

import json

import pytest

from conftest import TIDE
from pg_server import PgServer

# Every user of a run asks for NAMES distinct names, each in its own order,
# so that each name is seen by several users on several engine threads.
SPREAD_NAMES = """
local http = require "tide.http"
local NAMES = tonumber(os.getenv("NAMES"))
return {
  options = { executor = "per-vu-iterations", vus = 8, iterations = NAMES, threads = 2 },
  run = function(vu)
    local i = (vu.iteration * 7 + vu.id * 13) % NAMES
    http.get(vu.target .. "/", { name = "n" .. i })
  end,
}
"""

# N requests, each with a name of its own.
DISTINCT_NAMES = """
local http = require "tide.http"
local N = tonumber(os.getenv("NAMES"))
return {
  options = { executor = "shared-iterations", vus = 10, iterations = N, threads = 1 },
  run = function(vu)
    http.get(vu.target .. "/", { name = ("item-%d-%d"):format(vu.id, vu.iteration) })
  end,
}
"""


def name_counts(res, metric="http_reqs"):
    prefix = metric + "{name:"
    return {k[len(prefix):-1]: m["values"]["count"] for k, m in res.metrics.items() if k.startswith(prefix)}


# ---------------------------------------------------------- many request names


def test_end_of_run_grows_linearly_with_request_names(run_tide, nginx):
    """Building the results was quadratic in request names: 3000 names took
    ten times as long as five times 600 (20,000 names: minutes)."""
    times = {}
    for n in (600, 3000):
        res = run_tide(DISTINCT_NAMES, "--target", nginx.url, "--quiet", env={"NAMES": str(n)}, timeout=60)
        assert res.rc == 0, str(res)
        assert len(name_counts(res)) == n, str(res)
        times[n] = res.elapsed
    assert times[3000] < 5 * times[600] + 1.0, f"end of run not linear in request names: {times}"


def test_names_beyond_max_names_go_to_other_on_every_thread(run_tide, nginx):
    """--max-names 30 with 100 names asked for by 8 users on 2 threads: the
    run keeps 30 names (the first it saw on any thread), each with all of its
    samples; every sample of the other 70 is in name:(other), warned once."""
    res = run_tide(SPREAD_NAMES, "--target", nginx.url, "--max-names", "30", env={"NAMES": "100"})
    assert res.rc == 0, str(res)
    counts = name_counts(res)
    other = counts.pop("(other)")
    assert len(counts) == 30, counts
    assert set(counts.values()) == {8}, f"a kept name lost samples to another thread's (other): {counts}"
    assert other == 70 * 8
    assert res.count("http_reqs") == 800
    assert res.stderr.count("distinct request names") == 1, res.stderr
    assert "(other)" in res.stdout  # a row of the summary
    # the trends split the same way
    durations = name_counts(res, "http_req_duration")
    assert durations.keys() == counts.keys() | {"(other)"}


def test_max_names_from_the_scenario_and_bad_values(run_tide, nginx):
    res = run_tide(SPREAD_NAMES.replace("threads = 2", "threads = 2, max_names = 10"),
                   "--target", nginx.url, env={"NAMES": "20"})
    assert res.rc == 0, str(res)
    assert len(name_counts(res)) == 11, str(res)
    res = run_tide(SPREAD_NAMES, "--target", nginx.url, "--max-names", "20", env={"NAMES": "20"})
    assert res.rc == 0, str(res)
    assert len(name_counts(res)) == 20 and "distinct request names" not in res.stderr, str(res)
    for bad in ("0", "-3", "many", "1e99"):
        res = run_tide(SPREAD_NAMES, "--target", nginx.url, "--max-names", bad, env={"NAMES": "5"})
        assert res.rc == 2, str(res)
        assert "--max-names" in res.stderr and bad in res.stderr, res.stderr


# ------------------------------------------------------------ tide db import


@pytest.fixture
def dsn(pg, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return pg.fresh_db()


SMALL_RUN = """
local http = require "tide.http"
return {
  options = { executor = "shared-iterations", vus = 4, iterations = 200, threads = 1 },
  run = function(vu)
    http.get(vu.target .. "/", { name = "page" .. (vu.iteration % 3) })
    http.get(vu.target .. "/missing", { name = "missing" })
  end,
}
"""


@pytest.fixture(scope="module")
def small_doc(tmp_path_factory, nginx):
    """A real results document (4 names, 404s among them) as parsed JSON."""
    from conftest import Tide
    res = Tide(tmp_path_factory.mktemp("small")).run(SMALL_RUN, "--target", nginx.url, "--quiet")
    assert res.rc == 0, str(res)
    return res.json


def tide_cmd(tide, *args, timeout=60):
    return tide.exec([TIDE, *map(str, args)], timeout=timeout)


def bad_copies(doc):
    """(file name, document, the key and value the rejection must name)."""
    def copy(run_id):
        d = json.loads(json.dumps(doc))
        d["run_id"] = run_id
        return d
    huge = copy("huge-count")
    huge["metrics"]["http_reqs"]["values"]["count"] = 1e308
    negative = copy("negative-count")
    negative["metrics"]["http_reqs{name:missing}"]["values"]["count"] = -5
    fraction = copy("fractional-count")
    fraction["failures"][0]["count"] = 2.5
    nan = copy("nan-point")
    nan["points"][0]["p95"] = float("nan")
    no_id = copy("x")
    del no_id["run_id"]
    bad_time = copy("bad-time")
    bad_time["started"] = "yesterday"
    big_vus = copy("big-vus")
    big_vus["tide"]["scenarios"][0]["vus"] = 1e12
    odd = copy("odd-slots")
    odd["metrics"]["http_req_duration"]["histogram"]["slots"].pop()
    return [
        ("huge.json", huge, ["metrics.http_reqs.values.count", "1e+308"]),
        ("negative.json", negative, ["metrics.http_reqs{name:missing}.values.count", "-5"]),
        ("fraction.json", fraction, ["failures[1].count", "2.5"]),
        ("nan.json", nan, ["points[1].p95", "nan"]),
        ("no-id.json", no_id, ["run_id", "nil"]),
        ("bad-time.json", bad_time, ["started", "yesterday"]),
        ("big-vus.json", big_vus, ["tide.scenarios[1].vus", "1000000000000"]),
        ("odd-slots.json", odd, ["http_req_duration", "odd length"]),
    ]


def test_db_import_rejects_bad_documents_naming_key_and_value(tide, dsn, small_doc):
    for name, doc, says in bad_copies(small_doc):
        path = tide.tmp / name
        path.write_text(json.dumps(doc))  # NaN as NaN: cjson reads it
        res = tide_cmd(tide, "db", "import", dsn, path)
        assert res.rc == 2, f"tide db import {name}: expected exit 2\n{res}"
        for s in says:
            assert s in res.stderr, f"tide db import {name}: message lacks {s!r}\n{res}"
    listed = tide_cmd(tide, "db", "runs", dsn)
    assert listed.rc == 2 and "tide.runs" in listed.stderr, str(listed)  # every import failed: no schema yet
    assert "huge-count" not in listed.stdout, str(listed)
    good = tide.tmp / "good.json"
    good.write_text(json.dumps(dict(small_doc, run_id="good-run")))
    res = tide_cmd(tide, "db", "import", dsn, good)
    assert res.rc == 0 and "stored run good-run" in res.stdout, str(res)


def test_db_runs_lists_a_bad_row_already_stored_flagged(tide, dsn, small_doc):
    """Rows stored before imports were checked (or edited by hand) are shown
    and flagged; the listing never fails because of one of them."""
    for run_id in ("fine", "huge", "text", "beyond-float8"):
        path = tide.tmp / f"{run_id}.json"
        path.write_text(json.dumps(dict(small_doc, run_id=run_id)))
        res = tide_cmd(tide, "db", "import", dsn, path)
        assert res.rc == 0, str(res)
    for run_id, value in (("huge", "1e308"), ("text", '"lots"'), ("beyond-float8", "1e400")):
        PgServer.query(dsn, """UPDATE tide.metrics SET "values" = jsonb_set("values", '{count}', %s::jsonb)
                               WHERE run_id = %s AND key = 'http_reqs'""", (value, run_id))
    PgServer.query(dsn, """UPDATE tide.metrics SET "values" = jsonb_set("values", '{p(95)}', '-1')
                           WHERE run_id = 'fine' AND key = 'http_req_duration'""")
    res = tide_cmd(tide, "db", "runs", dsn)
    assert res.rc == 0, str(res)
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:] if line.strip()}
    assert set(rows) == {"fine", "huge", "text", "beyond-float8"}, res.stdout
    assert "✗ bad reqs" in rows["huge"] and "1e+308" in rows["huge"], res.stdout
    assert "✗ bad reqs" in rows["text"] and "lots" in rows["text"], res.stdout
    assert "✗ bad reqs" in rows["beyond-float8"] and "10000000000000000..." in rows["beyond-float8"], res.stdout
    assert "✗ bad p95" in rows["fine"] and "400" in rows["fine"], res.stdout


# ------------------------------------------------------- tide report, big files


def _slot_index(us):
    shift = max(us | 1024, 1).bit_length() - 11
    return (shift << 10) + (us >> shift)


def _histogram(rng, samples, median_us):
    values = [max(1, int(rng.lognormvariate(0, 1.0) * median_us)) for _ in range(samples)]
    slots = {}
    for v in values:
        slots[_slot_index(v)] = slots.get(_slot_index(v), 0) + 1
    flat = [x for i in sorted(slots) for x in (i, slots[i])]
    return {"unit": "us", "count": samples, "min": min(values), "max": max(values), "sum": sum(values),
            "sumsq": float(sum(v * v for v in values)), "clamped": 0, "slots": flat}


def big_document(doc, names, seconds, seed=7):
    """doc with `names` request names like its page1 (wide latency histograms
    of a few hundred slots each) and `seconds` per-second points."""
    import random
    rng = random.Random(seed)
    pool = [_histogram(rng, 300, 2000) for _ in range(32)]
    per_name = {k.split("{")[0]: v for k, v in doc["metrics"].items() if k.endswith("{name:page1}")}
    metrics = {k: v for k, v in doc["metrics"].items() if "{name:" not in k}
    for i in range(names):
        for base, m in per_name.items():
            m = dict(m)
            if base in ("http_req_duration", "http_req_waiting"):
                m["histogram"] = pool[rng.randrange(len(pool))]
            metrics[f"{base}{{name:/api/items/{i}}}"] = m
    points = [dict(doc["points"][0], t=t) for t in range(seconds)]
    return dict(doc, metrics=metrics, points=points)


# Runs a command and prints its peak RSS in KB: a process of its own, so no
# other child of the test run counts.
PEAK_RSS = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
            "sys.stderr.write(p.stderr.decode(errors='replace'))\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, len(p.stdout))\n")


def test_report_of_a_big_file_stays_within_three_times_its_size(tide, small_doc):
    """A 225 MB file took 1.9 GB (ours, 214 MB: 9.4 GB and 37 s)."""
    path = tide.tmp / "big.json"
    path.write_text(json.dumps(big_document(small_doc, names=4500, seconds=3600), separators=(",", ":")))
    size_kb = path.stat().st_size / 1024
    assert 20_000 < size_kb < 30_000, size_kb
    small = tide.tmp / "small.json"
    small.write_text(json.dumps(small_doc))

    def peak(p):
        res = tide.exec(["/usr/bin/python3", "-c", PEAK_RSS, TIDE, "report", p], timeout=60)
        rc, peak_kb, out_len = map(int, res.stdout.split())
        assert rc == 0, str(res)
        return peak_kb, out_len
    base_kb, _ = peak(small)  # the program itself: code, libraries, Lua
    peak_kb, out_len = peak(path)
    assert out_len > 4500 * 60, "the summary lacks its rows"
    # AddressSanitizer keeps freed memory in quarantine and pads the rest
    asan = b"__asan_init" in open(TIDE, "rb").read()
    assert asan or peak_kb - base_kb <= 3 * size_kb, \
        f"tide report of {size_kb:.0f} KB took {peak_kb} KB at its peak ({base_kb} KB for a small file)"

    # read packed, written back whole: --json gives the same histograms
    doc = big_document(small_doc, names=50, seconds=10)
    path = tide.tmp / "in.json"
    path.write_text(json.dumps(doc, indent=1))  # slots over many lines, with spaces
    out = tide.tmp / "out.json"
    res = tide_cmd(tide, "report", path, "--json", out, "--html", tide.tmp / "out.html")
    assert res.rc == 0, str(res)
    again = json.loads(out.read_text())
    for key, m in doc["metrics"].items():
        if "histogram" in m:
            assert again["metrics"][key]["histogram"] == m["histogram"], key
    assert "/api/items/49" in res.stdout
    assert "<svg" in (tide.tmp / "out.html").read_text()
    merged = tide_cmd(tide, "report", path, path)
    assert merged.rc == 0, str(merged)
