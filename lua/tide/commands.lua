-- `tide report`, `tide compare` and `tide db`: results read back from files
-- or PostgreSQL. Each command returns an exit code; bad input raises a
-- message, which the C side prints and turns into exit 2.
local outputs = require "tide.outputs"
local redact = require "tide.redact"
local results = require "tide.results"
local text = require "tide.text"

local M = {}

local function usage(msg) error({ usage = msg }, 0) end

local USAGE = {
  report = "usage: tide report SOURCE... [--html FILE] [--json FILE]\n"
    .. "  SOURCE: a results JSON file, or pg:DSN#RUN (RUN: a run id, latest or latest~N;\n"
    .. "  an empty DSN means $DATABASE_URL). Several sources are merged into one report.",
  compare = "usage: tide compare BASE CURRENT [--tolerance 10%]\n"
    .. "  BASE, CURRENT: as SOURCE for tide report. Exit 1 when a figure got worse\n"
    .. "  by more than the tolerance.",
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
local function parse(args, flags)
  local pos, opt = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w-]+)$") end
    if name then
      if not flags[name] then usage(("unknown option '%s'"):format(a)) end
      if not value then
        i = i + 1
        value = args[i]
        if value == nil then usage(("--%s needs a value"):format(name)) end
      end
      opt[name] = value
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, opt
end

-- SOURCE: a results JSON file, or pg:DSN#RUN (RUN: an id, latest, latest~N).
local function load(source)
  local dsn, ref = source:match("^pg:(.*)#([^#]+)$")
  if not dsn then
    if source:match("^pg:") then usage(("%s: expected pg:DSN#RUN_ID"):format(redact.dsn(source))) end
    return results.recompute(results.load_file(source))
  end
  if dsn == "" then dsn = os.getenv("DATABASE_URL") or usage("pg:#RUN needs $DATABASE_URL") end
  local ok, doc = pcall(require("tide.store").load, dsn, ref)
  if not ok then error(("pg:%s#%s: %s"):format(redact.dsn(dsn), ref, redact.message(doc)), 0) end
  return doc
end

local function write(path, data)
  local f, err = io.open(path, "w")
  if not f then usage(("cannot write %s: %s"):format(path, err)) end
  f:write(data)
  f:close()
end

-- tide report SOURCE... [--html FILE] [--json FILE]
function M.report(args)
  if help_asked("report", args) then return 0 end
  local pos, opt = parse(args, { html = true, json = true })
  if #pos == 0 then usage(usage_line("report")) end
  local docs = {}
  for i, src in ipairs(pos) do docs[i] = load(src) end
  local doc = results.merge(docs)
  io.stdout:write(text.render(doc))
  if opt.json then write(opt.json, outputs.encode(doc)) end
  if opt.html then write(opt.html, require("tide.html").render(doc)) end
  return 0
end

-- ---------------------------------------------------------------- compare

local function tolerance(s)
  local n = tonumber((s or "10%"):match("^(%d+%.?%d*)%%?$"))
  if not n or n == math.huge then
    usage(("--tolerance: expected a (finite) percentage like 10%%, got '%s'"):format(s))
  end
  return n / 100
end

-- Rows: { label, aspect, base, current, worse_when } for every request name
-- and trend both runs have.
local LATENCY = { { "p50", "med" }, { "p95", "p(95)" }, { "p99", "p(99)" }, { "avg", "avg" } }

local function latency_rows(base, cur, key, label, rows)
  local b, c = base.metrics[key], cur.metrics[key]
  if not (b and c and b.type == "trend" and c.type == "trend") then return end
  for _, l in ipairs(LATENCY) do
    rows[#rows + 1] = { label, l[1], b.values[l[2]], c.values[l[2]], "higher", time = b.contains == "time" }
  end
end

local function request_rows(base, cur, suffix, label, rows)
  latency_rows(base, cur, "http_req_duration" .. suffix, label, rows)
  local br, cr = base.metrics["http_reqs" .. suffix], cur.metrics["http_reqs" .. suffix]
  if br and cr then rows[#rows + 1] = { label, "req/s", br.values.rate, cr.values.rate, "lower" } end
  local bf, cf = base.metrics["http_req_failed" .. suffix], cur.metrics["http_req_failed" .. suffix]
  if bf and cf then rows[#rows + 1] = { label, "errors", bf.values.rate, cf.values.rate, "higher", rate = true } end
end

local function compare_rows(base, cur)
  local rows = {}
  request_rows(base, cur, "", "http (all)", rows)
  for _, n in ipairs(text.split(cur, "http_reqs", "name")) do
    request_rows(base, cur, results.key("", "name", n), n, rows)
  end
  local trends = {}
  for key, m in pairs(cur.metrics) do
    if m.type == "trend" and not key:match("^http_") and base.metrics[key] then trends[#trends + 1] = key end
  end
  table.sort(trends)
  for _, key in ipairs(trends) do latency_rows(base, cur, key, key, rows) end
  return rows
end

-- Worse beyond the tolerance? Error rates also need to move by 0.1 point,
-- so 0% -> 0.01% is not a regression.
local function worse(r, tol)
  local b, c = r[3] or 0, r[4] or 0
  if r[5] == "lower" then return c < b * (1 - tol) end
  if r.rate then return c > b * (1 + tol) and c - b > 0.001 end
  return c > b * (1 + tol)
end

local function fmt(r, v)
  if v == nil then return "-" end
  if r.rate then return ("%.2f%%"):format(100 * v) end
  if r.time then return ("%.2fms"):format(v) end
  return ("%.1f"):format(v)
end

local function change(b, c)
  if not b or b == 0 then return c and c ~= 0 and "new" or "0%" end
  return ("%+.1f%%"):format(100 * (c - b) / b)
end

-- tide compare BASE CURRENT [--tolerance 10%]: exit 1 when something got worse.
function M.compare(args)
  if help_asked("compare", args) then return 0 end
  local pos, opt = parse(args, { tolerance = true })
  if #pos ~= 2 then usage(usage_line("compare")) end
  local tol = tolerance(opt.tolerance)
  local base, cur = load(pos[1]), load(pos[2])
  local rows = compare_rows(base, cur)
  if #rows == 0 then
    usage(("%s and %s have no metrics in common (different scenarios?)"):format(pos[1], pos[2]))
  end
  local out, bad = { { "metric", "", "base", "current", "change", "" } }, 0
  for _, r in ipairs(rows) do
    local w = worse(r, tol)
    if w then bad = bad + 1 end
    out[#out + 1] = { r[1], r[2], fmt(r, r[3]), fmt(r, r[4]), change(r[3], r[4]), w and "✗ worse" or "" }
  end
  io.stdout:write(("base %s (%s), current %s (%s), tolerance %g%%\n\n"):format(
    tostring(base.run_id), tostring(base.tide.scenario), tostring(cur.run_id),
    tostring(cur.tide.scenario), tol * 100))
  io.stdout:write(table.concat(text.table_lines(out), "\n"), "\n\n")
  io.stdout:write(bad == 0 and "no regression beyond the tolerance\n"
    or ("%d figure%s worse beyond the tolerance\n"):format(bad, bad == 1 and "" or "s"))
  return bad == 0 and 0 or 1
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
