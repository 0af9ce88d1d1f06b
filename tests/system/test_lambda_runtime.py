"""tide lambda: the AWS Lambda custom runtime loop against a Runtime API
this test serves on 127.0.0.1 (RuntimeApi below): each invocation's event is
a worker job, its response the results document; failed jobs go to the error
endpoint with an errorType; the deadline header stops a long load in time;
and `make lambda`'s zip runs under chroot with nothing from the host."""

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from httpserver import QuietHandler, ServerThread
from test_workers import COUNTED

REPO = Path(__file__).resolve().parents[2]
API = "/2018-06-01/runtime"

COUNT_OPTIONS = '{ executor = "per-vu-iterations", vus = 5, iterations = 20 }'
LONG_OPTIONS = '{ executor = "constant-vus", vus = 4, duration = "60s", graceful_stop = "30s" }'


def job(source, target, run_id, segment=(1, 1), options=()):
    """A worker job, as the coordinator (src/coord.c, encode_job) makes it."""
    return json.dumps({"source": source, "path": "/nonexistent/scenario.lua", "scenario": "scenario.lua",
                       "segment": list(segment), "data_json": "null", "start_at": 0, "run_id": run_id,
                       "env": [], "options": [["target", target], *map(list, options)]}).encode()


class RuntimeApi(ServerThread):
    """The Lambda Runtime API: GET .../invocation/next hands out the queued
    events (waiting for one as Lambda does), POSTs to .../response, .../error
    and .../init/error are recorded in .answers (a queue of dicts)."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = queue.Queue()
        self.polls = queue.Queue()      # the time of each GET next
        self.stopping = threading.Event()
        self.count = 0
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path != API + "/invocation/next":
                    return self._send(404, "no such path")
                outer.polls.put(time.time())
                while not outer.stopping.is_set():
                    try:
                        event = outer.events.get(timeout=0.1)
                        break
                    except queue.Empty:
                        continue
                else:
                    return
                request_id, body, deadline = event
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                if deadline:
                    self.send_header("Lambda-Runtime-Deadline-Ms", str(int(deadline * 1000)))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:eu-west-1:123456789012:function:tide-load")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(n)
                parts = self.path[len(API):].strip("/").split("/")
                if parts == ["init", "error"]:
                    kind, request_id = "init_error", None
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    kind, request_id = parts[2], parts[1]
                else:
                    return self._send(404, "no such path")
                outer.answers.put({"kind": kind, "id": request_id, "body": body, "at": time.time(),
                                   "type": self.headers.get("Lambda-Runtime-Function-Error-Type"),
                                   "content_type": self.headers.get("Content-Type")})
                self._send(202, {"status": "OK"})

        super().__init__(Handler, name="lambda-runtime-api")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def invoke(self, body, deadline=None):
        """Queues an event; returns its request id."""
        self.count += 1
        request_id = f"req-{self.count}-8f2c1a"
        self.events.put((request_id, body, deadline))
        return request_id

    def answer(self, timeout):
        try:
            return self.answers.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no answer from tide lambda within {timeout}s")

    def stop(self):
        self.stopping.set()
        super().stop()


@pytest.fixture
def api(request):
    server = RuntimeApi().start()
    request.addfinalizer(server.stop)
    return server


@pytest.fixture
def lambda_proc(api, tmp_path, request):
    """tide lambda against api, its stderr in tmp_path/lambda.err."""
    from conftest import TIDE
    err = open(tmp_path / "lambda.err", "wb")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=api.address, TMPDIR=str(tmp))
    proc = subprocess.Popen([TIDE, "lambda"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)

    def finish():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err.close()
    request.addfinalizer(finish)
    proc.err_path = tmp_path / "lambda.err"
    proc.tmp = tmp
    return proc


def sanitized():
    from conftest import TIDE
    return b"libasan" in subprocess.run(["ldd", TIDE], capture_output=True).stdout


def stderr_of(proc):
    return proc.err_path.read_text(errors="replace")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_poll(api, timeout=30):
    """Waits for tide to ask for the next invocation (it is done with the last)."""
    try:
        return api.polls.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"tide lambda did not ask for the next invocation within {timeout}s")


def count(doc, name):
    m = doc["metrics"].get(name)
    return 0 if m is None else m["values"]["count"]


def test_invocations_in_a_row_on_one_process(api, lambda_proc, access_log, tmp_path):
    source = COUNTED % (COUNT_OPTIONS, "")
    wait_poll(api)
    rss = []
    for k in range(3):
        request_id = api.invoke(job(source, access_log.url, f"run-{k}"))
        got = api.answer(timeout=60)
        assert got["kind"] == "response" and got["id"] == request_id, (got, stderr_of(lambda_proc))
        assert got["content_type"] == "application/json"
        doc = json.loads(got["body"])
        assert doc["run_id"] == f"run-{k}"
        assert count(doc, "http_reqs") == 100 and count(doc, "iterations") == 100, doc["metrics"].keys()
        assert doc["state"]["interrupted"] is False
        assert len(access_log.wait_log(100 * (k + 1), settle=0.2)) == 100 * (k + 1)
        wait_poll(api)
        rss.append(rss_kb(lambda_proc.pid))
    assert lambda_proc.poll() is None
    print(f"RSS after each job (kB): {rss}; results document {len(got['body'])} bytes")
    # each job has a fresh Lua state and engine threads; the first job warms the allocator up.
    # (ASan's quarantine holds freed memory on purpose: there LeakSanitizer checks at exit)
    if not sanitized():
        assert rss[2] - rss[1] < 4096, f"RSS after each job (kB): {rss}"
        assert rss[2] - rss[0] < 8192, f"RSS after each job (kB): {rss}"
    # nothing is left behind by the jobs in their temporary directory
    assert not list(lambda_proc.tmp.iterdir())
    lambda_proc.send_signal(signal.SIGTERM)
    assert lambda_proc.wait(timeout=10) == 130, stderr_of(lambda_proc)   # LeakSanitizer would make it 23


def test_a_scenario_that_raises_is_an_error_with_its_type(api, lambda_proc, access_log):
    # bytes that are not UTF-8 in the message still make valid JSON (U+FFFD in their place):
    # a stray byte, a surrogate (ED A0 80) and an overlong form (E0 80 80)
    request_id = api.invoke(job('error("boom in the scenario: \\255 caf\u00e9 \\237\\160\\128 \\224\\128\\128.")\n',
                                access_log.url, "raises"))
    got = api.answer(timeout=30)
    assert got["kind"] == "error" and got["id"] == request_id, got
    assert got["type"] == "Tide.ScriptError"
    err = json.loads(got["body"].decode("utf-8"))
    assert err["errorType"] == "Tide.ScriptError"
    assert "boom in the scenario: \ufffd caf\u00e9 " in err["errorMessage"], err
    assert "\ufffd\ufffd\ufffd \ufffd\ufffd\ufffd." in err["errorMessage"], err
    assert lambda_proc.poll() is None


def test_a_malformed_event_is_an_error_and_the_loop_goes_on(api, lambda_proc, access_log):
    bad = api.invoke(b'{"source": "return {}", "segment": [1')
    missing = api.invoke(json.dumps({"source": "return {}"}).encode())
    bad_option = api.invoke(job(COUNTED % (COUNT_OPTIONS, ""), access_log.url, "bad-vus", options=[("vus", "-3")]))
    good = api.invoke(job(COUNTED % (COUNT_OPTIONS, ""), access_log.url, "after-bad"))
    answers = [api.answer(timeout=60) for _ in range(4)]
    assert [a["id"] for a in answers] == [bad, missing, bad_option, good], answers
    for a in answers[:3]:
        assert a["kind"] == "error" and a["type"] == "Tide.BadJob", a
        assert json.loads(a["body"])["errorType"] == "Tide.BadJob"
    assert "not a JSON object" in json.loads(answers[0]["body"])["errorMessage"]
    assert "lacks source, data_json, segment" in json.loads(answers[1]["body"])["errorMessage"]
    assert "-3" in json.loads(answers[2]["body"])["errorMessage"], answers[2]
    assert answers[3]["kind"] == "response", answers[3]
    assert count(json.loads(answers[3]["body"]), "http_reqs") == 100
    assert lambda_proc.poll() is None


def test_the_deadline_cuts_a_long_load_in_time(api, lambda_proc, access_log):
    wait_poll(api)
    deadline = time.time() + 5
    request_id = api.invoke(job(COUNTED % (LONG_OPTIONS, "tide.sleep(0.05)"), access_log.url, "cut"), deadline)
    got = api.answer(timeout=20)
    assert got["kind"] == "response" and got["id"] == request_id, (got, stderr_of(lambda_proc))
    assert got["at"] < deadline, f"answered {got['at'] - deadline:.2f}s after the deadline"
    doc = json.loads(got["body"])
    assert doc["state"]["interrupted"] is True
    # the part that ran: about 4 s of load (stopped at deadline - 1 s)
    assert 2.5 < doc["state"]["testRunDurationMs"] / 1000 < 5, doc["state"]
    reqs = count(doc, "http_reqs")
    assert reqs > 20
    assert len(access_log.wait_log(reqs, settle=0.3)) == reqs
    assert "ahead of the invocation's deadline" in stderr_of(lambda_proc)
    wait_poll(api)
    assert lambda_proc.poll() is None


def test_sigterm_ends_the_long_poll(api, lambda_proc):
    wait_poll(api)
    t0 = time.monotonic()
    lambda_proc.send_signal(signal.SIGTERM)
    assert lambda_proc.wait(timeout=5) == 130, stderr_of(lambda_proc)
    assert time.monotonic() - t0 < 3


def test_sigterm_during_a_job_posts_its_results_then_exits(api, lambda_proc, access_log):
    request_id = api.invoke(job(COUNTED % (LONG_OPTIONS, "tide.sleep(0.05)"), access_log.url, "sigterm"))
    time.sleep(2)
    lambda_proc.send_signal(signal.SIGTERM)
    got = api.answer(timeout=40)
    assert got["kind"] == "response" and got["id"] == request_id, got
    doc = json.loads(got["body"])
    assert doc["state"]["interrupted"] is True and count(doc, "http_reqs") > 0
    assert lambda_proc.wait(timeout=10) == 130, stderr_of(lambda_proc)


def test_init_failures(api, tmp_path):
    from conftest import TIDE
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    res = subprocess.run([TIDE, "lambda"], env=env, capture_output=True, text=True, timeout=10)
    assert res.returncode == 2 and "AWS_LAMBDA_RUNTIME_API is not set" in res.stderr, res
    res = subprocess.run([TIDE, "lambda"], env=dict(env, AWS_LAMBDA_RUNTIME_API="http://x/"),
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 2 and "is not HOST:PORT" in res.stderr, res
    res = subprocess.run([TIDE, "lambda", "--extra"], env=dict(env, AWS_LAMBDA_RUNTIME_API=api.address),
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 2, res
    got = api.answer(timeout=5)
    assert got["kind"] == "init_error" and got["type"] == "Tide.InitError", got
    assert "takes no arguments" in json.loads(got["body"])["errorMessage"]


def test_results_over_6_mb_are_an_error_not_a_truncated_document(api, lambda_proc, access_log):
    # thousands of request names, series of their own each (about 2.5 kB of JSON a name):
    # a document over Lambda's limit
    source = """
local http = require "tide.http"
return {
  options = { executor = "shared-iterations", vus = 4, iterations = 3000 },
  run = function(vu)
    local n = vu.iteration_global
    http.get(vu.target .. "/?n=" .. n, { name = ("request-name-%05d"):format(n) })
  end,
}
"""
    request_id = api.invoke(job(source, access_log.url, "large"))
    got = api.answer(timeout=90)
    assert got["kind"] == "error" and got["id"] == request_id, (got["kind"], got["body"][:300])
    assert got["type"] == "Tide.ResultsTooLarge"
    message = json.loads(got["body"])["errorMessage"]
    assert "6291456-byte" in message, message
    size = int(message.split("results document is ")[1].split(" ")[0])
    assert size > 6291456
    assert lambda_proc.poll() is None


# ------------------------------------------------------------- the zip


def lambda_zip():
    zip_path = REPO / "tide-lambda.zip"
    from conftest import TIDE
    if not zip_path.exists() or zip_path.stat().st_mtime < os.stat(TIDE).st_mtime:
        res = subprocess.run(["make", "-C", str(REPO), "lambda"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
    return zip_path


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_the_zip_runs_under_chroot_with_nothing_from_the_host(api, access_log, tmp_path):
    root = tmp_path / "root"
    task = root / "var" / "task"
    task.mkdir(parents=True)
    with zipfile.ZipFile(lambda_zip()) as z:
        z.extractall(task)
        for info in z.infolist():   # zipfile drops the mode bits
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(task / info.filename, mode)
    (root / "bin").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "sh")
    (root / "tmp").mkdir(mode=0o1777)
    env = {"AWS_LAMBDA_RUNTIME_API": api.address, "LAMBDA_TASK_ROOT": "/var/task", "PATH": "/bin"}
    err = open(tmp_path / "chroot.err", "wb")
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    proc = subprocess.Popen([chroot, str(root), "/var/task/bootstrap"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
        request_id = api.invoke(job(COUNTED % (COUNT_OPTIONS, ""), access_log.url, "chroot"))
        got = api.answer(timeout=60)
        said = (tmp_path / "chroot.err").read_text(errors="replace")
        assert got["kind"] == "response" and got["id"] == request_id, (got, said)
        doc = json.loads(got["body"])
        assert count(doc, "http_reqs") == 100 and doc["run_id"] == "chroot"
        assert len(access_log.wait_log(100, settle=0.2)) == 100
        assert proc.poll() is None, said
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()


@pytest.mark.parametrize("fields", [{"segment": None}, {"segment": 7}, {"options": ["vus", 3, ["target"]]}])
def test_tide_worker_names_a_job_with_fields_of_the_wrong_shape(fields, access_log):
    """The job reader tide lambda shares with tide worker (it crashed on these)."""
    from conftest import TIDE
    doc = json.loads(job(COUNTED % (COUNT_OPTIONS, ""), access_log.url, "shape"))
    if "options" in fields:
        fields = {"options": doc["options"] + fields["options"]}
    doc.update(fields)
    if doc["segment"] is None:
        del doc["segment"]
    proc = subprocess.Popen([TIDE, "worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(json.dumps(doc).encode() + b"\n")
        proc.stdin.flush()
        proc.wait(timeout=30)   # standard input stays open: its end would stop the load
        out, err = proc.stdout.read(), proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    if "options" in fields:   # pairs that are not [key, value] are left out
        assert proc.returncode == 0, err
        assert count(json.loads(out), "http_reqs") == 100
    else:
        assert proc.returncode == 2, err
        assert "lacks source, data_json, segment [I, N] or run_id" in err
