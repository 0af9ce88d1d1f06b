"""tags = { k = "v" } on a request: its samples carry them beside name
(thresholds select them; they override the scenario's tags); a tag tide
sets itself is an error naming it. expect = { 200, 404 } or a function of
the response: which statuses count as a success in http_req_failed
(options.expect for every request); default status < 400."""

import pytest

from test_compression import one_iteration


def test_tags_select_samples_in_thresholds(run_tide, httpbin):
    res = run_tide(one_iteration("""
    http.get(vu.target .. "/status/200", { tags = { kind = "fast", team = 7 } })
    http.get(vu.target .. "/status/200", { tags = { kind = "fast", team = 7 } })
    http.get(vu.target .. "/status/201", { tags = { kind = "slow", flow = "override" } })
    http.get(vu.target .. "/status/202")
""", """tags = { flow = "scenario" },
    thresholds = {
      ["http_reqs{kind:fast}"] = "count == 2",
      ["http_reqs{kind:fast,team:7,name:/status/200,flow:scenario}"] = "count == 2",
      ["http_reqs{kind:slow,flow:override}"] = "count == 1",
      ["http_reqs{flow:scenario}"] = "count == 3",
      ["http_req_duration{kind:slow}"] = "count == 1",
    }"""), "--target", httpbin.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    assert res.stdout.count("✓") >= 5, res.stdout


@pytest.mark.parametrize("tag, hint", [("name", "use the option 'name'"), ("status", ""), ("method", ""),
                                       ("group", ""), ("scenario", ""), ("error", "")])
def test_reserved_tags_are_an_error(run_tide, httpbin, tag, hint):
    res = run_tide(one_iteration(f'http.get(vu.target .. "/get", {{ tags = {{ {tag} = "x" }} }})'),
                   "--target", httpbin.url)
    out = res.stdout + res.stderr
    assert f"http.get: option 'tags': '{tag}' is a tag tide sets itself" in out and hint in out, out


def test_bad_tags(run_tide, httpbin):
    res = run_tide(one_iteration('http.get(vu.target .. "/get", { tags = { k = {} } })'), "--target", httpbin.url)
    assert "option 'tags': tags must map strings to strings or numbers" in res.stdout + res.stderr, str(res)


def failed(res):
    v = res.metrics["http_req_failed"]["values"]
    return v["passes"], v.get("fails")


def test_expect_list_and_function(run_tide, httpbin):
    res = run_tide(one_iteration("""
    local function want404(r) return r.status == 404 end
    http.get(vu.target .. "/status/404", { expect = { 200, 404 }, tags = { t = "list" } })   -- success
    http.get(vu.target .. "/status/200", { expect = { 404 }, tags = { t = "list" } })        -- failure
    http.get(vu.target .. "/status/404", { expect = want404, tags = { t = "fn" } })          -- success
    http.get(vu.target .. "/status/200", { expect = want404, tags = { t = "fn" } })          -- failure
    local r = http.get(vu.target .. "/status/200", { expect = function(r) error("boom") end, tags = { t = "err" } })
    assert(r.error == "expect function failed", tostring(r.error))
    http.get(vu.target .. "/status/500", { tags = { t = "default" } })                     -- failure
    http.get(vu.target .. "/status/302", { redirects = 0, tags = { t = "default" } })      -- success
""", """thresholds = {
      ["http_req_failed{t:list}"] = "rate == 0.5",
      ["http_req_failed{t:fn}"] = "rate == 0.5",
      ["http_req_failed{t:err}"] = "rate == 1",
      ["http_req_failed{t:default}"] = "rate == 0.5",
    }"""), "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    assert failed(res) == (4, 3), res.metrics["http_req_failed"]


def test_expect_as_a_scenario_option(run_tide, httpbin):
    res = run_tide(one_iteration("""
    http.get(vu.target .. "/status/404")                          -- success by options.expect
    http.get(vu.target .. "/status/200")                          -- failure
    http.get(vu.target .. "/status/200", { expect = { 200 } })    -- the request's own wins: success
""", "expect = { 404 }"), "--target", httpbin.url)
    assert failed(res) == (1, 2), res.metrics["http_req_failed"]
    res = run_tide(one_iteration("", 'expect = { "200" }'), "--target", httpbin.url)
    assert res.rc == 2 and "options.expect: expected a list of 1 to 32 statuses" in res.stderr, str(res)


def test_bad_expect(run_tide, httpbin):
    res = run_tide(one_iteration('http.get(vu.target .. "/get", { expect = 200 })'), "--target", httpbin.url)
    assert "option 'expect': a list of 1 to 32 statuses" in res.stdout + res.stderr, str(res)
