-- `tide report`, `tide compare` and `tide db`: results read back from files
-- or PostgreSQL. Each command returns an exit code; bad input raises a
-- message, which the C side prints and turns into exit 2.
local json = require "cjson"
local outputs = require "tide.outputs"
local redact = require "tide.redact"
local results = require "tide.results"
local text = require "tide.text"

local M = {}

local function usage(msg) error({ usage = msg }, 0) end

local USAGE = {
  report = "usage: tide report SOURCE... [--html FILE] [--json FILE] [--check] [--require-all] [--store pg:DSN]\n"
    .. "  SOURCE: a results JSON file, or pg:DSN#RUN (RUN: a run id, latest or latest~N;\n"
    .. "  an empty DSN means $DATABASE_URL). Several sources are merged into one report;\n"
    .. "  segments of one run (tide run --segment I/N) merge into the whole run, the missing named.\n"
    .. "  --check: exit 1 when a threshold fails on the merged data. --require-all: exit 5 when\n"
    .. "  a segment is missing (nothing stored). --store pg:DSN: store the merged run (once per\n"
    .. "  run id: storing it again replaces it) and its analytics.load_testing row.",
  compare = "usage: tide compare BASE CURRENT [--tolerance 10%] [--min-delta 10ms] [--metric NAME]... [--require-names]\n"
    .. "  BASE, CURRENT: as SOURCE for tide report. A figure is a regression (exit 1) when it got\n"
    .. "  worse by more than the tolerance AND by more than --min-delta (times; error rates: 0.1 point).\n"
    .. "  --metric NAME or NAME{tag:value} (repeatable): compare only these (default: request\n"
    .. "  durations and errors per request name, req/s, checks, iteration errors, the scenario's own\n"
    .. "  trends). --require-names: a request name of BASE missing from CURRENT is a regression.",
  db = "usage: tide db init DSN | tide db runs DSN [--scenario NAME] [--last N] | tide db import DSN FILE\n"
    .. "  DSN may be left out when $DATABASE_URL is set (init, runs).",
}

-- The first line of a command's usage, for the error that bad input gets.
local function usage_line(name) return (USAGE[name]:match("^[^\n]*")) end

-- `--help` or `-h` anywhere: the usage on stdout, exit 0.
local function help_asked(name, args)
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then
      io.stdout:write(USAGE[name], "\n")
      return true
    end
  end
  return false
end

-- Splits args into positionals and --flag values (--flag=V or --flag V).
-- flags[name]: true (one value, the last wins), "list" (repeatable: a list of
-- values) or "switch" (no value: true).
local function parse(args, flags)
  local pos, opt = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w-]+)$") end
    if name then
      if not flags[name] then usage(("unknown option '%s'"):format(a)) end
      if flags[name] == "switch" then
        if value then usage(("--%s takes no value, got '%s'"):format(name, value)) end
        value = true
      elseif not value then
        i = i + 1
        value = args[i]
        if value == nil then usage(("--%s needs a value"):format(name)) end
      end
      if flags[name] == "list" then
        opt[name] = opt[name] or {}
        table.insert(opt[name], value)
      else
        opt[name] = value
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, opt
end

-- "pg:DSN#RUN" -> DSN ($DATABASE_URL when empty), RUN; nil for a file.
local function pg_source(source)
  local dsn, ref = source:match("^pg:(.*)#([^#]+)$")
  if not dsn then
    if source:match("^pg:") then usage(("%s: expected pg:DSN#RUN_ID"):format(redact.dsn(source))) end
    return nil
  end
  if dsn == "" then dsn = os.getenv("DATABASE_URL") or usage("pg:#RUN needs $DATABASE_URL") end
  return dsn, ref
end

local function from_pg(fn, dsn, ref)
  local ok, res = pcall(require("tide.store")[fn], dsn, ref)
  if not ok then error(("pg:%s#%s: %s"):format(redact.dsn(dsn), ref, redact.message(res)), 0) end
  return res
end

-- SOURCE: a results JSON file, or pg:DSN#RUN (RUN: an id, latest, latest~N).
local function load(source)
  local dsn, ref = pg_source(source)
  if not dsn then return results.recompute(results.load_file(source)) end
  return from_pg("load", dsn, ref)
end

-- Every document a SOURCE holds, with a name for each in messages: a file
-- holds one; pg:DSN#RUN one run, or each segment stored under that run id.
local function load_all(source, docs, names)
  local dsn, ref = pg_source(source)
  if not dsn then
    docs[#docs + 1], names[#names + 1] = load(source), source
    return
  end
  local shown = ("pg:%s#%s"):format(redact.dsn(dsn), ref)
  local found = from_pg("load_all", dsn, ref)
  for _, doc in ipairs(found) do
    local s = type(doc.segment) == "table" and doc.segment
    docs[#docs + 1] = doc
    names[#names + 1] = s and ("%s (segment %s/%s)"):format(shown, tostring(s.index), tostring(s.count)) or shown
  end
end

local function write(path, data)
  local f, err = io.open(path, "w")
  if not f then usage(("cannot write %s: %s"):format(path, err)) end
  f:write(data)
  f:close()
end

-- --store pg:DSN (an empty DSN: $DATABASE_URL), checked before anything is read.
local function store_dsn(value)
  if value == nil then return nil end
  local dsn = value:match("^pg:(.*)$")
  if not dsn then usage(("--store: expected pg:DSN, got '%s'"):format(redact.dsn(value))) end
  if dsn == "" then dsn = os.getenv("DATABASE_URL") or usage("--store pg: needs $DATABASE_URL") end
  return dsn
end

-- The merged run into PostgreSQL: 0, or 4 (written to a local file instead).
local function store_merged(doc, dsn)
  local ok, err = pcall(results.validate, doc, "the merged run")
  if not ok then usage(err) end
  local replaced
  local code = outputs.store(doc, dsn, function(d, doc_)
    replaced = require("tide.store").save_merged(d, doc_)
  end, ("tide-results-%s-merged.json"):format(doc.run_id))
  if code == 0 then
    io.stdout:write(("stored run %s in %s%s\n"):format(doc.run_id, redact.dsn(dsn),
      replaced and " (replacing the one stored before)" or ""))
  end
  return code
end

local function thresholds_failed(doc)
  for _, r in ipairs(doc.threshold_results) do
    if not r.ok then return true end
  end
  return false
end

-- tide report SOURCE... [--html FILE] [--json FILE] [--check] [--require-all] [--store pg:DSN]
-- Exit: 4 not stored, else 5 a segment missing with --require-all, else 1
-- a threshold failed with --check, else 0.
function M.report(args)
  if help_asked("report", args) then return 0 end
  local pos, opt = parse(args, { html = true, json = true, check = "switch", ["require-all"] = "switch",
                                 store = true, ["add-registry"] = true })
  if #pos == 0 then usage(usage_line("report")) end
  local dsn = store_dsn(opt.store)
  local docs, names = {}, {}
  for _, src in ipairs(pos) do load_all(src, docs, names) end
  local segments = require "tide.segments"
  local segs = segments.check(docs, names)
  -- --add-registry FILE (tide run --workers): the coordinator's own setup
  -- and teardown metrics, merged in beside the workers' documents
  local extra = opt["add-registry"] and json.decode(assert(io.open(opt["add-registry"])):read("a"))
  local doc = segs and segments.merge(docs, segs, extra) or results.merge(docs, nil, extra)
  io.stdout:write(text.render(doc))
  if opt.json then write(opt.json, outputs.encode(doc)) end
  if opt.html then write(opt.html, require("tide.html").render(doc)) end
  local missing = segs and #segs.missing > 0
  if missing and opt["require-all"] then
    io.stderr:write(("tide report: %s, and --require-all asks for all of them%s\n"):format(
      segments.describe(doc.segments), dsn and ": nothing stored" or ""))
    return 5
  end
  if dsn and store_merged(doc, dsn) ~= 0 then return 4 end
  if opt.check and thresholds_failed(doc) then return 1 end
  return 0
end

-- ---------------------------------------------------------------- compare

-- tide compare BASE CURRENT [options]: exit 1 when something got worse
-- (lua/tide/compare.lua). Option values are checked before any file is read.
function M.compare(args)
  if help_asked("compare", args) then return 0 end
  local pos, opt = parse(args, { tolerance = true, ["min-delta"] = true, metric = "list",
                                 ["require-names"] = "switch" })
  if #pos ~= 2 then usage(usage_line("compare")) end
  local compare = require "tide.compare"
  local settings = {
    tolerance = compare.tolerance(opt.tolerance),
    min_delta = compare.min_delta(opt["min-delta"]),
    selectors = compare.selectors(opt.metric),
    require_names = opt["require-names"] == true,
    base_source = pos[1], cur_source = pos[2],
  }
  local base, cur = load(pos[1]), load(pos[2])
  local report, code = compare.run(base, cur, settings)
  io.stdout:write(report)
  return code
end

-- ---------------------------------------------------------------- db

local function dsn_arg(pos, i, what)
  local dsn = pos[i] or os.getenv("DATABASE_URL")
  if not dsn then usage(("usage: tide db %s DSN ..."):format(what)) end
  return dsn
end

local function db_call(fn, dsn, ...)
  local ok, res = pcall(fn, dsn, ...)
  if not ok then error(redact.message(res), 0) end
  return res
end

local DB = {}

function DB.init(args)
  local pos = parse(args, {})
  local dsn = dsn_arg(pos, 1, "init")
  db_call(require("tide.store").init, dsn)
  io.stdout:write(("schemas analytics and tide ready in %s\n"):format(redact.dsn(dsn)))
  return 0
end

-- One stored run as a row of text. A row stored before imports were checked
-- may hold any value: it is shown as it is and flagged, never fatal.
local function run_row(r)
  local bad = {}
  local function num(v, what, ok, fmt, raw)
    if v == nil and raw ~= nil then -- stored, but not a number float8 can hold
      bad[#bad + 1] = what
      return #raw > 20 and raw:sub(1, 17) .. "..." or raw
    end
    if v == nil then return "-" end
    if type(v) ~= "number" or v ~= v or not ok(v) then
      bad[#bad + 1] = what
      return type(v) == "number" and ("%g"):format(v) or tostring(v)
    end
    return fmt(v)
  end
  local sane = function(v) return v >= 0 and v < 2 ^ 53 end
  local row = { tostring(r.run_id), tostring(r.scenario), r.started or "-",
    num(r.duration_s, "duration", sane, function(v) return ("%.1fs"):format(v) end),
    tostring(r.exit_code),
    num(r.reqs, "reqs", function(v) return sane(v) and v == math.floor(v) end,
      function(v) return ("%d"):format(v) end, r.reqs_text),
    num(r.p95, "p95", sane, function(v) return ("%.2fms"):format(v) end, r.p95_text) }
  row[#row + 1] = #bad > 0 and ("✗ bad %s"):format(table.concat(bad, ", ")) or ""
  return row
end

function DB.runs(args)
  local pos, opt = parse(args, { scenario = true, last = true })
  local last = (opt.last or "20"):match("^%d+$") and tonumber(opt.last or "20")
  if not last or last < 1 or last > 1000000 then
    usage(("--last: expected a number of runs from 1 to 1000000, got '%s'"):format(opt.last))
  end
  local rows = db_call(require("tide.store").runs, dsn_arg(pos, 1, "runs"), opt.scenario, math.tointeger(last))
  local out = { { "run_id", "scenario", "started (UTC)", "duration", "exit", "reqs", "p95", "" } }
  for _, r in ipairs(rows) do out[#out + 1] = run_row(r) end
  io.stdout:write(table.concat(text.table_lines(out), "\n"), "\n")
  return 0
end

-- Stores a results file (e.g. the fallback written when the database was down).
function DB.import(args)
  local pos = parse(args, {})
  if #pos ~= 2 then usage("usage: tide db import DSN FILE") end
  local doc = results.validate(results.load_file(pos[2]), pos[2])
  local ok, err = pcall(require("tide.store").save, pos[1], doc)
  if not ok then
    io.stderr:write(("tide db import: %s\n"):format(redact.message(err)))
    return 4
  end
  io.stdout:write(("stored run %s\n"):format(doc.run_id))
  return 0
end

function M.db(args)
  if help_asked("db", args) then return 0 end
  local sub = table.remove(args, 1)
  if not DB[sub or ""] then usage(usage_line("db")) end
  return DB[sub](args)
end

return M
