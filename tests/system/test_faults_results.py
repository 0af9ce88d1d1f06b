"""Results that stay trustworthy at scale: many request names, bad documents
given to `tide db import`, and big results files given to `tide report`.

Load goes to the session's nginx; the database tests use a PostgreSQL of
their own (pg_server.PgServer), one fresh database per test."""

import json
import time

import pytest

from conftest import TIDE

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
