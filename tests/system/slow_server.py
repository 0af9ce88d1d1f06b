"""A small HTTP/1.1 server with controllable slowness, for the load-shape tests.

    GET /fast            answers 200 at once (unless a stall is on)
    GET /sleep?ms=N      answers 200 after N ms (at most 5000)
    GET /stall?s=S       starts a stall now: every request (this one excepted)
                         waits until S seconds from now before it is answered
    anything else        answers 200 at once (unless a stall is on)

Every request is recorded as (monotonic time of arrival, path) in .hits.
Listens on 127.0.0.1, port 0; runs in a thread; stop() shuts it down.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
MAX_SLEEP_MS = 5000
MAX_STALL_S = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the default backlog (5) makes a burst of new connections wait for SYN
    # retransmits (1 s), which would look like server latency
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # a client that hangs up mid-answer (a load tester being stopped) is
        # no error of ours; anything else is still reported
        import sys
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SlowServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.hits = []
        self.stall_until = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY the
            # body waits for the client's delayed ACK (~40 ms per response)
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _wait_stall(self):
                with outer.lock:
                    until = outer.stall_until
                delay = until - time.monotonic()
                if delay > 0:
                    time.sleep(min(delay, MAX_STALL_S))

            def do_GET(self):
                now = time.monotonic()
                u = urlsplit(self.path)
                q = parse_qs(u.query)
                with outer.lock:
                    outer.hits.append((now, u.path))
                if u.path == "/stall":
                    s = min(float(q.get("s", ["1"])[0]), MAX_STALL_S)
                    with outer.lock:
                        outer.stall_until = max(outer.stall_until, now + s)
                    self._send(200, f"stalling {s}s")
                    return
                self._wait_stall()
                if u.path == "/sleep":
                    ms = min(int(q.get("ms", ["0"])[0]), MAX_SLEEP_MS)
                    time.sleep(ms / 1000)
                    self._send(200, f"slept {ms}")
                else:
                    self._send(200, "ok")

        self.httpd = _Server((LOOPBACK, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="slow-server", daemon=True)

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def reset(self):
        with self.lock:
            self.hits = []
            self.stall_until = 0.0

    def hits_snapshot(self):
        with self.lock:
            return list(self.hits)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
