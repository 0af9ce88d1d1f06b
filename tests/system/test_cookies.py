"""Cookies: one Cookie header per request (the script's and the jar's, the
script's winning on a name), the `cookies` option, and the user's jar from
a script (http.cookies, http.set_cookie, http.clear_cookies). What each
request carried is read back from the server (httpserver.HopServer keeps
repeated headers; httpbin's /cookies)."""

from urllib.parse import quote

import pytest

from httpserver import HopServer
from test_http import assert_clean, scenario


@pytest.fixture
def hops():
    server = HopServer().start()
    yield server
    server.stop()


def cookie_headers(server, path):
    seen = [s for s in server.seen if s.path == path]
    assert len(seen) == 1, server.seen
    return seen[0].all("Cookie")


def pairs(header):
    return sorted(p.strip() for p in header.split(";"))


def test_script_cookie_header_and_jar_go_in_one_header(run_tide, hops):
    res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?jar=1&sid=from-jar")
    http.get("{hops.url}/one", {{ headers = {{ Cookie = "mine=2; sid=from-script" }} }})
    http.get("{hops.url}/two")
"""))
    assert_clean(res, reqs=3)
    one = cookie_headers(hops, "/one")
    assert len(one) == 1, one
    assert pairs(one[0]) == ["jar=1", "mine=2", "sid=from-script"], one
    # the script's cookie went with that request only: the jar kept its own
    assert [pairs(h) for h in cookie_headers(hops, "/two")] == [["jar=1", "sid=from-jar"]], hops.seen


def test_cookies_option(run_tide, hops):
    res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?sid=from-jar&keep=1")
    http.get("{hops.url}/one", {{ cookies = {{ sid = "opt", n = 5 }} }})
    http.get("{hops.url}/two", {{ cookies = {{ sid = "opt" }}, headers = {{ Cookie = "sid=hdr;h=1;z=9" }} }})
    local jar = http.cookies("{hops.url}/")
    check(jar.sid == "from-jar" and jar.keep == "1" and jar.n == nil, "the jar holds %s", tide.json.encode(jar))
"""))
    assert_clean(res, reqs=3)
    one = cookie_headers(hops, "/one")
    assert len(one) == 1 and pairs(one[0]) == ["keep=1", "n=5", "sid=opt"], one
    two = cookie_headers(hops, "/two")
    assert len(two) == 1 and pairs(two[0]) == ["h=1", "keep=1", "sid=opt", "z=9"], two


def test_cookie_false_sends_none(run_tide, hops):
    other = HopServer().start()
    try:
        res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?sid=1")
    http.get("{hops.url}/none", {{ headers = {{ Cookie = false }} }})
    http.get("{hops.url}/redirect/302?to={quote(other.url + '/far', safe='')}", {{ headers = {{ Cookie = false }} }})
    http.get("{hops.url}/again")
"""))
        assert_clean(res, reqs=5)
    finally:
        other.stop()
    assert cookie_headers(hops, "/none") == [], hops.seen
    # past the redirect to another origin too (the jar's cookie would match it: same host)
    assert [s.all("Cookie") for s in other.seen] == [[]], other.seen
    assert cookie_headers(hops, "/again") == ["sid=1"], hops.seen


def test_response_cookies_kept_when_the_script_sends_its_own(run_tide, hops):
    res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?gone=1&stays=1")
    http.get("{hops.url}/set-cookie?new=2&gone=", {{ cookies = {{ mine = "x" }} }})
    local jar = http.cookies("{hops.url}/")
    check(jar.new == "2" and jar.stays == "1", "the jar holds %s", tide.json.encode(jar))
    check(jar.gone == nil and jar.mine == nil, "the jar holds %s", tide.json.encode(jar))
    http.get("{hops.url}/after")
"""))
    assert_clean(res, reqs=3)
    after = cookie_headers(hops, "/after")
    assert len(after) == 1 and pairs(after[0]) == ["new=2", "stays=1"], after


def test_script_cookies_follow_same_origin_redirects(run_tide, hops):
    other = HopServer().start()
    try:
        away = quote(f"/redirect/302?to={quote(other.url + '/away', safe='')}", safe="")
        res = run_tide(scenario(f"""
    http.get("{hops.url}/redirect/302?cookie=hop%3D1&to={away}", {{ cookies = {{ mine = "x" }} }})
"""))
        assert_clean(res, reqs=3)
    finally:
        other.stop()
    first, second = hops.seen
    assert first.all("Cookie") == ["mine=x"], first
    # the cookie the first hop set goes on, in the same one header
    assert len(second.all("Cookie")) == 1 and pairs(second.all("Cookie")[0]) == ["hop=1", "mine=x"], second
    # past the origin, the script's cookie stays behind; the jar's goes by
    # its domain (cookies do not tell ports apart: RFC 6265 8.5)
    assert other.seen[0].all("Cookie") == ["hop=1"], other.seen


def test_jar_api_read_set_clear(run_tide, httpbin):
    res = run_tide(scenario(f"""
    local base = "{httpbin.url}"
    http.get(base .. "/cookies/set?from_server=1")
    local jar = http.cookies(base .. "/anything")
    check(jar.from_server == "1", "http.cookies: %s", tide.json.encode(jar))

    http.set_cookie(base, "token", "abc")
    http.set_cookie(base, "scoped", "p", {{ path = "/cookies" }})
    http.set_cookie(base, "old", "x", {{ max_age = 3600 }})
    http.set_cookie(base, "old", "", {{ max_age = 0 }})   -- removes it
    http.set_cookie(base, "later", "1", {{ expires = os.time() + 3600, secure = true, http_only = true }})
    local sent = http.get(base .. "/cookies"):json().cookies
    check(sent.token == "abc" and sent.scoped == "p" and sent.from_server == "1", "sent %s", tide.json.encode(sent))
    check(sent.old == nil, "a cookie with max_age = 0 was sent: %s", tide.json.encode(sent))
    check(sent.later == "1", "a secure cookie to loopback was not sent: %s", tide.json.encode(sent))
    jar = http.cookies(base .. "/anything")
    check(jar.scoped == nil and jar.token == "abc", "path /cookies matched /anything: %s", tide.json.encode(jar))
    check(http.cookies("http://other.example/").token == nil, "another host reads the cookies")

    http.clear_cookies()
    check(next(http.cookies(base .. "/cookies")) == nil, "cleared jar still has cookies")
    sent = http.get(base .. "/cookies"):json().cookies
    check(next(sent) == nil, "a cleared jar sent %s", tide.json.encode(sent))
"""))
    assert_clean(res, reqs=4)  # /cookies/set redirects to /cookies: two


def test_domain_cookies_go_to_subdomains_only_as_set(run_tide):
    res = run_tide(scenario("""
    http.set_cookie("https://api.example.com/v1/login", "host_only", "1")
    http.set_cookie("https://api.example.com/", "wide", "2", { domain = "example.com", path = "/" })
    http.set_cookie("https://api.example.com/", "safe", "3", { secure = true })
    local same = http.cookies("https://api.example.com/v1/users")
    check(same.host_only == "1" and same.wide == "2" and same.safe == "3", "same host: %s", tide.json.encode(same))
    local sub = http.cookies("https://www.example.com/v1/x")
    check(sub.host_only == nil and sub.wide == "2" and sub.safe == nil, "sibling: %s", tide.json.encode(sub))
    check(http.cookies("https://api.example.com/v2").host_only == nil, "default path is the URL's directory")
    check(http.cookies("http://api.example.com/").safe == nil, "a secure cookie over plain http")
    check(http.cookies("https://notexample.com/").wide == nil, "domain matched a suffix that is not a subdomain")
"""))
    assert_clean(res, reqs=0)


def test_each_user_has_its_own_jar(run_tide, hops):
    res = run_tide(scenario(f"""
    http.set_cookie("{hops.url}", "user", tostring(vu.id))
    tide.sleep("50ms")
    local seen = http.get("{hops.url}/who"):json().cookie
    check(#seen == 1 and seen[1] == "user=" .. vu.id, "VU %d sent %s", vu.id, tide.json.encode(seen))
    check(http.cookies("{hops.url}").user == tostring(vu.id), "VU %d reads another jar", vu.id)
""", options='{ executor = "per-vu-iterations", vus = 3, iterations = 1 }'))
    assert_clean(res, reqs=3)


def test_a_path_with_a_trailing_slash_matches_alike_with_or_without_script_cookies(run_tide, hops):
    """libcurl matches a cookie's path without its trailing '/' (Path=/a/b/
    goes to /a/b): the jar's cookies go by that rule whether the transport
    adds them or tide merges them with the script's own."""
    res = run_tide(scenario(f"""
    http.set_cookie("{hops.url}/a/b/", "k", "v", {{ path = "/a/b/" }})
    http.get("{hops.url}/a/b")
    http.get("{hops.url}/a/b?mine=1", {{ cookies = {{ mine = "1" }} }})
"""))
    assert_clean(res, reqs=2)
    assert [pairs(h) for h in cookie_headers(hops, "/a/b")] == [["k=v"]], hops.seen
    assert [pairs(h) for h in cookie_headers(hops, "/a/b?mine=1")] == [["k=v", "mine=1"]], hops.seen


def test_a_response_sets_at_most_50_cookies(run_tide, hops):
    """libcurl 7.88 takes the first 50 Set-Cookie lines of a response and
    ignores the rest; both engines keep the same 50, and send them."""
    query = "&".join(f"c{i:02d}={i}" for i in range(60))
    res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?{query}")
    local n, jar = 0, http.cookies("{hops.url}/")
    for _ in pairs(jar) do n = n + 1 end
    check(n == 50 and jar.c49 == "49" and jar.c50 == nil, "the jar holds %d: %s", n, tide.json.encode(jar))
    http.get("{hops.url}/sent")
"""))
    assert_clean(res, reqs=2)
    sent = cookie_headers(hops, "/sent")
    assert len(sent) == 1 and sorted(pairs(sent[0])) == sorted(f"c{i:02d}={i}" for i in range(50)), sent


@pytest.mark.parametrize("call, message", [
    ('http.set_cookie("ftp://h/", "a", "1")', "is not an http:// or https:// URL"),
    ('http.set_cookie("http://h/", "a b", "1")', "the name holds"),
    ('http.set_cookie("http://h/", "a", "x;y")', "the value holds ';'"),
    ('http.set_cookie("http://h/", "a", "1", { domain = "other.com" })', "does not cover the URL's host"),
    ('http.set_cookie("http://h/", "a", "1", { path = "rel" })', "must start with '/'"),
    ('http.set_cookie("http://h/", "a", "1", { colour = "red" })', "unknown attribute 'colour'"),
    ('http.set_cookie("http://h/", "a", "1", { max_age = "1h" })', "attribute 'max_age'"),
    ('http.get("http://127.0.0.1:9/", { cookies = { ["a;b"] = "1" } })', "option 'cookies': cookie 'a;b'"),
    ('http.get("http://127.0.0.1:9/", { cookies = { a = "x\\ny" } })', "option 'cookies': cookie 'a'"),
    ('http.get("http://127.0.0.1:9/", { cookies = "a=1" })', "option 'cookies': table expected"),
    ('http.cookies("nope")', "is not an http:// or https:// URL"),
])
def test_bad_cookies_are_errors_naming_them(run_tide, call, message):
    res = run_tide(scenario(f"""
    local ok, err = pcall(function() {call} end)
    check(not ok, "no error")
    check(err:find("{message}", 1, true), "error: %s", err)
"""))
    assert_clean(res)
