"""What goes on the wire follows each request, whatever the transport kept
from the one before: one user's consecutive requests with other headers,
methods and bodies; percent-encoding of query and form values; cookies
between a user's own requests and its batches. An echo server answers with
what it received, and the scenario checks it byte for byte."""

import json

import pytest

from httpserver import QuietHandler, ServerThread
from test_http import ONE, assert_clean, scenario


class EchoHandler(QuietHandler):
    """Any method: answers with the request as JSON (method, path, headers
    in order, body). /set sets a cookie, /set2 another."""

    def _echo(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("latin-1") if n else ""
        doc = {"method": self.command, "path": self.path, "headers": [[k, v] for k, v in self.headers.items()],
               "body": body}
        self.send_response(200)
        if self.path in ("/set", "/set2"):
            name = "a" if self.path == "/set" else "b"
            self.send_header("Set-Cookie", f"{name}=v{name}; Path=/")
        data = json.dumps(doc).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _echo


@pytest.fixture(scope="module")
def echo(request):
    server = ServerThread(EchoHandler, name="echo-server").start()
    request.addfinalizer(server.stop)
    return server


# Helpers the scenarios share: the echoed request's headers by lower-case
# name, and the names of the headers it had beyond the ones every request has.
HELPERS = """
    local function sent(r)
      check(r.status == 200, "status %s %s", r.status, tostring(r.error))
      local doc = r:json()
      local h, extra = {}, {}
      for _, kv in ipairs(doc.headers) do
        local k = kv[1]:lower()
        check(h[k] == nil, "header %s sent twice", k)
        h[k] = kv[2]
        if k ~= "host" and k ~= "accept" and k ~= "user-agent" and k ~= "content-length" and k ~= "accept-encoding" then
          extra[#extra + 1] = k
        end
      end
      table.sort(extra)
      return doc, h, table.concat(extra, ",")
    end
"""


def test_headers_follow_each_request_of_one_user(run_tide, echo):
    res = run_tide(scenario(HELPERS + """
    local u = vu.target .. "/e"
    local doc, h, extra = sent(http.get(u, { headers = { ["X-A"] = "1" } }))
    check(extra == "x-a" and h["x-a"] == "1", "1: %s", extra)
    check(h["user-agent"]:find("^tide/"), "1: user-agent %s", tostring(h["user-agent"]))
    doc, h, extra = sent(http.get(u, { headers = { ["X-B"] = "2" } }))
    check(extra == "x-b", "2: X-A kept from the request before: %s", extra)
    doc, h, extra = sent(http.get(u))
    check(extra == "", "3: headers kept from the requests before: %s", extra)
    doc, h, extra = sent(http.post(u, { body = "abc", headers = { ["X-B"] = "2" } }))
    check(doc.method == "POST" and doc.body == "abc", "4: %s %q", doc.method, doc.body)
    check(extra == "x-b" and h["content-type"] == nil,
          "4: %s (a raw body: no Content-Type the script did not ask for, no Expect)", extra)
    doc, h, extra = sent(http.get(u, { headers = { ["X-B"] = "2" } }))
    check(doc.method == "GET" and doc.body == "" and extra == "x-b", "5: %s %q %s", doc.method, doc.body, extra)
    doc, h, extra = sent(http.get(u, { bearer = "t0k", headers = { ["User-Agent"] = "mine" } }))
    check(h["authorization"] == "Bearer t0k" and h["user-agent"] == "mine" and extra == "authorization",
          "6: %s %s %s", tostring(h["authorization"]), tostring(h["user-agent"]), extra)
    doc, h, extra = sent(http.put(u, { json = { k = 1 } }))
    check(doc.method == "PUT" and doc.body == '{"k":1}' and h["content-type"] == "application/json",
          "7: %s %q %s", doc.method, doc.body, tostring(h["content-type"]))
    doc, h, extra = sent(http.request("PATCH", u))
    check(doc.method == "PATCH" and doc.body == "" and extra == "", "8: %s %q %s", doc.method, doc.body, extra)
    doc = sent(http.post(u))
    check(doc.method == "POST" and doc.body == "", "9: %s %q", doc.method, doc.body)
    doc = sent(http.get(vu.target .. "/other?x=1"))
    check(doc.path == "/other?x=1", "10: %s", doc.path)
    doc = sent(http.get(u))
    check(doc.path == "/e", "11: %s", doc.path)
"""), "--target", echo.url)
    assert_clean(res, reqs=11)


def test_query_and_form_values_percent_encoded(run_tide, echo):
    res = run_tide(scenario(HELPERS + """
    local odd = "a b&c=d/e?f#g%h+i~j.k_l-m\\195\\169"
    local want = "a%20b%26c%3Dd%2Fe%3Ff%23g%25h%2Bi~j.k_l-m%C3%A9"
    local doc = sent(http.get(vu.target .. "/q", { query = { v = odd } }))
    check(doc.path == "/q?v=" .. want, "query: %s", doc.path)
    doc = sent(http.post(vu.target .. "/f", { form = { v = { odd, "2" } } }))
    check(doc.body == "v=" .. want .. "&v=2", "form: %s", doc.body)
    doc = sent(http.get(vu.target .. "/q?x=1", { query = { ["k k"] = 1 } }))
    check(doc.path == "/q?x=1&k%20k=1", "query after a query: %s", doc.path)
"""), "--target", echo.url)
    assert_clean(res, reqs=3)


def test_cookies_between_own_requests_and_batches(run_tide, echo):
    res = run_tide(scenario(HELPERS + """
    local u = vu.target
    sent(http.get(u .. "/set"))
    local rs = http.batch{ u .. "/e", u .. "/set2" }
    local _, h = sent(rs[1])
    check(h.cookie == "a=va", "batch: %s", tostring(h.cookie))
    _, h = sent(http.get(u .. "/e"))
    check(h.cookie and h.cookie:find("a=va", 1, true) and h.cookie:find("b=vb", 1, true),
          "own request after a batch: %s", tostring(h.cookie))
    rs = http.batch{ u .. "/e" }
    _, h = sent(rs[1])
    check(h.cookie and h.cookie:find("b=vb", 1, true), "second batch: %s", tostring(h.cookie))
"""), "--target", echo.url)
    assert_clean(res, reqs=5)


def test_users_keep_their_own_cookies_with_batches(run_tide, echo):
    res = run_tide(scenario(HELPERS + """
    local u = vu.target
    if vu.id == 1 then sent(http.get(u .. "/set")) else tide.sleep("200ms") end
    local rs = http.batch{ u .. "/e", u .. "/e" }
    for i = 1, 2 do
      local _, h = sent(rs[i])
      if vu.id == 1 then
        check(h.cookie == "a=va", "user 1, batch %d: %s", i, tostring(h.cookie))
      else
        check(h.cookie == nil, "user 2 sent user 1's cookie in batch %d: %s", i, tostring(h.cookie))
      end
    end
""", options='{ executor = "per-vu-iterations", vus = 2, iterations = 1, threads = 1 }'), "--target", echo.url)
    assert_clean(res)
