-- Reading a decoded results document defensively, formatting its numbers,
-- and turning histogram slots back into microseconds: shared by the HTML
-- report and its charts.
local M = {}

local json_null = (function()
  local ok, cjson = pcall(require, "cjson")
  return ok and cjson.null or nil
end)()

-- ------------------------------------------------------------ reading JSON
-- Every field may be missing, null (cjson.null) or of another type: these
-- return nil (or an empty table) for anything that is not what is wanted.

local function num(x)
  if type(x) ~= "number" or x ~= x or x == math.huge or x == -math.huge then return nil end
  return x
end

local function str(x)
  if type(x) == "string" then return x end
  if num(x) then return ("%g"):format(x) end
  return nil
end

local function tbl(x)
  if type(x) == "table" and x ~= json_null then return x end
  return {}
end

local function flag(x) return x == true end

-- ------------------------------------------------------------- formatting

local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", ENTITIES))
end

local DASH = "—"

local function thousands(n)
  local s = ("%.0f"):format(n)
  local sign, digits = s:match("^(-?)(%d+)$")
  if not digits then return s end
  digits = digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return sign .. digits
end

local function fmt_count(n)
  n = num(n)
  return n and thousands(n) or DASH
end

local SI = { { 1, "" }, { 1e3, "k" }, { 1e6, "M" }, { 1e9, "G" }, { 1e12, "T" }, { 1e15, "P" },
             { 1e18, "E" } }

-- Three significant figures and a prefix: 950, 48.1k, 1.25M (for cards and ticks).
local function fmt_si(n)
  n = num(n)
  if not n then return DASH end
  for i, u in ipairs(SI) do
    local v = n / u[1]
    if math.abs(v) < 999.5 or i == #SI then
      return ("%g%s"):format(tonumber(("%.3g"):format(v)), u[2])
    end
  end
end

local function fmt_rate(r)
  r = num(r)
  if not r then return DASH end
  if r >= 1000 then return thousands(r) end
  if r >= 100 then return ("%.0f"):format(r) end
  if r >= 10 then return ("%.1f"):format(r) end
  return ("%.2f"):format(r)
end

local function fmt_pct(rate)
  rate = num(rate)
  if not rate then return DASH end
  if rate == 0 then return "0%" end
  if rate < 0.0001 then return "<0.01%" end
  return ("%.2f%%"):format(rate * 100)
end

local function fmt_duration(s)
  s = num(s)
  if not s then return DASH end
  if s < 60 then return ("%.1fs"):format(s) end
  s = math.floor(s + 0.5)
  if s < 3600 then return ("%.0fm %02.0fs"):format(s // 60, s % 60) end
  return ("%.0fh %02.0fm"):format(s // 3600, s % 3600 // 60)
end

-- Milliseconds, three significant figures: 850µs, 5.90ms, 74.1ms, 1.25s.
local function fmt_ms(ms)
  ms = num(ms)
  if not ms then return DASH end
  if ms == 0 then return "0ms" end
  if ms < 0.001 then return "<1µs" end
  if ms < 1 then return ("%.0fµs"):format(ms * 1000) end
  if ms < 10 then return ("%.2fms"):format(ms) end
  if ms < 100 then return ("%.1fms"):format(ms) end
  if ms < 1000 then return ("%.0fms"):format(ms) end
  if ms < 60000 then return ("%.2fs"):format(ms / 1000) end
  return fmt_duration(ms / 1000)
end

local function fmt_bytes(n)
  n = num(n)
  if not n then return DASH end
  local units = { "B", "kB", "MB", "GB", "TB", "PB", "EB" }
  local i = 1
  while n >= 1000 and i < #units do n, i = n / 1000, i + 1 end
  return (i == 1 and "%.0f %s" or "%.1f %s"):format(n, units[i])
end

-- Epoch seconds (or ms), or an ISO 8601 UTC string, as "2026-01-02 10:20:30 UTC".
local function fmt_when(x)
  if type(x) == "string" then
    local d, t = x:match("^(%d%d%d%d%-%d%d%-%d%d)T(%d%d:%d%d:%d%d)[%.%d]*Z$")
    return d and ("%s %s UTC"):format(d, t) or x
  end
  x = num(x)
  if not x then return nil end
  if x > 1e11 then x = x / 1000 end -- epoch milliseconds
  if x < 0 or x > 1e11 then return nil end
  return os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(x))
end

-- ------------------------------------------------------------- histograms
-- The slot layout is hist.c's alone: hist.slot_range asks it.
local hist = require "tide.hist"

local function slot_range(i)
  local ok, lo, width = pcall(hist.slot_range, i)
  if ok then return lo, width end
end

-- { {lo = µs, width = µs, count = n}, ... } in slot order.
local function hist_slots(h)
  local slots, out = tbl(tbl(h).slots), {}
  if type(tbl(h).slots) == "string" then -- packed when read from a file (tide.hist.read_json)
    for tok in h.slots:gmatch("[^,%s]+") do slots[#slots + 1] = tonumber(tok) end
  end
  for i = 1, #slots - 1, 2 do
    local idx, n = num(slots[i]), num(slots[i + 1])
    local lo, width
    if idx and n and n > 0 then lo, width = slot_range(math.floor(idx)) end
    if lo then out[#out + 1] = { lo = lo, width = width, count = n } end
  end
  table.sort(out, function(a, b) return a.lo < b.lo end)
  return out
end

-- The p-th percentile in µs from decoded slots (a slot's midpoint).
local function hist_percentile(slots, p)
  local total = 0
  for _, s in ipairs(slots) do total = total + s.count end
  if total == 0 then return nil end
  local want, seen = math.max(1, math.ceil(total * p / 100)), 0
  for _, s in ipairs(slots) do
    seen = seen + s.count
    if seen >= want then return s.lo + (s.width - 1) / 2 end
  end
  return slots[#slots].lo
end


local function trend_percentile(m, p)
  local v = tbl(tbl(m).values)
  local direct = num(v[("p(%s)"):format(("%g"):format(p))])
  if direct then return direct end
  if p == 50 and num(v.med) then return v.med end
  local ok, h = pcall(hist.decode, tbl(m).histogram) -- the percentile hist.c takes
  local us = ok and h:count() > 0 and h:percentile(p) or nil
  if ok then h:free() end
  if not us then return nil end
  return tbl(m).contains == "time" and us / 1000 or us
end

local function maximum(list, n)
  local m = nil
  for i = 1, n or #list do
    local v = list[i]
    if v and (not m or v > m) then m = v end
  end
  return m
end

M.json_null = json_null
M.num = num
M.str = str
M.tbl = tbl
M.flag = flag
M.esc = esc
M.DASH = DASH
M.thousands = thousands
M.fmt_count = fmt_count
M.fmt_si = fmt_si
M.fmt_rate = fmt_rate
M.fmt_pct = fmt_pct
M.fmt_duration = fmt_duration
M.fmt_ms = fmt_ms
M.fmt_bytes = fmt_bytes
M.fmt_when = fmt_when
M.hist_slots = hist_slots
M.hist_percentile = hist_percentile
M.trend_percentile = trend_percentile
M.maximum = maximum

return M
