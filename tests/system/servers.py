"""Servers the system tests point tide at: nginx, plus small Python servers for
failure modes. Everything listens on 127.0.0.1 on a free port, lives under a
temporary directory and is stopped by PID when the session ends."""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from httpserver import LOOPBACK, QuietHandler, ServerThread

# one free-port helper and one nginx configuration for tests and benchmarks
_TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_TESTS), str(_TESTS / "nginx")]
from free_port import free_port  # noqa: E402  (re-exported: servers.free_port)
from nginx_conf import write_conf  # noqa: E402


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------- nginx

LOG_RE = re.compile(r'^(\d+) (\d+) "([^"]*)" "([^"]*)" "([^"]*)"$')

BIG_SIZE = 2 * 1000 * 1000


class LogEntry:
    def __init__(self, line):
        m = LOG_RE.match(line)
        if not m:
            raise AssertionError(f"unparsable nginx access log line: {line!r}")
        self.connection = int(m.group(1))
        self.status = int(m.group(2))
        self.request = m.group(3)
        parts = self.request.split(" ")
        self.method = parts[0]
        self.uri = parts[1] if len(parts) > 1 else ""
        split = urlsplit(self.uri)
        self.path = split.path
        self.query = parse_qs(split.query)
        self.cookie = m.group(4)
        self.authorization = m.group(5)

    def __repr__(self):
        return f"<{self.connection} {self.status} {self.request!r} cookie={self.cookie!r}>"


class Nginx:
    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.proc = None
        self.port = None
        self.access_log = self.tmp / "access.log"
        self.error_log = self.tmp / "error.log"

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def start(self):
        www = self.tmp / "www"
        www.mkdir(parents=True, exist_ok=True)
        chunk = bytes(range(256)) * 4096
        data = (chunk * (BIG_SIZE // len(chunk) + 1))[:BIG_SIZE]
        (www / "big.bin").write_bytes(data)
        last_err = ""
        for _attempt in range(3):
            self.port = free_port()
            conf = write_conf(self.tmp, self.port, access_log=True, host=LOOPBACK)
            self.access_log.write_text("")
            self.proc = subprocess.Popen(
                ["nginx", "-e", str(self.error_log), "-c", str(conf), "-p", str(self.tmp)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_open(self.port):
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.stop()
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            log = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
            last_err = f"nginx exited with {self.proc.returncode}: {err}\n{log}"
        raise RuntimeError(f"could not start nginx: {last_err}")

    def stop(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        for sig, wait in ((signal.SIGQUIT, 5), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    # ---- access log

    def reset_log(self):
        """Truncates the access log (nginx opens it O_APPEND: it goes on at 0)."""
        with open(self.access_log, "r+") as f:
            f.truncate(0)

    def log_lines(self):
        text = self.access_log.read_text(errors="replace")
        return [LogEntry(l) for l in text.splitlines() if l.strip()]

    def wait_log(self, count=None, settle=0.3, timeout=5.0):
        """The access log entries once nginx has written them: nginx logs a
        request just after answering it, so a client may finish first. With
        count, waits until there are at least that many (then lets it settle
        for a moment to catch extra lines); without, waits `settle` seconds."""
        deadline = time.monotonic() + timeout
        while count is not None and time.monotonic() < deadline:
            if len(self.log_lines()) >= count:
                break
            time.sleep(0.05)
        time.sleep(settle)
        return self.log_lines()


# ------------------------------------------------------------------- httpbin


class Httpbin:
    """Debian's httpbin (python3-httpbin) under gunicorn: a third-party HTTP
    service that echoes what it received (/anything, /headers, /cookies),
    redirects (/redirect-to, /status), compresses (/gzip, /deflate, /brotli)
    and checks credentials (/basic-auth, /digest-auth)."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.proc = None
        self.port = None

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def start(self):
        log = self.tmp / "gunicorn.log"
        for _attempt in range(3):
            self.port = free_port()
            with open(log, "w") as err:
                self.proc = subprocess.Popen(
                    ["/usr/bin/python3", "-m", "gunicorn", "-b", f"{LOOPBACK}:{self.port}",
                     "-w", "2", "--log-level", "warning", "httpbin:app"],
                    cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_open(self.port):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"could not start httpbin: {log.read_text(errors='replace')}")

    def stop(self):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            os.kill(p.pid, sig)
            try:
                p.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue


# ------------------------------------------------------- raw socket servers


class _SocketServer:
    """Accepts on a loopback port in a thread; handle(conn) runs per connection."""

    name = "socket"

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.accepted = 0
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"{self.name}-server", daemon=True)

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def _loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._handle_safely, args=(conn,), daemon=True).start()

    def _handle_safely(self, conn):
        try:
            self.handle(conn)
        except OSError:
            pass

    def handle(self, conn):
        raise NotImplementedError

    @staticmethod
    def read_request(conn, limit=65536):
        """Reads up to the end of the request head (bounded in size and time)."""
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < limit:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass
            self.conns.clear()


class BlackholeServer(_SocketServer):
    """Accepts and never answers: clients time out."""

    name = "blackhole"

    def handle(self, conn):
        # keep the connection open (closed at stop); read so the client's
        # send never blocks, bounded by the stop flag
        conn.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                if not conn.recv(4096):
                    return
            except socket.timeout:
                continue


class GarbageServer(_SocketServer):
    """Answers any request with text that is not HTTP, then closes."""

    name = "garbage"

    def handle(self, conn):
        self.read_request(conn)
        conn.sendall(b"HELLO WORLD\r\n\r\n")
        conn.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
        conn.close()


class ResetServer(_SocketServer):
    """Reads the request, then closes with SO_LINGER 0: the client sees a RST."""

    name = "reset"

    def handle(self, conn):
        self.read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


# -------------------------------------------------------- flaky HTTP server


class FlakyServer(ServerThread):
    """HTTP/1.1 server for retry and concurrency tests (text/plain answers).

    GET /flaky?key=K&fail=N  the first N requests with that key answer 503, later ones 200
    GET /sleep?ms=N          answers 200 after N ms (at most 5000)
    Requests per key and their times are kept in .hits[key].
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.hits = {}
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                u = urlsplit(self.path)
                q = parse_qs(u.query)
                if u.path == "/flaky":
                    key = q.get("key", [""])[0]
                    fail = int(q.get("fail", ["0"])[0])
                    with outer.lock:
                        times = outer.hits.setdefault(key, [])
                        times.append(time.monotonic())
                        n = len(times)
                    if n <= fail:
                        self._send(503, f"attempt {n}: unavailable")
                    else:
                        self._send(200, f"attempt {n}: ok")
                elif u.path == "/sleep":
                    ms = min(int(q.get("ms", ["0"])[0]), 5000)
                    time.sleep(ms / 1000)
                    self._send(200, f"slept {ms}")
                else:
                    self._send(404, "not found")

        super().__init__(Handler, name="flaky-server")

    def hits_for(self, key):
        with self.lock:
            return list(self.hits.get(key, []))
