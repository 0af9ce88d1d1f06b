-- csv-login: each iteration logs in as the next user of users.csv (beside
-- this file), so every row is used by exactly one iteration across all
-- users and threads, then does one authenticated request with the token.
-- The file is read once and shared read-only by every engine thread.
--
--   tide run scenarios/examples/csv-login.lua --target http://127.0.0.1:8080
local http = require "tide.http"
local check = require "tide.check"
local tide = require "tide"

local users = tide.data.csv("users.csv")

local function login(vu, user)
  local r = http.post(vu.target .. "/auth/login", { json = user, name = "POST /auth/login" })
  check(r, { ["logged in"] = r.status == 200 })
  return r.status == 200 and r:json().token or nil
end

local function run(vu)
  local user = users[vu.iteration_global]
  local token = login(vu, { username = user.username, password = user.password })
  if not token then return end
  local r = http.post(vu.target .. "/items", { json = { name = "from " .. user.username },
                                               headers = { Authorization = "Bearer " .. token } })
  check(r, { ["created as the user"] = r.status == 201 })
end

return {
  description = "log in as each user of users.csv once, then create an item as that user",
  options = {
    executor = "shared-iterations", vus = 3, iterations = #users,
    thresholds = { ["checks{check:logged in}"] = "rate == 1" },
  },
  run = run,
}
