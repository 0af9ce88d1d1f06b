-- tide.celery: wait for asynchronous (Celery-style) tasks by polling their
-- status endpoint. Each poll is a measured request; the wait between polls is
-- a timer on the loop (tide.sleep), so thousands of users can poll at once.
local http = require "tide.http"
local tide = require "tide"
local metrics = require "tide.metrics"
local json = require "cjson"
local redact = require "tide.redact"

local M = {}

local task_duration = metrics.trend("celery_task_duration", "time")
local polls_metric = metrics.counter("celery_polls")
local task_failed = metrics.rate("celery_task_failed")

local DEFAULT_TERMINAL = { "SUCCESS", "FAILURE", "REVOKED" }
local FAILED = { FAILURE = true, REVOKED = true, TIMEOUT = true }
local KNOWN = {
  every = true, max = true, timeout = true, bearer = true, headers = true, terminal = true,
  state_field = true, output_field = true, name = true, request_timeout = true,
}

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Normalises and checks poll options once; errors name the option.
local function settings(opts, fn)
  opts = opts or {}
  if type(opts) ~= "table" then error(("celery.%s: options must be a table"):format(fn), 3) end
  for k in pairs(opts) do
    if not KNOWN[k] then error(("celery.%s: unknown option '%s'"):format(fn, tostring(k)), 3) end
  end
  local max = opts.max or 1200
  if math.type(max) ~= "integer" or max < 1 then
    error(("celery.%s: option 'max' must be a positive integer (polls)"):format(fn), 3)
  end
  return {
    every = tide.duration(opts.every or 0.5),
    max = max,
    timeout = opts.timeout and tide.duration(opts.timeout),
    terminal = set_of(opts.terminal or DEFAULT_TERMINAL),
    state_field = opts.state_field or "state",
    output_field = opts.output_field or "output",
    name = opts.name or "status",
    request = {
      name = opts.name or "status", bearer = opts.bearer, headers = opts.headers,
      timeout = opts.request_timeout,
    },
  }
end

-- What one status response says: the state, the output, or nil to poll again.
local function read_status(r, url, s)
  if r.error or r.status == 503 then return nil end
  if r.status ~= 200 then
    error(("celery.poll: %s answered HTTP %d: %s"):format(redact.url(url), r.status, r.body:sub(1, 200)), 0)
  end
  local ok, doc = pcall(r.json, r)
  if not ok or type(doc) ~= "table" then
    error(("celery.poll: %s answered a body that is not a JSON object: %q"):format(redact.url(url),
      r.body:sub(1, 200)), 0)
  end
  local output = doc[s.output_field]
  if output == json.null then output = nil end
  return doc[s.state_field], output
end

local function record(s, result)
  local tags = { name = s.name }
  task_duration:add(result.elapsed * 1e3, tags)
  polls_metric:add(result.polls, tags)
  task_failed:add(FAILED[result.state] or false, tags)
end

local function out_of_time(s, started)
  return s.timeout and tide.now() - started + s.every > s.timeout
end

-- Polls url until its state is terminal, `max` polls were made or `timeout`
-- passed. Returns { state, output, polls, elapsed } (state "TIMEOUT" when it
-- gave up). 503s and transport errors are polled again on the same schedule.
function M.poll(url, opts)
  if type(url) ~= "string" then error("celery.poll: url (string) expected", 2) end
  local s = settings(opts, "poll")
  local started, polls = tide.now(), 0
  local result = { state = "TIMEOUT" }
  while polls < s.max do
    polls = polls + 1
    local state, output = read_status(http.get(url, s.request), url, s)
    if state ~= nil and s.terminal[state] then
      result.state, result.output = state, output
      break
    end
    if polls >= s.max or out_of_time(s, started) then break end
    tide.sleep(s.every)
  end
  result.polls, result.elapsed = polls, tide.now() - started
  record(s, result)
  return result
end

-- Polls many status URLs at once (one batch per round), for setup, teardown
-- and the prompt. Returns the results in the order of urls.
function M.wait_all(urls, opts)
  if type(urls) ~= "table" then error("celery.wait_all: a list of status URLs expected", 2) end
  local s = settings(opts, "wait_all")
  local started, results, pending = tide.now(), {}, {}
  for i, url in ipairs(urls) do
    results[i] = { state = "TIMEOUT", polls = 0 }
    pending[#pending + 1] = i
  end
  while #pending > 0 do
    local batch = {}
    for j, i in ipairs(pending) do batch[j] = { "GET", urls[i], s.request } end
    local still = {}
    for j, r in ipairs(http.batch(batch)) do
      local i = pending[j]
      local res = results[i]
      res.polls = res.polls + 1
      local state, output = read_status(r, urls[i], s)
      if state ~= nil and s.terminal[state] then
        res.state, res.output, res.elapsed = state, output, tide.now() - started
      elseif res.polls < s.max then
        still[#still + 1] = i
      end
    end
    pending = still
    if #pending == 0 or out_of_time(s, started) then break end
    tide.sleep(s.every)
  end
  for _, res in ipairs(results) do
    res.elapsed = res.elapsed or tide.now() - started
    record(s, res)
  end
  return results
end

return M
