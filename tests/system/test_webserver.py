"""scenarios/webserver.lua against the demo service (gunicorn + Celery + Redis +
PostgreSQL, tests/webserver): the flow the old Python load test had, the
double-assignment invariant checked in PostgreSQL, failing tasks, setup
errors and Ctrl-C."""

import signal
import time

from demo_stack import (WEBSERVER_SCENARIO, failing_stack, normal_stack, racy_stack,  # noqa: F401
                        slow_stack)

LOAD_USERS = "SELECT count(*) FROM users WHERE username LIKE 'load\\_test\\_user\\_%'"


def values(res, key):
    return res.metric(key)["values"]


def load_users(stack):
    return stack.scalar(LOAD_USERS)


def last_assignment_id(stack):
    return stack.scalar("SELECT coalesce(max(id), 0) FROM assignments")


def test_webserver_scenario_passes(run_tide, normal_stack):
    since = last_assignment_id(normal_stack)
    res = run_tide(WEBSERVER_SCENARIO, *normal_stack.tide_args(), timeout=120)
    assert res.rc == 0, str(res)

    assert res.count("http_reqs{name:assign}") >= 20, str(res)
    assert res.count("iterations") == 20, str(res)
    assert res.count("iteration_errors") == 0, str(res)
    failed = values(res, "celery_task_failed")
    assert failed["rate"] == 0 and failed["passes"] == 0 and failed["fails"] == 20, str(res)
    checks = values(res, "checks")
    assert checks["fails"] == 0 and checks["rate"] == 1, str(res)
    # 20 "assign accepted" + 20 "task succeeded" + 1 "no container assigned twice"
    assert checks["passes"] == 41, str(res)
    for name in ("assign accepted", "task succeeded", "no container assigned twice"):
        m = res.metric(f"checks{{check:{name}}}")
        assert m["values"]["fails"] == 0 and m["values"]["passes"] >= 1, f"{name}\n{res}"
        assert all(t["ok"] for t in m["thresholds"].values()), f"{name}\n{res}"
    assert res.count("celery_polls") >= 20, str(res)
    assert res.count("celery_task_duration") == 20, str(res)

    # teardown deleted the users it registered
    assert load_users(normal_stack) == 0, str(res)
    # each of the 20 users got its own container, and only one
    rows = normal_stack.query(
        "SELECT username, container_id, released_at IS NOT NULL FROM assignments WHERE id > %s", (since,))
    assert len(rows) == 20, rows
    assert {r[0] for r in rows} == {f"load_test_user_{n}" for n in range(1, 21)}, rows
    assert len({r[1] for r in rows}) == 20, rows
    assert all(r[2] for r in rows), f"deleting the users should have released their containers: {rows}"


def test_racy_service_is_caught(run_tide, racy_stack):
    res = run_tide(WEBSERVER_SCENARIO, *racy_stack.tide_args(), timeout=120)
    assert res.rc == 1, str(res)
    assert "container " in res.stderr and " was assigned to load_test_user_" in res.stderr, str(res)
    lines = [l for l in res.stderr.splitlines() if " was assigned to " in l]
    assert lines, str(res)
    # every line names two or more distinct users
    for line in lines:
        users = line.split(" was assigned to ", 1)[1].split(", ")
        assert len(users) >= 2 and len(set(users)) == len(users), line
    assert "✗ no container assigned twice" in res.stdout, str(res)
    m = res.metric("checks{check:no container assigned twice}")
    assert m["values"]["fails"] == 1 and m["values"]["passes"] == 0, str(res)
    assert not m["thresholds"]["rate == 1"]["ok"], str(res)
    # the lines agree with the database
    doubles = racy_stack.query("SELECT container_id FROM assignments GROUP BY container_id "
                               "HAVING count(DISTINCT username) > 1")
    assert len(doubles) == len(lines), (doubles, lines)
    for (cid,) in doubles:
        assert f"container {cid} was assigned to " in res.stderr, (cid, res.stderr)
    # the tasks themselves all "succeeded": only the database check fails
    assert values(res, "celery_task_failed")["passes"] == 0, str(res)


def test_failed_tasks_are_counted(run_tide, failing_stack):
    # 40 users: with a 30 % failure fraction, P(no failure at all) = 0.7**40 ≈ 6e-7
    res = run_tide(WEBSERVER_SCENARIO, *failing_stack.tide_args(), "--vus", "40", timeout=120)
    assert res.rc == 1, str(res)
    failed = values(res, "celery_task_failed")
    assert failed["passes"] > 0, str(res)
    assert failed["passes"] + failed["fails"] == 40, str(res)
    succeeded = values(res, "checks{check:task succeeded}")
    assert succeeded["fails"] == failed["passes"], str(res)
    assert succeeded["passes"] == failed["fails"], str(res)
    assert "✗ task succeeded" in res.stdout, str(res)
    assert not res.metric("checks{check:task succeeded}")["thresholds"]["rate == 1"]["ok"], str(res)
    # only the failures: the invariant holds and the users are gone
    assert values(res, "checks{check:no container assigned twice}")["fails"] == 0, str(res)
    assert values(res, "checks{check:assign accepted}")["fails"] == 0, str(res)
    assert load_users(failing_stack) == 0, str(res)


def test_wrong_admin_password_stops_in_setup(run_tide, normal_stack):
    since = last_assignment_id(normal_stack)
    res = run_tide(WEBSERVER_SCENARIO, *normal_stack.tide_args(admin_password="nope"), timeout=60)
    assert res.rc == 3, str(res)
    assert "401" in res.stderr, str(res)
    assert "bad credentials" in res.stderr, str(res)
    assert "admin login failed" in res.stderr, str(res)
    # no load: no assign request, no user, no assignment
    if res.json is not None:
        assert res.count("http_reqs") == 0, str(res)
        assert res.count("iterations") == 0, str(res)
    assert load_users(normal_stack) == 0, str(res)
    assert last_assignment_id(normal_stack) == since, str(res)


def test_ctrl_c_runs_teardown(tide, slow_stack):
    run = tide.start(WEBSERVER_SCENARIO, *slow_stack.tide_args(), "--vus", "20")
    # setup registers the 20 users first: wait until they exist, then until
    # the load is under way
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and run.proc.poll() is None and load_users(slow_stack) < 20:
        time.sleep(0.1)
    assert run.proc.poll() is None, f"tide ended before SIGINT\n{run.finish(5)}"
    time.sleep(1.5)
    assert run.proc.poll() is None, f"tide ended before SIGINT\n{run.finish(5)}"
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    res = run.finish(timeout=30)
    took = time.monotonic() - sent
    assert res.rc == 130, str(res)
    assert took < 30, f"{took:.1f}s\n{res}"
    assert "iterations" in res.stdout and "thresholds" in res.stdout, f"no summary after SIGINT\n{res}"
    assert res.json is not None, f"JSON not written after SIGINT\n{res}"
    assert res.json["state"]["interrupted"] is True, str(res)
    assert res.count("http_reqs{name:assign}") >= 1, str(res)
    # teardown ran to its end after the first Ctrl-C: its requests (DELETE
    # of each user) and its PostgreSQL check are not cut short
    assert "teardown failed" not in res.stderr, str(res)
    assert load_users(slow_stack) == 0, str(res)
    m = res.metric("checks{check:no container assigned twice}")
    assert m["values"]["passes"] == 1 and m["values"]["fails"] == 0, str(res)
    assert "✓ no container assigned twice" in res.stdout, str(res)
