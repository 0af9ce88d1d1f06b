-- api-crud: the k6 "API CRUD" flow. Setup registers a load-test user and
-- logs in once; every iteration then creates an item, reads it, updates it
-- and deletes it, each step in its own group, checking what came back;
-- teardown removes the user. Item ids are integers and stay integers:
-- "/items/" .. item.id is the path the server gave.
--
--   tide run scenarios/examples/api-crud.lua --target http://127.0.0.1:8080
local http = require "tide.http"
local check = require "tide.check"
local tide = require "tide"

local function auth(token)
  return { Authorization = "Bearer " .. token }
end

local function setup(ctx)
  local user = { username = ("loadtest-%d-%d"):format(os.time(), math.random(1e9)),
                 password = ctx.env.PASSWORD or "not-a-secret" }
  local r = http.post(ctx.target .. "/users", { json = user })
  assert(r.status == 201, ("registering %s answered %s"):format(user.username, r.error or r.status))
  r = http.post(ctx.target .. "/auth/login", { json = user })
  assert(r.status == 200, ("logging in answered %s"):format(r.error or r.status))
  return { token = r:json().token }
end

local function create(base, headers, vu)
  local r = http.post(base, { json = { name = "item of user " .. vu.id, count = vu.iteration },
                              headers = headers, name = "POST /items" })
  check(r, { ["created"] = r.status == 201,
             ["has an integer id"] = function() return math.type(r:json().id) == "integer" end })
  return r.status == 201 and r:json() or nil
end

local function read(url, headers, item)
  local r = http.get(url, { headers = headers, name = "GET /items/:id" })
  check(r, { ["read"] = r.status == 200,
             ["same item"] = function() return r:json().name == item.name end })
end

local function update(url, headers)
  local r = http.put(url, { json = { name = "renamed" }, headers = headers, name = "PUT /items/:id" })
  check(r, { ["updated"] = r.status == 200,
             ["renamed"] = function() return r:json().name == "renamed" end })
end

local function delete(url, headers)
  local r = http.delete(url, { headers = headers, name = "DELETE /items/:id" })
  check(r, { ["deleted"] = r.status == 204 })
end

local function run(vu, data)
  local base, headers = vu.target .. "/items", auth(data.token)
  local item
  tide.group("create", function() item = create(base, headers, vu) end)
  if not item then return end
  local url = base .. "/" .. item.id
  tide.group("read", function() read(url, headers, item) end)
  tide.group("update", function() update(url, headers) end)
  tide.group("delete", function() delete(url, headers) end)
end

local function teardown(ctx, data)
  local r = http.delete(ctx.target .. "/users/me", { headers = auth(data.token) })
  assert(r.status == 204, ("removing the user answered %s"):format(r.error or r.status))
end

return {
  description = "k6-style API CRUD: log in once, then create, read, update, delete in groups",
  options = {
    executor = "per-vu-iterations", vus = 5, iterations = 10,
    thresholds = { checks = "rate == 1", http_req_failed = "rate == 0" },
  },
  setup = setup,
  run = run,
  teardown = teardown,
}
