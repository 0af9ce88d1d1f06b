"""A misbehaving HTTP/1.1 server for the fault tests: it reads requests the
way a real server does (head, then a Content-Length body, keep-alive) and
then misbehaves in one chosen way, counting what it read so that tests can
compare tide's figures with the server's own.

    MisbehavingServer(mode, **params).start()   .url, .stop(), .stats()

Modes:
    ok                  answers every request 200 "ok" (keep-alive)
    reset-second        answers the first request of each connection, resets
                        (RST) the connection after reading the second
    reset-nth  n=N      resets after reading the Nth request (counted over
                        the whole server), answers the others
    reset-pct  pct=P    resets after reading P% of requests (every
                        round(100/P)-th, deterministic), answers the others
    cut-headers         sends "HTTP/1.1 200 OK\\r\\nContent-Ty", then closes
    cut-body            promises Content-Length 100, sends 10 bytes, closes
    never               reads the request and never answers
    slow                sends a whole answer at one byte per second
    endless-chunked     a chunked body that never ends (a chunk every 10 ms)
    continue            sends "100 Continue", then nothing
    garbage             answers with bytes that are not HTTP, then closes
    huge-headers        a 200 with 1 MB of headers (16 KB lines)
    huge-header-line    a 200 with one 1 MB header line
    chunked-trailers    a chunked 200 with chunk extensions and trailers (keep-alive)
    split  piece=N      a keep-alive 200 sent N bytes per packet (1 ms apart)
    continue-ok         "100 Continue", then the real 200 (keep-alive)
    http10              "HTTP/1.0 200" with no Content-Length: the body runs
                        until the server closes
    short-length        promises Content-Length 5, sends 10 bytes, keeps the
                        connection open
    no-body  code=S     a response that has no body (204, 304, or any status
                        to a HEAD) with 5 stray bytes after its head (keep-alive)
    close-each          every answer says Connection: close, then closes
    close-after  n=N    answers N requests per connection; reads the next
                        and closes (FIN) without answering
    idle-close  n=N     answers N requests per connection, closes right after
                        the Nth answer (no Connection: close)

stats() -> {"read": requests read, "reset": connections reset after
reading a request, "connections": accepted, "methods": {method: count}}.
Everything is bounded: a connection's handler gives up when the server
stops, and no answer is drawn out for more than 120 s.
"""

import socket
import struct
import time

from servers import _SocketServer
MAX_HEAD = 1 << 20
MAX_BODY = 16 << 20
STALL_LIMIT_S = 120


BODY = b"the body of a misbehaving server\n"
CHUNKED_TRAILERS = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                    b"Trailer: X-Checksum\r\n\r\n"
                    b"5;name=value\r\nhello\r\n"
                    b"6;quoted=\"a;b\";flag\r\n world\r\n"
                    b"1A\r\n" + b"z" * 26 + b"\r\n"
                    b"0;last\r\nX-Checksum: abc123\r\nX-Trailer-Two: 2\r\n\r\n")
SPLIT_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-One: 1\r\nX-Two: two\r\n"
                  b"X-Two: again\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
KEEP_ALIVE_MODES = ("chunked-trailers", "split", "continue-ok", "short-length", "no-body", "close-after",
                    "idle-close")


class MisbehavingServer(_SocketServer):
    name = "misbehave"

    def __init__(self, mode, **params):
        super().__init__()
        self.mode = mode
        self.params = params
        self.read = 0
        self.resets = 0
        self.methods = {}

    def stats(self):
        with self.lock:
            return {"read": self.read, "reset": self.resets, "connections": self.accepted,
                    "methods": dict(self.methods)}

    def handle(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._serve_connection(conn)

    def _recv(self, conn, buf):
        """More bytes into buf; False when the peer closed or the server stops."""
        conn.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return False
            buf += chunk
            return True
        return False

    def _read_request(self, conn, buf):
        """Reads one whole request (head and Content-Length body) off buf/conn;
        returns its method, or None when the connection ended first."""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD or not self._recv(conn, buf):
                return None
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = min(int(value.strip() or 0), MAX_BODY)
        del buf[:len(head) + 4]
        while len(buf) < length:
            if not self._recv(conn, buf):
                return None
        del buf[:length]
        method = head.split(b" ", 1)[0].decode(errors="replace")
        with self.lock:
            self.read += 1
            self.methods[method] = self.methods.get(method, 0) + 1
            nth = self.read
        return method, nth

    def _reset(self, conn):
        with self.lock:
            self.resets += 1
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _stall(self, seconds=STALL_LIMIT_S):
        self.stopping.wait(seconds)

    @staticmethod
    def _answer(conn, body=b"ok", extra=b""):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)

    # ------------------------------------------------------------- the modes

    def _serve_connection(self, conn):
        buf = bytearray()
        on_conn = 0
        while not self.stopping.is_set():
            got = self._read_request(conn, buf)
            if got is None:
                return
            method, nth = got
            on_conn += 1
            if not self._respond(conn, on_conn, nth, method):
                return

    def _should_reset(self, on_conn, nth):
        if self.mode == "reset-second":
            return on_conn == 2
        if self.mode == "reset-nth":
            return nth == int(self.params["n"])
        if self.mode == "reset-pct":
            every = max(1, round(100 / float(self.params["pct"])))
            return nth % every == 0
        return False

    def _respond(self, conn, on_conn, nth, method="GET"):
        """Misbehaves for one request; False when the connection is done."""
        mode = self.mode
        if mode in ("ok", "reset-second", "reset-nth", "reset-pct"):
            if self._should_reset(on_conn, nth):
                self._reset(conn)
                return False
            self._answer(conn)
            return True
        if mode in KEEP_ALIVE_MODES:
            return self._keep_alive_answer(conn, on_conn, method)
        if mode == "close-each":
            self._answer(conn, body=BODY, extra=b"Connection: close\r\n")
        elif mode == "http10":
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY * 50)
        elif mode == "cut-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
        elif mode == "cut-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        elif mode == "never":
            self._stall()
        elif mode == "slow":
            self._drip(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        elif mode == "endless-chunked":
            self._endless_chunks(conn)
        elif mode == "continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._stall()
        elif mode == "garbage":
            conn.sendall(b"HELLO WORLD\r\n\r\n")
        elif mode == "huge-headers":
            line = b"X-Filler: " + b"a" * (16 * 1024 - 12) + b"\r\n"
            self._answer(conn, extra=line * 64)
        elif mode == "huge-header-line":
            self._answer(conn, extra=b"X-Huge: " + b"a" * (1 << 20) + b"\r\n")
        else:
            raise ValueError(f"unknown mode {mode!r}")
        conn.shutdown(socket.SHUT_WR)
        self._stall(0.5)
        return False

    def _keep_alive_answer(self, conn, on_conn, method):
        """The modes whose answers leave the connection open (or close it on
        their own terms); False when the connection is done."""
        mode = self.mode
        if mode == "chunked-trailers":
            conn.sendall(CHUNKED_TRAILERS)
        elif mode == "split":
            self._send_split(conn, SPLIT_RESPONSE, int(self.params.get("piece", 1)))
        elif mode == "continue-ok":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._stall(0.05)
            self._answer(conn, body=BODY)
        elif mode == "short-length":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n0123456789")
        elif mode == "no-body":
            status = int(self.params.get("code", 204))
            head = b"HTTP/1.1 %d Whatever\r\n" % (200 if method == "HEAD" else status)
            if status != 204 or method == "HEAD":
                head += b"Content-Length: 5\r\n"
            conn.sendall(head + b"X-Kind: no-body\r\n\r\nSTRAY")
        elif mode in ("close-after", "idle-close"):
            n = int(self.params.get("n", 1))
            if mode == "close-after" and on_conn > n:
                conn.close()  # a FIN after reading the request, no answer
                return False
            self._answer(conn, body=BODY)
            if mode == "idle-close" and on_conn >= n:
                conn.close()
                return False
        return True

    def _send_split(self, conn, data, piece):
        for i in range(0, len(data), piece):
            if self.stopping.is_set():
                return
            conn.sendall(data[i:i + piece])
            self._stall(0.001)

    def _drip(self, conn, data):
        for i in range(len(data)):
            if self.stopping.is_set():
                return
            conn.sendall(data[i:i + 1])
            self._stall(1.0)

    def _endless_chunks(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + STALL_LIMIT_S
        while not self.stopping.is_set() and time.monotonic() < deadline:
            conn.sendall(b"10\r\n0123456789abcdef\r\n")
            self._stall(0.01)
