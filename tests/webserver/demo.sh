#!/usr/bin/env bash
# Control script for the tide demo service (Flask/gunicorn + Celery + Redis +
# PostgreSQL), everything on 127.0.0.1 under one directory.
#
#   tests/webserver/demo.sh start DIR   start a fresh stack in DIR, print env lines
#   tests/webserver/demo.sh env DIR     print the env lines again
#   tests/webserver/demo.sh stop DIR    stop everything started in DIR (idempotent)
#
# Typical use:  eval "$(tests/webserver/demo.sh start /tmp/demo)"; ...; demo.sh stop /tmp/demo
# Knobs (environment of `start`): DEMO_RACE DEMO_FAIL_FRACTION DEMO_TASK_SECONDS
# DEMO_MAX_QUEUE DEMO_CONTAINERS ADMIN_USER ADMIN_PASSWORD DEMO_WEB_WORKERS
# DEMO_WEB_THREADS DEMO_WORKER_CONCURRENCY DEMO_LOGLEVEL DEMO_START_TIMEOUT
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

t0=${EPOCHREALTIME/./}
# DEMO_TRACE=1: phase timings on stderr
trace() { [ -z "${DEMO_TRACE:-}" ] || printf 'demo.sh: %6d ms %s\n' $(((${EPOCHREALTIME/./} - t0) / 1000)) "$*" >&2; }

usage() { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m -- "$2")

# pid_alive PID PATTERN: PID runs (not a zombie) and its command line matches.
pid_alive() {
  local pid=$1 pat=$2 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) || return 1
  [ "$state" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pat"
}

# pid_of NAME: the PID recorded for a service (postgres: from postmaster.pid).
pid_of() {
  case $1 in
    postgres) [ -s "$dir/pg/postmaster.pid" ] && head -n1 "$dir/pg/postmaster.pid" || true ;;
    *) [ -s "$dir/$1.pid" ] && cat "$dir/$1.pid" || true ;;
  esac
}

pattern_of() {
  case $1 in
    gunicorn) echo gunicorn ;; celery) echo celery ;;
    redis) echo redis-server ;; postgres) echo postgres ;;
  esac
}

running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && pid_alive "$p" "$(pattern_of "$1")"; }

# wait_gone SECONDS NAME...: wait until none of the services is alive.
wait_gone() {
  local limit=$1 i n; shift
  for ((i = 0; i < limit * 20; i++)); do
    n=0
    for s in "$@"; do running "$s" && n=$((n + 1)); done
    [ $n -eq 0 ] && return 0
    sleep 0.05
  done
  return 1
}

do_stop() {
  local s pid
  # 1. the clients: gunicorn master (TERM = graceful) and the celery main
  #    process (TERM = warm shutdown: finish running tasks, then exit).
  for s in gunicorn celery; do
    running "$s" && kill -TERM "$(pid_of "$s")" 2>/dev/null || true
  done
  if ! wait_gone 15 gunicorn celery; then
    # last resort: the whole process group (each was started with setsid,
    # so the group id is the PID we started)
    for s in gunicorn celery; do
      if running "$s"; then
        pid=$(pid_of "$s")
        echo "demo.sh: $s ($pid) did not stop, killing its process group" >&2
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    wait_gone 5 gunicorn celery || true
  fi
  # 2. redis and postgres
  running redis && kill -TERM "$(pid_of redis)" 2>/dev/null || true
  if running postgres; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/pg" -m fast -w -t 20 stop >/dev/null 2>&1 ||
      { running postgres && kill -QUIT "$(pid_of postgres)" 2>/dev/null || true; }
  fi
  if ! wait_gone 10 redis postgres; then
    for s in redis postgres; do
      running "$s" && kill -KILL "$(pid_of "$s")" 2>/dev/null || true
    done
    wait_gone 5 redis postgres || true
  fi
  rm -f "$dir/gunicorn.pid" "$dir/celery.pid" "$dir/redis.pid" "$dir/worker.ready"
}

show_env() {
  [ -s "$dir/env" ] || { echo "demo.sh: no stack in $dir" >&2; exit 1; }
  cat "$dir/env"
}

fail_start() {
  echo "demo.sh: start failed: $*" >&2
  local f
  for f in postgres redis celery gunicorn initdb; do
    if [ -s "$dir/$f.log" ]; then
      echo "---- tail $dir/$f.log" >&2
      tail -n 25 "$dir/$f.log" >&2
    fi
  done
  do_stop
  exit 1
}

do_start() {
  local s
  for s in gunicorn celery redis postgres; do
    if [ -d "$dir" ] && running "$s"; then
      echo "demo.sh: $s already running in $dir; stop it first" >&2
      exit 1
    fi
  done
  if [ ${#dir} -gt 80 ]; then   # PostgreSQL's unix socket path must fit in 107 bytes
    echo "demo.sh: DIR path too long (${#dir} > 80 chars): $dir" >&2
    exit 1
  fi
  mkdir -p "$dir"
  chmod 755 "$dir"
  runuser -u postgres -- test -x "$dir" ||
    { echo "demo.sh: user postgres cannot reach $dir (make its parents o+x)" >&2; exit 1; }
  rm -rf "$dir/pg" "$dir/run"
  rm -f "$dir"/*.log "$dir/worker.ready" "$dir/env"
  mkdir -p "$dir/run" "$dir/pg"
  chown postgres:postgres "$dir/run" "$dir/pg"
  chmod 700 "$dir/pg"
  : >"$dir/postgres.log"
  chown postgres:postgres "$dir/postgres.log"

  local ports pgport redisport webport
  ports=$($PY "$here/../free_port.py" 3)
  read -r pgport redisport webport <<<"$ports"

  export ADMIN_USER=${ADMIN_USER:-admin}
  export ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-password}
  export DATABASE_URL="postgresql://demo:demo-password@127.0.0.1:$pgport/demo"
  export REDIS_URL="redis://127.0.0.1:$redisport"
  export DEMO_SECRET; DEMO_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  export DEMO_READY_FILE="$dir/worker.ready"
  export DEMO_DB_POOL=${DEMO_WEB_THREADS:-8}
  export PYTHONPATH="$here" PYTHONDONTWRITEBYTECODE=1  # keep the source tree clean

  # redis first (instant), in the background while initdb runs
  setsid redis-server --port "$redisport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 </dev/null &
  echo $! >"$dir/redis.pid"
  trace "redis launched"

  # Python start-up (~1 s each) overlaps initdb; both connect to PostgreSQL lazily
  setsid $PY -m celery --workdir "$here" -A tasks worker --pool prefork \
    --concurrency "${DEMO_WORKER_CONCURRENCY:-4}" --loglevel "${DEMO_LOGLEVEL:-INFO}" \
    --without-gossip --without-mingle --without-heartbeat -n "demo-$webport@%h" \
    >"$dir/celery.log" 2>&1 </dev/null &
  echo $! >"$dir/celery.pid"
  setsid $PY -m gunicorn --chdir "$here" --bind "127.0.0.1:$webport" \
    --workers "${DEMO_WEB_WORKERS:-3}" --worker-class gthread --threads "${DEMO_WEB_THREADS:-8}" \
    --backlog 2048 --keep-alive 30 --timeout 60 --graceful-timeout 5 \
    --log-level "${DEMO_LOGLEVEL:-info}" --preload app:app >"$dir/gunicorn.log" 2>&1 </dev/null &
  echo $! >"$dir/gunicorn.pid"
  trace "celery + gunicorn launched"
  runuser -u postgres -- "$PGBIN/initdb" -D "$dir/pg" -U postgres --auth=trust \
    --no-sync --no-locale -E UTF8 >"$dir/initdb.log" 2>&1 || fail_start "initdb"
  trace "initdb done"
  # unix socket: trust (only root/postgres reach DIR/run); TCP: passwords
  cat >"$dir/pg/pg_hba.conf" <<'HBA'
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
HBA
  cat >>"$dir/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir/run'
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
CONF
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/pg" -l "$dir/postgres.log" -w -t 30 start \
    >/dev/null 2>&1 </dev/null || fail_start "postgres"
  trace "postgres up"
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -p "$pgport" -U postgres -d postgres \
    -c "CREATE ROLE demo LOGIN PASSWORD 'demo-password'" \
    -c "CREATE DATABASE demo OWNER demo" >>"$dir/initdb.log" 2>&1 || fail_start "create role/db"
  trace "role+db created"
  # schema over TCP with the password (also proves scram auth works)
  $PY "$here/db.py" init >>"$dir/initdb.log" 2>&1 || fail_start "schema"
  trace "schema created"

  {
    printf 'TARGET=%q\n' "http://127.0.0.1:$webport"
    printf 'DATABASE_URL=%q\n' "$DATABASE_URL"
    printf 'ADMIN_USER=%q\n' "$ADMIN_USER"
    printf 'ADMIN_PASSWORD=%q\n' "$ADMIN_PASSWORD"
    printf 'REDIS_URL=%q\n' "$REDIS_URL"
  } >"$dir/env"
  {
    for v in DEMO_RACE DEMO_FAIL_FRACTION DEMO_TASK_SECONDS DEMO_MAX_QUEUE DEMO_CONTAINERS \
      DEMO_WEB_WORKERS DEMO_WEB_THREADS DEMO_WORKER_CONCURRENCY; do
      printf '%s=%s\n' "$v" "${!v-}"
    done
  } >"$dir/config"

  # ready = /health answers 200 (DB + Redis reachable from the app) and the
  # Celery worker has signalled worker_ready
  local i ok=0 timeout=${DEMO_START_TIMEOUT:-30}
  for ((i = 0; i < timeout * 10; i++)); do
    running celery || fail_start "celery worker exited"
    running gunicorn || fail_start "gunicorn exited"
    if [ -e "$dir/worker.ready" ] &&
      curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$webport/health" 2>/dev/null; then
      ok=1
      break
    fi
    sleep 0.1
  done
  [ $ok = 1 ] || fail_start "not ready after ${timeout}s"
  trace "ready"
  cat "$dir/env"
}

case $cmd in
  start) do_start ;;
  stop) [ -d "$dir" ] && do_stop; trace "stopped"; exit 0 ;;
  env) show_env ;;
  *) usage ;;
esac
