-- webserver: the old Python load test, in Lua. Each user asks the service to
-- assign it a container (retrying while the service is busy), then polls the
-- Celery task until it ends. Afterwards the database must show that no
-- container went to two users: the race the weekly run exists to catch.
--
--   tide run webserver --target URL --env ADMIN_USER=... --env ADMIN_PASSWORD=...
--                      --env DATABASE_URL=postgresql://...
local http = require "tide.http"
local celery = require "tide.celery"
local check = require "tide.check"
local pg = require "tide.pg"

local BATCH = 50

local function user_name(n) return "load_test_user_" .. n end

local function excerpt(r)
  return r.error or ("HTTP %d: %s"):format(r.status, r.body:sub(1, 200))
end

local function login(ctx)
  local env = ctx.env
  local r = http.post(ctx.target .. "/admin/login", {
    json = { username = env.ADMIN_USER or "admin", password = env.ADMIN_PASSWORD or "" },
  })
  if r.status ~= 200 then error("admin login failed: " .. excerpt(r), 0) end
  return r:json().access_token
end

-- Runs fn(first, last) over 1..n in slices, so setup never opens thousands
-- of connections at once.
local function in_slices(n, fn)
  for first = 1, n, BATCH do fn(first, math.min(n, first + BATCH - 1)) end
end

local function make_users(ctx, token)
  in_slices(ctx.vus, function(first, last)
    local reqs = {}
    for n = first, last do
      reqs[#reqs + 1] = { "POST", ctx.target .. "/account/register", {
        bearer = token, name = "register",
        json = { username = user_name(n), password = "load-test", name = "Load Test " .. n },
      } }
    end
    for i, r in ipairs(http.batch(reqs)) do
      if r.status ~= 200 and r.status ~= 409 then
        error(("registering %s failed: %s"):format(user_name(first + i - 1), excerpt(r)), 0)
      end
    end
  end)
end

local function delete_users(ctx, token)
  in_slices(ctx.vus, function(first, last)
    local reqs = {}
    for n = first, last do
      reqs[#reqs + 1] = { "DELETE", ctx.target .. "/account/" .. user_name(n),
        { bearer = token, name = "delete account" } }
    end
    http.batch(reqs)
  end)
end

-- The invariant: a container is never handed to two users.
local function check_containers(dsn)
  local db <close> = pg.connect(dsn)
  local rows = db:query([[
    SELECT container_id, string_agg(DISTINCT username, ', ' ORDER BY username) AS users
      FROM assignments GROUP BY container_id
    HAVING count(DISTINCT username) > 1 ORDER BY container_id]])
  for _, row in ipairs(rows) do
    io.stderr:write(("tide: container %d was assigned to %s\n"):format(row.container_id, row.users))
  end
  check(rows, { ["no container assigned twice"] = #rows == 0 })
end

return {
  description = "the old tool's flow: assign a container per user, poll the Celery task",
  options = {
    executor = "per-vu-iterations", vus = 20, iterations = 1,
    target = "http://127.0.0.1:8000",
    thresholds = {
      ["checks{check:no container assigned twice}"] = "rate == 1",
      ["checks{check:task succeeded}"] = "rate == 1",
      ["checks{check:assign accepted}"] = "rate == 1",
    },
  },

  setup = function(ctx)
    local token = login(ctx)
    make_users(ctx, token)
    return { token = token }
  end,

  run = function(vu, data)
    local r = http.post(vu.target .. "/aws_container/assign_container", {
      name = "assign", bearer = data.token,
      json = { username = user_name(vu.id) },
      retry = { status = { 503 }, every = "0.5s", max = 100 },
    })
    if not check(r, { ["assign accepted"] = r.status == 202 }) then return end
    local task = celery.poll(vu.target .. "/status/" .. r:json().ID,
      { bearer = data.token, every = "0.5s", max = 1200 })
    check(task, { ["task succeeded"] = task.state == "SUCCESS" })
  end,

  teardown = function(ctx, data)
    delete_users(ctx, data.token)
    if ctx.env.DATABASE_URL then check_containers(ctx.env.DATABASE_URL) end
  end,
}
