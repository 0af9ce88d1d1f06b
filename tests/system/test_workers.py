"""tide run --workers N --via local: the load run by N `tide worker` child
processes, setup and teardown once in the coordinator, the workers' results
merged exactly; a failed worker named (exit 5), Ctrl-C forwarded (exit 130),
and a worker whose standard input closes stops."""

import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crud_server import CrudServer

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"

COUNTED = """
local http = require "tide.http"
local tide = require "tide"
return {
  options = %s,
  run = function(vu)
    local r = http.get(("%%s/?id=%%d"):format(vu.target, vu.id))
    if r.status ~= 200 then error("GET / answered " .. tostring(r.status)) end
    %s
  end,
}
"""

COUNT_OPTIONS = '{ executor = "per-vu-iterations", vus = 20, iterations = 50 }'
LONG_OPTIONS = '{ executor = "constant-vus", vus = 8, duration = "20s", graceful_stop = "2s" }'


def children(pid):
    """The PIDs whose parent is pid (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def wait_children(pid, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(pid)
        if len(kids) >= n:
            return kids
        time.sleep(0.05)
    pytest.fail(f"tide did not start {n} workers within {timeout}s (found {children(pid)})")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def slots(doc, name):
    """A metric's histogram as {slot index: count}."""
    flat = doc["metrics"][name]["histogram"]["slots"]
    return collections.Counter(dict(zip(flat[0::2], flat[1::2])))


def test_workers_split_exactly_and_merge_exactly(tide, access_log, tmp_path):
    docs = tmp_path / "docs"
    path = tide.write(COUNTED % (COUNT_OPTIONS, ""))
    res = tide.run(path, "--target", access_log.url, "--workers", "4", "--via", "local",
                   env={"TIDE_WORKER_DOCS": str(docs)}, timeout=90)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 1000, str(res)
    assert res.count("iterations") == 1000, str(res)
    lines = access_log.wait_log(1000, settle=0.2)
    assert len(lines) == 1000
    seen = collections.Counter(int(l.query["id"][0]) for l in lines)
    assert seen == {i: 50 for i in range(1, 21)}, seen
    for i in range(1, 5):
        assert f"worker {i}/4  segment {i}/4  host local  requests 250  errors 0  exit 0" in res.stderr, str(res)
    # the merged histogram is the bucket-by-bucket sum of the workers' own
    workers = [json.loads((docs / f"worker-{i}.json").read_text()) for i in range(1, 5)]
    assert sorted(w["segment"]["index"] for w in workers) == [1, 2, 3, 4]
    assert {w["run_id"] for w in workers} == {res.json["run_id"]}
    total = collections.Counter()
    for w in workers:
        total.update(slots(w, "http_req_duration"))
    assert slots(res.json, "http_req_duration") == total
    merged = res.json["metrics"]["http_req_duration"]["histogram"]
    assert merged["count"] == 1000 == sum(w["metrics"]["http_req_duration"]["histogram"]["count"] for w in workers)
    assert merged["min"] == min(w["metrics"]["http_req_duration"]["histogram"]["min"] for w in workers)
    assert merged["max"] == max(w["metrics"]["http_req_duration"]["histogram"]["max"] for w in workers)


def test_a_long_option_reaches_every_worker_whole(tide, access_log):
    """Options go to the workers as flags of any length: a 250-byte --target is not cut."""
    pad = "a" * 200
    path = tide.write(COUNTED % ('{ executor = "per-vu-iterations", vus = 2, iterations = 5 }', ""))
    res = tide.run(path, "--target", f"{access_log.url}/?pad={pad}&x=", "--workers", "2", "--via", "local",
                   timeout=90)
    assert res.rc == 0, str(res)
    lines = access_log.wait_log(10, settle=0.2)
    assert len(lines) == 10 and all(l.query["pad"] == [pad] for l in lines), lines


def test_workers_setup_and_teardown_once(tide, request):
    crud = CrudServer().start()
    request.addfinalizer(crud.stop)
    res = tide.run(EXAMPLES / "api-crud.lua", "--target", crud.url, "--vus", "4", "--iterations", "6",
                   "--workers", "2", "--via", "local", timeout=90)
    assert res.rc == 0, str(res)
    assert crud.ops["register"] == 1 and crud.ops["unregister"] == 1, crud.ops
    assert crud.ops["login"] == 1, crud.ops
    assert res.count("iterations") == 4 * 6, str(res)
    assert crud.ops["create"] == crud.ops["delete"] == 4 * 6
    assert crud.items == {} and crud.users == {}
    assert res.metric("checks")["values"]["rate"] == 1


def test_a_killed_worker_is_named_and_the_others_count(tide, access_log, tmp_path):
    docs = tmp_path / "docs"
    path = tide.write(COUNTED % (LONG_OPTIONS, "tide.sleep(0.05)"))
    run = tide.start(path, "--target", access_log.url, "--workers", "4", "--via", "local",
                     env={"TIDE_WORKER_DOCS": str(docs)})
    kids = wait_children(run.proc.pid, 4)
    time.sleep(4)   # 2 s to the common start, then some load
    victim = sorted(kids)[1]
    os.kill(victim, signal.SIGKILL)
    res = run.finish(timeout=60)
    assert res.rc == 5, str(res)
    assert "died (signal 9" in res.stderr, str(res)
    assert "1 of 4 workers failed: the results lack their share" in res.stderr, str(res)
    failed = [l for l in res.stderr.splitlines() if "FAILED" in l]
    assert len(failed) == 1, str(res)
    # the other three's documents are merged: their requests are in the results
    kept = sorted(docs.glob("worker-*.json"))
    assert len(kept) == 3, kept
    theirs = sum(json.loads(p.read_text())["metrics"]["http_reqs"]["values"]["count"] for p in kept)
    assert theirs > 0 and res.count("http_reqs") == theirs, str(res)


@pytest.mark.parametrize("via", ["local", "ssh"])
def test_ctrl_c_stops_every_worker_and_results_are_written(tide, access_log, request, via):
    env = None
    if via == "ssh":
        from conftest import TIDE
        sshd = request.getfixturevalue("sshd")
        via = f"ssh:{sshd.host}"
        env = {"TIDE_SSH_CONFIG": str(sshd.config), "TIDE_REMOTE_BIN": TIDE}
    path = tide.write(COUNTED % (LONG_OPTIONS, "tide.sleep(0.05)"))
    run = tide.start(path, "--target", access_log.url, "--workers", "3", "--via", via, env=env)
    kids = wait_children(run.proc.pid, 3)
    time.sleep(4 if via == "local" else 7)
    run.signal(signal.SIGINT)
    res = run.finish(timeout=30)
    assert res.rc == 130, str(res)
    assert res.elapsed < 15, str(res)
    assert not [k for k in kids if alive(k)], "a worker outlived the coordinator"
    assert res.count("http_reqs") > 0, str(res)
    assert res.json["state"]["interrupted"] is True, res.json["state"]
    for i in range(1, 4):
        assert f"worker {i}/3  segment {i}/3  host " in res.stderr and "FAILED" not in res.stderr, str(res)


def test_a_worker_whose_stdin_closes_stops(tide, access_log, tmp_path):
    from conftest import TIDE
    path = tide.write(COUNTED % (LONG_OPTIONS, "tide.sleep(0.05)"))
    job = {"source": path.read_text(), "path": str(path), "segment": [1, 1], "data_json": "null",
           "run_id": "stdin-test", "env": [], "options": [["target", access_log.url]]}
    proc = subprocess.Popen([TIDE, "worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        proc.stdin.write((json.dumps(job) + "\n").encode())
        proc.stdin.flush()
        time.sleep(2)
        assert proc.poll() is None, proc.stderr.read().decode()
        t0 = time.monotonic()
        proc.stdin.close()
        proc.stdin = None
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - t0 < 8, err.decode()
    assert b"standard input closed" in err, err.decode()
    doc = json.loads(out)
    assert doc["run_id"] == "stdin-test" and doc["metrics"]["http_reqs"]["values"]["count"] > 0
    figures = [json.loads(l) for l in err.decode().splitlines() if l.startswith('{"tide_worker"')]
    assert figures and figures[-1]["requests"] == doc["metrics"]["http_reqs"]["values"]["count"]


def test_workers_over_ssh(tide, access_log, sshd, tmp_path):
    from conftest import TIDE
    docs = tmp_path / "docs"
    path = tide.write(COUNTED % (COUNT_OPTIONS, ""))
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", f"ssh:{sshd.host}",
                   env={"TIDE_SSH_CONFIG": str(sshd.config), "TIDE_REMOTE_BIN": TIDE,
                        "TIDE_WORKER_DOCS": str(docs)}, timeout=90)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 1000, str(res)
    lines = access_log.wait_log(1000, settle=0.2)
    assert collections.Counter(int(l.query["id"][0]) for l in lines) == {i: 50 for i in range(1, 21)}
    for i in (1, 2):
        assert f"worker {i}/2  segment {i}/2  host {sshd.host}  requests 500  errors 0  exit 0" in res.stderr, str(res)
    assert len(list(docs.glob("worker-*.json"))) == 2


def test_an_unreachable_ssh_host_is_named(tide, access_log, sshd):
    path = tide.write(COUNTED % (COUNT_OPTIONS, ""))
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", f"ssh:{sshd.host},no-such-host.invalid",
                   env={"TIDE_SSH_CONFIG": str(sshd.config), "TIDE_REMOTE_BIN": __import__("conftest").TIDE},
                   timeout=90)
    assert res.rc == 5, str(res)
    assert "host no-such-host.invalid" in res.stderr and "exited with code 255" in res.stderr, str(res)
    assert res.count("http_reqs") == 500, str(res)   # the other worker's share


def test_bad_worker_options_are_named(tide):
    path = tide.write(COUNTED % (COUNT_OPTIONS, ""))
    res = tide.run(path, "--workers", "0")
    assert res.rc == 2 and "--workers" in res.stderr, str(res)
    res = tide.run(path, "--workers", "2", "--via", "lambda")
    assert res.rc == 2 and "'lambda'" in res.stderr, str(res)
    res = tide.run(path, "--workers", "2", "--via", "ssh:a,,b")
    assert res.rc == 2 and "'ssh:a,,b'" in res.stderr, str(res)
    res = tide.run(path, "--via", "local")
    assert res.rc == 2 and "needs --workers" in res.stderr, str(res)


def test_quiet_workers_print_no_summary_and_stale_documents_are_not_merged(tide, access_log, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "worker-2.json").write_text("{}")   # left by an earlier run: not this run's
    path = tide.write(COUNTED % (COUNT_OPTIONS, ""))
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--quiet",
                   env={"TIDE_WORKER_DOCS": str(docs)}, timeout=90)
    assert res.rc == 0, str(res)
    assert res.stdout == "", str(res)
    assert res.count("http_reqs") == 1000, str(res)


# ------------------------------------------------- the demo service, over workers

from demo_stack import WEBSERVER_SCENARIO, normal_stack  # noqa: E402,F401


def test_demo_service_over_two_workers(run_tide, normal_stack):  # noqa: F811
    """The webserver scenario with --workers 2 --via local: setup once here
    (the 20 load-test users created once), both workers use its data (each
    half of the users asks for its container), teardown once (the users
    deleted, the double-assignment check run on the whole run)."""
    users = "SELECT count(*) FROM users WHERE username LIKE 'load\\_test\\_user\\_%'"
    since = normal_stack.scalar("SELECT coalesce(max(id), 0) FROM assignments")
    res = run_tide(WEBSERVER_SCENARIO, *normal_stack.tide_args(), "--workers", "2", "--via", "local",
                   timeout=180)
    assert res.rc == 0, str(res)
    assert "worker 1/2" in res.stderr and "worker 2/2" in res.stderr, res.stderr
    assert res.count("iterations") == 20 and res.count("iteration_errors") == 0, str(res)
    checks = res.metric("checks")["values"]
    # 20 "assign accepted" + 20 "task succeeded" from the workers, and the
    # teardown's one "no container assigned twice" here
    assert checks["fails"] == 0 and checks["passes"] == 41, str(res)
    assert normal_stack.scalar(users) == 0  # teardown ran (once: a second would find no users)
    rows = normal_stack.query("SELECT username FROM assignments WHERE id > %s", (since,))
    assert sorted(r[0] for r in rows) == sorted(f"load_test_user_{n}" for n in range(1, 21)), rows


def test_ssh_copy_brings_tide_to_a_host_without_it(tide, access_log, sshd):
    """Over ssh with no tide on the remote PATH: without --ssh-copy the
    workers cannot start (named, exit 5); with it, this binary is copied to
    a temp path on the host, the load runs, and the copy is removed."""
    path = tide.write(COUNTED % (COUNT_OPTIONS, ""))
    env = {"TIDE_SSH_CONFIG": str(sshd.config), "TIDE_REMOTE_BIN": ""}
    before = set(os.listdir("/tmp"))
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", f"ssh:{sshd.host}",
                   env=env, timeout=90)
    assert res.rc == 5, str(res)  # `tide` is on no PATH the ssh login has
    res = tide.run(path, "--target", access_log.url, "--workers", "2", "--via", f"ssh:{sshd.host}", "--ssh-copy",
                   env=env, timeout=120)
    assert res.rc == 0, str(res)
    assert res.count("http_reqs") == 1000, str(res)
    copies = [f for f in set(os.listdir("/tmp")) - before if f.startswith("tide.")]
    assert copies == [], copies  # removed afterwards
    res = tide.run(path, "--target", access_log.url, "--ssh-copy")
    assert res.rc == 2 and "--ssh-copy" in res.stderr, str(res)
