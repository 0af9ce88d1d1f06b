-- Thresholds: pass/fail criteria on metrics, k6's syntax.
--   thresholds = {
--     http_req_duration = "p(95) < 200ms",
--     ["http_req_duration{name:assign}"] = { "p(99) < 800ms", "max < 2s" },
--     checks = { { threshold = "rate > 0.99", abort_on_fail = true } },
--   }
local M = {}

local AGGREGATES = { avg = true, min = true, max = true, med = true, count = true, rate = true,
                     value = true }
-- Which aggregates fit which kind of metric: k6's rules, and a trend's
-- count (its samples), which tide's trends keep too.
local FITS = {
  counter = { count = true, rate = true },
  gauge = { value = true, min = true, max = true },
  rate = { rate = true },
  trend = { avg = true, min = true, max = true, med = true, p = true, count = true },
}
local FITS_TEXT = { counter = "count, rate", gauge = "value, min, max", rate = "rate",
                    trend = "avg, min, max, med, p(N), count" }

-- nil, or why expr's aggregate does not fit the metric's kind.
local function misfit(expr, metric, kind)
  local fits = FITS[kind]
  if not fits or fits[expr.p and "p" or expr.agg] then return nil end
  return ("%q: %s does not apply to %s, a %s (it takes %s)"):format(expr.text, expr.agg, metric, kind,
    FITS_TEXT[kind])
end

local OPS = {
  ["<"] = function(a, b) return a < b end, ["<="] = function(a, b) return a <= b end,
  [">"] = function(a, b) return a > b end, [">="] = function(a, b) return a >= b end,
  ["=="] = function(a, b) return a == b end, ["!="] = function(a, b) return a ~= b end,
}
local UNITS = { [""] = 1, ms = 1, s = 1000, us = 1e-3, ["µs"] = 1e-3, m = 60000 }

-- "p(99.9) < 800ms" -> { agg = "p(99.9)", p = 99.9, op = "<", value = 800 }
local function parse_expr(text)
  if type(text) ~= "string" then return nil, "expression must be a string" end
  local agg, op, num, unit = text:match("^%s*([%a_]+%b())%s*([<>=!]=?)%s*([%d%.eE+-]+)%s*(%S*)%s*$")
  if not agg then
    agg, op, num, unit = text:match("^%s*([%a_]+)%s*([<>=!]=?)%s*([%d%.eE+-]+)%s*(%S*)%s*$")
  end
  if not agg then return nil, ("malformed expression %q (like \"p(95) < 200ms\")"):format(text) end
  local p = agg:match("^p%(([%d%.]+)%)$")
  if not p and not AGGREGATES[agg] then
    return nil, ("unknown aggregate %q in %q (avg, min, max, med, p(N), count, rate, value)"):format(agg, text)
  end
  if p and (tonumber(p) == nil or tonumber(p) < 0 or tonumber(p) > 100) then
    return nil, ("percentile out of range in %q"):format(text)
  end
  if not OPS[op] then return nil, ("unknown operator %q in %q"):format(op, text) end
  local n = tonumber(num)
  if not n or not UNITS[unit] then return nil, ("bad number %q in %q"):format(num .. unit, text) end
  return { text = text, agg = p and ("p(" .. p .. ")") or agg, p = tonumber(p), op = op,
           value = n * UNITS[unit] }
end

-- The parsed expression, or nil (for documents read back).
function M.expression(text)
  return (parse_expr(text))
end

function M.holds(expr, observed)
  return OPS[expr.op](observed, expr.value)
end

-- "http_req_duration{name:assign,method:POST}" -> "http_req_duration", { name = "assign", ... }
-- (nil when malformed). A comma starts a new tag only before "word:", so a
-- value may hold commas (request names, check names).
function M.parse_key(key)
  local name, inner = key:match("^([%w_]+){(.*)}$")
  if not name then
    if key:match("^[%w_]+$") then return key, {} end
    return nil
  end
  local filter, pos = {}, 1
  while pos <= #inner do
    local k, vstart = inner:match("^%s*([%w_]+)%s*:%s*()", pos)
    if not k then return nil end
    local nxt = inner:find(",%s*[%w_]+%s*:", vstart)
    filter[k] = inner:sub(vstart, (nxt or #inner + 1) - 1):match("^(.-)%s*$")
    pos = nxt and nxt + 1 or #inner + 1
  end
  return name, filter
end
local parse_key = M.parse_key

local function entries(spec)
  if type(spec) == "string" then return { { threshold = spec } } end
  local list = {}
  for _, e in ipairs(spec) do
    list[#list + 1] = type(e) == "table" and e or { threshold = e }
  end
  return list
end

-- Parses and checks every threshold against the metrics the scenario can
-- produce. Returns the parsed list, or nil and a message naming the culprit.
function M.parse(thresholds, known)
  local out = {}
  if thresholds == nil then return out end
  if type(thresholds) ~= "table" then return nil, "options.thresholds must be a table" end
  for key, spec in pairs(thresholds) do
    local name, filter = parse_key(tostring(key))
    if not name then return nil, ("threshold %q: malformed metric name"):format(tostring(key)) end
    if not known[name] then
      return nil, ("threshold %q: no metric '%s' in this scenario (misspelled?)"):format(key, name)
    end
    if type(spec) ~= "string" and type(spec) ~= "table" then
      return nil, ("threshold %q: expected an expression or a list of them"):format(key)
    end
    for _, e in ipairs(entries(spec)) do
      local expr, err = parse_expr(e.threshold)
      if not expr then return nil, ("threshold %q: %s"):format(key, err) end
      err = misfit(expr, name, type(known[name]) == "table" and known[name].type)
      if err then return nil, ("threshold %q: %s"):format(key, err) end
      expr.key, expr.metric, expr.filter = key, name, filter
      expr.abort_on_fail = e.abort_on_fail and true or false
      if e.delay_abort_eval ~= nil and not pcall(require("tide").duration, e.delay_abort_eval) then
        return nil, ("threshold %q: delay_abort_eval must be a duration"):format(key)
      end
      expr.delay_abort_eval = e.delay_abort_eval
      out[#out + 1] = expr
    end
  end
  table.sort(out, function(a, b) return a.key .. a.text < b.key .. b.text end)
  return out
end

function M.matches(tags, filter)
  for k, v in pairs(filter) do
    if tags[k] ~= v then return false end
  end
  return true
end

-- The observed value of one threshold (nil when the metric has no data).
function M.observe(t, metrics, values_of)
  local m = metrics[t.metric]
  if not m then return nil end
  local v = values_of(m, function(tags) return M.matches(tags, t.filter) end, t.p)
  if not v then return nil end
  local agg = t.agg
  if agg == "value" then agg = m.type == "gauge" and "value" or "count" end
  if m.type == "counter" and agg == "value" then agg = "count" end
  return v[agg]
end

-- Evaluates every threshold; returns the results and whether all held.
-- A threshold on a metric with no samples fails (nothing proves it held).
function M.evaluate(list, metrics, values_of)
  local results, all = {}, true
  for _, t in ipairs(list) do
    local observed = M.observe(t, metrics, values_of)
    local ok = observed ~= nil and OPS[t.op](observed, t.value)
    results[#results + 1] = { key = t.key, text = t.text, observed = observed, ok = ok,
                              metric = t.metric, filter = t.filter }
    all = all and ok
  end
  return results, all
end

return M
