"""Flask app of the tide demo service (run under gunicorn, gthread workers).

Environment: ADMIN_USER / ADMIN_PASSWORD (admin / admin-password),
DEMO_SECRET (token HMAC key), DEMO_MAX_QUEUE (50), DEMO_TOKEN_TTL (43200 s),
plus everything tasks.py and db.py read.  See README.md for the API.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time

import psycopg2
import redis
from flask import Flask, jsonify, request

import db
import tasks

ADMIN_USER = os.environ.get("ADMIN_USER", "admin")
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "admin-password")
SECRET = (os.environ.get("DEMO_SECRET") or secrets.token_hex(32)).encode()
MAX_QUEUE = int(os.environ.get("DEMO_MAX_QUEUE", "50"))
TOKEN_TTL = int(os.environ.get("DEMO_TOKEN_TTL", str(12 * 3600)))
PBKDF2_ROUNDS = 1000   # deliberately cheap: the load test registers many users
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}"
                     r"-[0-9a-f]{12}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")

app = Flask(__name__)
app.json.sort_keys = False
broker = redis.Redis.from_url(tasks.REDIS_URL + "/0", socket_timeout=5,
                              socket_connect_timeout=5)


def error(status, msg):
    return jsonify({"error": msg}), status


# --- tokens: base64url(json payload) "." base64url(HMAC-SHA256) -------------
def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_token(sub, role):
    payload = _b64(json.dumps({"sub": sub, "role": role,
                               "exp": int(time.time()) + TOKEN_TTL,
                               "n": secrets.token_hex(4)},
                              separators=(",", ":")).encode())
    sig = _b64(hmac.new(SECRET, payload.encode(), hashlib.sha256).digest())
    return payload + "." + sig


def token_claims():
    """Claims of a valid bearer token, or None."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    tok = auth[7:].strip()
    payload, _, sig = tok.partition(".")
    if not payload or not sig:
        return None
    want = _b64(hmac.new(SECRET, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, sig):
        return None
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
        return None
    return claims


def require(admin):
    """(claims, None) or (None, error response)."""
    claims = token_claims()
    if claims is None:
        return None, error(401, "unauthorized")
    if admin and claims.get("role") != "admin":
        return None, error(403, "forbidden")
    return claims, None


def body():
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def text_field(data, key):
    v = data.get(key)
    return v if isinstance(v, str) and v != "" else None


def hash_pw(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt,
                               PBKDF2_ROUNDS)


# --- routes ------------------------------------------------------------------
@app.post("/admin/login")
def admin_login():
    data = body()
    user, pw = text_field(data, "username"), text_field(data, "password")
    if (user is not None and pw is not None
            and hmac.compare_digest(user.encode(), ADMIN_USER.encode())
            and hmac.compare_digest(pw.encode(), ADMIN_PASSWORD.encode())):
        return jsonify({"access_token": make_token(user, "admin")})
    return error(401, "bad credentials")


@app.post("/account/login")
def account_login():
    data = body()
    user, pw = text_field(data, "username"), text_field(data, "password")
    if user is None or pw is None:
        return error(400, "username and password required")
    with db.pooled() as conn, conn.cursor() as cur:
        cur.execute("SELECT pw_salt, pw_hash FROM users WHERE username = %s",
                    (user,))
        row = cur.fetchone()
    if row is None or not hmac.compare_digest(
            hash_pw(pw, bytes(row[0])), bytes(row[1])):
        return error(401, "bad credentials")
    return jsonify({"access_token": make_token(user, "user")})


@app.post("/account/register")
def register():
    _, err = require(admin=True)
    if err:
        return err
    data = body()
    user = text_field(data, "username")
    pw = text_field(data, "password")
    name = text_field(data, "name")
    if user is None or pw is None or name is None:
        return error(400, "username, password and name required")
    if not USERNAME_RE.match(user):
        return error(400, "bad username")
    salt = secrets.token_bytes(16)
    with db.pooled() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (username, name, pw_salt, pw_hash) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING "
                    "RETURNING username",
                    (user, name, salt, hash_pw(pw, salt)))
        created = cur.fetchone() is not None
    if not created:
        return error(409, "user exists")
    return jsonify({"username": user})


@app.get("/account/<username>")
def get_account(username):
    claims, err = require(admin=False)
    if err:
        return err
    if claims["role"] != "admin" and claims["sub"] != username:
        return error(403, "forbidden")
    with db.pooled() as conn, conn.cursor() as cur:
        cur.execute("SELECT u.name, c.name FROM users u LEFT JOIN containers c"
                    " ON c.assigned_to = u.username WHERE u.username = %s "
                    "ORDER BY c.id LIMIT 1", (username,))
        row = cur.fetchone()
    if row is None:
        return error(404, "no such user")
    return jsonify({"username": username, "name": row[0], "container": row[1]})


@app.delete("/account/<username>")
def delete_account(username):
    _, err = require(admin=True)
    if err:
        return err
    with db.pooled() as conn, conn.cursor() as cur:
        # Same lock order as the task (user row first), so no deadlock and no
        # assignment can slip in between freeing and deleting.
        cur.execute("SELECT 1 FROM users WHERE username = %s FOR UPDATE",
                    (username,))
        if cur.fetchone() is None:
            return error(404, "no such user")
        cur.execute("UPDATE containers SET assigned_to = NULL, "
                    "assigned_at = NULL WHERE assigned_to = %s", (username,))
        freed = cur.rowcount
        cur.execute("UPDATE assignments SET released_at = now() "
                    "WHERE username = %s AND released_at IS NULL",
                    (username,))
        cur.execute("DELETE FROM users WHERE username = %s", (username,))
    return jsonify({"username": username, "deleted": True,
                    "containers_freed": freed})


@app.post("/aws_container/assign_container")
def assign_container():
    claims, err = require(admin=False)
    if err:
        return err
    user = text_field(body(), "username")
    if user is None:
        return error(400, "username required")
    if claims["role"] != "admin" and claims["sub"] != user:
        return error(403, "forbidden")
    with db.pooled() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM users WHERE username = %s", (user,))
        known = cur.fetchone() is not None
    if not known:
        return error(400, "unknown user")
    if broker.llen(tasks.QUEUE) > MAX_QUEUE:
        return error(503, "busy")
    res = tasks.assign_container.apply_async(args=[user])
    return jsonify({"ID": res.id}), 202


@app.get("/status/<task_id>")
def status(task_id):
    if not UUID_RE.match(task_id):
        return error(400, "malformed task id")
    res = tasks.app.AsyncResult(task_id)
    state = res.state
    if state == "SUCCESS":
        output = res.result
    elif state == "FAILURE":
        output = str(res.result)
    else:
        output = None
    return jsonify({"state": state, "output": output})


@app.get("/health")
def health():
    try:
        with db.pooled() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        broker.ping()
    except (psycopg2.Error, redis.RedisError) as e:
        return jsonify({"status": "down", "error": str(e)}), 503
    return jsonify({"status": "ok", "queue": broker.llen(tasks.QUEUE)})


@app.errorhandler(404)
def _404(_):
    return error(404, "not found")


@app.errorhandler(405)
def _405(_):
    return error(405, "method not allowed")


@app.errorhandler(500)
def _500(_):
    return error(500, "internal error")
