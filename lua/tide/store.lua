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
  -- A run is stored whole (segment NULL) or in segments ("I/N", one row
  -- each, under one run_id): a run is (run_id, segment), unique with NULL
  -- as one value. That is not a key a foreign key can name, so metrics and
  -- points carry the segment too and are kept with their run by save().
  [[CREATE TABLE IF NOT EXISTS tide.runs (
      run_id text NOT NULL, segment text, scenario text NOT NULL, options jsonb, target text,
      started_at timestamptz, finished_at timestamptz, exit_code integer, host text,
      tide_version text, duration_s double precision, summary jsonb NOT NULL)]],
  "CREATE INDEX IF NOT EXISTS runs_by_scenario ON tide.runs (scenario, started_at)",
  [[CREATE TABLE IF NOT EXISTS tide.metrics (
      run_id text NOT NULL, segment text, key text NOT NULL,
      metric text NOT NULL, tags jsonb NOT NULL, type text NOT NULL, contains text,
      "values" jsonb NOT NULL, histogram jsonb, thresholds jsonb)]],
  [[CREATE TABLE IF NOT EXISTS tide.points (
      run_id text NOT NULL, segment text, t integer NOT NULL,
      metric text NOT NULL, count double precision, rate double precision,
      p50 double precision, p95 double precision, p99 double precision, vus integer)]],
}

-- Databases made before segments: run_id was the key of tide.runs, and of
-- metrics and points with theirs, which referenced it. Run once, when
-- tide.runs has no segment column yet.
local MIGRATE_SEGMENTS = {
  "ALTER TABLE tide.runs ADD COLUMN IF NOT EXISTS segment text",
  "ALTER TABLE tide.metrics ADD COLUMN IF NOT EXISTS segment text",
  "ALTER TABLE tide.points ADD COLUMN IF NOT EXISTS segment text",
  "ALTER TABLE tide.metrics DROP CONSTRAINT IF EXISTS metrics_run_id_fkey",
  "ALTER TABLE tide.points DROP CONSTRAINT IF EXISTS points_run_id_fkey",
  "ALTER TABLE tide.metrics DROP CONSTRAINT IF EXISTS metrics_pkey",
  "ALTER TABLE tide.points DROP CONSTRAINT IF EXISTS points_pkey",
  "ALTER TABLE tide.runs DROP CONSTRAINT IF EXISTS runs_pkey",
}

local KEYS = {
  "CREATE UNIQUE INDEX IF NOT EXISTS runs_run_segment ON tide.runs (run_id, coalesce(segment, ''))",
  [[CREATE UNIQUE INDEX IF NOT EXISTS metrics_run_segment_key
      ON tide.metrics (run_id, coalesce(segment, ''), key)]],
  [[CREATE UNIQUE INDEX IF NOT EXISTS points_run_segment_t
      ON tide.points (run_id, coalesce(segment, ''), t, metric)]],
}

local function create_schema(db)
  for _, sql in ipairs(SCHEMA) do db:exec(sql) end
  if #db:query([[SELECT 1 FROM information_schema.columns
                  WHERE table_schema = 'tide' AND table_name = 'runs' AND column_name = 'segment']]) == 0 then
    for _, sql in ipairs(MIGRATE_SEGMENTS) do db:exec(sql) end
  end
  for _, sql in ipairs(KEYS) do db:exec(sql) end
end

-- "I/N" for a document of --segment I/N, nil for a whole run.
local function segment_of(doc)
  local s = type(doc.segment) == "table" and doc.segment or nil
  return s and ("%d/%d"):format(s.index, s.count) or nil
end
M.segment_of = segment_of

-- Everything about the run except metrics and points (they have tables).
local function summary_of(doc)
  local s = {}
  for k, v in pairs(doc) do
    if k ~= "metrics" and k ~= "points" and k ~= "registry" then s[k] = v end
  end
  return s
end

-- seg: the segment column's value; nil: the document's own (segment_of).
local function insert_run(db, doc, seg)
  local t = doc.tide
  db:exec([[INSERT INTO tide.runs (run_id, scenario, options, target, started_at, finished_at,
              exit_code, host, tide_version, duration_s, summary, segment)
            VALUES ($1, $2, $3::jsonb, $4, $5::timestamptz, $6::timestamptz, $7, $8, $9, $10, $11::jsonb, $12)]],
    doc.run_id, t.scenario, json.encode({ scenarios = t.scenarios, threads = t.threads }), t.target,
    doc.started, doc.finished, doc.exit_code, doc.host, t.version,
    doc.state.testRunDurationMs / 1e3, json.encode(summary_of(doc)), seg or segment_of(doc))
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
  db:exec([[INSERT INTO tide.metrics (run_id, segment, key, metric, tags, type, contains, "values", histogram, thresholds)
            SELECT $1, $3::text, x.key, x.metric, coalesce(x.tags, '{}'), x.type, x.contains, x."values", x.histogram, x.thresholds
              FROM jsonb_to_recordset($2::jsonb) AS x(key text, metric text, tags jsonb, type text,
                   contains text, "values" jsonb, histogram jsonb, thresholds jsonb)]],
    doc.run_id, json.encode(rows), seg or segment_of(doc))
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
  db:exec([[INSERT INTO tide.points (run_id, segment, t, metric, count, rate, p50, p95, p99, vus)
            SELECT $1, $3::text, x.t, x.metric, x.count, x.rate, x.p50, x.p95, x.p99, x.vus
              FROM jsonb_to_recordset($2::jsonb) AS x(t int, metric text, count float8, rate float8,
                   p50 float8, p95 float8, p99 float8, vus int)]],
    doc.run_id, json.encode(rows), seg or segment_of(doc))
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

-- tide.runs rows of a merged run (tide report --store) carry this segment,
-- beside the segments it was merged from.
M.MERGED = "merged"

-- A run id holds one whole run, or segments of one count, each once (and
-- perhaps their merged run).
local function check_new(db, doc)
  local seg = segment_of(doc)
  for _, row in ipairs(db:query("SELECT segment FROM tide.runs WHERE run_id = $1 AND segment IS DISTINCT FROM $2",
                                doc.run_id, M.MERGED)) do
    if not seg or row.segment == nil or row.segment == seg then
      error(("run %s%s is already stored"):format(doc.run_id, row.segment and " segment " .. row.segment or ""), 0)
    end
    if row.segment:match("/(%d+)$") ~= seg:match("/(%d+)$") then
      error(("run %s is stored in segments of %s, not %s"):format(doc.run_id, row.segment:match("/(%d+)$"),
        seg:match("/(%d+)$")), 0)
    end
  end
end

-- Stores a run (or a segment of one) in one transaction, creating what is
-- missing first. A segment writes no analytics.load_testing row: that
-- table has one row per whole run, written when the merged run is stored.
function M.save(dsn, doc)
  local db <close> = pg.connect(dsn)
  db:transaction(function()
    create_schema(db)
    check_new(db, doc)
    insert_run(db, doc)
    insert_metrics(db, doc)
    insert_points(db, doc)
    if not segment_of(doc) then insert_legacy(db, doc) end
  end)
end

-- Removes the merged run stored before under doc's run id; true when there
-- was one. A run stored whole under that id is not replaced.
local function drop_merged(db, doc)
  if db:query("SELECT 1 FROM tide.runs WHERE run_id = $1 AND segment IS NULL", doc.run_id)[1] then
    error(("run %s is already stored whole: not replaced"):format(doc.run_id), 0)
  end
  if not db:query("SELECT 1 FROM tide.runs WHERE run_id = $1 AND segment = $2", doc.run_id, M.MERGED)[1] then
    return false
  end
  for _, tbl in ipairs({ "metrics", "points", "runs" }) do
    db:exec(("DELETE FROM tide.%s WHERE run_id = $1 AND segment = $2"):format(tbl), doc.run_id, M.MERGED)
  end
  return true
end

-- Stores a merged run (tide report --store): one tide.runs row for the whole
-- run (segment 'merged', beside its segments), its metrics and points, and
-- its analytics.load_testing row. Storing it again replaces both (the same
-- run merged again, perhaps with a late segment), so the run keeps one row.
-- Returns true when it replaced one.
function M.save_merged(dsn, doc)
  local db <close> = pg.connect(dsn)
  local replaced
  db:transaction(function()
    create_schema(db)
    replaced = drop_merged(db, doc)
    insert_run(db, doc, M.MERGED)
    insert_metrics(db, doc, M.MERGED)
    insert_points(db, doc, M.MERGED)
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

local function load_points(db, run_id, segment)
  local by, list = {}, {}
  local field = {}
  for _, r in ipairs(POINT_ROWS) do if not r.percentiles then field[r[1]] = r[2] end end
  for _, row in ipairs(db:query([[SELECT * FROM tide.points WHERE run_id = $1
                                   AND segment IS NOT DISTINCT FROM $2 ORDER BY t]], run_id, segment)) do
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

-- The segments ("I/N") stored under a run id, in order; {} for none.
function M.segments(dsn, run_id)
  local db <close> = pg.connect(dsn)
  local list = {}
  for _, row in ipairs(db:query([[SELECT segment FROM tide.runs WHERE run_id = $1 AND segment IS NOT NULL
                                  ORDER BY split_part(segment, '/', 1)::int]], run_id)) do
    list[#list + 1] = row.segment
  end
  return list
end

-- One stored document: segment nil is the whole run, else "I/N" or
-- M.MERGED.
local function load_run(db, run_id, segment)
  local run = db:query("SELECT summary FROM tide.runs WHERE run_id = $1 AND segment IS NOT DISTINCT FROM $2",
    run_id, segment)[1]
  if not run and not segment and db:query("SELECT 1 FROM tide.runs WHERE run_id = $1", run_id)[1] then
    error(("run %s is stored in segments, not whole"):format(run_id), 0)
  end
  if not run then error(("no run %s%s in the database"):format(run_id, segment and " segment " .. segment or ""), 0) end
  local doc = decode(run.summary)
  doc.metrics = {}
  for _, m in ipairs(db:query([[SELECT key, type, contains, "values", histogram, thresholds
                                FROM tide.metrics WHERE run_id = $1 AND segment IS NOT DISTINCT FROM $2]],
                              run_id, segment)) do
    doc.metrics[m.key] = { type = m.type, contains = m.contains, values = decode(m.values),
                           histogram = decode(m.histogram), thresholds = decode(m.thresholds) }
  end
  doc.points = load_points(db, run_id, segment)
  return results.recompute(results.decode(json.encode(doc), "pg:" .. run_id))
end

-- One stored run: the whole run, or with segment ("I/N") that segment of it.
function M.load(dsn, ref, segment)
  local db <close> = pg.connect(dsn)
  return load_run(db, resolve(db, ref), segment)
end

-- Every document stored under a run id, for tide report to merge: each of
-- its segments (tide run --segment I/N --out pg), or the run stored whole,
-- or, when only that is left, the merged run (tide report --store).
function M.load_all(dsn, ref)
  local db <close> = pg.connect(dsn)
  local run_id = resolve(db, ref)
  local segs, merged, whole = {}, false, false
  for _, r in ipairs(db:query("SELECT segment FROM tide.runs WHERE run_id = $1", run_id)) do
    if r.segment == nil then whole = true
    elseif r.segment == M.MERGED then merged = true
    else segs[#segs + 1] = r.segment end
  end
  if #segs > 0 then
    table.sort(segs, function(a, b) return tonumber(a:match("^%d+")) < tonumber(b:match("^%d+")) end)
    local docs = {}
    for k, seg in ipairs(segs) do docs[k] = load_run(db, run_id, seg) end
    return docs
  end
  if not whole and not merged then error(("no run %s in the database"):format(run_id), 0) end
  return { load_run(db, run_id, not whole and M.MERGED or nil) }
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
      LEFT JOIN tide.metrics m ON m.run_id = r.run_id AND m.segment IS NOT DISTINCT FROM r.segment
                              AND m.key = 'http_reqs'
      LEFT JOIN tide.metrics d ON d.run_id = r.run_id AND d.segment IS NOT DISTINCT FROM r.segment
                              AND d.key = 'http_req_duration'
     WHERE $1::text IS NULL OR r.scenario = $1 OR r.scenario LIKE '%/' || $1 || '.lua'
     ORDER BY r.started_at DESC, r.run_id DESC LIMIT $2]], scenario, last)
end

return M
