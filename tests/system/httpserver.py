"""The plumbing the system tests' small HTTP servers share (servers.FlakyServer,
slow_server.SlowServer, test_celery.StatusServer, test_results.TaskServer).

    LoopbackServer  a ThreadingHTTPServer that copes with bursts of connects
                    and with clients that hang up
    QuietHandler    an HTTP/1.1 request handler that logs nothing and has
                    _send(status, body) for text or JSON answers
    ServerThread    a LoopbackServer on 127.0.0.1, port 0, served from a daemon
                    thread: .url, .port, start(), stop()

    RecordingServer a ServerThread that records every request (method, path,
                    headers, body) in .seen and answers 200 with the body it
                    read (as application/json), whatever the method
    HopServer       a ServerThread that records every request (repeated
                    headers kept) and redirects, sets cookies or fails on
                    request (tests of redirects and cookies)

A server subclasses ServerThread, keeps its own state, and passes the class
of its QuietHandler (whose do_GET reads and updates that state).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

LOOPBACK = "127.0.0.1"


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    # the default backlog (5) makes a burst of new connections (hundreds of
    # users connecting at once) wait for SYN retransmits (1 s), which would
    # look like server latency
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # a client that hangs up mid-answer (a load tester being stopped) is
        # no error of ours; anything else is still reported
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without TCP_NODELAY the body
    # waits for the client's delayed ACK (~40 ms per response)
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _send(self, status, body, content_type=None):
        """Answers with body: a str as text/plain, anything else (a dict or a
        list) as JSON (json.dumps, default separators); content_type overrides
        the Content-Type header only."""
        if isinstance(body, str):
            data = body.encode()
            default_type = "text/plain"
        else:
            data = json.dumps(body).encode()
            default_type = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type or default_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ServerThread:
    """A LoopbackServer answering with handler_class, on 127.0.0.1 and a free
    port, served by a daemon thread called name once start() is called."""

    def __init__(self, handler_class, name="http-server"):
        self.httpd = LoopbackServer((LOOPBACK, 0), handler_class)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name=name, daemon=True)

    @property
    def url(self):
        return f"http://{LOOPBACK}:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class RecordingServer(ServerThread):
    """Any method: records (method, path, headers, body) in .seen and answers
    200 with the body it read, as application/json (an echo for JSON)."""

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def _record(self):
                n = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(n) if n else b""
                with outer.lock:
                    outer.seen.append((self.command, self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_PURGE = _record

        super().__init__(Handler, name="recording-server")


class Seen:
    """One request a HopServer received: method, path (with the query),
    headers (a list of (name, value), repeats kept), body (bytes)."""

    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def all(self, name):
        """Every value of header name (any case), in the order received."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<{self.method} {self.path} {self.headers} {self.body!r}>"


class HopServer(ServerThread):
    """Any method, HEAD included: records every request (a Seen) in .seen
    and answers by its path:

      [/PATH]/redirect/STATUS?to=URL[&delay=MS][&cookie=NAME=VALUE]
                        STATUS with Location: URL (after MS milliseconds,
                        setting the cookie if asked)
      /set-cookie?NAME=VALUE&...   200, a Set-Cookie (Path=/) for each; an
                        empty value expires the cookie (Max-Age=0)
      /flaky/N/KEY      503 for the first N requests of KEY, then 200
      anything else     200 with {"method", "path", "cookie": [each Cookie
                        header], "body"} as JSON (no body for HEAD)
    """

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()
        self.flaky = {}
        outer = self

        class Handler(QuietHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(n) if n else b""
                seen = Seen(self.command, self.path, list(self.headers.items()), body)
                with outer.lock:
                    outer.seen.append(seen)
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query, keep_blank_values=True))
                parts = url.path.strip("/").split("/")
                status, extra = 200, []
                answer = {"method": self.command, "path": self.path, "cookie": seen.all("Cookie"),
                          "body": body.decode(errors="replace")}
                if len(parts) >= 2 and parts[-2] == "redirect":
                    time.sleep(int(query.get("delay", 0)) / 1000)
                    status = int(parts[-1])
                    extra.append(("Location", query["to"]))
                    if "cookie" in query:
                        extra.append(("Set-Cookie", query["cookie"] + "; Path=/"))
                    answer = "moved"
                elif parts[0] == "set-cookie":
                    for k, v in parse_qsl(url.query, keep_blank_values=True):
                        extra.append(("Set-Cookie", f"{k}={v}; Path=/" + ("; Max-Age=0" if v == "" else "")))
                elif parts[0] == "flaky" and len(parts) == 3:
                    with outer.lock:
                        left = outer.flaky.get(parts[2], int(parts[1]))
                        outer.flaky[parts[2]] = left - 1
                    if left > 0:
                        status = 503
                data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
                self.send_response(status)
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

        super().__init__(Handler, name="hop-server")
