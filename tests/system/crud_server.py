"""A small JSON API of the tests' own for the bundled examples
(scenarios/examples/): users register and log in for a bearer token, then
create, read, update and delete their items. Item ids are large integers,
so an id that went through a float ("/items/1.2345678901235e+15",
"/items/7.0") is a 404. It counts what it did, for tests to compare with
tide's figures."""

import json
import re
import secrets
import threading
from collections import Counter

from httpserver import QuietHandler, ServerThread

FIRST_ID = 1234567890123456
ITEM_PATH = re.compile(r"^/items/(\d+)$")


class CrudServer(ServerThread):
    def __init__(self, users=None):
        self.lock = threading.Lock()
        self.users = dict(users or {})      # username -> password
        self.tokens = {}                    # token -> username
        self.items = {}                     # id -> (owner, item)
        self.next_id = FIRST_ID
        self.ops = Counter()                # "create", "read", "update", "delete", "login", ...
        self.logins = Counter()             # username -> successful logins
        outer = self

        class Handler(QuietHandler):
            def _json_body(self):
                n = int(self.headers.get("Content-Length", 0) or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    return json.loads(raw) if raw else {}
                except ValueError:
                    return None

            def _user(self):
                auth = self.headers.get("Authorization", "")
                token = auth[7:] if auth.startswith("Bearer ") else None
                with outer.lock:
                    return outer.tokens.get(token)

            def _answer(self, status, body=None):
                if body is None:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(status, body)

            def do_POST(self):
                body = self._json_body()
                if not isinstance(body, dict):
                    return self._answer(400, {"error": "a JSON object please"})
                if self.path == "/users":
                    return self._register(body)
                if self.path == "/auth/login":
                    return self._login(body)
                if self.path == "/items":
                    return self._create(body)
                self._answer(404, {"error": "no such path"})

            def _register(self, body):
                name, password = body.get("username"), body.get("password")
                if not isinstance(name, str) or not isinstance(password, str):
                    return self._answer(400, {"error": "username and password"})
                with outer.lock:
                    if name in outer.users:
                        return self._answer(409, {"error": "taken"})
                    outer.users[name] = password
                    outer.ops["register"] += 1
                self._answer(201, {"username": name})

            def _login(self, body):
                name = body.get("username")
                with outer.lock:
                    if outer.users.get(name) != body.get("password") or name is None:
                        outer.ops["login failed"] += 1
                        return self._answer(401, {"error": "bad credentials"})
                    token = secrets.token_hex(16)
                    outer.tokens[token] = name
                    outer.ops["login"] += 1
                    outer.logins[name] += 1
                self._answer(200, {"token": token})

            def _create(self, body):
                user = self._user()
                if not user:
                    return self._answer(401, {"error": "log in first"})
                with outer.lock:
                    item_id = outer.next_id
                    outer.next_id += 1
                    item = {"id": item_id, "name": body.get("name"), "count": body.get("count")}
                    outer.items[item_id] = (user, item)
                    outer.ops["create"] += 1
                self._answer(201, item)

            def _item(self):
                m = ITEM_PATH.match(self.path)
                user = self._user()
                if not user:
                    self._answer(401, {"error": "log in first"})
                    return None
                with outer.lock:
                    found = m and outer.items.get(int(m.group(1)))
                if not found or found[0] != user:
                    self._answer(404, {"error": f"no item at {self.path}"})
                    return None
                return found[1]

            def do_GET(self):
                item = self._item()
                if item is not None:
                    with outer.lock:
                        outer.ops["read"] += 1
                    self._answer(200, item)

            def do_PUT(self):
                body = self._json_body()
                item = self._item()
                if item is None:
                    return
                if not isinstance(body, dict):
                    return self._answer(400, {"error": "a JSON object please"})
                with outer.lock:
                    item.update({k: body[k] for k in ("name", "count") if k in body})
                    outer.ops["update"] += 1
                self._answer(200, item)

            def do_DELETE(self):
                if self.path == "/users/me":
                    user = self._user()
                    with outer.lock:
                        if user:
                            outer.users.pop(user, None)
                            outer.ops["unregister"] += 1
                    return self._answer(204 if user else 401)
                item = self._item()
                if item is not None:
                    with outer.lock:
                        del outer.items[item["id"]]
                        outer.ops["delete"] += 1
                    self._answer(204)

        super().__init__(Handler, name="crud-server")
