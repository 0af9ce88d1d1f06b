-- Where results go (--out): JSON, CSV, HTML files and PostgreSQL. Nothing is
-- lost: when the database cannot take them, the whole document goes to
-- tide-results-<run_id>.json in the working directory instead.

local M = {}

local function write_file(path, data)
  local f, err = io.open(path, "w")
  if not f then error(("cannot write %s: %s"):format(path, err), 0) end
  local ok, werr = f:write(data)
  local closed, cerr = f:close()
  if not ok or not closed then error(("cannot write %s: %s"):format(path, werr or cerr), 0) end
end

function M.encode(doc)
  return require("tide.results").encode(doc) .. "\n"
end

-- One row per metric and aggregate per second of the load.
function M.csv(doc)
  local rows = { "timestamp,elapsed_s,metric_name,aggregate,metric_value" }
  local start = doc.started and os.time({
    year = tonumber(doc.started:sub(1, 4)), month = tonumber(doc.started:sub(6, 7)),
    day = tonumber(doc.started:sub(9, 10)), hour = tonumber(doc.started:sub(12, 13)),
    min = tonumber(doc.started:sub(15, 16)), sec = tonumber(doc.started:sub(18, 19)), isdst = false,
  }) or 0
  local fields = {
    { "http_reqs", "count", "reqs" }, { "http_req_failed", "count", "failed" },
    { "iterations", "count", "iterations" }, { "iteration_errors", "count", "errors" },
    { "dropped_iterations", "count", "dropped" }, { "vus", "value", "vus" },
    { "http_req_duration", "p50", "p50" }, { "http_req_duration", "p95", "p95" },
    { "http_req_duration", "p99", "p99" },
  }
  for _, p in ipairs(doc.points) do
    for _, f in ipairs(fields) do
      if p[f[3]] ~= nil then
        rows[#rows + 1] = ("%d,%d,%s,%s,%.17g"):format(start + p.t + 1, p.t + 1, f[1], f[2], p[f[3]])
      end
    end
  end
  return table.concat(rows, "\n") .. "\n"
end

-- Stores doc with save(dsn, doc) (default: tide.store.save); 0, or 4 when
-- the database would not take it (the document went to the local file
-- fallback, default tide-results-RUN_ID.json).
function M.store(doc, dsn, save, fallback)
  local ok, err = pcall(save or require("tide.store").save, dsn, doc)
  if ok then return 0 end
  fallback = fallback or ("tide-results-%s.json"):format(doc.run_id)
  io.stderr:write(("tide: could not store the results in PostgreSQL: %s\n"):format(
    require("tide.redact").message(err)))
  local wrote, werr = pcall(write_file, fallback, M.encode(doc))
  if wrote then
    io.stderr:write(("tide: the full results are in %s (store them later with: tide db import DSN %s)\n")
      :format(fallback, fallback))
  else
    io.stderr:write(("tide: and writing %s failed too: %s\n"):format(fallback, werr))
  end
  return 4
end

-- Writes every output asked for; returns 0, or 4 when one could not be
-- written where asked.
function M.write(doc, out)
  local code = 0
  local function try(what, fn)
    local ok, err = pcall(fn)
    if not ok then
      io.stderr:write(("tide: %s: %s\n"):format(what, err))
      code = 4
    end
  end
  if out.json then try("--out json", function() write_file(out.json, M.encode(doc)) end) end
  if out.csv then try("--out csv", function() write_file(out.csv, M.csv(doc)) end) end
  if out.html then
    try("--out html", function() write_file(out.html, require("tide.html").render(doc)) end)
  end
  if out.pg then code = math.max(code, M.store(doc, out.pg)) end
  return code
end

return M
