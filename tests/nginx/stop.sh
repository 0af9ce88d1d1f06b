#!/usr/bin/env bash
# Stops the nginx that tests/nginx/start.sh DIR started (by its PID).
dir=$1
for f in "$dir/nginx.pid" "$dir/launcher.pid"; do
  [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
sleep 0.1
