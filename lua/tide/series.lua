-- Aggregates the raw series a run hands over (one per metric and tag set,
-- merged across threads) into k6-style values. Used while the run is live:
-- for the results document and for thresholds.
local hist = require "tide.hist"

local M = {}

local PERCENTILES = { 90, 95, 99 }

function M.merged(series, pick)
  local h = hist.new()
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then h:merge(s.hist) end
  end
  return h
end

function M.sum_counter(series, pick)
  local v = 0
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then v = v + s.value end
  end
  return v
end

function M.sum_rate(series, pick)
  local p, t = 0, 0
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then p, t = p + s.passes, t + s.total end
  end
  return p, t
end

local function gauge(series, pick)
  local v, lo, hi = 0, nil, nil
  for _, s in ipairs(series) do
    if not pick or pick(s.tags) then
      v = v + s.value
      lo = math.min(lo or s.min, s.min)
      hi = math.max(hi or s.max, s.max)
    end
  end
  return v, lo or 0, hi or 0
end

-- k6 reports time trends in milliseconds; histograms hold microseconds.
-- Other trends hold their values as they are (a value histogram). Values
-- beyond either's range (1 h; see vhist.h) are counted as `clamped`, shown
-- when there are any.
function M.trend_values(h, time)
  local scale = time and 1e-3 or 1
  local v = {
    count = h:count(), avg = h:mean() * scale, min = h:min() * scale,
    med = h:percentile(50) * scale, max = h:max() * scale,
  }
  for _, p in ipairs(PERCENTILES) do v[("p(%d)"):format(p)] = h:percentile(p) * scale end
  if h:clamped() > 0 then v.clamped = h:clamped() end
  return v
end

-- The values of metric m over the series pick selects (and the merged
-- histogram for trends).
function M.values(m, elapsed, pick)
  if m.type == "trend" then
    local h = M.merged(m.series, pick)
    return M.trend_values(h, m.contains == "time"), h
  elseif m.type == "counter" then
    local v = M.sum_counter(m.series, pick)
    return { count = v, rate = elapsed > 0 and v / elapsed or 0 }
  elseif m.type == "rate" then
    local p, t = M.sum_rate(m.series, pick)
    return { rate = t > 0 and p / t or 0, passes = p, fails = t - p }
  end
  local v, lo, hi = gauge(m.series, pick)
  return { value = v, min = lo, max = hi }
end

-- For thresholds: values with p(N) added when asked; nil when nothing was
-- recorded (a counter with no samples is a count of 0).
function M.values_for(metrics, elapsed)
  return function(m, pick, p)
    local any = false
    for _, s in ipairs(m.series) do any = any or pick(s.tags) end
    if not any and m.type ~= "counter" then return nil end
    local v, h = M.values(m, elapsed, pick)
    if p and h then
      v[("p(%s)"):format(p)] = h:percentile(p) * (m.contains == "time" and 1e-3 or 1)
    end
    return v
  end
end

-- The distinct values of one tag across a metric's series, sorted.
function M.tag_values(metrics, metric, tag)
  local seen, out = {}, {}
  local m = metrics[metric]
  for _, s in ipairs(m and m.series or {}) do
    local n = s.tags[tag]
    if n and not seen[n] then seen[n] = true; out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

function M.having(tag, value)
  return function(tags) return tags[tag] == value end
end

return M
