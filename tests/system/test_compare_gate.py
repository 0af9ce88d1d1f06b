"""`tide compare` as a CI gate (issue 11): runs of an unchanged load pass it
with the defaults, a real slowdown of one endpoint fails it and is named;
--metric, --min-delta, --require-names, request names in only one run, and
bad option values (exit 2, the value named).

Load goes to the session's nginx (/, /json, /hello) and to
slow_server.SlowServer (/sleep?ms=N: an endpoint whose slowness the test
sets). Each run is short (1-2 s); the ten pairs take about a minute."""

import json
import re

import pytest

from conftest import TIDE, Tide
from slow_server import SlowServer

# One scenario for every load here: PATHS="name=URL;name=URL;..." are the
# requests of one iteration, in order, each under its own request name.
LOAD = """
local http = require "tide.http"
local requests
return {
  options = { executor = "constant-vus", vus = 8, duration = "2s" },
  run = function(vu)
    if not requests then
      requests = {}
      for name, url in vu.env.PATHS:gmatch("([^=;]+)=([^;]+)") do requests[#requests + 1] = { name, url } end
    end
    for _, r in ipairs(requests) do
      local res = http.get(r[2], { name = r[1] })
      if res.status ~= 200 then error(r[1] .. " answered " .. tostring(res.error or res.status)) end
    end
  end,
}
"""

ARRIVAL = """
local http = require "tide.http"
return {
  options = { executor = "constant-arrival-rate", rate = 200, time_unit = "1s", duration = "1s",
              pre_allocated_vus = 5 },
  run = function(vu) http.get(vu.target .. "/", { name = "home" }) end,
}
"""


def paths(**named):
    return ";".join(f"{k}={v}" for k, v in named.items())


def nginx_paths(nginx, *names):
    where = {"home": "/", "json": "/json", "hello": "/hello"}
    return {n: nginx.url + where[n] for n in names}


class Runs:
    """Runs LOAD with the given requests, and `tide compare` on the results."""

    def __init__(self, tide):
        self.tide = tide
        self.scenario = tide.write(LOAD, "load.lua")

    def run(self, requests, duration="2s", vus=8):
        res = self.tide.run(self.scenario, "--env", f"PATHS={paths(**requests)}", "--duration", duration,
                            "--vus", vus, "--quiet", timeout=60)
        assert res.rc == 0 and res.json is not None, f"the load run failed\n{res}"
        return res.json_path

    def compare(self, base, current, *args):
        return self.tide.exec([TIDE, "compare", str(base), str(current), *map(str, args)], timeout=60)


@pytest.fixture(scope="module")
def slow(request):
    server = SlowServer().start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module")
def slowdown(tmp_path_factory, nginx, slow):
    """Two runs of home + json (nginx) + orders (SlowServer): base with orders
    at 10 ms, then orders at 50 ms (5x)."""
    runs = Runs(Tide(tmp_path_factory.mktemp("slowdown")))
    fast = dict(nginx_paths(nginx, "home", "json"), orders=slow.url + "/sleep?ms=10")
    slower = dict(fast, orders=slow.url + "/sleep?ms=50")
    return runs, runs.run(fast), runs.run(slower)


def row(stdout, label, aspect):
    """The compare row for label (a request name, "http (all)" or a metric
    key) and aspect (p50, p95, p99, req/s, errors, ...)."""
    for line in stdout.splitlines():
        rest = line.strip()
        if rest.startswith(label + " "):
            parts = rest[len(label):].split()
            if parts and parts[0] == aspect:
                return line
    return None


def labels(stdout):
    """Every (label, aspect) of the comparison table."""
    out = set()
    lines = stdout.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.split()[:1] == ["metric"]) + 1
    except StopIteration:
        return out
    for line in lines[start:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())   # columns are two or more spaces apart
        if len(cells) >= 2:
            out.add((cells[0], cells[1]))
    return out


def orders_count(path):
    """How many orders requests a results file holds."""
    with open(path) as f:
        return json.load(f)["metrics"]["http_reqs{name:orders}"]["values"]["count"]


def no_crash(res):
    assert res.rc is not None and res.rc >= 0, f"tide died of a signal\n{res}"
    assert "stack traceback" not in res.stderr, f"a Lua traceback instead of a message\n{res}"


# ------------------------------------------------------------ the CI gate


def test_ten_pairs_of_an_unchanged_load_pass_with_the_defaults(tide, nginx):
    """Twenty 2-second runs of one unchanged load against nginx; each pair
    compared with the defaults must pass (the sub-millisecond figures move
    by tens of percent from run to run on a shared machine)."""
    runs = Runs(tide)
    requests = nginx_paths(nginx, "home", "json", "hello")
    verdicts = []
    for i in range(10):
        base, current = runs.run(requests), runs.run(requests)
        cmp = runs.compare(base, current)
        no_crash(cmp)
        verdicts.append(cmp)
        assert cmp.rc == 0, f"pair {i + 1} of an unchanged load was called a regression\n{cmp}"
        assert "✗" not in cmp.stdout, str(cmp)
    # what was compared: request durations, req/s and errors per name
    seen = labels(verdicts[-1].stdout)
    for name in ("http (all)", "home", "json", "hello"):
        for aspect in ("p50", "p95", "p99", "errors"):
            assert (name, aspect) in seen, f"no {name} {aspect} row\n{verdicts[-1]}"
    assert ("http (all)", "req/s") in seen, str(verdicts[-1])
    # tide's own bookkeeping is left out by default
    for internal in ("vus", "vus_max", "iteration_duration", "iteration_start_delay", "dropped_iterations",
                     "http_req_waiting", "data_received"):
        assert not any(label == internal for label, _ in seen), f"{internal} compared by default\n{verdicts[-1]}"


def test_a_5x_slower_endpoint_fails_the_gate_and_is_named(slowdown):
    runs, base, worse = slowdown
    cmp = runs.compare(base, worse)
    no_crash(cmp)
    assert cmp.rc == 1, f"orders 10 ms -> 50 ms: expected exit 1\n{cmp}"
    for aspect in ("p50", "p95", "p99"):
        r = row(cmp.stdout, "orders", aspect)
        # ~300 orders requests in the slower run: p99 is judged against the
        # base's maximum, which one hiccup of a shared machine can lift
        judged = ("✗ worse",) if aspect != "p99" else ("✗ worse", "~ few samples")
        assert r and any(j in r for j in judged), f"orders {aspect} should be worse: {r!r}\n{cmp}"
        for other in ("home", "json"):
            r = row(cmp.stdout, other, aspect)
            assert r and "✗" not in r, f"{other} {aspect} did not change: {r!r}\n{cmp}"
    assert "regression" in cmp.stdout.splitlines()[-1], str(cmp)
    # fewer requests per second with a slower endpoint in every iteration
    assert "✗ worse" in (row(cmp.stdout, "http (all)", "req/s") or ""), str(cmp)
    # better is not worse
    back = runs.compare(worse, base)
    assert back.rc == 0, str(back)


# ------------------------------------------------------------ --metric


def test_metric_chooses_what_is_compared(slowdown):
    runs, base, worse = slowdown
    only_durations = runs.compare(base, worse, "--metric", "http_req_duration")
    assert only_durations.rc == 1, str(only_durations)
    aspects = {a for _, a in labels(only_durations.stdout)}
    assert aspects == {"p50", "p95", "p99"}, f"only duration rows expected, got {aspects}\n{only_durations}"
    assert row(only_durations.stdout, "orders", "p95") is not None, str(only_durations)

    # one request name, repeatable --metric: the unchanged endpoints pass
    home = runs.compare(base, worse, "--metric", "http_req_duration{name:home}",
                        "--metric", "http_req_failed{name:json}")
    assert home.rc == 0, f"home and json did not get slower\n{home}"
    assert labels(home.stdout) == {("home", "p50"), ("home", "p95"), ("home", "p99"), ("json", "errors")}, \
        str(home)
    assert "orders" not in home.stdout, str(home)

    # failures did not change
    failed = runs.compare(base, worse, "--metric=http_req_failed")
    assert failed.rc == 0, str(failed)

    # req/s per request name only when asked for (by default: overall)
    assert not row(runs.compare(base, worse).stdout, "orders", "req/s")
    rates = runs.compare(base, worse, "--metric", "http_reqs")
    assert rates.rc == 1 and "✗ worse" in (row(rates.stdout, "orders", "req/s") or ""), str(rates)

    # an internal metric, when asked for, is compared (and slower here)
    it = runs.compare(base, worse, "--metric", "iteration_duration")
    assert it.rc == 1 and "✗ worse" in (row(it.stdout, "iteration_duration", "p50") or ""), str(it)

    # a tag the document has no sub-metric for: worked out from the registry
    get = runs.compare(base, worse, "--metric", "http_req_duration{method:GET}")
    assert get.rc == 1, str(get)
    assert "✗ worse" in (row(get.stdout, "http_req_duration{method:GET}", "p95") or ""), str(get)


def test_internal_metrics_only_when_asked(tide, nginx):
    """An open-model run records iteration_start_delay; by default it is not
    compared (a 0.62 -> 0.77 ms move was once a '24% regression')."""
    a = tide.run(ARRIVAL, "--target", nginx.url, "--quiet")
    b = tide.run(ARRIVAL, "--target", nginx.url, "--quiet")
    assert a.rc == 0 and b.rc == 0, f"{a}\n{b}"
    assert "iteration_start_delay" in a.metrics, "the open-model run should record iteration_start_delay"
    cmp = tide.exec([TIDE, "compare", a.json_path, b.json_path])
    no_crash(cmp)
    # (200 requests: an open-model p99 can move past the floor on a busy
    # machine, so the verdict is not the point here)
    assert cmp.rc in (0, 1) and ("home", "p95") in labels(cmp.stdout), str(cmp)
    assert "iteration_start_delay" not in cmp.stdout and "vus" not in cmp.stdout, str(cmp)
    asked = tide.exec([TIDE, "compare", a.json_path, b.json_path, "--metric", "iteration_start_delay",
                       "--metric", "vus_max", "--metric", "dropped_iterations"])
    no_crash(asked)
    assert asked.rc in (0, 1), str(asked)
    seen = labels(asked.stdout)
    assert ("iteration_start_delay", "p95") in seen and ("vus_max", "max") in seen, str(asked)
    assert ("dropped_iterations", "/s") in seen, f"a counter with no samples counted 0\n{asked}"


def test_unknown_or_malformed_metric_is_exit_2(slowdown):
    runs, base, _ = slowdown
    for sel, says in (("no_such_metric", "'no_such_metric'"),
                      ("http_req_duration{name:nowhere}", "'http_req_duration{name:nowhere}'"),
                      ("http_req_duration{name:", "'http_req_duration{name:'"),
                      ("http_req_duration{}", "'http_req_duration{}'")):
        res = runs.compare(base, base, "--metric", sel)
        no_crash(res)
        assert res.rc == 2, f"--metric {sel}: expected exit 2\n{res}"
        assert says in res.stderr and "--metric" in res.stderr, f"--metric {sel}: the value is not named\n{res}"


# ------------------------------------------------------------ --min-delta


def test_min_delta_is_the_floor_for_times(tide, nginx, slow):
    """orders 0 -> 20 ms: worse beyond the default 10 ms floor; within a
    100 ms floor (shown as such); worse again with a 1 ms floor or none."""
    runs = Runs(tide)
    home = nginx_paths(nginx, "home")
    base = runs.run(dict(home, orders=slow.url + "/sleep?ms=0"), duration="1s", vus=2)
    current = runs.run(dict(home, orders=slow.url + "/sleep?ms=20"), duration="1s", vus=2)

    default = runs.compare(base, current, "--metric", "http_req_duration")
    assert default.rc == 1, f"+20 ms is beyond the default floor\n{default}"
    assert "✗ worse" in (row(default.stdout, "orders", "p50") or ""), str(default)
    # about a hundred orders requests in the slower run: its p95 and p99
    # are judged against the base's maximum, past which they usually are
    # (unless a hiccup of the machine made one base request that slow)
    assert orders_count(current) < 200, orders_count(current)
    for aspect in ("p95", "p99"):
        r = row(default.stdout, "orders", aspect) or ""
        assert "✗ worse" in r or "~ few samples" in r, f"orders {aspect}: {r!r}\n{default}"

    for floor in ("100ms", "0.1s", "100000us"):
        loose = runs.compare(base, current, "--min-delta", floor)
        assert loose.rc == 0, f"--min-delta {floor}\n{loose}"
        r = row(loose.stdout, "orders", "p50")
        assert r and "within floor" in r, f"orders p50 moved beyond the tolerance: say so ({r!r})\n{loose}"
    assert "min-delta 100ms" in loose.stdout, str(loose)

    strict = runs.compare(base, current, "--min-delta", "1ms")
    assert strict.rc == 1 and "✗ worse" in (row(strict.stdout, "orders", "p50") or ""), str(strict)
    zero = runs.compare(base, current, "--min-delta", "0")
    assert zero.rc == 1, str(zero)


def test_bad_option_values_are_exit_2_and_named(slowdown):
    runs, base, _ = slowdown
    for args, says in (
        (("--min-delta", "abc"), "'abc'"),
        (("--min-delta", "2"), "'2'"),            # seconds or ms? a unit is required
        (("--min-delta", "-1ms"), "'-1ms'"),
        (("--min-delta", "1parsec"), "'1parsec'"),
        (("--min-delta=",), "''"),
        (("--tolerance", "lots"), "'lots'"),
        (("--tolerance", "-5%"), "'-5%'"),
        (("--metric",), "--metric needs a value"),
        (("--require-names=yes",), "'yes'"),
        (("--no-such-option", "1"), "'--no-such-option'"),
    ):
        res = runs.compare(base, base, *args)
        no_crash(res)
        assert res.rc == 2, f"tide compare {' '.join(args)}: expected exit 2\n{res}"
        assert says in res.stderr, f"tide compare {' '.join(args)}: {says} not in the message\n{res}"
        assert res.stdout == "", f"nothing compared on bad input\n{res}"
    missing = runs.compare(base, base.parent / "no-such.json")
    assert missing.rc == 2 and "no-such.json" in missing.stderr, str(missing)


# ------------------------------------------------------------ request names in one run


def test_request_names_in_only_one_run_are_listed(tide, nginx):
    runs = Runs(tide)
    base = runs.run(nginx_paths(nginx, "home", "json", "hello"), duration="1s")
    # "hello" renamed "greeting": same URL, same load
    renamed = nginx_paths(nginx, "home", "json")
    renamed["greeting"] = nginx.url + "/hello"
    current = runs.run(renamed, duration="1s")

    cmp = runs.compare(base, current)
    no_crash(cmp)
    assert cmp.rc == 0, f"a renamed request alone is no regression by default\n{cmp}"
    assert "request name 'hello': in base only (gone)" in cmp.stdout, str(cmp)
    assert "request name 'greeting': in current only (new)" in cmp.stdout, str(cmp)
    assert cmp.stdout.count("'hello'") == 1, f"listed once, not once per metric\n{cmp}"
    assert row(cmp.stdout, "home", "p95") and not row(cmp.stdout, "hello", "p95"), str(cmp)

    strict = runs.compare(base, current, "--require-names")
    assert strict.rc == 1, f"--require-names: a name gone from CURRENT is a regression\n{strict}"
    assert re.search(r"'hello': in base only \(gone\)\s+✗ gone", strict.stdout), str(strict)
    assert "1 request name gone" in strict.stdout, str(strict)
    # a name only in CURRENT (new) is fine even then
    subset = runs.run(nginx_paths(nginx, "home", "json"), duration="1s")
    grown = runs.compare(subset, base, "--require-names")
    assert grown.rc == 0 and "request name 'hello': in current only (new)" in grown.stdout, str(grown)
