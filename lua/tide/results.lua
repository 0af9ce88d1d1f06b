-- The results document: what `--out json` writes, what PostgreSQL stores,
-- what `tide report` and `tide compare` read back. k6's end-of-test summary
-- shape (metrics.NAME.values), plus each trend's histogram so runs merge
-- exactly, plus per-second points and what tide knows about the run.
local json = require "cjson"
local hist = require "tide.hist"
local series = require "tide.series"
local thresholds = require "tide.thresholds"
local redact = require "tide.redact"
local registry_merge = require("tide.metrics").merge

local M = {}

-- /2 carries the raw registry (every metric and tag set, exact histograms,
-- gauges with wall-clock times) and per-second histograms; /1 still loads.
M.FORMAT = "tide-results/2"
M.FORMATS = { ["tide-results/1"] = true, ["tide-results/2"] = true }

-- Sub-metrics kept in the document: per request name, group and check.
local SPLITS = {
  { match = "^http_", tag = "name" },
  { match = "^group_duration$", tag = "group" },
  { match = "^checks$", tag = "check" },
}

local function entry(m, elapsed, pick)
  local values, h = series.values(m, elapsed, pick)
  local out = { type = m.type, contains = m.contains, values = values }
  if h then
    out.histogram = h:encode()
    h:free() -- its buckets are C memory the collector cannot see: thousands would pile up
  end
  return out
end

local function split_tag(name)
  for _, s in ipairs(SPLITS) do
    if name:match(s.match) then return s.tag end
  end
end

function M.key(name, tag, value)
  return ("%s{%s:%s}"):format(name, tag, value)
end

-- "http_req_duration{name:assign,method:POST}" -> "http_req_duration", { name = "assign", ... }
function M.parse_key(key)
  local name, tags = thresholds.parse_key(key)
  if name then return name, tags end
  return key, {}
end

-- The sub-metrics NAME{tag:VALUE} of a document's metrics, keyed by VALUE.
function M.tagged(metrics, name, tag)
  local out = {}
  for key, m in pairs(metrics) do
    local base, tags = M.parse_key(key)
    if base == name and tags[tag] and next(tags, next(tags)) == nil and type(m) == "table" then
      out[tags[tag]] = m
    end
  end
  return out
end

-- Metric m with its series split by the value of one tag, in one pass (a
-- scan of every series per value was quadratic in request names).
local function split_by(m, tag)
  local parts = {}
  for _, s in ipairs(m.series) do
    local v = s.tags[tag]
    if v then
      local p = parts[v]
      if not p then
        p = { type = m.type, contains = m.contains, series = {} }
        parts[v] = p
      end
      p.series[#p.series + 1] = s
    end
  end
  return parts
end

local function doc_metrics(report)
  local out = {}
  for name, m in pairs(report.metrics) do
    if #m.series > 0 then
      out[name] = entry(m, report.elapsed)
      local tag = split_tag(name)
      for v, part in pairs(tag and split_by(m, tag) or {}) do
        out[M.key(name, tag, v)] = entry(part, report.elapsed)
      end
    end
  end
  return out
end

-- Which HTTP engine carried how many requests: { lean = N, curl = M }, or
-- nil when the run made none (or its document predates the counters).
local function engines(metrics)
  local lean, curl = metrics.http_reqs_lean, metrics.http_reqs_curl
  if not lean and not curl then return nil end
  local function n(m) return m and m.values and m.values.count or 0 end
  return { lean = n(lean), curl = n(curl) }
end

-- Failed requests by name and reason (a transport error or the HTTP status).
local function failures(report)
  local counts, list = {}, {}
  local m = report.metrics.http_reqs
  for _, s in ipairs(m and m.series or {}) do
    local status = tonumber(s.tags.status) or 0
    local reason = s.tags.error or (status >= 400 and ("HTTP " .. s.tags.status))
    if reason then
      local k = (s.tags.name or "?") .. "\0" .. reason
      if not counts[k] then
        counts[k] = { name = s.tags.name or "?", reason = reason, count = 0 }
        list[#list + 1] = counts[k]
      end
      counts[k].count = counts[k].count + s.value
    end
  end
  table.sort(list, function(a, b) return a.name .. a.reason < b.name .. b.reason end)
  return list
end

local function checks(report)
  local out = {}
  local parts = report.metrics.checks and split_by(report.metrics.checks, "check") or {}
  for _, name in ipairs(series.tag_values(report.metrics, "checks", "check")) do
    local p, t = series.sum_rate(parts[name].series)
    out[#out + 1] = { name = name, passes = p, fails = t - p }
  end
  return out
end

-- Threshold results, and each threshold's sub-metric in metrics[key].
local function attach_thresholds(report, metrics)
  for _, t in ipairs(report.threshold_results or {}) do
    local m = metrics[t.key]
    if not m and report.metrics[t.metric] then
      m = entry(report.metrics[t.metric], report.elapsed,
        function(tags) return thresholds.matches(tags, t.filter) end)
      metrics[t.key] = m
    end
    if m then
      m.thresholds = m.thresholds or {}
      m.thresholds[t.text] = { ok = t.ok }
    end
  end
end

-- The registry as the document carries it: what one process recorded, every
-- metric and tag set, so that documents merge into exactly what one process
-- would have recorded (tide.metrics.merge reads it back).
local function encode_registry(metrics)
  local out = {}
  for name, m in pairs(metrics) do
    if #m.series > 0 then
      local list = {}
      for i, s in ipairs(m.series) do
        local e = {}
        for k, v in pairs(s) do e[k] = v end
        if s.hist then e.hist = s.hist:encode() end
        list[i] = e
      end
      out[name] = { type = m.type, contains = m.contains, series = list }
    end
  end
  return out
end

-- ISO 8601 in UTC to the millisecond, so runs a second apart still order.
local function iso(t)
  if not t or t <= 0 then return nil end
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(math.floor((t - s) * 1000))
end

-- The document for a run that just ended (report: what the C side handed over).
function M.from_report(report)
  local metrics = doc_metrics(report)
  attach_thresholds(report, metrics)
  local results = {}
  for i, t in ipairs(report.threshold_results or {}) do
    results[i] = { key = t.key, text = t.text, ok = t.ok, observed = t.observed, metric = t.metric }
  end
  return {
    format = M.FORMAT,
    run_id = report.run_id,
    segment = report.segment, -- { index = I, count = N } for --segment I/N; absent when whole
    started = iso(report.started), finished = iso(report.finished),
    host = report.host,
    exit_code = report.exit_code,
    metrics = metrics,
    http_engines = engines(metrics),
    failures = failures(report),
    checks = checks(report),
    threshold_results = results,
    aborted = report.aborted,
    points = report.points,
    registry = encode_registry(report.metrics),
    state = { testRunDurationMs = report.elapsed * 1e3, interrupted = report.interrupted },
    tide = {
      version = report.version, scenario = report.scenario, scenarios = report.scenarios,
      threads = report.threads, target = redact.url(report.target),
    },
  }
end

-- ---------------------------------------------------------------- reading back

local function nonnull(v)
  if v == json.null then return nil end
  return v
end

-- cjson turns an empty list into {} and null into a sentinel: tidy both.
local function list(v)
  v = nonnull(v)
  return type(v) == "table" and v or {}
end

local function check_doc(doc, where)
  if type(doc) ~= "table" or type(doc.metrics) ~= "table" or type(doc.tide) ~= "table"
      or type(doc.state) ~= "table" then
    error(("%s is not a tide results document (no metrics/tide/state)"):format(where), 0)
  end
  for key, m in pairs(doc.metrics) do
    if type(m) ~= "table" or type(m.values) ~= "table" or type(m.type) ~= "string" then
      error(("%s: metric %s is malformed"):format(where, tostring(key)), 0)
    end
    if m.histogram ~= nil then
      local ok, err = hist.check(m.histogram)
      if not ok then error(("%s: metric %s: tide.hist.decode: %s"):format(where, key, err), 0) end
    end
  end
  doc.registry = nonnull(doc.registry)
  if doc.registry ~= nil and type(doc.registry) ~= "table" then
    error(("%s: registry is malformed"):format(where), 0)
  end
  doc.points, doc.failures, doc.checks = list(doc.points), list(doc.failures), list(doc.checks)
  doc.threshold_results = list(doc.threshold_results)
  doc.aborted = nonnull(doc.aborted)
  doc.tide.scenarios = list(doc.tide.scenarios)
  return doc
end

local function parse(text, where)
  local ok, doc = pcall(json.decode, text)
  if not ok then
    error(("%s is not JSON or is truncated (%s)"):format(where, tostring(doc)), 0)
  end
  return doc
end

-- A document from JSON text; where names it in errors.
function M.decode(text, where)
  return check_doc(parse(text, where), where)
end

-- Histogram slots stay packed in strings (hist.read_json): a big file
-- decodes to about its own size instead of four times it, and its text is
-- let go before the document is worked on.
function M.load_file(path)
  local text, err = hist.read_json(path)
  if not text then error(("cannot read %s"):format(err), 0) end
  local ok, doc = pcall(parse, text, path)
  text = nil
  collectgarbage()
  if not ok then error(doc, 0) end
  return check_doc(doc, path)
end

-- A histogram's table form with its slots as a list of numbers, whether or
-- not they were read packed into a string.
function M.plain_histogram(h)
  if type(h) ~= "table" or type(h.slots) ~= "string" then return h end
  local out, slots = {}, {}
  for k, v in pairs(h) do out[k] = v end
  for tok in h.slots:gmatch("[^,%s]+") do slots[#slots + 1] = math.tointeger(tonumber(tok)) or tonumber(tok) end
  out.slots = slots
  return out
end

-- The document as JSON, one metric at a time so that packed slots are
-- unpacked only for as long as their metric is being written.
local function plain_registry(reg)
  if type(reg) ~= "table" then return reg end
  local out = {}
  for name, m in pairs(reg) do
    local series = {}
    for i, s in ipairs(type(m) == "table" and type(m.series) == "table" and m.series or {}) do
      if type(s) == "table" and type(s.hist) == "table" and type(s.hist.slots) == "string" then
        local c = {}
        for k, v in pairs(s) do c[k] = v end
        c.hist = M.plain_histogram(s.hist)
        s = c
      end
      series[i] = s
    end
    local c = {}
    for k, v in pairs(type(m) == "table" and m or {}) do c[k] = v end
    c.series = series
    out[name] = c
  end
  return out
end

function M.encode(doc)
  local metrics, registry = doc.metrics, doc.registry
  doc.metrics = nil
  doc.registry = plain_registry(registry)
  local ok, rest = pcall(json.encode, doc)
  doc.metrics, doc.registry = metrics, registry
  if not ok then error(rest, 0) end
  local parts = {}
  for key, m in pairs(metrics) do
    local h = type(m) == "table" and m.histogram
    if h and type(h.slots) == "string" then
      local plain = {}
      for k, v in pairs(m) do plain[k] = v end
      plain.histogram = M.plain_histogram(h)
      m = plain
    end
    parts[#parts + 1] = json.encode(key) .. ":" .. json.encode(m)
  end
  local body = '"metrics":{' .. table.concat(parts, ",") .. "}"
  return rest == "{}" and "{" .. body .. "}" or rest:sub(1, -2) .. "," .. body .. "}"
end

-- ---------------------------------------------------------------- validating
-- What `tide db import` stores must read back: numbers finite, counts whole
-- and within what a double holds exactly, the keys the tables need present.

local MAX_COUNT = 2 ^ 53
local MAX_INT32 = 2 ^ 31 - 1

local function shown(v)
  if type(v) == "number" then return ("%.17g"):format(v) end
  if type(v) == "string" then return ("%q"):format(#v > 60 and v:sub(1, 60) .. "..." or v) end
  return v == json.null and "null" or type(v)
end

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

local function whole(v, max) return finite(v) and v >= 0 and v <= max and v == math.floor(v) end

local CHECKS = {
  count = { function(v) return whole(v, MAX_COUNT) end, "a whole number from 0 to 2^53" },
  int32 = { function(v) return whole(v, MAX_INT32) end, "a whole number from 0 to 2147483647" },
  number = { finite, "a finite number" },
  positive = { function(v) return finite(v) and v >= 0 end, "a finite number >= 0" },
  fraction = { function(v) return finite(v) and v >= 0 and v <= 1 end, "a number from 0 to 1" },
  text = { function(v) return type(v) == "string" and #v > 0 end, "a non-empty string" },
  time = { function(v) return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d") ~= nil end,
           "an ISO 8601 time (2024-01-31T12:00:00Z)" },
}

local function need(where, path, v, kind, optional)
  if optional and (v == nil or v == json.null) then return end
  local c = CHECKS[kind]
  if not c[1](v) then error(("%s: %s: expected %s, got %s"):format(where, path, c[2], shown(v)), 0) end
end

local VALUE_KIND = { count = "count", passes = "count", fails = "count", clamped = "count" }
local METRIC_TYPES = { counter = true, gauge = true, rate = true, trend = true }

local function validate_metric(where, key, m)
  local path = "metrics." .. key
  if not METRIC_TYPES[m.type] then
    error(("%s: %s.type: expected counter, gauge, rate or trend, got %s"):format(where, path, shown(m.type)), 0)
  end
  for k, v in pairs(m.values) do
    local kind = VALUE_KIND[k] or (m.type == "rate" and k == "rate" and "fraction")
      or ((m.type == "gauge" or (m.type == "trend" and m.contains ~= "time")) and "number") or "positive"
    need(where, ("%s.values.%s"):format(path, k), v, kind)
  end
end

local POINT_KINDS = { t = "int32", vus = "int32", reqs = "count", failed = "count", iterations = "count",
                      errors = "count", dropped = "count", p50 = "positive", p95 = "positive", p99 = "positive" }

-- Raises "WHERE: PATH: expected ..., got VALUE" at the first bad value.
function M.validate(doc, where)
  need(where, "run_id", doc.run_id, "text")
  need(where, "tide.scenario", doc.tide.scenario, "text")
  need(where, "state.testRunDurationMs", doc.state.testRunDurationMs, "positive")
  need(where, "exit_code", doc.exit_code, "int32", true)
  need(where, "started", doc.started, "time", true)
  need(where, "finished", doc.finished, "time", true)
  for key, m in pairs(doc.metrics) do validate_metric(where, key, m) end
  for i, p in ipairs(doc.points) do
    for k, kind in pairs(POINT_KINDS) do need(where, ("points[%d].%s"):format(i, k), p[k], kind, k ~= "t") end
  end
  for i, f in ipairs(doc.failures) do need(where, ("failures[%d].count"):format(i), f.count, "count") end
  for i, c in ipairs(doc.checks) do
    need(where, ("checks[%d].passes"):format(i), c.passes, "count")
    need(where, ("checks[%d].fails"):format(i), c.fails, "count")
  end
  local users = 0
  for i, sc in ipairs(doc.tide.scenarios) do
    need(where, ("tide.scenarios[%d].vus"):format(i), sc.vus, "int32", true)
    users = users + (tonumber(sc.vus) or 0)
  end
  need(where, "tide.scenarios[*].vus (their sum)", users, "int32")
  return doc
end

-- Values from a stored histogram (exact percentiles after a round trip).
function M.trend_hist(m)
  return m and m.histogram and hist.decode(m.histogram)
end

function M.recompute(doc)
  for _, m in pairs(doc.metrics) do
    local h = M.trend_hist(m)
    if h then
      local v = series.trend_values(h, m.contains == "time")
      for k, x in pairs(v) do m.values[k] = x end
      h:free() -- C memory the collector does not see: thousands would pile up
    end
  end
  return doc
end

-- ---------------------------------------------------------------- merging

local function merge_metric(into, m, seconds)
  if not into then
    into = { type = m.type, contains = m.contains, values = {}, histogram = m.histogram }
    for k, v in pairs(m.values) do into.values[k] = v end
    if m.type == "counter" then -- per second of the merged run, as the rest
      into.values.rate = seconds > 0 and (into.values.count or 0) / seconds or 0
    end
    return into
  end
  local a, b = into.values, m.values
  if m.type == "trend" and into.histogram and m.histogram then
    local other = hist.decode(m.histogram)
    local h = hist.decode(into.histogram):merge(other)
    into.histogram = h:encode()
    into.values = series.trend_values(h, m.contains == "time")
    h:free()
    other:free()
  elseif m.type == "counter" then
    a.count = (a.count or 0) + (b.count or 0)
    a.rate = seconds > 0 and a.count / seconds or 0
  elseif m.type == "rate" then
    a.passes, a.fails = (a.passes or 0) + (b.passes or 0), (a.fails or 0) + (b.fails or 0)
    local total = a.passes + a.fails
    a.rate = total > 0 and a.passes / total or 0
  else -- gauges of separate runs (a distributed run's shares) add up
    for _, k in ipairs({ "value", "min", "max" }) do a[k] = (a[k] or 0) + (b[k] or 0) end
  end
  return into
end

-- A point's http_req_duration histogram (packed, tide-results/2), or nil.
local function point_hist(p)
  if type(p.hist) ~= "string" then return nil end
  local ok, h = pcall(hist.unpack, p.hist)
  return ok and h or nil
end

-- Seconds of several documents added up; where every part of a second
-- carries its histogram, the merged second's percentiles are exact.
-- shift[i]: seconds added to document i's points (0 when absent).
local function merge_points(docs, shift)
  local by, hists, partial = {}, {}, {}
  for i, d in ipairs(docs) do
    for _, p in ipairs(d.points) do
      local t = p.t + (shift[i] or 0)
      local q = by[t] or { t = t, reqs = 0, failed = 0, iterations = 0, errors = 0, dropped = 0, vus = 0 }
      for _, k in ipairs({ "reqs", "failed", "iterations", "errors", "dropped", "vus" }) do
        q[k] = q[k] + (p[k] or 0)
      end
      by[t] = q
      local h = point_hist(p)
      if not h then partial[t] = true
      elseif hists[t] then hists[t]:merge(h); h:free()
      else hists[t] = h end
    end
  end
  local out = {}
  for t, q in pairs(by) do
    local h = hists[t]
    if h and not partial[t] then
      q.p50, q.p95, q.p99 = h:percentile(50) / 1e3, h:percentile(95) / 1e3, h:percentile(99) / 1e3
      q.hist = h:pack()
    end
    if h then h:free() end
    out[#out + 1] = q
  end
  table.sort(out, function(x, y) return x.t < y.t end)
  return out -- seconds some document kept only percentiles of have none
end

local function merge_counts(docs, field, keyf, sum)
  local by, out = {}, {}
  for _, d in ipairs(docs) do
    for _, e in ipairs(d[field]) do
      local k = keyf(e)
      if not by[k] then
        by[k] = {}
        for f, v in pairs(e) do by[k][f] = v end
        out[#out + 1] = by[k]
      else
        sum(by[k], e)
      end
    end
  end
  return out
end

-- The thresholds a document was judged by, parsed again.
local function threshold_list(results)
  local out = {}
  for _, r in ipairs(results or {}) do
    local expr = thresholds.expression(r.text)
    local name, filter = thresholds.parse_key(tostring(r.key))
    if expr and name then
      expr.key, expr.metric, expr.filter = r.key, name, filter
      out[#out + 1] = expr
    end
  end
  return out
end

local function all_have_registries(docs)
  for _, d in ipairs(docs) do
    if type(d.registry) ~= "table" then return false end
  end
  return true
end

local function merged_header(docs, seconds, shift)
  local first = docs[1]
  local ids = {}
  for i, d in ipairs(docs) do ids[i] = tostring(d.run_id or "?") end
  return {
    format = M.FORMAT,
    run_id = table.concat(ids, "+"),
    started = first.started, finished = docs[#docs].finished, host = first.host,
    points = merge_points(docs, shift),
    state = { testRunDurationMs = seconds * 1e3, interrupted = false },
    tide = first.tide,
    merged = #docs,
  }
end

-- Documents that carry their registries: one merge in C (metrics_merge, as
-- a run merges its threads), then the document made from the merged
-- registry as a run makes it, thresholds judged as a run judges them.
local function merge_registries(docs, seconds, shift, extra)
  local regs = {}
  for i, d in ipairs(docs) do regs[i] = d.registry end
  if extra then regs[#regs + 1] = extra end
  local report = { metrics = registry_merge(regs), elapsed = seconds }
  report.threshold_results = thresholds.evaluate(threshold_list(docs[1].threshold_results),
    report.metrics, series.values_for(report.metrics, seconds))
  local doc = merged_header(docs, seconds, shift)
  doc.metrics = doc_metrics(report)
  doc.http_engines = engines(doc.metrics)
  attach_thresholds(report, doc.metrics)
  doc.failures, doc.checks = failures(report), checks(report)
  doc.threshold_results = {}
  for i, t in ipairs(report.threshold_results) do
    doc.threshold_results[i] = { key = t.key, text = t.text, ok = t.ok, observed = t.observed, metric = t.metric }
  end
  doc.registry = encode_registry(report.metrics)
  for _, m in pairs(report.metrics) do
    for _, s in ipairs(m.series) do if s.hist then s.hist:free() end end
  end
  return doc
end

-- Writes metrics (as tide.metrics pushes a registry) to path as a document
-- carries its registry: for `tide report --add-registry`.
function M.write_registry(path, metrics)
  local f = assert(io.open(path, "w"))
  f:write(json.encode(encode_registry(metrics)))
  f:close()
end

-- Several runs (a distributed run's parts, or repeated runs) as one: trends
-- merge by adding histogram buckets, so percentiles are exact. Documents
-- without registries (tide-results/1, PostgreSQL) merge what they have.
-- shift (optional): per document, whole seconds it started after the first
-- (segments of one run: their seconds line up by wall clock).
-- extra: a registry (as documents carry it) merged in too: the metrics a
-- coordinator's own setup and teardown recorded beside its workers' runs.
function M.merge(docs, shift, extra)
  if #docs == 1 and not extra then return docs[1] end
  shift = shift or {}
  local seconds = 0
  for i, d in ipairs(docs) do
    seconds = math.max(seconds, d.state.testRunDurationMs / 1e3 + (shift[i] or 0))
  end
  if all_have_registries(docs) then return merge_registries(docs, seconds, shift, extra) end
  local metrics = {}
  for _, d in ipairs(docs) do
    for key, m in pairs(d.metrics) do metrics[key] = merge_metric(metrics[key], m, seconds) end
  end
  local doc = merged_header(docs, seconds, shift)
  doc.metrics = metrics
  doc.http_engines = engines(metrics)
  doc.failures = merge_counts(docs, "failures", function(e) return e.name .. "\0" .. e.reason end,
    function(a, b) a.count = a.count + b.count end)
  doc.checks = merge_counts(docs, "checks", function(e) return e.name end,
    function(a, b) a.passes, a.fails = a.passes + b.passes, a.fails + b.fails end)
  doc.threshold_results = M.reevaluate(docs[1].threshold_results, metrics)
  return doc
end

-- A document's entry as thresholds.evaluate sees a metric: its values, and
-- p(N) from its histogram.
local function entry_values(m, _, p)
  local v = {}
  for k, x in pairs(m.values) do v[k] = x end
  local h = p and M.trend_hist(m)
  if h then
    v[("p(%s)"):format(p)] = h:percentile(p) * (m.contains == "time" and 1e-3 or 1)
    h:free()
  end
  return v
end

-- Thresholds judged again on (merged) document metrics, by
-- thresholds.evaluate: each threshold's entry is its sub-metric already.
function M.reevaluate(results, metrics)
  local out = {}
  for i, t in ipairs(threshold_list(results)) do
    local own = {}
    for k, v in pairs(t) do own[k] = v end
    own.metric, own.filter = t.key, {}
    local r = thresholds.evaluate({ own }, { [t.key] = metrics[t.key] }, entry_values)[1]
    out[i] = { key = r.key, text = r.text, metric = t.metric, observed = r.observed, ok = r.ok }
  end
  return out
end

return M
