"""TLS options against nginx with a self-signed certificate (openssl req
-x509): certificates are verified by default ("certificate rejected"),
insecure / --insecure / options.insecure skip it, ca / --ca / options.ca
trust a CA file, and cert/key present a client certificate to a server that
requires one (ssl_verify_client on)."""

import shutil

import pytest

from test_compression import one_iteration


def get_status(url, opts="{}"):
    return one_iteration(f"""
    local r = http.get("{url}/hello", {opts})
    print("got " .. r.status .. " " .. tostring(r.error) .. " " .. tostring(r.body))
""")


def got(res):
    lines = [l for l in res.stdout.splitlines() if l.startswith("got ")]
    assert len(lines) == 1, str(res)
    return lines[0][4:]


def test_verified_by_default(run_tide, nginx_tls):
    res = run_tide(get_status(nginx_tls.https_url))
    assert got(res) == "0 certificate rejected ", str(res)
    assert res.metrics["http_req_failed"]["values"]["passes"] == 1, res.metrics["http_req_failed"]
    assert "certificate rejected" in res.stdout.split("failures", 1)[1], res.stdout


@pytest.mark.parametrize("how", ["request", "options", "flag"])
def test_insecure_skips_verification(run_tide, nginx_tls, how):
    opts = "{ insecure = true }" if how == "request" else "{}"
    text = get_status(nginx_tls.https_url, opts)
    if how == "options":
        text = text.replace("iterations = 1,", "iterations = 1, insecure = true,")
    res = run_tide(text, *(["--insecure"] if how == "flag" else []))
    assert got(res) == "200 nil hello", str(res)


@pytest.mark.parametrize("how", ["request", "options", "flag"])
def test_ca_trusts_the_certificate(run_tide, nginx_tls, tmp_path, how):
    (tmp_path / "sub").mkdir()
    shutil.copy(nginx_tls.server_cert, tmp_path / "sub" / "ca.pem")
    opts = '{ ca = "ca.pem" }' if how == "request" else "{}"
    text = get_status(nginx_tls.https_url, opts)
    if how == "options":
        text = text.replace("iterations = 1,", 'iterations = 1, ca = "ca.pem",')
    scenario = tmp_path / "sub" / "tls.lua"   # relative paths start at the scenario's directory
    scenario.write_text(text)
    res = run_tide(scenario, *(["--ca", "sub/ca.pem"] if how == "flag" else []))   # --ca: from the cwd
    assert got(res) == "200 nil hello", str(res)


def test_client_certificate(run_tide, nginx_tls):
    cert, key, ca = nginx_tls.client_cert, nginx_tls.client_key, nginx_tls.server_cert
    res = run_tide(get_status(nginx_tls.mtls_url, f'{{ ca = "{ca}" }}'))
    assert got(res).startswith("400 nil "), str(res)   # nginx: no required SSL certificate was sent
    res = run_tide(get_status(nginx_tls.mtls_url, f'{{ ca = "{ca}", cert = "{cert}", key = "{key}" }}'))
    assert got(res) == "200 nil hello", str(res)
    text = get_status(nginx_tls.mtls_url).replace(
        "iterations = 1,", f'iterations = 1, cert = "{cert}", key = "{key}",')
    res = run_tide(text, "--ca", ca)
    assert got(res) == "200 nil hello", str(res)


def test_missing_files_are_named(run_tide, nginx_tls):
    res = run_tide(get_status(nginx_tls.https_url, '{ ca = "nowhere.pem" }'))
    assert "http.get: option 'ca': cannot read 'nowhere.pem'" in res.stdout + res.stderr, str(res)
    res = run_tide(get_status(nginx_tls.https_url), "--ca", "nowhere.pem")
    assert res.rc == 2 and "--ca: cannot read the file" in res.stderr and "nowhere.pem" in res.stderr, str(res)
    res = run_tide(get_status(nginx_tls.https_url).replace("iterations = 1,", "iterations = 1, insecure = 1,"))
    assert res.rc == 2 and "options.insecure: expected true or false" in res.stderr, str(res)


def test_tls_settings_follow_each_request_of_one_user(run_tide, nginx_tls):
    """What one request set (a CA, insecure) does not stay for the next one
    of the same user, nor does its connection carry a request that verifies."""
    url, ca = nginx_tls.https_url, nginx_tls.server_cert
    res = run_tide(one_iteration(f"""
    local function st(opts) local r = http.get("{url}/hello", opts); return r.status .. " " .. tostring(r.error) end
    print("got " .. table.concat({{ st {{ ca = "{ca}" }}, st {{}}, st {{ insecure = true }}, st {{}},
                                   st {{ ca = "{ca}" }} }}, ","))
"""))
    assert got(res) == "200 nil,0 certificate rejected,200 nil,0 certificate rejected,200 nil", str(res)
