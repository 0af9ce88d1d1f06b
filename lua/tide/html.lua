-- tide.html: the results of a run (the decoded `--out json` document) as one
-- self-contained HTML page: inline CSS and SVG charts drawn here from the
-- data, no script, no fonts, nothing fetched.
--
--   local page = require("tide.html").render(doc)

local format = require "tide.format"
local results = require "tide.results"
local charts = require "tide.charts"
local trend_percentile = format.trend_percentile
local maximum = format.maximum
local json_null = format.json_null
local num = format.num
local str = format.str
local tbl = format.tbl
local flag = format.flag
local esc = format.esc
local DASH = format.DASH
local thousands = format.thousands
local fmt_count = format.fmt_count
local fmt_si = format.fmt_si
local fmt_rate = format.fmt_rate
local fmt_pct = format.fmt_pct
local fmt_duration = format.fmt_duration
local fmt_ms = format.fmt_ms
local fmt_bytes = format.fmt_bytes
local fmt_when = format.fmt_when
local hist_slots = format.hist_slots
local hist_percentile = format.hist_percentile
local COLORS = charts.COLORS
local ms_step = charts.ms_step
local whole_step = charts.whole_step
local fmt_clock = charts.fmt_clock
local tick_ms = charts.tick_ms
local tick_per_s = charts.tick_per_s
local tick_plain = charts.tick_plain
local time_chart = charts.time_chart
local distribution_chart = charts.distribution_chart

-- ---------------------------------------------------------- the metrics

local split_key = results.parse_key
local tagged = results.tagged

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function values(metrics, key)
  return tbl(tbl(metrics[key]).values)
end

-- A percentile of a trend in its own unit (ms for time): from values when
-- present, else from its histogram.

-- The figure a threshold expression looks at, from the metric entry.
local function observe(m, text)
  local agg = tostring(text):match("^%s*([%a_]+%b())") or tostring(text):match("^%s*([%a_]+)")
  if not agg then return nil end
  local v = tbl(tbl(m).values)
  local p = agg:match("^p%(([%d%.]+)%)$")
  if p then return trend_percentile(m, tonumber(p)) end
  if agg == "value" then return num(v.value) or num(v.count) end
  return num(v[agg])
end

-- How an observed threshold value reads: ms for time trends, else plain.
local function fmt_observed(m, text, observed)
  observed = num(observed)
  if not observed then return "no data" end
  local agg = tostring(text):match("^%s*([%a_]+)")
  if tbl(m).contains == "time" and tbl(m).type == "trend" and agg ~= "count" then
    return fmt_ms(observed)
  end
  if tbl(m).type == "rate" and agg == "rate" then
    return ("%g (%s)"):format(tonumber(("%.4g"):format(observed)), fmt_pct(observed))
  end
  if observed == math.floor(observed) and math.abs(observed) >= 1000 then return thousands(observed) end
  return ("%g"):format(tonumber(("%.6g"):format(observed)))
end

-- Thresholds: the document's threshold_results when it has them, else the
-- per-metric "thresholds" maps (observed values recomputed from the entry).
local function thresholds_of(doc, metrics)
  local list = {}
  local given = doc.threshold_results
  if type(given) == "table" and given ~= json_null and #given > 0 then
    for _, t in ipairs(given) do
      t = tbl(t)
      local key, text = str(t.key) or "?", str(t.text) or "?"
      local m = metrics[key] or metrics[str(t.metric) or ""] or metrics[(split_key(key))]
      list[#list + 1] = { key = key, text = text, ok = flag(t.ok),
                          observed = fmt_observed(m, text, t.observed) }
    end
    return list
  end
  for _, key in ipairs(sorted_keys(metrics)) do
    local m = tbl(metrics[key])
    for _, text in ipairs(sorted_keys(tbl(m.thresholds))) do
      list[#list + 1] = { key = key, text = text, ok = flag(tbl(m.thresholds[text]).ok),
                          observed = fmt_observed(m, text, observe(m, text)) }
    end
  end
  return list
end

-- One row per request name, plus the total.
local function request_rows(metrics)
  local reqs = tagged(metrics, "http_reqs", "name")
  if next(reqs) == nil then reqs = tagged(metrics, "http_req_duration", "name") end
  local function row(label, suffix, total)
    local m = metrics["http_req_duration" .. suffix]
    local d, r = tbl(tbl(m).values), values(metrics, "http_reqs" .. suffix)
    local function p(n) return m and trend_percentile(m, n) end
    return { label = label, total = total, count = num(r.count) or num(d.count), rate = num(r.rate),
             failed = num(values(metrics, "http_req_failed" .. suffix).rate),
             min = d.min, avg = d.avg, med = p(50), p90 = p(90), p95 = p(95), p99 = p(99), max = d.max }
  end
  local rows = {}
  for _, name in ipairs(sorted_keys(reqs)) do
    rows[#rows + 1] = row(name, "{name:" .. name .. "}")
  end
  if #rows ~= 1 and (metrics.http_reqs or metrics.http_req_duration) then
    rows[#rows + 1] = row("total", "", true)
  end
  return rows
end

-- Checks by name (the document's list, else checks{check:NAME}), then all
-- checks together.
local function check_rows(doc, metrics)
  local rows = {}
  for _, c in ipairs(tbl(doc.checks)) do
    c = tbl(c)
    rows[#rows + 1] = { name = str(c.name) or "?", passes = num(c.passes) or 0,
                        fails = num(c.fails) or 0 }
  end
  if #rows == 0 then
    for name, m in pairs(tagged(metrics, "checks", "check")) do
      local v = tbl(m.values)
      rows[#rows + 1] = { name = name, passes = num(v.passes) or 0, fails = num(v.fails) or 0 }
    end
  end
  table.sort(rows, function(a, b) return a.name < b.name end)
  local all = values(metrics, "checks")
  if metrics.checks then
    rows[#rows + 1] = { name = "all checks", total = true, passes = num(all.passes) or 0,
                        fails = num(all.fails) or 0 }
  end
  return rows
end

local BUILTIN = require("tide.text").BUILTIN

local function custom_keys(metrics)
  local keys = {}
  for _, key in ipairs(sorted_keys(metrics)) do
    if not BUILTIN[(split_key(key))] then keys[#keys + 1] = key end
  end
  return keys
end

-- Seconds since the start as written, if they make a time axis: numbers,
-- rising, within a century. Otherwise the points' positions stand in.
local function seconds_of(points)
  local t, last = {}, nil
  for i, p in ipairs(points) do
    local v = num(tbl(p).t)
    if not v or (last and v <= last) or math.abs(v) > 3.2e9 then
      t = {}
      for j in ipairs(points) do t[j] = j - 1 end
      return t
    end
    t[i], last = v, v
  end
  return t
end

-- The per-second points as columns; latency is nil in seconds without requests.
local function series_of(points)
  local s = { t = seconds_of(points), reqs = {}, iterations = {}, failed = {}, errors = {},
              dropped = {}, vus = {}, p50 = {}, p95 = {}, p99 = {} }
  for n, p in ipairs(points) do
    p = tbl(p)
    for _, k in ipairs({ "reqs", "iterations", "failed", "errors", "dropped", "vus" }) do
      s[k][n] = num(p[k]) or 0
    end
    local has = (num(p.reqs) or 0) > 0
    for _, k in ipairs({ "p50", "p95", "p99" }) do s[k][n] = has and num(p[k]) or nil end
  end
  return s
end


-- ---------------------------------------------------------- page pieces

local function legend(items)
  local out = { '<div class="legend">' }
  for _, it in ipairs(items) do
    out[#out + 1] = ('<span><i style="background:%s"></i>%s</span>'):format(it[2], esc(it[1]))
  end
  out[#out + 1] = "</div>"
  return table.concat(out)
end

local function chart_card(title, note, items, svg, wide)
  note = note and ('<span class="note">%s</span>'):format(esc(note)) or ""
  return ('<section class="card chartcard%s"><div class="cardhead"><h3>%s</h3>%s</div>%s%s</section>')
    :format(wide and " wide" or "", esc(title), note, legend(items), svg)
end

local function any_positive(list)
  for _, v in ipairs(list) do if v > 0 then return true end end
  return false
end

-- Long runs are drawn in at most MAX_COLUMNS columns: each one the average
-- of consecutive seconds, or their peak for VUs and the tail percentiles.
local MAX_COLUMNS = 600
local PEAK = { vus = true, p95 = true, p99 = true }

local function bucket(list, from, to, peak)
  local sum, count, top = 0, 0, nil
  for i = from, to do
    local v = list[i]
    if v then sum, count, top = sum + v, count + 1, math.max(top or v, v) end
  end
  if peak then return top end
  return count > 0 and sum / count or nil
end

local function downsample(s)
  local n = #s.t
  if n <= MAX_COLUMNS then return s, 1 end
  local k = math.ceil(n / MAX_COLUMNS)
  local out = {}
  for key in pairs(s) do out[key] = {} end
  for from = 1, n, k do
    local j = #out.t + 1
    out.t[j] = s.t[from]
    for key, list in pairs(s) do
      if key ~= "t" then out[key][j] = bucket(list, from, math.min(n, from + k - 1), PEAK[key]) end
    end
  end
  return out, k
end

local function legend_items(list)
  local out = {}
  for _, it in ipairs(list) do out[#out + 1] = { it.name, it.color } end
  return out
end

-- Throughput, latency percentiles, VUs and errors over time.
local function time_charts(points, merged)
  local s, k = downsample(series_of(points))
  local function ser(name, key, extra)
    local t = { name = name, color = COLORS[key], ys = s[key] }
    for f, v in pairs(extra or {}) do t[f] = v end
    return t
  end
  local per = k > 1 and ("per second, %ds averages"):format(k) or "per second"
  local reqs = { ser("requests/s", "reqs", { area = true }),
                 ser("iterations/s", "iterations", { dash = true }) }
  local lat = { ser("p50", "p50"), ser("p95", "p95"), ser("p99", "p99") }
  local vus = { ser("active VUs", "vus", { area = true }) }
  local errs = { ser("failed requests/s", "failed", { area = true }),
                 ser("iteration errors/s", "errors") }
  if any_positive(s.dropped) then
    errs[#errs + 1] = ser("dropped iterations/s", "dropped", { dash = true })
  end
  local function chart(title, note, series, spec)
    spec.xs, spec.series = s.t, series
    return chart_card(title, note, legend_items(series), time_chart(spec))
  end
  return table.concat({
    chart("Throughput", per, reqs, { label = "requests per second over time", tick = tick_per_s,
      tip = fmt_rate }),
    chart("Latency percentiles", k > 1 and ("http_req_duration, %ds peaks"):format(k)
      or "http_req_duration, per second", lat, { label = "latency percentiles over time",
      tick = tick_ms, tip = fmt_ms, step = ms_step,
      missing = merged and "per-second percentiles are not kept when runs are merged"
        or "no per-second percentiles in this result" }),
    chart("Virtual users", k > 1 and "peak active" or "active at the end of each second", vus, {
      label = "active virtual users over time", tick = tick_plain, tip = fmt_count, step = whole_step }),
    chart("Errors", (any_positive(s.failed) or any_positive(s.errors) or any_positive(s.dropped))
      and per or "none recorded",
      errs, { label = "errors over time", tick = tick_per_s, tip = fmt_rate }),
  })
end

local function distribution_card(m)
  local v = tbl(tbl(m).values)
  local note = num(v.count) and ("http_req_duration · %s requests · mean %s"):format(
    fmt_count(v.count), fmt_ms(v.avg)) or "http_req_duration"
  return chart_card("Latency distribution", note, { { "share of requests", COLORS.bars },
    { "p50", COLORS.p50 }, { "p95", COLORS.p95 }, { "p99", COLORS.p99 } }, distribution_chart(m), true)
end

local function charts(doc, metrics)
  return table.concat({
    '<div class="grid2">', time_charts(tbl(doc.points), num(doc.merged)), "</div>",
    distribution_card(metrics.http_req_duration),
  })
end

local function html_table(head, rows, class)
  local out = { ('<div class="tablewrap"><table class="%s"><thead><tr>'):format(class or "") }
  for _, h in ipairs(head) do out[#out + 1] = ("<th>%s</th>"):format(esc(h)) end
  out[#out + 1] = "</tr></thead><tbody>"
  for _, r in ipairs(rows) do
    out[#out + 1] = ("<tr%s>"):format(r.class and (' class="%s"'):format(r.class) or "")
    for _, c in ipairs(r) do out[#out + 1] = ("<td>%s</td>"):format(c) end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</tbody></table></div>"
  return table.concat(out)
end

local function section(title, body, extra)
  return ('<section class="card%s"><div class="cardhead"><h2>%s</h2></div>%s</section>'):format(
    extra and " " .. extra or "", esc(title), body)
end

local function muted(text) return ('<p class="muted">%s</p>'):format(esc(text)) end

local function failed_cell(rate)
  local text = esc(fmt_pct(rate))
  return (num(rate) or 0) > 0 and ('<span class="bad">%s</span>'):format(text) or text
end

-- Failed requests by name and reason, most frequent first.
local function failures_table(doc)
  local list = {}
  for _, f in ipairs(tbl(doc.failures)) do
    f = tbl(f)
    list[#list + 1] = { name = str(f.name) or "?", reason = str(f.reason) or "?",
                        count = num(f.count) or 0 }
  end
  if #list == 0 then return "" end
  table.sort(list, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.name .. a.reason < b.name .. b.reason
  end)
  local rows = {}
  for _, f in ipairs(list) do
    rows[#rows + 1] = { ('<span class="name">%s</span>'):format(esc(f.name)),
                        ('<span class="reason">%s</span>'):format(esc(f.reason)), fmt_count(f.count) }
  end
  return '<h4>Failures by reason</h4>' .. html_table({ "request", "reason", "count" }, rows, "failures")
end

local function requests_section(doc, metrics)
  local rows = request_rows(metrics)
  if #rows == 0 then return section("Requests", muted("No HTTP requests were made in this run.")) end
  local out = {}
  for _, r in ipairs(rows) do
    out[#out + 1] = {
      class = r.total and "total" or nil,
      ('<span class="name">%s</span>'):format(esc(r.label)), fmt_count(r.count), fmt_rate(r.rate),
      failed_cell(r.failed), fmt_ms(r.min), fmt_ms(r.avg), fmt_ms(r.med), fmt_ms(r.p90),
      fmt_ms(r.p95), fmt_ms(r.p99), fmt_ms(r.max),
    }
  end
  return section("Requests", html_table({ "request", "reqs", "req/s", "failed", "min", "avg", "med",
    "p90", "p95", "p99", "max" }, out, "num") .. failures_table(doc))
end

local function thresholds_section(list)
  if #list == 0 then return section("Thresholds", muted("No thresholds were defined for this run.")) end
  local out = { '<ul class="checklist">' }
  for _, t in ipairs(list) do
    out[#out + 1] = ('<li class="%s"><span class="mark">%s</span><span class="what"><code>%s</code> '
      .. '<b>%s</b></span><span class="obs">observed %s</span></li>'):format(t.ok and "ok" or "fail",
      t.ok and "✓" or "✗", esc(t.key), esc(t.text), esc(t.observed))
  end
  out[#out + 1] = "</ul>"
  return section("Thresholds", table.concat(out))
end

local function check_bar(passes, fails)
  local total = passes + fails
  local pct = total > 0 and passes / total * 100 or 0
  return ('<span class="bar"><i style="width:%.1f%%"></i></span>'):format(pct)
end

local function checks_section(doc, metrics)
  local rows = check_rows(doc, metrics)
  if #rows == 0 then return section("Checks", muted("No checks were recorded.")) end
  local out = {}
  for _, r in ipairs(rows) do
    local total = r.passes + r.fails
    out[#out + 1] = {
      class = r.total and "total" or nil,
      ('<span class="mark %s">%s</span> <span class="name">%s</span>'):format(
        r.fails == 0 and "ok" or "fail", r.fails == 0 and "✓" or "✗", esc(r.name)),
      fmt_count(r.passes),
      r.fails > 0 and ('<span class="bad">%s</span>'):format(fmt_count(r.fails)) or "0",
      fmt_pct(total > 0 and r.passes / total or nil), check_bar(r.passes, r.fails),
    }
  end
  return section("Checks", html_table({ "check", "passes", "fails", "rate", "" }, out, "num checks"))
end

local function trend_row(label, m)
  local v = tbl(tbl(m).values)
  local f = tbl(m).contains == "time" and fmt_ms or function(x)
    return num(x) and ("%g"):format(tonumber(("%.4g"):format(x))) or DASH
  end
  local clamped = num(v.clamped) or 0 -- values beyond the kept range
  if clamped > 0 then label = ("%s (%s clamped)"):format(label, fmt_count(clamped)) end
  return { ('<span class="name">%s</span>'):format(esc(label)), fmt_count(v.count), f(v.min),
           f(v.avg), f(v.med), f(v["p(90)"]), f(v["p(95)"]), f(v["p(99)"]), f(v.max) }
end

local TREND_HEAD = { "", "count", "min", "avg", "med", "p90", "p95", "p99", "max" }

local function group_label(name)
  return (name:gsub("^::", ""):gsub("::", " › "))
end

local function groups_section(metrics)
  local groups = tagged(metrics, "group_duration", "group")
  if next(groups) == nil then return "" end
  local rows = {}
  for _, g in ipairs(sorted_keys(groups)) do rows[#rows + 1] = trend_row(group_label(g), groups[g]) end
  local head = { table.unpack(TREND_HEAD) }
  head[1] = "group"
  return section("Groups", html_table(head, rows, "num"))
end

-- A counter, rate or gauge: its figure and a line under it.
local function custom_value(m)
  local v = tbl(m.values)
  if m.type == "counter" then
    return fmt_count(v.count), ("counter · %s/s"):format(fmt_rate(v.rate))
  elseif m.type == "rate" then
    return fmt_pct(v.rate), ("rate · %s of %s"):format(fmt_count(v.passes),
      fmt_count((num(v.passes) or 0) + (num(v.fails) or 0)))
  elseif m.type == "gauge" then
    return fmt_si(v.value), ("gauge · min %s, max %s"):format(fmt_si(v.min), fmt_si(v.max))
  end
  return DASH, str(m.type) or ""
end

local function stat_tile(label, value, sub, mono)
  return ('<div><dt%s>%s</dt><dd>%s</dd>%s</div>'):format(mono and ' class="name"' or "", esc(label),
    esc(value), sub and ('<small>%s</small>'):format(esc(sub)) or "")
end

local function custom_section(metrics)
  local keys = custom_keys(metrics)
  if #keys == 0 then return "" end
  local trends, others = {}, {}
  for _, key in ipairs(keys) do
    local m = tbl(metrics[key])
    if m.type == "trend" then
      trends[#trends + 1] = trend_row(key, m)
    else
      local value, sub = custom_value(m)
      others[#others + 1] = stat_tile(key, value, sub, true)
    end
  end
  local body = {}
  if #others > 0 then body[#body + 1] = '<dl class="stats">' .. table.concat(others) .. "</dl>" end
  if #trends > 0 then
    local head = { table.unpack(TREND_HEAD) }
    head[1] = "trend"
    body[#body + 1] = html_table(head, trends, "num")
  end
  return section("Custom metrics", table.concat(body))
end

local function timings_section(metrics)
  local rows = {}
  for _, key in ipairs({ "http_req_waiting", "http_req_connecting", "http_req_tls_handshaking",
                         "iteration_duration" }) do
    if metrics[key] then rows[#rows + 1] = trend_row(key, metrics[key]) end
  end
  local counters = {}
  local function counter(label, key, f)
    local v = values(metrics, key)
    if num(v.count) then counters[#counters + 1] = stat_tile(label, (f or fmt_count)(v.count)) end
  end
  counter("iterations", "iterations")
  counter("iteration errors", "iteration_errors")
  counter("iterations interrupted", "iterations_interrupted")
  counter("dropped iterations", "dropped_iterations")
  counter("bodies truncated", "http_body_truncated")
  counter("data sent", "data_sent", fmt_bytes)
  counter("data received", "data_received", fmt_bytes)
  if #rows == 0 and #counters == 0 then return "" end
  local head = { table.unpack(TREND_HEAD) }
  head[1] = "timing"
  return section("Timings and totals", (#counters > 0 and
    '<dl class="stats">' .. table.concat(counters) .. "</dl>" or "")
    .. (#rows > 0 and html_table(head, rows, "num") or ""))
end

-- ------------------------------------------------------ header and verdict

local function executor_text(sc)
  local e, vus = str(sc.executor) or "?", num(sc.vus) or 0
  local dur, its, rate = num(sc.duration) or 0, num(sc.iterations) or 0, num(sc.rate) or 0
  local stages = num(sc.stages) or 0
  if e == "per-vu-iterations" then
    return ("%s VUs × %s iterations"):format(fmt_count(vus), fmt_count(its))
  end
  if e == "shared-iterations" then
    return ("%s iterations shared by %s VUs"):format(fmt_count(its), fmt_count(vus))
  end
  if e == "constant-vus" then return ("%s VUs for %s"):format(fmt_count(vus), fmt_clock(dur)) end
  if e == "constant-arrival-rate" then
    return ("%g iterations/s for %s, up to %s VUs"):format(rate, fmt_clock(dur), fmt_count(vus))
  end
  if stages > 0 then
    return ("%s stage%s over %s, up to %s VUs"):format(fmt_count(stages), stages == 1 and "" or "s",
      fmt_clock(dur), fmt_count(vus))
  end
  return ("up to %s VUs"):format(fmt_count(vus))
end

local function executors_html(scenarios)
  local out = {}
  for _, sc in ipairs(scenarios) do
    sc = tbl(sc)
    local start = num(sc.start_time) or 0
    out[#out + 1] = ('<li><b>%s</b><span class="exec">%s</span>%s%s</li>'):format(
      esc(str(sc.name) or "default"), esc(str(sc.executor) or "?"), esc(executor_text(sc)),
      start > 0 and esc(" · starts at " .. fmt_clock(start)) or "")
  end
  if #out == 0 then return "" end
  return '<ul class="executors">' .. table.concat(out) .. "</ul>"
end

local function scenario_title(path)
  local base = path:match("([^/]+)$") or path
  return (base:gsub("%.lua$", ""))
end

local function meta_item(label, value)
  if not value or value == "" then return "" end
  return ('<div><dt>%s</dt><dd>%s</dd></div>'):format(esc(label), esc(value))
end

-- Two waves.
local LOGO = table.concat({
  '<svg class="logo" viewBox="0 0 32 32" aria-hidden="true">',
  '<path d="M2 20c4 0 5-8 9-8s5 8 9 8 5-8 10-8" fill="none" stroke="#7dd3fc" stroke-width="3"',
  ' stroke-linecap="round"/>',
  '<path d="M2 27c4 0 5-5 9-5s5 5 9 5 5-5 10-5" fill="none" stroke="#38bdf8" stroke-opacity=".55"',
  ' stroke-width="2.5" stroke-linecap="round"/></svg>',
})

-- "2026-01-02 10:20:30 → 10:21:30 UTC" when both ends are on the same day.
local function when(started, finished)
  if not (started and finished) then return started or (finished and "finished " .. finished) end
  local d1, t1 = started:match("^(%S+) (%S+) UTC$")
  local d2, t2 = finished:match("^(%S+) (%S+) UTC$")
  if d1 and d1 == d2 then return ("%s %s → %s UTC"):format(d1, t1, t2) end
  return ("%s → %s"):format(started, finished)
end

local function header(doc)
  local t, st = tbl(doc.tide), tbl(doc.state)
  local scenario = str(t.scenario) or "unnamed scenario"
  local secs = num(st.testRunDurationMs) and st.testRunDurationMs / 1000
  local threads = num(t.threads)
  return table.concat({
    '<header class="top"><div class="wrap">',
    ('<div class="brand">%s<span>tide</span><span class="ver">%s</span></div>'):format(LOGO,
      esc(str(t.version) and "v" .. str(t.version) or "")),
    ('<h1>%s</h1>'):format(esc(scenario_title(scenario))),
    '<dl class="meta">',
    meta_item("scenario", scenario),
    meta_item("target", str(t.target)),
    meta_item("when", when(fmt_when(doc.started) or fmt_when(st.started),
      fmt_when(doc.finished) or fmt_when(st.finished))),
    meta_item("duration", secs and fmt_duration(secs)),
    meta_item("threads", threads and fmt_count(threads)),
    meta_item("host", str(doc.host)),
    meta_item("run", str(doc.run_id)),
    meta_item("merged", num(doc.merged) and ("%s runs"):format(fmt_count(doc.merged))),
    "</dl>",
    executors_html(tbl(t.scenarios)),
    "</div></header>",
  })
end

-- PASS / FAIL from the thresholds (and the exit code when given); an
-- interrupted or aborted run says so.
local function verdict(doc, thresholds)
  local st = tbl(doc.state)
  local failed = {}
  for _, t in ipairs(thresholds) do if not t.ok then failed[#failed + 1] = t end end
  local code = num(doc.exit_code)
  local aborted = doc.aborted or st.aborted
  local v = { tone = "pass", word = "PASS" }
  if #failed > 0 or (code and code ~= 0 and code ~= 130) then v = { tone = "fail", word = "FAIL" } end
  if #thresholds == 0 and v.tone == "pass" then v = { tone = "neutral", word = "DONE" } end
  local notes = {}
  if aborted and aborted ~= false and aborted ~= json_null then
    v = { tone = "fail", word = "ABORTED" }
    notes[#notes + 1] = type(aborted) == "string" and "stopped early by " .. aborted
      or "stopped early by a failing threshold"
  elseif flag(st.interrupted) or flag(doc.interrupted) or code == 130 then
    v.tone, v.word = "warn", "INTERRUPTED"
    notes[#notes + 1] = "the run was interrupted before the end; figures are partial"
  end
  if #thresholds == 0 then
    notes[#notes + 1] = "no thresholds were defined"
  else
    notes[#notes + 1] = ("%d of %d thresholds passed"):format(#thresholds - #failed, #thresholds)
  end
  if code then notes[#notes + 1] = ("exit code %s"):format(fmt_count(code)) end
  local detail = {}
  for i, t in ipairs(failed) do
    if i > 3 then detail[#detail + 1] = ("and %d more"):format(#failed - 3); break end
    detail[#detail + 1] = ("%s: %s (observed %s)"):format(t.key, t.text, t.observed)
  end
  local failed_line = #detail > 0
    and ('<div class="failed">✗ %s</div>'):format(esc(table.concat(detail, " · "))) or ""
  return ('<div class="verdict %s"><div class="word">%s</div>'
    .. '<div class="why"><div>%s</div>%s</div></div>')
    :format(v.tone, v.word, esc(table.concat(notes, " · ")), failed_line)
end

local function short_rate(r)
  return (num(r) or 0) >= 1e5 and fmt_si(r) or fmt_rate(r)
end

local function kpi(label, value, sub, tone)
  return ('<div class="kpi%s"><div class="label">%s</div><div class="value">%s</div>'
    .. '<div class="sub">%s</div></div>'):format(tone and " " .. tone or "", esc(label), esc(value),
      esc(sub or ""))
end

-- "12 raised an error · 3 dropped", or the rate when all went well.
local function iteration_note(its, errs, dropped)
  local notes = {}
  if errs > 0 then notes[#notes + 1] = ("%s raised an error"):format(fmt_count(errs)) end
  if dropped > 0 then notes[#notes + 1] = ("%s dropped"):format(fmt_count(dropped)) end
  if #notes > 0 then return table.concat(notes, " · ") end
  return num(its.rate) and ("%s/s"):format(fmt_rate(its.rate)) or nil
end

local function key_figures(doc, metrics)
  local reqs, dur = values(metrics, "http_reqs"), values(metrics, "http_req_duration")
  local m = metrics.http_req_duration
  local med, p95, p99 = trend_percentile(m, 50), trend_percentile(m, 95), trend_percentile(m, 99)
  local failed, its = values(metrics, "http_req_failed"), values(metrics, "iterations")
  local s = series_of(tbl(doc.points))
  local peak = maximum(s.reqs)
  local total = (num(failed.passes) or 0) + (num(failed.fails) or 0)
  local errs = num(values(metrics, "iteration_errors").count) or 0
  local dropped = num(values(metrics, "dropped_iterations").count) or 0
  local vus_max = num(values(metrics, "vus").max) or maximum(s.vus)
  local allocated = num(values(metrics, "vus_max").max)
  local rx, tx = values(metrics, "data_received"), values(metrics, "data_sent")
  local bad = (num(failed.rate) or 0) > 0
  return table.concat({
    '<div class="kpis">',
    kpi("Requests", fmt_si(reqs.count or 0),
      num(reqs.count) and fmt_count(reqs.count) .. " in total" or "no requests"),
    kpi("Request rate", short_rate(reqs.rate) .. (num(reqs.rate) and "/s" or ""),
      (peak or 0) > 0 and ("peak %s/s"):format(short_rate(peak)) or nil),
    kpi("Failed", fmt_pct(failed.rate),
      total > 0 and ("%s of %s requests"):format(fmt_count(failed.passes or 0), fmt_count(total)) or nil,
      bad and "bad" or (total > 0 and "good" or nil)),
    kpi("p95 latency", fmt_ms(p95), med and "median " .. fmt_ms(med) or nil),
    kpi("p99 latency", fmt_ms(p99), num(dur.max) and "max " .. fmt_ms(dur.max) or nil),
    kpi("Iterations", fmt_si(its.count), iteration_note(its, errs, dropped), errs > 0 and "bad" or nil),
    kpi("VUs max", fmt_count(vus_max), allocated and ("%s allocated"):format(fmt_count(allocated)) or nil),
    kpi("Data received", fmt_bytes(rx.count), num(tx.count) and "sent " .. fmt_bytes(tx.count) or nil),
    "</div>",
  })
end

-- ------------------------------------------------------------------ CSS

local CSS = [[
:root{--bg:#f3f5f9;--card:#fff;--ink:#0f172a;--muted:#64748b;--line:#e5e9f0;--soft:#f8fafc;
--ok:#15803d;--okbg:#ecfdf3;--bad:#b91c1c;--badbg:#fef2f2;--warn:#b45309;--warnbg:#fffbeb}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1200px;margin:0 auto;padding:0 28px}
code,.name{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
header.top{background:linear-gradient(120deg,#0b1324 0%,#12264d 55%,#0e4a6e 100%);color:#e2e8f0;padding:22px 0 70px}
.brand{display:flex;align-items:center;gap:8px;font-weight:600;letter-spacing:.02em;color:#bae6fd}
.brand .logo{width:26px;height:26px}
.brand .ver{font-weight:500;font-size:12px;color:#94a3b8;border:1px solid #334155;border-radius:99px;padding:0 8px}
h1{margin:14px 0 10px;font-size:30px;line-height:1.2;color:#fff;font-weight:650;word-break:break-word}
.meta{display:flex;flex-wrap:wrap;gap:6px 28px;margin:0}
.meta div{min-width:0}
.meta dt{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#94a3b8}
.meta dd{margin:0;color:#f1f5f9;word-break:break-all}
.executors{list-style:none;padding:0;margin:14px 0 0;display:flex;flex-wrap:wrap;gap:8px}
.executors li{background:rgba(255,255,255,.08);border:1px solid rgba(255,255,255,.12);border-radius:8px;padding:4px 10px;font-size:13px}
.executors b{color:#fff;margin-right:6px}
.exec{color:#7dd3fc;margin-right:8px}
main.wrap{margin-top:-48px;padding-bottom:40px}
.verdict{display:flex;align-items:center;gap:20px;border-radius:14px;padding:18px 24px;background:var(--card);
box-shadow:0 1px 2px rgba(15,23,42,.06),0 8px 24px rgba(15,23,42,.08);border-left:8px solid}
.verdict .word{font-size:30px;font-weight:800;letter-spacing:.06em}
.verdict .why{color:var(--muted)}
.verdict .failed{color:var(--bad);margin-top:2px;word-break:break-word}
.verdict.pass{border-color:#22c55e}.verdict.pass .word{color:var(--ok)}
.verdict.fail{border-color:#ef4444}.verdict.fail .word{color:var(--bad)}
.verdict.warn{border-color:#f59e0b}.verdict.warn .word{color:var(--warn)}
.verdict.neutral{border-color:#94a3b8}.verdict.neutral .word{color:#475569}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:14px;margin:18px 0}
.kpi{background:var(--card);border-radius:12px;padding:14px 16px;border:1px solid var(--line);min-width:0}
.kpi .label{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.kpi .value{font-size:26px;font-weight:700;font-variant-numeric:tabular-nums;margin:2px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.kpi .sub{font-size:12.5px;color:var(--muted);min-height:1.5em}
.kpi.bad{background:var(--badbg);border-color:#fecaca}.kpi.bad .value{color:var(--bad)}
.kpi.good .value{color:var(--ok)}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:16px 18px;margin:14px 0;min-width:0}
.cardhead{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap;margin-bottom:8px}
h2,h3{margin:0;font-size:15px;font-weight:650}
.note{color:var(--muted);font-size:12.5px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:0 14px}
.grid2>.card{margin:14px 0 0}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:0 14px;align-items:start}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12.5px;color:#334155;margin-bottom:4px}
.legend i{display:inline-block;width:12px;height:3px;border-radius:2px;margin-right:6px;vertical-align:middle}
svg.chart{display:block;width:100%;height:auto;overflow:visible}
svg.chart text{font-family:inherit}
.grid{stroke:#edf0f5;stroke-width:1}
.axis{stroke:#cbd5e1;stroke-width:1}
.tick{fill:#64748b;font-size:11px;font-variant-numeric:tabular-nums}
.axistitle{fill:#94a3b8;font-size:11px}
.empty{fill:#94a3b8;font-size:14px}
.line{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
.line.dash{stroke-dasharray:5 4;stroke-width:1.6}
.hits rect{fill:transparent}
.hits rect:hover{fill:rgba(15,23,42,.05)}
.bars rect:hover{fill-opacity:.7}
.pline{stroke-width:1.5;stroke-dasharray:4 3}
.marklabel{font-size:11.5px;font-weight:600}
.tablewrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);font-weight:600;text-align:right;padding:6px 10px;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:7px 10px;border-bottom:1px solid #f1f4f8;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td:first-child{white-space:normal;word-break:break-all}
tbody tr:hover{background:var(--soft)}
tr.total td{font-weight:650;border-top:1px solid var(--line);background:var(--soft)}
.bad{color:var(--bad);font-weight:600}
.muted{color:var(--muted)}
p.muted{margin:4px 0}
.checklist{list-style:none;margin:0;padding:0}
.checklist li{display:flex;align-items:baseline;gap:10px;padding:7px 2px;border-bottom:1px solid #f1f4f8}
.checklist li:last-child{border-bottom:0}
.checklist .what{flex:1;min-width:0;word-break:break-all}
.checklist .obs{color:var(--muted);white-space:nowrap;font-variant-numeric:tabular-nums}
.checklist li.fail .obs{color:var(--bad)}
span.mark{display:inline-flex;align-items:center;justify-content:center;width:20px;height:20px;border-radius:50%;font-size:12px;font-weight:700;flex:none}
.ok span.mark,span.mark.ok{background:var(--okbg);color:var(--ok)}
.fail span.mark,span.mark.fail{background:var(--badbg);color:var(--bad)}
.checks td:first-child{word-break:break-word}
.bar{display:inline-block;width:90px;height:6px;border-radius:3px;background:#fecaca;vertical-align:middle;overflow:hidden}
.bar i{display:block;height:100%;background:#22c55e}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:0 0 12px}
.stats div{background:var(--soft);border-radius:8px;padding:8px 12px}
.stats dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.stats dt.name{text-transform:none;letter-spacing:0;font-size:12px;word-break:break-all}
.stats dd{margin:0;font-size:17px;font-weight:650;font-variant-numeric:tabular-nums}
.stats small{display:block;color:var(--muted);font-size:12px}
h4{margin:16px 0 4px;font-size:13px;font-weight:650;color:#334155}
.reason{color:var(--bad)}
table.failures td:nth-child(2),table.failures th:nth-child(2){text-align:left}
table.failures td:first-child{width:40%}
footer{color:var(--muted);font-size:12px;text-align:center;padding:8px 0 28px}
@media (max-width:900px){.kpis{grid-template-columns:repeat(2,1fr)}.grid2,.cols{grid-template-columns:1fr}}
@media (max-width:520px){.wrap{padding:0 12px}.kpi .value{font-size:21px}h1{font-size:24px}.verdict{padding:14px;gap:12px}.verdict .word{font-size:22px}}
@media print{body{background:#fff}.card,.kpi{break-inside:avoid}}
]]

-- ------------------------------------------------------------------ page

local function title_of(doc)
  local t = tbl(doc.tide)
  return ("%s · tide report"):format(scenario_title(str(t.scenario) or "run"))
end

local function render(doc)
  doc = tbl(doc)
  local metrics = tbl(doc.metrics)
  local thresholds = thresholds_of(doc, metrics)
  local version = str(tbl(doc.tide).version)
  return table.concat({
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    '<meta name="viewport" content="width=device-width,initial-scale=1">',
    ('<meta name="generator" content="tide%s">'):format(version and " " .. esc(version) or ""),
    ("<title>%s</title>"):format(esc(title_of(doc))),
    "<style>", CSS, "</style></head><body>",
    header(doc),
    '<main class="wrap">',
    verdict(doc, thresholds),
    key_figures(doc, metrics),
    charts(doc, metrics),
    requests_section(doc, metrics),
    '<div class="cols">', thresholds_section(thresholds), checks_section(doc, metrics), "</div>",
    groups_section(metrics),
    custom_section(metrics),
    timings_section(metrics),
    "</main>",
    ("<footer>tide%s · report generated %s · a single self-contained file</footer>"):format(
      version and " " .. esc(version) or "", esc(os.date("!%Y-%m-%d %H:%M UTC"))),
    "</body></html>\n",
  })
end

return { render = render }
