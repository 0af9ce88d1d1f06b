#!/usr/bin/env bash
# The open-model executor at high rates against a local nginx: how close the
# achieved rate comes to the asked one, and how late iterations start
# (iteration_start_delay: scheduled start -> actual start).
#
#   tests/bench/arrival.sh            (from the repo root; builds ./tide first)
#
# Knobs: RATES ("10000 50000"), DURATION (10), THREADS (default: cores), TIDE.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RATES=${RATES:-"10000 50000"}
DURATION=${DURATION:-10}
PY=/usr/bin/python3
if [ -z "${TIDE:-}" ]; then
    make -s -C "$ROOT" tide
    TIDE=$ROOT/tide
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

dir=$(mktemp -d /tmp/tide-arrival.XXXXXX)
trap '"$ROOT"/tests/nginx/stop.sh "$dir"; rm -rf "$dir"' EXIT
url=$("$ROOT"/tests/nginx/start.sh "$dir")/hello

scenario() { # RATE
    cat <<LUA
local http = require "tide.http"
return {
  options = {
    executor = "constant-arrival-rate", rate = $1, time_unit = "1s", duration = "${DURATION}s",
    graceful_stop = "2s", pre_allocated_vus = 500, max_vus = 5000,
  },
  run = function(vu) http.get(vu.target, { discard = true }) end,
}
LUA
}

printf '%-8s %10s %10s %7s %9s %9s %9s %9s %9s\n' asked achieved ratio dropped \
    delay_p50 delay_p99 delay_max req_p50 req_p99
status=0
for rate in $RATES; do
    out=$dir/arrival-$rate.json
    threads=()
    [ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
    scenario "$rate" >"$dir/arrival-$rate.lua"
    timeout -k 5 $((DURATION + 60)) "$TIDE" run "$dir/arrival-$rate.lua" --target "$url" \
        ${threads[@]+"${threads[@]}"} --quiet --out json="$out" 2>/dev/null || true
    "$PY" - "$out" "$rate" "$DURATION" <<'PY' || status=1
import json, sys
path, rate, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
m = json.load(open(path))["metrics"]
done = m["iterations"]["values"]["count"]
dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
delay = m["iteration_start_delay"]["values"]
req = m["http_req_duration"]["values"]
achieved = done / duration
print("%-8d %10.0f %10.3f %7d %8.2fms %8.2fms %8.2fms %8.2fms %8.2fms" % (
    rate, achieved, achieved / rate, dropped, delay["med"], delay["p(99)"], delay["max"],
    req["med"], req["p(99)"]))
PY
done
exit $status
