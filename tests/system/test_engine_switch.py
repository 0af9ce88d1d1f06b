"""One user, two HTTP engines: a user whose requests go some through the
lean HTTP/1.1 engine and some through libcurl keeps one set of cookies
(moved between the engines' jars as the user switches), a redirect that
leaves plain HTTP for https changes engine between hops, and a user's batch
on the lean engine keeps its connections for that user. Requests are sent
to libcurl on purpose with an `Expect` header (the lean engine leaves
Expect and Transfer-Encoding to libcurl) or by an https URL; what each
request carried is read back from the server."""

import pytest

from httpserver import HopServer
from test_http import assert_clean, scenario
import test_engines


@pytest.fixture
def hops():
    server = HopServer().start()
    yield server
    server.stop()


CURL = '{ headers = { Expect = "" } }'


def cookies_at(server, path):
    seen = [s for s in server.seen if s.path == path]
    assert len(seen) == 1, server.seen
    return [sorted(p.strip() for p in h.split(";")) for h in seen[0].all("Cookie")]


engines = test_engines.engines_of


def test_cookies_follow_the_user_from_engine_to_engine(run_tide, hops):
    res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?a=1")                 -- lean
    http.get("{hops.url}/seen-by-curl", {CURL})           -- curl: carries a
    http.get("{hops.url}/set-cookie?b=2", {CURL})         -- curl sets b ...
    http.get("{hops.url}/set-cookie?a=", {CURL})          -- ... and expires a
    http.get("{hops.url}/seen-by-lean")                   -- lean: b alone
    http.get("{hops.url}/set-cookie?c=3")                 -- lean sets c
    local jar = http.cookies("{hops.url}/")
    check(jar.a == nil and jar.b == "2" and jar.c == "3", "the jar holds %s", tide.json.encode(jar))
    http.set_cookie("{hops.url}/", "d", "4")             -- the script's, into the jar the user is on
    http.get("{hops.url}/seen-by-curl-again", {CURL})
"""))
    assert_clean(res, reqs=7)
    assert cookies_at(hops, "/seen-by-curl") == [["a=1"]]
    assert cookies_at(hops, "/seen-by-lean") == [["b=2"]]
    assert cookies_at(hops, "/seen-by-curl-again") == [["b=2", "c=3", "d=4"]]
    assert engines(res) == {"lean": 3, "curl": 4}, res.json.get("http_engines")
    assert "http engines: lean 3 requests, curl 4" in res.stdout, res.stdout


def test_each_user_keeps_its_own_cookies_on_both_engines(run_tide, hops):
    res = run_tide(scenario(f"""
    http.get("{hops.url}/set-cookie?user=" .. vu.id)
    local r = http.get("{hops.url}/echo-" .. vu.id, {CURL})
    check(r.status == 200, "status %s", r.status)
    r = http.get("{hops.url}/again-" .. vu.id)
    check(r.status == 200, "status %s", r.status)
""", options="{ vus = 4, iterations = 4, executor = 'per-vu-iterations', threads = 2 }"))
    assert_clean(res, reqs=48)
    for vu in range(1, 5):
        seen = [s for s in hops.seen if s.path in (f"/echo-{vu}", f"/again-{vu}")]
        assert len(seen) == 8, hops.seen
        assert all(s.all("Cookie") == [f"user={vu}"] for s in seen), [(s.path, s.all("Cookie")) for s in seen]
    assert engines(res) == {"lean": 32, "curl": 16}


def test_a_redirect_to_https_changes_engine_between_hops(run_tide, hops, nginx_tls):
    target = f"{nginx_tls.https_url}/hello"
    res = run_tide(scenario(f"""
    local r = http.get("{hops.url}/redirect/302?to={target}&cookie=k=v", {{ insecure = true }})
    check(r.status == 200, "status %s (%s)", r.status, tostring(r.error))
    check(r.body == "hello", "body %s", r.body)
    check(r.redirects == 1, "redirects %s", r.redirects)
    check(r.url == "{target}", "url %s", r.url)
    r = http.get("{hops.url}/after")                      -- lean again, with the hop's cookie
    check(r.status == 200, "status %s", r.status)
"""))
    assert_clean(res, reqs=3)
    assert engines(res) == {"lean": 2, "curl": 1}
    assert cookies_at(hops, "/after") == [["k=v"]]


def test_a_users_batch_keeps_its_connections_on_the_lean_engine(run_tide, nginx_tls):
    nginx_tls.reset_log()
    url = f"{nginx_tls.url}/hello"
    res = run_tide(scenario(f"""
    local rs = http.batch({{ "{url}", "{url}", "{url}", "{url}" }})
    for i, r in ipairs(rs) do check(r.status == 200, "#%d: %s", i, tostring(r.error or r.status)) end
    local r = http.get("{url}")
    check(r.status == 200, "status %s", r.status)
""", options="{ vus = 2, iterations = 3, executor = 'per-vu-iterations', threads = 1 }"))
    assert_clean(res, reqs=30)
    log = nginx_tls.wait_log(30)
    assert len(log) == 30, log
    # each user opens at most 4 connections (its batch's) and reuses them on
    # every iteration, its own request included: 2 users, at most 8 in all
    conns = {e.connection for e in log}
    assert 2 <= len(conns) <= 8, log
    assert engines(res) == {"lean": 30, "curl": 0}
