"""auth = { user, password } (basic) and { user, password, "digest" }:
httpbin's /basic-auth and /digest-auth accept them; the credentials never
appear in tide's output (summary, results JSON, r.url, tags)."""

import base64

from test_compression import one_iteration


def test_basic_auth_sends_the_credentials(run_tide, httpbin):
    res = run_tide(one_iteration("""
    local r = http.get(vu.target .. "/basic-auth/alice/s3cret", { auth = { "alice", "s3cret" } })
    assert(r.status == 200 and r:json().authenticated, tostring(r.status))
    r = http.get(vu.target .. "/basic-auth/alice/s3cret", { auth = { "alice", "wrong" } })
    assert(r.status == 401, tostring(r.status))
    r = http.get(vu.target .. "/basic-auth/alice/s3cret")
    assert(r.status == 401, tostring(r.status))
    r = http.get(vu.target .. "/anything", { auth = { "alice", "s3cret", "basic" } })
    print("sent " .. r:json().headers.Authorization)
"""), "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    want = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert f"sent {want}" in res.stdout, res.stdout


def test_digest_auth(run_tide, httpbin):
    res = run_tide(one_iteration("""
    local r = http.get(vu.target .. "/digest-auth/auth/bob/pw", { auth = { "bob", "pw", "digest" } })
    assert(r.status == 200 and r:json().authenticated, tostring(r.status) .. " " .. r.body)
    r = http.get(vu.target .. "/digest-auth/auth/bob/pw", { auth = { "bob", "pw" } })
    assert(r.status == 401, "basic on a digest endpoint: " .. tostring(r.status))
    r = http.get(vu.target .. "/digest-auth/auth/bob/pw", { auth = { "bob", "nope", "digest" } })
    assert(r.status == 401, "wrong password: " .. tostring(r.status))
"""), "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)


def test_bad_auth_option_names_it_without_the_password(run_tide, httpbin):
    res = run_tide(one_iteration('http.get(vu.target .. "/x", { auth = { "u", "hunter2", "ntlm" } })'),
                   "--target", httpbin.url)
    out = res.stdout + res.stderr
    assert "option 'auth'" in out and "basic" in out and "digest" in out, out
    assert "hunter2" not in out


def test_credentials_never_in_the_output(run_tide, httpbin, tmp_path):
    host = httpbin.url.split("://", 1)[1]
    res = run_tide(one_iteration(f"""
    local r = http.get(vu.target .. "/basic-auth/alice/s3cret", {{ auth = {{ "alice", "hunter2" }} }})
    assert(r.status == 401)
    r = http.get("http://carol:hunter3@{host}/anything/x")
    assert(r.status == 200, tostring(r.status))
    assert(r:json().headers.Authorization == "Basic {base64.b64encode(b"carol:hunter3").decode()}")
    print("url " .. r.url .. " " .. tostring(r))
"""), "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    assert f"url http://carol:***@{host}/anything/x tide.response: GET http://carol:***@{host}/anything/x" \
        in res.stdout, res.stdout
    assert "/anything/x" in res.stdout.split("tide 0.1.0", 1)[1], res.stdout   # the name tag, in the summary
    text = res.stdout + res.stderr + res.json_path.read_text()
    for secret in ("hunter2", "hunter3", base64.b64encode(b"alice:hunter2").decode(),
                   base64.b64encode(b"carol:hunter3").decode()):
        assert secret not in text, secret
