-- The end-of-test summary as text, from a results document: what `tide run`
-- prints and what `tide report` prints again.
local results = require "tide.results"

local M = {}

-- the metrics tide records itself (the C list), and tide.check's
local BUILTIN = { checks = true }
for name in pairs(require("tide.metrics").builtin) do BUILTIN[name] = true end
M.BUILTIN = BUILTIN

local function ms(x)
  if x >= 1e3 then return ("%.2fs"):format(x / 1e3) end
  if x >= 1 then return ("%.2fms"):format(x) end
  return ("%dµs"):format(math.floor(x * 1e3 + 0.5))
end

local function bytes(n)
  local units = { "B", "kB", "MB", "GB", "TB" }
  local i = 1
  while n >= 1000 and i < #units do n, i = n / 1000, i + 1 end
  return (i == 1 and "%d %s" or "%.1f %s"):format(n, units[i])
end

-- Display width of UTF-8 text (µ counts as one column).
local function width(s) return utf8.len(s) or #s end

local function pad(s, n, left)
  local fill = string.rep(" ", math.max(0, n - width(s)))
  return left and s .. fill or fill .. s
end

function M.table_lines(rows)
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, width(c)) end
  end
  local lines = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do cells[i] = pad(c, w[i], i == 1) end
    lines[#lines + 1] = "  " .. table.concat(cells, "  ")
  end
  return lines
end

local function values(doc, key)
  local m = doc.metrics[key]
  return m and m.values or {}
end

local function count(doc, key) return values(doc, key).count or 0 end

-- The tag values of the sub-metrics NAME{tag:*}, sorted.
function M.split(doc, name, tag)
  local out = {}
  for value in pairs(results.tagged(doc.metrics, name, tag)) do out[#out + 1] = value end
  table.sort(out)
  return out
end

local COLUMNS = { "request", "reqs", "req/s", "failed", "min", "avg", "med", "p90", "p95", "p99", "max" }

local function request_row(doc, label, suffix)
  local reqs, d = values(doc, "http_reqs" .. suffix), values(doc, "http_req_duration" .. suffix)
  local failed = values(doc, "http_req_failed" .. suffix).rate or 0
  return { label, ("%d"):format(reqs.count or 0), ("%.1f"):format(reqs.rate or 0),
           ("%.2f%%"):format(100 * failed), ms(d.min or 0), ms(d.avg or 0), ms(d.med or 0),
           ms(d["p(90)"] or 0), ms(d["p(95)"] or 0), ms(d["p(99)"] or 0), ms(d.max or 0) }
end

local function request_lines(doc)
  local names = M.split(doc, "http_reqs", "name")
  if #names == 0 then return {} end
  local rows = { COLUMNS }
  for _, n in ipairs(names) do rows[#rows + 1] = request_row(doc, n, "{name:" .. n .. "}") end
  if #names > 1 then rows[#rows + 1] = request_row(doc, "total", "") end
  local lines = M.table_lines(rows)
  if #doc.failures > 0 then
    lines[#lines + 1] = ""
    lines[#lines + 1] = "  failures (count, request, reason):"
    for _, f in ipairs(doc.failures) do
      lines[#lines + 1] = ("  %6d  %s  %s"):format(f.count, f.name, f.reason)
    end
  end
  return lines
end

local function shape(sc)
  local e = sc.executor
  if e == "constant-vus" then return ("%d VUs for %gs"):format(sc.vus, sc.duration) end
  if e == "per-vu-iterations" then return ("%d VUs × %d iterations"):format(sc.vus, sc.iterations) end
  if e == "shared-iterations" then
    return ("%d iterations shared by %d VUs"):format(sc.iterations, sc.vus)
  end
  if e == "constant-arrival-rate" then
    return ("%g iterations/s for %gs, up to %d VUs"):format(sc.rate, sc.duration, sc.vus)
  end
  return ("%d stage%s over %gs, up to %d VUs"):format(sc.stages, sc.stages == 1 and "" or "s",
    sc.duration, sc.vus)
end

local function header(doc)
  local t = doc.tide
  local lines = {
    ("tide %s  %s  (%d thread%s)%s"):format(t.version or "?", t.scenario or "?", t.threads or 0,
      t.threads == 1 and "" or "s", doc.run_id and ("  run " .. doc.run_id) or ""),
  }
  local seg = type(doc.segment) == "table" and doc.segment or nil
  if seg then
    lines[1] = lines[1] .. ("  segment %s/%s"):format(tostring(seg.index), tostring(seg.count))
  end
  for _, sc in ipairs(t.scenarios) do
    local at = (sc.start_time or 0) > 0 and (" from %gs"):format(sc.start_time) or ""
    lines[#lines + 1] = ("  %s: %s, %s%s"):format(sc.name, sc.executor, shape(sc), at)
  end
  if t.target and t.target ~= "" then lines[#lines + 1] = ("  target %s"):format(t.target) end
  local e = type(doc.http_engines) == "table" and doc.http_engines or {}
  if (e.lean or 0) > 0 and (e.curl or 0) > 0 then
    lines[#lines + 1] = ("  http engines: lean %d requests, curl %d"):format(e.lean, e.curl)
  end
  if type(doc.segments) == "table" then
    lines[#lines + 1] = "  " .. require("tide.segments").describe(doc.segments)
  elseif doc.merged then lines[#lines + 1] = ("  %d runs merged"):format(doc.merged) end
  return lines
end

local function observed(doc, r)
  if r.observed == nil then return "no data" end
  local m = doc.metrics[r.metric] or doc.metrics[r.key]
  if m and m.type == "trend" and m.contains == "time" and not r.text:match("count") then
    return ms(r.observed)
  end
  return ("%g"):format(r.observed)
end

local function threshold_lines(doc)
  if #doc.threshold_results == 0 then return {} end
  local lines = { "  thresholds" }
  if doc.aborted then lines[#lines + 1] = "    run aborted by " .. doc.aborted end
  for _, r in ipairs(doc.threshold_results) do
    lines[#lines + 1] = ("    %s %s: %s  (observed %s)"):format(r.ok and "✓" or "✗", r.key, r.text,
      observed(doc, r))
  end
  return lines
end

-- The figures the old Python tool reported (and CI stored), in seconds, so a
-- team moving over can compare with its history.
local function old_tool_lines(doc)
  local web = results.trend_hist(doc.metrics.http_req_duration)
  local container = results.trend_hist(doc.metrics.celery_task_duration)
  if not (web and container) then return {} end
  local rows = { { "old tool's figures (s)", "min", "max", "mean", "stdev" } }
  local function s(us) return ("%.4f"):format(us / 1e6) end
  for _, r in ipairs({ { "web time (http_req_duration)", web },
                       { "container time (celery_task_duration)", container } }) do
    local h = r[2]
    rows[#rows + 1] = { r[1], s(h:min()), s(h:max()), s(h:mean()), s(h:stdev()) }
  end
  return M.table_lines(rows)
end

local function group_lines(doc)
  local groups = M.split(doc, "group_duration", "group")
  if #groups == 0 then return {} end
  local lines = { "  groups" }
  for _, g in ipairs(groups) do
    local v = values(doc, results.key("group_duration", "group", g))
    lines[#lines + 1] = ("    %-30s %6d  avg %s  p95 %s  max %s"):format(g, v.count or 0, ms(v.avg or 0),
      ms(v["p(95)"] or 0), ms(v.max or 0))
  end
  return lines
end

local function check_lines(doc)
  if #doc.checks == 0 then return {} end
  local lines = { "  checks" }
  for _, c in ipairs(doc.checks) do
    lines[#lines + 1] = c.fails == 0 and ("    ✓ %s  (%d)"):format(c.name, c.passes)
      or ("    ✗ %s  (%d passed, %d failed)"):format(c.name, c.passes, c.fails)
  end
  return lines
end

local function custom_text(m)
  local v = m.values
  if m.type == "trend" then
    if m.contains ~= "time" then -- values as they are; beyond the kept range, counted
      local f = function(x) return ("%g"):format(x) end
      return ("min %s  avg %s  med %s  p95 %s  max %s  (%d)%s"):format(f(v.min or 0), f(v.avg or 0),
        f(v.med or 0), f(v["p(95)"] or 0), f(v.max or 0), v.count or 0,
        (v.clamped or 0) > 0 and ("  clamped %d"):format(v.clamped) or "")
    end
    return ("avg %s  med %s  p95 %s  max %s  (%d)%s"):format(ms(v.avg or 0), ms(v.med or 0),
      ms(v["p(95)"] or 0), ms(v.max or 0), v.count or 0,
      (v.clamped or 0) > 0 and ("  clamped %d past 1h"):format(v.clamped) or "")
  elseif m.type == "counter" then
    return ("%g  (%.1f/s)"):format(v.count or 0, v.rate or 0)
  elseif m.type == "rate" then
    return ("%.2f%%  (%d of %d)"):format(100 * (v.rate or 0), v.passes or 0, (v.passes or 0) + (v.fails or 0))
  end
  return ("%g  (min %g, max %g)"):format(v.value or 0, v.min or 0, v.max or 0)
end

-- One line per metric the scenario (or a tide module) defined itself.
local function custom_lines(doc)
  local names = {}
  for key in pairs(doc.metrics) do
    if not BUILTIN[key] and not key:find("{", 1, true) then names[#names + 1] = key end
  end
  table.sort(names)
  local lines = {}
  for _, name in ipairs(names) do
    lines[#lines + 1] = ("  %-24s %s"):format(name, custom_text(doc.metrics[name]))
  end
  return lines
end

local function iteration_lines(doc)
  local it, d = values(doc, "iterations"), values(doc, "iteration_duration")
  local lines = {
    ("  iterations   %d  (%.1f/s)   duration avg %s  p95 %s  max %s"):format(it.count or 0,
      it.rate or 0, ms(d.avg or 0), ms(d["p(95)"] or 0), ms(d.max or 0)),
  }
  local delay = doc.metrics.iteration_start_delay
  if delay then
    local v = delay.values
    lines[#lines + 1] = ("  start delay  med %s  p99 %s  max %s   (open model: late starts)"):format(
      ms(v.med or 0), ms(v["p(99)"] or 0), ms(v.max or 0))
  end
  local errs, cut = count(doc, "iteration_errors"), count(doc, "iterations_interrupted")
  local dropped = count(doc, "dropped_iterations")
  if errs > 0 or cut > 0 or dropped > 0 then
    lines[#lines + 1] = ("  iteration_errors %d   interrupted %d   dropped %d"):format(errs, cut, dropped)
  end
  lines[#lines + 1] = ("  data         sent %s  received %s   elapsed %.2fs%s"):format(
    bytes(count(doc, "data_sent")), bytes(count(doc, "data_received")),
    doc.state.testRunDurationMs / 1e3, doc.state.interrupted and "  (interrupted)" or "")
  local trunc = count(doc, "http_body_truncated")
  if trunc > 0 then lines[#lines + 1] = ("  bodies truncated at max_body: %d"):format(trunc) end
  return lines
end

local SECTIONS = { request_lines, threshold_lines, old_tool_lines, group_lines, check_lines, custom_lines }

function M.render(doc)
  local out = header(doc)
  out[#out + 1] = ""
  for _, section in ipairs(SECTIONS) do
    local lines = section(doc)
    for _, l in ipairs(lines) do out[#out + 1] = l end
    if #lines > 0 then out[#out + 1] = "" end
  end
  for _, l in ipairs(iteration_lines(doc)) do out[#out + 1] = l end
  return table.concat(out, "\n") .. "\n"
end

return M
