"""http_version = "2" (h2 by ALPN over TLS, prior knowledge over http://)
and "1.1"; r.proto says which was used, nginx's log agrees, and a user's
concurrent http.batch requests over HTTP/2 share one connection."""

from test_compression import one_iteration


def protos(run_tide, calls):
    res = run_tide(one_iteration(calls))
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    return [l.split(" ", 1)[1] for l in res.stdout.splitlines() if l.startswith("proto ")]


def test_version_asked_is_the_version_used(run_tide, nginx_tls):
    n = nginx_tls
    n.reset_log()
    got = protos(run_tide, f"""
    local function show(r) assert(r.status == 200, tostring(r.error)); print("proto " .. r.proto) end
    show(http.get("{n.h2c_url}/hello", {{ http_version = "2" }}))
    show(http.get("{n.url}/hello"))
    show(http.get("{n.https_url}/hello", {{ insecure = true }}))
    show(http.get("{n.https_url}/hello", {{ insecure = true, http_version = "1.1" }}))
    show(http.get("{n.https_url}/hello", {{ insecure = true, http_version = "2" }}))
""")
    assert got == ["HTTP/2", "HTTP/1.1", "HTTP/2", "HTTP/1.1", "HTTP/2"], got
    log = n.wait_log(5)
    assert [e.protocol for e in log] == ["HTTP/2.0", "HTTP/1.1", "HTTP/2.0", "HTTP/1.1", "HTTP/2.0"], log


def test_batch_shares_one_connection_over_http2(run_tide, nginx_tls):
    url = nginx_tls.https_url
    batch = ", ".join(f'{{"GET", "{url}/hello", opts}}' for _ in range(10))

    def connections(version):
        nginx_tls.reset_log()
        res = run_tide(one_iteration(f"""
    local opts = {{ http_version = "{version}", insecure = true }}
    for _, r in ipairs(http.batch {{ {batch} }}) do assert(r.status == 200, tostring(r.error)) end
"""))
        assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
        log = nginx_tls.wait_log(10)
        assert len(log) == 10, log
        return {e.connection for e in log}

    assert len(connections("2")) == 1
    assert len(connections("1.1")) > 1   # one request at a time per connection: several


def test_h2c_requests_one_after_another(run_tide, nginx_tls):
    """libcurl 7.88 cannot reuse an h2c connection (curl issue 10634): each
    request must still work, on a connection of its own."""
    url = nginx_tls.h2c_url
    nginx_tls.reset_log()
    got = protos(run_tide, f"""
    local o = {{ http_version = "2" }}
    for i = 1, 3 do print("proto " .. http.get("{url}/hello", o).proto) end
    for _, r in ipairs(http.batch {{ {{"GET", "{url}/hello", o}}, {{"GET", "{url}/hello", o}} }}) do
      assert(r.status == 200, tostring(r.error)); print("proto " .. r.proto)
    end
""")
    assert got == ["HTTP/2"] * 5, got
    assert [e.protocol for e in nginx_tls.wait_log(5)] == ["HTTP/2.0"] * 5


def test_bad_version(run_tide, nginx_tls):
    res = run_tide(one_iteration(f'http.get("{nginx_tls.url}/hello", {{ http_version = "3" }})'))
    assert "option 'http_version': \"1.1\" or \"2\" expected, got '3'" in res.stdout + res.stderr, str(res)


def test_users_keep_their_own_connections_over_http2(run_tide, nginx_tls):
    """HTTP/2 multiplexes what shares a connection cache: each user has its
    own, so five users make five connections, not one."""
    nginx_tls.reset_log()
    res = run_tide(f"""
local http = require "tide.http"
return {{
  options = {{ executor = "per-vu-iterations", vus = 5, iterations = 4, threads = 1 }},
  run = function(vu)
    local r = http.get("{nginx_tls.https_url}/hello", {{ http_version = "2", insecure = true }})
    assert(r.status == 200 and r.proto == "HTTP/2", tostring(r.error))
    require("tide").sleep(0.005)
  end,
}}
""")
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    log = nginx_tls.wait_log(20)
    assert len(log) == 20, log
    assert len({e.connection for e in log}) == 5, log
