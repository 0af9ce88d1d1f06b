-- Secrets never reach the summary, logs, JSON, HTML or the database: the
-- passwords in URLs and DSNs are blanked here; request headers and --env
-- values are never written anywhere in the first place.
local M = {}

-- An http(s) URL's user name standing alone is a token (http://TOKEN@host,
-- or TOKEN: with an empty password): as secret as a password.
local function lone_user(scheme, user, colon)
  local s = scheme:lower()
  if (s == "http" or s == "https") and user ~= "" then return scheme .. "://***" .. colon .. "@" end
end

-- scheme://user:password@host -> scheme://user:***@host, wherever it appears;
-- http(s)://TOKEN@host -> http(s)://***@host
function M.url(url)
  if type(url) ~= "string" then return url end
  url = url:gsub("(%a[%w+.-]*://[^/@:%s]*):([^/@%s]+)@", "%1:***@")
  return (url:gsub("(%a[%w+.-]*)://([^/@:%s]*)(:?)@", lone_user))
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

-- An error message for people: without the Lua position of tide's own code.
function M.message(err)
  return M.dsn((tostring(err):gsub("^lua/tide/[%w_]+%.lua:%d+: ", "")))
end

return M
