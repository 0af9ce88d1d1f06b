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


def stop_process(p, signals=(signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL), wait=5):
    """Ends a server this module started (by its Popen), politely first."""
    if p is None or p.poll() is not None:
        return
    for sig in signals:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def truncate_log(path):
    """Empties a log nginx writes (it opens it O_APPEND: it goes on at 0)."""
    with open(path, "r+") as f:
        f.truncate(0)


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
        stop_process(self.proc)

    # ---- access log

    def reset_log(self):
        truncate_log(self.access_log)

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


# ------------------------------------------- nginx over TLS, HTTP/2 and gzip

TLS_CONF = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # the tests read: port, connection, status, request, bytes on the wire, protocol, codings asked for
    log_format more '$server_port $connection $status "$request" $bytes_sent $server_protocol "$http_accept_encoding"';
    access_log {dir}/access.log more;
    client_body_temp_path {dir}/client_body_temp;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    default_type text/plain;
    keepalive_timeout 300s;
    gzip on;
    gzip_types *;
    gzip_min_length 1;
    root {dir}/www;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    server {{
        listen {host}:{http} ;
        listen {host}:{h2c} http2;
        listen {host}:{https} ssl http2;
        location / {{ }}
    }}
    server {{
        listen {host}:{mtls} ssl;
        ssl_client_certificate {dir}/client.pem;
        ssl_verify_client on;
        location / {{ }}
    }}
}}
"""

MORE_LOG_RE = re.compile(r'^(\d+) (\d+) (\d+) "([^"]*)" (\d+) (\S+) "([^"]*)"$')


class MoreLogEntry:
    def __init__(self, line):
        m = MORE_LOG_RE.match(line)
        if not m:
            raise AssertionError(f"unparsable nginx access log line: {line!r}")
        self.port, self.connection, self.status = int(m.group(1)), int(m.group(2)), int(m.group(3))
        self.request, self.bytes_sent, self.protocol = m.group(4), int(m.group(5)), m.group(6)
        self.accept_encoding = m.group(7)

    def __repr__(self):
        return f"<{self.port} conn={self.connection} {self.status} {self.request!r} {self.protocol} {self.bytes_sent}B>"


def openssl_self_signed(directory, name, cn):
    """DIR/NAME.pem and DIR/NAME.key: a self-signed certificate (openssl req -x509) for cn, an IP address."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem"),
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=IP:{cn}"],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class NginxTls:
    """nginx with gzip on one http:// port (.url), HTTP/2 with prior knowledge
    on another (.h2c_url), HTTP/2 or 1.1 over TLS with a self-signed
    certificate (.https_url; server.pem) and TLS that requires a client
    certificate (.mtls_url; client.pem/client.key). Files under DIR/www."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.proc = None
        self.ports = {}
        self.access_log = self.tmp / "access.log"

    def _url(self, scheme, key):
        return f"{scheme}://{LOOPBACK}:{self.ports[key]}"

    url = property(lambda self: self._url("http", "http"))
    h2c_url = property(lambda self: self._url("http", "h2c"))
    https_url = property(lambda self: self._url("https", "https"))
    mtls_url = property(lambda self: self._url("https", "mtls"))
    server_cert = property(lambda self: self.tmp / "server.pem")
    client_cert = property(lambda self: self.tmp / "client.pem")
    client_key = property(lambda self: self.tmp / "client.key")

    def start(self):
        www = self.tmp / "www"
        www.mkdir(parents=True, exist_ok=True)
        openssl_self_signed(self.tmp, "server", LOOPBACK)
        openssl_self_signed(self.tmp, "client", LOOPBACK)
        (www / "hello").write_text("hello")
        lines = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(20000))
        (www / "text.txt").write_text(lines)
        last = ""
        for _attempt in range(3):
            self.ports = {k: free_port() for k in ("http", "h2c", "https", "mtls")}
            conf = self.tmp / "nginx.conf"
            conf.write_text(TLS_CONF.format(
                user="user root;" if os.geteuid() == 0 else "", dir=self.tmp, host=LOOPBACK, **self.ports))
            self.access_log.write_text("")
            self.proc = subprocess.Popen(["nginx", "-e", str(self.tmp / "error.log"), "-c", str(conf),
                                          "-p", str(self.tmp)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if all(port_open(p) for p in self.ports.values()):
                    return self
                time.sleep(0.05)
            self.stop()
            last = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        raise RuntimeError(f"could not start nginx over TLS: {last}")

    def stop(self):
        stop_process(self.proc)

    def reset_log(self):
        truncate_log(self.access_log)

    def wait_log(self, count, timeout=5.0):
        """The access log once it has at least count entries (nginx logs just after answering)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log.read_text(errors="replace")
            entries = [MoreLogEntry(l) for l in text.splitlines() if l.strip()]
            if len(entries) >= count or time.monotonic() > deadline:
                time.sleep(0.1)
                text = self.access_log.read_text(errors="replace")
                return [MoreLogEntry(l) for l in text.splitlines() if l.strip()]
            time.sleep(0.05)


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
        stop_process(self.proc, (signal.SIGTERM, signal.SIGKILL), wait=10)


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
