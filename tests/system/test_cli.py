"""The command line: help, version, and bad input (exit code 2 or 3 and a
message on stderr naming the bad thing)."""

import pytest

from conftest import TIDE

OK_SCENARIO = """
return { run = function(vu) end }
"""


def test_version(tide):
    res = tide.exec([TIDE, "--version"])
    assert res.rc == 0, str(res)
    assert res.stdout.startswith("tide "), str(res)


def test_help(tide):
    res = tide.exec([TIDE, "--help"])
    assert res.rc == 0, str(res)
    assert "usage" in res.stdout and "tide run" in res.stdout, str(res)


def test_run_help(tide):
    res = tide.exec([TIDE, "run", "--help"])
    assert res.rc == 0, str(res)
    for opt in ("--vus", "--duration", "--iterations", "--executor", "--threads", "--target",
                "--env", "--out", "--quiet", "--max-body", "--graceful-stop"):
        assert opt in res.stdout, f"tide run --help does not mention {opt}\n{res}"


def test_subcommand_help(tide):
    for cmd, words in ((["report", "--help"], ("SOURCE", "--html", "--json", "pg:DSN#RUN")),
                       (["compare", "-h"], ("BASE", "CURRENT", "--tolerance")),
                       (["db", "--help"], ("init", "runs", "import", "--scenario", "--last")),
                       (["db", "runs", "--help"], ("DATABASE_URL",)),
                       (["list", "--help"], ("tide list",))):
        res = tide.exec([TIDE, *cmd])
        assert res.rc == 0, str(res)
        assert res.stdout.startswith("usage: tide " + cmd[0]), str(res)
        for w in words:
            assert w in res.stdout, f"{' '.join(cmd)} does not mention {w}\n{res}"
    res = tide.exec([TIDE, "list", "extra"])
    assert res.rc == 2 and "extra" in res.stderr, str(res)


def test_unknown_command(tide):
    res = tide.exec([TIDE, "bogus"])
    assert res.rc == 2, str(res)
    assert "bogus" in res.stderr, str(res)


def test_run_without_scenario(tide):
    res = tide.exec([TIDE, "run"])
    assert res.rc == 2, str(res)
    assert res.stderr.strip(), str(res)


def test_minimal_scenario_runs(run_tide):
    res = run_tide(OK_SCENARIO)
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 1, str(res)


def test_syntax_error(run_tide):
    res = run_tide("""local http = require "tide.http"
return {
  run = function(vu) local = 1 end,
}
""", name="broken.lua")
    assert res.rc == 3, str(res)
    assert "broken.lua:3:" in res.stderr, str(res)


def test_runtime_error_while_loading(run_tide):
    res = run_tide("""local x = nil
local y = x.field
return { run = function() end }
""", name="loadfail.lua")
    assert res.rc == 3, str(res)
    assert "loadfail.lua:2:" in res.stderr, str(res)


def test_scenario_returns_number(run_tide):
    res = run_tide("return 42\n", name="returns42.lua")
    assert res.rc == 2, str(res)
    assert "returns42.lua" in res.stderr and "number" in res.stderr, str(res)


def test_scenario_without_run(run_tide):
    res = run_tide("return { options = { vus = 1 } }\n", name="norun.lua")
    assert res.rc == 2, str(res)
    assert "run" in res.stderr, str(res)


def test_run_not_a_function(run_tide):
    res = run_tide('return { run = "fast" }\n')
    assert res.rc == 2, str(res)
    assert "run" in res.stderr and "string" in res.stderr, str(res)


def test_options_wrong_type(run_tide):
    res = run_tide('return { options = "fast", run = function() end }\n')
    assert res.rc == 2, str(res)
    assert "options" in res.stderr, str(res)


def test_option_vus_wrong_type(run_tide):
    res = run_tide('return { options = { vus = "ten" }, run = function() end }\n')
    assert res.rc == 2, str(res)
    assert "options.vus" in res.stderr, str(res)


def test_option_typo(run_tide):
    res = run_tide('return { options = { duraton = "10s" }, run = function() end }\n')
    assert res.rc == 2, str(res)
    assert "duraton" in res.stderr, str(res)


def test_unknown_executor(run_tide):
    res = run_tide('return { options = { executor = "foo" }, run = function() end }\n')
    assert res.rc == 2, str(res)
    assert "foo" in res.stderr, str(res)
    for e in ("shared-iterations", "per-vu-iterations", "constant-vus"):
        assert e in res.stderr, f"the message should list the valid executors\n{res}"


# a bad command-line value: exit 2, and the message names what was given
@pytest.mark.parametrize("args, named", [
    (("--executor", "ramping"), ("ramping", "constant-vus")),
    (("--vus", "0"), ("--vus", "'0'")),
    (("--vus", "many"), ("many",)),
    (("--duration", "-5s"), ("-5s",)),
    (("--target", "notaurl"), ("notaurl",)),
    (("--bogus", "1"), ("--bogus",)),
    (("--env", "NOVALUE"), ("NOVALUE",)),
], ids=["unknown-executor", "vus-zero", "vus-not-a-number", "negative-duration", "bad-target",
        "unknown-option", "env-without-equals"])
def test_cli_bad_value(run_tide, args, named):
    res = run_tide(OK_SCENARIO, *args)
    assert res.rc == 2, str(res)
    for n in named:
        assert n in res.stderr, f"the message should name {n}\n{res}"


def test_nonexistent_scenario(tide):
    res = tide.exec([TIDE, "run", "no_such_scenario_xyz"])
    assert res.rc == 2, str(res)
    assert "no_such_scenario_xyz" in res.stderr, str(res)


def test_nonexistent_scenario_file(tide, tmp_path):
    missing = tmp_path / "missing.lua"
    res = tide.exec([TIDE, "run", str(missing)])
    assert res.rc == 2, str(res)
    assert "missing.lua" in res.stderr, str(res)


def test_bad_input_starts_no_load(run_tide, access_log):
    res = run_tide("""
local http = require "tide.http"
return { options = { vus = 2 }, run = function(vu) http.get(vu.target .. "/") end }
""", "--target", access_log.url, "--duration", "-5s")
    assert res.rc == 2, str(res)
    assert access_log.wait_log() == [], str(res)


def test_cli_bad_out_kind(run_tide):
    res = run_tide(OK_SCENARIO, "--out", "xml=x.xml", json_out=False)
    assert res.rc == 2, str(res)
    assert "xml=x.xml" in res.stderr, str(res)


def test_cli_out_missing_value(run_tide):
    res = run_tide(OK_SCENARIO, "--out", "csv=", json_out=False)
    assert res.rc == 2, str(res)
    assert "csv" in res.stderr, str(res)


def test_cli_out_unwritable(run_tide):
    res = run_tide(OK_SCENARIO, "--out", "html=/proc/nope/x.html", json_out=False)
    assert res.rc == 2, str(res)
    assert "/proc/nope/x.html" in res.stderr, str(res)


def test_cli_out_pg_bad_dsn(run_tide):
    res = run_tide(OK_SCENARIO, "--out", "pg=postgresql://u:sekrit@[::1", json_out=False)
    assert res.rc == 2, str(res)
    assert "DSN" in res.stderr and "sekrit" not in res.stderr, str(res)


def test_cli_option_missing_value(tide):
    path = tide.write(OK_SCENARIO)
    res = tide.exec([TIDE, "run", str(path), "--vus"])
    assert res.rc == 2, str(res)
    assert "--vus" in res.stderr, str(res)


def test_exec_naming_no_function_is_exit_2_before_setup(run_tide, tmp_path):
    marker = tmp_path / "setup-ran"
    res = run_tide("""
return {
  options = { scenarios = { shop = { executor = "per-vu-iterations", exec = "brows" } } },
  setup = function(ctx) io.open(ctx.env.MARKER, "w"):close() end,
  browse = function() end,
}
""", "--env", f"MARKER={marker}", json_out=False)
    assert res.rc == 2, str(res)
    assert "options.scenarios.shop.exec" in res.stderr and "brows" in res.stderr, str(res)
    assert not marker.exists(), f"setup ran although the scenario could not start\n{res}"


def test_named_scenarios_need_no_run_function(run_tide):
    res = run_tide("""
return {
  options = { scenarios = { shop = { executor = "per-vu-iterations", vus = 2, iterations = 3, exec = "browse" } } },
  browse = function() end,
}
""")
    assert res.rc == 0, str(res)
    assert res.count("iterations") == 6, str(res)
