"""Fixtures for tide's system tests.

Run with Debian's interpreter:  TIDE=/path/to/tide /usr/bin/python3 -m pytest -q -x tests/system

Every server is started here on a free 127.0.0.1 port under a pytest tmp dir
and stopped (by PID / by its own thread) at the end of the session.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from pg_server import PgServer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIDE = os.environ.get("TIDE") or str(REPO / "tide")


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="session")
def nginx(tmp_path_factory, request):
    """nginx on a free port; .url, .reset_log(), .log_lines(), .wait_log()."""
    server = servers.Nginx(tmp_path_factory.mktemp("nginx"))
    request.addfinalizer(server.stop)
    server.start()
    return server


@pytest.fixture(scope="session")
def httpbin(tmp_path_factory, request):
    """Debian's httpbin under gunicorn on a free port; .url."""
    server = servers.Httpbin(tmp_path_factory.mktemp("httpbin"))
    request.addfinalizer(server.stop)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    return server


@pytest.fixture(scope="session")
def nginx_tls(tmp_path_factory, request):
    """nginx with gzip, h2c, TLS (self-signed) and TLS requiring a client
    certificate (servers.NginxTls): .url, .h2c_url, .https_url, .mtls_url."""
    server = servers.NginxTls(tmp_path_factory.mktemp("nginx-tls"))
    request.addfinalizer(server.stop)
    try:
        server.start()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        pytest.fail(f"could not start nginx over TLS: {e}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, request):
    """An OpenSSH server on a free loopback port: `ssh -F sshd.config sshd.host ...`."""
    from sshd import Sshd
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    request.addfinalizer(server.stop)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        pytest.fail(f"could not start sshd: {e}", pytrace=False)
    return server


@pytest.fixture
def access_log(nginx):
    """nginx with its access log emptied for this test."""
    nginx.reset_log()
    return nginx


def _threaded(request, server):
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture(scope="session")
def blackhole(request):
    return _threaded(request, servers.BlackholeServer())


@pytest.fixture(scope="session")
def garbage(request):
    return _threaded(request, servers.GarbageServer())


@pytest.fixture(scope="session")
def reset_server(request):
    return _threaded(request, servers.ResetServer())


@pytest.fixture(scope="session")
def flaky(request):
    return _threaded(request, servers.FlakyServer())


@pytest.fixture(scope="module")
def pg(request):
    """A dedicated, empty PostgreSQL for the module (pg_server.PgServer)."""
    server = PgServer()
    request.addfinalizer(server.cleanup)
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(f"could not start PostgreSQL: {e}", pytrace=False)
    return server


@pytest.fixture
def refused_url():
    """A loopback URL with nothing listening."""
    return f"http://{servers.LOOPBACK}:{servers.free_port()}"


# ------------------------------------------------------- the two HTTP engines

# The modules that test tide.http: each of their tests runs once per engine
# (issue 15), "auto" (the lean HTTP/1.1 transport where it can, libcurl for
# the rest) and "curl" (libcurl for all), chosen by TIDE_HTTP_ENGINE in the
# environment every tide the test starts inherits. Test ids end in
# engine-auto / engine-curl.
ENGINE_MODULES = frozenset({
    "test_http.py", "test_http_exact.py", "test_redirects.py", "test_cookies.py", "test_compression.py",
    "test_auth.py", "test_files.py", "test_transport.py", "test_faults_http.py", "test_request_tags.py",
    "test_failures.py", "test_tls.py", "test_http2.py",
})
HTTP_ENGINES = ("auto", "curl")


def pytest_generate_tests(metafunc):
    if Path(metafunc.module.__file__).name in ENGINE_MODULES and "http_engine" in metafunc.fixturenames:
        metafunc.parametrize("http_engine", HTTP_ENGINES, indirect=True,
                             ids=[f"engine-{e}" for e in HTTP_ENGINES])


@pytest.fixture(autouse=True)
def http_engine(request, monkeypatch):
    """The engine this test's tide runs use: "auto" or "curl" in ENGINE_MODULES
    (set as TIDE_HTTP_ENGINE for the test), None elsewhere (the environment
    as it is)."""
    engine = getattr(request, "param", None)
    if engine:
        monkeypatch.setenv("TIDE_HTTP_ENGINE", engine)
    return engine


# --------------------------------------------------------------------- tide


@pytest.fixture(scope="session", autouse=True)
def tide_binary():
    if not (os.path.isfile(TIDE) and os.access(TIDE, os.X_OK)):
        pytest.exit(f"tide binary not found or not executable: {TIDE} (set TIDE=/path/to/tide; run make)",
                    returncode=4)
    return TIDE


class Result:
    def __init__(self, cmd, rc, stdout, stderr, json_path, elapsed, scenario):
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.json_path = json_path
        self.elapsed = elapsed
        self.scenario = scenario
        self.json = None
        if json_path and os.path.exists(json_path) and os.path.getsize(json_path) > 0:
            with open(json_path) as f:
                self.json = json.load(f)

    @property
    def metrics(self):
        assert self.json is not None, f"no JSON output written\n{self}"
        return self.json["metrics"]

    def metric(self, name):
        m = self.metrics
        assert name in m, f"metric {name!r} missing from the JSON output (has: {sorted(m)})\n{self}"
        return m[name]

    def count(self, name):
        """values.count of a counter or trend; 0 when the metric is absent
        (tide leaves out metrics without samples)."""
        m = self.metrics.get(name)
        return 0 if m is None else m["values"]["count"]

    def __str__(self):
        def tail(s, n=6000):
            return s if len(s) <= n else "...\n" + s[-n:]
        return (f"--- command: {' '.join(map(str, self.cmd))}\n--- rc: {self.rc}  elapsed: {self.elapsed:.2f}s\n"
                f"--- stdout:\n{tail(self.stdout)}\n--- stderr:\n{tail(self.stderr)}")

    # pytest shows an assertion message object through repr()
    __repr__ = __str__


class Tide:
    """Writes scenarios into the test's tmp dir and runs tide on them."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.counter = itertools.count(1)

    def write(self, text, name=None):
        n = next(self.counter)
        path = self.tmp / (name or f"scenario{n}.lua")
        path.write_text(text)
        return path

    def env(self, extra=None):
        env = dict(os.environ)
        env.pop("TIDE_PATH", None)
        env.update(extra or {})
        return env

    def command(self, scenario, args, json_out=True, name=None):
        """Builds the command line; scenario text is written to a file, a
        Path is used as is, None leaves SCENARIO out."""
        if isinstance(scenario, str):
            scenario = self.write(scenario, name)
        out = None
        cmd = [TIDE, "run"]
        if scenario is not None:
            cmd.append(str(scenario))
        cmd += [str(a) for a in args]
        if json_out:
            out = self.tmp / f"out{next(self.counter)}.json"
            cmd += ["--out", f"json={out}"]
        return cmd, out, scenario

    def run(self, scenario, *args, timeout=60, env=None, json_out=True, name=None):
        cmd, out, path = self.command(scenario, args, json_out, name)
        return self.exec(cmd, out, path, timeout=timeout, env=env)

    def exec(self, cmd, out=None, path=None, timeout=60, env=None):
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=self.tmp, env=self.env(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate(timeout=10)
            res = Result(cmd, None, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                         None, time.monotonic() - t0, path)
            pytest.fail(f"tide did not finish within {timeout}s (killed)\n{res}")
        return Result(cmd, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                      out, time.monotonic() - t0, path)

    def start(self, scenario, *args, env=None, json_out=True, name=None):
        """Starts tide in the background; finish with .finish(handle, timeout)."""
        cmd, out, path = self.command(scenario, args, json_out, name)
        proc = subprocess.Popen(cmd, cwd=self.tmp, env=self.env(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return Running(proc, cmd, out, path)


class Running:
    def __init__(self, proc, cmd, out, path):
        self.proc, self.cmd, self.out, self.path = proc, cmd, out, path
        self.t0 = time.monotonic()

    def signal(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def finish(self, timeout):
        """Waits at most timeout seconds; a hang kills tide and fails the test."""
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate(timeout=10)
            res = Result(self.cmd, None, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                         None, time.monotonic() - self.t0, self.path)
            pytest.fail(f"tide did not exit within {timeout}s after being asked to stop (killed)\n{res}")
        return Result(self.cmd, self.proc.returncode, stdout.decode(errors="replace"),
                      stderr.decode(errors="replace"), self.out, time.monotonic() - self.t0, self.path)

    def kill_if_running(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def tide(tmp_path, request):
    t = Tide(tmp_path)
    running = []
    orig_start = t.start

    def start(*a, **kw):
        r = orig_start(*a, **kw)
        running.append(r)
        return r

    t.start = start
    request.addfinalizer(lambda: [r.kill_if_running() for r in running])
    return t


@pytest.fixture
def run_tide(tide):
    """run_tide(scenario_text_or_path, *args, timeout=60) -> Result(rc, stdout, stderr, json)."""
    return tide.run
