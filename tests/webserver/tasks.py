"""Celery app and the container-assignment task of the tide demo service.

Worker:  cd tests/webserver && /usr/bin/python3 -m celery -A tasks worker ...
Knobs (environment, read at import):
  REDIS_URL           redis://127.0.0.1:6379  (broker = db 0, results = db 1)
  DATABASE_URL        see db.py
  DEMO_TASK_SECONDS   0.1   time the task "works" while holding the row lock
  DEMO_RACE           0     1 = read a free container without a lock (bug)
  DEMO_FAIL_FRACTION  0     fraction of tasks that fail (deterministic per id)
  DEMO_READY_FILE     ""    written when the worker is ready to consume
"""
import hashlib
import os
import time

import psycopg2
from celery import Celery, signals
from celery.backends.redis import RedisBackend

import db

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
TASK_SECONDS = float(os.environ.get("DEMO_TASK_SECONDS", "0.1"))
RACE = os.environ.get("DEMO_RACE", "0") not in ("", "0", "false", "no")
FAIL_FRACTION = float(os.environ.get("DEMO_FAIL_FRACTION", "0"))
QUEUE = "celery"


class QuietRedisBackend(RedisBackend):
    """Redis result backend that does not SUBSCRIBE to every task it sends.

    The stock backend subscribes the sending process to a pub/sub channel
    per task id (for a later .get()).  The web app never blocks on results,
    it polls them, so those subscriptions would only pile up (one per
    assign, never consumed) in every gunicorn thread."""

    def on_task_call(self, producer, task_id):
        pass


app = Celery("tasks",
             broker=REDIS_URL + "/0",
             backend="tasks.QuietRedisBackend+" + REDIS_URL + "/1")
app.conf.update(
    task_default_queue=QUEUE,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=6 * 3600,
    worker_prefetch_multiplier=1,   # keeps LLEN celery close to the backlog
    worker_hijack_root_logger=False,
    broker_transport_options={"visibility_timeout": 3600},
    broker_pool_limit=32,
)


def fails(task_id):
    """Deterministic: the same task id always fails or always succeeds."""
    if FAIL_FRACTION <= 0:
        return False
    h = int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16)
    return h / 0x100000000 < FAIL_FRACTION


def _assign_locked(conn, username, task_id):
    """Correct: lock the user row (serialises tasks of one user, makes the
    idempotency check safe), then take one free container with
    FOR UPDATE SKIP LOCKED and update it in the same transaction."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM users WHERE username = %s FOR UPDATE",
                    (username,))
        if cur.fetchone() is None:
            raise RuntimeError("unknown user %s" % username)
        cur.execute("SELECT name FROM containers WHERE assigned_to = %s "
                    "ORDER BY id LIMIT 1", (username,))
        row = cur.fetchone()
        if row is not None:          # idempotent: same container again
            return row[0]
        cur.execute("SELECT id, name FROM containers "
                    "WHERE assigned_to IS NULL ORDER BY id "
                    "LIMIT 1 FOR UPDATE SKIP LOCKED")
        row = cur.fetchone()
        if row is None:
            raise RuntimeError("no free container")
        cid, name = row
        time.sleep(TASK_SECONDS)     # "work" while holding the row lock
        cur.execute("UPDATE containers SET assigned_to = %s, "
                    "assigned_at = now() WHERE id = %s", (username, cid))
        cur.execute("INSERT INTO assignments (container_id, username, task_id)"
                    " VALUES (%s, %s, %s)", (cid, username, task_id))
        return name


def _assign_racy(conn, username, task_id):
    """DEMO_RACE=1: check-then-act without a lock.  Concurrent tasks all see
    the same lowest free container and all of them take it."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM users WHERE username = %s", (username,))
        if cur.fetchone() is None:
            raise RuntimeError("unknown user %s" % username)
        cur.execute("SELECT name FROM containers WHERE assigned_to = %s "
                    "ORDER BY id LIMIT 1", (username,))
        row = cur.fetchone()
        if row is not None:
            return row[0]
        cur.execute("SELECT id, name FROM containers "
                    "WHERE assigned_to IS NULL ORDER BY id LIMIT 1")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("no free container")
    cid, name = row
    time.sleep(TASK_SECONDS)         # the race window
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE containers SET assigned_to = %s, "
                    "assigned_at = now() WHERE id = %s", (username, cid))
        cur.execute("INSERT INTO assignments (container_id, username, task_id)"
                    " VALUES (%s, %s, %s)", (cid, username, task_id))
    return name


@app.task(bind=True, name="tasks.assign_container")
def assign_container(self, username):
    task_id = self.request.id or ""
    if fails(task_id):
        time.sleep(TASK_SECONDS)
        raise RuntimeError("simulated failure (DEMO_FAIL_FRACTION)")
    try:
        conn = db.process_conn()
        if RACE:
            return _assign_racy(conn, username, task_id)
        return _assign_locked(conn, username, task_id)
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        db.drop_process_conn()       # reconnect on the next task
        raise


@signals.worker_process_init.connect
def _child_init(**_):
    db._conn = None      # never close a connection inherited over fork


@signals.worker_ready.connect
def _ready(**_):
    path = os.environ.get("DEMO_READY_FILE")
    if path:
        with open(path + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(path + ".tmp", path)
