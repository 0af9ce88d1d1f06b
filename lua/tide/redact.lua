-- Secrets never reach the summary, logs, JSON, HTML or the database:
-- passwords in URLs and DSNs, credential headers, secret-looking env values.
local M = {}

local SECRET_KEY = { "PASSWORD", "SECRET", "TOKEN", "KEY" }
local SECRET_HEADER = { authorization = true, cookie = true, ["set-cookie"] = true,
                        ["proxy-authorization"] = true }

-- scheme://user:password@host -> scheme://user:***@host, wherever it appears
function M.url(url)
  if type(url) ~= "string" then return url end
  return (url:gsub("(%a[%w+.-]*://[^/@:%s]*):[^/@%s]*@", "%1:***@"))
end

-- Both DSN forms: URIs as above, "password=..." in key/value strings.
function M.dsn(dsn)
  if type(dsn) ~= "string" then return dsn end
  if dsn:match("%a[%w+.-]*://") then
    dsn = M.url(dsn)
    return (dsn:gsub("([?&]password=)[^&]*", "%1***"))
  end
  return (dsn:gsub("(password%s*=%s*)'[^']*'", "%1***"):gsub("(password%s*=%s*)[^%s']+", "%1***"))
end

function M.secret_key(key)
  local up = tostring(key):upper()
  for _, word in ipairs(SECRET_KEY) do
    if up:find(word, 1, true) then return true end
  end
  return false
end

-- A copy of an env table with secret-looking values hidden.
function M.env(env)
  local out = {}
  for k, v in pairs(env or {}) do out[k] = M.secret_key(k) and "***" or v end
  return out
end

function M.headers(headers)
  local out = {}
  for k, v in pairs(headers or {}) do
    out[k] = SECRET_HEADER[tostring(k):lower()] and "***" or v
  end
  return out
end

-- An error message for people: without the Lua position of tide's own code.
function M.message(err)
  return M.dsn((tostring(err):gsub("^lua/tide/[%w_]+%.lua:%d+: ", "")))
end

return M
