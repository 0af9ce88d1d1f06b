"""`tide report` of a segmented run (issue 13): the segments' documents merge
exactly into the whole run, missing segments are named, a segment given
twice or segments of different runs are refused, `--check` judges the
thresholds on the merged data and `--store pg:DSN` writes one run and one
analytics.load_testing row for the whole run.

The segment documents come from real `tide run --segment I/N --run-id RUN`
runs against the session's nginx (its access log counts the requests)."""

import datetime
import json
import subprocess

import pytest

from conftest import TIDE

ITERATIONS = 5

SCENARIO = """
local http = require "tide.http"
return {
  options = {
    executor = "per-vu-iterations", vus = tonumber(os.getenv("TIDE_TEST_VUS")), iterations = %d,
    thresholds = {
      http_reqs = "count < " .. os.getenv("TIDE_TEST_LIMIT"),
      http_req_duration = "p(99) < 10s",
    },
  },
  run = function(vu)
    http.get(vu.target .. (vu.iteration %% 2 == 0 and "/" or "/index.html"), { name = "page" })
  end,
}
""" % ITERATIONS

TOTAL_VUS = 9
SHARES = {1: 3, 2: 2, 3: 2, 4: 2}  # 9 users over 4 segments: the first takes the remainder
PRESENT = (1, 3, 4)                # segment 2 is left out where a test needs one missing
USERS = {i: SHARES[i] for i in PRESENT}


def segment_docs(tide, nginx, limit, segments=PRESENT, run_id="seg-run-1", count=4):
    """One real run per segment; returns {index: path of its document}."""
    scenario = tide.write(SCENARIO)
    paths = {}
    for index in segments:
        res = tide.run(scenario, "--target", nginx.url, "--threads", "2", "--segment", f"{index}/{count}",
                       "--run-id", run_id, timeout=60,
                       env={"TIDE_TEST_VUS": str(TOTAL_VUS), "TIDE_TEST_LIMIT": str(limit)})
        assert res.rc == 0 and res.json is not None, res
        assert res.json["segment"] == {"index": index, "count": count} and res.json["run_id"] == run_id
        if count == 4:
            assert res.count("iterations") == SHARES[index] * ITERATIONS, res
        path = tide.tmp / f"segment-{run_id}-{index}.json"
        path.write_text(json.dumps(res.json))
        paths[index] = path
    return paths


def later(iso, seconds):
    """An ISO 8601 UTC time of a document, moved later by whole seconds."""
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ") + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + iso[-4:]


def report(*args, cwd=None):
    return subprocess.run([TIDE, "report", *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def buckets(h):
    """A histogram's buckets as {index: count} (its slots: index, count pairs)."""
    flat = h["slots"]
    if isinstance(flat, str):
        flat = [int(x) for x in flat.replace(",", " ").split()]
    return dict(zip(flat[0::2], flat[1::2]))


def test_segments_merge_exactly_and_the_missing_one_is_named(tide, access_log):
    paths = segment_docs(tide, access_log, 1000)
    total = sum(USERS.values()) * ITERATIONS
    assert len(access_log.wait_log(total)) == total
    docs = [json.loads(p.read_text()) for p in paths.values()]

    out = tide.tmp / "merged.json"
    rep = report(*paths.values(), "--json", out)
    assert rep.returncode == 0, rep.stderr
    assert "segments: 3 of 4 (missing: 2/4)" in rep.stdout, rep.stdout
    merged = json.loads(out.read_text())
    assert merged["run_id"] == "seg-run-1" and merged.get("segment") is None
    assert merged["segments"] == {"count": 4, "found": ["1/4", "3/4", "4/4"], "missing": ["2/4"]}

    # counters added: exactly the requests nginx served
    assert merged["metrics"]["http_reqs"]["values"]["count"] == total
    assert merged["metrics"]["iterations"]["values"]["count"] == total
    # the run's plan, which every segment's document carries: all its users
    assert merged["tide"]["scenarios"][0]["vus"] == TOTAL_VUS

    # histograms added bucket by bucket: the merged one is the one histogram
    # of all the segments' samples
    for key in ("http_req_duration", "http_req_duration{name:page}", "iteration_duration"):
        parts = [d["metrics"][key]["histogram"] for d in docs]
        got = merged["metrics"][key]["histogram"]
        assert got["count"] == sum(p["count"] for p in parts) == total
        assert got["min"] == min(p["min"] for p in parts) and got["max"] == max(p["max"] for p in parts)
        want = {}
        for p in parts:
            for i, n in buckets(p).items():
                want[i] = want.get(i, 0) + n
        assert buckets(got) == want, key
        assert len(want) > 3, want

    # checks and rates summed
    failed = merged["metrics"]["http_req_failed"]["values"]
    assert failed["passes"] + failed["fails"] == total

    # seconds aligned by wall clock: every request is in some second, and
    # a segment that started 3 s after the others (its document moved 3 s
    # later: these runs take well under a second) has its seconds 3 s later
    assert sum(p["reqs"] for p in merged["points"]) == total
    assert merged["started"] == min(d["started"] for d in docs)
    assert all(p["t"] == 0 for d in docs for p in d["points"]), "a run took over a second"
    late = dict(docs[2], started=later(docs[2]["started"], 3), finished=later(docs[2]["finished"], 3))
    late_path = tide.tmp / "late.json"
    late_path.write_text(json.dumps(late))
    rep = report(paths[1], paths[3], late_path, "--json", out)
    assert rep.returncode == 0, rep.stderr
    merged = json.loads(out.read_text())
    seconds = {p["t"]: p["reqs"] for p in merged["points"]}
    assert seconds == {0: (USERS[1] + USERS[3]) * ITERATIONS, 3: USERS[4] * ITERATIONS}, merged["points"]
    assert merged["state"]["testRunDurationMs"] >= 3000
    assert merged["finished"] == late["finished"]

    # all four: nothing missing
    paths2 = segment_docs(tide, access_log, 1000, segments=(2,), run_id="seg-run-1")
    rep = report(*paths.values(), paths2[2])
    assert rep.returncode == 0, rep.stderr
    assert "segments: 4 of 4\n" in rep.stdout and "missing" not in rep.stdout, rep.stdout


def test_a_segment_twice_or_segments_of_other_runs_are_refused(tide, nginx):
    paths = segment_docs(tide, nginx, 1000, segments=(1, 3))
    twice = tide.tmp / "copy-of-3.json"
    twice.write_text(paths[3].read_text())
    rep = report(paths[1], paths[3], twice)
    assert rep.returncode == 2, rep
    assert "segment 3/4 of run seg-run-1 twice" in rep.stderr
    assert str(paths[3]) in rep.stderr and str(twice) in rep.stderr
    assert rep.stdout == ""

    other = segment_docs(tide, nginx, 1000, segments=(2,), run_id="seg-run-2")[2]
    rep = report(paths[1], other)
    assert rep.returncode == 2, rep
    assert "segments of different runs" in rep.stderr
    assert str(paths[1]) in rep.stderr and str(other) in rep.stderr and "seg-run-2" in rep.stderr

    split3 = segment_docs(tide, nginx, 1000, segments=(2,), count=3)[2]
    rep = report(paths[1], split3)
    assert rep.returncode == 2, rep
    assert "1/4" in rep.stderr and "2/3" in rep.stderr and str(split3) in rep.stderr

    whole = json.loads(paths[1].read_text())
    whole["segment"] = None
    whole_path = tide.tmp / "whole.json"
    whole_path.write_text(json.dumps(whole))
    rep = report(paths[3], whole_path)
    assert rep.returncode == 2, rep
    assert "no segment" in rep.stderr and str(whole_path) in rep.stderr


def test_check_judges_the_thresholds_on_the_merged_data(tide, nginx):
    total = sum(USERS.values()) * ITERATIONS  # 35
    # every segment alone has fewer than 30 requests: each run passed
    fails = segment_docs(tide, nginx, 30)
    rep = report(*fails.values(), "--check")
    assert rep.returncode == 1, rep
    assert "✗ http_reqs: count < 30  (observed %d)" % total in rep.stdout, rep.stdout
    assert "✓ http_req_duration: p(99) < 10s" in rep.stdout
    assert "segments: 3 of 4 (missing: 2/4)" in rep.stdout
    # without --check the report only reports
    assert report(*fails.values()).returncode == 0

    holds = segment_docs(tide, nginx, 100, run_id="seg-run-3")
    rep = report(*holds.values(), "--check")
    assert rep.returncode == 0, rep
    assert "✓ http_reqs: count < 100  (observed %d)" % total in rep.stdout, rep.stdout

    # a missing segment is named and the verdict still given; --require-all
    # makes it exit 5
    rep = report(*holds.values(), "--check", "--require-all")
    assert rep.returncode == 5, rep
    assert "segments: 3 of 4 (missing: 2/4)" in rep.stderr


def test_store_writes_one_run_and_one_analytics_row_for_the_whole_run(tide, nginx, pg):
    dsn = pg.fresh_db()
    paths = segment_docs(tide, nginx, 1000, run_id="seg-run-store")
    total = sum(USERS.values()) * ITERATIONS
    for attempt in range(2):  # storing it again replaces, never duplicates
        rep = report(*paths.values(), "--check", "--store", f"pg:{dsn}", cwd=tide.tmp)
        assert rep.returncode == 0, rep
        assert "stored run seg-run-store" in rep.stdout
        assert ("replacing" in rep.stdout) == (attempt == 1), rep.stdout
        rows = pg.query(dsn, "SELECT run_id, num_users, avg_web_time, max_web_time FROM analytics.load_testing")
        assert len(rows) == 1 and rows[0][0] == "seg-run-store" and rows[0][1] == TOTAL_VUS, rows
        assert rows[0][2] > 0 and rows[0][3] >= rows[0][2]
        assert pg.query(dsn, "SELECT count(*) FROM tide.runs WHERE run_id = 'seg-run-store'")[0][0] == 1

    # read back from PostgreSQL: the whole run, the segments it was made of
    rep = report(f"pg:{dsn}#seg-run-store", "--check")
    assert rep.returncode == 0, rep
    assert "segments: 3 of 4 (missing: 2/4)" in rep.stdout
    count = pg.query(dsn, """SELECT ("values"->>'count')::int FROM tide.metrics
                             WHERE run_id = 'seg-run-store' AND key = 'http_reqs'""")[0][0]
    assert count == total

    # a bad --store value is exit 2 before anything is read
    rep = report(*paths.values(), "--store", dsn)
    assert rep.returncode == 2 and "--store: expected pg:DSN" in rep.stderr, rep


def test_segments_run_and_stored_apart_merge_from_postgresql(tide, access_log, pg):
    """The CI-matrix way: each segment is its own `tide run --segment I/N
    --out pg=...` under one run id; `tide report pg:DSN#RUN --check` merges
    them from the database, exactly as the server counted, and `--store`
    puts the merged run beside them without hiding them."""
    dsn = pg.fresh_db()
    scenario = tide.write(SCENARIO)
    env = {"TIDE_TEST_VUS": "7", "TIDE_TEST_LIMIT": "30"}  # 7 users × 5: 35 requests, 2-3 users each
    for i in (1, 2, 3):
        res = tide.run(scenario, "--target", access_log.url, "--segment", f"{i}/3", "--run-id", "ci-run",
                       "--out", f"pg={dsn}", env=env, timeout=60)
        assert res.rc == 0, res  # each segment alone stays under 30
    served = len(access_log.wait_log(7 * ITERATIONS))
    assert served == 7 * ITERATIONS

    rep = report(f"pg:{dsn}#ci-run", "--check")
    assert rep.returncode == 1, rep  # merged: 35 requests, not < 30
    assert "✗ http_reqs: count < 30  (observed %d)" % served in rep.stdout, rep.stdout
    assert "segments: 3 of 3" in rep.stdout, rep.stdout

    out = tide.tmp / "merged.json"
    rep = report(f"pg:{dsn}#ci-run", "--store", f"pg:{dsn}", "--json", out, cwd=tide.tmp)
    assert rep.returncode == 0, rep
    merged = json.loads(out.read_text())
    assert merged["metrics"]["http_reqs"]["values"]["count"] == served
    segments = pg.query(dsn, "SELECT segment FROM tide.runs WHERE run_id = 'ci-run' ORDER BY segment")
    assert [r[0] for r in segments] == ["1/3", "2/3", "3/3", "merged"], segments
    assert pg.query(dsn, "SELECT num_users FROM analytics.load_testing WHERE run_id = 'ci-run'") == [(7,)]
    # the segments are still what the run id reads
    rep = report(f"pg:{dsn}#ci-run")
    assert rep.returncode == 0 and "segments: 3 of 3" in rep.stdout, rep
