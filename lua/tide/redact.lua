-- Secrets never reach the summary, logs, JSON, HTML or the database: the
-- secrets of URLs and DSNs are blanked by tide's one redaction (redact.c,
-- as tide.redact); request headers and --env values are never written
-- anywhere in the first place.
local redact = require("tide").redact

local M = {}

-- scheme://user:***@host, http(s)://***@host, password=*** wherever they appear
function M.url(url)
  if type(url) ~= "string" then return url end
  return redact(url)
end

M.dsn = M.url

-- An error message for people: without the Lua position of tide's own code.
function M.message(err)
  return redact((tostring(err):gsub("^lua/tide/[%w_]+%.lua:%d+: ", "")))
end

return M
