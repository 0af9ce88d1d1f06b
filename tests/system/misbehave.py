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
    raw  name=NAME      sends RAW_ANSWERS[NAME] (framing libcurl and the HTTP
                        rules judge differently), then closes

stats() -> {"read": requests read, "reset": connections reset after
reading a request, "connections": accepted, "methods": {method: count}}.
Everything is bounded: a connection's handler gives up when the server
stops, and no answer is drawn out for more than 120 s.
"""

import gzip
import random
import re
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
# answers that break HTTP/1.1's framing rules (RFC 9112) in ways libcurl 7.88
# lets through or reports with its own words
RAW_ANSWERS = {
    "cr-in-header-name": b"HTTP/1.1 200 OK\r\nAb\rc: v\r\nContent-Length: 2\r\n\r\nok",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nokok",
    "length-overflow": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nok",
    "chunk-size-overflow": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nok",
    "chunked-and-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
}
# a transfer coding under the chunks: libcurl 7.88 decodes it whatever the
# request's compression, and so must the lean engine
_GZ = gzip.compress(b"decoded by both engines\n" * 4, mtime=0)
RAW_ANSWERS["gzip-transfer-coding"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n" +
                                       b"%x\r\n" % len(_GZ) + _GZ + b"\r\n0\r\n\r\n")
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
        elif mode == "raw":
            conn.sendall(RAW_ANSWERS[self.params["name"]])
        elif mode == "http10":
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY * 50)
        elif mode == "cut-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
        elif mode == "cut-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        elif mode == "never":
            self._stall()
        elif mode == "slow":
            self._send_split(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1, pause=1.0)
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

    def _send_split(self, conn, data, piece, pause=0.001):
        for i in range(0, len(data), piece):
            if self.stopping.is_set():
                return
            conn.sendall(data[i:i + piece])
            self._stall(pause)

    def _endless_chunks(self, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + STALL_LIMIT_S
        while not self.stopping.is_set() and time.monotonic() < deadline:
            conn.sendall(b"10\r\n0123456789abcdef\r\n")
            self._stall(0.01)


# ------------------------------------------------------------------ fuzzing

class FuzzingServer(MisbehavingServer):
    """Answers every request with a random response, valid or mutated, drawn
    from a seeded generator (one stream per connection, numbered in accept
    order): Content-Length, chunked (extensions, trailers) or close-delimited
    bodies, 1xx before the answer, bodies with no framing (204, 304, HEAD),
    gzip bodies whole or corrupt, sent whole or in small packets; or such a
    response mutated (cut, bytes flipped, inserted or dropped, LF for CRLF,
    bad lengths and chunk sizes, odd status lines, huge headers) after which
    the connection is closed (sometimes reset); now and then a stall past the
    client's timeout. Keeps the counts of MisbehavingServer (.stats())."""

    name = "fuzz"

    def __init__(self, seed, stall_s=1.5):
        super().__init__("fuzz")
        self.seed = seed
        self.stall_s = stall_s
        self.numbered = 0

    def handle(self, conn):
        with self.lock:
            self.numbered += 1
            n = self.numbered
        rng = random.Random(f"{self.seed}:{n}")
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            while not self.stopping.is_set():
                got = self._read_request(conn, buf)
                if got is None or not self._fuzz_answer(conn, rng, got[0]):
                    break
        finally:
            conn.close()

    def _fuzz_answer(self, conn, rng, method):
        """One answer; False when the connection is to end."""
        roll = rng.random()
        if roll < 0.01:
            self._stall(self.stall_s)
            return False
        data, keep = fuzz_valid_response(rng, method)
        if roll < 0.35:
            data = fuzz_mutate(rng, data)
            keep = rng.random() < 0.2   # mostly closed: its framing is anyone's guess
        self._send_pieces(conn, rng, data)
        if not keep and rng.random() < 0.15:
            self._reset(conn)
            return False
        return keep

    def _send_pieces(self, conn, rng, data):
        if rng.random() < 0.8 or not data:
            conn.sendall(data)
            return
        cuts = sorted(rng.sample(range(1, len(data) + 1), min(len(data), rng.randint(1, 40))))
        start = 0
        for cut in cuts + [len(data)]:
            if self.stopping.is_set():
                return
            conn.sendall(data[start:cut])
            start = cut
            self._stall(rng.choice((0, 0, 0.0005, 0.002)))


FUZZ_STATUSES = (200, 200, 200, 201, 202, 204, 206, 301, 302, 304, 400, 404, 418, 500, 503, 599)


def fuzz_body(rng):
    size = rng.choice((0, 1, 2, 10, 100, 1000, 4096, 16384, 70000, rng.randint(0, 200000)))
    pattern = bytes(rng.randrange(256) for _ in range(16)) if rng.random() < 0.3 else b"abcdefghij\n"
    return (pattern * (size // len(pattern) + 1))[:size]


def fuzz_headers(rng):
    lines = []
    for _ in range(rng.choice((0, 1, 2, 5, 20, 100))):
        name = rng.choice((b"X-Fuzz", b"Set-Cookie", b"Cache-Control", b"x-lower", b"X-Repeat", b"Link"))
        value = rng.choice((b"a", b"", b"v=1; Path=/", b" spaced ", b"\xc3\xa9t\xc3\xa9", b"x" * rng.randint(1, 3000)))
        lines.append(name + b": " + value + b"\r\n")
    return b"".join(lines)


def fuzz_chunked(rng, body):
    out, i = [], 0
    while i < len(body):
        n = min(len(body) - i, rng.choice((1, 7, 100, 4096, 65536)))
        ext = rng.choice((b"", b"", b";a=b", b";q=\"x;y\"", b";e"))
        out.append(b"%x%s\r\n%s\r\n" % (n, ext, body[i:i + n]))
        i += n
    trailers = rng.choice((b"", b"", b"X-Trailer: t\r\n", b"X-T1: 1\r\nX-T2: 2\r\n"))
    return b"".join(out) + b"0\r\n" + trailers + b"\r\n"


def fuzz_valid_response(rng, method):
    """A well-formed response to method, and whether the connection stays usable."""
    status = rng.choice(FUZZ_STATUSES)
    body = fuzz_body(rng)
    headers = fuzz_headers(rng)
    if rng.random() < 0.1 and body:
        body = gzip.compress(body, compresslevel=1)
        headers += b"Content-Encoding: gzip\r\n"
    if status in (301, 302):
        headers += b"Location: /elsewhere\r\n"
    prefix = b""
    if rng.random() < 0.05:
        prefix = rng.choice((b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                             b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"))
    no_body = method == "HEAD" or status in (204, 304)
    framing = rng.choice(("length", "length", "chunked", "close"))
    version = b"HTTP/1.0" if framing == "close" and rng.random() < 0.5 else b"HTTP/1.1"
    head = b"%s %d Fuzz\r\n" % (version, status) + headers
    if no_body:
        if method == "HEAD" and status not in (204, 304):
            head += b"Content-Length: %d\r\n" % len(body)
        return prefix + head + b"\r\n", True
    if framing == "length":
        return prefix + head + b"Content-Length: %d\r\n\r\n" % len(body) + body, True
    if framing == "chunked":
        return prefix + head + b"Transfer-Encoding: chunked\r\n\r\n" + fuzz_chunked(rng, body), True
    if version == b"HTTP/1.1":
        head += b"Connection: close\r\n"
    return prefix + head + b"\r\n" + body, False


def fuzz_mutate(rng, data):
    """data with one to three random faults."""
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(12)
        pos = rng.randrange(len(data) + 1)
        if kind == 0:
            data = data[:pos]
        elif kind == 1 and data:
            b = bytearray(data)
            for _ in range(rng.randint(1, 5)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        elif kind == 2:
            data = data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 20))) + data[pos:]
        elif kind == 3:
            data = data[:pos] + data[pos + rng.randint(1, 50):]
        elif kind == 4:
            data = data.replace(b"\r\n", b"\n", rng.randint(1, 5))
        elif kind == 5:
            data = re.sub(rb"Content-Length: \d+", rng.choice((b"Content-Length: 99999999999999999999",
                          b"Content-Length: -5", b"Content-Length: 12abc", b"Content-Length: 3\r\nContent-Length: 4",
                          b"Content-Length: 0")), data, count=1)
        elif kind == 6:
            data = re.sub(rb"\r\n\r\n([0-9a-f]+)", rng.choice((b"\r\n\r\nzz", b"\r\n\r\nffffffffffffffffff",
                          b"\r\n\r\n-1", b"\r\n\r\n 5")), data, count=1)
        elif kind == 7:
            data = re.sub(rb"^HTTP/1\.[01] \d+ \w*", rng.choice((b"HTTP/1.1 99999 X", b"HTTP/2.0 200 OK", b"ICY 200 OK",
                          b"HTTP/1.1 20 OK", b"http/1.1 200 ok", b"HTTP/1.1 200", b"HTTP/9.9 200 OK",
                          b"HTTP/1.1 101 Switching Protocols")), data, count=1)
        elif kind == 8:
            data = data.replace(b"\r\n", b"\r\n" + rng.choice((b" folded", b"\tx", b"No-Colon", b": empty",
                                                               b"X-Nul: a\0b")) + b"\r\n", 1)
        elif kind == 9:
            data = data.replace(b"\r\n", b"\r\nX-Huge: " + b"h" * rng.choice((70000, 120000, 300000)) + b"\r\n", 1)
        elif kind == 10:
            data = data.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n", 1)
        else:
            data = data.replace(b"\r\n", b"\r\nContent-Encoding: gzip\r\n", 1)
    return data
