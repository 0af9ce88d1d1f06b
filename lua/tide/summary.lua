-- After the load: judge the thresholds, build the results document, print
-- the summary, write the outputs. Before and during it: check thresholds.
local results = require "tide.results"
local series = require "tide.series"
local text = require "tide.text"
local thresholds = require "tide.thresholds"
local outputs = require "tide.outputs"

local M = {}

-- Checks the scenario's thresholds before the load: nil, or why they are wrong.
function M.validate(spec, metrics)
  local _, err = thresholds.parse(spec, metrics)
  return err
end

local function abort_list(spec, metrics)
  local out = {}
  for _, t in ipairs(thresholds.parse(spec, metrics) or {}) do
    if t.abort_on_fail then out[#out + 1] = t end
  end
  return out
end

-- Whether some threshold may stop the run early (then threads hand over
-- their metrics every second).
function M.can_abort(spec, metrics)
  return #abort_list(spec, metrics) > 0
end

-- During the run: the first abort_on_fail threshold that fails once its
-- delay_abort_eval has passed, as "KEY: EXPR (observed V)", or nil.
function M.abort_check(spec, metrics, elapsed)
  local values = series.values_for(metrics, elapsed)
  for _, t in ipairs(abort_list(spec, metrics)) do
    local delay = t.delay_abort_eval and require("tide").duration(t.delay_abort_eval) or 0
    if elapsed >= delay then
      local r = thresholds.evaluate({ t }, metrics, values)[1]
      if not r.ok and r.observed ~= nil then
        return ("%s: %s (observed %g)"):format(r.key, r.text, r.observed)
      end
    end
  end
end

-- report: what the run handed over; out: { quiet, json, csv, html, pg, run_id }.
-- Returns the verdict (0, or 1 when a threshold failed) and the exit code
-- of the outputs (0, or 4 when results could not be stored where asked).
-- Judges the thresholds and builds the results document: the document and
-- the verdict (0, or 1 when a threshold failed).
function M.document(report)
  local list = assert(thresholds.parse(report.thresholds, report.metrics))
  local all
  report.threshold_results, all = thresholds.evaluate(list, report.metrics,
    series.values_for(report.metrics, report.elapsed))
  local verdict = (all and not report.aborted) and 0 or 1
  report.exit_code = report.status ~= 0 and report.status or verdict
  return results.from_report(report), verdict
end

function M.finish(report, out)
  local doc, verdict = M.document(report)
  if not out.quiet then io.stdout:write(text.render(doc)) end
  io.stdout:flush()
  return verdict, outputs.write(doc, out)
end

return M
