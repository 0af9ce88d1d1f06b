#!/usr/bin/env bash
# Soak: does tide's memory stay flat over a long run at full speed?
#
#   tests/bench/soak.sh [SECONDS]      (from the repo root; builds ./tide first)
#
# Starts nginx on loopback (tests/nginx/start.sh), runs tide against it with
# VUS users (constant-vus, as fast as they go) for SECONDS, samples tide's
# VmRSS from /proc/PID/status every INTERVAL seconds, prints the samples and
# the slope of RSS over time after the first WARMUP seconds (least squares,
# KB per minute), and exits 1 when the slope is above MAX_KB_PER_MIN.
#
# Knobs: SECONDS as the argument or SOAK_SECONDS (600), VUS (500),
# INTERVAL (30), WARMUP (60), MAX_KB_PER_MIN (128), TIDE (binary; default:
# `make -s tide` and ./tide), KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SOAK=${1:-${SOAK_SECONDS:-600}}
SOAK=${SOAK%s}
VUS=${VUS:-500}
INTERVAL=${INTERVAL:-30}
WARMUP=${WARMUP:-60}
MAX_KB_PER_MIN=${MAX_KB_PER_MIN:-128}
# tide is killed if it is still running this long after its duration
SLACK=60

case $SOAK in '' | *[!0-9]*) echo "soak: SECONDS must be a whole number, not '$SOAK'" >&2; exit 2 ;; esac
if [ "$SOAK" -lt $((WARMUP + 2 * INTERVAL)) ]; then
    echo "soak: $SOAK s is too short: need at least WARMUP + 2 * INTERVAL = $((WARMUP + 2 * INTERVAL)) s" >&2
    exit 2
fi
if [ -z "${TIDE:-}" ]; then
    make -s -C "$ROOT" tide
    TIDE=$ROOT/tide
fi
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "soak: nginx not found" >&2; exit 2; }
export PATH=$PATH:/usr/sbin

TMP=$(mktemp -d /tmp/tide-soak.XXXXXX)
TIDE_PID=
cleanup() {
    if [ -n "$TIDE_PID" ] && kill -0 "$TIDE_PID" 2>/dev/null; then
        kill -9 "$TIDE_PID" 2>/dev/null || true
    fi
    "$ROOT/tests/nginx/stop.sh" "$TMP/nginx" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "soak: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL=$("$ROOT/tests/nginx/start.sh" "$TMP/nginx")
printf 'local http = require "tide.http"\nreturn { run = function() http.get("%s/hello") end }\n' "$URL" >"$TMP/soak.lua"

echo "soak: tide $TIDE, $VUS VUs against nginx on $URL for ${SOAK}s; RSS every ${INTERVAL}s"
"$TIDE" run "$TMP/soak.lua" --vus "$VUS" --duration "${SOAK}s" --graceful-stop 5s --quiet \
    --out "json=$TMP/results.json" >"$TMP/tide.out" 2>&1 &
TIDE_PID=$!
START=$(date +%s)

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$TIDE_PID/status" 2>/dev/null; }

: >"$TMP/samples"
for ((t = INTERVAL; t < SOAK; t += INTERVAL)); do
    while [ $(($(date +%s) - START)) -lt "$t" ]; do
        kill -0 "$TIDE_PID" 2>/dev/null || break 2
        sleep 1
    done
    kb=$(rss_kb)
    [ -n "$kb" ] || break
    echo "$t $kb" >>"$TMP/samples"
    printf '  %5ds  RSS %7d KB\n' "$t" "$kb"
done

for _ in $(seq $((SOAK + SLACK))); do
    kill -0 "$TIDE_PID" 2>/dev/null || break
    [ $(($(date +%s) - START)) -lt $((SOAK + SLACK)) ] || break
    sleep 1
done
if kill -0 "$TIDE_PID" 2>/dev/null; then
    echo "soak: tide still running ${SLACK}s after its duration; killed" >&2
    exit 2
fi
rc=0
wait "$TIDE_PID" || rc=$?
TIDE_PID=
if [ "$rc" != 0 ]; then
    echo "soak: tide exited $rc:" >&2
    cat "$TMP/tide.out" >&2
    exit 2
fi

/usr/bin/python3 - "$TMP/results.json" "$TMP/samples" "$WARMUP" "$MAX_KB_PER_MIN" <<'EOF'
import json, sys
results, samples, warmup, bound = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
m = json.load(open(results))["metrics"]
reqs, secs = m["http_reqs"]["values"]["count"], m["http_reqs"]["values"]["rate"]
failed = m.get("http_req_failed", {}).get("values", {}).get("rate", 0)
print(f"soak: {reqs:.0f} requests, {secs:.0f} req/s, {100 * failed:.2f}% failed")
pts = [tuple(map(float, line.split())) for line in open(samples) if line.strip()]
late = [(t, kb) for t, kb in pts if t >= warmup]
if len(late) < 2:
    print(f"soak: only {len(late)} samples after the {warmup:.0f}s warm-up: no slope", file=sys.stderr)
    sys.exit(2)
n = len(late)
mt = sum(t for t, _ in late) / n
mk = sum(kb for _, kb in late) / n
slope = sum((t - mt) * (kb - mk) for t, kb in late) / sum((t - mt) ** 2 for t, _ in late) * 60
print(f"soak: RSS {pts[0][1]:.0f} KB at {pts[0][0]:.0f}s, {late[0][1]:.0f} KB at {late[0][0]:.0f}s, "
      f"{late[-1][1]:.0f} KB at {late[-1][0]:.0f}s")
print(f"soak: slope after {warmup:.0f}s: {slope:.1f} KB/min ({slope * 60 / 1024:.1f} MB/hour); bound {bound:g} KB/min")
if failed > 0.01:
    print("soak: more than 1% of the requests failed", file=sys.stderr)
    sys.exit(2)
sys.exit(1 if slope > bound else 0)
EOF
