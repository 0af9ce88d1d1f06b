-- A load's result at the prompt: what run{} returns. Printing it shows the
-- summary `tide run` prints; it answers percentiles and metrics, saves
-- itself where --out would, compares and merges.
local results = require "tide.results"
local series = require "tide.series"
local text = require "tide.text"
local outputs = require "tide.outputs"

local M = {}
local methods = {}
local meta = { __name = "tide.result" }

local function all_held(doc)
  if doc.aborted then return false end
  for _, t in ipairs(doc.threshold_results or {}) do
    if not t.ok then return false end
  end
  return true
end

function M.new(doc)
  return setmetatable({ doc = doc, ok = all_held(doc), run_id = doc.run_id,
    interrupted = doc.state and doc.state.interrupted or false }, meta)
end

function M.is(v) return getmetatable(v) == meta end

local function names(doc)
  local list = {}
  for k in pairs(doc.metrics) do if not k:find("{") then list[#list + 1] = k end end
  table.sort(list)
  return table.concat(list, ", ")
end

local function entry(self, name, where)
  if type(name) ~= "string" then error(("%s: expected a metric name, got %s"):format(where, type(name)), 3) end
  local m = self.doc.metrics[name]
  if not m then error(("%s: no metric '%s' in this result (has: %s)"):format(where, name, names(self.doc)), 3) end
  return m
end

-- res:percentile("http_req_duration", 99): in ms for time trends.
function methods.percentile(self, name, p)
  local m = entry(self, name, "res:percentile")
  p = tonumber(p)
  if not p or p < 0 or p > 100 then error("res:percentile: p must be a number from 0 to 100", 2) end
  local h = results.trend_hist(m)
  if not h then error(("res:percentile: '%s' is a %s, not a trend"):format(name, m.type), 2) end
  local v = h:percentile(p)
  h:free()
  return m.contains == "time" and v / 1e3 or v
end

local COUNTS = { count = true, passes = true, fails = true, clamped = true }

-- A copy of values whose counts are integers (2, not 2.0: JSON numbers
-- and sums come back as floats), so they print and concatenate as counts.
local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = COUNTS[k] and math.tointeger(v) or v end
  return out
end

-- The values of name over the series whose tags include every one given.
local function from_registry(self, name, tags)
  local reg = self.doc.registry and self.doc.registry[name]
  if not reg then return nil end
  local merged = require("tide.metrics").merge({ { [name] = reg } })
  local m = merged[name]
  local pick = function(t)
    for k, v in pairs(tags) do if t[k] ~= tostring(v) then return false end end
    return true
  end
  local v, h = series.values(m, self.doc.state.testRunDurationMs / 1e3, pick)
  if h then h:free() end
  for _, s in ipairs(m.series) do if s.hist then s.hist:free() end end
  return v and copy(v)
end

-- res:metric(name [, tags]): the k6-shaped values, as in the JSON output.
function methods.metric(self, name, tags)
  if tags == nil or next(tags) == nil then return copy(entry(self, name, "res:metric").values) end
  if type(tags) ~= "table" then error("res:metric: tags must be a table like { name = \"login\" }", 2) end
  local k, v = next(tags)
  local one = next(tags, k) == nil and self.doc.metrics[results.key(name, k, v)]
  if one then return copy(one.values) end
  entry(self, name, "res:metric")
  return from_registry(self, name, tags)
end

local function write(path, data)
  local f, err = io.open(path, "w")
  if not f then error(("cannot write %s: %s"):format(path, err), 3) end
  f:write(data)
  f:close()
end

-- res:save("out.json") or res:save("pg:DSN") ("pg:" alone: $DATABASE_URL).
function methods.save(self, where)
  if type(where) ~= "string" or where == "" then error("res:save: expected a file name or pg:DSN", 2) end
  local dsn = where:match("^pg:(.*)$")
  if not dsn then
    write(where, outputs.encode(self.doc))
    return true
  end
  if dsn == "" then dsn = os.getenv("DATABASE_URL") or error("res:save(\"pg:\") needs $DATABASE_URL", 2) end
  return outputs.write(self.doc, { pg = dsn }) == 0
end

function methods.html(self, path)
  if type(path) ~= "string" then error("res:html: expected a file name", 2) end
  write(path, require("tide.html").render(self.doc))
  return true
end

-- Prints the table `tide compare` prints; true when nothing got worse.
function methods.compare(self, other, tolerance)
  if not M.is(other) then error("res:compare: expected another result", 2) end
  local base, cur = os.tmpname(), os.tmpname()
  write(base, outputs.encode(other.doc))
  write(cur, outputs.encode(self.doc))
  local ok, rc = pcall(require("tide.commands").compare, { base, cur, "--tolerance", tolerance or "10%" })
  os.remove(base)
  os.remove(cur)
  if not ok then error("res:compare: " .. tostring(type(rc) == "table" and rc.usage or rc), 2) end
  return rc == 0
end

meta.__index = methods
meta.__tostring = function(self) return (text.render(self.doc):gsub("\n$", "")) end
meta.__add = function(a, b)
  if not (M.is(a) and M.is(b)) then error("only two results add up", 2) end
  return M.new(results.merge({ a.doc, b.doc }))
end

return M
