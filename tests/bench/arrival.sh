#!/usr/bin/env bash
# The open-model executor at high rates against a local nginx (issue 15's
# target): constant-arrival-rate at RATE iterations a second, one GET each,
# held for DURATION seconds with 0 dropped iterations.
#
#   tests/bench/arrival.sh            (from the repo root; builds ./tide first)
#
# It runs RATE first. A rate is held when no iteration was dropped and no
# request failed. When RATE is not held it searches for the highest rate that
# is, in steps of STEP, with at most SEARCH_RUNS more runs: the first guess is
# 0.9 of what the failed run achieved, then bisection between the highest rate
# held and the lowest not held. Each run prints what it asked, what it got
# (dropped_iterations, http_reqs, the achieved rate: iterations completed per
# second of the schedule), the start delay (iteration_start_delay), the p99 of
# http_req_duration (measured from the scheduled start, so lateness shows),
# and which engine served the requests (http_engines: lean, curl).
# Exits 0 when RATE is held, 1 when it is not (the highest rate held is
# reported), 2 when a run gives no results.
#
# Knobs: RATE (50000), DURATION (10), STEP (1000), SEARCH_RUNS (6),
# PRE_VUS (500), MAX_VUS (5000), THREADS (default: cores), TIDE (binary;
# default: `make -s tide` and ./tide), TIDE_ARGS (extra arguments to tide run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RATE=${RATE:-50000}
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
STEP=${STEP:-1000}
SEARCH_RUNS=${SEARCH_RUNS:-6}
PRE_VUS=${PRE_VUS:-500}
MAX_VUS=${MAX_VUS:-5000}
PY=/usr/bin/python3
if [ -z "${TIDE:-}" ]; then
    make -s -C "$ROOT" tide
    TIDE=$ROOT/tide
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

dir=$(mktemp -d /tmp/tide-arrival.XXXXXX)
trap '"$ROOT"/tests/nginx/stop.sh "$dir"; rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
url=$("$ROOT"/tests/nginx/start.sh "$dir")/hello

scenario() { # RATE
    cat <<LUA
local http = require "tide.http"
return {
  options = {
    executor = "constant-arrival-rate", rate = $1, time_unit = "1s", duration = "${DURATION}s",
    graceful_stop = "2s", pre_allocated_vus = $PRE_VUS, max_vus = $MAX_VUS,
  },
  run = function(vu) http.get(vu.target, { discard = true }) end,
}
LUA
}

# One run at RATE: prints its row, sets HELD (1 or 0) and ACHIEVED (per second).
run_rate() { # RATE
    local rate=$1 out=$dir/arrival-$1.json log=$dir/arrival-$1.txt
    local args=()
    [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
    # shellcheck disable=SC2206
    args+=(${TIDE_ARGS:-})
    scenario "$rate" >"$dir/arrival-$rate.lua"
    rm -f "$out"
    timeout -k 5 $((DURATION + 60)) "$TIDE" run "$dir/arrival-$rate.lua" --target "$url" \
        ${args[@]+"${args[@]}"} --quiet --out json="$out" >"$log" 2>&1 || true
    local verdict
    verdict=$("$PY" - "$out" "$rate" "$DURATION" <<'PY'
import json, sys
path, rate, duration = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
d = json.load(open(path))
m = d["metrics"]
def count(name):
    return int(m.get(name, {}).get("values", {}).get("count", 0))
done = count("iterations")
dropped = count("dropped_iterations")
reqs = count("http_reqs")
failed = int(m.get("http_req_failed", {}).get("values", {}).get("passes", 0))
delay = m["iteration_start_delay"]["values"]
req = m["http_req_duration"]["values"]
eng = d.get("http_engines") or {}
achieved = done / duration
print("%-7d %9.0f %6.3f %8d %9d %7d %7.2fms %7.2fms %8.2fms %8.2fms %9s" % (
    rate, achieved, achieved / rate, dropped, reqs, failed, delay["med"], delay["p(99)"],
    req["med"], req["p(99)"], "%s/%s" % (eng.get("lean", "-"), eng.get("curl", "-"))))
print(int(dropped == 0 and failed == 0 and done > 0), int(achieved))
PY
) || { echo "arrival: no results from the run at $rate/s:" >&2; cat "$log" >&2; exit 2; }
    echo "${verdict%$'\n'*}"
    read -r HELD ACHIEVED <<<"${verdict##*$'\n'}"
}

echo "arrival: constant-arrival-rate, one GET of $url per iteration, ${DURATION}s per run; tide: $TIDE"
printf '%-7s %9s %6s %8s %9s %7s %9s %9s %10s %10s %9s\n' asked achieved ratio dropped http_reqs failed \
    delay_p50 delay_p99 req_p50 req_p99 lean/curl
run_rate "$RATE"
if [ "$HELD" = 1 ]; then
    echo "arrival: $RATE/s held for ${DURATION}s with 0 dropped"
    exit 0
fi

# RATE not held: the highest rate held, to STEP, in at most SEARCH_RUNS runs.
floor_step() { echo $(($1 / STEP * STEP)); }
lo=0 hi=$RATE
guess=$(floor_step $((ACHIEVED * 9 / 10)))
for _ in $(seq "$SEARCH_RUNS"); do
    [ $((hi - lo)) -gt "$STEP" ] || break
    if [ "$guess" -le "$lo" ] || [ "$guess" -ge "$hi" ]; then
        guess=$(floor_step $(((lo + hi) / 2)))
        [ "$guess" -gt "$lo" ] || guess=$((lo + STEP))
    fi
    run_rate "$guess"
    if [ "$HELD" = 1 ]; then lo=$guess; else hi=$guess; fi
    guess=$(floor_step $(((lo + hi) / 2)))
done
if [ "$lo" -gt 0 ]; then
    echo "arrival: $RATE/s not held; the highest rate held with 0 dropped: $lo/s (not held: $hi/s; step $STEP)"
else
    echo "arrival: $RATE/s not held; no rate tried was held (lowest not held: $hi/s)"
fi
exit 1
