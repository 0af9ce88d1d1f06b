"""The demo web service (tests/webserver: gunicorn + Celery + Redis +
PostgreSQL) as pytest fixtures for the system tests.

Each fixture starts its own stack with `demo.sh start DIR` in a fresh
directory under /tmp (the postgres user must reach it, and the path must be
short for PostgreSQL's socket) and stops it with `demo.sh stop DIR` (which
stops by PID) when the module is done. The fixtures yield a Stack: a dict of
the variables `demo.sh start` prints (TARGET, DATABASE_URL, ADMIN_USER,
ADMIN_PASSWORD, REDIS_URL), with helpers for querying PostgreSQL.

Use from a test module:   from demo_stack import normal_stack  # noqa: F401
"""

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pg_server import PgServer

REPO = Path(__file__).resolve().parents[2]
DEMO_SH = REPO / "tests" / "webserver" / "demo.sh"
WEBSERVER_SCENARIO = REPO / "scenarios" / "webserver.lua"
START_TIMEOUT = 90
STOP_TIMEOUT = 90

# variables of our own environment that would change how demo.sh starts
_KNOB_PREFIXES = ("DEMO_",)
_KNOB_NAMES = {"ADMIN_USER", "ADMIN_PASSWORD", "DATABASE_URL", "REDIS_URL", "PYTHONPATH"}


class Stack(dict):
    """The env dict of one running demo stack (.dir is where it lives)."""

    def __init__(self, directory, knobs):
        super().__init__()
        self.dir = directory
        self.knobs = dict(knobs)
        self.started = False

    # ------------------------------------------------------------ lifecycle

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(_KNOB_PREFIXES) and k not in _KNOB_NAMES}
        env.update(self.knobs)
        try:
            proc = subprocess.run([str(DEMO_SH), "start", self.dir], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"demo.sh start {self.dir} did not finish within {START_TIMEOUT}s\n"
                               f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}") from None
        finally:
            self.started = True   # stop() is idempotent: always worth calling
        if proc.returncode != 0:
            raise RuntimeError(f"demo.sh start {self.dir} failed (rc {proc.returncode})\n"
                               f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        for line in proc.stdout.splitlines():
            if "=" not in line:
                continue
            # lines are printf %q quoted: let shlex undo the quoting
            words = shlex.split(line)
            if len(words) == 1 and "=" in words[0]:
                key, value = words[0].split("=", 1)
                self[key] = value
        missing = {"TARGET", "DATABASE_URL", "ADMIN_USER", "ADMIN_PASSWORD"} - set(self)
        if missing:
            raise RuntimeError(f"demo.sh start printed no {sorted(missing)}:\n{proc.stdout}")
        return self

    def stop(self):
        if not self.started:
            return
        self.started = False
        proc = subprocess.run([str(DEMO_SH), "stop", self.dir], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=STOP_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"demo.sh stop {self.dir} failed (rc {proc.returncode}):\n{proc.stderr}")
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------- helpers

    @property
    def target(self):
        return self["TARGET"]

    @property
    def database_url(self):
        return self["DATABASE_URL"]

    def log(self, name, tail=4000):
        """The tail of one of the stack's logs (celery, gunicorn, postgres, redis)."""
        path = Path(self.dir) / f"{name}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError as e:
            return f"({path}: {e})"
        return text[-tail:]

    def query(self, sql, params=None):
        """Rows of one statement (autocommit)."""
        return PgServer.query(self.database_url, sql, params)

    def execute(self, sql, params=None):
        self.query(sql, params)

    def scalar(self, sql, params=None):
        rows = self.query(sql, params)
        assert len(rows) == 1 and len(rows[0]) == 1, f"{sql!r} returned {rows!r}"
        return rows[0][0]

    def tide_args(self, admin_password=None, database_url=True):
        """--target/--env arguments for scenarios/webserver.lua."""
        args = ["--target", self.target,
                "--env", f"ADMIN_USER={self['ADMIN_USER']}",
                "--env", f"ADMIN_PASSWORD={admin_password if admin_password is not None else self['ADMIN_PASSWORD']}"]
        if database_url:
            args += ["--env", f"DATABASE_URL={self.database_url}"]
        return args


def start_stack(request, **knobs):
    """Starts a stack with the DEMO_* knobs given; stops it when `request`'s
    scope ends (finalizer registered before starting, so a half-started
    stack is stopped too)."""
    directory = tempfile.mkdtemp(prefix="tide-demo-", dir="/tmp")
    os.chmod(directory, 0o755)
    assert len(directory) <= 80, directory
    stack = Stack(directory, {k: str(v) for k, v in knobs.items()})
    request.addfinalizer(stack.stop)
    try:
        stack.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    return stack


@pytest.fixture(scope="module")
def normal_stack(request):
    """The demo service as shipped: correct locking, no failures."""
    yield start_stack(request)


@pytest.fixture(scope="module")
def racy_stack(request):
    """DEMO_RACE=1: tasks running together hand out the same container."""
    yield start_stack(request, DEMO_RACE=1)


@pytest.fixture(scope="module")
def failing_stack(request):
    """DEMO_FAIL_FRACTION=0.3: about 30 % of tasks end in FAILURE."""
    yield start_stack(request, DEMO_FAIL_FRACTION=0.3)


@pytest.fixture(scope="module")
def slow_stack(request):
    """DEMO_TASK_SECONDS=1: each task holds its row lock for a second, so 20
    tasks on the 4 worker processes take about 5 s."""
    yield start_stack(request, DEMO_TASK_SECONDS=1)
