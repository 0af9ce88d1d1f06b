"""A dedicated, empty PostgreSQL 15 for the results tests (tide --out pg,
tide db, tide report pg:...).

PgServer lives in a fresh directory under /tmp (the postgres user must reach
it, and PostgreSQL's unix socket path must stay short), listens on 127.0.0.1
on a free port with password (scram) authentication over TCP, and has a role
`tide` (password PASSWORD) owning the database `tidedb`. The unix socket is
for us only (trust, as the postgres superuser) to create roles and databases.

  server.start()        initdb on first use, then pg_ctl start (same port on restart)
  server.stop()         pg_ctl stop -m fast (falls back to signalling the postmaster PID)
  server.fresh_db()     a new, empty database owned by tide: its DSN
  server.query(dsn, sql, params)  rows of one statement (autocommit)

Everything is run through `runuser -u postgres --`, since PostgreSQL refuses
to run as root. Nothing but the postmaster we started is ever signalled.
"""

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from free_port import free_port  # noqa: E402  (tests/free_port.py: one helper for all)

PGBIN = Path("/usr/lib/postgresql/15/bin")
LOOPBACK = "127.0.0.1"
USER = "tide"
PASSWORD = "tide-secret-pw"
DATABASE = "tidedb"


def _as_postgres(*cmd, timeout=60, check=True):
    proc = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed (rc {proc.returncode})\n"
                           f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


class PgServer:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="tide-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "pg"
        self.sock = self.dir / "run"
        self.logfile = self.dir / "postgres.log"
        assert len(str(self.sock)) <= 80, self.sock
        self.port = None
        self.initialised = False
        self.dbs = itertools.count(1)

    # ------------------------------------------------------------ lifecycle

    def _init(self):
        for d in (self.data, self.sock):
            d.mkdir()
            shutil.chown(d, "postgres", "postgres")
        os.chmod(self.data, 0o700)
        self.logfile.write_text("")
        shutil.chown(self.logfile, "postgres", "postgres")
        _as_postgres(PGBIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync",
                     "--no-locale", "-E", "UTF8")
        (self.data / "pg_hba.conf").write_text(
            "local all all               trust\n"
            "host  all all 127.0.0.1/32  scram-sha-256\n")
        self.port = free_port()
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = '{LOOPBACK}'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.sock}'\nmax_connections = 50\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "password_encryption = 'scram-sha-256'\n")
        self.initialised = True

    def start(self):
        if not self.initialised:
            self._init()
            first = True
        else:
            first = False
        _as_postgres(PGBIN / "pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "30", "start")
        if first:
            self.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            self.psql(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        return self

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def running(self):
        pid = self.postmaster_pid()
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self):
        if not self.initialised or not self.running():
            return
        proc = _as_postgres(PGBIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "20", "stop",
                            check=False, timeout=40)
        if proc.returncode == 0 and not self.running():
            return
        pid = self.postmaster_pid()
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            if not pid:
                return
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.running():
                time.sleep(0.05)
            if not self.running():
                return

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --------------------------------------------------------------- access

    def psql(self, sql, db="postgres"):
        return _as_postgres(PGBIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                            "-p", self.port, "-U", "postgres", "-d", db, "-c", sql).stdout

    def dsn(self, db=DATABASE, password=PASSWORD):
        return f"postgresql://{USER}:{password}@{LOOPBACK}:{self.port}/{db}"

    def fresh_db(self):
        """A new, empty database owned by tide; returns its DSN."""
        name = f"{DATABASE}_{next(self.dbs)}"
        self.psql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.dsn(name)

    @staticmethod
    def query(dsn, sql, params=None):
        conn = psycopg2.connect(dsn, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def dump(self, dsn_db):
        """pg_dump --data-only of one database (by name), as text."""
        return _as_postgres(PGBIN / "pg_dump", "--data-only", "-h", self.sock, "-p", self.port,
                            "-U", "postgres", "-d", dsn_db).stdout
