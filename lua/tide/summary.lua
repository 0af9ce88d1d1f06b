-- The end-of-test summary (stdout) and the JSON results (k6's summary shape,
-- plus each trend's histogram so runs can be merged later).
local json = require "cjson"
local hist = require "tide.hist"
local thresholds = require "tide.thresholds"

local M = {}

local PERCENTILES = { 90, 95, 99 }

-- Tags come as a table; the summary cares about the request name.
local function tag_label(tags, key)
  return string.format("%s{%s:%s}", "", key, tags[key])
end

local function merged(series, pick)
  local h = hist.new()
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then h:merge(s.hist) end
  end
  return h
end

local function sum_counter(series, pick)
  local v, n = 0, 0
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then v, n = v + s.value, n + s.count end
  end
  return v, n
end

local function sum_rate(series, pick)
  local p, t = 0, 0
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then p, t = p + s.passes, t + s.total end
  end
  return p, t
end

local function gauge(series)
  local v, lo, hi = 0, nil, nil
  for _, s in ipairs(series) do
    v = v + s.value
    lo = math.min(lo or s.min, s.min)
    hi = math.max(hi or s.max, s.max)
  end
  return v, lo or 0, hi or 0
end

-- k6 reports time trends in milliseconds.
local function trend_values(h, time)
  local scale = time and 1e-3 or 1
  local v = {
    count = h:count(), avg = h:mean() * scale, min = h:min() * scale,
    med = h:percentile(50) * scale, max = h:max() * scale,
  }
  for _, p in ipairs(PERCENTILES) do v[("p(%d)"):format(p)] = h:percentile(p) * scale end
  return v
end

local function metric_values(m, elapsed, pick)
  if m.type == "trend" then
    local h = merged(m.series, pick)
    return trend_values(h, m.contains == "time"), h
  elseif m.type == "counter" then
    local v = sum_counter(m.series, pick)
    return { count = v, rate = elapsed > 0 and v / elapsed or 0 }
  elseif m.type == "rate" then
    local p, t = sum_rate(m.series, pick)
    return { rate = t > 0 and p / t or 0, passes = p, fails = t - p }
  else
    local v, lo, hi = gauge(m.series)
    return { value = v, min = lo, max = hi }
  end
end

-- Values of the series pick selects, with p(N) added when asked; nil when
-- nothing was recorded (a counter with no samples is a count of 0).
local function values_of(report)
  return function(m, pick, p)
    local any = false
    for _, s in ipairs(m.series) do any = any or pick(s.tags) end
    if not any and m.type ~= "counter" then return nil end
    local v, h = metric_values(m, report.elapsed, pick)
    if p and h then
      v[("p(%s)"):format(p)] = h:percentile(p) * (m.contains == "time" and 1e-3 or 1)
    end
    return v
  end
end

local function names_of(report, metric, tag)
  metric, tag = metric or "http_reqs", tag or "name"
  local seen, names = {}, {}
  local m = report.metrics[metric]
  for _, s in ipairs(m and m.series or {}) do
    local n = s.tags[tag]
    if n and not seen[n] then seen[n] = true; names[#names + 1] = n end
  end
  table.sort(names)
  return names
end

local function by_name(name, tag)
  tag = tag or "name"
  return function(tags) return tags[tag] == name end
end

-- ---------------------------------------------------------------- JSON

local function json_metric(m, elapsed, pick)
  local values, h = metric_values(m, elapsed, pick)
  local out = { type = m.type, contains = m.contains, values = values }
  if h then out.histogram = h:encode() end
  return out
end

function M.to_json(report)
  local out = {}
  local names = names_of(report)
  local groups = names_of(report, "group_duration", "group")
  for name, m in pairs(report.metrics) do
    if #m.series > 0 then
      out[name] = json_metric(m, report.elapsed)
      local tag, values = nil, nil
      if name:match("^http_") then tag, values = "name", names end
      if name == "group_duration" then tag, values = "group", groups end
      for _, n in ipairs(values or {}) do
        out[name .. tag_label({ [tag] = n }, tag)] = json_metric(m, report.elapsed, by_name(n, tag))
      end
    end
  end
  for _, t in ipairs(report.threshold_results or {}) do
    local m = out[t.key]
    if not m and report.metrics[t.metric] then
      m = json_metric(report.metrics[t.metric], report.elapsed, function(tags)
        return thresholds.matches(tags, t.filter)
      end)
      out[t.key] = m
    end
    if m then
      m.thresholds = m.thresholds or {}
      m.thresholds[t.text] = { ok = t.ok }
    end
  end
  return {
    metrics = out,
    state = { testRunDurationMs = report.elapsed * 1e3, interrupted = report.interrupted },
    points = report.points,
    tide = {
      version = report.version, scenario = report.scenario, scenarios = report.scenarios,
      threads = report.threads, target = report.target,
    },
  }
end

-- ---------------------------------------------------------------- text

local function ms(us)
  if us >= 1e6 then return ("%.2fs"):format(us / 1e6) end
  if us >= 1e3 then return ("%.2fms"):format(us / 1e3) end
  return ("%dµs"):format(math.floor(us + 0.5))
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

local COLUMNS = { "reqs", "req/s", "failed", "min", "avg", "med", "p90", "p95", "p99", "max" }

local function request_row(label, report, pick)
  local m = report.metrics
  local h = merged(m.http_req_duration.series, pick)
  local reqs = sum_counter(m.http_reqs.series, pick)
  local fp, ft = sum_rate(m.http_req_failed.series, pick)
  local rate = report.elapsed > 0 and reqs / report.elapsed or 0
  return { label, ("%d"):format(reqs), ("%.1f"):format(rate),
           ("%.2f%%"):format(ft > 0 and 100 * fp / ft or 0),
           ms(h:min()), ms(h:mean()), ms(h:percentile(50)), ms(h:percentile(90)),
           ms(h:percentile(95)), ms(h:percentile(99)), ms(h:max()) }
end

local function table_lines(rows)
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

local function errors_lines(report)
  local counts, keys = {}, {}
  for _, s in ipairs(report.metrics.http_reqs.series) do
    local e = s.tags.error or (tonumber(s.tags.status) or 0) >= 400 and ("HTTP " .. s.tags.status)
    if e then
      local k = ("%s  %s"):format(s.tags.name, e)
      if not counts[k] then keys[#keys + 1] = k end
      counts[k] = (counts[k] or 0) + s.value
    end
  end
  table.sort(keys)
  local lines = {}
  for _, k in ipairs(keys) do lines[#lines + 1] = ("  %6d  %s"):format(counts[k], k) end
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

local function header(report)
  local t = report.threads
  local lines = {
    ("tide %s  %s  (%d thread%s)"):format(report.version, report.scenario, t, t == 1 and "" or "s"),
  }
  for _, sc in ipairs(report.scenarios) do
    local at = sc.start_time > 0 and (" from %gs"):format(sc.start_time) or ""
    lines[#lines + 1] = ("  %s: %s, %s%s"):format(sc.name, sc.executor, shape(sc), at)
  end
  if report.target ~= "" then lines[#lines + 1] = ("  target %s"):format(report.target) end
  return lines
end

local function iteration_lines(report)
  local m, e = report.metrics, report.elapsed
  local n = sum_counter(m.iterations.series)
  local h = merged(m.iteration_duration.series)
  local lines = {
    ("  iterations   %d  (%.1f/s)   duration avg %s  p95 %s  max %s"):format(
      n, e > 0 and n / e or 0, ms(h:mean()), ms(h:percentile(95)), ms(h:max())),
  }
  local errs = sum_counter(m.iteration_errors.series)
  local cut = sum_counter(m.iterations_interrupted.series)
  local dropped = sum_counter(m.dropped_iterations.series)
  if errs > 0 or cut > 0 or dropped > 0 then
    lines[#lines + 1] = ("  iteration_errors %d   interrupted %d   dropped %d"):format(errs, cut, dropped)
  end
  local sent, recv = sum_counter(m.data_sent.series), sum_counter(m.data_received.series)
  lines[#lines + 1] = ("  data         sent %s  received %s   elapsed %.2fs%s"):format(
    bytes(sent), bytes(recv), e, report.interrupted and "  (interrupted)" or "")
  local trunc = sum_counter(m.http_body_truncated.series)
  if trunc > 0 then
    lines[#lines + 1] = ("  bodies truncated at max_body: %d"):format(trunc)
  end
  return lines
end

local BUILTIN = {
  http_reqs = true, http_req_duration = true, http_req_waiting = true,
  http_req_connecting = true, http_req_tls_handshaking = true, http_req_failed = true,
  http_body_truncated = true, data_sent = true, data_received = true, iterations = true,
  iteration_duration = true, iteration_errors = true, iterations_interrupted = true,
  vus = true, vus_max = true, checks = true, dropped_iterations = true, group_duration = true,
}

-- Each check by name: ✓ when it always passed, ✗ with the count otherwise.
local function check_lines(report)
  local m = report.metrics.checks
  if not m or #m.series == 0 then return {} end
  local by, names = {}, {}
  for _, s in ipairs(m.series) do
    local n = s.tags.check or "?"
    if not by[n] then by[n] = { 0, 0 }; names[#names + 1] = n end
    by[n][1], by[n][2] = by[n][1] + s.passes, by[n][2] + s.total - s.passes
  end
  table.sort(names)
  local lines = { "  checks" }
  for _, n in ipairs(names) do
    local p, f = by[n][1], by[n][2]
    lines[#lines + 1] = f == 0 and ("    ✓ %s  (%d)"):format(n, p)
      or ("    ✗ %s  (%d passed, %d failed)"):format(n, p, f)
  end
  return lines
end

-- One line per metric the scenario (or a tide module) defined itself.
local function custom_lines(report)
  local names = {}
  for name, m in pairs(report.metrics) do
    if not BUILTIN[name] and #m.series > 0 then names[#names + 1] = name end
  end
  table.sort(names)
  local lines = {}
  for _, name in ipairs(names) do
    local m = report.metrics[name]
    local v = metric_values(m, report.elapsed)
    local text
    if m.type == "trend" then
      local f = m.contains == "time" and function(x) return ms(x * 1e3) end
        or function(x) return ("%g"):format(x) end
      text = ("avg %s  med %s  p95 %s  max %s  (%d)"):format(f(v.avg), f(v.med), f(v["p(95)"]),
        f(v.max), v.count)
    elseif m.type == "counter" then
      text = ("%g  (%.1f/s)"):format(v.count, v.rate)
    elseif m.type == "rate" then
      text = ("%.2f%%  (%d of %d)"):format(100 * v.rate, v.passes, v.passes + v.fails)
    else
      text = ("%g  (min %g, max %g)"):format(v.value, v.min, v.max)
    end
    lines[#lines + 1] = ("  %-24s %s"):format(name, text)
  end
  return lines
end

local function format_observed(report, t)
  if t.observed == nil then return "no data" end
  local m = report.metrics[t.metric]
  if m and m.type == "trend" and m.contains == "time" and not t.text:match("count") then
    return ms(t.observed * 1e3)
  end
  return ("%g"):format(t.observed)
end

-- The figures the old Python tool reported (and CI stored), in seconds, so a
-- team moving over can compare with its history.
local function old_tool_lines(report)
  local m = report.metrics
  if not (m.celery_task_duration and #m.celery_task_duration.series > 0) then return {} end
  local rows = { { "old tool's figures (s)", "min", "max", "mean", "stdev" } }
  for _, row in ipairs({ { "web time", "http_req_duration" }, { "container time", "celery_task_duration" } }) do
    local h = merged(m[row[2]].series)
    local function s(us) return ("%.4f"):format(us / 1e6) end
    rows[#rows + 1] = { ("%s (%s)"):format(row[1], row[2]), s(h:min()), s(h:max()), s(h:mean()),
                        s(h:stdev()) }
  end
  return table_lines(rows)
end

local function group_lines(report)
  local groups = names_of(report, "group_duration", "group")
  if #groups == 0 then return {} end
  local lines = { "  groups" }
  for _, g in ipairs(groups) do
    local h = merged(report.metrics.group_duration.series, by_name(g, "group"))
    lines[#lines + 1] = ("    %-30s %6d  avg %s  p95 %s  max %s"):format(g, h:count(), ms(h:mean()),
      ms(h:percentile(95)), ms(h:max()))
  end
  return lines
end

local function threshold_lines(report)
  local res = report.threshold_results or {}
  if #res == 0 then return {} end
  local lines = { "  thresholds" }
  if report.aborted then lines[#lines + 1] = "    run aborted by " .. report.aborted end
  for _, t in ipairs(res) do
    lines[#lines + 1] = ("    %s %s: %s  (observed %s)"):format(t.ok and "✓" or "✗", t.key, t.text,
      format_observed(report, t))
  end
  return lines
end

function M.text(report)
  local out = header(report)
  out[#out + 1] = ""
  local names = names_of(report)
  if #names > 0 then
    local rows = { { "request", table.unpack(COLUMNS, 1) } }
    for _, n in ipairs(names) do rows[#rows + 1] = request_row(n, report, by_name(n)) end
    if #names > 1 then rows[#rows + 1] = request_row("total", report) end
    for _, l in ipairs(table_lines(rows)) do out[#out + 1] = l end
    local errs = errors_lines(report)
    if #errs > 0 then
      out[#out + 1] = ""
      out[#out + 1] = "  failures (count, request, reason):"
      for _, l in ipairs(errs) do out[#out + 1] = l end
    end
    out[#out + 1] = ""
  end
  local th = threshold_lines(report)
  for _, l in ipairs(th) do out[#out + 1] = l end
  if #th > 0 then out[#out + 1] = "" end
  local old = old_tool_lines(report)
  for _, l in ipairs(old) do out[#out + 1] = l end
  if #old > 0 then out[#out + 1] = "" end
  local groups = group_lines(report)
  for _, l in ipairs(groups) do out[#out + 1] = l end
  if #groups > 0 then out[#out + 1] = "" end
  local checks = check_lines(report)
  for _, l in ipairs(checks) do out[#out + 1] = l end
  if #checks > 0 then out[#out + 1] = "" end
  local custom = custom_lines(report)
  for _, l in ipairs(custom) do out[#out + 1] = l end
  if #custom > 0 then out[#out + 1] = "" end
  for _, l in ipairs(iteration_lines(report)) do out[#out + 1] = l end
  return table.concat(out, "\n") .. "\n"
end

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then error(("cannot write %s: %s"):format(path, err), 0) end
  local ok, werr = f:write(text)
  f:close()
  if not ok then error(("cannot write %s: %s"):format(path, werr), 0) end
end

-- Checks the scenario's thresholds before the load: nil, or why they are wrong.
function M.validate(spec, metrics)
  local _, err = thresholds.parse(spec, metrics)
  return err
end

local function abort_list(spec, metrics)
  local list = thresholds.parse(spec, metrics) or {}
  local out = {}
  for _, t in ipairs(list) do
    if t.abort_on_fail then out[#out + 1] = t end
  end
  return out
end

-- Whether some threshold may stop the run early (then threads hand over
-- their metrics every second).
function M.can_abort(spec, metrics)
  return #abort_list(spec, metrics) > 0
end

-- During the run: the first abort_on_fail threshold that fails once its
-- delay_abort_eval has passed, as "KEY: EXPR (observed V)", or nil.
function M.abort_check(spec, metrics, elapsed)
  local report = { metrics = metrics, elapsed = elapsed }
  for _, t in ipairs(abort_list(spec, metrics)) do
    local delay = t.delay_abort_eval and require("tide").duration(t.delay_abort_eval) or 0
    if elapsed >= delay then
      local res = thresholds.evaluate({ t }, metrics, values_of(report))[1]
      if not res.ok and res.observed ~= nil then
        return ("%s: %s (observed %s)"):format(res.key, res.text, format_observed(report, res))
      end
    end
  end
end

-- Prints and writes what was asked; returns the exit code it implies.
function M.finish(report, outputs)
  local list = assert(thresholds.parse(report.thresholds, report.metrics))
  local all
  report.threshold_results, all = thresholds.evaluate(list, report.metrics, values_of(report))
  if report.aborted then all = false end
  if not outputs.quiet then io.stdout:write(M.text(report)) end
  if outputs.json then write_file(outputs.json, json.encode(M.to_json(report)) .. "\n") end
  io.stdout:flush()
  return all and 0 or 1
end

return M
