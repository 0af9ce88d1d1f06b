#!/usr/bin/env bash
# Starts a throwaway nginx on a free loopback port under DIR, with the
# configuration the system tests use (tests/nginx/nginx.conf.in; / answers
# "hello", /hello "hello\n"). ACCESS_LOG=1 logs requests to DIR/access.log.
# usage: tests/nginx/start.sh DIR   -> prints the base URL; stop with tests/nginx/stop.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
dir=$1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 755 "$dir"  # the workers run as an unprivileged user unless tide runs as root
log=(); [ "${ACCESS_LOG:-0}" = 1 ] && log=(--access-log)
for _attempt in 1 2 3; do  # a free port may be taken before nginx binds it
  port=$("$PY" "$here/../free_port.py")
  conf=$("$PY" "$here/nginx_conf.py" "$dir" "$port" "${log[@]}")
  "$NGINX" -c "$conf" -p "$dir" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/launcher.pid"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      exit 0
    fi
    kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null || break
    sleep 0.05
  done
  "$here/stop.sh" "$dir"
done
echo "nginx did not start; see $dir/error.log" >&2
exit 1
