"""`tide repl`: the real prompt driven through a pseudo-terminal (pexpect),
and the same sessions piped through standard input, against a server of
the tests' own that counts what it did."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from conftest import TIDE
from crud_server import CrudServer

API_CRUD = Path(__file__).resolve().parents[2] / "scenarios" / "examples" / "api-crud.lua"
PROMPT = r"(?:\r\n|\x1b\[K)> "
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def crud(request):
    server = CrudServer().start()
    request.addfinalizer(server.stop)
    return server


class Prompt:
    """A tide repl on a pseudo-terminal."""

    def __init__(self, tmp, *args, env=None, timeout=20):
        full = dict(os.environ, TERM="dumb", TIDE_HISTORY=str(tmp / "history"))
        full.pop("TIDE_PATH", None)
        full.update(env or {})
        self.p = pexpect.spawn(TIDE, ["repl", *map(str, args)], cwd=str(tmp), env=full,
                               encoding="utf-8", timeout=timeout, dimensions=(50, 200))

    def ready(self):
        self.p.expect("> ")

    def do(self, line):
        """Sends a line; returns what came before the next prompt."""
        self.p.sendline(line)
        self.p.expect(PROMPT)
        return ANSI.sub("", self.p.before)

    def leave(self):
        self.p.sendeof()
        self.p.expect(pexpect.EOF)
        self.p.close()
        return self.p.exitstatus

    def kill(self):
        if self.p.isalive():
            self.p.terminate(force=True)


@pytest.fixture
def prompt(tmp_path, request):
    made = []

    def make(*args, **kw):
        p = Prompt(tmp_path, *args, **kw)
        made.append(p)
        p.ready()
        return p

    request.addfinalizer(lambda: [p.kill() for p in made])
    return make


def piped(tmp_path, session, *args, timeout=60):
    env = dict(os.environ, TIDE_HISTORY=str(tmp_path / "history"))
    return subprocess.run([TIDE, "repl", *map(str, args)], input=session.encode(), capture_output=True,
                          cwd=tmp_path, env=env, timeout=timeout)


# ------------------------------------------------------------------ the prompt


def test_expressions_print(prompt):
    p = prompt()
    assert "42" in p.do("1 + 41")
    assert "12" in p.do("=3 * 4")
    assert '{ 1, 2, x = "y" }' in p.do('{1, 2, x = "y"}')
    assert p.do("x = 5").strip() == "x = 5"  # a statement prints nothing
    assert "5" in p.do("x")
    assert p.leave() == 0


def test_tab_completes_fields_and_methods(prompt):
    p = prompt()
    p.p.send("http.g\t")
    p.p.expect("http.get")
    p.p.send("\r")
    p.p.expect(PROMPT)
    assert "function" in p.p.before
    p.do('s = "abc"')
    p.p.send("s:up\t")  # a method through the string metatable's __index
    p.p.expect("s:upper")
    assert '"ABC"' in p.do("()")
    assert p.leave() == 0


def test_multi_line_function(prompt):
    p = prompt()
    p.p.sendline("function sq(x)")
    p.p.expect(">> ")
    p.p.sendline("  return x * x")
    p.p.expect(">> ")
    p.p.sendline("end")
    p.p.expect(PROMPT)
    assert "49" in p.do("sq(7)")
    assert p.leave() == 0


def test_history_written_and_read_back(prompt, tmp_path):
    p = prompt()
    p.do("remembered = 6 * 7")
    assert p.leave() == 0
    assert "remembered" in (tmp_path / "history").read_text()
    p = prompt()
    assert "nil" in p.do("remembered")
    p.p.send("\x1b[A\x1b[A")  # up twice: the line of the first session
    p.p.expect("remembered = 6 \\* 7")
    p.p.send("\r")
    p.p.expect(PROMPT)
    assert "42" in p.do("remembered")
    assert p.leave() == 0


def test_history_kept_to_1000_lines(prompt, tmp_path):
    lines = [f"x{i} = {i}" for i in range(1200)]
    (tmp_path / "history").write_text("_HiStOrY_V2_\n" + "\n".join(l.replace(" ", "\\040") for l in lines) + "\n")
    p = prompt()
    p.do("last = 1")
    assert p.leave() == 0
    kept = (tmp_path / "history").read_text().splitlines()
    assert len(kept) <= 1001 and kept[-1] == "last\\040=\\0401", kept[-3:]


def test_ctrl_c_clears_the_line_and_exit_leaves(prompt):
    p = prompt()
    p.p.send("this is not lua")
    p.p.sendintr()
    p.p.expect("> ")
    assert "7" in p.do("3 + 4")
    p.p.sendline("while true do end")
    time.sleep(0.5)
    p.p.sendintr()
    p.p.expect("interrupted")
    p.p.expect(PROMPT)
    assert "still" in p.do('"still here"')
    p.p.sendline("exit()")
    p.p.expect(pexpect.EOF)
    p.p.close()
    assert p.p.exitstatus == 0


def test_help_lists_helpers_and_usage(prompt):
    p = prompt()
    out = p.do("help()")
    for name in ("setup", "run", "teardown", "http.get", "celery.poll", "res:percentile", "res:save"):
        assert name in out
    assert "http.get(url [, opts])" in p.do("help(http.get)")
    assert p.leave() == 0


# ------------------------------------------------------------------ a scenario's life

SESSION = """setup()
res = run{vus = 5, iterations = 2}
res
res:percentile("http_req_duration", 95)
res.ok
res:save("saved.json")
teardown()
"""


def check_server(crud, iterations):
    assert crud.ops["register"] == crud.ops["login"] == crud.ops["unregister"] == 1, crud.ops
    for op in ("create", "read", "update", "delete"):
        assert crud.ops[op] == iterations, crud.ops
    assert crud.users == {} and crud.items == {}


def check_saved(path, iterations):
    doc = json.loads(path.read_text())
    assert doc["metrics"]["iterations"]["values"]["count"] == iterations
    assert doc["metrics"]["http_reqs"]["values"]["count"] == 4 * iterations
    return doc


def test_scenario_life_at_the_prompt(prompt, crud, tmp_path):
    p = prompt(API_CRUD, "--target", crud.url, timeout=60)
    assert "token" in p.do("setup()")
    assert crud.ops["register"] == crud.ops["login"] == 1
    p.do("res = run{vus = 5, iterations = 2}")
    summary = p.do("res")
    assert "per-vu-iterations, 5 VUs × 2 iterations" in summary
    assert "✓ checks: rate == 1" in summary and "POST /items" in summary
    p.p.send("res:per\t")  # a method of the result object, through its metatable
    p.p.expect("res:percentile")
    p95 = float(p.do('("http_req_duration", 95)').strip().splitlines()[-1])
    assert 0 < p95 < 5000
    assert "true" in p.do("res.ok")
    assert "10" in p.do('res:metric("http_reqs", {name = "POST /items"}).count')
    assert "true" in p.do('res:save("saved.json")')
    doc = check_saved(tmp_path / "saved.json", 10)
    assert abs(doc["metrics"]["http_req_duration"]["values"]["p(95)"] - p95) < 1e-6
    p.do("teardown()")
    check_server(crud, 10)
    assert p.leave() == 0


def test_the_same_session_piped(crud, tmp_path):
    res = piped(tmp_path, SESSION, API_CRUD, "--target", crud.url)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "\x1b" not in out and "> " not in out  # no prompts, no escape sequences
    assert "✓ checks: rate == 1" in out
    check_saved(tmp_path / "saved.json", 10)
    check_server(crud, 10)


def test_piped_error_is_exit_1_and_the_rest_still_runs(crud, tmp_path):
    session = SESSION.replace("res.ok\n", "res.ok\nerror('on purpose')\nlocal x = (\n1)\n")
    res = piped(tmp_path, session, API_CRUD, "--target", crud.url)
    assert res.returncode == 1, res.stderr.decode()
    assert "on purpose" in res.stderr.decode()
    check_server(crud, 10)  # teardown after the error still ran


def test_inline_function_with_preloaded_globals(crud, tmp_path):
    session = """r = http.post(target .. "/users", {json = {username = "u", password = "p"}})
r
data = {token = http.post(target .. "/auth/login", {json = {username = "u", password = "p"}}):json().token}
res = run{executor = "per-vu-iterations", vus = 3, iterations = 4, fn = function(vu, data)
  local r = http.post(target .. "/items", {json = {name = "n"}, headers = {Authorization = "Bearer " .. data.token}})
  check(r, {created = r.status == 201})
end}
res:metric("http_reqs").count
res:metric("checks").rate
"""
    res = piped(tmp_path, session, "--target", crud.url)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "<201 Created POST /users" in out and " ms " in out
    assert crud.ops["create"] == 12
    assert "12" in out.splitlines()[-2] and out.splitlines()[-1].strip() in ("1", "1.0")


def test_inline_function_capturing_a_local_is_refused(tmp_path):
    session = """local n = 3
do local n = 3; f = function() return n end end
run{fn = f, iterations = 1}
"""
    res = piped(tmp_path, session)
    assert res.returncode == 1
    assert "uses the local 'n' of the prompt" in res.stderr.decode()


def test_ctrl_c_during_run_returns_a_partial_result(prompt):
    p = prompt(timeout=30)
    p.p.sendline('res = run{fn = function() tide.sleep(0.05) end, vus = 2, duration = "60s", graceful_stop = "1s"}')
    time.sleep(2)
    t0 = time.monotonic()
    p.p.sendintr()
    p.p.expect(PROMPT)
    took = time.monotonic() - t0
    assert took < 1 + 1, took
    assert "true" in p.do("res.interrupted")
    n = float(p.do('res:metric("iterations").count').strip().splitlines()[-1])
    assert n > 10
    assert "7" in p.do("3 + 4")  # the prompt survived
    assert p.leave() == 0


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_a_message_and_the_prompt_goes_on(prompt, tmp_path, crud):
    no_setup = tmp_path / "nosetup.lua"
    no_setup.write_text("return { run = function() end }\n")
    (tmp_path / "hdir").mkdir()  # a history "file" that cannot be read (root reads any file)
    p = prompt(no_setup, "--target", crud.url, env={"TIDE_HISTORY": str(tmp_path / "hdir")})
    assert "cannot read the history" in p.p.before
    assert "repl:1: <eof> expected near 'end'" in p.do("for i = 1, 2 do print(i) end end")
    out = p.do('run{duraton = "1s"}')
    assert "duraton" in out
    assert "has no setup function" in p.do("setup()")
    out = p.do("t = {} for i = 1, 1000000 do t[i] = i end return t")
    assert "…" in out and len(out) < 5000
    assert "999960 more" in out
    assert "7" in p.do("3 + 4")
    p.p.sendeof()
    p.p.expect(pexpect.EOF)
    p.p.close()
    assert p.p.exitstatus == 0
    assert "cannot write the history" in p.p.before


def test_leaving_with_data_not_torn_down_says_so(crud, tmp_path):
    res = piped(tmp_path, "setup()\n", API_CRUD, "--target", crud.url)
    assert res.returncode == 0
    assert "teardown() was not called" in res.stderr.decode()
    assert crud.ops["unregister"] == 0  # not run unasked


def test_bad_command_line_is_exit_2(tmp_path):
    for args, named in ((["--target", "ftp://x"], "ftp://x"), (["--threads", "0"], "threads"),
                        (["--env", "NOEQUALS"], "NOEQUALS"), (["--bogus", "1"], "--bogus"),
                        (["no-such-scenario-here"], "no scenario 'no-such-scenario-here'")):
        res = piped(tmp_path, "", *args)
        assert res.returncode == 2 and named in res.stderr.decode(), (args, res.stderr.decode())
    res = piped(tmp_path, "", "--help")
    assert res.returncode == 0 and "usage: tide repl" in res.stdout.decode()


# ------------------------------------------------------------------ results and background loads


def test_results_compare_merge_html_and_pg(crud, tmp_path, pg):
    dsn = pg.fresh_db()
    session = f"""setup()
a = run{{vus = 2, iterations = 2}}
b = run{{vus = 3, iterations = 3, thresholds = {{http_req_duration = "p(95) < 0.001"}}}}
b.ok
c = a + b
c:metric("iterations").count
c:metric("http_reqs", {{method = "POST", status = "201"}}).count
a:compare(b, "100000%")
a:html("report.html")
a:save("pg:{dsn}")
teardown()
"""
    res = piped(tmp_path, session, API_CRUD, "--target", crud.url)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    lines = out.splitlines()
    assert "false" in lines  # b's threshold failed
    assert "13" in lines  # merged exactly: 4 + 9 iterations, printed as a count
    assert "no regression beyond the tolerance" in out
    assert "<svg" in (tmp_path / "report.html").read_text()
    stored = pg.query(dsn, "SELECT run_id FROM tide.runs")
    assert len(stored) == 1
    check_server(crud, 13)


def test_start_scale_stop(prompt, tmp_path, request):
    from httpserver import RecordingServer
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    p = prompt("--target", server.url, timeout=30)
    p.do('h = start{executor = "constant-vus", vus = 4, duration = "60s", '
         'fn = function(vu) http.get(target .. "/vu/" .. vu.id); tide.sleep(0.05) end}')
    time.sleep(1.5)
    first = re.search(r"(\d+) requests", p.do("h")).group(1)
    time.sleep(1)
    live = p.do("h")
    assert int(re.search(r"(\d+) requests", live).group(1)) > int(first) and "4 VUs" in live
    assert "a background load is running" in p.do("run{iterations = 1, fn = function() end}")
    n = len(server.seen)
    time.sleep(0.5)
    assert {s[1] for s in server.seen[n:]} == {f"/vu/{i}" for i in range(1, 5)}
    p.do("h:scale(1)")
    time.sleep(0.5)
    n = len(server.seen)
    time.sleep(1)
    assert {s[1] for s in server.seen[n:]} == {"/vu/1"}
    assert "vus must be 0..4" in p.do("h:scale(9)")
    t0 = time.monotonic()
    p.do("res = h:stop()")
    assert time.monotonic() - t0 < 5
    count = float(p.do('res:metric("http_reqs").count').strip().splitlines()[-1])
    assert count == len(server.seen)
    assert p.leave() == 0


def test_run_beyond_the_fd_limit_is_a_message(tmp_path):
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    session = 'run{vus = 500, iterations = 500, fn = function() end}\n"alive"\n'
    res = subprocess.run([TIDE, "repl"], input=session.encode(), capture_output=True, cwd=tmp_path,
                         timeout=60, preexec_fn=low_limit)
    assert res.returncode == 1
    assert "500 VUs need about 580 file descriptors, but the limit is 200" in res.stderr.decode()
    assert '"alive"' in res.stdout.decode()


# ------------------------------------------------- the demo service, step by step

from demo_stack import normal_stack  # noqa: E402,F401  (a module-scoped fixture)

DEMO_USERS = "SELECT count(*) FROM users"


def test_demo_service_walked_at_the_prompt(prompt, normal_stack, tmp_path):  # noqa: F811
    """The workflow the tool tide replaces was used for, against the demo
    service: set up, a small run, look at it, save it into PostgreSQL, tear
    down; the service's user table ends as it began."""
    users_before = normal_stack.scalar(DEMO_USERS)
    p = prompt("webserver", *normal_stack.tide_args(), timeout=120)
    p.do("setup()")
    assert normal_stack.scalar(DEMO_USERS) == users_before + 20  # the scenario's 20 load-test users
    p.do("res = run{vus = 5, iterations = 2}")
    summary = p.do("res")
    assert "per-vu-iterations, 5 VUs × 2 iterations" in summary, summary
    assert "✓ assign accepted  (10)" in summary and "✓ task succeeded  (10)" in summary, summary
    # the scenario checks for doubly assigned containers in teardown, which has not run yet
    assert "checks{check:no container assigned twice}: rate == 1  (observed no data)" in summary, summary
    p95 = float(p.do('res:percentile("http_req_duration", 95)').strip().splitlines()[-1])
    assert 0 < p95 < 10000
    assert "10" in p.do('res:metric("iterations").count')
    assert "true" in p.do(f'res:save("pg:{normal_stack.database_url}")')
    run_id = re.search(r"run (\S+-[0-9a-f]{6})", summary).group(1)
    stored = normal_stack.query("SELECT run_id FROM tide.runs WHERE run_id = %s", (run_id,))
    assert len(stored) == 1, (run_id, stored)
    assert normal_stack.scalar("SELECT count(*) FROM analytics.load_testing") >= 1
    p.do("teardown()")
    assert normal_stack.scalar(DEMO_USERS) == users_before
    assert p.leave() == 0
