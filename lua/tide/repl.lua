-- The prompt's pure-Lua parts (`tide repl`): how values print, what TAB
-- completes, the globals the prompt preloads (also in the engine threads of
-- an inline run{fn = ...}), and the scenario such a function travels in.
local M = {}

-- A printed value stays small: nested tables to this depth, this many
-- entries per table and in all, strings cut after this many bytes.
M.DEPTH, M.ITEMS, M.TOTAL, M.STRING = 3, 40, 400, 200

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not
  or repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

-- ---------------------------------------------------------------- globals

-- What the prompt has as globals besides Lua's own: the modules a scenario
-- requires, and `target` and `env` from the command line.
function M.install(G, target, env)
  G.tide = require "tide"
  G.http = require "tide.http"
  G.celery = require "tide.celery"
  G.pg = require "tide.pg"
  G.json = require "cjson"
  G.metrics = require "tide.metrics"
  G.check = require "tide.check"
  G.target = target
  G.env = env
end

-- ---------------------------------------------------------------- printing

local REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [409] = "Conflict", [422] = "Unprocessable Entity",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local function size(n)
  if n < 1000 then return ("%d B"):format(n) end
  if n < 1e6 then return ("%.1f kB"):format(n / 1e3) end
  return ("%.1f MB"):format(n / 1e6)
end

-- <200 OK GET /path 1.2 ms 512 B>
function M.response(r)
  local path = r.url:match("^%a[%w+.-]*://[^/?#]*([/?].*)$") or "/"
  local what = r.error or REASONS[r.status] or ""
  return ("<%d%s%s %s %s %.1f ms %s>"):format(r.status, what ~= "" and " " or "", what, r.method, path,
    r.timings.total, size(#r.body))
end

local function quote(s)
  if #s > M.STRING then
    return ("%q…(%d bytes)"):format(s:sub(1, M.STRING), #s)
  end
  return ("%q"):format(s):gsub("\\\n", "\\n")
end

local function metaname(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__name")
end

-- A value with a meaning of its own (a response, a result, a connection).
local function special(v, nested)
  if metaname(v) == "tide.response" then return M.response(v) end
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then
    local ok, s = pcall(tostring, v)
    if not ok then return ("<%s: __tostring raised>"):format(type(v)) end
    if nested and s:find("\n") then return ("<%s>"):format(metaname(v) or type(v)) end
    return s
  end
end

local function scalar(v)
  if type(v) == "string" then return quote(v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil then return tostring(v) end
  return special(v, true) or tostring(v)
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. scalar(k) .. "]"
end

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

-- The keys to show: the array part in order, then up to ITEMS others
-- (sorted when that is all of them); and whether some were left out.
local function shown_keys(t)
  local keys, n = {}, 0
  while n < M.ITEMS and rawget(t, n + 1) ~= nil do
    n = n + 1
    keys[n] = n
  end
  local others, more = {}, rawget(t, n + 1) ~= nil
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      if n + #others >= M.ITEMS then more = true break end
      others[#others + 1] = k
    end
  end
  if not more then table.sort(others, key_less) end
  for _, k in ipairs(others) do keys[#keys + 1] = k end
  return keys, more, n
end

local render

local function render_table(t, depth, budget, seen, indent)
  if seen[t] then return "<cycle>" end
  if depth > M.DEPTH then return "{…}" end
  seen[t] = true
  local keys, more, n = shown_keys(t)
  local parts, long = {}, false
  for i, k in ipairs(keys) do
    if budget.left <= 0 then more = true break end
    budget.left = budget.left - 1
    local v = render(rawget(t, k), depth + 1, budget, seen, indent .. "  ")
    parts[i] = (i <= n and "" or key_text(k) .. " = ") .. v
    long = long or v:find("\n") ~= nil
  end
  seen[t] = nil
  if more then
    local left = #t - #parts
    parts[#parts + 1] = left > 0 and ("… (%d more)"):format(left) or "…"
  end
  if #parts == 0 then return "{}" end
  local flat = "{ " .. table.concat(parts, ", ") .. " }"
  if not long and #flat + #indent <= 80 then return flat end
  -- one entry per line, but short ones share a line up to 80 columns
  local lines, cur = {}, nil
  for _, p in ipairs(parts) do
    if cur and not p:find("\n") and not cur:find("\n") and #indent + #cur + #p + 4 <= 80 then
      cur = cur .. ", " .. p
    else
      if cur then lines[#lines + 1] = cur end
      cur = p
    end
  end
  lines[#lines + 1] = cur
  return "{\n" .. indent .. "  " .. table.concat(lines, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
end

function render(v, depth, budget, seen, indent)
  if type(v) == "table" and not special(v, depth > 1) then
    return render_table(v, depth, budget, seen, indent)
  end
  if depth == 1 and type(v) ~= "string" then return special(v, false) or scalar(v) end
  return scalar(v)
end

-- One printable text for the values a chunk returned.
function M.show(...)
  local out = {}
  for i = 1, select("#", ...) do
    out[i] = render((select(i, ...)), 1, { left = M.TOTAL }, {}, "")
  end
  return table.concat(out, "\t")
end

-- ---------------------------------------------------------------- completion

-- The names a value offers: its own string keys and those of the tables its
-- metatables' __index leads to.
local function names_of(v, into, hops)
  if hops > 5 then return end
  if type(v) == "table" then
    local n = 0
    for k in next, v do
      n = n + 1
      if n > 10000 then break end
      if type(k) == "string" and k:match("^[%a_][%w_]*$") then into[k] = into[k] or rawget(v, k) end
    end
  end
  local mt = getmetatable(v)
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) == "table" then
    for k, f in next, index do
      if type(k) == "string" and into[k] == nil then into[k] = f end
    end
    names_of(index, into, hops + 1)
  end
end

-- The value a dotted path names, or nil.
local function resolve(G, path)
  local v = G
  for name in path:gmatch("[^.]+") do
    if not name:match("^[%a_][%w_]*$") then return nil end
    local ok, nxt = pcall(function() return v[name] end)
    if not ok or nxt == nil then return nil end
    v = nxt
  end
  return v
end

-- TAB at the end of `line`: the word being completed and its candidates
-- (whole words, sorted).
function M.complete(G, line)
  local word = line:match("[%w_.:]*$")
  local path, sep, last = word:match("^(.-)([.:]?)([%w_]*)$")
  local names = {}
  if sep == "" then
    names_of(G, names, 0)
    for k in pairs(KEYWORDS) do names[k] = true end
  else
    if path == "" or path:find(":") then return last, {} end
    local v = resolve(G, path)
    if v == nil then return last, {} end
    names_of(v, names, 0)
  end
  local out = {}
  for k, v in pairs(names) do
    if k:sub(1, #last) == last and (sep ~= ":" or type(v) == "function") then out[#out + 1] = k end
  end
  table.sort(out)
  return last, out
end

-- ---------------------------------------------------------------- inline loads

-- The scenario an inline function travels in to the engine threads: each
-- loads it into its own Lua state, so the function goes as bytecode whose
-- first upvalue (_ENV) becomes that state's globals, preloaded as here.
function M.inline_source(fn, target, env_extra)
  if type(fn) ~= "function" then
    error(("run{}: fn must be a function (vu, data), got %s"):format(type(fn)), 0)
  end
  local info = debug.getinfo(fn, "Su")
  if info.what == "C" then error("run{}: fn must be a Lua function, not a C function", 0) end
  for i = 1, info.nups do
    local name = debug.getupvalue(fn, i)
    if name ~= "_ENV" then
      error(("run{}: fn uses the local '%s' of the prompt, which the engine threads cannot see "
        .. "(each loads fn into its own Lua state): make it a global, or pass it in data"):format(name), 0)
    end
  end
  local pairs_text = {}
  for k, v in pairs(env_extra) do pairs_text[#pairs_text + 1] = ("[%q] = %q"):format(k, v) end
  return table.concat({
    "local env = setmetatable({ " .. table.concat(pairs_text, ", ") .. " },",
    "  { __index = function(_, k) return os.getenv(k) end })",
    ("require('tide.repl').install(_G, %s, env)"):format(target and ("%q"):format(target) or "nil"),
    ("return { run = assert(load(%q, '=(repl)', 'b', _ENV)) }"):format(string.dump(fn)),
  }, "\n")
end

-- The options of a run{}: the scenario's, overridden by the table's. A
-- table that names an executor (or scenarios) brings its own load shape:
-- the scenario's shape is left out then, its thresholds and settings kept.
local SHAPE = { executor = true, vus = true, iterations = true, duration = true, stages = true,
  rate = true, time_unit = true, start_vus = true, pre_allocated_vus = true, max_vus = true,
  start_rate = true, graceful_ramp_down = true, scenarios = true, exec = true }

function M.merge_options(base, over)
  local out = {}
  local own_shape = over.executor ~= nil or over.scenarios ~= nil
  for k, v in pairs(base or {}) do
    if not (own_shape and SHAPE[k]) then out[k] = v end
  end
  for k, v in pairs(over) do
    if k ~= "fn" then out[k] = v end
  end
  if over.scenarios ~= nil then
    for k in pairs(SHAPE) do if k ~= "scenarios" and over[k] == nil then out[k] = nil end end
  end
  return out
end

return M
