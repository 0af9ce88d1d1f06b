-- Segments of one run (`tide run --segment I/N`) read back by `tide report`:
-- checked to belong together (one run id, one N, no share twice), merged as
-- one run with their seconds aligned by wall clock, and what is missing named.
local results = require "tide.results"

local M = {}

-- "3/4"
function M.label(i, n) return ("%d/%d"):format(i, n) end

-- A document's segment as index, count; nil when it is not one. A document
-- carries `"segment": {"index": I, "count": N}` (absent or null when whole).
local function segment_of(doc, source)
  local s = doc.segment
  if type(s) ~= "table" then return nil end
  local i, n = math.tointeger(s.index), math.tointeger(s.count)
  if not i or not n or n < 1 or i < 1 or i > n then
    error(("%s: segment: expected {index = I, count = N} with 1 <= I <= N, got %s/%s")
      :format(source, tostring(s.index), tostring(s.count)), 0)
  end
  return i, n
end

local function seg_text(s) return ("segment %s of run %s"):format(M.label(s.index, s.count), s.run_id) end

-- Whether docs (read from sources, names alike) are segments of one run:
-- nil when none is a segment; else { run_id, count, found, missing } (the
-- indexes, ascending). Raises, naming the sources, on a mix of segments and
-- whole runs, on segments of different runs or different N, and on one
-- segment twice (merging both would count its share twice).
function M.check(docs, sources)
  local segs, whole = {}, nil
  for k, d in ipairs(docs) do
    local i, n = segment_of(d, sources[k])
    if i then segs[#segs + 1] = { index = i, count = n, run_id = tostring(d.run_id), source = sources[k] }
    else whole = whole or sources[k] end
  end
  if #segs == 0 then return nil end
  local first = segs[1]
  if whole then
    error(("%s is %s, but %s is no segment: merge the segments of one run only")
      :format(first.source, seg_text(first), whole), 0)
  end
  local by = {}
  for _, s in ipairs(segs) do
    if s.run_id ~= first.run_id then
      error(("segments of different runs: %s is %s, %s is %s"):format(first.source, seg_text(first),
        s.source, seg_text(s)), 0)
    end
    if s.count ~= first.count then
      error(("segments of run %s split in different numbers: %s is %s, %s is %s"):format(first.run_id,
        first.source, M.label(first.index, first.count), s.source, M.label(s.index, s.count)), 0)
    end
    if by[s.index] then
      error(("%s twice: %s and %s (merging both would count its share twice)"):format(seg_text(s),
        by[s.index].source, s.source), 0)
    end
    by[s.index] = s
  end
  local found, missing = {}, {}
  for i = 1, first.count do
    if by[i] then found[#found + 1] = i else missing[#missing + 1] = i end
  end
  return { run_id = first.run_id, count = first.count, found = found, missing = missing }
end

-- "segments: 3 of 4 (missing: 2/4)", from a merged document's segments.
function M.describe(segs)
  local found, missing = segs.found or {}, segs.missing or {}
  local line = ("segments: %d of %s"):format(#found, tostring(segs.count))
  if #missing == 0 then return line end
  return line .. (" (missing: %s)"):format(table.concat(missing, ", "))
end

-- Seconds since the Unix epoch of "2024-01-31T12:00:00.250Z" (UTC), or nil.
function M.epoch(iso)
  if type(iso) ~= "string" then return nil end
  local y, mo, d, h, mi, s = iso:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d%.?%d*)")
  if not y then return nil end
  y, mo = tonumber(y), tonumber(mo)
  if mo <= 2 then y = y - 1 end -- days from the civil date, March-based years
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (mo > 2 and mo - 3 or mo + 9) + 2) // 5 + tonumber(d) - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

-- Each document's seconds shifted by how much later than the first it
-- started, to the nearest second: point t of every segment then stands for
-- the same wall-clock second (segments started together by --start-at get 0).
local function offsets(docs)
  local t0
  for _, d in ipairs(docs) do
    local t = M.epoch(d.started)
    if t and (not t0 or t < t0) then t0 = t end
  end
  local out = {}
  for k, d in ipairs(docs) do
    local t = M.epoch(d.started)
    out[k] = (t and t0) and math.floor(t - t0 + 0.5) or 0
  end
  return out
end

-- The run as a whole: every segment's document carries the run's plan
-- (its scenarios with all their users, iterations and rates: what
-- num_users counts), so any one gives it; the threads are each segment's own.
local function whole_tide(docs)
  local t = {}
  for k, v in pairs(docs[1].tide) do t[k] = v end
  t.threads = 0
  for _, d in ipairs(docs) do t.threads = t.threads + (tonumber(d.tide.threads) or 0) end
  return t
end

local function span(docs)
  local started, finished
  for _, d in ipairs(docs) do
    if type(d.started) == "string" and (not started or d.started < started) then started = d.started end
    if type(d.finished) == "string" and (not finished or d.finished > finished) then finished = d.finished end
  end
  return started, finished
end

-- A segment's own exit code that says more than its verdict (interrupted,
-- a script error), in the order the exit-code table ranks them, or nil.
local function worst_exit(docs)
  for _, code in ipairs({ 130, 3 }) do
    for _, d in ipairs(docs) do
      if d.exit_code == code then return code end
    end
  end
end

-- The segments merged into the whole run's document: counters, histograms
-- (bucket by bucket), checks and rates added by results.merge, seconds
-- aligned by wall clock, thresholds judged again on the merged data.
function M.merge(docs, segs, extra)
  local doc = results.merge(docs, offsets(docs), extra)
  if #docs == 1 and not extra then
    local copy = {}
    for k, v in pairs(doc) do copy[k] = v end
    doc = copy
  end
  doc.run_id = segs.run_id
  doc.segment = nil
  doc.tide = whole_tide(docs)
  doc.started, doc.finished = span(docs)
  doc.host = nil
  local interrupted = false
  for _, d in ipairs(docs) do interrupted = interrupted or d.state.interrupted == true end
  doc.state = { testRunDurationMs = doc.state.testRunDurationMs, interrupted = interrupted }
  local failed = false
  for _, r in ipairs(doc.threshold_results) do failed = failed or not r.ok end
  doc.exit_code = worst_exit(docs) or (failed and 1 or 0)
  local names = {}
  for k, i in ipairs(segs.missing) do names[k] = M.label(i, segs.count) end
  local found = {}
  for k, i in ipairs(segs.found) do found[k] = M.label(i, segs.count) end
  doc.segments = { count = segs.count, found = found, missing = names }
  return doc
end

return M
