#!/usr/bin/env bash
# Starts a throwaway nginx on a free loopback port under DIR.
# usage: tests/nginx/start.sh DIR   -> prints the base URL; stop with tests/nginx/stop.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir/tmp" "$dir/html"
chmod 755 "$dir" "$dir/html"  # the workers run as an unprivileged user
printf 'hello from nginx\n' > "$dir/html/index.html"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 20000; }
http {
  access_log ${ACCESS_LOG:-off};
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$port backlog=8192;
    root $dir/html;
    location = /hello { return 200 "hello\n"; }
  }
}
CONF
nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/stdout.log" 2>&1 &
echo $! > "$dir/launcher.pid"
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "http://127.0.0.1:$port"
    exit 0
  fi
  sleep 0.05
done
echo "nginx did not start; see $dir/error.log" >&2
exit 1
