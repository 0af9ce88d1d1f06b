"""JSON numbers as Lua 5.4 has them: what the server receives from
`json = {...}` is exact, and what `r:json()` gives back keeps integers."""

import json

import pytest

from httpserver import RecordingServer


@pytest.fixture
def echo(request):
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    return server


def test_numbers_go_out_exact_and_come_back_as_integers(run_tide, echo):
    res = run_tide("""
local http = require "tide.http"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    local r = http.post(vu.target .. "/echo", { json = {
      id = 1234567890123456, small = 7, ratio = 0.1, third = 1/3, neg = -9007199254740993,
      list = { 1, 2.5, 3 } } })
    local t = r:json()
    assert(math.type(t.id) == "integer" and t.id == 1234567890123456, tostring(t.id))
    assert(("/items/" .. t.small) == "/items/7", "/items/" .. t.small)
    assert(math.type(t.list[2]) == "float" and t.ratio == 0.1 and t.third == 1/3)
  end,
}
""", "--target", echo.url)
    assert res.rc == 0, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    sent = json.loads(echo.seen[0][3])
    assert sent["id"] == 1234567890123456 and isinstance(sent["id"], int), echo.seen[0][3]
    assert sent["neg"] == -9007199254740993, echo.seen[0][3]
    assert sent["small"] == 7 and sent["ratio"] == 0.1 and sent["third"] == 1 / 3, echo.seen[0][3]
    assert b"e+15" not in echo.seen[0][3] and b"0.10000" not in echo.seen[0][3], echo.seen[0][3]
