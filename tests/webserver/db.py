"""Schema and connection helpers for the tide demo web service.

Used by app.py (gunicorn workers, threaded) and tasks.py (Celery prefork
children).  Connections are created lazily per process, so nothing is shared
across a fork.

CLI:  /usr/bin/python3 db.py init      (creates the schema, fills the pool)
      /usr/bin/python3 db.py check     (prints double assignments, exit 1 if any)
"""
import contextlib
import os
import sys
import threading

import psycopg2
import psycopg2.pool

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://demo:demo-password@127.0.0.1:5432/demo")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username   text PRIMARY KEY,
    name       text NOT NULL,
    pw_salt    bytea NOT NULL,
    pw_hash    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS containers (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    assigned_to text NULL,
    assigned_at timestamptz NULL
);
CREATE INDEX IF NOT EXISTS containers_assigned_to ON containers (assigned_to);
-- one row per successful assignment; released_at is set when the user is
-- deleted (the container goes back to the pool).  A container_id with two
-- distinct usernames among rows whose released_at IS NULL is a double
-- assignment.
CREATE TABLE IF NOT EXISTS assignments (
    id           serial PRIMARY KEY,
    container_id int NOT NULL,
    username     text NOT NULL,
    task_id      text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz NULL
);
CREATE INDEX IF NOT EXISTS assignments_container ON assignments (container_id);
CREATE INDEX IF NOT EXISTS assignments_username ON assignments (username);
"""

# Active double assignments: containers held by more than one user at once.
DOUBLE_ASSIGNMENTS_SQL = """
SELECT container_id, array_agg(DISTINCT username ORDER BY username)
  FROM assignments
 WHERE released_at IS NULL
 GROUP BY container_id
HAVING count(DISTINCT username) > 1
 ORDER BY container_id
"""


def connect():
    return psycopg2.connect(DATABASE_URL, connect_timeout=5,
                            application_name="tide-demo-%d" % os.getpid())


# --- per-process, thread-safe pool (gunicorn gthread workers) ---------------
_pool = None
_pool_pid = None
_pool_lock = threading.Lock()


def _get_pool():
    global _pool, _pool_pid
    pid = os.getpid()
    if _pool is None or _pool_pid != pid:
        with _pool_lock:
            if _pool is None or _pool_pid != pid:
                # minconn == maxconn: psycopg2 closes every connection
                # returned beyond minconn, which would mean a new connection
                # (and a SCRAM handshake) per request.  One connection per
                # gunicorn thread, opened on first use in this process.
                maxconn = int(os.environ.get("DEMO_DB_POOL", "8"))
                _pool = psycopg2.pool.ThreadedConnectionPool(
                    maxconn, maxconn, DATABASE_URL, connect_timeout=5,
                    application_name="tide-demo-web-%d" % pid)
                _pool_pid = pid
    return _pool


@contextlib.contextmanager
def pooled():
    """Yields a pooled connection inside a transaction (commit on success,
    rollback on error).  Broken connections are discarded."""
    pool = _get_pool()
    conn = pool.getconn()
    broken = False
    try:
        with conn:  # psycopg2: commit / rollback, does not close
            yield conn
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        broken = True
        raise
    finally:
        pool.putconn(conn, close=broken or conn.closed != 0)


# --- a single lazily-(re)opened connection (Celery prefork children) --------
_conn = None
_conn_pid = None


def process_conn():
    global _conn, _conn_pid
    if _conn is None or _conn.closed or _conn_pid != os.getpid():
        _conn = connect()
        _conn_pid = os.getpid()
    return _conn


def drop_process_conn():
    global _conn
    if _conn is not None:
        try:
            _conn.close()
        except Exception:
            pass
    _conn = None


def init_schema(n_containers):
    conn = connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(SCHEMA)
            cur.execute("SELECT count(*) FROM containers")
            have = cur.fetchone()[0]
            if have < n_containers:
                cur.execute(
                    "INSERT INTO containers (name) "
                    "SELECT 'container-' || lpad(g::text, 4, '0') "
                    "FROM generate_series(%s, %s) g",
                    (have + 1, n_containers))
    finally:
        conn.close()


def double_assignments():
    conn = connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(DOUBLE_ASSIGNMENTS_SQL)
            return cur.fetchall()
    finally:
        conn.close()


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "init":
        init_schema(int(os.environ.get("DEMO_CONTAINERS", "500")))
    elif cmd == "check":
        rows = double_assignments()
        for cid, users in rows:
            print("container %d assigned to %s" % (cid, ", ".join(users)))
        sys.exit(1 if rows else 0)
    else:
        sys.exit("usage: db.py init|check")
