"""Test data: tide.data.csv / tide.data.json loaded once on the main thread
and read by every user of every thread through read-only proxies over one
copy; vu.iteration_global, so that each row goes to exactly one iteration;
options.scenarios.NAME.env. What the scenario read is checked where it
arrives: at a recording HTTP server."""

import csv
import io
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import TIDE
from httpserver import RecordingServer


@pytest.fixture
def echo(request):
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    return server


def beside(tide, files, scenario):
    """Writes the scenario and its data files into a directory of their own
    (tide runs in the directory above: relative paths are the scenario's)."""
    d = tide.tmp / "sc"
    d.mkdir(exist_ok=True)
    for name, content in files.items():
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    name = f"scenario{next(tide.counter)}.lua"
    (d / name).write_text(scenario)
    return Path("sc") / name


def bodies(echo, prefix="/"):
    return [json.loads(b) for _, p, _, b in echo.seen if p.startswith(prefix)]


EDGES = ('\ufeffname,note,n\r\n'
         'plain,"with, comma",1\r\n'
         '"quote ""inside""","multi\nline\r\nvalue",2\r\n'
         '\r\n'
         ',"",3\r\n'
         '"a;b",   spaced  ,4\r\n'
         'last,no newline at the end,5')


def test_csv_quoting_edge_cases_read_as_python_reads_them(tide, echo):
    path = beside(tide, {"edges.csv": EDGES}, """
local tide = require "tide"
local http = require "tide.http"
local rows = tide.data.csv("edges.csv")
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    for i, row in ipairs(rows) do
      local fields = {}
      for k, v in pairs(row) do fields[#fields + 1] = k end
      http.post(vu.target .. "/row", { json = { i = i, name = row.name, note = row.note, n = row.n,
        first = row[1], fields = fields, len = #row } })
    end
    http.post(vu.target .. "/meta", { json = { n = #rows, zero = rows[0] == nil, past = rows[#rows + 1] == nil,
      text = tostring(rows) } })
  end,
}
""")
    res = tide.run(path, "--target", echo.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    want = list(csv.DictReader(io.StringIO(EDGES.lstrip("\ufeff"), newline="")))
    want = [r for r in want if any(r.values())]   # Python keeps no row for the blank line either
    got = bodies(echo, "/row")
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        assert (g["name"], g["note"], g["n"]) == (w["name"], w["note"], w["n"]), (g, w)
        assert g["first"] == w["name"] and g["len"] == 3 and g["fields"] == ["name", "note", "n"], g
    meta = bodies(echo, "/meta")[0]
    assert meta["n"] == 5 and meta["zero"] and meta["past"], meta
    assert meta["text"].startswith("tide.data.csv: 5 rows of sc/edges.csv"), meta


def test_csv_without_header_and_another_separator_gives_arrays(tide, echo):
    path = beside(tide, {"plain.csv": 'a;"b;c";d\n1;2\n"x\ny"\n'}, """
local tide = require "tide"
local http = require "tide.http"
local rows = tide.data.csv("plain.csv", { header = false, separator = ";" })
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    local out = {}
    for i, row in ipairs(rows) do
      local cells = {}
      for j, cell in pairs(row) do cells[j] = cell end
      out[i] = cells
    end
    http.post(vu.target .. "/", { json = { rows = out, n = #rows, named = rows[1].a == nil } })
  end,
}
""")
    res = tide.run(path, "--target", echo.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    got = bodies(echo)[0]
    assert got == {"rows": [["a", "b;c", "d"], ["1", "2"], ["x\ny"]], "n": 3, "named": True}, got


@pytest.mark.parametrize("text, line, reason", [
    ('a,b\n1,2\n3,"x"y\n', 3, "text after a closing quote"),
    ('a,b\n1,2\n3,x"y\n', 3, "a '\"' inside an unquoted field"),
    ('a,b\n1,2\n1,"never\nclosed\n', 3, "a quoted field is never closed"),
    ('a,b\n1,2\n\n1,2,3\n', 4, "3 fields, but the header has 2"),
    ('a,a\n1,2\n', 1, "the header names the field 'a' twice"),
])
def test_malformed_csv_is_an_error_naming_file_and_line(tide, text, line, reason):
    path = beside(tide, {"bad.csv": text}, """
local rows = require("tide").data.csv("bad.csv")
return { run = function() end }
""")
    res = tide.run(path)
    assert res.rc == 3, str(res)
    assert f"tide.data.csv: sc/bad.csv:{line}: {reason}" in res.stderr, str(res)


def test_bad_calls_say_what_is_wrong(tide):
    cases = [
        ('tide.data.csv("missing.csv")', "tide.data.csv: cannot read sc/missing.csv: No such file or directory"),
        ('tide.data.csv("x.csv", { headers = true })', "tide.data.csv: unknown option 'headers' (valid: header, separator)"),
        ('tide.data.csv("x.csv", { separator = ",," })', "tide.data.csv: separator must be one character"),
        ('tide.data.json("x.csv")', "tide.data.json: sc/x.csv:1: not JSON"),
        ('tide.data.json("bad.json")', "tide.data.json: sc/bad.json:3: not JSON"),
    ]
    for call, message in cases:
        path = beside(tide, {"x.csv": "a,b\n", "bad.json": '{\n  "a": 1,\n  "b": }\n'},
                      f'local tide = require "tide"\nlocal d = {call}\nreturn {{ run = function() end }}\n')
        res = tide.run(path)
        assert res.rc == 3 and message in res.stderr, (call, str(res))


def test_json_data_reads_like_the_table_it_holds(tide, echo):
    data = {"users": [{"name": "ann", "id": 1234567890123456}, {"name": "bo", "id": 2, "tags": ["x", "y"]}],
            "ratio": 0.25, "flag": False, "nothing": None, "count": 3, "nested": {"deep": {"er": [1, [2, 3]]}}}
    path = beside(tide, {"d.json": json.dumps(data, indent=1)}, """
local tide = require "tide"
local http = require "tide.http"
local d = tide.data.json("d.json")
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    local keys = {}
    for k in pairs(d) do keys[#keys + 1] = k end
    local names = {}
    for i, u in ipairs(d.users) do names[i] = u.name end
    http.post(vu.target .. "/", { json = {
      keys = keys, names = names, n = #d.users, id = d.users[1].id, int = math.type(d.users[1].id),
      url = "/items/" .. d.count, ratio = d.ratio, flag = d.flag, null = d.nothing == tide.json.null,
      missing = d.missing == nil, tag = d.users[2].tags[2], deep = d.nested.deep.er[2][2],
      ro = select(2, pcall(function() d.users[1].name = "x" end)) } })
  end,
}
""")
    res = tide.run(path, "--target", echo.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    got = bodies(echo)[0]
    assert got["keys"] == sorted(data), got
    assert got["names"] == ["ann", "bo"] and got["n"] == 2, got
    assert got["id"] == 1234567890123456 and got["int"] == "integer" and got["url"] == "/items/3", got
    assert got["ratio"] == 0.25 and got["flag"] is False and got["null"] and got["missing"], got
    assert got["tag"] == "y" and got["deep"] == 3, got
    assert "read-only" in got["ro"], got


def test_every_row_goes_to_exactly_one_iteration_across_threads(tide, echo):
    rows = 600
    text = "username,password\n" + "".join(f"user{i},pw{i}\n" for i in range(1, rows + 1))
    path = beside(tide, {"users.csv": text}, f"""
local tide = require "tide"
local http = require "tide.http"
local users = tide.data.csv("users.csv")
return {{
  options = {{ executor = "shared-iterations", vus = 40, iterations = {rows} }},
  run = function(vu)
    local u = users[vu.iteration_global]
    http.post(vu.target .. "/login", {{ json = {{ username = u.username, password = u.password,
      g = vu.iteration_global, vu = vu.id }} }})
  end,
}}
""")
    res = tide.run(path, "--target", echo.url, "--threads", "2")
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    got = bodies(echo, "/login")
    names = Counter(b["username"] for b in got)
    assert len(got) == rows and set(names) == {f"user{i}" for i in range(1, rows + 1)}, names.most_common(3)
    assert max(names.values()) == 1, names.most_common(3)
    assert all(b["password"] == "pw" + b["username"][4:] for b in got)
    assert sorted(b["g"] for b in got) == list(range(1, rows + 1))
    assert len({b["vu"] for b in got}) > 1


@pytest.mark.parametrize("options, exact", [
    ('executor = "per-vu-iterations", vus = 7, iterations = 13', True),
    ('executor = "constant-vus", vus = 6, duration = "600ms"', True),
    ('executor = "ramping-vus", stages = { { duration = "600ms", target = 6 } }', True),
    ('executor = "constant-arrival-rate", rate = 100, duration = "600ms", pre_allocated_vus = 6', False),
])
def test_iteration_global_is_unique_across_users_and_threads(run_tide, echo, options, exact):
    res = run_tide(f"""
local tide = require "tide"
local http = require "tide.http"
return {{
  options = {{ {options} }},
  run = function(vu)
    http.post(vu.target .. "/it", {{ json = {{ g = vu.iteration_global, vu = vu.id, i = vu.iteration }} }})
    tide.sleep(0.01)
  end,
}}
""", "--target", echo.url, "--threads", "2")
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    got = sorted(b["g"] for b in bodies(echo, "/it"))
    assert got and len(got) == len(set(got)), Counter(got).most_common(3)
    assert got[0] >= 1 and all(isinstance(g, int) for g in got), got[:5]
    if exact:   # numbered 1..N without a gap
        assert got == list(range(1, len(got) + 1)), got
    if "per-vu" in options:
        assert len(got) == 91
        # user u's i-th iteration is (u - 1) * 13 + i + 1, whichever thread runs the user
        assert all(b["g"] == (b["vu"] - 1) * 13 + b["i"] + 1 for b in bodies(echo, "/it"))
    if "arrival" in options:   # the arrival's number in the schedule: 100/s for 0.6 s
        assert got[-1] <= 60, got


def max_rss_kb(cmd, cwd):
    env = dict(os.environ, ASAN_OPTIONS="quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err
    return usage.ru_maxrss


def test_one_copy_per_process_however_many_users_and_threads(tide):
    """A 20 MB CSV read by 200 users on 2 threads costs what it costs for
    one user: the data is in memory once, not per thread or per user."""
    d = tide.tmp / "sc"
    d.mkdir(exist_ok=True)
    with open(d / "big.csv", "w") as f:
        f.write("username,password,email\n")
        i = 0
        while f.tell() < 20 << 20:
            i += 1
            f.write(f"user{i:07d},pw{i:07d},user{i:07d}@example.com\n")
    size_kb = os.path.getsize(d / "big.csv") // 1024

    def scenario(vus, load):
        path = d / f"mem_{vus}_{load}.lua"
        path.write_text(f"""
local tide = require "tide"
local users = {'tide.data.csv("big.csv")' if load else "{}"}
return {{
  options = {{ executor = "per-vu-iterations", vus = {vus}, iterations = 3, threads = 2 }},
  run = function(vu)
    local u = users[vu.iteration_global * 997]
    if {str(load).lower()} then
      assert(u.username == string.format("user%07d", vu.iteration_global * 997), u.username)
    end
    tide.sleep(0.05)
  end,
}}
""")
        return max_rss_kb([TIDE, "run", str(path), "--quiet"], tide.tmp)

    base = scenario(200, False)
    one = scenario(1, True)
    many = scenario(200, True)
    # one copy of 20 MB, with its index of cells: well under two copies' worth
    # (AddressSanitizer's redzones and shadow make any size bigger)
    asan = b"__asan_init" in open(TIDE, "rb").read()
    assert asan or many - base < 2 * size_kb, (base, one, many, size_kb)
    # 200 users on 2 threads add nothing like another copy (a copy per
    # thread would add 20 MB and more, a copy per user gigabytes)
    assert many - one < size_kb // 3, (base, one, many, size_kb)


def test_scenario_env_is_laid_over_the_global_env(tide, echo):
    res = tide.run("""
local http = require "tide.http"
local function report(vu)
  http.post(vu.target .. "/" .. vu.scenario, { json = { role = vu.env.ROLE, shared = vu.env.SHARED,
    only = vu.env.ONLY_CLI, port = vu.env.PORT } })
end
return {
  options = { scenarios = {
    admin = { executor = "per-vu-iterations", vus = 2, iterations = 1, exec = "report",
              env = { ROLE = "admin", SHARED = "from the scenario", PORT = 8080 } },
    guest = { executor = "per-vu-iterations", vus = 2, iterations = 1, exec = "report" },
  } },
  report = report,
  setup = function(ctx) assert(ctx.env.ROLE == nil, "setup sees the global env only") end,
}
""", "--target", echo.url, "--env", "SHARED=from the command line", "--env", "ONLY_CLI=yes", "--threads", "2")
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    admin, guest = bodies(echo, "/admin"), bodies(echo, "/guest")
    assert admin == [{"role": "admin", "shared": "from the scenario", "only": "yes", "port": "8080"}] * 2, admin
    assert guest == [{"shared": "from the command line", "only": "yes"}] * 2, guest


@pytest.mark.parametrize("options, message", [
    ('scenarios = { a = { env = { X = {} } } }', "options.scenarios.a.env.X: must be a string (got 'table')"),
    ('scenarios = { a = { env = "X=1" } }', 'options.scenarios.a.env: expected a table of KEY = "value"'),
    ('scenarios = { a = { env = { ["A=B"] = "1" } } }', "options.scenarios.a.env: keys must be names"),
    ('env = { X = "1" }', "options.env: goes in options.scenarios.NAME.env"),
])
def test_bad_scenario_env_is_exit_2(run_tide, options, message):
    res = run_tide(f"return {{ options = {{ {options} }}, run = function() end }}")
    assert res.rc == 2 and message in res.stderr, str(res)


def test_data_is_loaded_by_the_main_thread_only(tide, echo):
    """In an iteration, a file the main thread loaded is found (no I/O);
    one it never loaded is an error that says where to load it."""
    path = beside(tide, {"a.csv": "k\n1\n", "b.csv": "k\n2\n"}, """
local tide = require "tide"
local http = require "tide.http"
local a = tide.data.csv("a.csv")
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 1 },
  run = function(vu)
    http.post(vu.target .. "/", { json = { k = tide.data.csv("a.csv")[1].k } })
    tide.data.csv("b.csv")
  end,
}
""")
    res = tide.run(path, "--target", echo.url, "--threads", "2")
    assert res.rc == 0, str(res)
    assert bodies(echo) == [{"k": "1"}] * 2
    assert res.count("iteration_errors") == 2, str(res)
    assert ("tide.data.csv: sc/b.csv was not loaded before the load started: call tide.data.csv at the "
            "top level of the scenario file (or in setup)") in res.stderr, str(res)
