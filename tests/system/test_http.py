"""tide.http against nginx and the Python test servers. Scenarios check the
responses themselves and raise on a mismatch; the tests then require that no
iteration failed (the traceback on stderr says what was wrong)."""

ONE = '{ executor = "per-vu-iterations", vus = 1, iterations = 1 }'


def scenario(body, options=ONE):
    return f"""
local http = require "tide.http"
local tide = require "tide"
local function check(cond, fmt, ...)
  if not cond then error(fmt:format(...), 2) end
end
return {{
  options = {options},
  run = function(vu, data)
{body}
  end,
}}
"""


def assert_clean(res, reqs=None):
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, f"the scenario's checks failed\n{res}"
    if reqs is not None:
        assert res.count("http_reqs") == reqs, str(res)


def test_get_json_headers_timings(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/json")
    check(r.status == 200, "status %s", r.status)
    check(r.ok == true, "r.ok is %s", tostring(r.ok))
    check(r.error == nil, "r.error is %s", tostring(r.error))
    local j = r:json()
    check(type(j) == "table", "r:json() gave a %s", type(j))
    check(j.a == 1, "j.a is %s", tostring(j.a))
    check(type(j.b) == "table" and j.b[1] == 1 and j.b[2] == 2, "j.b is wrong")
    local lower, mixed, upper = r.headers["content-type"], r.headers["Content-Type"], r.headers["CONTENT-TYPE"]
    check(lower == "application/json", "headers['content-type'] = %s", tostring(lower))
    check(mixed == lower and upper == lower, "header lookup is case sensitive: %s / %s / %s",
          tostring(lower), tostring(mixed), tostring(upper))
    check(type(r.timings) == "table", "r.timings is a %s", type(r.timings))
    check(r.timings.total > 0, "r.timings.total = %s", tostring(r.timings.total))
    for _, k in ipairs{"dns", "connect", "tls", "waiting", "total"} do
      check(type(r.timings[k]) == "number", "r.timings.%s is a %s", k, type(r.timings[k]))
    end
    check(r.body == '{"a":1,"b":[1,2]}', "body %q", r.body)
    check(tide.json.decode(r.body).b[2] == 2, "tide.json.decode failed")
"""), "--target", nginx.url)
    assert_clean(res, reqs=1)


def test_methods_query_body_and_bearer(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/echo", { query = { q = "a b", n = 1 }, bearer = "t0k" })
    check(r.body:find("GET /echo?", 1, true) == 1, "GET body %q", r.body)
    check(r.body:find("q=a%20b", 1, true) or r.body:find("q=a+b", 1, true), "query not encoded: %q", r.body)
    check(r.body:find("n=1", 1, true), "query n missing: %q", r.body)
    check(r.body:find("Bearer t0k", 1, true), "bearer missing: %q", r.body)
    r = http.post(vu.target .. "/echo", { json = { x = 1 } })
    check(r.body:find("^POST /echo ") and r.body:find("application/json", 1, true), "POST json: %q", r.body)
    r = http.put(vu.target .. "/echo", { form = { k = "v" } })
    check(r.body:find("^PUT /echo "), "PUT: %q", r.body)
    r = http.request("PATCH", vu.target .. "/echo", { body = "x", headers = { ["Content-Type"] = "text/x-tide" } })
    check(r.body:find("^PATCH /echo ") and r.body:find("text/x-tide", 1, true), "PATCH: %q", r.body)
    r = http.delete(vu.target .. "/echo")
    check(r.body:find("^DELETE /echo"), "DELETE: %q", r.body)
    r = http.head(vu.target .. "/echo")
    check(r.status == 200 and r.body == "", "HEAD: %s %q", r.status, r.body)
"""), "--target", nginx.url)
    assert_clean(res, reqs=6)
    assert res.metric("http_reqs{name:/echo}")["values"]["count"] == 6, str(res)


def test_request_name_option_and_default_name(run_tide, nginx):
    res = run_tide(scenario("""
    http.get(vu.target .. "/?a=1")
    http.get(vu.target .. "/?a=2")
    http.get(vu.target .. "/json", { name = "the-json" })
"""), "--target", nginx.url)
    assert_clean(res, reqs=3)
    m = res.metrics
    assert m.get("http_reqs{name:/}", {}).get("values", {}).get("count") == 2, \
        f"default name should be the path without query\n{sorted(m)}\n{res}"
    assert m.get("http_reqs{name:the-json}", {}).get("values", {}).get("count") == 1, f"{sorted(m)}\n{res}"
    assert "http_reqs{name:/json}" not in m, sorted(m)
    assert "http_req_duration{name:the-json}" in m, sorted(m)


def test_batch_in_order(run_tide, access_log):
    res = run_tide(scenario("""
    local rs = http.batch{
      { "GET", vu.target .. "/" },
      vu.target .. "/503",
      { "GET", vu.target .. "/json", { headers = { ["X-T"] = "1" } } },
    }
    check(#rs == 3, "batch returned %d responses", #rs)
    check(rs[1].status == 200 and rs[1].body == "hello", "rs[1] %s %q", rs[1].status, rs[1].body)
    check(rs[2].status == 503, "rs[2] %s", rs[2].status)
    check(rs[3].status == 200 and rs[3]:json().a == 1, "rs[3] %s %q", rs[3].status, rs[3].body)
"""), "--target", access_log.url)
    assert_clean(res, reqs=3)
    for name in ("/", "/503", "/json"):
        assert res.metric(f"http_reqs{{name:{name}}}")["values"]["count"] == 1, str(res)
    lines = access_log.wait_log(3)
    assert sorted(l.path for l in lines) == ["/", "/503", "/json"], lines


def test_batch_is_concurrent(run_tide, flaky):
    res = run_tide(scenario("""
    local t0 = tide.now()
    local rs = http.batch{ vu.target .. "/sleep?ms=700", vu.target .. "/sleep?ms=700", vu.target .. "/sleep?ms=700" }
    local took = tide.now() - t0
    for i = 1, 3 do check(rs[i].status == 200, "rs[%d] %s %s", i, rs[i].status, tostring(rs[i].error)) end
    check(took < 1.5, "3 requests of 0.7s took %.2fs: not run concurrently", took)
"""), "--target", flaky.url)
    assert_clean(res, reqs=3)


def test_retry_gives_up_after_max_attempts(run_tide, access_log):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/503", { retry = { status = { 503 }, every = "50ms", max = 3 } })
    check(r.status == 503, "final status %s", r.status)
"""), "--target", access_log.url)
    assert_clean(res, reqs=3)
    lines = access_log.wait_log(3)
    assert [l.path for l in lines] == ["/503"] * 3, lines


def test_retry_until_success(run_tide, flaky, http_engine):
    key = f"k2-{http_engine}"  # the server counts per key for the whole session: one key per engine
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/flaky?key=%s&fail=2", { retry = { status = { 503 }, every = "50ms", max = 5 } })
    check(r.status == 200, "final status %%s (%%s)", r.status, r.body)
    check(r.body == "attempt 3: ok", "body %%q", r.body)
""" % key), "--target", flaky.url)
    assert_clean(res, reqs=3)
    hits = flaky.hits_for(key)
    assert len(hits) == 3, f"the server saw {len(hits)} attempts, expected 3\n{res}"
    gaps = [b - a for a, b in zip(hits, hits[1:])]
    assert all(g >= 0.04 for g in gaps), f"retries not spaced by 'every' (50ms): gaps {gaps}"


def test_no_retry_without_option(run_tide, flaky, http_engine):
    key = f"k0-{http_engine}"
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/flaky?key=%s&fail=2")
    check(r.status == 503, "status %%s", r.status)
""" % key), "--target", flaky.url)
    assert_clean(res, reqs=1)
    assert len(flaky.hits_for(key)) == 1


def test_cookies_per_vu(run_tide, access_log):
    res = run_tide(scenario("""
    if vu.id == 1 then
      local r = http.get(vu.target .. "/setcookie")
      check(r.status == 200, "setcookie %s", r.status)
      r = http.get(vu.target .. "/echo-cookie?vu=1")
      check(r.body:find("sid=abc123", 1, true), "VU 1 did not send its cookie: %q", r.body)
    else
      tide.sleep("300ms")  -- after VU 1 got its cookie
      local r = http.get(vu.target .. "/echo-cookie?vu=2")
      check(not r.body:find("sid=abc123", 1, true), "VU 2 sent VU 1's cookie: %q", r.body)
    end
""", options='{ executor = "per-vu-iterations", vus = 2, iterations = 1 }'),
        "--target", access_log.url, "--threads", "1")
    assert_clean(res, reqs=3)
    lines = access_log.wait_log(3)
    by_vu = {l.query["vu"][0]: l.cookie for l in lines if l.path == "/echo-cookie"}
    assert "sid=abc123" in by_vu.get("1", ""), lines
    assert "sid=abc123" not in by_vu.get("2", ""), lines


def test_cookies_shared_with_batch(run_tide, nginx):
    res = run_tide(scenario("""
    http.get(vu.target .. "/setcookie")
    local rs = http.batch{ vu.target .. "/echo-cookie", vu.target .. "/echo-cookie" }
    for i = 1, 2 do
      check(rs[i].body:find("sid=abc123", 1, true), "batch request %d did not send the VU's cookie: %q", i, rs[i].body)
    end
"""), "--target", nginx.url)
    assert_clean(res, reqs=3)


def test_redirect_followed(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/redirect")
    check(r.status == 200, "status %s", r.status)
    check(r.body == "hello", "body %q", r.body)
    check(r.url:sub(-1) == "/" and not r.url:find("/redirect", 1, true),
          "r.url should be the final URL, got %q", r.url)
"""), "--target", nginx.url)
    assert_clean(res)


def test_redirects_disabled(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/redirect", { redirects = 0 })
    check(r.status == 302, "status %s", r.status)
    check(r.headers["location"] and r.headers["location"]:sub(-1) == "/", "location %s", tostring(r.headers["location"]))
"""), "--target", nginx.url)
    assert_clean(res, reqs=1)
    assert res.metric("http_req_failed")["values"]["rate"] == 0, str(res)


def test_redirect_loop(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/redirect-loop")
    check(r.error == "too many redirects", "r.error = %s (status %s)", tostring(r.error), r.status)
    check(r.ok == false, "r.ok = %s", tostring(r.ok))
"""), "--target", nginx.url)
    # each hop is a request of its own: the first, 10 redirects followed (the
    # default limit), and only the last, which would go past it, failed
    assert_clean(res, reqs=11)
    assert abs(res.metric("http_req_failed{name:/redirect-loop}")["values"]["rate"] - 1 / 11) < 1e-9, str(res)
    assert "too many redirects" in res.stdout, str(res)


def test_max_body_truncates(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/big")
    check(r.status == 200, "status %s %s", r.status, tostring(r.error))
    check(r.truncated == true, "r.truncated = %s", tostring(r.truncated))
    check(#r.body == 1000, "#r.body = %d", #r.body)
"""), "--target", nginx.url, "--max-body", "1KB")
    assert_clean(res, reqs=1)
    assert res.count("http_body_truncated") == 1, str(res)


def test_body_not_truncated_by_default(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/big")
    check(r.status == 200, "status %s", r.status)
    check(r.truncated == false, "r.truncated = %s", tostring(r.truncated))
    check(#r.body == 2000000, "#r.body = %d", #r.body)
"""), "--target", nginx.url)
    assert_clean(res, reqs=1)
    assert "http_body_truncated" not in res.metrics, str(res)


def test_discard_body(run_tide, nginx):
    res = run_tide(scenario("""
    local r = http.get(vu.target .. "/", { discard = true })
    check(r.status == 200, "status %s", r.status)
    check(r.body == "", "body %q", r.body)
"""), "--target", nginx.url)
    assert_clean(res, reqs=1)


def test_unknown_http_option_names_it(run_tide, access_log):
    res = run_tide(scenario("""
    http.get(vu.target .. "/", { timeuot = 1 })
"""), "--target", access_log.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 1, str(res)
    assert "timeuot" in res.stderr, str(res)
    assert res.count("http_reqs") == 0, f"a request with a bad option must not be sent\n{res}"
    assert access_log.wait_log() == [], "nginx saw a request"
