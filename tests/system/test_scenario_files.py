"""A scenario as files: its own modules found beside it from any working
directory, and a scenario that reads the target refused before any load
when none was given."""

import subprocess

from conftest import TIDE


def test_require_finds_modules_beside_the_scenario(tmp_path):
    d = tmp_path / "suite"
    (d / "lib").mkdir(parents=True)
    (d / "helpers.lua").write_text("return { answer = 42 }\n")
    (d / "lib" / "init.lua").write_text("return { name = 'lib' }\n")
    (d / "flow.lua").write_text("""
local helpers, lib = require "helpers", require "lib"
return {
  options = { executor = "per-vu-iterations", vus = 2, iterations = 2 },
  setup = function() assert(helpers.answer == 42 and lib.name == "lib") end,
  run = function() assert(helpers.answer == 42 and lib.name == "lib") end,
}
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([TIDE, "run", str(d / "flow.lua"), "--threads", "2", "-q"], cwd=elsewhere,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "iteration" not in res.stderr, res.stderr


TARGETED = """local http = require "tide.http"
-- a comment about ctx.target does not count
local note = "nor does a string with vu.target in it"
return {
  options = { executor = "per-vu-iterations", vus = 1, iterations = 1 },
  run = function(vu)
    http.get(vu.target .. "/")
  end,
}
"""


def test_reading_target_without_one_is_exit_2(run_tide, access_log):
    res = run_tide(TARGETED, name="targeted.lua")
    assert res.rc == 2, str(res)
    assert "targeted.lua:7" in res.stderr and "--target" in res.stderr, str(res)
    assert access_log.log_lines() == []
    ok = run_tide(TARGETED, "--target", access_log.url)
    assert ok.rc == 0 and ok.count("http_reqs") == 1, str(ok)


def test_no_target_needed_when_none_is_read(run_tide):
    res = run_tide("""
-- vu.target is not used here
return { options = { executor = "per-vu-iterations", vus = 1, iterations = 1 }, run = function() end }
""")
    assert res.rc == 0, str(res)
