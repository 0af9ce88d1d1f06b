#!/usr/bin/env bash
# tide vs wrk against a local nginx that answers "hello\n".
#
#   tests/bench/vs-wrk.sh            (from the repo root; builds ./tide first)
#
# Phase 1, 50 connections: requests per CPU-second of each generator (user+sys
# of the generator process only), median over ROUNDS alternating rounds.
# Phase 2, 5000 connections: requests per second with both generators on their
# defaults (one thread per core), and tide's peak RSS per VU; the one-thread
# pair is printed too, and so is libcurl alone (tests/bench/bare-curl.c: the
# same transport in plain C, no Lua): the ceiling of any libcurl generator.
# tide runs twice in each round of both phases: with --http-engine auto (its
# lean HTTP/1.1 transport carries these plain http:// requests; the targets
# apply to it) and with --http-engine curl (libcurl for all, for information).
# Each tide run's http_engines (from --out json=FILE) must show that the
# intended engine served every request; otherwise the script stops with 2.
# Exits 1 when a target is missed, so it can gate a release by hand.
# Both send the same request: wrk sends no Accept-Encoding, so tide runs with
# --no-compression (its default adds the header and libcurl's handling of it,
# ~10% more instructions per request with libcurl 7.88; TIDE_ARGS="" to
# measure the default).
#
# Knobs: DURATION (seconds per run, 10), ROUNDS (3), TIDE (binary; default:
# `make -s tide` and ./tide), TIDE_ARGS (--no-compression), WRK (wrk), NGINX
# (nginx), KEEP=1 keeps the temp dir.
# Targets (issue 15, for the lean engine): TARGET_CPU (0.85), TARGET_RPS (0.9),
# TARGET_KB_PER_VU (12).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
ROUNDS=${ROUNDS:-3}
WRK=${WRK:-wrk}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
PY=/usr/bin/python3
TARGET_CPU=${TARGET_CPU:-0.85}
TARGET_RPS=${TARGET_RPS:-0.9}
TARGET_KB_PER_VU=${TARGET_KB_PER_VU:-12}
BIG=5000
# every run is bounded: the generator's own duration plus this much slack
SLACK=60

if [ -z "${TIDE:-}" ]; then
    make -s -C "$ROOT" tide
    TIDE=$ROOT/tide
fi
for tool in "$WRK" "$NGINX" "$TIDE" /usr/bin/time "$PY" "${CC:-cc}" pkg-config; do
    command -v "$tool" >/dev/null || { echo "vs-wrk: $tool not found" >&2; exit 2; }
done

# ---------------------------------------------------------------- nginx
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((BIG + 1000)) ]; then
    echo "vs-wrk: need about $((BIG + 1000)) file descriptors, the limit is $(ulimit -n)" >&2
    exit 2
fi

TMP=$(mktemp -d /tmp/tide-vs-wrk.XXXXXX)
cleanup() {
    "$ROOT/tests/nginx/stop.sh" "$TMP/nginx" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "vs-wrk: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the nginx of the tests (tests/nginx/nginx.conf.in): /hello answers "hello\n"
BASE=$(NGINX=$NGINX "$ROOT/tests/nginx/start.sh" "$TMP/nginx") || exit 2
URL="$BASE/hello"
NGINX_PID=$(cat "$TMP/nginx/nginx.pid" 2>/dev/null || cat "$TMP/nginx/launcher.pid")
curl -sf -m 2 "$URL" >/dev/null || { echo "vs-wrk: nginx does not answer on $URL" >&2; exit 2; }

BARE=$TMP/bare-curl
# shellcheck disable=SC2046
"${CC:-cc}" -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$BARE" "$ROOT/tests/bench/bare-curl.c" \
    $(pkg-config --cflags --libs libcurl) -pthread || { echo "vs-wrk: cannot build bare-curl" >&2; exit 2; }

BENCH=$TMP/bench.lua
printf 'local http = require "tide.http"; return { run = function() http.get("%s") end }\n' "$URL" >"$BENCH"

echo "vs-wrk: nginx pid $NGINX_PID on $URL; ${DURATION}s per run, $ROUNDS rounds; tide: $TIDE"

# ---------------------------------------------------------------- runners
# Each sets: REQS, SECS (measured run time), CPU (user+sys s), RSS (peak KB).
read_time() { # FILE -> CPU CPU_SPLIT RSS
    local u="" s="" m=""
    read -r u s m < <(tail -n 1 "$1") || true
    [ -n "$m" ] || { echo "vs-wrk: no timing in $1:" >&2; cat "$1" >&2; exit 2; }
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    CPU_SPLIT="user $u + sys $s"
    RSS=$m
}

run_wrk() { # CONNS TAG [THREADS]
    local c=$1 out=$TMP/wrk-$2.txt tf=$TMP/wrk-$2.time th=${3:-1}
    /usr/bin/time -f '%U %S %M' -o "$tf" \
        timeout -k 5 $((DURATION + SLACK)) "$WRK" -t"$th" -c"$c" -d"${DURATION}s" --timeout 30s "$URL" >"$out" 2>&1 || {
        echo "vs-wrk: wrk failed:" >&2; cat "$out" >&2; exit 2; }
    read_time "$tf"
    # "  123456 requests in 10.00s, 17.2MB read"
    REQS="" SECS=""
    read -r REQS SECS < <(awk '/ requests in / { t = $4; sub(/s,?$/, "", t); print $1, t }' "$out") || true
    [ -n "${REQS:-}" ] || { echo "vs-wrk: cannot read wrk's output:" >&2; cat "$out" >&2; exit 2; }
    if grep -q -e 'Socket errors' -e 'Non-2xx' "$out"; then
        echo "    wrk: $(grep -e 'Socket errors' -e 'Non-2xx' "$out" | tr -s ' ' | tr '\n' ';')"
    fi
}

# ENGINE is auto or curl, always passed as --http-engine so that a
# TIDE_HTTP_ENGINE in the environment cannot change what is measured.
run_tide() { # VUS THREADS(or "") TAG ENGINE
    local v=$1 th=$2 eng=$4 js=$TMP/tide-$3-$4.json tf=$TMP/tide-$3-$4.time out=$TMP/tide-$3-$4.txt
    local args=(run "$BENCH" --vus "$v" --duration "${DURATION}s" --graceful-stop 5s --quiet --out "json=$js"
        --http-engine "$eng")
    # shellcheck disable=SC2206
    args+=(${TIDE_ARGS---no-compression})
    [ -n "$th" ] && args+=(--threads "$th")
    rm -f "$js"
    /usr/bin/time -f '%U %S %M' -o "$tf" \
        timeout -k 5 $((DURATION + SLACK)) "$TIDE" "${args[@]}" >"$out" 2>&1 || {
        echo "vs-wrk: tide failed:" >&2; cat "$out" >&2; exit 2; }
    read_time "$tf"
    REQS="" SECS="" FAILED="" LEAN="" CURL=""
    read -r REQS SECS FAILED LEAN CURL < <("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metrics"]
f = m.get("http_req_failed", {}).get("values", {}).get("passes", 0)
e = d.get("http_engines") or {}
print(int(m["http_reqs"]["values"]["count"]), d["state"]["testRunDurationMs"] / 1000, int(f),
      int(e.get("lean", -1)), int(e.get("curl", -1)))' "$js") || true
    [ -n "$REQS" ] || { echo "vs-wrk: cannot read tide's results in $js:" >&2; cat "$out" >&2; exit 2; }
    if [ "$FAILED" != 0 ]; then echo "    tide: $FAILED failed requests"; fi
    check_engine "$eng" "$js"
}

# Every request of the run went through the engine that was meant to serve
# it: the lean transport for auto (these are plain http:// GETs), libcurl
# for curl. A figure measured on the wrong engine is no figure at all.
check_engine() { # ENGINE JSON
    local want=lean
    [ "$1" = curl ] && want=curl
    local served_by_want=$LEAN served_by_other=$CURL
    [ "$want" = curl ] && served_by_want=$CURL served_by_other=$LEAN
    if [ "$LEAN" = -1 ] || [ "$CURL" = -1 ] || [ "$REQS" = 0 ] ||
        [ "$served_by_want" != "$REQS" ] || [ "$served_by_other" != 0 ]; then
        echo "vs-wrk: tide --http-engine $1 was meant to send all its $REQS requests through the $want engine," >&2
        echo "vs-wrk: but http_engines in $2 says lean $LEAN, curl $CURL (-1: missing)" >&2
        exit 2
    fi
}

run_bare() { # CONNS THREADS
    local out=$TMP/bare.txt
    timeout -k 5 $((DURATION + SLACK)) "$BARE" "$URL" "$1" "$2" "$DURATION" >"$out" 2>&1 || {
        echo "vs-wrk: bare-curl failed:" >&2; cat "$out" >&2; exit 2; }
    REQS="" SECS=""
    read -r _ REQS _ SECS <"$out" || true
    [ -n "$REQS" ] || { echo "vs-wrk: cannot read bare-curl's output:" >&2; cat "$out" >&2; exit 2; }
}

div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }

# Each round alternates the order of the generators, so that neither always
# runs first (or on a warmer nginx).
round_order() { # ROUND
    if [ $(($1 % 2)) = 0 ]; then echo "curl tide wrk"; else echo "wrk tide curl"; fi
}

# ---------------------------------------------------------------- phase 1
echo
echo "== phase 1: 50 connections, requests per CPU-second (generator process only)"
W1=() T1=() R1=() C1=() RC1=()
for r in $(seq "$ROUNDS"); do
    for g in $(round_order "$r"); do
        case $g in
        wrk)
            run_wrk 50 "p1-$r"
            wcpu=$(div "$REQS" "$CPU")
            printf '  round %d  wrk               : %9d reqs in %5.2fs, cpu %6.2fs (%s) -> %7d req/CPU-s (%d req/s)\n' \
                "$r" "$REQS" "$SECS" "$CPU" "$CPU_SPLIT" "$wcpu" "$(div "$REQS" "$SECS")" ;;
        tide)
            run_tide 50 1 "p1-$r" auto
            tcpu=$(div "$REQS" "$CPU")
            printf '  round %d  tide              : %9d reqs in %5.2fs, cpu %6.2fs (%s) -> %7d req/CPU-s (%d req/s)\n' \
                "$r" "$REQS" "$SECS" "$CPU" "$CPU_SPLIT" "$tcpu" "$(div "$REQS" "$SECS")" ;;
        curl)
            run_tide 50 1 "p1-$r" curl
            ccpu=$(div "$REQS" "$CPU")
            printf '  round %d  tide (curl engine): %9d reqs in %5.2fs, cpu %6.2fs (%s) -> %7d req/CPU-s (%d req/s)\n' \
                "$r" "$REQS" "$SECS" "$CPU" "$CPU_SPLIT" "$ccpu" "$(div "$REQS" "$SECS")" ;;
        esac
    done
    W1+=("$wcpu") T1+=("$tcpu") R1+=("$(ratio "$tcpu" "$wcpu")")
    C1+=("$ccpu") RC1+=("$(ratio "$ccpu" "$wcpu")")
    echo "  round $r  ratio tide/wrk ${R1[-1]}; tide (curl engine)/wrk ${RC1[-1]}"
done
W1M=$(median "${W1[@]}") T1M=$(median "${T1[@]}") R1M=$(median "${R1[@]}")
C1M=$(median "${C1[@]}") RC1M=$(median "${RC1[@]}")

# ---------------------------------------------------------------- phase 2
# Both generators as they come: wrk -c5000 (one thread per core) and tide's
# default (one engine thread per core). The single-thread pair is shown too.
CORES=$(nproc)
echo
echo "== phase 2: $BIG connections, requests per second"
W2=() T2=() R2=() M2=() C2=() RC2=() MC2=() W1T=() T1T=() B2=()
for r in $(seq "$ROUNDS"); do
    for g in $(round_order "$r"); do
        case $g in
        wrk)
            run_wrk "$BIG" "p2-$r" "$CORES"
            wrps=$(div "$REQS" "$SECS")
            printf '  round %d  wrk -t%d                  : %9d reqs in %5.2fs -> %7d req/s, cpu %6.2fs, RSS %6d KB\n' \
                "$r" "$CORES" "$REQS" "$SECS" "$wrps" "$CPU" "$RSS" ;;
        tide)
            run_tide "$BIG" "" "p2-$r" auto
            trps=$(div "$REQS" "$SECS") trss=$RSS
            printf '  round %d  tide (default)           : %9d reqs in %5.2fs -> %7d req/s, cpu %6.2fs, RSS %6d KB\n' \
                "$r" "$REQS" "$SECS" "$trps" "$CPU" "$RSS" ;;
        curl)
            run_tide "$BIG" "" "p2-$r" curl
            crps=$(div "$REQS" "$SECS") crss=$RSS
            printf '  round %d  tide (curl engine)       : %9d reqs in %5.2fs -> %7d req/s, cpu %6.2fs, RSS %6d KB\n' \
                "$r" "$REQS" "$SECS" "$crps" "$CPU" "$RSS" ;;
        esac
    done
    W2+=("$wrps") T2+=("$trps") M2+=("$trss") R2+=("$(ratio "$trps" "$wrps")")
    C2+=("$crps") MC2+=("$crss") RC2+=("$(ratio "$crps" "$wrps")")
    echo "  round $r  ratio tide/wrk ${R2[-1]}; tide (curl engine)/wrk ${RC2[-1]}"
    run_bare "$BIG" "$CORES"
    B2+=("$(div "$REQS" "$SECS")")
    printf '  round %d  libcurl alone            : %9d reqs in %5.2fs -> %7d req/s (ratio to wrk %s)\n' \
        "$r" "$REQS" "$SECS" "${B2[-1]}" "$(ratio "${B2[-1]}" "$wrps")"
    run_wrk "$BIG" "p2one-$r" 1
    W1T+=("$(div "$REQS" "$SECS")")
    run_tide "$BIG" 1 "p2one-$r" auto
    T1T+=("$(div "$REQS" "$SECS")")
    printf '  round %d  one thread each: wrk -t1 %d req/s, tide --threads 1 %d req/s (ratio %s)\n' \
        "$r" "${W1T[-1]}" "${T1T[-1]}" "$(ratio "${T1T[-1]}" "${W1T[-1]}")"
done
W2M=$(median "${W2[@]}") T2M=$(median "${T2[@]}") R2M=$(median "${R2[@]}") B2M=$(median "${B2[@]}")
C2M=$(median "${C2[@]}") RC2M=$(median "${RC2[@]}")
W1TM=$(median "${W1T[@]}") T1TM=$(median "${T1T[@]}")
M2M=$(median "${M2[@]}") MC2M=$(median "${MC2[@]}")
KBVU=$(awk -v m="$M2M" -v n="$BIG" 'BEGIN { printf "%.1f", m / n }')
MB=$(awk -v m="$M2M" 'BEGIN { printf "%.0f", m / 1024 }')
CKBVU=$(awk -v m="$MC2M" -v n="$BIG" 'BEGIN { printf "%.1f", m / n }')
CMB=$(awk -v m="$MC2M" 'BEGIN { printf "%.0f", m / 1024 }')

# ---------------------------------------------------------------- verdict
fail=0 m1="" m2="" m3=""
ge "$R1M" "$TARGET_CPU" || { fail=1; m1="  MISSED"; }
ge "$R2M" "$TARGET_RPS" || { fail=1; m2="  MISSED"; }
ge "$TARGET_KB_PER_VU" "$KBVU" || { fail=1; m3="  MISSED"; }

echo
echo "== result (medians over $ROUNDS rounds, ${DURATION}s each)"
printf '50 VUs (1 thread each):  wrk %.0f req/CPU-s, tide %.0f req/CPU-s, ratio %.2f (target >= %s)%s\n' \
    "$W1M" "$T1M" "$R1M" "$TARGET_CPU" "$m1"
printf '50 VUs (1 thread each, for information): tide (curl engine) %.0f req/CPU-s, ratio %.2f\n' \
    "$C1M" "$RC1M"
printf '%d VUs (defaults: %d threads each): wrk %.0f req/s, tide %.0f req/s, ratio %.2f (target >= %s)%s; tide RSS %s MB = %s KB/VU (target <= %s)%s\n' \
    "$BIG" "$CORES" "$W2M" "$T2M" "$R2M" "$TARGET_RPS" "$m2" "$MB" "$KBVU" "$TARGET_KB_PER_VU" "$m3"
printf '%d VUs (defaults, for information): tide (curl engine) %.0f req/s, ratio %.2f; RSS %s MB = %s KB/VU\n' \
    "$BIG" "$C2M" "$RC2M" "$CMB" "$CKBVU"
printf '%d VUs (1 thread each, for information): wrk %.0f req/s, tide %.0f req/s, ratio %.2f\n' \
    "$BIG" "$W1TM" "$T1TM" "$(ratio "$T1TM" "$W1TM")"
printf '%d connections, libcurl alone (for information): %.0f req/s = %.2f of wrk; tide (curl engine) reaches %.2f of it\n' \
    "$BIG" "$B2M" "$(ratio "$B2M" "$W2M")" "$(ratio "$C2M" "$B2M")"
exit "$fail"
