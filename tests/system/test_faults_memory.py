"""Memory over a run: per second tide keeps the few numbers it writes (counts,
p50/p95/p99), not a latency histogram per second, so RSS stays flat once
the run has warmed up. (tests/bench/soak.sh measures the same at full speed
for minutes.)"""

import time

import pytest

from slow_server import SlowServer

# Each user cycles through latencies of 1, 2, 4, ... 1024 ms, so every second
# of the run spans eleven octaves: a histogram of it holds a dozen 8 KB chunks.
SPREAD = """
local http = require "tide.http"
return {
  options = { executor = "constant-vus", vus = 40, duration = "24s" },
  run = function(vu)
    local ms = 1 << ((vu.id + vu.iteration) % 11)
    http.get(vu.target .. "/sleep?ms=" .. ms)
  end,
}
"""


@pytest.fixture(scope="module")
def slow(request):
    server = SlowServer()
    request.addfinalizer(server.stop)
    return server.start()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def rss_at(running, seconds):
    delay = running.t0 + seconds - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    assert running.proc.poll() is None, f"tide ended before {seconds}s"
    return rss_kb(running.proc.pid)


def test_rss_is_flat_after_warm_up(tide, slow):
    # under AddressSanitizer freed memory is quarantined, not reused: no quarantine here
    running = tide.start(SPREAD, "--target", slow.url, "--quiet",
                         env={"ASAN_OPTIONS": "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"})
    early = rss_at(running, 6)
    late = rss_at(running, 22)
    res = running.finish(timeout=60)
    assert res.rc == 0, str(res)
    points = res.json["points"]
    assert len(points) >= 24 and all(p["p99"] > 500 for p in points[1:20]), \
        f"every second spans 1 ms .. 1 s: {[(p['p50'], p['p99']) for p in points]}"
    growth = late - early
    # per second before: ~12 chunks of 8 KB, ~1.5 MB over these 16 s
    assert growth < 400, f"RSS grew {growth} KB between second 6 ({early} KB) and second 22 ({late} KB)\n{res}"
