#!/usr/bin/python3
"""Self-test of the tide demo service: /usr/bin/python3 tests/webserver/selftest.py

Three runs, each on a fresh stack in a temp dir (started and stopped with
demo.sh):
  correct  default knobs: 30 users, 30 concurrent assigns -> 30 distinct
           containers; API error codes; idempotent re-assign; deletes free
           the containers.
  race     DEMO_RACE=1 DEMO_MAX_QUEUE=10: the same load must produce at least
           one container assigned to two users (and exercises 503 + retry).
  fail     DEMO_FAIL_FRACTION=0.2 DEMO_CONTAINERS=20: simulated failures are
           deterministic per task id, the pool running dry gives
           "no free container", and still no double assignment.
Exit status 0 when every check passed.
"""
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "demo.sh")
N_USERS = 30
failures = []


def check(cond, what):
    print("  [%s] %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def http(method, url, body=None, token=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def start(extra_env):
    d = tempfile.mkdtemp(prefix="tide-demo-")
    env = dict(os.environ, **extra_env)
    t = time.monotonic()
    p = subprocess.run([DEMO, "start", d], env=env, capture_output=True,
                       text=True, timeout=120)
    took = time.monotonic() - t
    if p.returncode != 0:
        print(p.stdout, p.stderr, sep="\n")
        raise SystemExit("demo.sh start failed")
    conf = dict(line.split("=", 1) for line in p.stdout.split())
    print("  start: %.2f s  %s" % (took, conf["TARGET"]))
    return d, conf


def stop(d):
    pids = []
    for f in ("gunicorn.pid", "celery.pid", "redis.pid"):
        try:
            pids.append(int(open(os.path.join(d, f)).read()))
        except OSError:
            pass
    try:
        pids.append(int(open(os.path.join(d, "pg", "postmaster.pid")).readline()))
    except OSError:
        pass
    t = time.monotonic()
    subprocess.run([DEMO, "stop", d], check=True, timeout=120)
    took = time.monotonic() - t
    alive = []
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
        except OSError:
            pass
    print("  stop: %.2f s" % took)
    check(not alive, "all processes gone after stop (%s)" % (alive or pids))
    subprocess.run([DEMO, "stop", d], check=True, timeout=60)  # idempotent
    subprocess.run(["rm", "-rf", d], check=True)


def login(target):
    st, js = http("POST", target + "/admin/login",
                  {"username": "admin", "password": "admin-password"})
    assert st == 200, (st, js)
    return js["access_token"]


def register_all(target, tok, prefix):
    users = ["%s-%02d" % (prefix, i) for i in range(N_USERS)]
    for u in users:
        st, js = http("POST", target + "/account/register",
                      {"username": u, "password": "pw-" + u, "name": u.upper()},
                      tok)
        assert st == 200 and js == {"username": u}, (st, js)
    return users


def assign_and_wait(target, tok, user):
    """-> (final state, output, task id, number of 503s, states seen)"""
    busy = 0
    for _ in range(240):                       # <= 120 s of 503s
        st, js = http("POST", target + "/aws_container/assign_container",
                      {"username": user}, tok)
        if st == 503:
            busy += 1
            time.sleep(0.5)
            continue
        assert st == 202, (st, js)
        break
    else:
        return "GAVE-UP", None, None, busy, set()
    tid = js["ID"]
    seen = set()
    for _ in range(600):                       # <= 120 s of polling
        st, js = http("GET", target + "/status/" + tid)
        assert st == 200, (st, js)
        seen.add(js["state"])
        if js["state"] in ("SUCCESS", "FAILURE"):
            return js["state"], js["output"], tid, busy, seen
        time.sleep(0.2)
    return "TIMEOUT", None, tid, busy, seen


def concurrent_assigns(target, tok, users):
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(users)) as ex:
        res = dict(zip(users, ex.map(
            lambda u: assign_and_wait(target, tok, u), users)))
    seen = set().union(*(r[4] for r in res.values()))
    print("  %d concurrent assigns done in %.2f s; 503s: %d; states seen: %s"
          % (len(users), time.monotonic() - t,
             sum(r[3] for r in res.values()), sorted(seen)))
    return res


def db_assignments(dburl):
    conn = psycopg2.connect(dburl)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT a.container_id, c.name, a.username, a.task_id "
                    "FROM assignments a JOIN containers c ON c.id = a.container_id "
                    "WHERE a.released_at IS NULL ORDER BY a.id")
        rows = cur.fetchall()
    conn.close()
    by_container = {}
    for cid, name, user, _ in rows:
        by_container.setdefault((cid, name), set()).add(user)
    return rows, by_container


def delete_all(target, tok, users):
    codes = [http("DELETE", target + "/account/" + u, token=tok)[0] for u in users]
    check(all(c == 200 for c in codes), "DELETE of %d users -> 200" % len(users))


def run_correct():
    print("== correct mode (defaults)")
    d, conf = start({})
    try:
        target, dburl = conf["TARGET"], conf["DATABASE_URL"]
        st, js = http("GET", target + "/health")
        check(st == 200, "GET /health -> 200 %s" % js)
        st, js = http("POST", target + "/admin/login",
                      {"username": "admin", "password": "nope"})
        check(st == 401 and js == {"error": "bad credentials"},
              "bad admin password -> 401 %s" % js)
        tok = login(target)
        users = register_all(target, tok, "user")
        checks = [
            (http("POST", target + "/account/register",
                  {"username": users[0], "password": "x", "name": "x"}, tok), 409),
            (http("POST", target + "/account/register",
                  {"username": "zz", "password": "x", "name": "x"}), 401),
            (http("POST", target + "/account/register",
                  {"username": "zz", "password": "x", "name": "x"}, tok + "x"), 401),
            (http("POST", target + "/account/register",
                  {"username": "zz", "password": "x"}, tok), 400),
            (http("POST", target + "/aws_container/assign_container",
                  {"username": "nobody"}, tok), 400),
            (http("POST", target + "/aws_container/assign_container", {}, tok), 400),
            (http("POST", target + "/aws_container/assign_container",
                  {"username": users[0]}), 401),
            (http("GET", target + "/status/not-a-uuid"), 400),
            (http("DELETE", target + "/account/nobody", token=tok), 404),
        ]
        check(all(r[0] == want for r, want in checks),
              "error codes 409/401/401/400/400/400/401/400/404: %s"
              % [r[0] for r, _ in checks])

        res = concurrent_assigns(target, tok, users)
        states = [r[0] for r in res.values()]
        check(states.count("SUCCESS") == N_USERS,
              "all %d tasks SUCCESS (%s)" % (N_USERS, sorted(set(states))))
        outputs = [r[1] for r in res.values()]
        check(len(set(outputs)) == N_USERS,
              "status outputs: %d distinct containers" % len(set(outputs)))
        rows, by_c = db_assignments(dburl)
        doubles = {k: v for k, v in by_c.items() if len(v) > 1}
        check(len(rows) == N_USERS and not doubles,
              "PostgreSQL: %d assignments, %d containers, doubles: %s"
              % (len(rows), len(by_c), doubles or "none"))
        db_map = {u: name for (_, name), us in by_c.items() for u in us}
        check(all(db_map.get(u) == res[u][1] for u in users),
              "each user's status output matches its row in PostgreSQL")
        again = assign_and_wait(target, tok, users[0])
        check(again[:2] == ("SUCCESS", res[users[0]][1]),
              "re-assign of %s returns the same container (%s)"
              % (users[0], again[1]))

        delete_all(target, tok, users)
        conn = psycopg2.connect(dburl)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM containers WHERE assigned_to IS NOT NULL")
            held = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM assignments WHERE released_at IS NULL")
            active = cur.fetchone()[0]
        conn.close()
        check(held == 0 and active == 0,
              "after deletes: %d containers held, %d active assignments"
              % (held, active))
        try:
            psycopg2.connect(dburl.replace("demo-password", "wrong")).close()
            bad_pw = "accepted"
        except psycopg2.OperationalError as e:
            bad_pw = str(e).strip().splitlines()[-1]
        check("password authentication failed" in bad_pw,
              "wrong PostgreSQL password rejected: %s" % bad_pw)
    finally:
        stop(d)


def run_race():
    print("== racy mode (DEMO_RACE=1 DEMO_MAX_QUEUE=10)")
    d, conf = start({"DEMO_RACE": "1", "DEMO_MAX_QUEUE": "10"})
    try:
        target, dburl = conf["TARGET"], conf["DATABASE_URL"]
        tok = login(target)
        users = register_all(target, tok, "racer")
        res = concurrent_assigns(target, tok, users)
        states = [r[0] for r in res.values()]
        check(states.count("SUCCESS") == N_USERS,
              "all %d tasks SUCCESS (%s)" % (N_USERS, sorted(set(states))))
        rows, by_c = db_assignments(dburl)
        doubles = {name: sorted(v) for (_, name), v in by_c.items() if len(v) > 1}
        print("  PostgreSQL: %d assignments over %d containers" % (len(rows), len(by_c)))
        for name, us in sorted(doubles.items()):
            print("    %s -> %s" % (name, ", ".join(us)))
        check(len(doubles) >= 1,
              "race caught: %d container(s) assigned to more than one user"
              % len(doubles))
        delete_all(target, tok, users)
    finally:
        stop(d)


def run_fail():
    frac, n_cont = 0.2, 20
    print("== failures (DEMO_FAIL_FRACTION=%s DEMO_CONTAINERS=%d)" % (frac, n_cont))
    d, conf = start({"DEMO_FAIL_FRACTION": str(frac),
                     "DEMO_CONTAINERS": str(n_cont)})
    try:
        target, dburl = conf["TARGET"], conf["DATABASE_URL"]
        tok = login(target)
        users = register_all(target, tok, "fail")
        res = concurrent_assigns(target, tok, users)
        out = {}
        for st, output, _, _, _ in res.values():
            key = st if st == "SUCCESS" else "%s: %s" % (st, output)
            out[key] = out.get(key, 0) + 1
        print("  outcomes: %s" % out)

        def expect_fail(tid):
            h = int(hashlib.sha256(tid.encode()).hexdigest()[:8], 16)
            return h / 0x100000000 < frac
        sim = [r for r in res.values()
               if r[0] == "FAILURE" and r[1].startswith("simulated")]
        check(all(expect_fail(r[2]) == (r in sim) for r in res.values()),
              "simulated failures (%d) are exactly the task ids the hash picks"
              % len(sim))
        n_ok = sum(r[0] == "SUCCESS" for r in res.values())
        n_dry = sum(r[0] == "FAILURE" and r[1] == "no free container"
                    for r in res.values())
        check(n_ok == min(n_cont, N_USERS - len(sim))
              and n_ok + n_dry + len(sim) == N_USERS,
              "%d SUCCESS, %d 'no free container', %d simulated"
              % (n_ok, n_dry, len(sim)))
        rows, by_c = db_assignments(dburl)
        check(len(rows) == n_ok and all(len(v) == 1 for v in by_c.values()),
              "PostgreSQL: %d assignments, no double assignment" % len(rows))
        delete_all(target, tok, users)
    finally:
        stop(d)


def main():
    t = time.monotonic()
    run_correct()
    run_race()
    run_fail()
    print("== %s in %.1f s" % ("PASS" if not failures else
                               "FAIL (%d): %s" % (len(failures), failures),
                               time.monotonic() - t))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
