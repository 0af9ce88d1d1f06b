-- tide.check: named assertions that don't stop the iteration. Each result is
-- recorded in the rate metric `checks`, tagged `check:NAME`; the summary
-- lists every check with its passes and fails.
local metrics = require "tide.metrics"
local tide = require "tide"

local checks = metrics.rate("checks")

-- A check given as a function is called with the value; if it raises, the
-- check fails and the error is shown once per check name.
local function outcome(name, c, value)
  if type(c) ~= "function" then return c and true or false end
  local ok, res = pcall(c, value)
  if ok then return res and true or false end
  if tide.once("check raised: " .. tostring(name)) then
    io.stderr:write(("tide: check '%s' raised: %s\n"):format(name, tostring(res)))
  end
  return false
end

-- check(value, { ["name"] = bool_or_fn, ... } [, tags]) -> true when all pass
return function(value, set, tags)
  if type(set) ~= "table" then error("check: a table of named checks expected", 2) end
  local all = true
  for name, c in pairs(set) do
    local ok = outcome(name, c, value)
    local t = { check = tostring(name) }
    for k, v in pairs(tags or {}) do t[k] = v end
    checks:add(ok, t)
    all = all and ok
  end
  return all
end
