"""tide run --workers N --via lambda:FUNCTION[:QUALIFIER]: each worker is one
Lambda Invoke call, signed with AWS Signature Version 4 by libcurl.

The Lambda API here is a loopback server this file writes: it recomputes the
Authorization header with the algorithm AWS documents (canonical request,
string to sign, signing key: hmac and hashlib, not libcurl), refuses a wrong
one with 403 as AWS does, and runs each accepted job by handing it to a real
`tide worker` (the job on its stdin, the results document from its stdout)."""

import collections
import datetime
import hashlib
import hmac
import json
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import TIDE
import test_workers

KEY = "AKIDTIDETESTEXAMPLE7"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYtideSECRET"
WRONG_SECRET = "Wr0ngSecretKeyThatMustNeverBePrinted/xyz"
TOKEN = "IQoJb3JpZ2luX2VjtideSESSIONtoken//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample"
REGION = "eu-west-3"

COUNTED = test_workers.COUNTED % (test_workers.COUNT_OPTIONS, "")  # 20 users x 50 iterations

SETUP_MARKS = """
local http = require "tide.http"
return {
  options = { vus = 1, iterations = 1 },
  setup = function(ctx) http.get(ctx.target .. "/?setup=ran") end,
  run = function(vu) end,
}
"""


# ------------------------------------------------- SigV4, from AWS's documentation


def uri_encode(text):
    """RFC 3986 percent-encoding of everything but the unreserved characters."""
    return urllib.parse.quote(text, safe="-_.~")


def canonical_request(method, raw_path, raw_query, headers, signed, body):
    # every service but S3: each path segment as sent, URI-encoded once more
    path = "/".join(uri_encode(seg) for seg in raw_path.split("/")) or "/"
    pairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
    query = "&".join(f"{k}={v}" for k, v in sorted((uri_encode(k), uri_encode(v)) for k, v in pairs))
    canon_headers = "".join(f"{name}:{','.join(' '.join(v.split()) for v in headers[name])}\n" for name in signed)
    return "\n".join([method, path, query, canon_headers, ";".join(signed), hashlib.sha256(body).hexdigest()])


def signature(secret, amz_date, region, service, creq):
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), to_sign


def check_the_checker():
    """AWS's documented example (IAM ListUsers, POST, 20110909T233600Z)."""
    headers = {"content-type": ["application/x-www-form-urlencoded; charset=utf-8"],
               "host": ["iam.amazonaws.com"], "x-amz-date": ["20110909T233600Z"]}
    creq = canonical_request("POST", "/", "", headers, ["content-type", "host", "x-amz-date"],
                             b"Action=ListUsers&Version=2010-05-08")
    sig, _ = signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20110909T233600Z", "us-east-1", "iam", creq)
    assert sig == "ced6826de92d2bdeed8f846f0bf508e8559e98e4b0199114b84c54174deb456c", sig


AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                  r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


# ------------------------------------------------- the Lambda API on loopback


class LambdaEndpoint:
    """Lambda's Invoke on 127.0.0.1: .url, .calls (one dict per request);
    .throttle (answer that many invokes 429 first), .function_error
    ((type, message): every accepted invoke fails so), .hang (seconds)."""

    def __init__(self, workdir, token=None):
        self.workdir = workdir
        self.token = token
        self.calls = []
        self.lock = threading.Lock()
        self.throttle = 0
        self.function_error = None
        self.hang = 0
        self.procs = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, payload = endpoint.invoke(self, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    @staticmethod
    def error(status, kind, message):
        return status, {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/"}, \
            json.dumps({"Type": "User", "message": message}).encode()

    def verify(self, req, body, call):
        """None when the request is signed right, else the 403 to answer."""
        headers = collections.defaultdict(list)
        for name, value in req.headers.items():
            headers[name.lower()].append(value)
        m = AUTH.match(req.headers.get("Authorization", ""))
        if not m:
            return self.error(403, "IncompleteSignatureException", "Authorization header requires a signature")
        key, day, region, service, signed, sig = m.groups()
        signed = signed.split(";")
        call.update(key=key, region=region, service=service, signed=signed)
        amz_date = req.headers.get("X-Amz-Date", "")
        stamp = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        skew = abs((datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds())
        unsigned = [h for h in headers if h.startswith("x-amz-") and h not in signed]
        if key != KEY or (self.token and headers.get("x-amz-security-token") != [self.token]):
            return self.error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if day != amz_date[:8] or skew > 300 or service != "lambda" or "host" not in signed or unsigned or \
                signed != sorted(signed) or any(h not in headers for h in signed):
            return self.error(403, "InvalidSignatureException", f"Credential scope or signed headers are wrong: {m.group(0)}")
        raw_path, _, raw_query = req.path.partition("?")
        creq = canonical_request(req.command, raw_path, raw_query, headers, signed, body)
        want, to_sign = signature(SECRET, amz_date, region, service, creq)
        if not hmac.compare_digest(want, sig):
            return self.error(403, "InvalidSignatureException",
                              "The request signature we calculated does not match the signature you provided. "
                              "Check your AWS Secret Access Key and signing method. Consult the service "
                              f"documentation for details.\n\nThe Canonical String for this request should have "
                              f"been\n'{creq}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n")
        call["verified"] = True
        return None

    def invoke(self, req, body):
        raw_path, _, raw_query = req.path.partition("?")
        call = {"path": raw_path, "query": urllib.parse.parse_qs(raw_query), "verified": False,
                "token": req.headers.get("X-Amz-Security-Token"),
                "type": req.headers.get("X-Amz-Invocation-Type")}
        with self.lock:
            self.calls.append(call)
        refused = self.verify(req, body, call)
        if refused:
            return refused
        m = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", raw_path)
        if not m or call["type"] != "RequestResponse":
            return self.error(404, "ResourceNotFoundException", f"Function not found: {raw_path}")
        call["function"] = m.group(1)
        with self.lock:
            throttle = self.throttle > 0
            self.throttle -= throttle
        if throttle:
            call["throttled"] = True
            return self.error(429, "TooManyRequestsException", "Rate Exceeded.")
        if self.hang:
            time.sleep(self.hang)
        if self.function_error:
            kind, message = self.function_error
            return 200, {"X-Amz-Function-Error": "Unhandled"}, \
                json.dumps({"errorType": kind, "errorMessage": message}).encode()
        return self.run_worker(body)

    def run_worker(self, job):
        """The job run by a real `tide worker`, its standard input held open as a coordinator would."""
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([TIDE, "worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                    cwd=self.workdir)
            with self.lock:
                self.procs.append(proc)
            proc.stdin.write(job + b"\n")
            proc.stdin.flush()
            out = proc.stdout.read()
            rc = proc.wait(timeout=120)
            proc.stdin.close()
            err.seek(0)
            said = err.read().decode(errors="replace").strip().splitlines()
        if rc in (0, 1) and out.startswith(b"{"):
            return 200, {}, out
        return 200, {"X-Amz-Function-Error": "Unhandled"}, \
            json.dumps({"errorType": f"tide.Exit{rc}", "errorMessage": said[-1] if said else ""}).encode()


@pytest.fixture
def lambda_api(tmp_path, request):
    check_the_checker()
    server = LambdaEndpoint(tmp_path).start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch):
    """The runs here see only the AWS variables each test gives them."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def aws_env(secret=SECRET, token=None, region_var="AWS_REGION", **extra):
    env = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": secret, region_var: REGION}
    if token:
        env["AWS_SESSION_TOKEN"] = token
    env.update(extra)
    return env


def assert_no_secret(res, *secrets):
    text = res.stdout + res.stderr
    if res.json_path and res.json_path.exists():
        text += res.json_path.read_text()
    for s in secrets:
        assert s not in text, f"a secret was printed\n{res}"


def failed_lines(res):
    return [l for l in res.stderr.splitlines() if "FAILED" in l]


# ------------------------------------------------------------------- tests


def test_three_signed_invocations_merge_exactly(tide, access_log, lambda_api, tmp_path):
    docs = tmp_path / "docs"
    path = tide.write(COUNTED)
    res = tide.run(path, "--target", access_log.url, "--workers", "3", "--via", "lambda:tide-load:live",
                   "--lambda-endpoint", lambda_api.url, env=aws_env(TIDE_WORKER_DOCS=str(docs)), timeout=120)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 1000, str(res)
    assert res.count("iterations") == 1000, str(res)
    lines = access_log.wait_log(1000, settle=0.2)
    assert len(lines) == 1000
    assert collections.Counter(int(l.query["id"][0]) for l in lines) == {i: 50 for i in range(1, 21)}
    for i, n in ((1, 350), (2, 350), (3, 300)):
        assert f"worker {i}/3  segment {i}/3  host lambda:tide-load:live  requests {n}  errors 0  exit 0" \
            in res.stderr, str(res)
    calls = lambda_api.calls
    assert len(calls) == 3, calls
    for c in calls:
        assert c["verified"] and c["function"] == "tide-load" and c["query"] == {"Qualifier": ["live"]}, c
        assert c["region"] == REGION and c["service"] == "lambda" and c["key"] == KEY, c
        assert {"host", "x-amz-date", "x-amz-invocation-type"} <= set(c["signed"]), c
        assert c["token"] is None, c
    workers = [json.loads((docs / f"worker-{i}.json").read_text()) for i in (1, 2, 3)]
    assert sorted(w["segment"]["index"] for w in workers) == [1, 2, 3]
    assert sum(w["metrics"]["http_reqs"]["values"]["count"] for w in workers) == 1000
    assert_no_secret(res, SECRET)


def test_a_wrong_secret_key_is_refused_and_never_printed(tide, access_log, lambda_api):
    path = tide.write(COUNTED)
    res = tide.run(path, "--target", access_log.url, "--workers", "3", "--via", "lambda:tide-load",
                   "--lambda-endpoint", lambda_api.url, env=aws_env(secret=WRONG_SECRET), timeout=60)
    assert res.rc == 5, str(res)
    failed = failed_lines(res)
    assert len(failed) == 3, str(res)
    for i in (1, 2, 3):
        line = next(l for l in failed if f"worker {i}/3  segment {i}/3" in l)
        assert "HTTP 403 InvalidSignatureException: The request signature we calculated does not match" in line, line
    assert "3 of 3 workers failed" in res.stderr, str(res)
    assert len(lambda_api.calls) == 3 and not any(c["verified"] for c in lambda_api.calls)
    assert access_log.log_lines() == [], "a refused invocation ran load"
    assert_no_secret(res, WRONG_SECRET, SECRET)


def test_the_session_token_is_sent_signed_and_never_printed(tide, access_log, tmp_path):
    check_the_checker()
    api = LambdaEndpoint(tmp_path, token=TOKEN).start()
    try:
        path = tide.write(COUNTED)
        args = (path, "--target", access_log.url, "--workers", "2", "--via", "lambda:tide-load",
                "--lambda-endpoint", api.url)
        res = tide.run(*args, env=aws_env(token=TOKEN), timeout=120)
        assert res.rc == 0, str(res)
        assert res.count("http_reqs") == 1000, str(res)
        assert len(api.calls) == 2, api.calls
        for c in api.calls:
            assert c["verified"] and c["token"] == TOKEN and "x-amz-security-token" in c["signed"], c
        assert_no_secret(res, SECRET, TOKEN)
        # a wrong secret with the token: refused, and neither is printed
        bad = tide.run(*args, env=aws_env(secret=WRONG_SECRET, token=TOKEN), timeout=60)
        assert bad.rc == 5 and len(failed_lines(bad)) == 2, str(bad)
        assert_no_secret(bad, WRONG_SECRET, SECRET, TOKEN)
        # no token where the endpoint wants one: refused as AWS does
        none = tide.run(*args, env=aws_env(), timeout=60)
        assert none.rc == 5 and "HTTP 403 UnrecognizedClientException" in none.stderr, str(none)
    finally:
        api.stop()


@pytest.mark.parametrize("missing", ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def test_missing_credentials_or_region_stop_before_setup(tide, access_log, lambda_api, missing):
    path = tide.write(SETUP_MARKS)
    env = aws_env()
    del env[missing]
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:tide-load",
                   "--lambda-endpoint", lambda_api.url, env=env)
    assert res.rc == 2, str(res)
    assert missing in res.stderr, str(res)
    time.sleep(0.3)
    assert access_log.log_lines() == [], "setup ran"
    assert lambda_api.calls == []


def test_bad_lambda_options_are_named(tide, access_log, lambda_api):
    path = tide.write(SETUP_MARKS)
    for via in ("lambda:", "lambda:a b", "lambda:fn:", "lambda:fn:a:b", "lambda:fn:$PREV", "lambda:" + "f" * 65):
        res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", via, env=aws_env())
        assert res.rc == 2 and f"'{via}'" in res.stderr and "lambda:FUNCTION[:QUALIFIER]" in res.stderr, str(res)
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--lambda-endpoint", lambda_api.url,
                   env=aws_env())
    assert res.rc == 2 and "--lambda-endpoint" in res.stderr and "--via lambda:" in res.stderr, str(res)
    res = tide.run(path, "--workers", "2", "--via", "lambda:fn", "--lambda-endpoint", "ftp://x", env=aws_env())
    assert res.rc == 2 and "'ftp://x'" in res.stderr, str(res)
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:fn", "--duration", "20m",
                   env=aws_env())
    assert res.rc == 2 and "900" in res.stderr, str(res)
    # 860 s and a 30 s graceful stop fit in 900 s only without the 5 s start and
    # the up to 10 s the function keeps to hand its results back
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:fn", "--duration", "860s",
                   "--graceful-stop", "30s", env=aws_env())
    assert res.rc == 2 and "890s" in res.stderr and "10s to hand back" in res.stderr, str(res)
    time.sleep(0.3)
    assert access_log.log_lines() == [] and lambda_api.calls == []


def test_throttled_invocations_are_retried(tide, access_log, lambda_api):
    lambda_api.throttle = 2
    path = tide.write(COUNTED)
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:tide-load",
                   "--lambda-endpoint", lambda_api.url, env=aws_env(region_var="AWS_DEFAULT_REGION"), timeout=120)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 1000, str(res)
    assert len(access_log.wait_log(1000, settle=0.2)) == 1000
    retries = [l for l in res.stderr.splitlines() if "throttled: HTTP 429 TooManyRequestsException" in l]
    assert len(retries) == 2, str(res)
    for line in retries:
        assert re.fullmatch(r"tide: worker [12]/2: throttled: HTTP 429 TooManyRequestsException: Rate Exceeded\. "
                            r"\(attempt [12] of 5; trying again in \d\.\d\ds\)", line), line
    calls = lambda_api.calls
    assert len(calls) == 4 and sum(bool(c.get("throttled")) for c in calls) == 2, calls
    assert all(c["query"] == {} and c["region"] == REGION for c in calls), calls
    assert "FAILED" not in res.stderr, str(res)


def test_a_function_error_names_the_worker(tide, access_log, lambda_api):
    lambda_api.function_error = ("ScenarioError", "scenario.lua:7: the catalogue is empty")
    path = tide.write(COUNTED)
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:tide-load:$LATEST",
                   "--lambda-endpoint", lambda_api.url, env=aws_env(), timeout=60)
    assert res.rc == 5, str(res)
    assert len(lambda_api.calls) == 2 and all(c["verified"] and c["query"] == {"Qualifier": ["$LATEST"]}
                                              for c in lambda_api.calls), lambda_api.calls
    for i in (1, 2):
        assert f"worker {i}/2  segment {i}/2  host lambda:tide-load:$LATEST  requests 0  errors 0  exit 5  FAILED: " \
               "function error (Unhandled): ScenarioError: scenario.lua:7: the catalogue is empty" in res.stderr, \
            str(res)


def test_an_unreachable_endpoint_names_each_worker(tide, access_log, refused_url):
    path = tide.write(COUNTED)
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:tide-load",
                   "--lambda-endpoint", refused_url, env=aws_env(), timeout=60)
    assert res.rc == 5, str(res)
    failed = failed_lines(res)
    assert len(failed) == 2 and all("the invoke failed: Couldn't connect to server" in l for l in failed), str(res)
    assert_no_secret(res, SECRET)


def test_ctrl_c_stops_waiting_for_invocations(tide, access_log, lambda_api):
    lambda_api.hang = 30
    path = tide.write(COUNTED)
    run = tide.start(path, "--target", access_log.url, "--workers", "2", "--via", "lambda:tide-load",
                     "--lambda-endpoint", lambda_api.url, env=aws_env())
    deadline = time.monotonic() + 15
    while len(lambda_api.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lambda_api.calls) == 2, lambda_api.calls
    run.signal(signal.SIGINT)
    res = run.finish(timeout=20)
    assert res.rc == 130, str(res)
    assert res.elapsed < 15, str(res)
    assert res.stderr.count("the coordinator stopped waiting") == 2, str(res)
