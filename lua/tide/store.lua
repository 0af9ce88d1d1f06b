-- Results in PostgreSQL: the old tool's one-row-per-run table (kept exactly
-- as the dashboards know it) and tide's own complete tables, from which
-- `tide report` and `tide compare` rebuild a run, histograms included.
local json = require "cjson"
local pg = require "tide.pg"
local results = require "tide.results"

local M = {}

local SCHEMA = {
  "CREATE SCHEMA IF NOT EXISTS analytics",
  [[CREATE TABLE IF NOT EXISTS analytics.load_testing (
      run_id text PRIMARY KEY, num_users integer,
      avg_container_time numeric, max_container_time numeric, std_container_time numeric,
      avg_web_time numeric, max_web_time numeric, std_web_time numeric)]],
  "CREATE SCHEMA IF NOT EXISTS tide",
  [[CREATE TABLE IF NOT EXISTS tide.runs (
      run_id text PRIMARY KEY, scenario text NOT NULL, options jsonb, target text,
      started_at timestamptz, finished_at timestamptz, exit_code integer, host text,
      tide_version text, duration_s double precision, summary jsonb NOT NULL)]],
  "CREATE INDEX IF NOT EXISTS runs_by_scenario ON tide.runs (scenario, started_at)",
  [[CREATE TABLE IF NOT EXISTS tide.metrics (
      run_id text NOT NULL REFERENCES tide.runs ON DELETE CASCADE, key text NOT NULL,
      metric text NOT NULL, tags jsonb NOT NULL, type text NOT NULL, contains text,
      "values" jsonb NOT NULL, histogram jsonb, thresholds jsonb,
      PRIMARY KEY (run_id, key))]],
  [[CREATE TABLE IF NOT EXISTS tide.points (
      run_id text NOT NULL REFERENCES tide.runs ON DELETE CASCADE, t integer NOT NULL,
      metric text NOT NULL, count double precision, rate double precision,
      p50 double precision, p95 double precision, p99 double precision, vus integer,
      PRIMARY KEY (run_id, t, metric))]],
}

local function create_schema(db)
  for _, sql in ipairs(SCHEMA) do db:exec(sql) end
end

-- Everything about the run except metrics and points (they have tables).
local function summary_of(doc)
  local s = {}
  for k, v in pairs(doc) do
    if k ~= "metrics" and k ~= "points" and k ~= "registry" then s[k] = v end
  end
  return s
end

-- The arguments, then seg when it is given: a query's parameters are as
-- many as its arguments, so a segment left out must not be passed as nil.
local function and_seg(seg, ...)
  if not seg then return ... end
  local a = table.pack(...)
  a[a.n + 1] = seg
  return table.unpack(a, 1, a.n + 1)
end

-- seg: the value of a table's segment column, or nil to leave it out (a
-- table without that column).
local function insert_run(db, doc, seg)
  local t = doc.tide
  db:exec(([[INSERT INTO tide.runs (run_id, scenario, options, target, started_at, finished_at,
              exit_code, host, tide_version, duration_s, summary%s)
            VALUES ($1, $2, $3::jsonb, $4, $5::timestamptz, $6::timestamptz, $7, $8, $9, $10, $11::jsonb%s)]])
      :format(seg and ", segment" or "", seg and ", $12" or ""),
    doc.run_id, t.scenario, json.encode({ scenarios = t.scenarios, threads = t.threads }), t.target,
    doc.started, doc.finished, doc.exit_code, doc.host, t.version,
    and_seg(seg, doc.state.testRunDurationMs / 1e3, json.encode(summary_of(doc))))
end

local function insert_metrics(db, doc, seg)
  local rows = {}
  for key, m in pairs(doc.metrics) do
    local name, tags = results.parse_key(key)
    rows[#rows + 1] = { key = key, metric = name, tags = tags, type = m.type, contains = m.contains,
                        values = m.values, histogram = results.plain_histogram(m.histogram),
                        thresholds = m.thresholds }
  end
  if #rows == 0 then return end
  db:exec(([[INSERT INTO tide.metrics (run_id, key, metric, tags, type, contains, "values", histogram, thresholds%s)
            SELECT $1, x.key, x.metric, coalesce(x.tags, '{}'), x.type, x.contains, x."values", x.histogram, x.thresholds%s
              FROM jsonb_to_recordset($2::jsonb) AS x(key text, metric text, tags jsonb, type text,
                   contains text, "values" jsonb, histogram jsonb, thresholds jsonb)]])
      :format(seg and ", segment" or "", seg and ", $3" or ""),
    and_seg(seg, doc.run_id, json.encode(rows)))
end

-- Per second: the counts and latency percentiles the run handed over.
local POINT_ROWS = {
  { "http_reqs", "reqs" }, { "http_req_failed", "failed" }, { "iterations", "iterations" },
  { "iteration_errors", "errors" }, { "dropped_iterations", "dropped" },
  { "http_req_duration", "reqs", percentiles = true }, { "vus", "vus" },
}

local function point_rows(doc)
  local rows = {}
  for _, p in ipairs(doc.points) do
    for _, r in ipairs(POINT_ROWS) do
      local row = { t = p.t, metric = r[1], count = p[r[2]], rate = p[r[2]], vus = p.vus }
      if r.percentiles then row.p50, row.p95, row.p99 = p.p50, p.p95, p.p99 end
      rows[#rows + 1] = row
    end
  end
  return rows
end

local function insert_points(db, doc, seg)
  local rows = point_rows(doc)
  if #rows == 0 then return end
  db:exec(([[INSERT INTO tide.points (run_id, t, metric, count, rate, p50, p95, p99, vus%s)
            SELECT $1, x.t, x.metric, x.count, x.rate, x.p50, x.p95, x.p99, x.vus%s
              FROM jsonb_to_recordset($2::jsonb) AS x(t int, metric text, count float8, rate float8,
                   p50 float8, p95 float8, p99 float8, vus int)]])
      :format(seg and ", segment" or "", seg and ", $3" or ""),
    and_seg(seg, doc.run_id, json.encode(rows)))
end

-- The old tool's row: seconds, as it stored them. One per run: storing a
-- merged run again (tide report --store) replaces it.
local function insert_legacy(db, doc, replace)
  local web = results.trend_hist(doc.metrics.http_req_duration)
  local container = results.trend_hist(doc.metrics.celery_task_duration)
  local function sec(h, f) -- microsecond precision, as text: numeric keeps it exact
    return h and h:count() > 0 and ("%.6f"):format(h[f](h) / 1e6) or nil
  end
  local users = 0
  for _, sc in ipairs(doc.tide.scenarios) do users = users + (sc.vus or 0) end
  db:exec([[INSERT INTO analytics.load_testing (run_id, num_users, avg_container_time,
              max_container_time, std_container_time, avg_web_time, max_web_time, std_web_time)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)]] .. (replace and [[
            ON CONFLICT (run_id) DO UPDATE SET num_users = EXCLUDED.num_users,
              avg_container_time = EXCLUDED.avg_container_time, max_container_time = EXCLUDED.max_container_time,
              std_container_time = EXCLUDED.std_container_time, avg_web_time = EXCLUDED.avg_web_time,
              max_web_time = EXCLUDED.max_web_time, std_web_time = EXCLUDED.std_web_time]] or ""),
    doc.run_id, math.floor(users), sec(container, "mean"), sec(container, "max"),
    sec(container, "stdev"), sec(web, "mean"), sec(web, "max"), sec(web, "stdev"))
end

function M.init(dsn)
  local db <close> = pg.connect(dsn)
  db:transaction(create_schema)
end

-- Stores a run in one transaction, creating what is missing first.
function M.save(dsn, doc)
  local db <close> = pg.connect(dsn)
  db:transaction(function()
    create_schema(db)
    if #db:query("SELECT 1 FROM tide.runs WHERE run_id = $1", doc.run_id) > 0 then
      error(("run %s is already stored"):format(doc.run_id), 0)
    end
    insert_run(db, doc)
    insert_metrics(db, doc)
    insert_points(db, doc)
    -- a segment is a share of a run: the run's one row comes when its
    -- segments are merged and stored (tide report --store)
    if type(doc.segment) ~= "table" then insert_legacy(db, doc) end
  end)
end

-- tide.runs rows of a merged run (tide report --store) carry this segment.
M.MERGED = "merged"

-- Whether tide.TABLE has a segment column (tables made before segments
-- existed have none: then a run id has one row).
local function has_segment(db, tbl)
  return #db:query([[SELECT 1 FROM information_schema.columns
                     WHERE table_schema = 'tide' AND table_name = $1 AND column_name = 'segment']], tbl) > 0
end

-- Removes the merged run stored before under doc's run id, if any; true
-- when there was one. Refuses a stored run that is no merged run.
local function drop_merged(db, doc, seg)
  local where = seg.runs and "run_id = $1 AND segment = 'merged'" or "run_id = $1"
  local old = db:query(("SELECT summary ? 'segments' OR summary ? 'merged' AS merged FROM tide.runs WHERE %s")
    :format(where), doc.run_id)[1]
  if not old then return false end
  if old.merged ~= "t" and old.merged ~= true then
    error(("run %s is already stored and is no merged run: not replaced"):format(doc.run_id), 0)
  end
  for _, tbl in ipairs({ "metrics", "points" }) do
    if seg[tbl] then db:exec(("DELETE FROM tide.%s WHERE run_id = $1 AND segment = 'merged'"):format(tbl), doc.run_id) end
  end
  db:exec(("DELETE FROM tide.runs WHERE %s"):format(where), doc.run_id)
  return true
end

-- Stores a merged run (tide report --store): one tide.runs row for the whole
-- run (segment 'merged' where the table keeps segments), its metrics and
-- points, and its analytics.load_testing row. Storing it again replaces
-- both (the same run merged again, perhaps with a late segment), so the
-- run keeps one row. Returns true when it replaced one.
function M.save_merged(dsn, doc)
  local db <close> = pg.connect(dsn)
  local replaced
  db:transaction(function()
    create_schema(db)
    local seg = { runs = has_segment(db, "runs"), metrics = has_segment(db, "metrics"),
                  points = has_segment(db, "points") }
    replaced = drop_merged(db, doc, seg)
    insert_run(db, doc, seg.runs and M.MERGED or nil)
    insert_metrics(db, doc, seg.metrics and M.MERGED or nil)
    insert_points(db, doc, seg.points and M.MERGED or nil)
    insert_legacy(db, doc, true)
  end)
  return replaced
end

-- ---------------------------------------------------------------- reading

local function decode(v)
  if v == nil then return nil end
  return json.decode(v)
end

-- "RUN_ID", "latest", or "latest~N" (N runs before the newest, same scenario).
local function resolve(db, ref)
  local back = ref == "latest" and 0 or tonumber(ref:match("^latest~(%d+)$"))
  if not back then return ref end
  local newest = db:query("SELECT run_id, scenario FROM tide.runs ORDER BY started_at DESC, run_id DESC LIMIT 1")[1]
  if not newest then error("no runs stored yet", 0) end
  local row = db:query([[SELECT run_id FROM tide.runs WHERE scenario = $1
                         ORDER BY started_at DESC, run_id DESC OFFSET $2 LIMIT 1]], newest.scenario, back)[1]
  if not row then error(("no run %s for scenario %s"):format(ref, newest.scenario), 0) end
  return row.run_id
end

-- Rows of tide.TABLE for a run id; where the table keeps segments
-- (filter), only those of segment seg (nil: the NULL segment).
local function run_rows(db, sql, run_id, filter, seg, order)
  if filter then
    return db:query(sql .. " AND segment IS NOT DISTINCT FROM $2::text" .. (order or ""), run_id, seg)
  end
  return db:query(sql .. (order or ""), run_id)
end

local function load_points(db, run_id, filter, seg)
  local by, list = {}, {}
  local field = {}
  for _, r in ipairs(POINT_ROWS) do if not r.percentiles then field[r[1]] = r[2] end end
  for _, row in ipairs(run_rows(db, "SELECT * FROM tide.points WHERE run_id = $1", run_id, filter, seg, " ORDER BY t")) do
    local p = by[row.t]
    if not p then
      p = { t = row.t }
      by[row.t] = p
      list[#list + 1] = p
    end
    if field[row.metric] then p[field[row.metric]] = row.count end
    if row.metric == "http_req_duration" then p.p50, p.p95, p.p99 = row.p50, row.p95, row.p99 end
  end
  return list
end

-- One stored document. seg: the segment column's value ("I/N", "merged" or
-- nil for NULL) when tide.runs keeps segments; false when it does not.
local function load_run(db, run_id, seg)
  local segmented = seg ~= false
  seg = seg or nil
  local run = run_rows(db, "SELECT summary FROM tide.runs WHERE run_id = $1", run_id, segmented, seg)[1]
  if not run then error(("no run %s in the database"):format(run_id), 0) end
  local doc = decode(run.summary)
  doc.metrics = {}
  local sql = [[SELECT key, type, contains, "values", histogram, thresholds FROM tide.metrics WHERE run_id = $1]]
  for _, m in ipairs(run_rows(db, sql, run_id, segmented and has_segment(db, "metrics"), seg)) do
    doc.metrics[m.key] = { type = m.type, contains = m.contains, values = decode(m.values),
                           histogram = decode(m.histogram), thresholds = decode(m.thresholds) }
  end
  doc.points = load_points(db, run_id, segmented and has_segment(db, "points"), seg)
  local i, n = tostring(seg):match("^(%d+)/(%d+)$")
  if i and type(doc.segment) ~= "table" then doc.segment = { index = tonumber(i), count = tonumber(n) } end
  return results.recompute(results.decode(json.encode(doc), "pg:" .. run_id))
end

function M.load(dsn, ref)
  local db <close> = pg.connect(dsn)
  return load_run(db, resolve(db, ref), false)
end

-- Every document stored under a run id: the run, or each of its segments
-- (tide run --segment I/N --out pg), never a merged row beside them (that
-- one is read only when nothing else is stored under the id).
function M.load_all(dsn, ref)
  local db <close> = pg.connect(dsn)
  local run_id = resolve(db, ref)
  if not has_segment(db, "runs") then return { load_run(db, run_id, false) } end
  local rows = db:query("SELECT segment FROM tide.runs WHERE run_id = $1 ORDER BY segment", run_id)
  if #rows == 0 then error(("no run %s in the database"):format(run_id), 0) end
  local segs = {}
  for _, r in ipairs(rows) do
    if r.segment ~= nil and r.segment ~= M.MERGED then segs[#segs + 1] = r.segment end
  end
  if #segs > 0 and #segs < #rows - (rows[#rows].segment == M.MERGED and 1 or 0) then
    error(("run %s is stored both whole and in segments"):format(run_id), 0)
  end
  if #segs == 0 then return { load_run(db, run_id, rows[1].segment) } end
  if #segs > 1 and not has_segment(db, "metrics") then
    error(("run %s has %d segments but tide.metrics has no segment column to tell them apart")
      :format(run_id, #segs), 0)
  end
  local docs = {}
  for k, seg in ipairs(segs) do docs[k] = load_run(db, run_id, seg) end
  return docs
end

-- SQL for a value of a stored document as float8, or NULL when it is not a
-- number or beyond float8 (its text comes too, so the listing can show it):
-- one bad row must not make the whole listing fail.
local function number_or_null(v)
  return ("CASE WHEN jsonb_typeof(%s) = 'number' THEN CASE WHEN abs((%s)::text::numeric) <= 1.7e308 "
    .. "THEN (%s)::text::float8 END END"):format(v, v, v)
end

function M.runs(dsn, scenario, last)
  local db <close> = pg.connect(dsn)
  return db:query([[
    SELECT r.run_id, r.scenario, to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS started,
           r.duration_s, r.exit_code,
           ]] .. number_or_null([[m."values"->'count']]) .. [[ AS reqs, m."values"->>'count' AS reqs_text,
           ]] .. number_or_null([[d."values"->'p(95)']]) .. [[ AS p95, d."values"->>'p(95)' AS p95_text
      FROM tide.runs r
      LEFT JOIN tide.metrics m ON m.run_id = r.run_id AND m.key = 'http_reqs'
      LEFT JOIN tide.metrics d ON d.run_id = r.run_id AND d.key = 'http_req_duration'
     WHERE $1::text IS NULL OR r.scenario = $1 OR r.scenario LIKE '%/' || $1 || '.lua'
     ORDER BY r.started_at DESC, r.run_id DESC LIMIT $2]], scenario, last)
end

return M
