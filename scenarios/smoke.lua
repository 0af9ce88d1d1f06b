-- smoke: a few users fetch the target's front page and check it answers.
local http = require "tide.http"

return {
  description = "a quick check that the target answers: 10 VUs × 20 GETs of /",
  options = { executor = "per-vu-iterations", vus = 10, iterations = 20, target = "http://127.0.0.1:8080" },

  run = function(vu)
    local r = http.get(vu.target .. "/")
    if r.status ~= 200 then
      error(("GET / answered %s"):format(r.error or r.status))
    end
  end,
}
