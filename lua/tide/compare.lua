-- `tide compare BASE CURRENT`: two runs side by side, judged as a CI gate.
-- A figure is a regression only when it moved the worse way beyond the
-- relative tolerance AND beyond an absolute floor (--min-delta for times, 0.1
-- point for error rates): two runs of an unchanged service differ by a few
-- milliseconds of scheduling noise, which a percentage alone calls "24% worse"
-- on a sub-millisecond figure. Bad option values raise { usage = ... } (exit 2).
local results = require "tide.results"
local series = require "tide.series"
local text = require "tide.text"
local thresholds = require "tide.thresholds"

local M = {}

local function usage(msg) error({ usage = msg }, 0) end

M.DEFAULT_TOLERANCE = "10%"
-- The floor for times, measured: 2-second runs of one unchanged load against
-- nginx on a 2-core machine shared with other work moved p95/p99 by up to
-- 8 ms (the load generator waiting for a CPU); see the README's compare section.
M.DEFAULT_MIN_DELTA = "10ms"
-- Error and pass rates must move by at least this much (0.1 point), so that
-- 0% -> 0.01% is not a regression.
local RATE_FLOOR = 0.001

-- ---------------------------------------------------------------- options

function M.tolerance(s)
  local n = tonumber((s or M.DEFAULT_TOLERANCE):match("^(%d+%.?%d*)%%?$"))
  if not n or n == math.huge then
    usage(("--tolerance: expected a (finite) percentage like 10%%, got '%s'"):format(s))
  end
  return n / 100
end

-- A duration with a unit ("1ms", "500us", "0.5s") or "0"; in milliseconds.
-- A bare number is refused: "--min-delta 2" could mean seconds or ms.
function M.min_delta(s)
  s = s or M.DEFAULT_MIN_DELTA
  local ok, v = false, nil
  if s:match("^%d") and (tonumber(s) == nil or tonumber(s) == 0) then
    ok, v = pcall(require("tide").duration, s)
  end
  if not ok or type(v) ~= "number" then
    usage(("--min-delta: expected a duration with a unit like 1ms, 500us or 0.5s, got '%s'"):format(s))
  end
  return v * 1e3
end

-- --metric NAME or NAME{tag:value,...}: parsed, malformed ones refused.
function M.selectors(list)
  local out = {}
  for _, s in ipairs(list or {}) do
    local name, filter = thresholds.parse_key(s)
    if not name or s:find("{}", 1, true) then
      usage(("--metric: expected NAME or NAME{tag:value}, got '%s'"):format(s))
    end
    out[#out + 1] = { text = s, name = name, filter = filter }
  end
  return out
end

-- ---------------------------------------------------------------- figures

-- How each metric is compared: a list of figures { aspect, read(values, doc),
-- worse = "higher"|"lower"|nil (nil: shown, not judged), kind }. kind "time"
-- (ms; the --min-delta floor applies), "ratio" (shown in %, the 0.1-point
-- floor applies), "per_s" (a rate per second; for throughput, the floor
-- applies to the time per request per user, VUs / rate), "plain".
local function pick(field) return function(v) return v[field] end end

local TREND = { { "p50", pick("med"), 0.50 }, { "p95", pick("p(95)"), 0.95 }, { "p99", pick("p(99)"), 0.99 } }

-- A percentile with fewer than this many samples above it in either run
-- (p99 of 300 samples is their third largest, which one hiccup of the load
-- generator's machine moves by milliseconds) is judged against BASE's
-- maximum instead: worse only when it is past everything BASE saw.
local MIN_TAIL = 10

local HIGHER_PER_S = { dropped_iterations = true, iterations_interrupted = true, http_body_truncated = true }

local function iteration_error_ratio(v, doc)
  local it = doc.metrics.iterations
  local n = it and it.values.count or 0
  return n > 0 and (v.count or 0) / n or nil
end

local function figures(name, m, filtered)
  if m.type == "trend" then
    local out = {}
    for i, f in ipairs(TREND) do
      out[i] = { f[1], f[2], worse = "higher", kind = m.contains == "time" and "time" or "plain", pct = f[3] }
    end
    return out
  elseif m.type == "counter" then
    if name == "http_reqs" then return { { "req/s", pick("rate"), worse = "lower", kind = "per_s" } } end
    if name == "iterations" then return { { "iter/s", pick("rate"), worse = "lower", kind = "per_s" } } end
    if name == "iteration_errors" and not filtered then
      return { { "errors", iteration_error_ratio, worse = "higher", kind = "ratio" } }
    end
    local higher = HIGHER_PER_S[name] or name == "iteration_errors"
    return { { "/s", pick("rate"), worse = higher and "higher" or nil, kind = "plain" } }
  elseif m.type == "rate" then
    if name == "http_req_failed" then return { { "errors", pick("rate"), worse = "higher", kind = "ratio" } } end
    if name == "checks" then return { { "passed", pick("rate"), worse = "lower", kind = "ratio" } } end
    return { { "rate", pick("rate"), kind = "ratio" } }
  end
  if name == "vus" or name == "vus_max" then return { { "max", pick("max"), kind = "plain" } } end
  return { { "value", pick("value"), kind = "plain" } }
end

-- ---------------------------------------------------------------- selection

-- A counter without samples is left out of a document: it counted 0.
local function absent_means_zero(doc, name, m)
  if m or not doc.metrics.iterations then return m end
  local other = { type = "counter", values = { count = 0, rate = 0 } }
  if name == "iteration_errors" or HIGHER_PER_S[name] then return other end
  return nil
end

-- One spelling per metric and tag set ("name{a:1,b:2}", tags sorted), so
-- that a selector finds its sub-metric however its tags were ordered.
local function canonical(name, filter)
  local tags = {}
  for k, v in pairs(filter) do tags[#tags + 1] = k .. ":" .. v end
  if #tags == 0 then return name end
  table.sort(tags)
  return name .. "{" .. table.concat(tags, ",") .. "}"
end

-- A document's metrics by canonical key, built once per document: a run
-- may have tens of thousands of request names.
local indexes = setmetatable({}, { __mode = "k" })

-- idx.by_key: canonical key -> metric; idx.splits[NAME]: NAME's one-tag
-- sub-metrics as { key, tag, value }.
local function index_of(doc)
  local idx = indexes[doc]
  if not idx then
    idx = { by_key = {}, splits = {} }
    for key, m in pairs(doc.metrics) do
      local n, f = results.parse_key(key)
      idx.by_key[canonical(n, f)] = m
      local tag, value = next(f)
      if tag and next(f, tag) == nil then
        idx.splits[n] = idx.splits[n] or {}
        table.insert(idx.splits[n], { key = key, tag = tag, value = value })
      end
    end
    indexes[doc] = idx
  end
  return idx
end

-- A sub-metric the document does not carry as such (e.g. {method:POST}):
-- worked out from the raw registry the file carries, as thresholds are.
local function from_registry(doc, name, filter)
  if type(doc.registry) ~= "table" or type(doc.registry[name]) ~= "table" then return nil end
  local metrics = require("tide.metrics").merge({ { [name] = doc.registry[name] } })
  local m, out = metrics[name], nil
  if m then
    local elapsed = doc.state.testRunDurationMs / 1e3
    local pick_tags = function(tags) return thresholds.matches(tags, filter) end
    local any = false
    for _, s in ipairs(m.series) do any = any or pick_tags(s.tags) end
    if any then
      local values, h = series.values(m, elapsed, pick_tags)
      if h then h:free() end
      out = { type = m.type, contains = m.contains, values = values }
    end
    for _, s in ipairs(m.series) do if s.hist then s.hist:free() end end
  end
  return out
end

-- The metric a subject means in one document, or nil. Only a sub-metric
-- the user named is looked for in the registry: one found by splitting
-- (a request name of the other run) is simply absent here.
local function lookup(doc, s)
  if next(s.filter) == nil then return absent_means_zero(doc, s.name, doc.metrics[s.name]) end
  local m = index_of(doc).by_key[canonical(s.name, s.filter)]
  if m == nil and s.named then m = from_registry(doc, s.name, s.filter) end
  return m
end

-- The sub-metrics NAME{tag:value} with one tag a document carries (request
-- names for http_*, checks per check, group_duration per group).
local function split_keys(doc, name, into)
  for _, k in ipairs(index_of(doc).splits[name] or {}) do into[k.key] = k end
end

-- What a row is called: request names stand alone, as in the summary;
-- http_* overall is "http (all)"; anything else by its key.
local function label_of(name, filter, key)
  local tag, value = next(filter)
  local single = tag and next(filter, tag) == nil
  local http = name:match("^http_") ~= nil
  if http and not tag then return "http (all)" end
  if http and single and tag == "name" then return value, value end
  return key or name
end

local function subject(name, filter, key)
  local label, request = label_of(name, filter, key)
  return { label = label, request = request, name = name, filter = filter }
end

-- Subjects of a selector: NAME alone means NAME overall and each of its
-- one-tag sub-metrics either run carries; NAME{...} means just that.
local function subjects(sel, base, cur)
  if next(sel.filter) then
    local one = subject(sel.name, sel.filter, sel.text)
    one.named = true
    return { one }
  end
  local out = { subject(sel.name, {}, nil) }
  if sel.overall then return out end
  local keys = {}
  split_keys(base, sel.name, keys)
  split_keys(cur, sel.name, keys)
  local sorted = {}
  for key in pairs(keys) do sorted[#sorted + 1] = key end
  table.sort(sorted)
  for _, key in ipairs(sorted) do
    out[#out + 1] = subject(sel.name, { [keys[key].tag] = keys[key].value }, key)
  end
  return out
end

-- The default selection: what a service's users feel (request durations,
-- failures, throughput; checks; iterations that raised), and every trend of
-- the scenario's own (celery_task_duration, metrics.trend). tide's
-- bookkeeping (vus, iteration_start_delay, dropped_iterations, ...) and the
-- sums of what is already compared (iteration_duration, group_duration)
-- only when asked for by --metric.
-- Throughput only overall: a request name's share follows the scenario's
-- mix (a random product page per iteration), so its own req/s moves with
-- chance; `--metric http_reqs` shows it per name.
local DEFAULT = { { "http_req_duration" }, { "http_reqs", overall = true }, { "http_req_failed" }, { "checks" },
                  { "iteration_errors" } }

local function default_selectors(base, cur)
  local list = {}
  for i, d in ipairs(DEFAULT) do list[i] = { text = d[1], name = d[1], filter = {}, overall = d.overall } end
  local own = {}
  for _, doc in ipairs({ base, cur }) do
    for key, m in pairs(doc.metrics) do
      if m.type == "trend" and not text.BUILTIN[key] and results.parse_key(key) == key then own[key] = true end
    end
  end
  local names = {}
  for n in pairs(own) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do list[#list + 1] = { text = n, name = n, filter = {} } end
  return list
end

-- ---------------------------------------------------------------- judging

-- Each run's users (its VU ceiling): throughput figures turn into the time
-- each user spends per request, so that the time floor applies to them too.
local function users(doc)
  local m = doc.metrics.vus_max or doc.metrics.vus
  local v = m and m.values and m.values.max
  return type(v) == "number" and v > 0 and v or nil
end

local function beyond_tolerance(row, tol)
  local b, c = row.base, row.cur
  if row.worse == "lower" then return c < b * (1 - tol) end
  return c > b * (1 + tol)
end

-- Past the absolute floor? Times by --min-delta; throughput by the time per
-- request per user (VUs / rate) growing by more than --min-delta; error and
-- pass rates by 0.1 point; anything else has no floor.
local function beyond_floor(row, min_delta, ctx)
  local b, c = row.base, row.cur
  if row.kind == "time" then return math.abs(c - b) > min_delta end
  if row.kind == "ratio" then return math.abs(c - b) > RATE_FLOOR end
  if row.kind == "per_s" and row.worse == "lower" and ctx.users_base and ctx.users_cur then
    if c <= 0 then return true end
    if b <= 0 then return false end
    return (ctx.users_cur / c - ctx.users_base / b) * 1e3 > min_delta
  end
  return true
end

local function too_few(row)
  return row.pct ~= nil and row.samples * (1 - row.pct) < MIN_TAIL
end

-- "worse", "noise" (beyond the tolerance, within the floor), "few" (beyond
-- both, but a percentile of too few samples, not past BASE's maximum) or nil.
local function verdict(row, tol, min_delta, ctx)
  if not row.worse or type(row.base) ~= "number" or type(row.cur) ~= "number" then return nil end
  if not beyond_tolerance(row, tol) then return nil end
  if not beyond_floor(row, min_delta, ctx) then return "noise" end
  if not too_few(row) then return "worse" end
  local past_max = { base = math.max(row.base, row.base_max or row.base), cur = row.cur,
                     worse = row.worse, kind = row.kind }
  return beyond_tolerance(past_max, tol) and beyond_floor(past_max, min_delta, ctx) and "worse" or "few"
end

-- ---------------------------------------------------------------- rows

-- A figure chosen twice (--metric checks --metric 'checks{check:x}') is
-- one row.
local function add_rows(rows, seen, s, bm, cm, base, cur)
  for _, f in ipairs(figures(s.name, cm, next(s.filter) ~= nil)) do
    local id = s.label .. "\0" .. f[1]
    if not seen[id] then
      seen[id] = true
      rows[#rows + 1] = { label = s.label, aspect = f[1], base = f[2](bm.values, base),
                          cur = f[2](cm.values, cur), worse = f.worse, kind = f.kind,
                          request = s.request, pct = f.pct, base_max = bm.values.max,
                          samples = math.min(bm.values.count or 0, cm.values.count or 0) }
    end
  end
end

-- Rows for every subject found in both runs; the ones found in only one run
-- go to `only` instead (request names and metrics alike).
local function collect(selectors, base, cur, explicit)
  local rows, only, seen = {}, {}, {}
  for _, sel in ipairs(selectors) do
    local any = false
    for _, s in ipairs(subjects(sel, base, cur)) do
      local bm, cm = lookup(base, s), lookup(cur, s)
      if bm or cm then any = true end
      if bm and cm and bm.type == cm.type then
        add_rows(rows, seen, s, bm, cm, base, cur)
      elseif bm or cm then
        only[#only + 1] = { label = s.label, request = s.request, gone = bm ~= nil }
      end
    end
    if explicit and not any then
      usage(("--metric '%s': neither run has it"):format(sel.text))
    end
  end
  return rows, only
end

-- Overall request rows first, then each request name, then the rest; within
-- a label, in selection order.
local function row_rank(r)
  if r.label == "http (all)" then return 1 end
  if r.request then return 2 end
  return 3
end

local function sort_rows(rows)
  local first = {}
  for i, r in ipairs(rows) do
    r.pos = i
    r.rank = row_rank(r)
    first[r.label] = first[r.label] or i
  end
  table.sort(rows, function(a, b)
    if a.rank ~= b.rank then return a.rank < b.rank end
    if a.label ~= b.label then
      if a.rank == 2 then return a.label < b.label end
      return first[a.label] < first[b.label]
    end
    return a.pos < b.pos
  end)
end

-- The request names (and chosen sub-metrics) found in one run only, request
-- names first; with --require-names a name gone from CURRENT fails.
local function only_lines(only, require_names)
  local lines, failed = {}, 0
  table.sort(only, function(a, b)
    if (a.request ~= nil) ~= (b.request ~= nil) then return a.request ~= nil end
    return a.label < b.label
  end)
  for _, o in ipairs(only) do
    local what = o.request and ("request name '%s'"):format(o.request) or o.label
    local where = o.gone and "in base only (gone)" or "in current only (new)"
    local bad = o.gone and o.request and require_names
    if bad then failed = failed + 1 end
    lines[#lines + 1] = ("  %s: %s%s"):format(what, where, bad and "  ✗ gone" or "")
  end
  return lines, failed
end

-- ---------------------------------------------------------------- output

local function fmt(r, v)
  if v == nil then return "-" end
  if r.kind == "ratio" then return ("%.2f%%"):format(100 * v) end
  if r.kind == "time" then return ("%.2fms"):format(v) end
  if math.abs(v) >= 1000 then return ("%.1f"):format(v) end
  return ("%.4g"):format(v)
end

local function change(b, c)
  if b == nil or c == nil then return "-" end
  if b == 0 then return c ~= 0 and "new" or "0%" end
  return ("%+.1f%%"):format(100 * (c - b) / b)
end

local MARK = { worse = "✗ worse", noise = "~ within floor", few = "~ few samples" }

-- Each thing once: a request name gone from the current run turns up under
-- http_req_duration, http_reqs and http_req_failed alike.
local function dedupe_only(only)
  local out, seen = {}, {}
  for _, o in ipairs(only) do
    local key = o.request and "request:" .. o.request or "metric:" .. o.label
    if not seen[key] then
      seen[key] = true
      out[#out + 1] = o
    end
  end
  return out
end

local function summary_line(bad, gone, noise, few)
  local line = "no regression beyond the tolerance and min-delta"
  if bad + gone > 0 then
    local parts = {}
    if bad > 0 then parts[#parts + 1] = ("%d figure%s worse"):format(bad, bad == 1 and "" or "s") end
    if gone > 0 then parts[#parts + 1] = ("%d request name%s gone"):format(gone, gone == 1 and "" or "s") end
    line = "regression: " .. table.concat(parts, ", ")
  end
  if noise > 0 then
    line = line .. ("; %d figure%s beyond the tolerance but within the floor"):format(noise, noise == 1 and "" or "s")
  end
  if few > 0 then
    line = line .. ("; %d percentile%s of too few samples to judge (fewer than %d above it)"):format(
      few, few == 1 and "" or "s", MIN_TAIL)
  end
  return line
end

-- The table of rows with their verdicts; returns its lines and how many
-- figures got each verdict.
local function judged_table(rows, settings, ctx)
  local out = { { "metric", "", "base", "current", "change", "" } }
  local count = { worse = 0, noise = 0, few = 0 }
  for _, r in ipairs(rows) do
    local v = verdict(r, settings.tolerance, settings.min_delta, ctx)
    if v then count[v] = count[v] + 1 end
    out[#out + 1] = { r.label, r.aspect, fmt(r, r.base), fmt(r, r.cur), change(r.base, r.cur), MARK[v] or "" }
  end
  return text.table_lines(out), count
end

-- settings: { tolerance = fraction, min_delta = ms, selectors = list (empty:
-- the defaults), require_names = bool, base_source, cur_source }.
-- Returns the report text and the exit code (0, or 1 on a regression).
function M.run(base, cur, settings)
  local explicit = #settings.selectors > 0
  local selectors = explicit and settings.selectors or default_selectors(base, cur)
  local rows, only = collect(selectors, base, cur, explicit)
  if #rows == 0 then
    usage(("%s and %s have no %smetrics in common (different scenarios?)"):format(
      settings.base_source, settings.cur_source, explicit and "chosen " or ""))
  end
  sort_rows(rows)
  local table_text, count = judged_table(rows, settings, { users_base = users(base), users_cur = users(cur) })
  local lines = {
    ("base %s (%s), current %s (%s)"):format(tostring(base.run_id), tostring(base.tide.scenario),
      tostring(cur.run_id), tostring(cur.tide.scenario)),
    ("tolerance %g%%, min-delta %gms (a figure is worse only beyond both)"):format(
      settings.tolerance * 100, settings.min_delta),
    "",
  }
  for _, l in ipairs(table_text) do lines[#lines + 1] = l end
  local only_text, gone = only_lines(dedupe_only(only), settings.require_names)
  if #only_text > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "in only one run (not compared):"
    for _, l in ipairs(only_text) do lines[#lines + 1] = l end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = summary_line(count.worse, gone, count.noise, count.few)
  return table.concat(lines, "\n") .. "\n", (count.worse + gone) > 0 and 1 or 0
end

return M
