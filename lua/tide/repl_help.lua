-- help() at the prompt: every helper with one line, and its usage.
local M = {}

-- { name, usage, what it does }, in the order help() lists them.
M.ENTRIES = {
  { "setup", "setup()", "runs S.setup(ctx) of the scenario; keeps (and returns) its result as `data`" },
  { "run", "run{ vus = 5, duration = \"10s\", ... } -> result",
    "runs a load (the scenario's, or fn = function(vu, data) ... end) with `data`; Ctrl-C stops it" },
  { "start", "start{ ... } -> handle",
    "the same load in the background: h (live figures), h:scale(n), h:stop(), h:wait() -> result" },
  { "teardown", "teardown()", "runs S.teardown(ctx, data) of the scenario" },
  { "help", "help([fn])", "this list, or the usage of one helper: help(http.get)" },
  { "exit", "exit()", "leaves the prompt (also Ctrl-D)" },
  { "http.get", "http.get(url [, opts]) -> response", "GET; also http.head, http.delete, http.options" },
  { "http.post", "http.post(url [, opts]) -> response",
    "POST; also http.put, http.patch. opts: headers, query, body, json, form, bearer, timeout, name, retry" },
  { "http.put", "http.put(url [, opts]) -> response", "PUT (opts as for http.post)" },
  { "http.patch", "http.patch(url [, opts]) -> response", "PATCH (opts as for http.post)" },
  { "http.delete", "http.delete(url [, opts]) -> response", "DELETE" },
  { "http.head", "http.head(url [, opts]) -> response", "HEAD" },
  { "http.options", "http.options(url [, opts]) -> response", "OPTIONS" },
  { "http.request", "http.request(method, url [, opts]) -> response", "any method" },
  { "http.batch", "http.batch{ {\"GET\", url}, {\"POST\", url, opts}, url, ... } -> { response, ... }",
    "requests at once, answers in order" },
  { "celery.poll", "celery.poll(url [, opts]) -> task",
    "polls a Celery status URL until SUCCESS/FAILURE/REVOKED; opts: every, max, timeout, bearer" },
  { "celery.wait_all", "celery.wait_all({ url, ... } [, opts]) -> { task, ... }", "polls many tasks at once" },
  { "pg.connect", "pg.connect(dsn) -> db", "db:query(sql, ...) -> rows, db:exec(sql, ...) -> n, db:close()" },
  { "json.encode", "json.encode(value) -> text", "lua-cjson; json.decode(text), json.null" },
  { "json.decode", "json.decode(text) -> value", "lua-cjson" },
  { "check", "check(value, { name = bool_or_function, ... } [, tags]) -> bool", "named checks, in `checks`" },
  { "metrics.counter", "metrics.counter(name) -> m", "m:add(n [, tags]); also gauge, rate, trend(name [, \"time\"])" },
  { "tide.sleep", "tide.sleep(duration)", "waits (\"250ms\", 2, \"1m\")" },
  { "tide.now", "tide.now() -> seconds", "monotonic seconds" },
  { "tide.duration", "tide.duration(\"1m30s\") -> 90", "a duration in seconds" },
  { "tide.group", "tide.group(name, fn)", "runs fn with its requests tagged group" },
  { "tide.once", "tide.once(key) -> bool", "true the first time key is seen in the run" },
  { "tide.redact", "tide.redact(text) -> text", "secrets of URLs and DSNs blanked" },
  { "res:percentile", "res:percentile(metric, p) -> ms", "a percentile of a trend: res:percentile(\"http_req_duration\", 99)" },
  { "res:metric", "res:metric(name [, tags]) -> values", "k6-shaped values (count, rate, avg, p(95), ...)" },
  { "res.ok", "res.ok", "true when every threshold held" },
  { "res:save", "res:save(\"out.json\" | \"pg:DSN\")", "the results document, as --out json / --out pg" },
  { "res:html", "res:html(\"report.html\")", "the HTML report" },
  { "res:compare", "res:compare(other [, \"10%\"]) -> bool", "prints tide compare's table; true when nothing got worse" },
  { "res1 + res2", "res1 + res2 -> result", "two results merged exactly (histograms added)" },
}

local BY_NAME = {}
for _, e in ipairs(M.ENTRIES) do BY_NAME[e[1]] = e end

-- The entry for a value (a function found under its name) or a name.
local function find(G, what)
  if type(what) == "string" then return BY_NAME[what] end
  for _, e in ipairs(M.ENTRIES) do
    local mod, field = e[1]:match("^(%a+)%.([%w_]+)$")
    local v = mod and type(G[mod]) == "table" and G[mod][field] or (not mod and G[e[1]])
    if v ~= nil and rawequal(v, what) then return e end
  end
end

function M.text(G, what)
  if what == nil then
    local lines = {}
    for _, e in ipairs(M.ENTRIES) do lines[#lines + 1] = ("  %-16s %s"):format(e[1], e[3]) end
    return "helpers (help(name) for one):\n" .. table.concat(lines, "\n")
  end
  local e = find(G, what)
  if not e then return ("no help for %s"):format(tostring(what)) end
  return ("%s\n  %s"):format(e[2], e[3])
end

return M
