-- SVG charts for the HTML report, drawn from the per-second points and the
-- latency histogram: axes, ticks with units, gridlines, legends, hover columns.
local format = require "tide.format"
local maximum = format.maximum
local trend_percentile = format.trend_percentile
local num = format.num
local tbl = format.tbl
local esc = format.esc
local DASH = format.DASH
local fmt_count = format.fmt_count
local fmt_si = format.fmt_si
local fmt_ms = format.fmt_ms
local hist_slots = format.hist_slots

local M = {}

-- ------------------------------------------------------------ SVG helpers

local COLORS = {
  reqs = "#2563eb", iterations = "#0891b2", p50 = "#10b981", p95 = "#f59e0b", p99 = "#e11d48",
  vus = "#7c3aed", failed = "#dc2626", errors = "#ea580c", dropped = "#64748b", bars = "#3b82f6",
}

local function f1(x) return ("%.1f"):format(x) end

local TIME_STEPS = { 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                     21600, 43200, 86400 }

local function nice_step(span, ticks)
  local raw = span / ticks
  local mag = 10 ^ math.floor(math.log(raw, 10))
  for _, m in ipairs({ 1, 2, 2.5, 5, 10 }) do
    if raw <= m * mag * (1 + 1e-9) then return m * mag end
  end
  return 10 * mag
end

-- Steps of an axis in ms: round numbers up to half a minute, then round
-- durations (1m, 5m, 30m, 1h, ...).
local function ms_step(span, ticks)
  if span / ticks < 30000 then return nice_step(span, ticks) end
  for _, s in ipairs(TIME_STEPS) do
    if span / (s * 1000) <= ticks then return s * 1000 end
  end
  return nice_step(span / 86400000, ticks) * 86400000
end

-- Steps of a count (users): whole numbers.
local function whole_step(span, ticks)
  return math.max(1, nice_step(span, ticks))
end

-- Ticks from 0 to a round top above max; step_of picks the step.
local function linear_ticks(max, ticks, step_of)
  max = (num(max) and max > 0) and max or 1
  local step = (step_of or nice_step)(max, ticks or 4)
  local n = math.ceil(max / step - 1e-9)
  local list = {}
  for i = 0, n do list[#list + 1] = i * step end
  return list, n * step
end

local function time_ticks(x0, x1, ticks)
  local span, step = x1 - x0, nil
  for _, s in ipairs(TIME_STEPS) do
    if span / s <= ticks then step = s; break end
  end
  step = step or nice_step(span, ticks)
  -- counted, not stepped: far from 0 a float step may not move v at all
  local first = math.ceil(x0 / step) * step
  local n = math.floor((x1 - first) / step + 1e-9)
  local list = {}
  if not (n >= 0 and n <= 4 * ticks) then return list end
  for i = 0, n do list[#list + 1] = first + i * step end
  return list
end

-- 90 -> "1m30s"
local function fmt_clock(s)
  s = math.floor(s + 0.5)
  if s < 60 then return ("%.0fs"):format(s) end
  local h, m, sec = s // 3600, s % 3600 // 60, s % 60
  local out = h > 0 and ("%.0fh"):format(h) or ""
  if m > 0 or (h > 0 and sec > 0) then out = out .. ("%.0fm"):format(m) end
  if sec > 0 then out = out .. ("%.0fs"):format(sec) end
  return out
end

-- Axis labels in milliseconds: 0, 500µs, 20ms, 1.5s, 2m, 1h30m.
local function tick_ms(v)
  if v == 0 then return "0" end
  if v >= 60000 then return fmt_clock(v / 1000) end
  if v >= 1000 then return ("%gs"):format(tonumber(("%.4g"):format(v / 1000))) end
  if v >= 1 then return ("%gms"):format(tonumber(("%.4g"):format(v))) end
  return ("%gµs"):format(tonumber(("%.4g"):format(v * 1000)))
end

-- Log axis labels in µs: 10µs, 1ms, 100s, 16.7m, 2.78h, 11.6d.
local function tick_us(v)
  local s = v / 1e6
  if s < 100 then return tick_ms(v / 1000) end
  for _, u in ipairs({ { 86400, "d" }, { 3600, "h" }, { 60, "m" } }) do
    if s >= 10 * u[1] or (u[2] == "m" and s >= 1000) then
      return ("%.3g%s"):format(s / u[1], u[2])
    end
  end
  return ("%.3gs"):format(s)
end
local function tick_per_s(v) return v == 0 and "0" or fmt_si(v) .. "/s" end
local function tick_plain(v) return fmt_si(v) end

-- A chart's drawing area in a W×H view box.
local function plot_area(w, h, top, bottom)
  return { w = w, h = h, l = 60, r = 18, t = top or 14, b = bottom or 30 }
end

local function x_of(a, x0, x1)
  return function(v) return a.l + (v - x0) / (x1 - x0) * (a.w - a.l - a.r) end
end

local function y_of(a, top)
  return function(v) return a.h - a.b - v / top * (a.h - a.t - a.b) end
end

local function svg_open(w, h, label)
  return ('<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">'):format(w, h,
    esc(label))
end

local function y_axis(a, ticks, y, fmt)
  local out = {}
  for _, v in ipairs(ticks) do
    local py = f1(y(v))
    out[#out + 1] = ('<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s"/>'):format(a.l, a.w - a.r,
      py, py)
    out[#out + 1] = ('<text class="tick" x="%d" y="%s" text-anchor="end" dy="0.32em">%s</text>')
      :format(a.l - 8, py, esc(fmt(v)))
  end
  return table.concat(out)
end

local function x_axis(a, ticks, x, fmt)
  local base = a.h - a.b
  local out = { ('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>'):format(a.l, a.w - a.r,
    base, base) }
  for _, v in ipairs(ticks) do
    local px = f1(x(v))
    out[#out + 1] = ('<line class="axis" x1="%s" x2="%s" y1="%d" y2="%d"/>'):format(px, px, base,
      base + 4)
    out[#out + 1] = ('<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>'):format(px,
      base + 17, esc(fmt(v)))
  end
  return table.concat(out)
end

local function message(a, text)
  return ('<text class="empty" x="%s" y="%s" text-anchor="middle">%s</text>'):format(
    f1((a.l + a.w - a.r) / 2), f1((a.t + a.h - a.b) / 2), esc(text))
end

-- Runs of consecutive present values: { { {x, y}, ... }, ... }.
local function segments(xs, ys)
  local segs, cur = {}, nil
  for i = 1, #xs do
    if ys[i] then
      if not cur then cur = {}; segs[#segs + 1] = cur end
      cur[#cur + 1] = { xs[i], ys[i] }
    else
      cur = nil
    end
  end
  return segs
end

local function line_path(seg, x, y)
  local d = {}
  for i, p in ipairs(seg) do d[i] = (i == 1 and "M" or "L") .. f1(x(p[1])) .. "," .. f1(y(p[2])) end
  return table.concat(d)
end

local function draw_series(s, xs, x, y, base)
  local out = {}
  for _, seg in ipairs(segments(xs, s.ys)) do
    local d = line_path(seg, x, y)
    if s.area and #seg > 1 then
      out[#out + 1] = ('<path d="%sL%s,%sL%s,%sZ" fill="%s" fill-opacity="0.10"/>'):format(d,
        f1(x(seg[#seg][1])), f1(base), f1(x(seg[1][1])), f1(base), s.color)
    end
    out[#out + 1] = ('<path class="line%s" d="%s" stroke="%s"/>'):format(s.dash and " dash" or "", d,
      s.color)
    if #seg == 1 then
      out[#out + 1] = ('<circle cx="%s" cy="%s" r="3" fill="%s"/>'):format(f1(x(seg[1][1])),
        f1(y(seg[1][2])), s.color)
    end
  end
  return table.concat(out)
end

-- Invisible columns, one per point, whose tooltip lists every series.
local function hover_columns(a, xs, x, series, fmt)
  local out, n = { '<g class="hits">' }, #xs
  for i = 1, n do
    local left = i == 1 and a.l or (x(xs[i - 1]) + x(xs[i])) / 2
    local right = i == n and a.w - a.r or (x(xs[i]) + x(xs[i + 1])) / 2
    local lines = { fmt_clock(xs[i]) }
    for _, s in ipairs(series) do
      local v = s.ys[i]
      lines[#lines + 1] = ("%s: %s"):format(s.name, v and fmt(v) or DASH)
    end
    out[#out + 1] = ('<rect x="%s" y="%d" width="%s" height="%d"><title>%s</title></rect>'):format(
      f1(left), a.t, f1(math.max(0.5, right - left)), a.h - a.t - a.b, esc(table.concat(lines, "\n")))
  end
  out[#out + 1] = "</g>"
  return table.concat(out)
end

local function empty_chart(a, label, text)
  return table.concat({ svg_open(a.w, a.h, label), x_axis(a, {}, nil, nil), message(a, text), "</svg>" })
end

-- A chart of per-second series against time since the start.
--   spec = { label, xs, series = { {name, color, ys, area, dash} }, tick = fn (axis labels),
--            tip = fn (tooltips), step = fn (tick step, optional), missing = text }
local function time_chart(spec)
  local a = plot_area(560, 230)
  local xs = spec.xs
  if #xs == 0 then return empty_chart(a, spec.label, "no per-second data in this result") end
  local top, any = 0, false
  for _, s in ipairs(spec.series) do
    local m = maximum(s.ys, #xs)
    any = any or m ~= nil
    top = math.max(top, m or 0)
  end
  if not any then return empty_chart(a, spec.label, spec.missing or "no data") end
  local out = { svg_open(a.w, a.h, spec.label) }
  local x0, x1 = xs[1], xs[#xs]
  if x1 <= x0 then x0, x1 = x0 - 0.5, x0 + 0.5 end -- a single point, in the middle
  local yt, ytop = linear_ticks(top > 0 and top * 1.05 or 1, 4, spec.step)
  local x, y = x_of(a, x0, x1), y_of(a, ytop)
  out[#out + 1] = y_axis(a, yt, y, spec.tick)
  out[#out + 1] = x_axis(a, time_ticks(x0, x1, 7), x, fmt_clock)
  for i = #spec.series, 1, -1 do
    out[#out + 1] = draw_series(spec.series[i], xs, x, y, y(0))
  end
  out[#out + 1] = hover_columns(a, xs, x, spec.series, spec.tip)
  out[#out + 1] = "</svg>"
  return table.concat(out)
end

-- --------------------------------------------------- latency distribution

-- Decade ticks (with 2 and 5 between when the range is short) in µs.
local function log_ticks(lo, hi)
  local list, short = {}, math.log(hi / lo, 10) < 2.5
  for e = math.floor(math.log(lo, 10)), math.ceil(math.log(hi, 10)) do
    for _, m in ipairs(short and { 1, 2, 5 } or { 1 }) do
      local v = m * 10 ^ e
      if v >= lo and v <= hi then list[#list + 1] = v end
    end
  end
  return list
end

-- Slots regrouped into `n` equal bins on a log scale between lo and hi µs.
local function log_bins(slots, lo, hi, n)
  local bins, L, span = {}, math.log(lo, 10), math.log(hi / lo, 10)
  for i = 1, n do bins[i] = 0 end
  for _, s in ipairs(slots) do
    local v = math.max(s.lo + (s.width - 1) / 2, lo)
    local i = math.floor((math.log(v, 10) - L) / span * n) + 1
    i = math.max(1, math.min(n, i))
    bins[i] = bins[i] + s.count
  end
  return bins, function(i) return 10 ^ (L + (i - 1) / n * span) end
end

-- The shown range in µs: the data's, padded, at least half a decade wide.
local function log_range(slots)
  local lo = math.max(1, slots[1].lo)
  local last = slots[#slots]
  local hi = math.max(lo * 1.01, last.lo + last.width)
  local L, H = math.log(lo, 10), math.log(hi, 10)
  local pad = math.max(0.04 * (H - L), (0.5 - (H - L)) / 2, 0)
  return 10 ^ (L - pad), 10 ^ (H + pad)
end

-- p50/p95/p99 markers; a label moves down a row when it would run into
-- the one before (labels are about 7 units per character wide), and to the
-- left of its line near the right edge.
local function percentile_marks(a, x, marks)
  local out, ends = {}, {}
  for _, m in ipairs(marks) do
    local px = x(m.us)
    local label = ("%s %s"):format(m.name, fmt_ms(m.us / 1000))
    local width = utf8.len(label) * 7
    local left = px + 4 + width > a.w
    local from = left and px - 4 - width or px
    local row = 0
    while ends[row] and from < ends[row] + 6 do row = row + 1 end
    ends[row] = from + 4 + width
    local ly = a.t - 26 + row * 15
    out[#out + 1] = ('<line class="pline" x1="%s" x2="%s" y1="%d" y2="%d" stroke="%s"/>'):format(
      f1(px), f1(px), ly + 4, a.h - a.b, m.color)
    out[#out + 1] = ('<text class="marklabel" x="%s" y="%d" fill="%s"%s>%s</text>'):format(
      f1(left and px - 4 or px + 4), ly + 4, m.color, left and ' text-anchor="end"' or "", esc(label))
  end
  return table.concat(out)
end

local function distribution_chart(m)
  local a = plot_area(1120, 280, 48, 44)
  local label = "latency distribution of http_req_duration"
  local slots = hist_slots(tbl(m).histogram)
  local total = 0
  for _, s in ipairs(slots) do total = total + s.count end
  if total == 0 then return empty_chart(a, label, "no request durations recorded") end
  local out = { svg_open(a.w, a.h, label) }
  local lo, hi = log_range(slots)
  local n = 90
  local bins, edge = log_bins(slots, lo, hi, n)
  local L, span = math.log(lo, 10), math.log(hi / lo, 10)
  local x = function(us) return a.l + (math.log(math.max(us, lo), 10) - L) / span * (a.w - a.l - a.r) end
  local peak = maximum(bins) / total * 100
  local yt, ytop = linear_ticks(peak * 1.08, 4)
  local y = y_of(a, ytop)
  out[#out + 1] = y_axis(a, yt, y, function(v) return ("%g%%"):format(tonumber(("%.3g"):format(v))) end)
  out[#out + 1] = x_axis(a, log_ticks(lo, hi), x, tick_us)
  out[#out + 1] = '<g class="bars">'
  for i, c in ipairs(bins) do
    if c > 0 then
      local x0, x1 = x(edge(i)), x(edge(i + 1))
      local pct = c / total * 100
      local tip = ("%s – %s\n%s requests (%.2f%%)"):format(fmt_ms(edge(i) / 1000),
        fmt_ms(edge(i + 1) / 1000), fmt_count(c), pct)
      out[#out + 1] = ('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>')
        :format(f1(x0 + 0.5), f1(y(pct)), f1(math.max(0.8, x1 - x0 - 1)), f1(y(0) - y(pct)),
          COLORS.bars, esc(tip))
    end
  end
  out[#out + 1] = "</g>"
  local marks = {}
  for _, p in ipairs({ { "p50", 50 }, { "p95", 95 }, { "p99", 99 } }) do
    local ms = trend_percentile(m, p[2])
    if ms then marks[#marks + 1] = { name = p[1], us = ms * 1000, color = COLORS[p[1]] } end
  end
  out[#out + 1] = percentile_marks(a, x, marks)
  out[#out + 1] = ('<text class="axistitle" x="%s" y="%d" text-anchor="middle">%s</text>'):format(
    f1((a.l + a.w - a.r) / 2), a.h - 4, "response time (log scale)")
  out[#out + 1] = "</svg>"
  return table.concat(out)
end


M.COLORS = COLORS
M.ms_step = ms_step
M.whole_step = whole_step
M.fmt_clock = fmt_clock
M.tick_ms = tick_ms
M.tick_per_s = tick_per_s
M.tick_plain = tick_plain
M.time_chart = time_chart
M.distribution_chart = distribution_chart

return M
