"""A small HTTP/1.1 server with controllable slowness, for the load-shape tests.

    GET /fast            answers 200 at once (unless a stall is on)
    GET /sleep?ms=N      answers 200 after N ms (at most 5000)
    GET /stall?s=S       starts a stall now: every request (this one excepted)
                         waits until S seconds from now before it is answered
    anything else        answers 200 at once (unless a stall is on)

Answers are text/plain. Every request is recorded as (monotonic time of
arrival, path) in .hits. Listens on 127.0.0.1, port 0; runs in a thread
(httpserver.ServerThread); stop() shuts it down.
"""

import threading
import time
from urllib.parse import parse_qs, urlsplit

from httpserver import QuietHandler, ServerThread

MAX_SLEEP_MS = 5000
MAX_STALL_S = 5.0


class SlowServer(ServerThread):
    def __init__(self):
        self.lock = threading.Lock()
        self.hits = []
        self.stall_until = 0.0
        outer = self

        class Handler(QuietHandler):
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

        super().__init__(Handler, name="slow-server")

    def reset(self):
        with self.lock:
            self.hits = []
            self.stall_until = 0.0

    def hits_snapshot(self):
        with self.lock:
            return list(self.hits)
