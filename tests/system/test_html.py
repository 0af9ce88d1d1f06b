"""The HTML report (tide.html): real results rendered to a page, opened in
headless Chromium over the DevTools protocol (no console errors, no network,
the expected text and charts, a screenshot), plus edge cases rendered
without a browser (no points, no requests, text that must be escaped).

Needs Debian's `chromium` and `python3-websocket`, which `make deps`
installs: without them the browser tests fail rather than pass unseen.
"""

import base64
import copy
import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOT_COPY = Path("/tmp/tide-report.png")

# Renders the JSON of $IN into $OUT through tide itself, as `--out html=` will.
RENDER = """
local html = require "tide.html"
local json = require "cjson"
return {
  setup = function(ctx)
    local f = assert(io.open(ctx.env.IN))
    local doc = json.decode(f:read("a"))
    f:close()
    local out = assert(io.open(ctx.env.OUT, "w"))
    out:write(html.render(doc))
    out:close()
  end,
  run = function() end,
}
"""

# A few seconds of ramping load with named requests, a failing one, checks,
# a group, a custom trend and counter, and thresholds (one fails for sure).
LOAD = """
local http = require "tide.http"
local check = require "tide.check"
local metrics = require "tide.metrics"
local tide = require "tide"
local basket = metrics.trend("basket_time", "time")
local orders = metrics.counter("orders")
return {
  options = {
    executor = "ramping-vus", start_vus = 1,
    stages = { { duration = "1s", target = 4 }, { duration = "2s", target = 4 }, { duration = "1s", target = 0 } },
    thresholds = {
      http_req_duration = "p(95) < 5s",
      ["http_req_duration{name:home}"] = "max < 10s",
      http_reqs = "count < 1",
      ["checks{check:home answers}"] = "rate > 0.99",
    },
  },
  run = function(vu)
    tide.group("browse", function()
      local r = http.get(vu.target .. "/", { name = "home" })
      check(r, { ["home answers"] = r.status == 200 })
      r = http.get(vu.target .. "/json", { name = "api json" })
      check(r, { ["json parses"] = function(res) return res:json().a == 1 end })
    end)
    http.get(vu.target .. "/503", { name = "always 503" })
    basket:add(3.5)
    orders:add(1)
    tide.sleep(0.02)
  end,
}
"""


# Renders $IN mutated at random, many times: any Lua error fails the run.
FUZZ = """
local html = require "tide.html"
local json = require "cjson"
local WEIRD = { json.null, "<x & y>", -1, 0, 1e300, -1e300, 0.5, {}, { 1, 2 }, true, false, "" }

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end

-- keys in a fixed order, so that one SEED always spoils the same fields
local function keys_of(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function paths(t, prefix, out)
  for _, k in ipairs(keys_of(t)) do
    local v = t[k]
    local p = { table.unpack(prefix) }
    p[#p + 1] = k
    out[#out + 1] = p
    if type(v) == "table" then paths(v, p, out) end
  end
  return out
end

return {
  setup = function(ctx)
    local f = assert(io.open(ctx.env.IN))
    local base = json.decode(f:read("a"))
    f:close()
    local all = paths(base, {}, {})
    math.randomseed(tonumber(ctx.env.SEED))
    for round = 1, tonumber(ctx.env.ROUNDS) do
      local doc = copy(base)
      for _ = 1, math.random(1, 10) do
        local p, t = all[math.random(#all)], doc
        for i = 1, #p - 1 do t = type(t) == "table" and t[p[i]] or nil end
        if type(t) == "table" then t[p[#p]] = WEIRD[math.random(#WEIRD)] end
      end
      local ok, err = pcall(html.render, doc)
      if not ok then error(("round %d: %s"):format(round, err), 0) end
    end
  end,
  run = function() end,
}
"""


# ------------------------------------------------------------------ helpers


def render(tide, doc, name):
    """Writes doc as JSON, renders it with tide; returns the HTML path and text."""
    src = tide.tmp / f"{name}.json"
    src.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    out = tide.tmp / f"{name}.html"
    res = tide.run(RENDER, "--env", f"IN={src}", "--env", f"OUT={out}", "--quiet",
                   json_out=False, name=f"render_{name}.lua", timeout=30)
    assert res.rc == 0, f"rendering {name} failed\n{res}"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>"), text[-300:]
    return out, text


def visible_text(page):
    """The page's text without tags or styles, entities decoded (roughly what a reader sees)."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    page = re.sub(r"<title>.*?</title>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.fixture(scope="module")
def load_json(nginx, tmp_path_factory):
    """Real results: the LOAD scenario against nginx."""
    from conftest import Tide
    t = Tide(tmp_path_factory.mktemp("html_load"))
    res = t.run(LOAD, "--target", nginx.url, "--quiet", timeout=60)
    assert res.rc == 1, f"a threshold fails on purpose: exit code 1 expected\n{res}"
    assert res.json is not None, str(res)
    return res.json


# ----------------------------------------------------------- the browser


class DevTools:
    """Headless Chromium on a fresh profile, driven over the DevTools protocol."""

    def __init__(self, workdir: Path):
        import websocket  # python3-websocket
        self.workdir = workdir
        self.profile = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
        self.log = open(workdir / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1280,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        self.events = []
        self.next_id = 0
        port = self._port(timeout=30)
        self.ws = websocket.create_connection(self._page_url(port), timeout=15, suppress_origin=True)

    def _port(self, timeout):
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: see {self.log.name}")
            if active.exists():
                lines = active.read_text().split("\n")
                if lines and lines[0].strip().isdigit():
                    return int(lines[0])
            time.sleep(0.05)
        raise RuntimeError(f"chromium wrote no DevToolsActivePort within {timeout}s")

    def _page_url(self, port):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.1)
        raise RuntimeError("chromium shows no page target")

    def _read(self, deadline):
        self.ws.settimeout(max(0.05, deadline - time.monotonic()))
        msg = json.loads(self.ws.recv())
        if "method" in msg:
            self.events.append(msg)
        return msg

    def call(self, method, timeout=20, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._read(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(f"no answer to {method} within {timeout}s")

    def wait_event(self, method, since, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events[since:]:
                if e["method"] == method:
                    return e
            since = len(self.events)
            try:
                self._read(deadline)
            except Exception:  # a recv timeout: look again until the deadline
                pass
        raise TimeoutError(f"no {method} within {timeout}s")

    def settle(self, seconds):
        """Collects events for a moment (late console messages, requests)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._read(deadline)
            except Exception:
                pass

    def open(self, path: Path, width=1280):
        """Loads the file; returns what the page did: errors, requests, text, svgs."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                  mobile=False)
        since = len(self.events)
        url = path.resolve().as_uri()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", since, timeout=30)
        self.settle(0.5)
        return PageReport(self, url, self.events[since:])

    def evaluate(self, expr):
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path):
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True,
                         timeout=60)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:  # helpers of this browser only: its own process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


class PageReport:
    def __init__(self, tools, url, events):
        self.url = url
        self.errors = []
        self.requests = []
        for e in events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                self.errors.append(("console", [a.get("value", a.get("description")) for a in p.get("args", [])]))
            elif m == "Runtime.exceptionThrown":
                self.errors.append(("exception", p.get("exceptionDetails", {}).get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                self.errors.append(("log", p["entry"].get("text"), p["entry"].get("url")))
            elif m == "Network.requestWillBeSent":
                self.requests.append(p.get("request", {}).get("url"))
        self.text = tools.evaluate("document.body.innerText")
        self.svgs = tools.evaluate("document.querySelectorAll('svg').length")
        self.charts = tools.evaluate("document.querySelectorAll('svg.chart').length")
        self.scripts = tools.evaluate("document.scripts.length")
        self.wide = tools.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")

    def foreign_requests(self):
        return [u for u in self.requests if u != self.url]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert os.access(CHROMIUM, os.X_OK), "chromium is not installed (`make deps` installs it)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.fail("python3-websocket is not installed (`make deps` installs it)")
    tools = DevTools(tmp_path_factory.mktemp("chromium"))
    yield tools
    tools.close()


# ------------------------------------------------------------------- tests


def test_report_in_browser(tide, load_json, browser, tmp_path):
    doc = load_json
    names = sorted(k[len("http_reqs{name:"):-1] for k in doc["metrics"] if k.startswith("http_reqs{name:"))
    assert names == ["always 503", "api json", "home"], names
    path, page = render(tide, doc, "load")
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page links out"
    assert "@import" not in page and "url(" not in page

    seen = browser.open(path)
    assert seen.errors == [], seen.errors
    assert seen.foreign_requests() == [], f"requests other than the page itself: {seen.foreign_requests()}"
    assert seen.requests == [seen.url], seen.requests
    assert seen.svgs >= 5, seen.svgs
    assert seen.charts == 5, seen.charts
    assert seen.scripts == 0
    assert not seen.wide, "the page scrolls sideways at 1280px"

    text = seen.text
    assert "FAIL" in text
    assert "3 of 4 thresholds passed" in text, text[:2000]
    for name in names:
        assert name in text, name
    for line in ("p(95) < 5s", "max < 10s", "count < 1", "rate > 0.99"):
        assert line in text, line
    for key in ("http_req_duration{name:home}", "checks{check:home answers}", "http_reqs"):
        assert key in text, key
    assert re.search(r"✗\s*http_reqs\s*count < 1\s*observed [\d,]+", text), text
    assert "home answers" in text and "json parses" in text and "all checks" in text
    assert "Failures by reason" in text and "HTTP 503" in text
    assert "browse" in text  # the group
    assert "basket_time" in text and "orders" in text  # custom metrics
    for heading in ("Throughput", "Latency percentiles", "Virtual users", "Errors", "Latency distribution",
                    "Requests", "Thresholds", "Checks"):
        assert heading in text, heading
    assert "ramping-vus" in text and doc["tide"]["target"] in text

    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(shot, SHOT_COPY)


def test_escaped_names_in_browser(tide, load_json, browser, tmp_path):
    """A request name that is markup stays text: no script runs, nothing is fetched."""
    doc = copy.deepcopy(load_json)
    evil = '<script>console.error("xss")</script><img src="http://127.0.0.1:9/x.png">'
    m = doc["metrics"]
    for k in list(m):
        if k.endswith("{name:home}"):
            m[k.replace("{name:home}", "{name:" + evil + "}")] = m.pop(k)
    doc["tide"]["scenario"] = "<b>bold</b> & 'quoted'.lua"
    path, page = render(tide, doc, "evil")
    assert "<script" not in page and "<img" not in page and "<b>bold" not in page
    seen = browser.open(path)
    assert seen.errors == [], seen.errors
    assert seen.foreign_requests() == [], seen.foreign_requests()
    assert seen.scripts == 0
    assert evil in seen.text
    assert "<b>bold</b> & 'quoted'" in seen.text


def test_escaping(tide, load_json):
    doc = copy.deepcopy(load_json)
    m = doc["metrics"]
    name = "<script>alert(1)</script>"
    for k in list(m):
        if k.endswith("{name:home}"):
            m[k.replace("{name:home}", "{name:" + name + "}")] = m.pop(k)
    doc["checks"].append({"name": 'a & b "<c>"', "passes": 1, "fails": 1})
    doc["failures"].append({"name": name, "reason": "<err>", "count": 2})
    m["my_metric{kind:<x>}"] = {"type": "counter", "contains": "default", "values": {"count": 3, "rate": 1},
                                "thresholds": {"count < 2 & <3>": {"ok": False}}}
    doc["threshold_results"].append({"key": "my_metric{kind:<x>}", "text": "count < 2 & <3>", "ok": False,
                                     "observed": 3, "metric": "my_metric"})
    doc["tide"]["target"] = 'http://x/?a=1&b="2"'
    _, page = render(tide, doc, "escaping")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b &quot;&lt;c&gt;&quot;" in page
    assert "my_metric{kind:&lt;x&gt;}" in page and "count &lt; 2 &amp; &lt;3&gt;" in page
    assert "http://x/?a=1&amp;b=&quot;2&quot;" in page
    assert "&lt;err&gt;" in page
    text = visible_text(page)
    assert name in text


def test_no_points(tide, load_json):
    for i, empty in enumerate(([], {})):
        doc = copy.deepcopy(load_json)
        doc["points"] = empty
        _, page = render(tide, doc, f"nopoints{i}")
        assert page.count("no per-second data") == 4
        assert "FAIL" in page


def test_single_point_and_nulls(tide, load_json):
    doc = copy.deepcopy(load_json)
    doc["points"] = [{"t": 0, "reqs": 5, "failed": 0, "iterations": 2, "errors": 0, "dropped": 0,
                      "vus": 1, "p50": None, "p95": 1.5, "p99": None}]
    doc["metrics"]["http_req_duration"]["values"]["p(99)"] = None
    doc["state"]["testRunDurationMs"] = None
    _, page = render(tide, doc, "single")
    assert page.count('<svg class="chart"') == 5
    assert "<circle" in page  # a lone point is drawn as a dot


def test_zero_requests(tide):
    """A run that made no HTTP requests (and no thresholds, no checks)."""
    doc = {
        "metrics": {
            "iterations": {"type": "counter", "contains": "default", "values": {"count": 3, "rate": 1.5}},
            "vus": {"type": "gauge", "contains": "default", "values": {"value": 0, "min": 0, "max": 1}},
        },
        "points": [{"t": 0, "reqs": 0, "failed": 0, "iterations": 3, "errors": 0, "dropped": 0, "vus": 1,
                    "p50": 0, "p95": 0, "p99": 0}],
        "state": {"testRunDurationMs": 2000.0, "interrupted": False},
        "tide": {"version": "0.1.0", "scenario": "empty.lua", "scenarios": {}, "threads": 1, "target": ""},
    }
    _, page = render(tide, doc, "zero")
    text = visible_text(page)
    assert "No HTTP requests were made" in text
    assert "No thresholds were defined" in text and "No checks were recorded" in text
    assert "no request durations recorded" in text
    assert "DONE" in text


def test_absurd_point_times(tide, load_json):
    """A time of 1e300 once made the x axis step forever (v + 1 == v there): now
    times that do not rise, or leave a century, give way to the points' order."""
    cases = {"far": lambda ps: ps[0].update(t=1e300), "backwards": lambda ps: ps.reverse(),
             "negative": lambda ps: ps[-1].update(t=-4e9), "text": lambda ps: ps[1].update(t="soon")}
    for name, spoil in cases.items():
        doc = copy.deepcopy(load_json)
        assert len(doc["points"]) >= 2, doc["points"]
        spoil(doc["points"])
        _, page = render(tide, doc, f"times_{name}")
        assert page.count('<svg class="chart"') == 5, name
        bad = re.search(r"\b-?(nan|inf)\b", page, re.I)
        assert not bad, f"{name}: a non-finite number in the page: {page[bad.start() - 80:bad.end() + 20]}"


def test_empty_document(tide):
    for i, doc in enumerate(({}, {"metrics": {}, "points": {}, "state": {}, "tide": {}}, "[]")):
        _, page = render(tide, doc, f"empty{i}")
        assert "No HTTP requests were made" in visible_text(page)


def test_huge_values_and_later_fields(tide, load_json):
    doc = copy.deepcopy(load_json)
    m = doc["metrics"]
    m["http_reqs"]["values"] = {"count": 1.5e15, "rate": 3.2e9}
    for k in ("avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"):
        m["http_req_duration"]["values"][k] = 3.6e6
    m["http_req_duration"]["histogram"]["slots"] += [40000, 7, 45000, 2]
    m["data_received"]["values"]["count"] = 9.9e18
    for p in doc["points"]:
        p["reqs"] *= 1e9
        p["p99"] = 3.5e6
    doc.update({"run_id": "run-<42>", "started": 1700000000, "finished": "2023-11-14T22:13:30Z", "exit_code": 130,
                "threshold_results": [
                    {"key": "http_req_duration", "text": "p(95) < 200ms", "ok": False, "observed": 3.6e6},
                    {"key": "checks", "text": "rate > 0.9", "ok": True, "observed": None}]})
    doc["state"]["interrupted"] = True
    _, page = render(tide, doc, "huge")
    text = visible_text(page)
    assert "INTERRUPTED" in text
    assert "1 of 2 thresholds passed" in text
    assert "run-<42>" in text and "2023-11-14 22:13:20 → 22:13:30 UTC" in text
    assert "1,500,000,000,000,000" in text
    assert "observed 1h 00m" in text and "observed no data" in text


def test_thresholds_from_metrics(tide, load_json):
    """Without threshold_results (older documents), the metrics' own threshold maps,
    observed values recomputed from the values and histograms."""
    doc = copy.deepcopy(load_json)
    del doc["threshold_results"], doc["checks"]
    m = doc["metrics"]
    m["http_req_duration"]["thresholds"]["p(99.9) < 1ms"] = {"ok": False}
    _, page = render(tide, doc, "legacy")
    text = visible_text(page)
    assert "3 of 5 thresholds passed" in text, text
    assert re.search(r"http_req_duration\s*p\(99\.9\) < 1ms\s*observed [\d.]+(µs|ms|s)", text), text
    count = m["http_reqs"]["values"]["count"]
    assert re.search(r"http_reqs\s*count < 1\s*observed " + f"{count:,.0f}", text), text
    assert "home answers" in text and "all checks" in text


def test_render_never_raises(tide, load_json):
    """Fields missing, null, of the wrong type, huge or negative, at random."""
    src = tide.tmp / "fuzz.json"
    src.write_text(json.dumps(load_json))
    res = tide.run(FUZZ, "--env", f"IN={src}", "--env", "SEED=7", "--env", "ROUNDS=400", "--quiet",
                   json_out=False, name="fuzz.lua", timeout=120)
    assert res.rc == 0, str(res)


def test_out_html_and_report(tide, nginx):
    """The wiring: `--out html=FILE` after a run, `tide report A.json B.json --html OUT`."""
    scenario = """
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 5,
              thresholds = { http_req_failed = "rate < 0.5" } },
  run = function(vu) http.get(vu.target .. "/", { name = "front page" }) end,
}
"""
    page = tide.tmp / "run.html"
    res = tide.run(scenario, "--target", nginx.url, "--out", f"html={page}", "--quiet")
    assert res.rc == 0, str(res)
    text = visible_text(page.read_text(encoding="utf-8"))
    assert "PASS" in text and "front page" in text and "1 of 1 thresholds passed" in text
    assert page.read_text(encoding="utf-8").count('<svg class="chart"') == 5

    merged = tide.tmp / "merged.html"
    res2 = tide.exec([res.cmd[0], "report", str(res.json_path), str(res.json_path), "--html", str(merged)])
    assert res2.rc == 0, str(res2)
    text = visible_text(merged.read_text(encoding="utf-8"))
    assert "2 runs" in text and "front page" in text and "20 in total" in text


def test_aborted(tide, load_json):
    doc = copy.deepcopy(load_json)
    doc["aborted"] = "http_req_failed: rate < 0.01 (observed 0.5)"
    _, page = render(tide, doc, "aborted")
    text = visible_text(page)
    assert "ABORTED" in text and "stopped early by http_req_failed: rate < 0.01" in text
