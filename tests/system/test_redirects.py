"""Redirects: tide.http follows them itself, hop by hop. What each hop sends
(method, body, headers) is read back from the server that received it
(httpserver.HopServer, and Debian's httpbin); each hop is a sample of its
own (http_reqs counts what the server saw)."""

from urllib.parse import quote

import pytest

from httpserver import HopServer
from test_http import assert_clean, scenario


@pytest.fixture
def hops():
    server = HopServer().start()
    yield server
    server.stop()


def enc(url):
    return quote(url, safe="")


def expected(status, method):
    """(method, body kept) after a redirect: the fetch standard's rule."""
    if status == 303:
        return ("HEAD" if method == "HEAD" else "GET"), False
    if status in (301, 302) and method == "POST":
        return "GET", False
    return method, True


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_method_and_body(run_tide, hops, status, method):
    body = "" if method == "HEAD" else f"payload of {method}"
    opts = "{}" if method == "HEAD" else f'{{ body = "{body}", headers = {{ ["Content-Type"] = "text/plain" }} }}'
    res = run_tide(scenario(f"""
    local r = http.request("{method}", "{hops.url}/redirect/{status}?to=/final", {opts})
    check(r.status == 200, "status %s (%s)", r.status, tostring(r.error))
    check(r.redirects == 1, "r.redirects = %s", tostring(r.redirects))
    check(r.url == "{hops.url}/final", "r.url = %s", r.url)
"""))
    assert_clean(res, reqs=2)
    assert [s.path for s in hops.seen] == [f"/redirect/{status}?to=/final", "/final"], hops.seen
    first, second = hops.seen
    want_method, keeps_body = expected(status, method)
    assert first.method == method and first.body == body.encode(), first
    assert second.method == want_method, (status, method, second)
    if keeps_body:
        assert second.body == body.encode(), second
        assert second.all("Content-Type") == ([] if method == "HEAD" else ["text/plain"]), second
    else:
        assert second.body == b"" and second.all("Content-Type") == [], second
        assert second.all("Content-Length") in ([], ["0"]), second
    # one sample per hop, each under its own name and method
    assert res.count("http_reqs{name:/redirect/%d}" % status) == 1, str(res)
    assert res.count("http_reqs{name:/final}") == 1, str(res)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_httpbin_reads_back_what_each_redirect_sent(run_tide, httpbin, status):
    res = run_tide(scenario(f"""
    local url = "{httpbin.url}/redirect-to?url=/anything&status_code={status}"
    local r = http.put(url, {{ json = {{ id = 7 }} }})
    check(r.status == 200 and r.redirects == 1, "status %s, %s redirects", r.status, tostring(r.redirects))
    local got = r:json()
    local method, body = "{expected(status, "PUT")[0]}", {"true" if expected(status, "PUT")[1] else "false"}
    check(got.method == method, "httpbin saw %s", got.method)
    if body then
      check(got.json and got.json.id == 7, "httpbin saw the body %q", got.data)
      check(got.headers["Content-Type"] == "application/json", "Content-Type %s", tostring(got.headers["Content-Type"]))
    else
      check(got.data == "" and got.headers["Content-Type"] == nil, "body %q, Content-Type %s",
            got.data, tostring(got.headers["Content-Type"]))
    end
    r = http.post(url, {{ form = {{ a = 1 }} }})
    check(r:json().method == "{expected(status, "POST")[0]}", "POST became %s", r:json().method)
"""))
    assert_clean(res, reqs=4)


def test_relative_redirects_each_a_sample(run_tide, httpbin):
    res = run_tide(scenario(f"""
    local r = http.get("{httpbin.url}/relative-redirect/3")
    check(r.status == 200, "status %s", r.status)
    check(r.redirects == 3, "r.redirects = %s", tostring(r.redirects))
    check(r.url == "{httpbin.url}/get", "r.url = %s", r.url)
    local named = http.get("{httpbin.url}/relative-redirect/2", {{ name = "chain" }})
    check(named.redirects == 2 and named.status == 200, "named: %s, %s", named.status, tostring(named.redirects))
"""))
    assert_clean(res, reqs=4 + 3)
    for name in ("/relative-redirect/3", "/relative-redirect/2", "/relative-redirect/1"):
        assert res.count("http_reqs{name:%s}" % name) == 1, (name, str(res))
    assert res.count("http_reqs{name:/get}") == 1, str(res)
    # a name the script gives is every hop's
    assert res.count("http_reqs{name:chain}") == 3, str(res)


def test_relative_location_resolved_against_the_hop(run_tide, hops):
    res = run_tide(scenario(f"""
    local r = http.get("{hops.url}/a/b/redirect/302?to=" .. "{enc("../../final?x=1")}")
    check(r.status == 200 and r.redirects == 1, "status %s", r.status)
"""))
    assert_clean(res, reqs=2)
    assert [s.path for s in hops.seen][1] == "/a/final?x=1", hops.seen


def test_redirect_limit(run_tide, httpbin):
    res = run_tide(scenario(f"""
    local r = http.get("{httpbin.url}/relative-redirect/5", {{ redirects = 2 }})
    check(r.status == 302, "status %s", r.status)
    check(r.error == "too many redirects", "r.error = %s", tostring(r.error))
    check(r.redirects == 2, "r.redirects = %s", tostring(r.redirects))
    check(r.url == "{httpbin.url}/relative-redirect/3", "r.url = %s", r.url)
    r = http.get("{httpbin.url}/relative-redirect/5", {{ redirects = 0 }})
    check(r.status == 302 and r.error == nil and r.redirects == 0, "redirects = 0: %s %s", r.status, tostring(r.error))
"""))
    assert_clean(res, reqs=3 + 1)
    # only the response that would have gone past the limit failed
    assert res.count("http_reqs{name:/relative-redirect/3}") == 1, str(res)
    assert res.metric("http_req_failed{name:/relative-redirect/3}")["values"]["rate"] == 1, str(res)
    assert res.metric("http_req_failed{name:/relative-redirect/4}")["values"]["rate"] == 0, str(res)


def test_timeout_covers_the_whole_chain(run_tide, hops):
    # each hop takes 400 ms; the third would end past the 1 s timeout
    loop = f"/redirect/302?delay=400&to={enc('/redirect/302?delay=400&to=' + enc('/redirect/302?delay=400&to=/final'))}"
    res = run_tide(scenario(f"""
    local t0 = tide.now()
    local r = http.get("{hops.url}{loop}", {{ timeout = "1s" }})
    local took = tide.now() - t0
    check(r.error == "timeout", "r.error = %s (status %s)", tostring(r.error), r.status)
    check(r.redirects == 2, "r.redirects = %s", tostring(r.redirects))
    check(took < 1.5, "the chain took %.2fs with a 1s timeout", took)
"""))
    assert_clean(res, reqs=3)
    assert len(hops.seen) == 3, hops.seen


def test_credentials_stay_with_their_origin(run_tide, hops):
    other = HopServer().start()
    try:
        target = f"/redirect/302?to={enc(other.url + '/final')}"
        res = run_tide(scenario(f"""
    local r = http.get("{hops.url}/redirect/307?to=" .. "{enc(target)}",
                       {{ bearer = "tok", headers = {{ ["X-Keep"] = "1" }} }})
    check(r.status == 200 and r.redirects == 2, "status %s, %s", r.status, tostring(r.redirects))
"""))
        assert_clean(res, reqs=3)
    finally:
        other.stop()
    assert [s.all("Authorization") for s in hops.seen] == [["Bearer tok"], ["Bearer tok"]], hops.seen
    assert other.seen[0].all("Authorization") == [] and other.seen[0].all("X-Keep") == ["1"], other.seen


def test_cookie_set_on_a_hop_goes_to_the_next(run_tide, httpbin):
    res = run_tide(scenario(f"""
    local r = http.get("{httpbin.url}/cookies/set?flavour=oat")
    check(r.status == 200 and r.redirects == 1, "status %s", r.status)
    check(r:json().cookies.flavour == "oat", "the next hop sent %s", r.body)
"""))
    assert_clean(res, reqs=2)


def test_retry_sends_the_whole_chain_again(run_tide, hops):
    res = run_tide(scenario(f"""
    local r = http.get("{hops.url}/redirect/302?to=/flaky/1/k", {{ retry = {{ status = 503, every = "10ms" }} }})
    check(r.status == 200 and r.redirects == 1, "status %s, %s", r.status, tostring(r.redirects))
"""))
    assert_clean(res, reqs=4)
    assert [s.path for s in hops.seen] == ["/redirect/302?to=/flaky/1/k", "/flaky/1/k"] * 2, hops.seen


def test_location_of_another_scheme_is_not_followed(run_tide, hops):
    res = run_tide(scenario(f"""
    local r = http.get("{hops.url}/redirect/302?to=" .. "{enc("ftp://127.0.0.1/x")}")
    check(r.status == 302 and r.error == "malformed URL", "status %s, error %s", r.status, tostring(r.error))
    check(r.redirects == 0, "r.redirects = %s", tostring(r.redirects))
"""))
    assert_clean(res, reqs=1)


def test_batch_requests_follow_their_own_redirects(run_tide, hops):
    res = run_tide(scenario(f"""
    local rs = http.batch{{
      {{ "GET", "{hops.url}/redirect/302?to=/one" }},
      {{ "POST", "{hops.url}/redirect/307?to=/two", {{ body = "kept" }} }},
    }}
    check(rs[1].status == 200 and rs[1].redirects == 1 and rs[1].url == "{hops.url}/one", "first %s", tostring(rs[1]))
    check(rs[2].status == 200 and rs[2].redirects == 1 and rs[2]:json().body == "kept", "second %s", rs[2].body)
"""))
    assert_clean(res, reqs=4)
    two = [s for s in hops.seen if s.path == "/two"]
    assert len(two) == 1 and two[0].method == "POST" and two[0].body == b"kept", hops.seen
