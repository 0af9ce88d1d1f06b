"""The helpers a script needs without a C compiler: tide.b64encode /
b64decode, tide.sha256, tide.hmac (OpenSSL's libcrypto), tide.uuid and
tide.random_string (the kernel's CSPRNG). Known vectors, and what a server
receives from a script that signs and encodes its requests."""

import base64
import hashlib
import hmac
import json
import re

import pytest

from httpserver import RecordingServer


@pytest.fixture
def echo(request):
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    return server


def lua_bytes(data: bytes) -> str:
    """A Lua string literal holding exactly these bytes."""
    return '"' + "".join(f"\\x{b:02x}" for b in data) + '"'


def once(body):
    """A scenario running body once in run(vu), failing the run on an error."""
    return f"""
local tide = require "tide"
local http = require "tide.http"
return {{
  options = {{ executor = "per-vu-iterations", vus = 1, iterations = 1,
              thresholds = {{ iteration_errors = "count == 0" }} }},
  run = function(vu)
{body}
  end,
}}
"""


def test_sha256_and_rfc4231_hmac_vectors(run_tide, echo):
    k1, k6 = lua_bytes(b"\x0b" * 20), lua_bytes(b"\xaa" * 131)
    res = run_tide(once(f"""
    local out = {{
      abc = tide.sha256("abc"),
      empty = tide.sha256(""),
      case1 = tide.hmac("sha256", {k1}, "Hi There"),
      case2 = tide.hmac("sha256", "Jefe", "what do ya want for nothing?"),
      case6 = tide.hmac("sha256", {k6},
                        "Test Using Larger Than Block-Size Key - Hash Key First"),
      case1_512 = tide.hmac("sha512", {k1}, "Hi There"),
    }}
    http.post(vu.target .. "/v", {{ json = out }})
"""), "--target", echo.url)
    assert res.rc == 0, str(res)
    got = json.loads(echo.seen[0][3])
    assert got["abc"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert got["empty"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert got["case1"] == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert got["case2"] == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert got["case6"] == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    assert got["case1_512"] == ("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                                "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854")


def test_a_signed_request_verifies_on_the_server_with_every_algorithm(run_tide, echo):
    """The realistic use: sign the body, the server checks the signature."""
    key = b"s3cr\x00t-key\xff"
    lkey = lua_bytes(key)
    res = run_tide(once(f"""
    local body = tide.random_string(300) .. "\\0\\1\\2"
    for _, alg in ipairs({{ "md5", "sha1", "sha256", "sha512" }}) do
      local raw = tide.hmac(alg, {lkey}, body, "raw")
      http.post(vu.target .. "/" .. alg, {{ body = body, headers = {{
        ["X-Signature"] = tide.hmac(alg, {lkey}, body),
        ["X-Signature-B64"] = tide.b64encode(raw) }} }})
    end
"""), "--target", echo.url)
    assert res.rc == 0, str(res)
    assert [s[1] for s in echo.seen] == ["/md5", "/sha1", "/sha256", "/sha512"]
    for _, path, headers, body in echo.seen:
        want = hmac.new(key, body, getattr(hashlib, path[1:]))
        assert headers["X-Signature"] == want.hexdigest(), (path, headers)
        assert base64.b64decode(headers["X-Signature-B64"]) == want.digest(), (path, headers)
        assert re.fullmatch(r"[0-9a-f]+", headers["X-Signature"])


def test_base64_round_trips_binary_with_nuls(run_tide, echo):
    every_byte = bytes(range(256)) * 2
    samples = [b"", b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", b"\x00", b"\x00\x00\x00\xff", every_byte]
    lua_list = ", ".join(lua_bytes(s) for s in samples)
    py_encoded = ", ".join(f'"{base64.b64encode(s).decode()}"' for s in samples)
    res = run_tide(once(f"""
    local samples = {{ {lua_list} }}
    local theirs = {{ {py_encoded} }}
    for i, s in ipairs(samples) do
      local e = tide.b64encode(s)
      assert(tide.b64decode(e) == s, "round trip " .. i)
      http.post(vu.target .. "/enc/" .. i, {{ body = e }})
      http.post(vu.target .. "/dec/" .. i, {{ body = assert(tide.b64decode(theirs[i])) }})
    end
    -- line breaks (as in PEM) and the URL-safe alphabet without padding decode too
    assert(tide.b64decode("Zm9v\\nYmFy\\r\\n") == "foobar")
    assert(tide.b64decode("-_8") == "\\xfb\\xff")
"""), "--target", echo.url)
    assert res.rc == 0, str(res)
    enc = {int(p.rsplit("/", 1)[1]): b for _, p, _, b in echo.seen if p.startswith("/enc/")}
    dec = {int(p.rsplit("/", 1)[1]): b for _, p, _, b in echo.seen if p.startswith("/dec/")}
    for i, s in enumerate(samples, 1):
        assert enc[i] == base64.b64encode(s), (i, enc[i])
        assert dec[i] == s, (i, dec[i])


def test_b64decode_of_bad_input_is_nil_and_a_reason(run_tide, echo):
    res = run_tide(once("""
    local out = {}
    for _, bad in ipairs({ "a$bc", "abcde", "ab=c", "abc==", "=" }) do
      local v, err = tide.b64decode(bad)
      out[bad] = { v == nil, err }
    end
    local ok, err = pcall(tide.b64decode, {})
    out.type = { ok, err }
    http.post(vu.target .. "/v", { json = out })
"""), "--target", echo.url)
    assert res.rc == 0, str(res)
    got = json.loads(echo.seen[0][3])
    assert got["a$bc"] == [True, "tide.b64decode: not a base64 character at byte 2"], got
    assert got["ab=c"][0] and "after '=' padding" in got["ab=c"][1], got
    for bad in ("abcde", "abc==", "="):
        assert got[bad][0] and got[bad][1].startswith("tide.b64decode: wrong length"), (bad, got)
    assert got["type"][0] is False and "b64decode" in got["type"][1] and "string expected" in got["type"][1], got


def test_uuid_is_v4_and_unique(run_tide, echo):
    res = run_tide("""
local tide = require "tide"
local http = require "tide.http"
return {
  options = { executor = "shared-iterations", vus = 4, iterations = 8, threads = 2 },
  run = function(vu)
    local ids = {}
    for i = 1, 500 do ids[i] = tide.uuid() end
    http.post(vu.target .. "/ids", { body = table.concat(ids, "\\n") })
  end,
}
""", "--target", echo.url)
    assert res.rc == 0, str(res)
    ids = [line for _, _, _, body in echo.seen for line in body.decode().split("\n")]
    assert len(ids) == 4000
    assert len(set(ids)) == 4000, "a uuid repeated"
    v4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(v4.fullmatch(u) for u in ids), [u for u in ids if not v4.fullmatch(u)][:3]
    # the random bits are random: every hex digit shows up in every free position
    assert all(len({u[p] for u in ids}) == 16 for p in (0, 9, 20, 35))


def test_random_string_length_alphabet_and_spread(run_tide, echo):
    res = run_tide(once("""
    local default = tide.random_string(5000)
    local ab = tide.random_string(20000, "ab")
    local digits = tide.random_string(64, "0123456789")
    local out = { default = default, ab = ab, digits = digits, empty = tide.random_string(0),
                  other = tide.random_string(32) ~= tide.random_string(32) }
    http.post(vu.target .. "/v", { json = out })
"""), "--target", echo.url)
    assert res.rc == 0, str(res)
    got = json.loads(echo.seen[0][3])
    assert len(got["default"]) == 5000 and re.fullmatch(r"[A-Za-z0-9]+", got["default"])
    assert len(set(got["default"])) == 62, "not every letter and digit came up in 5000 draws"
    assert len(got["ab"]) == 20000 and set(got["ab"]) == {"a", "b"}
    assert 9400 < got["ab"].count("a") < 10600, got["ab"].count("a")   # > 8 sigma either side
    assert len(got["digits"]) == 64 and got["digits"].isdigit()
    assert got["empty"] == "" and got["other"] is True


def test_random_string_and_hmac_errors_name_the_function(run_tide, echo):
    res = run_tide(once("""
    local out = {}
    for i, call in ipairs({
      function() return tide.random_string(-1) end,
      function() return tide.random_string(5, "") end,
      function() return tide.random_string(2^31) end,
      function() return tide.hmac("sha3", "k", "d") end,
      function() return tide.hmac("sha256", "k", "d", "base32") end,
      function() return tide.sha256() end,
    }) do
      local ok, err = pcall(call)
      out[i] = ok and "no error" or err
    end
    http.post(vu.target .. "/v", { json = out })
"""), "--target", echo.url)
    assert res.rc == 0, str(res)
    got = json.loads(echo.seen[0][3])
    assert "random_string" in got[0] and "length must be from 0 to 2^30" in got[0], got
    assert "random_string" in got[1] and "alphabet is empty" in got[1], got
    assert "length must be from 0 to 2^30" in got[2], got
    assert "tide.hmac: unknown algorithm 'sha3' (valid: md5, sha1, sha224, sha256, sha384, sha512)" in got[3], got
    assert "tide.hmac: unknown output 'base32' (valid: hex, raw)" in got[4], got
    assert "sha256" in got[5] and "string expected" in got[5], got
